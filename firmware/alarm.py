# Alarm and cue outputs: buzzer (PWM), LED and vibration motor, stepped by tick() from the
# main loop (>= 100 Hz) with no allocation and no blocking.
#
#   a = Alarm(hal.PWM(hal.Pin(board.BUZZER), freq=1000, duty_u16=0),
#             hal.Pin(board.LED, hal.Pin.OUT), hal.Pin(board.VIB, hal.Pin.OUT))
#   a.raise_(alarm.HIGH, alarm.FALL)   # output starts on the next tick()
#   a.tick(hal.ticks_ms())             # every main-loop pass
#   a.ack()                            # button / host: silence buzzer + vibration, LED stays
#   a.clear(alarm.FALL)                # the condition is over
#   a.cue(alarm.CUE_OVER)              # exercise zone cue, one shot, plays on the next tick
#
# Priorities (IEC 60601-1-8-inspired): HIGH (fall, overload) pre-empts LOW (retightening due,
# sensor fault). HIGH: a 10-pulse burst (3 + 2, pause, 3 + 2) at 1 kHz, pulses 150 ms,
# repeated every ~2.5 s, with vibration and LED on each pulse. LOW: one or two 660 Hz pulses
# every ~15 s with a short vibration. Each pattern is a const table of steps
# (duration ms, buzzer Hz or 0, LED, vibration) that repeats.
# Among raised alarms the highest level, then the lowest pattern id, sounds; an acknowledged
# alarm keeps only its LED steps until it is cleared or raised again. A raise_ of a new
# alarm re-arms it even if an older one was acknowledged (call it on the event's edge).
# Cues (under / in band / over the exercise target) are a separate one-shot channel of
# < 0.5 s that overrides a LOW alarm's outputs while it plays and is dropped while a HIGH
# alarm sounds (the patient must not confuse a cue with an alarm).
import time
from micropython import const

NONE = const(0)
LOW = const(1)
HIGH = const(2)

FALL = const(0)
OVERLOAD = const(1)
RETIGHTEN = const(2)
SENSOR_FAULT = const(3)
TECHNICAL = const(4)           # supervisor.py: self-test failed, not configured/calibrated, ...
_NPAT = const(5)

CUE_UNDER = const(0)
CUE_IN = const(1)
CUE_OVER = const(2)

_DUTY = const(32768)           # 50 %: square wave, odd harmonics (IEC wants >= 4 harmonics)
_HI_HZ = const(1000)
_LO_HZ = const(660)
_CUE_HZ = const(2000)

# (ms, Hz, led, vib) steps; high-priority burst: x x x . x x ...... x x x . x x ____________
_P_FALL = (
    150, _HI_HZ, 1, 1, 100, 0, 0, 1, 150, _HI_HZ, 1, 1, 100, 0, 0, 1, 150, _HI_HZ, 1, 1,
    250, 0, 0, 0, 150, _HI_HZ, 1, 1, 100, 0, 0, 1, 150, _HI_HZ, 1, 1,
    400, 0, 0, 0,
    150, _HI_HZ, 1, 1, 100, 0, 0, 1, 150, _HI_HZ, 1, 1, 100, 0, 0, 1, 150, _HI_HZ, 1, 1,
    250, 0, 0, 0, 150, _HI_HZ, 1, 1, 100, 0, 0, 1, 150, _HI_HZ, 1, 1,
    2500, 0, 0, 0,
)
# overload: the same burst (same priority), LED on steadily, vibration continuous in bursts
_P_OVERLOAD = (
    150, _HI_HZ, 1, 1, 100, 0, 1, 1, 150, _HI_HZ, 1, 1, 100, 0, 1, 1, 150, _HI_HZ, 1, 1,
    250, 0, 1, 0, 150, _HI_HZ, 1, 1, 100, 0, 1, 1, 150, _HI_HZ, 1, 1,
    400, 0, 1, 0,
    150, _HI_HZ, 1, 1, 100, 0, 1, 1, 150, _HI_HZ, 1, 1, 100, 0, 1, 1, 150, _HI_HZ, 1, 1,
    250, 0, 1, 0, 150, _HI_HZ, 1, 1, 100, 0, 1, 1, 150, _HI_HZ, 1, 1,
    2500, 0, 1, 0,
)
# low priority: two pulses, then the LED blinks once a second until the next pair (15 s)
_P_RETIGHTEN = (
    200, _LO_HZ, 1, 1, 150, 0, 0, 0, 200, _LO_HZ, 1, 0,
    950, 0, 0, 0, 100, 0, 1, 0, 900, 0, 0, 0, 100, 0, 1, 0, 900, 0, 0, 0,
    100, 0, 1, 0, 900, 0, 0, 0, 100, 0, 1, 0, 900, 0, 0, 0, 100, 0, 1, 0,
    9400, 0, 0, 0,
)
# sensor fault: one pulse, LED double-blink every 2 s
_P_FAULT = (
    200, _LO_HZ, 1, 1, 300, 0, 0, 0,
    100, 0, 1, 0, 150, 0, 0, 0, 100, 0, 1, 0, 1650, 0, 0, 0,
    100, 0, 1, 0, 150, 0, 0, 0, 100, 0, 1, 0, 1650, 0, 0, 0,
    100, 0, 1, 0, 150, 0, 0, 0, 100, 0, 1, 0, 1650, 0, 0, 0,
    100, 0, 1, 0, 150, 0, 0, 0, 100, 0, 1, 0, 1650, 0, 0, 0,
    100, 0, 1, 0, 150, 0, 0, 0, 100, 0, 1, 0, 1650, 0, 0, 0,
    100, 0, 1, 0, 150, 0, 0, 0, 100, 0, 1, 0, 1650, 0, 0, 0,
    100, 0, 1, 0, 150, 0, 0, 0, 100, 0, 1, 0, 1650, 0, 0, 0,
)
# technical alarm (supervisor.py): three short pulses, LED on steadily between them (10 s)
_P_TECH = (
    120, _LO_HZ, 1, 1, 120, 0, 1, 0, 120, _LO_HZ, 1, 1, 120, 0, 1, 0, 120, _LO_HZ, 1, 1,
    9400, 0, 1, 0,
)
_PATTERNS = (_P_FALL, _P_OVERLOAD, _P_RETIGHTEN, _P_FAULT, _P_TECH)


