# oimon signal path on the device: raw flags -> calibration -> low-pass filter -> load rate.
# Specification: docs/algorithm.md; bit-exact numba model: sim/oimon_sim/kernels.py, fall_kernels.py.
# The per-sample work is one @micropython.viper call on pre-allocated array('i') buffers:
# no allocation, 32-bit machine words (every intermediate is bounded in docs/algorithm.md).
# The call takes ONE argument, a table of the buffers' addresses written once (bind()): the
# conversion of an array argument to ptr32 costs about as much as a third of the kernel, so
# the hot path pays it once per sample, not four times (docs/algorithm.md section 7).
import micropython
from micropython import const
from array import array

# ---- out[] layout (array('i', 8)) written by Pipeline.step -----------------------------------
OUT_AX = const(0)      # filtered axial force, 0.1 N, + = compression
OUT_MAP = const(1)     # filtered bending moment antero-posterior, 0.01 N*m
OUT_MML = const(2)     # filtered bending moment medio-lateral, 0.01 N*m
OUT_RATE = const(3)    # axial load rate, N/s: (xa[n] - xa[n-10]) * 10 on the UNfiltered axial
OUT_FLAGS = const(4)   # raw/pipeline flags below
OUT_XA = const(5)      # measured (calibrated, unfiltered) axial, 0.1 N: the overload limits' input
OUT_XMAP = const(6)    # measured moment AP, 0.01 N*m
OUT_XMML = const(7)    # measured moment ML, 0.01 N*m

# ---- flags (out[4]) ---------------------------------------------------------------------------
FL_SAT = const(0x007)     # bit c: raw[c] is a saturation code (0x7FFFFF or -0x800000), c = 0..2
FL_RAIL = const(0x038)    # bit 3+c: |raw[c]| >= RAIL (0x7E0000) but not a saturation code
FL_STUCK = const(0x1C0)   # bit 6+c: raw[c] identical for STUCK_N samples
FL_FAULT = const(0x1FF)   # any of the three above
FL_UNCAL = const(0x200)   # no valid calibration: out[0..3] are 0
FL_TARE = const(0x400)    # tare running (outputs use the previous offsets)
FL_CLAMP = const(0x800)   # a calibrated value was clamped to +-XMAX (information)
FL_GAP = const(0x1000)    # first sample after samples were lost (Pipeline.gap): the load
                          # rate restarts from this sample (0 until RATE_LAG new samples);
                          # not a fault: detect.py treats the gap (docs/algorithm.md 5.8)

SAT_HI = const(0x7FFFFF)
SAT_LO = const(-0x800000)
RAIL = const(0x7E0000)
STUCK_N = const(64)
XMAX = const(131071)      # calibrated clamp, 2^17 - 1 (13.1 kN, 1310 N*m)
DMAX = const(0x7FFFFF)    # clamp of raw - offset, 2^23 - 1
RATE_LAG = const(10)      # load-rate difference span, samples (10 ms at 1 kHz)

# ---- coefficient/calibration word array k[] ---------------------------------------------------
_K_OFF = const(0)      # 4 raw offsets
_K_M = const(4)        # 9 matrix entries, row c in Q(k[_K_SH + c])
_K_SH = const(13)      # 3 row shifts
_K_F = const(16)       # filter: state fraction bits F
_K_SA = const(17)      # sigma = r cos(t), Q16
_K_WA = const(18)      # omega = r sin(t), Q16
_K_C1 = const(19)      # C1, Q16
_K_C2 = const(20)      # C2, Q16
_K_B0 = const(21)      # b0 = B0 / 2^QB, |B0| < 2^13
_K_KB = const(22)      # QB - F
_K_CAL = const(23)     # 1 = calibrated
_K_N = const(24)

# ---- state word array st[] --------------------------------------------------------------------
_S_X1 = const(0)       # 3 previous calibrated inputs x[n-1]
_S_S1 = const(3)       # 3 state s1 (2^-F LSB)
_S_S2 = const(6)       # 3 state s2
_S_PRIMED = const(9)
_S_RING = const(10)    # 16 calibrated unfiltered axial values, ring
_S_RIDX = const(26)
_S_PREV = const(27)    # 3 previous raw
_S_RUN = const(30)     # 3 identical-raw run lengths (saturate at STUCK_N)
_S_TN = const(33)      # tare: target count (0 = no tare)
_S_TCNT = const(34)
_S_TFAIL = const(35)
_S_TLO = const(36)     # 4 sums of raw & 0xFFFF
_S_THI = const(40)     # 4 sums of raw >> 16
_S_N = const(44)

