"""The interactive calibration wizard at a real terminal (a pty), as a prosthetist uses it: for
each step it says what to put on the jig, waits for Enter, measures; the virtual device's
sensor is "the jig": the test rewrites the sensor file in place with the step's load (the device
plays it in a loop) before pressing Enter. The fit recovers the simulated bridges' gains."""
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from oimon import keystore
from oimon_sim import sensor
from oimon_sim.device import VirtualDevice

JIG_SAMPLES = 500            # 0.5 s of sensor file, played in a loop


def _set_load(path, model, load_units):
    raw = model.raw(np.tile(np.asarray(load_units, float), (JIG_SAMPLES, 1)))
    with open(path, "r+b") as f:                 # in place: the device keeps its file open
        f.write(raw.astype("<i4").tobytes())


def _read_until(fd, pattern, timeout=60):
    buf = b""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            if re.search(pattern, buf):
                return buf
    raise AssertionError("no %r in: %s" % (pattern, buf.decode(errors="replace")))


def test_wizard_at_a_terminal(tmp_path):
    storage = tmp_path / "storage"
    storage.mkdir()
    ks = tmp_path / "keys.json"
    keystore.write_key_file(keystore.open(ks).provision("JIG-TTY"), storage / "key.bin")
    model = sensor.SensorModel(noise_counts=30)
    jig = tmp_path / "jig.raw"
    jig.write_bytes(bytes(16 * JIG_SAMPLES))
    _set_load(jig, model, (0, 0, 0))
    vd = VirtualDevice(jig, speed=1, storage=storage, device_id="JIG-TTY")   # uncalibrated
    vd.start()
    master, slave = os.openpty()
    exe = str(Path(sys.executable).with_name("oimon"))
    proc = subprocess.Popen([exe, "--port", vd.path, "--db", str(tmp_path / "db.sqlite"),
                             "--keystore", str(ks), "calibrate", "--masses", "5,10,20"],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    try:
        steps = 0
        while True:
            out = _read_until(master, rb"press Enter|calibration written|oimon: ", 90)
            if b"press Enter" not in out:
                break
            asked = re.findall(
                rb"expected (-?[\d.]+) N, (-?[\d.]+) N\*m AP, (-?[\d.]+) N\*m ML", out)
            if asked:                          # a new step; else the wizard asks again (a
                n, ap, ml = [float(v) for v in asked[-1]]     # busy device still played the
                _set_load(jig, model, (n * 10, ap * 100, ml * 100))   # old load): Enter again
                steps += 1
            time.sleep(1.0)                                              # the file loops in 0.5 s
            os.write(master, b"\n")
        assert b"calibration written to JIG-TTY (calibrated)" in out, out
        assert b"certificate #1 stored" in out
        assert proc.wait(30) == 0
        assert steps >= 8                     # tare, 3 masses, each bending axis both ways
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        vd.stop()
