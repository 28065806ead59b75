# The device's settings: defaults, value ranges and validation, one source for the device
# (firmware/config.py stores them, firmware/cmds.py applies C_SET), the host (oimon config set
# checks the same ranges before anything is sent) and the simulator (replay runs with them).
# Device units: forces 0.1 N, moments 0.01 N*m (docs/algorithm.md).
import json
from oimon_common.limits import PHASES, phase_limits, body_weight_0p1N

DEFAULTS = {
    "phase": "I",                    # the strictest: a device nobody configured protects most
    "body_weight_kg": 75,
    "patient": "",
    "limits": {},
    "debounce_ms": 20,
    "retighten_last": "",            # YYYY-MM-DD of the last retightening, "" = never recorded
    "retighten_torque_nm": 0,
    "retighten_interval_months": 3,
    "stream_batch": 50,
    "exercise_plan": None,           # the prosthetist's exercise plan (C_PLAN; exercise.py)
}
PRIVATE = ("auth_counter",)          # not in C_CONFIG's answer (the counter lives in auth.py's store)

# Limit ranges in physical units: key: (description, unit, low, high, device units per unit).
# The host checks them in the user's units, the device in its own (LIMIT_RANGES below).
# The highs are caps below the documented failure envelope (docs/algorithm.md 5.3, "Caps"):
# compression 2000 N = 72 % of the femur failure envelope 2768 N; bending 90 N*m = 65 % of its
# 138 N*m and 0.9 x the cadaver bending failure mean 100.4 N*m (+-38.5); tension 1000 N = 36 %.
# Device (cmds.py, config.py on load) and host (oimon config set) refuse anything beyond them.
COMP_CAP_N = 2000
MOMENT_CAP_NM = 90
TENS_CAP_N = 1000
RANGES = {
    "comp": ("axial compression limit", "N", 200, COMP_CAP_N, 10),
    "tens": ("axial tension limit", "N", 50, TENS_CAP_N, 10),
    "moment": ("bending moment limit", "N*m", 5, MOMENT_CAP_NM, 100),
}
LIMIT_RANGES = {k: (RANGES[k][2] * RANGES[k][4], RANGES[k][3] * RANGES[k][4]) for k in RANGES}
BODY_WEIGHT = (30, 200)              # kg
PATIENT_MAX = 32                     # characters of the pseudonym
INTERVAL_MONTHS = (1, 12)            # retightening interval
TORQUE_NM = (0, 50)                  # retightening torque (exclusive low)
PLAN_MAX = 800                       # bytes of the exercise plan's JSON
STREAM_BATCH = (10, 84)              # samples per stream frame (docs/protocol.md: <= 8 B/sample)


def copy(d):
    return json.loads(json.dumps(d))


def defaults():
    return copy(DEFAULTS)


def failsafe():
    """The settings a device falls back to when its configuration is missing, corrupt or not
    authentic: the defaults, i.e. phase I (the strictest limits), whatever was stored."""
    d = copy(DEFAULTS)
    d["phase"] = PHASES[0]
    return d


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return (isinstance(v, int) or isinstance(v, float)) and not isinstance(v, bool) and v == v


def limits_in_effect(data, phase=None):
    """{"comp", "tens", "moment"} in effect for a phase (default: the current one) of the
    settings `data`: the prosthetist's values over the phase's defaults for the body weight."""
    phase = phase or data["phase"]
    d = phase_limits(PHASES.index(phase), body_weight_0p1N(data["body_weight_kg"]))
    lim = {"comp": d[0], "tens": d[1], "moment": d[2]}
    lim.update(data["limits"].get(phase, {}))
    return lim


