"""`make bench`: speed, memory and robustness figures into build/bench.json.

Each figure comes from a benchmark function in a sim/oimon_sim/bench_*.py module (one per area);
this runner calls them all, records failures as such, and writes one JSON file with the machine
and the date, summarised by hand in docs/benchmarks.md."""
import argparse
import datetime as dt
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

# (module, function, kwargs) in the order they run; a missing module is reported, not skipped
BENCHES = [
    ("oimon_sim.bench_hotpath", "run", {}),        # issue 3: hot path, allocation, ESP32 load
    ("oimon_sim.alarm_latency", "measure", {}),    # issue 3: alarm latency in simulation
    ("oimon_sim.bench_log", "run", {}),            # issue 4: power cuts, wire bytes, fuzzing
    ("oimon_sim.bench_sim", "run", {}),            # issue 6: 24 h replay, 10 min stream
    ("oimon_sim.bench_exercise", "run", {}),       # issue 7: exercise load error, cue latency
    ("oimon_sim.bench_timing", "run", {}),         # issue 11: timing model: day losses, CPU, heap
    ("oimon_sim.bench_falls", "run", {}),          # issue 13: UMAFall, fall kinds, false falls
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/bench.json")
    ap.add_argument("--only", help="comma-separated module names (e.g. bench_sim,alarm_latency)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    results = {}
    if out.exists():
        try:
            results = json.loads(out.read_text()).get("figures", {})
        except ValueError:
            results = {}
    errors = {}
    for mod, fn, kw in BENCHES:
        short = mod.rsplit(".", 1)[1]
        if a.only and short not in a.only.split(","):
            continue
        t0 = time.monotonic()
        print("bench: %s ..." % short, flush=True)
        try:
            figs = getattr(importlib.import_module(mod), fn)(**kw)
        except Exception as e:  # noqa: BLE001 - a failing bench is a figure of its own
            errors[short] = "%s: %s" % (e.__class__.__name__, e)
            traceback.print_exc()
            continue
        results.update(figs)
        print("bench: %s done in %.1f s: %s" % (short, time.monotonic() - t0,
                                                json.dumps(figs, sort_keys=True)), flush=True)
    doc = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "cpus": os.cpu_count()},
        "figures": results,
        "errors": errors,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print("wrote %s (%d figures, %d errors)" % (out, len(results), len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
