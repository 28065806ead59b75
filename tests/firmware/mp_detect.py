# Detection on the i386 MicroPython: overload debounce/hysteresis/alarm timing, resultant moment
# without overflow, sensor faults within 100 ms, invalid while uncalibrated, the four-phase
# fall, stumble / sitting / stairs that are not falls, daily activity, allocation.
# Profiles here are piecewise-linear (MicroPython has no numpy); the full synthetic profiles
# from the published figures and the gaitpdb walks run in tests/test_algorithm.py through
# the same firmware on this port.
import gc
from array import array

from oimon_common import calib
import detect
import dsp

BW = 7355                      # 75 kg in 0.1 N
ON = BW * 20 // 100


class Feed:
    """Feeds filtered-domain samples (axial 0.1 N, moments 0.01 N*m, rate N/s, flags) straight
    into a Detector, and records the events."""

    def __init__(self, limits=None):
        self.det = detect.Detector(limits, BW)
        self.o = array("i", [0] * 8)
        self.n = 0
        self.events = []
        self.hist = []

    def go(self, count, ax, ma=0, mm=0, rate=0, fl=0, to=None, xa=None):
        """count samples; ax may ramp linearly to `to`. The measured values out[5..7] are the
        same as the filtered ones unless xa (measured axial) is given."""
        o = self.o
        for i in range(count):
            a = ax if to is None else ax + (to - ax) * i // count
            o[0], o[1], o[2], o[3], o[4] = a, ma, mm, rate, fl
            o[5], o[6], o[7] = a if xa is None else xa, ma, mm
            e = self.det.step(o)
            if e:
                self.events.append((self.n, e, list(self.det.ev)))
            self.n += 1
        return self

    def codes(self):
        return [(n, e) for n, e, _ in self.events]


def test_phase_limit_table():
    assert detect.phase_limits(detect.PHASE_FULL, BW) == [18000, 4000, 9000, 20, 3]
    assert detect.phase_limits(detect.PHASE_III, BW) == [14000, 3000, 6000, 20, 2]
    assert detect.phase_limits(detect.PHASE_II, BW)[:3] == [BW, 2000, 3000]
    assert detect.phase_limits(detect.PHASE_I, BW)[0] == BW // 2 * 125 // 100   # 50 % BW < 490 N
    assert detect.phase_limits(detect.PHASE_I, 12000)[0] == 4903 * 125 // 100  # 50 kg cap


def test_overload_onset_on_debounce_sample_and_alarm():
    f = Feed()
    f.go(500, 3000)
    first = f.n
    for i in range(19):
        f.go(1, 18001)
        assert f.det.alarm_level() <= 1 and not f.events, i      # not yet
    f.go(1, 18001)
    assert f.codes() == [(first + 19, detect.EV_OVERLOAD_START)]      # first + debounce - 1
    assert f.det.alarm_level() == 2
    ev = f.events[0][2]
    assert ev[detect.O_START] == first and ev[detect.O_ONSET] == first + 19
    assert ev[detect.O_WHICH] == 1 and ev[detect.O_PK_AX] == 18001
    f.go(100, 25000)
    f.go(300, 17000)               # between 90 % and 100 %: hysteresis keeps it active
    assert len(f.events) == 1 and f.det.alarm_level() == 2
    rel = f.n
    f.go(19, 16000)                # below 90 %
    assert len(f.events) == 1
    f.go(1, 16000)
    assert f.codes()[-1] == (rel + 19, detect.EV_OVERLOAD_END)
    ev = f.events[-1][2]
    assert ev[detect.O_END] == rel and ev[detect.O_DUR] == rel - first
    assert ev[detect.O_PK_AX] == 25000 and ev[detect.O_MIN_AX] == 16000
    imp = ev[detect.O_IMP_HI] * 65536 + ev[detect.O_IMP_LO]
    assert imp == 20 * 18001 + 100 * 25000 + 300 * 17000 + 20 * 16000, imp
    assert f.det.act[detect.A_OVERLOADS] == 1
    f.go(20, 3000)
    assert f.det.alarm_level() == 0


