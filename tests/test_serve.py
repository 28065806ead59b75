"""oimon serve: the clinic dashboard in the system's headless Chromium (Playwright) over
loopback only: pages load, charts render (plotly.js from the wheel, no network), an event's
loads open on click, the live page follows the virtual device over the WebSocket with the
limits and the biofeedback bar; a screenshot of each page in build/test-artifacts/."""
import json
import urllib.request

from clinic_fixture import TODAY, artifact, browser, make_db, server
from oimon import web
from oimon_sim.device import start_virtual_device
from test_host_support import run_cli


def _watch(pg, base):
    """Console errors and any request that leaves the dashboard."""
    seen = {"errors": [], "outside": []}
    pg.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: seen["errors"].append(str(e)))
    pg.on("request", lambda r: seen["outside"].append(r.url)
          if not (r.url.startswith(base) or r.url.startswith(base.replace("http", "ws"))
                  or r.url.startswith("data:")) else None)
    return seen


def test_dashboard_pages_and_charts(tmp_path):
    dbp = make_db(tmp_path)
    app = web.create_app(dbp, today=TODAY)
    with server(app) as base, browser() as b:
        pg = b.new_page(viewport={"width": 1200, "height": 900})
        seen = _watch(pg, base)
        pg.goto(base + "/")
        rows = pg.locator("#devices tr.click")
        assert rows.count() == 3
        # retightening overdue first, then due soon, then never recorded
        order = [rows.nth(i).inner_text().split("\t")[0] for i in range(3)]
        assert order == ["P-020", "P-017", "-"], order
        assert "overdue" in rows.nth(0).inner_text()
        recent = pg.inner_text("#recent")
        assert "fall" in recent and "P-017" in recent and "268 %" in recent
        pg.screenshot(path=str(artifact("dashboard-home.png")), full_page=True)
        # the patient page: every chart drawn by plotly
        rows.nth(1).click()
        pg.wait_for_url("**/patient/OI-1")
        for chart in ("#activity", "#hist", "#timeline", "#exchart"):
            pg.wait_for_selector(chart + " .main-svg", timeout=30000)
        assert pg.locator("#activity .bars path").count() >= 14        # two bar traces x 7 days
        assert "P-017" in pg.inner_text("h1") and "268 %" in pg.inner_text(".headline")
        assert pg.locator("#events tr.click").count() == 5
        # the detail one click away: the worst event's loads with the limits
        pg.locator("#events tr.click").first.click()
        pg.wait_for_selector("#eventplot .main-svg", timeout=30000)
        assert "fall" in pg.inner_text("#eventplot")
        assert pg.locator("#eventplot .shapelayer path").count() >= 2   # the limit lines
        pg.screenshot(path=str(artifact("dashboard-patient.png")), full_page=True)
        # the printable report from the same page
        pg.goto(base + "/patient/OI-1/report.html")
        assert "Settings in force" in pg.inner_text("body")
        pg.goto(base + "/live")
        assert "No device connected" in pg.inner_text("body")
        pg.goto(base + "/patient/NOPE")
        assert "not in the database" in pg.inner_text("body")
        assert not seen["errors"], seen["errors"]
        assert not seen["outside"], seen["outside"]
        # the JSON behind the pages: pseudonyms and ids, no paths of this machine
        pdf = urllib.request.urlopen(base + "/patient/OI-1/report.pdf", timeout=180)
        assert pdf.headers["Content-Type"] == "application/pdf" and pdf.read()[:5] == b"%PDF-"
        for path in ("/api/overview", "/api/patient/OI-1", "/api/patient/OI-1/event/0"):
            body = urllib.request.urlopen(base + path, timeout=30).read().decode()
            json.loads(body)
            assert str(tmp_path) not in body and "walk.oimrec" not in body


