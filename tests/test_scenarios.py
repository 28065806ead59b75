"""Scenarios: shapes inside the published envelopes (docs/sim.md), ground truth, sensor faults on
raw counts, deterministic and chunked generation."""
import hashlib

import numpy as np
import pytest

from oimon import recording
from oimon.cli import main
from oimon_sim import scenarios as S
from oimon_sim import sensor

BW75_N = 75 * 9.81


def _n(load):
    return load[:, 0] / 10.0, np.hypot(load[:, 1], load[:, 2]) / 100.0


def test_every_scenario_has_the_interface():
    for name, fn in S.SCENARIOS.items():
        dur = 800 if name == "day" else 30
        load, tr = fn(dur, 1000, 75)
        assert load.shape == (dur * 1000, 3), name
        assert np.isfinite(load).all()
        assert tr, name
        for d in tr:
            assert d["kind"] == "truth" and 0 <= d["start"] <= d["end"] <= len(load), (name, d)
            assert isinstance(d["expect"], list) and isinstance(d["allow"], list)
        assert S.describe(name)


def test_walk_inside_the_opra_envelope():
    load, tr = S.walk(60, 1000, 75, seed=1)
    ax, m = _n(load)
    assert 498 <= np.percentile(ax, 99.9) <= 684          # OPRA walking peaks, resultant force
    assert 26.5 <= np.percentile(m, 99.9) <= 39.8         # OPRA walking bending
    rate = np.diff(ax).max() * 1000 / 1000                # kN/s
    assert 4.0 < rate < 8.0                               # ~5.6 kN/s loading rate
    assert tr[0]["label"] == "walk" and tr[0]["cadence_spm"] == 100 and 45 <= tr[0]["strides"] <= 55
    assert ax.min() < 0                                   # swing tension


def test_walk_cadence_and_speed():
    load, tr = S.walk(60, 1000, 75, cadence_spm=120, speed_mps=1.5)
    assert tr[0]["speed_mps"] == 1.5 and 55 <= tr[0]["strides"] <= 65
    fast = np.percentile(load[:, 0], 99.9)
    slow = np.percentile(S.walk(60, 1000, 75, cadence_spm=80)[0][:, 0], 99.9)
    assert fast > slow


@pytest.mark.parametrize("name", ["stairs_up", "stairs_down", "sit_to_stand", "static_loading",
                                  "stumble", "stand", "sit"])
def test_daily_activities_below_the_daily_maximum(name):
    load, tr = S.SCENARIOS[name](60, 1000, 75, seed=2)
    ax, m = _n(load)
    assert ax.max() <= 1.61 * BW75_N                     # 161 % BW daily-activity maximum
    assert m.max() <= 88                                  # 88 N*m daily-activity maximum
    assert all(d["expect"] == [] for d in tr)            # nothing to report


def test_stairs_down_loads_more_than_up():
    up = S.SCENARIOS["stairs_up"](60, 1000, 75)[0]
    down = S.SCENARIOS["stairs_down"](60, 1000, 75)[0]
    assert np.percentile(down[:, 0], 99.5) > 1.1 * np.percentile(up[:, 0], 99.5)
    assert np.percentile(down[:, 0], 99.5) > np.percentile(S.walk(60)[0][:, 0], 99.5)


def test_static_loading_holds_the_target():
    load, tr = S.static_loading(120, 1000, 75, target_kg=20, hold_s=15)
    assert len(tr) >= 3
    for d in tr:
        mid = load[d["start"] + 4000:d["end"] - 4000, 0] / 10 / 9.81
        assert abs(np.median(mid) - 20) < 1.0
        assert mid.min() > 16 and mid.max() < 24


