"""oimon report --out FILE.html|FILE.pdf [--pdf FILE.pdf] [--device ID] [--since D] [--today D]:
the clinical report (oimon.report) as one self-contained HTML file and/or a PDF printed by
headless Chromium."""
import datetime as dt
import os

from oimon import db, report
from oimon.files import replacing
from oimon.errors import OimonError


def register(sub):
    p = sub.add_parser("report", help="the clinical report since the last visit: headline, settings, "
                       "activity, events, event plots, exercise, device health (HTML and/or PDF)")
    p.add_argument("--out", required=True, help="file to write: .html (self-contained) or .pdf")
    p.add_argument("--pdf", help="also print it to this PDF (headless Chromium)")
    p.add_argument("--device", help="only this device (default: every device, one section each)")
    p.add_argument("--since", help="first day YYYY-MM-DD (default: the last visit: retightening or "
                   "settings change)")
    p.add_argument("--until", help="last day YYYY-MM-DD (default: --today)")
    p.add_argument("--today", help="YYYY-MM-DD for the retightening status (default: today)")
    p.add_argument("--max-plots", type=int, default=report.MAX_PLOTS,
                   help="event plots: every fall, then the worst overloads up to this many")
    p.set_defaults(func=cmd_report)


def _write(path, text):
    try:
        with replacing(path) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
    except OSError as e:
        raise OimonError("cannot write %s: %s" % (path, "disk full" if e.errno == 28 else e.strerror))


def cmd_report(args):
    from oimon import validate
    today = validate.parse_date(args.today, "--today", latest_days_ahead=None) if args.today \
        else dt.date.today()
    since = validate.parse_date(args.since, "--since", latest_days_ahead=None) if args.since else None
    until = validate.parse_date(args.until, "--until", latest_days_ahead=None) if args.until else None
    if since and until and since > until:
        raise OimonError("--since %s is after --until %s" % (since, until))
    out = str(args.out)
    low = out.lower()
    if not low.endswith((".html", ".htm", ".pdf")):
        raise OimonError("--out %s: give a file name ending in .html or .pdf" % args.out)
    if args.pdf and not str(args.pdf).lower().endswith(".pdf"):
        raise OimonError("--pdf %s: give a file name ending in .pdf" % args.pdf)
    validate.check_out_path(args.out, "--out")
    if args.pdf:
        validate.check_out_path(args.pdf, "--pdf")
    con = db.connect(args.db)
    kw = dict(today=today, max_plots=max(0, args.max_plots), since=since, until=until)
    pdfs = [args.pdf] if args.pdf else []
    text = report.build(con, args.device, **kw)
    if low.endswith(".pdf"):
        pdfs.insert(0, out)
    else:
        _write(out, text)
        print("wrote %s (%d kB)" % (out, len(text) // 1024))
    if pdfs:
        text = report.for_print(text)
        for p in pdfs:
            report.to_pdf(text, p)
            print("wrote %s (%d kB)" % (p, os.path.getsize(p) // 1024))
    return 0
