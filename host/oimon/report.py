"""The clinical report (docs/host.md "oimon report"): what a prosthetist reads between two
patients, the answer first and the detail one click away.

One device's report covers a period (default: since the last visit, i.e. the later of the last
retightening and the last configuration change; else everything):

1. headline: falls, overloads (the worst as % of its limit), sensor faults, data lost,
   retightening due;
2. the settings in force: phase, limits, body weight, who set them and when;
3. daily activity: load cycles, time loaded, peak % body weight, the % BW histogram (charts and a
   table);
4. events, one row each (an overload's start and end records merged), worst first, grouped by day;
5. a plot of every fall and of the worst overloads, from the event's snippet (else the recording);
6. Phase I exercise compliance against the prescription;
7. device health: battery and self-test (where the database has them), faults, gaps, log
   retention; calibration certificates.

The same data functions feed `oimon serve` (oimon.web). The HTML is self-contained: CSS inline,
charts as inline PNG, no scripts, no links out, no paths of this machine; `to_pdf()` prints it
with headless Chromium. Sections whose tables or fields another part of oimon has not written
(yet) say "no data" instead of failing."""
import base64
import datetime as dt
import html
import io
import json
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from oimon import recording, retighten
from oimon.errors import OimonError
from oimon.eventtext import describe
from oimon_common import limits as L

MAX_PLOTS = 6             # snippet plots: every fall, then the worst overloads up to this many
WORST_ROWS = 10           # rows in "worst events"
DAY_ROWS = 25             # rows per day (worst first); the rest are counted
CHROMIUM = os.environ.get("OIMON_CHROMIUM", "/usr/bin/chromium")
LOG_BUDGET_DAYS_TYPICAL = 44      # docs/device-log.md: 4 MiB log, typical day
G = 9.80665

CSS = """
*{box-sizing:border-box}
body{font-family:'DejaVu Sans',system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:1.5em auto;
 color:#222;max-width:1100px;padding:0 1em;font-size:15px;line-height:1.35}
h1{border-bottom:3px solid #1f5f99;padding-bottom:.2em;margin-bottom:.2em;font-size:1.6em}
h2{color:#1f5f99;margin-top:1.4em;border-bottom:1px solid #ccc;font-size:1.25em}
h3{font-size:1.05em;margin:.9em 0 .3em}
table{border-collapse:collapse;margin:.4em 0;font-size:.9em}
th,td{border:1px solid #bbb;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#e8eef5}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{background:#d8f0d8}.soon{background:#fff1c4}.overdue,.bad{background:#f8d0d0}
.never{background:#eee}.muted{color:#666}.small{font-size:.85em}
.headline{display:flex;flex-wrap:wrap;gap:.6em;margin:.8em 0}
.card{border:1px solid #bbb;border-radius:6px;padding:.5em .8em;min-width:10.5em;flex:1}
.card b{display:block;font-size:1.5em}
.card.bad{border-color:#c33}.card.ok{border-color:#393}.card.soon{border-color:#c90}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}
figure{margin:.5em 0;break-inside:avoid}figcaption{font-size:.85em;color:#444}
details{margin:.3em 0}summary{cursor:pointer;font-weight:bold}
.device{break-before:page}.device:first-of-type{break-before:auto}
@page{size:A4;margin:12mm}
@media print{body{margin:0;max-width:none;font-size:11px}h2{break-after:avoid}
 tr,figure,.card{break-inside:avoid}img{max-height:120mm}}
"""
STATE_CLASS = {"ok": "ok", "due soon": "soon", "overdue": "overdue", "never recorded": "never"}


# --- small helpers -------------------------------------------------------------------------------
def _e(x):
    return html.escape("" if x is None else str(x))


def _table(head, rows, classes=None, num=()):
    out = ["<table><tr>%s</tr>" % "".join("<th>%s</th>" % _e(h) for h in head)]
    for i, r in enumerate(rows):
        cls = ' class="%s"' % classes[i] if classes and classes[i] else ""
        out.append("<tr%s>%s</tr>" % (cls, "".join(
            "<td%s>%s</td>" % (" class=n" if j in num else "", _e(c)) for j, c in enumerate(r))))
    out.append("</table>")
    return "\n".join(out)


def _has_table(con, name):
    return con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                       (name,)).fetchone() is not None


def _cols(con, table):
    return [r[1] for r in con.execute("PRAGMA table_info(%s)" % table)] if _has_table(con, table) else []


