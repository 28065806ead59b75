# Timing-faithful device model (docs/timing-model.md): a virtual clock for the unix side of
# the HAL. Model time advances by
#   - interpreter time: the thread CPU time the i386 port spent between two HAL calls, scaled
#     by SCALE (published ESP32-S3 pystone rate vs this machine's);
#   - stalls: flash operations (hal.flash_cost), GC pauses, UART REPL mirror waits: the
#     interpreter is halted, soft interrupts wait (DRDY edges queue in the scheduler);
#   - waits: USB CDC writes into a full TX FIFO, sleep_ms: soft interrupts run meanwhile
#     (mp_event_wait_ms / mp_hal_delay_ms call mp_handle_pending).
# The ADC (VADC) converts on its own schedule into a 2-deep output FIFO; DRDY handlers run at
# the model's check points (every HAL call) for conversions that fell in interpreter time, and
# after a stall for those queued meanwhile, as the ESP32 port's scheduler would run them.
# Nothing here allocates per call: counters are small ints, buffers are pre-allocated.
import os
import gc
from array import array
import board
from micropython import const

# ---- parameters (one table with sources: docs/timing-model.md) --------------------------------
ADC_FIFO = const(2)            # ADS131M04 output FIFO depth (datasheet SBAS890, 8.5.1.9)
SCHED_DEPTH = const(8)         # MICROPY_SCHEDULER_DEPTH, ports/esp32/mpconfigport.h
IRQ_LAT_US = const(15)         # edge -> soft handler start when the VM is running bytecodes
SPI_FRAME_US = const(30)       # one 18-byte frame at 8 MHz (18 us) + machine.SPI call overhead
C_CALL_US = const(2)           # a HAL call into C on the board (Pin.value, ticks_us, poll)
ESP_PYSTONE_240 = const(2699)  # ESP32-S3 @ 240 MHz pystones/s (derivation: timing-model.md)
I386_PYSTONE = const(315943)   # this machine's i386 port, same misc_pystone (timing-model.md)
GC_US_PER_KIB_SRAM = const(16)     # 1.8 ms for a ~110 KiB internal-RAM heap (micropython#8428)
GC_US_PER_KIB_PSRAM = const(24)    # ~100 ms for a 4 MiB SPIRAM heap (micropython#8428)
UART_BAUD = const(115200)      # REPL mirror on UART0 (ports/esp32/uart.h)
UART_FIFO = const(128)         # SOC_UART_FIFO_LEN; uart_stdout_tx_strn waits 1 tick per refill
TICK_US = const(10000)         # CONFIG_FREERTOS_HZ = 100 (ports/esp32/boards/sdkconfig.base)
CDC_FIFO = const(256)          # TinyUSB CDC TX FIFO (CFG_TUD_CDC_TX_BUFSIZE)
CDC_TIMEOUT_MS_STOCK = const(500)  # MICROPY_HW_USB_CDC_TX_TIMEOUT (shared/tinyusb/mp_usbd.h)
CDC_TIMEOUT_MS_OURS = const(5)     # our board image (hardware/README.md "Board image")
CDC_BYTES_PER_MS = const(1000)  # a reading host drains full-speed bulk at ~1 MB/s
_M30 = const(0x3FFFFFFF)
# The i386 time of a reference workload (_ref_work) measured beside I386_PYSTONE on the same
# machine, unloaded: the model re-measures it every REF_EVERY check points and scales
# interpreter time by REF_I386_US / now (median of the last 5), so that a host slowed by load
# (a busy sibling hyperthread, a slower CI machine) does not make the firmware look slower.
REF_I386_US = const(388)
REF_EVERY = const(20000)


class _RefObj:
    def __init__(self):
        self.v = 0
        self.t = [0, 1, 2, 3, 4, 5, 6, 7]

    def m(self, i):
        return i & 3


def _ref_work(o, n):
    # a fixed bytecode mix like the firmware's: attributes, list items, small-int arithmetic,
    # method calls, comparisons
    t = o.t
    a = 0
    for i in range(n):
        a = (a + i * 3) & 0xFFFF
        k = i & 7
        t[k] = t[k] + a
        if t[k] > 100000:
            t[k] = 0
        o.v += o.m(i)
    return a


def _env(name, default):
    v = os.getenv(name)
    return int(v) if v else default


