# Device configuration: limits, rehab phase, patient profile, retightening, security counter.
# Stored as JSON followed by a line with its CRC-32 (hex); written to a temporary file and renamed,
# so a power cut leaves either the old or the new file. A missing or corrupt file gives the
# defaults and `cfg.state = "default"` (or "corrupt"), which `info` reports to the host.
import json
from binascii import crc32
import hal

PHASES = ("I", "II", "III", "full")

# Limits per rehab phase: axial compression / tension in 0.1 N, resultant bending moment in
# 0.01 N*m. Defaults and their sources: docs/algorithm.md ("Default limits").
DEFAULTS = {
    "phase": "full",
    "body_weight_kg": 75,
    "patient": "",
    "limits": {
        "I": {"comp": 5000, "tens": 1000, "moment": 1500},
        "II": {"comp": 9000, "tens": 1500, "moment": 3000},
        "III": {"comp": 12000, "tens": 2000, "moment": 5000},
        "full": {"comp": 16000, "tens": 3000, "moment": 7000},
    },
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
        return {k: self.data[k] for k in self.data if k not in PRIVATE}

    def limits(self):
        return self.data["limits"][self.data["phase"]]

    def detector_limits(self, rate):
        """[comp, tens, mom, debounce samples, phase index] for detect.Detector.set_limits."""
        lim = self.limits()
        return [lim["comp"], lim["tens"], lim["moment"],
                max(1, self.data["debounce_ms"] * rate // 1000), PHASES.index(self.data["phase"])]

    def body_weight_0p1N(self):
        """Body weight as a force in 0.1 N (g = 9.80665 m/s^2), for detect.Detector."""
        return int(self.data["body_weight_kg"] * 98.0665 + 0.5)

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
