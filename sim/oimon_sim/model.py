"""Bit-exact model of the oimon signal path (firmware/calib.py, dsp.py, detect.py), following
docs/algorithm.md, for replaying recordings on the host.

    filtered, events = replay(raw, cal, limits)          # raw (n, 4) int32 raw counts

`Replayer` is the streaming form: feed blocks of any size, state is carried exactly, so a 24 h
recording can be replayed with bounded memory (`Replayer.feed(block)`,
`Replayer.feed_calibrated(block)` for recordings of calibrated values).

One implementation: a scalar integer kernel that does per sample what dsp.kernel
(`_dsp_block`) and detect.kernel (`_det_block`) do, with the firmware's state words, compiled by
numba (~15 + ~13 ns per sample; `Replayer.stream` runs the two stages on the two cores). The
reference it is tested against is the firmware itself, run on the i386 MicroPython port
(`firmware_replay`, tests/test_algorithm.py): identical filtered samples, events and activity.
"""
from __future__ import annotations

import numpy as np


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

SEGMENT = 1 << 20                 # replay(): samples per Replayer.feed call


def coefficients(fc=20):
    """(F, SA, WA, C1, C2, B0, KB): the device's table entry (oimon_common.filters.FILTERS)."""
    from oimon_common.filters import FILTERS
    try:
        return FILTERS[int(fc)]
    except KeyError:
        raise ValueError("fc must be one of %r Hz" % (sorted(FILTERS),))


# ---- detection --------------------------------------------------------------------------------
EV_OVERLOAD_START, EV_OVERLOAD_END, EV_FALL, EV_FAULT, EV_FAULT_CLEAR = 1, 2, 4, 8, 16
# event records: the same names and dicts as the device's (firmware/events.py)
from oimon_common.events import (EV_NAMES, OVL_FIELDS, FALL_FIELDS, FAULT_FIELDS, SLOT,  # noqa: E402,F401
                             ACT_FIELDS, event as _event)
PHASE_I, PHASE_II, PHASE_III, PHASE_FULL = 0, 1, 2, 3
BW_DEFAULT = 7355
HIST_N = 21


from oimon_common.limits import phase_limits, IMPACT_PCT_BW  # noqa: E402,F401 - the device's own tables


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
               step_off=bw * 10 // 100, f_impact=bw * IMPACT_PCT_BW // 100, r_impact=15000,
               t_desc_min=50, t_desc_max=2000, t_impwin=100, t_decide=2000, rec_pct=40,
               fault_n=10, clear_n=200, fall_alarm=60000,
               phase=int(limits[4]) if len(limits) > 4 else -1)
    cfg.update(over)
    return cfg


# ---- the per-sample kernel ---------------------------------------------------------------------
# dsp.kernel and detect.kernel as scalar integer loops over a block, written from
# docs/algorithm.md with the firmware's word layouts (k[], st[] of dsp.py; cfg[], st[], ev[],
# act[] of detect.py) so that the two can be read side by side. Words are int64 here, int32 on the device: the
# overflow proof of docs/algorithm.md §4 bounds every intermediate below 2^31, so both give the
# same numbers. Compiled by numba when it is installed (~100x the interpreter); without numba the
# same function runs as plain Python (identical results, only slow).
try:
    import numba as _numba
    _jit = _numba.njit(cache=True, nogil=True)
    JIT = True
except ImportError:                     # pragma: no cover - numba is a dependency
    def _jit(f):
        return f
    JIT = False

# dsp.py k[] and st[] (tests/test_algorithm.py checks these against firmware/dsp.py)
_K_OFF, _K_M, _K_SH, _K_F, _K_SA, _K_WA, _K_C1, _K_C2, _K_B0, _K_KB, _K_CAL, _K_N = \
    0, 4, 13, 16, 17, 18, 19, 20, 21, 22, 23, 24