def _json(s):
    try:
        d = json.loads(s)
    except (TypeError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def local_tz():
    """The clinic computer's time zone (every time in the report and the plots is shown in it,
    with its name)."""
    return dt.datetime.now().astimezone().tzinfo


def tz_label(tz=None, when=None):
    tz = tz or local_tz()
    when = when or dt.datetime.now(dt.timezone.utc)
    off = when.astimezone(tz).utcoffset() or dt.timedelta(0)
    mins = int(off.total_seconds() // 60)
    name = when.astimezone(tz).tzname() or ""
    utc = "UTC" if mins == 0 else "UTC%+03d:%02d" % (mins // 60, abs(mins) % 60) if mins > 0 else \
        "UTC-%02d:%02d" % (abs(mins) // 60, abs(mins) % 60)
    return utc if name in ("", "UTC", utc) else "%s, %s" % (name, utc)


def clock(ts, tz=None, fmt="%Y-%m-%d %H:%M:%S"):
    if ts is None:
        return "?"
    return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).astimezone(tz or local_tz()).strftime(fmt)


def day_of(ts, tz=None):
    return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).astimezone(tz or local_tz()).date()


def _day_start_ts(d, tz=None):
    return dt.datetime.combine(d, dt.time(0), tz or local_tz()).timestamp()


def _dur(s):
    if s is None:
        return "-"
    if s < 1:
        return "%d ms" % round(s * 1000)
    if s < 120:
        return "%.1f s" % s
    if s < 7200:
        return "%.0f min" % (s / 60)
    return "%.1f h" % (s / 3600)


def _png(fig, dpi=100):
    from oimon.plots import save_png
    buf = io.BytesIO()
    save_png(fig, buf, dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode()


def _img(b64, alt):
    return "<img alt='%s' src='data:image/png;base64,%s'>" % (_e(alt), b64)


# --- the period ----------------------------------------------------------------------------------
def last_visit(con, device_id):
    """(date, what) of the last visit: the later of the last retightening and the last
    configuration change stored by this host; (None, None) if neither."""
    best = (None, None)
    r = con.execute("SELECT max(date) FROM retightening WHERE device_id = ?", (device_id,)).fetchone()
    if r and r[0]:
        best = (dt.date.fromisoformat(r[0][:10]), "retightening")
    if _has_table(con, "config_change"):
        r = con.execute("SELECT max(t) FROM config_change WHERE device_id = ?", (device_id,)).fetchone()
        if r and r[0]:
            d = dt.date.fromisoformat(r[0][:10])
            if best[0] is None or d > best[0]:
                best = (d, "settings changed")
    return best


def period(con, device_id, today, since=None, until=None):
    """{since, until (dates, inclusive; until None = up to now), why}: since the last visit
    (on or before `today`) unless given."""
    if since is not None:
        return {"since": since, "until": until, "why": "from %s" % since.isoformat()}
    d, what = last_visit(con, device_id)
    if d is not None and d <= (until or today):
        return {"since": d, "until": until, "why": "since the last visit (%s, %s)" % (d.isoformat(), what)}
    return {"since": None, "until": until, "why": "everything in the database (no visit recorded)"}


def _in_period(ts, per, tz=None):
    if ts is None:
        return per["since"] is None
    d = day_of(ts, tz)
    return (per["since"] is None or d >= per["since"]) and (per["until"] is None or d <= per["until"])


# --- settings in force -----------------------------------------------------------------------------
def settings_in_force(con, device_id):
    """The phase, limits (N, N*m), body weight and pseudonym in force, merged in time order from
    the configuration changes this host sent (config_change), the device's own log of them
    (device_record kind 'config') and the newest recording's header (what the device reported);
    each with when it was set and by whom. Limits not set explicitly are the phase's defaults
    (oimon_common.limits)."""
    changes = []
    if _has_table(con, "config_change"):
        for r in con.execute("SELECT t, data FROM config_change WHERE device_id = ? ORDER BY t, id",
                             (device_id,)):
            d = _json(r["data"])
            try:
                ts = dt.datetime.fromisoformat(r["t"]).replace(tzinfo=dt.timezone.utc).timestamp()
            except (TypeError, ValueError):
                ts = None
            changes.append((ts, d, d.get("by") or "this clinic's prosthetist key (signed)"))
    if _has_table(con, "device_record"):
        for r in con.execute("SELECT t, data FROM device_record WHERE device_id = ? AND kind = 'config' "
                             "ORDER BY seq", (device_id,)):
            d = _json(r["data"]).get("set")
            if isinstance(d, dict):
                changes.append((r["t"], d, "signed command, from the device's log"))
    changes.sort(key=lambda c: c[0] or 0)
    out = {"phase": None, "body_weight_kg": None, "limits_explicit": {}, "set_at": {}, "set_by": {},
           "patient": None}
    for ts, d, by in changes:
        for k in ("phase", "body_weight_kg", "patient"):
            if k in d:
                out[k] = d[k]
                out["set_at"][k] = ts
                out["set_by"][k] = by
        for ph, lim in (d.get("limits") or {}).items():
            if isinstance(lim, dict):
                out["limits_explicit"].setdefault(ph, {}).update(lim)
                out["set_at"]["limits"] = ts
                out["set_by"]["limits"] = by
    hdr = _newest_header(con, device_id)
    if hdr:
        out["phase"] = out["phase"] or hdr.get("phase")
        out["body_weight_kg"] = out["body_weight_kg"] or hdr.get("body_weight_kg")
    phase = out["phase"] or "full"
    out["phase_known"] = out["phase"] is not None
    out["phase"] = phase
    bw_kg = out["body_weight_kg"]
    bw = L.body_weight_0p1N(bw_kg) if bw_kg else L.BW_DEFAULT
    comp, tens, mom = L.phase_limits(L.PHASES.index(phase) if phase in L.PHASES else L.PHASE_FULL, bw)[:3]
    lim = {"comp": comp, "tens": tens, "moment": mom}
    source = "phase %s defaults" % phase
    if hdr and isinstance(hdr.get("limits"), dict) and hdr.get("phase") == phase:
        lim.update({k: hdr["limits"][k] for k in ("comp", "tens", "moment") if k in hdr["limits"]})
        source = "as the device reported them (newest recording)"
    if phase in out["limits_explicit"]:
        lim.update(out["limits_explicit"][phase])
        source = "set explicitly for phase %s" % phase
    out["limits_dev"] = lim
    out["limits"] = {"comp_N": lim["comp"] / 10.0, "tens_N": lim["tens"] / 10.0,
                     "moment_Nm": lim["moment"] / 100.0}
    out["limits_source"] = source
    out["bw_N"] = (bw_kg or bw / 10.0 / G) * G if bw_kg else bw / 10.0
    out["bw_known"] = bool(bw_kg)
    return out


def _newest_header(con, device_id):
    for r in con.execute("SELECT path FROM recording WHERE device_id = ? ORDER BY started DESC LIMIT 5",
                         (device_id,)):
        try:
            with recording.Reader(r["path"]) as rd:
                return rd.header
        except (OimonError, OSError):
            continue
    return None


# --- events, merged --------------------------------------------------------------------------------
LIMIT_NAMES = {1: "compression", 2: "tension", 4: "bending"}


def _pcts(d, lim):
    """{limit name: % of that limit} of an overload/fall record's peaks."""
    out = {}
    if d.get("pk_ax") is not None and lim.get("comp"):
        out["compression"] = 100.0 * d["pk_ax"] / lim["comp"]
    if d.get("min_ax") is not None and d["min_ax"] < 0 and lim.get("tens"):
        out["tension"] = 100.0 * -d["min_ax"] / lim["tens"]
    if d.get("pk_m2") is not None and lim.get("moment"):
        out["bending"] = 100.0 * math.sqrt(max(0, d["pk_m2"])) / lim["moment"]
    elif d.get("peak") is not None and lim.get("comp"):      # older records: one peak in N
        out["compression"] = 100.0 * d["peak"] * 10 / lim["comp"]
    return out


def merged_events(con, device_id, per=None, settings=None, tz=None):
    """One dict per event (an overload's or a fault's start and end records merged), each with
    kind (overload|fall|sensor fault|...), start (unix s), dur_s, peak (text), pct (% of the
    limit it crossed), limit (its name), score (for "worst first"), day, text, snippet (or None),
    recording_id and sample (for a plot from the recording)."""
    settings = settings or settings_in_force(con, device_id)
    lim = settings["limits_dev"]
    rows = con.execute("SELECT id, kind, t, sample, recording_id, data FROM event WHERE device_id = ? "
                       "ORDER BY t, id", (device_id,)).fetchall()
    groups = {}
    order = []
    for r in rows:
        d = _json(r["data"])
        kind = r["kind"]
        base = {"overload_start": "overload", "overload_end": "overload", "fault": "sensor fault",
                "fault_clear": "sensor fault"}.get(kind, kind)
        anchor = d.get("onset") if kind in ("overload_start", "overload_end", "fault", "fault_clear") else None
        key = (base, anchor) if anchor is not None else ("row", r["id"])
        if anchor is not None and key in groups:
            g = groups[key]
            # the same anchor much later is another event (the detector's sample counter wrapped)
            if r["t"] is not None and g["t_first"] is not None and abs(r["t"] - g["t_first"]) > 600:
                key = (base, anchor, r["id"])
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"kind": base, "recs": [], "t_first": r["t"]}
            order.append(key)
        g["recs"].append((kind, r, d))
    allev = [_merge(groups[key], lim, settings) for key in order]
    _borrow_snippets(allev)
    return [ev for ev in allev if per is None or _in_period(ev["start"], per, tz)]


def _borrow_snippets(evs):
    """The device captures one 3 s snippet at a time: an event during another's capture is logged
    without its own. Give it the neighbour's snippet when that window holds its onset (same
    sample counter, record times within 10 s)."""
    wins = [e for e in evs if e["snippet"] is not None and e.get("snippet_n0") is not None]
    for w in wins:          # an event with its snippet: its start on the snippet's clock too
        if w.get("onset_n") is not None and 0 <= w["onset_n"] - w["snippet_n0"] < 60000:
            w["start"] = w["snippet_t0"] + (w["onset_n"] - w["snippet_n0"]) / float(w["snippet"].get("rate") or 1000)
    for e in evs:
        if e["snippet"] is not None or e.get("onset_n") is None or e["t"] is None:
            continue
        for w in wins:
            n0 = w["snippet_n0"]
            cnt = w["snippet"].get("n") or len(w["snippet"].get("rows") or [])
            if n0 <= e["onset_n"] < n0 + cnt and w["t"] is not None and abs(w["t"] - e["t"]) < 10:
                e["snippet"] = w["snippet"]
                e["snippet_t0"] = w["snippet_t0"]
                e["snippet_n0"] = n0
                rate = float(w["snippet"].get("rate") or 1000)
                e["start"] = w["snippet_t0"] + (e["onset_n"] - n0) / rate    # on the snippet's clock
                break


def _merge(g, lim, settings):
    kind = g["kind"]
    recs = g["recs"]
    first_kind, r0, d0 = recs[0]
    end = next((d for k, _r, d in recs if k in ("overload_end", "fault_clear")), None)
    full = end or d0
    rate = 1000.0
    t = r0["t"]
    n = full.get("n", r0["sample"])
    onset = full.get("onset", full.get("start"))
    start = t
    if t is not None and n is not None and onset is not None and 0 <= n - onset < 3600 * 1000:
        # t is when the record was made (sample n); the event began at its onset
        start = t - (n - onset) / rate
    ev = {"kind": kind, "start": start, "t": t, "dur_s": None, "peak": "", "pct": None,
          "limit": None, "score": 0.0, "snippet": None, "recording_id": None, "sample": None,
          "ended": end is not None or kind not in ("overload", "sensor fault"),
          "text": describe(dict(full, kind=first_kind if end is None else
                                ("overload_end" if kind == "overload" else "fault_clear")))}
    ev["onset_n"] = onset
    for _k, r, d in recs:
        if d.get("snippet") and ev["snippet"] is None:
            ev["snippet"] = d["snippet"]
            sr = float(d["snippet"].get("rate") or 1000)
            pre = d["snippet"].get("pre", 0)
            # the snippet's first row: `pre` samples before the record that carries it
            ev["snippet_t0"] = (r["t"] if r["t"] is not None else start or 0) - pre / sr
            ev["snippet_n0"] = d.get("n", r["sample"]) - pre if d.get("n", r["sample"]) is not None else None
        if r["recording_id"] is not None and ev["recording_id"] is None:
            ev["recording_id"] = r["recording_id"]
            ev["sample"] = d.get("onset", r["sample"])
    if end is not None and end.get("dur") is not None:
        ev["dur_s"] = end["dur"] / 1000.0
    if kind in ("overload", "fall") or first_kind == "overload":
        pcts = _pcts(full, lim)
        which = [name for bit, name in LIMIT_NAMES.items() if full.get("which", 0) & bit]
        if kind == "fall":
            which = []
        cand = {k: v for k, v in pcts.items() if not which or k in which}
        if cand:
            ev["limit"] = max(cand, key=cand.get)
            ev["pct"] = cand[ev["limit"]]
        parts = []
        if full.get("pk_ax") is not None:
            parts.append("%.0f N (%.0f %% BW)" % (full["pk_ax"] / 10.0, 100.0 * full["pk_ax"] / 10.0
                                                  / settings["bw_N"]))
        elif full.get("peak") is not None:
            parts.append("%.0f N" % full["peak"])
        if full.get("pk_m2") is not None:
            parts.append("%.1f N*m" % (math.sqrt(max(0, full["pk_m2"])) / 100.0))
        if full.get("min_ax", 0) < 0:
            parts.append("tension %.0f N" % (-full["min_ax"] / 10.0))
        ev["peak"] = ", ".join(parts)
        ev["score"] = ev["pct"] or 100.0
        if kind == "fall":
            ev["score"] = 1e6 + (ev["pct"] or 0)
            ev["limit"] = None
    elif kind == "sensor fault":
        ev["score"] = 1e3 + (ev["dur_s"] or 0)
        ev["peak"] = describe(dict(full, kind="fault"))
    return ev


def worst_first(evs):
    return sorted(evs, key=lambda e: (-e["score"], e["start"] or 0))


# --- daily activity --------------------------------------------------------------------------------
HIST_BINS = [(10 * i, 10 * i + 10) for i in range(20)] + [(200, None)]


def daily(con, device_id, per=None, tz=None, events=None, settings=None):
    """Per day: steps (load cycles), loaded_h, worn_h, peak_axial_N, peak_pct_bw,
    peak_moment_Nm, overloads, falls, faults (merged events of that day), recorded_h,
    hist (% of loaded time per 10 % BW bin, or None), partial; oldest first."""
    settings = settings or settings_in_force(con, device_id)
    days = {}

    def row(d):
        return days.setdefault(d, {"day": d, "steps": None, "loaded_h": None, "worn_h": None,
                                   "peak_axial_N": None, "peak_pct_bw": None, "peak_moment_Nm": None,
                                   "overloads": 0, "falls": 0, "faults": 0, "recorded_h": 0.0,
                                   "hist": None, "partial": False, "summary": False})
    for s in con.execute("SELECT day, data FROM summary WHERE device_id = ?", (device_id,)):
        try:
            d = dt.date.fromisoformat(s["day"])
        except (TypeError, ValueError):
            continue
        if per and ((per["since"] and d < per["since"]) or (per["until"] and d > per["until"])):
            continue
        sm = _json(s["data"])
        r = row(d)
        r["summary"] = True
        r["steps"] = sm.get("steps")
        r["loaded_h"] = sm.get("loaded_h")
        r["worn_h"] = sm.get("worn_valid_h")
        r["peak_axial_N"] = sm.get("peak_axial_N")
        r["peak_moment_Nm"] = sm.get("peak_moment_Nm")
        bw = sm.get("body_weight_N") or settings["bw_N"]
        if r["peak_axial_N"] is not None and bw:
            r["peak_pct_bw"] = 100.0 * r["peak_axial_N"] / bw
        r["partial"] = bool(sm.get("partial"))
        h = sm.get("hist_pct_bw")
        if isinstance(h, dict) and h:
            r["hist"] = list(h.values())
    for rec in con.execute("SELECT started, duration_s FROM recording WHERE device_id = ?", (device_id,)):
        try:
            ts = dt.datetime.fromisoformat(rec["started"]).timestamp()
        except (TypeError, ValueError):
            continue
        if per and not _in_period(ts, per, tz):
            continue
        row(day_of(ts, tz))["recorded_h"] += (rec["duration_s"] or 0) / 3600.0
    for ev in events if events is not None else merged_events(con, device_id, per, settings, tz):
        if ev["start"] is None:
            continue
        r = row(day_of(ev["start"], tz))
        k = {"overload": "overloads", "fall": "falls", "sensor fault": "faults"}.get(ev["kind"])
        if k:
            r[k] += 1
    return [days[k] for k in sorted(days)]


def histogram(days):
    """The % BW histogram over the period: % of loaded time per bin, weighted by each day's
    loaded hours; None without summaries."""
    acc = None
    wsum = 0.0
    for d in days:
        if d["hist"] is None:
            continue
        w = d["loaded_h"] or 0.0
        if w <= 0:
            continue
        h = np.array(d["hist"], dtype=float)
        if acc is None:
            acc = np.zeros(len(h))
        n = min(len(acc), len(h))
        acc[:n] += w * h[:n]
        wsum += w
    if acc is None or wsum <= 0:
        return None
    return list(acc / wsum)


# --- exercise ---------------------------------------------------------------------------------
def exercise_data(con, device_id, per):
    """(compliance dict, plan or None, sessions) for the period; (None, None, []) if no sessions."""
    from oimon import exercise as X
    sessions = X.sessions_from_db(con, device_id, per["since"], per["until"])
    if not sessions:
        return None, None, []
    plan = _plan(con, device_id)
    start = per["since"]
    first = dt.date.fromisoformat(sessions[0]["date"])
    if start is None or start < first - dt.timedelta(days=60):
        start = first
    if plan and dt.date.fromisoformat(plan["start_date"]) > start:
        start = dt.date.fromisoformat(plan["start_date"])
    end = max(dt.date.fromisoformat(sessions[-1]["date"]), start)
    if per["until"] is not None:
        end = min(per["until"], end)
    rep = X.compliance(sessions, plan, min(start, first), end)
    return rep, plan, sessions


def _plan(con, device_id):
    """The exercise plan, if a host stored it (a table or record others may add); else None."""
    if _has_table(con, "exercise_plan"):
        cols = _cols(con, "exercise_plan")
        if "data" in cols:
            r = con.execute("SELECT data FROM exercise_plan WHERE device_id = ? ORDER BY rowid DESC LIMIT 1",
                            (device_id,)).fetchone()
            if r:
                p = _json(r["data"])
                if "start_date" in p:
                    return p
    if _has_table(con, "device_record"):
        for r in con.execute("SELECT data FROM device_record WHERE device_id = ? AND kind = 'config' "
                             "ORDER BY seq DESC", (device_id,)):
            p = _json(r["data"]).get("plan")
            if isinstance(p, dict) and "start_date" in p:
                return p
    return None


# --- device health ---------------------------------------------------------------------------------
def health(con, device_id, per=None, tz=None, events=None, today=None):
    """Battery, self-test, sensor faults, data lost and log retention. Each entry is
    (what, value, state) where state is ok|soon|bad|None; a source nobody has written says
    "no data"."""
    out = []
    recs = {}
    if _has_table(con, "device_record"):
        for r in con.execute("SELECT kind, t, data FROM device_record WHERE device_id = ? ORDER BY seq",
                             (device_id,)):
            recs.setdefault(r["kind"], []).append((r["t"], _json(r["data"])))
    # battery
    batt = None
    for kind in ("health", "battery", "status"):
        for t, d in reversed(recs.get(kind, [])):
            for k in ("battery_pct", "batt_pct", "soc_pct", "battery"):
                if isinstance(d.get(k), (int, float)):
                    batt = (t, float(d[k]), d.get("battery_mv") or d.get("batt_mv"))
                    break
            if batt:
                break
        if batt:
            break
    if batt:
        state = "bad" if batt[1] < 15 else "soon" if batt[1] < 30 else "ok"
        out.append(("battery", "%.0f %%%s (%s)" % (batt[1], ", %d mV" % batt[2] if batt[2] else "",
                                                     clock(batt[0], tz, "%Y-%m-%d %H:%M")), state))
    else:
        out.append(("battery", "no data", None))
    st = None
    for kind in ("selftest", "self_test", "health"):
        for t, d in reversed(recs.get(kind, [])):
            if "passed" in d or "ok" in d or "selftest" in d:
                st = (t, d)
                break
        if st:
            break
    if st:
        ok = st[1].get("passed", st[1].get("ok", st[1].get("selftest") in (True, "ok", "passed")))
        out.append(("self-test", "%s (%s)" % ("passed" if ok else "FAILED: %s" % (
            st[1].get("reason") or st[1].get("failed") or "see the device log"),
            clock(st[0], tz, "%Y-%m-%d %H:%M")), "ok" if ok else "bad"))
    else:
        out.append(("self-test", "no data", None))
    evs = events if events is not None else []
    faults = [e for e in evs if e["kind"] == "sensor fault"]
    if faults:
        tot = sum(e["dur_s"] or 0 for e in faults)
        out.append(("sensor faults", "%d (%s in all; worst: %s)" % (len(faults), _dur(tot), faults[0]["text"]),
                    "bad"))
    else:
        out.append(("sensor faults", "none", "ok"))
    lost = data_lost(con, device_id, per, tz, recs)
    out.append(("data lost", lost["text"], "bad" if lost["any"] else "ok"))
    # retention
    if recs:
        ts = [t for v in recs.values() for t, _d in v if t]
        n = sum(len(v) for v in recs.values())
        if ts:
            span = (max(ts) - min(ts)) / 86400.0
            out.append(("device log", "%d records pulled, %s .. %s (%.1f days); the 4 MiB log keeps ~%d days of "
                        "typical use: sync at least every %d days" % (
                            n, clock(min(ts), tz, "%Y-%m-%d"), clock(max(ts), tz, "%Y-%m-%d"), span,
                            LOG_BUDGET_DAYS_TYPICAL, LOG_BUDGET_DAYS_TYPICAL // 2), None))
            ref = dt.datetime.now(dt.timezone.utc).timestamp()
            if today:
                ref = min(ref, _day_start_ts(today + dt.timedelta(days=1), tz))
            age = max(0.0, (ref - max(ts)) / 86400.0)
            ago = "today" if age < 1 and day_of(max(ts), tz) == (today or dt.date.today()) else \
                "1 day ago" if age < 2 else "%.0f days ago" % age
            out.append(("last sync", "newest record %s (%s)" % (
                clock(max(ts), tz, "%Y-%m-%d %H:%M"), ago),
                "bad" if age > LOG_BUDGET_DAYS_TYPICAL else "soon" if age > LOG_BUDGET_DAYS_TYPICAL // 2 else "ok"))
    else:
        out.append(("device log", "never synced: run oimon sync", "soon"))
    return out


def data_lost(con, device_id, per=None, tz=None, recs=None):
    """What is known to be missing: sequence gaps and bad frames of recordings, gap records of
    the device log (kinds 'gap', 'log_gap', 'lost'), invalid (unusable) hours of the summaries."""
    parts = []
    anyloss = False
    q = con.execute("SELECT started, seq_gaps, frames_bad FROM recording WHERE device_id = ?", (device_id,))
    gaps = bad = 0
    for r in q:
        try:
            ts = dt.datetime.fromisoformat(r["started"]).timestamp()
        except (TypeError, ValueError):
            ts = None
        if per and ts is not None and not _in_period(ts, per, tz):
            continue
        gaps += r["seq_gaps"] or 0
        bad += r["frames_bad"] or 0
    if gaps or bad:
        anyloss = True
        parts.append("live recordings: %d sequence gaps, %d bad frames" % (gaps, bad))
    if recs is None:
        recs = {}
        if _has_table(con, "device_record"):
            for r in con.execute("SELECT kind, t, data FROM device_record WHERE device_id = ?", (device_id,)):
                recs.setdefault(r["kind"], []).append((r["t"], _json(r["data"])))
    ng = 0
    lost_records = 0
    for kind in ("gap", "log_gap", "lost", "overflow"):
        for t, d in recs.get(kind, []):
            if per and t and not _in_period(t, per, tz):
                continue
            ng += 1
            for k in ("lost", "records", "dropped", "n"):
                if isinstance(d.get(k), int):
                    lost_records += d[k]
                    break
    if ng:
        anyloss = True
        parts.append("device log: %d gap records%s" % (ng, " (%d records lost)" % lost_records
                                                        if lost_records else ""))
    if _has_table(con, "log_gap"):
        n = con.execute("SELECT count(*) FROM log_gap WHERE device_id = ?", (device_id,)).fetchone()[0] \
            if "device_id" in _cols(con, "log_gap") else 0
        if n:
            anyloss = True
            parts.append("device log: %d gaps" % n)
    inv = 0.0
    for s in con.execute("SELECT day, data FROM summary WHERE device_id = ?", (device_id,)):
        try:
            d = dt.date.fromisoformat(s["day"])
        except (TypeError, ValueError):
            continue
        if per and ((per["since"] and d < per["since"]) or (per["until"] and d > per["until"])):
            continue
        inv += _json(s["data"]).get("invalid_h") or 0.0
    if inv > 0.01:
        anyloss = True
        parts.append("%.1f h of unusable sensor data (faults)" % inv)
    return {"any": anyloss, "text": "; ".join(parts) if parts else "none known"}


# --- charts (PNG) ----------------------------------------------------------------------------
def activity_chart(days, settings, title=""):
    """Three stacked panels over the days: load cycles, hours loaded, peak % body weight with the
    compression limit as % BW."""
    import matplotlib.pyplot as plt
    import matplotlib.dates as mdates
    x = [d["day"] for d in days]
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(8.5, 5.2))
    a, b, c = axes

    def nz(k):
        return [np.nan if d[k] is None else d[k] for d in days]
    a.bar(x, nz("steps"), width=0.7, color="#1f77b4")
    a.set_ylabel("load cycles")
    b.bar(x, nz("loaded_h"), width=0.7, color="#2ca02c")
    b.set_ylabel("hours loaded")
    c.plot(x, nz("peak_pct_bw"), "o-", color="#d62728", label="daily peak")
    lim_pct = 100.0 * settings["limits"]["comp_N"] / settings["bw_N"]
    c.axhline(lim_pct, color="#d62728", ls="--", lw=1,
              label="compression limit (%.0f %% BW)" % lim_pct)
    c.set_ylabel("peak axial\n(% body weight)")
    c.legend(loc="upper left", fontsize=8)
    c.set_ylim(bottom=0)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.yaxis.get_major_locator().set_params(integer=True)
    span = (x[-1] - x[0]).days if x else 0
    c.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, int(math.ceil((span + 1) / 10.0)))))
    c.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
    c.set_xlim(mdates.date2num(x[0]) - 0.6, mdates.date2num(x[-1]) + 0.6)
    a.set_title(title or "Daily activity", fontsize=10)
    fig.tight_layout()
    return fig


def histogram_chart(hist):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8.5, 2.6))
    labels = ["%d" % lo for lo, _hi in HIST_BINS[:len(hist)]]
    ax.bar(range(len(hist)), hist, color="#1f5f99", width=0.85)
    ax.set_xticks(range(len(hist)))
    ax.set_xticklabels([lab if i % 2 == 0 else "" for i, lab in enumerate(labels)], fontsize=8)
    ax.set_xlabel("axial load (% body weight, lower edge of each 10 % bin; last: 200 % and more)")
    ax.set_ylabel("% of loaded time")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("How heavily the leg was loaded", fontsize=10)
    fig.tight_layout()
    return fig


def event_series(con, ev):
    """(t_start unix, rate, rows (n, 3) in device units, event with a sample-exact start) of one
    event: its snippet, else the recording around it (1 s before, 2 s after); None if neither."""
    if ev.get("snippet"):
        sn = ev["snippet"]
        rows = np.asarray(sn.get("rows") or [], dtype=float)
        if len(rows):
            rate = float(sn.get("rate") or 1000)
            t0 = ev.get("snippet_t0")
            if t0 is None:
                t0 = (ev["t"] or ev["start"] or 0) - sn.get("pre", 0) / rate
            return t0, rate, rows, ev
    if ev.get("recording_id") is not None and ev.get("sample") is not None:
        r = con.execute("SELECT path FROM recording WHERE id = ?", (ev["recording_id"],)).fetchone()
        if not r:
            return None
        try:
            header, index, samples, _evs, _err = recording.load(r["path"])
        except (OimonError, OSError):
            return None
        if header.get("kind") != "calibrated" or not len(samples):
            return None
        rate = float(header.get("rate_hz", 1000))
        i = int(np.searchsorted(index, ev["sample"]))
        lo, hi = max(0, i - int(rate)), min(len(index), i + int(2 * rate))
        if hi - lo < 10:
            return None
        from oimon.plots import _start_dt
        st = _start_dt(header)
        if st is not None:
            t_start = st.timestamp() + (index[lo] - index[0]) / rate
            ev = dict(ev, start=st.timestamp() + (ev["sample"] - index[0]) / rate)
        else:
            t_start = (ev["start"] or 0) - (ev["sample"] - index[lo]) / rate
        return t_start, rate, samples[lo:hi].astype(float), ev
    return None


def event_figure(con, ev, settings, tz=None):
    """A figure of one event from its snippet (else from the recording around it), or None."""
    from oimon.plots import snippet_figure
    got = event_series(con, ev)
    if got is None:
        return None
    t_start, rate, rows, ev = got
    return snippet_figure(rows, rate, t_start, settings, ev, tz)


# --- the document ----------------------------------------------------------------------------
def device_list(con, device_id=None):
    devs = con.execute("SELECT device_id, pseudonym FROM device" + (" WHERE device_id = ?" if device_id else "")
                       + " ORDER BY device_id", (device_id,) if device_id else ()).fetchall()
    if device_id and not devs:
        raise OimonError("device %s is not in the database" % device_id)
    return devs


def device_report(con, device_id, today, since=None, until=None, tz=None):
    """Everything one device's report shows, as data (the web app draws it interactively)."""
    tz = tz or local_tz()
    per = period(con, device_id, today, since, until)
    settings = settings_in_force(con, device_id)
    evs = merged_events(con, device_id, per, settings, tz)
    days = daily(con, device_id, per, tz, evs, settings)
    st = retighten.device_status(con, device_id, today)
    rep, plan, sessions = exercise_data(con, device_id, per)
    pseud = con.execute("SELECT pseudonym FROM device WHERE device_id = ?", (device_id,)).fetchone()
    return {"device_id": device_id, "pseudonym": (pseud["pseudonym"] if pseud else "") or settings["patient"] or "",
            "period": per, "settings": settings, "events": evs, "days": days,
            "hist": histogram(days), "retighten": st, "exercise": rep, "plan": plan,
            "sessions": sessions, "health": health(con, device_id, per, tz, worst_first(evs), today),
            "lost": data_lost(con, device_id, per, tz)}


def headline(d):
    """[(label, value, detail, state)] for the cards at the top."""
    evs = d["events"]
    falls = [e for e in evs if e["kind"] == "fall"]
    ovl = worst_first([e for e in evs if e["kind"] == "overload"])
    faults = [e for e in evs if e["kind"] == "sensor fault"]
    tz = None
    cards = [("falls", len(falls), ("last %s" % clock(falls[-1]["start"], tz, "%d %b %H:%M")) if falls
              else "none", "bad" if falls else "ok")]
    if ovl:
        w = ovl[0]
        cards.append(("overloads", len(ovl), "worst %s%% of the %s limit, %s" % (
            "%.0f " % w["pct"] if w["pct"] is not None else "? ", w["limit"] or "?",
            clock(w["start"], tz, "%d %b %H:%M")), "bad"))
    else:
        cards.append(("overloads", 0, "none", "ok"))
    cards.append(("sensor faults", len(faults), "%s in all" % _dur(sum(e["dur_s"] or 0 for e in faults))
                  if faults else "none", "bad" if faults else "ok"))
    cards.append(("data lost", "yes" if d["lost"]["any"] else "none", d["lost"]["text"] if d["lost"]["any"]
                  else "no gaps known", "bad" if d["lost"]["any"] else "ok"))
    st = d["retighten"]
    if st["state"] == "never recorded":
        cards.append(("retightening", "never recorded", "record it: oimon retighten record", "soon"))
    elif st["state"] == "overdue":
        cards.append(("retightening", "overdue", "%d days overdue (due %s)" % (-st["days_left"], st["due"]), "bad"))
    else:
        cards.append(("retightening", st["state"], "due %s, in %d days" % (st["due"], st["days_left"]),
                      STATE_CLASS.get(st["state"])))
    return cards


def _settings_html(s, tz):
    def when(k):
        ts = s["set_at"].get(k)
        return ("%s, %s" % (clock(ts, tz, "%Y-%m-%d %H:%M"), s["set_by"].get(k))) if ts else "not recorded here"
    lim = s["limits"]
    bw = "%.1f kg (%.0f N)" % (s["body_weight_kg"], s["bw_N"]) if s["bw_known"] else \
        "unknown (75 kg assumed for % BW)"
    rows = [("rehab phase", s["phase"] + ("" if s["phase_known"] else " (assumed: not recorded)"), when("phase")),
            ("body weight", bw, when("body_weight_kg")),
            ("compression limit", "%.0f N (%.0f %% BW)" % (lim["comp_N"], 100 * lim["comp_N"] / s["bw_N"]),
             "%s; %s" % (s["limits_source"], when("limits") if s["set_at"].get("limits") else when("phase"))),
            ("tension limit", "%.0f N" % lim["tens_N"], s["limits_source"]),
            ("bending moment limit", "%.1f N*m" % lim["moment_Nm"], s["limits_source"])]
    return _table(["setting", "in force", "set (%s) and by whom" % tz_label(tz)], rows)


def device_html(con, d, tz, max_plots=MAX_PLOTS, print_mode=False):
    dev = d["device_id"]
    who = d["pseudonym"] or "no pseudonym"
    per = d["period"]
    s = d["settings"]
    p = ["<section class=device>",
         "<h1>%s <span class=muted>(%s)</span></h1>" % (_e(who), _e(dev)),
         "<p>Period: <b>%s .. %s</b>, %s. Times are %s.</p>" % (
             _e(per["since"].isoformat() if per["since"] else "first record"), _e(per["until"].isoformat() if per["until"] else "now"),
             _e(per["why"]), _e(tz_label(tz)))]
    p.append("<div class=headline>")
    for label, value, detail, state in headline(d):
        p.append("<div class='card %s'>%s<b>%s</b><span class=small>%s</span></div>" % (
            state or "", _e(label), _e(value), _e(detail)))
    p.append("</div>")

    p.append("<h2>Settings in force</h2>")
    p.append(_settings_html(s, tz))

    # activity
    p.append("<h2>Daily activity</h2>")
    days = d["days"]
    has_sum = any(x["summary"] for x in days)
    if has_sum:
        p.append("<figure>%s<figcaption>Load cycles (steps), hours loaded and the daily peak axial load as %% "
                 "of body weight, from the device's daily summaries.</figcaption></figure>" % _img(
                     _png(activity_chart(days, s)), "daily activity of %s" % who))
        if d["hist"]:
            p.append("<figure>%s</figure>" % _img(_png(histogram_chart(d["hist"])),
                                                  "load histogram of %s" % who))
    if days:
        rows = [(x["day"].isoformat() + (" (partial)" if x["partial"] else ""),
                 "-" if x["steps"] is None else x["steps"],
                 "-" if x["loaded_h"] is None else "%.1f h" % x["loaded_h"],
                 "-" if x["peak_axial_N"] is None else "%.0f N" % x["peak_axial_N"],
                 "-" if x["peak_pct_bw"] is None else "%.0f %%" % x["peak_pct_bw"],
                 "-" if x["peak_moment_Nm"] is None else "%.1f N*m" % x["peak_moment_Nm"],
                 x["overloads"], x["falls"], x["faults"],
                 _dur(x["recorded_h"] * 3600) if x["recorded_h"] else "-") for x in reversed(days)]
        p.append("<details%s><summary>per day (%d days)</summary>%s</details>" % (
            " open" if print_mode or not has_sum else "", len(days), _table(
                ["day", "load cycles", "loaded", "peak axial", "peak % BW", "peak bending", "overloads",
                 "falls", "sensor faults", "recorded live"], rows, num=range(1, 10))))
        if not has_sum:
            p.append("<p class=muted>No daily summaries yet: the device writes one at midnight; "
                     "they arrive with <code>oimon sync</code>.</p>")
    else:
        p.append("<p>No activity data in this period.</p>")

    # events
    evs = d["events"]
    p.append("<h2>Events</h2>")
    if evs:
        worst = worst_first(evs)
        p.append("<h3>Worst first</h3>")
        p.append(_event_table(worst[:WORST_ROWS], tz, with_day=True))
        if len(evs) > WORST_ROWS:
            p.append("<p class=muted>%d more below, by day.</p>" % (len(evs) - WORST_ROWS))
        byday = {}
        for e in worst:
            byday.setdefault(day_of(e["start"], tz) if e["start"] else None, []).append(e)
        for day in sorted(byday, key=lambda x: (x is None, x), reverse=True):
            es = byday[day]
            n = {k: sum(1 for e in es if e["kind"] == k) for k in ("fall", "overload", "sensor fault")}
            what = ", ".join("%d %s%s" % (v, k, "s" if v > 1 else "") for k, v in n.items() if v) or \
                "%d events" % len(es)
            more = ""
            if len(es) > DAY_ROWS:
                rest = es[DAY_ROWS:]
                pk = [e["pct"] for e in rest if e["pct"] is not None]
                more = "<p class=muted>and %d more that day%s (oimon events lists them all).</p>" % (
                    len(rest), ", up to %.0f %% of a limit" % max(pk) if pk else "")
            p.append("<details%s><summary>%s: %s</summary>%s%s</details>" % (
                " open" if print_mode else "", _e(day.strftime("%a %d %b %Y") if day else "unknown day"),
                _e(what), _event_table(es[:DAY_ROWS], tz), more))
    else:
        p.append("<p>No events: no overload, fall or sensor fault in this period.</p>")

    # event plots
    p.append("<h2>Event plots</h2>")
    falls = [e for e in evs if e["kind"] == "fall"]
    ovl = worst_first([e for e in evs if e["kind"] == "overload"])
    budget = max(0, max_plots - len(falls))
    shown = shown_ovl = 0
    missing = []
    for e in falls + ovl:
        if e["kind"] == "overload" and shown_ovl >= budget:
            break
        fig = event_figure(con, e, s, tz)
        if fig is None:
            missing.append(e)
            continue
        cap = "%s at %s: %s" % (e["kind"], clock(e["start"], tz), e["peak"] or e["text"])
        if e["pct"] is not None:
            cap += ", %.0f %% of the %s limit" % (e["pct"], e["limit"] or "?")
        p.append("<figure>%s<figcaption>%s</figcaption></figure>" % (
            _img(_png(fig, dpi=90), "%s of %s at %s" % (e["kind"], who, clock(e["start"], tz))), _e(cap)))
        shown += 1
        shown_ovl += e["kind"] == "overload"
    if missing:
        p.append("<p class=muted>No loads recorded for %s (the device keeps one 3 s snippet at a time; "
                 "an event during another's capture has none).</p>" % _e("; ".join(
                     "%s at %s%s" % (e["kind"], clock(e["start"], tz, "%d %b %H:%M:%S"),
                                     " (%.0f %%)" % e["pct"] if e["pct"] is not None else "")
                     for e in missing[:8]) + ("; ..." if len(missing) > 8 else "")))
    if not shown and not missing:
        p.append("<p>No falls or overloads to plot.</p>")
    elif len(falls) + len(ovl) > shown + len(missing):
        p.append("<p class=muted>%d more overloads not plotted (the worst are shown).</p>"
                 % (len(falls) + len(ovl) - shown - len(missing)))

    # exercise
    p.append("<h2>Exercise compliance</h2>")
    p.append(_exercise_html(d, tz))

    # health
    p.append("<h2>Device health</h2>")
    p.append(_table(["", "state"], [(a, b) for a, b, _c in d["health"]], [c for _a, _b, c in d["health"]]))
    p.append(_calibration_html(con, dev, tz))
    p.append("</section>")
    return "\n".join(p)


def _event_table(evs, tz, with_day=False):
    rows, cls = [], []
    for e in evs:
        when = clock(e["start"], tz, "%d %b %H:%M:%S" if with_day else "%H:%M:%S")
        rows.append((when, e["kind"], _dur(e["dur_s"]) if e["dur_s"] is not None else
                     ("-" if e["ended"] else "end not recorded"), e["peak"] or "-",
                     "-" if e["pct"] is None else "%.0f %%" % e["pct"], e["limit"] or "-"))
        cls.append("bad" if e["kind"] == "fall" or (e["pct"] or 0) >= 120 else None)
    return _table(["start", "event", "duration", "peak", "% of limit", "limit"], rows, cls, num=(2, 4))


def _exercise_html(d, tz):
    from oimon import exercise as X
    rep = d["exercise"]
    if not rep:
        return "<p>No exercise sessions in this period (sessions arrive with <code>oimon sync</code>).</p>"
    t = rep["totals"]
    rows = rep["days"]
    out = ["<p><b>%s</b> of %d prescribed sessions done%s; %s minutes loaded; time in the target zone %s; "
           "%d over-target excursions (%d above the alarm margin).</p>" % (
               t["done"], t["prescribed"], " (%d %%)" % round(t["adherence_pct"]) if t["adherence_pct"] is not None
               else "", "%.0f" % t["loaded_min"], "-" if t["in_band_pct"] is None else "%d %%" % round(t["in_band_pct"]),
               t["over_n"], t["alarm_n"])]
    out.append("<figure>%s</figure>" % _img(base64.b64encode(X.exercise_chart_png(rep)).decode(),
                                            "exercise compliance of %s" % (d["pseudonym"] or d["device_id"])))
    out.append(_table(["day", "sessions done / prescribed", "minutes loaded", "in zone", "target kg",
                       "mean held kg", "peak kg", "over target"],
                      [(r["date"], "%d / %d" % (r["done"], r["prescribed"]), "%.1f" % r["loaded_min"],
                        "-" if r["in_band_pct"] is None else "%d %%" % round(r["in_band_pct"]),
                        "-" if r["target_kg"] is None else "%.1f" % r["target_kg"],
                        "-" if r["mean_kg"] is None else "%.1f" % r["mean_kg"],
                        "-" if r["peak_kg"] is None else "%.1f" % r["peak_kg"], r["over_n"])
                       for r in reversed(rows) if r["started"] or r["prescribed"]], num=(2, 4, 5, 6, 7)))
    if d["plan"]:
        prog = X.progression(d["plan"])
        out.append("<details><summary>the target's progression (plan from %s)</summary>%s</details>" % (
            _e(d["plan"]["start_date"]), _table(["from", "to", "target kg", "zone kg", "alarm above kg"], [
                (r["from"], r["to"] or "onwards", r["target_kg"], "%.1f-%.1f" % (r["band_lo_kg"], r["band_hi_kg"]),
                 r["alarm_kg"]) for r in prog])))
    else:
        lv = sorted({(s["date"], s.get("target_kg")) for s in d["sessions"]})
        out.append("<p class=muted>Targets of the sessions: %s (the plan itself is on the device: "
                   "<code>oimon exercise plan</code>).</p>" % _e(", ".join("%s %s kg" % x for x in lv[-6:])))
    return "\n".join(out)


def _calibration_html(con, dev, tz):
    cals = con.execute("SELECT date, data FROM calibration WHERE device_id = ? ORDER BY date", (dev,)).fetchall()
    if not cals:
        return "<p>Calibration: no certificate in the database (run <code>oimon calibrate</code>).</p>"
    rows = []
    for c in cals:
        d = _json(c["data"])
        mx = d.get("max_error", {})
        rows.append((c["date"][:10], d.get("revision", ""), "%.2f N" % mx.get("axial", 0),
                     "%.3f / %.3f N*m" % (mx.get("ap", 0), mx.get("ml", 0)),
                     "%.3f %% (bound %g %%)" % (d.get("max_error_pct", 0), d.get("bound_pct", 0))))
    return "<h3>Calibration certificates</h3>" + _table(
        ["date", "revision", "axial max error", "AP / ML max error", "worst, % of full scale"], rows)


def build(con, device_id=None, today=None, max_plots=MAX_PLOTS, since=None, until=None, tz=None,
          print_mode=False):
    """The report as one self-contained HTML string (every device, or one)."""
    today = today or dt.date.today()
    tz = tz or local_tz()
    devs = device_list(con, device_id)
    now = dt.datetime.now(dt.timezone.utc).astimezone(tz).strftime("%Y-%m-%d %H:%M")
    title = "oimon report: %s" % (", ".join((d["pseudonym"] or d["device_id"]) for d in devs) or "no devices")
    parts = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
             "<meta name=viewport content='width=device-width,initial-scale=1'><title>%s</title>"
             "<style>%s</style></head><body>" % (_e(title), CSS),
             "<p class='muted small'>oimon clinical report, generated %s (%s) for %s; patients are shown "
             "by pseudonym only.</p>" % (_e(now), _e(tz_label(tz)), _e(today.isoformat()))]
    if len(devs) > 1:
        st = retighten.all_status(con, today, device_id)
        parts.append("<h2>Devices</h2>")
        pseu = {d["device_id"]: d["pseudonym"] for d in devs}
        parts.append(_table(["patient", "device", "retightening", "due", "days left"], [
            (pseu.get(s["device_id"]) or "-", s["device_id"], s["state"], s["due"] or "-",
             "" if s["days_left"] is None else s["days_left"]) for s in st],
            [STATE_CLASS.get(s["state"]) for s in st]))
    if not devs:
        parts.append("<p>No devices in the database: connect one and run <code>oimon sync</code>.</p>")
    for d in devs:
        data = device_report(con, d["device_id"], today, since, until, tz)
        parts.append(device_html(con, data, tz, max_plots, print_mode))
    parts.append("</body></html>")
    return "\n".join(parts)


