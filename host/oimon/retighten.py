"""Three-monthly retightening of the connector: due = last retightening + N calendar months
(default 3; the day is clamped to the month's end: 30 Nov + 3 months = 28/29 Feb).
States: ok, due soon (within 14 days), overdue, never recorded."""
import calendar
import datetime as dt

from oimon.errors import OimonError

DUE_SOON_DAYS = 14
MIN_INTERVAL = 1
MAX_INTERVAL = 12


def add_months(d, months):
    m = d.month - 1 + months
    y = d.year + m // 12
    m = m % 12 + 1
    return dt.date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def parse_date(s, what="date"):
    try:
        return dt.date.fromisoformat(s)
    except (TypeError, ValueError):
        raise OimonError("%s %r is not a date of the form YYYY-MM-DD" % (what, s))


def status(last, interval_months, today):
    """dict(state, last, due, days_left) for one device."""
    if last is None:
        return {"state": "never recorded", "last": None, "due": None, "days_left": None}
    due = add_months(last, interval_months)
    left = (due - today).days
    state = "overdue" if left < 0 else "due soon" if left <= DUE_SOON_DAYS else "ok"
    return {"state": state, "last": last.isoformat(), "due": due.isoformat(), "days_left": left}


def record(con, device_id, date, torque_nm=None):
    from oimon import db
    with con:
        db.ensure_device(con, device_id)
        con.execute("INSERT INTO retightening(device_id, date, torque_nm) VALUES (?,?,?)",
                    (device_id, date.isoformat(), torque_nm))


def all_status(con, today, device_id=None):
    rows = con.execute("""
        SELECT d.device_id, d.retighten_interval_months AS iv,
               (SELECT max(date) FROM retightening r WHERE r.device_id = d.device_id) AS last,
               (SELECT torque_nm FROM retightening r WHERE r.device_id = d.device_id
                ORDER BY date DESC, id DESC LIMIT 1) AS torque
        FROM device d WHERE ? IS NULL OR d.device_id = ? ORDER BY d.device_id""",
                       (device_id, device_id)).fetchall()
    out = []
    for r in rows:
        s = status(dt.date.fromisoformat(r["last"]) if r["last"] else None, r["iv"], today)
        s["device_id"] = r["device_id"]
        s["interval_months"] = r["iv"]
        s["torque_nm"] = r["torque"]
        out.append(s)
    return out


def device_status(con, device_id, today):
    rows = all_status(con, today, device_id)
    if rows:
        return rows[0]
    s = status(None, 3, today)
    s.update(device_id=device_id, interval_months=3, torque_nm=None)
    return s


def line(s):
    if s["state"] == "never recorded":
        return "%s: retightening never recorded" % s["device_id"]
    if s["state"] == "overdue":
        return "%s: retightening overdue by %d days (last %s, due %s)" % (
            s["device_id"], -s["days_left"], s["last"], s["due"])
    return "%s: retightening %s, due %s in %d days (last %s)" % (
        s["device_id"], s["state"], s["due"], s["days_left"], s["last"])
