"""`oimon sim sweep`: replay recordings with one threshold varied, tabulate sensitivity and false
events per 24 h for each value (CSV), and draw them ROC-style (PNG, matplotlib Agg) so an
engineer can pick a limit: each point is one threshold value, x = false events per 24 h,
y = sensitivity (overall and per labelled kind)."""
import csv
import os

import numpy as np

from oimon.errors import OimonError
from oimon_sim import metrics

LIMIT_KEYS = ("comp", "tens", "moment")


def parse_values(s):
    try:
        if ":" in s:
            a, b, st = (float(x) for x in s.split(":"))
            if st <= 0 or b < a:
                raise ValueError
            vals = list(np.arange(a, b + st / 2, st))
        else:
            vals = [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise OimonError("--values wants v1,v2,... or START:STOP:STEP, got %r" % s)
    if not vals or len(vals) > 200:
        raise OimonError("--values: 1 to 200 values")
    return [int(v) if float(v).is_integer() else v for v in vals]


def config_with(base, param, value):
    cfg = dict(base or {})
    if param in LIMIT_KEYS:
        lim = dict(cfg.get("limits") or {})
        if any(isinstance(x, dict) for x in lim.values()):
            raise OimonError("sweep: give the base config's limits for one phase, not per phase")
        lim[param] = value
        cfg["limits"] = lim
    elif param.startswith("detector."):          # a detector setting, e.g. detector.f_impact
        det = dict(cfg.get("detector") or {})
        det[param.split(".", 1)[1]] = value
        cfg["detector"] = det
    else:
        cfg[param] = value
    return cfg


def run(paths, param, values, base=None, tolerance_s=2.0, progress=None, salvage=False):
    rows = []
    for v in values:
        m = metrics.evaluate_files(paths, config_with(base, param, v), tolerance_s, progress,
                                   salvage)
        row = {"param": param, "value": v, "sensitivity": m["sensitivity"],
               "false_events": m["false_events"], "false_per_24h": m["false_per_24h"],
               "hours": m["hours"]}
        for lab, L in m["labels"].items():
            row["sens_" + lab] = L["sensitivity"]
            row["lat_ms_" + lab] = L["latency_ms"]["median"] if L["latency_ms"] else None
        rows.append(row)
    return rows


def _columns(rows):
    cols = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


def write_csv(path, rows):
    tmp = str(path) + ".part"
    try:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, _columns(rows))
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    except OSError as e:
        raise OimonError("%s: cannot write (%s)" % (path, e.strerror))
    os.replace(tmp, path)


def physical(param):
    """(scale, unit) turning the swept parameter's device units into what a reader knows:
    forces 0.1 N -> N, moments 0.01 N*m -> N*m, load rates -> kN/s, times ms."""
    name = param.split(".")[-1]
    if name in ("comp", "tens") or name.startswith(("f_", "step_off")):
        return 0.1, "N"
    if name == "moment" or name.startswith("m_"):
        return 0.01, "N*m"
    if name.startswith("r_"):
        return 0.001, "kN/s"
    if name.startswith("t_"):
        return 1.0, "ms"
    if name.endswith("_pct"):
        return 1.0, "%"
    return 1.0, "device units"


def plot(path, rows, param):
    # lazy: matplotlib (also imported by oimon.plots) costs ~0.5 s; only --png needs it
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from oimon.plots import save_png
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5))
    x = [max(0.0, r["false_per_24h"] or 0) for r in rows]
    scale, unit = physical(param)
    v = [r["value"] * scale for r in rows]
    labs = [k[5:] for k in _columns(rows) if k.startswith("sens_")]
    ax.plot(x, [r["sensitivity"] or 0 for r in rows], "o-", color="k", lw=2, label="all labelled")
    for r, xx in zip(rows, x):
        ax.annotate("%g" % round(r["value"] * scale, 3), (xx, r["sensitivity"] or 0), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))
    for k, lab in enumerate(labs):
        ys = [r.get("sens_" + lab) if r.get("sens_" + lab) is not None else np.nan for r in rows]
        ax.plot(x, ys, ".--", color="C%d" % k, label=lab)
        bx.plot(v, ys, ".--", color="C%d" % k, label=lab)
    bx.plot(v, [r["sensitivity"] or 0 for r in rows], "o-", color="k", lw=2, label="all labelled")
    ax.set_xlabel("false events per 24 h")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC-style (point labels = %s in %s)" % (param, unit))
    bx.set_xlabel("%s (%s)" % (param, unit))
    bx.set_ylabel("sensitivity")
    bx.set_title("against the threshold; red: false events per 24 h")
    fx = bx.twinx()
    fx.plot(v, x, "s-", color="r", lw=1.5)
    fx.set_ylabel("false events per 24 h", color="r")
    fx.set_ylim(0, max(x + [1.0]) * 1.08)        # a count: never below zero
    ax.set_xlim(0, max(x + [1.0]) * 1.08)
    for a_ in (ax, bx):
        a_.set_ylim(-0.03, 1.03)
        a_.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=110)


def format_table(rows):
    cols = [c for c in _columns(rows) if c not in ("param", "hours")]
    out = ["  ".join("%-14s" % c[:14] for c in cols)]
    for r in rows:
        out.append("  ".join("%-14s" % ("-" if r.get(c) is None else
                                        ("%.3f" % r[c] if isinstance(r[c], float) else r[c]))
                             for c in cols))
    return "\n".join(out)
