"""Fall detection figures for `make bench` (docs/benchmarks.md "Falls"):

- umafall(): the real UMAFall thigh accelerations (../shared/data/umafall, read in place, never
  copied; accelerometer only, no load) replayed through the device's inertial path exactly as
  `oimon import` + `oimon sim replay` do (index-time resampling to 104 Hz, no gyroscope, the load
  missing): sensitivity over the 96 falls and specificity over the 296 daily activities, per fall
  direction, per activity and per subject. A recording counts as detected when the detector raises
  at least one fall in it (the 15 s files hold one activity each).
- simulated(): every fall kind of the scenarios (the prosthesis the impact point, in 4 directions
  x 3 severities; slide-downs at 0.3 / 0.5 / 0.7 BW limb contact; falls onto the hip or arm in 4
  directions) and the quiet ones, through `oimon sim metrics`; and a simulated day (the `day`
  scenario, `day_s` seconds) for the false-fall rate per 24 h.
- run(): both, as flat figures.
"""
import csv
import tempfile
import time
from pathlib import Path

import numpy as np

from oimon.imu_import import read_imu_file
from oimon_sim import fall_kernels, metrics, scenarios
from oimon_sim.generate import generate_recording
from oimon_sim.paths import ROOT

UMAFALL = ROOT.parent / "shared" / "data" / "umafall"


def _rate(hits, n):
    return {"n": n, "hits": hits, "rate": round(hits / n, 4) if n else None}


_CACHE = {}


def _umafall_rows(path):
    key = str(path)
    if key not in _CACHE:
        man = list(csv.DictReader(open(Path(path) / "manifest.csv")))
        _CACHE[key] = [(r, read_imu_file(Path(path) / r["file"])[0]) for r in man]
    return _CACHE[key]


def umafall(path=UMAFALL, cfg=None):
    """UMAFall through the inertial path: sensitivity/specificity overall, by direction, by
    activity, by subject. cfg: the inertial path's configuration words (default: the device's)."""
    t0 = time.monotonic()
    res = []
    for r, rows in _umafall_rows(path):
        ev = fall_kernels.replay_imu(rows, cfg)
        res.append((r, any(e["event"] == "fall" for e in ev)))
    dt = time.monotonic() - t0
    falls = [(r, f) for r, f in res if r["type"] == "Fall"]
    adls = [(r, f) for r, f in res if r["type"] != "Fall"]
    by_dir = {}
    for r, f in falls:
        by_dir.setdefault(r["activity"], [0, 0])
        by_dir[r["activity"]][0] += f
        by_dir[r["activity"]][1] += 1
    by_act = {}
    for r, f in adls:
        by_act.setdefault(r["activity"], [0, 0])
        by_act[r["activity"]][0] += not f
        by_act[r["activity"]][1] += 1
    by_subj = {}
    for r, f in res:
        s = by_subj.setdefault("S%02d" % int(r["subject"]), {"falls": [0, 0], "adl": [0, 0]})
        if r["type"] == "Fall":
            s["falls"][0] += f
            s["falls"][1] += 1
        else:
            s["adl"][0] += not f
            s["adl"][1] += 1
    tp = sum(f for _, f in falls)
    tn = sum(not f for _, f in adls)
    phone = [(r, f) for r, f in adls if r["activity"] != "MakingACall"]
    return {
        "files": len(res), "falls": len(falls), "adls": len(adls),
        "sensitivity": round(tp / len(falls), 4), "specificity": round(tn / len(adls), 4),
        "specificity_without_phone_handling": round(sum(not f for _, f in phone) / len(phone), 4),
        "by_direction": {k: _rate(*v) for k, v in sorted(by_dir.items())},
        "by_activity": {k: _rate(*v) for k, v in sorted(by_act.items())},
        "by_subject": {k: {"sensitivity": _rate(*v["falls"]) if v["falls"][1] else None,
                           "specificity": _rate(*v["adl"])} for k, v in sorted(by_subj.items())},
        "missed": sorted(r["file"] for r, f in falls if not f),
        "false": sorted(r["file"] for r, f in adls if f),
        "seconds": round(dt, 1),
    }