# ---- binding table tab[] (array('i', _T_N)): addresses of the kernel's buffers -------------
_T_RAW = const(0)      # raw counts, array('i', 4)
_T_OUT = const(1)      # out, array('i', 8)
_T_ST = const(2)       # st
_T_K = const(3)        # k
_T_GAP = const(4)      # not an address: 1 = samples were lost before this one (Pipeline.gap)
_T_N = const(5)

TARE_IDLE = 0
TARE_RUNNING = 1
TARE_OK = 2
TARE_FAILED = 3
TARE_N_DEFAULT = 1024
TARE_N_MAX = 16384

FC_DEFAULT = 20
# Quantised filter table {fc Hz at 1 kHz: (F, SA, WA, C1, C2, B0, KB)}: oimon_common/filters.py
from oimon_common.filters import FILTERS  # noqa: E402 - the table the model shares


@micropython.viper
def _bind_addr(tab: ptr32, i: int, buf: ptr32) -> int:
    # tab[i] = address of buf's data. Returns 0 if it does not fit a 32-bit word (64-bit port).
    a = int(buf)
    tab[i] = a
    if tab[i] == a:
        return 1
    return 0


def bind_table(tab, i, buf, n):
    """tab[i] = address of buf (an array('i') of at least n words). The table holds no
    reference: the caller keeps buf alive (MicroPython's heap never moves objects)."""
    if len(buf) < n:
        raise ValueError("buffer needs %d words" % n)
    if not _bind_addr(tab, i, buf):
        raise OSError("buffer address beyond 32 bits: the viper kernels need a 32-bit port")


