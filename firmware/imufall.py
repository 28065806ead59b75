# oimon inertial fall path (docs/algorithm.md 5.7): one @micropython.viper call per IMU sample
# (LSM6DSO32 FIFO rows, 104 Hz) on pre-allocated array('i') buffers, no allocation, no float.
# Impact (|a| >= 3 g) -> pre-event gravity (1.7..0.9 s before) -> 2.5 s later: orientation
# change >= 55 deg, stillness (accelerometer, and the gyroscope when there is one), no load
# veto (the load path's history in fx) -> EV_FALL_IMU. A soft candidate of the load path
# (slide-down) is judged the same way. Faults: saturation, stuck, no data.
# Bit-exact model: sim/oimon_sim/fall_model.py.
import micropython
from micropython import const
from array import array
from dsp import bind_table

EV_FALL_IMU = const(32)
EV_IMU_FAULT = const(64)
EV_IMU_CLEAR = const(128)

# ---- input row imu (array('i', 8)) --------------------------------------------------------
R_T = const(0)         # timestamp: load samples (detector n of the latest load sample)
R_AX = const(1)        # acceleration x, y, z: mg
R_GX = const(4)        # angular rate x, y, z: 0.1 dps
R_FL = const(7)
IF_GAP = const(1)      # samples were lost before this one (FIFO overrun)
IF_NOGYRO = const(2)   # no angular rate in this source (accelerometer only)

# ---- configuration ic (array('i', C_N)) ---------------------------------------------------
C_A_IMP = const(0)     # impact, mg
C_A_SOFT = const(1)    # impact confirming a soft (slide-down) candidate, mg
C_PRE_A = const(2)     # pre-event gravity: blocks with t0 in [t - PRE_A, t - PRE_B)
C_PRE_B = const(3)
C_POST_A = const(4)    # post window: blocks with t0 in [t + POST_A, t + POST - POST_END)
C_POST = const(5)      # decision: POST load samples after the last impact
C_POST_END = const(6)
C_COS2 = const(7)      # round(256 cos^2(55 deg)) = 84
C_SDEV = const(8)      # stillness: mean dev <= SDEV mg
C_SGYRO = const(9)     # and mean |w|_1 <= SGYRO (0.1 dps)
C_VALID_PCT = const(10)  # load veto: valid on >= 90 % of the post window ...
C_LOAD_PCT = const(11)   # ... and loaded on >= 40 % of the valid samples
C_SOFT_WIN = const(12)   # soft impact: blocks with t0 in [t_s - W, t_s + W)
C_DUP_A = const(13)    # one report: a load fall contact in [t_first - DUP_A, t_last + DUP_B]
C_DUP_B = const(14)
C_FF = const(15)       # free fall (information): |a| < FF mg
C_SAT_A = const(16)    # full-scale codes: |a| >= SAT_A mg or |g| >= SAT_G
C_SAT_G = const(17)
C_SAT_N = const(18)    # saturation run raising IMU_SAT, samples
C_STUCK_N = const(19)  # identical rows raising IMU_STUCK, samples
C_CLEAR_N = const(20)  # clean samples clearing a fault
C_FALARM = const(21)   # fall alarm countdown written to fx, load samples
C_MIN_PRE = const(22)  # blocks needed: pre-event
C_MIN_POST = const(23)  # post window
C_COS2_SOFT = const(24)  # slide-down: the thigh has turned >= 30 deg at the contact (cos^2 Q8)
C_SOFT_AT_A = const(25)  # blocks with t0 in [t_s - A, t_s + B) are "at the contact"
C_SOFT_AT_B = const(26)
C_N = const(27)

# ---- inertial fall slot in ev (ev[48 + I_*]) ----------------------------------------------
_EB = const(48)
I_T_FIRST = const(0)
I_T_IMP = const(1)
I_T_DEC = const(2)
I_PK_ACC = const(3)
I_DOT = const(4)
I_P2 = const(5)
I_Q2 = const(6)
I_DEV = const(7)
I_W = const(8)
I_LOADED = const(9)
I_VALID = const(10)
I_PK_W = const(11)
I_FF = const(12)
I_SOURCE = const(13)   # 2 inertial impact, 6 slide-down (load soft candidate + inertial)
I_NPOST = const(14)
I_FLAGS = const(15)    # ev[63]: IMU fault flags (1 saturated, 2 stuck, 4 no data)

