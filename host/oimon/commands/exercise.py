"""oimon exercise plan | live | report: the Phase I loading exercise (docs/exercise.md).

plan    build a plan from a preset and options, validate it with the device's own rules, print
        its progression table (--dry-run stops there) and store it on the device (authenticated).
live    a live bar of the load against today's target band, from the calibrated stream.
report  sessions done vs prescribed per day, time in band, peaks, over-target excursions."""
import datetime as dt
import json
import sys
import time

from oimon import db, link, validate
from oimon import exercise as X
from oimon.errors import OimonError
from oimon_common import exercise as FX
from oimon_common import protocol as P
from oimon_common import decode as D


def _date(s):
    """A plan or report date (oimon.validate: not before any device existed; may be ahead)."""
    return dt.date.fromisoformat(validate.date_arg(latest_days_ahead=None)(s))


_date.__name__ = "date"


def _num(lo, hi, kind=float):
    return validate.integer(lo, hi) if kind is int else validate.number(lo, hi)


def register(sub):
    p = sub.add_parser("exercise", help="Phase I loading exercise: plan, live view, report")
    s = p.add_subparsers(dest="ex_command", metavar="ACTION", parser_class=type(p))
    s.required = True

    pl = s.add_parser("plan", help="set the exercise plan (prosthetist, authenticated)")
    pl.add_argument("--preset", choices=sorted(X.PRESETS), default=X.DEFAULT_PRESET,
                    help="2x20: 20 min twice a day (default); 3x30: 30 min three times a day")
    pl.add_argument("--start-kg", type=_num(0, 1000), help="first target (default 5 kg)")
    pl.add_argument("--step-kg", type=_num(0, 1000),
                    help="added per step (default 5 kg; at most %d kg)" % FX.MAX_STEP_KG)
    pl.add_argument("--interval-days", type=_num(0, 10000, int),
                    help="days between steps (default 7; at least %d)" % FX.MIN_INTERVAL_DAYS)
    pl.add_argument("--cap-kg", type=_num(0, 1000),
                    help="highest target (default and maximum: min(50%% of body weight, 50 kg))")
    pl.add_argument("--sessions", type=_num(0, 100, int), dest="sessions_per_day",
                    help="sessions per day (preset's)")
    pl.add_argument("--minutes", type=_num(0, 1000, int), help="minutes per session (preset's)")
    pl.add_argument("--band-pct", type=_num(0, 100, int), help="target band +-%% (default 10)")
    pl.add_argument("--margin-pct", type=_num(0, 1000, int),
                    help="over-target alarm above target +%% (default 20)")
    pl.add_argument("--body-weight-kg", type=_num(0, 1000),
                    help="body weight (default: the device's; must agree with it)")
    pl.add_argument("--start-date", type=_date, help="day the plan starts, YYYY-MM-DD (default today)")
    pl.add_argument("--dry-run", action="store_true", help="validate and print the progression only")
    pl.add_argument("--json", action="store_true", help="print the plan as JSON")
    pl.set_defaults(func=cmd_plan)

    lv = s.add_parser("live", help="live view of the load against today's target band")
    lv.add_argument("--seconds", type=_num(0.1, 86400), help="stop after this long (default Ctrl-C)")
    lv.add_argument("--target-kg", type=_num(0, 1000),
                    help="coach to this target instead of the device's plan (within the cap)")
    lv.add_argument("--band-pct", type=_num(0, 100, int), help="with --target-kg (default 10)")
    lv.add_argument("--margin-pct", type=_num(0, 1000, int), help="with --target-kg (default 20)")
    lv.add_argument("--width", type=_num(20, 200, int), default=50, help="bar width in characters")
    lv.set_defaults(func=cmd_live)

    for act, hlp in (("start", "start today's session on the device (the patient's long button "
                      "press does the same)"), ("stop", "end the running session; prints its summary")):
        sp = s.add_parser(act, help=hlp)
        sp.set_defaults(func=cmd_session, action=act)

    rp = s.add_parser("report", help="sessions done vs prescribed, time in band, peaks, excursions")
    rp.add_argument("--device", help="device id (default: all devices' sessions)")
    rp.add_argument("--since", type=_date, help="first day YYYY-MM-DD")
    rp.add_argument("--until", type=_date, help="last day YYYY-MM-DD")
    rp.add_argument("--plan", help="plan JSON file (prescription for days without sessions)")
    rp.add_argument("--chart", help="also write a PNG chart here")
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func=cmd_report)


