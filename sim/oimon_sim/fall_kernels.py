"""Bit-exact kernels of the device's fall detection (docs/algorithm.md 5.2-5.8):
`det_step` is firmware/detect.py's kernel for one load sample, `imu_step` firmware/imufall.py's
kernel for one IMU row, `fused_block` runs a block of load samples with the IMU rows interleaved
as the firmware's result is defined (each IMU row after the load sample it is stamped with).
The driver around them is replayer.Replayer. `ImuReplayer` / `replay_imu` replay an IMU stream
with no load history (the load channel missing: no veto, no soft candidates), as for UMAFall.

The load detector's word layouts are the firmware's, from fw_tables.py (generated from
detect.py); the inertial path's are written here and checked against imufall.py by
tests/test_falls.py. Times are int32 words in the firmware, so every difference is taken
modulo 2^32 (_d)."""
import numba
import numpy as np

from oimon_common.events import SLOT, event
from . import fw_tables as _T


def _jit(f):
    return numba.njit(cache=True, nogil=True)(f)

EV_FALL_IMU, EV_IMU_FAULT, EV_IMU_CLEAR = 32, 64, 128
IF_GAP, IF_NOGYRO = 1, 2
IMU_FIELDS = ("t_first", "t_imp", "t_dec", "pk_acc", "dot", "p2", "q2", "dev", "w", "loaded",
              "valid", "pk_w", "ff", "source", "npost")
C_N = 27
S_N = 640
EB = 48
FX_N = 208
FX_RING = 16
RING_NONE = 0x40000000
# state words (imufall._*)
_CNT, _FAULT, _SRUN, _KRUN, _CRUN, _PREV, _G, _GINIT, _BT0, _BI = 0, 1, 2, 3, 4, 5, 11, 12, 13, 22
_CH, _TF, _TL, _CPK, _PRE, _CPKW, _CFF = 23, 24, 25, 26, 27, 36, 37
_SOFT, _TS, _SSEQ, _SPRE, _LASTFF, _HAVEFF, _LASTIF, _HAVEIF, _SUM, _RING = \
    38, 39, 40, 41, 50, 51, 52, 53, 54, 64
# config words (imufall.C_*)
(C_A_IMP, C_A_SOFT, C_PRE_A, C_PRE_B, C_POST_A, C_POST, C_POST_END, C_COS2, C_SDEV, C_SGYRO,
 C_VALID_PCT, C_LOAD_PCT, C_SOFT_WIN, C_DUP_A, C_DUP_B, C_FF, C_SAT_A, C_SAT_G, C_SAT_N,
 C_STUCK_N, C_CLEAR_N, C_FALARM, C_MIN_PRE, C_MIN_POST, C_COS2_SOFT, C_SOFT_AT_A,
 C_SOFT_AT_B) = range(27)


def defaults(falarm=60000, rate_hz=104):
    return [3000, 1500, 1700, 900, 1000, 2500, 200, 84, 150, 300, 90, 40, 500, 3000, 500, 600,
            31900, 22900, 10, rate_hz, 2 * rate_hz, falarm, 2, 6, 192, 150, 350]


@_jit
def _d(x):
    """int32 wrap of a difference (the firmware's viper word)."""
    return ((x + 0x80000000) & 0xFFFFFFFF) - 0x80000000


@_jit
def _fdiv(a, b):
    return a // b            # floor, like viper's //


@_jit
def _sum_blocks(st, lo, hi, dst):
    for i in range(9):
        st[dst + i] = 0
    nb = 0
    for k in range(64):
        b = _RING + 9 * k
        if st[b + 1] > 0:
            t0 = st[b]
            if _d(t0 - lo) >= 0 and _d(t0 - hi) < 0:
                nb += 1
                for i in range(1, 8):
                    st[dst + i - 1] += st[b + i]
                if st[b + 8] > st[dst + 8]:
                    st[dst + 8] = st[b + 8]
    return nb


@_jit
def _mean16(s, c):
    v = _fdiv(s, c * 16)
    if v > 110:
        v = 110
    elif v < -110:
        v = -110
    return v


