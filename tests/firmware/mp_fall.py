# Falls however they happen, on the i386 MicroPython: the load path (measured-load debounce, no
# pending-decision blind spot, gaps, slide-down) fused with the inertial path (imufall.py), IMU
# faults and the load-only fallback, and counters across 2^30 and 2^31 (docs/algorithm.md 5.2,
# 5.4, 5.7, 5.8). Profiles are piecewise constant: the published-figure scenarios and real
# recordings run through the same firmware in tests/test_falls.py.
import gc
from array import array

from oimon_common import calib
import detect
import dsp
import imufall

BW = 7355


def w32(x):
    return ((x + 0x80000000) & 0xFFFFFFFF) - 0x80000000


class Fused:
    """Load samples (filtered-domain values straight into out[]) and IMU rows interleaved as on
    the device: an IMU row every 125/13 ms, stamped with the latest load sample's n."""

    def __init__(self, n0=0, imu=True):
        self.det = detect.Detector(None, BW)
        self.imu = self.det.attach_imu() if imu else None
        self.o = array("i", [0] * 8)
        self.r = array("i", [0] * 8)
        self.n = n0                    # detector sample number of the next load sample
        self.det.st[0] = w32(n0)
        self.ms = 0
        self.k = 0
        self.events = []               # (n or t_dec, code, kind)

    def go(self, count, ax=0, acc=(0, 0, 1000), gyro=(0, 0, 0), fl=0, ifl=0, rate=0, xa=None,
           imu=True):
        o, r = self.o, self.r
        for i in range(count):
            o[0], o[1], o[2], o[3], o[4] = ax, 0, 0, rate, fl
            o[5], o[6], o[7] = ax if xa is None else xa, 0, 0
            e = self.det.step(o)
            if e:
                self.events.append((self.n, e, "load"))
            t = self.n
            self.n += 1
            self.ms += 1
            while imu and self.imu is not None and (self.k * 125) // 13 < self.ms:
                j = self.k & 1
                r[0] = w32(t)
                r[1], r[2], r[3] = acc[0] + j, acc[1], acc[2] - j
                r[4], r[5], r[6] = gyro[0] + j, gyro[1], gyro[2]
                r[7] = ifl
                e = self.det.imu_step(r)
                if e:
                    self.events.append((self.det.ev[48 + imufall.I_T_DEC] if e & 32 else t, e, "imu"))
                self.k += 1
            if not imu:
                self.k = (self.ms * 13 + 124) // 125
        return self

    def falls(self):
        return [x for x in self.events if x[1] & (detect.EV_FALL | imufall.EV_FALL_IMU)]


UP = (0, 0, 1000)
LYING = (1000, 0, 0)


def _imu_fall(f, ax_during=0, ax_after=0, fl=0, impact=4000):
    """Upright 3 s, 0.4 s free fall while turning, a 40 ms impact, lying still 4 s."""
    f.go(3000, ax_during, UP, fl=fl)
    f.go(400, ax_during, (200, 0, 200), (900, 300, 0), fl=fl)
    f.go(40, ax_during, (impact, 0, 800), (900, 300, 0), fl=fl)
    f.go(4000, ax_after, LYING, fl=fl)


def test_fusion_word_layout_matches():
    assert imufall.FX_FALARM == detect.FX_FALARM and imufall.FX_RING == detect.FX_RING
    assert imufall.FX_SOFT_SEQ == detect.FX_SOFT_SEQ and imufall.FX_LFALL_T == detect.FX_LFALL_T
    assert imufall.FX_IMU_FAULT == detect.FX_IMU_FAULT and imufall.FX_HAVE_LFALL == detect.FX_HAVE_LFALL
    assert imufall.EV_FALL_IMU == 32 and detect.EV_N == 64 and detect.EV_IMU_BASE == 48


def test_debounce_is_time_over_limit_of_measured_load():
    # through dsp (20 Hz filter) and detect: 80 % -> 120 % of the 1800 N limit for 19..25 ms
    cal = calib.Calibration([0] * 4, [8192, 0, 0, 0, 8192, 0, 0, 0, 8192], [13, 13, 13], 1, 1)
    pipe = dsp.Pipeline(cal)
    det = detect.Detector(None, BW)
    raw = array("i", [0] * 4)
    out = array("i", [0] * 8)
    got = []
    n = 0
    for width in (19, 20, 24, 25, 19):
        for i in range(600 + width):
            v = 21600 if i >= 600 else 14400
            raw[0], raw[1], raw[2] = v + (n & 1), (n & 1), (n & 2)
            pipe.step(raw, out)
            assert out[5] == raw[0] and out[0] <= 21600
            e = det.step(out)
            if e & detect.EV_OVERLOAD_START:
                got.append((width, det.ev[detect.O_START] - (n - i + 600), det.ev[detect.O_ONSET]))
            n += 1
    assert [g[0] for g in got] == [20, 24, 25], got
    assert all(g[1] == 0 for g in got), got              # O_START = the first over sample


