"""oimon report: one self-contained HTML file (no external references), every section present,
rendered by headless Chromium into a screenshot that is not blank."""
import datetime as dt
import json
import re
import subprocess
import tempfile

import matplotlib.image as mpimg
import numpy as np

from oimon import db, recording, retighten
from test_host_support import run_cli

CHROMIUM = "/usr/bin/chromium"


def _database(tmp_path):
    dbp = tmp_path / "db.sqlite"
    con = db.connect(dbp)
    rec = tmp_path / "walk.oimrec"
    t = np.arange(5000) / 1000.0
    rows = np.column_stack([6000 * np.clip(np.sin(2 * np.pi * t), 0, None),
                            3000 * np.sin(4 * np.pi * t), 1500 * np.sin(2 * np.pi * t)]).astype(np.int32)
    with recording.Writer(rec, {"device_id": "OI-1", "rate_hz": 1000, "kind": "calibrated",
                                "start_time": "2025-02-01T10:00:00+00:00",
                                "limits": {"comp": 16000, "tens": 3000, "moment": 7000}}) as w:
        w.write(0, rows[:2500])
        w.event({"kind": "overload", "sample": 2500, "t": 1738404002})
        w.write(2500, rows[2500:])
    with con:
        db.ensure_device(con, "OI-1")
        db.set_pseudonym(con, "OI-1", "P-017")
        con.execute("INSERT INTO recording(device_id, path, started, duration_s, samples) VALUES (?,?,?,?,?)",
                    ("OI-1", str(rec), "2025-02-01T10:00:00+00:00", 5.0, 5000))
        db.add_event(con, "OI-1", {"kind": "overload", "sample": 2500, "t": 1738404002, "peak": 1800})
        db.add_event(con, "OI-1", {"kind": "fall", "sample": 4000, "t": 1738404004})
        retighten.record(con, "OI-1", dt.date(2024, 11, 30), 12.0)
        db.ensure_device(con, "OI-2")
        db.add_calibration(con, "OI-1", "2025-01-15T09:00:00+00:00", {
            "max_error": {"axial": 0.4, "ap": 0.02, "ml": 0.03}, "max_error_pct": 0.008,
            "bound_pct": 0.5, "revision": 1})
        con.execute("INSERT INTO exercise_session(device_id, t, day, data) VALUES (?,?,?,?)",
                    ("OI-1", 1738400000, "2025-02-01", json.dumps({"target_N": 200, "in_zone_pct": 81})))
    con.close()
    return dbp


def test_report_sections_and_self_contained(tmp_path, capsys):
    dbp = _database(tmp_path)
    out = tmp_path / "report.html"
    rc, o, err = run_cli(capsys, "--db", dbp, "report", "--out", out, "--today", "2025-02-20")
    assert rc == 0, err
    html = out.read_text()
    for section in ("Retightening", "Daily summaries", "Events", "Recordings",
                    "Calibration certificates", "Exercise compliance"):
        assert "<h2>%s</h2>" % section in html
    assert "P-017" in html and "due soon" in html and "2025-02-28" in html
    assert "never recorded" in html                       # OI-2
    assert "overload" in html and "fall" in html
    assert "data:image/png;base64," in html
    assert "in_zone_pct" in html                          # the exercise hook found the sessions
    # self-contained: nothing fetched from anywhere
    assert not re.search(r"(src|href)=['\"]?(https?:|//|file:)", html)
    assert "<script" not in html
    # one device only
    rc, o, err = run_cli(capsys, "--db", dbp, "report", "--out", tmp_path / "one.html", "--device", "OI-2")
    assert rc == 0 and "OI-1" not in (tmp_path / "one.html").read_text().split("<h2>")[0].replace("oimon report: OI-2", "")


def test_report_renders_in_headless_chromium(tmp_path, capsys):
    dbp = _database(tmp_path)
    out = tmp_path / "report.html"
    assert run_cli(capsys, "--db", dbp, "report", "--out", out, "--today", "2025-02-20")[0] == 0
    png = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory(prefix="oimon-chromium-") as prof:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--user-data-dir=%s" % prof, "--screenshot=%s" % png,
             "--window-size=1200,1600", out.resolve().as_uri()],
            capture_output=True, text=True, timeout=120)
    assert png.exists(), proc.stderr[-2000:]
    img = mpimg.imread(str(png))
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    gray = img[..., :3].mean(axis=2)
    assert gray.var() > 0.005, gray.var()                  # not blank
    assert (gray < 0.5).mean() > 0.005                      # some dark text and lines
    # the top of the page holds the title (dark pixels in the first 100 rows)
    assert (gray[:100] < 0.5).any()
