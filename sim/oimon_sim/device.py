"""The virtual device: the real firmware (firmware/main.py) on the i386 MicroPython unix port,
fed by the simulated sensor, talking over a pty that the host opens exactly like an ESP32's
serial port. The firmware's stdin/stdout are the pty's master side; the path printed is the
slave side (/dev/pts/N)."""
import os
import signal
import subprocess
import tempfile
import time
import tty
from pathlib import Path

from oimon_sim import mp


class VirtualDevice:
    def __init__(self, raw_file=None, rate=1000, speed=1, loop=True, storage=None,
                 device_id="SIM-0001", log_path=None, bits=32, extra_path=()):
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
        self.proc = None
        self.path = None
        self._master = self._slave = None

    def start(self):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)            # a fresh serial port: no echo, no line discipline
        self.path = os.ttyname(self._slave)
        env = mp.env(self.extra_path, OIMON_STORAGE=self.storage, OIMON_DEVICE_ID=self.device_id,
                     OIMON_SIM_RATE=self.rate, OIMON_SIM_SPEED=self.speed,
                     OIMON_SIM_LOOP=1 if self.loop else 0)
        if self.raw_file:
            env["OIMON_SIM_SENSOR"] = str(Path(self.raw_file).resolve())
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([mp.interpreter(self.bits), str(mp.FIRMWARE / "main.py")],
                                     stdin=self._master, stdout=self._master, stderr=self._log,
                                     env=env, cwd=str(self.storage), start_new_session=True)
        os.close(self._master)           # the firmware holds it now
        self._master = None
        time.sleep(0.05)
        if self.proc.poll() is not None:
            raise RuntimeError("virtual device exited at start: %s" % self.log_tail())
        return self.path

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

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
