# oimon serial protocol: one module for the device (MicroPython) and the host (CPython).
# Layout in docs/protocol.md. A frame on the wire is COBS(body) followed by one 0x00 delimiter;
# body = version u8 | type u8 | seq u16 LE | payload | crc32 u32 LE (over version..payload).
# binascii.crc32 on the device equals zlib.crc32 on the host (both the IEEE 802.3 CRC-32).
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x
try:
    from binascii import crc32
except ImportError:  # pragma: no cover - every CPython has binascii.crc32
    from zlib import crc32
import struct

VERSION = const(1)
HEADER = const(4)
TRAILER = const(4)
MAX_BODY = const(1024)          # largest body (header + payload + crc) either side accepts
MAX_PAYLOAD = const(1016)

# Frame types. Device -> host:
T_SAMPLES = const(0x01)         # calibrated batch: first u32, rate u16, n u16, n x (3 x i16)
T_RAW = const(0x02)             # raw-counts batch: first u32, rate u16, n u16, n x (4 x i24 LE)
T_EVENT = const(0x03)           # event record (JSON object, utf-8)
T_SUMMARY = const(0x04)         # daily summary (JSON object)
T_STATUS = const(0x05)          # status (JSON object)
T_RESP = const(0x11)            # command response: cmd u8, status u8, JSON data
T_LOG = const(0x12)             # log record read back (see docs/protocol.md)
# Host -> device:
T_CMD = const(0x10)             # command: cmd u8, JSON arguments

TYPE_NAMES = {T_SAMPLES: "samples", T_RAW: "raw", T_EVENT: "event", T_SUMMARY: "summary",
              T_STATUS: "status", T_RESP: "resp", T_LOG: "log", T_CMD: "cmd"}

SAMPLE_HDR = const(8)           # first u32 (sample counter of the first sample), rate u16, n u16
SAMPLE_BYTES = const(6)         # 3 x i16 per calibrated sample
RAW_BYTES = const(12)           # 4 x i24 per raw sample
# Wire units of a calibrated sample: axial in 0.2 N (the firmware's 0.1 N >> 1: +-6553 N),
# moments in 0.01 N*m (+-327 N*m); values beyond int16 are clamped.
AXIAL_WIRE_SHIFT = const(1)


def cobs_encode(src, n, dst):
    """COBS-encode src[0:n] into dst (len >= n + n // 254 + 2); returns the length written
    (without the 0x00 delimiter). Allocation-free."""
    code_i = 0
    code = 1
    o = 1
    for i in range(n):
        b = src[i]
        if b == 0:
            dst[code_i] = code
            code_i = o
            o += 1
            code = 1
        else:
            dst[o] = b
            o += 1
            code += 1
            if code == 0xFF:
                dst[code_i] = code
                code_i = o
                o += 1
                code = 1
    dst[code_i] = code
    return o


def cobs_decode(src, n, dst):
    """Decode COBS src[0:n] (no delimiter) into dst; returns the length or -1 if malformed."""
    i = 0
    o = 0
    lim = len(dst)
    while i < n:
        code = src[i]
        if code == 0:
            return -1
        i += 1
        end = i + code - 1
        if end > n or o + code - 1 > lim:
            return -1
        while i < end:
            b = src[i]
            if b == 0:
                return -1
            dst[o] = b
            o += 1
            i += 1
        if code != 0xFF and i < n:
            if o >= lim:
                return -1
            dst[o] = 0
            o += 1
    return o


