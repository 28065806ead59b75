"""oimon sync: pull the device's log into the database (docs/database.md, docs/device-log.md).

Reads the records after the last one pulled (device.log_seq) with C_LOG: events (with their
1 s + 2 s snippet) go to `event`, daily activity summaries to `summary` (converted to physical
units here, the one place that does), exercise sessions to `exercise_session`, and every record
(alarms, configuration, calibration, retightening, security) to `device_record`. Repeats are
ignored, so running it twice changes nothing."""
import datetime as dt
import json

from oimon import db, link
from oimon.exercise import add_session
from oimon_common import protocol as P


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
    """Pull the log of the device behind `ln` into `con`; returns counts by table."""
    info = ln.command(P.C_INFO)
    dev_id = info["device_id"]
    with con:
        db.ensure_device(con, dev_id)
    since = 0 if since_all else con.execute(
        "SELECT log_seq FROM device WHERE device_id = ?", (dev_id,)).fetchone()[0]
    records, stats = ln.read_log(since)
    n = {"records": 0, "events": 0, "summaries": 0, "sessions": 0, "corrupt": stats["corrupt"],
         "tamper": [], "technical": []}
    last = since
    with con:
        for r in records:
            last = max(last, r["seq"])
            kind = r["kind_name"]
            if kind == "event":
                head, snip = P.unpack_event(r["payload"])
                if snip is not None:
                    head["snippet"] = snip
                head.setdefault("kind", head.get("event"))
                db.add_event(con, dev_id, head)
                n["events"] += 1
                data = {k: v for k, v in head.items() if k != "snippet"}
            else:
                try:
                    data = json.loads(bytes(r["payload"]))
                except ValueError:
                    data = {"hex": bytes(r["payload"]).hex()}
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
        con.execute("UPDATE device SET log_seq = ? WHERE device_id = ?", (last, dev_id))
    n["device_id"] = dev_id
    n["log_seq"] = last
    return n


def cmd_sync(args):
    con = db.connect(args.db)
    with link.Link(link.resolve_port(args.port)) as ln:
        n = pull(con, ln, args.all)
    print("%s: pulled %d log records up to #%d: %d events, %d daily summaries, %d exercise "
          "sessions%s" % (n["device_id"], n["records"], n["log_seq"], n["events"], n["summaries"],
                          n["sessions"], ", %d corrupt skipped" % n["corrupt"] if n["corrupt"] else ""))
    if n["tamper"]:
        print("TAMPER ATTEMPTS: %d refused or suspicious security events:" % len(n["tamper"]))
        for d in n["tamper"][:20]:
            print("  " + tamper_text(d))
    if n["technical"]:
        print("technical alarms raised: %s" % ", ".join(n["technical"][:20]))