def test_overload_debounce_rejects_short_spikes():
    f = Feed()
    for k in range(50):
        f.go(19, 30000).go(5, 3000)
    assert f.events == []


def test_tension_and_resultant_moment():
    f = Feed()
    f.go(100, 0).go(25, -4001)
    assert f.codes() == [(119, detect.EV_OVERLOAD_START)]
    assert f.events[0][2][detect.O_WHICH] == 2
    f.go(25, 0)
    # resultant: 70 and 60 N*m each under 90 N*m, together 92.2 N*m over it
    f = Feed()
    f.go(30, 3000, 7000, -6000)
    assert f.codes() == [(19, detect.EV_OVERLOAD_START)]
    assert f.events[0][2][detect.O_WHICH] == 4
    assert f.events[0][2][detect.O_PK_M2] == 7000 * 7000 + 6000 * 6000
    # extreme moments: components clamp at 32767 before squaring, no 32-bit wrap
    f = Feed()
    f.go(30, 0, 131071, -131071)
    ev = f.events[0][2]
    assert ev[detect.O_PK_M2] == 2 * 32767 * 32767 and ev[detect.O_PK_MAP] == 131071
    assert f.det.act[detect.A_PK_M2] == 2 * 32767 * 32767


def _pipeline_detector(cal):
    p = dsp.Pipeline(cal)
    d = detect.Detector(None, BW)
    return p, d, array("i", [0, 0, 0, 0]), array("i", [0] * 8)


def _cal():
    return calib.Calibration([0, 0, 0, 0], [100000, 0, 0, 0, 100000, 0, 0, 0, 100000],
                             [24, 24, 24], 1, 0)


def test_faults_raised_within_100ms_and_invalidate():
    cases = (("saturation", lambda i, r: 0x7FFFFF),
             ("negative saturation", lambda i, r: -0x800000),
             ("open bridge at rail", lambda i, r: 0x7F1234 + (i & 3)),
             ("stuck", lambda i, r: 1111111))
    for name, bad in cases:
        p, d, raw, out = _pipeline_detector(_cal())
        events = []
        for i in range(3000):
            raw[0] = 1000000 + (i * 7919) % 2000       # noisy healthy signal
            raw[1] = (i * 104729) % 3000
            raw[2] = -((i * 7) % 500)
            if 1000 <= i < 1500:
                raw[0] = bad(i, raw[0])
            p.step(raw, out)
            e = d.step(out)
            if e:
                events.append((i, e, list(d.ev[32:39])))
        assert events[0][1] == detect.EV_FAULT, (name, events)
        assert events[0][0] - 1000 < 100, (name, events)        # raised within 100 ms
        assert events[-1][1] == detect.EV_FAULT_CLEAR, (name, events)
        assert len(events) == 2, (name, events)
        assert events[0][2][detect.X_FLAGS] != 0
        a = d.act
        assert a[detect.A_FAULTS] == 1
        assert a[detect.A_INVALID] >= 500, (name, a[detect.A_INVALID])


def test_fault_ends_an_active_overload_truncated():
    f = Feed()
    f.go(100, 20000)
    assert f.codes() == [(19, detect.EV_OVERLOAD_START)]
    f.go(1, 20000, fl=dsp.FL_SAT & 1)             # one saturated sample: invalid at once
    assert f.codes()[-1] == (100, detect.EV_OVERLOAD_END)
    ev = f.events[-1][2]
    assert ev[detect.O_TRUNC] == 1 and ev[detect.O_DUR] == 100
    f.go(9, 20000, fl=1)
    assert f.codes()[-1] == (109, detect.EV_FAULT)                 # 10th saturated sample
    f.go(500, 20000)                               # fault clears after 200 clean samples
    codes = f.codes()
    assert (309, detect.EV_FAULT_CLEAR) in codes, codes
    assert codes[-1] == (328, detect.EV_OVERLOAD_START), codes    # valid from the clear sample


