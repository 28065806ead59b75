"""oimon sync: pull the device's log into the database (docs/database.md, docs/device-log.md).

Reads the records after the last one pulled (device.log_seq) with C_LOG: events (with their
1 s + 2 s snippet, a K_SNIPPET record of its own since the raw-partition log) go to `event`,
daily activity summaries to `summary` (converted to physical units here, the one place that
does), exercise sessions to `exercise_session`, and every record (alarms, configuration,
calibration, retightening, security, the device's K_LOST reports) to `device_record`. Every
gap in the sequence (records rotated away before this sync, refused by a full log, snippets
thinned) goes to `log_gaps` and is said in the one summary line. Repeats are ignored, so
running it twice changes nothing."""
import datetime as dt
import json

from oimon import db, link
from oimon.exercise import add_session
from oimon_common import protocol as P
from oimon_common import decode as D


def register(sub):
    p = sub.add_parser("sync", help="pull the device's log (events, daily summaries, exercise "
                       "sessions, alarms, security events) into the database")
    p.add_argument("--all", action="store_true", help="from the start of the log, not from the "
                   "last record pulled")
    p.set_defaults(func=cmd_sync)


def summary_to_host(s):
    """A device daily summary (device units, docs/protocol.md) -> the database's summary: the
    keys the report reads (peak_axial_N, peak_moment_Nm, steps, events) and the rest."""
    rate = float(s.get("rate") or 1000)
    bw_n = s.get("bw", 0) / 10.0
    out = {
        "day": (dt.date(1970, 1, 1) + dt.timedelta(days=int(s["day"]))).isoformat(),
        "partial": bool(s.get("partial")),
        "steps": s.get("steps", 0),
        "loaded_h": s.get("loaded", 0) / rate / 3600.0,
        "worn_valid_h": s.get("valid", 0) / rate / 3600.0,
        "invalid_h": s.get("invalid", 0) / rate / 3600.0,
        "peak_axial_N": s.get("pk_ax", 0) / 10.0,
        "peak_tension_N": -min(0, s.get("min_ax", 0)) / 10.0,
        "peak_moment_Nm": s.get("pk_m2", 0) ** 0.5 / 100.0,
        "overloads": s.get("overloads", 0),
        "falls": s.get("falls", 0),
        "sensor_faults": s.get("faults", 0),
        "body_weight_N": bw_n,
    }
    out["events"] = out["overloads"] + out["falls"] + out["sensor_faults"]
    hist = s.get("hist") or []
    tot = sum(hist) or 1
    out["hist_pct_bw"] = {("%d-%d%%" % (10 * i, 10 * i + 10)) if i < len(hist) - 1 else
                          (">=%d%%" % (10 * i)): round(100.0 * h / tot, 2) for i, h in enumerate(hist)}
    return out


def _date(t):
    if not isinstance(t, int) or t < 946684800:          # a clock never set (before 2000)
        return "?"
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d")


def find_gaps(records, since, t_since=None, snip_of=None, lost_reports=(), now=None):
    """Every gap in the sequence of `records` (dicts with seq and t, ascending) after `since`:
    a list of log_gaps rows. A missing seq the event before it announced as its snippet
    ("snip") counts as a thinned snippet; a gap before the first record pulled is "rotated"
    (the device's log wrapped before this sync); a gap a K_LOST report of the device covers is
    "refused" (the log was full); the rest "lost" (corrupt on the device, or rotated out of a
    ring while other rings kept newer records)."""
    snip_of = snip_of or {}
    now = int(now if now is not None else dt.datetime.now(dt.timezone.utc).timestamp())
    gaps = []
    p, pt = since, t_since
    first = True
    for r in records:
        s = r["seq"]
        if s > p + 1:
            a, b = p + 1, s - 1
            n = b - a + 1
            sn = 1 if snip_of.get(p) == a else 0
            if sn == n:
                cause = "snippets"
            elif any(lr.get("from", 0) <= b and lr.get("to", 0) >= a for lr in lost_reports):
                cause = "refused"
            elif first:
                cause = "rotated"
            else:
                cause = "lost"
            gaps.append({"first_seq": a, "last_seq": b, "n": n, "snippets": sn, "t_before": pt,
                         "t_after": r.get("t"), "cause": cause, "found_at": now})
        if s > p:
            p, pt = s, r.get("t")
        first = False
    return gaps