class Encoder:
    """Builds frames into pre-allocated buffers: body() gives the payload area, then
    finish(ftype, n) returns a memoryview of the COBS frame with its delimiter."""

    def __init__(self, max_payload=MAX_PAYLOAD):
        self.seq = 0
        self._body = bytearray(HEADER + max_payload + TRAILER)
        self._out = bytearray(len(self._body) + len(self._body) // 254 + 3)
        self._bmv = memoryview(self._body)
        self._omv = memoryview(self._out)
        self.payload = memoryview(self._body)[HEADER:HEADER + max_payload]

    def finish(self, ftype, n):
        b = self._body
        seq = self.seq
        b[0] = VERSION
        b[1] = ftype
        b[2] = seq & 0xFF
        b[3] = (seq >> 8) & 0xFF
        end = HEADER + n
        c = crc32(self._bmv[:end]) & 0xFFFFFFFF
        b[end] = c & 0xFF
        b[end + 1] = (c >> 8) & 0xFF
        b[end + 2] = (c >> 16) & 0xFF
        b[end + 3] = (c >> 24) & 0xFF
        m = cobs_encode(b, end + TRAILER, self._out)
        self._out[m] = 0
        self.seq = (seq + 1) & 0xFFFF
        return self._omv[:m + 1]

    def frame(self, ftype, payload):
        n = len(payload)
        self.payload[:n] = payload
        return self.finish(ftype, n)


def encode(ftype, seq, payload):
    """One frame as bytes (host side and tests; the device uses Encoder)."""
    e = Encoder(max(len(payload), 1))
    e.seq = seq
    return bytes(e.frame(ftype, payload))


class Decoder:
    """Byte-stream deframer: feed() bytes, get complete frames back as (type, seq, payload).
    Bad frames (COBS error, short, CRC, version, oversize) are counted and skipped; it resyncs at
    the next 0x00. Sequence gaps are counted per direction of travel (frames seen after a jump)."""

    def __init__(self, max_body=MAX_BODY):
        self._raw = bytearray(max_body + max_body // 254 + 2)
        self._body = bytearray(max_body)
        self._n = 0
        self._overflow = False
        self.good = 0
        self.bad = 0
        self.gaps = 0
        self.lost = 0            # frames missing according to the sequence numbers
        self._last_seq = -1

    def reset_seq(self):
        self._last_seq = -1

    def feed(self, data):
        out = []
        for b in data:
            r = self.byte(b)
            if r is not None:
                out.append(r)
        return out

    def byte(self, b):
        if b != 0:
            if self._n < len(self._raw):
                self._raw[self._n] = b
                self._n += 1
            else:
                self._overflow = True
            return None
        n = self._n
        self._n = 0
        if self._overflow:
            self._overflow = False
            self.bad += 1
            return None
        if n == 0:
            return None              # idle delimiters are not frames
        return self._finish(n)

    def _finish(self, n):
        m = cobs_decode(self._raw, n, self._body)
        if m < HEADER + TRAILER:
            self.bad += 1
            return None
        b = self._body
        end = m - TRAILER
        c = b[end] | (b[end + 1] << 8) | (b[end + 2] << 16) | (b[end + 3] << 24)
        if c != (crc32(memoryview(b)[:end]) & 0xFFFFFFFF) or b[0] != VERSION:
            self.bad += 1
            return None
        seq = b[2] | (b[3] << 8)
        if self._last_seq >= 0 and seq != (self._last_seq + 1) & 0xFFFF:
            self.gaps += 1
            self.lost += (seq - self._last_seq - 1) & 0xFFFF
        self._last_seq = seq
        self.good += 1
        return b[1], seq, bytes(b[HEADER:end])


def pack_samples(payload, first, rate, n):
    """Write the batch header of a T_SAMPLES / T_RAW payload; returns its length.
    first = the device's sample counter at the batch's first sample (wraps at 2**32)."""
    struct.pack_into("<IHH", payload, 0, first & 0xFFFFFFFF, rate, n)
    return SAMPLE_HDR


def unpack_samples(payload):
    """Host side: (first, rate, list of (axial_0p1N, m_ap_0p01Nm, m_ml_0p01Nm)) of a T_SAMPLES
    payload; raises ValueError if its length does not match n."""
    if len(payload) < SAMPLE_HDR:
        raise ValueError("short sample batch")
    t0, rate, n = struct.unpack_from("<IHH", payload, 0)
    if len(payload) != SAMPLE_HDR + SAMPLE_BYTES * n:
        raise ValueError("sample batch length %d does not match n=%d" % (len(payload), n))
    vals = struct.unpack_from("<%dh" % (3 * n), payload, SAMPLE_HDR)
    s = AXIAL_WIRE_SHIFT
    rows = [(vals[3 * i] << s, vals[3 * i + 1], vals[3 * i + 2]) for i in range(n)]
    return t0, rate, rows


def unpack_raw(payload):
    if len(payload) < SAMPLE_HDR:
        raise ValueError("short raw batch")
    t0, rate, n = struct.unpack_from("<IHH", payload, 0)
    if len(payload) != SAMPLE_HDR + RAW_BYTES * n:
        raise ValueError("raw batch length %d does not match n=%d" % (len(payload), n))
    rows = []
    p = SAMPLE_HDR
    for _ in range(n):
        r = []
        for _c in range(4):
            v = payload[p] | (payload[p + 1] << 8) | (payload[p + 2] << 16)
            if v & 0x800000:
                v -= 0x1000000
            r.append(v)
            p += 3
        rows.append(tuple(r))
    return t0, rate, rows


def pack_cmd(cmd, args_json):
    return bytes((cmd,)) + args_json


# Commands (T_CMD payload byte 0). Patient level: no key needed.
C_INFO = const(1)
C_TIME = const(2)            # {"t": unix seconds}
C_STREAM = const(3)          # {"mode": "cal"|"raw"|"off"}
C_LOG = const(4)             # {"since": seq}
C_ACK = const(5)             # acknowledge the sounding alarm
C_CONFIG = const(6)          # get config
C_STATUS = const(7)
# Prosthetist level (authenticated, see docs/protocol.md):
C_SET = const(0x20)          # set limits / phase / profile
C_CALIB = const(0x21)        # write calibration
C_RETIGHTEN = const(0x22)    # record a retightening
C_PLAN = const(0x23)         # exercise plan
C_WIPE = const(0x24)         # wipe the log
C_TARE = const(0x25)

# Response status codes (T_RESP payload byte 1)
S_OK = const(0)
S_BAD_REQUEST = const(1)
S_UNKNOWN = const(2)
S_AUTH = const(3)
S_REPLAY = const(4)
S_RANGE = const(5)
S_BUSY = const(6)
S_ERROR = const(7)
