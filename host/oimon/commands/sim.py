"""oimon sim ...: the simulator's commands (virtual device, scenarios, replay, metrics, sweep)."""
import json
import sys
import time

from oimon import validate
from oimon.errors import OimonError, read_json
from oimon_sim.device import start_virtual_device
from oimon_sim.generate import DEFAULT_START, generate_recording


def _positive(kind, lo=None, hi=None):
    return validate.integer(lo, hi) if kind is int else validate.number(lo, hi)


def _kv(s):
    import argparse
    if "=" not in s:
        raise argparse.ArgumentTypeError("wants KEY=VALUE, got %r" % s[:40])
    k, v = s.split("=", 1)
    try:
        v = validate.loads(v, "value")
    except OimonError:
        pass                             # a plain word: a string value
    if isinstance(v, (dict, list)):
        raise argparse.ArgumentTypeError("%s: a scenario parameter is a number or a word" % k)
    return k.strip(), v


def check_scenario_params(name, params):
    """--set KEY=VALUE against the scenario's own parameters (its function's keyword
    arguments): unknown keys and values of the wrong kind (a word for a number, nan, inf,
    huge) are one line naming the known ones."""
    import inspect
    from oimon_sim import scenarios
    fn = scenarios.SCENARIOS.get(name)
    if fn is None or not params:
        return params
    sig = inspect.signature(fn).parameters
    fixed = ("duration_s", "rate", "body_weight_kg", "seed")
    known = {k: p.default for k, p in sig.items()
             if k not in fixed and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind == p.VAR_KEYWORD for p in sig.values()):
        known = None                     # takes anything: values still checked below
    for k, v in params.items():
        if known is not None and k not in known:
            raise OimonError("scenario %s has no parameter %r (%s)" % (
                name, k, "its parameters: " + ", ".join(sorted(known)) if known
                else "it takes none"))
        d = known.get(k) if known else None
        if isinstance(d, (int, float)) and not isinstance(d, bool):
            validate.check_number(v, "--set %s" % k)
        elif isinstance(d, str) and not isinstance(v, str):
            raise OimonError("--set %s wants a word, not %r" % (k, v))
        elif isinstance(v, float):
            validate.check_number(v, "--set %s" % k)
    return params


