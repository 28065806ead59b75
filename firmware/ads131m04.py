# TI ADS131M04 driver: 4 simultaneously sampled 24-bit delta-sigma channels behind the
# sample-source interface (docs/architecture.md): RATE, read(buf) -> 1/0, overruns.
#
# Data path: DRDY falls at f_DATA = f_CLKIN / 2 / OSR (8.192 MHz / 2 / 4096 = 1000 SPS in
# high-resolution mode); the pin interrupt clocks one 6-word frame out of the device
# (status word, channel 0..3, CRC word; 24-bit words, MSB first) into a pre-allocated
# buffer, checks the CRC-16-CCITT and stores the four sign-extended counts in a ring of
# N samples. read() takes the oldest sample out of the ring. Nothing allocates per sample.
#
# Command words (16 bit, left-aligned in the first 24-bit word of a frame); the device
# answers a command in the first word of the *next* frame:
#   NULL 0x0000 -> STATUS      RESET 0x0011 -> 0xFF24      STANDBY 0x0022   WAKEUP 0x0033
#   LOCK 0x0555  UNLOCK 0x0655
#   RREG 101a aaaa annn nnnn (n = count - 1) -> register value (single register)
#   WREG 011a aaaa annn nnnn + data words  -> 010a aaaa ammm mmmm
# SPI mode 1 (CPOL 0, CPHA 1), up to 25 MHz. Codes: +FS 0x7FFFFF, -FS 0x800000, FSR = +-1.2 V / gain.
#
# IO (SPI bus + CS/DRDY/SYNC-RESET pins + clock) is ADS131M04IO; the logic is ADS131M04, so
# the tests drive the same logic through fakes (tests/firmware/shims/fake_ads131m04.py).
import time
import micropython
from array import array
from micropython import const

# commands
_CMD_NULL = const(0x0000)
_CMD_RESET = const(0x0011)
_CMD_STANDBY = const(0x0022)
_CMD_WAKEUP = const(0x0033)
_CMD_LOCK = const(0x0555)
_CMD_UNLOCK = const(0x0655)
_CMD_RREG = const(0xA000)
_CMD_WREG = const(0x6000)
_RSP_RESET = const(0xFF24)       # 0xFF20 | channel count
_RSP_WREG = const(0x4000)

# registers
_REG_ID = const(0x00)
_REG_STATUS = const(0x01)
_REG_MODE = const(0x02)
_REG_CLOCK = const(0x03)
_REG_GAIN1 = const(0x04)
_REG_CFG = const(0x06)
_REG_THRSHLD_MSB = const(0x07)
_REG_THRSHLD_LSB = const(0x08)
_REG_CH0_CFG = const(0x09)       # CHn_CFG = 0x09 + 5n; then OCAL_MSB, OCAL_LSB, GCAL_MSB, GCAL_LSB
_REG_REGMAP_CRC = const(0x3E)

_ID_MASK = const(0xFF00)
_ID_ADS131M04 = const(0x2400)    # CHANCNT = 4 in bits 11:8

# STATUS bits
_ST_LOCK = const(0x8000)
_ST_F_RESYNC = const(0x4000)
_ST_REG_MAP = const(0x2000)
_ST_CRC_ERR = const(0x1000)
_ST_RESET = const(0x0400)
_ST_DRDY_ALL = const(0x000F)

# MODE bits (reset value 0x0510)
_MODE_REG_CRC_EN = const(0x2000)
_MODE_RX_CRC_EN = const(0x1000)
_MODE_CRC_TYPE_ANSI = const(0x0800)   # 0 = CCITT (used here)
_MODE_RESET = const(0x0400)           # write 0 to clear the reset flag
_MODE_WLENGTH_24 = const(0x0100)
_MODE_TIMEOUT = const(0x0010)
_MODE_DRDY_SEL_MOST_LAGGING = const(0x0000)
_MODE_DRDY_HIZ = const(0x0002)
_MODE_DRDY_FMT_PULSE = const(0x0001)

# CLOCK bits (reset value 0x0F0E): CHn_EN bits 11:8, OSR bits 4:2, PWR bits 1:0
_CLOCK_CH_ALL = const(0x0F00)
_CLOCK_PWR_HR = const(0x0002)
_CLOCK_PWR_LP = const(0x0001)

_WORD = const(3)                 # 24-bit word length
_NWORDS = const(6)               # status/response, 4 channels, CRC
_FRAME = const(18)
_NCH = const(4)