def test_live_page_follows_the_virtual_device(tmp_path):
    dbp = make_db(tmp_path)
    vd = start_virtual_device("demo", speed=1, duration=60, storage=tmp_path / "dev",
                              device_id="SIM-LIVE")
    try:
        app = web.create_app(dbp, device_port=vd.path, today=TODAY)
        with server(app) as base, browser() as b:
            pg = b.new_page(viewport={"width": 1200, "height": 900})
            seen = _watch(pg, base)
            pg.goto(base + "/live")
            # the WebSocket feed: samples counted, the chart drawn with the limits, the bar set
            pg.wait_for_function("Number(document.getElementById('samples').textContent) > 1500",
                                 timeout=90000)
            pg.wait_for_selector("#livechart .main-svg", timeout=30000)
            n1 = int(pg.inner_text("#samples"))
            pg.wait_for_function("Number(document.getElementById('samples').textContent) > %d" % (n1 + 500),
                                 timeout=60000)
            assert "SIM-LIVE" in pg.inner_text("#who")
            chart = pg.inner_text("#livechart")
            assert "compression limit" in chart and "bending limit" in chart
            assert int(pg.eval_on_selector("#livechart", "e => Number(e.dataset.points)")) > 20
            zone = pg.eval_on_selector("#zonetext", "e => e.dataset.zone")
            assert zone in ("under", "in", "over", "alarm"), zone
            assert pg.eval_on_selector("#bzone", "e => e.getBoundingClientRect().width") > 5
            assert "target" in pg.inner_text("#target")
            assert pg.inner_text("#state").startswith("live")
            pg.screenshot(path=str(artifact("dashboard-live.png")), full_page=True)
            assert not seen["errors"], seen["errors"]
            assert not seen["outside"], seen["outside"]
    finally:
        vd.stop()


def test_other_hosts_and_origins_are_refused(tmp_path):
    """DNS rebinding (a Host name that is not loopback) and another site's page opening the
    WebSocket are refused."""
    import urllib.error
    from websockets.sync.client import connect
    dbp = make_db(tmp_path)
    app = web.create_app(dbp, today=TODAY)
    with server(app) as base:
        req = urllib.request.Request(base + "/api/overview", headers={"Host": "evil.example"})
        try:
            urllib.request.urlopen(req, timeout=30)
            raise AssertionError("a foreign Host name was served")
        except urllib.error.HTTPError as e:
            assert e.code == 400
        ws_url = base.replace("http", "ws") + "/ws/live"
        with connect(ws_url, origin=base) as ws:                # the dashboard's own page
            assert json.loads(ws.recv(timeout=30))["state"] == "no device"
        try:
            with connect(ws_url, origin="http://evil.example") as ws:
                ws.recv(timeout=30)
            raise AssertionError("another origin got the live feed")
        except AssertionError:
            raise
        except Exception as e:                                  # refused at the handshake
            assert "403" in str(e) or "1008" in str(e) or "rejected" in str(e).lower(), e


def test_serve_bad_input_one_line(tmp_path, capsys):
    rc, o, err = run_cli(capsys, "--db", tmp_path / "db.sqlite", "serve", "--bind", "clinic.example")
    assert rc == 2 and "not an IP address" in err and len(err.strip().splitlines()) == 1
    rc, o, err = run_cli(capsys, "--db", tmp_path / "db.sqlite", "serve", "--http-port", "70000")
    assert rc == 2 and "outside 1..65535" in err


def test_default_bind_is_loopback():
    from oimon.cli import build_parser
    args = build_parser().parse_args(["serve"])
    assert args.bind == "127.0.0.1"


def test_oimon_serve_command_serves_on_loopback(tmp_path):
    """The command itself (uvicorn.run): it says where it is, answers there, stops on SIGTERM."""
    import os
    import subprocess
    import sys
    import time

    from clinic_fixture import free_port
    dbp = make_db(tmp_path)
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "oimon")
    proc = subprocess.Popen([exe, "--db", str(dbp), "serve", "--http-port", str(port), "--no-live"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t_end = time.monotonic() + 120
        body = None
        while time.monotonic() < t_end and proc.poll() is None:
            try:
                body = urllib.request.urlopen("http://127.0.0.1:%d/api/overview" % port, timeout=5).read()
                break
            except OSError:
                time.sleep(0.3)
        assert body is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert [d["device_id"] for d in json.loads(body)["devices"]][0] == "OI-3"
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert "oimon dashboard on http://127.0.0.1:%d/" % port in out
    assert "Traceback" not in err
