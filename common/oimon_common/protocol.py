# oimon serial protocol: one module for the device (MicroPython) and the host (CPython).
# Layout in docs/protocol.md. A frame on the wire is COBS(body) followed by one 0x00 delimiter;
# body = version u8 | type u8 | seq u16 LE | payload | crc32 u32 LE (over version..payload).
# binascii.crc32 on the device equals zlib.crc32 on the host (both the IEEE 802.3 CRC-32); the
# device's stream path uses an allocation-free viper CRC with the same result (tested).
# Also here, because both sides need them: the device log's record layout (docs/device-log.md),
# the event snippet encoding and the authenticated-command layout.
try:
    from micropython import const
    import micropython
    _MP = True
except ImportError:  # CPython
    _MP = False

    def const(x):
        return x
try:
    from binascii import crc32
except ImportError:  # pragma: no cover - every CPython has binascii.crc32
    from zlib import crc32
import struct
from array import array

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
T_GAP = const(0x06)             # samples missing from the stream: first u32, n u32, cause u8
T_RESP = const(0x11)            # command response: cmd u8, status u8, JSON data
T_LOG = const(0x12)             # log record chunk: seq u32, total u16, off u16, record bytes
# Host -> device:
T_CMD = const(0x10)             # command: cmd u8, [auth header], JSON arguments

TYPE_NAMES = {T_SAMPLES: "samples", T_RAW: "raw", T_EVENT: "event", T_SUMMARY: "summary",
              T_STATUS: "status", T_RESP: "resp", T_LOG: "log", T_CMD: "cmd", T_GAP: "gap"}
# T_GAP causes: the samples were never acquired (the ADC's FIFO overflowed, a CRC error, the
# driver's ring full), or acquired and processed (detector, log) but their stream frames were
# dropped because the host did not read.
GAP_ACQ = const(0)
GAP_STREAM = const(1)
GAP_CAUSES = {GAP_ACQ: "acquisition", GAP_STREAM: "stream"}
GAP_BYTES = const(9)

SAMPLE_HDR = const(8)           # first u32 (sample counter of the first sample), rate u16, n u16
SAMPLE_BYTES = const(6)         # 3 x i16 per calibrated sample
RAW_BYTES = const(12)           # 4 x i24 per raw sample
# Wire units of a calibrated sample: axial in 0.2 N (the firmware's 0.1 N >> 1: +-6553 N),
# moments in 0.01 N*m (+-327 N*m); values beyond int16 are clamped.
AXIAL_WIRE_SHIFT = const(1)
LOG_HDR = const(8)              # T_LOG chunk header: seq u32, total u16, off u16


def _crc_table():
    t = array("I", [0] * 256)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        t[n] = c
    return t


if _MP:
    _CRC_TAB = _crc_table()

    @micropython.viper
    def _crc_put(buf, start: int, end: int, tab):
        # CRC-32 (IEEE) of buf[start:end] stored little-endian at buf[end:end+4]; no allocation
        p = ptr8(buf)
        t = ptr32(tab)
        c = uint(0) - uint(1)
        i = start
        while i < end:
            c = uint(t[(c ^ uint(p[i])) & 0xFF]) ^ (c >> 8)
            i += 1
        c = c ^ (uint(0) - uint(1))
        p[end] = c
        p[end + 1] = c >> 8
        p[end + 2] = c >> 16
        p[end + 3] = c >> 24

    @micropython.viper
    def _cobs_enc_v(src, n: int, dst) -> int:
        s = ptr8(src)
        d = ptr8(dst)
        code_i = 0
        code = 1
        o = 1
        i = 0
        while i < n:
            b = s[i]
            if b == 0:
                d[code_i] = code
                code_i = o
                o += 1
                code = 1
            else:
                d[o] = b
                o += 1
                code += 1
                if code == 0xFF:
                    d[code_i] = code
                    code_i = o
                    o += 1
                    code = 1
            i += 1
        d[code_i] = code
        return o
else:
    _CRC_TAB = None

    def _crc_put(buf, start, end, tab):
        c = crc32(bytes(buf[start:end])) & 0xFFFFFFFF
        buf[end:end + 4] = c.to_bytes(4, "little")