def test_heel_strike_does_not_blind_the_next_fall():
    f = Fused(imu=False)
    f.go(1000, BW)                                       # standing
    f.go(400, 0)                                         # swing
    f.go(80, BW * 12 // 10, rate=20000)                  # heel strike passing the impact test
    f.go(500, BW)                                        # stance
    f.go(300, 0)                                         # swing
    f.go(300, BW)                                        # loading of the step that fails
    f.go(400, 0)                                         # descent
    f.go(80, BW * 17 // 10, rate=30000)                  # the fall's impact (inside 2 s)
    f.go(3000, 100)                                      # lying
    fl = f.falls()
    assert len(fl) == 1 and fl[0][2] == "load", f.events
    ev = f.det.ev
    assert ev[16 + detect.F_T_IMP] == 2980 and ev[16 + detect.F_SOURCE] == 1
    assert f.det.alarm_level() == 2
    f.det.ack()
    assert f.det.alarm_level() == 0


def test_walking_with_hard_heel_strikes_is_not_a_fall():
    f = Fused()
    for k in range(30):
        f.go(420, 0, UP)
        f.go(60, BW * 13 // 10, UP, rate=25000)
        f.go(600, BW, UP)
    f.go(3000, BW, UP)
    assert f.falls() == [], f.events


def test_slide_down_onto_the_buttocks_is_a_fall():
    f = Fused()
    f.go(3000, BW, UP)
    f.go(300, 0, (300, 0, 700), (400, 100, 0))           # the knee gives way, the limb unloads
    f.go(150, BW // 2, (1200, 0, 1400), (300, 0, 0))     # limb contact 0.5 BW, buttocks land 1.8 g
    f.go(4000, 300, LYING)                               # sitting on the floor, leg out, still
    fl = f.falls()
    assert len(fl) == 1 and fl[0][2] == "imu", f.events
    assert f.det.ev[48 + imufall.I_SOURCE] == 6 and f.det.alarm_level() == 2


def test_slide_down_without_the_imu_raises_nothing_load_only():
    f = Fused(imu=False)
    f.go(3000, BW)
    f.go(300, 0)
    f.go(150, BW // 2)
    f.go(4000, 300)
    assert f.falls() == [] and f.det.status()["falls"] == "load only"


def test_sitting_down_is_not_a_fall():
    f = Fused()
    f.go(3000, BW, UP)
    for k in range(10):                                  # 1 s: unloading while the thigh turns
        f.go(100, BW - BW * k // 10, (k * 100, 0, 1000 - k * 100), (900, 0, 0))
    f.go(6000, 200, LYING)                               # seated: thigh horizontal, foot light
    assert f.falls() == [], f.events


def test_fall_onto_the_hip_with_the_load_channel_faulty():
    f = Fused()
    _imu_fall(f, fl=dsp.FL_RAIL)                         # load invalid throughout
    fl = f.falls()
    assert len(fl) == 1 and fl[0][2] == "imu", f.events
    ev = f.det.ev
    assert ev[48 + imufall.I_SOURCE] == 2 and ev[48 + imufall.I_VALID] == 0
    assert ev[48 + imufall.I_T_DEC] - ev[48 + imufall.I_T_IMP] >= 2500
    assert ev[48 + imufall.I_PK_ACC] >= 4000 and f.det.alarm_level() == 2


def test_fall_where_the_prosthesis_is_not_the_impact_point():
    f = Fused()
    _imu_fall(f, ax_during=0, ax_after=150)              # no limb contact: load unloaded
    assert len(f.falls()) == 1 and f.falls()[0][2] == "imu"


def test_standing_on_the_leg_vetoes_an_inertial_fall():
    f = Fused()
    _imu_fall(f, ax_during=BW, ax_after=BW)              # loaded all the time: not lying
    assert f.falls() == [], f.events
    assert f.det.ev[48 + imufall.I_LOADED] > 0


def test_one_report_when_both_paths_see_the_fall():
    f = Fused()
    f.go(3000, BW, UP)
    f.go(400, 0, (200, 0, 200), (900, 300, 0))
    f.go(60, BW * 17 // 10, (4000, 0, 800), (900, 300, 0), rate=30000)
    f.go(4000, 100, LYING)
    fl = f.falls()
    assert len(fl) == 1 and fl[0][2] == "load", f.events


def test_imu_faults_fall_back_to_load_only_and_clear():
    f = Fused()
    f.go(1000, BW, UP)
    r = array("i", [0, 5, 5, 1000, 3, 3, 3, 0])
    codes = 0
    for k in range(105):                                 # stuck: identical rows for 1 s
        r[0] = f.n - 1
        codes |= f.det.imu_step(r)
    assert codes & imufall.EV_IMU_FAULT and f.det.status()["imu"] == "fault"
    assert f.det.alarm_level() == 1 and f.det.ev[63] == 2
    f.go(400, 0, UP, imu=False)                          # a load fall while the IMU is faulted
    f.go(80, BW * 17 // 10, rate=30000, imu=False)
    f.go(2500, 100, imu=False)
    assert len(f.falls()) == 1 and f.falls()[0][2] == "load"
    f.det.ack()
    f.go(2500, BW, UP)                                   # clean rows: cleared after 208
    assert any(e[1] & imufall.EV_IMU_CLEAR for e in f.events)
    assert f.det.status() == {"imu": "ok", "load": "ok", "falls": "load+imu"}
    f2 = Fused()
    f2.go(500, BW, UP)
    f2.go(200, BW, (32000, 0, 1000))                     # saturated for 200 ms
    assert any(e[1] & imufall.EV_IMU_FAULT for e in f2.events) and f2.det.ev[63] == 1
    f3 = Fused()
    assert f3.det.imu.stale() == imufall.EV_IMU_FAULT and f3.det.imu.stale() == 0
    assert f3.det.ev[63] == 4 and f3.det.status()["falls"] == "load only"


def test_gap_is_no_impact_and_windows_count_samples_received():
    f = Fused(imu=False)
    f.go(1000, BW)
    f.go(300, 0)
    f.go(1, BW * 15 // 10, rate=100000, fl=dsp.FL_GAP)   # the jump across lost samples
    f.go(9, BW * 15 // 10, rate=60000)                   # rates spanning the gap
    f.go(3000, 100)
    assert f.falls() == [] and f.det.act[detect.A_IMPACTS] == 0
    f = Fused(imu=False)                                 # a gap inside a real fall's descent
    f.go(1000, BW)
    f.go(300, 0, fl=0)
    f.go(1, 0, fl=dsp.FL_GAP)
    f.go(300, 0)
    f.go(80, BW * 17 // 10, rate=30000)
    f.go(3000, 100)
    assert len(f.falls()) == 1
    # an over-limit run restarts at a gap: 10 + 10 over samples with a gap between are not 20
    f = Fused(imu=False)
    f.go(10, 19000)
    f.go(1, 19000, fl=dsp.FL_GAP)
    f.go(18, 19000)
    assert not any(e[1] & detect.EV_OVERLOAD_START for e in f.events)
    f.go(1, 19000)
    assert any(e[1] & detect.EV_OVERLOAD_START for e in f.events)


def _preset(f, base):
    # every counter just below base: the sample counter, the activity counters, the IMU's
    for i in (detect.A_LOADED, detect.A_VALID, detect.A_STEPS):
        f.det.act[i] = w32(base - 500)
    f.imu.st[imufall.ST_CNT] = w32(base - 700)
    f.imu.st[imufall.ST_BI] = w32(base - 60)
    f.det.fx[detect.FX_SOFT_SEQ] = w32(base - 1)
    f.imu.st[imufall.ST_SSEQ] = w32(base - 1)


def test_counters_across_2_30_and_2_31_a_fall_after_25_days():
    for base in (1 << 30, 1 << 31, 1 << 32):
        f = Fused(n0=base - 4000)
        _preset(f, base)
        f.go(1000, BW, UP)
        f.go(400, 0, UP)
        f.go(80, BW * 17 // 10, UP, rate=30000)          # load fall across the boundary
        f.go(3000, 100, UP)
        fl = f.falls()
        assert len(fl) == 1 and fl[0][2] == "load", (base, f.events)
        assert f.det.ev[16 + detect.F_T_IMP] == w32(base - 2600)
        assert f.det.alarm_level() == 2
        f.det.ack()
        f.go(3000, BW, UP)
        ov = f.n
        f.go(30, 20000, UP)                              # an overload on the far side
        assert any(e[1] & detect.EV_OVERLOAD_START for e in f.events)
        assert f.det.ev[detect.O_START] == w32(ov)
        f.go(100, BW, UP)
        f.go(3000, BW, UP)
        _imu_fall(f, ax_during=0, ax_after=100)           # and an inertial fall
        assert len(f.falls()) == 2 and f.falls()[1][2] == "imu", (base, f.events)
    # a fall caught after 25 days of uptime: 25 * 86400 * 1000 samples, beyond 2^31
    f = Fused(n0=25 * 86400 * 1000)
    _imu_fall(f, ax_after=100)
    assert len(f.falls()) == 1


def test_no_allocation_per_sample_across_2_31():
    f = Fused(n0=(1 << 31) - 3000)
    _preset(f, 1 << 31)
    o, r = f.o, f.r
    det, imu = f.det, f.imu
    kernel, tab = detect.kernel, det.tab
    det.bind(o)
    imu.bind(r)
    ik, itab = imufall.kernel, imu.tab
    o[0] = o[5] = BW
    r[3] = 1000
    gc.collect()
    gc.disable()
    m = gc.mem_alloc()
    for i in range(6000):                                # across 2^31, walking load, IMU rows
        o[0] = o[5] = BW if (i // 500) & 1 else 0
        kernel(tab)
        if i % 10 == 0:
            r[1] = i & 3
            ik(itab)
    used = gc.mem_alloc() - m
    gc.enable()
    assert used == 0, used
