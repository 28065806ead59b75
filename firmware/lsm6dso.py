# ST LSM6DSO32 driver: 6-axis IMU (accelerometer +-32 g, gyroscope +-2000 dps) on I2C, read in
# batches from its hardware FIFO so that the main loop may stall (flash erase, GC) for up to
# 2 s without losing a sample (docs/algorithm.md 5.7, hardware/README.md "IMU").
#
# Configuration: CTRL3_C BDU | IF_INC; CTRL1_XL ODR 104 Hz, FS +-32 g (0.976 mg/LSB);
# CTRL2_G ODR 104 Hz, FS 2000 dps (70 mdps/LSB); FIFO_CTRL3 BDR_XL = BDR_GY = 104 Hz;
# FIFO_CTRL4 continuous mode. FIFO words are 7 bytes (tag, X/Y/Z little-endian int16); tag
# bits 7:3 = 0x01 gyroscope, 0x02 accelerometer. FIFO_STATUS1/2: DIFF_FIFO (10 bits, words
# waiting), FIFO_OVR_IA (bit 6 of STATUS2: words were overwritten -> a gap).
#
# IO (the I2C bus and address) is LSM6DSOIO; the logic is LSM6DSO, so the tests drive the same
# logic through a fake part (tests/firmware/shims/fake_lsm6dso.py). Nothing allocates per
# sample: the FIFO is read into one pre-allocated buffer and decoded by a viper kernel into
# rows (t, ax, ay, az mg, gx, gy, gz 0.1 dps, flags) of a pre-allocated array('i').
import micropython
from micropython import const
from array import array

_WHO_AM_I = const(0x0F)
_ID = const(0x6C)
_CTRL1_XL = const(0x10)
_CTRL2_G = const(0x11)
_CTRL3_C = const(0x12)
_FIFO_CTRL3 = const(0x09)
_FIFO_CTRL4 = const(0x0A)
_FIFO_STATUS1 = const(0x3A)
_FIFO_TAG = const(0x78)
_XL_104_32G = const(0x44)      # ODR_XL 0100 = 104 Hz, FS_XL 01 = +-32 g (LSM6DSO32)
_G_104_2000 = const(0x4C)      # ODR_G 0100 = 104 Hz, FS_G 11 = 2000 dps
_BDR_104 = const(0x44)
_FIFO_CONT = const(0x06)
_BDU_INC = const(0x44)
_SW_RESET = const(0x01)

RATE = 104
PERIOD_Q8 = const(2462)        # 1000 / 104 load samples (ms), Q8
MAXROWS = const(256)           # rows per read: 2.46 s at 104 Hz (the FIFO holds 2.1 s)
_MAXWORDS = const(512)
_CHUNK = const(4)         # 4 words = 28 B: ~0.7 ms at 400 kHz, below the ADC's 2 ms buffer
NODATA_MS = const(100)         # no sample for this long: the IMU is stale (no data)

IF_GAP = const(1)
IF_NOGYRO = const(2)


class LSM6DSOIO:
    """The part on an I2C bus (machine.I2C or SoftI2C) at addr (0x6A SDO low, 0x6B high)."""

    def __init__(self, i2c, addr=0x6A):
        self.i2c = i2c
        self.addr = addr
        self._one = bytearray(1)

    def read(self, reg, buf):
        self.i2c.readfrom_mem_into(self.addr, reg, buf)

    def write(self, reg, val):
        self._one[0] = val
        self.i2c.writeto_mem(self.addr, reg, self._one)


@micropython.viper
def _decode(buf: ptr8, nw: int, rows: ptr32, st: ptr32) -> int:
    # FIFO words -> rows from row st[5] on. st: [0] last gyro x, [1] y, [2] z, [3] have gyro,
    # [4] pending gap flag. A row per accelerometer word with the latest gyroscope word; returns
    # the rows written.
    k = st[5]
    k0 = k
    i = 0
    while i < nw:
        p = 7 * i
        tag = buf[p] >> 3
        x = buf[p + 1] | (buf[p + 2] << 8)
        y = buf[p + 3] | (buf[p + 4] << 8)
        z = buf[p + 5] | (buf[p + 6] << 8)
        if x & 0x8000:
            x -= 0x10000
        if y & 0x8000:
            y -= 0x10000
        if z & 0x8000:
            z -= 0x10000
        if tag == 1:
            st[0] = (x * 7) // 10          # 70 mdps/LSB -> 0.1 dps
            st[1] = (y * 7) // 10
            st[2] = (z * 7) // 10
            st[3] = 1
        elif tag == 2:
            r = 8 * k
            rows[r + 1] = (x * 1000) >> 10      # 0.976 mg/LSB -> mg
            rows[r + 2] = (y * 1000) >> 10
            rows[r + 3] = (z * 1000) >> 10
            rows[r + 4] = st[0]
            rows[r + 5] = st[1]
            rows[r + 6] = st[2]
            f = st[4]
            if st[3] == 0:
                f |= IF_NOGYRO
            rows[r + 7] = f
            st[4] = 0
            k += 1
        i += 1
    return k - k0


