"""The self-contained HTML report: one file (plots embedded as base64 PNG, CSS inline, no
scripts, nothing fetched) that a prosthetist can mail or print.

Sections: retightening status, daily summaries (the device's own daily summaries where the
database has them, else computed from the recordings), events, plots of the recordings,
calibration certificates, exercise compliance. The exercise section is a hook: EXERCISE_HOOKS
holds functions f(con, device_id) -> HTML fragment or None; the built-in one reads a table
`exercise_session` if the database has it."""
import base64
import datetime as dt
import html
import io
import json
import os
from pathlib import Path

import numpy as np

from oimon.eventtext import describe
from oimon import recording, retighten
from oimon.errors import OimonError

MAX_PLOTS = 6

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{border-bottom:3px solid #1f5f99;padding-bottom:.2em}
h2{color:#1f5f99;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
th,td{border:1px solid #bbb;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#e8eef5}
.ok{background:#d8f0d8}.soon{background:#fff1c4}.overdue{background:#f8d0d0;font-weight:bold}
.never{background:#eee}.muted{color:#777}
img{max-width:100%;border:1px solid #ddd;margin:.4em 0}
"""
STATE_CLASS = {"ok": "ok", "due soon": "soon", "overdue": "overdue", "never recorded": "never"}


def _e(x):
    return html.escape("" if x is None else str(x))


def _table(head, rows, classes=None):
    out = ["<table><tr>%s</tr>" % "".join("<th>%s</th>" % _e(h) for h in head)]
    for i, r in enumerate(rows):
        cls = ' class="%s"' % classes[i] if classes and classes[i] else ""
        out.append("<tr%s>%s</tr>" % (cls, "".join("<td>%s</td>" % _e(c) for c in r)))
    out.append("</table>")
    return "\n".join(out)


def _png_b64(fig_func):
    buf = io.BytesIO()
    fig_func(buf)
    return base64.b64encode(buf.getvalue()).decode()


def _recordings(con, device_id):
    q = "SELECT * FROM recording"
    p = ()
    if device_id:
        q += " WHERE device_id = ?"
        p = (device_id,)
    return con.execute(q + " ORDER BY started", p).fetchall()


def recording_stats(path):
    """Peaks and duration of one recording (calibrated), or None if unreadable."""
    try:
        header, index, samples, events, err = recording.load(path)
    except OimonError:
        return None
    if not len(samples) or header.get("kind") != "calibrated":
        return {"samples": len(samples), "events": len(events)}
    phys = recording.physical(header, samples)
    rate = float(header.get("rate_hz", 1000))
    res = np.hypot(phys[:, 1], phys[:, 2]) if phys.shape[1] >= 3 else np.zeros(len(phys))
    return {"samples": len(samples), "duration_s": len(samples) / rate,
            "peak_axial_N": float(phys[:, 0].max()), "min_axial_N": float(phys[:, 0].min()),
            "peak_moment_Nm": float(res.max()), "events": len(events)}


def daily_rows(con, device_id):
    """[(day, device, recordings, hours, peak axial N, peak moment N*m, events)] from the
    device's daily summaries where present, else from the recordings."""
    days = {}
    for r in _recordings(con, device_id):
        day = (r["started"] or "")[:10]
        d = days.setdefault((day, r["device_id"]), {"n": 0, "s": 0.0, "ax": None, "mo": None, "ev": 0})
        d["n"] += 1
        d["s"] += r["duration_s"] or 0
        st = recording_stats(r["path"])
        if st and "peak_axial_N" in st:
            d["ax"] = max(d["ax"] or -1e9, st["peak_axial_N"])
            d["mo"] = max(d["mo"] or -1e9, st["peak_moment_Nm"])
    q = "SELECT device_id, t FROM event" + (" WHERE device_id = ?" if device_id else "")
    for e in con.execute(q, (device_id,) if device_id else ()):
        if e["t"]:
            day = dt.datetime.fromtimestamp(e["t"], dt.timezone.utc).date().isoformat()
            days.setdefault((day, e["device_id"]), {"n": 0, "s": 0.0, "ax": None, "mo": None, "ev": 0})["ev"] += 1
    q = "SELECT device_id, day, data FROM summary" + (" WHERE device_id = ?" if device_id else "")
    summaries = {(s["day"], s["device_id"]): json.loads(s["data"])
                 for s in con.execute(q, (device_id,) if device_id else ())}
    rows = []
    for key in sorted(set(days) | set(summaries)):
        d = days.get(key, {"n": 0, "s": 0.0, "ax": None, "mo": None, "ev": 0})
        sm = summaries.get(key, {})
        rows.append((key[0], key[1], d["n"], "%.2f" % (d["s"] / 3600.0),
                     _f(sm.get("peak_axial_N", d["ax"]), "%.0f"),
                     _f(sm.get("peak_moment_Nm", d["mo"]), "%.1f"),
                     sm.get("steps", ""), sm.get("events", d["ev"])))
    return rows


def _f(v, fmt):
    return "" if v is None else fmt % v


def exercise_sessions(con, device_id):
    """Built-in exercise hook: a table `exercise_session` (device_id, started, exercise, data
    JSON with target/achieved) if the database has one."""
    has = con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='exercise_session'").fetchone()
    if not has:
        return None
    cols = [r[1] for r in con.execute("PRAGMA table_info(exercise_session)")]
    q = "SELECT * FROM exercise_session" + (" WHERE device_id = ?" if device_id and "device_id" in cols else "")
    rows = con.execute(q, (device_id,) if device_id and "device_id" in cols else ()).fetchall()
    if not rows:
        return None
    shown = [c for c in cols if c != "id"]
    return _table(shown, [[r[c] for c in shown] for r in rows])


EXERCISE_HOOKS = [exercise_sessions]


def build(con, device_id=None, today=None, max_plots=MAX_PLOTS):
    """The report as an HTML string."""
    from oimon.plots import plot
    today = today or dt.date.today()
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    devs = con.execute("SELECT device_id, pseudonym FROM device" + (" WHERE device_id = ?" if device_id else "")
                       + " ORDER BY device_id", (device_id,) if device_id else ()).fetchall()
    if device_id and not devs:
        raise OimonError("device %s is not in the database" % device_id)
    title = "oimon report: %s" % (device_id or ", ".join(d["device_id"] for d in devs) or "no devices")
    parts = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>%s</title><style>%s</style>"
             "</head><body>" % (_e(title), CSS),
             "<h1>%s</h1><p class=muted>generated %s by oimon; patients are shown by pseudonym only</p>"
             % (_e(title), now)]
    parts.append(_table(["device", "pseudonym"], [(d["device_id"], d["pseudonym"] or "-") for d in devs]))

    # retightening
    parts.append("<h2>Retightening</h2>")
    st = retighten.all_status(con, today, device_id)
    parts.append(_table(["device", "state", "last", "due", "days left", "interval (months)", "torque N*m"],
                        [(s["device_id"], s["state"], s["last"] or "-", s["due"] or "-",
                          "" if s["days_left"] is None else s["days_left"], s["interval_months"],
                          s["torque_nm"] if s["torque_nm"] is not None else "-") for s in st],
                        [STATE_CLASS.get(s["state"]) for s in st]) if st else "<p>No devices.</p>")

    # daily summaries
    parts.append("<h2>Daily summaries</h2>")
    rows = daily_rows(con, device_id)
    parts.append(_table(["day", "device", "recordings", "hours recorded", "peak axial N",
                         "peak moment N*m", "steps", "events"], rows) if rows
                 else "<p>No recordings or summaries yet.</p>")

    # events
    parts.append("<h2>Events</h2>")
    q = "SELECT device_id, kind, t, sample, data FROM event" + (" WHERE device_id = ?" if device_id else "")
    evs = con.execute(q + " ORDER BY t, id", (device_id,) if device_id else ()).fetchall()
    if evs:
        parts.append(_table(["time (UTC)", "device", "kind", "details"], [
            (dt.datetime.fromtimestamp(e["t"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if e["t"] else "?",
             e["device_id"], e["kind"], _details(e["data"])) for e in evs],
            ["overdue" if e["kind"] in ("fall", "overload") else None for e in evs]))
    else:
        parts.append("<p>No events: no overload or fall was detected.</p>")

    # plots
    parts.append("<h2>Recordings</h2>")
    recs = _recordings(con, device_id)
    shown = 0
    for r in reversed(recs):
        if shown >= max_plots:
            break
        if not os.path.exists(r["path"]):        # False, not OSError, for a 300-char name
            parts.append("<p class=muted>%s: file not found</p>" % _e(r["path"]))
            continue
        try:
            b64 = _png_b64(lambda buf, p=r["path"]: plot(p, buf))
        except OimonError as e:
            parts.append("<p class=muted>%s: %s</p>" % (_e(r["path"]), _e(e)))
            continue
        parts.append("<h3>%s, %s (%.1f s)</h3><img alt='loads of %s' src='data:image/png;base64,%s'>"
                     % (_e(r["device_id"]), _e(r["started"][:19]), r["duration_s"] or 0, _e(r["path"]), b64))
        shown += 1
    if not recs:
        parts.append("<p>No recordings.</p>")
    elif len(recs) > shown:
        parts.append("<p class=muted>%d older recordings not plotted</p>" % (len(recs) - shown))

    # calibration
    parts.append("<h2>Calibration certificates</h2>")
    q = "SELECT device_id, date, data FROM calibration" + (" WHERE device_id = ?" if device_id else "")
    cals = con.execute(q + " ORDER BY date", (device_id,) if device_id else ()).fetchall()
    if cals:
        rows = []
        for c in cals:
            d = json.loads(c["data"])
            mx = d.get("max_error", {})
            rows.append((c["device_id"], c["date"], d.get("revision", ""),
                         "%.3f N" % mx.get("axial", 0), "%.3f N*m" % mx.get("ap", 0),
                         "%.3f N*m" % mx.get("ml", 0), "%.3f%% (bound %g%%)" % (
                             d.get("max_error_pct", 0), d.get("bound_pct", 0))))
        parts.append(_table(["device", "date", "revision", "axial max error", "AP max error",
                             "ML max error", "worst, % of full scale"], rows))
    else:
        parts.append("<p>No calibration certificates: run <code>oimon calibrate</code>.</p>")

    # exercise compliance (hook)
    parts.append("<h2>Exercise compliance</h2>")
    frags = []
    for d in devs:
        for hook in EXERCISE_HOOKS:
            f = hook(con, d["device_id"])
            if f:
                frags.append("<h3>%s</h3>%s" % (_e(d["device_id"]), f))
    parts.append("\n".join(frags) if frags else "<p>No exercise sessions recorded.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _details(data):
    try:
        d = json.loads(data)
    except ValueError:
        return data
    return describe(d) if isinstance(d, dict) else data