def gap_line(gaps):
    """The one-line summary of the gaps found (empty when none)."""
    if not gaps:
        return ""
    lost = [g for g in gaps if g["cause"] != "snippets"]
    thinned = sum(g["snippets"] for g in gaps)
    out = ""
    if lost:
        n = sum(g["n"] - g["snippets"] for g in lost)
        a, b = lost[0], lost[-1]
        out = "; LOST %d log record%s in %d gap%s between #%d (%s) and #%d (%s)" % (
            n, "" if n == 1 else "s", len(lost), "" if len(lost) == 1 else "s",
            a["first_seq"], _date(a["t_before"] or a["t_after"]), b["last_seq"],
            _date(b["t_after"] or b["t_before"]))
        causes = sorted(set(g["cause"] for g in lost))
        hint = {"rotated": "rotated out before this sync: sync more often",
                "refused": "the device log was full", "lost": "corrupt or rotated on the device"}
        out += " (%s)" % "; ".join(hint[c] for c in causes)
    if thinned:
        out += "; %d event snippet%s thinned by the device (the events are kept)" % (
            thinned, "" if thinned == 1 else "s")
    return out


def is_tamper(data):
    """A security record that is a tamper attempt (docs/security.md): a refused command (bad MAC,
    replay, expired window, unsigned maintenance, clock beyond the bound, a replaced key), or a
    physical reset."""
    return "refused" in data or bool(data.get("physical_reset"))


def tamper_text(data):
    if data.get("physical_reset"):
        return "physical reset at the device (key forgotten, phase I)"
    s = str(data.get("refused"))
    cmd = data.get("cmd")
    if isinstance(cmd, int):
        s += " (%s)" % P.CMD_NAMES.get(cmd, "command %d" % cmd)
    if data.get("suppressed"):
        s += ", +%d more not logged" % data["suppressed"]
    return s


