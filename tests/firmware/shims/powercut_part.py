# Raw-partition double for the device log's power-cut tests (MicroPython and CPython): a RAM
# NOR flash with esp32.Partition's block interface (firmware/rawpart.py describes it), which
# cuts the power after a number of cost units, fails operations on request, and counts them.
#   - programming ANDs bytes in (bits only go 1 -> 0), erasing sets a 4 KB block to 0xFF;
#   - costs: a programmed byte 1 unit, a program operation 8, an erase 64, a read 0;
#   - a cut inside a program keeps a random prefix of the bytes and, sometimes, random bits
#     cleared in the rest of the piece (a half-programmed page); a cut inside an erase leaves
#     a random mix of erased and old bytes (a half-erased sector), sometimes only the first
#     ones erased; then PowerCut is raised and every later call raises OSError until reboot();
#   - fail_next(n, garble) makes the next n programs/erases raise OSError(EIO) (after writing a
#     random prefix when garble is set): a failing chip, not a power cut.
from powercut_fs import PowerCut, Rng  # noqa: F401  (re-exported)

BLOCK = 4096
_FF = b"\xff" * BLOCK


class CutPart:
    def __init__(self, rng, blocks=48):
        self.blocks = blocks
        self.mem = bytearray(blocks * BLOCK)
        self.reset(rng)

    def reset(self, rng):
        """A fresh (erased) partition, counters at 0 (tests reuse one: the heap is small)."""
        self.rng = rng
        for b in range(self.blocks):
            self.mem[b * BLOCK:(b + 1) * BLOCK] = _FF
        self.left = -1
        self.dead = False
        self.cuts = 0
        self.programs = 0
        self.erases = 0
        self.fails = 0
        self.garble = False
        self.failed = 0
        self.reads = 0
        self.read_bytes = 0

    def arm(self, n):
        self.left = n

    def disarm(self):
        self.left = -1

    def reboot(self):
        self.dead = False

    def fail_next(self, n, garble=False):
        self.fails = n
        self.garble = garble

    def _alive(self):
        if self.dead:
            raise OSError(5)

    def _cut(self):
        self.dead = True
        self.left = -1
        self.cuts += 1
        raise PowerCut()

    def readblocks(self, n, buf, off=0):
        self._alive()
        a = n * BLOCK + off
        ln = len(buf)
        if n < 0 or off < 0 or a + ln > len(self.mem):
            raise OSError(22)
        i = 0
        mem = self.mem
        while i < ln:               # (no slice: allocation-free like the board's partition)
            buf[i] = mem[a + i]
            i += 1
        self.reads += 1
        self.read_bytes += ln

    def writeblocks(self, n, buf, off=None):
        self._alive()
        if off is None:
            self.ioctl(6, n)
            off = 0
        a = n * BLOCK + off
        ln = len(buf)
        if n < 0 or off < 0 or a + ln > len(self.mem) or (off % BLOCK) + ln > BLOCK:
            raise OSError(22)
        data = buf                  # (not copied: allocation-free like the board's partition)
        r = self.rng
        if self.fails:
            self.fails -= 1
            self.failed += 1
            if self.garble:
                k = r.below(ln + 1)
                for i in range(k):
                    self.mem[a + i] &= r.next() & 0xFF
            raise OSError(5)
        cost = 8 + ln
        if self.left >= 0 and cost >= self.left:
            keep = r.below(ln + 1)
            for i in range(keep):
                self.mem[a + i] &= data[i]
            if r.below(3) == 0:
                for i in range(keep, ln):
                    self.mem[a + i] &= data[i] | (r.next() & 0xFF)
            self._cut()
        if self.left >= 0:
            self.left -= cost
        for i in range(ln):
            self.mem[a + i] &= data[i]
        self.programs += 1

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return BLOCK
        if op == 6:
            self._alive()
            if arg < 0 or arg >= self.blocks:
                raise OSError(22)
            a = arg * BLOCK
            r = self.rng
            if self.fails:
                self.fails -= 1
                self.failed += 1
                raise OSError(5)
            if self.left >= 0 and 64 >= self.left:
                z = r.below(3)
                if z == 0:
                    k = r.below(BLOCK)
                    self.mem[a:a + k] = b"\xff" * k
                elif z == 1:
                    for i in range(BLOCK):
                        if r.below(2):
                            self.mem[a + i] = 0xFF
                        else:
                            self.mem[a + i] |= r.next() & 0xFF
                self._cut()
            if self.left >= 0:
                self.left -= 64
            self.mem[a:a + BLOCK] = _FF
            self.erases += 1
            return 0
        return 0 if op in (1, 2, 3) else None
