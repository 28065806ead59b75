"""The virtual device (the firmware's main loop on the i386 MicroPython) and `oimon sim replay`
(the numba model) see the same events in the same recording: what the host pulls from the
device's log with `oimon sync` equals what replay prints, event by event and sample by sample."""
import json
import sqlite3
import time

import pytest

from oimon.cli import main
from oimon_sim.generate import generate_recording
from oimon_sim.device import start_virtual_device
from oimon.link import Link
from oimon_common import protocol as P
from oimon_sim import replay

SPEED = 4                                    # the device plays the file at 4 kHz


def _device_events(tmp_path, rec, n, capsys):
    vd = start_virtual_device(recording=str(rec), speed=SPEED, storage=tmp_path / "storage",
                              device_id="SIM-CMP")
    try:
        t_end = time.monotonic() + 120
        with Link(vd.path) as ln:               # the whole file, and the last snippet's 2 s
            while ln.command(P.C_STATUS)["samples"] < n + 3000:
                assert time.monotonic() < t_end, vd.log_tail()
                time.sleep(0.2)
            # then until the log has written everything it holds (not a guess of 2.5 s)
            t_end = time.monotonic() + 120
            while True:
                lg = ln.command(P.C_STATUS)["log"]
                if lg["durable"] >= lg["seq"] and not lg["queued"]:
                    break
                assert time.monotonic() < t_end, lg
                time.sleep(0.2)
        dbp = tmp_path / "db.sqlite"
        assert main(["--port", vd.path, "--db", str(dbp), "sync"]) == 0, vd.log_tail()
        capsys.readouterr()
    finally:
        vd.stop()
    con = sqlite3.connect(dbp)
    evs = [json.loads(d) for (d,) in con.execute("SELECT data FROM event ORDER BY sample")]
    return sorted((e["kind"], e["sample"]) for e in evs if e["sample"] < n)   # first pass of the file


@pytest.mark.parametrize("scenario, seconds, params", [
    ("fall", 20, {"severity": "low", "direction": "left"}),
    ("overload", 12, {}),
    ("fault_saturation", 20, {}),
])
def test_virtual_device_and_replay_agree(tmp_path, capsys, scenario, seconds, params):
    rec = tmp_path / "rec.oimrec"
    generate_recording(rec, scenario, seconds, seed=5, raw=True, params=params)
    rep = replay.replay_file(rec)
    want = sorted((e["kind"], e["sample"]) for e in rep["events"])
    assert want, "the scenario should raise events"
    got = _device_events(tmp_path, rec, rep["samples"], capsys)
    assert got == want