@_jit
def _judge(st, cfg, ev, pre, tref):
    nb = _sum_blocks(st, _d(tref + cfg[C_POST_A]), _d(tref + cfg[C_POST] - cfg[C_POST_END]), _SUM)
    ev[EB + 14] = nb
    if nb < cfg[C_MIN_POST] or st[pre] <= 0:
        return 0
    c = st[pre]
    px, py, pz = _mean16(st[pre + 1], c), _mean16(st[pre + 2], c), _mean16(st[pre + 3], c)
    c = st[_SUM]
    qx, qy, qz = _mean16(st[_SUM + 1], c), _mean16(st[_SUM + 2], c), _mean16(st[_SUM + 3], c)
    d = px * qx + py * qy + pz * qz
    p2 = px * px + py * py + pz * pz
    q2 = qx * qx + qy * qy + qz * qz
    ev[EB + 4] = d
    ev[EB + 5] = p2
    ev[EB + 6] = q2
    dev = _fdiv(st[_SUM + 4], c)
    ev[EB + 7] = dev
    wm = -1
    if st[_SUM + 6] == c:
        wm = _fdiv(st[_SUM + 5], c)
    ev[EB + 8] = wm
    turned = d <= 0 or d * d <= ((cfg[C_COS2] * p2) >> 8) * q2
    still = dev <= cfg[C_SDEV] and wm <= cfg[C_SGYRO]
    return 1 if (turned and still) else 0


@_jit
def _turned(st, pre, cos2):
    c = st[pre]
    px, py, pz = _mean16(st[pre + 1], c), _mean16(st[pre + 2], c), _mean16(st[pre + 3], c)
    c = st[_SUM]
    if c <= 0:
        return 0
    qx, qy, qz = _mean16(st[_SUM + 1], c), _mean16(st[_SUM + 2], c), _mean16(st[_SUM + 3], c)
    d = px * qx + py * qy + pz * qz
    p2 = px * px + py * py + pz * pz
    q2 = qx * qx + qy * qy + qz * qz
    return 1 if (d <= 0 or d * d <= ((cos2 * p2) >> 8) * q2) else 0


@_jit
def _load_veto(fx, cfg, ev, lo, hi):
    j0 = lo >> 6
    nblk = _d((hi >> 6) - j0)
    cov = val = ld = miss = 0
    for k in range(nblk):
        j = _d(j0 + k)
        b = FX_RING + 3 * (j & 63)
        if fx[b] == j:
            cov += 64
            val += fx[b + 1]
            ld += fx[b + 2]
        else:
            miss += 1
    if miss != 0 or cov == 0:
        ev[EB + 9] = -1
        ev[EB + 10] = -1
        return 0
    ev[EB + 9] = ld
    ev[EB + 10] = val
    if val * 100 >= cfg[C_VALID_PCT] * cov and ld * 100 >= cfg[C_LOAD_PCT] * val:
        return 1
    return 0


@_jit
def _dup(st, fx, cfg, t, tf, tl):
    lo = _d(tf - cfg[C_DUP_A])
    hi = _d(tl + cfg[C_DUP_B])
    if fx[3] != 0 and _d(fx[2] - t) <= 0:
        c = fx[1]
        if _d(c - lo) >= 0 and _d(c - hi) <= 0:
            return 1
    if st[_HAVEIF] != 0:
        c = st[_LASTIF]
        if _d(c - lo) >= 0 and _d(c - hi) <= 0:
            return 1
    return 0