def umafall_robustness(path=UMAFALL):
    """The UMAFall figures with one threshold at a time moved away from the device's value (the
    thresholds are round physical values, not fitted: this shows how far the result depends on
    each): impact 2.5 / 3.5 g, orientation change 45 / 65 deg, stillness 100 / 200 mg."""
    base = fall_kernels.defaults()
    out = {}
    for name, idx, vals in (("impact_mg", fall_kernels.C_A_IMP, (2500, 3500)),
                            ("turn_deg", fall_kernels.C_COS2, ((45, 128), (65, 46))),
                            ("still_mg", fall_kernels.C_SDEV, (100, 200))):
        for v in vals:
            cfg = list(base)
            label, word = (v if isinstance(v, tuple) else (v, v))
            cfg[idx] = word
            u = umafall(path, cfg)
            out["%s=%s" % (name, label)] = {"sensitivity": u["sensitivity"],
                                            "specificity": u["specificity"]}
    return out


FALL_CASES = ([("fall", 22, {"direction": d, "severity": s}) for d in scenarios.FALL_DIRECTION
               for s in scenarios.FALL_SEVERITY]
              + [("slide_down", 26, {"limb_bw": b}) for b in (0.3, 0.5, 0.7)]
              + [("fall_other", 22, {"direction": d}) for d in scenarios.FALL_DIRECTION])
QUIET_CASES = [("walk", 300, {"cadence_spm": c}) for c in (85, 100, 115)] + \
    [("stairs", 180, {}), ("sit_to_stand", 120, {}), ("stumble", 14, {}), ("overload", 14, {}),
     ("static_loading", 120, {}), ("stand", 60, {}), ("sit", 60, {})]


def simulated(day_s=86400.0, seeds=(1, 2)):
    """Fall sensitivity by kind and direction, false falls per 24 h (quiet cases + a day)."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as td:
        paths = []
        k = 0
        for seed in seeds:
            for name, dur, params in FALL_CASES + QUIET_CASES:
                p = Path(td) / ("r%d.oimrec" % k)
                k += 1
                generate_recording(p, name, dur, seed=seed * 100 + k, params=params)
                paths.append(p)
        m = metrics.evaluate_files(paths)
        day = None
        if day_s:
            p = Path(td) / "day.oimrec"
            generate_recording(p, "day", day_s, seed=seeds[0])
            day = metrics.evaluate_files([p])
    out = {"falls": m["falls"], "false_events": m["false_events"],
           "false_by_kind": m["false_by_kind"], "hours": round(m["hours"], 3),
           "seconds": round(time.monotonic() - t0, 1)}
    if day is not None:
        out["day_hours"] = round(day["hours"], 3)
        out["day_falls"] = day["falls"]
        out["day_false_falls_per_24h"] = day["falls"]["false_falls_per_24h"]
        out["day_false_per_24h"] = day["false_per_24h"]
    return out


def run(day_s=86400.0):
    figs = {}
    if UMAFALL.exists():
        u = umafall()
        figs["umafall_sensitivity"] = u["sensitivity"]
        figs["umafall_specificity"] = u["specificity"]
        figs["umafall_specificity_without_phone_handling"] = u["specificity_without_phone_handling"]
        figs["umafall"] = u
        figs["umafall_robustness"] = umafall_robustness()
    else:
        figs["umafall"] = "missing: %s" % UMAFALL
    s = simulated(day_s)
    f = s["falls"]
    figs["sim_fall_sensitivity"] = f["sensitivity"]
    figs["sim_fall_sensitivity_by_kind"] = {k: v["sensitivity"] for k, v in f["by_kind"].items()}
    figs["sim_fall_sensitivity_by_direction"] = {k: v["sensitivity"]
                                                 for k, v in f["by_direction"].items()}
    figs["sim_false_falls_per_24h"] = s.get("day_false_falls_per_24h")
    figs["sim_quiet_false_falls"] = f["false_falls"]
    figs["sim_falls"] = s
    return figs


if __name__ == "__main__":
    import json
    import sys
    print(json.dumps(run(float(sys.argv[1]) if len(sys.argv) > 1 else 86400.0), indent=1))