# ---- fusion words (detect.FX_*: the same numbers, kept in step by a test) -----------------
FX_FALARM = const(0)
FX_LFALL_T = const(1)
FX_LFALL_DEC = const(2)
FX_HAVE_LFALL = const(3)
FX_SOFT_T = const(4)
FX_SOFT_DEC = const(5)
FX_SOFT_SEQ = const(6)
FX_IMU_FAULT = const(7)
FX_RING = const(16)

# ---- state is ------------------------------------------------------------------------------
ST_CNT = const(0)        # IMU samples processed (wrapping word)
_FAULT = const(1)
_SRUN = const(2)
_KRUN = const(3)
_CRUN = const(4)
_PREV = const(5)       # 6 previous values
_G = const(11)         # slow |a|, Q4 mg
_GINIT = const(12)
_BT0 = const(13)       # current block: t0, cnt, sx, sy, sz, sdev, sw, ngyro, pk (9 words)
ST_BI = const(22)        # blocks written (ring index)
_CH = const(23)        # impact chain active
_TF = const(24)
_TL = const(25)
_CPK = const(26)
_PRE = const(27)       # chain pre sums: cnt, sx, sy, sz, ... (9 words, 27..35)
_CPKW = const(36)
_CFF = const(37)
_SOFT = const(38)      # soft candidate active
_TS = const(39)
ST_SSEQ = const(40)   # soft candidate sequence seen
_SPRE = const(41)      # soft pre sums (9 words, 41..49)
_LASTFF = const(50)
_HAVEFF = const(51)
_LASTIF = const(52)    # t_last of the last inertial fall reported
_HAVEIF = const(53)
_SUM = const(54)       # scratch sums (9 words, 54..62)
_RING = const(64)      # 64 blocks x 9 words
_BW = const(9)
_S_N = const(640)

# ---- binding table --------------------------------------------------------------------------
_T_R = const(0)
_T_ST = const(1)
_T_CFG = const(2)
_T_EV = const(3)
_T_FX = const(4)
_T_N = const(5)


@micropython.viper
def _sum_blocks(st: ptr32, lo: int, hi: int, dst: int) -> int:
    # sums of the ring blocks with t0 in [lo, hi) (wrap-safe differences) into st[dst..dst+8]:
    # cnt, sx, sy, sz, sdev, sw, ngyro added, pk = max; returns the number of blocks
    i = 0
    while i < 9:
        st[dst + i] = 0
        i += 1
    nb = 0
    k = 0
    while k < 64:
        b = _RING + 9 * k
        if st[b + 1] > 0:
            t0 = st[b]
            if t0 - lo >= 0 and t0 - hi < 0:
                nb += 1
                i = 1
                while i < 8:
                    st[dst + i - 1] = st[dst + i - 1] + st[b + i]
                    i += 1
                if st[b + 8] > st[dst + 8]:
                    st[dst + 8] = st[b + 8]
        k += 1
    return nb


@micropython.viper
def _mean16(s: int, c: int) -> int:
    # mean of c samples summed to s (mg), in 16 mg units, clamped to +-110 (floor division)
    v = s // (c * 16)
    if v > 110:
        v = 110
    elif v < -110:
        v = -110
    return v


