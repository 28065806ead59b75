"""oimon plot REC --out PNG: loads against clock time, limits drawn, overloads shaded, events
and ground truth marked (oimon.plots). A raw recording is converted with the device's newest
calibration certificate from the database when there is one (the database is only read, and
only if it exists)."""
import json
import os

from oimon import db, recording
from oimon.errors import OimonError
from oimon.plots import calibration_from_certificate, plot


def register(sub):
    p = sub.add_parser("plot", help="plot a recording to a PNG")
    p.add_argument("recording")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.set_defaults(func=cmd_plot)


def _certificate(args, path):
    """The newest calibration certificate of a raw recording's device, or None."""
    try:
        with recording.Reader(path) as r:
            header = r.header
    except OimonError:
        return None                      # plot() says what is wrong with the file
    if header.get("kind") != "raw" or (header.get("calibration") or {}).get("gain"):
        return None
    dbp = args.db or db.default_path()
    if not os.path.isfile(str(dbp)):
        return None
    try:
        con = db.connect(dbp)
    except OimonError:
        return None                      # a plot does not need the database: counts it is
    try:
        row = con.execute("SELECT data FROM calibration WHERE device_id = ? ORDER BY date DESC, id DESC LIMIT 1",
                          (header.get("device_id"),)).fetchone()
    finally:
        con.close()
    if not row:
        return None
    try:
        return calibration_from_certificate(json.loads(row["data"]))
    except ValueError:
        return None


def cmd_plot(args):
    err = plot(args.recording, args.out, calibration=_certificate(args, args.recording))
    print("wrote %s" % args.out)
    if err:
        print("oimon: warning: %s (plotted the good part)" % err)
