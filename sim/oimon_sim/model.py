"""Bit-exact numpy model of the oimon signal path (firmware/calib.py, dsp.py, detect.py),
following docs/algorithm.md.

    filtered, events = replay(raw, cal, limits)          # raw (n, 4) int32 raw counts

`Replayer` is the streaming form: feed blocks of any size, state is carried exactly, so a 24 h
recording can be replayed with bounded memory (`Replayer.feed(block)`).

How the integer IIR is vectorised exactly: the filter's recursion is nonlinear (truncation), so
it is not a linear filter numpy/scipy could run. The block is cut into chunks of CHUNK samples;
all chunks x 3 channels advance together, one numpy step per sample position (so a step works
on ~10^4 values). Chunk 0 starts from the exact carried state; chunk k > 0 starts from the state
a WARMUP-sample run-in on its own preceding input reached from s = 0. Afterwards every chunk's
assumed start state is checked against the exact end state of the chunk before; a mismatch is
re-run from the exact state until its trajectory meets the stored one (after which the stored
rest is exact: same state, same input). Exactness does not depend on the run-in: it only saves
repairs. The magnitude-truncated normal-form filter forgets its state within a few hundred
samples (a constant input drives any state to exactly s = 0), so repairs are rare and short.
The recursion runs in float64 on integers (the state of a channel as one complex128): every
product is < 2^44 and every sum a multiple of 2^-16 below 2^31, so float64 holds them exactly and np.trunc / np.floor give the same words as
the viper kernel's split 32-bit multiplies (which are exact floors; docs/algorithm.md).
"""
from __future__ import annotations

import numpy as np

from . import filter_design

# ---- constants shared with firmware/dsp.py (tests check they agree) ---------------------------
SAT_HI = 0x7FFFFF
SAT_LO = -0x800000
RAIL = 0x7E0000
STUCK_N = 64
XMAX = 131071
DMAX = 0x7FFFFF
RATE_LAG = 10
FL_SAT, FL_RAIL, FL_STUCK, FL_FAULT = 0x007, 0x038, 0x1C0, 0x1FF
FL_UNCAL, FL_TARE, FL_CLAMP = 0x200, 0x400, 0x800

CHUNK = 512
WARMUP = 320
SEGMENT = 1 << 18


def coefficients(fc=20):
    """(F, SA, WA, C1, C2, B0, KB): the firmware table entry, from filter_design."""
    return filter_design.firmware_table((fc,))[int(fc)]


# ---- raw flags --------------------------------------------------------------------------------
def _runlen(mask, carry=0):
    """Length of the run of True ending at each sample; `carry` = run length before sample 0."""
    n = len(mask)
    idx = np.arange(n, dtype=np.int64)
    last_false = np.where(mask, np.int64(-1 - carry), idx)
    last_false[0] = last_false[0] if not mask[0] else -1 - carry
    np.maximum.accumulate(last_false, out=last_false)
    return idx - last_false


def _any_run(same, k):
    """True if `same` has k consecutive True values anywhere (bit-parallel doubling)."""
    w, have = same, 1
    while have * 2 <= k:
        if len(w) <= have:
            return False
        w = w[have:] & w[:-have]
        have *= 2
    rest = k - have
    if rest:
        if len(w) <= rest:
            return False
        w = w[rest:] & w[:-rest]
    return bool(w.any())


def raw_flags(raw3, prev, run):
    """Flags of channels 0..2 for raw (n, 3); prev/run: carried previous raw and run length per
    channel (updated in place). Returns int32 flags (n,)."""
    n = raw3.shape[0]
    fl = np.zeros(n, np.int32)
    for c in range(3):
        r = raw3[:, c]
        hi = r >= RAIL
        lo = r <= -RAIL
        if hi.any() or lo.any():
            sat = (r == SAT_HI) | (r == SAT_LO)
            rail = ~sat & (hi | lo)
            fl |= (sat.astype(np.int32) << c) | (rail.astype(np.int32) << (3 + c))
        same = np.empty(n, bool)
        same[0] = r[0] == prev[c]
        np.equal(r[1:], r[:-1], out=same[1:])
        # a run of identical raw: 1 on a new value, +1 while equal; flagged from STUCK_N on
        nf = np.flatnonzero(~same)
        head = int(nf[0]) if len(nf) else n          # samples continuing the carried run
        carried = run[c] + head if same[0] else 0
        if carried >= STUCK_N or _any_run(same, STUCK_N - 1):
            rl = _runlen(same, run[c] - 1 if run[c] > 0 else 0) + 1
            rl = np.where(same, rl, 1)
            fl |= (rl >= STUCK_N).astype(np.int32) << (6 + c)
            run[c] = int(min(rl[-1], STUCK_N))
        elif len(nf):
            run[c] = int(min(n - nf[-1], STUCK_N))
        else:
            run[c] = int(min(run[c] + n, STUCK_N))
        prev[c] = int(r[-1])
    return fl


# ---- calibration ------------------------------------------------------------------------------
def calibrate(raw, cal):
    """Calibrated unfiltered values (n, 3) int32 and clamp flags (n,) int32, as dsp._step.
    Evaluated in float64, exact: |d * m| < 2^41, every floor of d*m/2^12 and every sum is an
    integer below 2^31, so floor() gives the same words as the kernel's split products."""
    raw = np.asarray(raw)
    n = raw.shape[0]
    d = np.empty((3, n))
    for j in range(3):
        np.subtract(raw[:, j], float(cal.offsets[j]), out=d[j])
    np.clip(d, -DMAX, DMAX, out=d)
    x = np.empty((n, 3), np.int32)
    acc = np.empty(n)
    tmp = np.empty(n)
    clamp = np.zeros(n, bool)
    for c in range(3):
        acc[:] = 0.0
        for j in range(3):
            m = int(cal.matrix[3 * c + j])
            if m:
                np.multiply(d[j], m / 4096.0, out=tmp)
                np.floor(tmp, out=tmp)
                acc += tmp
        sh = int(cal.shifts[c])
        acc += float(1 << (sh - 13))
        acc *= 1.0 / (1 << (sh - 12))
        np.floor(acc, out=acc)
        clamp |= np.abs(acc) > XMAX
        np.clip(acc, -XMAX, XMAX, out=acc)
        x[:, c] = acc
    return x, np.where(clamp, FL_CLAMP, 0).astype(np.int32)


