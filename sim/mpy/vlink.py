# The host link as the virtual clock sees it (docs/timing-model.md, table "link"):
#   USB CDC (TinyUSB, shared/tinyusb/mp_usbd_cdc.c): a 256-byte TX FIFO; with a host holding
#   the port (DTR set) a write waits in 1 ms steps (mp_event_wait_ms: soft interrupts run) until
#   the FIFO has room, at most MICROPY_HW_USB_CDC_TX_TIMEOUT (500 ms stock, 5 ms in our
#   image) per 64-byte chunk, and gives up the rest of that write when none came free; without a host the
#   FIFO just keeps the newest bytes and nothing waits. A reading host drains ~1 MB/s.
#   UART REPL mirror (stock ESP32_GENERIC_S3: MICROPY_HW_ENABLE_UART_REPL): every byte also
#   goes through UART0 at 115200 baud, 128-byte FIFO, refilled after a 1-tick wait without
#   mp_handle_pending (ports/esp32/uart.c uart_stdout_tx_strn): the interpreter stalls.
# The host side (tests, bench) sets the mode and feeds/reads bytes through this module.
from micropython import const
import vclock

HOST_NONE = const(0)       # nothing holds the port: writes never wait
HOST_READING = const(1)
HOST_HELD = const(2)       # port open, nobody reads
HOST_GONE = const(3)       # the virtual device's pty closed for good

_PKT = const(64)           # CFG_TUD_CDC_EP_BUFSIZE: the write loop's chunk


class Link:
    def __init__(self, capture=0):
        self.mode = HOST_NONE
        self.fill = 0            # bytes in the CDC TX FIFO
        self._t = 0              # model ms of the last drain
        self.rxq = bytearray(4096)
        self.rx_n = 0
        self.rx_i = 0
        self.capture(capture)
        self.sent = 0            # bytes accepted by the link
        self.cut = 0             # bytes given up after the 500 ms timeout
        self.wait_us = 0         # time writes waited (soft interrupts ran)
        self.uart_stall_us = 0
        self.uart_fill = 0       # bytes in the UART FIFO
        self._ut = 0             # model us (ticks) of the last UART drain
        # 1: POLLOUT is always reported (ports/esp32 mphalport.c mp_hal_stdio_poll in some
        # versions): the firmware then learns of a silent host only from a write that waited
        self.poll_always = int(__import__("os").getenv("OIMON_POLLOUT_ALWAYS") or 0)
        self.rx = _Rx(self)
        self.tx = _Tx(self)

    # --- host side ----------------------------------------------------------------------------
    def capture(self, n):
        """Keep the first n bytes a reading host receives. Made by the harness after the
        firmware is loaded: a big buffer made before it (at this module's import) slows the
        i386 loop by up to 2x in model time, with nothing allocated or collected (measured:
        docs/timing-model.md "Limits"); made after it, it costs nothing."""
        self.cap = bytearray(n)
        self.cap_n = 0
        if n:
            # the shared copy kernel, imported here and not at this module's import (with the
            # HAL, before the firmware): that would move the firmware's buffers in the model's
            # heap (a 24 KB one then no longer fit at the quarter-spare test's heap)
            from oimon_common.protocol import blit
            self._blit = blit

    def feed(self, data):
        n = len(data)
        if self.rx_i == self.rx_n:
            self.rx_i = self.rx_n = 0
        self.rxq[self.rx_n:self.rx_n + n] = data
        self.rx_n += n

    def received(self):
        return bytes(self.cap[:self.cap_n])

    # --- model --------------------------------------------------------------------------------
    def _drain(self):
        c = vclock.CLOCK
        now = c.tms
        el = (now - self._t) & 0x3FFFFFFF
        self._t = now
        if self.mode == HOST_READING and el:
            k = el * vclock.CDC_BYTES_PER_MS
            self.fill = 0 if k >= self.fill else self.fill - k

    def room(self):
        self._drain()
        return vclock.CDC_FIFO - self.fill

    def _uart(self, n):
        # the REPL mirror: stall until the last byte is in the UART FIFO
        c = vclock.CLOCK
        now = c.tus
        el = (now - self._ut) & 0x3FFFFFFF
        self._ut = now
        gone = el * vclock.UART_BAUD // 10000000          # 10 bits per byte
        self.uart_fill = 0 if gone >= self.uart_fill else self.uart_fill - gone
        st = 0
        while n > 0:
            room = vclock.UART_FIFO - self.uart_fill
            k = room if room < n else n
            self.uart_fill += k
            n -= k
            if n:
                # ulTaskNotifyTake(pdFALSE, 1): until the next tick; the FIFO drains meanwhile
                t = vclock.TICK_US - (c.tus + st) % vclock.TICK_US
                st += t
                gone = t * vclock.UART_BAUD // 10000000
                self.uart_fill = 0 if gone >= self.uart_fill else self.uart_fill - gone
        if st:
            self.uart_stall_us += st
            c.leave()
            c.stall(st)
            self._ut = c.tus

    def write(self, buf, n):
        c = vclock.CLOCK
        c.tick()
        if self.mode == HOST_GONE:
            return n
        if c.uart_mirror:
            self._uart(n)
        i = 0
        while i < n:
            k = n - i
            if k > _PKT:
                k = _PKT
            if self.mode == HOST_HELD or self.mode == HOST_READING:
                waited = 0
                while k > self.room() and waited < c.cdc_timeout_us:
                    c.leave()                   # the model's own Python is not firmware time
                    c.wait(1000)
                    waited += 1000
                self.wait_us += waited
                r = self.room()
                if k > r:
                    k = r
                if k == 0:
                    self.cut += n - i
                    break
                self.fill += k
                if self.mode == HOST_READING and self.cap_n + k <= len(self.cap):
                    self._blit(self.cap, self.cap_n, buf, i, k)   # no slice: no allocation
                    self.cap_n += k
                    c.leave()                   # the capture is the model's time, not firmware
            i += k
        self.sent += i
        c.leave()
        return i

    def ready(self):
        c = vclock.CLOCK
        c.tick()
        r = 1
        if (self.mode == HOST_HELD or self.mode == HOST_READING) and not self.poll_always:
            r = 1 if self.room() > 0 else 0
        c.leave()
        return r

    def rx_any(self):
        c = vclock.CLOCK
        c.tick()
        r = 1 if self.rx_i < self.rx_n else (-1 if self.mode == HOST_GONE else 0)
        c.leave()
        return r


class _Rx:
    def __init__(self, link):
        self.l = link

    def readinto(self, b):
        l = self.l
        if l.rx_i >= l.rx_n:
            return 0
        b[0] = l.rxq[l.rx_i]
        l.rx_i += 1
        return 1


class _Tx:
    def __init__(self, link):
        self.l = link

    def write(self, buf, n=-1):
        if n < 0:
            n = len(buf)
        return self.l.write(buf, n)


LINK = Link()
