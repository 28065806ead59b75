"""Provisioning of the virtual device's storage: the calibration a perfect jig would give for
the simulated sensor (so the device reports the scenario's loads), and raw input from recordings."""
import hashlib
import hmac
import json
import os
import struct
from pathlib import Path
from zlib import crc32

import numpy as np

from oimon import recording
from oimon_common import calib
from oimon_common import settings as S
from oimon.errors import OimonError


def provision(storage, model):
    """Write calib.bin for the sensor model into the device's storage folder, unless it holds
    one already (a device calibrated with `oimon calibrate` keeps its calibration)."""
    if (Path(storage) / "calib.bin").exists():
        return calib.load(str(Path(storage) / "calib.bin"))
    cal = calib.Calibration.from_gains(model.gain_matrix().tolist(),
                                       [int(v) for v in model.offset[:3]] + [0])   # AIN3: excitation sense
    calib.save(str(Path(storage) / "calib.bin"), cal)
    return cal


def raw_from_recording(path, model):
    header, _idx, samples, _ev, err = recording.load(path)
    if not len(samples):
        raise OimonError("%s: no samples%s" % (path, " (%s)" % err if err else ""))
    if header.get("kind") == "raw":
        return samples.astype(np.int32)
    return model.raw(samples[:, :3])


def configure(storage, settings, key=None):
    """Provision the virtual device's storage as the clinic would (the same bytes firmware/
    auth.py and firmware/config.py write): the security store (auth.a: counter 0, the key's pin
    if a key is given, a config secret) and config.json with its CRC-32 and HMAC. A config.json
    with a CRC only is "tampered" on the device (phase I). Returns the settings stored."""
    storage = Path(storage)
    storage.mkdir(parents=True, exist_ok=True)
    secret = os.urandom(16)
    flags = 2                                       # F_CONFIG
    pin = bytes(32)
    if key is not None:
        (storage / "key.bin").write_bytes(bytes(key))
        pin = hashlib.sha256(bytes(key)).digest()
        flags |= 1                                  # F_PINNED
    payload = struct.pack("<IHB32s16s", 0, 1 if key is not None else 0, flags, pin, secret)
    body = b"OS1" + struct.pack("<IH", 1, len(payload)) + payload
    (storage / "auth.a").write_bytes(body + struct.pack("<I", crc32(body) & 0xFFFFFFFF))
    data = S.defaults()
    data.update(settings)
    cb = json.dumps(data).encode()
    tag = hmac.new(secret, b"oimon-cfg1" + cb, hashlib.sha256).hexdigest().encode()
    (storage / "config.json").write_bytes(cb + b"\n%08x\n" % (crc32(cb) & 0xFFFFFFFF) + tag + b"\n")
    return data
