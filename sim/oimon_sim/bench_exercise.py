"""Phase I exercise benchmarks (`make bench`, docs/exercise.md): the firmware's exercise module on
the i386 MicroPython unix port, fed with what the device would compute from simulated sensor
counts (ground truth known).

- exercise_load_error_pct: the session's mean held load that the device reports vs the true mean
  load, worst case over targets 5..50 kg (bound: +-2 %).
- exercise_feedback_latency_ms: time from the true load entering a zone (under / in band / over
  / alarm) to the zone change Exercise.step() signals, worst case over a sequence of moves.

Path: raw counts (sensor.SensorModel with noise) -> dsp.Pipeline with the matching calibration
(calib.Calibration.from_gains of the model's inverse) -> exercise.Exercise
("exercise_bench_input": "raw"); the MicroPython side is sim/mpy/scripts/bench_exercise.py."""
import datetime as dt
import json
import tempfile
from pathlib import Path

import numpy as np

from oimon_common import calib, exercise as FX
from oimon_sim import mp, paths, scenarios, sensor

G = 9.81
UNIT_PER_KG = G * 10.0
NOISE_COUNTS = 40.0         # ADC noise, counts rms (0.5 units of 0.1 N on the axial bridge)
BODY_WEIGHT = 120           # so that the 50 kg cap is allowed (min(50% BW, 50 kg))

def _plan(target_kg, start_date="2026-01-05", band=10, margin=20):
    return {"v": 1, "preset": "bench", "start_date": start_date, "utc_offset_min": 0,
            "body_weight_kg": BODY_WEIGHT, "start_kg": target_kg, "step_kg": 0,
            "interval_days": 7, "cap_kg": target_kg, "sessions_per_day": 2, "minutes": 20,
            "band_pct": band, "margin_pct": margin}


def _day(start_date="2026-01-05"):
    return (dt.date.fromisoformat(start_date) - dt.date(1970, 1, 1)).days


def _hold_loads(target_kg, rate=1000, seed=0, hold_s=15.0):
    """One static-loading repetition at `target_kg`: the sim's static_loading scenario if it is
    there, else 2 s ramp up, hold with 3 % tremor at 8 Hz and 5 % slow sway, 2 s ramp down."""
    try:
        fn = scenarios.SCENARIOS.get("static_loading")
        if fn is not None:
            load, _tr = fn(hold_s + 8, rate, BODY_WEIGHT, seed, target_kg=target_kg,
                           hold_s=hold_s, reps=1)
            if np.max(load[:, 0]) > 0.5 * target_kg * UNIT_PER_KG:
                return np.asarray(load, dtype=float), "static_loading"
    except (TypeError, ValueError, KeyError):
        pass
    rng = np.random.default_rng(seed)
    T = target_kg * UNIT_PER_KG
    h = int(hold_s * rate)
    t = np.arange(h) / rate
    hold = T * (1 + 0.05 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 6))
                + 0.03 * rng.uniform(0.3, 1) * np.sin(2 * np.pi * 8 * t))
    ax = np.concatenate([np.zeros(rate), np.linspace(0, hold[0], 2 * rate), hold,
                         np.linspace(hold[-1], 0, 2 * rate), np.zeros(2 * rate)])
    load = np.zeros((len(ax), 3))
    load[:, 0] = ax
    load[:, 1] = 0.2 * ax
    load[:, 2] = -0.1 * ax
    return load, "bench_hold"


def _run_mp(loads, jobs, work, seed=0):
    """Feed the loads (list of (n, 3) arrays, one per job) to the firmware on MicroPython."""
    model = sensor.SensorModel(noise_counts=NOISE_COUNTS, seed=seed)
    allload = np.concatenate(loads)
    data = work / "input.i32"
    cfg = {"jobs": jobs, "data": str(data)}
    cal = calib.Calibration.from_gains(model.gain_matrix().tolist(), model.offset[:3].tolist() + [0])
    calib.save(str(work / "calib.bin"), cal)
    sensor.write_raw(data, model.raw(allload))
    cfg.update(mode="raw", calib=str(work / "calib.bin"))
    (work / "jobs.json").write_text(json.dumps(cfg))
    proc = mp.run([str(paths.script("bench_exercise")), str(work / "jobs.json")], timeout=600)
    if proc.returncode != 0:
        raise RuntimeError("MicroPython exercise bench failed: %s" % (proc.stdout + proc.stderr)[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1]), cfg["mode"]


