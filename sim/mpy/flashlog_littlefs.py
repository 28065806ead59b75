# TODAY'S DESIGN BEFORE THE RAW-PARTITION LOG, kept only so that the timing model (issue 11) can
# show what it cost: the log on littlefs segment files, a write + flush per step (docs/device-log.md).
# Not firmware: the board runs firmware/flashlog.py. Unchanged below but for this header.
# Device log: append-only, power-loss-safe records in segment files on littlefs.
# Layout, budget and recovery: docs/device-log.md. Record layout: protocol.py (REC_*).
#
#   append() / event()   queue a record in RAM (never touches flash); returns its sequence number
#   service()            called between samples: does ONE bounded step (see _STEP below)
#   sync()               write everything queued now (commands, tests; not between samples)
#   read(since, fn)      every complete record with seq > since, oldest first; corrupt ones skipped
#
# A record is acknowledged (durable_seq) once the write that ends it has been flushed; a power
# cut never loses an acknowledged record. Boot recovery keeps every complete record: it scans the
# newest segment, takes the highest sequence number found, and starts a new segment when the old
# one ends in a torn tail (readers skip the torn bytes: the CRC and the resync scan reject them).
import os
import struct
from array import array
import micropython
from micropython import const
import hal
from oimon_common import protocol as P

K_EVENT = P.K_EVENT
K_SUMMARY = P.K_SUMMARY
K_ALARM = P.K_ALARM
K_CONFIG = P.K_CONFIG
K_CALIB = P.K_CALIB
K_RETIGHTEN = P.K_RETIGHTEN
K_SECURITY = P.K_SECURITY

SEG_SIZE = const(65536)        # a segment file is closed once it holds >= this many bytes
BUDGET = const(4194304)        # all segments together: 4 MiB of the ~6 MB filesystem of an 8 MB board
BLOCK = const(4096)            # one write: the flash's erase-block size
QUEUE = const(24576)           # RAM queue: the largest event record (<= 18.5 KB) plus headroom
QREC = const(256)              # records in the RAM queue at most
FLUSH_MS = const(2000)         # a queued record is written at the latest after this long
GAP_MS = const(50)             # at least this long between two writes (the ADC FIFO catches up)
WINDOW = const(20480)          # reader window: the largest record fits
_URGENT = (K_ALARM, K_CONFIG, K_CALIB, K_RETIGHTEN, K_SECURITY)


class PosixFs:
    """The storage the log uses: the VFS (littlefs on the ESP32). Tests substitute a double
    that cuts power (tests/firmware/shims/powercut_fs.py)."""

    def open(self, path, mode):
        return open(path, mode)

    def listdir(self, path):
        return os.listdir(path)

    def mkdir(self, path):
        os.mkdir(path)

    def remove(self, path):
        os.remove(path)

    def size(self, path):
        return os.stat(path)[6]


# --- event snippet: 1 s before + 2 s after the trigger at the full sample rate --------------


# the event snippet ring and its delta encoder are the firmware's own (firmware/flashlog.py)
from flashlog import Snippet, _delta_enc  # noqa: E402,F401

_WIN = None


def _segname(k):
    return "%08d.seg" % k


