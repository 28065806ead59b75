"""oimon import / export csv and the user-error contract of the sim commands: one line on stderr,
exit 2, nothing written."""
import json

import numpy as np
import pytest
from scipy.signal import resample_poly

from oimon import recording
from oimon.cli import main
from oimon.csvio import StreamResampler


def _err(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_import_gaitpdb_resampled(gaitpdb, tmp_path, capsys):
    src = gaitpdb / "GaCo01_01.txt"
    out = tmp_path / "g.oimrec"
    assert main(["import", str(src), "--columns", "1,18", "--units", "s,N", "--resample", "1000",
                 "--out", str(out)]) == 0
    assert "imported" in capsys.readouterr().out
    header, index, samples, events, err = recording.load(out)
    assert err is None and header["rate_hz"] == 1000 and header["source"] == "oimon import"
    assert header["import"]["rate_hz"] == 100 and "resample_poly" in header["import"]["resampled"]
    data = np.loadtxt(src)
    force = data[:, 17]
    assert len(samples) == len(force) * 10
    ref = resample_poly(force * 10, 10, 1)               # the whole-signal result
    assert np.abs(samples[:, 0] - np.rint(ref)).max() <= 1
    assert np.abs(samples[::10, 0] / 10 - force).max() < 40  # the 100 Hz samples are kept (within ringing)
    assert samples[:, 1:].max() == 0
    assert 900 < samples[:, 0].max() / 10 < 1400          # README: peaks ~1.0-1.2 kN


def test_import_without_resampling_comma_and_header(tmp_path):
    src = tmp_path / "x.csv"
    src.write_text("time,fz,my\n" + "".join("%.3f,%.1f,%.2f\n" % (i / 500, i * 1.5, -i / 10)
                                             for i in range(2000)))
    out = tmp_path / "x.oimrec"
    assert main(["import", str(src), "--columns", "1,2,3", "--units", "s,kN,N*m",
                 "--channels", "axial,moment_ml", "--out", str(out)]) == 0
    header, index, samples, _, err = recording.load(out)
    assert err is None and header["rate_hz"] == 500 and len(samples) == 2000
    assert samples[100, 0] == 1500000                    # 150 kN in 0.1 N
    assert samples[100, 2] == -1000 and samples[100, 1] == 0


def test_stream_resampler_equals_whole_signal():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5003, 2))
    for up, down in ((10, 1), (1000, 100), (3, 2), (2, 3), (1, 4)):
        rs = StreamResampler(up, down)
        parts = []
        for k in range(0, len(x), 777):
            parts.append(rs.feed(x[k:k + 777]))
        parts.append(rs.finish())
        got = np.concatenate([p for p in parts if p is not None])
        ref = resample_poly(x, up, down, axis=0)
        assert got.shape == ref.shape, (up, down)
        assert np.abs(got - ref).max() < 1e-9, (up, down)


def test_export_csv_round_trip(tmp_path, capsys):
    rec = tmp_path / "w.oimrec"
    assert main(["sim", "generate", "--scenario", "fall", "--duration", "16", "--out", str(rec)]) == 0
    csv, ev = tmp_path / "w.csv", tmp_path / "w.jsonl"
    assert main(["export", "csv", str(rec), "--out", str(csv), "--events", str(ev)]) == 0
    _, index, samples, events, _ = recording.load(rec)
    lines = csv.read_text().splitlines()
    assert lines[0] == "sample,time_s,axial_N,moment_ap_N*m,moment_ml_N*m,clock_utc"
    a = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=range(5))
    assert len(a) == len(samples)
    assert np.array_equal(a[:, 0], index)
    # time from the recording's start, and the clock time of each sample (UTC, ms)
    assert a[0, 1] == 0 and abs(a[-1, 1] - (len(a) - 1) / 1000.0) < 1e-9
    header = recording.load(rec)[0]
    assert lines[1].split(",")[-1] == header["start_time"][:19].replace(" ", "T") + ".000Z"
    assert lines[-1].split(",")[-1].endswith("15.999Z")
    assert np.allclose(a[:, 2], samples[:, 0] * 0.1) and np.allclose(a[:, 3], samples[:, 1] * 0.01)
    assert [json.loads(x) for x in ev.read_text().splitlines()] == events
    # and back in: the same samples
    back = tmp_path / "back.oimrec"
    assert main(["import", str(csv), "--columns", "2,3,4,5", "--units", "s,N,N*m,N*m",
                 "--out", str(back)]) == 0
    assert np.array_equal(recording.load(back)[2], samples)