def crc_put(buf, start, end):
    """Store the CRC-32 of buf[start:end] little-endian at buf[end:end+4] (allocation-free on
    the device)."""
    _crc_put(buf, start, end, _CRC_TAB)


# blit(dst, doff, src, soff, n): dst[doff:doff+n] = src[soff:soff+n] without slices or views
# (no allocation on the device), forward (safe for dst == src with doff <= soff). The log, the
# commands, the stream and the simulator's link share it.
if _MP:
    @micropython.viper
    def blit(dst, doff: int, src, soff: int, n: int):
        d = ptr8(dst)
        s = ptr8(src)
        i = 0
        while i < n:
            d[doff + i] = s[soff + i]
            i += 1
else:
    def blit(dst, doff, src, soff, n):
        dst[doff:doff + n] = src[soff:soff + n]


# A CRC-32 over several pieces, checked against a stored one, with no allocation on the device
# (a 32-bit CRC is a big int on the 32-bit port): crc_start(); crc_feed(buf, a, b) ...;
# crc_match(ref, off) -> the CRC equals the u32 LE at ref[off:off+4]. One running CRC (the
# main loop's; never used from an interrupt).
_CST = array("I", [0])
if _MP:
    @micropython.viper
    def _crc_acc(buf, start: int, end: int, tab, st):
        p = ptr8(buf)
        t = ptr32(tab)
        s = ptr32(st)
        c = uint(s[0])
        i = start
        while i < end:
            c = uint(t[(c ^ uint(p[i])) & 0xFF]) ^ (c >> 8)
            i += 1
        s[0] = c

    @micropython.viper
    def _crc_eq(st, ref, off: int) -> int:
        s = ptr32(st)
        r = ptr8(ref)
        c = uint(s[0]) ^ (uint(0) - uint(1))
        v = uint(r[off]) | (uint(r[off + 1]) << 8) | (uint(r[off + 2]) << 16) | (uint(r[off + 3]) << 24)
        if c == v:
            return 1
        return 0

    def crc_start():
        _CST[0] = 0xFFFFFFFF

    def crc_feed(buf, start, end):
        _crc_acc(buf, start, end, _CRC_TAB, _CST)

    def crc_match(ref, off):
        return _crc_eq(_CST, ref, off) == 1
else:
    def crc_start():
        _CST[0] = 0

    def crc_feed(buf, start, end):
        _CST[0] = crc32(bytes(buf[start:end]), _CST[0]) & 0xFFFFFFFF

    def crc_match(ref, off):
        return _CST[0] == int.from_bytes(bytes(ref[off:off + 4]), "little")


if _MP:
    @micropython.viper
    def put_cal(buf, off: int, a: int, b: int, c: int):
        # one calibrated sample in wire units at buf[off:off+6]: three int16 LE, a = axial in
        # 0.2 N (0.1 N >> AXIAL_WIRE_SHIFT), b, c = moments in 0.01 N*m; each clamped to int16
        p = ptr8(buf)
        a = a >> 1
        if a > 32767:
            a = 32767
        if a < -32768:
            a = -32768
        if b > 32767:
            b = 32767
        if b < -32768:
            b = -32768
        if c > 32767:
            c = 32767
        if c < -32768:
            c = -32768
        p[off] = a
        p[off + 1] = a >> 8
        p[off + 2] = b
        p[off + 3] = b >> 8
        p[off + 4] = c
        p[off + 5] = c >> 8
else:
    def put_cal(buf, off, a, b, c):
        """Host side of the same: one calibrated sample in wire units."""
        def cl(v):
            return max(-32768, min(32767, v))
        struct.pack_into("<hhh", buf, off, cl(a >> AXIAL_WIRE_SHIFT), cl(b), cl(c))


