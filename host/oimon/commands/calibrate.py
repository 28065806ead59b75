"""oimon calibrate: the calibration wizard (tare, known masses on the axial axis, known moments on
each bending axis with the jig's lever arm), a least-squares fit of the 3x3 gain matrix and the
offsets, acceptance against a bound in % of full scale, the authenticated write to the device,
and a calibration certificate in the database."""
import datetime as dt
import json
import sys
import time

import numpy as np

from oimon import calibration as C
from oimon import db, link, validate
from oimon.errors import OimonError
from oimon_common import protocol as P
from oimon_common import decode as D


def register(sub):
    p = sub.add_parser("calibrate", help="calibrate the bridges with the jig (interactive wizard)")
    p.add_argument("--plan", help="JSON plan of the jig's steps: runs without prompts")
    p.add_argument("--masses", default="5,10,20,50", help="jig masses in kg (default 5,10,20,50)")
    p.add_argument("--lever-arm", type=validate.number(0.01, C.MAX_LEVER_M, unit="m"),
                   default=C.DEFAULT_LEVER, help="the jig's lever arm in m (default 0.5)")
    p.add_argument("--bound", type=validate.number(0.01, 10, unit="%"),
                   help="acceptance bound, %% of full scale (default 0.5)")
    p.add_argument("--dry-run", action="store_true",
                   help="fit and show the result; write nothing to the device or the database")
    p.add_argument("--json", action="store_true",
                   help="print the calibration certificate as JSON (the rest goes to stderr)")
    p.add_argument("--write-jig", metavar="REC",
                   help="write the plan's loads as a recording for `oimon sim device "
                        "--recording REC` (the simulated jig) and stop")
    p.set_defaults(func=cmd_calibrate)


def _plan(args):
    if args.plan:
        plan = C.load_plan(args.plan)
    else:
        try:
            masses = [validate.check_number(validate.parse_number(m, "--masses"), "--masses",
                                            0, C.MAX_MASS_KG, lo_open=True, unit="kg")
                      for m in args.masses.split(",") if m.strip()]
        except OimonError as e:
            raise OimonError("%s (give kilograms separated by commas)" % e)
        if len(masses) < 3:
            raise OimonError("--masses: give at least three masses")
        plan = C.check_plan(C.default_plan(masses, args.lever_arm), "default plan")
    if args.bound is not None:
        if not 0.01 <= args.bound <= 10:
            raise OimonError("--bound %g%% is outside 0.01..10%%" % args.bound)
        plan["bound_pct"] = args.bound
    return plan


class RawReader:
    """Raw counts from the device's raw stream, by device sample index."""

    def __init__(self, ln):
        self.ln = ln
        self.rate = 1000

    def start(self):
        r = self.ln.command(P.C_STREAM, {"mode": "raw"})
        self.rate = r.get("rate", 1000) or 1000
        self.ln.dec.reset_seq()

    def stop(self):
        try:
            self.ln.command(P.C_STREAM, {"mode": "off"}, timeout=1.0)
        except OimonError:
            pass

    def batches(self):
        """Yield (first index, rows (n, 4) int array) of the raw batches as they arrive."""
        frames = self.ln.pending + self.ln.read_frames()
        self.ln.pending = []
        for ftype, _seq, pl in frames:
            if ftype == P.T_RAW:
                try:
                    first, _rate, rows = D.unpack_raw(pl)
                except ValueError:
                    continue
                if rows:
                    yield first, np.asarray(rows, dtype=np.int64)

    def collect(self, n, timeout):
        """The next n samples (n, 4), after the ones already queued."""
        got = []
        have = 0
        deadline = time.monotonic() + timeout
        while have < n:
            if time.monotonic() > deadline:
                raise OimonError("the device sent no raw samples for %g s" % timeout)
            for _first, rows in self.batches():
                got.append(rows)
                have += len(rows)
        return np.concatenate(got)[:n]

    def drain(self, seconds):
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            for _ in self.batches():
                pass


def _tare_index(plan):
    for k, s in enumerate(plan["steps"]):
        if not any(s["load"]):
            return k
    return None


