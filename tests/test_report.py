"""oimon report: the clinical document (headline, settings in force, daily activity, merged
events worst first by day, event plots, exercise compliance, device health) as one
self-contained HTML file and a PDF, both checked in the system's headless Chromium (text and
layout; screenshots and PDF pages kept in build/test-artifacts/)."""
import datetime as dt
import json
import re
import sqlite3
import subprocess

import matplotlib.image as mpimg

from clinic_fixture import TODAY, artifact, browser, make_db
from oimon import report
from test_host_support import run_cli


def _report(tmp_path, capsys, *extra):
    dbp = make_db(tmp_path)
    out = tmp_path / "report.html"
    rc, o, err = run_cli(capsys, "--db", dbp, "report", "--out", out, "--device", "OI-1",
                         "--today", TODAY.isoformat(), *extra)
    assert rc == 0, err
    return dbp, out, out.read_text()


def _text(html):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_report_reads_in_30_seconds(tmp_path, capsys):
    dbp, out, html = _report(tmp_path, capsys)
    text = _text(html)
    # the period: since the last visit (the settings change 7 days before, after the retightening)
    assert "2026-03-03 .. now" in text and "since the last visit" in text
    # headline: one fall, three overloads (the one before the visit is outside), worst as % limit
    head = text.split("Settings in force")[0]
    assert re.search(r"falls 1 ", head) and re.search(r"overloads 3 worst 268 % of the compression limit", head)
    assert re.search(r"sensor faults 1 ", head) and "retightening due soon" in head
    assert "data lost yes" in head and "unusable sensor data" in head
    # settings in force with who and when
    sett = text.split("Settings in force")[1].split("Daily activity")[0]
    assert "rehab phase II" in sett and "80.0 kg" in sett and "784 N" in sett and "2026-03-03 09:30" in sett
    # events merged: one row per overload (start + end records), worst first, grouped by day
    ev = html.split("<h2>Events</h2>")[1].split("<h2>Event plots</h2>")[0]
    worst = ev.split("<h3>Worst first</h3>")[1].split("</table>")[0]
    kinds = re.findall(r"<td>(fall|overload|sensor fault)</td>", worst)
    assert kinds == ["fall", "sensor fault", "overload", "overload", "overload"], kinds
    assert "268 %" in worst and "compression" in worst and "90 ms" in worst
    assert "Sun 08 Mar 2026: 1 fall, 3 overloads" in _text(ev) and "Sat 07 Mar 2026: 1 sensor fault" in _text(ev)
    assert "overload_start" not in html and "overload_end" not in html
    # plots of the fall and the worst overloads, from snippets and the recording
    plots = html.split("<h2>Event plots</h2>")[1].split("<h2>Exercise compliance</h2>")[0]
    assert plots.count("data:image/png;base64,") == 3
    assert "fall at 2026-03-08 17:02:30" in plots
    # exercise compliance against the prescription, in kg and minutes, not a database dump
    exr = _text(html.split("<h2>Exercise compliance</h2>")[1].split("<h2>Device health</h2>")[0])
    assert "5 of 10 prescribed sessions done (50 %)" in exr and "time in the target zone" in exr
    assert "loaded_ms" not in exr and "1773" not in exr        # no raw JSON, no epoch seconds
    # device health: sources nobody wrote yet say so
    hl = _text(html.split("<h2>Device health</h2>")[1])
    assert "battery no data" in hl and "self-test no data" in hl and "axial at the rail" in hl
    assert "Calibration certificates" in hl
    # daily activity: load cycles and % BW, not "hours recorded 0.00"
    assert "load cycles" in html and "peak % BW" in html and "hours recorded" not in text


def test_report_is_self_contained_and_path_free(tmp_path, capsys):
    dbp, out, html = _report(tmp_path, capsys)
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:|//|file:)", html)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert str(tmp_path) not in html and "/tmp" not in html and "walk.oimrec" not in html
    for alt in re.findall(r"alt='([^']*)'", html):
        assert "/" not in alt, alt


def test_report_every_device_and_empty_database(tmp_path, capsys):
    dbp = make_db(tmp_path)
    out = tmp_path / "all.html"
    assert run_cli(capsys, "--db", dbp, "report", "--out", out, "--today", TODAY.isoformat())[0] == 0
    html = out.read_text()
    devs = html.split("<h2>Devices</h2>")[1].split("</table>")[0]
    assert "overdue" in devs and "never recorded" in devs and "due soon" in devs
    assert html.count("<section class=device>") == 3
    empty = tmp_path / "empty.sqlite"
    assert run_cli(capsys, "--db", empty, "report", "--out", tmp_path / "e.html")[0] == 0
    assert "No devices in the database" in (tmp_path / "e.html").read_text()


