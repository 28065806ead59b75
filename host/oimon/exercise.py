"""Phase I loading exercise on the host (docs/exercise.md): plan model and presets, validation
(the device's own rules: oimon_common.exercise.validate_plan), the progression table, session
storage in SQLite, compliance (sessions done vs prescribed per day, time in band, peaks,
over-target excursions) and a PNG chart for reports."""
import datetime as dt
import io
import json

from oimon.errors import OimonError, read_json
from oimon_common import exercise as FX

G = 9.81
N_PER_KG_0P1 = G * 10.0          # device units (0.1 N) per kg

PRESETS = {
    # the protocol of issue 7: 20 minutes twice a day, 5 kg rising by 5 kg a week
    "2x20": {"sessions_per_day": 2, "minutes": 20, "start_kg": 5, "step_kg": 5,
             "interval_days": 7, "band_pct": 10, "margin_pct": 20},
    # the variant other centres use: three sessions of 30 minutes a day
    "3x30": {"sessions_per_day": 3, "minutes": 30, "start_kg": 5, "step_kg": 5,
             "interval_days": 7, "band_pct": 10, "margin_pct": 20},
}
DEFAULT_PRESET = "2x20"


def cap_limit_kg(body_weight_kg):
    """min(50% of body weight, 50 kg), to 0.1 kg (the device's rounding)."""
    return FX.cap_limit_dkg(body_weight_kg) / 10.0