def check_steps(plan, means):
    """Every loaded step against the load it asked for (calibration.check_step, zero = the
    first tare step); the first misfit is an OimonError: nothing is written."""
    t = _tare_index(plan)
    for k, s in enumerate(plan["steps"]):
        msg = C.check_step(s, means[k], means[t], plan["step_tolerance_pct"])
        if msg:
            raise OimonError("calibration refused: step %d: %s; nothing was written" % (k + 1, msg))


def _measure_prompted(rr, plan, interactive):
    means, stds = [], []
    n = plan["samples"]
    tare = None
    for k, s in enumerate(plan["steps"]):
        if interactive:
            ld = s["load"]
            print("\nstep %d/%d: %s  (expected %.1f N, %.2f N*m AP, %.2f N*m ML)"
                  % (k + 1, len(plan["steps"]), _instruction(s, plan), ld[0], ld[1], ld[2]))
            while True:
                try:
                    input("  hold it still and press Enter (Ctrl-C aborts, nothing is written) ")
                except EOFError:
                    raise OimonError("calibration aborted (no input): nothing was written")
                rr.drain(plan["settle_s"])
                rows = rr.collect(n, 5 + 3 * n / rr.rate)
                sd = rows[:, :3].std(axis=0)
                if not np.all(sd < 2000):
                    print("  the load was moving (std %s counts): again" % np.round(sd).astype(int))
                    continue
                msg = None if tare is None else C.check_step(
                    s, rows[:, :3].mean(axis=0), tare, plan["step_tolerance_pct"])
                if msg is None:
                    break
                print("  %s: check the jig and the mass, then again" % msg)
        else:
            rr.drain(plan["settle_s"])
            rows = rr.collect(n, 5 + 3 * n / rr.rate)
        means.append(rows[:, :3].mean(axis=0))
        stds.append(rows[:, :3].std(axis=0))
        if tare is None and not any(s["load"]):
            tare = means[-1]
        if interactive:
            print("  raw mean %s counts" % np.round(means[-1]).astype(int))
    return np.array(means), np.array(stds)


def _instruction(s, plan):
    if s.get("name") == "tare" or not any(s["load"]):
        return "tare: take every load off the connector"
    return s["name"]


def _measure_scheduled(rr, plan):
    """Timed schedule: step k's load is held during device samples [k, k+1) * hold of every
    cycle; use the middle of each window (skip 25% at the start, 10% at the end)."""
    hold = int(round(plan["hold_s"] * rr.rate))
    nsteps = len(plan["steps"])
    cycle = hold * nsteps
    lo, hi = int(0.25 * hold), int(0.9 * hold)
    want = min(plan["samples"], hi - lo)
    acc = [[] for _ in range(nsteps)]
    have = np.zeros(nsteps, int)
    deadline = time.monotonic() + 10 + 2.5 * cycle / rr.rate
    while have.min() < want:
        if time.monotonic() > deadline:
            raise OimonError("the device did not play the plan's schedule (%d of %d steps seen)"
                             % (int((have >= want).sum()), nsteps))
        for first, rows in rr.batches():
            idx = (first + np.arange(len(rows))) % cycle
            k = idx // hold
            pos = idx % hold
            ok = (pos >= lo) & (pos < hi)
            for j in np.unique(k[ok]):
                sel = rows[ok & (k == j)]
                if have[j] < want:
                    acc[j].append(sel[:, :3])
                    have[j] += len(sel)
    means = np.array([np.concatenate(a)[:want].mean(axis=0) for a in acc])
    stds = np.array([np.concatenate(a)[:want].std(axis=0) for a in acc])
    return means, stds


def _table(res, plan):
    lines = ["axis      max error      rms error     %% of full scale (bound %g%%)" % plan["bound_pct"]]
    for i, ax in enumerate(C.AXES):
        lines.append("%-8s %9.3f %-4s %9.3f %-4s %8.3f%%  of %g %s  %s" % (
            ax, res["max"][i], C.UNITS[i], res["rms"][i], C.UNITS[i], res["pct"][i],
            C.FULL_SCALE[i], C.UNITS[i], "ok" if res["pct"][i] <= plan["bound_pct"] else "TOO LARGE"))
    return "\n".join(lines)


