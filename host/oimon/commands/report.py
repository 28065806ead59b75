"""oimon report --out HTML [--device ID] [--today YYYY-MM-DD]: one self-contained HTML file."""
import datetime as dt
import os

from oimon import db, report, retighten
from oimon.errors import OimonError


def register(sub):
    p = sub.add_parser("report", help="a self-contained HTML report: daily summaries, events, "
                       "plots, retightening, calibration, exercise")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--device", help="only this device")
    p.add_argument("--today", help="YYYY-MM-DD for the retightening status (default: today)")
    p.add_argument("--max-plots", type=int, default=report.MAX_PLOTS, help="recordings to plot")
    p.set_defaults(func=cmd_report)


def cmd_report(args):
    from oimon import validate
    today = validate.parse_date(args.today, "--today", latest_days_ahead=None) if args.today \
        else dt.date.today()
    if not str(args.out).lower().endswith((".html", ".htm")):
        raise OimonError("--out %s: give a file name ending in .html" % args.out)
    validate.check_out_path(args.out, "--out")
    con = db.connect(args.db)
    text = report.build(con, args.device, today, max(0, args.max_plots))
    tmp = str(args.out) + ".part"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, args.out)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OimonError("cannot write %s: %s" % (args.out, "disk full" if e.errno == 28
                                                  else e.strerror))
    print("wrote %s (%d kB)" % (args.out, len(text) // 1024))
    return 0