class Clock:
    def __init__(self):
        mhz = _env("OIMON_CPU_MHZ", 240)
        self.mhz = mhz
        # esp_us = i386_us * scale16 / 16 (kept small: intervals are capped)
        # OIMON_VCLOCK_HEADROOM=k: a CPU k times the ESP32-S3's (the tests' model: they assert
        # what the design's structure guarantees, stalls, waits, allocation and marks, so that
        # a host slowed by load cannot fail them; the CPU share is make bench's, at k = 1)
        self.headroom = max(1, _env("OIMON_VCLOCK_HEADROOM", 1))
        self.scale16_nom = 16 * I386_PYSTONE * 240 // (ESP_PYSTONE_240 * mhz * self.headroom)
        self.scale16 = _env("OIMON_VCLOCK_SCALE16", self.scale16_nom)
        self.adapt = not os.getenv("OIMON_VCLOCK_SCALE16") and _env("OIMON_VCLOCK_ADAPT", 1)
        self.ref_nom = _env("OIMON_VCLOCK_REF_US", REF_I386_US)
        self._refs = [0] * 5
        self._rsort = [0] * 5
        self._ref_i = 0
        self._ref_n = 0
        self._ref_obj = _RefObj()
        self._ref_k = 0
        self.ref_us = 0          # the reference workload's i386 time now (median), 0: not yet
        self.heap_kib = _env("OIMON_BOARD_HEAP_KIB", board.HEAP_AREA // 1024)   # our image's one area
        self.psram = _env("OIMON_BOARD_PSRAM", 0)
        self.uart_mirror = _env("OIMON_UART_MIRROR", 0)      # 1 = stock ESP32_GENERIC_S3 image
        self.cdc_timeout_us = 1000 * _env("OIMON_CDC_TIMEOUT_MS", CDC_TIMEOUT_MS_OURS)
        self.flash_worst = _env("OIMON_FLASH_WORST", 0)
        self.sec = 0             # model time: seconds + us
        self.us = 0
        self.tus = 0             # ticks_us (wraps at 2**30 like the port's ticks)
        self.tms = 0
        self.ufrac = 0           # us within the current ms
        self.busy_us = 0         # interpreter + stall time in this accounting window (loop_cpu)
        self.stall_us = 0        # stalled (halted) time in the window
        self.worst_stall = 0     # longest single stall (us)
        self.stall_total = 0     # all stalls (us)
        self.win_us = 0          # window length (us)
        self.gcs = 0             # collections seen (sentinel)
        self._gcs_seen = 0
        self.gc_pauses = 0
        self.alloc_bytes = 0        # bytes allocated between collections, seen at check points
        self.handler_us = 0      # interpreter time spent in DRDY handlers
        self.adc = None
        self.link = None
        self.depth = 0           # re-entrancy guard
        self.capped = 0          # intervals capped at 2 ms of i386 time
        self.h_min = 80000       # fastest i386 time of the DRDY handler per frame (1/8 us)
        self.h0_min = 80000      # ... of a handler call that found no frame (a drained edge)
        self.excl = 0            # i386 us of model code inside a handler (not firmware time)
        self._cpu_init()
        self._calibrate()
        if self.adapt:
            for _ in range(5):
                self._reref()
        self._last = self._cpu()
        self._k = 0
        self._alloc = gc.mem_alloc()

    # --- CPU time of this thread (not wall time: a loaded machine does not slow the model) ---
    def _cpu_init(self):
        self._ts = array("l", [0, 0])
        self._s0 = 0
        self._ns0 = 0
        try:
            import ffi
            self._cg = ffi.open("libc.so.6").func("i", "clock_gettime", "ip")
        except Exception:      # no ffi: wall time (still scaled)
            import time
            self._cg = None
            self._t = time

    def _cpu(self):
        # us since the first call, modulo 2**30 (differences are what count)
        if self._cg is None:
            return self._t.ticks_us() & _M30
        self._cg(3, self._ts)      # CLOCK_THREAD_CPUTIME_ID
        return ((self._ts[0] % 1000) * 1000000 + self._ts[1] // 1000) & _M30

    def _calibrate(self):
        # The HAL's functions are Python here and C on the board: the i386 time of one call of
        # a sim function (fastest of 5 runs of 200) is taken out of the interpreter time per
        # check point and per pin access in a handler, and C_CALL_US charged instead.
        self.call_i386 = 0
        self.depth = 1
        best = 1 << 20
        for _ in range(5):
            c0 = self._cpu()
            for _ in range(200):
                self.ticks_us()
            d = (self._cpu() - c0) & _M30
            if d < best:
                best = d
        # ... plus what lies between two clock readings of consecutive check points but is
        # the model's: the end of one _cpu() after its clock_gettime and the start of the
        # next before it (the ffi call and its arithmetic, ~1 us of i386 time: 117 us of the
        # board's per HAL call if charged): the fastest of 5 runs of 200 back-to-back pairs
        pair = 1 << 20
        for _ in range(5):
            d = 0
            for _ in range(200):
                a = self._cpu()
                b = self._cpu()
                d += (b - a) & _M30
            if d < pair:
                pair = d
        self.depth = 0
        self.call_i386 = best // 200               # i386 us (0 or 1 on a fast machine)
        self.call_i386_x8 = best * 8 // 200        # a HAL call inside a handler (no check point)
        self.tick_i386_x8 = (best + pair) * 8 // 200   # ... and between two check points

    def ref_once(self):
        """i386 us of one run of the reference workload now (bench: docs/timing-model.md)."""
        c0 = self._cpu()
        _ref_work(self._ref_obj, 2000)
        return (self._cpu() - c0) & _M30

    def _reref(self):
        # re-measure the host's speed; scale16 = nominal * REF_I386_US / median of the last 5
        self._refs[self._ref_i] = self.ref_once()
        self._ref_i = (self._ref_i + 1) % 5
        if self._ref_n < 5:
            self._ref_n += 1
        w = self._rsort                      # the median, sorted in place (no allocation)
        n = self._ref_n
        for i in range(n):
            w[i] = self._refs[i]
        for i in range(1, n):
            x = w[i]
            j = i - 1
            while j >= 0 and w[j] > x:
                w[j + 1] = w[j]
                j -= 1
            w[j + 1] = x
        v = w[n // 2]
        if v <= 0:
            return
        self.ref_us = v
        if v * 5 < self.ref_nom * 2:         # the factor ref_nom / v, clamped to 0.4 .. 2.5
            v = self.ref_nom * 2 // 5
        if v * 2 > self.ref_nom * 5:
            v = self.ref_nom * 5 // 2
        self.scale16 = self.scale16_nom * self.ref_nom // v

    # --- time ----------------------------------------------------------------------------------
    def _advance(self, dt):
        self.us += dt
        while self.us >= 1000000:
            self.us -= 1000000
            self.sec += 1
        self.tus = (self.tus + dt) & _M30
        f = self.ufrac + dt
        if f >= 1000:
            self.tms = (self.tms + f // 1000) & _M30
            f %= 1000
        self.ufrac = f
        self.win_us += dt

    def _run(self, dt, prompt):
        # Advance dt us; conversions on the way; prompt=1: their handlers run at once.
        adc = self.adc
        while dt > 0:
            if adc is None or not adc.on:
                self._advance(dt)
                return
            step = adc.next_in
            if step > dt:
                adc.next_in -= dt
                self._advance(dt)
                return
            self._advance(step)
            dt -= step
            adc.convert()
            adc.next_in = adc.period
            if prompt:
                self._deliver(1)
            elif adc.handler is not None and adc.queued < SCHED_DEPTH:
                adc.queued += 1

    def _deliver(self, edge):
        # Run the queued DRDY handlers (the scheduler runs them back to back), then this edge
        # (edge=1: a conversion now, in interpreter time; 0 after a stall or a handler's time,
        # where every edge is in the queue: one handler per edge, as the port schedules them)
        adc = self.adc
        h = adc.handler
        if h is None:
            adc.queued = 0
            return
        n = adc.queued + edge
        adc.queued = 0
        while n > 0:
            n -= 1
            self.excl = 0
            adc.frames = 0
            c0 = self._cpu()
            h(adc.pin)
            d = (((self._cpu() - c0) & _M30) - self.excl) * 8      # 1/8 us
            f = adc.frames
            if f:
                # the handler's path is fixed: the fastest i386 run per frame is its cost (the
                # slower ones are this shared machine's preemption and cache misses); its pin
                # and clock calls (3 DRDY reads, 2 CS writes, 1 ticks_us) are C on the board
                d = d // f - 6 * self.call_i386_x8
                if d < 0:
                    d = 0
                if d < self.h_min:
                    self.h_min = d
                e = f * (((self.h_min * self.scale16) >> 7) + SPI_FRAME_US + 6 * C_CALL_US)
            else:
                # an edge whose data an earlier handler drained (DRDY high: one pin read, then
                # return): a fixed path too, so its fastest run is its cost (a measured one
                # carried the host's interrupts into model time: x117, a FIFO overflow)
                d -= self.call_i386_x8
                if d < 0:
                    d = 0
                if d < self.h0_min:
                    self.h0_min = d
                e = ((self.h0_min * self.scale16) >> 7) + C_CALL_US
            self.handler_us += e
            self._charge_cpu(e)

    def _charge_cpu(self, esp):
        # handler time: the main program is delayed, conversions go on (handlers in between)
        self.busy_us += esp
        self._run(esp, 0)

    def tick(self):
        """A check point (every HAL call): charge the interpreter time since the last one."""
        if self.depth:
            return
        self.depth = 1
        c = self._cpu()
        d = ((c - self._last) & _M30) * 8 - self.tick_i386_x8   # in 1/8 us
        if d < 0:
            d = 0
        if d > 16000:
            # > 2 ms of i386 CPU between two HAL calls (234 ms of the board): no firmware path
            # after boot runs that long without a HAL call; such an interval is the host's
            # (interrupts charged to this thread on a loaded machine): not charged, counted in
            # `capped` (a firmware path that long would show as `capped` in every run: the
            # tests bound it, docs/timing-model.md)
            d = 0
            self.capped += 1
        esp = ((d * self.scale16) >> 7) + C_CALL_US
        self.busy_us += esp
        self._run(esp, 1)
        if self.adc is not None and self.adc.queued:
            self._deliver(0)
        self._k += 1
        if self.adapt:
            self._ref_k += 1
            if self._ref_k >= REF_EVERY:
                self._ref_k = 0
                self._reref()                     # (its time is not charged: _last below)
        if self._k >= 64:
            # a collection happened if the allocated total fell (user classes have no
            # finalisers in MicroPython; explicit frees of >1 KB are rare): charge the pause
            self._k = 0
            a = gc.mem_alloc()
            if a < self._alloc - 1024:
                self.gcs += 1
                self.gc_pauses += 1
                self._stall_now(self.gc_pause_us())
            elif a > self._alloc:
                self.alloc_bytes += a - self._alloc   # what the loop allocates (bench figure)
            self._alloc = a
        self.depth = 0
        self._last = self._cpu()

    def leave(self):
        """End of a stretch of model code: what follows is firmware time again."""
        if not self.depth:
            self._last = self._cpu()

    def gc_pause_us(self):
        return self.heap_kib * (GC_US_PER_KIB_PSRAM if self.psram else GC_US_PER_KIB_SRAM)

    def _stall_now(self, us):
        self.busy_us += us
        self.stall_us += us
        self.stall_total += us
        if us > self.worst_stall:
            self.worst_stall = us
        self._run(us, 0)
        if self.adc is not None and self.adc.queued:
            self._deliver(0)

    def stall(self, us):
        """The interpreter halts for us (flash with the cache off, UART mirror wait)."""
        if self.depth:
            return
        self.tick()
        self.depth = 1
        self._stall_now(us)
        self.depth = 0
        self._last = self._cpu()

    def wait(self, us, busy=1):
        """The interpreter waits us in C but runs soft interrupts (USB CDC, sleep_ms)."""
        if self.depth:
            return
        self.tick()
        self.depth = 1
        if busy:
            self.busy_us += us
        self._run(us, 1)
        self.depth = 0
        self._last = self._cpu()

    def window(self):
        """(window us, busy us, stall us) since the last call; starts a new window."""
        r = (self.win_us, self.busy_us, self.stall_us)
        self.win_us = self.busy_us = self.stall_us = 0
        return r

    def ticks_us(self):
        self.tick()
        return self.tus

    def ticks_ms(self):
        self.tick()
        return self.tms


CLOCK = Clock()
gc.collect()
