"""Transport to an oimon device: a serial port, a pty path or any pyserial URL (loop://,
socket://host:port). Frames are the shared protocol module's (oimon_common.protocol)."""
import errno
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time

import serial
from serial.tools import list_ports

from oimon.errors import OimonError
from oimon_common import protocol as P
from oimon_common import decode as D

# USB bridges and native USB of ESP32 boards: (VID, PID) -> name
ESP32_USB = {
    (0x303A, 0x1001): "ESP32-S3/C3 native USB (Espressif)",
    (0x303A, 0x4001): "ESP32-S2 native USB (Espressif)",
    (0x303A, 0x0002): "ESP32-S2 native USB CDC (Espressif)",
    (0x10C4, 0xEA60): "CP210x USB-UART (Silicon Labs)",
    (0x1A86, 0x7523): "CH340 USB-UART (WCH)",
    (0x1A86, 0x55D4): "CH9102 USB-UART (WCH)",
    (0x0403, 0x6001): "FT232R USB-UART (FTDI)",
    (0x0403, 0x6010): "FT2232 USB-UART (FTDI)",
}

STATUS_TEXT = {P.S_OK: "ok", P.S_BAD_REQUEST: "bad request", P.S_UNKNOWN: "unknown command",
               P.S_AUTH: "authentication refused", P.S_REPLAY: "replayed command refused",
               P.S_RANGE: "value out of range", P.S_BUSY: "device busy", P.S_ERROR: "device error"}


def list_ports_marked():
    """[(device, description, esp32_name or None)] of the machine's serial ports."""
    out = []
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        mark = ESP32_USB.get((p.vid, p.pid)) if p.vid is not None else None
        out.append((p.device, p.description or "", mark))
    return out


def resolve_port(port):
    """--port, else $OIMON_PORT, else the one likely ESP32 board; clear error otherwise."""
    port = port or os.environ.get("OIMON_PORT")
    if port:
        return port
    likely = [d for d, _desc, mark in list_ports_marked() if mark]
    if len(likely) == 1:
        return likely[0]
    if not likely:
        raise OimonError("no oimon device found: connect it, or give --port (or set OIMON_PORT)")
    raise OimonError("several boards found (%s): choose one with --port" % ", ".join(likely))


class DeviceRefused(OimonError):
    """The device answered a command with an error status: nothing was changed on it."""


class PortBusy(OimonError):
    """Another program (or another oimon) has the port."""


def lock_dir():
    d = os.environ.get("OIMON_LOCK_DIR") or os.path.join(tempfile.gettempdir(),
                                                         "oimon-locks-%d" % os.getuid())
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


def _lock_name(port):
    key = port if "://" in port else os.path.realpath(port)
    tail = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[-60:]
    return os.path.join(lock_dir(), "%s-%s.lock" % (tail, hashlib.sha1(key.encode()).hexdigest()[:10]))


class PortLock:
    """An advisory lock (flock) on a lock file named after the port: pyserial's exclusive=True
    locks real serial ports, this also covers pty paths and URLs (socket://, loop://), which the
    OS does not lock. Held while the Link is open; released by the kernel if the process dies."""

    def __init__(self, port):
        self.path = _lock_name(port)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            try:
                holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip()
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise PortBusy("port busy: %s is in use by another program%s" % (
                    port, " (%s)" % holder if holder else ""))
            raise
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, ("oimon pid %d" % os.getpid()).encode(), 0)
        except OSError:
            pass

    def release(self):
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)        # closing drops the flock
            self.fd = None


