# Storage double for the device log's power-cut tests (MicroPython and CPython): a RAM "flash"
# with the filesystem interface flashlog.Log uses (open/listdir/mkdir/remove/size), which cuts
# the power after a random number of bytes or operations, in the spirit of littlefs's emulated
# block device with power cycles, but harsher than littlefs itself:
#   - written data is volatile until flush(); a cut inside write() or flush() keeps a random
#     prefix of the unflushed bytes (and sometimes 1..32 bytes of junk or erased 0xFF after
#     it: a half-programmed page), then raises PowerCut;
#   - costs: a byte written 1 unit, a flush 64, an open/remove 16; arm(n) cuts after n units;
#   - a cut at open("wb")/remove() happens before or after the operation, at random.
# After PowerCut the test "reboots": fs.reboot() forgets open files, arm() sets the next cut.


class PowerCut(Exception):
    pass


class Rng:
    """xorshift32: the same sequence on MicroPython and CPython."""

    def __init__(self, seed=1):
        self.s = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1

    def next(self):
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self.s = s
        return s

    def below(self, n):
        return self.next() % n if n > 0 else 0

    def bytes(self, n):
        b = bytearray(n)
        for i in range(n):
            b[i] = self.next() & 0xFF
        return b


class _File:
    def __init__(self, fs, path, mode):
        self.fs = fs
        self.path = path
        self.mode = mode
        self.pos = 0
        self.pending = bytearray()
        self.closed = False

    def write(self, buf, n=None):
        fs = self.fs
        fs._alive()
        data = bytes(buf) if n is None else bytes(buf[:n])
        if fs.left >= 0 and len(data) >= fs.left:
            keep = data[:fs.left]
            self.pending += keep
            fs._cut(self)
        if fs.left >= 0:
            fs.left -= len(data)
        self.pending += data
        return len(data)

    def flush(self):
        fs = self.fs
        fs._alive()
        if fs.left >= 0:
            if fs.left < 64:                 # a flush costs 64 units (programming the page)
                fs._cut(self)
            fs.left -= 64
        fs.files[self.path] += self.pending
        self.pending = bytearray()

    def readinto(self, buf):
        self.fs._alive()
        data = self.fs.files[self.path]
        n = min(len(buf), len(data) - self.pos)
        if n <= 0:
            return 0
        buf[0:n] = data[self.pos:self.pos + n]
        self.pos += n
        return n

    def read(self, n=-1):
        data = self.fs.files[self.path]
        if n < 0:
            n = len(data) - self.pos
        out = bytes(data[self.pos:self.pos + n])
        self.pos += len(out)
        return out

    def close(self):
        if not self.closed and "b" in self.mode and self.mode[0] in "wa":
            self.flush()                   # close() commits like littlefs's close/sync
        self.closed = True
        if self in self.fs.handles:
            self.fs.handles.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class CutFs:
    def __init__(self, rng):
        self.rng = rng
        self.files = {}
        self.dirs = set()
        self.handles = []
        self.left = -1           # bytes/operations until the cut; -1 = never
        self.dead = False
        self.cuts = 0
        self.removed = []        # contents of removed files (what rotation dropped)
        self.ops = 0

    def arm(self, n):
        self.left = n

    def disarm(self):
        self.left = -1

    def reboot(self):
        self.handles = []
        self.dead = False

    def _alive(self):
        if self.dead:
            raise OSError(5)     # EIO: the power is off

    def _cut(self, f=None):
        r = self.rng
        if f is not None and f.pending:
            keep = r.below(len(f.pending) + 1)
            tail = bytes(f.pending[:keep])
            z = r.below(8)
            if z == 0:
                tail += r.bytes(1 + r.below(32))
            elif z == 1:
                tail += b"\xff" * (1 + r.below(32))
            self.files[f.path] += tail
        self.dead = True
        self.left = -1
        self.cuts += 1
        raise PowerCut()

    def _op(self):
        self._alive()
        self.ops += 1
        if self.left >= 0:
            if self.left < 16:   # an open/remove costs 16 units
                return True      # cut at this operation
            self.left -= 16
        return False

    def open(self, path, mode):
        if "r" in mode:
            self._alive()
            if path not in self.files:
                raise OSError(2)
            f = _File(self, path, mode)
            return f
        cut = self._op()
        if cut and self.rng.below(2):
            self._cut()
        if "w" in mode or path not in self.files:
            self.files[path] = bytearray()
        if cut:
            self._cut()
        f = _File(self, path, mode)
        self.handles.append(f)
        return f

    def listdir(self, path):
        self._alive()
        pre = path.rstrip("/") + "/"
        return [p[len(pre):] for p in self.files if p.startswith(pre) and "/" not in p[len(pre):]]

    def mkdir(self, path):
        self._alive()
        if path in self.dirs:
            raise OSError(17)
        self.dirs.add(path)

    def remove(self, path):
        cut = self._op()
        if cut and self.rng.below(2):
            self._cut()
        if path not in self.files:
            raise OSError(2)
        self.removed.append(bytes(self.files.pop(path)))
        if cut:
            self._cut()

    def size(self, path):
        self._alive()
        if path not in self.files:
            raise OSError(2)
        return len(self.files[path])