_S_X1, _S_S1, _S_S2, _S_PRIMED, _S_RING, _S_RIDX, _S_PREV, _S_RUN, _S_N = \
    0, 3, 6, 9, 10, 26, 27, 30, 44
# detect.py cfg[] (CFG_*), st[] (_*), event slots and act[] (A_*)
CFG = dict(comp=0, tens=1, mom=2, deb=3, phase=4, mom2=5, comp_rel=6, tens_rel=7, mom2_rel=8,
           comp_warn=9, tens_warn=10, mom2_warn=11, bw=12, step_on=13, step_off=14,
           f_impact=15, r_impact=16, t_desc_min=17, t_desc_max=18, t_impwin=19, t_decide=20,
           rec_pct=21, fault_n=23, clear_n=24, fall_alarm=25)
CFG_N = 26
(_N, _FAULT, _FRUN, _CRUN, _OA, _CON, _COFF, _WARN, _WCNT, _LATCH, _TRISE, _PKON, _TFALL,
 _TLOADP, _PKLOADP, _DMIN, _FS, _TIMP, _CTLOAD, _CTDESC, _CPKLOAD, _CDMIN, _CPKAX, _CPKRATE,
 _CPKMAP, _CPKMML, _CPKM2, _LCNT, _SCNT, _FALARM, _SX) = range(31)
_ST_N = 44
EV_N, ACT_N, ACT_HIST = 48, 40, 16
_FB, _XB = 16, 32                       # EV_FALL_BASE, EV_FAULT_BASE
EVROW = 2 + 15                          # event record: n, code, up to 15 slot words


@_jit
def _clampd(d):
    """raw - offset clamped to +-(2^23 - 1)."""
    return DMAX if d > DMAX else (-DMAX if d < -DMAX else d)


@_jit
def _filter1(x, x1, s1, s2, F, SA, WA, C1, C2, B0, KB, half):
    """One filter step of one channel (§4) -> (y, s1', s2'): u = x - x1, P = floor(b0 u),
    R = floor(C.s), y = x1 + round((P - R) / 2^F), s' = trunc(A s / 2^16 + [u 2^F, 0]).
    The kernel's split 32-bit products are exact floors (§4), written here as the floors they
    compute; truncation toward zero is floor((t + 2^16 - 1) / 2^16) for t < 0 (the ceiling),
    branch-free: (t >> 63) is -1 for t < 0, else 0."""
    u = x - x1
    R = (C1 * s1 + C2 * s2) >> 16
    P = (u * B0) >> KB
    t1 = SA * s1 - WA * s2 + (u << (F + 16))
    t2 = WA * s1 + SA * s2
    return (x1 + ((P - R + half) >> F), (t1 + ((t1 >> 63) & 0xFFFF)) >> 16,
            (t2 + ((t2 >> 63) & 0xFFFF)) >> 16)