def register(sub):
    p = sub.add_parser("sim", help="simulator: virtual device, scenarios, replay, metrics")
    s = p.add_subparsers(dest="sim_command", metavar="SIMCOMMAND", parser_class=type(p))
    s.required = True

    d = s.add_parser("device", help="run the firmware on the unix port behind a pty")
    g = d.add_mutually_exclusive_group()
    g.add_argument("--scenario", default="walk", help="built-in scenario (default walk)")
    g.add_argument("--recording", help="recording file to play (raw counts or calibrated)")
    d.add_argument("--speed", type=_positive(int, 0, 1000), default=1,
                   help="1 = real time (default), 0 = as fast as possible")
    d.add_argument("--duration", type=_positive(float, 1, 86400), default=60,
                   help="scenario length in s, looped")
    d.add_argument("--seed", type=_positive(int, 0, 2**31), default=0)
    d.add_argument("--body-weight", type=_positive(float, 20, 250), default=75.0)
    d.add_argument("--storage", help="folder for the device's files (default: a temporary one)")
    d.add_argument("--device-id", default="SIM-0001")
    d.add_argument("--seconds", type=_positive(float, 0), default=0,
                   help="stop after this many seconds (default: Ctrl-C)")
    d.set_defaults(func=cmd_device)

    ls = s.add_parser("list", help="the built-in scenarios")
    ls.set_defaults(func=cmd_list)

    g = s.add_parser("generate", help="write a scenario with its ground truth into a recording")
    g.add_argument("--scenario", required=True, help="scenario name (oimon sim list)")
    g.add_argument("--duration", type=_positive(float, 0.1, 7 * 86400), required=True,
                   help="seconds")
    g.add_argument("--seed", type=_positive(int, 0, 2**31), default=0)
    g.add_argument("--body-weight", type=_positive(float, 20, 250), default=75.0, help="kg")
    g.add_argument("--rate", type=_positive(int, 10, 10000), default=1000, help="Hz (default 1000)")
    k = g.add_mutually_exclusive_group()
    k.add_argument("--raw", dest="raw", action="store_const", const=True, default=None,
                   help="raw ADC counts (the default for fault scenarios and day)")
    k.add_argument("--calibrated", dest="raw", action="store_const", const=False,
                   help="calibrated device units even for day (its sensor faults are left out)")
    g.add_argument("--set", action="append", default=[], type=_kv, metavar="KEY=VALUE",
                   help="scenario parameter, e.g. --set direction=backward --set severity=high")
    g.add_argument("--no-noise", action="store_true", help="leave out the sensor noise")
    g.add_argument("--start", default=DEFAULT_START, help="start_time in the header (ISO 8601)")
    g.add_argument("--device-id", default="SIM-0001")
    g.add_argument("--progress", action="store_true", help="progress bar even if stderr is no tty")
    g.add_argument("--out", required=True, help="recording to write")
    g.set_defaults(func=cmd_generate)

    r = s.add_parser("replay", help="run the firmware's numpy model over a recording, print events")
    r.add_argument("recording")
    r.add_argument("--json", action="store_true", help="events as JSON")
    r.add_argument("--config", help="JSON file: phase, limits, body_weight_kg, ... (as config.json)")
    r.add_argument("--progress", action="store_true")
    r.add_argument("--salvage", action="store_true",
                   help="replay the good part of a damaged recording (warning instead of error)")
    r.set_defaults(func=cmd_replay)

    m = s.add_parser("metrics", help="replay events against the ground truth")
    m.add_argument("recordings", nargs="+")
    m.add_argument("--config", help="JSON file: phase, limits, ... (as config.json)")
    m.add_argument("--json", action="store_true")
    m.add_argument("--tolerance", type=_positive(float, 0, 60), default=2.0,
                   help="seconds after a truth interval an event still counts for it (default 2)")
    m.add_argument("--progress", action="store_true")
    m.add_argument("--salvage", action="store_true", help="use the good part of damaged recordings")
    m.set_defaults(func=cmd_metrics)

    w = s.add_parser("sweep", help="vary a threshold, tabulate sensitivity and false events")
    w.add_argument("recordings", nargs="+")
    w.add_argument("--param", default="comp",
                   help="what to vary: a limit (comp, tens, moment), a detector setting "
                   "(detector.f_impact, detector.r_impact, detector.rec_pct, ...: docs/algorithm.md "
                   "5.6, lower case) or a config key (default comp)")
    w.add_argument("--values", required=True,
                   help="comma-separated values in device units, or START:STOP:STEP")
    w.add_argument("--config", help="base config (JSON)")
    w.add_argument("--tolerance", type=_positive(float, 0, 60), default=2.0)
    w.add_argument("--csv", required=True, help="table to write")
    w.add_argument("--png", help="ROC-style plot to write")
    w.add_argument("--progress", action="store_true")
    w.add_argument("--salvage", action="store_true", help="use the good part of damaged recordings")
    w.set_defaults(func=cmd_sweep)


# --- device ----------------------------------------------------------------------------------



def cmd_device(args):
    vd = start_virtual_device(args.scenario, args.recording, args.speed, args.duration,
                              args.storage, args.device_id, args.body_weight, args.seed)
    print(vd.path, flush=True)
    print("virtual device %s on %s (storage %s); Ctrl-C stops it" % (
        args.device_id, vd.path, vd.storage), file=sys.stderr, flush=True)
    t_end = time.monotonic() + args.seconds if args.seconds else None
    try:
        while vd.alive() and (t_end is None or time.monotonic() < t_end):
            time.sleep(0.2)
        if not vd.alive():
            raise OimonError("virtual device stopped: %s" % vd.log_tail().strip().splitlines()[-1:])
    except KeyboardInterrupt:
        pass
    finally:
        vd.stop()
        import shutil
        if vd.work is None:                  # stop() removed the input folder already
            pass
        elif args.storage:                     # keep the storage asked for, drop the input file
            (vd.work / "sensor.raw").unlink(missing_ok=True)
            shutil.rmtree(vd.work, ignore_errors=True) if not any(vd.work.iterdir()) else None
        else:
            shutil.rmtree(vd.work, ignore_errors=True)


# --- scenarios -------------------------------------------------------------------------------
def cmd_list(args):
    from oimon_sim import scenarios
    for name in scenarios.SCENARIOS:
        print("%-17s %s" % (name, scenarios.describe(name)))



def cmd_generate(args):
    params = check_scenario_params(args.scenario, dict(args.set))
    h = generate_recording(args.out, args.scenario, args.duration, args.seed, args.body_weight,
                           args.rate, args.raw, params, not args.no_noise, args.start,
                           args.device_id, args.progress)
    print("wrote %s: %s, %.1f s at %d Hz, %s" % (args.out, args.scenario, args.duration,
                                                 args.rate, h["kind"]))


