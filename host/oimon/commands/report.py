"""oimon report --out FILE.html|FILE.pdf [--pdf FILE.pdf] [--device ID] [--since D] [--today D]:
the clinical report (oimon.report) as one self-contained HTML file and/or a PDF printed by
headless Chromium."""
import datetime as dt
import os

from oimon import db, report, retighten
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
    tmp = str(path) + ".part"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OimonError("cannot write %s: %s" % (path, e.strerror))


def cmd_report(args):
    today = retighten.parse_date(args.today, "--today") if args.today else dt.date.today()
    since = retighten.parse_date(args.since, "--since") if args.since else None
    until = retighten.parse_date(args.until, "--until") if args.until else None
    if since and until and since > until:
        raise OimonError("--since %s is after --until %s" % (since, until))
    out = str(args.out)
    low = out.lower()
    if not low.endswith((".html", ".htm", ".pdf")):
        raise OimonError("--out %s: give a file name ending in .html or .pdf" % args.out)
    if args.pdf and not str(args.pdf).lower().endswith(".pdf"):
        raise OimonError("--pdf %s: give a file name ending in .pdf" % args.pdf)
    con = db.connect(args.db)
    kw = dict(today=today, max_plots=max(0, args.max_plots), since=since, until=until)
    pdfs = [args.pdf] if args.pdf else []
    if low.endswith(".pdf"):
        pdfs.insert(0, out)
    else:
        text = report.build(con, args.device, **kw)
        _write(out, text)
        print("wrote %s (%d kB)" % (out, len(text) // 1024))
    if pdfs:
        text = report.build(con, args.device, print_mode=True, **kw)
        for p in pdfs:
            report.to_pdf(text, p)
            print("wrote %s (%d kB)" % (p, os.path.getsize(p) // 1024))
    return 0
