"""Replay through the bit-exact model of the firmware, metrics against the ground truth, sweeps, and
the virtual device streaming without gaps."""
import csv
import json

import numpy as np
import pytest

from oimon import recording
from oimon.cli import main
from oimon_sim.generate import generate_recording
from oimon_sim import bench_sim, metrics, replay, replayer, sweep


@pytest.fixture(scope="module")
def recs(tmp_path_factory):
    d = tmp_path_factory.mktemp("recs")
    out = {}
    for name, dur, params in (("overload", 12, {}), ("fall", 20, {"severity": "high"}),
                              ("walk", 60, {}), ("stumble", 12, {}),
                              ("day", 900, {})):
        p = d / ("%s.oimrec" % name)
        generate_recording(p, name, dur, seed=2, params=params)
        out[name] = p
    return out


def test_overload_is_replayed_at_its_truth(recs):
    res = replay.replay_file(recs["overload"])
    ov = [t for t in res["truth"] if t["label"] == "overload"][0]
    starts = [e for e in res["events"] if e["kind"] == "overload_start"]
    assert len(starts) == 1
    assert ov["start"] <= starts[0]["sample"] < ov["end"]
    assert starts[0]["pk_ax"] > res["config"]["active_limits"]["comp"]
    assert res["samples"] == 12000 and res["errors"] == []


def test_calibrated_input_equals_the_sensor_round_trip(recs):
    """A calibrated recording replayed directly == the same values turned into raw counts by
    the simulated sensor and calibrated back. The round trip uses a noise-free SensorModel
    (noise_counts=0; the default sensor has DEFAULT_NOISE = 140 counts rms of ADC noise, which
    would add ~2.5 N to every sample): what is left is the rounding to counts and the
    calibration's fixed point, at most 1 unit after the filter."""
    header = recording.load(recs["fall"])[0]
    assert replay.calibration_for(header)[1].noise == 0
    for name in ("fall", "overload"):
        a = replay.replay_file(recs[name], keep_filtered=True)
        b = replay.replay_file(recs[name], keep_filtered=True, round_trip=True)
        assert [(e["kind"], e["sample"]) for e in a["events"]] == \
            [(e["kind"], e["sample"]) for e in b["events"]]
        assert np.abs(a["filtered"].astype(np.int64) - b["filtered"]).max() <= 1


def test_streamed_replay_equals_the_whole_array_model(recs, monkeypatch):
    header, index, raw, _, err = recording.load(recs["day"])
    assert header["kind"] == "raw" and err is None
    cal, _ = replay.calibration_for(header)
    conf = replay.resolve_config(None, header)
    y_ref, ev_ref = replayer.replay(raw, cal, replay.detector_limits(conf),
                                 replay.body_weight_units(conf),
                                 imu_rows=recording.load_imu(recs["day"]))
    monkeypatch.setattr(replayer, "SEGMENT", 100000)  # other block boundaries than replayer.replay
    res = replay.replay_file(recs["day"], keep_filtered=True)
    assert np.array_equal(res["filtered"], y_ref)
    assert [(e["kind"], e["sample"]) for e in res["events"]] == \
        [(e["event"], e["n"]) for e in ev_ref]


def test_sample_indices_follow_the_recording(tmp_path, recs):
    """A recording that starts at sample 5000 (as `oimon record` writes): events keep its indices."""
    _, index, s, ev, _ = recording.load(recs["overload"])
    p = tmp_path / "shifted.oimrec"
    with recording.Writer(p, {"rate_hz": 1000}) as w:
        w.write(5000, s)
    a = replay.replay_file(recs["overload"])["events"]
    b = replay.replay_file(p)["events"]
    assert [e["sample"] + 5000 for e in a] == [e["sample"] for e in b]


