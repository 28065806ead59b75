# Authenticated (prosthetist) commands: HMAC-SHA256 (RFC 2104 over hashlib.sha256: MicroPython
# has no hmac module) with the per-device key provisioned at deploy time (hal.STORAGE/key.bin,
# 32 bytes), a monotonic counter against replay, a nonce window against delayed delivery, and a
# constant-time MAC comparison. docs/protocol.md, docs/security.md.
# Payload layout (after the command byte): counter u32 LE | mac 32 | JSON args;
# mac = HMAC(key, protocol.auth_message(device id, counter, cmd, args, nonce)).
#
# The security state lives in its own redundant, power-cut-safe store (slotstore.py, files
# auth.a / auth.b), not in config.json:
#   counter u32 | gen u16 (keys provisioned so far) | flags u8 | pin 32 (SHA-256 of the key)
#   | cfg secret 16 (the config file's MAC key)
# - the counter is advanced durably BEFORE a command takes effect (accept() fails -> refused);
# - the key is pinned at first deploy (or after a physical reset): a key.bin replaced later (an
#   mpremote user on a development board) is refused, signed commands stay refused and the
#   attempt is logged, until the prosthetist's C_REKEY or a physical reset;
# - both slots unreadable = "store corrupt": signed commands refused (fail safe).
# The nonce (NONCE_LEN random bytes, C_INFO "nonce") is new at every boot, after every accepted
# command and after NONCE_S seconds: a signed command not delivered within its window is dead.
import os
import struct
import hashlib
import hal
from oimon_common import protocol as P
import slotstore

KEY_PATH = hal.STORAGE + "/key.bin"
STORE_PATH = hal.STORAGE + "/auth"
_BLOCK = 64
NONCE_S = 120                 # a nonce window lasts this long (seconds of uptime)
F_PINNED = 1                  # a key is pinned
F_CONFIG = 2                  # a prosthetist configuration was stored once (missing later = lost)
F_PHYSICAL = 4                # the last provisioning followed a physical reset
_REC = "<IHB32s16s"
_REC_LEN = 55

OK = 0
NO_KEY = 1
MALFORMED = 2
BAD_MAC = 3
REPLAY = 4
EXPIRED = 5
KEY_REFUSED = 6
STORE_FAIL = 7
REASONS = ("ok", "no key provisioned", "malformed authenticated command", "bad MAC",
           "counter not above the last accepted one (replay)",
           "command window expired (signed for an older nonce)",
           "device key refused (replaced without authorisation, or its store is corrupt): "
           "physical reset needed",
           "replay counter could not be stored: command refused")


def _xor(key, pad):
    b = bytearray(_BLOCK)
    for i in range(_BLOCK):
        b[i] = (key[i] if i < len(key) else 0) ^ pad
    return bytes(b)


def hmac_sha256(key, msg):
    """RFC 2104 HMAC with SHA-256 (block 64 bytes)."""
    key = bytes(key)
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    h = hashlib.sha256(_xor(key, 0x36))
    h.update(msg)
    inner = h.digest()
    h = hashlib.sha256(_xor(key, 0x5C))
    h.update(inner)
    return h.digest()


def equal(a, b):
    """Constant-time comparison (time depends on the length only, which is not secret)."""
    if len(a) != len(b):
        return False
    acc = 0
    for i in range(len(a)):
        acc |= a[i] ^ b[i]
    return acc == 0


def load_key(path=KEY_PATH):
    """The bytes of key.bin (32) or None if none (or a malformed one) is there. Whether the
    device uses it is Auth's decision (the pin)."""
    try:
        with open(path, "rb") as f:
            k = f.read(P.KEY_LEN + 1)
    except OSError:
        return None
    return k if len(k) == P.KEY_LEN else None


def _sha(b):
    return hashlib.sha256(bytes(b)).digest()


def _remove(p):
    try:
        os.remove(p)
    except OSError:
        pass


