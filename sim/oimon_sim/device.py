"""The virtual device: the real firmware (firmware/main.py) on the i386 MicroPython unix port,
fed by the simulated sensor, talking over a pty that the host opens exactly like an ESP32's
serial port. The firmware's stdin/stdout are the pty's master side; the path printed is the
slave side (/dev/pts/N)."""
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path

from oimon.errors import OimonError
from oimon_common import protocol as P
from oimon_sim import mp


class VirtualDevice:
    def __init__(self, raw_file=None, rate=1000, speed=1, loop=True, storage=None,
                 device_id="SIM-0001", log_path=None, bits=32, extra_path=(), sources=True):
        self.raw_file = raw_file
        self.rate = rate
        self.speed = speed
        self.loop = loop
        self._tmp = None
        if storage is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="oimon-dev-")
            storage = self._tmp.name
        self.storage = Path(storage)
        self.storage.mkdir(parents=True, exist_ok=True)
        self.device_id = device_id
        self.log_path = Path(log_path) if log_path else self.storage / "device.log"
        self.bits = bits
        self.extra_path = list(extra_path)
        # As on a board, what is on the device's filesystem runs first (a deployed bundle:
        # storage/*.mpy, storage/lib/oimon_common); sources=False runs nothing else, so a
        # deployed bundle is shown to be complete. sources=True falls back to firmware/, common/.
        self.sources = sources
        self.proc = None
        self.path = None
        self._master = self._slave = None

    def start(self):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)            # a fresh serial port: no echo, no line discipline
        self.path = os.ttyname(self._slave)
        path = self.extra_path + [self.storage, self.storage / "lib"]
        main = self.storage / "main.py" if not self.sources else mp.FIRMWARE / "main.py"
        env = mp.env(path, self.sources, OIMON_STORAGE=self.storage, OIMON_DEVICE_ID=self.device_id,
                     OIMON_SIM_RATE=self.rate, OIMON_SIM_SPEED=self.speed,
                     OIMON_SIM_LOOP=1 if self.loop else 0)
        if self.raw_file:
            env["OIMON_SIM_SENSOR"] = str(Path(self.raw_file).resolve())
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([mp.interpreter(self.bits), str(main)],
                                     stdin=self._master, stdout=self._master, stderr=self._log,
                                     env=env, cwd=str(self.storage), start_new_session=True)
        os.close(self._master)           # the firmware holds it now
        self._master = None
        self._wait_ready(float(os.environ.get("OIMON_SIM_START_TIMEOUT", "120")))
        return self.path

    def _wait_ready(self, timeout):
        """Until the firmware answers C_INFO on the pty (its main loop runs), or exits (then
        RuntimeError with its log's tail). A condition, not a guess at how long start-up
        takes on a busy machine; callers can talk to it at once afterwards."""
        fd = self._slave
        dec = P.Decoder()
        os.write(fd, bytes(P.encode(P.T_CMD, 0, bytes((P.C_INFO,)) + b"{}")))
        end = time.monotonic() + timeout
        next_ask = time.monotonic() + 2.0
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("virtual device exited at start: %s" % self.log_tail())
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    data = b""
                for ftype, _seq, pl in dec.feed(data):
                    if ftype == P.T_RESP and pl[:1] == bytes((P.C_INFO,)):
                        return
            elif time.monotonic() > next_ask:      # asked before its reader was up: again
                os.write(fd, bytes(P.encode(P.T_CMD, 0, bytes((P.C_INFO,)) + b"{}")))
                next_ask = time.monotonic() + 2.0
        raise RuntimeError("virtual device did not answer within %g s: %s" % (timeout,
                                                                             self.log_tail()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=2000):
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        if getattr(self, "_log", None):
            self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        work = getattr(self, "work", None)
        if work is not None:                     # start_virtual_device's input folder
            try:
                inside = self.storage.resolve().is_relative_to(Path(work).resolve())
            except OSError:
                inside = True
            if not inside:                       # storage kept elsewhere: sensor.raw can go
                shutil.rmtree(work, ignore_errors=True)
                self.work = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def start_virtual_device(scenario="walk", recording=None, speed=1, duration=60, storage=None,
                         device_id="SIM-0001", body_weight_kg=75, seed=0, calibrated=True):
    """Generate the sensor input, write the calibration the device would have (unless
    calibrated=False: a fresh, uncalibrated device; a storage folder that already holds a
    calibration keeps it), start it."""
    # lazy (here and below): numpy (scenarios, sensor, recording) costs ~50 ms, and the `oimon`
    # command table imports this module on every start
    from oimon_sim import scenarios, sensor, vdev_setup
    if not recording and scenario not in scenarios.SCENARIOS:
        raise OimonError("unknown scenario %r (choose from %s)" % (
            scenario, ", ".join(sorted(scenarios.SCENARIOS))))
    if recording:
        recording_path = Path(recording)
        if not recording_path.is_file():
            raise OimonError("%s: cannot open (no such file)" % recording)
    work = Path(tempfile.mkdtemp(prefix="oimon-sim-"))
    model = sensor.SensorModel()
    raw_path = work / "sensor.raw"
    rate = 1000
    try:
        if recording:
            model, rate = raw_file_from_recording(recording, raw_path)
        else:
            _write_scenario(raw_path, scenario, duration, body_weight_kg, seed, model)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    vd = None
    try:
        vd = VirtualDevice(raw_path, rate=rate, speed=speed, storage=storage or (work / "storage"),
                           device_id=device_id)
        vd.work = work                       # sensor.raw (and storage unless given): remove after
        if calibrated:
            vdev_setup.provision(vd.storage, model)
            if not (vd.storage / "config.json").exists():
                # a clinic-prepared device: configured for full activity (unconfigured = phase I)
                vdev_setup.configure(vd.storage, {"phase": "full", "body_weight_kg": body_weight_kg})
        vd.start()
    except BaseException as e:
        # the firmware died at start-up (or provisioning failed): stop what was started and
        # remove the work folder (sensor.raw; storage when it is ours) before reporting it
        tail = vd.log_tail(400) if vd is not None else ""
        if vd is not None:
            vd.stop()
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(e, RuntimeError):
            last = [ln for ln in tail.strip().splitlines() if ln.strip()]
            raise OimonError("virtual device exited at start%s" % (
                ": " + last[-1].strip() if last else "")) from None
        raise
    return vd


def _write_scenario(raw_path, scenario, duration, body_weight_kg, seed, model):
    """The virtual device's input: the scenario as raw counts (sensor faults included)."""
    from oimon_sim import scenarios      # lazy: numpy, see start_virtual_device
    try:
        with open(raw_path, "wb") as f:
            for _first, raw, _tr in scenarios.generate(scenario, duration, 1000, body_weight_kg,
                                                       seed, raw=True, model=model):
                f.write(raw.astype("<i4").tobytes())
    except scenarios.ScenarioError as e:
        raise OimonError("scenario %s: %s" % (scenario, e))


def sensor_model_for(header):
    """The sensor model behind a recording: its `sensor` header, else the inverse of its
    calibration, else the default model."""
    # lazy: numpy, see start_virtual_device
    import numpy as np
    from oimon_sim import sensor
    if isinstance(header.get("sensor"), dict):
        return sensor.SensorModel(header["sensor"]["S"], header["sensor"]["offset"])
    cal = header.get("calibration")
    if isinstance(cal, dict) and "gain" in cal and "offset" in cal:
        return sensor.SensorModel(np.linalg.inv(np.array(cal["gain"], float)),
                                  list(cal["offset"])[:3] + [0])
    return sensor.SensorModel()


def raw_file_from_recording(path, out):
    """Stream a recording into the virtual device's raw-counts file (calibrated samples go through
    the sensor model). Returns (sensor model to provision, rate)."""
    from oimon import recording          # lazy: numpy, see start_virtual_device
    with recording.Reader(path) as r:
        if r.kind == "raw" and r.nch != 4:
            raise OimonError("%s: a raw recording has 4 channels, this one %d" % (path, r.nch))
        if r.kind != "raw" and r.nch < 3:
            raise OimonError("%s: a calibrated recording has 3 channels, this one %d" % (path, r.nch))
        model = sensor_model_for(r.header) if r.kind == "raw" else sensor_model_for({})
        n = 0
        with open(out, "wb") as f:
            for c in r.chunks():
                if c[0] != "samples":
                    continue
                a = c[2] if r.kind == "raw" else model.raw(c[2][:, :3])
                f.write(a.astype("<i4").tobytes())
                n += len(a)
        if r.error:
            print("oimon: warning: %s (playing the good part)" % r.error, file=sys.stderr)
        if not n:
            raise OimonError("%s: no samples%s" % (path, " (%s)" % r.error if r.error else ""))
        return model, int(r.rate)
