# Device configuration: limits, rehab phase, patient profile, retightening.
# Stored as JSON followed by a line with its CRC-32 (hex) and a line with its MAC (HMAC-SHA256
# with the security store's config secret, auth.py); written to a temporary file and renamed,
# so a power cut leaves either the old or the new file.
#
# Fail safe, never fail open (docs/security.md): a missing, corrupt or unauthenticated file gives
# the STRICTEST limits (phase I, settings.FAILSAFE) and cfg.state says why:
#   "ok"        the prosthetist's configuration, CRC and MAC right
#   "default"   never configured (a new device): phase I, technical alarm "not configured"
#   "lost"      missing although one was stored before (the security store remembers)
#   "corrupt"   CRC wrong, truncated, not JSON, a value outside its range
#   "tampered"  CRC right but MAC wrong/missing (written by something without the secret)
# lost/corrupt/tampered: technical alarm, and signed commands other than C_REPROVISION and
# C_MAINT are refused until the prosthetist re-provisions (cmds.py).
# update() changes the RAM state only after the file was written and read back.
import json
from binascii import crc32, hexlify
import hal
from oimon_common.limits import PHASES, body_weight_0p1N
from oimon_common import settings as S
import auth

DEFAULTS = S.DEFAULTS
PRIVATE = S.PRIVATE
BAD_STATES = ("lost", "corrupt", "tampered")

PATH = hal.STORAGE + "/config.json"


class Config:
    def __init__(self, data, state, path=PATH):
        self.data = data
        self.state = state
        self.path = path
        self.save_fails = 0

    def __getitem__(self, k):
        return self.data[k]

    def get(self, k, default=None):
        return self.data.get(k, default)

    def usable(self):
        """False while a lost/corrupt/tampered configuration waits for re-provisioning."""
        return self.state not in BAD_STATES

    def data_public(self):
        d = {k: self.data[k] for k in self.data if k not in PRIVATE}
        d["limits"] = {ph: self.limits(ph) for ph in PHASES}      # in effect, per phase
        d["limits_set"] = self.data["limits"]                      # what the prosthetist set
        d["config_state"] = self.state
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
        """Store the changed settings; RAM changes only when the file is written and verified.
        Returns True, or False (nothing changed: the caller answers 'device error')."""
        new = S.copy(self.data)
        for k in changes:
            new[k] = changes[k]
        if not _write(new, self.path):
            self.save_fails += 1
            return False
        self.data = new
        self.state = "ok"
        auth.get().mark_configured()
        return True


def failsafe():
    """The strictest settings: phase I (settings.FAILSAFE)."""
    return S.failsafe()


def _parse(raw, a):
    """(data, state) of the file's bytes."""
    lines = raw.rstrip(b"\n").split(b"\n")
    if len(lines) < 2:
        return None, "corrupt"
    if len(lines) == 2:
        body, crc, tag = lines[0], lines[1], None
    elif len(lines) == 3:
        body, crc, tag = lines
    else:
        return None, "corrupt"
    try:
        if int(crc, 16) != crc32(body) & 0xFFFFFFFF:
            return None, "corrupt"
        stored = json.loads(body)
    except (ValueError, TypeError, IndexError):
        return None, "corrupt"
    if not isinstance(stored, dict):
        return None, "corrupt"
    want = a.config_tag(body)
    if want is None or tag is None or not auth.equal(hexlify(want), tag):
        return None, "tampered"
    e = S.check_stored(stored)
    if e:
        return None, "corrupt"
    data = S.defaults()
    for k in stored:
        data[k] = stored[k]
    return data, "ok"


def load(path=PATH):
    a = auth.get()
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return Config(failsafe(), "lost" if a.configured() else "default", path)
    data, state = _parse(raw, a)
    if data is None:
        return Config(failsafe(), state, path)
    return Config(data, state, path)


def _write(data, path):
    a = auth.get()
    body = json.dumps(data).encode()
    tag = a.config_tag(body)
    if tag is None:
        return False                        # no security store: nothing could verify it
    tmp = path + ".tmp"
    rec = body + b"\n%08x\n" % (crc32(body) & 0xFFFFFFFF) + hexlify(tag) + b"\n"
    import os
    try:
        with open(tmp, "wb") as f:
            n = f.write(rec)
        if n is not None and n != len(rec):
            raise OSError(28)
        with open(tmp, "rb") as f:
            if f.read() != rec:
                raise OSError(5)
        os.rename(tmp, path)
    except OSError:
        try:
            os.remove(tmp)
        except OSError:
            pass
        return False
    return True


def save(cfg, path=None):
    """Write cfg as it is (True/False); used after a re-provisioning."""
    ok = _write(cfg.data, path or cfg.path)
    if ok:
        cfg.state = "ok"
        auth.get().mark_configured()
    return ok
