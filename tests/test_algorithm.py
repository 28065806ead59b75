"""The signal path (docs/algorithm.md): filter design vs scipy, the numpy model vs scipy, the
model vs the firmware running on the i386 MicroPython (identical filtered samples, identical
events, identical daily activity), synthetic profiles from the published figures, and the real
gaitpdb walks (75 kg patient, default limits: no overload, no fall)."""
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss

from oimon_sim import filter_design, fw_tables, fwrun, kernels, profiles, replayer

ROOT = Path(__file__).resolve().parents[1]
from oimon_common import calib  # noqa: E402
from oimon_common.filters import FILTERS  # noqa: E402

from conftest import run_mp_test  # noqa: E402

FS_UNITS = 50000            # 0.1 % of full scale is taken against +-5 kN: 50 units (5 N)


# the firmware's constants, generated from firmware/dsp.py and detect.py (tools/gen_fw_tables.py;
# tests/test_fw_tables.py checks the generated module is current)
FW = {k: v for k, v in vars(fw_tables).items() if not k.startswith("__") and isinstance(v, int)}


# ---- design, constants, overflow proof --------------------------------------------------------
def test_firmware_filter_table_is_the_design():
    assert FILTERS == filter_design.firmware_table()
    assert FW["FC_DEFAULT"] == filter_design.FC_DEFAULT == 20


def test_model_constants_are_the_firmwares():
    """The kernels use the generated tables, and the shared event field names are the
    firmware's slot layouts (O_*, F_*, X_*, A_* of detect.py, in index order)."""
    for k, v in FW.items():
        assert getattr(kernels, k, v) == v, k
    for prefix, fields in (("O_", kernels.OVL_FIELDS), ("F_", kernels.FALL_FIELDS),
                           ("X_", kernels.FAULT_FIELDS), ("A_", kernels.ACT_FIELDS)):
        names = [n for n in FW if n.startswith(prefix)]
        assert sorted(names, key=FW.get) == [prefix + f.upper() for f in fields], prefix
    cfg = kernels.make_config()
    for k in ("r_impact", "t_desc_min", "t_desc_max", "t_impwin", "t_decide", "rec_pct",
              "fault_n", "clear_n"):
        assert ("CFG_" + k.upper()) in FW, k
    assert cfg["t_decide"] <= 2000                      # fall decided within 2 s
    assert set(cfg) == set(kernels.CFG)


def test_overflow_bounds_hold_for_every_cutoff():
    for fc in filter_design.FC_TABLE:
        d = filter_design.design(fc)
        b = filter_design.bounds(d)
        assert b["s_max"] < 2 ** 27 and b["word_max"] < 2 ** 31, (fc, b)
        # normal-form matrix with ||A|| < 1: the basis of the no-limit-cycle argument
        assert d["SA"] ** 2 + d["WA"] ** 2 < 2 ** 32


def test_realised_response_is_the_butterworth():
    for fc in filter_design.FC_TABLE:
        d = filter_design.design(fc)
        f = [0.0, fc / 4, fc, 2 * fc, 200.0]
        _, h_q = ss.freqz(*filter_design.realised_tf(d), worN=f, fs=1000)
        _, h_f = ss.freqz(*filter_design.butter(fc), worN=f, fs=1000)
        assert np.max(np.abs(np.abs(h_q) - np.abs(h_f))) < 2e-4, fc
        assert abs(abs(h_q[0]) - 1) < 1e-12                          # DC exact


