# Device configuration: limits, rehab phase, patient profile, retightening, security counter.
# Stored as JSON followed by a line with its CRC-32 (hex); written to a temporary file and renamed,
# so a power cut leaves either the old or the new file. A missing or corrupt file gives the
# defaults and `cfg.state = "default"` (or "corrupt"), which `info` reports to the host.
import json
from binascii import crc32
import hal
from limits import PHASES, phase_limits, body_weight_0p1N

# Limits per rehab phase: axial compression / tension in 0.1 N, resultant bending moment in
# 0.01 N*m. The defaults are limits.phase_limits() (docs/algorithm.md 5.3); "limits" holds only
# what the prosthetist set: {phase: {"comp"|"tens"|"moment": value}}.
DEFAULTS = {
    "phase": "full",
    "body_weight_kg": 75,
    "patient": "",
    "limits": {},
    "debounce_ms": 20,
    "retighten_last": "",            # YYYY-MM-DD of the last retightening, "" = never recorded
    "retighten_torque_nm": 0,
    "retighten_interval_months": 3,
    "stream_batch": 50,
    "auth_counter": 0,               # last accepted counter of an authenticated command
    "exercise_plan": None,           # the prosthetist's exercise plan (C_PLAN; exercise.py)
}
PRIVATE = ("auth_counter",)          # not in C_CONFIG's answer (info reports the counter)

PATH = hal.STORAGE + "/config.json"


def _copy(d):
    return json.loads(json.dumps(d))


class Config:
    def __init__(self, data, state):
        self.data = data
        self.state = state       # "ok", "default" (no file) or "corrupt"

    def __getitem__(self, k):
        return self.data[k]

    def get(self, k, default=None):
        return self.data.get(k, default)

    def data_public(self):
        d = {k: self.data[k] for k in self.data if k not in PRIVATE}
        d["limits"] = {ph: self.limits(ph) for ph in PHASES}      # in effect, per phase
        d["limits_set"] = self.data["limits"]                      # what the prosthetist set
        return d

    def limits(self, phase=None):
        """{"comp", "tens", "moment"} in effect for a phase (default: the current one): the
        prosthetist's values over the phase's defaults for this body weight."""
        phase = phase or self.data["phase"]
        d = phase_limits(PHASES.index(phase), self.body_weight_0p1N())
        lim = {"comp": d[0], "tens": d[1], "moment": d[2]}
        lim.update(self.data["limits"].get(phase, {}))
        return lim

    def detector_limits(self, rate):
        """[comp, tens, mom, debounce samples, phase index] for detect.Detector.set_limits."""
        lim = self.limits()
        return [lim["comp"], lim["tens"], lim["moment"],
                max(1, self.data["debounce_ms"] * rate // 1000), PHASES.index(self.data["phase"])]

    def body_weight_0p1N(self):
        """Body weight as a force in 0.1 N, for detect.Detector."""
        return body_weight_0p1N(self.data["body_weight_kg"])

    def update(self, changes):
        for k in changes:
            self.data[k] = changes[k]
        save(self)


def load(path=PATH):
    data = _copy(DEFAULTS)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return Config(data, "default")
    try:
        body, tail = raw.rstrip(b"\n").rsplit(b"\n", 1)
        if int(tail, 16) != crc32(body) & 0xFFFFFFFF:
            raise ValueError("crc")
        stored = json.loads(body)
    except (ValueError, TypeError, IndexError):
        return Config(data, "corrupt")
    for k in stored:
        data[k] = stored[k]
    return Config(data, "ok")


def save(cfg, path=PATH):
    body = json.dumps(cfg.data).encode()
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(body)
        f.write(b"\n%08x\n" % (crc32(body) & 0xFFFFFFFF))
    import os
    os.rename(tmp, path)
    cfg.state = "ok"