_M30 = const(0x3FFFFFFF)        # counters wrap here: small ints on the 32-bit port
# Ring of samples between the DRDY handler and the main loop: 512 (8 KB + 1 KB gap words)
# holds 512 ms at 1 kSPS: the longest main-loop pass in the model (a C_LOG answer) is shorter,
# and our board image caps a USB CDC write's wait at 5 ms (docs/timing-model.md).
RING_DEFAULT = const(512)

_OSR = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)     # code 0..7 in CLOCK[4:2]
_GAIN = (1, 2, 4, 8, 16, 32, 64, 128)                     # code 0..7 in GAIN1 nibbles


@micropython.viper
def crc16(buf: ptr8, n: int) -> int:
    # CRC-16-CCITT (poly 0x1021, seed 0xFFFF), as the ADS131M04 with MODE.CRC_TYPE = 0.
    crc = 0xFFFF
    i = 0
    while i < n:
        crc ^= buf[i] << 8
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
        i += 1
    return crc


@micropython.viper
def _decode(rx: ptr8, ring: ptr32, base: int):
    # Channel words 1..4 of a frame -> ring[base..base+3], sign-extended 24 -> 32 bit.
    ch = 0
    while ch < 4:
        o = 3 + 3 * ch
        v = (rx[o] << 16) | (rx[o + 1] << 8) | rx[o + 2]
        if v & 0x800000:
            v -= 0x1000000
        ring[base + ch] = v
        ch += 1


def _wrap_add(v, k):
    # (v + k) mod 2**30 for 0 <= v, k < 2**30 without a big-int temporary on the 32-bit port
    room = _M30 - v
    return v + k if k <= room else k - room - 1


def sign24(v):
    # 24-bit two's complement -> int (for callers and tests; the data path uses _decode).
    v &= 0xFFFFFF
    return v - 0x1000000 if v & 0x800000 else v


class ADS131M04IO:
    # The hardware side: SPI bus (mode 1), CS (active low), DRDY (input, falls on new data),
    # SYNC/RESET (output, active low), and a millisecond sleep.
    def __init__(self, spi, cs, drdy, sync_reset, sleep_ms=None):
        self.spi = spi
        self.cs = cs
        self.drdy = drdy
        self.sync_reset = sync_reset
        self.sleep_ms = sleep_ms or time.sleep_ms
        cs.value(1)
        sync_reset.value(1)

    def xfer(self, tx, rx):
        self.cs.value(0)
        self.spi.write_readinto(tx, rx)
        self.cs.value(1)

    def hw_reset(self):
        # SYNC/RESET low for > 2048 CLKIN periods (250 us at 8.192 MHz) resets the device;
        # t_REGACQ after the rising edge before the first SPI frame.
        self.sync_reset.value(0)
        self.sleep_ms(1)
        self.sync_reset.value(1)
        self.sleep_ms(1)

    def drdy_low(self):
        return self.drdy.value() == 0

    def on_drdy(self, handler):
        # handler(pin) on each falling edge; None disables. Soft IRQ (scheduled) on the ESP32.
        self.drdy.irq(handler=handler, trigger=self.drdy.IRQ_FALLING)


