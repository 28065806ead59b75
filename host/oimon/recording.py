"""oimon recording format (docs/recording-format.md): a self-describing header, then CRC-checked
chunks, so that a 24 h recording streams through in bounded memory and a torn or corrupt file
still yields its good part.

    magic    b"OIMREC\\x00\\x01"            8 bytes (format version 1)
    hlen     u32 LE                        length of the header
    header   JSON, utf-8                   device_id, firmware, rate_hz, channels, units, scale,
                                           calibration, start_time, kind, ...
    chunks   repeated:
      tag    4 bytes: b"SMPL" samples | b"EVNT" one event (JSON) | b"END " end marker (JSON)
             | b"SEGM" a new segment (JSON, version 2): the device restarted, a new time base
             | b"IMU " IMU rows (version 3): first u64 LE (IMU sample index), then m x 8 x i32
               (t = load sample index, acc mg, gyro 0.1 dps, flags; MISSING = -2^31)
      len    u32 LE                        length of the body
      body   SMPL: first u64 LE (sample index of its first row), then n x channels x i32 LE
             EVNT: JSON object (device events; ground truth has "kind": "truth")
             END : JSON object {"samples": n, "events": m}; the last chunk of a closed file
      crc    u32 LE                        zlib.crc32 of tag + len + body

Segments (version 2): sample indices in a file never run backwards. When the device restarts
during a recording (its sample counter starts again at 0), the writer starts a new segment: a
SEGM chunk {"segment", "first" (index of its first sample in the file), "device_first" (the
device's counter there), "start_time" (ISO UTC), "boot", "reason"}, and the samples after it
continue at "first" (the host's clock time since the start, never less than the end of the
previous segment). Older (version 1) files whose indices ran backwards are read the same way:
the reader shifts a backwards jump to just after the previous samples (.segments says where).

A reader that meets a bad chunk records a RecordingError with its byte offset, then looks for the
next chunk whose CRC checks out and goes on from there (resync), so one flipped byte costs one
chunk, not the rest of a 24 h file. A file without its END chunk was cut short (or is still
being written): reported the same way, everything before the cut is good.
"""
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from oimon.errors import OimonError

MAGIC = b"OIMREC\x00\x01"
TAG_SAMPLES = b"SMPL"
TAG_EVENT = b"EVNT"
TAG_END = b"END "
TAG_IMU = b"IMU "
TAG_SEGMENT = b"SEGM"
TAGS = (TAG_SAMPLES, TAG_EVENT, TAG_END, TAG_SEGMENT, TAG_IMU)
IMU_COLS = 8
MISSING = -0x80000000                  # stored value of a channel that was not measured
IMU_CHANNELS = [
    {"name": "t", "unit": "sample", "scale": 1},
    {"name": "acc_x", "unit": "g", "scale": 0.001}, {"name": "acc_y", "unit": "g", "scale": 0.001},
    {"name": "acc_z", "unit": "g", "scale": 0.001},
    {"name": "gyro_x", "unit": "dps", "scale": 0.1}, {"name": "gyro_y", "unit": "dps", "scale": 0.1},
    {"name": "gyro_z", "unit": "dps", "scale": 0.1},
    {"name": "flags", "unit": "bits", "scale": 1},
]


def imu_header(rate_hz=104, missing=(), source=None):
    """The header's "imu" entry: rate, the 8 columns of an IMU row, the channels not measured."""
    d = {"rate_hz": rate_hz, "channels": IMU_CHANNELS, "missing": list(missing),
         "flags": {"1": "gap before this sample", "2": "no angular rate"}}
    if source:
        d["source"] = source
    return d
CHUNK_ROWS = 4096
MAX_HEADER = 1 << 20
MAX_CHUNK = 64 << 20
FORMAT_VERSION = 1                 # what a writer without segments writes
SEGMENTS_VERSION = 2               # a file that may hold SEGM chunks (oimon record)
IMU_VERSION = 3                    # a file that may hold IMU chunks (docs/recording-format.md)
READ_VERSIONS = (1, 2, 3)

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
        self.what = what