@pytest.mark.parametrize("direction", list(S.FALL_DIRECTION))
@pytest.mark.parametrize("severity", list(S.FALL_SEVERITY))
def test_fall_four_phases(direction, severity):
    load, tr = S.fall(20, 1000, 75, seed=4, direction=direction, severity=severity)
    f = [d for d in tr if d["label"] == "fall"][0]
    ph = f["phases"]
    assert f["start"] == ph["loading"] < ph["descent"] < ph["impact"] < ph["recovery"] < f["end"]
    assert f["expect"] == ["fall"] and f["direction"] == direction
    ax, m = _n(load)
    # descent: the limb unloads
    assert load[ph["impact"] - 50:ph["impact"], 0].max() < 0.2 * BW75_N * 10
    # impact: inside the femur failure envelope; above a medium fall's loading phase
    imp = slice(ph["impact"], ph["recovery"])
    assert ax.max() < 2768
    if severity != "low":
        assert ax[imp].max() == ax.max()
    assert m[imp].max() < 138
    ch, sg = S.FALL_DIRECTION[direction]
    assert sg * load[imp, ch][np.argmax(np.abs(load[imp, ch]))] > 0
    assert np.abs(load[imp, ch]).max() > np.abs(load[imp, 3 - ch]).max()
    # recovery: lying, then standing again
    assert np.abs(load[ph["recovery"] + 1000:ph["recovery"] + 5000, 0]).max() < 0.1 * BW75_N * 10
    assert abs(np.median(load[-1000:, 0]) / 10 - 0.45 * BW75_N) < 30


def test_fall_severity_orders_impacts():
    peaks = [S.fall(20, severity=s)[0][:, 0].max() for s in ("low", "medium", "high")]
    assert peaks[0] < peaks[1] < peaks[2]
    m_high = np.abs(S.fall(20, severity="high")[0][:, 1]).max() / 100
    assert 100.4 - 38.5 < m_high < 138                    # within the cadaver failure band


def test_overload_between_daily_max_and_failure():
    load, tr = S.overload(15, 1000, 75, seed=5)
    d = [d for d in tr if d["label"] == "overload"][0]
    assert d["expect"] == ["overload"]
    pk = load[d["start"]:d["end"], 0].max() / 10
    assert 1322 < pk < 2768
    assert load[:, 0].argmax() in range(d["start"], d["end"])


def test_unknown_parameters_are_errors():
    with pytest.raises(S.ScenarioError):
        S.fall(20, direction="up")
    with pytest.raises(S.ScenarioError):
        S.fall(5)                                        # too short for the four phases
    with pytest.raises(S.ScenarioError):
        S.day_plan(100)


def _raw_of(name, **kw):
    out = list(S.generate(name, 30, 1000, 75, 0, raw=True, noise=False, **kw))
    raw = np.concatenate([r for _, r, _ in out])
    tr = [d for _, _, t in out for d in t]
    return raw, [d for d in tr if d["label"].startswith("fault_")][0]