# ---- filter -----------------------------------------------------------------------------------
def filter_reference(x, co, state=None):
    """Scalar pure-Python kernel (slow; for tests): x (n, 3) ints -> y (n, 3) int64.
    state: dict x1, s1, s2 lists, updated in place; None = primed on x[0]."""
    F, SA, WA, C1, C2, B0, KB = co
    x = np.asarray(x, np.int64)
    if state is None:
        state = dict(x1=[int(v) for v in x[0]], s1=[0, 0, 0], s2=[0, 0, 0])
    y = np.empty_like(x)
    half = 1 << (F - 1)

    def trunc16(v):
        return v >> 16 if v >= 0 else -((-v) >> 16)

    for c in range(x.shape[1]):
        x1, s1, s2 = state["x1"][c], state["s1"][c], state["s2"][c]
        for i in range(x.shape[0]):
            xv = int(x[i, c])
            u = xv - x1
            R = (C1 * s1 + C2 * s2) >> 16
            P = (u * B0) >> KB
            y[i, c] = x1 + ((P - R + half) >> F)
            s1, s2 = trunc16(SA * s1 - WA * s2 + (u << (F + 16))), trunc16(WA * s1 + SA * s2)
            x1 = xv
        state["x1"][c], state["s1"][c], state["s2"][c] = x1, s1, s2
    return y


