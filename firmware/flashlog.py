# Device log: append-only, power-loss-safe records on a raw flash partition (esp32.Partition).
# Layout, power-loss behaviour, budget and recovery: docs/device-log.md. Record layout:
# protocol.py (REC_*), unchanged on the wire (C_LOG).
#
#   append() / event()   queue a record in RAM (never touches flash); returns its sequence number
#   service(quiet)       called between samples: at most ONE bounded flash step: program <= 256 B
#                        (one flash page) of the queue, or (only when quiet) erase one 4 KB block
#   sync()               program everything queued now (commands, tests; never erases)
#   read(since, fn, mx)  the durable records with seq > since, in seq order, bounded work
#
# The partition is split into three rings of 4 KB blocks: the journal (every record but the
# snippets: events, daily summaries, exercise sessions, alarms, config, security), and two
# snippet rings (K_SNIPPET: the 1 s + 2 s of samples of an event), "hi" for falls and the worst
# overloads and "lo" for the rest, so a flood of events never rotates a summary or a fall away.
# Each block starts with a header (magic, ring, generation, the seq of its first fragment, CRC);
# records are split into fragments that never cross a block, each with its own CRC, and are
# parsed only by walking lengths from the block start: a byte pattern inside a payload is never
# looked at as a record (no resync scan), and a bad fragment costs the rest of its block.
# Blocks are erased ahead of use (a reserve per ring) only when the caller says the device is
# quiet; programming never waits for an erase.
import gc
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
K_SNIPPET = P.K_SNIPPET
K_LOST = P.K_LOST

BLOCK = const(4096)            # esp32.Partition's block = the flash's 4 KB erase sector
PAGE = const(256)              # one program operation: at most one flash page
HDR = const(24)                # block header: magic u32 | ring u8 | ver u8 | 0xFFFF | gen u32
                               # | first_seq u32 | crc32 u32 (over 0..15) | retired u8 | 3 x 0xFF
FOVH = const(7)                # fragment: type u8 | len u16 | data | crc32 u32 (type..data)
WBUF = const(1024)             # the fragment buffer: fragments hold at most 1017 data bytes
MAGIC = const(0x314C4F4F)      # "OOL1"
VER = const(1)
F_FULL = const(1)
F_FIRST = const(2)
F_MID = const(3)
F_LAST = const(4)
R_JOURNAL = const(0)
R_HI = const(1)
R_LO = const(2)
PART_LABEL = "oimonlog"        # the partition (firmware/partitions.csv)
PART_BLOCKS = const(1408)      # 5.5 MiB of the 8 MB flash (ESP32-S3-WROOM-1-N8, hardware/)
FALLBACK_BLOCKS = const(256)   # 1 MiB file on littlefs when the board has no log partition
QUEUE = const(24576)           # RAM queue: the largest snippet record (<= 18.5 KB) plus headroom
QREC = const(256)              # records in the RAM queue at most
FLUSH_MS = const(1000)         # a queued record is programmed at the latest after this long
GAP_MS = const(5)              # at least this long between two flash operations
ERASE_GAP_MS = const(1000)     # at most one 4 KB erase per second, and only when quiet
BOOT_ERASES = const(8)         # erases done at boot, before sampling starts
RESERVE_MAX = const(64)        # erased blocks kept ahead per ring: 1/8 of it, at most 256 KB
_GEN_MAX = const(0x3FFFFFFF)
MAXJUMP = const(65536)         # a record's seq is at most this far past the ring's previous one
BACKOFF_MAX_MS = const(60000)  # failed flash operations retry after 50 ms, doubling to 60 s
WINDOW = const(20032)          # reader window: the largest record (REC_MAX_PAYLOAD + 16) fits
CAPTURE_MAX_MS = const(5000)   # a snippet capture not done by then (no samples) is cut short
QUIET_N = const(3000)          # quiet = the last 3 s of the snippet ring unloaded:
QUIET_AX = const(250)          #   |axial| < 50 N (wire units 0.2 N)
QUIET_M = const(500)           #   |M_AP|, |M_ML| < 5 N*m (wire units 0.01 N*m)
_URGENT = (K_ALARM, K_CONFIG, K_CALIB, K_RETIGHTEN, K_SECURITY, K_EVENT, K_LOST)

_fc = getattr(hal, "flash_cost", None)    # the unix timing model (helper 11); None on the board


def _cost(op, n):
    if _fc is not None:
        _fc(op, n)


def default_partition(folder):
    """The log partition: hal.log_partition() if the HAL has one, the board's "oimonlog" data
    partition, or (unix; a board flashed with a table without it) a FilePartition file."""
    f = getattr(hal, "log_partition", None)
    if f is not None:
        p = f()
        if p is not None:
            return p, "hal"
    try:
        import esp32
        ps = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=PART_LABEL)
        if ps:
            return ps[0], "partition"
        blocks = FALLBACK_BLOCKS
        kind = "littlefs-fallback"
    except ImportError:
        blocks = PART_BLOCKS
        kind = "file"
    import rawpart
    return rawpart.FilePartition(folder.rstrip("/") + "/log.part", blocks), kind


def priority(ev, comp=0):
    """Snippet priority of an event dict (detector units, oimon_common.events): 1 (the "hi"
    ring, kept longest) for a fall, and for an overload that exceeded the tension or moment
    limit (O_WHICH bits 2, 4) or whose peak axial load reached 1.5 x the compression limit
    `comp` (0.1 N); 0 (the "lo" ring) for the rest (overload starts included: the end report
    carries the peaks)."""
    k = ev.get("event") or ev.get("kind")
    if k == "fall":
        return 1
    if k in ("overload_start", "overload_end"):
        if (ev.get("which") or 0) & 6:
            return 1
        if comp > 0 and (ev.get("pk_ax") or 0) * 2 >= comp * 3:
            return 1
    return 0


@micropython.viper
def _all_ff(buf, n: int) -> int:
    p = ptr8(buf)
    i = 0
    while i < n:
        if p[i] != 0xFF:
            return 0
        i += 1
    return 1


_copy = P.blit                 # dst[doff:doff+n] = src[soff:soff+n], no allocation