class Log:
    def __init__(self, folder, snippet=None, fs=None, seg_size=SEG_SIZE, budget=BUDGET,
                 block=BLOCK, queue=QUEUE, clock=None):
        self.dir = folder.rstrip("/") + "/log"
        self.fs = fs or PosixFs()
        self.snip = snippet
        self.seg_size = seg_size
        self.budget = budget
        self.block = block
        self.clock = clock or hal.unix_time
        self._q = bytearray(queue)
        self._qmv = memoryview(self._q)
        self._qn = 0
        self._rend = array("I", [0] * QREC)     # queue offset of each queued record's end
        self._rseq = array("I", [0] * QREC)
        self._rn = 0
        self._urgent = False
        self._t_first = 0                        # ticks_ms of the oldest queued record
        self._t_write = hal.ticks_ms()
        self._f = None                           # the open segment being appended to
        self._fsize = 0
        self._fmid = False                       # the last write ended inside a record
        self.seq = 0                             # last sequence number given out
        self.durable_seq = 0                     # last acknowledged (flushed) record
        self.dropped = 0                         # records refused: RAM queue full
        self.corrupt = 0                         # corrupt stretches readers skipped
        self.writes = 0
        self.errors = 0
        self._recover()

    # --- boot ------------------------------------------------------------------------------
    def _recover(self):
        try:
            self.fs.mkdir(self.dir)
        except OSError:
            pass
        self.segs = self._list()
        self._sizes = {}
        total = 0
        for k in self.segs:
            s = self.fs.size(self._path(k))
            self._sizes[k] = s
            total += s
        self.total = total
        # the highest sequence number: the newest segment with a valid record has it
        self._append_ok = False
        last = [0]

        def cb(b, o, ln, s):
            last[0] = s

        for k in reversed(self.segs):
            good_end = self._scan(k, cb)
            if last[0]:
                self.seq = last[0]
                if k == self.segs[-1] and good_end == self._sizes[k] and good_end < self.seg_size:
                    self._append_ok = True       # clean tail: keep appending to it
                break
        self.durable_seq = self.seq
        self.next_seg = self.segs[-1] + 1 if self.segs else 1

    def _list(self):
        out = []
        for name in self.fs.listdir(self.dir):
            if name.endswith(".seg") and len(name) == 12:
                try:
                    out.append(int(name[:8]))
                except ValueError:
                    pass
        out.sort()
        return out

    def _path(self, k):
        return self.dir + "/" + _segname(k)

    # --- appending (RAM only) --------------------------------------------------------------
    def _reserve(self, maxlen):
        if self._rn >= QREC or self._qn + P.REC_HDR + maxlen + P.REC_TRL > len(self._q):
            return -1
        return self._qn + P.REC_HDR

    def _seal(self, kind, ln, t=None):
        o = self._qn
        self.seq += 1
        struct.pack_into("<BBHII", self._q, o, P.REC_MAGIC, kind, ln, self.seq,
                         (self.clock() if t is None else t) & 0xFFFFFFFF)
        end = o + P.REC_HDR + ln
        P.crc_put(self._q, o, end)
        end += P.REC_TRL
        if not self._qn:
            self._t_first = hal.ticks_ms()
        self._qn = end
        self._rend[self._rn] = end
        self._rseq[self._rn] = self.seq
        self._rn += 1
        if kind in _URGENT:
            self._urgent = True
        return self.seq

    def append(self, kind, payload, t=None):
        """Queue a record (bytes); returns its sequence number (0: queue full, dropped)."""
        n = len(payload)
        if n > P.REC_MAX_PAYLOAD:
            raise ValueError("log record too long")
        p = self._reserve(n)
        if p < 0:
            self.dropped += 1
            return 0
        self._q[p:p + n] = payload
        return self._seal(kind, n, t)

    def event(self, head, prio=0):     # prio: the new log's argument, unused here
        """An event (head: JSON bytes). With a Snippet being fed, capture starts now and the
        record is queued once the 2 s after the trigger are in (returns 0); else (no snippet, one
        already capturing, nothing pushed yet) it is queued at once without one."""
        if self.snip is not None and self.snip.filled and self.snip.trigger(head):
            return 0
        return self._event(head, False)

    def _event(self, head, with_snip):
        hl = len(head)
        want = 2 + hl + (P.SNIP_HDR + 6 * self.snip.n if with_snip else 0)
        if want > P.REC_MAX_PAYLOAD and with_snip:
            self.snip.take(self._q, 0, 0)         # frees it; the event goes without snippet
            with_snip = False
            want = 2 + hl
        p = self._reserve(want)
        if p < 0:
            self.dropped += 1
            if with_snip:
                self.snip.take(self._q, 0, 0)     # frees it
            return 0
        self._q[p] = hl & 0xFF
        self._q[p + 1] = hl >> 8
        self._q[p + 2:p + 2 + hl] = head
        e = p + 2 + hl
        if with_snip:
            e = self.snip.take(self._q, e, want - 2 - hl)
            if e < 0:
                e = p + 2 + hl
        return self._seal(K_EVENT, e - p)

    # --- writing (bounded steps) -----------------------------------------------------------
    def pending(self):
        return self._qn

    def service(self, force=False):
        """One bounded step between samples; returns 1 if it did something. A step is one of:
        take a finished event snippet into the queue (delta-encode 3000 samples, viper);
        remove the oldest segment (over budget); open a new segment; write <= BLOCK bytes of
        the queue and flush them. Writes wait for a full block, an urgent record (alarm,
        config, calibration, retightening, security), FLUSH_MS, or force, and keep GAP_MS
        between them."""
        s = self.snip
        if s is not None and s.ready:
            self._event(s.head, True)
            return 1
        if not self._qn:
            return 0
        now = hal.ticks_ms()
        if not force:
            if hal.ticks_diff(now, self._t_write) < GAP_MS:
                return 0
            if self._qn < self.block and not self._urgent \
                    and hal.ticks_diff(now, self._t_first) < FLUSH_MS:
                return 0
        try:
            return self._step(now)
        except OSError:
            self.errors += 1                  # flash full or failing: keep the queue, retry later
            self._close()
            self._t_write = now
            return 1

    def _step(self, now):
        if self._f is None:
            if self.total + self.seg_size > self.budget and len(self.segs) > 1:
                self._drop_oldest()
                return 1
            if self._append_ok:
                k = self.segs[-1]
                self._f = self.fs.open(self._path(k), "ab")
                self._fsize = self._sizes[k]
                self._append_ok = False
            else:
                k = self.next_seg
                self.next_seg += 1
                self._f = self.fs.open(self._path(k), "wb")
                self.segs.append(k)
                self._sizes[k] = 0
                self._fsize = 0
            self._fmid = False
            return 1
        k = self._qn
        if k > self.block:
            k = self.block
        if self._fsize >= self.seg_size:
            if not self._fmid:                # segment full at a record boundary: next one
                self._close()
                return self._step(now)
            e = self._rend[0]                 # finish the record in this segment first
            if e < k:
                k = e
        self._f.write(self._qmv[:k])
        self._f.flush()
        self.writes += 1
        self._t_write = now
        self._fsize += k
        self.total += k
        self._sizes[self.segs[-1]] = self._fsize
        self._consume(k)
        return 1

    def _consume(self, k):
        # k bytes of the queue are on flash: acknowledge the records they complete, shift down
        rn = self._rn
        i = 0
        while i < rn and self._rend[i] <= k:
            self.durable_seq = self._rseq[i]
            i += 1
        self._fmid = not (i > 0 and self._rend[i - 1] == k)
        j = 0
        while i < rn:
            self._rend[j] = self._rend[i] - k
            self._rseq[j] = self._rseq[i]
            i += 1
            j += 1
        self._rn = j
        rest = self._qn - k
        if rest:
            self._q[0:rest] = self._qmv[k:self._qn]
        self._qn = rest
        if not rest:
            self._urgent = False
            self._fmid = False
        else:
            self._t_first = hal.ticks_ms()

    def _drop_oldest(self):
        k = self.segs.pop(0)
        self.fs.remove(self._path(k))
        self.total -= self._sizes.pop(k, 0)

    def _close(self):
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None

    def sync(self, limit=10000):
        """Write everything queued now (and take a ready snippet). Not for the sampling loop."""
        while (self._qn or (self.snip is not None and self.snip.ready)) and limit:
            self.service(True)
            limit -= 1
        return self.durable_seq

    # --- reading ---------------------------------------------------------------------------
    def _scan(self, k, fn, since=0):
        """Call fn(buf, off, length, seq) for each valid record of segment k with seq > since.
        Corrupt or torn stretches are skipped (self.corrupt counts them). Returns the file
        offset just past the last valid record."""
        try:
            f = self.fs.open(self._path(k), "rb")
        except OSError:
            return 0
        global _WIN
        if _WIN is None:
            _WIN = bytearray(WINDOW)          # allocated once, shared: no heap fragmentation
        buf = _WIN
        mv = memoryview(buf)
        n = 0
        off = 0
        base = 0
        eof = False
        good_end = 0
        bad = False
        try:
            while True:
                if off:
                    buf[0:n - off] = mv[off:n]
                    base += off
                    n -= off
                    off = 0
                if not eof and n < WINDOW:
                    r = f.readinto(mv[n:])
                    if not r:
                        eof = True
                    else:
                        n += r
                if n == 0:
                    break
                while off < n:
                    r = P.rec_check(buf, off, n)
                    if r == 0 and not eof and n - off < WINDOW:
                        break                     # read more
                    if r <= 0:
                        if not bad:
                            self.corrupt += 1
                            bad = True
                        off += 1
                        continue
                    bad = False
                    seq = buf[off + 4] | (buf[off + 5] << 8) | (buf[off + 6] << 16) | (buf[off + 7] << 24)
                    if seq > since:
                        fn(buf, off, r, seq)
                    off += r
                    good_end = base + off
                if eof and off >= n:
                    break
        finally:
            f.close()
        return good_end

    def read(self, since, fn, max_bytes=0):
        """fn(buf, off, length, seq) for every complete record with seq > since, oldest first
        (queued ones are synced first). Stops after max_bytes (0 = no limit); returns the seq of
        the last record passed to fn."""
        self.sync()
        if self._f is not None:               # synced: it ends at a record boundary
            self._close()
            self._append_ok = True
        st = [since, 0, False]

        def cb(buf, off, ln, seq):
            if st[2] or seq <= st[0]:
                return
            fn(buf, off, ln, seq)
            st[0] = seq
            st[1] += ln
            if max_bytes and st[1] >= max_bytes:
                st[2] = True

        for k in list(self.segs):
            if st[2]:
                break
            self._scan(k, cb, st[0])
        return st[0]

    # --- the main loop's interface of firmware/flashlog.py (today's design has none of it) ---
    reading = False

    def is_quiet(self):
        return False                     # no planned collections in today's design

    def reader_window(self):
        return None

    def horizon(self):
        return self.seq

    def lost(self):
        return 0

    def read_start(self, since, max_bytes=0, own=False):
        # today's read: every record read (from littlefs) inside the command, as before; only
        # their sending goes in steps (cmds.log_step), with copies of the records
        self._rq = []
        self.read_last = since

        def cb(buf, off, ln, seq):
            self._rq.append((seq, bytes(buf[off:off + ln])))
        self.read(since, cb, max_bytes)
        self._rq.reverse()
        self.reading = True

    def read_stop(self):
        self.reading = False

    def read_step(self):
        if not self.reading:
            return 0
        if not self._rq:
            self.reading = False
            return 0
        seq, rec = self._rq.pop()
        self.rwin = rec
        self.rlen = len(rec)
        self.read_last = seq
        return seq

    def since(self, seq):
        """[(seq, kind, t, payload bytes)] of the records after seq (tests, small logs)."""
        out = []

        def cb(buf, off, ln, s):
            kind, s2, t, p, pl = P.rec_fields(buf, off)
            out.append((s2, kind, t, bytes(buf[p:p + pl])))

        self.read(seq, cb)
        return out

    def wipe(self):
        """Delete every record; sequence numbers go on (the wipe record keeps the count)."""
        upto = self.seq
        self._qn = 0
        self._rn = 0
        self._urgent = False
        if self.snip is not None:
            self.snip.head = None
            self.snip.ready = False
            self.snip.left = 0
        self._close()
        self._append_ok = False
        self.append(K_SECURITY, b'{"wiped":%d}' % upto)
        self.sync()                           # in a new segment: durable before the removals
        for k in self.segs[:-1]:
            self.fs.remove(self._path(k))
            self.total -= self._sizes.pop(k, 0)
        self.segs = self.segs[-1:]
        return upto

    def stats(self):
        return {"seq": self.seq, "durable": self.durable_seq, "queued": self._qn,
                "segments": len(self.segs), "bytes": self.total, "dropped": self.dropped,
                "corrupt": self.corrupt, "writes": self.writes, "errors": self.errors}