def fixed_point(offsets, matrix, version, date):
    """The device's calibration (oimon_common.calib.Calibration: integer offsets, Q-format matrix)."""
    from oimon_common import calib
    try:
        return calib.Calibration.from_gains(
            np.asarray(matrix).tolist(), [int(round(o)) for o in offsets] + [0],
            version=version, date=date)
    except ValueError as e:
        raise OimonError("the fitted calibration does not fit the device's format (%s)" % e)


def write_calibration(ln, args, cal):
    """The authenticated calibration command (C_CALIB): the calibration file's bytes (hex, as
    calib.save() writes them) and its fields."""
    from oimon.commands.config import auth_command
    return auth_command(ln, args, P.C_CALIB, {
        "file": cal.pack().hex(), "offsets": list(cal.offsets), "matrix": list(cal.matrix),
        "shifts": list(cal.shifts), "version": cal.version, "date": cal.date})


def cmd_calibrate(args):
    plan = _plan(args)
    if args.write_jig:
        n = C.write_plan_recording(plan, args.write_jig)
        print("wrote %s: %d steps held %g s each (%d samples) for `oimon sim device --recording`"
              % (args.write_jig, len(plan["steps"]), plan.get("hold_s", 2.0), n))
        return 0
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    interactive = not args.plan
    if interactive and not sys.stdin.isatty():
        raise OimonError("the calibration wizard needs a terminal; give --plan FILE for scripted runs")
    port = link.resolve_port(args.port)
    con = None if args.dry_run else db.connect(args.db)   # a bad --db fails before the device
    with link.Link(port) as ln:
        info = ln.command(P.C_INFO)
        dev_id = info.get("device_id", "?")
        say("calibrating %s (firmware %s) on %s: %d steps, bound %g%% of full scale"
              % (dev_id, info.get("fw"), port, len(plan["steps"]), plan["bound_pct"]))
        rr = RawReader(ln)
        rr.start()
        try:
            if "hold_s" in plan:
                means, stds = _measure_scheduled(rr, plan)
            else:
                means, stds = _measure_prompted(rr, plan, interactive)
        finally:
            rr.stop()
        check_steps(plan, means)            # each step read as the load it asked for
        loads = np.array([s["load"] for s in plan["steps"]])
        offsets, matrix = C.fit(means, loads)
        version = 1 if con is None else 1 + con.execute(
            "SELECT count(*) FROM calibration WHERE device_id = ?", (dev_id,)).fetchone()[0]
        cal = fixed_point(offsets, matrix, version, int(time.time()))
        # judge what the device will apply: integer offsets, fixed-point matrix
        offsets = np.array(cal.offsets[:3], float)
        matrix = np.array(cal.gains())
        res = C.residuals(offsets, matrix, means, loads)
        say(_table(res, plan))
        date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        cert = C.certificate(dev_id, plan, means, stds, offsets, matrix, res, date, info.get("fw"))
        cert["revision"] = version
        cert["file_hex"] = cal.pack().hex()
        if not cert["passed"]:
            worst = int(np.argmax(res["pct"]))
            raise OimonError("calibration refused: %s error %.3f%% of full scale exceeds the bound "
                             "of %g%%; nothing was written" % (C.AXES[worst], res["pct"][worst],
                                                               plan["bound_pct"]))
        if args.dry_run:
            say("dry run: fit within the bound; nothing written")
            if args.json:
                print(json.dumps(cert, indent=2, sort_keys=True))
            return 0
        write_calibration(ln, args, cal)
        after = ln.command(P.C_INFO)
    with con:
        cid = db.add_calibration(con, dev_id, date, cert)
    if args.json:
        print(json.dumps(cert, indent=2, sort_keys=True))
    say("calibration written to %s (%s); certificate #%d stored, max error %.3f%% of full scale"
          % (dev_id, "calibrated" if after.get("calibrated") else "device reports UNCALIBRATED",
             cid, cert["max_error_pct"]))
    return 0
