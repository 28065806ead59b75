"""oimon import | export: bring outside data into a recording, take a recording out as CSV.

    oimon import CSV --columns 1,18 --units s,N [--rate HZ] [--resample 1000] --out REC
    oimon import ACC.csv[.gz] --imu [--resample-method index|timestamps] --out REC
    oimon export csv REC --out CSV [--events EVENTS.jsonl] [--salvage] [--imu]

Both stream (blocks of rows), so a 24 h file passes through in bounded memory."""
import sys

from oimon import validate
from oimon.csvio import check_start, export_csv, export_imu_csv, import_csv, import_imu
from oimon.errors import OimonError


def register(sub):
    p = sub.add_parser("import", help="make a recording from a CSV/TSV file (e.g. gaitpdb)")
    p.add_argument("csv", help="text file: comma, tab, semicolon or space separated")
    p.add_argument("--imu", action="store_true",
                   help="an accelerometer file t_s,ax_g,ay_g,az_g (e.g. UMAFall, .csv or .csv.gz): "
                   "an IMU-only recording, resampled to 104 Hz, gyroscope and load marked missing")
    p.add_argument("--resample-method", choices=("index", "timestamps"), default="index",
                   help="--imu: 'index' (default) spaces the samples evenly over the recording "
                   "(the stamps are arrival times); 'timestamps' interpolates on the stamps")
    p.add_argument("--columns",
                   help="1-based columns, e.g. 1,18 (a column with unit s or ms is the time)")
    p.add_argument("--units",
                   help="one per column: s, ms (time); N, kN, kgf, lbf (force); N*m, Nm, N*cm (moment)")
    p.add_argument("--channels", help="what the non-time columns are, in order (default "
                   "axial,moment_ap,moment_ml)")
    p.add_argument("--rate", type=validate.number(0, 100000, lo_open=True, unit="Hz"),
                   help="sample rate in Hz (default: from the time column)")
    p.add_argument("--resample", type=validate.integer(1, 100000, unit="Hz"),
                   help="resample to this rate (scipy.signal.resample_poly)")
    p.add_argument("--delimiter", help="field separator (default: guessed from the first data line)")
    p.add_argument("--skip", type=validate.integer(0, 1000000), default=None, help="header lines to skip (default: lines "
                   "that are not numbers)")
    p.add_argument("--device-id", default="IMPORT")
    p.add_argument("--start", default=None, help="start_time for the header (ISO 8601)")
    p.add_argument("--out", required=True, help="recording to write")
    p.set_defaults(func=cmd_import)

    e = sub.add_parser("export", help="write a recording out in another format")
    es = e.add_subparsers(dest="export_format", metavar="FORMAT", parser_class=type(e))
    es.required = True
    c = es.add_parser("csv", help="samples as CSV: sample, time_s, one column per channel")
    c.add_argument("recording")
    c.add_argument("--out", required=True, help="CSV file to write ('-' = stdout); columns "
                   "sample, time_s (from the recording's start), the channels, clock_utc")
    c.add_argument("--counts", action="store_true",
                   help="stored integers instead of physical units")
    c.add_argument("--events", help="also write the events (and ground truth) as JSON lines")
    c.add_argument("--imu", action="store_true",
                   help="the IMU channels instead of the load (imu_sample, t_s, acc g, gyro dps, "
                   "flags; empty = not measured)")
    c.add_argument("--salvage", action="store_true",
                   help="export the good part of a damaged recording (warning instead of error)")
    c.set_defaults(func=cmd_export_csv)


# --- import ----------------------------------------------------------------------------------



def _device_id(s):
    s = (s or "").strip()
    if not s or len(s) > 64 or not s.isprintable():
        raise OimonError("--device-id %r: 1-64 printable characters" % s[:70])
    return s


def cmd_import(args):
    validate.check_out_path(args.out, "--out")
    start = check_start(args.start)
    dev = _device_id(args.device_id)
    if args.imu:
        header, rows = import_imu(args.csv, args.out, args.resample_method, dev, start)
        print("imported %d IMU samples (%.1f s at 104 Hz; gyroscope and load missing) from %s "
              "into %s" % (len(rows), len(rows) / 104.0, args.csv, args.out))
        return
    if not args.columns or not args.units:
        raise OimonError("--columns and --units are needed (or --imu for an accelerometer file)")
    if args.delimiter is not None:
        try:
            d = args.delimiter.encode().decode("unicode_escape")
        except UnicodeDecodeError:
            d = ""
        if len(d) != 1 or d in "0123456789.-+eE\r\n":
            raise OimonError("--delimiter %r: one separator character (e.g. ',', ';' or '\\t')"
                             % args.delimiter)
    header, n = import_csv(args.csv, args.columns, args.units, args.out, args.rate, args.resample,
                           args.channels, args.delimiter, args.skip, dev, start)
    print("imported %d samples (%.1f s at %g Hz) from %s into %s" % (
        n, n / header["rate_hz"], header["rate_hz"], args.csv, args.out))


# --- export ----------------------------------------------------------------------------------



def cmd_export_csv(args):
    validate.check_out_path(args.out, "--out")
    if args.events:
        validate.check_out_path(args.events, "--events")
    if args.imu:
        n, err = export_imu_csv(args.recording, args.out, args.salvage)
        if err:
            print("oimon: warning: %s (exported the good part)" % err, file=sys.stderr)
        if args.out != "-":
            print("exported %d IMU samples to %s" % (n, args.out))
        return
    n, err = export_csv(args.recording, args.out, args.counts, args.events, args.salvage)
    if err:
        print("oimon: warning: %s (exported the good part)" % err, file=sys.stderr)
    if args.out != "-":
        print("exported %d samples to %s" % (n, args.out))