class Link:
    def __init__(self, port, timeout=None):
        self.port = port
        if timeout is None:                  # how long a command waits for its answer
            try:
                timeout = float(os.environ.get("OIMON_LINK_TIMEOUT", "2"))
            except ValueError:
                timeout = 2.0
            timeout = min(max(timeout, 0.1), 600.0)
        self.timeout = timeout
        self.lock = None
        try:
            self.lock = PortLock(port)
        except PortBusy:
            raise
        except OSError as e:
            raise OimonError("cannot lock port %s: %s" % (port, e.strerror or e))
        try:
            self.ser = serial.serial_for_url(port, baudrate=115200, timeout=0.05,
                                             write_timeout=timeout, exclusive=True)
        except (serial.SerialException, ValueError, OSError) as e:
            self.lock.release()
            msg = _short(e)
            if "exclusively lock" in msg or "Resource temporarily unavailable" in msg:
                raise PortBusy("port busy: %s is in use by another program" % port)
            raise OimonError("cannot open port %s: %s" % (port, _open_reason(e)))
        self.dec = P.Decoder()
        self.enc = P.Encoder()
        self.pending = []         # frames that arrived while waiting for a response
        self._backlog = []        # frames decoded after the response (read_frames returns them)

    def close(self):
        try:
            self.ser.close()
        except Exception:  # noqa: BLE001 - closing a port that vanished
            pass
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def write_frame(self, ftype, payload):
        try:
            # a leading delimiter ends whatever stray bytes came before (a terminal's Ctrl-C,
            # mpremote's break-in): the device's decoder resyncs and this frame arrives whole
            self.ser.write(b"\x00" + bytes(self.enc.frame(ftype, payload)))
        except (serial.SerialException, OSError) as e:
            raise OimonError("write to %s failed: %s" % (self.port, _short(e)))

    def read_frames(self, size=4096):
        if self._backlog:                  # decoded after a response, not yet handed out
            out, self._backlog = self._backlog, []
            return out
        try:
            data = self.ser.read(max(1, min(size, self.ser.in_waiting or 1)))
        except (serial.SerialException, OSError) as e:
            raise OimonError("read from %s failed: %s" % (self.port, _short(e)))
        return self.dec.feed(data) if data else []

    def command(self, cmd, args=None, payload=None, timeout=None, match=None):
        """Send a command; return the decoded JSON data of its response. Other frames that
        arrive before it are kept in .pending for the caller, the ones after it are returned by
        the next read_frames(). match(data) -> False marks a response as not ours (a stale one
        left in the port's buffer by an earlier program): it is skipped."""
        body = payload if payload is not None else json.dumps(args or {}).encode()
        self.write_frame(P.T_CMD, bytes((cmd,)) + body)
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            frames = self.read_frames()
            if cmd == P.C_LOG and any(f[0] == P.T_LOG for f in frames):
                # the device answers C_LOG when its read ends; records coming in are progress
                deadline = max(deadline, time.monotonic() + (timeout or self.timeout))
            for i, (ftype, seq, pl) in enumerate(frames):
                if ftype == P.T_RESP and len(pl) >= 2 and pl[0] == cmd:
                    try:
                        data = json.loads(pl[2:]) if len(pl) > 2 else {}
                    except (ValueError, RecursionError):
                        raise OimonError("garbled response from the device")
                    if match is not None and pl[1] == P.S_OK and not match(data):
                        continue
                    self._backlog = frames[i + 1:] + self._backlog
                    if pl[1] != P.S_OK:
                        msg = data.get("error") if isinstance(data, dict) else None
                        raise DeviceRefused("device refused: %s%s" % (
                            STATUS_TEXT.get(pl[1], "status %d" % pl[1]), ": " + msg if msg else ""))
                    if cmd == P.C_INFO:
                        check_protocol(data)
                    return data
                self.pending.append((ftype, seq, pl))
        if self.dec.other_version:
            raise version_mismatch(self.dec.other_version)
        raise OimonError("device on %s is not answering" % self.port)

    def command_auth(self, cmd, args=None, keystore=None, timeout=None, payload=None,
                     build=None):
        """A prosthetist command signed with the device's key (docs/protocol.md): asks the
        device for its id, last accepted counter and current nonce (its command window), takes
        the next counter from the keystore (oimon.keystore: a Keystore, its path, or None for the
        default), sends counter | HMAC | JSON args. build(key, dev_id, nonce, counter) -> args
        builds arguments that depend on them (C_REKEY)."""
        from oimon import auth as A
        from oimon import keystore as K
        ks = keystore if isinstance(keystore, K.Keystore) else K.open(keystore)
        info = self.command(P.C_INFO)
        dev_id = info.get("device_id")
        if not isinstance(dev_id, str):
            raise OimonError("the device did not report its id")
        key = ks.key(dev_id)
        nonce = A.nonce_bytes(info)
        counter = ks.next_counter(dev_id, info.get("auth_counter", 0))
        if build is not None:
            args = build(key, dev_id, nonce, counter)
        body = payload if payload is not None else json.dumps(
            args if args is not None else {}, separators=(",", ":")).encode()
        return self.command(cmd, payload=A.sign(key, dev_id, counter, cmd, body, nonce),
                            timeout=timeout)

    def read_log(self, since=0, max_bytes=65536, timeout=None):
        """The device log's records after `since` (C_LOG, repeated while the device has more):
        (records, stats); each record a dict (seq, kind, kind_name, t, payload bytes) checked by
        its CRC. Corrupt or incomplete ones are counted in stats["corrupt"], never returned."""
        records = []
        parts = {}
        stats = {"corrupt": 0, "commands": 0}
        waits = 0
        while True:
            r = self.command(P.C_LOG, {"since": since, "max": max_bytes},
                             timeout=timeout or max(self.timeout, 10.0))
            stats["commands"] += 1
            keep = []
            for ftype, seq, pl in self.pending:
                if ftype != P.T_LOG:
                    keep.append((ftype, seq, pl))
                    continue
                try:
                    rs, total, off, chunk = D.unpack_log_chunk(pl)
                except ValueError:
                    stats["corrupt"] += 1
                    continue
                buf = parts.setdefault(rs, bytearray())
                if off < len(buf) and off + len(chunk) <= len(buf) and buf[off:off + len(chunk)] == chunk:
                    continue                 # a chunk sent again (the first was cut short)
                if off != len(buf):
                    stats["corrupt"] += 1
                    parts.pop(rs, None)
                    continue
                buf += chunk
                if len(buf) == total:
                    parts.pop(rs)
                    try:
                        records.append(D.parse_record(buf))
                    except ValueError:
                        stats["corrupt"] += 1
            self.pending = keep
            stats["corrupt"] += len(parts)
            parts.clear()
            last = r.get("last", since) if isinstance(r, dict) else since
            if isinstance(r, dict) and not r.get("more") and isinstance(r.get("pending"), int) \
                    and r["pending"] > 0 and waits < 10:
                # records still in the device's RAM queue (or an event's snippet being
                # captured): the main loop programs them within about a second
                waits += 1
                time.sleep(0.3)
                if isinstance(last, int) and last > since:
                    since = last
                continue
            if not isinstance(r, dict) or not r.get("more") or not isinstance(last, int) \
                    or last <= since:
                break
            since = last
        stats["device"] = r if isinstance(r, dict) else {}
        return records, stats


def version_mismatch(device_version):
    return OimonError("the device speaks protocol version %s, this oimon speaks version %d: "
                      "update the firmware with `oimon deploy` (or use the oimon that matches it)"
                      % (device_version, P.VERSION))


def check_protocol(info):
    """The version handshake (docs/protocol.md): every C_INFO answer names the device's protocol
    version; a device that names another one, or none, is refused with one line."""
    v = info.get("protocol") if isinstance(info, dict) else None
    if v != P.VERSION:
        raise version_mismatch("(none: older firmware)" if v is None else v)


def _open_reason(e):
    """The OS's reason for a failed open, without pyserial's repetition of the port name."""
    en = getattr(e, "errno", None)
    if en == errno.ENOENT:
        return "no such port (is the device plugged in? oimon ports lists them)"
    if en in (errno.EACCES, errno.EPERM):
        return "permission denied (add yourself to the dialout group, then log in again)"
    if en == errno.EBUSY:
        return "port busy (in use by another program)"
    if en is not None:
        return os.strerror(en)
    return _short(e)


def _short(e):
    s = str(e).strip().splitlines()
    return s[0] if s else e.__class__.__name__
