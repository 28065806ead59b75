# HX711 driver for bench boards, behind the sample-source interface (docs/architecture.md).
# In the style of robert-hh's hx71x drivers: the IO class (pins) apart from the logic.
#
# NOT for the wearable: the HX711 converts at 10 or 80 SPS (RATE pin), one channel per
# chip (channel A, gain 128 or 64), and its sinc filter settles in 4 conversions. A fall's
# impact peak lasts tens of milliseconds: at 10 SPS it is missed or smeared, at 80 SPS it is
# under-sampled; loading-rate (~5.6 kN/s walking) and fall detection need the ADS131M04 at
# 1 kSPS. Use the HX711 for calibration rigs and load-cell bring-up only.
#
# Several HX711s share one PD_SCK and each has its own DOUT: one clock train reads all of
# them at once (channel k <- DOUT k; missing channels read 0). Output codes are 24-bit two's
# complement; out of range the chip saturates at 0x7FFFFF / 0x800000 (counted in `saturated`).
# PD_SCK high for > 60 us powers the chip down: on the ESP32 the clock train takes ~100 us
# per chip-word in bytecode with short high times; keep interrupts quiet while it runs.
from micropython import const

_BITS = const(24)
_MAX = const(0x7FFFFF)
_MIN = const(-0x800000)
_GAIN_PULSES = {128: 1, 64: 3, 32: 2}   # extra pulses after the 24 data bits: A128, A64, B32


class HX711IO:
    # One PD_SCK output shared by all chips, one DOUT input per chip.
    def __init__(self, sck, douts):
        self.sck = sck
        self.douts = tuple(douts)
        sck.value(0)

    def ready(self):
        # DOUT low on every chip: a conversion is waiting.
        for d in self.douts:
            if d.value():
                return False
        return True

    def shift(self, words, pulses):
        # Clock 24 data bits (MSB first) out of every chip in parallel, then `pulses` more
        # to select the next conversion's channel/gain. words[k] <- chip k (unsigned 24 bit).
        sck = self.sck
        douts = self.douts
        n = len(douts)
        for k in range(n):
            words[k] = 0
        for _ in range(_BITS):
            sck.value(1)
            sck.value(0)
            for k in range(n):
                words[k] = (words[k] << 1) | douts[k].value()
        for _ in range(pulses):
            sck.value(1)
            sck.value(0)

    def power_down(self):
        self.sck.value(0)
        self.sck.value(1)          # held high > 60 us: all chips power down

    def power_up(self):
        self.sck.value(0)


class HX711:
    def __init__(self, io, gain=128, rate=10):
        if gain not in _GAIN_PULSES or rate not in (10, 80):
            raise ValueError("gain 128/64/32, rate 10/80 SPS")
        self.io = io
        self.RATE = rate           # set by the HX711 RATE pin in hardware (low 10, high 80)
        self.gain = gain
        self._pulses = _GAIN_PULSES[gain]
        self.overruns = 0          # the HX711 keeps no queue and flags nothing: not detectable
        self.saturated = 0         # samples with any channel at 0x7FFFFF or 0x800000
        self.samples = 0
        self._words = [0, 0, 0, 0]
        self._n = len(io.douts)

    def read(self, buf):
        if not self.io.ready():
            return 0
        w = self._words
        self.io.shift(w, self._pulses)
        sat = 0
        for k in range(4):
            if k < self._n:
                v = w[k]
                if v & 0x800000:
                    v -= 0x1000000
                if v == _MAX or v == _MIN:
                    sat = 1
                buf[k] = v
            else:
                buf[k] = 0
        self.saturated += sat
        self.samples += 1
        return 1