@micropython.viper
def _stamp(rows: ptr32, k: int, clk: ptr32):
    # timestamps: the newest row gets n = clk[0] - 1 (clk = the load detector's st: st[0] is the
    # number of the next load sample, so this is the latest one), the others a period back each
    n = clk[0] - 1
    i = 0
    while i < k:
        rows[8 * i] = n - (((k - 1 - i) * PERIOD_Q8) >> 8)
        i += 1


@micropython.viper
def _copy_row(rows: ptr32, i: int, row: ptr32):
    j = 0
    b = 8 * i
    while j < 8:
        row[j] = rows[b + j]
        j += 1


class LSM6DSO:
    """The IMU behind the batch interface the app uses:
    `read(clk)` takes every sample waiting in the FIFO into `rows` (returns how many), stamping
    the newest with clk[0] - 1 (clk = detect.Detector.st, whose word 0 counts the load samples:
    read as a machine word, so no big integer after 2^30 samples); `row(i, dst)` copies row i into an 8-word
    array. Counters: `samples`, `overruns` (FIFO overflows, each marks IF_GAP on the next row),
    `errors` (bus errors). `stale(now_ms)` is True after NODATA_MS without a sample."""

    RATE = RATE

    def __init__(self, io, ticks_ms=None):
        self.io = io
        self.ticks_ms = ticks_ms
        self.rows = array("i", [0] * (8 * MAXROWS))
        self._b16 = bytearray(7 * _CHUNK)     # FIFO read in 4-word transfers, then single words
        self._b1 = bytearray(7)
        self._st2 = bytearray(2)
        self._ds = array("i", [0] * 8)        # decoder state
        self.samples = 0                      # wraps at 2^30 (a small int: no allocation)
        self.overruns = 0
        self.errors = 0
        self.ok = False
        self._last = 0

    def begin(self):
        """Reset and configure; True if the part answered with its ID."""
        io = self.io
        try:
            io.read(_WHO_AM_I, self._b1)
            if self._b1[0] != _ID:
                self.ok = False
                return False
            io.write(_CTRL3_C, _SW_RESET)
            io.write(_CTRL3_C, _BDU_INC)
            io.write(_CTRL1_XL, _XL_104_32G)
            io.write(_CTRL2_G, _G_104_2000)
            io.write(_FIFO_CTRL3, _BDR_104)
            io.write(_FIFO_CTRL4, _FIFO_CONT)
        except OSError:
            self.errors += 1
            self.ok = False
            return False
        self.ok = True
        if self.ticks_ms is not None:
            self._last = self.ticks_ms()
        return True

    def read(self, clk):
        """Every waiting sample into self.rows, the newest stamped clk[0] - 1; returns the count."""
        if not self.ok:
            return 0
        try:
            self.io.read(_FIFO_STATUS1, self._st2)
            s2 = self._st2[1]
            nw = self._st2[0] | ((s2 & 3) << 8)
            if s2 & 0x40:                     # FIFO_OVR_IA: older words were overwritten
                self.overruns += 1
                self._ds[4] = IF_GAP
            if nw > _MAXWORDS:
                nw = _MAXWORDS
            if nw == 0:
                return 0
            # reading on from FIFO_DATA_OUT_TAG, the address rolls back from 0x7E to 0x78, so a
            # transfer of 7 m bytes is m words (ST AN5192, FIFO reading)
            ds = self._ds
            ds[5] = 0
            while nw >= _CHUNK:
                self.io.read(_FIFO_TAG, self._b16)
                ds[5] += _decode(self._b16, _CHUNK, self.rows, ds)
                nw -= _CHUNK
            while nw > 0:
                self.io.read(_FIFO_TAG, self._b1)
                ds[5] += _decode(self._b1, 1, self.rows, ds)
                nw -= 1
        except OSError:
            self.errors += 1
            self._ds[4] = IF_GAP
            self._ds[5] = 0
            return 0
        k = self._ds[5]
        if k:
            _stamp(self.rows, k, clk)
            self.samples = (self.samples + k) & 0x3FFFFFFF
            if self.ticks_ms is not None:
                self._last = self.ticks_ms()
        return k

    def row(self, i, dst):
        _copy_row(self.rows, i, dst)

    def stale(self, now_ms):
        """True if no sample arrived for NODATA_MS (the part stopped, or the bus failed)."""
        if not self.ok:
            return True
        d = now_ms - self._last
        if d < 0:
            d += 1 << 30                       # ticks_ms wraps at 2^30 on the ports
        return d >= NODATA_MS
