"""oimon retighten record DEVICE --date D [--torque NM] | status [--today D] [--json]
| interval DEVICE MONTHS"""
import datetime as dt
import json
import sys

from oimon import db, retighten, validate
from oimon.errors import OimonError


def register(sub):
    p = sub.add_parser("retighten", help="the three-monthly retightening of the connector")
    s = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    s.required = True
    r = s.add_parser("record", help="record a retightening")
    r.add_argument("device")
    r.add_argument("--date", required=True, help="YYYY-MM-DD")
    r.add_argument("--torque", type=float, help="tightening torque in N*m")
    r.add_argument("--host-only", action="store_true",
                   help="only the database, not the device (its reminder keeps counting from "
                   "its last recorded retightening)")
    r.set_defaults(func=cmd_record)
    st = s.add_parser("status", help="ok / due soon / overdue / never recorded, per device")
    st.add_argument("--today", help="YYYY-MM-DD (default: today)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    iv = s.add_parser("interval", help="set a device's retightening interval in months (default 3)")
    iv.add_argument("device")
    iv.add_argument("months", help="1..12")
    iv.set_defaults(func=cmd_interval)


def _device_id(s):
    s = (s or "").strip()
    if not s or len(s) > 64 or not s.isprintable():
        raise OimonError("device id %r is not valid" % s)
    return s


def cmd_record(args):
    dev = _device_id(args.device)
    d = validate.parse_date(args.date, "--date")          # not before any device, not ahead
    if args.torque is not None and not 0 < args.torque <= 50:
        raise OimonError("torque %g N*m is outside 0..50 N*m" % args.torque)
    con = db.connect(args.db)
    (last,) = con.execute("SELECT max(date) FROM retightening WHERE device_id = ?",
                          (dev,)).fetchone()
    if last and d.isoformat() < last:
        print("oimon: warning: %s is older than the last recorded retightening of %s (%s): "
              "recorded in the database only as a late entry; the due date still counts "
              "from %s" % (d, dev, last, last), file=sys.stderr)
        args.host_only = True            # the device's reminder keeps the newer date
    on_device = ""
    if not args.host_only:
        on_device = _record_on_device(args, dev, d)
    retighten.record(con, dev, d, args.torque)
    st = retighten.device_status(con, dev, dt.date.today())
    print("recorded retightening of %s on %s%s; next due %s" % (dev, d, on_device, st["due"]))


def _record_on_device(args, dev, d):
    """The device's own reminder (authenticated C_RETIGHTEN), before the database: a refusal
    leaves both unchanged."""
    from oimon import link
    from oimon.commands.config import auth_command
    from oimon_common import protocol as P
    with link.Link(link.resolve_port(args.port)) as ln:
        info = ln.command(P.C_INFO)
        if info.get("device_id") != dev:
            raise OimonError("the device on %s is %s, not %s" % (ln.port, info.get("device_id"), dev))
        a = {"date": d.isoformat()}
        if args.torque is not None:
            a["torque"] = args.torque
        auth_command(ln, args, P.C_RETIGHTEN, a)
    return " (device and database)"


def cmd_status(args):
    today = retighten.parse_date(args.today, "--today") if args.today else dt.date.today()
    con = db.connect(args.db)
    rows = retighten.all_status(con, today)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("no devices in the database")
    for s in rows:
        print(retighten.line(s))


def cmd_interval(args):
    dev = _device_id(args.device)
    try:
        months = int(args.months)
    except ValueError:
        raise OimonError("interval %r is not a whole number of months" % args.months)
    if not retighten.MIN_INTERVAL <= months <= retighten.MAX_INTERVAL:
        raise OimonError("interval %d months is outside %d..%d" % (
            months, retighten.MIN_INTERVAL, retighten.MAX_INTERVAL))
    con = db.connect(args.db)
    with con:
        db.set_interval(con, dev, months)
    print("retightening interval of %s set to %d months" % (dev, months))
