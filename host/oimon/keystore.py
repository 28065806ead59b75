"""Host keystore: the per-device keys that sign prosthetist commands (docs/protocol.md,
"Authenticated commands").

A JSON file, mode 0600, at $OIMON_KEYSTORE or beside the database (keys.json in the folder of
`oimon.db.default_path()`). Layout: {"version": 1, "devices": {device_id: {"key": hex,
"counter": n}}}. A keystore readable or writable by group or others is refused. Keys are never
printed, logged or put into recordings/reports: Keystore's repr and errors name device ids only.
"""
import json
import os
import secrets
import stat
from pathlib import Path

from oimon.errors import OimonError

KEY_LEN = 32
FILE_NAME = "keys.json"


def default_path():
    env = os.environ.get("OIMON_KEYSTORE")
    if env:
        return Path(env)
    from oimon import db
    return Path(db.default_path()).parent / FILE_NAME


def _check_mode(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise OimonError("cannot read keystore %s: %s" % (path, e.strerror or e))
    if not stat.S_ISREG(st.st_mode):
        raise OimonError("keystore %s is not a file" % path)
    if st.st_mode & 0o077:
        raise OimonError("keystore %s has mode %04o: it must be readable by its owner only "
                         "(chmod 600 %s)" % (path, stat.S_IMODE(st.st_mode), path))
    return True


class Keystore:
    def __init__(self, path=None):
        self.path = Path(path) if path else default_path()
        self.devices = {}
        if _check_mode(self.path):
            try:
                from oimon import validate
                data = validate.loads(self.path.read_bytes(), "keystore")   # bounded depth
                if not isinstance(data, dict):
                    raise ValueError
                devs = data["devices"]
                if not isinstance(devs, dict):
                    raise ValueError
                for d, v in devs.items():
                    k = bytes.fromhex(v["key"])
                    if len(k) != KEY_LEN or not isinstance(v.get("counter", 0), int):
                        raise ValueError
                    self.devices[d] = {"key": k, "counter": v.get("counter", 0)}
            except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError,
                    OimonError):
                raise OimonError("keystore %s is corrupt" % self.path)

    def __repr__(self):
        return "Keystore(%s, devices=%s)" % (self.path, sorted(self.devices))

    def save(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": 1, "devices": {d: {"key": v["key"].hex(), "counter": v["counter"]}
                                          for d, v in sorted(self.devices.items())}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), 0o600)
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            raise OimonError("cannot write keystore %s: %s" % (self.path, e.strerror or e))

    def has(self, device_id):
        return device_id in self.devices

    def key(self, device_id):
        try:
            return self.devices[device_id]["key"]
        except KeyError:
            raise OimonError("no key for device %s in keystore %s: provision one first"
                             % (device_id, self.path))

    def provision(self, device_id, replace=False):
        """A new random key for device_id (stored); returns it for writing to the device's
        key.bin at deploy time. Refuses to replace an existing key unless replace=True."""
        if not isinstance(device_id, str) or not device_id or len(device_id) > 64:
            raise OimonError("device id must be a non-empty string of at most 64 characters")
        if device_id in self.devices and not replace:
            raise OimonError("device %s already has a key (replace it explicitly)" % device_id)
        k = secrets.token_bytes(KEY_LEN)
        self.devices[device_id] = {"key": k, "counter": 0}
        self.save()
        return k

    def next_counter(self, device_id, device_last=0):
        """The counter for the next command: above both ours and the device's last accepted.
        The device's figure is followed only COUNTER_JUMP_MAX ahead of ours: a device (or
        something posing as it) reporting 2**32-2 must not use up the counter space; that is
        refused as a tamper sign, and nothing is stored."""
        from oimon_common import protocol as P
        d = self.devices.get(device_id)
        if d is None:
            self.key(device_id)
        try:
            dl = int(device_last or 0)
        except (TypeError, ValueError):
            raise OimonError("device %s reported a counter that is not a number" % device_id)
        if dl < 0 or dl > 0xFFFFFFFF or dl - d["counter"] > P.COUNTER_JUMP_MAX:
            raise OimonError(
                "device %s reports command counter %d, %d ahead of this keystore's %d: refused "
                "(a tampered device or a copied keystore; nothing was sent)"
                % (device_id, dl, dl - d["counter"], d["counter"]))
        c = max(d["counter"], dl) + 1
        if c > 0xFFFFFFFF:
            raise OimonError("the command counter of %s is exhausted: provision a new key" % device_id)
        d["counter"] = c
        self.save()
        return c


def open(path=None):  # noqa: A001 - the keystore API other modules look up by this name
    return Keystore(path)


def write_key_file(key, path):
    """The device's key.bin (mode 0600) to copy to the board at deploy time."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
