# Authenticated (prosthetist) commands: HMAC-SHA256 (RFC 2104 over hashlib.sha256: MicroPython
# has no hmac module) with the per-device key provisioned at deploy time (hal.STORAGE/key.bin,
# 32 bytes), a monotonic counter against replay, and constant-time MAC comparison.
# Payload layout (after the command byte): counter u32 LE | mac 32 | JSON args;
# mac = HMAC(key, protocol.auth_message(device id, counter, cmd, args)). docs/protocol.md.
import hashlib
import hal
from oimon_common import protocol as P

KEY_PATH = hal.STORAGE + "/key.bin"
_BLOCK = 64

OK = 0
NO_KEY = 1
MALFORMED = 2
BAD_MAC = 3
REPLAY = 4
REASONS = ("ok", "no key provisioned", "malformed authenticated command", "bad MAC",
           "counter not above the last accepted one (replay)")


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
    """The device key (bytes, 32) or None if none (or a malformed one) is provisioned."""
    try:
        with open(path, "rb") as f:
            k = f.read(P.KEY_LEN + 1)
    except OSError:
        return None
    return k if len(k) == P.KEY_LEN else None


def verify(key, device_id, last_counter, cmd, payload):
    """(result, counter, args) for the bytes after the command byte. result is OK or one of
    NO_KEY, MALFORMED, BAD_MAC, REPLAY; the MAC is checked before the counter."""
    if key is None:
        return NO_KEY, 0, b""
    if len(payload) < P.AUTH_HDR:
        return MALFORMED, 0, b""
    counter = payload[0] | (payload[1] << 8) | (payload[2] << 16) | (payload[3] << 24)
    mac = bytes(payload[4:P.AUTH_HDR])
    args = bytes(payload[P.AUTH_HDR:])
    want = hmac_sha256(key, P.auth_message(device_id, counter, cmd, args))
    if not equal(mac, want):
        return BAD_MAC, counter, b""
    if counter <= last_counter:
        return REPLAY, counter, b""
    return OK, counter, args