def test_optional_sections_from_other_tables(tmp_path, capsys):
    """Battery, self-test and log gaps written by other parts of oimon appear when present."""
    dbp = make_db(tmp_path)
    con = sqlite3.connect(dbp)
    t = int(dt.datetime(2026, 3, 9, 12, tzinfo=dt.timezone.utc).timestamp())
    with con:
        for seq, kind, data in ((10, "health", {"battery_pct": 12, "battery_mv": 3410}),
                                (11, "selftest", {"passed": False, "reason": "bridge 2 open"}),
                                (12, "log_gap", {"lost": 7})):
            con.execute("INSERT INTO device_record(device_id, seq, kind, t, data) VALUES (?,?,?,?,?)",
                        ("OI-1", seq, kind, t, json.dumps(data)))
    con.close()
    out = tmp_path / "r.html"
    assert run_cli(capsys, "--db", dbp, "report", "--out", out, "--device", "OI-1",
                   "--today", TODAY.isoformat())[0] == 0
    hl = _text(out.read_text().split("<h2>Device health</h2>")[1])
    assert "battery 12 %, 3410 mV" in hl and "FAILED: bridge 2 open" in hl
    assert "1 gap records (7 records lost)" in hl


def test_report_bad_input_one_line(tmp_path, capsys):
    dbp = make_db(tmp_path)
    before = dbp.read_bytes()
    for args, msg in (((("--out", tmp_path / "r.txt")), "ending in .html or .pdf"),
                      (("--out", tmp_path / "r.html", "--device", "NOPE"), "not in the database"),
                      (("--out", tmp_path / "r.html", "--since", "2026-03-09", "--until", "2026-03-01"),
                       "is after"),
                      (("--out", tmp_path / "r.html", "--since", "yesterday"), "YYYY-MM-DD")):
        rc, o, err = run_cli(capsys, "--db", dbp, "report", *args)
        assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    assert dbp.read_bytes() == before
    assert not (tmp_path / "r.html").exists()


def test_report_html_and_pdf_in_headless_chromium(tmp_path, capsys):
    dbp, out, html = _report(tmp_path, capsys, "--pdf", str(tmp_path / "report.pdf"))
    pdf = tmp_path / "report.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    # the PDF: its text holds the answer first; its pages as PNG test artefacts
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "P-017" in text and "Settings in force" in text and "Exercise compliance" in text
    assert text.index("falls") < text.index("Settings in force") < text.index("Event plots")
    pages = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    n_pages = int(re.search(r"Pages:\s+(\d+)", pages).group(1))
    assert 2 <= n_pages <= 12, n_pages
    prefix = artifact("report-pdf-page")
    subprocess.run(["pdftoppm", "-r", "60", "-png", "-f", "1", "-l", "3", str(pdf), str(prefix)], check=True)
    first = sorted(prefix.parent.glob(prefix.name + "*.png"))[0]
    img = mpimg.imread(str(first))
    gray = img[..., :3].mean(axis=2)
    assert gray.var() > 0.005 and (gray < 0.5).mean() > 0.003          # not blank: text and charts
    # the HTML in Chromium: text, images loaded, headline cards in one row, nothing too wide
    with browser() as b:
        pg = b.new_page(viewport={"width": 1200, "height": 900})
        pg.goto(out.resolve().as_uri())
        assert "P-017" in pg.inner_text("h1")
        assert pg.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 100)")
        assert pg.evaluate("document.images.length") >= 5
        tops = pg.evaluate("Array.from(document.querySelectorAll('.card')).map(c => c.getBoundingClientRect().top)")
        assert len(tops) == 5 and max(tops) - min(tops) < 2, tops
        assert pg.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1")
        head = pg.inner_text(".headline")
        assert "falls" in head and "268 %" in head
        shot = artifact("report.png")
        pg.screenshot(path=str(shot), full_page=True)
    img = mpimg.imread(str(shot))
    assert img.shape[0] > 2000 and img.shape[1] >= 1200
    assert (img[:150, :, :3].mean(axis=2) < 0.5).any()                 # the title at the top


def test_pdf_without_chromium_is_one_line(tmp_path, capsys, monkeypatch):
    dbp = make_db(tmp_path)
    monkeypatch.setattr(report, "CHROMIUM", str(tmp_path / "no-chromium"))
    rc, o, err = run_cli(capsys, "--db", dbp, "report", "--out", tmp_path / "r.pdf", "--device", "OI-1")
    assert rc == 2 and "Chromium not found" in err and str(tmp_path) not in err
    assert not (tmp_path / "r.pdf").exists()


def test_an_event_without_its_own_snippet_borrows_the_window_it_falls_in(tmp_path):
    """The device captures one 3 s snippet at a time; an overload 0.5 s after another is logged
    without one and is plotted from its neighbour's (same sample counter)."""
    from clinic_fixture import _overload, _snippet, _walk_rows
    from oimon import db
    con = db.connect(tmp_path / "b.sqlite")
    t = dt.datetime(2026, 3, 8, 10, 0, 5, tzinfo=dt.timezone.utc).timestamp()
    with con:
        db.ensure_device(con, "OI-9")
        _overload(con, "OI-9", t, 10000, 100, 9000, 3100, 4, _snippet(_walk_rows(3000)))
        _overload(con, "OI-9", t + 1, 10600, 100, 9500, 3300, 4)
    evs = report.merged_events(con, "OI-9")
    assert len(evs) == 2 and all(e["snippet"] for e in evs)
    late = [e for e in evs if e["onset_n"] == 10600][0]
    first = [e for e in evs if e["onset_n"] == 10000][0]
    assert abs((late["start"] - first["start"]) - 0.6) < 1e-6       # on the snippet's own clock
    t0, rate, rows, _ev = report.event_series(con, late)
    assert len(rows) == 3000 and rate == 1000
