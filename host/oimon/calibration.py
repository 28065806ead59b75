"""Calibration of the connector's three bridges: plans, the least-squares fit and its
certificate.

Model (the inverse of sim/oimon_sim/sensor.py): load = G @ (raw - offset), with load in device
units (axial 0.1 N, moments 0.01 N*m) and raw in ADC counts of channels 0..2. The fit is affine
over every step, the tare included: load = A @ raw + c, so G = A and offset = -inv(A) @ c.

A plan (JSON) lists the steps of the jig (docs/host.md, "Calibration"):

    {"lever_arm_m": 0.5, "bound_pct": 0.5, "samples": 500, "settle_s": 1.0,
     "hold_s": 2.0,                      # optional: timed schedule, see below
     "steps": [{"name": "tare"},
               {"axis": "axial", "mass_kg": 20},
               {"axis": "ap", "mass_kg": 10},           # moment = m * g * lever arm
               {"axis": "ml", "mass_kg": -10},          # the other side of the jig
               {"load": [196.1, 0, 0]}]}                # or the load itself: N, N*m, N*m

With "hold_s", step k's load is held during the device's samples [k, k+1) * hold_s * rate
counted from its boot, repeating after the last step: the schedule of a scripted bench, and of
the virtual device that `plan_raw()` feeds (the simulated jig)."""
import math

import numpy as np

from oimon.errors import OimonError, read_json

G = 9.80665
AXES = ("axial", "ap", "ml")
UNITS = ("N", "N*m", "N*m")
SCALE = np.array([0.1, 0.01, 0.01])          # physical units per device unit
# measuring range per axis (the % of full scale of the acceptance bound): the connector's
# compression range and the bending range of the bridges (docs/algorithm.md)
FULL_SCALE = np.array([5000.0, 300.0, 300.0])
DEFAULT_BOUND_PCT = 0.5
# The design's sensitivities (hardware/README.md, "Signal levels"): counts per N (axial,
# channel 0) and per N*m (AP, ML: channels 1, 2) at Vexc 2.5 V, PGA 128. Each step's readings
# are checked against them before the fit (check_step): which channel answers, its sign, and
# the magnitude within STEP_TOLERANCE_PCT (gauge factor, gauge placement, bridge resistor and
# excitation tolerances together stay well inside it; a wrong axis, a wrong mass or a jig
# loading the wrong way lands far outside); an axis the step does not load may read up to
# STEP_SLACK_PCT of its full scale (eccentricity of the jig, ~1 cm on an axial mass).
NOMINAL_COUNTS = np.array([56.0, 10100.0, 10100.0])
STEP_TOLERANCE_PCT = 30.0
STEP_SLACK_PCT = 0.5
# what the other axes may read while one is loaded, in % of the loaded axis's share of its
# full scale (the design's residual cross-talk is ~1.5 %; the calibration matrix removes it)
CROSS_TALK_PCT = 10.0
DEFAULT_MASSES = (5, 10, 20, 50)
DEFAULT_LEVER = 0.5
MAX_MASS_KG = 500
MAX_LEVER_M = 2.0


def default_plan(masses=DEFAULT_MASSES, lever_arm_m=DEFAULT_LEVER):
    """Tare, the masses on the axial axis, then each bending axis both ways with the lever arm."""
    steps = [{"name": "tare"}]
    steps += [{"axis": "axial", "mass_kg": m} for m in masses]
    for ax in ("ap", "ml"):
        for m in masses[:3]:
            steps += [{"axis": ax, "mass_kg": m}, {"axis": ax, "mass_kg": -m}]
    return {"lever_arm_m": lever_arm_m, "bound_pct": DEFAULT_BOUND_PCT, "steps": steps}


def load_plan(path):
    return check_plan(read_json(path, "plan"), str(path))


def _num(v, what, lo, hi):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or not lo <= v <= hi:
        raise OimonError("%s must be a number in %g..%g, not %r" % (what, lo, hi, v))
    return float(v)


