# Test doubles for alarm outputs: a Pin and a PWM that log (t_ms, name, value) on a shared
# Clock when their state changes. record=False makes them log nothing (heap-lock tests).


class Clock:
    def __init__(self):
        self.now = 0
        self.log = []


class FakeOutPin:
    OUT = 1

    def __init__(self, clock, name, record=True):
        self.clock = clock
        self.name = name
        self.record = record
        self._v = 0
        self.writes = 0

    def value(self, v=None):
        if v is None:
            return self._v
        v = 1 if v else 0
        self.writes += 1
        if v != self._v and self.record:
            self.clock.log.append((self.clock.now, self.name, v))
        self._v = v


class FakePWM:
    def __init__(self, clock, name="buz", record=True):
        self.clock = clock
        self.name = name
        self.record = record
        self._f = 0
        self._d = 0
        self.writes = 0

    def freq(self, f=None):
        if f is None:
            return self._f
        self.writes += 1
        self._f = f

    def duty_u16(self, d=None):
        if d is None:
            return self._d
        self.writes += 1
        if d != self._d and self.record:
            self.clock.log.append((self.clock.now, self.name, self._f if d else 0))
        self._d = d

    def sounding(self):
        return self._f if self._d else 0