def make_plan(body_weight_kg, preset=DEFAULT_PRESET, start_date=None, utc_offset_min=None,
              **overrides):
    """A complete plan dict from a preset and overrides (None = keep the preset's). The cap
    defaults to min(50% of body weight, 50 kg); the start date to today; the time zone to this
    computer's. Not validated: call validate()."""
    if preset not in PRESETS:
        raise OimonError("unknown preset %r (choose from %s)" % (preset, ", ".join(sorted(PRESETS))))
    if body_weight_kg is None:
        raise OimonError("body weight unknown: give --body-weight-kg")
    p = {"v": 1, "preset": preset}
    p.update(PRESETS[preset])
    for k, v in overrides.items():
        if v is not None:
            p[k] = v
    p["body_weight_kg"] = _clean(body_weight_kg)
    if p.get("cap_kg") is None:
        p["cap_kg"] = _clean(cap_limit_kg(body_weight_kg))
    for k in ("start_kg", "step_kg", "cap_kg"):
        p[k] = _clean(p[k])
    if start_date is None:
        start_date = dt.date.today().isoformat()
    p["start_date"] = str(start_date)
    if utc_offset_min is None:
        off = dt.datetime.now().astimezone().utcoffset()
        utc_offset_min = int(off.total_seconds() // 60) if off is not None else 0
    p["utc_offset_min"] = utc_offset_min
    return {k: p[k] for k in FX.PLAN_KEYS if k in p}


def _clean(x):
    """Numbers as the device stores them: whole kg as int, else one decimal."""
    x = round(float(x), 1)
    return int(x) if x == int(x) else x


def validate(plan, body_weight_kg=None):
    """Raise OimonError with the device's reason if the device would refuse `plan`."""
    err = FX.validate_plan(plan, body_weight_kg)
    if err:
        raise OimonError("exercise plan refused: " + err)
    return plan


def load_plan_file(path):
    return validate(read_json(path, "plan"))


def day_number(d):
    return (d - dt.date(1970, 1, 1)).days


def date_of(day):
    return dt.date(1970, 1, 1) + dt.timedelta(days=day)


def target_kg(plan, date):
    """Target of a calendar date in kg and its progression level."""
    dkg, level = FX.target_dkg(plan, day_number(date))
    return dkg / 10.0, level


def thresholds_kg(plan, tkg):
    """(lower band edge, upper band edge, alarm threshold) in kg for a target in kg."""
    b, m = plan["band_pct"], plan["margin_pct"]
    return tkg * (1 - b / 100.0), tkg * (1 + b / 100.0), tkg * (1 + m / 100.0)


def progression(plan):
    """The plan's steps until the cap: [{level, from, to (None = onwards), target_kg, band_lo_kg,
    band_hi_kg, alarm_kg}]."""
    d0 = dt.date.fromisoformat(plan["start_date"])
    iv = plan["interval_days"]
    rows = []
    level = 0
    while True:
        start = d0 + dt.timedelta(days=iv * level)
        tkg, lv = target_kg(plan, start)
        nxt, _ = target_kg(plan, start + dt.timedelta(days=iv))
        last = nxt <= tkg or level > 200
        lo, hi, al = thresholds_kg(plan, tkg)
        rows.append({"level": lv, "from": start.isoformat(),
                     "to": None if last else (start + dt.timedelta(days=iv - 1)).isoformat(),
                     "target_kg": tkg, "band_lo_kg": round(lo, 1), "band_hi_kg": round(hi, 1),
                     "alarm_kg": round(al, 1)})
        if last:
            return rows
        level += 1


def format_plan(plan):
    lines = ["exercise plan (%s): %d session%s of %d min a day, target band +-%d%%, alarm above "
             "+%d%%" % (plan.get("preset") or "custom", plan["sessions_per_day"],
                        "s" if plan["sessions_per_day"] > 1 else "", plan["minutes"],
                        plan["band_pct"], plan["margin_pct"]),
             "start %s kg, +%s kg every %d days, cap %s kg (limit min(50%% of %s kg, 50 kg) = %s kg)"
             % (plan["start_kg"], plan["step_kg"], plan["interval_days"], plan["cap_kg"],
                plan["body_weight_kg"], _clean(cap_limit_kg(plan["body_weight_kg"]))),
             "",
             "level  from        to          target kg  band kg       alarm above kg"]
    for r in progression(plan):
        lines.append("%5d  %s  %-10s  %9.1f  %5.1f-%-6.1f  %6.1f" % (
            r["level"], r["from"], r["to"] or "onwards", r["target_kg"], r["band_lo_kg"],
            r["band_hi_kg"], r["alarm_kg"]))
    return "\n".join(lines)


# --- sessions in the database ----------------------------------------------------------------
def add_session(con, device_id, s):
    """Store one session summary (the device's Exercise.summary() dict); a repeat is ignored."""
    if not isinstance(s, dict) or s.get("kind") != "exercise":
        raise OimonError("not an exercise session summary")
    con.execute("INSERT OR IGNORE INTO device(device_id) VALUES (?)", (device_id,))
    con.execute("INSERT OR IGNORE INTO exercise_session(device_id, t, day, data) VALUES (?,?,?,?)",
                (device_id, s.get("t"), s.get("date"), json.dumps(s, sort_keys=True)))


def sessions_from_db(con, device_id=None, since=None, until=None):
    """Session summaries (dicts, oldest first, each with "device_id"), from the exercise_session
    table and from events of kind "exercise" (a summary logged as an event and recorded)."""
    out = {}
    q = [("SELECT device_id, data FROM exercise_session", "day"),
         ("SELECT device_id, data FROM event WHERE kind = 'exercise'", None)]
    for sql, _ in q:
        params = []
        if device_id:
            sql += (" AND" if "WHERE" in sql else " WHERE") + " device_id = ?"
            params.append(device_id)
        for r in con.execute(sql, params):
            try:
                s = json.loads(r["data"])
            except ValueError:
                continue
            if not isinstance(s, dict) or "date" not in s:
                continue
            s["device_id"] = r["device_id"]
            if since and s["date"] < since.isoformat():
                continue
            if until and s["date"] > until.isoformat():
                continue
            out.setdefault((s["device_id"], s.get("t"), s["date"], s.get("n")), s)
    return sorted(out.values(), key=lambda s: (s["date"], s.get("t") or 0, s.get("n") or 0))


# --- compliance ------------------------------------------------------------------------------
def session_complete(s):
    return s.get("loaded_ms", 0) * 100 >= FX.COMPLETE_PCT * 60000 * s.get("minutes", 0)


def kg(v_0p1N):
    return round(v_0p1N / N_PER_KG_0P1, 2)


def compliance(sessions, plan=None, start=None, end=None):
    """Per day from `start` (default: the plan's start, else the first session's day) to `end`
    (default: the last session's day): prescribed sessions, sessions started and complete, time
    in band (% of loaded time), target / mean / peak load and over-target excursions; totals.
    Sessions that carry their own prescription (spd, minutes) are the authority for their day;
    days without sessions take the plan's, else the nearest earlier session's."""
    by_day = {}
    for s in sessions:
        by_day.setdefault(s["date"], []).append(s)
    days = sorted(by_day)
    if start is None:
        start = dt.date.fromisoformat(plan["start_date"]) if plan else (
            dt.date.fromisoformat(days[0]) if days else None)
    if end is None:
        end = dt.date.fromisoformat(days[-1]) if days else start
    rows = []
    if start is None:
        return {"days": rows, "totals": _totals(rows)}
    spd = plan["sessions_per_day"] if plan else None
    d = start
    while d <= end:
        ss = by_day.get(d.isoformat(), [])
        if ss:
            spd = max(s.get("spd", spd or 0) for s in ss)
        loaded = sum(s.get("loaded_ms", 0) for s in ss)
        inb = sum(s.get("in_ms", 0) for s in ss)
        row = {
            "date": d.isoformat(),
            "prescribed": spd or 0,
            "started": len(ss),
            "done": sum(1 for s in ss if session_complete(s)),
            "loaded_min": round(loaded / 60000.0, 1),
            "in_band_pct": round(100.0 * inb / loaded, 1) if loaded else None,
            "target_kg": max((s.get("target_kg", 0) for s in ss), default=None),
            "mean_kg": kg(sum(s.get("mean", 0) * s.get("loaded_ms", 0) for s in ss) / loaded)
            if loaded else None,
            "peak_kg": kg(max(s.get("peak", 0) for s in ss)) if ss else None,
            "over_n": sum(s.get("over_n", 0) for s in ss),
            "alarm_n": sum(s.get("alarm_n", 0) for s in ss),
            "band_pct": max((s.get("band_pct", 0) for s in ss), default=None),
        }
        if row["target_kg"] is None and plan:
            row["target_kg"] = target_kg(plan, d)[0]
        if row["band_pct"] is None and plan:
            row["band_pct"] = plan["band_pct"]
        rows.append(row)
        d += dt.timedelta(days=1)
    return {"days": rows, "totals": _totals(rows)}


def _totals(rows):
    pres = sum(r["prescribed"] for r in rows)
    done = sum(min(r["done"], r["prescribed"]) if r["prescribed"] else r["done"] for r in rows)
    loaded = sum(r["loaded_min"] for r in rows)
    inb = sum(r["loaded_min"] * (r["in_band_pct"] or 0) / 100.0 for r in rows)
    peaks = [r["peak_kg"] for r in rows if r["peak_kg"] is not None]
    return {"days": len(rows), "prescribed": pres, "done": done,
            "started": sum(r["started"] for r in rows),
            "adherence_pct": round(100.0 * done / pres, 1) if pres else None,
            "loaded_min": round(loaded, 1),
            "in_band_pct": round(100.0 * inb / loaded, 1) if loaded else None,
            "peak_kg": max(peaks) if peaks else None,
            "over_n": sum(r["over_n"] for r in rows), "alarm_n": sum(r["alarm_n"] for r in rows)}


def format_report(rep, device_id=None):
    rows, t = rep["days"], rep["totals"]
    if not rows:
        return ("no exercise sessions%s in the database: the device keeps each session's summary in "
                "its log; 'oimon sync' brings them here" % (" for %s" % device_id if device_id else ""))
    out = ["exercise report%s: %s .. %s (%d days)" % (
        " for %s" % device_id if device_id else "", rows[0]["date"], rows[-1]["date"], len(rows)),
        "date        sessions  target kg  mean kg  peak kg  in band  over  alarm"]
    for r in rows:
        out.append("%s  %2d/%-2d     %9s  %7s  %7s  %7s  %4d  %5d" % (
            r["date"], r["done"], r["prescribed"], _f(r["target_kg"]), _f(r["mean_kg"]),
            _f(r["peak_kg"]), "-" if r["in_band_pct"] is None else "%d%%" % round(r["in_band_pct"]),
            r["over_n"], r["alarm_n"]))
    out.append("total: %d/%d sessions done (%s), time in band %s of %.0f loaded minutes, "
               "%d over-target excursions (%d above the alarm margin), peak %s kg" % (
                   t["done"], t["prescribed"],
                   "-" if t["adherence_pct"] is None else "%d%%" % round(t["adherence_pct"]),
                   "-" if t["in_band_pct"] is None else "%d%%" % round(t["in_band_pct"]),
                   t["loaded_min"], t["over_n"], t["alarm_n"], _f(t["peak_kg"])))
    return "\n".join(out)


def _f(x):
    return "-" if x is None else "%.1f" % x


def exercise_chart_png(rep, title="Phase I loading exercise", width_in=8.0, dpi=100):
    """PNG bytes of a compliance report (compliance()'s dict) on a calendar axis: top, each
    day's target zone drawn as a green band (even for one day), the target, the mean and peak
    load held; bottom, sessions done (bars on their dates) against the prescribed number (a
    mark), whole sessions on the axis, and the time in the zone."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    rows = rep["days"]
    fig = Figure(figsize=(width_in, 5.0), dpi=dpi)
    ax, bx = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    if not rows:
        ax.text(0.5, 0.5, "no exercise sessions", ha="center", va="center", transform=ax.transAxes)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    x = [mdates.date2num(dt.date.fromisoformat(r["date"])) for r in rows]
    nan = float("nan")
    for xi, r in zip(x, rows):
        t = r["target_kg"]
        if t is None:
            continue
        b = (r["band_pct"] or 0) / 100.0
        ax.bar(xi, t * 2 * b, bottom=t * (1 - b), width=0.9, color="tab:green", alpha=0.22, lw=0)
        ax.hlines(t, xi - 0.45, xi + 0.45, color="tab:green", lw=2)
    ax.plot(x, [r["mean_kg"] if r["mean_kg"] is not None else nan for r in rows], "o",
            color="tab:blue", label="mean held")
    ax.plot(x, [r["peak_kg"] if r["peak_kg"] is not None else nan for r in rows], "v",
            color="tab:red", ms=5, label="peak")
    h, lab = ax.get_legend_handles_labels()
    h = [Patch(color="tab:green", alpha=0.3, label="target zone"),
         Line2D([], [], color="tab:green", lw=2, label="target")] + h
    ax.legend(handles=h, loc="upper left", fontsize=8, ncol=4)
    ax.set_ylabel("load (kg)")
    top = max([v for r in rows for v in (r["peak_kg"], r["mean_kg"],
                                          (r["target_kg"] or 0) * (1 + (r["band_pct"] or 0) / 100.0))
               if v is not None] + [1.0])
    ax.set_ylim(0, top * 1.3)          # room for the legend above the peaks
    ax.set_title(title)
    ax.grid(alpha=0.3)
    bx.bar(x, [r["done"] for r in rows], 0.6, color="tab:blue", label="sessions done")
    bx.hlines([r["prescribed"] for r in rows], [v - 0.4 for v in x], [v + 0.4 for v in x],
              color="k", lw=2, label="prescribed")
    bx.set_ylabel("sessions")
    bx.yaxis.set_major_locator(MaxNLocator(integer=True))
    bx.set_ylim(0, max([r["prescribed"] for r in rows] + [r["done"] for r in rows] + [1]) + 0.6)
    cx = bx.twinx()
    cx.plot(x, [r["in_band_pct"] if r["in_band_pct"] is not None else nan for r in rows],
            "s-", color="tab:orange", ms=3, label="time in zone %")
    cx.set_ylim(0, 105)
    cx.set_ylabel("in zone (%)")
    h1, l1 = bx.get_legend_handles_labels()
    h2, l2 = cx.get_legend_handles_labels()
    bx.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8, ncol=3)
    span = len(rows)
    bx.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, (span + 13) // 14)))
    bx.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
    bx.set_xlim(x[0] - 0.6, x[-1] + 0.6)
    for lab_ in bx.get_xticklabels():
        lab_.set_rotation(45)
        lab_.set_fontsize(8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def format_session(s):
    """A session summary (the device's Exercise.summary(), device units) in words."""
    if not isinstance(s, dict) or "loaded_ms" not in s:
        return "exercise session ended"
    lm = s.get("loaded_ms", 0)
    pct = lambda k: round(100.0 * s.get(k, 0) / lm) if lm else 0  # noqa: E731
    out = ["exercise session %s of %s ended after %.1f min (%s of %d min prescribed)%s" % (
        s.get("n", "?"), s.get("date", "today"), s.get("dur_ms", 0) / 60000.0,
        "complete" if s.get("complete") else "not complete", s.get("minutes", 0),
        "" if not s.get("spd") else "; %d sessions a day" % s["spd"])]
    if s.get("target_kg") is not None:
        lo, hi, al = thresholds_kg({"band_pct": s.get("band_pct", 10), "margin_pct": s.get("margin_pct", 20)},
                                   s["target_kg"])
        out.append("target %.1f kg (zone %.1f-%.1f kg, unload above %.1f kg)" % (s["target_kg"], lo, hi, al))
    out.append("loaded %.1f min: in the zone %d %%, under %d %%, over %d %%" % (
        lm / 60000.0, pct("in_ms"), pct("under_ms"), pct("over_ms")))
    out.append("mean %.1f kg, peak %.1f kg; %d over-target excursions, %d above the alarm margin" % (
        kg(s.get("mean", 0)), kg(s.get("peak", 0)), s.get("over_n", 0), s.get("alarm_n", 0)))
    out.append("(kept in the device's log: 'oimon sync' adds it to 'oimon exercise report')")
    return "\n".join(out)
