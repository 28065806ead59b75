"""Provisioning of the virtual device's storage: the calibration a perfect jig would give for
the simulated sensor (so the device reports the scenario's loads), and raw input from recordings."""
from pathlib import Path

import numpy as np

from oimon import recording
from oimon.errors import OimonError


def provision(storage, model):
    """Write calib.bin for the sensor model into the device's storage folder, unless it holds
    one already (a device calibrated with `oimon calibrate` keeps its calibration)."""
    from oimon_common import calib
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
