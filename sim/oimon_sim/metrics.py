"""Score replayed events against the ground truth stored in a recording (docs/recording-format.md,
"Ground truth"): sensitivity per labelled event kind, false events per 24 h, detection latency.

Rules (docs/sim.md, "Metrics"):
- a truth entry with a non-empty `expect` is detected when an event whose kind matches one of
  them (equal, or starting with it and "_": "overload" matches "overload_comp") has its sample in
  [start, end + tolerance);
- latency: from the entry's reference sample (`impact` for falls, else `start`) to the first
  matching event, in ms (negative when the detector fired before the reference, e.g. during a
  fall's loading phase);
- an event is false unless it lies in [start, end + tolerance) of a truth entry that expects or
  allows its kind (`allow` "*" = any kind);
- false events per 24 h = false events / recorded hours x 24;
- closing records (overload_end, fault_clear) are not events of their own;
- falls (docs/sim.md "Falls"): every truth entry that expects a fall is also counted by its kind
  (`fall` with the prosthesis the impact point, `slide_down`, `fall_other`: the prosthesis not
  the impact point), its direction and severity, with which detector path caught it (load,
  imu); false falls are false events of kind fall, also per 24 h."""
import numpy as np

from oimon_sim import replay


def matches(kind, patterns):
    for p in patterns:
        if p == "*" or kind == p or kind.startswith(p + "_"):
            return True
    return False


CLOSING = ("_end", "_clear")     # closing records of an event already counted at its start


def evaluate(events, truth, rate, samples, tolerance_s=2.0, first=0):
    tol = int(round(tolerance_s * rate))
    ev = sorted((e for e in events if not str(e.get("kind", "")).endswith(CLOSING)),
                key=lambda e: e.get("sample", -1))
    samp = np.array([e.get("sample", -1) for e in ev], dtype=np.int64)
    kinds = [str(e.get("kind", "?")) for e in ev]
    by_label = {}
    falls = []
    used = np.zeros(len(ev), bool)
    for d in truth:
        lo, hi = d["start"], d["end"] + tol
        i0, i1 = np.searchsorted(samp, lo), np.searchsorted(samp, hi)
        exp, allow = d.get("expect") or [], d.get("allow") or []
        for i in range(i0, i1):
            if matches(kinds[i], exp) or matches(kinds[i], allow):
                used[i] = True
        if not exp:
            continue
        L = by_label.setdefault(d["label"], {"n": 0, "detected": 0, "latencies_ms": [],
                                             "expect": exp})
        L["n"] += 1
        hit = [i for i in range(i0, i1) if matches(kinds[i], exp)]
        if hit:
            L["detected"] += 1
            ref = d.get("impact", d.get("phases", {}).get("impact", d["start"]))
            L["latencies_ms"].append(round((samp[hit[0]] - ref) * 1000.0 / rate, 1))
        if "fall" in exp:
            falls.append({"kind": d["label"], "direction": d.get("direction", "?"),
                          "severity": d.get("severity", d.get("limb_bw", "-")),
                          "detected": bool(hit),
                          "path": ev[hit[0]].get("path", "load") if hit else None})
    false = [ev[i] for i in range(len(ev)) if not used[i]]
    return {"by_label": by_label, "false": false, "events": len(ev), "samples": samples,
            "rate": rate, "falls": falls}


def _rate(d):
    return {"n": d[0], "detected": d[1], "sensitivity": d[1] / d[0] if d[0] else None}


def fall_summary(falls, false, hours):
    """Fall sensitivity by kind, direction, kind x direction and severity; false falls."""
    tabs = {"by_kind": {}, "by_direction": {}, "by_kind_direction": {}, "by_severity": {},
            "by_path": {}}
    for f in falls:
        for tab, key in (("by_kind", f["kind"]), ("by_direction", f["direction"]),
                         ("by_kind_direction", "%s/%s" % (f["kind"], f["direction"])),
                         ("by_severity", "%s/%s" % (f["kind"], f["severity"]))):
            c = tabs[tab].setdefault(key, [0, 0])
            c[0] += 1
            c[1] += f["detected"]
        if f["detected"]:
            tabs["by_path"][f["path"]] = tabs["by_path"].get(f["path"], 0) + 1
    out = {k: ({kk: _rate(v) for kk, v in sorted(t.items())} if k != "by_path" else t)
           for k, t in tabs.items()}
    nf = sum(1 for e in false if e.get("kind") == "fall")
    out["n"] = len(falls)
    out["detected"] = sum(f["detected"] for f in falls)
    out["sensitivity"] = out["detected"] / len(falls) if falls else None
    out["false_falls"] = nf
    out["false_falls_per_24h"] = nf / hours * 24 if hours else None
    return out