@_jit
def _dsp_block(mode, inp, k, ps, x, y, rate, flags):
    """dsp.kernel over a block, stage by stage (each stage is causal and per sample, so the
    order of the loops does not change a single word): inp is raw counts (n, 4) for mode 0,
    calibrated units (n, 3) for mode 1 (raw flags and calibration skipped; values beyond +-XMAX
    clamped with FL_CLAMP). x (n, 3) int64 scratch; filtered values to y, load rate to rate,
    flags to flags. State: ps (dsp.py st[] layout), coefficients and calibration: k."""
    n = inp.shape[0]
    # -- raw flags (§3): saturation code, rail, run of identical raw >= STUCK_N
    for i in range(n):
        flags[i] = 0
    if mode == 0:
        for c in range(3):
            prev = ps[_S_PREV + c]
            run = ps[_S_RUN + c]
            for i in range(n):
                r = np.int64(inp[i, c])
                fl = 0
                if r == SAT_HI or r == SAT_LO:
                    fl = 1 << c
                elif r >= RAIL or r <= -RAIL:
                    fl = 8 << c
                if r == prev:
                    run += 1
                    if run >= STUCK_N:
                        run = STUCK_N
                        fl |= 64 << c
                else:
                    prev = r
                    run = 1
                flags[i] |= fl
            ps[_S_PREV + c] = prev
            ps[_S_RUN + c] = run
    if k[_K_CAL] == 0:
        for i in range(n):
            y[i, 0] = 0
            y[i, 1] = 0
            y[i, 2] = 0
            rate[i] = 0
            flags[i] |= FL_UNCAL
        ps[_S_PRIMED] = 0
        return
    # -- calibration (§2): d = clamp(raw - offset) = h 2^12 + l, acc = sum h m + (l m >> 12),
    #    x = (acc + 2^(S-13)) >> (S-12), clamped to +-XMAX
    for i in range(n):
        fl = 0
        if mode == 0:
            d0 = _clampd(np.int64(inp[i, 0]) - k[_K_OFF])
            d1 = _clampd(np.int64(inp[i, 1]) - k[_K_OFF + 1])
            d2 = _clampd(np.int64(inp[i, 2]) - k[_K_OFF + 2])
            h0, l0, h1, l1, h2, l2 = d0 >> 12, d0 & 4095, d1 >> 12, d1 & 4095, d2 >> 12, d2 & 4095
        for c in range(3):
            if mode == 0:
                m0 = k[_K_M + 3 * c]
                m1 = k[_K_M + 3 * c + 1]
                m2 = k[_K_M + 3 * c + 2]
                acc = h0 * m0 + ((l0 * m0) >> 12) + h1 * m1 + ((l1 * m1) >> 12) \
                    + h2 * m2 + ((l2 * m2) >> 12)
                sh = k[_K_SH + c]
                v = (acc + (np.int64(1) << (sh - 13))) >> (sh - 12)
            else:
                v = np.int64(inp[i, c])
            if v > XMAX:
                v = XMAX
                fl = FL_CLAMP
            elif v < -XMAX:
                v = -XMAX
                fl = FL_CLAMP
            x[i, c] = v
        flags[i] |= fl
    if n == 0:
        return
    if ps[_S_PRIMED] == 0:                # start in the steady state of the first sample
        for c in range(3):
            ps[_S_X1 + c] = x[0, c]
            ps[_S_S1 + c] = 0
            ps[_S_S2 + c] = 0
        for c in range(16):
            ps[_S_RING + c] = x[0, 0]
        ps[_S_PRIMED] = 1
    # -- filter (§4), _filter1 per channel
    F = k[_K_F]
    SA = k[_K_SA]
    WA = k[_K_WA]
    C1 = k[_K_C1]
    C2 = k[_K_C2]
    B0 = k[_K_B0]
    KB = k[_K_KB]
    half = np.int64(1) << (F - 1)
    xa1, xb1, xc1 = ps[_S_X1], ps[_S_X1 + 1], ps[_S_X1 + 2]
    sa1, sb1, sc1 = ps[_S_S1], ps[_S_S1 + 1], ps[_S_S1 + 2]
    sa2, sb2, sc2 = ps[_S_S2], ps[_S_S2 + 1], ps[_S_S2 + 2]
    for i in range(n):                    # three channels side by side: independent chains
        xa, xb, xc = x[i, 0], x[i, 1], x[i, 2]
        y[i, 0], sa1, sa2 = _filter1(xa, xa1, sa1, sa2, F, SA, WA, C1, C2, B0, KB, half)
        y[i, 1], sb1, sb2 = _filter1(xb, xb1, sb1, sb2, F, SA, WA, C1, C2, B0, KB, half)
        y[i, 2], sc1, sc2 = _filter1(xc, xc1, sc1, sc2, F, SA, WA, C1, C2, B0, KB, half)
        xa1, xb1, xc1 = xa, xb, xc
    ps[_S_X1], ps[_S_X1 + 1], ps[_S_X1 + 2] = xa1, xb1, xc1
    ps[_S_S1], ps[_S_S1 + 1], ps[_S_S1 + 2] = sa1, sb1, sc1
    ps[_S_S2], ps[_S_S2 + 1], ps[_S_S2 + 2] = sa2, sb2, sc2
    # -- load rate: unfiltered axial, (xa[n] - xa[n - 10]) * 10 N/s, 16-entry ring
    ri = ps[_S_RIDX]
    for i in range(n):
        xa = x[i, 0]
        rate[i] = (xa - ps[_S_RING + ((ri - RATE_LAG) & 15)]) * 10
        ps[_S_RING + ri] = xa
        ri = (ri + 1) & 15
    ps[_S_RIDX] = ri