def _period(pat):
    return sum(pat[i] for i in range(0, len(pat), 4))


_PERIOD = (_period(_P_FALL), _period(_P_OVERLOAD), _period(_P_RETIGHTEN), _period(_P_FAULT),
           _period(_P_TECH))
_DEFAULT_LEVEL = (HIGH, HIGH, LOW, LOW, LOW)

# cues, one shot: under = one buzz of the motor; in band = LED wink; over = two buzzes + beeps
_C_UNDER = (120, 0, 1, 1)
_C_IN = (150, 0, 1, 0)
_C_OVER = (80, _CUE_HZ, 1, 1, 80, 0, 0, 0, 80, _CUE_HZ, 1, 1)
_CUES = (_C_UNDER, _C_IN, _C_OVER)


class Alarm:
    def __init__(self, buzzer_pwm, led_pin, vib_pin):
        self.buz = buzzer_pwm
        self.led = led_pin
        self.vib = vib_pin
        self._level = bytearray(_DEFAULT_LEVEL)
        self._raised = 0          # bit per pattern
        self._acked = 0           # bit per pattern
        self._cur = -1            # pattern being stepped
        self._step = 0
        self._t0 = 0
        self._cue = -1            # cue waiting or playing
        self._cstep = -1          # -1: not started
        self._ct0 = 0
        self._f = 0               # outputs as last written
        self._l = 0
        self._v = 0
        buzzer_pwm.duty_u16(0)
        led_pin.value(0)
        vib_pin.value(0)

    # --- requests (from the main loop, detectors, host commands, the button) --------------
    def raise_(self, level, pattern):
        if not (0 <= pattern < _NPAT) or level not in (LOW, HIGH):
            raise ValueError("alarm")
        b = 1 << pattern
        self._level[pattern] = level
        self._raised |= b
        self._acked &= ~b
        if self._cur == pattern:
            self._cur = -1        # restart its pattern from the first step

    def ack(self):
        # Silence what sounds now (every raised alarm of the sounding level and below stays
        # visual); a later raise_ sounds again.
        self._acked |= self._raised

    def clear(self, pattern=-1):
        if pattern < 0:
            self._raised = self._acked = 0
        else:
            b = 1 << pattern
            self._raised &= ~b
            self._acked &= ~b

    def cue(self, zone):
        if 0 <= zone <= CUE_OVER:
            self._cue = zone
            self._cstep = -1

    def level(self):
        # Level of the sounding (unacknowledged) alarm, NONE if silent.
        p = self._pick(self._raised & ~self._acked)
        return NONE if p < 0 else self._level[p]

    def active(self):
        # Pattern id being shown (sounding or, acknowledged, visual only); -1 if none.
        return self._cur

    # --- stepping ----------------------------------------------------------------------------
    def _pick(self, mask):
        best = -1
        bl = 0
        for p in range(_NPAT):
            if mask & (1 << p) and self._level[p] > bl:
                best = p
                bl = self._level[p]
        return best

    def tick(self, now):
        unacked = self._raised & ~self._acked
        p = self._pick(unacked)
        muted = 0
        if p < 0:
            p = self._pick(self._raised)
            muted = 1
        f = 0
        l = 0
        v = 0
        if p != self._cur:
            self._cur = p
            self._step = 0
            self._t0 = now
        if p >= 0:
            pat = _PATTERNS[p]
            el = time.ticks_diff(now, self._t0)
            if el >= _PERIOD[p] or el < 0:        # a long stall: restart the pattern
                self._step = 0
                self._t0 = now
                el = 0
            s = self._step
            while el >= pat[s]:
                el -= pat[s]
                self._t0 = time.ticks_add(self._t0, pat[s])
                s += 4
                if s >= len(pat):
                    s = 0
            self._step = s
            l = pat[s + 2]
            if not muted:
                f = pat[s + 1]
                v = pat[s + 3]
        c = self._cue
        if c >= 0:
            if p >= 0 and not muted and self._level[p] == HIGH:
                self._cue = -1                   # no cues over a sounding high alarm
            else:
                cp = _CUES[c]
                if self._cstep < 0:
                    self._cstep = 0
                    self._ct0 = now
                el = time.ticks_diff(now, self._ct0)
                s = self._cstep
                while s < len(cp) and el >= cp[s]:
                    el -= cp[s]
                    self._ct0 = time.ticks_add(self._ct0, cp[s])
                    s += 4
                self._cstep = s
                if s >= len(cp):
                    self._cue = -1
                else:
                    f = cp[s + 1]
                    l = cp[s + 2]
                    v = cp[s + 3]
        self._out(f, l, v)

    def _out(self, f, l, v):
        if f != self._f:
            if f:
                self.buz.freq(f)
                self.buz.duty_u16(_DUTY)
            else:
                self.buz.duty_u16(0)
            self._f = f
        if l != self._l:
            self.led.value(l)
            self._l = l
        if v != self._v:
            self.vib.value(v)
            self._v = v