@micropython.viper
def _quiet(src, i: int, size: int, filled: int, n: int, ax: int, m: int) -> int:
    # 1 if the last n samples of the ring (3 x i16 LE per sample, next write index i) are all
    # within |axial| < ax and |moment| < m (wire units), 0 if not or fewer than n samples
    if filled < n:
        return 0
    s = ptr8(src)
    j = i
    k = 0
    while k < n:
        j -= 1
        if j < 0:
            j = size - 1
        q = j * 6
        c = 0
        while c < 3:
            v = s[q] | (s[q + 1] << 8)
            if v & 0x8000:
                v = v - 0x10000
            if v < 0:
                v = 0 - v
            if c == 0:
                if v >= ax:
                    return 0
            elif v >= m:
                return 0
            q += 2
            c += 1
        k += 1
    return 1


# --- event snippet: 1 s before + 2 s after the trigger at the full sample rate --------------


@micropython.viper
def _delta_enc(src, start: int, n: int, size: int, dst, doff: int, lim: int) -> int:
    # encode n samples of the ring src (size samples, from sample index start) into dst[doff:]
    # with protocol.py's snippet encoding 1; returns the end offset, or -1 past doff + lim
    s = ptr8(src)
    d = ptr8(dst)
    o = doff
    end = doff + lim
    p0 = 0
    p1 = 0
    p2 = 0
    k = 0
    j = start
    while k < n:
        if j >= size:
            j = 0
        q = j * 6
        c = 0
        while c < 3:
            v = s[q] | (s[q + 1] << 8)
            if v & 0x8000:
                v = v - 0x10000
            if c == 0:
                dv = v - p0
                p0 = v
            elif c == 1:
                dv = v - p1
                p1 = v
            else:
                dv = v - p2
                p2 = v
            if dv >= -127 and dv <= 127:
                if o >= end:
                    return -1
                d[o] = dv
                o += 1
            else:
                if o + 3 > end:
                    return -1
                d[o] = 0x80
                d[o + 1] = v
                d[o + 2] = v >> 8
                o += 3
            q += 2
            c += 1
        j += 1
        k += 1
    return o


class Snippet:
    """Ring buffer of calibrated samples fed by the main loop, allocation-free: push(out) with
    out[0..2] = axial (0.1 N), M_AP, M_ML (0.01 N*m). After trigger(), it keeps 1 s before and
    captures 2 s after; then `ready` is set and the log's service() takes it out. The ring has
    one more second so that the capture survives until service() runs."""

    def __init__(self, rate, pre_s=1, post_s=2, margin_s=1):
        self.rate = rate
        self.pre = rate * pre_s
        self.post = rate * post_s
        self.margin = rate * margin_s
        self.size = self.pre + self.post + self.margin
        self.buf = bytearray(6 * self.size)
        self.i = 0            # next ring index to write
        self.filled = 0       # valid samples in the ring (up to size)
        self.left = 0         # samples still to capture after the trigger
        self.ready = False
        self.late = 0         # samples pushed since ready (the capture is lost past margin)
        self.start = 0
        self.n = 0
        self.n_pre = 0
        self.head = None
        self.lost = 0         # captures overwritten before the log took them

    def push(self, out):
        i = self.i
        P.put_cal(self.buf, i * 6, out[0], out[1], out[2])
        i += 1
        if i >= self.size:
            i = 0
        self.i = i
        if self.filled < self.size:
            self.filled += 1
        if self.left:
            self.left -= 1
            if not self.left:
                self.ready = True
        elif self.ready:
            self.late += 1

    def busy(self):
        return self.head is not None

    def trigger(self, head):
        """Start a capture for the event head (bytes); False if one is already running."""
        if self.head is not None:
            return False
        pre = self.filled if self.filled < self.pre else self.pre
        self.start = (self.i - pre) % self.size
        self.n_pre = pre
        self.n = pre + self.post
        self.left = self.post
        self.ready = False
        self.late = 0
        self.head = head
        return True

    def take(self, dst, doff, lim):
        """Encode the capture into dst[doff:doff+lim]; returns the end offset (or -1 if it
        does not fit) and frees the snippet. Overwritten captures give an empty snippet."""
        self.ready = False
        self.head = None
        if self.late > self.margin:
            self.lost += 1
            return doff
        if lim < P.SNIP_HDR:
            return -1
        o = doff + P.SNIP_HDR
        raw = 6 * self.n
        e = _delta_enc(self.buf, self.start, self.n, self.size, dst, o, min(raw, lim - P.SNIP_HDR))
        enc = 1
        if e < 0:
            if raw > lim - P.SNIP_HDR:
                return -1
            enc = 0
            j = self.start
            k = 0
            while k < self.n:          # two slices of the ring at most
                m = min(self.n - k, self.size - j)
                dst[o + 6 * k:o + 6 * (k + m)] = self.buf[6 * j:6 * (j + m)]
                k += m
                j = 0
            e = o + raw
        struct.pack_into("<HHHB", dst, doff, self.rate, self.n_pre, self.n, enc)
        return e


# --- the log -------------------------------------------------------------------------------