@_jit
def _det_block(y, rate, flags, a, st, cfg, ev, act, evbuf):
    """detect.kernel for samples a.. of a block (filtered y, load rate, flags); events to evbuf
    rows (n, code, 15 slot words) in the firmware's report order (fault, fault clear, overload
    end, overload start, fall). Stops early when evbuf might overflow: returns (next sample,
    events written). The statements are the firmware's, in its order; the state words that
    change on most samples are held in locals for the block (st[], act[] in the firmware's
    layout before and after), the others (candidate copies, overload scratch, ev[]) stay in the
    arrays."""
    # configuration
    COMP, TENS, MOM2, DEB = cfg[0], cfg[1], cfg[5], cfg[3]
    COMP_REL, TENS_REL, MOM2_REL = cfg[6], cfg[7], cfg[8]
    COMP_WARN, TENS_WARN, MOM2_WARN = cfg[9], cfg[10], cfg[11]
    BW, STEP_ON, STEP_OFF, F_IMPACT, R_IMPACT = cfg[12], cfg[13], cfg[14], cfg[15], cfg[16]
    T_DESC_MIN, T_DESC_MAX, T_IMPWIN, T_DECIDE, REC_PCT = cfg[17], cfg[18], cfg[19], cfg[20], \
        cfg[21]
    FAULT_N, CLEAR_N, FALL_ALARM = cfg[23], cfg[24], cfg[25]
    # state
    n, fault, frun, crun = st[_N], st[_FAULT], st[_FRUN], st[_CRUN]
    oa, con, coff, warn, wcnt = st[_OA], st[_CON], st[_COFF], st[_WARN], st[_WCNT]
    latch, trise, pkon, tfall = st[_LATCH], st[_TRISE], st[_PKON], st[_TFALL]
    tloadp, pkloadp, dmin, fs, timp = st[_TLOADP], st[_PKLOADP], st[_DMIN], st[_FS], st[_TIMP]
    lcnt, scnt = st[_LCNT], st[_SCNT]
    a_loaded, a_valid, a_invalid = act[1], act[2], act[3]
    a_pk_ax, a_min_ax, a_pk_map, a_pk_mml, a_pk_m2 = act[4], act[5], act[6], act[7], act[8]
    nev = 0
    cap = evbuf.shape[0] - 5
    i = a
    m = y.shape[0]
    while i < m:
        fl = np.int64(flags[i])
        e = 0
        # -- sensor faults: saturation/rail run >= FAULT_N, or stuck; clear after CLEAR_N clean
        if fl & 0x3F:
            frun += 1
        else:
            frun = 0
        if fl & 0x1FF:
            crun = 0
        elif crun < CLEAR_N:
            crun += 1
        if fault == 0:
            if frun >= FAULT_N or (fl & 0x1C0):
                fault = 1
                e |= EV_FAULT
                ev[_XB + 1] = n - frun + 1 if frun >= FAULT_N else n - 63
                ev[_XB + 0] = 1
                ev[_XB + 2] = n
                ev[_XB + 3] = 0
                ev[_XB + 4] = 0
                ev[_XB + 5] = fl & 0x1FF
                ev[_XB + 6] = fl & 0x1FF
                act[11] += 1
        else:
            ev[_XB + 6] |= fl & 0x1FF
            if crun >= CLEAR_N:
                fault = 0
                e |= EV_FAULT_CLEAR
                ev[_XB + 0] = 2
                ev[_XB + 3] = n
                ev[_XB + 4] = n - ev[_XB + 2]
        # -- validity: no fault, calibrated, no tare, no fault flag on this sample
        if fault != 0 or (fl & 0x7FF):
            if oa != 0:
                e |= EV_OVERLOAD_END
                ev[0] = 2
                ev[3] = n
                ev[4] = n - ev[1]
                ev[13] = 1
                ev[14] = n
            oa = 0
            con = 0
            coff = 0
            warn = 0
            wcnt = 0
            latch = 0
            tfall = -1
            fs = 0
            a_invalid += 1
        else:
            a_valid += 1
            ax = np.int64(y[i, 0])
            ma = abs(np.int64(y[i, 1]))
            mm = abs(np.int64(y[i, 2]))
            rt = np.int64(rate[i])
            qa = min(ma, 32767)
            qm = min(mm, 32767)
            m2 = qa * qa + qm * qm
            # -- daily activity: load-cycle latch (on >= 20 % BW, off < 10 % BW), histogram
            rising = 0
            if latch == 0:
                if ax >= STEP_ON:
                    latch = 1
                    rising = 1
                    trise = n
                    pkon = ax
                    act[0] += 1
                elif tfall >= 0 and ax < dmin:
                    dmin = ax
            else:
                if ax < STEP_OFF:
                    latch = 0
                    tfall = n
                    tloadp = trise
                    pkloadp = pkon
                    dmin = ax
                elif ax > pkon:
                    pkon = ax
            a_loaded += latch
            a_pk_ax = max(a_pk_ax, ax)
            a_min_ax = min(a_min_ax, ax)
            a_pk_map = max(a_pk_map, ma)
            a_pk_mml = max(a_pk_mml, mm)
            a_pk_m2 = max(a_pk_m2, m2)
            b = (ax * 10) // BW
            if b < 0:
                b = 0
            elif b > 20:
                b = 20
            act[ACT_HIST + b] += 1
            # -- overload: onset after DEB over samples, release after DEB all below 90 %
            w = 0
            if ax > COMP:
                w = 1
            if ax < -TENS:
                w |= 2
            if m2 > MOM2:
                w |= 4
            if oa == 0:
                if w != 0:
                    con += 1
                    if con == 1:
                        st[_SX] = w
                        st[_SX + 1] = ax
                        st[_SX + 2] = ax
                        st[_SX + 3] = ma
                        st[_SX + 4] = mm
                        st[_SX + 5] = m2
                        st[_SX + 6] = 0
                        st[_SX + 7] = 0
                    else:
                        st[_SX] |= w
                        st[_SX + 1] = max(st[_SX + 1], ax)
                        st[_SX + 2] = min(st[_SX + 2], ax)
                        st[_SX + 3] = max(st[_SX + 3], ma)
                        st[_SX + 4] = max(st[_SX + 4], mm)
                        st[_SX + 5] = max(st[_SX + 5], m2)
                    lo = st[_SX + 7] + ax
                    st[_SX + 6] += lo >> 16
                    st[_SX + 7] = lo & 0xFFFF
                    if con >= DEB:
                        oa = 1
                        coff = 0
                        e |= EV_OVERLOAD_START
                        ev[0] = 1
                        ev[1] = n - con + 1
                        ev[2] = n
                        ev[3] = 0
                        ev[4] = con
                        for j in range(8):
                            ev[5 + j] = st[_SX + j]
                        ev[13] = 0
                        ev[14] = 0
                        act[9] += 1
                else:
                    con = 0
            else:
                ev[5] |= w
                ev[6] = max(ev[6], ax)
                ev[7] = min(ev[7], ax)
                ev[8] = max(ev[8], ma)
                ev[9] = max(ev[9], mm)
                ev[10] = max(ev[10], m2)
                lo = ev[12] + ax
                ev[11] += lo >> 16
                ev[12] = lo & 0xFFFF
                ev[4] = n - ev[1] + 1
                if ax <= COMP_REL and ax >= -TENS_REL and m2 <= MOM2_REL:
                    coff += 1
                    if coff >= DEB:
                        oa = 0
                        con = 0
                        e |= EV_OVERLOAD_END
                        ev[0] = 2
                        ev[3] = n - coff + 1
                        ev[4] = n - coff + 1 - ev[1]
                        ev[14] = n
                else:
                    coff = 0
            # -- warning (alarm level 1): any value over 80 % of a limit for DEB samples
            if ax > COMP_WARN or ax < -TENS_WARN or m2 > MOM2_WARN:
                if wcnt < DEB:
                    wcnt += 1
                if wcnt >= DEB:
                    warn = 1
            else:
                wcnt = 0
                warn = 0
            # -- fall: loading -> descent -> impact -> recovery
            if fs == 2:
                lcnt += latch
                scnt += rising
                if n - timp >= T_DECIDE - 1:
                    fs = 0
                    rl = T_DECIDE - T_IMPWIN
                    if lcnt * 100 < REC_PCT * rl:
                        e |= EV_FALL
                        ev[_FB + 0] = st[_CTLOAD]
                        ev[_FB + 1] = st[_CTDESC]
                        ev[_FB + 2] = timp
                        ev[_FB + 3] = n
                        ev[_FB + 4] = st[_CPKLOAD]
                        ev[_FB + 5] = st[_CDMIN]
                        ev[_FB + 6] = st[_CPKAX]
                        ev[_FB + 7] = st[_CPKRATE]
                        ev[_FB + 8] = st[_CPKMAP]
                        ev[_FB + 9] = st[_CPKMML]
                        ev[_FB + 10] = st[_CPKM2]
                        ev[_FB + 11] = lcnt
                        ev[_FB + 12] = rl
                        ev[_FB + 13] = scnt
                        act[10] += 1
                        st[_FALARM] = n + FALL_ALARM
            elif fs == 1:
                st[_CPKAX] = max(st[_CPKAX], ax)
                st[_CPKRATE] = max(st[_CPKRATE], rt)
                st[_CPKMAP] = max(st[_CPKMAP], ma)
                st[_CPKMML] = max(st[_CPKMML], mm)
                st[_CPKM2] = max(st[_CPKM2], m2)
                if n - timp >= T_IMPWIN - 1:
                    if st[_CPKRATE] >= R_IMPACT and st[_CPKAX] >= F_IMPACT:
                        fs = 2
                        lcnt = 0
                        scnt = 0
                        act[12] += 1
                    else:
                        fs = 0
            elif rising != 0 and tfall >= 0:
                dd = n - tfall
                if dd >= T_DESC_MIN and dd <= T_DESC_MAX:
                    fs = 1
                    timp = n
                    st[_CTLOAD] = tloadp
                    st[_CTDESC] = tfall
                    st[_CPKLOAD] = pkloadp
                    st[_CDMIN] = dmin
                    st[_CPKAX] = ax
                    st[_CPKRATE] = rt
                    st[_CPKMAP] = ma
                    st[_CPKMML] = mm
                    st[_CPKM2] = m2
        i += 1
        if e:
            for code in (8, 16, 2, 1, 4):
                if e & code:
                    base = 0 if code <= 2 else (_FB if code == 4 else _XB)
                    evbuf[nev, 0] = n
                    evbuf[nev, 1] = code
                    for j in range(15):
                        evbuf[nev, 2 + j] = ev[base + j]
                    nev += 1
        n += 1
        if nev >= cap:
            break
    st[_N], st[_FAULT], st[_FRUN], st[_CRUN] = n, fault, frun, crun
    st[_OA], st[_CON], st[_COFF], st[_WARN], st[_WCNT] = oa, con, coff, warn, wcnt
    st[_LATCH], st[_TRISE], st[_PKON], st[_TFALL] = latch, trise, pkon, tfall
    st[_TLOADP], st[_PKLOADP], st[_DMIN], st[_FS], st[_TIMP] = tloadp, pkloadp, dmin, fs, timp
    st[_LCNT], st[_SCNT] = lcnt, scnt
    act[1], act[2], act[3] = a_loaded, a_valid, a_invalid
    act[4], act[5], act[6], act[7], act[8] = a_pk_ax, a_min_ax, a_pk_map, a_pk_mml, a_pk_m2
    return i, nev