# ---- model vs scipy -----------------------------------------------------------------------------
def _test_signals(n=20000, seed=2):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    steps = np.where((t // 2000) % 2, 50000, -50000)
    sines = 40000 * np.sin(2 * np.pi * 3.0 * t / 1000) + 20000 * np.sin(2 * np.pi * 11 * t / 1e3)
    walk = profiles.to_units(profiles.walk(int(n / 1100) + 1, rng=rng))[:n, 0] * 2.5
    return np.stack([steps, sines, walk], 1).round().astype(np.int64)


def test_model_filter_vs_scipy_lfilter():
    x = _test_signals()
    co = kernels.coefficients(20)
    y = replayer._Filter(co).run(x.astype(np.int32))
    for c in range(3):
        ref = filter_design.reference(x[:, c])
        err = np.abs(y[:, c] - ref)
        assert err.max() <= 0.001 * FS_UNITS, (c, err.max())
        # steady state of the steps: exact after settling (DC exact, no dead band)
    for k in range(1, 10):
        assert (y[k * 2000 - 10: k * 2000, 0] == x[k * 2000 - 1, 0]).all()
    assert replayer._Filter(co).run(np.zeros((500, 3), np.int32)).any() == False  # noqa: E712


def test_firmware_filter_vs_scipy_on_micropython(tmp_path, monkeypatch):
    """The viper kernel on the i386 port against scipy.signal.lfilter (float Butterworth)."""
    x = _test_signals(12000)
    ref = np.stack([filter_design.reference(x[:, c]) for c in range(3)], 1)
    raw = np.zeros((len(x), 4), np.int32)
    raw[:, :3] = x << 7             # the test calibration is 1 unit per 128 counts
    assert (np.abs(x << 7) < kernels.SAT_HI).all()
    p = tmp_path / "ref.bin"
    with open(p, "wb") as f:
        f.write(raw.astype("<i4").tobytes())
        f.write(np.round(ref * 1000).astype("<i4").tobytes())
    for k, v in dict(OIMON_REF=p, OIMON_N=len(x), OIMON_TOL=int(0.001 * FS_UNITS),
                     OIMON_SKIP=0).items():
        monkeypatch.setenv(k, str(v))
    ok, out = run_mp_test(ROOT / "tests" / "firmware" / "mp_dsp.py", "check_scipy_reference")
    assert ok, out


# ---- model == firmware ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cal():
    return profiles.default_calibration()


def _compare(raw, cal, limits=None, bw=kernels.BW_DEFAULT, segment=4096):
    y, ev = replayer.replay(raw, cal, limits, bw, segment=segment)
    out, fev, fact = fwrun.firmware_replay(raw, cal, limits, bw)
    assert out.shape[0] == raw.shape[0]
    bad = np.argwhere(out[:, :3] != y)
    assert len(bad) == 0, ("filtered samples differ", bad[:5])
    assert ev == fev, ("events differ", ev[:5], fev[:5])
    rp = replayer.Replayer(cal, limits, bw)
    rp.feed(raw)
    act = rp.activity()
    assert act == fact, (act, fact)
    return y, ev, act


EXPECT = {   # scenario: (overloads, falls)
    "walking": (0, 0), "overload": (1, 0), "moment_overload": (1, 0), "fall": (None, 1),
    "stumble": (0, 0), "stumble_stand": (0, 0), "sitting": (0, 0), "plop": (0, 0),
    "stairs": (0, 0)}


@pytest.mark.parametrize("name", profiles.PROFILES)
def test_scenarios_firmware_equals_model(name, cal):
    f, marks = profiles.profile(name)
    raw = profiles.forces_to_raw(f, cal)
    y, ev, act = _compare(raw, cal)
    starts = [e for e in ev if e["event"] == "overload_start"]
    falls = [e for e in ev if e["event"] == "fall"]
    n_ovl, n_fall = EXPECT[name]
    if n_ovl is not None:
        assert len(starts) == n_ovl, (name, ev)
    assert len(falls) == n_fall, (name, ev)
    assert not [e for e in ev if e["event"].startswith("fault")]
    if name in ("stumble", "stumble_stand", "stairs"):
        assert act["impacts"] >= 1              # a real impact candidate that recovered
    if name == "fall":
        e = falls[0]
        # four phases in order, impact near the profile's impact, decision within 2 s
        assert e["t_load"] < e["t_desc"] < e["t_imp"] < e["t_dec"]
        assert marks["loading"] - 100 <= e["t_load"] <= marks["loading"] + 200
        assert marks["descent"] - 100 <= e["t_desc"] <= marks["descent"] + 50
        assert marks["impact"] <= e["t_imp"] <= marks["impact"] + 40
        assert e["t_dec"] - e["t_imp"] < 2000
        assert e["pk_rate"] >= 15000 and e["pk_ax"] >= 1.2 * 7355
    if name == "overload":
        e = starts[0]
        assert e["which"] & 1 and e["pk_ax"] > 18000
        end = [x for x in ev if x["event"] == "overload_end"][0]
        assert end["trunc"] == 0 and 250 < end["dur"] < 450
    if name == "moment_overload":
        assert starts[0]["which"] == 4


def test_alarm_onset_within_debounce_plus_10ms(cal):
    """The overload start is reported on the sample the debounce completes: first MEASURED
    (calibrated, unfiltered) sample over the limit + debounce - 1 (docs/algorithm.md 5.2); the
    filtered value crosses later (the filter's group delay no longer adds to the alarm)."""
    f, marks = profiles.profile("overload")
    raw = profiles.forces_to_raw(f, cal)
    rp = replayer.Replayer(cal)
    x = replayer.Replayer(cal)._signal(0, raw)[3]
    y, ev = rp.feed(raw)
    first = int(np.argmax(x[:, 0] > 18000))
    assert (x[first:first + 20, 0] > 18000).all()
    e = [x for x in ev if x["event"] == "overload_start"][0]
    assert e["start"] == first and e["n"] == first + 20 - 1
    assert int(np.argmax(y[:, 0] > 18000)) > first


def test_faults_firmware_equals_model(cal):
    f, _ = profiles.profile("walking")
    raw = profiles.forces_to_raw(f[:30000], cal)
    raw[5000:5300, 0] = kernels.SAT_HI                     # saturation
    raw[9000:9400, 1] = 0x7F2000                         # open bridge: raw at the rail
    raw[13000:13500, 2] = raw[13000, 2]                  # stuck output
    raw[17000:17005, 0] = kernels.SAT_LO                   # too short to raise a fault
    y, ev, act = _compare(raw, cal)
    faults = [e for e in ev if e["event"] == "fault"]
    assert [e["raised"] for e in faults] == [5009, 9009, 13063], faults
    assert all(e["raised"] - s < 100 for e, s in zip(faults, (5000, 9000, 13000)))
    assert len([e for e in ev if e["event"] == "fault_clear"]) == 3
    assert act["faults"] == 3 and act["invalid"] >= 300 + 400 + 500 - 200


def test_uncalibrated_firmware_equals_model(tmp_path, cal):
    f, _ = profiles.profile("overload")
    raw = profiles.forces_to_raw(f, cal)
    y, ev = replayer.replay(raw, None)
    out, fev, fact = fwrun.firmware_replay(raw, None)
    assert (out[:, :4] == 0).all() and (out[:, 4] & kernels.FL_UNCAL).all()
    assert (y == 0).all() and ev == fev == []
    assert fact["valid"] == 0 and fact["invalid"] == len(raw)


def test_other_limits_and_body_weight_firmware_equals_model(cal):
    f, _ = profiles.profile("stairs", bw_n=900.0)
    raw = profiles.forces_to_raw(f, cal, seed=5)
    lim = kernels.phase_limits(kernels.PHASE_II, 9000)
    y, ev, act = _compare(raw, cal, lim, 9000)
    assert len([e for e in ev if e["event"] == "overload_start"]) >= 10   # phase II: 100 % BW


def test_model_is_independent_of_block_size(cal):
    f, _ = profiles.profile("fall")
    raw = profiles.forces_to_raw(f, cal)
    raw[3000:3100, 0] = kernels.SAT_HI
    ref_y, ref_ev = replayer.replay(raw, cal, segment=len(raw))
    for seg in (1, 7, 333, 1000, 4097):
        if seg == 1:
            rp = replayer.Replayer(cal)
            ys = [rp.feed(raw[i:i + 1])[0] for i in range(0, 2500)]
            assert (np.vstack(ys) == ref_y[:2500]).all()
            continue
        y, ev = replayer.replay(raw, cal, segment=seg)
        assert (y == ref_y).all() and ev == ref_ev, seg


def test_model_kernel_word_layout_is_the_firmwares():
    """The model's kernel indexes the firmware's state/config words (dsp k[]/st[], detect
    cfg[]/st[]/ev[]/act[]) with the generated indices; the filter table is the shared one."""
    for name, i in kernels.CFG.items():
        assert FW["CFG_" + name.upper()] == i, name
    assert len(kernels.CFG) == FW["CFG_N"] - 1                # 22 is unused
    assert (FW["EV_FALL_BASE"], FW["EV_FAULT_BASE"]) == (kernels._FB, kernels._XB)
    assert kernels.EV_N == 64 == FW["EV_N"] and kernels.ACT_N == FW["ACT_N"]
    for fc, co in filter_design.firmware_table().items():
        assert kernels.coefficients(fc) == co, fc


def test_model_stream_equals_sequential_feed(cal):
    """Replayer.stream (dsp and detection stages in two threads) == feed() block by block:
    same filtered samples, events and activity, raw and calibrated input."""
    f, _ = profiles.profile("fall")
    raw = profiles.forces_to_raw(f, cal)
    raw[3000:3100, 0] = kernels.SAT_HI
    raw[9000:9200, 2] = raw[9000, 2]
    seq = replayer.Replayer(cal)
    blocks = [raw[a:a + 1500] for a in range(0, len(raw), 1500)]
    ref = [seq.feed(b) for b in blocks]
    par = replayer.Replayer(cal)
    got = list(par.stream(iter(blocks), ahead=1))
    assert len(got) == len(ref)
    for (y0, e0), (y1, e1) in zip(ref, got):
        assert np.array_equal(y0, y1) and e0 == e1
    assert par.events == seq.events and len(seq.events) >= 4
    assert par.activity() == seq.activity()
    y = np.vstack([r[0] for r in ref])
    a, b = replayer.Replayer(cal), replayer.Replayer(cal)
    ya = np.vstack([a.feed_calibrated(y[i:i + 999])[0] for i in range(0, len(y), 999)])
    yb = np.vstack([v for v, _ in b.stream((y[i:i + 2000] for i in range(0, len(y), 2000)),
                                           calibrated=True)])
    assert np.array_equal(ya, yb) and a.events == b.events and a.activity() == b.activity()


# ---- calibration file on CPython (the host reads the same file) ----------------------------------
def test_calibration_file_cpython(tmp_path):
    c = profiles.default_calibration()
    p = str(tmp_path / "cal.bin")
    calib.save(p, c)
    assert calib.load(p) == c
    assert len(open(p, "rb").read()) == calib.FILE_LEN == 76
    g = np.array(c.gains())
    assert abs(g[0, 0] - 0.00596) <= 2.0 ** -(c.shifts[0] + 1)      # half an LSB of Q(shift)
    data = bytearray(open(p, "rb").read())
    data[30] ^= 1
    open(p, "wb").write(bytes(data))
    assert calib.load(p) is None and calib.last_error == "crc"
    os.remove(p)
    assert calib.load(p) is None and calib.last_error == "missing"


# ---- real walks ---------------------------------------------------------------------------------
def test_gaitpdb_walks_no_overload_no_fall(gaitpdb, cal):
    """Each of the five gaitpdb control walks, left and right foot as the prosthetic side:
    axial = total foot force resampled 100 Hz -> 1 kHz (resample_poly 10/1), moments
    proportional (levers 0.028 m AP, 0.021 m ML), 75 kg patient, default (full) limits:
    no overload, no fall; firmware == model."""
    files = sorted(gaitpdb.glob("GaCo*_01.txt"))
    assert len(files) == 5
    total = 0
    for i, path in enumerate(files):
        for col in (17, 18):
            f = profiles.gait_forces(path, col)
            raw = profiles.forces_to_raw(f, cal, seed=i * 2 + col)
            y, ev, act = _compare(raw, cal, segment=50000)
            bad = [e for e in ev if e["event"] in ("overload_start", "fall")]
            assert bad == [], (path.name, col, bad[:3])
            assert [e for e in ev if e["event"] == "fault"] == [], (path.name, col)
            assert act["steps"] > 50 and act["pk_ax"] > 9000      # real walking, > 900 N
            total += len(raw)
    assert total > 10 * 100000


# ---- benchmark functions (figures only; no timing is asserted) ---------------------------------
def test_bench_functions_return_figures():
    from oimon_sim import bench_hotpath as b
    h = b.hot_path_us_per_sample(n=3000, reps=1)
    assert h["hot_path_us_per_sample"] > 0 and h["samples"] == 3000
    assert b.alloc_bytes_per_sample(n=10000)["alloc_bytes_total"] == 0
    s = b.hot_path_speedup_vs_float(n=2000, reps=1)
    assert s["hot_path_speedup_vs_float"] > 0
    e = b.esp32_cpu_load_estimate(h)
    assert 0 < e["kernels_cpu_pct_low"] <= e["kernels_cpu_pct_high"]
