# A small redundant, power-cut-safe record store: two slot files, each
#   magic b"OS1" | seq u32 LE | len u16 LE | payload | crc32 u32 LE (over magic..payload)
# save() writes the slot that does NOT hold the newest valid record, reads it back and checks it,
# and only then reports success; load() returns the valid record with the highest seq. A power
# cut during a write leaves the other slot (the previous value) intact; a flipped bit in one slot
# falls back to the other one. Used for the replay counter and key pin (auth.py) and the clock
# floor (supervisor.py). Both slots unreadable but present = "corrupt" (never "empty").
import struct
from binascii import crc32

_MAGIC = b"OS1"
_HDR = 9                   # magic 3 + seq 4 + len 2
EMPTY = 0                  # no slot file at all: never written
OK = 1
CORRUPT = 2                # slot files exist, none valid


def _parse(raw):
    if raw is None or len(raw) < _HDR + 4 or raw[:3] != _MAGIC:
        return None
    seq, ln = struct.unpack("<IH", raw[3:_HDR])
    if len(raw) != _HDR + ln + 4:
        return None
    c = struct.unpack("<I", raw[_HDR + ln:])[0]
    if c != crc32(raw[:_HDR + ln]) & 0xFFFFFFFF:
        return None
    return seq, bytes(raw[_HDR:_HDR + ln])


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read(4096)
    except OSError:
        return None


class SlotStore:
    def __init__(self, path):
        self.paths = (path + ".a", path + ".b")
        self.seq = 0
        self.slot = -1             # slot of the newest valid record
        self.state = EMPTY
        self.fails = 0             # saves that did not verify

    def load(self):
        """The newest valid payload (bytes) or None; sets .state."""
        best = None
        present = 0
        for i in range(2):
            raw = _read(self.paths[i])
            if raw is not None:
                present += 1
            r = _parse(raw)
            if r is not None and (best is None or r[0] > best[0]):
                best = (r[0], r[1], i)
        if best is None:
            self.state = CORRUPT if present else EMPTY
            self.seq, self.slot = 0, -1
            return None
        self.state = OK
        self.seq, self.slot = best[0], best[2]
        return best[1]

    def save(self, payload):
        """Write payload durably; True only when the slot reads back right. On False nothing the
        store held before is lost (the other slot is untouched)."""
        i = 1 - self.slot if self.slot >= 0 else 0
        seq = (self.seq + 1) & 0xFFFFFFFF
        body = _MAGIC + struct.pack("<IH", seq, len(payload)) + bytes(payload)
        rec = body + struct.pack("<I", crc32(body) & 0xFFFFFFFF)
        try:
            with open(self.paths[i], "wb") as f:
                n = f.write(rec)
            if n is not None and n != len(rec):
                raise OSError(28)
            r = _parse(_read(self.paths[i]))
            if r is None or r[0] != seq or r[1] != bytes(payload):
                raise OSError(5)
        except OSError:
            self.fails += 1
            return False
        self.seq, self.slot, self.state = seq, i, OK
        return True

    def erase(self):
        import os
        for p in self.paths:
            try:
                os.remove(p)
            except OSError:
                pass
        self.seq, self.slot, self.state = 0, -1, EMPTY
