"""Synthetic load profiles of the signal-path tests (docs/algorithm.md "Test profiles"), in
physical units at 1 kHz, and the bench calibration that turns them into raw counts: the
test-support library of tests/test_algorithm.py, test_replay.py, test_device_vs_replay.py and the
hot-path bench. Each profile is a short, hand-shaped curve through key points from the published
figures, with marks (samples) where the tested event must happen.

scenarios.py is the other library and a different job: long, randomised activities in device
units (walk, stairs, day, faults) with ground truth, for `oimon sim generate`, the virtual device
and the detector sweep. These profiles are kept separate because the tests' expected
samples are tied to their exact shapes.
"""
import numpy as np

from oimon_common import calib
from .fw_tables import SAT_HI, SAT_LO

# ---- synthetic load profiles (docs/algorithm.md "Test profiles"), 1 kHz, physical units ------
# Each returns (n, 3) float: axial force N (+ compression), moment AP N*m, moment ML N*m.
FS = 1000


def _ramp(a, b, n):
    """Raised-cosine transition from a to b over n samples."""
    t = np.arange(n) / max(n, 1)
    return a + (b - a) * (1 - np.cos(np.pi * t)) / 2


def _keys(points, swing_level=-40.0):
    """Piecewise raised-cosine curve through (t_ms, value) key points."""
    out = []
    for (t0, v0), (t1, v1) in zip(points[:-1], points[1:]):
        out.append(_ramp(v0, v1, int(t1 - t0)))
    return np.concatenate(out) if out else np.zeros(0)


def stance(peak=640.0, t_stance=660, rise=110, m_peak=35.0, valley=0.75):
    """One stance phase: double-hump axial (OPRA walking peaks 498-684 N, mean loading rate
    peak / rise ~ 5.6 kN/s), AP moment changing sign heel -> toe, ML moment one hump; the
    resultant moment peaks at ~m_peak (OPRA walking 26.5-39.8 N*m)."""
    ts = t_stance
    ax = _keys([(0, 0.0), (rise, peak), (0.45 * ts, valley * peak), (ts - rise, 0.97 * peak),
                (ts, 0.0)])
    tau = np.arange(len(ax)) / len(ax)
    m_ap = -0.55 * m_peak * np.sin(2 * np.pi * tau) * np.sin(np.pi * tau) ** 0.5
    m_ml = 0.8 * m_peak * np.sin(np.pi * tau) ** 1.5
    return np.stack([ax, m_ap, m_ml], 1)


def swing(n, level=-40.0):
    """Swing phase: the connector carries the prosthesis' weight and inertia in tension."""
    ax = _keys([(0, 0.0), (60, level), (n - 60, level), (n, 0.0)]) if n > 120 \
        else np.zeros(n)
    return np.stack([ax, np.zeros(n), np.zeros(n)], 1)


def hold(n, axial, m_ap=0.0, m_ml=0.0):
    return np.tile(np.array([[axial, m_ap, m_ml]], float), (int(n), 1))


def walk(cycles, peak=640.0, cycle=1100, stance_frac=0.6, m_peak=35.0, rise=110, rng=None):
    """Level walking: `cycles` gait cycles of the prosthetic leg (stance then swing)."""
    parts = []
    for i in range(cycles):
        p = peak if rng is None else peak * (1 + 0.04 * rng.standard_normal())
        ts = int(cycle * stance_frac)
        parts.append(stance(p, ts, rise, m_peak))
        parts.append(swing(cycle - ts))
    return np.concatenate(parts)


def stairs_down(cycles, bw_n=735.5, rng=None):
    """Stair descent: stance peaks ~140 % BW with a fast rise (loading rate ~17 kN/s, above the
    impact threshold), cycle 1.0 s; gait continues, so it must not be a fall."""
    return walk(cycles, 1.4 * bw_n, 1000, 0.62, 40.0, 60, rng)


