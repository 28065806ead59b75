"""oimon sync against the virtual device: the device's log (events with their snippets, the
daily activity summary at UTC midnight, alarm records) lands in SQLite once."""
import datetime as dt
import json
import sqlite3
import time

from oimon.cli import main
from oimon_sim.device import start_virtual_device
from oimon.commands.sync import summary_to_host
from oimon.link import Link
from oimon_common import protocol as P


def _wait_samples(path, n, timeout=60):
    """Until the device has taken n samples (it runs at real time, slower on a busy machine)."""
    t_end = time.monotonic() + timeout
    with Link(path) as ln:
        while time.monotonic() < t_end:
            if ln.command(P.C_STATUS)["samples"] >= n:
                return
            time.sleep(0.2)
    raise AssertionError("the virtual device did not reach %d samples" % n)


def _ts(s):
    return int(dt.datetime.fromisoformat(s).replace(tzinfo=dt.timezone.utc).timestamp())


def test_sync_pulls_events_and_the_daily_summary(tmp_path, capsys, monkeypatch):
    dbp = tmp_path / "db.sqlite"
    monkeypatch.setenv("OIMON_SIM_RTC", "lost")     # no valid clock: the patient may set any time
    vd = start_virtual_device("demo", speed=1, duration=8, storage=tmp_path / "storage",
                              device_id="SIM-SYNC")
    try:
        # the firmware looks at its clock in its first main-loop pass (day of the counters:
        # the unix port's today); only then move the clock, else the counters start on 1 March
        # and there is no second summary (a race on a busy machine)
        _wait_samples(vd.path, 200)
        with Link(vd.path) as ln:
            ln.command(P.C_TIME, {"t": _ts("2026-03-01T23:59:50")})   # counting starts that day
        _wait_samples(vd.path, 7500)                      # the demo's overload comes at 5 s
        with Link(vd.path) as ln:
            ln.command(P.C_TIME, {"t": _ts("2026-03-02T00:00:10")})   # past midnight: summary
        _wait_samples(vd.path, 10500)                     # the log writes within 2 s
        assert main(["--port", vd.path, "--db", str(dbp), "sync"]) == 0
        out = capsys.readouterr().out
        # the unix port's clock started on today's date: its counters were summarised when the
        # clock was set back to 1 March; then 1 March's at midnight
        assert out.startswith("SIM-SYNC: pulled") and "2 daily summaries" in out, out
        con = sqlite3.connect(dbp)
        (data,), = con.execute("SELECT data FROM summary WHERE day='2026-03-01'")
        s = json.loads(data)
        assert s["partial"] is True
        assert s["overloads"] >= 1 and 1800 < s["peak_axial_N"] < 2300 and s["steps"] >= 3
        assert abs(sum(s["hist_pct_bw"].values()) - 100) < 0.1
        kinds = [k for (k,) in con.execute("SELECT kind FROM event WHERE device_id='SIM-SYNC'")]
        assert "overload_start" in kinds
        ev = json.loads(con.execute("SELECT data FROM event WHERE kind='overload_start'").fetchone()[0])
        snip = ev["snippet"]
        assert snip["rate"] == 1000 and snip["pre"] == 1000 and len(snip["rows"]) == snip["n"] >= 2500
        recs = [k for (k,) in con.execute("SELECT kind FROM device_record")]
        assert "alarm" in recs and "summary" in recs
        # again: nothing new, nothing doubled
        n_before = con.execute("SELECT count(*) FROM event").fetchone()[0]
        assert main(["--port", vd.path, "--db", str(dbp), "sync"]) == 0
        assert "pulled 0 log records" in capsys.readouterr().out
        assert con.execute("SELECT count(*) FROM event").fetchone()[0] == n_before
    finally:
        vd.stop()


def test_summary_conversion_units():
    s = summary_to_host({"kind": "daily", "day": 20513, "partial": False, "bw": 7355,
                         "rate": 1000, "steps": 4200, "loaded": 3600000, "valid": 36000000,
                         "invalid": 0, "pk_ax": 13220, "min_ax": -500, "pk_map": 8000,
                         "pk_mml": 3000, "pk_m2": 8800 ** 2, "overloads": 1, "falls": 0,
                         "faults": 2, "impacts": 0, "hist": [10, 30, 60] + [0] * 18})
    assert s["day"] == "2026-03-01" and s["loaded_h"] == 1.0 and s["worn_valid_h"] == 10.0
    assert s["peak_axial_N"] == 1322.0 and s["peak_tension_N"] == 50.0
    assert s["peak_moment_Nm"] == 88.0 and s["events"] == 3
    assert s["hist_pct_bw"]["10-20%"] == 30.0 and s["hist_pct_bw"][">=200%"] == 0.0
