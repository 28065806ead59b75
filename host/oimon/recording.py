"""oimon recording format (docs/recording-format.md): a self-describing header, then CRC-checked
chunks, so that a 24 h recording streams through in bounded memory and a torn or corrupt file
still yields its good part.

    magic    b"OIMREC\\x00\\x01"            8 bytes (format version 1)
    hlen     u32 LE                        length of the header
    header   JSON, utf-8                   device_id, firmware, rate_hz, channels, units, scale,
                                           calibration, start_time, kind, ...
    chunks   repeated:
      tag    4 bytes: b"SMPL" samples | b"EVNT" one event (JSON)
      len    u32 LE                        length of the body
      body   SMPL: first u64 LE (sample index of its first row), then n x channels x i32 LE
             EVNT: JSON object
      crc    u32 LE                        zlib.crc32 of tag + len + body
"""
import json
import struct
import zlib
from pathlib import Path

import numpy as np

from oimon.errors import OimonError

MAGIC = b"OIMREC\x00\x01"
TAG_SAMPLES = b"SMPL"
TAG_EVENT = b"EVNT"
CHUNK_ROWS = 4096
MAX_HEADER = 1 << 20
MAX_CHUNK = 64 << 20

CAL_CHANNELS = [
    {"name": "axial", "unit": "N", "scale": 0.1},
    {"name": "moment_ap", "unit": "N*m", "scale": 0.01},
    {"name": "moment_ml", "unit": "N*m", "scale": 0.01},
]
RAW_CHANNELS = [{"name": "raw%d" % i, "unit": "counts", "scale": 1} for i in range(4)]


class RecordingError(OimonError):
    def __init__(self, path, offset, what):
        super().__init__("%s: %s at byte %d" % (path, what, offset))
        self.offset = offset


class Writer:
    """Append samples (int32 rows in device units) and events; buffered in CHUNK_ROWS rows."""

    def __init__(self, path, header):
        self.path = Path(path)
        self.header = dict(header)
        self.header.setdefault("kind", "calibrated")
        self.header.setdefault("channels", CAL_CHANNELS if self.header["kind"] == "calibrated"
                               else RAW_CHANNELS)
        self.nch = len(self.header["channels"])
        self._f = open(self.path, "wb")
        h = json.dumps(self.header, sort_keys=True).encode()
        self._f.write(MAGIC + struct.pack("<I", len(h)) + h)
        self._rows = []
        self._nrows = 0
        self._first = None
        self.samples = 0

    def _chunk(self, tag, body):
        head = tag + struct.pack("<I", len(body))
        self._f.write(head + body + struct.pack("<I", zlib.crc32(head + body) & 0xFFFFFFFF))

    def write(self, first, rows):
        """rows: array-like (n, channels) of ints; first: sample index of rows[0]."""
        a = np.asarray(rows, dtype="<i4").reshape(-1, self.nch)
        if not len(a):
            return
        if self._first is not None and first != self._first + self._nrows:
            self.flush()
        if self._first is None:
            self._first = first
        self._rows.append(a)
        self._nrows += len(a)
        self.samples += len(a)
        if self._nrows >= CHUNK_ROWS:
            self.flush()

    def event(self, ev):
        self.flush()
        self._chunk(TAG_EVENT, json.dumps(ev, sort_keys=True).encode())

    def flush(self):
        if self._rows:
            body = struct.pack("<Q", self._first) + np.concatenate(self._rows).tobytes()
            self._chunk(TAG_SAMPLES, body)
            self._rows, self._nrows, self._first = [], 0, None
        self._f.flush()

    def close(self):
        if self._f:
            self.flush()
            self._f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Reader:
    """Iterate a recording chunk by chunk. A corrupt or truncated chunk stops iteration and is
    reported in .error (a RecordingError with the byte offset); everything before it is good."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            self._f = open(self.path, "rb")
        except OSError as e:
            raise OimonError("%s: cannot open (%s)" % (path, e.strerror))
        magic = self._f.read(8)
        if magic != MAGIC:
            self._f.close()
            raise RecordingError(path, 0, "not an oimon recording (bad magic)")
        raw = self._f.read(4)
        if len(raw) < 4:
            raise RecordingError(path, 8, "truncated header")
        (hlen,) = struct.unpack("<I", raw)
        if hlen > MAX_HEADER:
            raise RecordingError(path, 8, "header length %d is implausible" % hlen)
        h = self._f.read(hlen)
        try:
            self.header = json.loads(h)
        except ValueError:
            raise RecordingError(path, 12, "corrupt header")
        self.nch = len(self.header["channels"])
        self.rate = self.header.get("rate_hz", 1000)
        self.body_offset = 12 + hlen
        self.error = None

    def chunks(self):
        """Yield ('samples', first, ndarray (n, nch)) and ('event', dict)."""
        f = self._f
        f.seek(self.body_offset)
        while True:
            off = f.tell()
            head = f.read(8)
            if not head:
                return
            if len(head) < 8:
                self.error = RecordingError(self.path, off, "truncated chunk header")
                return
            tag, n = head[:4], struct.unpack("<I", head[4:])[0]
            if tag not in (TAG_SAMPLES, TAG_EVENT) or n > MAX_CHUNK:
                self.error = RecordingError(self.path, off, "corrupt chunk")
                return
            body = f.read(n)
            crc = f.read(4)
            if len(body) < n or len(crc) < 4:
                self.error = RecordingError(self.path, off, "truncated chunk")
                return
            if struct.unpack("<I", crc)[0] != zlib.crc32(head + body) & 0xFFFFFFFF:
                self.error = RecordingError(self.path, off, "CRC error in chunk")
                return
            if tag == TAG_SAMPLES:
                if (n - 8) % (4 * self.nch):
                    self.error = RecordingError(self.path, off, "sample chunk of odd length")
                    return
                first = struct.unpack_from("<Q", body)[0]
                yield "samples", first, np.frombuffer(body, "<i4", offset=8).reshape(-1, self.nch)
            else:
                yield "event", json.loads(body)

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load(path):
    """Whole recording in memory: (header, index (n,) int64, samples (n, nch) int32, events,
    error or None). For long recordings iterate Reader.chunks() instead."""
    with Reader(path) as r:
        idx, rows, events = [], [], []
        for c in r.chunks():
            if c[0] == "samples":
                idx.append(np.arange(c[1], c[1] + len(c[2]), dtype=np.int64))
                rows.append(c[2])
            else:
                events.append(c[1])
        samples = np.concatenate(rows) if rows else np.zeros((0, r.nch), np.int32)
        index = np.concatenate(idx) if idx else np.zeros(0, np.int64)
        return r.header, index, samples, events, r.error


def physical(header, samples):
    """Samples in physical units (float64): column c times channels[c].scale."""
    scale = np.array([c.get("scale", 1) for c in header["channels"]], dtype=float)
    return samples.astype(float) * scale