def profile(name, bw_n=735.5, seed=0):
    """Named test profiles (docs/algorithm.md "Test profiles"): returns (forces (n, 3) in N and
    N*m, dict of expected marks in samples)."""
    rng = np.random.default_rng(seed)
    marks = {}
    if name == "walking":
        f = np.concatenate([hold(1000, 0.5 * bw_n), walk(60, rng=rng), hold(2000, 0.5 * bw_n)])
    elif name == "overload":
        pre = np.concatenate([hold(1000, 0.5 * bw_n), walk(5, rng=rng)])
        hop = np.stack([_keys([(0, 0.0), (80, 2000.0), (380, 2000.0), (460, 0.0)]),
                        np.zeros(460), np.full(460, 20.0)], 1)
        marks["hop"] = len(pre)
        f = np.concatenate([pre, hop, swing(500), walk(5, rng=rng), hold(1000, 0.5 * bw_n)])
    elif name == "moment_overload":
        pre = np.concatenate([hold(1000, 0.5 * bw_n), walk(3, rng=rng)])
        marks["twist"] = len(pre)
        st = stance(600.0, 700, 110, 130.0)
        f = np.concatenate([pre, st, swing(440), walk(3, rng=rng), hold(1000, 0.5 * bw_n)])
    elif name == "fall":
        # Frossard et al. 2010: loading, descent, impact, recovery
        pre = np.concatenate([hold(1000, 0.5 * bw_n), walk(6, rng=rng)])
        loading = np.concatenate([stance(0.8 * bw_n, 450, 110, 40.0)[:300],
                                  np.stack([_ramp(0.8 * bw_n * 0.9, -30.0, 150),
                                            _ramp(20.0, 0.0, 150), _ramp(30.0, 0.0, 150)], 1)])
        descent = hold(420, -30.0)
        impact = np.stack([_keys([(0, -30.0), (40, 1700.0), (90, 1500.0), (220, 150.0)]),
                           _keys([(0, 0.0), (40, -60.0), (220, -10.0)]),
                           _keys([(0, 0.0), (40, 85.0), (220, 10.0)])], 1)
        lying = np.stack([20 + 15 * np.sin(np.arange(5000) / 300.0), np.full(5000, 2.0),
                          np.full(5000, 4.0)], 1)
        getup = np.stack([_ramp(20.0, 0.5 * bw_n, 1500), np.zeros(1500), np.zeros(1500)], 1)
        marks["loading"] = len(pre)
        marks["descent"] = len(pre) + len(loading)
        marks["impact"] = marks["descent"] + len(descent)
        f = np.concatenate([pre, loading, descent, impact, lying, getup, hold(3000, 0.5 * bw_n)])
    elif name == "stumble":
        pre = np.concatenate([hold(1000, 0.5 * bw_n), walk(5, rng=rng)])
        short_swing = hold(250, -30.0)
        hit = np.stack([_keys([(0, 0.0), (35, 1350.0), (120, 800.0), (400, 650.0),
                               (560, 0.0)]), np.zeros(560), np.full(560, 25.0)], 1)
        marks["impact"] = len(pre) + len(short_swing)
        f = np.concatenate([pre, short_swing, hit, swing(440), walk(8, rng=rng),
                            hold(1000, 0.5 * bw_n)])
    elif name == "stumble_stand":
        pre = np.concatenate([hold(1000, 0.5 * bw_n), walk(5, rng=rng)])
        hit = np.stack([_keys([(0, 0.0), (35, 1300.0), (150, 600.0), (400, 0.5 * bw_n)]),
                        np.zeros(400), np.zeros(400)], 1)
        f = np.concatenate([pre, hold(300, -30.0), hit, hold(4000, 0.5 * bw_n)])
    elif name == "sitting":
        pre = np.concatenate([hold(1000, 0.5 * bw_n), walk(5, rng=rng), hold(2000, 0.5 * bw_n)])
        sit = np.stack([_ramp(0.5 * bw_n, -15.0, 1000), _ramp(0.0, 5.0, 1000),
                        np.zeros(1000)], 1)
        seated = hold(8000, -15.0, 5.0, 0.0)
        stand = np.stack([_ramp(-15.0, 0.5 * bw_n, 800), _ramp(5.0, 0.0, 800),
                          np.zeros(800)], 1)
        f = np.concatenate([pre, sit, seated, stand, hold(2000, 0.5 * bw_n), walk(5, rng=rng),
                            hold(1000, 0.5 * bw_n)])
    elif name == "plop":          # dropping onto a chair: fast unloading, no impact on the leg
        pre = np.concatenate([hold(1000, 0.5 * bw_n), walk(4, rng=rng)])
        drop = np.stack([_ramp(0.6 * bw_n, -20.0, 150), np.zeros(150), np.zeros(150)], 1)
        f = np.concatenate([pre, hold(500, 0.6 * bw_n), drop, hold(6000, -20.0),
                            np.stack([_ramp(-20.0, 0.5 * bw_n, 600), np.zeros(600),
                                      np.zeros(600)], 1), hold(2000, 0.5 * bw_n)])
    elif name == "stairs":
        f = np.concatenate([hold(1000, 0.5 * bw_n), stairs_down(20, bw_n, rng),
                            walk(3, rng=rng), walk(15, 1.15 * bw_n, 1200, 0.62, 38.0, 120, rng),
                            hold(1000, 0.5 * bw_n)])
    else:
        raise KeyError(name)
    return f, marks


