"""Plots that show what matters (issue 15): clock time with the time zone, limits on every plot
of calibrated data, % body weight, overloads as shaded spans with thinned labels, missing
channels left out, ground truth of simulated recordings; the exercise and sweep charts. The
PNGs are kept in build/test-artifacts/."""
import datetime as dt
import io

import matplotlib.image as mpimg
import numpy as np
from matplotlib.patches import Rectangle

from clinic_fixture import artifact
from oimon import exercise as X
from oimon import plots, recording
from oimon_sim import sweep
from oimon_sim.generate import generate_recording


def _labels(fig):
    out = []
    for ax in fig.axes:
        h, lab = ax.get_legend_handles_labels()
        out += lab
    return out


def _save(fig, name):
    plots.save_png(fig, artifact(name))
    img = mpimg.imread(str(artifact(name)))
    assert img[..., :3].mean(axis=2).var() > 0.001


def test_generated_recording_limits_truth_clock_time(tmp_path):
    rec = tmp_path / "ovl.oimrec"
    generate_recording(rec, "demo", 8.0, raw=False, start="2025-03-01T10:00:00+00:00")
    fig, err = plots.figure(rec, tz=dt.timezone.utc)
    assert err is None
    labels = _labels(fig)
    # no limits in a generated header: the phase's defaults, said so
    assert any(lab.startswith("compression limit 1800 N") for lab in labels), labels
    assert any(lab.startswith("bending limit") for lab in labels)
    assert "ground truth (simulated)" in labels
    assert "default limits" in fig.axes[0].get_title()
    assert fig.axes[-1].get_xlabel().startswith("clock time, UTC (2025-03-01)")
    fig.canvas.draw()
    ticks = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
    assert any(t.startswith("10:00:0") for t in ticks), ticks
    # % body weight on the axial panel
    assert any(getattr(c, "get_ylabel", lambda: "")() == "% body weight" for c in fig.axes[0].child_axes)
    # two panels: axial, and the two moments with their resultant (the limit is on the resultant)
    assert sum(1 for a in fig.axes if a.get_ylabel()) >= 2
    _save(fig, "plot-generated.png")


def _events(n):
    evs = []
    for k in range(n):
        on = 1000 + 40 * k
        evs.append({"kind": "overload_start", "onset": on, "n": on, "sample": on, "which": 1})
        evs.append({"kind": "overload_end", "onset": on, "end": on + 25, "n": on + 30, "sample": on + 30, "dur": 25})
    evs.append({"kind": "fall", "n": 9000, "sample": 9000})
    return evs


def test_many_events_are_spans_and_labels_are_thinned(tmp_path):
    rec = tmp_path / "many.oimrec"
    t = np.arange(10000) / 1000.0
    rows = np.column_stack([8000 * np.clip(np.sin(2 * np.pi * t), 0, None), 1000 * np.sin(t),
                            500 * np.cos(t)]).astype(np.int32)
    with recording.Writer(rec, {"device_id": "OI-1", "kind": "calibrated", "rate_hz": 1000,
                                "start_time": "2025-02-01T10:00:00+00:00", "phase": "II", "body_weight_kg": 80,
                                "limits": {"comp": 7845, "tens": 2000, "moment": 3000}}) as w:
        for e in _events(150):
            w.event(e)
        w.write(0, rows)
    fig, _ = plots.figure(rec, tz=dt.timezone.utc)
    ax = fig.axes[0]
    texts = [a for a in ax.texts if a.get_text() in ("overload", "fall")]
    assert len(texts) <= plots.MAX_LABELS
    # overloads shaded: spans (rectangles/polygons), not 300 vertical lines
    vlines = [ln for ln in ax.lines if len(set(ln.get_xdata())) == 1 and ln.get_linestyle() == "-"]
    assert len(vlines) <= 2, len(vlines)
    assert "overload (device)" in _labels(fig)
    assert any(lab.startswith("compression limit 784 N") for lab in _labels(fig))   # the recording's own
    _save(fig, "plot-many-events.png")


def test_imported_walk_leaves_out_missing_channels(tmp_path):
    rec = tmp_path / "imp.oimrec"
    with recording.Writer(rec, {"device_id": "gaitpdb", "kind": "calibrated", "rate_hz": 100,
                                "start_time": "2025-02-01T10:00:00+00:00", "source": "oimon import",
                                "import": {"channels": ["axial"]}}) as w:
        w.write(0, np.column_stack([np.full(500, 6000), np.zeros(500), np.zeros(500)]).astype(np.int32))
    fig, _ = plots.figure(rec, tz=dt.timezone.utc)
    panels = [a for a in fig.axes if a.get_ylabel() and a.get_ylabel() != "% body weight"]
    assert [a.get_ylabel() for a in panels] == ["axial [N]"]


def test_raw_recording_converted_and_empty_input_left_out(tmp_path):
    rec = tmp_path / "raw.oimrec"
    generate_recording(rec, "walk", 3.0, raw=True, start="2025-03-01T10:00:00+00:00")
    header, _i, samples, _e, _err = recording.load(rec)
    fig, _ = plots.figure(rec, tz=dt.timezone.utc)
    ylabels = [a.get_ylabel() for a in fig.axes if a.get_ylabel() and a.get_ylabel() != "% body weight"]
    assert "axial [N]" in ylabels and not any("raw3" in y for y in ylabels), ylabels
    assert any(lab.startswith("compression limit") for lab in _labels(fig))
    assert "converted" in fig.axes[0].get_title()
    _save(fig, "plot-raw.png")


