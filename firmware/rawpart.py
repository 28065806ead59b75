# A file that behaves like the ESP32 port's esp32.Partition block device (docs/device-log.md):
# the unix side's log partition (sim, virtual device, firmware tests) and the fallback on a
# board whose partition table has no "oimonlog" partition (then the file is on littlefs).
#
# The interface is esp32.Partition's (ports/esp32/esp32_partition.c, the extended block
# protocol): 4096-byte blocks;
#   readblocks(n, buf, off=0)     read len(buf) bytes at block n + off
#   writeblocks(n, buf, off)      program len(buf) bytes at block n + off WITHOUT erasing
#                                 (esp_partition_write: NOR semantics, bits only go 1 -> 0)
#   writeblocks(n, buf)           erase the blocks, then program (the 3-argument form)
#   ioctl(4, 0) block count, ioctl(5, 0) block size, ioctl(6, n) erase block n (all 0xFF)
# Programming ANDs the new bytes into the old ones as NOR flash does, so a test or a bug that
# programs a byte twice sees what the chip would return. Bytes past the end of the file read as
# erased (0xFF): a fresh partition is an empty (or missing) file.
import micropython

BLOCK = 4096

# Under the unix timing model (sim/mpy/vclock.py, OIMON_VCLOCK=1) this file stands for the
# board's esp32.Partition, which is C: its own Python time is not firmware time. Each call is
# bracketed by a check point (the firmware's time so far is charged) and leave() (what this
# double did is not); the flash time itself the log charges with hal.flash_cost.
_tick = _leave = None
try:
    import hal as _hal
    _vc = getattr(_hal, "vclock", None) if getattr(_hal, "VIRTUAL", 0) else None
    if _vc is not None:                  # the unix HAL's clock (hal re-exports hal_unix's names)
        _tick = _vc.CLOCK.tick
        _leave = _vc.CLOCK.leave
except ImportError:
    pass


@micropython.viper
def _fill_ff(buf, a: int, b: int):
    p = ptr8(buf)
    while a < b:
        p[a] = 0xFF
        a += 1


@micropython.viper
def _and(dst, src, n: int):
    d = ptr8(dst)
    s = ptr8(src)
    i = 0
    while i < n:
        d[i] = d[i] & s[i]
        i += 1


class FilePartition:
    """Allocation-free once warm (the board's esp32.Partition allocates nothing either, and the
    unix timing model charges the heap): scratch buffers and one memoryview per length."""

    def __init__(self, path, blocks):
        self.path = path
        self.blocks = blocks
        self._f = None
        self._size = 0
        self._ff = b"\xff" * 256
        self._old = bytearray(256)
        self._oldv = (memoryview(self._old), {})

    @staticmethod
    def _view(mvd, n):
        # memoryview(buf)[:n], made once per n
        v = mvd[1].get(n)
        if v is None:
            v = mvd[1][n] = mvd[0][:n]
        return v

    def _file(self):
        if self._f is None:
            try:
                self._f = open(self.path, "r+b")
            except OSError:
                f = open(self.path, "wb")
                f.close()
                self._f = open(self.path, "r+b")
            self._f.seek(0, 2)
            self._size = self._f.tell()
            if self._size % BLOCK:                 # (a file from elsewhere): whole blocks
                self._extend(self._size + 1)
        return self._f

    def _readblocks(self, n, buf, off=0):
        f = self._file()
        a = n * BLOCK + off
        ln = len(buf)
        if a + ln > self.blocks * BLOCK or n < 0 or off < 0:
            raise OSError(22)
        have = self._size - a
        k = 0
        if have > 0:
            f.seek(a)
            k = f.readinto(buf) or 0          # past the end of the file: fewer bytes
            if k > have:
                k = have
        if k < ln:
            _fill_ff(buf, k, ln)

    def warm(self):
        """Make every view the log's writes (<= 256 B) will need now (tests, heap_lock)."""
        for n in range(1, 257):
            self._view(self._oldv, n)

    def _extend(self, end):
        # grow the file to whole erased blocks past `end` (the file stays a multiple of BLOCK)
        f = self._f
        if end <= self._size:
            return
        f.seek(self._size)
        while self._size < end:
            f.write(self._ff)
            self._size += 256

    def _writeblocks(self, n, buf, off=None):
        f = self._file()
        if off is None:
            k = 0
            while k * BLOCK < len(buf):
                self._ioctl(6, n + k)
                k += 1
            off = 0
        a = n * BLOCK + off
        ln = len(buf)
        if a + ln > self.blocks * BLOCK or n < 0 or off < 0:
            raise OSError(22)
        if ln > 256:                               # (the log programs <= 256 B at a time)
            k = 0
            while k < ln:
                m = min(256, ln - k)
                self._writeblocks(n, memoryview(buf)[k:k + m], off + k)
                k += m
            return
        old = self._view(self._oldv, ln)
        self._readblocks(n, old, off)
        _and(old, buf, ln)
        self._extend(a + ln)
        f.seek(a)
        f.write(old)
        f.flush()

    def _ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return BLOCK
        if op == 6:
            if arg < 0 or arg >= self.blocks:
                raise OSError(22)
            f = self._file()
            a = arg * BLOCK
            if a < self._size:
                f.seek(a)
                k = 0
                while k < BLOCK:
                    f.write(self._ff)
                    k += 256
                f.flush()
            return 0
        if op in (1, 2, 3):
            return 0
        return None

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    def readblocks(self, n, buf, off=0):
        if _tick is None:
            return self._readblocks(n, buf, off)
        _tick()
        try:
            return self._readblocks(n, buf, off)
        finally:
            _leave()

    def writeblocks(self, n, buf, off=None):
        if _tick is None:
            return self._writeblocks(n, buf, off)
        _tick()
        try:
            return self._writeblocks(n, buf, off)
        finally:
            _leave()

    def ioctl(self, op, arg):
        if _tick is None:
            return self._ioctl(op, arg)
        _tick()
        try:
            return self._ioctl(op, arg)
        finally:
            _leave()
