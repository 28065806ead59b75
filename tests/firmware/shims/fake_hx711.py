# Test double of one or more HX711s sharing PD_SCK: each chip shifts its 24-bit word out
# MSB first on the rising edges of PD_SCK, raises DOUT after the 25th edge and takes the
# number of edges (25/26/27) as the gain of the next conversion (A128 / B32 / A64).
from fake_ads131m04 import FakePin

_GAIN_BY_PULSES = {25: 128, 26: 32, 27: 64}


class FakeHX711:
    def __init__(self, name="hx"):
        self.dout = FakePin(name + ".dout", 1)
        self.word = 0
        self.pulses = 0
        self.gain = 128
        self.reads = 0

    def convert(self, value):
        if self.pulses:
            self.gain = _GAIN_BY_PULSES.get(self.pulses, self.gain)
        self.word = value & 0xFFFFFF
        self.pulses = 0
        self.dout._v = 0

    def rising(self):
        self.pulses += 1
        i = self.pulses
        if i <= 24:
            self.dout._v = (self.word >> (24 - i)) & 1
        else:
            self.dout._v = 1
            if i == 25:
                self.reads += 1


class FakeHX711Bus:
    def __init__(self, nchips):
        self.chips = [FakeHX711("hx%d" % k) for k in range(nchips)]
        self.sck = FakePin("sck", 0, self._edge)
        self.douts = [c.dout for c in self.chips]

    def _edge(self, pin, v):
        if v:
            for c in self.chips:
                c.rising()

    def convert(self, *values):
        for c, v in zip(self.chips, values):
            c.convert(v)
