"""Replay a recording through the bit-exact model of the firmware (replayer.py) and collect
the events it raises: what `oimon sim replay` prints and `oimon sim metrics` scores.

Streams: the recording is read in blocks of contiguous samples (Reader.blocks) and fed to the
model's streaming form (replayer.Replayer.stream: this thread reads, the model's dsp and detection
stages run in two more threads on the numba-compiled kernel), so a 24 h recording replays in
bounded memory (~360 MiB) in ~4-5 s on the 2-core bench machine (docs/benchmarks.md).

Input: raw recordings go to the model as they are, with the calibration in their header
(`calibration` offset + gain, or the inverse of their `sensor` model). Calibrated recordings
(`oimon import`, `oimon sim generate` without --raw) enter the model after its calibration stage
(load rate, filter, detection): their values are what calibration produces. round_trip=True
instead turns them into raw counts through the default simulated sensor, noise-free, and replays
those with its perfect calibration, as the virtual device is provisioned (at most 1 unit
different). Recordings made by `oimon record` hold the device's *filtered* output (axial at
0.2 N on the wire): replaying them filters a second time, a close but not exact reconstruction."""
import bisect

import numpy as np

from oimon.eventtext import describe
from oimon import recording
from oimon.errors import OimonError
from oimon_common import calib, limits as L, settings
from oimon_sim import progress as prog
from oimon_sim import replayer
from oimon_sim import sensor as _sensor
from oimon_sim.device import sensor_model_for

BLOCK_ROWS = 1 << 20


# --- configuration -------------------------------------------------------------------------
def firmware_defaults():
    """The settings a replay runs with unless told otherwise: the device's defaults
    (oimon_common.settings.DEFAULTS) for a device the prosthetist configured for full activity
    (phase "full"): the scenarios are walks, stairs and falls of a rehabilitated patient. A
    device nobody configured runs phase I (issue 12, docs/security.md); give phase=I for that."""
    d = settings.defaults()
    d["phase"] = "full"
    return d


def resolve_config(cfg=None, header=None):
    """The settings a replay runs with: firmware defaults, overridden by what the recording's
    header says the device had (phase, limits, body weight), overridden by cfg (--config: same
    keys as the device's config.json; "limits" may be the per-phase table or one phase's
    {"comp", "tens", "moment"}). As on the device (firmware/config.py), the limits in effect are
    limits.phase_limits(phase, body weight) with the prosthetist's values over them; "limits" in
    the result is that table for every phase, "active_limits" the current phase's."""
    out = firmware_defaults()
    header = header or {}
    for k in ("phase", "body_weight_kg"):
        if header.get(k) is not None:
            out[k] = header[k]
    over = {ph: dict(v) for ph, v in (out.get("limits") or {}).items()}
    hl = header.get("limits")
    if isinstance(hl, dict) and "comp" in hl:
        over[out["phase"]] = dict(over.get(out["phase"], {}), **hl)
    for k, v in (cfg or {}).items():
        if k == "limits" and isinstance(v, dict):
            if any(isinstance(x, dict) for x in v.values()):
                for ph, lim in v.items():
                    over[ph] = dict(over.get(ph, {}), **lim)
            else:
                ph = (cfg or {}).get("phase", out["phase"])
                over[ph] = dict(over.get(ph, {}), **v)
        else:
            out[k] = v
    if out["phase"] not in L.PHASES:
        raise OimonError("config: phase %r has no limits (phases: %s)" % (
            out["phase"], ", ".join(L.PHASES)))
    bw = body_weight_units(out)
    table = {}
    for i, ph in enumerate(L.PHASES):
        d = L.phase_limits(i, bw)
        table[ph] = dict({"comp": d[0], "tens": d[1], "moment": d[2]}, **over.get(ph, {}))
    out["limits"] = table
    for k, v in table[out["phase"]].items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise OimonError("config: limit %s=%r must be a positive number (device units)" % (k, v))
    out["active_limits"] = dict(table[out["phase"]])
    return out


def calibration_for(header):
    """(firmware Calibration, SensorModel) for a recording: raw recordings use their header's
    calibration; calibrated ones go through the default sensor and its perfect calibration."""
    model = _sensor.SensorModel(noise_counts=0)      # the round trip adds no noise of its own
    if header.get("kind") == "raw":
        c = header.get("calibration")
        if isinstance(c, dict) and "gain" in c and "offset" in c:
            gain, off = c["gain"], list(c["offset"])[:3]
        else:
            m = sensor_model_for(header)
            gain, off = m.gain_matrix().tolist(), m.offset[:3].tolist()
    else:
        gain, off = model.gain_matrix().tolist(), model.offset[:3].tolist()
    try:
        cal = calib.Calibration.from_gains(gain, [int(v) for v in off] + [0])
    except (ValueError, TypeError) as e:
        raise OimonError("recording's calibration is unusable: %s" % e)
    return cal, model