# --- replay, metrics, sweep ------------------------------------------------------------------
def _load_config(path):
    if not path:
        return None
    cfg = read_json(path, "config")
    return check_replay_config(cfg, "config %s" % path)


def check_replay_config(cfg, what="config"):
    """A replay config (the device's config.json keys, plus "detector" and "fc"): known keys
    only, each value of its kind and in the device's own range (oimon_common.settings), limits
    in device units (0.1 N, 0.01 N*m), no NaN/inf, no true for a number."""
    from oimon_common import settings as S
    from oimon_common.limits import PHASES
    known = set(S.DEFAULTS) | {"detector", "fc"}
    validate.check_keys(cfg, known, what)
    ph = cfg.get("phase")
    if "phase" in cfg and ph not in PHASES:
        raise OimonError("%s: phase must be one of %s, not %s" % (what, ", ".join(PHASES),
                                                                  validate._show(ph)))
    if "body_weight_kg" in cfg:
        validate.check_number(cfg["body_weight_kg"], "%s: body_weight_kg" % what, *S.BODY_WEIGHT,
                              unit="kg")
    if "debounce_ms" in cfg:
        validate.check_number(cfg["debounce_ms"], "%s: debounce_ms" % what, 1, 1000, unit="ms")
    if "fc" in cfg:
        validate.check_number(cfg["fc"], "%s: fc" % what, 1, 200, unit="Hz", integer=True)
    if "stream_batch" in cfg:
        validate.check_number(cfg["stream_batch"], "%s: stream_batch" % what, *S.STREAM_BATCH,
                              integer=True)
    lim = cfg.get("limits", {})
    if lim is not None:
        if not isinstance(lim, dict):
            raise OimonError("%s: limits must be an object" % what)
        tables = lim.items() if any(isinstance(v, dict) for v in lim.values()) else [(None, lim)]
        for phase, t in tables:
            where = "%s: limits%s" % (what, "." + phase if phase else "")
            if phase is not None and phase not in PHASES:
                raise OimonError("%s: unknown phase %r (phases: %s)" % (what, phase,
                                                                       ", ".join(PHASES)))
            validate.check_keys(t, S.LIMIT_RANGES, where)
            for k, v in t.items():
                lo, hi = S.LIMIT_RANGES[k]
                validate.check_number(v, "%s.%s" % (where, k), lo, hi,
                                      unit="x 0.01 N*m" if k == "moment" else "x 0.1 N")
    det = cfg.get("detector")
    if det is not None:
        if not isinstance(det, dict):
            raise OimonError('%s: "detector" is an object of detector settings' % what)
        for k, v in det.items():
            validate.check_number(v, "%s: detector.%s" % (what, k))
    return cfg


def _warn(res):
    for e in res.get("errors", [])[:1]:
        print("oimon: warning: %s (the rest was replayed)" % e, file=sys.stderr)


def cmd_replay(args):
    from oimon_sim import replay
    res = replay.replay_file(args.recording, _load_config(args.config),
                             progress=args.progress or None, salvage=args.salvage)
    _warn(res)
    if args.json:
        print(json.dumps({"events": res["events"], "samples": res["samples"],
                          "seconds": res["samples"] / res["rate"], "config": res["config"]},
                         indent=1, sort_keys=True))
        return
    print(replay.format_events(res))


def cmd_metrics(args):
    from oimon_sim import metrics
    cfg = _load_config(args.config)
    res = metrics.evaluate_files(args.recordings, cfg, tolerance_s=args.tolerance,
                                 progress=args.progress or None, salvage=args.salvage)
    for e in res.get("errors", [])[:1]:
        print("oimon: warning: %s (the rest was used)" % e, file=sys.stderr)
    if args.json:
        print(json.dumps(res, indent=1, sort_keys=True))
    else:
        print(metrics.format_report(res))


def cmd_sweep(args):
    from oimon_sim import sweep
    values = sweep.parse_values(args.values)
    rows = sweep.run(args.recordings, args.param, values, _load_config(args.config),
                     tolerance_s=args.tolerance, progress=args.progress or None,
                     salvage=args.salvage)
    sweep.write_csv(args.csv, rows)
    if args.png:
        sweep.plot(args.png, rows, args.param)
    print(sweep.format_table(rows))
    print("wrote %s%s" % (args.csv, " and %s" % args.png if args.png else ""))