def exercise_load_error_pct(levels_kg=(5, 10, 15, 20, 30, 40, 50), seed=0):
    """Worst |reported mean - true mean| / true mean (%) over the targets; the true mean is over
    the samples whose true load is at or above the device's "loaded" threshold."""
    loads, jobs, src = [], [], set()
    for k, L in enumerate(levels_kg):
        load, s = _hold_loads(L, seed=seed + k)
        src.add(s)
        loads.append(load)
        jobs.append({"plan": _plan(L), "day": _day(), "n": len(load)})
    with tempfile.TemporaryDirectory(prefix="oimon-bench-ex-") as d:
        res, mode = _run_mp(loads, jobs, Path(d), seed)
    per = {}
    worst = 0.0
    for L, load, r in zip(levels_kg, loads, res):
        s = r["summary"]
        T = s["target"]
        truth = load[:, 0]
        held = truth[truth >= T * FX.REST_PCT // 100]
        true_mean = float(held.mean())
        err = 100.0 * (s["mean"] - true_mean) / true_mean
        per[str(L)] = round(err, 3)
        worst = max(worst, abs(err))
    return {"exercise_load_error_pct": round(worst, 3), "exercise_load_error_by_kg": per,
            "exercise_load_levels_kg": list(levels_kg), "exercise_bench_input": mode,
            "exercise_load_scenario": "+".join(sorted(src)),
            "exercise_step_us_unix_i386": round(float(np.mean([r["step_us"] for r in res])), 2)}


# moves of the latency profile: (level as a fraction of the target, ramp ms, hold ms)
_MOVES = [(0.0, 0, 1000), (1.0, 400, 1500), (1.16, 60, 1500), (1.27, 60, 1500), (1.0, 100, 1500),
          (0.8, 60, 1500), (1.0, 300, 1500), (1.14, 200, 1500), (0.98, 30, 1500),
          (1.3, 30, 1500), (0.97, 30, 1500), (0.0, 500, 1000)]


def _latency_profile(target_kg, rate=1000):
    T = target_kg * UNIT_PER_KG
    parts = []
    level = 0.0
    for frac, ramp, hold in _MOVES:
        if ramp:
            parts.append(np.linspace(level * T, frac * T, int(ramp * rate / 1000), endpoint=False))
        parts.append(np.full(int(hold * rate / 1000), frac * T))
        level = frac
    ax = np.concatenate(parts)
    load = np.zeros((len(ax), 3))
    load[:, 0] = ax
    load[:, 1] = 0.2 * ax
    return load


def _nominal_zones(x, s):
    """Zone of each true sample against the nominal edges (no hysteresis, no dwell)."""
    T = s["target"]
    lo = T - T * s["band_pct"] // 100
    hi = T + T * s["band_pct"] // 100
    al = T + T * s["margin_pct"] // 100
    z = np.full(len(x), 2)
    z[x < lo] = 1
    z[x > hi] = 3
    z[x > al] = 4
    return z


def exercise_feedback_latency_ms(targets_kg=(10, 20, 40), seed=0):
    """From the true load entering a zone to Exercise.step() signalling it (1 kHz samples = ms),
    over ramps of 30..400 ms between the zones; worst and mean, plus missed and false cues."""
    loads = [_latency_profile(L) for L in targets_kg]
    jobs = [{"plan": _plan(L), "day": _day(), "n": len(ld)} for L, ld in zip(targets_kg, loads)]
    with tempfile.TemporaryDirectory(prefix="oimon-bench-ex-") as d:
        res, mode = _run_mp(loads, jobs, Path(d), seed)
    lat, missed, false = [], 0, 0
    for load, r in zip(loads, res):
        zn = _nominal_zones(load[:, 0], r["summary"])
        entries = [(i, int(zn[i])) for i in range(1, len(zn)) if zn[i] != zn[i - 1]]
        for t, z in r["changes"]:
            cand = [i for i, zz in entries if zz == z and i <= t]
            if not cand:
                false += 1
                continue
            lat.append(t - cand[-1])
        # a true zone held for >= 300 ms must have been signalled
        for k, (i, z) in enumerate(entries):
            end = entries[k + 1][0] if k + 1 < len(entries) else len(zn)
            if end - i >= 300 and not any(zz == z and i <= t < end + 100 for t, zz in r["changes"]):
                missed += 1
    return {"exercise_feedback_latency_ms": int(max(lat)) if lat else None,
            "exercise_feedback_latency_mean_ms": round(float(np.mean(lat)), 1) if lat else None,
            "exercise_feedback_transitions": len(lat), "exercise_feedback_missed": missed,
            "exercise_feedback_false": false, "exercise_feedback_dwell_ms": 40,
            "exercise_bench_input": mode}


def run():
    out = {}
    out.update(exercise_load_error_pct())
    out.update(exercise_feedback_latency_ms())
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2, sort_keys=True))