def detector_limits(data, rate):
    """[comp, tens, mom, debounce samples, phase index] for detect.Detector.set_limits."""
    lim = limits_in_effect(data)
    return [lim["comp"], lim["tens"], lim["moment"],
            max(1, data["debounce_ms"] * rate // 1000), PHASES.index(data["phase"])]


def check_limits(lim):
    """A C_SET "limits" value {phase: {comp|tens|moment: device units}}: None or what is wrong."""
    if not isinstance(lim, dict) or not lim:
        return "limits must be an object {phase: {comp, tens, moment}}"
    for ph in lim:
        if ph not in PHASES:
            return "unknown phase %r in limits" % (ph,)
        v = lim[ph]
        if not isinstance(v, dict) or not v:
            return "limits of phase %s must be an object" % ph
        for k in v:
            if k not in LIMIT_RANGES:
                return "unknown limit %r" % (k,)
            lo, hi = LIMIT_RANGES[k]
            if not is_int(v[k]) or not lo <= v[k] <= hi:
                return "limit %s %r is outside %d..%d" % (k, v[k], lo, hi)
    return None


def check_patient(p):
    if not isinstance(p, str) or len(p) > PATIENT_MAX:
        return "patient must be a pseudonym of at most %d characters" % PATIENT_MAX
    for ch in p:
        if ord(ch) > 127 or not (ch.isalpha() or ch.isdigit() or ch in "_.-"):
            return "patient pseudonym may hold A-Z a-z 0-9 _ . - only"
    return None


BAD_REQUEST = "request"
OUT_OF_RANGE = "range"


def validate_set(data, args):
    """The changes a C_SET with arguments `args` makes to the settings `data`:
    (changes, None, None), or (None, BAD_REQUEST | OUT_OF_RANGE, message). `data` is unchanged."""
    if not isinstance(args, dict) or not args:
        return None, BAD_REQUEST, "nothing to set"
    ch = {}
    for k in args:
        v = args[k]
        if k == "phase":
            if v not in PHASES:
                return None, OUT_OF_RANGE, "phase must be one of " + ", ".join(PHASES)
        elif k == "body_weight_kg":
            if not is_num(v) or not BODY_WEIGHT[0] <= v <= BODY_WEIGHT[1]:
                return None, OUT_OF_RANGE, "body_weight_kg is outside %d..%d" % BODY_WEIGHT
        elif k == "patient":
            e = check_patient(v)
            if e:
                return None, OUT_OF_RANGE, e
        elif k == "limits":
            e = check_limits(v)
            if e:
                return None, OUT_OF_RANGE, e
            new = copy(data["limits"])             # the prosthetist's overrides
            for ph in v:
                for lk in v[ph]:
                    new.setdefault(ph, {})[lk] = v[ph][lk]
            v = new
        elif k == "retighten_interval_months":
            if not is_int(v) or not INTERVAL_MONTHS[0] <= v <= INTERVAL_MONTHS[1]:
                return None, OUT_OF_RANGE, "retighten_interval_months is outside %d..%d" % INTERVAL_MONTHS
        elif k == "stream_batch":
            if not is_int(v) or not STREAM_BATCH[0] <= v <= STREAM_BATCH[1]:
                return None, OUT_OF_RANGE, "stream_batch is outside %d..%d" % STREAM_BATCH
        else:
            return None, BAD_REQUEST, "unknown setting %r" % (k,)
        ch[k] = v
    after = copy(data)
    for k in ch:
        after[k] = ch[k]
    for ph in PHASES:                              # tension below compression, always
        eff = limits_in_effect(after, ph)
        if eff["tens"] >= eff["comp"]:
            return None, OUT_OF_RANGE, "tension limit must be below the compression limit"
    return ch, None, None


DEBOUNCE_MS = (1, 200)


def check_stored(stored):
    """A configuration read back from flash: None, or what is wrong (a value beyond its range
    makes the whole file invalid: the device falls back to phase I, never to the value)."""
    probe = {}
    for k in ("phase", "body_weight_kg", "patient", "limits", "retighten_interval_months",
              "stream_batch"):
        if k in stored:
            probe[k] = stored[k]
    if "limits" in probe and probe["limits"] == {}:
        probe.pop("limits")
    if probe:
        base = defaults()
        base["limits"] = {}
        if "body_weight_kg" in stored and is_num(stored["body_weight_kg"]):
            base["body_weight_kg"] = stored["body_weight_kg"]
        ch, _kind, why = validate_set(base, probe)
        if ch is None:
            return why
    d = stored.get("debounce_ms", DEFAULTS["debounce_ms"])
    if not is_int(d) or not DEBOUNCE_MS[0] <= d <= DEBOUNCE_MS[1]:
        return "debounce_ms is outside %d..%d" % DEBOUNCE_MS
    return None
