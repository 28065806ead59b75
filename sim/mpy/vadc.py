# The ADS131M04 as the virtual clock sees it (docs/timing-model.md): converts every `period`
# us of model time whether or not anyone reads, keeps the last ADC_FIFO conversions (the
# oldest is lost when a third arrives: datasheet SBAS890 8.5.1.9), holds DRDY low while data
# wait, and answers the real driver's SPI frames (firmware/ads131m04.py through its real
# ADS131M04IO): commands are answered in the next frame, registers read back, CRC-16-CCITT.
# The counts come from the simulator's raw file (int32 LE x 4 per sample) or are zero.
from array import array
from micropython import const
import vclock
from ads131m04 import crc16

_RESET_REGS = (0x2400, 0x0500, 0x0510, 0x0F0E, 0x0000, 0x0000, 0x0600, 0x0000, 0x0000)


class _Counts:
    # raw counts file -> 4 ints per conversion, chunked, looping or holding the last sample
    def __init__(self, path, loop=1, chunk=256):
        self._f = open(path, "rb") if path else None
        self._w = array("i", bytes(16 * chunk))
        self._n = 0
        self._i = 0
        self._loop = loop
        self.ended = False

    def _fill(self):
        # int32 little-endian straight into the array (x86 is little-endian): no conversion,
        # no big ints
        n = self._f.readinto(self._w)
        if not n and self._loop:
            self._f.seek(0)
            n = self._f.readinto(self._w)
        if not n:
            return 0
        self._n = n // 16
        self._i = 0
        return self._n

    def next(self, dst):
        if self._f is None:
            return
        if self._i >= self._n and not self._fill():
            self.ended = True       # hold the last conversion
            return
        j = 4 * self._i
        w = self._w
        dst[0] = w[j]
        dst[1] = w[j + 1]
        dst[2] = w[j + 2]
        dst[3] = w[j + 3]
        self._i += 1


class VPin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, adc=None, role=0, v=1):
        self._adc = adc
        self._role = role            # 0 plain, 1 DRDY (reads the chip), 2 SYNC/RESET
        self._v = v

    def value(self, v=None):
        if v is None:
            if self._role == 1:
                return 0 if self._adc.count else 1
            return self._v
        v = 1 if v else 0
        if self._role == 2 and v and not self._v:
            self._adc.reset()
        self._v = v

    def irq(self, handler=None, trigger=0, hard=False):
        if self._role == 1:
            self._adc.handler = handler
            self._adc.queued = 0


class VADC:
    def __init__(self, path=None, rate=1000, loop=1):
        self.period = 1000000 // rate
        self.next_in = self.period
        self.src = _Counts(path, loop)
        self.fifo = array("i", bytes(16 * vclock.ADC_FIFO))
        self.head = 0                # oldest entry
        self.count = 0
        self.conversions = 0         # every conversion since power-up (small int: wraps)
        self.lost = 0                # overwritten in the FIFO before being read
        self.handler = None
        self.queued = 0
        self.frames = 0
        self.on = True
        self._cur = array("i", [0, 0, 0, 0])
        self._last = array("i", [0, 0, 0, 0])
        self.regs = array("H", bytes(2 * 64))
        self.response = -1
        self.drdy = VPin(self, 1)
        self.cs = VPin(self, 0)
        self.sync_reset = VPin(self, 2)
        self.pin = self.drdy
        self._out = bytearray(18)
        self.reset()

    def reset(self):
        for a in range(64):
            self.regs[a] = 0
        for a in range(len(_RESET_REGS)):
            self.regs[a] = _RESET_REGS[a]
        self.response = 0xFF24
        self.count = 0
        self.head = 0

    # --- conversions (called by the clock) ------------------------------------------------------
    def convert(self):
        self.src.next(self._cur)
        self.conversions = (self.conversions + 1) & 0x3FFFFFFF
        f = self.fifo
        if self.count == vclock.ADC_FIFO:       # the oldest is overwritten
            self.head = (self.head + 1) % vclock.ADC_FIFO
            self.count -= 1
            self.lost += 1
        j = 4 * ((self.head + self.count) % vclock.ADC_FIFO)
        c = self._cur
        f[j] = c[0]
        f[j + 1] = c[1]
        f[j + 2] = c[2]
        f[j + 3] = c[3]
        self.count += 1

    # --- SPI (write_readinto of the driver's ADS131M04IO) ---------------------------------------
    def write_readinto(self, tx, rx):
        clk = vclock.CLOCK
        c0 = clk._cpu()
        self._xfer(tx, rx)
        self.frames += 1
        clk.excl += (clk._cpu() - c0) & 0x3FFFFFFF

    def _xfer(self, tx, rx):
        o = rx                                   # built in place: no slice, no allocation
        d = self._last
        if self.response >= 0:
            st = self.response
        else:
            st = (self.regs[1] & 0xFFF0) | (0xF if self.count else 0)
        if self.count:                           # a data frame takes the oldest conversion out
            f = self.fifo
            j = 4 * self.head
            d[0] = f[j]
            d[1] = f[j + 1]
            d[2] = f[j + 2]
            d[3] = f[j + 3]
            self.head = (self.head + 1) % vclock.ADC_FIFO
            self.count -= 1
        o[0] = st >> 8
        o[1] = st & 0xFF
        o[2] = 0
        for ch in range(4):
            v = d[ch] & 0xFFFFFF
            o[3 + 3 * ch] = v >> 16
            o[4 + 3 * ch] = (v >> 8) & 0xFF
            o[5 + 3 * ch] = v & 0xFF
        c = crc16(o, 15)
        o[15] = c >> 8
        o[16] = c & 0xFF
        o[17] = 0
        cmd = (tx[0] << 8) | tx[1]
        if cmd == 0:
            self.response = -1
        elif cmd == 0x0011:
            self.reset()
        elif cmd in (0x0022, 0x0033, 0x0555, 0x0655):
            self.response = cmd
        elif cmd & 0xE000 == 0xA000:
            a = (cmd >> 7) & 0x3F
            self.response = -1 if a == 1 else self.regs[a]
        elif cmd & 0xE000 == 0x6000:
            a = (cmd >> 7) & 0x3F
            v = (tx[3] << 8) | tx[4]
            if a == 2 and not v & 0x0400:
                self.regs[1] &= 0xFBFF
            if a >= 2:
                self.regs[a] = v
            self.response = 0x4000 | (a << 7)
        else:
            self.response = 0

    def write(self, buf):
        pass