@micropython.viper
def _judge(st: ptr32, cfg: ptr32, ev: ptr32, pre: int, tref: int) -> int:
    # orientation change and stillness of the post window after tref against the pre sums
    # st[pre..]; writes I_DOT, I_P2, I_Q2, I_DEV, I_W, I_NPOST; returns 1 lying and still
    nb = int(_sum_blocks(st, tref + cfg[C_POST_A], tref + cfg[C_POST] - cfg[C_POST_END], _SUM))
    ev[_EB + I_NPOST] = nb
    if nb < cfg[C_MIN_POST] or st[pre] <= 0:
        return 0
    c = st[pre]
    px = int(_mean16(st[pre + 1], c))
    py = int(_mean16(st[pre + 2], c))
    pz = int(_mean16(st[pre + 3], c))
    c = st[_SUM]
    qx = int(_mean16(st[_SUM + 1], c))
    qy = int(_mean16(st[_SUM + 2], c))
    qz = int(_mean16(st[_SUM + 3], c))
    d = px * qx + py * qy + pz * qz          # |d| <= 3 * 110^2 = 36300
    p2 = px * px + py * py + pz * pz
    q2 = qx * qx + qy * qy + qz * qz
    ev[_EB + I_DOT] = d
    ev[_EB + I_P2] = p2
    ev[_EB + I_Q2] = q2
    dev = st[_SUM + 4] // c
    ev[_EB + I_DEV] = dev
    wm = -1
    if st[_SUM + 6] == c:                    # every post sample had an angular rate
        wm = st[_SUM + 5] // c
    ev[_EB + I_W] = wm
    turned = 0
    if d <= 0 or d * d <= ((cfg[C_COS2] * p2) >> 8) * q2:   # d^2 < 2^31, (84 p2 >> 8) q2 < 2^29
        turned = 1
    still = 0
    if dev <= cfg[C_SDEV] and wm <= cfg[C_SGYRO]:
        still = 1
    if turned != 0 and still != 0:
        return 1
    return 0


@micropython.viper
def _turned(st: ptr32, pre: int, cos2: int) -> int:
    # 1 if the mean of the blocks summed in st[_SUM..] points >= acos(sqrt(cos2 / 256)) away
    # from the pre sums st[pre..] (the same words as _judge's orientation test)
    c = st[pre]
    px = int(_mean16(st[pre + 1], c))
    py = int(_mean16(st[pre + 2], c))
    pz = int(_mean16(st[pre + 3], c))
    c = st[_SUM]
    if c <= 0:
        return 0
    qx = int(_mean16(st[_SUM + 1], c))
    qy = int(_mean16(st[_SUM + 2], c))
    qz = int(_mean16(st[_SUM + 3], c))
    d = px * qx + py * qy + pz * qz
    p2 = px * px + py * py + pz * pz
    q2 = qx * qx + qy * qy + qz * qz
    if d <= 0 or d * d <= ((cos2 * p2) >> 8) * q2:
        return 1
    return 0


@micropython.viper
def _load_veto(fx: ptr32, cfg: ptr32, ev: ptr32, lo: int, hi: int) -> int:
    # 1 if the load history covers [lo, hi) in whole 64-sample blocks, was valid on >= 90 % of
    # it and loaded on >= 40 % of the valid samples (the person stands on the prosthesis)
    j0 = lo >> 6
    nblk = (hi >> 6) - j0
    cov = 0
    val = 0
    ld = 0
    miss = 0
    k = 0
    while k < nblk:
        j = j0 + k
        b = FX_RING + 3 * (j & 63)
        if fx[b] == j:
            cov += 64
            val += fx[b + 1]
            ld += fx[b + 2]
        else:
            miss += 1
        k += 1
    if miss != 0 or cov == 0:
        ev[_EB + I_LOADED] = -1
        ev[_EB + I_VALID] = -1
        return 0
    ev[_EB + I_LOADED] = ld
    ev[_EB + I_VALID] = val
    if val * 100 >= cfg[C_VALID_PCT] * cov and ld * 100 >= cfg[C_LOAD_PCT] * val:
        return 1
    return 0