def test_uncalibrated_detection_is_invalid():
    p, d, raw, out = _pipeline_detector(None)
    for i in range(3000):
        raw[0] = 8000000 - (i & 255)                # a huge load if it were calibrated
        raw[1] = i
        raw[2] = -i
        p.step(raw, out)
        assert out[dsp.OUT_FLAGS] & dsp.FL_UNCAL and out[0] == 0
        assert d.step(out) == 0
    assert d.act[detect.A_VALID] == 0 and d.act[detect.A_INVALID] == 3000
    p.set_calibration(_cal())
    for i in range(50):
        raw[0] = 100000 + (i & 3)
        p.step(raw, out)
        d.step(out)
    assert d.act[detect.A_VALID] == 50


def _gait(f, cycles, peak=6000, stance=660, cycle=1100, rate_peak=5600, rise=110):
    """Trapezoid stance (rise, plateau, fall) + swing in tension; rate = peak rate."""
    for k in range(cycles):
        f.go(rise, 0, 1000, 2000, rate_peak, to=peak)
        f.go(stance - 2 * rise, peak, 2500, 3000)
        f.go(rise, peak, 1000, 1000, -rate_peak, to=0)
        f.go(cycle - stance, -400)


def test_fall_four_phases():
    f = Feed()
    f.go(1000, BW // 2)
    _gait(f, 5)
    t_load = f.n
    f.go(400, 6000, 3000, 2000)            # loading
    t_desc = f.n
    f.go(400, -300)                        # descent: prosthesis unloaded 400 ms
    t_imp = f.n
    f.go(40, 0, 2000, 6000, 45000, to=17000)     # impact: 0 -> 1.7 kN in 40 ms, 45 kN/s
    f.go(150, 17000, 8000, 8500, -20000, to=300)
    f.go(5000, 200, 100, 300)              # lying
    falls = [(n, e, ev) for n, e, ev in f.events if e & detect.EV_FALL]
    assert len(falls) == 1, f.codes()
    n, e, ev = falls[0]
    b = detect.EV_FALL_BASE
    contact = t_imp + 40 * ON // 17000 + 1        # first sample >= 20 % BW on the ramp
    assert ev[b + detect.F_T_IMP] == contact, (ev[b + detect.F_T_IMP], contact)
    assert n == contact + 1999                    # decided within 2 s of the impact
    assert ev[b + detect.F_T_DEC] == n
    assert ev[b + detect.F_T_DESC] == t_desc and ev[b + detect.F_T_LOAD] == t_load
    assert ev[b + detect.F_PK_LOAD] == 6000 and ev[b + detect.F_MIN_DESC] == -300
    assert ev[b + detect.F_PK_AX] == 17000 and ev[b + detect.F_PK_M2] == 8000 ** 2 + 8500 ** 2
    assert ev[b + detect.F_PK_RATE] == 45000
    assert ev[b + detect.F_REC_LEN] == 1900
    assert ev[b + detect.F_LOADED] * 100 < 40 * 1900     # the impact's decay, then lying
    assert f.det.alarm_level() == 2 and f.det.act[detect.A_FALLS] == 1
    f.det.ack()
    assert f.det.alarm_level() == 0


def test_stumble_that_recovers_is_not_a_fall():
    f = Feed()
    f.go(1000, BW // 2)
    _gait(f, 4)
    f.go(250, -300)                                  # short swing
    f.go(35, 0, 0, 2000, 40000, to=13500)            # hard impact, 40 kN/s, 184 % BW
    f.go(500, 13500, 0, 2500, 0, to=0)
    f.go(440, -400)
    _gait(f, 6)                                      # walks on
    assert f.det.act[detect.A_IMPACTS] == 1          # it was an impact candidate ...
    assert [e for n, e, ev in f.events if e & detect.EV_FALL] == []   # ... that recovered


def test_stumble_then_standing_is_not_a_fall():
    f = Feed()
    f.go(1000, BW // 2)
    _gait(f, 3)
    f.go(300, -300)
    f.go(35, 0, 0, 0, 40000, to=13000)
    f.go(200, 13000, 0, 0, 0, to=BW // 2)
    f.go(4000, BW // 2)                               # stands still
    assert f.det.act[detect.A_IMPACTS] == 1
    assert not any(e & detect.EV_FALL for n, e, ev in f.events)


def test_sitting_down_and_stairs_are_not_falls():
    f = Feed()
    f.go(1000, BW // 2)
    _gait(f, 3)
    f.go(2000, BW // 2)
    f.go(1000, BW // 2, 0, 0, -800, to=-150)          # sitting down over 1 s
    f.go(8000, -150)
    f.go(800, -150, 0, 0, 1000, to=BW // 2)           # standing up
    f.go(2000, BW // 2)
    _gait(f, 10, 10300, 620, 1000, 17000, 60)         # stairs down: 140 % BW, 17 kN/s
    _gait(f, 3)
    assert f.det.act[detect.A_IMPACTS] >= 5
    assert not any(e & detect.EV_FALL for n, e, ev in f.events), f.codes()


def test_daily_activity_counters():
    f = Feed()
    f.go(100, 0)
    _gait(f, 10, 7355)                         # peak 100 % BW
    a = f.det.act
    assert a[detect.A_STEPS] == 10
    assert a[detect.A_PK_AX] == 7355 and a[detect.A_MIN_AX] == -400
    assert a[detect.A_VALID] == f.n and a[detect.A_INVALID] == 0
    h = f.det.hist
    assert len(h) == detect.HIST_N and sum(h) == f.n
    assert h[10] == 10 * (660 - 220 + 1)       # plateau (+ first ramp-down sample) at 100 % BW
    # loaded = samples from the >= 20 % BW rise to the < 10 % BW fall of each cycle
    assert 10 * 440 < a[detect.A_LOADED] < 10 * 660
    f.det.reset_activity()
    assert sum(f.det.act) == 0


def test_detector_step_is_allocation_free():
    f = Feed()
    o = f.o
    d = f.det
    step = d.step
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for i in range(12000):
        o[0] = (i * 37) % 20000          # walks through overload, latch, histogram paths
        o[1] = (i * 13) % 9500
        o[3] = (i * 101) % 30000
        step(o)
    used = gc.mem_alloc() - a
    gc.enable()
    assert used == 0, used


def test_bound_kernel_equals_step_and_allocates_nothing():
    a = detect.Detector(None, BW)
    b = detect.Detector(None, BW)
    o = array("i", [0] * 8)
    b.bind(o)
    kernel, tab = detect.kernel, b.tab
    for i in range(12000):
        v = [(i * 37) % 20000 - 1000, (i * 13) % 9500, (i * 7) % 9000, (i * 101) % 30000,
             0x1 if 5000 <= i < 5020 else 0]              # overload, latch, a fault, its clear
        v = v + [v[0], v[1], v[2]]                         # measured = filtered here
        x = array("i", v)                                  # step(): a fresh buffer each call
        ea = a.step(x)
        for j in range(5):
            o[j] = v[j]
        for j in range(5, 8):
            o[j] = v[j]
        eb = kernel(tab)
        assert ea == eb and list(a.ev) == list(b.ev), (i, ea, eb)
    assert list(a.act) == list(b.act) and list(a.st) == list(b.st)
    assert a.act[detect.A_OVERLOADS] > 0 and a.act[detect.A_FAULTS] == 1
    gc.collect()
    gc.disable()
    m = gc.mem_alloc()
    for i in range(10000):
        o[0] = (i * 37) % 20000
        kernel(tab)
    used = gc.mem_alloc() - m
    gc.enable()
    assert used == 0, used
