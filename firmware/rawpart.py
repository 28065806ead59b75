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
BLOCK = 4096


class FilePartition:
    def __init__(self, path, blocks):
        self.path = path
        self.blocks = blocks
        self._f = None
        self._size = 0
        self._ff = None

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
        return self._f

    def readblocks(self, n, buf, off=0):
        f = self._file()
        a = n * BLOCK + off
        ln = len(buf)
        if a + ln > self.blocks * BLOCK or n < 0 or off < 0:
            raise OSError(22)
        have = self._size - a
        mv = memoryview(buf)
        if have > 0:
            f.seek(a)
            k = f.readinto(mv[:min(have, ln)]) or 0
        else:
            k = 0
        i = k
        while i < ln:
            buf[i] = 0xFF
            i += 1

    def _extend(self, end):
        f = self._f
        if end <= self._size:
            return
        if self._ff is None:
            self._ff = b"\xff" * 256
        f.seek(self._size)
        while self._size < end:
            k = min(256, end - self._size)
            f.write(self._ff[:k])
            self._size += k

    def writeblocks(self, n, buf, off=None):
        f = self._file()
        if off is None:
            k = 0
            while k * BLOCK < len(buf):
                self.ioctl(6, n + k)
                k += 1
            off = 0
        a = n * BLOCK + off
        ln = len(buf)
        if a + ln > self.blocks * BLOCK or n < 0 or off < 0:
            raise OSError(22)
        old = bytearray(ln)
        self.readblocks(n, old, off)
        i = 0
        while i < ln:
            old[i] &= buf[i]
            i += 1
        self._extend(a)
        f.seek(a)
        f.write(old)
        if a + ln > self._size:
            self._size = a + ln
        f.flush()

    def ioctl(self, op, arg):
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
                if self._ff is None:
                    self._ff = b"\xff" * 256
                f.seek(a)
                k = min(BLOCK, self._size - a)
                while k > 0:
                    m = min(256, k)
                    f.write(self._ff[:m])
                    k -= m
                f.flush()
            return 0
        if op in (1, 2, 3):
            return 0
        return None

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None