def pull(con, ln, since_all=False):
    """Pull the log of the device behind `ln` into `con`; returns counts by table and the
    gaps found (stored in log_gaps)."""
    info = ln.command(P.C_INFO)
    dev_id = info["device_id"]
    with con:
        db.ensure_device(con, dev_id)
    since = 0 if since_all else con.execute(
        "SELECT log_seq FROM device WHERE device_id = ?", (dev_id,)).fetchone()[0]
    row = con.execute("SELECT t, kind, data FROM device_record WHERE device_id = ? AND seq = ?",
                      (dev_id, since)).fetchone() if since else None
    t_since = row["t"] if row else None
    records, stats = ln.read_log(since)
    records.sort(key=lambda r: r["seq"])
    n = {"records": 0, "events": 0, "summaries": 0, "sessions": 0, "snippets": 0,
         "corrupt": stats["corrupt"], "tamper": [], "technical": []}
    snips = {}                       # event seq -> snippet dict (K_SNIPPET records of this pull)
    snip_of = {}                     # event seq -> the seq its head announced for its snippet
    if row and row["kind"] == "event":
        try:
            snip_of[since] = json.loads(row["data"]).get("snip")
        except (ValueError, AttributeError):
            pass
    lost_reports = []
    pulled = set(r["seq"] for r in records)
    for r in records:
        if r["kind"] == P.K_SNIPPET:
            try:
                ev, prio, sn = D.unpack_snippet(r["payload"])
            except ValueError:
                n["corrupt"] += 1
                continue
            snips[ev] = (sn, prio)
    last = since
    with con:
        for r in records:
            last = max(last, r["seq"])
            kind = r["kind_name"]
            if kind == "event":
                head, snip = D.unpack_event(r["payload"])
                head["log_seq"] = r["seq"]
                if isinstance(head.get("snip"), int):
                    snip_of[r["seq"]] = head["snip"]
                if snip is None and r["seq"] in snips and snips[r["seq"]][0] is not None:
                    snip, head["snippet_priority"] = snips[r["seq"]]
                if snip is not None:
                    head["snippet"] = snip
                head.setdefault("kind", head.get("event"))
                db.add_event(con, dev_id, head)
                n["events"] += 1
                data = {k: v for k, v in head.items() if k != "snippet"}
            elif kind == "snippet":
                ev, prio, sn = D.unpack_snippet(r["payload"])
                data = {"event_seq": ev, "priority": prio, "samples": sn["n"] if sn else 0}
                n["snippets"] += 1
                if sn is not None and ev not in pulled:
                    _attach_snippet(con, dev_id, ev, sn, prio)    # its event came in earlier
            else:
                try:
                    data = json.loads(bytes(r["payload"]))
                except ValueError:
                    data = {"hex": bytes(r["payload"]).hex()}
                if kind == "lost" and isinstance(data, dict):
                    lost_reports.append(data)
                if kind == "summary" and isinstance(data, dict) and data.get("kind") == "daily":
                    s = summary_to_host(data)
                    con.execute("INSERT OR REPLACE INTO summary(device_id, day, data) VALUES (?,?,?)",
                                (dev_id, s["day"], json.dumps(s, sort_keys=True)))
                    n["summaries"] += 1
                elif kind == "summary" and isinstance(data, dict) and data.get("kind") == "exercise":
                    add_session(con, dev_id, data)
                    n["sessions"] += 1
            if kind == "security" and isinstance(data, dict) and is_tamper(data):
                n["tamper"].append(data)
            if kind == "technical" and isinstance(data, dict) and ("raised" in data or "crash" in data):
                n["technical"].append(data.get("raised") or "crash: %s" % data.get("crash"))
            con.execute("INSERT OR IGNORE INTO device_record(device_id, seq, kind, t, data) "
                        "VALUES (?,?,?,?,?)", (dev_id, r["seq"], kind, r["t"],
                                               json.dumps(data, sort_keys=True)))
            n["records"] += 1
        gaps = find_gaps(records, since, t_since, snip_of, lost_reports)
        for g in gaps:
            db.add_log_gap(con, dev_id, g)
        con.execute("UPDATE device SET log_seq = ? WHERE device_id = ?", (last, dev_id))
    n["device_id"] = dev_id
    n["log_seq"] = last
    n["gaps"] = gaps
    n["lost"] = sum(g["n"] - g["snippets"] for g in gaps if g["cause"] != "snippets")
    return n


def _attach_snippet(con, dev_id, ev_seq, sn, prio):
    row = con.execute("SELECT data FROM device_record WHERE device_id = ? AND seq = ? AND "
                      "kind = 'event'", (dev_id, ev_seq)).fetchone()
    if not row:
        return
    head = json.loads(row["data"])
    for e in con.execute("SELECT id, data FROM event WHERE device_id = ? AND kind = ? AND "
                         "sample IS ? AND t IS ?", (dev_id, head.get("kind", "?"),
                                                    head.get("sample"), head.get("t"))):
        d = json.loads(e["data"])
        d["snippet"] = sn
        d["snippet_priority"] = prio
        con.execute("UPDATE event SET data = ? WHERE id = ?", (json.dumps(d, sort_keys=True),
                                                              e["id"]))


def cmd_sync(args):
    con = db.connect(args.db)
    with link.Link(link.resolve_port(args.port)) as ln:
        n = pull(con, ln, args.all)
    print("%s: pulled %d log records up to #%d: %d events, %d daily summaries, %d exercise "
          "sessions%s%s" % (n["device_id"], n["records"], n["log_seq"], n["events"],
                            n["summaries"], n["sessions"],
                            ", %d corrupt skipped" % n["corrupt"] if n["corrupt"] else "",
                            gap_line(n["gaps"])))
    if n["tamper"]:
        print("TAMPER ATTEMPTS: %d refused or suspicious security events:" % len(n["tamper"]))
        for d in n["tamper"][:20]:
            print("  " + tamper_text(d))
    if n["technical"]:
        print("technical alarms raised: %s" % ", ".join(n["technical"][:20]))