def combine(parts):
    """Sum evaluations of several recordings into one report."""
    by, false, hours, nev = {}, [], 0.0, 0
    falls = []
    for p in parts:
        falls += p.get("falls", [])
        hours += p["samples"] / p["rate"] / 3600.0
        nev += p["events"]
        false += p["false"]
        for lab, L in p["by_label"].items():
            B = by.setdefault(lab, {"n": 0, "detected": 0, "latencies_ms": [], "expect": L["expect"]})
            B["n"] += L["n"]
            B["detected"] += L["detected"]
            B["latencies_ms"] += L["latencies_ms"]
    labels = {}
    for lab, B in sorted(by.items()):
        lat = B["latencies_ms"]
        labels[lab] = {"n": B["n"], "detected": B["detected"],
                       "sensitivity": B["detected"] / B["n"] if B["n"] else None,
                       "expect": B["expect"],
                       "latency_ms": {"median": float(np.median(lat)), "max": float(np.max(lat)),
                                      "min": float(np.min(lat))} if lat else None}
    fk = {}
    for e in false:
        fk[e.get("kind", "?")] = fk.get(e.get("kind", "?"), 0) + 1
    n_all = sum(B["n"] for B in by.values())
    det_all = sum(B["detected"] for B in by.values())
    return {"hours": hours, "events": nev, "labels": labels,
            "sensitivity": det_all / n_all if n_all else None,
            "false_events": len(false), "false_by_kind": fk,
            "false_per_24h": len(false) / hours * 24 if hours else None,
            "false_list": false[:50], "falls": fall_summary(falls, false, hours)}


def evaluate_files(paths, cfg=None, tolerance_s=2.0, progress=None, salvage=False):
    parts, errors, files = [], [], []
    for p in paths:
        res = replay.replay_file(p, cfg, progress=progress, salvage=salvage)
        ev = evaluate(res["events"], res["truth"], res["rate"], res["samples"], tolerance_s,
                      res["first"])
        parts.append(ev)
        errors += res["errors"]
        files.append({"path": str(p), "hours": res["samples"] / res["rate"] / 3600.0,
                      "events": len(res["events"]), "truth": len(res["truth"]),
                      "false": len(ev["false"])})
    out = combine(parts)
    out["files"] = files
    out["errors"] = errors
    out["tolerance_s"] = tolerance_s
    out["config"] = res["config"]["active_limits"] if paths else None
    return out


def format_report(m):
    lines = ["%d recording(s), %.2f h, %d events; limits %s" % (
        len(m["files"]), m["hours"], m["events"], m.get("config"))]
    lines.append("%-18s %5s %8s %11s %12s %12s" % ("label", "n", "detected", "sensitivity",
                                                  "latency med", "latency max"))
    for lab, L in m["labels"].items():
        lat = L["latency_ms"]
        lines.append("%-18s %5d %8d %11s %12s %12s" % (
            lab, L["n"], L["detected"], "%.2f" % L["sensitivity"],
            "%.0f ms" % lat["median"] if lat else "-", "%.0f ms" % lat["max"] if lat else "-"))
    if not m["labels"]:
        lines.append("  (no labelled events to detect in the ground truth)")
    fs = m.get("falls")
    if fs and fs["n"]:
        lines.append("falls: %d of %d detected (%s by path); false falls %d (%s per 24 h)" % (
            fs["detected"], fs["n"], ", ".join("%s %d" % kv for kv in sorted(fs["by_path"].items()))
            or "none", fs["false_falls"],
            "%.2f" % fs["false_falls_per_24h"] if fs["false_falls_per_24h"] is not None else "-"))
        for tab in ("by_kind", "by_direction", "by_kind_direction"):
            lines.append("  %-18s %s" % (tab.replace("by_", "by ").replace("_", " x "), "  ".join(
                "%s %d/%d" % (k, v["detected"], v["n"]) for k, v in fs[tab].items())))
    elif fs:
        lines.append("false falls: %d (%s per 24 h)" % (
            fs["false_falls"], "%.2f" % fs["false_falls_per_24h"]
            if fs["false_falls_per_24h"] is not None else "-"))
    lines.append("false events: %d (%s per 24 h)%s" % (
        m["false_events"], "%.1f" % m["false_per_24h"] if m["false_per_24h"] is not None else "-",
        "  " + ", ".join("%s %d" % kv for kv in sorted(m["false_by_kind"].items()))
        if m["false_by_kind"] else ""))
    return "\n".join(lines)