class Replayer:
    """Streaming bit-exact replay: feed(raw block) -> (filtered (n, 3) int32, events).

    The state is the firmware's own words (dsp k[]/st[], detect cfg[]/st[]/ev[]/act[]), carried
    from block to block, so any block size gives the same result (tested)."""

    def __init__(self, cal, limits=None, bw=BW_DEFAULT, fc=20, config=None, keep_extra=False):
        self.cal = cal if (cal is not None and not cal.check()) else None
        self.k = np.zeros(_K_N, np.int64)
        self.k[_K_F:_K_F + 7] = coefficients(fc)
        if self.cal is not None:
            self.k[_K_OFF:_K_OFF + 4] = [int(v) for v in self.cal.offsets[:4]]
            self.k[_K_M:_K_M + 9] = [int(v) for v in self.cal.matrix]
            self.k[_K_SH:_K_SH + 3] = [int(v) for v in self.cal.shifts]
            self.k[_K_CAL] = 1
        self.ps = np.zeros(_S_N, np.int64)
        self.ps[_S_PREV:_S_PREV + 3] = 0x40000000      # outside the 24-bit range: first is new
        self.cfg = config if config is not None else make_config(limits, bw)
        self.cfgw = np.zeros(CFG_N, np.int64)
        for key, v in self.cfg.items():
            self.cfgw[CFG[key]] = v
        self.det = np.zeros(_ST_N, np.int64)
        self.det[_TFALL] = -1
        self.ev = np.zeros(EV_N, np.int64)
        self.act = np.zeros(ACT_N, np.int64)
        self.evbuf = np.zeros((1024, EVROW), np.int64)
        self.keep_extra = keep_extra
        self.events = []

    def _signal(self, mode, a):
        """Stage 1 (dsp): block -> (filtered (n, 3), load rate (n,), flags (n,)), all int32.
        Touches only the dsp state (k, ps)."""
        a = np.ascontiguousarray(a[:, :4] if mode == 0 else a[:, :3], dtype=np.int32)
        n = a.shape[0]
        y = np.empty((n, 3), np.int32)
        rate = np.empty(n, np.int32)
        fl = np.empty(n, np.int32)
        _dsp_block(mode, a, self.k, self.ps, np.empty((n, 3), np.int32), y, rate, fl)
        return y, rate, fl

    def _detect(self, y, rate, fl):
        """Stage 2 (detection) of a block -> its events. Touches only the detector state."""
        evs = []
        i = 0
        while i < len(fl):
            i, ne = _det_block(y, rate, fl, i, self.det, self.cfgw, self.ev, self.act, self.evbuf)
            for row in self.evbuf[:ne].tolist():
                code = row[1]
                evs.append(_event(row[0], code, row[2:2 + len(SLOT[code][1])]))
        self.events.extend(evs)
        return evs

    def _feed(self, mode, a):
        y, rate, fl = self._signal(mode, a)
        evs = self._detect(y, rate, fl)
        if self.keep_extra:
            return y, evs, rate, fl
        return y, evs

    def stream(self, blocks, calibrated=False, ahead=2):
        """Feed every block of the iterable `blocks` (raw (n, 4), or calibrated (n, 3) if
        `calibrated`); yields (filtered, events) per block, in order, like feed() would. Three
        threads: the caller's (reading the blocks), the dsp stage, the detection stage (numba
        releases the GIL, so they use both cores). The two stages have disjoint state, so block
        k+1 can be filtered while block k is in detection; each stage still sees the blocks in
        order, so the result is the same as sequential feed() calls (tested). At most `ahead`
        + 2 blocks are in flight (bounded memory)."""
        from concurrent.futures import ThreadPoolExecutor
        from collections import deque
        mode = 1 if calibrated else 0
        with ThreadPoolExecutor(1) as sig, ThreadPoolExecutor(1) as det:
            q = deque()
            try:
                for blk in blocks:
                    fs = sig.submit(self._signal, mode, blk)
                    q.append((fs, det.submit(lambda f: (f.result()[0], self._detect(
                        *f.result())), fs)))
                    while len(q) > ahead or (q and q[0][1].done()):
                        yield q.popleft()[1].result()
                while q:
                    yield q.popleft()[1].result()
            finally:
                for fs, fd in q:
                    fs.cancel()
                    fd.cancel()

    def feed(self, raw):
        """raw (n, 4) raw counts -> (filtered (n, 3) int32, events of the block)."""
        return self._feed(0, raw)

    def feed_calibrated(self, x):
        """Calibrated device units (n, 3) straight into the stages after calibration (load rate,
        filter, detection): no raw flags; values beyond +-XMAX are clamped (FL_CLAMP)."""
        return self._feed(1, x)

    def activity(self):
        d = {k: int(v) for k, v in zip(ACT_FIELDS, self.act)}
        d["hist"] = [int(v) for v in self.act[ACT_HIST:ACT_HIST + HIST_N]]
        return d


