"""oimon retighten record DEVICE --date D [--torque NM] | status [--today D] [--json]"""
import datetime as dt
import json

from oimon import db, retighten
from oimon.errors import OimonError


def register(sub):
    p = sub.add_parser("retighten", help="the three-monthly retightening of the connector")
    s = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    s.required = True
    r = s.add_parser("record", help="record a retightening")
    r.add_argument("device")
    r.add_argument("--date", required=True, help="YYYY-MM-DD")
    r.add_argument("--torque", type=float, help="tightening torque in N*m")
    r.set_defaults(func=cmd_record)
    st = s.add_parser("status", help="ok / due soon / overdue / never recorded, per device")
    st.add_argument("--today", help="YYYY-MM-DD (default: today)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)


def cmd_record(args):
    d = retighten.parse_date(args.date)
    if d > dt.date.today() + dt.timedelta(days=1):
        raise OimonError("date %s is in the future" % d)
    if args.torque is not None and not 0 < args.torque <= 50:
        raise OimonError("torque %g N*m is outside 0..50 N*m" % args.torque)
    con = db.connect(args.db)
    retighten.record(con, args.device, d, args.torque)
    print("recorded retightening of %s on %s" % (args.device, d))


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
