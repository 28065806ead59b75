"""The bit-exact port of the firmware's signal path (firmware/dsp.py kernel, detect.py kernel,
docs/algorithm.md) as scalar integer kernels compiled by numba: `_dsp_block` does per sample
what dsp.kernel does; fall_kernels.py's `det_step` what detect.kernel does and `imu_step` what
imufall.kernel does, with the firmware's own state words.

The word layouts, flag bits and event codes are the firmware's, generated from its sources into
fw_tables.py (tools/gen_fw_tables.py); the filter table is oimon_common.filters. The streaming
driver around the kernels is replayer.py; the firmware itself on MicroPython, the reference the
kernels are tested against, is fwrun.py.
"""
from __future__ import annotations

import numba
import numpy as np

from oimon_common.events import (EV_NAMES, OVL_FIELDS, FALL_FIELDS, FAULT_FIELDS, SLOT,  # noqa: F401
                                 ACT_FIELDS, event)
from oimon_common.filters import FILTERS
from oimon_common.limits import phase_limits, IMPACT_PCT_BW  # noqa: F401 - the device's own tables
from . import fw_tables as _T
from .fw_tables import (  # noqa: F401 - re-exported: the model's constants are the firmware's
    SAT_HI, SAT_LO, RAIL, STUCK_N, XMAX, DMAX, RATE_LAG, FL_SAT, FL_RAIL, FL_STUCK, FL_FAULT,
    FL_UNCAL, FL_TARE, FL_CLAMP, EV_OVERLOAD_START, EV_OVERLOAD_END, EV_FALL, EV_FAULT,
    EV_FAULT_CLEAR, PHASE_I, PHASE_II, PHASE_III, PHASE_FULL, BW_DEFAULT, HIST_N, ACT_HIST, ACT_N,
    CFG_N, EV_FALL_BASE, EV_FAULT_BASE,
    _K_OFF, _K_M, _K_SH, _K_F, _K_SA, _K_WA, _K_C1, _K_C2, _K_B0, _K_KB, _K_CAL, _K_N,
    _S_X1, _S_S1, _S_S2, _S_PRIMED, _S_RING, _S_RIDX, _S_PREV, _S_RUN, _S_N,
    CFG_COMP, CFG_TENS, CFG_DEB, CFG_MOM2, CFG_COMP_REL, CFG_TENS_REL, CFG_MOM2_REL,
    CFG_COMP_WARN, CFG_TENS_WARN, CFG_MOM2_WARN, CFG_BW, CFG_STEP_ON, CFG_STEP_OFF,
    CFG_F_IMPACT, CFG_R_IMPACT, CFG_T_DESC_MIN, CFG_T_DESC_MAX, CFG_T_IMPWIN, CFG_T_DECIDE,
    CFG_REC_PCT, CFG_FAULT_N, CFG_CLEAR_N, CFG_FALL_ALARM,
    O_STATE, O_START, O_ONSET, O_END, O_DUR, O_WHICH, O_PK_AX, O_MIN_AX, O_PK_MAP, O_PK_MML,
    O_PK_M2, O_IMP_HI, O_IMP_LO, O_TRUNC, O_REPORT,
    F_T_LOAD, F_T_DESC, F_T_IMP, F_T_DEC, F_PK_LOAD, F_MIN_DESC, F_PK_AX, F_PK_RATE, F_PK_MAP,
    F_PK_MML, F_PK_M2, F_LOADED, F_REC_LEN, F_STEPS,
    X_STATE, X_ONSET, X_RAISED, X_CLEAR, X_DUR, X_FLAGS, X_ACC,
    A_STEPS, A_LOADED, A_VALID, A_INVALID, A_PK_AX, A_MIN_AX, A_PK_MAP, A_PK_MML, A_PK_M2,
    A_OVERLOADS, A_FALLS, A_FAULTS, A_IMPACTS,
    _N, _FAULT, _FRUN, _CRUN, _OA, _CON, _COFF, _WARN, _WCNT, _LATCH, _TRISE, _PKON, _TFALL,
    _TLOADP, _PKLOADP, _DMIN, _FS, _TIMP, _CTLOAD, _CTDESC, _CPKLOAD, _CDMIN, _CPKAX, _CPKRATE,
    _CPKMAP, _CPKMML, _CPKM2, _LCNT, _SCNT, _HAVETF, _SX, _GAPC, _HARD, _CPKREC, _ST_N,
    FL_GAP, EV_FALL_IMU, EV_IMU_FAULT, EV_IMU_CLEAR, EV_IMU_BASE, FX_N, FX_RING, RING_NONE,
    F_SOURCE)

# detect.py cfg[] by the lower-case names of CFG_* (what make_config returns)
CFG = {k[4:].lower(): v for k, v in vars(_T).items() if k.startswith("CFG_") and k != "CFG_N"}
from .fw_tables import EV_N  # noqa: E402 - detect.Detector.ev: array('i', 64), four 16-word slots
_FB, _XB = EV_FALL_BASE, EV_FAULT_BASE
EVROW = 2 + 16                          # event record: n, code, up to 16 slot words
_event = event


def coefficients(fc=20):
    """(F, SA, WA, C1, C2, B0, KB): the device's table entry (oimon_common.filters.FILTERS)."""
    try:
        return FILTERS[int(fc)]
    except KeyError:
        raise ValueError("fc must be one of %r Hz" % (sorted(FILTERS),))


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
# same numbers. Compiled by numba (a dependency, ~100x the interpreter; cache=True keeps the
# machine code on disk, see bench_sim.replay_compile_seconds); numba releases the GIL (nogil) so
# Replayer.stream runs the two stages on two cores.
_jit = numba.njit(cache=True, nogil=True)


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


# The detection kernels (detect.kernel per load sample, imufall.kernel per IMU row, the two
# interleaved) are in fall_kernels.py.
from .fall_kernels import det_step, imu_step, fused_block, event_dicts  # noqa: E402,F401