def _to_raw(block, model):
    """Calibrated (n, 3) device units -> raw (n, 4) counts through the sensor model."""
    return model.raw(block[:, :3])


# --- the model -------------------------------------------------------------------------------
def detector_limits(cfg, rate=1000):
    """[comp, tens, mom, debounce (samples), phase] as the device gives detect.Detector."""
    lim = cfg["active_limits"]
    deb = max(1, int(round(float(cfg.get("debounce_ms", 20)) * rate / 1000.0)))
    return [int(lim["comp"]), int(lim["tens"]), int(lim["moment"]), deb,
            L.PHASES.index(cfg["phase"]) if cfg.get("phase") in L.PHASES else -1]


def body_weight_units(cfg):
    """Body weight in 0.1 N (the detector's unit), as the device computes it."""
    return L.body_weight_0p1N(float(cfg.get("body_weight_kg") or 75))


def _event(e):
    """A model event in the recording's event form: kind, sample, the rest as it is."""
    d = {("kind" if k == "event" else "sample" if k == "n" else k):
         (v.item() if isinstance(v, np.generic) else v) for k, v in e.items()}
    return d


class _Stream:
    """replayer.Replayer behind one call: run(blocks) -> events, samples counted from 0."""

    def __init__(self, cfg, cal, rate, keep_filtered=False):
        m = replayer
        self.keep = keep_filtered
        self.filtered = []
        lim, bw = detector_limits(cfg, rate), body_weight_units(cfg)
        over = cfg.get("detector") or {}
        if not isinstance(over, dict):
            raise OimonError('config: "detector" is an object of detector settings')
        bad = sorted(set(over) - set(m.CFG))
        if bad:
            raise OimonError("config: unknown detector setting(s) %s (known: %s)" % (
                ", ".join(bad), ", ".join(sorted(m.CFG))))
        # detector settings (docs/algorithm.md 5.6, lower case) over the ones the device derives
        self.r = m.Replayer(cal, lim, bw, int(cfg.get("fc", 20)),
                            config=m.make_config(lim, bw, **over) if over else None)

    def run(self, blocks, calibrated):
        """Events of all blocks: (block, imu rows stamped in model samples, gap positions),
        block raw (n, 4), or calibrated (n, 3) device units that enter after the calibration
        stage (load rate, filter, detection), or an int n: n load samples not measured (an
        IMU-only recording). The load detector and the inertial path interleaved
        (docs/algorithm.md 5.7), through Replayer.stream (the dsp and detection stages on the
        two cores)."""
        events = []
        for y, evs in self.r.stream(blocks, calibrated):
            if self.keep:
                self.filtered.append(y)
            events += [_event(e) for e in evs]
        return events


