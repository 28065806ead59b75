# Phase I loading exercise (docs/exercise.md): the device is the patient's bathroom scale, coach
# and diary. The prosthetist's plan (config key "exercise_plan", validated by validate_plan()) gives
# a target load per day; a session classifies every calibrated axial sample as under / in / over
# the target band (or above the over-target alarm margin), with hysteresis and a dwell time, and
# counts time in band, the peak and the excursions for the session summary the main loop logs.
#
# Sampling path: Exercise.step() is integer-only and allocation-free (all thresholds are computed
# in start(); the sums are split so they stay small ints on the ESP32's 31-bit small ints).
# Also imported by the host (oimon_common.exercise): the host validates plans and draws its live view
# with this very code.
try:
    from micropython import const
except ImportError:  # CPython (host)
    def const(x):
        return x
from oimon_common import dates
try:
    from time import ticks_diff
except ImportError:  # CPython: plain integers, no wrap
    def ticks_diff(a, b):
        return a - b

# Zone cues (values returned by Exercise.step(); the alarm module maps them to patterns)
ZONE_UNDER = const(1)      # below the band: load more
ZONE_IN = const(2)         # in the target band: hold
ZONE_OVER = const(3)       # above the band: unload a little
ZONE_ALARM = const(4)      # above the over-target alarm margin: unload now (an "over" with urgency)
ZONE_NAMES = {0: "none", 1: "under", 2: "in", 3: "over", 4: "alarm"}

# Plan rules (the same on the host: it imports this module)
CAP_KG = 50                # absolute cap of the static loading target
CAP_BW_PCT = 50            # ... and at most this % of body weight
MAX_STEP_KG = 10           # a progression step may add at most this many kg ...
MIN_INTERVAL_DAYS = 7      # ... and steps may come at most once every this many days
MAX_INTERVAL_DAYS = 84
MIN_START_KG = 1
BAND_PCT_MIN = 5
BAND_PCT_MAX = 25
MARGIN_PCT_MAX = 50
SESSIONS_MAX = 4
MINUTES_MIN = 5
MINUTES_MAX = 60

# Session rules
HYST_PCT = const(2)        # amplitude hysteresis at each zone edge, % of target ...
HYST_MIN = const(20)       # ... at least 2 N (0.1 N units)
DWELL_MS = const(40)       # a new zone must hold this long before it is signalled
REST_PCT = const(25)       # load >= this % of target counts as "loaded" (standing on the leg)
COMPLETE_PCT = 80          # a session is complete when loaded for >= 80% of its minutes
_ACC_SPLIT = const(0xFFFFFF)

PLAN_KEYS = ("v", "preset", "start_date", "utc_offset_min", "body_weight_kg", "start_kg",
             "step_kg", "interval_days", "cap_kg", "sessions_per_day", "minutes", "band_pct",
             "margin_pct")
_OPTIONAL = ("v", "preset", "utc_offset_min")


def _num(x):
    return (isinstance(x, int) or isinstance(x, float)) and not isinstance(x, bool)


def _dkg(kg):
    # kg (int or float) -> 0.1 kg, rounded
    return int(kg * 10 + 0.5)


def dkg_to_0p1N(dkg):
    # 0.1 kg * 9.81 m/s^2 = 0.981 N = 9.81 units of 0.1 N
    return (dkg * 981 + 50) // 100


def parse_date(s):
    """'YYYY-MM-DD' (2020..2099) -> day number (days since 1970-01-01), or None."""
    ymd = dates.parse_ymd(s, 2020)
    return None if ymd is None else dates.days_from_civil(ymd[0], ymd[1], ymd[2])


def date_str(day):
    return dates.ymd_str(dates.civil_from_days(day))


