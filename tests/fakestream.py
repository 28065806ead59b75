"""A scripted streaming device on socket://127.0.0.1:PORT for the recorder's fault tests: it
speaks the framed protocol (C_INFO, C_TIME, C_STREAM with session and boot, C_STATUS), streams
calibrated batches whose axial value is the sample number (mod 30000), and can misbehave:
stale frames waiting in the buffer before the first command (a crashed host's stream), a
repeated batch, a restart (new boot id, counter from 0, stream off as after boot)."""
import json
import os
import select
import socket
import threading
import time

from oimon_common import protocol as P
from oimon_common import decode as D

INFO = {"device_id": "FAKE-STREAM", "protocol": P.VERSION, "fw": "0.1.0", "platform": "fake", "rate": 1000,
        "calibrated": True, "config_state": "set", "phase": "II",
        "limits": {"comp": 9000, "tens": 1500, "moment": 3000}, "body_weight_kg": 70,
        "clock": 1767225600, "samples": 0, "retighten_last": "", "retighten_interval_months": 3}
STALE_AXIAL = -7777            # the value of every stale sample: must never reach a recording


class FakeStream:
    def __init__(self, stale_batches=0, repeat_batch=None, restart_after=None, batch=50,
                 period_s=0.05, info=None, id_after_restart=None):
        self.info = dict(INFO, **(info or {}))
        self.id_after_restart = id_after_restart
        self.stale_batches = stale_batches
        self.repeat_batch = repeat_batch
        self.restart_after = restart_after
        self.batch = batch
        self.period_s = period_s
        self.boot = 0x1111
        self.count = 1000               # samples since "boot"
        self.stream = False
        self.seq = 0
        self.sent = 0                   # batches sent in this connection's streams
        self.handshakes = 0
        self.restarted = False
        self.after_restart = 0          # batches sent after the restart's handshake
        self.commands = []
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.url = "socket://127.0.0.1:%d" % self.srv.getsockname()[1]
        self._stop = False
        self._th = threading.Thread(target=self._serve, daemon=True)
        self._th.start()

    def close(self):
        self._stop = True
        try:
            self.srv.close()
        except OSError:
            pass

    def wait(self, cond, timeout=60.0):
        """Until cond(self) (generous bound: the machine may be busy)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond(self):
                return True
            time.sleep(0.02)
        raise AssertionError("fake device: condition not reached in %g s" % timeout)

    def _serve(self):
        while not self._stop:
            try:
                r, _, _ = select.select([self.srv], [], [], 0.1)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    def _frame(self, ftype, pl):
        fr = bytes(P.encode(ftype, self.seq & 0xFFFF, pl))
        self.seq += 1
        return fr

    def _batch(self, axial=None):
        rows = [((axial if axial is not None else (self.count + i) % 30000), 10, -10)
                for i in range(self.batch)]
        pl = D.pack_samples_bytes(self.count, 1000, rows)
        return bytes(pl)

    def _handle(self, c):
        dec = P.Decoder()
        with c:
            stale_sent = False
            next_at = time.monotonic()
            while not self._stop:
                try:
                    r, _, _ = select.select([c], [], [], 0.002)
                    if r:
                        data = c.recv(4096)
                        if not data:
                            return
                        for ftype, _s, pl in dec.feed(data):
                            if ftype == P.T_CMD:
                                if not stale_sent:
                                    # a crashed host's stream, still on its way (pyserial
                                    # flushes what waits at open; this comes after)
                                    stale_sent = True
                                    c.sendall(self._stale())
                                c.sendall(self._command(pl[0], json.loads(pl[1:] or b"{}")))
                    now = time.monotonic()
                    if self.stream and now >= next_at:
                        next_at = now + self.period_s
                        c.sendall(self._stream_step())
                except OSError:
                    return

    def _stale(self):
        out = b""
        for i in range(self.stale_batches):
            out += self._frame(P.T_SAMPLES, D.pack_samples_bytes(
                self.count + i * self.batch, 1000, [(STALE_AXIAL, 0, 0)] * self.batch))
        if self.stale_batches:
            out += self._frame(P.T_EVENT, json.dumps({"kind": "stale", "sample": 5}).encode())
        return out

    def _stream_step(self):
        out = b""
        with self.lock:
            pl = self._batch()
            out += self._frame(P.T_SAMPLES, pl)
            if self.repeat_batch is not None and self.sent == self.repeat_batch:
                self.seq -= 1
                out += self._frame(P.T_SAMPLES, pl)        # the same frame again
            if self.sent == 3:
                out += self._frame(P.T_EVENT, json.dumps(
                    {"kind": "overload_start", "sample": self.count, "t": 1767225600}).encode())
            self.count += self.batch
            self.sent += 1
            if self.restarted:
                self.after_restart += 1
            if self.restart_after is not None and self.sent == self.restart_after \
                    and not self.restarted:
                self.restarted = True
                if self.id_after_restart:
                    self.info["device_id"] = self.id_after_restart
                self.boot = 0x2222
                self.count = 0
                self.stream = False                        # after boot the stream is off
                self.seq = 0
        return out

    def _command(self, cmd, args):
        self.commands.append((cmd, args))
        st, body = P.S_OK, {}
        if cmd == P.C_INFO:
            body = dict(self.info, samples=self.count)
        elif cmd == P.C_TIME:
            body = {"clock": args.get("t")}
        elif cmd == P.C_STATUS:
            body = {"samples": self.count, "stream": int(self.stream)}
        elif cmd == P.C_STREAM:
            with self.lock:
                body = {"mode": args.get("mode"), "rate": 1000, "first": self.count,
                        "session": args.get("session", 0), "boot": self.boot}
                out = self._frame(P.T_RESP, bytes((cmd, st)) + json.dumps(body).encode())
                self.stream = args.get("mode") != "off"
                if self.stream:
                    self.handshakes += 1
            return out
        else:
            st, body = P.S_UNKNOWN, {"error": "unknown"}
        return self._frame(P.T_RESP, bytes((cmd, st)) + json.dumps(body).encode())


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