def replay_file(path, cfg=None, progress=None, keep_filtered=False, salvage=False,
                round_trip=False):
    """Replay a recording. Returns {"events": [...], "truth": [...], "samples", "rate", "header",
    "config", "errors", "gaps"}; event "sample" fields are the recording's sample indices."""
    with recording.Reader(path) as r:
        if r.kind == "raw" and r.nch != 4:
            raise OimonError("%s: a raw recording has 4 channels, this one %d" % (path, r.nch))
        if r.kind != "raw" and r.nch < 3:
            raise OimonError("%s: a calibrated recording has 3 channels, this one %d" % (path, r.nch))
        conf = resolve_config(cfg, r.header)
        cal, smodel = calibration_for(r.header)
        rate = float(r.rate)
        st = _Stream(conf, cal, rate, keep_filtered)
        expected = r.header.get("duration_s")
        total = expected * rate if expected else max(1, (r.size - r.body_offset) // (4 * r.nch + 0.3))
        bar = prog.Progress(total / rate, "replay", " s", enabled=progress)
        starts, firsts = [], []           # model position -> recording index, per block
        state = {"gaps": 0, "n": 0, "last": None, "gap_list": [], "imu": np.zeros((0, 8), np.int64)}
        load_missing = r.header.get("load") == "missing"

        def take_imu(first, m):
            # IMU rows stamped in this block's recording indices [.., first + m) -> model samples
            if r.imu_pending:
                state["imu"] = np.concatenate([state["imu"]] + [np.asarray(a, np.int64)
                                                               for a in r.imu_pending])
                del r.imu_pending[:]
            rows = state["imu"]
            k = int(np.searchsorted(rows[:, 0], first + m)) if len(rows) else 0
            now, state["imu"] = rows[:k].copy(), rows[k:]
            if len(now):
                now[:, 0] = np.maximum(now[:, 0] - first, 0) + state["n"]
            return now

        def blocks():
            if load_missing:             # IMU only: the load was not measured
                for _ in r.blocks(BLOCK_ROWS, imu=True):
                    pass
                rows = np.concatenate([np.asarray(a, np.int64) for a in r.imu_pending]) \
                    if r.imu_pending else np.zeros((0, 8), np.int64)
                n = int(rows[-1, 0]) + 1 if len(rows) else 0
                starts.append(0)
                firsts.append(0)
                state["n"] = n
                yield n, rows, None
                return
            for first, block in r.blocks(replayer.SEGMENT, imu=True):
                gaps = None
                if state["last"] is not None and first != state["last"]:
                    state["gaps"] += 1
                    state["gap_list"].append((state["last"], first - state["last"]))
                    gaps = [0]               # FL_GAP on the first sample after the lost ones
                rows = take_imu(first, len(block))
                starts.append(state["n"])
                firsts.append(first)
                state["n"] += len(block)
                state["last"] = first + len(block)
                bar.update(state["n"] / rate)
                yield (_to_raw(block, smodel) if (r.kind != "raw" and round_trip) else block,
                       rows, gaps)

        with bar:
            events = st.run(blocks(), calibrated=(r.kind != "raw" and not round_trip))
        gaps, n = state["gaps"], state["n"]
        truth = [e for e in r.events_seen if recording.is_truth(e)]
        device_events = [e for e in r.events_seen if not recording.is_truth(e)]
        errors = [str(e) for e in r.errors]
    out = []
    for e in events:
        e = dict(e)
        s = e.get("sample")
        if isinstance(s, (int, np.integer)) and starts:
            k = bisect.bisect_right(starts, int(s)) - 1
            e["sample"] = int(firsts[max(k, 0)] + int(s) - starts[max(k, 0)])
            e["t_s"] = round((e["sample"] - (firsts[0] if firsts else 0)) / rate, 3)
        out.append({k: (v.item() if isinstance(v, np.generic) else v) for k, v in e.items()})
    if errors and not salvage:
        raise OimonError("%s (--salvage replays the good part)" % errors[0])
    res = {"path": str(path), "events": out, "truth": truth, "device_events": device_events,
           "samples": n, "rate": rate, "header": r.header, "config": conf, "errors": errors,
           "gaps": gaps, "first": firsts[0] if firsts else 0,
           "gap_list": state["gap_list"],                 # (first missing sample, n) per gap
           "gap_samples": sum(n for _f, n in state["gap_list"])}
    if keep_filtered:
        res["filtered"] = np.concatenate(st.filtered) if st.filtered else None
    return res


def _hms(t):
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    return "%02d:%02d:%06.3f" % (h, m, s)


def format_events(res):
    lim = res["config"]["active_limits"]
    lines = ["%s: %.1f s, %d samples at %g Hz; phase %s (comp %.0f N, tens %.0f N, moment %.0f N*m);"
             " %d events" % (res["path"], res["samples"] / res["rate"], res["samples"], res["rate"],
                             res["config"]["phase"], lim.get("comp", 0) / 10, lim.get("tens", 0) / 10,
                             lim.get("moment", 0) / 100, len(res["events"]))]
    for e in res["events"]:
        lines.append("  %s  sample %-10s %-15s %s" % (_hms(e.get("t_s", 0)), e.get("sample", "?"),
                                                     e.get("kind", "?"), describe(e)))
    if not res["events"]:
        lines.append("  no events")
    gl = res.get("gap_list") or []
    if gl:      # samples missing from the recording (T_GAP / counter jumps): not replayed
        lines.append("  %d gaps, %d samples missing: %s" % (len(gl), sum(n for _f, n in gl), ", ".join(
            "sample %d (+%d)" % (f, n) for f, n in gl[:10]) + (" ..." if len(gl) > 10 else "")))
    return "\n".join(lines)
