# oimon calibration: offsets (tare) and the 3x3 gain matrix in fixed point, stored in a
# versioned file with a CRC32. Runs on the device (MicroPython) and on the host (CPython, as
# oimon_common.calib). Specification: docs/algorithm.md, section "Calibration".
#
# Calibrated channel c (0 axial 0.1 N, 1 moment AP 0.01 N*m, 2 moment ML 0.01 N*m):
#   d_j = clamp(raw_j - offsets[j], -(2^23 - 1), 2^23 - 1)              j = 0, 1, 2
#   x_c = round(sum_j matrix[3c + j] * d_j / 2^shifts[c])   (split 12-bit products, dsp.py)
# matrix entries: |m| <= 2^18 - 1, units per count in Q(shifts[c]), 13 <= shifts[c] <= 30.
#
# File (little-endian, 76 bytes):
#   0  4s  magic b"OICL"          4  u16 format (1)           6  u16 payload length (64)
#   8  u32 version (calibration revision, set by the jig)    12 u32 date (unix seconds)
#   16 4 x i32 offsets (raw counts, channels 0..3)            32 9 x i32 matrix (row-major)
#   68 3 x u8 shifts, u8 reserved (0)                          72 u32 crc32 of bytes 0..71
import struct
import binascii
import os

MAGIC = b"OICL"
FORMAT = 1
_PAYLOAD = "<II4i9i3BB"
_PAYLOAD_LEN = 64
FILE_LEN = 76
M_MAX = (1 << 18) - 1
SHIFT_MIN = 13
SHIFT_MAX = 30
OFFSET_MAX = 1 << 22      # a tare beyond half of the ADC range means a broken bridge

# why the last load() returned None: "" (loaded), "missing", "short", "magic", "format",
# "crc", "range"
last_error = "missing"


class Calibration:
    """offsets: 4 raw counts; matrix: 9 ints (row-major, row c in Q(shifts[c]) units/count);
    shifts: 3 ints; version: calibration revision; date: unix seconds."""

    def __init__(self, offsets=None, matrix=None, shifts=None, version=0, date=0):
        self.offsets = list(offsets) if offsets is not None else [0, 0, 0, 0]
        self.matrix = list(matrix) if matrix is not None else [0] * 9
        self.shifts = list(shifts) if shifts is not None else [24, 24, 24]
        self.version = int(version)
        self.date = int(date)

    def check(self):
        """'' if the values are in range, else the reason."""
        if len(self.offsets) != 4 or len(self.matrix) != 9 or len(self.shifts) != 3:
            return "range"
        for o in self.offsets:
            if not -OFFSET_MAX <= o <= OFFSET_MAX:
                return "range"
        for m in self.matrix:
            if not -M_MAX <= m <= M_MAX:
                return "range"
        for s in self.shifts:
            if not SHIFT_MIN <= s <= SHIFT_MAX:
                return "range"
        if not 0 <= self.version <= 0xFFFFFFFF or not 0 <= self.date <= 0xFFFFFFFF:
            return "range"
        return ""

    def pack(self):
        body = struct.pack(_PAYLOAD, self.version, self.date, *(list(self.offsets)
                           + list(self.matrix) + list(self.shifts) + [0]))
        head = MAGIC + struct.pack("<HH", FORMAT, _PAYLOAD_LEN) + body
        return head + struct.pack("<I", binascii.crc32(head) & 0xFFFFFFFF)

    @classmethod
    def from_gains(cls, gains, offsets=(0, 0, 0, 0), version=0, date=0):
        """gains: 3x3 floats, calibrated units per raw count (row = output channel).
        Picks per row the largest shift that keeps |m| <= 2^18 - 1 (host or jig use)."""
        matrix, shifts = [], []
        for c in range(3):
            row = [float(g) for g in gains[c]]
            big = max(abs(g) for g in row)
            s = SHIFT_MAX
            while s > SHIFT_MIN and big * (1 << s) > M_MAX:
                s -= 1
            shifts.append(s)
            matrix.extend(int(round(g * (1 << s))) for g in row)
        cal = cls(offsets, matrix, shifts, version, date)
        err = cal.check()
        if err:
            raise ValueError("calibration out of range: " + err)
        return cal

    def gains(self):
        """The matrix back as floats (units per count)."""
        return [[self.matrix[3 * c + j] / (1 << self.shifts[c]) for j in range(3)]
                for c in range(3)]

    def __eq__(self, other):
        return isinstance(other, Calibration) and self.pack() == other.pack()

    def __repr__(self):
        return "Calibration(offsets=%r, matrix=%r, shifts=%r, version=%d, date=%d)" % (
            self.offsets, self.matrix, self.shifts, self.version, self.date)


def unpack(data):
    """Calibration from file bytes, or None (module `last_error` says why)."""
    global last_error
    if len(data) < FILE_LEN:
        last_error = "short"
        return None
    if data[0:4] != MAGIC:
        last_error = "magic"
        return None
    fmt, plen = struct.unpack("<HH", data[4:8])
    if fmt != FORMAT or plen != _PAYLOAD_LEN:
        last_error = "format"
        return None
    crc = struct.unpack("<I", data[72:76])[0]
    if binascii.crc32(data[0:72]) & 0xFFFFFFFF != crc:
        last_error = "crc"
        return None
    v = struct.unpack(_PAYLOAD, data[8:72])
    cal = Calibration(v[2:6], v[6:15], v[15:18], v[0], v[1])
    err = cal.check()
    if err:
        last_error = err
        return None
    last_error = ""
    return cal


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read(FILE_LEN + 1)
    except OSError:
        return None


def load(path):
    """Calibration from `path`, or None if it is missing, short, corrupt or out of range: the
    device then stays uncalibrated (dsp.Pipeline(None)) and detection is marked invalid."""
    global last_error
    data = _read(path)
    if data is None:
        data = _read(path + ".tmp")   # a save() interrupted after removing the old file
    if data is None:
        last_error = "missing"
        return None
    if len(data) != FILE_LEN:
        last_error = "short" if len(data) < FILE_LEN else "format"
        return None
    return unpack(data)


def save(path, cal):
    """Write atomically: a temporary file, then rename over `path`."""
    err = cal.check()
    if err:
        raise ValueError("calibration out of range: " + err)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(cal.pack())
    try:
        os.rename(tmp, path)          # atomic replace (POSIX, littlefs)
    except OSError:                   # file systems that refuse to replace: remove first;
        try:                          # a power cut in between leaves `path`.tmp, which
            os.remove(path)           # load() falls back to
        except OSError:
            pass
        os.rename(tmp, path)
