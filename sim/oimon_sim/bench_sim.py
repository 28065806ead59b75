"""Simulator benchmarks (`make bench` runs run()): each function returns a dict of figures.

- generate_24h(): `oimon sim generate --scenario day --duration 86400` time and peak memory;
- replay_24h(): a 24 h x 3 ch x 1 kHz calibrated recording (cached in build/bench/) replayed
  through the bit-exact model (replay.replay_file, what `oimon sim replay` runs) in a fresh
  subprocess: wall time from interpreter start (imports included) and peak RSS
  (resource.getrusage of the child); targets <= 10 s and <= 1 GiB on the 2-core bench machine.
  The model's numba kernels are compiled once and cached on disk (kernels.py, cache=True): a short
  replay warms that cache first, and replay_compile_seconds is the one-off cost of compiling it
  from scratch (a replay of 1 s of data with an empty NUMBA_CACHE_DIR);
- stream_gaps_10min(seconds=600): the virtual device at real time, recorded through
  `oimon record`: sequence gaps (0 expected) and samples received.

run(quick=False): all of them; quick=True streams 60 s instead of 600 s."""
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from oimon import recording
from oimon_sim import paths, scenarios, sensor
from oimon_sim.device import start_virtual_device

CACHE = paths.BUILD / "bench"


_WRAP = """
import resource, subprocess, sys, time, json
t0 = time.monotonic()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
dt = time.monotonic() - t0
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": p.returncode, "seconds": dt, "rss_kib": rss, "out": p.stdout,
                  "err": p.stderr[-2000:]}))
"""


def _child(code, *args, env=None):
    """Run python code in a fresh child; (seconds, peak RSS MiB of that child, its stdout).
    A fresh wrapper process runs it so that getrusage(RUSAGE_CHILDREN) sees only this child."""
    p = subprocess.run([sys.executable, "-c", _WRAP, sys.executable, "-c", code]
                       + [str(a) for a in args], capture_output=True, text=True, env=env)
    r = json.loads(p.stdout)
    if r["rc"]:
        raise RuntimeError("child failed: %s" % (r["err"].strip().splitlines() or ["?"])[-1])
    return r["seconds"], r["rss_kib"] / 1024.0, r["out"]


_GEN = """
import sys
from oimon_sim.generate import generate_recording
generate_recording(sys.argv[1], "day", float(sys.argv[2]), seed=1, raw=(sys.argv[3] == "raw"))
"""

_REPLAY = """
import sys, json
from oimon_sim import replay
res = replay.replay_file(sys.argv[1])
print(json.dumps({"events": len(res["events"]), "samples": res["samples"]}))
"""


def day_recording(kind="calibrated", seconds=86400, path=None):
    """The 24 h recording the benches use (generated once into build/bench/). Its name carries a
    hash of the generator's source (scenarios, sensor), so a changed scenario is generated anew
    instead of replaying a stale day."""
    h = hashlib.sha1()
    for m in (scenarios, sensor):
        h.update(Path(m.__file__).read_bytes())
    path = Path(path or CACHE / ("day-%s-%d-%s.oimrec" % (kind, seconds, h.hexdigest()[:10])))
    if not path.exists():
        for old in path.parent.glob("day-%s-%d-*.oimrec" % (kind, seconds)):
            old.unlink()
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


_KERNEL = """
import numpy as np
from oimon_sim import profiles, replayer
rp = replayer.Replayer(profiles.default_calibration())
for y, ev in rp.stream([np.zeros((1000, 3), np.int32)], calibrated=True):
    pass
"""


def replay_compile_seconds():
    """One-off cost of compiling the model's kernel: wall time of a child that imports the
    model and streams 1000 samples through it with NUMBA_CACHE_DIR in a new (empty) folder,
    minus the same child with the cache warm. Leaves the normal cache warm for replay_24h."""
    warm = _child(_KERNEL)[0]                    # fills the normal cache if it was empty
    warm = min(warm, _child(_KERNEL)[0])
    with tempfile.TemporaryDirectory() as d:
        cold = _child(_KERNEL, env=dict(os.environ, NUMBA_CACHE_DIR=d))[0]
    return {"replay_compile_seconds": round(max(0.0, cold - warm), 2),
            "replay_kernel_warm_start_seconds": round(warm, 2)}


def replay_24h(seconds=86400, path=None):
    rec = day_recording("calibrated", seconds, path)
    comp = replay_compile_seconds()
    dt, rss, out = _child(_REPLAY, rec)
    info = json.loads(out.strip().splitlines()[-1])
    res = {"replay_24h_seconds": round(dt, 2), "replay_peak_rss_mib": round(rss, 1),
           "replay_24h_samples": info["samples"], "replay_24h_events": info["events"]}
    res.update(comp)
    return res


def replay_24h_seconds(**kw):
    return replay_24h(**kw)["replay_24h_seconds"]


def replay_peak_rss_mib(**kw):
    return replay_24h(**kw)["replay_peak_rss_mib"]


def stream_gaps_10min(seconds=600, scenario="walk"):
    """Virtual device at real time -> `oimon record` for `seconds`: sequence gaps and samples."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        vd = start_virtual_device(scenario, speed=1, duration=max(60.0, min(seconds, 600.0)),
                                  storage=d / "dev")
        try:
            rec, db = d / "s.oimrec", d / "s.sqlite"
            # `oimon record` as the user runs it (the simulator does not import the commands)
            p = subprocess.run([sys.executable, "-m", "oimon", "--port", vd.path, "--db", str(db),
                                "record", "--duration", str(seconds), "--out", str(rec)],
                               capture_output=True, text=True)
            if p.returncode:
                raise RuntimeError("oimon record failed (exit %d): %s %s" % (
                    p.returncode, p.stderr.strip()[-500:], vd.log_tail()))
        finally:
            vd.stop()
        con = sqlite3.connect(db)
        seq_gaps = con.execute("SELECT seq_gaps FROM recording").fetchone()[0]
        con.close()
        _h, index, samples, _ev, err = recording.load(rec)
        idx_gaps = int(np.count_nonzero(np.diff(index) != 1)) if len(index) else 0
    return {"stream_seq_gaps": int(seq_gaps or 0), "stream_index_gaps": idx_gaps,
            "stream_samples": int(len(index)), "stream_seconds": seconds,
            "stream_samples_expected": int(seconds * 1000),
            "stream_recording_error": str(err) if err else None}


def run(quick=False):
    figs = {}
    stream = (lambda: stream_gaps_10min(60)) if quick else stream_gaps_10min
    stream.__name__ = "stream_gaps_10min"
    for fn in (generate_24h, replay_24h, stream):
        try:
            figs.update(fn())
        except Exception as e:  # noqa: BLE001 - report, go on with the others
            figs[fn.__name__ + "_error"] = "%s: %s" % (e.__class__.__name__, e)
    return figs


if __name__ == "__main__":
    which = sys.argv[1:] or ["run"]
    for w in which:
        print(json.dumps({w: globals()[w]()}, indent=1))