def check_plan(plan, where="plan"):
    """Validate a plan; returns it with every step's expected load (N, N*m, N*m) as step["load"]."""
    if not isinstance(plan, dict) or not isinstance(plan.get("steps"), list) or not plan["steps"]:
        raise OimonError("%s: needs a non-empty list \"steps\"" % where)
    lever = _num(plan.get("lever_arm_m", DEFAULT_LEVER), where + ": lever_arm_m", 0.01, MAX_LEVER_M)
    out = dict(plan)
    out["lever_arm_m"] = lever
    out["bound_pct"] = _num(plan.get("bound_pct", DEFAULT_BOUND_PCT), where + ": bound_pct", 0.01, 10)
    out["samples"] = int(_num(plan.get("samples", 500), where + ": samples", 10, 100000))
    out["settle_s"] = _num(plan.get("settle_s", 1.0), where + ": settle_s", 0, 60)
    if "hold_s" in plan:
        out["hold_s"] = _num(plan["hold_s"], where + ": hold_s", 0.2, 600)
    out["step_tolerance_pct"] = _num(plan.get("step_tolerance_pct", STEP_TOLERANCE_PCT),
                                     where + ": step_tolerance_pct", 5, 100)
    from oimon import validate
    validate.check_keys(plan, {"lever_arm_m", "bound_pct", "samples", "settle_s", "hold_s",
                               "steps", "step_tolerance_pct", "name", "comment"}, where)
    steps = []
    for i, s in enumerate(plan["steps"]):
        w = "%s: step %d" % (where, i + 1)
        if not isinstance(s, dict):
            raise OimonError("%s is not an object" % w)
        s = dict(s)
        if s.get("name") == "tare" and "load" not in s and "axis" not in s:
            s["load"] = [0.0, 0.0, 0.0]
        elif "load" in s:
            ld = s["load"]
            if not isinstance(ld, list) or len(ld) != 3:
                raise OimonError("%s: load must be [axial N, AP N*m, ML N*m]" % w)
            s["load"] = [_num(ld[0], w + ": axial load", -FULL_SCALE[0], FULL_SCALE[0]),
                         _num(ld[1], w + ": AP moment", -FULL_SCALE[1], FULL_SCALE[1]),
                         _num(ld[2], w + ": ML moment", -FULL_SCALE[2], FULL_SCALE[2])]
        elif s.get("axis") in AXES:
            m = _num(s.get("mass_kg"), w + ": mass_kg", -MAX_MASS_KG, MAX_MASS_KG)
            ld = [0.0, 0.0, 0.0]
            k = AXES.index(s["axis"])
            ld[k] = m * G if k == 0 else m * G * lever
            s["load"] = ld
        else:
            raise OimonError("%s: give \"name\": \"tare\", \"axis\" (axial|ap|ml) with "
                             "\"mass_kg\", or \"load\"" % w)
        s.setdefault("name", describe(s, lever))
        steps.append(s)
    out["steps"] = steps
    loads = np.array([s["load"] for s in steps])
    if not np.any(np.all(loads == 0, axis=1)):
        raise OimonError("%s: needs a tare step (no load)" % where)
    if np.linalg.matrix_rank(loads) < 3:
        raise OimonError("%s: the steps must load all three axes (axial, AP and ML moment)" % where)
    return out


def seen_load(raw_mean, tare_mean):
    """The step's load as the design's sensitivities read it (N, N*m, N*m)."""
    return (np.asarray(raw_mean, float)[:3] - np.asarray(tare_mean, float)[:3]) / NOMINAL_COUNTS


def check_step(step, raw_mean, tare_mean, tolerance_pct=STEP_TOLERANCE_PCT):
    """None if the step's readings fit the load it asked for, else one line saying what was
    seen: the axis that answers most (in % of full scale) must be the loaded one, with the
    load's sign, and every axis within tolerance_pct of its load + STEP_SLACK_PCT of full
    scale."""
    want = np.asarray(step["load"], float)
    if not np.any(want):
        return None                                  # a tare: nothing to compare with
    seen = seen_load(raw_mean, tare_mean)
    rel_seen = np.abs(seen) / FULL_SCALE
    rel_want = np.abs(want) / FULL_SCALE
    k = int(np.argmax(rel_want))
    problem = None
    j = int(np.argmax(rel_seen))
    if j != k:
        problem = "the %s channel answered, not %s" % (AXES[j], AXES[k])
    elif np.sign(seen[k]) != np.sign(want[k]):
        problem = "%s answered with the opposite sign" % AXES[k]
    else:
        unloaded = want == 0
        allowed = (tolerance_pct / 100.0 * np.abs(want)
                   + np.where(unloaded, STEP_SLACK_PCT / 100.0 * FULL_SCALE, 0.0)
                   + np.where(np.arange(3) == k, 0.0,
                              CROSS_TALK_PCT / 100.0 * rel_want[k] * FULL_SCALE))
        bad = np.abs(seen - want) > allowed
        if bad.any():
            i = int(np.argmax(np.where(bad, np.abs(seen - want) / FULL_SCALE, -1)))
            problem = "%s is %.1f %s, expected %.1f +- %.1f %s" % (
                AXES[i], seen[i], UNITS[i], want[i], allowed[i], UNITS[i])
    if problem is None:
        return None
    return ("step '%s' does not fit the load it asked for: %s (saw axial %+.1f N, AP %+.2f N*m, "
            "ML %+.2f N*m against the design's sensitivities; expected %+.1f N, %+.2f N*m, "
            "%+.2f N*m within %g %%)" % (step.get("name", "?"), problem, seen[0], seen[1],
                                         seen[2], want[0], want[1], want[2], tolerance_pct))