class _Filter:
    """The filter stage alone (with its clamp and load rate) on calibrated values, state carried
    between run() calls; primed on the first sample like the firmware."""

    def __init__(self, co):
        self.rp = Replayer(None)
        self.rp.k[_K_F:_K_F + 7] = co
        self.rp.k[_K_CAL] = 1

    def run(self, x):
        """x (n, 3) calibrated -> y (n, 3) int32."""
        return self.rp.feed_calibrated(np.asarray(x))[0]


def replay(raw, cal, limits=None, bw=BW_DEFAULT, fc=20, segment=SEGMENT):
    """raw (n, 4) int32 raw counts -> (filtered (n, 3) int32, events: list of dicts).

    Events are dicts {"n": sample, "event": "overload_start" | "overload_end" | "fall" |
    "fault" | "fault_clear", fields of the firmware's event slot (OVL_FIELDS, FALL_FIELDS,
    FAULT_FIELDS)} in the firmware's report order; the firmware emits the same list
    (tests/test_algorithm.py)."""
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
from oimon_common import calib
import dsp, detect
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
    from oimon_common import calib
    gains = [[0.00596, 0.00011, -0.00018], [0.00006, 0.00401, 0.00009],
             [-0.00012, 0.00008, 0.00398]]
    return calib.Calibration.from_gains(gains, offsets=(15000, -42000, 8000, 0), version=1,
                                        date=1700000000)


def forces_to_raw(forces, cal, noise=3.0, seed=1):
    """Physical forces (n, 3) (N, N*m) -> raw counts (n, 4) int32 through the inverse of the
    calibration matrix, + Gaussian ADC noise (counts rms; a real 24-bit ADC always has some:
    without it the stuck-output check would, rightly, flag the sensor), saturating at the
    24-bit codes; channel 3 (AIN3) carries the excitation sense (hardware/README.md 3) + noise."""
    rng = np.random.default_rng(seed)
    G = np.array(cal.gains())
    u = to_units(forces)
    raw = np.linalg.solve(G, u.T).T + np.array(cal.offsets[:3], float)
    n = raw.shape[0]
    raw = np.hstack([raw, np.full((n, 1), 3495253.0)]) + rng.normal(0.0, noise, (n, 4))
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