class Writer:
    """Append samples (int32 rows in device units) and events; buffered in CHUNK_ROWS rows.

    atomic=True writes to PATH.part and renames it to PATH on close(), so a failed command
    never leaves a half-written file under the name asked for (abort() removes the part)."""

    def __init__(self, path, header, atomic=False):
        self.path = Path(path)
        self.header = dict(header)
        self.header.setdefault("format", "oimon-recording")
        self.header.setdefault("version", FORMAT_VERSION)
        self.header.setdefault("kind", "calibrated")
        if "imu" in self.header:
            self.header["version"] = max(IMU_VERSION, self.header["version"])
        self.header.setdefault("rate_hz", 1000)
        self.header.setdefault("channels", CAL_CHANNELS if self.header["kind"] == "calibrated"
                               else RAW_CHANNELS)
        self.nch = len(self.header["channels"])
        self.atomic = atomic
        self._target = self.path.with_name(self.path.name + ".part") if atomic else self.path
        try:
            self._f = open(self._target, "wb")
        except OSError as e:
            raise OimonError("%s: cannot write (%s)" % (path, e.strerror))
        h = json.dumps(self.header, sort_keys=True).encode()
        self.version = self.header.get("version", FORMAT_VERSION)
        self._f.write(MAGIC + struct.pack("<I", len(h)) + h)
        self.imu_rows = 0
        self._rows = []
        self._nrows = 0
        self._first = None
        self.samples = 0
        self.events = 0
        self.segments = 0
        self.flushed_samples = 0     # samples in chunks handed to the OS (flush() succeeded)
        self._unflushed = 0

    def _chunk(self, tag, body):
        head = tag + struct.pack("<I", len(body))
        try:
            self._f.write(head + body + struct.pack("<I", zlib.crc32(head + body) & 0xFFFFFFFF))
        except OSError as e:
            raise OimonError("%s: %s: %s" % (
                self.path, _os_reason(e), "nothing was written" if self.atomic else
                "the recording is readable up to its last complete chunk"))

    def write(self, first, rows):
        """rows: array-like (n, channels) of ints; first: sample index of rows[0]."""
        a = np.asarray(rows, dtype="<i4").reshape(-1, self.nch)
        if not len(a):
            return
        if self._first is not None and first != self._first + self._nrows:
            self.flush()
        while len(a):
            if self._first is None:
                self._first = first
            take = min(len(a), CHUNK_ROWS - self._nrows)
            self._rows.append(a[:take])
            self._nrows += take
            self.samples += take
            first += take
            a = a[take:]
            if self._nrows >= CHUNK_ROWS:
                self._flush_rows()

    def imu(self, first, rows):
        """IMU rows (m, 8): t (load sample index), acc x/y/z (mg), gyro x/y/z (0.1 dps), flags;
        MISSING for a channel not measured; first = IMU sample index of rows[0]. Written at once
        (pending samples first): write a segment's IMU rows before its samples."""
        if self.version < IMU_VERSION:
            raise OimonError("IMU rows need a header with an \"imu\" entry (format version 3)")
        a = np.asarray(rows, dtype="<i4").reshape(-1, IMU_COLS)
        self._flush_rows()
        for k in range(0, len(a), CHUNK_ROWS):
            part = a[k:k + CHUNK_ROWS]
            self._chunk(TAG_IMU, struct.pack("<Q", first + k) + part.astype("<i4").tobytes())
        self.imu_rows += len(a)

    def event(self, ev):
        self._flush_rows()
        self._chunk(TAG_EVENT, json.dumps(ev, sort_keys=True).encode())
        self.events += 1

    def segment(self, info):
        """Start a new segment (see the module docstring): info is its SEGM dict; the samples
        written after it start at info["first"]."""
        self._flush_rows()
        self._chunk(TAG_SEGMENT, json.dumps(info, sort_keys=True).encode())
        self.segments += 1

    def _flush_rows(self):
        if self._rows:
            body = struct.pack("<Q", self._first) + np.concatenate(self._rows).astype("<i4").tobytes()
            self._chunk(TAG_SAMPLES, body)
            self._unflushed += self._nrows
            self._rows, self._nrows, self._first = [], 0, None

    def flush(self):
        self._flush_rows()
        try:
            self._f.flush()
            self.flushed_samples += self._unflushed
            self._unflushed = 0
        except OSError as e:
            raise OimonError("%s: %s: %s" % (
                self.path, _os_reason(e), "nothing was written" if self.atomic else
                "the recording is readable up to its last complete chunk"))

    def close(self):
        """Write the END chunk and close. A write that fails (disk full) closes the file
        anyway and raises one OimonError: what was written before is readable up to its last
        complete chunk."""
        if self._f:
            f = self._f
            try:
                self._flush_rows()
                end = {"samples": self.samples, "events": self.events}
                if self.segments:
                    end["segments"] = self.segments + 1
                if self.version >= IMU_VERSION:
                    end["imu_rows"] = self.imu_rows
                self._chunk(TAG_END, json.dumps(end, sort_keys=True).encode())
                f.flush()
                self.flushed_samples += self._unflushed
                self._unflushed = 0
            except (OSError, OimonError) as e:
                self._f = None
                try:
                    f.close()
                except OSError:
                    pass
                if self.atomic:
                    try:
                        os.unlink(self._target)
                    except OSError:
                        pass
                if isinstance(e, OimonError):
                    raise
                raise OimonError("%s: %s: %s" % (
                    self.path, _os_reason(e), "nothing was written" if self.atomic else
                    "the recording is readable up to its last complete chunk"))
            self._f = None
            try:
                f.close()
                if self.atomic:
                    os.replace(self._target, self.path)
            except OSError as e:
                raise OimonError("%s: %s" % (self._target, _os_reason(e)))

    def abort(self):
        """Stop without finishing: an atomic writer removes its part file."""
        if self._f:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None
            if self.atomic:
                try:
                    os.unlink(self._target)
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None and self.atomic:
            self.abort()
        else:
            self.close()


