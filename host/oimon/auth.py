"""Host side of authenticated (prosthetist) commands: HMAC-SHA256 over device id, counter and
command (layout: oimon_common.protocol.auth_message, docs/protocol.md)."""
import hashlib
import hmac
import struct

from oimon_common import protocol as P


def mac(key, device_id, counter, cmd, args):
    return hmac.new(key, P.auth_message(device_id, counter, cmd, args), hashlib.sha256).digest()


def sign(key, device_id, counter, cmd, args):
    """The T_CMD payload after the command byte: counter u32 LE | mac 32 | args."""
    args = bytes(args)
    return struct.pack("<I", counter) + mac(key, device_id, counter, cmd, args) + args