class Auth:
    """The device's security state (one per boot: auth.current)."""

    def __init__(self, key_path=KEY_PATH, store_path=STORE_PATH):
        self.key_path = key_path
        self.store = slotstore.SlotStore(store_path)
        self.counter = 0
        self.gen = 0
        self.flags = 0
        self.pin = bytes(32)
        self.cfg_secret = None
        self.key = None
        self.state = "none"       # none | ok | replaced | missing | store corrupt | unpinned
        self.events = []          # what happened at load (provisioned, refused key), for the log
        self._nonce_t = 0
        self.nonce = b""
        self.prev_nonce = b""
        self.used_nonce = b""     # the window the last accepted command was signed for
        self.new_nonce()
        self.load()

    # --- the store ---------------------------------------------------------------------------
    def _pack(self, counter=None, flags=None, pin=None):
        return struct.pack(_REC, self.counter if counter is None else counter, self.gen,
                           self.flags if flags is None else flags, self.pin if pin is None else pin,
                           self.cfg_secret or bytes(16))

    def _commit(self, counter=None, flags=None, pin=None, gen=None):
        """Store the state; the RAM copy changes only when the store verified."""
        g0 = self.gen
        if gen is not None:
            self.gen = gen
        if not self.store.save(self._pack(counter, flags, pin)):
            self.gen = g0
            return False
        if counter is not None:
            self.counter = counter
        if flags is not None:
            self.flags = flags
        if pin is not None:
            self.pin = pin
        return True

    def load(self):
        raw = self.store.load()
        st = self.store.state
        if st == slotstore.CORRUPT:
            self.state = "store corrupt"
            self.events.append({"refused": "security store corrupt: signed commands refused "
                                "until a physical reset"})
            return
        if raw is not None and len(raw) == _REC_LEN:
            self.counter, self.gen, self.flags, self.pin, self.cfg_secret = struct.unpack(_REC, raw)
        elif raw is not None:
            self.state = "store corrupt"
            return
        k = load_key(self.key_path)
        if self.flags & F_PINNED:
            if k is not None and _sha(k) == self.pin:
                self.key, self.state = k, "ok"
                return
            nk = load_key(self.key_path + ".new")           # a C_REKEY cut by a power loss
            if nk is not None and _sha(nk) == self.pin:
                try:
                    os.rename(self.key_path + ".new", self.key_path)
                except OSError:
                    pass
                self.key, self.state = nk, "ok"
                return
            self.state = "missing" if k is None else "replaced"
            self.events.append({"refused": "device key %s: signed commands refused until the "
                                "prosthetist's re-key or a physical reset" % self.state})
            return
        if k is None:
            self.state = "none"
            return
        # first deploy, or the first after a physical reset: pin this key
        if self.cfg_secret is None or self.cfg_secret == bytes(16):
            self.cfg_secret = os.urandom(16)
        if self._commit(flags=self.flags | F_PINNED, pin=_sha(k), gen=self.gen + 1):
            self.key, self.state = k, "ok"
            self.events.append({"provisioned": self.gen,
                                "after_physical_reset": bool(self.flags & F_PHYSICAL)})
        else:
            self.state = "unpinned"

    def physical_reset(self):
        """The button held at power-up: forget the pinned key (the next deploy provisions one).
        The counter never goes back; the configuration is reset to Phase I by the caller."""
        _remove(self.key_path)
        _remove(self.key_path + ".new")
        if self.store.state == slotstore.CORRUPT:
            self.store.erase()
        self.cfg_secret = os.urandom(16)
        ok = self._commit(flags=F_PHYSICAL, pin=bytes(32))
        self.key, self.state = None, "none"
        self.new_nonce()
        return ok

    def config_tag(self, body):
        """MAC of the config file's body (hex), or None when no store secret exists."""
        if self.store.state != slotstore.OK or not self.cfg_secret or self.cfg_secret == bytes(16):
            return None
        return hmac_sha256(self.cfg_secret, b"oimon-cfg1" + bytes(body))

    def mark_configured(self):
        if self.flags & F_CONFIG or self.store.state != slotstore.OK:
            return True
        return self._commit(flags=self.flags | F_CONFIG)

    def configured(self):
        return bool(self.flags & F_CONFIG)

    # --- the command window ------------------------------------------------------------------
    def new_nonce(self):
        self.prev_nonce = self.nonce
        self.nonce = os.urandom(P.NONCE_LEN)
        self._nonce_t = hal.ticks_ms()

    def nonce_hex(self):
        if hal.ticks_diff(hal.ticks_ms(), self._nonce_t) >= NONCE_S * 1000:
            self.new_nonce()
        return "".join("%02x" % b for b in self.nonce)

    # --- verification -----------------------------------------------------------------------
    def check(self, device_id, cmd, payload):
        """(result, counter, args) for the bytes after the command byte; nothing is stored
        (except the first key's pin: a key.bin that appeared since boot on a device with no key
        is provisioned now, as at boot)."""
        if self.state == "none":
            self.load()
        if self.state != "ok":
            return (NO_KEY if self.state == "none" else KEY_REFUSED), 0, b""
        if len(payload) < P.AUTH_HDR:
            return MALFORMED, 0, b""
        self.nonce_hex()                                     # an old window ends here
        counter = payload[0] | (payload[1] << 8) | (payload[2] << 16) | (payload[3] << 24)
        mac = bytes(payload[4:P.AUTH_HDR])
        args = bytes(payload[P.AUTH_HDR:])
        want = hmac_sha256(self.key, P.auth_message(device_id, counter, cmd, args, self.nonce))
        if not equal(mac, want):
            old = hmac_sha256(self.key, P.auth_message(device_id, counter, cmd, args,
                                                       self.prev_nonce)) if self.prev_nonce else b""
            if old and equal(mac, old):
                return (REPLAY if counter <= self.counter else EXPIRED), counter, b""
            return BAD_MAC, counter, b""
        if counter <= self.counter:
            return REPLAY, counter, b""
        return OK, counter, args

    def accept(self, counter):
        """Advance the counter durably before the command acts; False = refuse the command."""
        if not self._commit(counter=counter):
            return False
        self.used_nonce = self.nonce
        self.new_nonce()
        return True

    def rekey(self, new_key):
        """C_REKEY: key.new, then the pin in the store (the commit point), then the rename."""
        p = self.key_path + ".new"
        try:
            with open(p, "wb") as f:
                f.write(new_key)
            if load_key(p) != bytes(new_key):
                raise OSError(5)
        except OSError:
            return False
        if not self._commit(pin=_sha(new_key), gen=self.gen + 1):
            _remove(p)
            return False
        try:
            os.rename(p, self.key_path)
        except OSError:
            pass                          # load() finishes the rename at the next boot
        self.key = bytes(new_key)
        return True

    def info(self):
        if self.state == "none":
            self.load()
        return {"key": self.state == "ok", "key_state": self.state, "auth_counter": self.counter,
                "keys_provisioned": self.gen, "nonce": self.nonce_hex(),
                "after_physical_reset": bool(self.flags & F_PHYSICAL)}


current = None


def boot():
    """A fresh Auth from the files (at boot; tests call it after changing them)."""
    global current
    current = Auth()
    return current


def get():
    return current if current is not None else boot()


def verify(key, device_id, last_counter, cmd, payload, nonce=b""):
    """Stateless check (kept for tools/tests): (result, counter, args)."""
    if key is None:
        return NO_KEY, 0, b""
    if len(payload) < P.AUTH_HDR:
        return MALFORMED, 0, b""
    counter = payload[0] | (payload[1] << 8) | (payload[2] << 16) | (payload[3] << 24)
    mac = bytes(payload[4:P.AUTH_HDR])
    args = bytes(payload[P.AUTH_HDR:])
    want = hmac_sha256(key, P.auth_message(device_id, counter, cmd, args, nonce))
    if not equal(mac, want):
        return BAD_MAC, counter, b""
    if counter <= last_counter:
        return REPLAY, counter, b""
    return OK, counter, args