def test_exercise_chart_draws_the_zone_on_its_date():
    rep = {"days": [{"date": "2026-03-05", "target_kg": 15.0, "band_pct": 10, "mean_kg": 14.6,
                     "peak_kg": 19.5, "done": 1, "prescribed": 2, "in_band_pct": 60.0, "started": 1}]}
    png = X.exercise_chart_png(rep)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    artifact("exercise-one-day.png").write_bytes(png)
    img = mpimg.imread(io.BytesIO(png))
    g = img[..., :3]
    # the pale green zone is drawn (not only listed in the legend)
    green = (g[..., 1] > 0.8) & (g[..., 0] < 0.85) & (g[..., 2] < 0.85) & (g[..., 0] > 0.6)
    assert green.mean() > 0.01, green.mean()


def test_exercise_chart_bars_on_dates_whole_sessions(monkeypatch):
    from matplotlib.figure import Figure
    made = []
    orig = Figure.savefig

    def keep(self, *a, **k):
        made.append(self)
        return orig(self, *a, **k)
    monkeypatch.setattr(Figure, "savefig", keep)
    days = [{"date": "2026-03-%02d" % d, "target_kg": 15.0, "band_pct": 10, "mean_kg": 14.0, "peak_kg": 18.0,
             "done": d % 3, "prescribed": 2, "in_band_pct": 55.0, "started": d % 3} for d in range(1, 6)]
    X.exercise_chart_png({"days": days})
    fig = made[0]
    bx = fig.axes[1]
    bars = [p for p in bx.patches if isinstance(p, Rectangle) and p.get_height() > 0]
    import matplotlib.dates as mdates
    centres = sorted(round(p.get_x() + p.get_width() / 2, 6) for p in bars)
    want = [mdates.date2num(dt.date(2026, 3, d)) for d in range(1, 6) if d % 3]
    assert np.allclose(centres, want)
    assert all(float(t).is_integer() for t in bx.get_yticks())


def test_sweep_chart_units_and_no_negative_counts(tmp_path):
    assert sweep.physical("detector.f_impact") == (0.1, "N")
    assert sweep.physical("moment") == (0.01, "N*m")
    rows = [{"value": v, "false_per_24h": f, "sensitivity": s, "param": "detector.f_impact", "hours": 1.0}
            for v, f, s in ((4000, 0.0, 1.0), (6000, 0.0, 0.9), (8000, 0.0, 0.5))]
    out = tmp_path / "sweep.png"
    sweep.plot(out, rows, "detector.f_impact")
    assert out.read_bytes()[:4] == b"\x89PNG"
    artifact("sweep.png").write_bytes(out.read_bytes())


def test_clock_time_names_the_time_zone(tmp_path):
    from zoneinfo import ZoneInfo
    from oimon import report
    tz = ZoneInfo("Europe/Stockholm")
    winter = dt.datetime(2025, 3, 1, 10, tzinfo=dt.timezone.utc)
    assert report.tz_label(tz, winter) == "CET, UTC+01:00"
    assert report.tz_label(ZoneInfo("Asia/Kolkata"), winter) == "IST, UTC+05:30"
    assert report.tz_label(ZoneInfo("America/New_York"), winter) == "EST, UTC-05:00"
    assert report.tz_label(dt.timezone.utc, winter) == "UTC"
    rec = tmp_path / "w.oimrec"
    generate_recording(rec, "walk", 2.0, raw=False, start="2025-03-01T10:00:00+00:00")
    fig, _ = plots.figure(rec, tz=tz)
    fig.canvas.draw()
    assert fig.axes[-1].get_xlabel() == "clock time, CET, UTC+01:00 (2025-03-01)"
    assert any(t.get_text().startswith("11:00:0") for t in fig.axes[-1].get_xticklabels())


def test_raw_recording_of_a_device_uses_its_certificate(tmp_path, capsys):
    """`oimon record --raw` keeps counts and no calibration; `oimon plot` takes the device's
    certificate from the database and plots newtons."""
    from oimon import db
    from test_host_support import run_cli
    rec = tmp_path / "raw.oimrec"
    gain = [[0.5, 0, 0], [0, 0.2, 0], [0, 0, 0.2]]
    off = [1000, -200, 300]
    n = 2000
    ax = 9000 * np.clip(np.sin(2 * np.pi * np.arange(n) / 1000.0), 0, None)
    rows = np.column_stack([ax / 0.5 + off[0], np.full(n, off[1]), np.full(n, off[2]), np.zeros(n)])
    with recording.Writer(rec, {"device_id": "OI-7", "kind": "raw", "rate_hz": 1000,
                                "start_time": "2025-02-01T10:00:00+00:00"}) as w:
        w.write(0, rows.astype(np.int32))
    dbp = tmp_path / "db.sqlite"
    con = db.connect(dbp)
    with con:
        db.add_calibration(con, "OI-7", "2025-01-15T09:00:00+00:00",
                           {"matrix_units_per_count": gain, "offsets_counts": off})
    con.close()
    png = tmp_path / "raw.png"
    rc, out, err = run_cli(capsys, "--db", dbp, "plot", rec, "--out", png)
    assert rc == 0, err
    fig, _ = plots.figure(rec, tz=dt.timezone.utc, calibration={"gain": gain, "offset": off,
                                                                 "source": "the device's calibration certificate"})
    assert "certificate" in fig.axes[0].get_title()
    line = fig.axes[0].lines[0]
    assert abs(max(line.get_ydata()) - 900.0) < 1.0             # 9000 x 0.1 N
    assert not any("raw3" in a.get_ylabel() for a in fig.axes)