@micropython.viper
def kernel(t: ptr32) -> int:
    # one sample: t = Pipeline.tab (addresses of raw, out, st, k); returns the flags (out[4])
    raw = ptr32(t[_T_RAW])
    out = ptr32(t[_T_OUT])
    st = ptr32(t[_T_ST])
    k = ptr32(t[_T_K])
    # -- raw flags: saturation code, rail, stuck (run of identical raw) -----------------------
    fl = 0
    c = 0
    while c < 3:
        r = raw[c]
        if r >= RAIL or r <= 0 - RAIL:      # the saturation codes lie beyond the rail too
            if r == SAT_HI or r == SAT_LO:
                fl |= 1 << c
            else:
                fl |= 8 << c
        if r == st[_S_PREV + c]:
            n = st[_S_RUN + c] + 1
            if n >= STUCK_N:
                n = STUCK_N
                fl |= 64 << c
            st[_S_RUN + c] = n
        else:
            st[_S_PREV + c] = r
            st[_S_RUN + c] = 1
        c += 1
    gap = t[_T_GAP]
    if gap:
        fl |= FL_GAP
        t[_T_GAP] = 0
    # -- tare: 64-bit sums as lo (raw & 0xFFFF, < 2^30 for n <= 16384) + hi (raw >> 16) ------
    tn = st[_S_TN]
    if tn > 0:
        fl |= FL_TARE
        cnt = st[_S_TCNT]
        if cnt < tn:
            c = 0
            while c < 4:
                r = raw[c]
                st[_S_TLO + c] = st[_S_TLO + c] + (r & 0xFFFF)
                st[_S_THI + c] = st[_S_THI + c] + (r >> 16)
                c += 1
            if fl & 0x3F:
                st[_S_TFAIL] = 1
            st[_S_TCNT] = cnt + 1
    if k[_K_CAL] == 0:
        out[0] = 0
        out[1] = 0
        out[2] = 0
        out[3] = 0
        out[4] = fl | FL_UNCAL
        out[5] = 0
        out[6] = 0
        out[7] = 0
        st[_S_PRIMED] = 0
        return fl | FL_UNCAL
    # -- calibration: d = clamp(raw - off, +-(2^23-1)) split d = h*2^12 + l, 0 <= l < 2^12;
    #    m*d/2^12 = h*m + (l*m >> 12) exactly floored; |h*m| <= 2^11 * 2^18 = 2^29, three terms
    #    < 1.51 * 2^30; x = (acc + 2^(S-13)) >> (S-12) = round(m.d / 2^S)
    d = raw[0] - k[_K_OFF]
    if d > DMAX:
        d = DMAX
    elif d < 0 - DMAX:
        d = 0 - DMAX
    h0 = d >> 12
    l0 = d & 4095
    d = raw[1] - k[_K_OFF + 1]
    if d > DMAX:
        d = DMAX
    elif d < 0 - DMAX:
        d = 0 - DMAX
    h1 = d >> 12
    l1 = d & 4095
    d = raw[2] - k[_K_OFF + 2]
    if d > DMAX:
        d = DMAX
    elif d < 0 - DMAX:
        d = 0 - DMAX
    h2 = d >> 12
    l2 = d & 4095
    c = 0
    while c < 3:
        i = _K_M + 3 * c
        m0 = k[i]
        m1 = k[i + 1]
        m2 = k[i + 2]
        acc = h0 * m0 + ((l0 * m0) >> 12) + h1 * m1 + ((l1 * m1) >> 12) \
            + h2 * m2 + ((l2 * m2) >> 12)
        sh = k[_K_SH + c]
        x = (acc + (1 << (sh - 13))) >> (sh - 12)
        if x > XMAX:
            x = XMAX
            fl |= FL_CLAMP
        elif x < 0 - XMAX:
            x = 0 - XMAX
            fl |= FL_CLAMP
        out[c] = x          # calibrated, unfiltered (overwritten by the filter output below)
        out[5 + c] = x      # the measured value, kept for the overload limits
        c += 1
    xa = out[0]
    if gap:                     # no load rate across a gap: the lag ring restarts here
        c = 0
        while c < 16:
            st[_S_RING + c] = xa
            c += 1
    if st[_S_PRIMED] == 0:      # start in the steady state of this sample
        c = 0
        while c < 3:
            st[_S_X1 + c] = out[c]
            st[_S_S1 + c] = 0
            st[_S_S2 + c] = 0
            c += 1
        c = 0
        while c < 16:
            st[_S_RING + c] = xa
            c += 1
        st[_S_PRIMED] = 1
    # -- filter (docs/algorithm.md "Filter"): |x| <= 2^17, state s in 2^-F LSB, |s| < 2^27 ----
    #    u = x - x1;  y = x1 + round((P - R) / 2^F)
    #    P = floor(u*B0 / 2^KB)                 b0*u in 2^-F LSB, |u*B0| < 2^18 * 2^13
    #    R = floor((C1 s1 + C2 s2) / 2^16)      C.s in 2^-F LSB, Q16 coefficients
    #    s1' = trunc((SA s1 - WA s2) / 2^16 + u 2^F), s2' = trunc((WA s1 + SA s2) / 2^16)
    #    products split s = h*2^14 + l (0 <= l < 2^14): |coef*h| < 2^16 * 2^13, |coef*l| < 2^30;
    #    T = floor(N / 2^14); trunc toward 0 = floor if T >= 0 else ceil = (.. + 65535) >> 14
    F = k[_K_F]
    SA = k[_K_SA]
    WA = k[_K_WA]
    C1 = k[_K_C1]
    C2 = k[_K_C2]
    B0 = k[_K_B0]
    KB = k[_K_KB]
    half = 1 << (F - 1)
    c = 0
    while c < 3:
        q = ptr32(int(st) + 4 * c)      # channel c's words: q[_S_X1] = st[_S_X1 + c], ...
        x = out[c]
        x1 = q[_S_X1]
        s1 = q[_S_S1]
        s2 = q[_S_S2]
        u = x - x1
        a1 = s1 >> 14
        b1 = s1 & 0x3FFF
        a2 = s2 >> 14
        b2 = s2 & 0x3FFF
        R = (C1 * a1 + C2 * a2 + ((C1 * b1 + C2 * b2) >> 14)) >> 2
        P = (u * B0) >> KB
        out[c] = x1 + ((P - R + half) >> F)
        U = u << (F + 2)
        H = SA * a1 - WA * a2
        L = SA * b1 - WA * b2
        T = H + (L >> 14) + U
        if T < 0:
            T = H + ((L + 65535) >> 14) + U
        q[_S_S1] = T >> 2
        H = WA * a1 + SA * a2
        L = WA * b1 + SA * b2
        T = H + (L >> 14)
        if T < 0:
            T = H + ((L + 65535) >> 14)
        q[_S_S2] = T >> 2
        q[_S_X1] = x
        c += 1
    # -- load rate fast path: unfiltered axial, 10-sample difference, 0.1 N per 10 ms = 10 N/s --
    ri = st[_S_RIDX]
    out[3] = (xa - st[_S_RING + ((ri - RATE_LAG) & 15)]) * 10
    st[_S_RING + ri] = xa
    st[_S_RIDX] = (ri + 1) & 15
    out[4] = fl
    return fl


def filter_coefficients(fc):
    """(F, SA, WA, C1, C2, B0, KB) for a cut-off in FILTERS (Hz at 1 kHz)."""
    try:
        return FILTERS[int(fc)]
    except KeyError:
        raise ValueError("fc must be one of %r Hz" % (sorted(FILTERS),))


