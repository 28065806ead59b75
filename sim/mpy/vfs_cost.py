# littlefs on the board's SPI NOR as the virtual clock sees it (docs/timing-model.md, "flash"):
# a file system for firmware/flashlog.py (its `fs` argument) that stores files on the host and
# charges each flush what littlefs makes the flash do: the appended bytes programmed page by
# page, an erase of each new 4 KB block the file grows into (littlefs erases a block when it
# allocates it), and a metadata commit; removing a file is a metadata commit. The stall goes
# through hal.flash_cost, so the cache-off halt stops the interpreter and DRDY handlers.
import os
import hal


class _CostFile:
    def __init__(self, f, size):
        self._f = f
        self._size = size          # file size at the last flush
        self._pend = 0             # bytes written since

    def write(self, b):
        n = self._f.write(b)
        self._pend += n
        return n

    def flush(self):
        self._f.flush()
        n = self._pend
        if n:
            old = self._size
            new = old + n
            blocks = (new + 4095) // 4096 - (old + 4095) // 4096
            if blocks > 0:
                hal.flash_cost("erase", 4096 * blocks)
            hal.flash_cost("prog", n)
            hal.flash_cost("sync")
            self._size = new
            self._pend = 0

    def close(self):
        self.flush()
        self._f.close()

    def read(self, *a):
        return self._f.read(*a)

    def readinto(self, *a):
        return self._f.readinto(*a)

    def seek(self, *a):
        return self._f.seek(*a)

    def tell(self):
        return self._f.tell()


class CostFS:
    # flashlog's file-system interface (PosixFs): open, listdir, mkdir, remove, size
    def listdir(self, path):
        return os.listdir(path)

    def mkdir(self, path):
        os.mkdir(path)

    def size(self, path):
        return os.stat(path)[6]

    def open(self, path, mode):
        f = open(path, mode)
        if "r" in mode and "+" not in mode:
            return f
        size = 0
        if "a" in mode:
            try:
                size = self.size(path)
            except OSError:
                size = 0
        return _CostFile(f, size)

    def remove(self, path):
        os.remove(path)
        hal.flash_cost("sync")