@_jit
def imu_step(r, st, cfg, ev, fx):
    """imufall.kernel: one row r (8 words) -> event codes; st, cfg, ev, fx int64 arrays."""
    st[_CNT] = _d(st[_CNT] + 1)
    e = 0
    t = r[0]
    fl = r[7]
    sat = 0
    same = 1
    for c in range(6):
        v = r[1 + c]
        if v != st[_PREV + c]:
            same = 0
        st[_PREV + c] = v
        if v < 0:
            v = -v
        if c < 3:
            if v >= cfg[C_SAT_A]:
                sat = 1
        elif (fl & IF_NOGYRO) == 0 and v >= cfg[C_SAT_G]:
            sat = 1
    if sat:
        st[_SRUN] += 1
    else:
        st[_SRUN] = 0
    if same:
        if st[_KRUN] < cfg[C_STUCK_N]:
            st[_KRUN] += 1
    else:
        st[_KRUN] = 0
    if sat == 0 and same == 0:
        if st[_CRUN] < cfg[C_CLEAR_N]:
            st[_CRUN] += 1
    else:
        st[_CRUN] = 0
    if st[_FAULT] == 0:
        if st[_SRUN] >= cfg[C_SAT_N] or st[_KRUN] >= cfg[C_STUCK_N]:
            st[_FAULT] = 1
            fx[7] = 1
            ev[EB + 15] = 1 if st[_SRUN] >= cfg[C_SAT_N] else 2
            e |= EV_IMU_FAULT
    elif st[_CRUN] >= cfg[C_CLEAR_N]:
        st[_FAULT] = 0
        fx[7] = 0
        e |= EV_IMU_CLEAR
    if st[_FAULT] != 0 or sat != 0:
        st[_CH] = 0
        st[_SOFT] = 0
        st[_BT0 + 1] = 0
        if st[_FAULT] != 0:
            for k in range(64):
                st[_RING + 9 * k + 1] = 0
        st[_SSEQ] = fx[6]
        return e
    m2 = 0
    for c in range(3):
        v = r[1 + c]
        if v > 26000:
            v = 26000
        elif v < -26000:
            v = -26000
        m2 += v * v
    m = 0
    b = 1 << 30
    while b > m2:
        b >>= 2
    while b != 0:
        if m2 >= m + b:
            m2 -= m + b
            m = (m >> 1) + b
        else:
            m >>= 1
        b >>= 2
    if st[_GINIT] == 0:
        st[_G] = m << 4
        st[_GINIT] = 1
    else:
        st[_G] = st[_G] + (((m << 4) - st[_G]) >> 4)
    dev = abs(m - (st[_G] >> 4))
    w = 0
    ng = 0
    if (fl & IF_NOGYRO) == 0:
        ng = 1
        w = abs(r[4]) + abs(r[5]) + abs(r[6])
    if (fl & IF_GAP) != 0:
        st[_BT0 + 1] = -st[_BT0 + 1]
    bc = st[_BT0 + 1]
    if bc < 0:
        bc = -bc
        k = _RING + 9 * (st[_BI] & 63)
        st[k] = st[_BT0]
        st[k + 1] = bc
        for i in range(2, 9):
            st[k + i] = st[_BT0 + i]
        st[_BI] = _d(st[_BI] + 1)
        st[_BT0 + 1] = 0
        bc = 0
    if bc == 0:
        st[_BT0] = t
        for i in range(2, 9):
            st[_BT0 + i] = 0
    st[_BT0 + 1] = bc + 1
    st[_BT0 + 2] += r[1]
    st[_BT0 + 3] += r[2]
    st[_BT0 + 4] += r[3]
    st[_BT0 + 5] += dev
    st[_BT0 + 6] += w
    st[_BT0 + 7] += ng
    if m > st[_BT0 + 8]:
        st[_BT0 + 8] = m
    if bc + 1 >= 16:
        k = _RING + 9 * (st[_BI] & 63)
        for i in range(9):
            st[k + i] = st[_BT0 + i]
        st[_BI] = _d(st[_BI] + 1)
        st[_BT0 + 1] = 0
    if m < cfg[C_FF]:
        st[_LASTFF] = t
        st[_HAVEFF] = 1
    if st[_CH] != 0:
        if w > st[_CPKW]:
            st[_CPKW] = w
        if _d(t - st[_TL]) >= cfg[C_POST]:
            st[_CH] = 0
            tl = st[_TL]
            if _judge(st, cfg, ev, _PRE, tl) != 0:
                veto = _load_veto(fx, cfg, ev, _d(tl + cfg[C_POST_A]), _d(tl + cfg[C_POST]))
                if veto == 0 and _dup(st, fx, cfg, t, st[_TF], tl) == 0:
                    e |= EV_FALL_IMU
                    ev[EB + 0] = st[_TF]
                    ev[EB + 1] = tl
                    ev[EB + 2] = t
                    ev[EB + 3] = st[_CPK]
                    ev[EB + 11] = st[_CPKW]
                    ev[EB + 12] = st[_CFF]
                    ev[EB + 13] = 2
                    st[_LASTIF] = tl
                    st[_HAVEIF] = 1
                    fx[0] = cfg[C_FALARM]
    if st[_SOFT] != 0 and _d(t - st[_TS]) >= cfg[C_POST]:
        st[_SOFT] = 0
        ts = st[_TS]
        _sum_blocks(st, _d(ts - cfg[C_SOFT_WIN]), _d(ts + cfg[C_SOFT_WIN]), _SUM)
        pk = st[_SUM + 8]
        _sum_blocks(st, _d(ts - cfg[C_SOFT_AT_A]), _d(ts + cfg[C_SOFT_AT_B]), _SUM)
        at = _turned(st, _SPRE, cfg[C_COS2_SOFT])
        if pk >= cfg[C_A_SOFT] and at != 0 and _judge(st, cfg, ev, _SPRE, ts) != 0:
            if _dup(st, fx, cfg, t, ts, ts) == 0:
                e |= EV_FALL_IMU
                ev[EB + 0] = ts
                ev[EB + 1] = ts
                ev[EB + 2] = t
                ev[EB + 3] = pk
                ev[EB + 11] = -1
                ev[EB + 12] = -1
                ev[EB + 13] = 6
                ev[EB + 9] = -1
                ev[EB + 10] = -1
                st[_LASTIF] = ts
                st[_HAVEIF] = 1
                fx[0] = cfg[C_FALARM]
    if fx[6] != st[_SSEQ] and _d(fx[5] - t) <= 0:
        st[_SSEQ] = fx[6]
        ts = fx[4]
        if _sum_blocks(st, _d(ts - cfg[C_PRE_A]), _d(ts - cfg[C_PRE_B]), _SPRE) >= cfg[C_MIN_PRE]:
            st[_SOFT] = 1
            st[_TS] = ts
    if m >= cfg[C_A_IMP]:
        if st[_CH] == 0:
            if _sum_blocks(st, _d(t - cfg[C_PRE_A]), _d(t - cfg[C_PRE_B]), _PRE) >= cfg[C_MIN_PRE]:
                st[_CH] = 1
                st[_TF] = t
                st[_TL] = t
                st[_CPK] = m
                st[_CPKW] = w
                st[_CFF] = -1
                if st[_HAVEFF] != 0 and _d(t - st[_LASTFF]) <= 1000:
                    st[_CFF] = _d(t - st[_LASTFF])
        else:
            st[_TL] = t
            if m > st[_CPK]:
                st[_CPK] = m
    return e