class Pipeline:
    """Raw counts -> filtered calibrated values. `step(raw, out)` is allocation-free.

    cal: calib.Calibration or None (uncalibrated: out[0..3] = 0, flags FL_UNCAL).
    fc: low-pass cut-off in Hz (one of FILTERS; the sample rate is 1 kHz)."""

    def __init__(self, cal=None, fc=FC_DEFAULT):
        self.k = array("i", [0] * _K_N)
        self.st = array("i", [0] * _S_N)
        self.tab = array("i", [0] * _T_N)     # kernel(tab) == step(raw, out) once bound
        self.raw = self.out = None
        bind_table(self.tab, _T_ST, self.st, _S_N)
        bind_table(self.tab, _T_K, self.k, _K_N)
        self.cal = None
        self.tare_state = TARE_IDLE
        self.tare_offsets = None
        for c in range(3):
            self.st[_S_PREV + c] = 0x40000000     # outside the 24-bit range: first sample new
        self.set_filter(fc)
        self.set_calibration(cal)

    @property
    def calibrated(self):
        return self.k[_K_CAL] == 1

    def set_filter(self, fc):
        co = filter_coefficients(fc)
        for i in range(7):
            self.k[_K_F + i] = co[i]
        self.fc = int(fc)
        self.st[_S_PRIMED] = 0

    def set_calibration(self, cal):
        """Install a Calibration (or None: uncalibrated). Re-primes the filter."""
        k = self.k
        if cal is not None and cal.check():
            cal = None
        self.cal = cal
        if cal is None:
            k[_K_CAL] = 0
        else:
            for j in range(4):
                k[_K_OFF + j] = cal.offsets[j]
            for j in range(9):
                k[_K_M + j] = cal.matrix[j]
            for j in range(3):
                k[_K_SH + j] = cal.shifts[j]
            k[_K_CAL] = 1
        self.st[_S_PRIMED] = 0

    def bind(self, raw, out):
        """Fix the buffers of the per-sample path: raw array('i', 4), out array('i', 8). Then
        `dsp.kernel(pipe.tab)` is one sample (the hot path: a single ptr32 conversion)."""
        bind_table(self.tab, _T_RAW, raw, 4)
        bind_table(self.tab, _T_OUT, out, 8)
        self.raw = raw          # the table holds addresses only: keep the buffers alive
        self.out = out

    def step(self, raw, out):
        """raw: array('i', 4) raw counts; out: array('i', 8). Returns the flags (out[4]).
        Any buffers (re-bound when they change); the hot path calls kernel(tab) directly."""
        if raw is not self.raw or out is not self.out:
            self.bind(raw, out)
        return kernel(self.tab)

    def gap(self):
        """Samples were lost before the next one: it carries FL_GAP and the load rate does not
        difference across the gap (docs/algorithm.md). Not per sample: only after a loss."""
        self.tab[_T_GAP] = 1

    def tare_start(self, n=TARE_N_DEFAULT):
        """Average the next n raw samples (prosthesis unloaded) as new offsets."""
        n = int(n)
        if not 1 <= n <= TARE_N_MAX:
            raise ValueError("tare window 1..%d samples" % TARE_N_MAX)
        st = self.st
        for j in range(4):
            st[_S_TLO + j] = 0
            st[_S_THI + j] = 0
        st[_S_TCNT] = 0
        st[_S_TFAIL] = 0
        st[_S_TN] = n
        self.tare_state = TARE_RUNNING
        self.tare_offsets = None

    def tare_done(self):
        """False while a tare is collecting; True once it has finished (or none is running).
        On the first True after a tare, `tare_state` says TARE_OK (offsets applied to the
        calibration in use, `tare_offsets` holds them) or TARE_FAILED (a raw channel was at
        saturation/rail, or an offset beyond +-2^22 counts: nothing changed)."""
        st = self.st
        n = st[_S_TN]
        if n == 0:
            return True
        if st[_S_TCNT] < n:
            return False
        offs = []
        ok = st[_S_TFAIL] == 0
        for j in range(4):
            total = st[_S_THI + j] * 65536 + st[_S_TLO + j]
            o = (total + n // 2) // n
            if j < 3 and not -(1 << 22) <= o <= (1 << 22):
                ok = False
            offs.append(o)
        st[_S_TN] = 0
        if ok:
            self.tare_offsets = offs
            if self.cal is not None:
                self.cal.offsets = offs
                for j in range(4):
                    self.k[_K_OFF + j] = offs[j]
            self.tare_state = TARE_OK
        else:
            self.tare_state = TARE_FAILED
        st[_S_PRIMED] = 0
        return True
