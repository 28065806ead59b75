"""End to end against the virtual device on a pty: flash-free deploy, info, record (with a live
plot, over socket:// through a relay, surviving a pulled cable: the device is stopped and
restarted on the same storage), events, plot, report, retightening."""
import json
import os
import signal
import threading
import time

import matplotlib.image as mpimg

from oimon import db, keystore, recording
from oimon_sim.device import start_virtual_device
from test_host_support import PtyRelay, build_bundle, run_cli


def test_deploy_record_report_retighten(tmp_path, capsys, monkeypatch):
    dbp = tmp_path / "db.sqlite"
    monkeypatch.setenv("OIMON_KEYSTORE", str(tmp_path / "keys.json"))
    storage = tmp_path / "storage"
    build = build_bundle(tmp_path / "bundle")
    vd = start_virtual_device("demo", speed=1, duration=8, storage=storage)
    relay = None
    try:
        rc, out, err = run_cli(capsys, "--port", vd.path, "deploy", "--bundle", build)
        assert rc == 0, err + vd.log_tail()
        assert "provisioned a new key for SIM-0001" in out      # first deploy: a new key
        assert "copied key.bin" in out
        assert oct((tmp_path / "keys.json").stat().st_mode & 0o777) == "0o600"
        assert (storage / "key.bin").read_bytes() == keystore.open().key("SIM-0001")
        rc, out, err = run_cli(capsys, "--port", vd.path, "--db", dbp, "info")
        assert rc == 0 and "SIM-0001" in out and "calibration" in out
        # authenticated configuration with the deployed key
        rc, out, err = run_cli(capsys, "--port", vd.path, "--db", dbp, "config", "set",
                               "phase=II", "comp=850", "moment=28", "body_weight=81", "patient=P-017")
        assert rc == 0, err
        rc, out, err = run_cli(capsys, "--port", vd.path, "info", "--json")
        info = json.loads(out)
        assert info["phase"] == "II" and info["limits"]["comp"] == 8500
        assert info["limits"]["moment"] == 2800 and info["body_weight_kg"] == 81
        # a wrong key: refused, nothing changes
        ks = keystore.open()
        good_key = ks.devices["SIM-0001"]["key"]
        ks.devices["SIM-0001"]["key"] = bytes(32)
        ks.save()
        before = dbp.read_bytes()
        rc, out, err = run_cli(capsys, "--port", vd.path, "--db", dbp, "config", "set", "comp=900")
        assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert dbp.read_bytes() == before
        rc, out, err = run_cli(capsys, "--port", vd.path, "info", "--json")
        assert json.loads(out)["limits"]["comp"] == 8500
        ks = keystore.open()
        ks.devices["SIM-0001"]["key"] = good_key
        ks.save()

        # record over socket:// through a relay; pull the cable after ~2 s
        relay = PtyRelay(vd.path)
        rec = tmp_path / "walk.oimrec"
        live = tmp_path / "live.png"
        box = {"vd": vd}

        def _until(cond, what, timeout=120):
            t_end = time.monotonic() + timeout
            while not cond():
                assert time.monotonic() < t_end, what
                time.sleep(0.05)

        def pull_the_cable():
            # conditions, not times: ~2500 samples (7 bytes each on the wire) before the pull,
            # as many after the device is back, then SIGTERM ends the recording cleanly
            try:
                _until(lambda: relay.to_client.get(0, 0) > 20000, "no stream before the pull")
                box["vd"].stop()                              # the cable is pulled
                time.sleep(1.0)
                box["vd"] = start_virtual_device("demo", speed=1, duration=8, storage=storage)
                relay.retarget(box["vd"].path)                # ... and plugged in again
                _until(lambda: relay.to_client.get(1, 0) > 20000 and live.exists(),
                       "no stream after the reconnect")
            finally:
                os.kill(os.getpid(), signal.SIGTERM)

        th = threading.Thread(target=pull_the_cable)
        th.start()
        try:
            rc, out, err = run_cli(capsys, "--port", relay.url, "--db", dbp, "record",
                                   "--duration", "300", "--out", rec, "--live-plot", live,
                                   "--reconnect", "60")
        finally:
            th.join(30)
            vd = box["vd"]
        assert rc == 0, err
        assert "reconnects" in out
        header, index, samples, events, error = recording.load(rec)
        assert error is None
        assert len(samples) > 3000, len(samples)         # both sides of the gap are kept
        assert header["device_id"] == "SIM-0001"
        img = mpimg.imread(str(live))
        assert img[..., :3].var() > 0.001

        rc, out, err = run_cli(capsys, "--db", dbp, "events", "--json")
        assert rc == 0 and isinstance(json.loads(out), list)
        rc, out, err = run_cli(capsys, "--db", dbp, "plot", rec, "--out", tmp_path / "walk.png")
        assert rc == 0 and (tmp_path / "walk.png").stat().st_size > 10000

        rc, out, err = run_cli(capsys, "--port", vd.path, "--db", dbp, "retighten", "record",
                               "SIM-0001", "--date", "2024-11-30", "--torque", "12")
        assert rc == 0 and "2025-02-28" in out and "(device and database)" in out, err
        rc, out, err = run_cli(capsys, "--port", vd.path, "info", "--json")
        assert json.loads(out)["retighten_last"] == "2024-11-30"     # the device's reminder too
        rc, out, err = run_cli(capsys, "--db", dbp, "retighten", "status", "--today", "2025-02-14", "--json")
        st = {r["device_id"]: r for r in json.loads(out)}["SIM-0001"]
        assert st["state"] == "due soon" and st["days_left"] == 14

        rc, out, err = run_cli(capsys, "--db", dbp, "report", "--out", tmp_path / "r.html",
                               "--today", "2025-02-14")
        assert rc == 0, err
        html = (tmp_path / "r.html").read_text()
        assert "SIM-0001" in html and "due soon" in html and "data:image/png;base64," in html
        con = db.connect(dbp)
        r = con.execute("SELECT samples, path FROM recording").fetchone()
        assert r["samples"] == len(samples) and r["path"] == str(rec)
    finally:
        if relay:
            relay.close()
        vd.stop()


def test_record_keeps_what_it_has_when_the_device_does_not_come_back(tmp_path, capsys):
    vd = start_virtual_device("walk", speed=1, duration=10, storage=tmp_path / "storage")
    rec = tmp_path / "r.oimrec"
    dbp = tmp_path / "db.sqlite"
    try:
        def pull():                # once the recording holds samples (flushed every second)
            t_end = time.monotonic() + 120
            while time.monotonic() < t_end and not (rec.exists() and rec.stat().st_size > 20000):
                time.sleep(0.05)
            vd.stop()
        th = threading.Thread(target=pull)
        th.start()
        rc, out, err = run_cli(capsys, "--port", vd.path, "--db", dbp, "record", "--duration", "60",
                               "--out", rec, "--reconnect", "1.5")
        th.join()
    finally:
        vd.stop()
    assert rc == 2 and "what was recorded is kept" in err and err.count("\n") == 1, err
    header, index, samples, events, error = recording.load(rec)
    assert error is None and len(samples) > 500
    assert db.connect(dbp).execute("SELECT samples FROM recording").fetchone()[0] == len(samples)
