"""Replay a recording through the bit-exact numpy model of the firmware (model.py) and collect
the events it raises: what `oimon sim replay` prints and `oimon sim metrics` scores.

Streams: the recording is read in blocks of contiguous samples (Reader.blocks) and fed to the
model's streaming form (model.Replayer), so a 24 h recording replays in bounded memory.

Input: raw recordings go to the model as they are, with the calibration in their header
(`calibration` offset + gain, or the inverse of their `sensor` model). Calibrated recordings
(`oimon record`, `oimon import`, `oimon sim generate` without --raw) are turned into raw counts
through the default simulated sensor (sensor.SensorModel) and replayed with that sensor's
perfect calibration, exactly as the virtual device is provisioned; the round trip changes a
calibrated value by at most 1 unit (0.1 N / 0.01 N*m)."""
import bisect
import inspect
import sys
import types

import numpy as np

from oimon import recording
from oimon.errors import OimonError
from oimon_sim import sensor as _sensor

BLOCK_ROWS = 1 << 20


# --- configuration -------------------------------------------------------------------------
def firmware_defaults():
    """firmware/config.py's DEFAULTS (imported with a stand-in `hal`: CPython has none)."""
    had = sys.modules.get("hal")
    if had is None:
        sys.modules["hal"] = types.SimpleNamespace(STORAGE="/nonexistent")
    try:
        from oimon_fw import config
        return config._copy(config.DEFAULTS) if hasattr(config, "_copy") else dict(config.DEFAULTS)
    finally:
        if had is None:
            sys.modules.pop("hal", None)


def resolve_config(cfg=None, header=None):
    """The settings a replay runs with: firmware defaults, overridden by what the recording's
    header says the device had (phase, limits, body weight), overridden by cfg (--config: same
    keys as the device's config.json; "limits" may be the per-phase table or one phase's
    {"comp", "tens", "moment"})."""
    out = firmware_defaults()
    header = header or {}
    for k in ("phase", "body_weight_kg"):
        if header.get(k) is not None:
            out[k] = header[k]
    hl = header.get("limits")
    if isinstance(hl, dict) and "comp" in hl:
        out["limits"][out["phase"]] = dict(out["limits"][out["phase"]], **hl)
    for k, v in (cfg or {}).items():
        if k == "limits" and isinstance(v, dict):
            if any(isinstance(x, dict) for x in v.values()):
                for ph, lim in v.items():
                    out["limits"][ph] = dict(out["limits"].get(ph, {}), **lim)
            else:
                ph = (cfg or {}).get("phase", out["phase"])
                out["limits"][ph] = dict(out["limits"].get(ph, {}), **v)
        else:
            out[k] = v
    if out["phase"] not in out["limits"]:
        raise OimonError("config: phase %r has no limits (phases: %s)" % (
            out["phase"], ", ".join(out["limits"])))
    for k, v in out["limits"][out["phase"]].items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise OimonError("config: limit %s=%r must be a positive number (device units)" % (k, v))
    out["active_limits"] = dict(out["limits"][out["phase"]])
    return out


def calibration_for(header):
    """(firmware Calibration, SensorModel) for a recording: raw recordings use their header's
    calibration; calibrated ones go through the default sensor and its perfect calibration."""
    from oimon_fw import calib
    from oimon.cmd_sim import sensor_model_for
    model = _sensor.SensorModel()
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
def _model():
    try:
        from oimon_sim import model
    except ImportError as e:
        raise OimonError("the firmware's numpy model (sim/oimon_sim/model.py) is not available: %s" % e)
    if not hasattr(model, "Replayer") and not hasattr(model, "replay"):
        raise OimonError("sim/oimon_sim/model.py has neither Replayer nor replay() yet")
    return model


def _kwargs_for(fn, cfg, cal, rate):
    """Keyword arguments fn accepts, from what a replay knows."""
    have = {"cal": cal, "calibration": cal, "limits": cfg["active_limits"], "config": cfg,
            "cfg": cfg, "body_weight_kg": cfg.get("body_weight_kg"), "rate": rate,
            "debounce_ms": cfg.get("debounce_ms"), "phase": cfg.get("phase"),
            "fc": cfg.get("fc", cfg.get("filter_hz"))}
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {"cal": cal, "limits": cfg["active_limits"]}
    out = {}
    for name, p in params.items():
        if name in have and have[name] is not None:
            out[name] = have[name]
        elif p.kind is p.VAR_KEYWORD:
            pass
    return out


class _Stream:
    """One interface over the model: feed(raw block) -> events with block-relative samples."""

    def __init__(self, cfg, cal, rate, keep_filtered=False):
        m = _model()
        self.keep = keep_filtered
        self.filtered = []
        if hasattr(m, "Replayer"):
            self.r = m.Replayer(**_kwargs_for(m.Replayer, cfg, cal, rate))
            self.whole = False
        else:
            self.whole = True
            self.fn = m.replay
            self.kw = _kwargs_for(m.replay, cfg, cal, rate)
            self.buf = []
        self.pos = 0

    @staticmethod
    def _split(res):
        if isinstance(res, tuple) and len(res) == 2:
            return res
        return None, res

    def feed(self, raw):
        if self.whole:
            self.buf.append(raw)
            return []
        filt, evs = self._split(self.r.feed(raw))
        if self.keep and filt is not None:
            self.filtered.append(np.asarray(filt))
        self.pos += len(raw)
        return list(evs or [])

    def finish(self):
        if self.whole:
            raw = np.concatenate(self.buf) if self.buf else np.zeros((0, 4), np.int32)
            filt, evs = self._split(self.fn(raw, **self.kw))
            if self.keep and filt is not None:
                self.filtered.append(np.asarray(filt))
            return list(evs or [])
        if hasattr(self.r, "finish"):
            res = self.r.finish()
            if res is not None:
                return list(self._split(res)[1] or [])
        return []


def replay_file(path, cfg=None, progress=None, keep_filtered=False, salvage=True):
    """Replay a recording. Returns {"events": [...], "truth": [...], "samples", "rate", "header",
    "config", "errors", "gaps"}; event "sample" fields are the recording's sample indices."""
    from oimon_sim import progress as prog
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
        events, gaps, n, last = [], 0, 0, None
        with bar:
            for first, block in r.blocks(getattr(_model(), "SEGMENT", BLOCK_ROWS)):
                if last is not None and first != last:
                    gaps += 1
                starts.append(st.pos if not st.whole else n)
                firsts.append(first)
                raw = block if r.kind == "raw" else _to_raw(block, smodel)
                for e in st.feed(raw):
                    events.append(e)
                n += len(block)
                last = first + len(block)
                bar.update(n / rate)
            events += st.finish()
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
        raise OimonError(errors[0])
    res = {"path": str(path), "events": out, "truth": truth, "device_events": device_events,
           "samples": n, "rate": rate, "header": r.header, "config": conf, "errors": errors,
           "gaps": gaps, "first": firsts[0] if firsts else 0}
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
        rest = " ".join("%s=%s" % (k, e[k]) for k in sorted(e) if k not in ("kind", "sample", "t_s", "t"))
        lines.append("  %s  sample %-10s %-16s %s" % (_hms(e.get("t_s", 0)), e.get("sample", "?"),
                                                     e.get("kind", "?"), rest))
    if not res["events"]:
        lines.append("  no events")
    return "\n".join(lines)