def cap_limit_dkg(body_weight_kg):
    """The highest cap a plan may have: min(50% of body weight, 50 kg), in 0.1 kg."""
    return min(_dkg(body_weight_kg) * CAP_BW_PCT // 100, CAP_KG * 10)


def _fmt_dkg(d):
    return "%d.%d" % (d // 10, d % 10) if d % 10 else "%d" % (d // 10)


def validate_plan(plan, body_weight_kg=None):
    """None if `plan` is an acceptable exercise plan, else a one-line reason. body_weight_kg, if
    given (the device's configured body weight), replaces the plan's for the cap check: a plan
    whose cap no longer fits the patient's weight is refused."""
    if not isinstance(plan, dict):
        return "plan must be a JSON object"
    for k in plan:
        if k not in PLAN_KEYS:
            return "unknown plan field %r" % (k,)
    for k in PLAN_KEYS:
        if k not in plan and k not in _OPTIONAL:
            return "plan field %s is missing" % k
    if plan.get("v", 1) != 1:
        return "plan version %r is not supported (1)" % (plan.get("v"),)
    pr = plan.get("preset", "")
    if not isinstance(pr, str) or len(pr) > 16:
        return "preset must be a short string"
    if parse_date(plan["start_date"]) is None:
        return "start_date must be a date YYYY-MM-DD (2020..2099)"
    tz = plan.get("utc_offset_min", 0)
    if not isinstance(tz, int) or isinstance(tz, bool) or not -720 <= tz <= 840:
        return "utc_offset_min must be an integer -720..840"
    for k in ("body_weight_kg", "start_kg", "step_kg", "cap_kg"):
        if not _num(plan[k]):
            return "%s must be a number" % k
    for k in ("interval_days", "sessions_per_day", "minutes", "band_pct", "margin_pct"):
        v = plan[k]
        if not isinstance(v, int) or isinstance(v, bool):
            return "%s must be an integer" % k
    bw = plan["body_weight_kg"]
    if body_weight_kg is not None:
        bw = body_weight_kg
    if not _num(bw) or not 20 <= bw <= 250:
        return "body weight %s kg is outside 20..250 kg" % (_fmt_dkg(_dkg(bw)) if _num(bw) else "?")
    limit = cap_limit_dkg(bw)
    cap = _dkg(plan["cap_kg"])
    start = _dkg(plan["start_kg"])
    step = _dkg(plan["step_kg"])
    if cap > limit:
        return "cap %s kg is above the cap min(%d%% of %s kg body weight, %d kg) = %s kg" % (
            _fmt_dkg(cap), CAP_BW_PCT, _fmt_dkg(_dkg(bw)), CAP_KG, _fmt_dkg(limit))
    if cap < MIN_START_KG * 10:
        return "cap %s kg is below %d kg" % (_fmt_dkg(cap), MIN_START_KG)
    if start < MIN_START_KG * 10:
        return "start load %s kg is below %d kg" % (_fmt_dkg(start), MIN_START_KG)
    if start > cap:
        return "start load %s kg is above the cap %s kg" % (_fmt_dkg(start), _fmt_dkg(cap))
    if step < 0:
        return "step_kg must not be negative"
    if step > MAX_STEP_KG * 10:
        return "step %s kg is faster than allowed: at most %d kg per step" % (_fmt_dkg(step), MAX_STEP_KG)
    iv = plan["interval_days"]
    if iv < MIN_INTERVAL_DAYS:
        return "step interval %d days is faster than allowed: at least %d days between steps" % (
            iv, MIN_INTERVAL_DAYS)
    if iv > MAX_INTERVAL_DAYS:
        return "step interval %d days is longer than %d days" % (iv, MAX_INTERVAL_DAYS)
    if not 1 <= plan["sessions_per_day"] <= SESSIONS_MAX:
        return "sessions_per_day must be 1..%d" % SESSIONS_MAX
    if not MINUTES_MIN <= plan["minutes"] <= MINUTES_MAX:
        return "minutes must be %d..%d" % (MINUTES_MIN, MINUTES_MAX)
    b = plan["band_pct"]
    if not BAND_PCT_MIN <= b <= BAND_PCT_MAX:
        return "band_pct must be %d..%d" % (BAND_PCT_MIN, BAND_PCT_MAX)
    m = plan["margin_pct"]
    if not b < m <= MARGIN_PCT_MAX:
        return "margin_pct must be above band_pct (%d) and at most %d" % (b, MARGIN_PCT_MAX)
    return None


def target_dkg(plan, day):
    """Target of day `day` (days since 1970) in 0.1 kg and its progression level:
    min(cap, start + step * floor((day - start_day) / interval)); before the start day, the start."""
    d0 = parse_date(plan["start_date"])
    k = (day - d0) // plan["interval_days"] if day > d0 else 0
    start, step, cap = _dkg(plan["start_kg"]), _dkg(plan["step_kg"]), _dkg(plan["cap_kg"])
    t = start + step * k
    if t > cap:
        t = cap
    return t, k


class Exercise:
    def __init__(self, plan=None, body_weight_kg=None):
        self.plan = None
        self.plan_error = None
        self.active = False
        self.zone = 0
        self.day = -1
        self.sessions_today = 0
        self._reset(0)
        self.target = 0
        self.target_dkg = 0
        self.level = 0
        self._lo = self._hi = self._al = self._h = self._rest = 0
        self._summary = None
        if plan is not None:
            self.set_plan(plan, body_weight_kg)

    def set_plan(self, plan, body_weight_kg=None):
        """Take a new plan (validated); returns None or the reason it was refused. A running
        session keeps its target until it stops."""
        err = validate_plan(plan, body_weight_kg)
        if err is None:
            self.plan = plan
        elif self.plan is None:
            self.plan_error = err
        return err

    def day_of(self, unix_s):
        """The patient's day number (days since 1970 in the plan's time zone) at unix time."""
        tz = self.plan.get("utc_offset_min", 0) if self.plan else 0
        return (unix_s + tz * 60) // 86400

    def _reset(self, now_ms):
        self.t0_ms = now_ms
        self._last = now_ms
        self.loaded_ms = 0
        self.in_ms = 0
        self.under_ms = 0
        self.over_ms = 0
        self.peak = 0
        self.over_n = 0
        self.alarm_n = 0
        self._acc = 0
        self._acc_hi = 0
        self._n = 0
        self._pend = 0
        self._since = now_ms
        self.dur_ms = 0

    def start(self, now_ms, day, t=None):
        """Start a session on day `day` (day_of(unix time)) at ticks_ms() `now_ms`; `t` the unix
        time for the summary. Returns None, or why it cannot start."""
        if self.plan is None:
            if self.plan_error:
                return "the stored exercise plan is not valid: " + self.plan_error
            return "no exercise plan on this device"
        if self.active:
            return "an exercise session is already running"
        p = self.plan
        dkg, self.level = target_dkg(p, day)
        T = dkg_to_0p1N(dkg)
        self.target_dkg = dkg
        self.target = T
        self._lo = T - T * p["band_pct"] // 100
        self._hi = T + T * p["band_pct"] // 100
        self._al = T + T * p["margin_pct"] // 100
        h = T * HYST_PCT // 100
        self._h = h if h > HYST_MIN else HYST_MIN
        self._rest = T * REST_PCT // 100
        if day != self.day:
            self.day = day
            self.sessions_today = 0
        self.sessions_today += 1
        self.t = t
        self._reset(now_ms)
        self.zone = ZONE_UNDER
        self.active = True
        self._summary = None
        return None

    def step(self, x, now):
        """One calibrated axial sample (0.1 N, compression positive) at ticks_ms() `now`.
        Returns the new zone when the signalled zone changes, else 0. Integer-only, no allocation."""
        if not self.active:
            return 0
        dt = ticks_diff(now, self._last)
        self._last = now
        if dt < 0 or dt > 1000:
            dt = 0                        # a clock glitch is not exercise time
        z = self.zone
        if x >= self._rest:
            self.loaded_ms += dt
            if z == ZONE_IN:
                self.in_ms += dt
            elif z == ZONE_UNDER:
                self.under_ms += dt
            else:
                self.over_ms += dt
            a = self._acc + x
            if a > _ACC_SPLIT:
                self._acc_hi += a >> 8
                a &= 0xFF
            self._acc = a
            self._n += 1
        if x > self.peak:
            self.peak = x
        h = self._h
        # candidate zone: an edge is crossed at its threshold going away from the current zone
        # and only `h` beyond it coming back (Schmitt trigger per edge)
        if x < (self._lo if z == ZONE_UNDER else self._lo - h):
            c = ZONE_UNDER
        elif x > (self._al - h if z == ZONE_ALARM else self._al):
            c = ZONE_ALARM
        elif x > (self._hi - h if z >= ZONE_OVER else self._hi):
            c = ZONE_OVER
        else:
            c = ZONE_IN
        if c == z:
            self._pend = 0
            return 0
        if c != self._pend:
            self._pend = c
            self._since = now
            return 0
        if ticks_diff(now, self._since) < DWELL_MS:
            return 0
        self._pend = 0
        self.zone = c
        if c >= ZONE_OVER and z <= ZONE_IN:
            self.over_n += 1
        if c == ZONE_ALARM:
            self.alarm_n += 1
        return c

    def due(self, now):
        """True once the session has run its prescribed minutes (the main loop then stops it)."""
        return self.active and ticks_diff(now, self.t0_ms) >= self.plan["minutes"] * 60000

    def stop(self, now):
        """End the session; returns its summary (also kept for summary())."""
        if not self.active:
            return self._summary
        self.dur_ms = ticks_diff(now, self.t0_ms)
        self.active = False
        self.zone = 0
        self._summary = None
        s = self.summary()
        self._summary = s
        return s

    def summary(self):
        """The session summary (the running session's so far, or the last one's), a dict for the
        log: loads in 0.1 N, times in ms; None before the first session."""
        if self._summary is not None:
            return self._summary
        if self.plan is None or self.day < 0:
            return None
        p = self.plan
        n = self._n
        mean = (self._acc_hi * 256 + self._acc + n // 2) // n if n else 0
        lm = self.loaded_ms
        return {
            "kind": "exercise", "t": self.t, "day": self.day, "date": date_str(self.day),
            "n": self.sessions_today, "spd": p["sessions_per_day"], "minutes": p["minutes"],
            "level": self.level, "target_kg": self.target_dkg / 10, "target": self.target,
            "band_pct": p["band_pct"], "margin_pct": p["margin_pct"],
            "dur_ms": self.dur_ms if not self.active else ticks_diff(self._last, self.t0_ms),
            "loaded_ms": lm, "in_ms": self.in_ms, "under_ms": self.under_ms,
            "over_ms": self.over_ms, "in_pct": self.in_ms * 100 // lm if lm else 0,
            "peak": self.peak, "mean": mean, "over_n": self.over_n, "alarm_n": self.alarm_n,
            "complete": lm * 100 >= COMPLETE_PCT * 60000 * p["minutes"],
        }