def test_metrics_rules():
    truth = [{"kind": "truth", "label": "fall", "start": 1000, "end": 3000, "impact": 2000,
              "expect": ["fall"], "allow": ["*"]},
             {"kind": "truth", "label": "overload", "start": 5000, "end": 5100,
              "expect": ["overload"], "allow": []},
             {"kind": "truth", "label": "walk", "start": 0, "end": 20000, "expect": [], "allow": []}]
    events = [{"kind": "overload_start", "sample": 1500}, {"kind": "fall", "sample": 3900},
              {"kind": "overload_start", "sample": 5060}, {"kind": "overload_end", "sample": 5200},
              {"kind": "fall", "sample": 9000}]
    m = metrics.combine([metrics.evaluate(events, truth, 1000, 3600 * 1000, tolerance_s=1.0)])
    assert m["labels"]["fall"]["sensitivity"] == 1.0
    assert m["labels"]["fall"]["latency_ms"]["median"] == 1900.0      # from the impact
    assert m["labels"]["overload"]["latency_ms"]["median"] == 60.0
    assert m["false_events"] == 1 and m["false_by_kind"] == {"fall": 1}
    assert m["false_per_24h"] == pytest.approx(24.0)
    assert "walk" not in m["labels"]                                  # nothing to detect
    assert metrics.matches("overload_comp", ["overload"]) and not metrics.matches("overloads", ["overload"])


def test_metrics_on_scenarios(recs, capsys):
    assert main(["sim", "metrics", str(recs["overload"]), str(recs["fall"]), str(recs["walk"]),
                 str(recs["stumble"]), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["labels"]["overload"]["sensitivity"] == 1.0
    assert m["labels"]["fall"]["sensitivity"] == 1.0
    assert m["false_events"] == 0                    # walking and a recovered stumble stay quiet
    assert m["hours"] == pytest.approx((12 + 20 + 60 + 12) / 3600)


def test_real_walking_raises_no_event(gaitpdb, tmp_path):
    """The five gaitpdb control walks (total foot force as axial, resampled to 1 kHz)."""
    paths = []
    for f in sorted(gaitpdb.glob("GaCo*_01.txt")):
        p = tmp_path / (f.stem + ".oimrec")
        assert main(["import", str(f), "--columns", "1,18", "--units", "s,N", "--resample", "1000",
                     "--out", str(p)]) == 0
        paths.append(p)
    assert len(paths) == 5
    m = metrics.evaluate_files(paths)
    assert m["hours"] > 0.15
    assert m["false_events"] == 0, m["false_list"]


def test_sweep_writes_table_and_plot(recs, tmp_path, capsys):
    t, png = tmp_path / "s.csv", tmp_path / "s.png"
    assert main(["sim", "sweep", str(recs["overload"]), str(recs["walk"]), "--param", "comp",
                 "--values", "10000,15000,20000,25000", "--csv", str(t), "--png", str(png)]) == 0
    rows = list(csv.DictReader(t.open()))
    assert [float(r["value"]) for r in rows] == [10000, 15000, 20000, 25000]
    sens = [float(r["sens_overload"]) for r in rows]
    assert sens[0] == 1.0 and sens[-1] == 0.0 and sens == sorted(sens, reverse=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sweep.parse_values("1:3:1") == [1, 2, 3]


def test_replay_cli_json_and_config(recs, tmp_path, capsys):
    assert main(["sim", "replay", str(recs["overload"]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [e["kind"] for e in out["events"]] == ["overload_start", "overload_end"]
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"limits": {"comp": 20000}}))
    assert main(["sim", "replay", str(recs["overload"]), "--config", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert "comp 2000 N" in text and "no events" in text


@pytest.mark.parametrize("what, msg", [
    ("missing", "cannot open"), ("truncated", "at byte"), ("badjson", "not valid JSON"),
    ("badlimit", "out of range"), ("badphase", "phase"),
])
def test_replay_user_errors(recs, tmp_path, capsys, what, msg):
    rec = recs["walk"]
    args = ["sim", "replay", str(rec)]
    if what == "missing":
        args[2] = str(tmp_path / "nope.oimrec")
    elif what == "truncated":
        t = tmp_path / "t.oimrec"
        t.write_bytes(rec.read_bytes()[:100000])
        args[2] = str(t)
    else:
        c = tmp_path / "c.json"
        c.write_text({"badjson": "{", "badlimit": '{"limits": {"comp": -5}}',
                      "badphase": '{"phase": "IV"}'}[what])
        args += ["--config", str(c)]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(args) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if what == "truncated":
        assert main(args + ["--salvage"]) == 0
        assert "warning" in capsys.readouterr().err


def test_virtual_device_streams_without_gaps():
    r = bench_sim.stream_gaps_10min(seconds=10)
    assert r["stream_seq_gaps"] == 0 and r["stream_index_gaps"] == 0
    assert r["stream_samples"] >= 9000