def describe(step, lever):
    if step.get("axis") == "axial":
        return "%g kg on the axial axis" % step["mass_kg"]
    if step.get("axis") in ("ap", "ml"):
        return "%g kg at %g m on the %s bending axis" % (step["mass_kg"], lever, step["axis"].upper())
    return "load %s" % step["load"]


def fit(raw_means, loads):
    """raw_means (n, 3) counts; loads (n, 3) physical units (N, N*m, N*m).
    Returns (offsets (3,) counts, gain matrix (3, 3) device units per count)."""
    R = np.asarray(raw_means, float)
    L = np.asarray(loads, float) / SCALE                     # device units
    X = np.column_stack([R, np.ones(len(R))])
    coef, _res, rank, _sv = np.linalg.lstsq(X, L, rcond=None)
    if rank < 4:
        raise OimonError("calibration fit is degenerate: the readings do not span all axes "
                         "(is a bridge disconnected?)")
    A = coef[:3].T                                            # load = A @ raw + c
    c = coef[3]
    try:
        offsets = -np.linalg.solve(A, c)
    except np.linalg.LinAlgError:
        raise OimonError("calibration fit is singular")
    return offsets, A


def apply(offsets, matrix, raw):
    """Physical loads (N, N*m, N*m) for raw counts (n, 3)."""
    return (np.asarray(raw, float)[:, :3] - offsets) @ np.asarray(matrix).T * SCALE


def residuals(offsets, matrix, raw_means, loads, full_scale=FULL_SCALE):
    """Per axis: max |error| in N / N*m, RMS, and max as % of full scale."""
    err = apply(offsets, matrix, raw_means) - np.asarray(loads, float)
    mx = np.abs(err).max(axis=0)
    rms = np.sqrt((err ** 2).mean(axis=0))
    return {"error": err, "max": mx, "rms": rms, "pct": 100.0 * mx / full_scale}


def certificate(device_id, plan, raw_means, raw_std, offsets, matrix, res, date, fw=None):
    """The record stored in the database (table calibration, column data)."""
    return {
        "device_id": device_id, "date": date, "firmware": fw,
        "lever_arm_m": plan["lever_arm_m"], "bound_pct": plan["bound_pct"],
        "full_scale": dict(zip(AXES, FULL_SCALE.tolist())), "units": dict(zip(AXES, UNITS)),
        "offsets_counts": [float(x) for x in offsets],
        "matrix_units_per_count": np.asarray(matrix).tolist(),
        "steps": [{"name": s["name"], "load": s["load"], "raw_mean": [float(x) for x in m],
                   "raw_std": [float(x) for x in sd], "error": [float(x) for x in e]}
                  for s, m, sd, e in zip(plan["steps"], raw_means, raw_std, res["error"])],
        "max_error": dict(zip(AXES, res["max"].tolist())),
        "rms_error": dict(zip(AXES, res["rms"].tolist())),
        "max_error_pct_per_axis": dict(zip(AXES, res["pct"].tolist())),
        "max_error_pct": float(res["pct"].max()),
        "passed": bool(res["pct"].max() <= plan["bound_pct"]),
    }


def plan_loads(plan, rate=1000):
    """The simulated jig: (n, 3) loads in device units holding each step for hold_s."""
    hold = int(round(plan.get("hold_s", 2.0) * rate))
    rows = [np.tile(np.asarray(s["load"]) / SCALE, (hold, 1)) for s in plan["steps"]]
    return np.concatenate(rows)


def write_plan_recording(plan, path, rate=1000):
    """A calibrated recording of the plan's loads, for `oimon sim device --recording` (the
    virtual device turns it into raw counts through the simulated sensor)."""
    from oimon import recording
    loads = np.rint(plan_loads(plan, rate)).astype(np.int32)
    with recording.Writer(path, {"device_id": "JIG", "rate_hz": rate, "kind": "calibrated",
                                 "source": "oimon calibrate --write-jig"}) as w:
        w.write(0, loads)
    return len(loads)