@micropython.viper
def _dup(st: ptr32, fx: ptr32, cfg: ptr32, t: int, tf: int, tl: int) -> int:
    # 1 if this fall was reported already: a load fall decided before t with its contact in
    # [tf - DUP_A, tl + DUP_B], or an inertial fall with its impact there
    lo = tf - cfg[C_DUP_A]
    hi = tl + cfg[C_DUP_B]
    if fx[FX_HAVE_LFALL] != 0 and fx[FX_LFALL_DEC] - t <= 0:
        c = fx[FX_LFALL_T]
        if c - lo >= 0 and c - hi <= 0:
            return 1
    if st[_HAVEIF] != 0:
        c = st[_LASTIF]
        if c - lo >= 0 and c - hi <= 0:
            return 1
    return 0


@micropython.viper
def kernel(tb: ptr32) -> int:
    # one IMU sample: tb = ImuPath.tab (addresses of row, st, cfg, ev, fx); returns event codes
    r = ptr32(tb[_T_R])
    st = ptr32(tb[_T_ST])
    cfg = ptr32(tb[_T_CFG])
    ev = ptr32(tb[_T_EV])
    fx = ptr32(tb[_T_FX])
    st[ST_CNT] = st[ST_CNT] + 1
    e = 0
    t = r[R_T]
    fl = r[R_FL]
    # ---- faults: full-scale run, identical rows, (no data: ImuPath.stale) -------------------
    sat = 0
    same = 1
    c = 0
    while c < 6:
        v = r[R_AX + c]
        if v != st[_PREV + c]:
            same = 0
        st[_PREV + c] = v
        if v < 0:
            v = 0 - v
        if c < 3:
            if v >= cfg[C_SAT_A]:
                sat = 1
        elif (fl & IF_NOGYRO) == 0 and v >= cfg[C_SAT_G]:
            sat = 1
        c += 1
    if sat != 0:
        st[_SRUN] = st[_SRUN] + 1
    else:
        st[_SRUN] = 0
    if same != 0:
        if st[_KRUN] < cfg[C_STUCK_N]:
            st[_KRUN] = st[_KRUN] + 1
    else:
        st[_KRUN] = 0
    if sat == 0 and same == 0:
        if st[_CRUN] < cfg[C_CLEAR_N]:
            st[_CRUN] = st[_CRUN] + 1
    else:
        st[_CRUN] = 0
    if st[_FAULT] == 0:
        if st[_SRUN] >= cfg[C_SAT_N] or st[_KRUN] >= cfg[C_STUCK_N]:
            st[_FAULT] = 1
            fx[FX_IMU_FAULT] = 1
            f = 2
            if st[_SRUN] >= cfg[C_SAT_N]:
                f = 1
            ev[_EB + I_FLAGS] = f
            e |= EV_IMU_FAULT
    elif st[_CRUN] >= cfg[C_CLEAR_N]:
        st[_FAULT] = 0
        fx[FX_IMU_FAULT] = 0
        e |= EV_IMU_CLEAR
    if st[_FAULT] != 0 or sat != 0:
        # not valid: the block ends, the candidates are dropped, the history is not trusted
        st[_CH] = 0
        st[_SOFT] = 0
        st[_BT0 + 1] = 0
        if st[_FAULT] != 0:
            k = 0
            while k < 64:
                st[_RING + 9 * k + 1] = 0
                k += 1
        st[ST_SSEQ] = fx[FX_SOFT_SEQ]
        return e
    # ---- magnitude (components clamped to +-26000 mg: sum of squares < 2^31), dev, gyro ----
    m2 = 0
    c = 0
    while c < 3:
        v = r[R_AX + c]
        if v > 26000:
            v = 26000
        elif v < -26000:
            v = -26000
        m2 += v * v
        c += 1
    m = 0                          # isqrt, bit by bit
    b = 0x4000
    b = b << 16                    # 2^30 (a literal 2^30 is not a small int on 32 bits)
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
    dev = m - (st[_G] >> 4)
    if dev < 0:
        dev = 0 - dev
    w = 0
    ng = 0
    if (fl & IF_NOGYRO) == 0:
        ng = 1
        c = 3
        while c < 6:
            v = r[R_AX + c]
            if v < 0:
                v = 0 - v
            w += v
            c += 1
    # ---- block of 16 (never across a gap) -> ring of 64 -------------------------------------
    if (fl & IF_GAP) != 0:
        st[_BT0 + 1] = 0 - st[_BT0 + 1]     # close: negative count = ready to write
    bc = st[_BT0 + 1]
    if bc < 0:
        bc = 0 - bc
        k = _RING + 9 * (st[ST_BI] & 63)
        st[k] = st[_BT0]
        st[k + 1] = bc
        i = 2
        while i < 9:
            st[k + i] = st[_BT0 + i]
            i += 1
        st[ST_BI] = st[ST_BI] + 1
        st[_BT0 + 1] = 0
        bc = 0
    if bc == 0:
        st[_BT0] = t
        i = 2
        while i < 9:
            st[_BT0 + i] = 0
            i += 1
    st[_BT0 + 1] = bc + 1
    st[_BT0 + 2] = st[_BT0 + 2] + r[R_AX]
    st[_BT0 + 3] = st[_BT0 + 3] + r[R_AX + 1]
    st[_BT0 + 4] = st[_BT0 + 4] + r[R_AX + 2]
    st[_BT0 + 5] = st[_BT0 + 5] + dev
    st[_BT0 + 6] = st[_BT0 + 6] + w
    st[_BT0 + 7] = st[_BT0 + 7] + ng
    if m > st[_BT0 + 8]:
        st[_BT0 + 8] = m
    if bc + 1 >= 16:
        k = _RING + 9 * (st[ST_BI] & 63)
        i = 0
        while i < 9:
            st[k + i] = st[_BT0 + i]
            i += 1
        st[ST_BI] = st[ST_BI] + 1
        st[_BT0 + 1] = 0
    if m < cfg[C_FF]:
        st[_LASTFF] = t
        st[_HAVEFF] = 1
    # ---- decision of the impact chain, 2.5 s after its last impact --------------------------
    if st[_CH] != 0:
        if w > st[_CPKW]:
            st[_CPKW] = w
        if t - st[_TL] >= cfg[C_POST]:
            st[_CH] = 0
            tl = st[_TL]
            if int(_judge(st, cfg, ev, _PRE, tl)) != 0:
                veto = int(_load_veto(fx, cfg, ev, tl + cfg[C_POST_A], tl + cfg[C_POST]))
                if veto == 0 and int(_dup(st, fx, cfg, t, st[_TF], tl)) == 0:
                    e |= EV_FALL_IMU
                    ev[_EB + I_T_FIRST] = st[_TF]
                    ev[_EB + I_T_IMP] = tl
                    ev[_EB + I_T_DEC] = t
                    ev[_EB + I_PK_ACC] = st[_CPK]
                    ev[_EB + I_PK_W] = st[_CPKW]
                    ev[_EB + I_FF] = st[_CFF]
                    ev[_EB + I_SOURCE] = 2
                    st[_LASTIF] = tl
                    st[_HAVEIF] = 1
                    fx[FX_FALARM] = cfg[C_FALARM]
    # ---- soft candidate of the load path (slide-down): register, then judge ----------------
    if st[_SOFT] != 0 and t - st[_TS] >= cfg[C_POST]:
        st[_SOFT] = 0
        ts = st[_TS]
        _sum_blocks(st, ts - cfg[C_SOFT_WIN], ts + cfg[C_SOFT_WIN], _SUM)
        pk = st[_SUM + 8]
        _sum_blocks(st, ts - cfg[C_SOFT_AT_A], ts + cfg[C_SOFT_AT_B], _SUM)
        at = int(_turned(st, _SPRE, cfg[C_COS2_SOFT]))     # already turned at the contact
        if pk >= cfg[C_A_SOFT] and at != 0 and int(_judge(st, cfg, ev, _SPRE, ts)) != 0:
            if int(_dup(st, fx, cfg, t, ts, ts)) == 0:
                e |= EV_FALL_IMU
                ev[_EB + I_T_FIRST] = ts
                ev[_EB + I_T_IMP] = ts
                ev[_EB + I_T_DEC] = t
                ev[_EB + I_PK_ACC] = pk
                ev[_EB + I_PK_W] = -1
                ev[_EB + I_FF] = -1
                ev[_EB + I_SOURCE] = 6
                ev[_EB + I_LOADED] = -1
                ev[_EB + I_VALID] = -1
                st[_LASTIF] = ts
                st[_HAVEIF] = 1
                fx[FX_FALARM] = cfg[C_FALARM]
    if fx[FX_SOFT_SEQ] != st[ST_SSEQ] and fx[FX_SOFT_DEC] - t <= 0:
        st[ST_SSEQ] = fx[FX_SOFT_SEQ]
        ts = fx[FX_SOFT_T]
        if int(_sum_blocks(st, ts - cfg[C_PRE_A], ts - cfg[C_PRE_B], _SPRE)) >= cfg[C_MIN_PRE]:
            st[_SOFT] = 1
            st[_TS] = ts
    # ---- impact: start or extend the chain ---------------------------------------------------
    if m >= cfg[C_A_IMP]:
        if st[_CH] == 0:
            if int(_sum_blocks(st, t - cfg[C_PRE_A], t - cfg[C_PRE_B], _PRE)) >= cfg[C_MIN_PRE]:
                st[_CH] = 1
                st[_TF] = t
                st[_TL] = t
                st[_CPK] = m
                st[_CPKW] = w
                st[_CFF] = -1
                if st[_HAVEFF] != 0 and t - st[_LASTFF] <= 1000:
                    st[_CFF] = t - st[_LASTFF]
        else:
            st[_TL] = t
            if m > st[_CPK]:
                st[_CPK] = m
    return e