def cobs_encode(src, n, dst):
    """COBS-encode src[0:n] into dst (len >= n + n // 254 + 2); returns the length written
    (without the 0x00 delimiter). Allocation-free."""
    if _MP:
        return _cobs_enc_v(src, n, dst)
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
    finish(ftype, n) returns a memoryview of the COBS frame with its delimiter.
    On the device's stream path use write(tx, ftype, n): no allocation at all."""

    def __init__(self, max_payload=MAX_PAYLOAD):
        self.seq = 0
        self._body = bytearray(HEADER + max_payload + TRAILER)
        self._out = bytearray(len(self._body) + len(self._body) // 254 + 3)
        self._bmv = memoryview(self._body)
        self._omv = memoryview(self._out)
        self.out = self._out
        self.payload = memoryview(self._body)[HEADER:HEADER + max_payload]
        self.max_payload = max_payload

    def finish_n(self, ftype, n):
        """Frame the n payload bytes into self.out; returns the frame's length (delimiter
        included). Allocation-free on the device."""
        b = self._body
        seq = self.seq
        b[0] = VERSION
        b[1] = ftype
        b[2] = seq & 0xFF
        b[3] = (seq >> 8) & 0xFF
        end = HEADER + n
        _crc_put(b, 0, end, _CRC_TAB)
        m = cobs_encode(b, end + TRAILER, self._out)
        self._out[m] = 0
        self.seq = (seq + 1) & 0xFFFF
        return m + 1

    def finish(self, ftype, n):
        return self._omv[:self.finish_n(ftype, n)]

    def write(self, tx, ftype, n):
        """Frame and write to the stream tx (MicroPython: write(buf, len), no allocation)."""
        k = self.finish_n(ftype, n)
        if _MP:
            tx.write(self._out, k)
        else:
            tx.write(bytes(self._omv[:k]))
        return k

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
    the next 0x00. Sequence gaps are counted per direction of travel (frames seen after a jump).
    break_in turns True when a frame starts with CR, Ctrl-C (mpremote's "\\r\\x03"): never the
    start of a valid frame, whose second byte is always the version 0x01."""

    def __init__(self, max_body=MAX_BODY):
        self._raw = bytearray(max_body + max_body // 254 + 2)
        self._body = bytearray(max_body)
        self._n = 0
        self._overflow = False
        self.good = 0
        self.bad = 0
        self.gaps = 0
        self.lost = 0            # frames missing according to the sequence numbers
        self.repeats = 0         # frames whose number went back (duplicates, sender restarts)
        self.break_in = False
        self.other_version = 0   # version byte of the last CRC-valid frame of another protocol
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
            n = self._n
            if n < len(self._raw):
                if n == 1 and b == 3 and self._raw[0] == 13:
                    self.break_in = True
                self._raw[n] = b
                self._n = n + 1
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
        if not _crc_ok(b, 0, end):
            self.bad += 1
            return None
        if b[0] != VERSION:          # a sound frame of another protocol version: say which
            self.other_version = b[0]
            self.bad += 1
            return None
        seq = b[2] | (b[3] << 8)
        if self._last_seq >= 0 and seq != (self._last_seq + 1) & 0xFFFF:
            d = (seq - self._last_seq - 1) & 0xFFFF
            if d < 0x8000:
                self.gaps += 1
                self.lost += d           # frames skipped forward: missing
            else:
                self.repeats += 1        # the same or an earlier number: a repeated frame or
                # a restarted sender, not 65 535 lost frames
        self._last_seq = seq
        self.good += 1
        return b[1], seq, bytes(b[HEADER:end])


def pack_samples(payload, first, rate, n):
    """Write the batch header of a T_SAMPLES / T_RAW payload; returns its length.
    first = the device's sample counter at the batch's first sample (wraps at 2**32)."""
    if first < 0 or first >> 30:          # a small int (< 2**30) needs no mask: & 0xFFFFFFFF
        first &= 0xFFFFFFFF               # would make a big-int temporary on the 32-bit port
    struct.pack_into("<IHH", payload, 0, first, rate, n)
    return SAMPLE_HDR


def pack_gap(payload, first, n, cause):
    """T_GAP payload: n samples from counter `first` (wire u32) are missing; returns length.
    Allocation-free on the device (first may be given as a wrapped small int)."""
    if first < 0 or first >> 30:
        first &= 0xFFFFFFFF
    if n < 0 or n >> 30:
        n &= 0xFFFFFFFF
    struct.pack_into("<IIB", payload, 0, first, n, cause)
    return GAP_BYTES



# Commands (T_CMD payload byte 0). Patient level: no key needed.
C_INFO = const(1)
C_TIME = const(2)            # {"t": unix seconds}
C_STREAM = const(3)          # {"mode": "cal"|"raw"|"off"}
C_LOG = const(4)             # {"since": seq, "max": bytes}: T_LOG chunks, then the response
C_ACK = const(5)             # acknowledge the sounding alarm
C_CONFIG = const(6)          # get config
C_STATUS = const(7)
C_REPL = const(8)            # refused since issue 12: maintenance is C_MAINT (signed) or physical
C_EXERCISE = const(9)        # {"action": "start"|"stop"}: the patient's exercise session
C_HEALTH = const(0x0C)       # supervisor: reset cause, self-test, technical alarms, battery, clock
# Prosthetist level (authenticated, see docs/protocol.md):
C_SET = const(0x20)          # set limits / phase / profile
C_CALIB = const(0x21)        # write calibration
C_RETIGHTEN = const(0x22)    # record a retightening
C_PLAN = const(0x23)         # exercise plan
C_WIPE = const(0x24)         # wipe the log
C_TARE = const(0x25)
C_MAINT = const(0x26)        # {"seconds": n}: release the port to the REPL for at most n s (then reset)
C_CLOCK = const(0x27)        # {"t": unix s}: set the clock without the patient-level bound
C_REKEY = const(0x28)        # {"key": hex(new key XOR rekey_pad)}: replace the device key
C_REPROVISION = const(0x29)  # {"confirm": "reprovision"}: a fresh Phase I config after a lost one
AUTH_MIN = const(0x20)       # commands >= AUTH_MIN need the auth header

CMD_NAMES = {C_INFO: "info", C_TIME: "time", C_STREAM: "stream", C_LOG: "log", C_ACK: "ack",
             C_CONFIG: "config", C_STATUS: "status", C_REPL: "repl", C_SET: "set",
             C_CALIB: "calib", C_RETIGHTEN: "retighten", C_PLAN: "plan", C_WIPE: "wipe",
             C_TARE: "tare", C_EXERCISE: "exercise", C_HEALTH: "health", C_MAINT: "maintenance", C_CLOCK: "clock",
             C_REKEY: "rekey", C_REPROVISION: "reprovision"}

# Response status codes (T_RESP payload byte 1)
S_OK = const(0)
S_BAD_REQUEST = const(1)
S_UNKNOWN = const(2)
S_AUTH = const(3)
S_REPLAY = const(4)
S_RANGE = const(5)
S_BUSY = const(6)
S_ERROR = const(7)

# --- authenticated commands -------------------------------------------------------------------
# T_CMD payload of a prosthetist command: cmd u8 | counter u32 LE | mac 32 bytes | JSON args
# mac = HMAC-SHA256(key, auth_message(device_id, counter, cmd, args)), key 32 bytes.
AUTH_HDR = const(36)
MAC_LEN = const(32)
KEY_LEN = const(32)
NONCE_LEN = const(8)         # the device's command window (C_INFO "nonce", hex): docs/security.md
MAINT_MAX_S = const(900)     # longest maintenance window C_MAINT grants
TIME_STEP_S = const(300)     # patient-level C_TIME: at most this far from the device clock
COUNTER_JUMP_MAX = const(1000000)   # the host follows a device counter at most this far ahead


def auth_message(device_id, counter, cmd, args, nonce=b""):
    """The bytes the MAC covers: "oimon-cmd2" | len(device_id) u8 | device_id (utf-8) |
    nonce (NONCE_LEN bytes: the device's current command window) | counter u32 LE | cmd u8 |
    args."""
    d = device_id.encode() if isinstance(device_id, str) else bytes(device_id)
    return b"oimon-cmd2" + bytes((len(d),)) + d + bytes(nonce) \
        + struct.pack("<IB", counter & 0xFFFFFFFF, cmd) + bytes(args)


def rekey_pad(old_key, nonce, counter):
    """32 bytes XORed over a new key in C_REKEY: SHA-256 of the old key, the domain string, the
    nonce and the counter (only the holder of the old key can recover the new one)."""
    import hashlib
    h = hashlib.sha256(bytes(old_key))
    h.update(b"oimon-rekey1" + bytes(nonce) + struct.pack("<I", counter & 0xFFFFFFFF))
    return h.digest()


# --- device log records (docs/device-log.md) ---------------------------------------------------
# magic u8 0x6F | kind u8 | len u16 | seq u32 | t u32 (unix s, 0 = clock unset) | payload[len]
# | crc32 u32 over magic..payload. All little-endian.
REC_MAGIC = const(0x6F)
REC_HDR = const(12)
REC_TRL = const(4)
REC_MAX_PAYLOAD = const(20000)  # the device's reader window (20 KB) holds the largest
K_EVENT = const(1)
K_SUMMARY = const(2)
K_ALARM = const(3)
K_CONFIG = const(4)
K_CALIB = const(5)
K_RETIGHTEN = const(6)
K_SECURITY = const(7)
K_GAP = const(8)                # samples lost in acquisition: {"first": n, "lost": k} (JSON)
_K_CORE_LAST = const(8)         # kinds 1..8 (8: the acquisition gap record, issue 11)
K_BOOT = const(12)              # boot: reset cause, self-test results (firmware/supervisor.py)
K_TECH = const(13)              # technical alarm raised/cleared, crash (exception) before a reset
K_SNIPPET = const(14)           # an event's samples: ev_seq u32 | prio u8 | snippet (below)
K_LOST = const(15)              # records the device could not keep: {"lost","from","to",...}
KIND_MAX = const(15)            # kinds 9..11 are unused (reserved)
KIND_NAMES = {K_EVENT: "event", K_SUMMARY: "summary", K_ALARM: "alarm", K_CONFIG: "config",
              K_CALIB: "calibration", K_RETIGHTEN: "retightening", K_SECURITY: "security",
              K_GAP: "gap", K_BOOT: "boot", K_TECH: "technical", K_SNIPPET: "snippet",
              K_LOST: "lost"}


def _crc_ok(b, start, end):
    # the CRC-32 of b[start:end] equals the u32 LE at b[end:end+4]
    if _MP:
        crc_start()                  # no view, no big int on the device
        crc_feed(b, start, end)
        return crc_match(b, end)
    c = b[end] | (b[end + 1] << 8) | (b[end + 2] << 16) | (b[end + 3] << 24)
    return c == (crc32(memoryview(b)[start:end]) & 0xFFFFFFFF)


def rec_check(buf, off, n):
    """Is there a valid record at buf[off:n]? Returns its total length, 0 if buf ends inside a
    plausible record (need more bytes), -1 if the bytes at off are not a valid record."""
    if n - off < REC_HDR + REC_TRL:
        return 0 if buf[off] == REC_MAGIC or n == off else -1
    k = buf[off + 1]
    if buf[off] != REC_MAGIC or k == 0 or k > KIND_MAX or (_K_CORE_LAST < k < K_BOOT):
        return -1
    ln = buf[off + 2] | (buf[off + 3] << 8)
    if ln > REC_MAX_PAYLOAD:
        return -1
    end = off + REC_HDR + ln
    if end + REC_TRL > n:
        return 0
    if not _crc_ok(buf, off, end):
        return -1
    return REC_HDR + ln + REC_TRL


def rec_fields(buf, off):
    """(kind, seq, t, payload_offset, payload_len) of a record already checked."""
    kind = buf[off + 1]
    ln = buf[off + 2] | (buf[off + 3] << 8)
    seq, t = struct.unpack_from("<II", buf, off + 4)
    return kind, seq, t, off + REC_HDR, ln



# Event record payload: head_len u16 | head (JSON) | [snippet]
# snippet: rate u16 | pre u16 (samples before the trigger) | n u16 | enc u8 | data
#   enc 0: n x 3 x i16 LE; enc 1 (delta): per value one byte signed delta to the previous value
#   of the same channel (-127..127), or 0x80 followed by the absolute value as i16 LE.
#   Values are in wire units (axial 0.2 N, moments 0.01 N*m), previous values start at 0.
SNIP_HDR = const(7)