# --- plan --------------------------------------------------------------------------------------
def build_plan(args, body_weight_kg):
    return X.make_plan(body_weight_kg, preset=args.preset, start_date=args.start_date,
                       start_kg=args.start_kg, step_kg=args.step_kg,
                       interval_days=args.interval_days, cap_kg=args.cap_kg,
                       sessions_per_day=args.sessions_per_day, minutes=args.minutes,
                       band_pct=args.band_pct, margin_pct=args.margin_pct)


from oimon.commands.config import auth_command  # noqa: E402 - one signing path for every command


def cmd_plan(args):
    if args.dry_run and args.body_weight_kg is not None:
        plan = X.validate(build_plan(args, args.body_weight_kg))
        _print_plan(args, plan)
        return 0
    # everything that can be checked without the device, first: with the heaviest body weight
    # the device accepts, so that a rule that depends on it (the cap, % of body weight) is only
    # judged (and worded) with the device's own body weight below
    from oimon_common import settings as S
    pre = None
    try:
        X.validate(build_plan(args, args.body_weight_kg if args.body_weight_kg is not None
                              else S.BODY_WEIGHT[1]))
    except OimonError as e:
        if args.body_weight_kg is not None:
            raise
        pre = e                  # worded with a body weight not the device's: ask it first
    try:
        ln = link.Link(link.resolve_port(args.port))
    except OimonError:
        if pre is not None:
            raise pre
        raise
    with ln:
        info = ln.command(P.C_INFO)
        dev_bw = info.get("body_weight_kg")
        if args.body_weight_kg is not None and dev_bw is not None \
                and abs(args.body_weight_kg - dev_bw) > 0.5:
            raise OimonError("--body-weight-kg %g differs from the device's %g kg: correct it with "
                             "'oimon config set body_weight=KG' first" % (args.body_weight_kg, dev_bw))
        plan = X.validate(build_plan(args, args.body_weight_kg if args.body_weight_kg is not None
                                     else dev_bw), dev_bw)
        if args.dry_run:
            _print_plan(args, plan)
            return 0
        auth_command(ln, args, P.C_PLAN, plan)
    _print_plan(args, plan)
    print("plan stored on %s" % info.get("device_id", "?"))
    return 0


def _print_plan(args, plan):
    if args.json:
        print(json.dumps(plan, indent=2, sort_keys=True))
    else:
        print(X.format_plan(plan))


# --- live ----------------------------------------------------------------------------------------
def live_plan(args, info, cfg):
    """The plan the live view coaches to: --target-kg (a constant target within the cap, with
    the device's body weight), else the device's stored plan."""
    bw = info.get("body_weight_kg") or cfg.get("body_weight_kg")
    if args.target_kg is not None:
        plan = X.make_plan(bw, start_kg=args.target_kg, step_kg=0, cap_kg=args.target_kg,
                           band_pct=args.band_pct, margin_pct=args.margin_pct,
                           start_date=dt.date.today())
        return X.validate(plan)
    plan = cfg.get("exercise_plan")
    if not plan:
        raise OimonError("no exercise plan on the device: set one with 'oimon exercise plan', "
                         "or give --target-kg")
    return X.validate(plan)


def bar(load_kg, plan, tkg, width=50):
    """One line: the load as a bar with the band [ ] and the alarm threshold ! marked."""
    lo, hi, al = X.thresholds_kg(plan, tkg)
    full = al * 1.25
    cells = [" "] * width

    def col(v):
        return max(0, min(width - 1, int(round(v / full * (width - 1)))))
    n = 0 if load_kg <= 0 else col(load_kg) + 1
    for i in range(width):
        if i < n:
            cells[i] = "#"
        elif col(lo) < i < col(hi):
            cells[i] = "-"
    cells[col(lo)] = "["
    cells[col(hi)] = "]"
    cells[col(al)] = "!"
    return "|" + "".join(cells) + "|" + (">" if load_kg > full else " ")


ZONE_TEXT = {0: "", FX.ZONE_UNDER: "LOAD MORE", FX.ZONE_IN: "IN BAND - HOLD",
             FX.ZONE_OVER: "TOO MUCH", FX.ZONE_ALARM: "UNLOAD NOW"}