def test_faults_act_on_raw_counts():
    raw, d = _raw_of("fault_open")
    assert (raw[d["start"]:d["end"], d["channel"]] == sensor.ADC_MAX).all()
    assert (raw[:d["start"], d["channel"]] < sensor.ADC_MAX // 2).all()
    raw, d = _raw_of("fault_stuck")
    seg = raw[d["start"]:d["end"], d["channel"]]
    assert (seg == seg[0]).all() and len(seg) == 10000
    raw, d = _raw_of("fault_saturation")
    seg = raw[d["start"]:d["end"], d["channel"]]
    assert 0.2 < np.mean(seg == sensor.ADC_MAX) < 0.6
    clean = np.concatenate([r for _, r, _ in S.generate("walk", 30, 1000, 75, 0, raw=True,
                                                         noise=False)])
    raw, d = _raw_of("fault_drift")
    diff = raw[:, 0].astype(np.int64) - clean[:, 0]
    assert (diff[:d["start"]] == 0).all()
    assert diff[-1] == pytest.approx(d["drift_counts_per_s"] * (d["drift_end"] - d["start"]) / 1000, abs=1)
    assert (np.diff(diff[d["start"]:]) >= 0).all()


def test_day_plan_covers_everything():
    plan = S.day_plan(86400, seed=0)
    assert sum(t for _, t, _, _ in plan) == pytest.approx(86400)
    names = {p[0] for p in plan}
    assert {"walk", "stairs", "sit_to_stand", "static_loading", "stumble", "fall", "overload",
            "sensor_fault", "doffed", "sit", "stand"} <= names
    faults = {p[2]["fault"] for p in plan if p[0] == "sensor_fault"}
    assert faults == set(S.FAULTS)
    walking_h = sum(t for n, t, _, _ in plan if n == "walk") / 3600
    assert 0.5 < walking_h < 3


def test_day_streams_in_bounded_pieces_with_every_label():
    labels = set()
    at = 0
    for first, rows, tr in S.generate("day", 3600, 1000, 75, seed=1):
        assert first == at and rows.shape[1] == 4 and rows.dtype == np.int32
        assert len(rows) <= S.SEGMENT_S * 1000 + 1
        labels |= {d["label"] for d in tr}
        at += len(rows)
    assert at == 3600 * 1000
    assert {"walk", "stairs_up", "stairs_down", "sit_to_stand", "static_loading", "stumble",
            "fall", "overload", "fault_open", "fault_saturation", "fault_stuck",
            "fault_drift", "rest"} <= labels


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_same_seed_same_bytes(tmp_path):
    a, b, c = tmp_path / "a.oimrec", tmp_path / "b.oimrec", tmp_path / "c.oimrec"
    for p, seed in ((a, 7), (b, 7), (c, 8)):
        assert main(["sim", "generate", "--scenario", "day", "--duration", "900", "--seed",
                     str(seed), "--out", str(p)]) == 0
    assert _sha(a) == _sha(b) != _sha(c)
    for p, seed in ((a, 3), (b, 3)):
        assert main(["sim", "generate", "--scenario", "fall", "--duration", "20", "--seed",
                     str(seed), "--set", "direction=left", "--out", str(p)]) == 0
    assert _sha(a) == _sha(b)


def test_generate_writes_truth_and_samples(tmp_path, capsys):
    p = tmp_path / "o.oimrec"
    assert main(["sim", "generate", "--scenario", "overload", "--duration", "12", "--seed", "1",
                 "--body-weight", "90", "--out", str(p)]) == 0
    header, index, samples, events, err = recording.load(p)
    assert err is None and header["kind"] == "calibrated" and header["body_weight_kg"] == 90
    assert header["scenario"] == "overload" and header["seed"] == 1 and header["rate_hz"] == 1000
    assert len(samples) == 12000 and np.array_equal(index, np.arange(12000))
    ov = [e for e in events if e["kind"] == "truth" and e["label"] == "overload"]
    assert len(ov) == 1
    assert samples[ov[0]["start"]:ov[0]["end"], 0].max() / 10 > 2.3 * 90 * 9.81
    # raw on request, and always for fault scenarios: the header carries the calibration
    assert main(["sim", "generate", "--scenario", "fault_stuck", "--duration", "30",
                 "--out", str(p)]) == 0
    h, _, raw, _, _ = recording.load(p)
    assert h["kind"] == "raw" and raw.shape[1] == 4
    gain, off = np.array(h["calibration"]["gain"]), np.array(h["calibration"]["offset"])
    load = (raw[:100, :3] - off) @ gain.T
    assert np.abs(load[:, 0]).max() < 200                 # standing start, device units


@pytest.mark.parametrize("argv, msg", [
    (["--scenario", "nope", "--duration", "10"], "unknown scenario"),
    (["--scenario", "walk", "--duration", "-1"], "out of range"),
    (["--scenario", "walk", "--duration", "ten"], "not a number"),
    (["--scenario", "fall", "--duration", "5"], "needs at least"),
    (["--scenario", "fall", "--duration", "30", "--set", "direction=up"], "direction"),
    (["--scenario", "walk", "--duration", "10", "--set", "wings=2"], "wings"),
    (["--scenario", "day", "--duration", "100"], "day needs"),
    (["--scenario", "walk", "--duration", "10", "--body-weight", "5"], "out of range"),
])
def test_generate_user_errors(tmp_path, capsys, argv, msg):
    out = tmp_path / "x.oimrec"
    assert main(["sim", "generate"] + argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