class _Ring:
    """A circular run of blocks [base, base + n) of the partition. Positions (0..n-1) in ring
    order: the used run ends at `head`; the `nfree` blocks after it are (believed) erased; the
    rest, up to the run's tail, are dirty (to be erased before use)."""

    def __init__(self, rid, base, n):
        self.id = rid
        self.base = base
        self.n = n
        self.head = n - 1
        self.gen = 0
        self.used = 0
        self.nfree = 0
        self.wo = BLOCK               # write offset in the head block (BLOCK: closed)
        self.last = 0                 # highest seq recovered or written in this ring
        self.reserve = max(2, min(RESERVE_MAX, n // 8))   # blocks kept erased ahead
        self.garbage = 0              # blocks found with an invalid header at boot

    def pos(self, k):
        """Ring position of the k-th block of the run (0 = tail)."""
        return (self.head - self.used + 1 + k) % self.n

    def dirty(self):
        return self.n - self.used - self.nfree

    def info(self):
        return {"blocks": self.n, "used": self.used, "free": self.nfree, "dirty": self.dirty(),
                "garbage": self.garbage}


def layout(blocks):
    """(journal, hi, lo) block counts of a partition of `blocks` blocks: 1/2, 3/8, the rest
    (1408 blocks: 704, 528, 176; docs/device-log.md "Retention")."""
    j = max(2, blocks // 2)
    hi = max(2, blocks * 3 // 8)
    return j, hi, blocks - j - hi


class Log:
    def __init__(self, folder="", snippet=None, part=None, queue=QUEUE, clock=None,
                 rings=None):
        self.snip = snippet
        self.clock = clock or hal.unix_time
        if part is None:
            part, self.storage = default_partition(folder or hal.STORAGE)
        else:
            self.storage = "given"
        self.part = part
        self._q = bytearray(queue)
        self._qmv = memoryview(self._q)
        self._qn = 0
        self._rend = array("I", [0] * QREC)     # queue offset of each queued record's end
        self._rseq = array("I", [0] * QREC)
        self._rring = bytearray(QREC)
        self._rn = 0
        self._urgent = False
        self._t_first = 0                        # ticks_ms of the oldest queued record
        self._t_op = hal.ticks_ms()              # last flash operation
        self._t_erase = self._t_op
        self._retry_at = self._t_op              # back-off after a failed operation
        self._backoff = 0
        self._wb = bytearray(WBUF)               # the fragment being programmed
        self._page = bytearray(PAGE)             # the piece of it programmed now
        self._pvs = [None] * (PAGE + 1)          # memoryview(_page)[:k], made once per k
        self._wl = 0                             # its length (0: none)
        self._wp = 0                             # bytes of it programmed
        self._wfl = 0                            # its data length
        self._wlast = False                      # it ends its record
        self._qo = 0                             # bytes of queued record 0 in fragments so far
        self._hb = bytearray(HDR)
        self._hb20 = memoryview(self._hb)[0:20]
        self._h3 = bytearray(3)
        self._rb = bytearray(WBUF)               # the fragment being read (data + CRC)
        self._win = None                         # reader window if the queue has no room
        self._qwin = None                        # the queue's free end as the reader window
        self._qwin_at = -1
        self._sp = 0                             # reader: where the last record found starts
        self._rl = 0                             # reader: length of the last record found
        self._so = 0
        # the stepwise reader (read_start / read_step: C_LOG, one record per main-loop pass);
        # its state is made here, so that a read allocates nothing
        self.reading = False
        self.rwin = None                         # the record read_step returned: rwin[0:rlen]
        self._rown = None
        self._rcur = [[0, 0, 0], [0, 0, 0], [0, 0, 0]]   # per ring: run index, offset, last seq
        self._rpeek = [0, 0, 0]                  # per ring: seq of its next record (0: none)
        self._rsp = [0, 0, 0]                    # per ring: where that record starts
        self._rso = [0, 0, 0]
        self._rtmp = [0, 0, 0]
        self._rwl = [0, 0, 0]                    # per ring: its peeked record's length
        self._rwring = -1                        # ring whose peeked record the window holds
        self._rinit = 3
        self._rbest = -1
        self._rs = 0
        self._rtop = self._rfloor = self._rsince = self._rsent = self._rmax = 0
        self.read_last = 0                       # seq of the last record a read returned
        self.rlen = 0                            # length of the record read_step returned
        self._hold = 0                           # seq of an event whose snippet is capturing
        self._snip_seq = 0                       # the seq reserved for that snippet
        self._snip_prio = 0
        self._hold_t = 0
        self.seq = 0                             # last sequence number given out
        self.dropped = 0                         # records refused: RAM queue full
        self.snip_dropped = 0                    # snippets refused: no erased block / queue
        self.lost_pending = 0                    # dropped records not yet reported (K_LOST)
        self._lost_from = 0
        self._lost_to = 0
        self.corrupt = 0                         # invalid fragments/records readers skipped
        self.misplaced = 0                       # CRC-valid records with an out-of-place seq
        self.writes = 0
        self.erases = 0
        self.errors = 0
        self.full = False                        # the technical alarm condition (see stats)
        self.full_count = 0                      # times it was raised
        self.quiet = None                        # a callable or bool from the main loop
        try:
            nb = part.ioctl(4, 0)
            bs = part.ioctl(5, 0)
        except Exception:
            nb = 0
            bs = BLOCK
        if bs != BLOCK or not nb or nb < 6:
            nb = 0
        self._pbytes = nb * BLOCK
        lay = rings or (layout(nb) if nb else (0, 0, 0))
        self.rings = []
        base = 0
        for rid in (R_JOURNAL, R_HI, R_LO):
            self.rings.append(_Ring(rid, base, lay[rid]))
            base += lay[rid]
        self.ok = nb > 0
        if not self.ok:
            self._raise_full()                    # no storage at all: the technical alarm
        for r in self.rings:
            try:
                self._recover(r)
            except Exception:                 # never raise at boot: the ring is treated dirty
                self.errors += 1
                r.head = r.n - 1
                r.used = 0
                r.nfree = 0
                r.wo = BLOCK
            if r.last > self.seq:
                self.seq = r.last
        self.maintain(BOOT_ERASES)
        gc.collect()                              # the recovery's tables: gone before the big
                                                  # buffers of the Device are made

    def warm(self):
        """Make now the views programming will need (each piece length once; otherwise made
        at first use, at most 256 small allocations ever). Tests under heap_lock."""
        for k in range(1, PAGE + 1):
            if self._pvs[k] is None:
                self._pvs[k] = memoryview(self._page)[0:k]
        w = getattr(self.part, "warm", None)
        if w is not None:
            w()

    # --- flash access ------------------------------------------------------------------------
    def _read(self, r, k, buf, off):
        _cost("read", len(buf))
        self.part.readblocks(r.base + k, buf, off)

    def _header(self, r, k):
        """Read the header of ring position k: 1 live (gen, first_seq in self._hg/_hs), 2 blank,
        3 retired, 0 invalid."""
        hb = self._hb
        try:
            self._read(r, k, hb, 0)
        except OSError:
            return 0
        if _all_ff(hb, HDR):
            return 2
        # "<IBBHII" by hand: magic | ring | ver | 0xFFFF | gen | first_seq (no tuple, no big int)
        m = hb[0] | (hb[1] << 8) | (hb[2] << 16) | (hb[3] << 24)
        if m != MAGIC or hb[4] != r.id or hb[5] != VER:
            return 0
        P.crc_start()
        P.crc_feed(hb, 0, 16)
        if not P.crc_match(hb, 16):
            return 0
        self._hg = hb[8] | (hb[9] << 8) | (hb[10] << 16) | (hb[11] << 24)
        self._hs = hb[12] | (hb[13] << 8) | (hb[14] << 16) | (hb[15] << 24)
        return 1 if hb[20] == 0xFF else 3

    def _frag(self, r, k, o, dst, doff):
        """The fragment at offset o of ring position k: its type (data into dst[doff:]) and
        length in self._fl; 0 = erased (the end), -1 = invalid."""
        if o + FOVH + 1 > BLOCK:
            return 0
        h = self._h3
        try:
            self._read(r, k, h, o)
        except OSError:
            return -1
        ft = h[0]
        fl = h[1] | (h[2] << 8)
        if ft == 0xFF and fl == 0xFFFF:
            return 0
        if ft < F_FULL or ft > F_LAST or fl == 0 or o + FOVH + fl > BLOCK:
            return -1
        if dst is None or doff + fl > len(dst):
            return -1
        # data and CRC in one read into the reader's fragment buffer (a fragment is at most
        # WBUF bytes), checked, then copied into dst: no view, no big int. Only at the very end
        # of the partition is a shorter read (a view) needed.
        rb = self._rb
        try:
            if (r.base + k) * BLOCK + o + 3 + WBUF <= self._pbytes:
                self._read(r, k, rb, o + 3)
            else:
                self._read(r, k, memoryview(rb)[0:fl + 4], o + 3)
        except OSError:
            return -1
        P.crc_start()
        P.crc_feed(h, 0, 3)
        P.crc_feed(rb, 0, fl)
        if not P.crc_match(rb, fl):
            return -1
        _copy(dst, doff, rb, 0, fl)
        self._fl = fl
        return ft

    # --- boot --------------------------------------------------------------------------------
    def _recover(self, r):
        n = r.n
        if not n:
            return
        st = bytearray(n)
        gens = array("I", bytearray(4 * n))
        best = -1
        for k in range(n):
            s = self._header(r, k)
            st[k] = s
            if s == 1:
                gens[k] = self._hg
                if best < 0 or self._hg > gens[best]:
                    best = k
            elif s == 0:
                r.garbage += 1
        if best >= 0:
            r.head = best
            r.gen = gens[best]
            used = 1
            k = best
            while used < n:
                p = (k - 1) % n
                if st[p] == 1 and gens[p] == (gens[k] - 1) & 0xFFFFFFFF:
                    used += 1
                    k = p
                else:
                    break                          # older blocks (a broken run): dirty
            r.used = used
        nf = 0
        k = (r.head + 1) % n
        while r.used + nf < n and st[k] == 2:
            nf += 1
            k = (k + 1) % n
        r.nfree = nf
        st = gens = None
        if not r.used:
            return
        self._recover_last(r, r.head)

    def _recover_last(self, r, k):
        # block k (the head): where appending goes on, and the highest seq
        self._header(r, k)
        last = self._hs
        o = HDR
        win = self._wb
        while True:
            ft = self._frag(r, k, o, win, 0)
            if ft <= 0:
                break
            if (ft == F_FULL or ft == F_FIRST) and self._fl >= 8:
                s = win[4] | (win[5] << 8) | (win[6] << 16) | (win[7] << 24)
                if last < s <= last + MAXJUMP:
                    last = s
            o += FOVH + self._fl
        r.last = last
        if k != r.head:
            r.wo = BLOCK
        elif ft == 0:
            rest = BLOCK - o
            ok = True
            while rest > 0 and ok:               # the rest must be erased to append there
                m = min(rest, WBUF)
                mv = memoryview(win)[:m]
                try:
                    self._read(r, k, mv, BLOCK - rest)
                except OSError:
                    ok = False
                    break
                ok = _all_ff(mv, m)
                rest -= m
            r.wo = o if ok else BLOCK
        else:
            r.wo = BLOCK                          # a torn or bad tail: the next block
            self.corrupt += 1

    # --- appending (RAM only) ------------------------------------------------------------------
    def _reserve(self, maxlen):
        if self._rn >= QREC or self._qn + P.REC_HDR + maxlen + P.REC_TRL > len(self._q):
            return -1
        return self._qn + P.REC_HDR

    def _lose(self, n=1):
        # a record that cannot be kept: its seq is used (a hole the host sees) and reported
        self.seq += 1
        if not self.lost_pending:
            self._lost_from = self.seq
        self._lost_to = self.seq
        self.lost_pending += n
        self._raise_full()

    def _raise_full(self):
        if not self.full:
            self.full = True
            self.full_count += 1

    def _seal(self, kind, ln, t=None, seq=0, ring=R_JOURNAL):
        o = self._qn
        if not seq:
            self.seq += 1
            seq = self.seq
        struct.pack_into("<BBHII", self._q, o, P.REC_MAGIC, kind, ln, seq,
                         (self.clock() if t is None else t) & 0xFFFFFFFF)
        end = o + P.REC_HDR + ln
        P.crc_put(self._q, o, end)
        end += P.REC_TRL
        if not self._rn:
            self._t_first = hal.ticks_ms()
        self._qn = end
        self._rend[self._rn] = end
        self._rseq[self._rn] = seq
        self._rring[self._rn] = ring
        self._rn += 1
        if kind in _URGENT:
            self._urgent = True
        return seq

    def append(self, kind, payload, t=None, ring=R_JOURNAL):
        """Queue a record (bytes); returns its sequence number (0: queue full: the record is
        counted in `dropped`, its seq is skipped and a K_LOST record reports it later)."""
        n = len(payload)
        if n > P.REC_MAX_PAYLOAD:
            raise ValueError("log record too long")
        p = self._reserve(n)
        if p < 0:
            self.dropped += 1
            self._lose()
            return 0
        self._q[p:p + n] = payload
        return self._seal(kind, n, t, 0, ring)

    def event(self, head, prio=0):
        """An event (head: JSON bytes): queued at once (returns its seq). With a Snippet being
        fed and free, the capture starts now: the head gets "snip": the seq reserved for the
        K_SNIPPET record that follows 2 s later (ring hi if prio else lo). A second event
        during a capture has no snippet of its own (it may raise the capture's priority)."""
        s = self.snip
        if s is not None and s.filled and not s.busy() and len(head) >= 2 and head[-1] == 0x7D:
            n = len(head) + 24
            p = self._reserve(2 + n)
            if p < 0:
                self.dropped += 1
                self._lose()
                return 0
            seq = self.seq + 1
            sn = b'%s"snip":%d}' % (b"," if len(head) > 2 else b"", seq + 1)
            hl = len(head) - 1 + len(sn)
            self._q[p] = hl & 0xFF
            self._q[p + 1] = hl >> 8
            self._q[p + 2:p + 1 + len(head)] = memoryview(head)[:len(head) - 1]
            self._q[p + 1 + len(head):p + 2 + hl] = sn
            self._seal(K_EVENT, 2 + hl)
            self.seq += 1                          # reserved for the snippet
            self._snip_seq = self.seq
            self._snip_prio = prio
            self._hold = seq
            self._hold_t = hal.ticks_ms()
            s.trigger(b"")
            return seq
        if s is not None and s.busy() and prio > self._snip_prio:
            self._snip_prio = prio
        hl = len(head)
        p = self._reserve(2 + hl)
        if p < 0:
            self.dropped += 1
            self._lose()
            return 0
        self._q[p] = hl & 0xFF
        self._q[p + 1] = hl >> 8
        self._q[p + 2:p + 2 + hl] = head
        return self._seal(K_EVENT, 2 + hl)

    def _take_snippet(self):
        s = self.snip
        ev = self._hold
        seq = self._snip_seq
        ring = R_HI if self._snip_prio else R_LO
        self._hold = 0
        want = 5 + P.SNIP_HDR + 6 * s.n
        p = self._reserve(want)
        if p < 0 or self.rings[ring].n == 0:
            s.take(self._q, 0, 0)                 # frees it
            self.snip_dropped += 1
            self._raise_full()
            self.lost_pending += 1
            if self.lost_pending == 1:
                self._lost_from = seq
            self._lost_to = max(self._lost_to, seq)
            return
        struct.pack_into("<IB", self._q, p, ev, self._snip_prio)
        e = s.take(self._q, p + 5, want - 5)
        if e < 0:
            e = p + 5
        self._seal(K_SNIPPET, e - p, None, seq, ring)

    # --- writing (bounded steps) -------------------------------------------------------------
    def pending(self):
        return self._qn

    def horizon(self):
        """The highest seq a reader may return: nothing past a record still in RAM or an
        event whose snippet is being captured (C_LOG's `last` never jumps over one)."""
        h = self.seq
        if self._hold and self._hold - 1 < h:
            h = self._hold - 1
        i = 0
        while i < self._rn:
            if self._rseq[i] - 1 < h:
                h = self._rseq[i] - 1
            i += 1
        return h

    def durable_seq_get(self):
        return self.horizon()

    durable_seq = property(durable_seq_get)

    def is_quiet(self):
        """The last 3 s of the snippet ring unloaded (the main loop's planned collections)."""
        s = self.snip
        if s is None or s.busy():
            return False
        return bool(_quiet(s.buf, s.i, s.size, s.filled, min(QUIET_N, s.size), QUIET_AX, QUIET_M))

    def _is_quiet(self):
        # the erases' quiet: the main loop's override (tests, the simulator), else the ring's
        q = self.quiet
        if q is not None:
            return q() if callable(q) else bool(q)
        return self.is_quiet()

    def service(self, force=False, quiet=None):
        """One bounded step between samples; returns 1 if it did something. A step is one of:
        take a finished event snippet into the queue (delta-encode 3000 samples, viper);
        report dropped records (K_LOST); program <= 256 B (to the next page boundary) of the
        fragment being written, or form the next fragment / start the next pre-erased block
        (a 4 KB read to check it is erased, and a 20 B header program); or, when quiet and a
        ring is below its erased reserve, erase ONE block. Programs wait for GAP_MS after the
        previous operation and for a full page, an urgent record, FLUSH_MS or force."""
        s = self.snip
        if s is not None and s.ready:
            self._take_snippet()
            return 1
        if self._hold and s is not None and s.left and \
                hal.ticks_diff(hal.ticks_ms(), self._hold_t) > CAPTURE_MAX_MS:
            s.n -= s.left                          # sampling stalled: keep what was captured
            s.left = 0
            s.ready = True
            return 1
        if self.lost_pending and self._rn < QREC - 1:
            self._report_lost()
        now = hal.ticks_ms()
        if hal.ticks_diff(now, self._retry_at) < 0:
            return 0
        if not force and hal.ticks_diff(now, self._t_op) < GAP_MS:
            return 0
        if self.erase_debt() and (quiet is not None or
                                  hal.ticks_diff(now, self._t_erase) >= ERASE_GAP_MS):
            self._t_erase = now
            if quiet is None:
                quiet = self._is_quiet()           # a 3 s look at the snippet ring, once a second
            if quiet and self._erase_step(now):
                return 1
        if self._qn and (force or self._wl or self._qn >= PAGE or self._urgent
                         or hal.ticks_diff(now, self._t_first) >= FLUSH_MS):
            try:
                if self._step(now):
                    return 1
            except OSError:
                self._failed(now)
                return 1
        return 0

    def _failed(self, now):
        self.errors += 1
        self._backoff = min(BACKOFF_MAX_MS, self._backoff * 2 if self._backoff else 50)
        self._retry_at = hal.ticks_add(now, self._backoff)
        self._t_op = now

    def _ok(self, now):
        self._backoff = 0
        self._t_op = now

    def _report_lost(self):
        jr = self.rings[R_JOURNAL]
        if not jr.n or (jr.nfree <= 0 and jr.wo + FOVH + 1 > BLOCK):
            return                                # nowhere to put it yet: counted, kept
        n = self.lost_pending
        b = b'{"lost":%d,"from":%d,"to":%d,"dropped":%d,"snip_dropped":%d}' % (
            n, self._lost_from, self._lost_to, self.dropped, self.snip_dropped)
        p = self._reserve(len(b))
        if p < 0:
            return
        self.lost_pending = 0
        self._q[p:p + len(b)] = b
        self._seal(K_LOST, len(b))

    def _claim(self, r, now):
        # start the next pre-erased block of ring r for queued record 0; False if none
        if r.nfree <= 0:
            return False
        k = (r.head + 1) % r.n
        wb = self._wb
        o = 0
        while o < BLOCK:                          # all erased? (4 reads of 1 KB)
            self._read(r, k, wb, o)
            if not _all_ff(wb, WBUF):
                r.nfree = 0                       # not erased after all (a cut erase): dirty
                return False
            o += WBUF
        g = r.gen + 1                             # a small int in any real life (2^30 blocks)
        if g > _GEN_MAX or g < 1:
            g = 1                                 # only after a forged header: start again
        hb = self._hb
        struct.pack_into("<IBBHII", hb, 0, MAGIC, r.id, VER, 0xFFFF, g, self._rseq[0])
        P.crc_put(hb, 0, 16)
        try:
            _cost("prog", 20)
            self.part.writeblocks(r.base + k, self._hb20, 0)
        except OSError:
            self._read(r, k, hb, 0)
            if not _all_ff(hb, HDR):              # half a header: erase it (quiet) before use;
                r.nfree = 0                       # the records wait in RAM meanwhile
            raise
        self.writes += 1
        r.head = k
        r.gen = g
        r.used += 1
        r.nfree -= 1
        r.wo = HDR
        return True

    def _step(self, now):
        if not self._wl:
            rid = self._rring[0]
            r = self.rings[rid]
            if r.wo + FOVH + 1 > BLOCK:
                if not self._claim(r, now):
                    if rid != R_JOURNAL or r.n == 0:
                        self._drop_head()          # a snippet with no erased block: dropped
                        return 1
                    self._raise_full()             # the journal waits in RAM for an erase
                    return 0
                self._ok(now)
                return 1
            rem = self._rend[0] - self._qo
            fl = min(rem, BLOCK - r.wo - FOVH, WBUF - FOVH)
            if self._qo == 0 and fl < rem and fl < P.REC_HDR:
                r.wo = BLOCK                       # a first fragment carries the whole record
                return 1                           # header (its seq): the next block instead
            if self._qo == 0:
                ft = F_FULL if fl == rem else F_FIRST
            else:
                ft = F_LAST if fl == rem else F_MID
            wb = self._wb
            wb[0] = ft
            wb[1] = fl & 0xFF
            wb[2] = fl >> 8
            _copy(wb, 3, self._q, self._qo, fl)
            P.crc_put(wb, 0, 3 + fl)
            self._wl = FOVH + fl
            self._wp = 0
            self._wfl = fl
            self._wlast = fl == rem
        r = self.rings[self._rring[0]]
        a = r.wo + self._wp
        k = min(self._wl - self._wp, PAGE - (a % PAGE))
        pv = self._pvs[k]
        if pv is None:
            pv = self._pvs[k] = memoryview(self._page)[0:k]
        _copy(self._page, 0, self._wb, self._wp, k)
        try:
            _cost("prog", k)
            self.part.writeblocks(r.base + r.head, pv, a)
        except OSError:
            # reuse the same place if it is still erased or holds a prefix of what we meant;
            # garbled: this block is closed and the record is written whole in the next one
            if not self._same(r, a, self._wp, k):
                r.wo = BLOCK
                self._wl = 0
                self._qo = 0
            raise
        self.writes += 1
        self._ok(now)
        self._wp += k
        if self._wp >= self._wl:
            r.wo += self._wl
            self._qo += self._wfl
            self._wl = 0
            if self._wlast:
                if self._rseq[0] > r.last:
                    r.last = self._rseq[0]
                self._consume()
        return 1

    def _same(self, r, a, wp, k):
        # after a failed program: are the k bytes at a still programmable with our bytes?
        buf = bytearray(k)
        try:
            self._read(r, r.head, buf, a)
        except OSError:
            return False
        w = self._wb
        i = 0
        while i < k:
            if buf[i] & w[wp + i] != w[wp + i]:
                return False
            i += 1
        return True

    def _drop_head(self):
        self.snip_dropped += 1
        self._raise_full()
        s = self._rseq[0]
        if not self.lost_pending:
            self._lost_from = s
        self._lost_to = max(self._lost_to, s)
        self.lost_pending += 1
        self._qo = 0
        self._wl = 0
        self._consume()

    def _consume(self):
        k = self._rend[0]
        rn = self._rn
        j = 0
        i = 1
        while i < rn:
            self._rend[j] = self._rend[i] - k
            self._rseq[j] = self._rseq[i]
            self._rring[j] = self._rring[i]
            i += 1
            j += 1
        self._rn = j
        rest = self._qn - k
        if rest:
            _copy(self._q, 0, self._q, k, rest)
        self._qn = rest
        self._qo = 0
        if not rest:
            self._urgent = False
            if self.full and not self.lost_pending and self._space_ok():
                self.full = False
        else:
            self._t_first = hal.ticks_ms()

    def _space_ok(self):
        for r in self.rings:
            if r.n and r.nfree == 0 and r.wo + FOVH + 1 > BLOCK:
                return False
        return True

    def erase_debt(self):
        """Blocks that erases would bring the rings up to their reserve."""
        d = 0
        for r in self.rings:
            if r.nfree < r.reserve:
                d += r.reserve - r.nfree
        return d

    def _erase_step(self, now):
        self._t_erase = now
        for r in self.rings:
            if not r.n or r.nfree >= r.reserve:
                continue
            if not r.dirty():
                if r.used <= 1 or self.reading:   # a read holds run indexes: rotate after it
                    continue
                r.used -= 1                       # rotation: the oldest block goes
            k = (r.head + 1 + r.nfree) % r.n
            try:
                _cost("erase", BLOCK)
                self.part.ioctl(6, r.base + k)
            except OSError:
                self._failed(now)
                return 1
            self.erases += 1
            self._ok(now)
            r.nfree += 1
            if self.full and not self._qn and not self.lost_pending and self._space_ok():
                self.full = False
            return 1
        return 0

    def maintain(self, n=1000000):
        """Up to n erases now (boot before sampling starts, tests, a wipe): not for the loop."""
        k = 0
        while k < n and self.erase_debt():
            if not self._erase_step(hal.ticks_ms()):
                break
            k += 1
        return k

    def sync(self, limit=100000):
        """Program everything queued now (and take a ready snippet). Never erases: a ring with
        no erased block left keeps its records queued. Not for the sampling loop."""
        while limit:
            if self.snip is not None and self.snip.ready:
                self._take_snippet()
            if not self._qn:
                if self.lost_pending:
                    self._report_lost()
                    if not self._qn:
                        break
                else:
                    break
            self._retry_at = hal.ticks_ms()
            try:
                if not self._step(hal.ticks_ms()):
                    break
            except OSError:
                self._failed(hal.ticks_ms())
                break
            limit -= 1
        return self.horizon()

    # --- reading -------------------------------------------------------------------------------
    def _window(self):
        # The reader's window is the free end of the RAM queue (nothing is appended while a
        # command reads: appends come from the main loop, which waits for the command), so a
        # read allocates no 20 KB buffer (a GC pause on the board: samples lost). Only when the
        # queue holds more than 4.5 KB is a window of its own made (then kept).
        if len(self._q) - self._qn >= WINDOW:
            if self._qwin is None or self._qwin_at != self._qn:
                self._qwin = self._qmv[self._qn:]
                self._qwin_at = self._qn
            return self._qwin
        if self._win is None:
            self._win = bytearray(WINDOW)
        return self._win

    def _seek(self, r, since):
        # the run index of the last block whose header first_seq <= since (binary search): the
        # record since + 1 starts there or later
        lo = 0
        hi = r.used - 1
        best = 0
        while lo <= hi:
            mid = (lo + hi) // 2
            if self._header(r, r.pos(mid)) == 1 and self._hs <= since:
                best = mid
                lo = mid + 1
            else:
                hi = mid - 1
        return best

    def _next(self, r, c, since, win):
        """The next valid record of ring r after cursor c = [run index, offset, last seq] with
        seq > since: its seq (the record in win[0:self._rl]), 0 at the end of the ring."""
        wl = 0
        pend = 0
        while c[0] < r.used:
            k = r.pos(c[0])
            if c[1] == 0:
                if self._header(r, k) != 1:
                    c[0] += 1
                    wl = 0
                    continue
                c[1] = HDR
                bs = self._hs
                if wl and bs != pend:
                    wl = 0                         # the continuation is not this block's
                if c[2] == 0 or bs > c[2] + MAXJUMP:
                    c[2] = bs - 1 if bs else 0
                self._bs = bs
            o = c[1]
            h = self._h3
            if o + FOVH + 1 > BLOCK or (c[0] == r.used - 1 and o >= r.wo):
                ft = 0                             # (past r.wo: being programmed, not durable)
            else:
                try:
                    self._read(r, k, h, o)
                    ft = h[0]
                except OSError:
                    ft = -1
            if ft == 0xFF:
                ft = 0
            elif ft in (F_FULL, F_FIRST):
                ft = self._frag(r, k, o, win, 0)
                if ft > 0:
                    wl = 0
                    self._sp = c[0]                # where this record starts (for _reread)
                    self._so = o
            elif ft in (F_MID, F_LAST):
                if wl:
                    ft = self._frag(r, k, o, win, wl)
                else:
                    ft = self._frag(r, k, o, win, 0)
                    if ft > 0:
                        ft = -2
            else:
                ft = -1
            if ft == 0:
                c[0] += 1
                c[1] = 0
                if wl:
                    pend = win[4] | (win[5] << 8) | (win[6] << 16) | (win[7] << 24)
                continue
            if ft == -2:                           # an orphan continuation: its start rotated
                c[1] = o + FOVH + self._fl
                continue
            if ft < 0:
                self.corrupt += 1
                c[0] += 1
                c[1] = 0
                wl = 0
                continue
            fl = self._fl
            c[1] = o + FOVH + fl
            if ft == F_FIRST or ft == F_MID:
                wl += fl
                if wl < P.REC_HDR:                 # (never written so: no seq to continue)
                    wl = 0
                    continue
                pend = win[4] | (win[5] << 8) | (win[6] << 16) | (win[7] << 24)
                if c[1] + FOVH + 1 > BLOCK:        # the record goes on in the next block
                    c[0] += 1
                    c[1] = 0
                continue                           # (or in this one: fragments <= 1 KB)
            wl += fl
            if P.rec_check(win, 0, wl) != wl:
                self.corrupt += 1
                wl = 0
                continue
            s = win[4] | (win[5] << 8) | (win[6] << 16) | (win[7] << 24)
            if s <= c[2] or s > c[2] + MAXJUMP:
                self.misplaced += 1                # CRC-valid but out of place: ignored
                wl = 0
                continue
            c[2] = s
            wl = 0
            if s > since:
                self._rl = P.REC_HDR + (win[2] | (win[3] << 8)) + P.REC_TRL
                return s
        return 0

    def reader_window(self):
        """The stepwise reader's own WINDOW bytes (appends go on between its steps, so the
        queue's free end cannot serve): made once, at boot (Device) or at the first read."""
        if self._rown is None:
            self._rown = bytearray(WINDOW)
        return self._rown

    def read_start(self, since, max_bytes=0, own=False):
        """Begin a read of every durable record with seq > since, in seq order (a merge of the
        rings), up to the horizon now, stopping after max_bytes (0 = no limit); read_step()
        does it one bounded step at a time. own: use reader_window() (the main loop runs
        between steps); else the queue's free end (read() runs it to the end at once).
        Work: a binary search per ring (log2 of its blocks header reads), at most one block of
        records skipped per ring, then each record read twice (peek for the merge, then
        deliver). While a read is open no block rotates out (erases of dirty blocks go on)."""
        self.rwin = self.reader_window() if own else self._window()
        self._rtop = self.horizon()
        floor = 0
        jr = self.rings[R_JOURNAL]
        if jr.used and self._header(jr, jr.pos(0)) == 1:
            floor = self._hs                       # snippets older than the journal: dropped
        self._rfloor = floor
        self._rsince = since
        self.read_last = since
        self._rsent = 0
        self._rmax = max_bytes
        self._rinit = 0
        self._rbest = -1
        self._rwring = -1
        self.reading = True

    def read_stop(self):
        self.reading = False
        self._rbest = -1

    def read_step(self):
        """One step: > 0 = the seq of a record now in self.rwin[0:self.rlen] (valid until the
        next step); -1 = work done, no record yet (call again); 0 = the read is over
        (read_last = the last seq returned, or since). A step reads at most two records."""
        if not self.reading:
            return 0
        win = self.rwin
        if self._rinit < 3:                        # first: each ring's first record after since
            i = self._rinit
            self._rinit = i + 1
            r = self.rings[i]
            if r.used:
                c = self._rcur[i]
                c[0] = self._seek(r, self._rsince)
                c[1] = 0
                c[2] = 0
                p = self._rpeek[i] = self._next(r, c, self._rsince, win)
                self._rwl[i] = self._rl
                self._rsp[i] = self._sp
                self._rso[i] = self._so
                self._rwring = i if p else -1      # the window holds ring i's record p
            else:
                self._rpeek[i] = 0
            return -1
        b = self._rbest
        if b >= 0:                                 # past the record returned last
            self._rbest = -1
            p = self._rpeek[b] = self._next(self.rings[b], self._rcur[b], self._rs, win)
            self._rwl[b] = self._rl
            self._rsp[b] = self._sp
            self._rso[b] = self._so
            self._rwring = b if p else -1
            if self._rmax and self._rsent >= self._rmax:
                self.reading = False
                return 0
            return -1
        peek = self._rpeek
        top = self._rtop
        best = -1
        for i in range(3):
            p = peek[i]
            if p and p <= top and (best < 0 or p < peek[best]):
                best = i
        if best < 0:
            self.reading = False
            return 0
        s = peek[best]
        self._rbest = best
        self._rs = s
        if s > self.read_last:
            if self._rwring == best:
                ok = True                          # the window still holds it (one ring going)
                self._rl = self._rwl[best]
            else:
                # read it again (another ring's peek used the window): from where it starts
                t = self._rtmp
                t[0] = self._rsp[best]
                t[1] = self._rso[best]
                t[2] = s - 1
                ok = self._next(self.rings[best], t, s - 1, win) == s
            self._rwring = -1
            fl = self._rfloor
            if ok and not (best != R_JOURNAL and fl and s < fl):
                self._rsent += self._rl
                self.read_last = s
                self.rlen = self._rl
                return s
        return -1

    def read(self, since, fn, max_bytes=0):
        """fn(buf, off, length, seq) for every durable record with seq > since, at once (see
        read_start); returns the seq of the last record passed to fn (or `since`)."""
        self.read_start(since, max_bytes)
        while True:
            s = self.read_step()
            if s > 0:
                fn(self.rwin, 0, self.rlen, s)
            elif s == 0:
                break
        return self.read_last

    def since(self, seq):
        """[(seq, kind, t, payload bytes)] of the records after seq (tests, small logs): syncs
        first."""
        self.sync()
        out = []

        def cb(buf, off, ln, s):
            kind, s2, t, p, pl = P.rec_fields(buf, off)
            out.append((s2, kind, t, bytes(buf[p:p + pl])))

        self.read(seq, cb)
        return out

    def wipe(self):
        """Delete every record; sequence numbers go on: a K_SECURITY {"wiped": last seq} record
        in a fresh journal block first, then every other block is retired (one byte programmed
        in its header), newest first, so a power cut in between never brings old blocks back
        as part of the journal. The erases follow later (quiet periods). A command: it stalls."""
        upto = self.seq
        self._qn = 0
        self._rn = 0
        self._qo = 0
        self._wl = 0
        self._urgent = False
        self._hold = 0
        if self.snip is not None:
            self.snip.head = None
            self.snip.ready = False
            self.snip.left = 0
        jr = self.rings[R_JOURNAL]
        old = [(r, r.used, r.head) for r in self.rings]
        jr.wo = BLOCK
        if jr.nfree == 0:
            self.maintain(1)
        self.append(K_SECURITY, b'{"wiped":%d}' % upto)
        self.sync()
        one = bytearray(1)
        for r, used, head in old:
            keep_new = r is jr and r.used > used
            for j in range(used):
                k = (head - j) % r.n
                try:
                    _cost("prog", 1)
                    self.part.writeblocks(r.base + k, one, 20)
                except OSError:
                    self.errors += 1
            if keep_new:
                r.used = 1
            else:
                r.used = 0
                r.wo = BLOCK
        return upto

    def stats(self):
        """Counters for C_INFO / status and the technical alarm (`full`)."""
        return {"seq": self.seq, "durable": self.horizon(), "queued": self._qn,
                "dropped": self.dropped, "snip_dropped": self.snip_dropped,
                "lost_pending": self.lost_pending, "full": self.full,
                "full_count": self.full_count, "corrupt": self.corrupt,
                "misplaced": self.misplaced, "writes": self.writes, "erases": self.erases,
                "errors": self.errors, "erase_debt": self.erase_debt(), "storage": self.storage,
                "rings": [[r.n, r.used, r.nfree] for r in self.rings]}

    def fill_pct(self):
        """How full the journal ring is (the records kept longest), percent."""
        r = self.rings[R_JOURNAL]
        return (100 * r.used // r.n) if r.n else 100

    def lost(self):
        """Records the log could not keep (queue full, no erased block), since boot."""
        return self.dropped + self.snip_dropped