def test_export_damaged(tmp_path, capsys):
    rec = tmp_path / "w.oimrec"
    assert main(["sim", "generate", "--scenario", "walk", "--duration", "20", "--out", str(rec)]) == 0
    data = rec.read_bytes()
    rec.write_bytes(data[:len(data) // 2])
    csv = tmp_path / "w.csv"
    capsys.readouterr()
    assert main(["export", "csv", str(rec), "--out", str(csv)]) == 2
    err = _err(capsys)
    assert "at byte" in err and "--salvage" in err
    assert not csv.exists() and not (tmp_path / "w.csv.part").exists()
    assert main(["export", "csv", str(rec), "--out", str(csv), "--salvage"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "at byte" in err
    n = len(csv.read_text().splitlines()) - 1
    assert 8000 <= n < 10000 and n % 4096 == 0


@pytest.mark.parametrize("argv, msg", [
    (["import", "{missing}", "--columns", "1,2", "--units", "s,N", "--out", "{out}"], "cannot open"),
    (["import", "{csv}", "--columns", "1,x", "--units", "s,N", "--out", "{out}"], "--columns"),
    (["import", "{csv}", "--columns", "1,2", "--units", "s,furlongs", "--out", "{out}"], "unknown unit"),
    (["import", "{csv}", "--columns", "1,2", "--units", "s", "--out", "{out}"], "2 columns"),
    (["import", "{csv}", "--columns", "1,9", "--units", "s,N", "--out", "{out}"], "column 9"),
    (["import", "{csv}", "--columns", "2", "--units", "N", "--out", "{out}"], "--rate"),
    (["import", "{bad}", "--columns", "1,2", "--units", "s,N", "--out", "{out}"], "not a number"),
    (["import", "{uneven}", "--columns", "1,2", "--units", "s,N", "--out", "{out}"], "grid"),
    (["import", "{csv}", "--columns", "1,2", "--units", "s,N*m", "--out", "{out}"], "axial is a force"),
    (["export", "csv", "{missing}", "--out", "{out}"], "cannot open"),
    (["export", "csv", "{csv}", "--out", "{out}"], "bad magic"),
    (["sim", "device", "--scenario", "nope", "--seconds", "1"], "unknown scenario"),
    (["sim", "device", "--recording", "{csv}", "--seconds", "1"], "bad magic"),
    (["sim", "generate", "--scenario", "walk", "--duration", "1", "--rate", "0", "--out", "{out}"],
     "out of range"),
])
def test_user_errors(tmp_path, capsys, argv, msg):
    csv = tmp_path / "in.csv"
    csv.write_text("0.00\t1.0\n0.01\t2.0\n0.02\t3.0\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("0.00\t1.0\n0.01\tx\n")
    uneven = tmp_path / "uneven.csv"
    uneven.write_text("0.00\t1.0\n0.01\t2.0\n0.02\t3.0\n0.05\t3.0\n")
    subs = {"csv": csv, "bad": bad, "uneven": uneven, "missing": tmp_path / "nope.csv",
            "out": tmp_path / "out.oimrec"}
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([a.format(**subs) for a in argv]) == 2
    assert msg in _err(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_device_input_from_raw_and_calibrated_recordings(tmp_path):
    """What `oimon sim device --recording` plays: raw counts as recorded, calibrated through the
    default sensor model; the device is provisioned with the recording's sensor."""
    from oimon_sim.device import raw_file_from_recording
    from oimon_sim import sensor
    raw_rec, cal_rec = tmp_path / "r.oimrec", tmp_path / "c.oimrec"
    assert main(["sim", "generate", "--scenario", "fault_stuck", "--duration", "30",
                 "--out", str(raw_rec)]) == 0
    assert main(["sim", "generate", "--scenario", "walk", "--duration", "5",
                 "--out", str(cal_rec)]) == 0
    out = tmp_path / "sensor.raw"
    model, rate = raw_file_from_recording(raw_rec, out)
    assert rate == 1000 and np.allclose(model.S, sensor.DEFAULT_S)
    got = np.fromfile(out, "<i4").reshape(-1, 4)
    assert np.array_equal(got, recording.load(raw_rec)[2])
    model, rate = raw_file_from_recording(cal_rec, out)
    got = np.fromfile(out, "<i4").reshape(-1, 4)
    assert np.array_equal(got, sensor.SensorModel().raw(recording.load(cal_rec)[2]))
