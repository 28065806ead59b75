"""oimon config show | set KEY=VALUE...: limits, rehab phase, body weight, patient pseudonym.

Every value is checked against its physical range before anything is sent; `set` is an
authenticated (prosthetist) command. Limits apply to one rehab phase: the one given with
phase=... in the same command, else the device's current phase."""
import json
import re

from oimon import db, link
from oimon.errors import OimonError
from oimon_common import protocol as P
from oimon_common import settings as S
from oimon_common.limits import PHASES

# key: (description, unit, low, high, device units per unit): the device's own ranges
RANGES = dict(S.RANGES, body_weight=("body weight", "kg", S.BODY_WEIGHT[0], S.BODY_WEIGHT[1], 1))
ALIASES = {"compression": "comp", "tension": "tens", "weight": "body_weight",
           "body_weight_kg": "body_weight", "pseudonym": "patient", "rehab_phase": "phase"}
PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


def register(sub):
    p = sub.add_parser("config", help="show or set limits, rehab phase, body weight, patient")
    s = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    s.required = True
    sh = s.add_parser("show", help="the device's configuration")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_show)
    st = s.add_parser("set", help="set KEY=VALUE ... (authenticated): comp=N tens=N moment=N*m "
                      "phase=I|II|III|full body_weight=KG patient=PSEUDONYM")
    st.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    st.set_defaults(func=cmd_set)
    rp = s.add_parser("reprovision", help="(authenticated) after a lost, corrupt or tampered "
                      "configuration: write a fresh phase I configuration, then set it again")
    rp.set_defaults(func=cmd_reprovision)


def cmd_reprovision(args):
    with link.Link(link.resolve_port(args.port)) as ln:
        r = ln.command_auth(P.C_REPROVISION, {"confirm": "reprovision"}, args.keystore)
    print("configuration re-provisioned (was %s): phase %s; set the limits again with "
          "`oimon config set`" % (r.get("was"), r.get("phase")))
    return 0


def parse_assignments(items):
    """KEY=VALUE strings -> {key: value} in physical units, every value range-checked."""
    out = {}
    for item in items:
        if "=" not in item:
            raise OimonError("%r: give KEY=VALUE (keys: %s)" % (item, ", ".join(_keys())))
        k, v = item.split("=", 1)
        k = ALIASES.get(k.strip().lower(), k.strip().lower())
        v = v.strip()
        if k in out:
            raise OimonError("%s is given twice" % k)
        if k in RANGES:
            what, unit, lo, hi, _ = RANGES[k]
            try:
                x = float(v)
            except ValueError:
                raise OimonError("%s=%r is not a number" % (k, v))
            if not lo <= x <= hi:   # also rejects nan
                raise OimonError("%s %g %s is outside %g..%g %s" % (what, x, unit, lo, hi, unit))
            out[k] = x
        elif k == "phase":
            m = {p.lower(): p for p in PHASES}
            if v.lower() not in m:
                raise OimonError("phase %r: choose one of %s" % (v, ", ".join(PHASES)))
            out[k] = m[v.lower()]
        elif k == "patient":
            if not PSEUDONYM.match(v):
                raise OimonError("patient pseudonym %r: 1-32 letters, digits, '_', '-', '.' "
                                 "(a pseudonym, never a name)" % v)
            out[k] = v
        else:
            raise OimonError("unknown key %r (keys: %s)" % (k, ", ".join(_keys())))
    return out


def _keys():
    return list(RANGES) + ["phase", "patient"]


def device_changes(values, current_phase):
    """The C_SET arguments in device units (docs/host.md): phase, body_weight_kg, patient, and
    limits {phase: {comp, tens, moment}} (0.1 N, 0.1 N, 0.01 N*m)."""
    ch = {}
    if "phase" in values:
        ch["phase"] = values["phase"]
    if "body_weight" in values:
        ch["body_weight_kg"] = values["body_weight"]
    if "patient" in values:
        ch["patient"] = values["patient"]
    lim = {k: int(round(values[k] * RANGES[k][4])) for k in ("comp", "tens", "moment") if k in values}
    if lim:
        ch["limits"] = {values.get("phase", current_phase): lim}
    return ch


def auth_command(ln, args, cmd, payload, con=None):
    """An authenticated (prosthetist) command: HMAC over device id, counter and command with the
    device's key from the host keystore (global --keystore, $OIMON_KEYSTORE or the default).
    Journaled in the database first (db.device_change: config_change row 'sent', then
    'accepted'), so a change the device accepted is never missing from the database."""
    from oimon import keystore as K
    ks = K.open(args.keystore)               # a bad keystore fails before anything is written
    if con is None:
        con = db.connect(getattr(args, "db", None))
    info = ln.command(P.C_INFO)
    dev = info.get("device_id")
    if not isinstance(dev, str):
        raise OimonError("the device did not report its id")
    name = P.CMD_NAMES.get(cmd, str(cmd))
    with db.device_change(con, dev, name, payload):
        return ln.command_auth(cmd, payload, ks)


def _limits_phys(lim):
    return {"comp_N": lim.get("comp", 0) / 10.0, "tens_N": lim.get("tens", 0) / 10.0,
            "moment_Nm": lim.get("moment", 0) / 100.0}


def cmd_show(args):
    with link.Link(link.resolve_port(args.port)) as ln:
        info = ln.command(P.C_INFO)
        cfg = ln.command(P.C_CONFIG)
    if args.json:
        print(json.dumps({"device_id": info.get("device_id"), "config": cfg}, indent=2, sort_keys=True))
        return 0
    phase = cfg.get("phase", info.get("phase"))
    print("device        %s" % info.get("device_id"))
    print("rehab phase   %s" % phase)
    print("body weight   %s kg" % cfg.get("body_weight_kg"))
    print("patient       %s" % (cfg.get("patient") or "(no pseudonym set)"))
    print("limits        phase  compression   tension   bending moment")
    for ph in PHASES:
        lim = (cfg.get("limits") or {}).get(ph)
        if lim:
            p = _limits_phys(lim)
            print("              %-5s %8.0f N %8.0f N %10.1f N*m%s" % (
                ph, p["comp_N"], p["tens_N"], p["moment_Nm"], "   <- active" if ph == phase else ""))
    return 0


def _pseudonym(con, dev, name):
    with con:
        db.set_pseudonym(con, dev, name)


def cmd_set(args):
    values = parse_assignments(args.assignments)
    from oimon import keystore as K
    K.open(args.keystore)                    # checked before the database is touched
    con = db.connect(args.db)
    with link.Link(link.resolve_port(args.port)) as ln:
        info = ln.command(P.C_INFO)
        changes = device_changes(values, info.get("phase") or "full")
        auth_command(ln, args, P.C_SET, changes, con)     # the config_change row
        dev = info.get("device_id", "?")
        if "patient" in values:
            db.retry(lambda: _pseudonym(con, dev, values["patient"]))
        after = ln.command(P.C_INFO)
    lim = _limits_phys(after.get("limits") or {})
    print("%s: phase %s, limits %.0f N compression, %.0f N tension, %.1f N*m moment, body weight %s kg"
          % (dev, after.get("phase"), lim["comp_N"], lim["tens_N"], lim["moment_Nm"],
             after.get("body_weight_kg")))
    return 0