class LiveView:
    """Feeds calibrated samples into the firmware's own Exercise code (the same zones, hysteresis
    and dwell the device signals) and draws the bar."""

    def __init__(self, plan, width=50, out=None, tty=None):
        self.plan = plan
        self.ex = FX.Exercise(plan)
        self.day = self.ex.day_of(int(time.time()))
        err = self.ex.start(0, self.day, int(time.time()))
        if err:
            raise OimonError(err)
        self.tkg = self.ex.target_dkg / 10.0
        self.width = width
        self.out = out = out or sys.stdout
        self.tty = out.isatty() if tty is None else tty
        self.t0 = None
        self.ms = 0
        self.recent = []
        self.changes = 0
        self.last_draw = 0.0

    def samples(self, first, rate, rows):
        if self.t0 is None:
            self.t0 = first
        for i, (ax, _m1, _m2) in enumerate(rows):
            self.ms = ((first + i - self.t0) & 0xFFFFFFFF) * 1000 // rate
            if self.ex.step(ax, self.ms):
                self.changes += 1
        self.recent = [r[0] for r in rows[-max(1, rate // 20):]]     # the last 50 ms

    def load_kg(self):
        return sum(self.recent) / len(self.recent) / X.N_PER_KG_0P1 if self.recent else 0.0

    def line(self):
        return "%6.1f kg %s %-14s target %.1f kg (%.1f-%.1f)" % (
            self.load_kg(), bar(self.load_kg(), self.plan, self.tkg, self.width),
            ZONE_TEXT.get(self.ex.zone, ""), self.tkg, *X.thresholds_kg(self.plan, self.tkg)[:2])

    def draw(self, force=False):
        now = time.monotonic()
        if not force and now - self.last_draw < (0.1 if self.tty else 0.5):
            return
        self.last_draw = now
        if self.tty:
            self.out.write("\r" + self.line())
        else:
            self.out.write(self.line() + "\n")
        self.out.flush()

    def finish(self):
        s = self.ex.stop(self.ms)
        if self.tty:
            self.out.write("\n")
        lm = s["loaded_ms"]
        self.out.write("live view: %.1f s, loaded %.1f s, in band %d%%, mean %.1f kg, peak %.1f kg, "
                       "%d over-target excursions (%d above the alarm margin)\n" % (
                           s["dur_ms"] / 1000.0, lm / 1000.0, s["in_pct"], X.kg(s["mean"]),
                           X.kg(s["peak"]), s["over_n"], s["alarm_n"]))
        self.out.flush()
        return s


def cmd_session(args):
    """exercise start|stop: a patient-level command (no key)."""
    with link.Link(link.resolve_port(args.port)) as ln:
        r = ln.command(P.C_EXERCISE, {"action": args.action})
    if args.action == "start":
        print("exercise session %d of today started: target %.1f kg for %d minutes" % (
            r["session_today"], r["target_kg"], r["minutes"]))
    else:
        print(X.format_session(r))


def cmd_live(args):
    if args.target_kg is None and (args.band_pct is not None or args.margin_pct is not None):
        raise OimonError("--band-pct and --margin-pct go with --target-kg (else the plan's apply)")
    port = link.resolve_port(args.port)
    with link.Link(port) as ln:
        info = ln.command(P.C_INFO)
        cfg = ln.command(P.C_CONFIG)
        plan = live_plan(args, info, cfg)
        if not info.get("calibrated", True):
            raise OimonError("device %s is not calibrated: its loads would be meaningless"
                             % info.get("device_id", "?"))
        view = LiveView(plan, args.width)
        ln.command(P.C_STREAM, {"mode": "cal"})
        t_end = time.monotonic() + args.seconds if args.seconds else None
        try:
            while t_end is None or time.monotonic() < t_end:
                frames = ln.pending + ln.read_frames()
                ln.pending = []
                for ftype, _seq, pl in frames:
                    if ftype != P.T_SAMPLES:
                        continue
                    try:
                        first, rate, rows = D.unpack_samples(pl)
                    except ValueError:
                        continue
                    view.samples(first, rate, rows)
                view.draw()
        except KeyboardInterrupt:
            pass
        finally:
            try:
                ln.command(P.C_STREAM, {"mode": "off"}, timeout=1.0)
            except OimonError:
                pass
    view.draw(force=True)
    view.finish()
    return 0


# --- report --------------------------------------------------------------------------------------
def cmd_report(args):
    if args.since and args.until and args.since > args.until:
        raise OimonError("--since %s is after --until %s" % (args.since, args.until))
    plan = X.load_plan_file(args.plan) if args.plan else None
    con = db.connect(args.db)
    sessions = X.sessions_from_db(con, args.device, args.since, args.until)
    rep = X.compliance(sessions, plan, args.since, args.until)
    if args.chart:
        png = X.exercise_chart_png(rep, "Phase I loading exercise" + (
            " - %s" % args.device if args.device else ""))
        try:
            with open(args.chart, "wb") as f:
                f.write(png)
        except OSError as e:
            raise OimonError("cannot write %s: %s" % (args.chart, e.strerror or e))
    if args.json:
        print(json.dumps(dict(rep, device_id=args.device), indent=2, sort_keys=True))
    else:
        print(X.format_report(rep, args.device))
        if args.chart:
            print("chart: %s" % args.chart)
    return 0
