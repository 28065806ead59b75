"""Simulator benchmarks (`make bench` runs run()): each function returns a dict of figures.

- generate_24h(): `oimon sim generate --scenario day --duration 86400` time and peak memory;
- replay_24h(): a 24 h x 3 ch x 1 kHz calibrated recording replayed through the numpy model
  (`oimon sim replay`) in a subprocess: wall time and peak RSS (resource.getrusage of the child);
  targets <= 10 s and <= 1 GiB on the 2-core bench machine;
- stream_gaps_10min(seconds=600): the virtual device at real time, recorded through
  `oimon record`: sequence gaps (0 expected) and samples received."""
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "bench"


_WRAP = """
import resource, subprocess, sys, time, json
t0 = time.monotonic()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
dt = time.monotonic() - t0
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": p.returncode, "seconds": dt, "rss_kib": rss, "out": p.stdout,
                  "err": p.stderr[-2000:]}))
"""


def _child(code, *args):
    """Run python code in a fresh child; (seconds, peak RSS MiB of that child, its stdout).
    A fresh wrapper process runs it so that getrusage(RUSAGE_CHILDREN) sees only this child."""
    import json
    p = subprocess.run([sys.executable, "-c", _WRAP, sys.executable, "-c", code]
                       + [str(a) for a in args], capture_output=True, text=True)
    r = json.loads(p.stdout)
    if r["rc"]:
        raise RuntimeError("child failed: %s" % (r["err"].strip().splitlines() or ["?"])[-1])
    return r["seconds"], r["rss_kib"] / 1024.0, r["out"]


_GEN = """
import sys
from oimon.cmd_sim import generate_recording
generate_recording(sys.argv[1], "day", float(sys.argv[2]), seed=1, raw=(sys.argv[3] == "raw"))
"""

_REPLAY = """
import sys, json
from oimon_sim import replay
res = replay.replay_file(sys.argv[1])
print(json.dumps({"events": len(res["events"]), "samples": res["samples"]}))
"""


def day_recording(kind="calibrated", seconds=86400, path=None):
    """The 24 h recording the benches use (generated once into build/bench/)."""
    path = Path(path or CACHE / ("day-%s-%d.oimrec" % (kind, seconds)))
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _child(_GEN, path, seconds, kind)
    return path


def generate_24h(seconds=86400):
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "day.oimrec"
        dt, rss, _ = _child(_GEN, out, seconds, "raw")
        size = out.stat().st_size
    return {"generate_24h_seconds": round(dt, 2), "generate_24h_peak_rss_mib": round(rss, 1),
            "generate_24h_bytes": size}


def replay_24h(seconds=86400, path=None):
    import json
    rec = day_recording("calibrated", seconds, path)
    dt, rss, out = _child(_REPLAY, rec)
    info = json.loads(out.strip().splitlines()[-1])
    return {"replay_24h_seconds": round(dt, 2), "replay_peak_rss_mib": round(rss, 1),
            "replay_24h_samples": info["samples"], "replay_24h_events": info["events"]}


def replay_24h_seconds(**kw):
    return replay_24h(**kw)["replay_24h_seconds"]


def replay_peak_rss_mib(**kw):
    return replay_24h(**kw)["replay_peak_rss_mib"]


def stream_gaps_10min(seconds=600, scenario="walk"):
    """Virtual device at real time -> `oimon record` for `seconds`: sequence gaps and samples."""
    import numpy as np
    from oimon import recording
    from oimon.cli import main
    from oimon.cmd_sim import start_virtual_device
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        vd = start_virtual_device(scenario, speed=1, duration=max(60.0, min(seconds, 600.0)),
                                  storage=d / "dev")
        try:
            rec, db = d / "s.oimrec", d / "s.sqlite"
            rc = main(["--port", vd.path, "--db", str(db), "record", "--duration", str(seconds),
                       "--out", str(rec)])
            if rc:
                raise RuntimeError("oimon record failed (exit %d): %s" % (rc, vd.log_tail()))
        finally:
            vd.stop()
        import sqlite3
        con = sqlite3.connect(db)
        seq_gaps = con.execute("SELECT seq_gaps FROM recording").fetchone()[0]
        con.close()
        _h, index, samples, _ev, err = recording.load(rec)
        idx_gaps = int(np.count_nonzero(np.diff(index) != 1)) if len(index) else 0
    return {"stream_seq_gaps": int(seq_gaps or 0), "stream_index_gaps": idx_gaps,
            "stream_samples": int(len(index)), "stream_seconds": seconds,
            "stream_samples_expected": int(seconds * 1000),
            "stream_recording_error": str(err) if err else None}


def run():
    figs = {}
    for fn in (generate_24h, replay_24h, stream_gaps_10min):
        try:
            figs.update(fn())
        except Exception as e:  # noqa: BLE001 - report, go on with the others
            figs[fn.__name__ + "_error"] = "%s: %s" % (e.__class__.__name__, e)
    return figs


if __name__ == "__main__":
    import json
    which = sys.argv[1:] or ["run"]
    for w in which:
        print(json.dumps({w: globals()[w]()}, indent=1))
