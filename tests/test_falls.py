"""Falls however they happen (docs/algorithm.md 5.4, 5.7): the firmware's fused detector on the
i386 MicroPython equals the bit-exact model sample for sample, with IMU rows handed over late in
batches as the device's main loop does; every fall kind of the scenarios is caught and the quiet
ones stay quiet; the real UMAFall thigh accelerations (../shared/data/umafall, accelerometer
only, no load) through the inertial path; IMU recordings and `oimon import` of such files."""
import csv
import gzip
import importlib.util

import numpy as np
import pytest

from oimon import recording
from oimon.cli import main
from oimon.imu_import import read_imu_file
from oimon_sim import fall_kernels as fk, fwrun, replay, replayer, scenarios
from oimon_sim.generate import generate_recording
from oimon_sim.paths import ROOT

UMAFALL = ROOT.parent / "shared" / "data" / "umafall"


def _gen_tool():
    spec = importlib.util.spec_from_file_location("gen_fw_tables", ROOT / "tools" / "gen_fw_tables.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def test_inertial_word_layout_is_the_firmwares():
    c = {name: v for name, v, _ in _gen_tool().constants(ROOT / "firmware" / "imufall.py")}
    for name in ("_PREV", "_G", "_GINIT", "_BT0", "_CH", "_TF", "_TL", "_CPK", "_PRE", "_CPKW",
                 "_CFF", "_SOFT", "_TS", "_SPRE", "_LASTFF", "_HAVEFF", "_LASTIF", "_HAVEIF",
                 "_SUM", "_RING", "_SRUN", "_KRUN", "_CRUN", "_FAULT"):
        assert c[name] == getattr(fk, name), name
    assert (c["ST_CNT"], c["ST_BI"], c["ST_SSEQ"]) == (fk._CNT, fk._BI, fk._SSEQ)
    assert c["_S_N"] == fk.S_N and c["C_N"] == fk.C_N and c["_EB"] == fk.EB
    cfg = [k for k in c if k.startswith("C_") and k != "C_N"]
    assert len(cfg) == fk.C_N and all(getattr(fk, k) == c[k] for k in cfg)
    assert all(c[k] == getattr(fk, k) for k in ("IF_GAP", "IF_NOGYRO", "EV_FALL_IMU",
                                                 "EV_IMU_FAULT", "EV_IMU_CLEAR"))


def _rec(tmp_path, name, dur, **params):
    p = tmp_path / ("%s.oimrec" % name)
    generate_recording(p, name, dur, seed=3, params=params, raw=True)
    header, index, raw, _, _ = recording.load(p)
    return p, header, raw, recording.load_imu(p)


def _key(evs):
    return sorted((e["n"], e["event"], tuple(sorted((k, v) for k, v in e.items()
                                                   if k not in ("n", "event")))) for e in evs)


CASES = [("fall", 22, {"severity": "low"}), ("slide_down", 26, {"limb_bw": 0.4}),
         ("fall_other", 22, {"direction": "right"}), ("stairs", 40, {}),
         ("sit_to_stand", 30, {}), ("stumble", 14, {})]


@pytest.mark.parametrize("name,dur,params", CASES)
def test_fused_firmware_equals_model(tmp_path, name, dur, params):
    p, header, raw, imu = _rec(tmp_path, name, dur, **params)
    assert header["version"] == 3 and len(imu) > 100
    cal, _ = replay.calibration_for(header)
    y, ev = replayer.replay(raw, cal, imu_rows=imu, segment=5000)
    out, fev, fact = fwrun.firmware_replay(raw, cal, imu_rows=imu, imu_batch=97)
    assert np.array_equal(out[:, :3], y)
    assert _key(ev) == _key(fev)
    falls = [e for e in ev if e["event"] == "fall"]
    want = 1 if name in ("fall", "slide_down", "fall_other") else 0
    assert len(falls) == want, ev
    if name == "slide_down":
        assert falls[0]["path"] == "imu" and falls[0]["source"] == 6
    if name == "fall_other":
        assert falls[0]["path"] == "imu" and falls[0]["source"] == 2


def test_imu_with_the_load_channel_faulty_still_raises_the_fall(tmp_path):
    p, header, raw, imu = _rec(tmp_path, "fall_other", 22)
    raw = raw.copy()
    raw[:, 0] = 0x7FFFFF                                 # axial bridge open: load invalid
    cal, _ = replay.calibration_for(header)
    _, ev = replayer.replay(raw, cal, imu_rows=imu)
    assert [e["event"] for e in ev if e["event"] != "fault"] == ["fall"]
    assert ev[-1]["path"] == "imu" and ev[-1]["valid"] == 0


def test_every_fall_kind_caught_and_quiet_cases_quiet(tmp_path):
    """The scenarios through `oimon sim metrics` (the fused model): every fall kind and
    direction detected, no false fall in walking, stairs, sitting down, stumbles, jumps."""
    from oimon_sim import metrics
    paths = []
    k = 0
    for name, dur, params in [("fall", 22, {"direction": d, "severity": s})
                              for d in scenarios.FALL_DIRECTION for s in ("low", "high")] + \
            [("slide_down", 26, {"limb_bw": b}) for b in (0.3, 0.7)] + \
            [("fall_other", 22, {"direction": d}) for d in scenarios.FALL_DIRECTION] + \
            [("walk", 120, {}), ("stairs", 90, {}), ("sit_to_stand", 60, {}),
             ("stumble", 14, {}), ("overload", 14, {}), ("static_loading", 60, {})]:
        p = tmp_path / ("r%d.oimrec" % k)
        k += 1
        generate_recording(p, name, dur, seed=k, params=params)
        paths.append(p)
    m = metrics.evaluate_files(paths)
    for lab in ("fall", "slide_down", "fall_other"):
        assert m["labels"][lab]["sensitivity"] == 1.0, (lab, m["labels"][lab])
    assert [e for e in m["false_list"] if e["kind"] == "fall"] == []
    fk_ = m["falls"]
    assert fk_["by_kind"]["slide_down"]["detected"] == 2
    assert set(fk_["by_direction"]) >= set(scenarios.FALL_DIRECTION)
    assert fk_["false_falls"] == 0


def test_umafall_inertial_path_sensitivity_and_specificity():
    assert UMAFALL.exists(), "../shared/data/umafall must be beside the clone (it is in CI)"
    from oimon_sim import bench_falls
    r = bench_falls.umafall()
    assert r["files"] == 392
    assert r["sensitivity"] >= 0.95 and r["specificity"] >= 0.95, r
    assert set(r["by_direction"]) == {"forwardFall", "backwardFall", "lateralFall"}


def test_umafall_firmware_equals_model():
    assert UMAFALL.exists(), "../shared/data/umafall must be beside the clone (it is in CI)"
    files = ["S02_Fall_forwardFall_1.csv.gz", "S04_Fall_lateralFall_2.csv.gz",
             "S05_ADL_Sitting_GettingUpOnAChair_1.csv.gz", "S01_ADL_MakingACall_1.csv.gz"]
    for f in files:
        rows, info = read_imu_file(UMAFALL / f)
        n = int(rows[-1, 0]) + 1
        rp = replayer.Replayer(None)
        _, ev = rp.feed_missing(n, rows)
        raw = np.zeros((n, 4), np.int32)
        raw[:, 0] = np.arange(n) & 7                      # not stuck; uncalibrated anyway
        _, fev, _ = fwrun.firmware_replay(raw, None, imu_rows=rows, imu_batch=250)
        a = [(e["n"], e["event"], e.get("pk_acc")) for e in ev if e["event"] == "fall"]
        b = [(e["n"], e["event"], e.get("pk_acc")) for e in fev if e["event"] == "fall"]
        assert a == b, f


def test_recording_v1_still_reads_and_v2_carries_imu(tmp_path):
    v1 = tmp_path / "v1.oimrec"
    with recording.Writer(v1, {"rate_hz": 1000}) as w:
        w.write(0, np.zeros((10, 3), np.int32))
    assert v1.read_bytes()[:8] == recording.MAGIC and recording.Reader(v1).version == 1
    h, idx, s, ev, err = recording.load(v1)
    assert err is None and len(s) == 10 and len(recording.load_imu(v1)) == 0
    with pytest.raises(Exception):
        with recording.Writer(tmp_path / "x.oimrec", {"rate_hz": 1000}) as w:
            w.imu(0, np.zeros((2, 8), np.int32))
    v2 = tmp_path / "v2.oimrec"
    rows = np.arange(80, dtype=np.int32).reshape(10, 8)
    rows[:, 4:7] = recording.MISSING
    with recording.Writer(v2, {"rate_hz": 1000, "imu": recording.imu_header(104, ["gyro"])}) as w:
        w.imu(0, rows)
        w.write(0, np.zeros((10, 3), np.int32))
    assert recording.Reader(v2).version == recording.IMU_VERSION == 3
    assert np.array_equal(recording.load_imu(v2), rows)
    h, idx, s, ev, err = recording.load(v2)
    assert err is None and len(s) == 10 and h["imu"]["missing"] == ["gyro"]


def test_import_umafall_file_and_export(tmp_path, capsys):
    src = tmp_path / "u.csv.gz"
    t = np.arange(0, 3.0, 0.005)
    t[5:9] = t[5]                                        # repeated arrival stamps
    lines = ["t_s,ax_g,ay_g,az_g"] + ["%.3f,%.4f,%.4f,%.4f" % (x, 0.01 + 0.002 * (i % 3), -0.98, 0.2)
                                      for i, x in enumerate(t)]      # a live sensor's noise
    src.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    out = tmp_path / "u.oimrec"
    assert main(["import", str(src), "--imu", "--out", str(out)]) == 0
    h, idx, s, ev, err = recording.load(out)
    assert h["load"] == "missing" and len(s) == 0 and h["imu"]["missing"][:3] == ["gyro_x", "gyro_y", "gyro_z"]
    assert "evenly spaced" in h["import"]["resampling"]
    rows = recording.load_imu(out)
    assert len(rows) == int(2.995 * 104) + 1
    assert (rows[:, 4:7] == recording.MISSING).all() and (rows[:, 7] & 2).all()
    assert abs(rows[10, 2] + 980) <= 1 and abs(rows[10, 1] - 12) <= 3     # mg
    res = replay.replay_file(out)
    assert res["events"] == []
    csvp = tmp_path / "u.csv"
    assert main(["export", "csv", str(out), "--imu", "--out", str(csvp)]) == 0
    got = list(csv.reader(open(csvp)))
    assert got[0][:5] == ["imu_sample", "t_s", "acc_x_g", "acc_y_g", "acc_z_g"]
    assert got[1][5] == "" and float(got[11][3]) == pytest.approx(-0.98, abs=0.002)
    bad = tmp_path / "bad.csv"
    bad.write_text("t_s,ax_g,ay_g,az_g\n0,1,2\n")
    capsys.readouterr()
    assert main(["import", str(bad), "--imu", "--out", str(tmp_path / "b.oimrec")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "b.oimrec").exists()
