"""The firmware itself (firmware/dsp.py + detect.py) on the i386 MicroPython unix port over raw
data: the reference the bit-exact kernels (kernels.py, replayer.py) are compared with
(tests/test_algorithm.py, tests/test_replay.py). The MicroPython side is the script
sim/mpy/scripts/fw_replay.py."""
import os
import tempfile

import numpy as np

from oimon_common.events import ACT_FIELDS, event
from oimon_common.limits import phase_limits
from . import mp, paths
from .fw_tables import BW_DEFAULT, HIST_N, PHASE_FULL, ACT_HIST


def firmware_replay(raw, cal=None, limits=None, bw=BW_DEFAULT, fc=20, timeout=900, bits=32,
                    imu_rows=None, imu_batch=100):
    """Run firmware/dsp.py + detect.py on the MicroPython unix port over raw (n, 4); with
    imu_rows (m, 8) stamped in samples of raw, also firmware/imufall.py, the rows handed over in
    batches every imu_batch load samples as the device's main loop does (late, but each after
    the load sample it is stamped with). Returns (out (n, 8) int32, events list of dicts as
    replay() (inertial events where their batch was processed), activity dict)."""
    limits = phase_limits(PHASE_FULL, bw) if limits is None else list(limits)
    if len(limits) < 4:
        limits = list(limits) + [20]
    if len(limits) < 5:
        limits = list(limits) + [-1]
    with tempfile.TemporaryDirectory() as td:
        rp = os.path.join(td, "raw.bin")
        np.ascontiguousarray(raw, dtype="<i4").tofile(rp)
        cp = ""
        if cal is not None:
            cp = os.path.join(td, "cal.bin")
            with open(cp, "wb") as f:
                f.write(cal.pack())
        ip = ""
        if imu_rows is not None:
            ip = os.path.join(td, "imu.bin")
            np.ascontiguousarray(imu_rows, dtype="<i4").tofile(ip)
        op = os.path.join(td, "out.bin")
        ep = os.path.join(td, "events.txt")
        proc = mp.run(["-X", "heapsize=8M", str(paths.script("fw_replay"))], bits=bits, timeout=timeout,
                      OIMON_RAW=rp, OIMON_CAL=cp, OIMON_OUT=op, OIMON_EVENTS=ep,
                      OIMON_LIMITS=",".join(str(int(v)) for v in limits), OIMON_BW=bw,
                      OIMON_FC=fc, OIMON_IMU=ip, OIMON_IMU_BATCH=int(imu_batch))
        if proc.returncode != 0:
            raise RuntimeError("firmware replay failed:\n" + proc.stdout + proc.stderr)
        out = np.fromfile(op, "<i4").reshape(-1, 8)
        events, act = [], None
        with open(ep) as f:
            for line in f:
                parts = line.split()
                if parts[0] == "ACT":
                    v = [int(x) for x in parts[1:]]
                    act = dict(zip(ACT_FIELDS, v[:len(ACT_FIELDS)]))
                    act["hist"] = v[ACT_HIST:ACT_HIST + HIST_N]
                    continue
                n, code = int(parts[0]), int(parts[1])
                events.append(event(n, code, [int(x) for x in parts[2:]]))
    return out, events, act