PROFILES = ("walking", "overload", "moment_overload", "fall", "stumble", "stumble_stand",
            "sitting", "plop", "stairs")


def to_units(forces):
    """N, N*m floats -> calibrated units (0.1 N, 0.01 N*m) floats."""
    return np.asarray(forces, float) * np.array([10.0, 100.0, 100.0])


def default_calibration():
    """A plausible bench calibration: ~0.006 (0.1 N)/count axial, ~0.004 (0.01 N*m)/count
    moments (full 24-bit scale = 5.0 kN, 335 N*m) with 1-3 % cross-talk."""
    gains = [[0.00596, 0.00011, -0.00018], [0.00006, 0.00401, 0.00009],
             [-0.00012, 0.00008, 0.00398]]
    return calib.Calibration.from_gains(gains, offsets=(15000, -42000, 8000, 0), version=1,
                                        date=1700000000)


def forces_to_raw(forces, cal, noise=3.0, seed=1):
    """Physical forces (n, 3) (N, N*m) -> raw counts (n, 4) int32 through the inverse of the
    calibration matrix, + Gaussian ADC noise (counts rms; a real 24-bit ADC always has some:
    without it the stuck-output check would, rightly, flag the sensor), saturating at the
    24-bit codes; channel 3 (AIN3) carries the excitation sense (hardware/README.md 3) + noise."""
    rng = np.random.default_rng(seed)
    G = np.array(cal.gains())
    u = to_units(forces)
    raw = np.linalg.solve(G, u.T).T + np.array(cal.offsets[:3], float)
    n = raw.shape[0]
    raw = np.hstack([raw, np.full((n, 1), 3495253.0)]) + rng.normal(0.0, noise, (n, 4))
    return np.clip(np.round(raw), SAT_LO, SAT_HI).astype(np.int32)


def gait_forces(path, column=17, lever_ap=0.028, lever_ml=0.021):
    """A gaitpdb walk (100 Hz, column 18/19 = total force of the left/right foot, N) as connector
    loads at 1 kHz: axial = foot force resampled with scipy.signal.resample_poly(x, 10, 1)
    (polyphase FIR, Kaiser window); bending moments proportional to it with levers 0.028 m (AP)
    and 0.021 m (ML): resultant lever 0.035 m, ~35-42 N*m at the 1.0-1.2 kN peaks."""
    import scipy.signal as ss     # lazy: scipy costs ~0.5 s of start-up, only gaitpdb needs it
    d = np.loadtxt(path, usecols=(column,))
    ax = ss.resample_poly(d, 10, 1)
    return np.stack([ax, lever_ap * ax, -lever_ml * ax], 1)