class Reader:
    """Iterate a recording chunk by chunk. A corrupt or truncated chunk is reported in .errors
    (RecordingError with the byte offset; .error is the first) and skipped: with resync=True
    (default) reading goes on at the next chunk whose CRC checks out. .end is the END chunk's
    dict, None if the file was cut short."""

    def __init__(self, path, resync=True):
        self.path = Path(path)
        self.resync = resync
        try:
            self._f = open(self.path, "rb")
        except OSError as e:
            raise OimonError("%s: cannot open (%s)" % (path, e.strerror or e))
        try:
            self._read_header()
        except Exception:
            self._f.close()
            raise
        self.errors = []
        self.end = None
        self.segments = []
        self.size = os.fstat(self._f.fileno()).st_size

    def _read_header(self):
        path = self.path
        magic = self._f.read(8)
        if magic != MAGIC:
            if magic[:6] == MAGIC[:6]:
                raise RecordingError(path, 6, "unsupported recording format version %r" % magic[6:])
            raise RecordingError(path, 0, "not an oimon recording (bad magic)")
        raw = self._f.read(4)
        if len(raw) < 4:
            raise RecordingError(path, 8, "truncated header")
        (hlen,) = struct.unpack("<I", raw)
        if hlen > MAX_HEADER:
            raise RecordingError(path, 8, "header length %d is implausible" % hlen)
        h = self._f.read(hlen)
        if len(h) < hlen:
            raise RecordingError(path, 12 + len(h), "truncated header")
        try:
            self.header = json.loads(h)
            if not isinstance(self.header, dict) or not isinstance(self.header["channels"], list):
                raise ValueError
            self.nch = len(self.header["channels"])
            if not self.nch:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise RecordingError(path, 12, "corrupt header")
        self.rate = self.header.get("rate_hz", 1000)
        v = self.header.get("version", 1)
        self.version = v if isinstance(v, int) and not isinstance(v, bool) else 1
        self.imu = self.header.get("imu") if self.version >= IMU_VERSION else None
        self.kind = self.header.get("kind", "calibrated")
        self.body_offset = 12 + hlen

    @property
    def error(self):
        return self.errors[0] if self.errors else None

    def _bad(self, off, what):
        self.errors.append(RecordingError(self.path, off, what))

    def _chunk_at(self, off):
        """(tag, body, next offset) of a valid chunk at off, or (None, reason, None)."""
        f = self._f
        f.seek(off)
        head = f.read(8)
        if len(head) < 8:
            return None, "truncated chunk header", None
        tag, n = head[:4], struct.unpack("<I", head[4:])[0]
        if tag not in TAGS or n > MAX_CHUNK:
            return None, "corrupt chunk", None
        if off + 12 + n > self.size:
            return None, "truncated chunk", None
        body = f.read(n)
        crc = f.read(4)
        if len(body) < n or len(crc) < 4:
            return None, "truncated chunk", None
        if struct.unpack("<I", crc)[0] != zlib.crc32(head + body) & 0xFFFFFFFF:
            return None, "CRC error in chunk", None
        if tag == TAG_SAMPLES and (n < 8 or (n - 8) % (4 * self.nch)):
            return None, "sample chunk of odd length", None
        if tag == TAG_IMU and (self.version < IMU_VERSION or n < 8 or (n - 8) % (4 * IMU_COLS)):
            return None, "IMU chunk of odd length", None
        if tag != TAG_SAMPLES and tag != TAG_IMU:
            try:
                body = json.loads(body)
                if not isinstance(body, dict):
                    raise ValueError
            except ValueError:
                return None, "corrupt event chunk", None
        return tag, body, off + 12 + n

    def _resync(self, off):
        """Offset of the next valid chunk after off, or None."""
        f = self._f
        pos = off + 1
        block = 1 << 20
        while pos < self.size:
            f.seek(pos)
            data = f.read(block + 3)
            if not data:
                return None
            cands = []
            for t in TAGS:
                i = data.find(t)
                while i >= 0:
                    if i < block:
                        cands.append(i)
                    i = data.find(t, i + 1)
            for i in sorted(cands):
                tag, _body, _nxt = self._chunk_at(pos + i)
                if tag is not None:
                    return pos + i
            pos += block
        return None

    def chunks(self, imu=False):
        """Yield ('samples', first, ndarray (n, nch)) and ('event', dict); with imu=True also
        ('imu', first, ndarray (m, 8)) (version 3; IMU chunks are skipped otherwise). Sample
        indices never run backwards: a SEGM chunk (version 2) is collected in .segments; a
        backwards jump of an older file is shifted to just after the previous samples (and the
        "sample" of the events after it with it), also noted in .segments."""
        self.errors = []
        self.end = None
        self.segments = []
        nxt_index = None             # index after the last sample yielded
        shift = 0                    # added to an older file's indices after a backwards jump
        for c in self._raw_chunks():
            if c[0] == "segment":
                self.segments.append(c[1])
                shift = 0
                continue
            if c[0] == "event":
                ev = c[1]
                if shift and isinstance(ev.get("sample"), int) and not is_truth(ev):
                    ev = dict(ev, sample=ev["sample"] + shift, device_sample=ev["sample"])
                yield "event", ev
                continue
            if c[0] == "imu":
                if imu:
                    yield c
                continue
            first = c[1] + shift
            if nxt_index is not None and first < nxt_index:
                shift += nxt_index - first
                self.segments.append({"segment": len(self.segments) + 1, "first": nxt_index,
                                      "device_first": c[1], "reason": "sample index ran "
                                      "backwards (device restart in a version 1 file)"})
                first = nxt_index
            nxt_index = first + len(c[2])
            yield "samples", first, c[2]

    def _raw_chunks(self):
        off = self.body_offset
        while True:
            if off >= self.size:
                if self.end is None:
                    self._bad(off, "no END chunk: recording cut short (or still being written)")
                return
            tag, body, nxt = self._chunk_at(off)
            if tag is None:
                self._bad(off, body)
                if not self.resync:
                    return
                off = self._resync(off)
                if off is None:
                    return
                continue
            off = nxt
            if tag == TAG_SAMPLES:
                first = struct.unpack_from("<Q", body)[0]
                yield "samples", first, np.frombuffer(body, "<i4", offset=8).reshape(-1, self.nch)
            elif tag == TAG_EVENT:
                yield "event", body
            elif tag == TAG_SEGMENT:
                yield "segment", body
            elif tag == TAG_IMU:
                first = struct.unpack_from("<Q", body)[0]
                yield "imu", first, np.frombuffer(body, "<i4", offset=8).reshape(-1, IMU_COLS)
            else:
                self.end = body
                if off < self.size:
                    self._bad(off, "%d bytes after the END chunk" % (self.size - off))
                return

    def blocks(self, rows=1 << 18, imu=False):
        """Samples in blocks of up to `rows` contiguous rows: yield (first, ndarray); events are
        collected in .events_seen (bounded by the number of events, not of samples). A gap in
        the sample indices starts a new block. imu=True: the IMU rows read so far are appended
        to .imu_pending (a list of (m, 8) arrays; writers put a segment's IMU rows before its
        samples, so a block's IMU rows are there when it is yielded); the caller empties it."""
        self.events_seen = []
        self.imu_pending = []
        buf, n, first = [], 0, None
        for c in self.chunks(imu):
            if c[0] == "event":
                self.events_seen.append(c[1])
                continue
            if c[0] == "imu":
                self.imu_pending.append(np.array(c[2]))
                continue
            _, f0, a = c
            if first is not None and f0 != first + n:
                yield first, np.concatenate(buf)
                buf, n, first = [], 0, None
            if first is None:
                first = f0
            buf.append(a)
            n += len(a)
            if n >= rows:
                yield first, np.concatenate(buf)
                buf, n, first = [], 0, None
        if buf:
            yield first, np.concatenate(buf)

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_imu(path):
    """All IMU rows of a recording, (m, 8) int32 (an empty array for version 1 / no IMU)."""
    with Reader(path) as r:
        parts = [c[2] for c in r.chunks(imu=True) if c[0] == "imu"]
        return np.concatenate(parts) if parts else np.zeros((0, IMU_COLS), np.int32)


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


def _os_reason(e):
    import errno
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    if e.errno == errno.EFBIG:
        return "file too large for this file system or limit"
    return e.strerror or str(e)


def is_truth(ev):
    return ev.get("kind") == "truth"
