# Device configuration: limits, rehab phase, patient profile, retightening, security counter.
# Stored as JSON followed by a line with its CRC-32 (hex); written to a temporary file and renamed,
# so a power cut leaves either the old or the new file. A missing or corrupt file gives the
# defaults and `cfg.state = "default"` (or "corrupt"), which `info` reports to the host.
import json
from binascii import crc32
import hal
from oimon_common.limits import PHASES, body_weight_0p1N
from oimon_common import settings as S

# Defaults, ranges and the limits in effect: oimon_common/settings.py (shared with the host).
DEFAULTS = S.DEFAULTS
PRIVATE = S.PRIVATE

PATH = hal.STORAGE + "/config.json"


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
        """{"comp", "tens", "moment"} in effect for a phase (default: the current one)."""
        return S.limits_in_effect(self.data, phase)

    def detector_limits(self, rate):
        """[comp, tens, mom, debounce samples, phase index] for detect.Detector.set_limits."""
        return S.detector_limits(self.data, rate)

    def body_weight_0p1N(self):
        """Body weight as a force in 0.1 N, for detect.Detector."""
        return body_weight_0p1N(self.data["body_weight_kg"])

    def update(self, changes):
        for k in changes:
            self.data[k] = changes[k]
        save(self)


def load(path=PATH):
    data = S.defaults()
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