class ADS131M04:
    def __init__(self, io, gains=(128, 128, 128, 1), osr=4096, clkin=8192000, ring=None, crc=True,
                 ticks_us=None):
        if osr not in _OSR:
            raise ValueError("osr")
        for g in gains:
            if g not in _GAIN:
                raise ValueError("gain")
        self.io = io
        self.gains = tuple(gains)
        self.osr = osr
        self.clkin = clkin
        self.RATE = clkin // 2 // osr
        self.crc = crc
        self.period = 1000000 // self.RATE
        self.overruns = 0        # samples lost: overwritten in the ADC FIFO, bad CRC, ring full
        self.boot_lost = 0       # lost before restart() (the main loop's start)
        self.crc_errors = 0      # frames dropped because their CRC did not match
        self.stale = 0           # DRDY handler calls that found no new data (not a loss)
        self.peak = 0            # most samples ever waiting in the ring (loop latency, health)
        self.samples = 0         # samples stored in the ring (wraps at 2**30)
        self.gap = 0             # samples lost just before the one read() returned last
        self.status = 0          # STATUS word of the last data frame
        self.id = 0
        ring = ring or RING_DEFAULT
        self._n = ring
        self._ring = array("i", bytes(4 * _NCH * ring))
        self._gap = array("H", bytes(2 * ring))    # lost before each slot's sample (<= 65535)
        self._pend = 0           # lost since the last sample stored
        self._ticks = ticks_us or time.ticks_us
        self._tdiff = time.ticks_diff
        self._tadd = time.ticks_add
        self._tg = 0             # conversion instant of the last sample read (estimate)
        self._tg_ok = False
        self._head = 0           # written by the interrupt only
        self._tail = 0           # written by read() only
        self._tx = bytearray(_FRAME)
        self._rx = bytearray(_FRAME)
        self._null = bytearray(_FRAME)
        self._rx_crc = False     # append an input CRC to command frames (MODE.RX_CRC_EN set)
        self._running = False
        self._cb = self._isr     # one bound method, made once: the interrupt allocates nothing

    # --- frames and registers ------------------------------------------------------------
    def _frame(self, cmd, data=-1):
        tx = self._tx
        for i in range(_FRAME):
            tx[i] = 0
        tx[0] = cmd >> 8
        tx[1] = cmd & 0xFF
        n = 3
        if data >= 0:
            tx[3] = data >> 8
            tx[4] = data & 0xFF
            n = 6
        if self._rx_crc:
            c = crc16(tx, n)
            tx[n] = c >> 8
            tx[n + 1] = c & 0xFF
        self.io.xfer(tx, self._rx)
        return (self._rx[0] << 8) | self._rx[1]

    def command(self, cmd, data=-1):
        # Send cmd (and one data word), then a NULL frame; returns the device's response.
        self._frame(cmd, data)
        return self._frame(_CMD_NULL)

    def read_reg(self, addr):
        return self.command(_CMD_RREG | (addr << 7))

    def write_reg(self, addr, value):
        r = self.command(_CMD_WREG | (addr << 7), value)
        if r != _RSP_WREG | (addr << 7):
            raise OSError("ADS131M04 WREG 0x%02x not acknowledged: 0x%04x" % (addr, r))
        v = self.read_reg(addr)
        if v != value:
            raise OSError("ADS131M04 reg 0x%02x = 0x%04x, wrote 0x%04x" % (addr, v, value))

    # --- configuration -------------------------------------------------------------------
    def mode_word(self):
        m = _MODE_WLENGTH_24 | _MODE_TIMEOUT | _MODE_DRDY_SEL_MOST_LAGGING
        if self.crc:
            m |= _MODE_RX_CRC_EN
        return m

    def clock_word(self):
        return _CLOCK_CH_ALL | (_OSR.index(self.osr) << 2) | _CLOCK_PWR_HR

    def gain_word(self):
        g = 0
        for ch in range(_NCH):
            g |= _GAIN.index(self.gains[ch]) << (4 * ch)
        return g

    def begin(self):
        # Reset, identify, configure, start the DRDY interrupt. Raises OSError on a bad part.
        self.stop()
        self._rx_crc = False
        self.io.hw_reset()
        r = self._frame(_CMD_NULL)
        if r != _RSP_RESET:
            # no reset acknowledge (device was not reset by the pin): reset by command
            r = self.command(_CMD_RESET)
            self.io.sleep_ms(1)
            r = self._frame(_CMD_NULL)
        self.id = self.read_reg(_REG_ID)
        if self.id & _ID_MASK != _ID_ADS131M04:
            raise OSError("ADS131M04 not found: ID 0x%04x" % self.id)
        self.write_reg(_REG_CLOCK, self.clock_word())
        self.write_reg(_REG_GAIN1, self.gain_word())
        # MODE clears the RESET flag and may enable the input CRC, which applies from the next
        # frame on: the acknowledge and the read-back already carry a CRC.
        mode = self.mode_word()
        self._frame(_CMD_WREG | (_REG_MODE << 7), mode)
        self._rx_crc = self.crc
        r = self._frame(_CMD_NULL)
        if r != _RSP_WREG | (_REG_MODE << 7):
            raise OSError("ADS131M04 WREG MODE not acknowledged: 0x%04x" % r)
        if self.read_reg(_REG_MODE) != mode:
            raise OSError("ADS131M04 MODE read-back")
        self._make_null()
        st = self.read_reg(_REG_STATUS)
        if st & (_ST_RESET | _ST_CRC_ERR):
            raise OSError("ADS131M04 status 0x%04x after configuration" % st)
        self.start()

    def _make_null(self):
        nb = self._null
        for i in range(_FRAME):
            nb[i] = 0
        if self._rx_crc:
            c = crc16(nb, 3)
            nb[3] = c >> 8
            nb[4] = c & 0xFF

    def start(self):
        self._head = self._tail = 0
        self._pend = 0
        self._tg_ok = False
        self._running = True
        self.io.on_drdy(self._cb)
        if self.io.drdy_low():        # a sample is already waiting: its edge is gone
            self._isr(None)

    def restart(self):
        """Forget what queued before the main loop began (boot): the ring starts empty and the
        loss accounting (overruns) starts at the next conversion; what boot lost is boot_lost."""
        self._tail = self._head
        self._pend = 0
        self._tg_ok = False
        self.boot_lost = self.overruns       # before monitoring began (boot), not in overruns
        self.overruns = 0
        self.peak = 0

    def stop(self):
        if self._running:
            self.io.on_drdy(None)
        self._running = False

    def standby(self):
        self.stop()
        return self.command(_CMD_STANDBY)

    def wakeup(self):
        r = self.command(_CMD_WAKEUP)
        self.start()
        return r

    # --- data path -----------------------------------------------------------------------
    def _isr(self, pin):
        # DRDY falling edge (a soft IRQ on the ESP32: it runs between bytecodes, late by any
        # stall of the interpreter). Drains the ADC's output FIFO (two conversions deep) into
        # the ring and counts what was lost, from the time since the last conversion read:
        # the ADC converts every `period` us on its crystal whether or not anyone reads.
        # Each sample in the ring carries the number of samples lost just before it (gap).
        # No allocation; counters wrap at 2**30 (small ints on the 32-bit port).
        io = self.io
        if not io.drdy_low():            # queued edge for data an earlier call drained
            self.stale = _wrap_add(self.stale, 1)
            return
        n = 0
        while n < 4:
            n += 1
            io.xfer(self._null, self._rx)
            rx = self._rx
            now = self._ticks()
            if self.crc and crc16(rx, 15) != (rx[15] << 8) | rx[16]:
                self.crc_errors = _wrap_add(self.crc_errors, 1)
                self._lose(1)            # the frame held a conversion: a lost sample
                self._grid_step(now, 1)
            else:
                st = (rx[0] << 8) | rx[1]
                self.status = st
                if st & _ST_DRDY_ALL != _ST_DRDY_ALL:
                    self.stale = _wrap_add(self.stale, 1)
                    return
                m = self._grid_step(now, 1 if io.drdy_low() else 0)
                if m > 1:
                    self._lose(m - 1)
                self._store(rx)
            if not io.drdy_low():
                return

    def _grid_step(self, now, pending):
        # Conversions since the last one read (>= 1). self._tg estimates the conversion instant
        # of the last sample read, never later than it: the read is at or after a conversion.
        p = self.period
        if not self._tg_ok:
            self._tg = self._tadd(now, -(p // 2))
            self._tg_ok = True
            return 1
        d = self._tdiff(now, self._tg)
        m = d // p - pending             # a newer conversion waits: this one is one older
        if m < 1:
            m = 1
        g = self._tadd(self._tg, m * p)
        r = self._tdiff(now, g)
        if r < 0:                        # a conversion is never in the future: grid was late
            g = now
        elif not pending:                # creep toward the earliest read (latency >= 0)
            g = self._tadd(g, r if r < 2 else 2)
        self._tg = g
        return m

    def _lose(self, k):
        self._pend += k
        self.overruns = _wrap_add(self.overruns, k)

    def _store(self, rx):
        h = self._head
        nh = h + 1
        if nh == self._n:
            nh = 0
        if nh == self._tail:             # the main loop did not drain the ring in time
            self._lose(1)
            return
        _decode(rx, self._ring, 4 * h)
        d = h - self._tail               # samples waiting before this one: the high-water mark
        if d < 0:                        # tells how close the loop came to losing samples
            d += self._n
        if d > self.peak:
            self.peak = d
        g = self._pend
        self._gap[h] = g if g < 0xFFFF else 0xFFFF
        self._pend = 0
        self._head = nh
        c = self.samples
        self.samples = 0 if c == _M30 else c + 1     # compare first: 2**30 is a big int

    def available(self):
        d = self._head - self._tail
        return d + self._n if d < 0 else d

    def read(self, buf):
        """Oldest sample -> buf[0..3]; 1, or 0 if none. self.gap = samples lost just before it."""
        t = self._tail
        if t == self._head:
            return 0
        r = self._ring
        j = 4 * t
        buf[0] = r[j]
        buf[1] = r[j + 1]
        buf[2] = r[j + 2]
        buf[3] = r[j + 3]
        self.gap = self._gap[t]
        t += 1
        self._tail = 0 if t == self._n else t
        return 1