class _Filter:
    """Exact block-parallel form of the kernel; carries x1 and the state per channel.

    The state (s1, s2) of a channel is held as the complex number s1 + i s2: the normal-form
    matrix [[SA, -WA], [WA, SA]] / 2^16 is multiplication by (SA + i WA) / 2^16 (exact: integer
    products < 2^44), then u 2^F is added to the real part and both parts are truncated."""

    def __init__(self, co, chunk=CHUNK, warmup=WARMUP):
        self.co = co
        self.chunk = chunk
        self.warmup = warmup
        F, SA, WA, C1, C2, B0, KB = co
        self.a = complex(SA / 65536.0, WA / 65536.0)
        self.cc = complex(C1 / 65536.0, -C2 / 65536.0)     # Re(cc * s) = (C1 s1 + C2 s2) / 2^16
        self.x1 = None                       # (3,) float64 integers when primed
        self.s = np.zeros(3, np.complex128)
        self.repairs = 0                     # statistics: chunks re-run, steps re-run
        self.repair_steps = 0

    def _run(self, U, hist):
        """hist (T+1, B) complex: hist[0] holds the start states; fills hist[t+1] = state after
        step t over U (T, B) (u * 2^F). Three numpy calls per step, no copies."""
        a = self.a
        for t in range(U.shape[0]):
            nxt = hist[t + 1]
            np.multiply(hist[t], a, out=nxt)
            nxt.real += U[t]
            f = nxt.view(np.float64)
            np.trunc(f, out=f)
        return hist[U.shape[0]]

    def _step1(self, z, U):
        z = z * self.a
        return np.trunc(z.real + U) + 1j * np.trunc(z.imag)

    def run(self, x):
        """x (n, 3) int32 calibrated -> y (n, 3) int32."""
        F, SA, WA, C1, C2, B0, KB = self.co
        n = x.shape[0]
        xf = x.astype(np.float64)
        if self.x1 is None:
            self.x1 = xf[0].copy()
            self.s[:] = 0
        x1 = np.empty_like(xf)
        x1[0] = self.x1
        x1[1:] = xf[:-1]
        u = xf - x1
        L = self.chunk
        K = max(1, -(-n // L))
        pad = K * L - n
        uf = u * float(1 << F)
        if pad:
            uf = np.concatenate([uf, np.zeros((pad, 3))])
        B = K * 3
        Ut = np.ascontiguousarray(uf.reshape(K, L, 3).transpose(1, 0, 2)).reshape(L, B)
        hist = np.empty((L + 1, B), np.complex128)
        z0 = hist[0].reshape(K, 3)
        z0[0] = self.s
        W = min(self.warmup, L) if K > 1 else 0
        if W:
            # run-in: the W samples before chunk k >= 1 are the tail of chunk k-1, from s = 0;
            # the state reached is only a guess (verified below)
            hw = np.zeros((W + 1, B - 3), np.complex128)
            z0[1:] = self._run(Ut[L - W:, :B - 3], hw).reshape(K - 1, 3)
        else:
            z0[1:] = 0
        z0 = z0.copy()
        zend = self._run(Ut, hist).reshape(K, 3).copy()
        hist = hist[:L]
        hist3 = hist.reshape(L, K, 3)
        Ut3 = Ut.reshape(L, K, 3)
        # verify and repair: chunk k's start must equal chunk k-1's exact end
        while K > 1:
            bad = np.nonzero((z0[1:] != zend[:-1]).any(axis=1))[0] + 1
            if len(bad) == 0:
                break
            self.repairs += len(bad)
            z = zend[bad - 1].copy()
            z0[bad] = z
            live = np.ones(len(bad), bool)
            for t in range(L):
                old = hist3[t][bad]
                if t:
                    live &= ~(z == old).all(axis=1)
                    if not live.any():
                        break
                old[live] = z[live]
                hist3[t][bad] = old
                z = self._step1(z, Ut3[t][bad])
                self.repair_steps += 1
            else:
                zend[bad[live]] = z[live]
        R = hist.real * (C1 / 65536.0)
        R += hist.imag * (C2 / 65536.0)
        np.floor(R, out=R)
        R = R.reshape(L, K, 3).transpose(1, 0, 2).reshape(K * L, 3)[:n]
        P = np.floor(u * (B0 / float(1 << KB)))
        P -= R
        P += 1 << (F - 1)
        P *= 1.0 / (1 << F)
        np.floor(P, out=P)
        y = x1 + P
        self.x1 = xf[-1].copy()
        if pad == 0:
            self.s = zend[K - 1].copy()
        else:
            t = n - (K - 1) * L           # real samples in the last chunk (< L)
            self.s = hist3[t][K - 1].copy()
        return y.astype(np.int32)


def load_rate(xa, ring):
    """Load rate (N/s) of the unfiltered calibrated axial xa (n,); ring: list of the last
    RATE_LAG values before the block (oldest first), updated in place."""
    full = np.concatenate([np.asarray(ring, np.int64), xa.astype(np.int64)])
    rate = (full[RATE_LAG:] - full[:-RATE_LAG]) * 10
    ring[:] = [int(v) for v in full[-RATE_LAG:]]
    return rate.astype(np.int32)


# ---- detection --------------------------------------------------------------------------------
EV_OVERLOAD_START, EV_OVERLOAD_END, EV_FALL, EV_FAULT, EV_FAULT_CLEAR = 1, 2, 4, 8, 16
EV_NAMES = {1: "overload_start", 2: "overload_end", 4: "fall", 8: "fault", 16: "fault_clear"}
OVL_FIELDS = ("state", "start", "onset", "end", "dur", "which", "pk_ax", "min_ax", "pk_map",
              "pk_mml", "pk_m2", "imp_hi", "imp_lo", "trunc", "report")
FALL_FIELDS = ("t_load", "t_desc", "t_imp", "t_dec", "pk_load", "min_desc", "pk_ax", "pk_rate",
               "pk_map", "pk_mml", "pk_m2", "loaded", "rec_len", "steps")
FAULT_FIELDS = ("state", "onset", "raised", "clear", "dur", "flags", "acc")
SLOT = {1: (0, OVL_FIELDS), 2: (0, OVL_FIELDS), 4: (16, FALL_FIELDS), 8: (32, FAULT_FIELDS),
        16: (32, FAULT_FIELDS)}
PHASE_I, PHASE_II, PHASE_III, PHASE_FULL = 0, 1, 2, 3
BW_DEFAULT = 7355
HIST_N = 21
ACT_FIELDS = ("steps", "loaded", "valid", "invalid", "pk_ax", "min_ax", "pk_map", "pk_mml",
              "pk_m2", "overloads", "falls", "faults", "impacts")


from oimon_fw.limits import phase_limits  # noqa: E402,F401 - the device's own table


def make_config(limits=None, bw=BW_DEFAULT, **over):
    """The detector configuration (names of detect.CFG_*, lower case), as Detector() sets it."""
    if limits is None:
        limits = phase_limits(PHASE_FULL, bw)
    comp, tens, mom = int(limits[0]), int(limits[1]), int(limits[2])
    deb = int(limits[3]) if len(limits) > 3 else 20
    cfg = dict(comp=comp, tens=tens, mom=mom, deb=deb, mom2=mom * mom,
               comp_rel=comp * 9 // 10, tens_rel=tens * 9 // 10, mom2_rel=(mom * 9 // 10) ** 2,
               comp_warn=comp * 8 // 10, tens_warn=tens * 8 // 10,
               mom2_warn=(mom * 8 // 10) ** 2, bw=bw, step_on=bw * 20 // 100,
               step_off=bw * 10 // 100, f_impact=bw * 120 // 100, r_impact=15000,
               t_desc_min=50, t_desc_max=2000, t_impwin=100, t_decide=2000, rec_pct=40,
               fault_n=10, clear_n=200)
    cfg.update(over)
    return cfg


def _event(n, code, values):
    base, names = SLOT[code]
    d = {"n": int(n), "event": EV_NAMES[code]}
    d.update({k: int(v) for k, v in zip(names, values)})
    return d


def _first(idx, lo, hi=None):
    """First value of sorted idx that is >= lo (and < hi), or None."""
    k = np.searchsorted(idx, lo)
    if k < len(idx) and (hi is None or idx[k] < hi):
        return int(idx[k])
    return None


class _Detect:
    """Streaming exact model of detect._step (state carried between blocks)."""

    def __init__(self, cfg):
        self.c = cfg
        self.n = 0
        # faults
        self.fault = 0
        self.frun = 0
        self.crun = 0
        self.fslot = [0] * 7
        # overload: active flag, runs, slot [15] (impulse kept as an exact int in imp)
        self.oa = 0
        self.con = 0
        self.coff = 0
        self.oslot = [0] * 15
        self.scr = None            # scratch (which, pk, min, map, mml, m2, imp) of the onset run
        # activity
        self.act = dict.fromkeys(ACT_FIELDS, 0)
        self.hist = np.zeros(HIST_N, np.int64)
        self.latch = 0
        self.trise = 0
        self.pkon = 0
        self.tfall = -1
        self.tloadp = 0
        self.pkloadp = 0
        self.dmin = 0
        # fall
        self.fs = 0
        self.timp = 0
        self.cand = None           # [t_load, t_desc, pk_load, dmin, pk_ax, pk_rate, map, mml, m2]
        self.lcnt = 0
        self.scnt = 0

    # -- helpers on the block ------------------------------------------------------------------
    def process(self, y, rate, fl):
        c = self.c
        m = len(fl)
        n0 = self.n
        ax = np.ascontiguousarray(y[:, 0])
        ma = np.abs(y[:, 1])
        mm = np.abs(y[:, 2])
        fl = np.asarray(fl)
        # int32 is enough: min(|m|, 32767)^2 * 2 < 2^31, |ax * 10| < 2^21
        m2 = np.minimum(ma, 32767) ** 2 + np.minimum(mm, 32767) ** 2
        events = []
        # ---- faults ---------------------------------------------------------------------------
        fb = (fl & 0x3F) != 0
        anyf = (fl & 0x1FF) != 0
        if fb.any():
            frun = _runlen(fb, self.frun)
        else:
            frun = np.zeros(m, np.int64)
        if anyf.any() or self.fault:
            crun = _runlen(~anyf, self.crun)
        else:
            crun = None
        raise_idx = np.flatnonzero((frun >= c["fault_n"]) | ((fl & 0x1C0) != 0))
        clear_idx = np.flatnonzero(crun >= c["clear_n"]) if crun is not None else \
            np.zeros(0, np.int64)
        pos = 0
        f = self.fault
        fs_ = list(self.fslot)
        spans = []                                  # [a, b): fault latched after sample i
        cur = 0                                     # start of the open span (fault carried)
        while True:
            if not f:
                i = _first(raise_idx, pos)
                if i is None:
                    break
                f = 1
                onset = n0 + i - int(frun[i]) + 1 if frun[i] >= c["fault_n"] else n0 + i - 63
                fs_ = [1, onset, n0 + i, 0, 0, int(fl[i] & 0x1FF), int(fl[i] & 0x1FF)]
                self.act["faults"] += 1
                events.append(_event(n0 + i, EV_FAULT, fs_))
                cur = i
                pos = i + 1
            else:
                i = _first(clear_idx, pos)
                end = m if i is None else i + 1
                if end > pos:
                    fs_[6] |= int(np.bitwise_or.reduce(fl[pos:end] & 0x1FF))
                if i is None:
                    break
                f = 0
                fs_[0], fs_[3], fs_[4] = 2, n0 + i, n0 + i - fs_[2]
                events.append(_event(n0 + i, EV_FAULT_CLEAR, fs_))
                fs_ = list(fs_)
                spans.append((cur, i))
                pos = i + 1
        if f:
            spans.append((cur, m))
        fault_after = np.zeros(m, bool)
        for sa, sb in spans:
            fault_after[sa:sb] = True
        self.fault, self.fslot = f, fs_
        self.frun = int(frun[-1])
        self.crun = int(min(crun[-1], c["clear_n"])) if crun is not None else \
            int(min(self.crun + m, c["clear_n"]))
        valid = ~fault_after & ((fl & 0x7FF) == 0)
        inval_idx = np.flatnonzero(~valid)
        nv = int(valid.sum())
        self.act["valid"] += nv
        self.act["invalid"] += m - nv
        # ---- activity latch ------------------------------------------------------------------
        S = valid & (ax >= c["step_on"])
        Rz = ~valid | (ax < c["step_off"])
        idx = np.where(S | Rz, np.arange(m), -1)
        np.maximum.accumulate(idx, out=idx)
        latch = np.where(idx >= 0, S[np.maximum(idx, 0)], bool(self.latch))
        prev = np.empty(m, bool)
        prev[0] = bool(self.latch)
        prev[1:] = latch[:-1]
        rising = latch & ~prev
        falling = ~latch & prev & valid
        rises = np.flatnonzero(rising)
        falls = np.flatnonzero(falling)
        a = self.act
        a["steps"] += len(rises)
        a["loaded"] += int(latch.sum())
        if nv:
            axv = ax[valid]
            a["pk_ax"] = max(a["pk_ax"], int(axv.max()))
            a["min_ax"] = min(a["min_ax"], int(axv.min()))
            a["pk_map"] = max(a["pk_map"], int(ma[valid].max()))
            a["pk_mml"] = max(a["pk_mml"], int(mm[valid].max()))
            a["pk_m2"] = max(a["pk_m2"], int(m2[valid].max()))
            b = np.clip((axv * 10) // c["bw"], 0, HIST_N - 1)   # int32: |ax * 10| < 2^21
            self.hist += np.bincount(b, minlength=HIST_N)
        # last invalid sample at or before i (global), for the validity of a carried t_fall
        last_inv = np.where(valid, -1, np.arange(m) + n0)
        np.maximum.accumulate(last_inv, out=last_inv)
        # per-edge quantities: periods between consecutive edges
        bounds = np.union1d(rises, falls)
        if len(bounds):
            pmax = np.maximum.reduceat(ax, bounds)
            pmin = np.minimum.reduceat(ax, bounds)
            hmax = int(ax[:bounds[0]].max()) if bounds[0] > 0 else None
            hmin = int(ax[:bounds[0]].min()) if bounds[0] > 0 else None
        # loading phase of each fall edge: (t_load, pk_load)
        fall_info = {}
        for fj in falls:
            k = np.searchsorted(bounds, fj)            # bounds[k] == fj
            if k == 0:                                 # rise carried from the previous block
                pk = self.pkon if hmax is None else max(self.pkon, hmax)
                fall_info[int(fj)] = (self.trise, pk)
            else:
                fall_info[int(fj)] = (n0 + int(bounds[k - 1]), int(pmax[k - 1]))
        # descent before each rise: (t_fall or -1, t_load, pk_load, dmin)
        rise_info = []
        for r in rises:
            k = np.searchsorted(bounds, r)
            pf = np.searchsorted(falls, r) - 1
            if pf >= 0:
                fj = int(falls[pf])
                tf = n0 + fj
                tl, pl = fall_info[fj]
                dm = int(pmin[k - 1])
            else:
                tf, tl, pl = self.tfall, self.tloadp, self.pkloadp
                dm = self.dmin if hmin is None or k > 0 else min(self.dmin, hmin)
                if k > 0:
                    dm = None                          # another edge (a rise) in between
            if tf < 0 or last_inv[r] > tf or dm is None:
                tf = -1
            rise_info.append((tf, tl, pl, dm))
        # carry latch tracking to the next block
        if latch[-1]:
            if len(rises):                             # the open load cycle began in this block
                self.trise, self.pkon = n0 + int(rises[-1]), int(ax[rises[-1]:].max())
            else:
                self.pkon = max(self.pkon, int(ax.max()))
        if len(falls):
            fj = int(falls[-1])
            self.tfall = n0 + fj
            self.tloadp, self.pkloadp = fall_info[fj]
            self.dmin = int(ax[fj:].min())
        elif self.tfall >= 0:
            self.dmin = min(self.dmin, int(ax.min()))
        if last_inv[-1] >= self.tfall:
            self.tfall = -1                            # an invalid sample after the last fall
        self.latch = int(latch[-1])
        # ---- overload -------------------------------------------------------------------------
        w = (ax > c["comp"]).astype(np.int64) | ((ax < -c["tens"]).astype(np.int64) << 1) \
            | ((m2 > c["mom2"]).astype(np.int64) << 2)
        overv = (w != 0) & valid
        rel = valid & (ax <= c["comp_rel"]) & (ax >= -c["tens_rel"]) & (m2 <= c["mom2_rel"])
        deb = c["deb"]
        if overv.any():
            conrun = _runlen(overv, self.con if not self.oa else 0)
            onset_idx = np.flatnonzero(conrun >= deb)
        else:
            conrun = np.zeros(m, np.int64)
            onset_idx = conrun[:0]
        if self.oa or len(onset_idx):
            coffrun = _runlen(rel, self.coff if self.oa else 0)
            rel_idx = np.flatnonzero(coffrun >= deb)
        else:
            coffrun = None
            rel_idx = onset_idx

        def stats(lo, hi, base=None):
            """(which, pk, min, map, mml, m2, imp) over block samples [lo, hi), merged."""
            if hi <= lo:
                return base
            s = (int(np.bitwise_or.reduce(w[lo:hi])), int(ax[lo:hi].max()), int(ax[lo:hi].min()),
                 int(ma[lo:hi].max()), int(mm[lo:hi].max()), int(m2[lo:hi].max()),
                 int(ax[lo:hi].sum(dtype=np.int64)))
            if base is None:
                return s
            return (base[0] | s[0], max(base[1], s[1]), min(base[2], s[2]), max(base[3], s[3]),
                    max(base[4], s[4]), max(base[5], s[5]), base[6] + s[6])

        def slot(state, start, onset, end, dur, st_, trunc, report):
            return [state, start, onset, end, dur, st_[0], st_[1], st_[2], st_[3], st_[4],
                    st_[5], st_[6] >> 16, st_[6] & 0xFFFF, trunc, report]

        pos = 0
        oa = self.oa
        ost = self.scr
        while pos < m:
            if not oa:
                i = _first(onset_idx, pos)
                if i is None:
                    break
                run = int(conrun[i])
                start = n0 + i - run + 1
                lo = max(0, i - run + 1)
                ost = stats(lo, i + 1, self.scr if start < n0 else None)
                self.scr = None
                oa = 1
                self.ostart, self.oonset = start, n0 + i
                self.act["overloads"] += 1
                events.append(_event(n0 + i, EV_OVERLOAD_START,
                                     slot(1, start, n0 + i, 0, run, ost, 0, 0)))
                pos = i + 1
            else:
                j1 = _first(rel_idx, pos)
                j2 = _first(inval_idx, pos)
                if j1 is None and j2 is None:
                    ost = stats(pos, m, ost)
                    pos = m
                    break
                if j2 is not None and (j1 is None or j2 < j1):
                    ost = stats(pos, j2, ost)
                    events.append(_event(n0 + j2, EV_OVERLOAD_END, slot(
                        2, self.ostart, self.oonset, n0 + j2, n0 + j2 - self.ostart, ost, 1,
                        n0 + j2)))
                    pos = j2 + 1
                else:
                    ost = stats(pos, j1 + 1, ost)
                    end = n0 + j1 - deb + 1
                    events.append(_event(n0 + j1, EV_OVERLOAD_END, slot(
                        2, self.ostart, self.oonset, end, end - self.ostart, ost, 0, n0 + j1)))
                    pos = j1 + 1
                oa = 0
                ost = None
        self.oa = oa
        if oa:
            self.scr = ost
            self.coff = int(coffrun[-1]) if coffrun is not None else 0
        else:
            run = int(conrun[-1])
            self.con = run
            if run:
                st0 = n0 + m - run
                self.scr = stats(m - min(run, m), m, self.scr if st0 < n0 else None)
            else:
                self.scr = None
        # ---- fall ------------------------------------------------------------------------------
        W, TD = c["t_impwin"], c["t_decide"]
        busy = n0 - 1               # block sample index (global) until which fs != 0
        cums = []

        def cum(lo, hi):
            """(latch samples, rising edges) in block samples [lo, hi]."""
            if not cums:
                cums.append(np.concatenate([[0], np.cumsum(latch, dtype=np.int64)]))
                cums.append(np.concatenate([[0], np.cumsum(rising, dtype=np.int64)]))
            return (int(cums[0][hi + 1] - cums[0][lo]), int(cums[1][hi + 1] - cums[1][lo]))

        def first_invalid(lo, hi):
            return _first(inval_idx, lo, hi)

        def run_window(lo):
            """Continue fs = 1/2 from block sample lo; returns the block index where fs became 0
            (or None if still busy at the block end)."""
            while True:
                if self.fs == 1:
                    te = self.timp + W - 1 - n0
                    hi = min(te, m - 1)
                    iv = first_invalid(lo, hi + 1)
                    if iv is not None:
                        self.fs = 0
                        return iv
                    if hi >= lo:
                        cd = self.cand
                        cd[4] = max(cd[4], int(ax[lo:hi + 1].max()))
                        cd[5] = max(cd[5], int(rate[lo:hi + 1].max()))
                        cd[6] = max(cd[6], int(ma[lo:hi + 1].max()))
                        cd[7] = max(cd[7], int(mm[lo:hi + 1].max()))
                        cd[8] = max(cd[8], int(m2[lo:hi + 1].max()))
                    if te > m - 1:
                        return None
                    cd = self.cand
                    if cd[5] >= c["r_impact"] and cd[4] >= c["f_impact"]:
                        self.fs, self.lcnt, self.scnt = 2, 0, 0
                        self.act["impacts"] += 1
                        lo = te + 1
                        continue
                    self.fs = 0
                    return te
                else:   # fs == 2
                    td = self.timp + TD - 1 - n0
                    hi = min(td, m - 1)
                    iv = first_invalid(lo, hi + 1)
                    if iv is not None:
                        self.fs = 0
                        return iv
                    if hi >= lo:
                        lc, sc = cum(lo, hi)
                        self.lcnt += lc
                        self.scnt += sc
                    if td > m - 1:
                        return None
                    self.fs = 0
                    rl = TD - W
                    if self.lcnt * 100 < c["rec_pct"] * rl:
                        cd = self.cand
                        self.act["falls"] += 1
                        events.append(_event(n0 + td, EV_FALL, [
                            cd[0], cd[1], self.timp, n0 + td, cd[2], cd[3], cd[4], cd[5], cd[6],
                            cd[7], cd[8], self.lcnt, rl, self.scnt]))
                    return td

        if self.fs:
            b = run_window(0)
            busy = n0 + m if b is None else n0 + b
        tmin, tmax = c["t_desc_min"], c["t_desc_max"]
        for r, (tf, tl, pl, dm) in zip(rises, rise_info):
            g = n0 + int(r)
            if g <= busy or tf < 0:
                continue
            dd = g - tf
            if dd < tmin or dd > tmax:
                continue
            self.fs, self.timp = 1, g
            self.cand = [tl, tf, pl, dm, int(ax[r]), int(rate[r]), int(ma[r]), int(mm[r]),
                         int(m2[r])]
            b = run_window(int(r) + 1) if W > 1 else None
            busy = n0 + m if b is None else n0 + b
        self.n = n0 + m
        events.sort(key=lambda e: (e["n"], _ORDER[e["event"]]))
        return events

    def activity(self):
        d = dict(self.act)
        d["hist"] = [int(v) for v in self.hist]
        return d


_ORDER = {"fault": 0, "fault_clear": 1, "overload_end": 2, "overload_start": 3, "fall": 4}


class Replayer:
    """Streaming bit-exact replay: feed(raw_block) -> (filtered (n, 3) int32, events)."""

    def __init__(self, cal, limits=None, bw=BW_DEFAULT, fc=20, config=None, keep_extra=False):
        self.cal = cal if (cal is not None and not cal.check()) else None
        self.flt = _Filter(coefficients(fc))
        self.cfg = config if config is not None else make_config(limits, bw)
        self.det = _Detect(self.cfg)
        self.prev = [0x40000000] * 3
        self.run = [0, 0, 0]
        self.ring = None
        self.keep_extra = keep_extra
        self.events = []

    def signal(self, raw):
        """(filtered (n, 3) int32, rate (n,) int32, flags (n,) int32) of a raw block."""
        raw = np.asarray(raw, np.int32)
        fl = raw_flags(raw[:, :3], self.prev, self.run)
        n = raw.shape[0]
        if self.cal is None:
            return np.zeros((n, 3), np.int32), np.zeros(n, np.int32), fl | FL_UNCAL
        x, clamp = calibrate(raw, self.cal)
        fl |= clamp
        if self.ring is None:
            self.ring = [int(x[0, 0])] * RATE_LAG
        rate = load_rate(x[:, 0], self.ring)
        y = self.flt.run(x)
        return y, rate, fl

    def feed(self, raw):
        y, rate, fl = self.signal(raw)
        ev = self.det.process(y, rate, fl)
        self.events.extend(ev)
        if self.keep_extra:
            return y, ev, rate, fl
        return y, ev

    def activity(self):
        return self.det.activity()


def replay(raw, cal, limits=None, bw=BW_DEFAULT, fc=20, segment=SEGMENT):
    """raw (n, 4) int32 raw counts -> (filtered (n, 3) int32, events: list of dicts).

    Events are dicts {"n": sample, "event": "overload_start" | "overload_end" | "fall" |
    "fault" | "fault_clear", fields of the firmware's event slot (OVL_FIELDS, FALL_FIELDS,
    FAULT_FIELDS)}; the firmware emits the same set (tests/test_algorithm.py)."""
    rp = Replayer(cal, limits, bw, fc)
    raw = np.asarray(raw)
    out = np.empty((raw.shape[0], 3), np.int32)
    for a in range(0, raw.shape[0], segment):
        y, _ = rp.feed(raw[a:a + segment])
        out[a:a + len(y)] = y
    return out, rp.events


# ---- the firmware itself on the i386 MicroPython unix port, for comparisons -------------------
FIRMWARE_REPLAY = r"""
import os, sys
from array import array
import calib, dsp, detect
cal = calib.load(os.getenv('OIMON_CAL') or '/nonexistent')
lim = [int(v) for v in os.getenv('OIMON_LIMITS').split(',')]
det = detect.Detector(lim, int(os.getenv('OIMON_BW')))
pipe = dsp.Pipeline(cal, int(os.getenv('OIMON_FC')))
raw = array('i', [0] * 4)
out = array('i', [0] * 8)
ev = det.ev
fi = open(os.getenv('OIMON_RAW'), 'rb')
fo = open(os.getenv('OIMON_OUT'), 'wb')
fe = open(os.getenv('OIMON_EVENTS'), 'w')
slots = {1: (0, 15), 2: (0, 15), 4: (16, 14), 8: (32, 7), 16: (32, 7)}
def run():
    n = 0
    step = pipe.step
    dstep = det.step
    while fi.readinto(raw) == 16:
        step(raw, out)
        e = dstep(out)
        fo.write(out)
        if e:
            for b in (8, 16, 2, 1, 4):
                if e & b:
                    o, k = slots[b]
                    fe.write('%d %d %s\n' % (n, b, ' '.join(str(ev[o + i]) for i in range(k))))
        n += 1
run()
fe.write('ACT %s\n' % ' '.join(str(v) for v in det.act))
fo.close(); fe.close()
"""


def firmware_replay(raw, cal=None, limits=None, bw=BW_DEFAULT, fc=20, timeout=900, bits=32):
    """Run firmware/dsp.py + detect.py on the MicroPython unix port over raw (n, 4).
    Returns (out (n, 8) int32, events list of dicts as replay(), activity dict)."""
    import os
    import tempfile
    from . import mp
    import sys
    fw = str(mp.FIRMWARE)
    if fw not in sys.path:
        sys.path.insert(0, fw)
    import calib as _calib  # noqa: F401 - firmware module, CPython-compatible
    limits = phase_limits(PHASE_FULL, bw) if limits is None else list(limits)
    if len(limits) < 4:
        limits = list(limits) + [20]
    if len(limits) < 5:
        limits = list(limits) + [-1]
    with tempfile.TemporaryDirectory() as td:
        rp = os.path.join(td, "raw.bin")
        np.ascontiguousarray(raw, dtype="<i4").tofile(rp)
        cp = ""
        if cal is not None:
            cp = os.path.join(td, "cal.bin")
            with open(cp, "wb") as f:
                f.write(cal.pack())
        op = os.path.join(td, "out.bin")
        ep = os.path.join(td, "events.txt")
        proc = mp.run(["-X", "heapsize=8M", "-c", FIRMWARE_REPLAY], bits=bits, timeout=timeout,
                      OIMON_RAW=rp, OIMON_CAL=cp, OIMON_OUT=op, OIMON_EVENTS=ep,
                      OIMON_LIMITS=",".join(str(int(v)) for v in limits), OIMON_BW=bw,
                      OIMON_FC=fc)
        if proc.returncode != 0:
            raise RuntimeError("firmware replay failed:\n" + proc.stdout + proc.stderr)
        out = np.fromfile(op, "<i4").reshape(-1, 8)
        events, act = [], None
        with open(ep) as f:
            for line in f:
                parts = line.split()
                if parts[0] == "ACT":
                    v = [int(x) for x in parts[1:]]
                    act = dict(zip(ACT_FIELDS, v[:len(ACT_FIELDS)]))
                    act["hist"] = v[16:16 + HIST_N]
                    continue
                n, code = int(parts[0]), int(parts[1])
                events.append(_event(n, code, [int(x) for x in parts[2:]]))
    return out, events, act


# ---- synthetic load profiles (docs/algorithm.md "Test profiles"), 1 kHz, physical units ------
# Each returns (n, 3) float: axial force N (+ compression), moment AP N*m, moment ML N*m.
FS = 1000


def _ramp(a, b, n):
    """Raised-cosine transition from a to b over n samples."""
    t = np.arange(n) / max(n, 1)
    return a + (b - a) * (1 - np.cos(np.pi * t)) / 2


def _keys(points, swing_level=-40.0):
    """Piecewise raised-cosine curve through (t_ms, value) key points."""
    out = []
    for (t0, v0), (t1, v1) in zip(points[:-1], points[1:]):
        out.append(_ramp(v0, v1, int(t1 - t0)))
    return np.concatenate(out) if out else np.zeros(0)


def stance(peak=640.0, t_stance=660, rise=110, m_peak=35.0, valley=0.75):
    """One stance phase: double-hump axial (OPRA walking peaks 498-684 N, mean loading rate
    peak / rise ~ 5.6 kN/s), AP moment changing sign heel -> toe, ML moment one hump; the
    resultant moment peaks at ~m_peak (OPRA walking 26.5-39.8 N*m)."""
    ts = t_stance
    ax = _keys([(0, 0.0), (rise, peak), (0.45 * ts, valley * peak), (ts - rise, 0.97 * peak),
                (ts, 0.0)])
    tau = np.arange(len(ax)) / len(ax)
    m_ap = -0.55 * m_peak * np.sin(2 * np.pi * tau) * np.sin(np.pi * tau) ** 0.5
    m_ml = 0.8 * m_peak * np.sin(np.pi * tau) ** 1.5
    return np.stack([ax, m_ap, m_ml], 1)


def swing(n, level=-40.0):
    """Swing phase: the connector carries the prosthesis' weight and inertia in tension."""
    ax = _keys([(0, 0.0), (60, level), (n - 60, level), (n, 0.0)]) if n > 120 \
        else np.zeros(n)
    return np.stack([ax, np.zeros(n), np.zeros(n)], 1)


def hold(n, axial, m_ap=0.0, m_ml=0.0):
    return np.tile(np.array([[axial, m_ap, m_ml]], float), (int(n), 1))


def walk(cycles, peak=640.0, cycle=1100, stance_frac=0.6, m_peak=35.0, rise=110, rng=None):
    """Level walking: `cycles` gait cycles of the prosthetic leg (stance then swing)."""
    parts = []
    for i in range(cycles):
        p = peak if rng is None else peak * (1 + 0.04 * rng.standard_normal())
        ts = int(cycle * stance_frac)
        parts.append(stance(p, ts, rise, m_peak))
        parts.append(swing(cycle - ts))
    return np.concatenate(parts)


def stairs_down(cycles, bw_n=735.5, rng=None):
    """Stair descent: stance peaks ~140 % BW with a fast rise (loading rate ~17 kN/s, above the
    impact threshold), cycle 1.0 s; gait continues, so it must not be a fall."""
    return walk(cycles, 1.4 * bw_n, 1000, 0.62, 40.0, 60, rng)


def scenario(name, bw_n=735.5, seed=0):
    """Named test profiles (docs/algorithm.md "Test profiles"): returns (forces (n, 3) in N and
    N*m, dict of expected marks in samples)."""
    rng = np.random.default_rng(seed)
    marks = {}
    if name == "walking":
        f = np.concatenate([hold(1000, 0.5 * bw_n), walk(60, rng=rng), hold(2000, 0.5 * bw_n)])
    elif name == "overload":
        pre = np.concatenate([hold(1000, 0.5 * bw_n), walk(5, rng=rng)])
        hop = np.stack([_keys([(0, 0.0), (80, 2000.0), (380, 2000.0), (460, 0.0)]),
                        np.zeros(460), np.full(460, 20.0)], 1)
        marks["hop"] = len(pre)
        f = np.concatenate([pre, hop, swing(500), walk(5, rng=rng), hold(1000, 0.5 * bw_n)])
    elif name == "moment_overload":
        pre = np.concatenate([hold(1000, 0.5 * bw_n), walk(3, rng=rng)])
        marks["twist"] = len(pre)
        st = stance(600.0, 700, 110, 130.0)
        f = np.concatenate([pre, st, swing(440), walk(3, rng=rng), hold(1000, 0.5 * bw_n)])
    elif name == "fall":
        # Frossard et al. 2010: loading, descent, impact, recovery
        pre = np.concatenate([hold(1000, 0.5 * bw_n), walk(6, rng=rng)])
        loading = np.concatenate([stance(0.8 * bw_n, 450, 110, 40.0)[:300],
                                  np.stack([_ramp(0.8 * bw_n * 0.9, -30.0, 150),
                                            _ramp(20.0, 0.0, 150), _ramp(30.0, 0.0, 150)], 1)])
        descent = hold(420, -30.0)
        impact = np.stack([_keys([(0, -30.0), (40, 1700.0), (90, 1500.0), (220, 150.0)]),
                           _keys([(0, 0.0), (40, -60.0), (220, -10.0)]),
                           _keys([(0, 0.0), (40, 85.0), (220, 10.0)])], 1)
        lying = np.stack([20 + 15 * np.sin(np.arange(5000) / 300.0), np.full(5000, 2.0),
                          np.full(5000, 4.0)], 1)
        getup = np.stack([_ramp(20.0, 0.5 * bw_n, 1500), np.zeros(1500), np.zeros(1500)], 1)
        marks["loading"] = len(pre)
        marks["descent"] = len(pre) + len(loading)
        marks["impact"] = marks["descent"] + len(descent)
        f = np.concatenate([pre, loading, descent, impact, lying, getup, hold(3000, 0.5 * bw_n)])
    elif name == "stumble":
        pre = np.concatenate([hold(1000, 0.5 * bw_n), walk(5, rng=rng)])
        short_swing = hold(250, -30.0)
        hit = np.stack([_keys([(0, 0.0), (35, 1350.0), (120, 800.0), (400, 650.0),
                               (560, 0.0)]), np.zeros(560), np.full(560, 25.0)], 1)
        marks["impact"] = len(pre) + len(short_swing)
        f = np.concatenate([pre, short_swing, hit, swing(440), walk(8, rng=rng),
                            hold(1000, 0.5 * bw_n)])
    elif name == "stumble_stand":
        pre = np.concatenate([hold(1000, 0.5 * bw_n), walk(5, rng=rng)])
        hit = np.stack([_keys([(0, 0.0), (35, 1300.0), (150, 600.0), (400, 0.5 * bw_n)]),
                        np.zeros(400), np.zeros(400)], 1)
        f = np.concatenate([pre, hold(300, -30.0), hit, hold(4000, 0.5 * bw_n)])
    elif name == "sitting":
        pre = np.concatenate([hold(1000, 0.5 * bw_n), walk(5, rng=rng), hold(2000, 0.5 * bw_n)])
        sit = np.stack([_ramp(0.5 * bw_n, -15.0, 1000), _ramp(0.0, 5.0, 1000),
                        np.zeros(1000)], 1)
        seated = hold(8000, -15.0, 5.0, 0.0)
        stand = np.stack([_ramp(-15.0, 0.5 * bw_n, 800), _ramp(5.0, 0.0, 800),
                          np.zeros(800)], 1)
        f = np.concatenate([pre, sit, seated, stand, hold(2000, 0.5 * bw_n), walk(5, rng=rng),
                            hold(1000, 0.5 * bw_n)])
    elif name == "plop":          # dropping onto a chair: fast unloading, no impact on the leg
        pre = np.concatenate([hold(1000, 0.5 * bw_n), walk(4, rng=rng)])
        drop = np.stack([_ramp(0.6 * bw_n, -20.0, 150), np.zeros(150), np.zeros(150)], 1)
        f = np.concatenate([pre, hold(500, 0.6 * bw_n), drop, hold(6000, -20.0),
                            np.stack([_ramp(-20.0, 0.5 * bw_n, 600), np.zeros(600),
                                      np.zeros(600)], 1), hold(2000, 0.5 * bw_n)])
    elif name == "stairs":
        f = np.concatenate([hold(1000, 0.5 * bw_n), stairs_down(20, bw_n, rng),
                            walk(3, rng=rng), walk(15, 1.15 * bw_n, 1200, 0.62, 38.0, 120, rng),
                            hold(1000, 0.5 * bw_n)])
    else:
        raise KeyError(name)
    return f, marks


SCENARIOS = ("walking", "overload", "moment_overload", "fall", "stumble", "stumble_stand",
             "sitting", "plop", "stairs")


def to_units(forces):
    """N, N*m floats -> calibrated units (0.1 N, 0.01 N*m) floats."""
    return np.asarray(forces, float) * np.array([10.0, 100.0, 100.0])


def default_calibration():
    """A plausible bench calibration: ~0.006 (0.1 N)/count axial, ~0.004 (0.01 N*m)/count
    moments (full 24-bit scale = 5.0 kN, 335 N*m) with 1-3 % cross-talk."""
    import sys
    from . import mp
    fw = str(mp.FIRMWARE)
    if fw not in sys.path:
        sys.path.insert(0, fw)
    import calib
    gains = [[0.00596, 0.00011, -0.00018], [0.00006, 0.00401, 0.00009],
             [-0.00012, 0.00008, 0.00398]]
    return calib.Calibration.from_gains(gains, offsets=(15000, -42000, 8000, 0), version=1,
                                        date=1700000000)


def forces_to_raw(forces, cal, noise=3.0, seed=1):
    """Physical forces (n, 3) (N, N*m) -> raw counts (n, 4) int32 through the inverse of the
    calibration matrix, + Gaussian ADC noise (counts rms; a real 24-bit ADC always has some:
    without it the stuck-output check would, rightly, flag the sensor), saturating at the
    24-bit codes; channel 3 (spare) carries noise only."""
    rng = np.random.default_rng(seed)
    G = np.array(cal.gains())
    u = to_units(forces)
    raw = np.linalg.solve(G, u.T).T + np.array(cal.offsets[:3], float)
    n = raw.shape[0]
    raw = np.hstack([raw, np.zeros((n, 1))]) + rng.normal(0.0, noise, (n, 4))
    return np.clip(np.round(raw), SAT_LO, SAT_HI).astype(np.int32)


def gait_forces(path, column=17, lever_ap=0.028, lever_ml=0.021):
    """A gaitpdb walk (100 Hz, column 18/19 = total force of the left/right foot, N) as connector
    loads at 1 kHz: axial = foot force resampled with scipy.signal.resample_poly(x, 10, 1)
    (polyphase FIR, Kaiser window); bending moments proportional to it with levers 0.028 m (AP)
    and 0.021 m (ML): resultant lever 0.035 m, ~35-42 N*m at the 1.0-1.2 kN peaks."""
    import scipy.signal as ss
    d = np.loadtxt(path, usecols=(column,))
    ax = ss.resample_poly(d, 10, 1)
    return np.stack([ax, lever_ap * ax, -lever_ml * ax], 1)
