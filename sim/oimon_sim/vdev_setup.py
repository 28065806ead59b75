"""Provisioning of the virtual device's storage: the calibration a perfect jig would give for
the simulated sensor (so the device reports the scenario's loads), and raw input from recordings."""
import numpy as np

from oimon import recording
from oimon.errors import OimonError


def provision(storage, model):
    """Write calib.bin for the sensor model into the device's storage folder."""
    try:
        from oimon_fw import calib
    except ImportError:
        return None
    if not hasattr(calib, "from_float"):
        return None
    cal = calib.from_float(model.offset[:3].tolist(), model.gain_matrix().tolist())
    calib.save(str(storage / "calib.bin"), cal)
    return cal


def raw_from_recording(path, model):
    header, _idx, samples, _ev, err = recording.load(path)
    if not len(samples):
        raise OimonError("%s: no samples%s" % (path, " (%s)" % err if err else ""))
    if header.get("kind") == "raw":
        return samples.astype(np.int32)
    return model.raw(samples[:, :3])
