"""Bit-exact model of the inertial fall path (firmware/imufall.py, docs/algorithm.md 5.7).

`ImuReplayer(fx)`.step(row) is imufall.kernel for one IMU row; `replay_imu(rows)` replays an
IMU stream with no load history (the load channel missing: no veto, no soft candidates), as
for UMAFall. The state layouts are the firmware's (imufall.py constants, checked by a test);
times are int32 words in the firmware, so every difference is taken modulo 2^32 (_d)."""
import numpy as np

try:
    from numba import njit
    def _jit(f):
        return njit(cache=True, nogil=True)(f)
except ImportError:          # same results, slowly
    def _jit(f):
        return f

EV_FALL_IMU, EV_IMU_FAULT, EV_IMU_CLEAR = 32, 64, 128
IF_GAP, IF_NOGYRO = 1, 2
IMU_FIELDS = ("t_first", "t_imp", "t_dec", "pk_acc", "dot", "p2", "q2", "dev", "w", "loaded",
              "valid", "pk_w", "ff", "source", "npost")
C_N = 24
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
 C_STUCK_N, C_CLEAR_N, C_FALARM, C_MIN_PRE, C_MIN_POST) = range(24)


def defaults(falarm=60000, rate_hz=104):
    return [3000, 1500, 1700, 900, 1000, 2500, 200, 84, 150, 300, 90, 40, 500, 3000, 500, 600,
            31900, 22900, 10, rate_hz, 2 * rate_hz, falarm, 2, 6]


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
        if pk >= cfg[C_A_SOFT] and _judge(st, cfg, ev, _SPRE, ts) != 0:
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
    fx[FX_RING::3][:64] = RING_NONE
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