class ImuPath:
    """The inertial fall path on a Detector's ev (slot 48..63) and fx (fusion words).
    `step(row)` per IMU sample (row = array('i', 8)); returns the OR of EV_FALL_IMU,
    EV_IMU_FAULT, EV_IMU_CLEAR. Allocation-free per sample."""

    def __init__(self, ev, fx, falarm=60000, rate_hz=104):
        self.cfg = array("i", [0] * C_N)
        self.st = array("i", [0] * _S_N)
        self.tab = array("i", [0] * _T_N)
        self.ev = ev
        self.fx = fx
        self.row = None
        bind_table(self.tab, _T_ST, self.st, _S_N)
        bind_table(self.tab, _T_CFG, self.cfg, C_N)
        bind_table(self.tab, _T_EV, ev, 64)
        bind_table(self.tab, _T_FX, fx, 208)
        c = self.cfg
        for i, v in enumerate(defaults(falarm, rate_hz)):
            c[i] = v
        self.st[ST_SSEQ] = fx[FX_SOFT_SEQ]
        for i in range(6):
            self.st[_PREV + i] = 0x40000000       # the first row is never "identical"

    def bind(self, row):
        bind_table(self.tab, _T_R, row, 8)
        self.row = row

    def step(self, row):
        if row is not self.row:
            self.bind(row)
        return kernel(self.tab)

    def stale(self):
        """No IMU data although the part should deliver (the app's watchdog): raise IMU_NODATA.
        Returns EV_IMU_FAULT if it was not faulted yet, else 0."""
        st = self.st
        st[_CRUN] = 0
        st[_CH] = 0
        st[_SOFT] = 0
        if st[_FAULT]:
            return 0
        st[_FAULT] = 1
        self.fx[FX_IMU_FAULT] = 1
        self.ev[_EB + I_FLAGS] = 4
        return EV_IMU_FAULT

    @property
    def faulted(self):
        return self.st[_FAULT] != 0


def defaults(falarm=60000, rate_hz=104):
    """The configuration words (docs/algorithm.md 5.7); times are in load samples (ms)."""
    return [3000, 1500, 1700, 900, 1000, 2500, 200, 84, 150, 300, 90, 40, 500, 3000, 500, 600,
            31900, 22900, 10, rate_hz, 2 * rate_hz, falarm, 2, 6, 192, 150, 350]