# --- PDF ---------------------------------------------------------------------------------------
def chromium_flags(profile):
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--user-data-dir=%s" % profile]


def to_pdf(html_text, out_pdf, chromium=None, timeout=180):
    """Print the HTML to a PDF with headless Chromium (A4, the print CSS above); the file is
    written beside and renamed into place. One clear OimonError if Chromium is missing or fails."""
    exe = chromium or CHROMIUM
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)) and not shutil.which(exe):
        raise OimonError("PDF: Chromium not found (%s); install Debian's chromium "
                         "(tools/ensure_chromium.sh) or set OIMON_CHROMIUM" % os.path.basename(exe))
    out_pdf = Path(out_pdf)
    tmp = out_pdf.with_name(out_pdf.name + ".part")
    with tempfile.TemporaryDirectory(prefix="oimon-pdf-") as d:
        src = Path(d) / "report.html"
        src.write_text(html_text, encoding="utf-8")
        cmd = [exe] + chromium_flags(Path(d) / "profile") + [
            "--no-pdf-header-footer", "--print-to-pdf=%s" % tmp, src.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            tmp.unlink(missing_ok=True)
            raise OimonError("PDF: Chromium failed (%s)" % e.__class__.__name__)
    if not tmp.exists() or tmp.stat().st_size < 100:
        tmp.unlink(missing_ok=True)
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise OimonError("PDF: Chromium wrote no PDF (exit %d: %s)" % (proc.returncode, last))
    try:
        os.replace(tmp, out_pdf)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OimonError("cannot write %s: %s" % (out_pdf, e.strerror))
    return out_pdf
