"""oimon plot REC --out PNG: load channels against time, limits drawn, events marked."""
from oimon.plots import plot


def register(sub):
    p = sub.add_parser("plot", help="plot a recording to a PNG")
    p.add_argument("recording")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.set_defaults(func=cmd_plot)



def cmd_plot(args):
    from oimon import validate
    validate.check_out_path(args.out, "--out")
    err = plot(args.recording, args.out)
    print("wrote %s" % args.out)
    if err:
        print("oimon: warning: %s (plotted the good part)" % err)
