"""Event records (firmware/events.py, device units) in words a prosthetist reads: one line per
event for `oimon events`, the HTML report and `oimon sim replay`."""
CHANNELS = ("axial", "moment AP", "moment ML")
WHICH = ((1, "compression"), (2, "tension"), (4, "bending"))


def _flags(f):
    """dsp flags (docs/algorithm.md 3): which bridge, which fault."""
    out = []
    for c, ch in enumerate(CHANNELS):
        kinds = [name for bit, name in ((1 << c, "saturated"), (8 << c, "at the rail: open bridge?"),
                                        (64 << c, "stuck")) if f & bit]
        if kinds:
            out.append("%s %s" % (ch, " and ".join(kinds)))
    return "; ".join(out) or "flags 0x%03x" % f


def describe(e):
    """One line for an event dict (the device's, the database's or replay's)."""
    kind = e.get("kind") or e.get("event")
    out = []
    if kind in ("overload_start", "overload_end"):
        which = [name for bit, name in WHICH if e.get("which", 0) & bit]
        if which:
            out.append("over the %s limit" % " and ".join(which))
        if "pk_ax" in e:
            out.append("peak axial %.0f N" % (e["pk_ax"] / 10.0))
        if e.get("min_ax", 0) < 0:
            out.append("tension %.0f N" % (-e["min_ax"] / 10.0))
        if "pk_m2" in e:
            out.append("peak bending %.1f N*m" % (e["pk_m2"] ** 0.5 / 100.0))
        if kind == "overload_end" and e.get("dur"):
            out.append("lasted %d ms" % e["dur"])
    elif kind == "fall":
        if "pk_ax" in e:
            out.append("impact %.0f N" % (e["pk_ax"] / 10.0))
        if "pk_rate" in e:
            out.append("at %.1f kN/s" % (e["pk_rate"] / 1000.0))
        if "pk_m2" in e:
            out.append("bending %.1f N*m" % (e["pk_m2"] ** 0.5 / 100.0))
        if e.get("rec_len"):
            out.append("leg loaded %d %% of the %.1f s after" % (
                100 * e.get("loaded", 0) // e["rec_len"], e["rec_len"] / 1000.0))
    elif kind in ("fault", "fault_clear"):
        out.append(_flags(e.get("flags", 0)))
        if kind == "fault_clear" and e.get("dur"):
            out.append("lasted %d ms" % e["dur"])
    elif kind == "exercise":
        out.append("exercise session, target %s kg" % e.get("target_kg", "?"))
    return ", ".join(out)
