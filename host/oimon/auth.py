"""Host side of authenticated (prosthetist) commands: HMAC-SHA256 over device id, the device's
current nonce (its command window), counter and command (layout:
oimon_common.protocol.auth_message, docs/protocol.md, docs/security.md)."""
import hashlib
import hmac
import struct

from oimon.errors import OimonError
from oimon_common import protocol as P


def nonce_bytes(info):
    """The device's nonce from its C_INFO answer (hex), as bytes; OimonError if absent."""
    n = info.get("nonce") if isinstance(info, dict) else None
    try:
        b = bytes.fromhex(n) if isinstance(n, str) else None
    except ValueError:
        b = None
    if b is None or len(b) != P.NONCE_LEN:
        raise OimonError("the device did not report a command nonce: update its firmware "
                         "(`oimon deploy`)")
    return b


def mac(key, device_id, counter, cmd, args, nonce=b""):
    return hmac.new(key, P.auth_message(device_id, counter, cmd, args, nonce),
                    hashlib.sha256).digest()


def sign(key, device_id, counter, cmd, args, nonce=b""):
    """The T_CMD payload after the command byte: counter u32 LE | mac 32 | args."""
    args = bytes(args)
    return struct.pack("<I", counter) + mac(key, device_id, counter, cmd, args, nonce) + args


def rekey_payload(old_key, new_key, nonce, counter):
    """C_REKEY's "key" argument: the new key XOR protocol.rekey_pad (hex)."""
    pad = P.rekey_pad(old_key, nonce, counter)
    return bytes(a ^ b for a, b in zip(new_key, pad)).hex()