@_jit
def _imu_block(rows, st, cfg, ev, fx, evbuf):
    """Every row of rows (n, 8) -> events in evbuf (t_dec or t, code, 16 slot words)."""
    ne = 0
    for i in range(rows.shape[0]):
        e = imu_step(rows[i], st, cfg, ev, fx)
        if e != 0 and ne < evbuf.shape[0]:
            evbuf[ne, 0] = ev[EB + 2] if (e & EV_FALL_IMU) else rows[i, 0]
            evbuf[ne, 1] = e
            for j in range(16):
                evbuf[ne, 2 + j] = ev[EB + j]
            ne += 1
    return ne


def new_fx():
    fx = np.zeros(FX_N, np.int64)
    fx[FX_RING:FX_RING + 3 * 64:3] = RING_NONE
    return fx


class ImuReplayer:
    def __init__(self, fx=None, cfg=None):
        self.st = np.zeros(S_N, np.int64)
        self.st[_PREV:_PREV + 6] = 0x40000000
        self.cfg = np.array(cfg if cfg is not None else defaults(), np.int64)
        self.ev = np.zeros(64, np.int64)
        self.fx = fx if fx is not None else new_fx()
        self.st[_SSEQ] = self.fx[6]
        self.evbuf = np.zeros((256, 18), np.int64)

    def feed(self, rows):
        """rows (n, 8) int -> list of event dicts (docs/algorithm.md 5.7 names)."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        out = []
        a = 0
        while a < len(rows):
            blk = rows[a:a + 8192]
            ne = _imu_block(blk, self.st, self.cfg, self.ev, self.fx, self.evbuf)
            out.extend(events_of(self.evbuf[:ne]))
            a += len(blk)
        return out


def events_of(evbuf):
    out = []
    for row in evbuf.tolist():
        code = row[1]
        if code & EV_FALL_IMU:
            d = {"n": row[0], "event": "fall", "path": "imu"}
            for i, k in enumerate(IMU_FIELDS):
                d[k] = row[2 + i]
            out.append(d)
        if code & EV_IMU_FAULT:
            out.append({"n": row[0], "event": "imu_fault", "flags": row[2 + 15]})
        if code & EV_IMU_CLEAR:
            out.append({"n": row[0], "event": "imu_clear"})
    return out


def replay_imu(rows, cfg=None):
    """An IMU stream alone (no load history) -> events."""
    return ImuReplayer(cfg=cfg).feed(rows)


# ---- the load detector (firmware/detect.py kernel), word for word ------------------------------
# cfg words (detect.CFG_*), state words (detect._*), act (A_*), ev slots, fx (FX_*)
D_COMP, D_TENS, D_DEB, D_MOM2 = _T.CFG_COMP, _T.CFG_TENS, _T.CFG_DEB, _T.CFG_MOM2
D_COMP_REL, D_TENS_REL, D_MOM2_REL = _T.CFG_COMP_REL, _T.CFG_TENS_REL, _T.CFG_MOM2_REL
D_COMP_WARN, D_TENS_WARN, D_MOM2_WARN = _T.CFG_COMP_WARN, _T.CFG_TENS_WARN, _T.CFG_MOM2_WARN
D_BW, D_STEP_ON, D_STEP_OFF, D_F_IMPACT = _T.CFG_BW, _T.CFG_STEP_ON, _T.CFG_STEP_OFF, _T.CFG_F_IMPACT
D_R_IMPACT, D_T_DESC_MIN, D_T_DESC_MAX = _T.CFG_R_IMPACT, _T.CFG_T_DESC_MIN, _T.CFG_T_DESC_MAX
D_T_IMPWIN, D_T_DECIDE, D_REC_PCT = _T.CFG_T_IMPWIN, _T.CFG_T_DECIDE, _T.CFG_REC_PCT
D_FAULT_N, D_CLEAR_N, D_FALL_ALARM = _T.CFG_FAULT_N, _T.CFG_CLEAR_N, _T.CFG_FALL_ALARM
from .fw_tables import (_N, _FRUN, _OA, _CON, _COFF, _WARN, _WCNT, _LATCH, _TRISE,  # noqa: E402
                        _PKON, _TFALL, _TLOADP, _PKLOADP, _DMIN, _FS, _TIMP, _CTLOAD, _CTDESC,
                        _CPKLOAD, _CDMIN, _CPKAX, _CPKRATE, _CPKMAP, _CPKMML, _CPKM2, _LCNT,
                        _SCNT, _HAVETF, _SX, _GAPC, _HARD, _CPKREC, ACT_N, ACT_HIST,
                        FX_FALARM, FX_LFALL_T, FX_LFALL_DEC, FX_HAVE_LFALL, FX_SOFT_T,
                        FX_SOFT_DEC, FX_SOFT_SEQ, EV_OVERLOAD_START, EV_OVERLOAD_END, EV_FALL,
                        EV_FAULT, EV_FAULT_CLEAR)
_DFAULT, _DCRUN = _T._FAULT, _T._CRUN
DET_ST_N = _T._ST_N
assert (_T.FX_RING, _T.FX_N, _T.RING_NONE, _T.EV_IMU_BASE, _T.EV_N) == (FX_RING, FX_N, RING_NONE,
                                                                       EB, 64)


@_jit
def det_step(o, st, cfg, ev, act, fx):
    """detect.kernel for one sample: o = (ax, map, mml, rate, flags, xa, xmap, xmml) filtered,
    load rate, flags, measured -> event codes."""
    n = st[_N]
    st[_N] = _d(n + 1)
    e = 0
    fl = o[4]
    if fx[FX_FALARM] > 0:
        fx[FX_FALARM] -= 1
    tag = n >> 6
    rb = FX_RING + 3 * (tag & 63)
    if fx[rb] != tag:
        fx[rb] = tag
        fx[rb + 1] = 0
        fx[rb + 2] = 0
    if fl & 0x1000:
        st[_GAPC] = 10
        st[_CON] = 0
        st[_COFF] = 0
        st[_WCNT] = 0
    if fl & 0x3F:
        st[_FRUN] += 1
        fr = st[_FRUN]
    else:
        fr = 0
        st[_FRUN] = 0
    if fl & 0x1FF:
        st[_DCRUN] = 0
    elif st[_DCRUN] < cfg[D_CLEAR_N]:
        st[_DCRUN] += 1
    XB = 32
    if st[_DFAULT] == 0:
        if fr >= cfg[D_FAULT_N] or (fl & 0x1C0):
            st[_DFAULT] = 1
            e |= EV_FAULT
            ev[XB + 1] = _d(n - fr + 1) if fr >= cfg[D_FAULT_N] else _d(n - 63)
            ev[XB + 0] = 1
            ev[XB + 2] = n
            ev[XB + 3] = 0
            ev[XB + 4] = 0
            ev[XB + 5] = fl & 0x1FF
            ev[XB + 6] = fl & 0x1FF
            act[11] += 1
    else:
        ev[XB + 6] |= fl & 0x1FF
        if st[_DCRUN] >= cfg[D_CLEAR_N]:
            st[_DFAULT] = 0
            e |= EV_FAULT_CLEAR
            ev[XB + 0] = 2
            ev[XB + 3] = n
            ev[XB + 4] = _d(n - ev[XB + 2])
    if st[_DFAULT] != 0 or (fl & 0x7FF):
        if st[_OA] != 0:
            e |= EV_OVERLOAD_END
            ev[0] = 2
            ev[3] = n
            ev[4] = _d(n - ev[1])
            ev[13] = 1
            ev[14] = n
        st[_OA] = 0
        st[_CON] = 0
        st[_COFF] = 0
        st[_WARN] = 0
        st[_WCNT] = 0
        st[_LATCH] = 0
        st[_HAVETF] = 0
        st[_FS] = 0
        act[3] += 1
        return e
    act[2] += 1
    fx[rb + 1] += 1
    ax = o[0]
    ma = abs(o[1])
    mm = abs(o[2])
    rate = o[3]
    if st[_GAPC] > 0:
        st[_GAPC] -= 1
        rate = 0
    xa = o[5]
    xp = abs(o[6])
    xq = abs(o[7])
    qa = min(ma, 32767)
    qm = min(mm, 32767)
    m2 = qa * qa + qm * qm
    qa = min(xp, 32767)
    qm = min(xq, 32767)
    x2 = qa * qa + qm * qm
    rising = 0
    if st[_LATCH] == 0:
        if ax >= cfg[D_STEP_ON]:
            st[_LATCH] = 1
            rising = 1
            st[_TRISE] = n
            st[_PKON] = ax
            act[0] += 1
        elif st[_HAVETF] != 0 and ax < st[_DMIN]:
            st[_DMIN] = ax
    else:
        if ax < cfg[D_STEP_OFF]:
            st[_LATCH] = 0
            st[_TFALL] = n
            st[_HAVETF] = 1
            st[_TLOADP] = st[_TRISE]
            st[_PKLOADP] = st[_PKON]
            st[_DMIN] = ax
        elif ax > st[_PKON]:
            st[_PKON] = ax
    latch = st[_LATCH]
    act[1] += latch
    fx[rb + 2] += latch
    act[4] = max(act[4], ax)
    act[5] = min(act[5], ax)
    act[6] = max(act[6], ma)
    act[7] = max(act[7], mm)
    act[8] = max(act[8], m2)
    b = (ax * 10) // cfg[D_BW]
    if b < 0:
        b = 0
    elif b > 20:
        b = 20
    act[ACT_HIST + b] += 1
    w = 0
    if xa > cfg[D_COMP]:
        w = 1
    if xa < -cfg[D_TENS]:
        w |= 2
    if x2 > cfg[D_MOM2]:
        w |= 4
    deb = cfg[D_DEB]
    if st[_OA] == 0:
        if w != 0:
            st[_CON] += 1
            c = st[_CON]
            if c == 1:
                st[_SX] = w
                st[_SX + 1] = xa
                st[_SX + 2] = xa
                st[_SX + 3] = xp
                st[_SX + 4] = xq
                st[_SX + 5] = x2
                st[_SX + 6] = 0
                st[_SX + 7] = 0
            else:
                st[_SX] |= w
                st[_SX + 1] = max(st[_SX + 1], xa)
                st[_SX + 2] = min(st[_SX + 2], xa)
                st[_SX + 3] = max(st[_SX + 3], xp)
                st[_SX + 4] = max(st[_SX + 4], xq)
                st[_SX + 5] = max(st[_SX + 5], x2)
            lo = st[_SX + 7] + xa
            st[_SX + 6] += lo >> 16
            st[_SX + 7] = lo & 0xFFFF
            if c >= deb:
                st[_OA] = 1
                st[_COFF] = 0
                e |= EV_OVERLOAD_START
                ev[0] = 1
                ev[1] = _d(n - c + 1)
                ev[2] = n
                ev[3] = 0
                ev[4] = c
                for j in range(8):
                    ev[5 + j] = st[_SX + j]
                ev[13] = 0
                ev[14] = 0
                act[9] += 1
        else:
            st[_CON] = 0
    else:
        ev[5] |= w
        ev[6] = max(ev[6], xa)
        ev[7] = min(ev[7], xa)
        ev[8] = max(ev[8], xp)
        ev[9] = max(ev[9], xq)
        ev[10] = max(ev[10], x2)
        lo = ev[12] + xa
        ev[11] += lo >> 16
        ev[12] = lo & 0xFFFF
        ev[4] = _d(n - ev[1] + 1)
        if xa <= cfg[D_COMP_REL] and xa >= -cfg[D_TENS_REL] and x2 <= cfg[D_MOM2_REL]:
            st[_COFF] += 1
            c = st[_COFF]
            if c >= deb:
                st[_OA] = 0
                st[_CON] = 0
                e |= EV_OVERLOAD_END
                ev[0] = 2
                ev[3] = _d(n - c + 1)
                ev[4] = _d(n - c + 1 - ev[1])
                ev[14] = n
        else:
            st[_COFF] = 0
    if xa > cfg[D_COMP_WARN] or xa < -cfg[D_TENS_WARN] or x2 > cfg[D_MOM2_WARN]:
        if st[_WCNT] < deb:
            st[_WCNT] += 1
        if st[_WCNT] >= deb:
            st[_WARN] = 1
    else:
        st[_WCNT] = 0
        st[_WARN] = 0
    fs = st[_FS]
    cand = 0
    if rising != 0 and st[_HAVETF] != 0:
        dd = _d(n - st[_TFALL])
        if dd >= cfg[D_T_DESC_MIN] and dd <= cfg[D_T_DESC_MAX]:
            cand = 1
    FB = 16
    if cand != 0:
        st[_FS] = 1
        st[_TIMP] = n
        st[_CTLOAD] = st[_TLOADP]
        st[_CTDESC] = st[_TFALL]
        st[_CPKLOAD] = st[_PKLOADP]
        st[_CDMIN] = st[_DMIN]
        st[_CPKAX] = ax
        st[_CPKRATE] = rate
        st[_CPKMAP] = ma
        st[_CPKMML] = mm
        st[_CPKM2] = m2
        st[_CPKREC] = ax
    elif fs == 2:
        st[_LCNT] += latch
        st[_SCNT] += rising
        st[_CPKREC] = max(st[_CPKREC], ax)
        if _d(n - st[_TIMP]) >= cfg[D_T_DECIDE] - 1:
            st[_FS] = 0
            rl = cfg[D_T_DECIDE] - cfg[D_T_IMPWIN]
            if st[_LCNT] * 100 < cfg[D_REC_PCT] * rl:
                if st[_HARD] != 0:
                    e |= EV_FALL
                    ev[FB + 0] = st[_CTLOAD]
                    ev[FB + 1] = st[_CTDESC]
                    ev[FB + 2] = st[_TIMP]
                    ev[FB + 3] = n
                    ev[FB + 4] = st[_CPKLOAD]
                    ev[FB + 5] = st[_CDMIN]
                    ev[FB + 6] = st[_CPKAX]
                    ev[FB + 7] = st[_CPKRATE]
                    ev[FB + 8] = st[_CPKMAP]
                    ev[FB + 9] = st[_CPKMML]
                    ev[FB + 10] = st[_CPKM2]
                    ev[FB + 11] = st[_LCNT]
                    ev[FB + 12] = rl
                    ev[FB + 13] = st[_SCNT]
                    ev[FB + 14] = 1
                    act[10] += 1
                    fx[FX_FALARM] = cfg[D_FALL_ALARM]
                    fx[FX_LFALL_T] = st[_TIMP]
                    fx[FX_LFALL_DEC] = n
                    fx[FX_HAVE_LFALL] = 1
                elif st[_CPKREC] < cfg[D_F_IMPACT]:
                    fx[FX_SOFT_T] = st[_TIMP]
                    fx[FX_SOFT_DEC] = n
                    fx[FX_SOFT_SEQ] = _d(fx[FX_SOFT_SEQ] + 1)
    elif fs == 1:
        st[_CPKAX] = max(st[_CPKAX], ax)
        st[_CPKREC] = max(st[_CPKREC], ax)
        st[_CPKRATE] = max(st[_CPKRATE], rate)
        st[_CPKMAP] = max(st[_CPKMAP], ma)
        st[_CPKMML] = max(st[_CPKMML], mm)
        st[_CPKM2] = max(st[_CPKM2], m2)
        if _d(n - st[_TIMP]) >= cfg[D_T_IMPWIN] - 1:
            st[_FS] = 2
            st[_LCNT] = 0
            st[_SCNT] = 0
            if st[_CPKRATE] >= cfg[D_R_IMPACT] and st[_CPKAX] >= cfg[D_F_IMPACT]:
                st[_HARD] = 1
                act[12] += 1
            else:
                st[_HARD] = 0
    return e


ROW = 2 + 16          # event buffer row: n, code, 16 slot words


@_jit
def _put(evbuf, ne, n, code, ev, base):
    evbuf[ne, 0] = n
    evbuf[ne, 1] = code
    for j in range(16):
        evbuf[ne, 2 + j] = ev[base + j] if base + j < 64 else 0
    return ne + 1


@_jit
def fused_block(y, x, rate, flags, a, st, cfg, ev, act, fx, rows, j, ist, icfg, evbuf):
    """Load samples a.. of the block (filtered y, measured x, rate, flags) through det_step; after
    each load sample n, every IMU row with t <= n through imu_step (the order the firmware's
    result does not depend on, docs/algorithm.md 5.7). Returns (next sample, next row, events);
    stops early when evbuf may overflow. Event rows: (n, code, slot words) in report order."""
    o = np.zeros(8, np.int64)
    ne = 0
    cap = evbuf.shape[0] - 8
    i = a
    m = y.shape[0]
    nr = rows.shape[0]
    while i < m and ne < cap:
        o[0] = y[i, 0]
        o[1] = y[i, 1]
        o[2] = y[i, 2]
        o[3] = rate[i]
        o[4] = flags[i]
        o[5] = x[i, 0]
        o[6] = x[i, 1]
        o[7] = x[i, 2]
        n = st[_N]
        e = det_step(o, st, cfg, ev, act, fx)
        if e:
            for code in (8, 16, 2, 1, 4):
                if e & code:
                    base = 0 if code <= 2 else (16 if code == 4 else 32)
                    ne = _put(evbuf, ne, n, code, ev, base)
        i += 1
        while j < nr and _d(rows[j, 0] - n) <= 0:
            e = imu_step(rows[j], ist, icfg, ev, fx)
            if e:
                for code in (64, 128, 32):
                    if e & code:
                        if code == 32:
                            ne = _put(evbuf, ne, ev[EB + 2], code, ev, EB)
                            act[10] += 1
                        else:
                            ne = _put(evbuf, ne, rows[j, 0], code, ev, 63)
            j += 1
    return i, j, ne


def event_dicts(evbuf):
    """Event rows of fused_block -> the device's event dicts (oimon_common.events)."""
    out = []
    for row in evbuf.tolist():
        code = row[1]
        out.append(event(row[0], code, row[2:2 + len(SLOT[code][1])]))
    return out
