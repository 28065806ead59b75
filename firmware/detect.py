# oimon detection on the device: sensor faults, overload (debounce + hysteresis), falls (four
# phases after Frossard et al. 2010), daily activity. Input: the out[] array of dsp.Pipeline.
# Specification: docs/algorithm.md; bit-exact numba model: sim/oimon_sim/kernels.py, fall_kernels.py.
# One @micropython.viper call per sample on pre-allocated array('i') buffers, no allocation;
# like dsp.kernel it takes one table of the buffers' addresses (bind()), not five arrays.
import micropython
from micropython import const
from array import array

# ---- event codes: Detector.step() returns their OR for events of this sample ------------------
EV_OVERLOAD_START = const(1)   # debounce completed on this sample (ev[O_*] filled)
EV_OVERLOAD_END = const(2)     # release debounce completed, or detection became invalid
EV_FALL = const(4)             # fall decided on this sample (ev[16 + F_*])
EV_FAULT = const(8)            # sensor fault raised on this sample (ev[32 + X_*])
EV_FAULT_CLEAR = const(16)     # sensor fault cleared on this sample
EV_FALL_IMU = const(32)        # fall decided by the inertial path (imufall.kernel, ev[48..62])
EV_IMU_FAULT = const(64)       # IMU fault raised (ev[63] = 1 saturated, 2 stuck, 4 no data)
EV_IMU_CLEAR = const(128)      # IMU fault cleared

# ---- rehabilitation phases (limit sets, docs/algorithm.md "Overload limits") ------------------
PHASE_I = const(0)
PHASE_II = const(1)
PHASE_III = const(2)
PHASE_FULL = const(3)
BW_DEFAULT = const(7355)       # 75 kg x 9.80665 m/s^2 = 735.5 N, in 0.1 N

# ---- limits / configuration array cfg (array('i', CFG_N)) ------------------------------------
CFG_COMP = const(0)        # axial compression limit, 0.1 N (over: ax > CFG_COMP)
CFG_TENS = const(1)        # axial tension limit, 0.1 N, positive (over: ax < -CFG_TENS)
CFG_MOM = const(2)         # resultant bending-moment limit, 0.01 N*m (<= 32767)
CFG_DEB = const(3)         # debounce, samples (onset and release)
CFG_PHASE = const(4)       # rehab phase the limits came from (information)
CFG_MOM2 = const(5)        # derived: CFG_MOM^2
CFG_COMP_REL = const(6)    # derived release thresholds: 90 % of the limits (moment: squared)
CFG_TENS_REL = const(7)
CFG_MOM2_REL = const(8)
CFG_COMP_WARN = const(9)   # derived warning thresholds: 80 % (alarm level 1)
CFG_TENS_WARN = const(10)
CFG_MOM2_WARN = const(11)
CFG_BW = const(12)         # body weight, 0.1 N
CFG_STEP_ON = const(13)    # derived: 20 % BW, load cycle starts (ax >= )
CFG_STEP_OFF = const(14)   # derived: 10 % BW, load cycle ends (ax < )
CFG_F_IMPACT = const(15)   # derived: limits.IMPACT_PCT_BW (80 %) of BW, impact peak axial
CFG_R_IMPACT = const(16)   # impact load rate, N/s (default 15000)
CFG_T_DESC_MIN = const(17)  # descent (unloaded) duration before the impact, samples: min
CFG_T_DESC_MAX = const(18)  # and max
CFG_T_IMPWIN = const(19)   # impact window, samples from the contact
CFG_T_DECIDE = const(20)   # decision, samples from the contact (<= 2000: within 2 s)
CFG_REC_PCT = const(21)    # fall if loaded < REC_PCT % of the recovery window
CFG_FAULT_N = const(23)    # (22 is unused)    # saturation/rail run that raises a fault, samples
CFG_CLEAR_N = const(24)    # clean run that clears a fault, samples
CFG_FALL_ALARM = const(25)  # samples the fall alarm (level 2) lasts unless ack()
CFG_N = const(26)

# ---- event slots in ev (array('i', 48)): overload 0..15, fall 16..31, fault 32..47 -----------
O_STATE = const(0)     # 1 active, 2 ended
O_START = const(1)     # first over-limit sample
O_ONSET = const(2)     # sample EV_OVERLOAD_START was reported (= start + debounce - 1)
O_END = const(3)       # first sample of the release run (or the invalid sample)
O_DUR = const(4)       # end - start, samples (ms)
O_WHICH = const(5)     # OR of 1 compression, 2 tension, 4 moment over [start, report]
O_PK_AX = const(6)     # max axial over [start, report], 0.1 N
O_MIN_AX = const(7)    # min axial
O_PK_MAP = const(8)    # max |moment AP|, 0.01 N*m
O_PK_MML = const(9)    # max |moment ML|
O_PK_M2 = const(10)    # max resultant^2 (components clamped to 32767), (0.01 N*m)^2
O_IMP_HI = const(11)   # axial impulse = (HI * 65536 + LO) * 0.1 N*ms
O_IMP_LO = const(12)
O_TRUNC = const(13)    # 1: ended because detection became invalid
O_REPORT = const(14)   # sample EV_OVERLOAD_END was reported
EV_FALL_BASE = const(16)
EV_IMU_BASE = const(48)    # inertial fall slot (imufall.I_*)
EV_N = const(64)
F_T_LOAD = const(0)    # loading phase start (load-cycle start before the descent)
F_T_DESC = const(1)    # descent start (load-cycle end)
F_T_IMP = const(2)     # impact: contact (load-cycle start after the descent)
F_T_DEC = const(3)     # decision (the EV_FALL sample) = impact + T_DECIDE - 1
F_PK_LOAD = const(4)   # max axial in the loading phase
F_MIN_DESC = const(5)  # min axial in the descent
F_PK_AX = const(6)     # impact window: max axial
F_PK_RATE = const(7)   # max load rate, N/s
F_PK_MAP = const(8)    # max |moment AP|
F_PK_MML = const(9)    # max |moment ML|
F_PK_M2 = const(10)    # max resultant^2
F_LOADED = const(11)   # recovery window: loaded samples
F_REC_LEN = const(12)  # recovery window length, samples
F_STEPS = const(13)    # recovery window: load cycles started
F_SOURCE = const(14)   # 1 = load path (the inertial path's falls have their own slot)
EV_FAULT_BASE = const(32)
X_STATE = const(0)     # 1 active, 2 cleared
X_ONSET = const(1)     # first flagged sample
X_RAISED = const(2)    # EV_FAULT sample
X_CLEAR = const(3)     # EV_FAULT_CLEAR sample
X_DUR = const(4)       # clear - raised
X_FLAGS = const(5)     # flags (dsp FL_SAT|FL_RAIL|FL_STUCK) at the raise
X_ACC = const(6)       # OR of the flags while faulted

# ---- daily activity act (array('i', ACT_N)); hist = act[ACT_HIST:ACT_HIST + HIST_N] ---------
A_STEPS = const(0)       # load cycles (ax >= 20 % BW after < 10 % BW)
A_LOADED = const(1)      # samples inside a load cycle (ms)
A_VALID = const(2)       # samples with valid detection
A_INVALID = const(3)     # samples with invalid detection (fault, uncalibrated, tare)
A_PK_AX = const(4)       # max axial (compression), 0.1 N
A_MIN_AX = const(5)      # min axial (tension), 0.1 N
A_PK_MAP = const(6)      # max |moment AP|
A_PK_MML = const(7)      # max |moment ML|
A_PK_M2 = const(8)       # max resultant^2
A_OVERLOADS = const(9)
A_FALLS = const(10)
A_FAULTS = const(11)
A_IMPACTS = const(12)     # impacts that opened a recovery window (fall or recovered)
ACT_HIST = const(16)
HIST_N = const(21)       # bins of 10 % BW: [0,10) (and tension), [10,20) ... [190,200), >= 200
ACT_N = const(40)

# ---- fusion words fx (array('i', FX_N)): load kernel -> inertial kernel (docs/algorithm.md 5.7)
FX_FALARM = const(0)   # fall alarm countdown, samples (either path sets it)
FX_LFALL_T = const(1)  # contact sample of the last load fall
FX_LFALL_DEC = const(2)  # its decision sample
FX_HAVE_LFALL = const(3)
FX_SOFT_T = const(4)   # contact sample of the last soft candidate without recovery
FX_SOFT_DEC = const(5)  # its decision sample
FX_SOFT_SEQ = const(6)  # incremented per soft candidate
FX_IMU_FAULT = const(7)  # written by the inertial side (status only)
FX_RING = const(16)    # 64 blocks x (tag = n >> 6, valid samples, loaded samples)
FX_RING_N = const(64)
FX_N = const(208)
RING_NONE = const(0x40000000)  # a tag no block ever has (tags are within +-2^25)

# ---- state st -------------------------------------------------------------------------------
_N = const(0)          # sample counter (wrapping int32 word: only differences are used)
_FAULT = const(1)
_FRUN = const(2)       # run of saturation/rail flags
_CRUN = const(3)       # run of samples without fault flags (saturates at CFG_CLEAR_N)
_OA = const(4)         # overload active
_CON = const(5)
_COFF = const(6)
_WARN = const(7)
_WCNT = const(8)
_LATCH = const(9)      # load cycle in progress
_TRISE = const(10)
_PKON = const(11)      # max axial since the rise
_TFALL = const(12)     # last load-cycle end (valid if _HAVETF)
_TLOADP = const(13)    # rise of the cycle that ended at _TFALL
_PKLOADP = const(14)   # its max axial
_DMIN = const(15)      # min axial since _TFALL
_FS = const(16)        # fall state: 0 watch, 1 impact window, 2 recovery
_TIMP = const(17)
_CTLOAD = const(18)    # candidate copies: loading start, descent start, loading peak, descent min
_CTDESC = const(19)
_CPKLOAD = const(20)
_CDMIN = const(21)
_CPKAX = const(22)
_CPKRATE = const(23)
_CPKMAP = const(24)
_CPKMML = const(25)
_CPKM2 = const(26)
_LCNT = const(27)
_SCNT = const(28)
_HAVETF = const(29)    # 1: _TFALL holds the start of the current descent
_SX = const(30)        # overload scratch while the onset debounce runs: which, pk, min, map,
#                        mml, m2, imp hi, imp lo (8 words, 30..37)
_GAPC = const(38)      # samples left whose load rate spans a gap (rate ignored)
_HARD = const(39)      # the candidate in recovery had a hard impact
_CPKREC = const(40)    # max axial of the candidate since its contact
_ST_N = const(48)

# ---- binding table tab[] (array('i', _T_N)): addresses of the kernel's buffers -------------
_T_O = const(0)        # dsp out[], array('i', 8)
_T_ST = const(1)
_T_CFG = const(2)
_T_EV = const(3)
_T_ACT = const(4)
_T_FX = const(5)       # fusion words fx
_T_N = const(6)


from oimon_common.limits import phase_limits, IMPACT_PCT_BW  # noqa: E402,F401 - the tables live in limits.py
from dsp import bind_table  # noqa: E402


@micropython.viper
def kernel(t: ptr32) -> int:
    # one sample: t = Detector.tab (addresses of o, st, cfg, ev, act, fx); returns the event codes
    o = ptr32(t[_T_O])
    st = ptr32(t[_T_ST])
    cfg = ptr32(t[_T_CFG])
    ev = ptr32(t[_T_EV])
    act = ptr32(t[_T_ACT])
    fx = ptr32(t[_T_FX])
    n = st[_N]
    st[_N] = n + 1             # wraps after 2^32 samples; every use below is a difference
    e = 0
    fl = o[4]
    if fx[FX_FALARM] > 0:
        fx[FX_FALARM] = fx[FX_FALARM] - 1
    # ---- load history for the inertial path: block n >> 6 of 64 samples (valid, loaded) ----
    tag = n >> 6
    rb = FX_RING + 3 * (tag & 63)
    if fx[rb] != tag:
        fx[rb] = tag
        fx[rb + 1] = 0
        fx[rb + 2] = 0
    # ---- a gap (FL_GAP: samples were lost before this one) ----------------------------------
    if fl & 0x1000:
        st[_GAPC] = 10         # RATE_LAG: the next 10 rates span the gap
        st[_CON] = 0           # debounce and release runs restart: lost samples are unknown
        st[_COFF] = 0
        st[_WCNT] = 0          # (a descent goes on: its length counts samples received)
    # ---- sensor faults: saturation/rail run >= FAULT_N, or stuck; clear after CLEAR_N clean ---
    if fl & 0x3F:
        fr = st[_FRUN] + 1
        st[_FRUN] = fr
    else:
        fr = 0
        st[_FRUN] = 0
    if fl & 0x1FF:
        st[_CRUN] = 0
    elif st[_CRUN] < cfg[CFG_CLEAR_N]:
        st[_CRUN] = st[_CRUN] + 1
    if st[_FAULT] == 0:
        if fr >= cfg[CFG_FAULT_N] or (fl & 0x1C0):
            st[_FAULT] = 1
            e |= EV_FAULT
            if fr >= cfg[CFG_FAULT_N]:
                ev[EV_FAULT_BASE + X_ONSET] = n - fr + 1
            else:
                ev[EV_FAULT_BASE + X_ONSET] = n - 63
            ev[EV_FAULT_BASE + X_STATE] = 1
            ev[EV_FAULT_BASE + X_RAISED] = n
            ev[EV_FAULT_BASE + X_CLEAR] = 0
            ev[EV_FAULT_BASE + X_DUR] = 0
            ev[EV_FAULT_BASE + X_FLAGS] = fl & 0x1FF
            ev[EV_FAULT_BASE + X_ACC] = fl & 0x1FF
            act[A_FAULTS] = act[A_FAULTS] + 1
    else:
        ev[EV_FAULT_BASE + X_ACC] = ev[EV_FAULT_BASE + X_ACC] | (fl & 0x1FF)
        if st[_CRUN] >= cfg[CFG_CLEAR_N]:
            st[_FAULT] = 0
            e |= EV_FAULT_CLEAR
            ev[EV_FAULT_BASE + X_STATE] = 2
            ev[EV_FAULT_BASE + X_CLEAR] = n
            ev[EV_FAULT_BASE + X_DUR] = n - ev[EV_FAULT_BASE + X_RAISED]
    # ---- validity: no fault, calibrated, no tare, no fault flag on this sample ----------------
    if st[_FAULT] != 0 or (fl & 0x7FF):
        if st[_OA] != 0:
            e |= EV_OVERLOAD_END
            ev[O_STATE] = 2
            ev[O_END] = n
            ev[O_DUR] = n - ev[O_START]
            ev[O_TRUNC] = 1
            ev[O_REPORT] = n
        st[_OA] = 0
        st[_CON] = 0
        st[_COFF] = 0
        st[_WARN] = 0
        st[_WCNT] = 0
        st[_LATCH] = 0
        st[_HAVETF] = 0
        st[_FS] = 0
        act[A_INVALID] = act[A_INVALID] + 1
        return e
    act[A_VALID] = act[A_VALID] + 1
    fx[rb + 1] = fx[rb + 1] + 1
    ax = o[0]                  # filtered axial: load cycles, activity, fall phases
    ma = o[1]
    if ma < 0:
        ma = 0 - ma
    mm = o[2]
    if mm < 0:
        mm = 0 - mm
    rate = o[3]
    if st[_GAPC] > 0:
        st[_GAPC] = st[_GAPC] - 1
        rate = 0
    xa = o[5]                  # measured (unfiltered) values: the overload limits
    xp = o[6]
    if xp < 0:
        xp = 0 - xp
    xq = o[7]
    if xq < 0:
        xq = 0 - xq
    # resultant^2 of components clamped to 32767: <= 2 * 32767^2 < 2^31
    qa = ma
    if qa > 32767:
        qa = 32767
    qm = mm
    if qm > 32767:
        qm = 32767
    m2 = qa * qa + qm * qm
    qa = xp
    if qa > 32767:
        qa = 32767
    qm = xq
    if qm > 32767:
        qm = 32767
    x2 = qa * qa + qm * qm
    # ---- daily activity: load-cycle latch (on >= 20 % BW, off < 10 % BW), peaks, histogram ----
    rising = 0
    if st[_LATCH] == 0:
        if ax >= cfg[CFG_STEP_ON]:
            st[_LATCH] = 1
            rising = 1
            st[_TRISE] = n
            st[_PKON] = ax
            act[A_STEPS] = act[A_STEPS] + 1
        elif st[_HAVETF] != 0 and ax < st[_DMIN]:
            st[_DMIN] = ax
    else:
        if ax < cfg[CFG_STEP_OFF]:
            st[_LATCH] = 0
            st[_TFALL] = n
            st[_HAVETF] = 1
            st[_TLOADP] = st[_TRISE]
            st[_PKLOADP] = st[_PKON]
            st[_DMIN] = ax
        elif ax > st[_PKON]:
            st[_PKON] = ax
    latch = st[_LATCH]
    act[A_LOADED] = act[A_LOADED] + latch
    fx[rb + 2] = fx[rb + 2] + latch
    if ax > act[A_PK_AX]:
        act[A_PK_AX] = ax
    if ax < act[A_MIN_AX]:
        act[A_MIN_AX] = ax
    if ma > act[A_PK_MAP]:
        act[A_PK_MAP] = ma
    if mm > act[A_PK_MML]:
        act[A_PK_MML] = mm
    if m2 > act[A_PK_M2]:
        act[A_PK_M2] = m2
    b = (ax * 10) // cfg[CFG_BW]         # floor(ax / (10 % BW)), |ax * 10| < 2^21
    if b < 0:
        b = 0
    elif b > 20:
        b = 20
    act[ACT_HIST + b] = act[ACT_HIST + b] + 1
    # ---- overload on the MEASURED load: over = any limit exceeded; onset on the DEB-th
    #      consecutive over sample, release after DEB samples all below 90 % -----------------
    w = 0
    if xa > cfg[CFG_COMP]:
        w = 1
    if xa < 0 - cfg[CFG_TENS]:
        w |= 2
    if x2 > cfg[CFG_MOM2]:
        w |= 4
    deb = cfg[CFG_DEB]
    if st[_OA] == 0:
        if w != 0:
            c = st[_CON] + 1
            st[_CON] = c
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
                st[_SX] = st[_SX] | w
                if xa > st[_SX + 1]:
                    st[_SX + 1] = xa
                if xa < st[_SX + 2]:
                    st[_SX + 2] = xa
                if xp > st[_SX + 3]:
                    st[_SX + 3] = xp
                if xq > st[_SX + 4]:
                    st[_SX + 4] = xq
                if x2 > st[_SX + 5]:
                    st[_SX + 5] = x2
            lo = st[_SX + 7] + xa
            st[_SX + 6] = st[_SX + 6] + (lo >> 16)
            st[_SX + 7] = lo & 0xFFFF
            if c >= deb:
                st[_OA] = 1
                st[_COFF] = 0
                e |= EV_OVERLOAD_START
                ev[O_STATE] = 1
                ev[O_START] = n - c + 1
                ev[O_ONSET] = n
                ev[O_END] = 0
                ev[O_DUR] = c
                ev[O_WHICH] = st[_SX]
                ev[O_PK_AX] = st[_SX + 1]
                ev[O_MIN_AX] = st[_SX + 2]
                ev[O_PK_MAP] = st[_SX + 3]
                ev[O_PK_MML] = st[_SX + 4]
                ev[O_PK_M2] = st[_SX + 5]
                ev[O_IMP_HI] = st[_SX + 6]
                ev[O_IMP_LO] = st[_SX + 7]
                ev[O_TRUNC] = 0
                ev[O_REPORT] = 0
                act[A_OVERLOADS] = act[A_OVERLOADS] + 1
        else:
            st[_CON] = 0
    else:
        ev[O_WHICH] = ev[O_WHICH] | w
        if xa > ev[O_PK_AX]:
            ev[O_PK_AX] = xa
        if xa < ev[O_MIN_AX]:
            ev[O_MIN_AX] = xa
        if xp > ev[O_PK_MAP]:
            ev[O_PK_MAP] = xp
        if xq > ev[O_PK_MML]:
            ev[O_PK_MML] = xq
        if x2 > ev[O_PK_M2]:
            ev[O_PK_M2] = x2
        lo = ev[O_IMP_LO] + xa
        ev[O_IMP_HI] = ev[O_IMP_HI] + (lo >> 16)
        ev[O_IMP_LO] = lo & 0xFFFF
        ev[O_DUR] = n - ev[O_START] + 1
        if xa <= cfg[CFG_COMP_REL] and xa >= 0 - cfg[CFG_TENS_REL] and x2 <= cfg[CFG_MOM2_REL]:
            c = st[_COFF] + 1
            st[_COFF] = c
            if c >= deb:
                st[_OA] = 0
                st[_CON] = 0
                e |= EV_OVERLOAD_END
                ev[O_STATE] = 2
                ev[O_END] = n - c + 1
                ev[O_DUR] = n - c + 1 - ev[O_START]
                ev[O_REPORT] = n
        else:
            st[_COFF] = 0
    # ---- warning (alarm level 1): any measured value over 80 % of a limit for DEB samples ----
    if xa > cfg[CFG_COMP_WARN] or xa < 0 - cfg[CFG_TENS_WARN] or x2 > cfg[CFG_MOM2_WARN]:
        if st[_WCNT] < deb:
            st[_WCNT] = st[_WCNT] + 1
        if st[_WCNT] >= deb:
            st[_WARN] = 1
    else:
        st[_WCNT] = 0
        st[_WARN] = 0
    # ---- fall: loading -> descent (unloaded T_DESC_MIN..T_DESC_MAX, no gap) -> contact, in ANY
    #      state (supersedes a pending candidate) -> window T_IMPWIN: hard impact (rate >=
    #      R_IMPACT and axial >= 80 % BW) or soft contact -> recovery (loaded < REC_PCT % of the
    #      rest of T_DECIDE: hard => EV_FALL; soft and never >= 80 % BW => soft candidate) ------
    fs = st[_FS]
    cand = 0
    if rising != 0 and st[_HAVETF] != 0:
        dd = n - st[_TFALL]
        if dd >= cfg[CFG_T_DESC_MIN] and dd <= cfg[CFG_T_DESC_MAX]:
            cand = 1
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
        st[_LCNT] = st[_LCNT] + latch
        st[_SCNT] = st[_SCNT] + rising
        if ax > st[_CPKREC]:
            st[_CPKREC] = ax
        if n - st[_TIMP] >= cfg[CFG_T_DECIDE] - 1:
            st[_FS] = 0
            rl = cfg[CFG_T_DECIDE] - cfg[CFG_T_IMPWIN]
            if st[_LCNT] * 100 < cfg[CFG_REC_PCT] * rl:
                if st[_HARD] != 0:
                    e |= EV_FALL
                    f = EV_FALL_BASE
                    ev[f + F_T_LOAD] = st[_CTLOAD]
                    ev[f + F_T_DESC] = st[_CTDESC]
                    ev[f + F_T_IMP] = st[_TIMP]
                    ev[f + F_T_DEC] = n
                    ev[f + F_PK_LOAD] = st[_CPKLOAD]
                    ev[f + F_MIN_DESC] = st[_CDMIN]
                    ev[f + F_PK_AX] = st[_CPKAX]
                    ev[f + F_PK_RATE] = st[_CPKRATE]
                    ev[f + F_PK_MAP] = st[_CPKMAP]
                    ev[f + F_PK_MML] = st[_CPKMML]
                    ev[f + F_PK_M2] = st[_CPKM2]
                    ev[f + F_LOADED] = st[_LCNT]
                    ev[f + F_REC_LEN] = rl
                    ev[f + F_STEPS] = st[_SCNT]
                    ev[f + F_SOURCE] = 1
                    act[A_FALLS] = act[A_FALLS] + 1
                    fx[FX_FALARM] = cfg[CFG_FALL_ALARM]
                    fx[FX_LFALL_T] = st[_TIMP]
                    fx[FX_LFALL_DEC] = n
                    fx[FX_HAVE_LFALL] = 1
                elif st[_CPKREC] < cfg[CFG_F_IMPACT]:
                    fx[FX_SOFT_T] = st[_TIMP]
                    fx[FX_SOFT_DEC] = n
                    fx[FX_SOFT_SEQ] = fx[FX_SOFT_SEQ] + 1
    elif fs == 1:
        if ax > st[_CPKAX]:
            st[_CPKAX] = ax
        if ax > st[_CPKREC]:
            st[_CPKREC] = ax
        if rate > st[_CPKRATE]:
            st[_CPKRATE] = rate
        if ma > st[_CPKMAP]:
            st[_CPKMAP] = ma
        if mm > st[_CPKMML]:
            st[_CPKMML] = mm
        if m2 > st[_CPKM2]:
            st[_CPKM2] = m2
        if n - st[_TIMP] >= cfg[CFG_T_IMPWIN] - 1:
            st[_FS] = 2
            st[_LCNT] = 0
            st[_SCNT] = 0
            if st[_CPKRATE] >= cfg[CFG_R_IMPACT] and st[_CPKAX] >= cfg[CFG_F_IMPACT]:
                st[_HARD] = 1
                act[A_IMPACTS] = act[A_IMPACTS] + 1
            else:
                st[_HARD] = 0
    return e


class Detector:
    """Detection state machines. `step(out)` (out = dsp.Pipeline's array) returns the OR of the
    EV_* codes of events that started/completed on this sample; details in `ev`, daily activity
    in `act` / `hist`. Allocation-free per sample.

    limits: [comp (0.1 N), tens (0.1 N), mom (0.01 N*m), debounce (samples), phase] as from
    phase_limits(); None = phase_limits(PHASE_FULL, BW_DEFAULT)."""

    def __init__(self, limits=None, bw=BW_DEFAULT):
        self.cfg = array("i", [0] * CFG_N)
        self.st = array("i", [0] * _ST_N)
        self.ev = array("i", [0] * EV_N)      # slots: overload, load fall, fault, inertial fall
        self.act = array("i", [0] * ACT_N)
        self.fx = array("i", [0] * FX_N)      # fusion words (load -> inertial path)
        for i in range(FX_RING_N):
            self.fx[FX_RING + 3 * i] = RING_NONE
        self.hist = memoryview(self.act)[ACT_HIST:ACT_HIST + HIST_N]
        self.tab = array("i", [0] * _T_N)     # kernel(tab) == step(out) once bound
        self.out = None
        self.imu = None                       # imufall.ImuPath once attach_imu()
        bind_table(self.tab, _T_ST, self.st, _ST_N)
        bind_table(self.tab, _T_CFG, self.cfg, CFG_N)
        bind_table(self.tab, _T_EV, self.ev, EV_N)
        bind_table(self.tab, _T_ACT, self.act, ACT_N)
        bind_table(self.tab, _T_FX, self.fx, FX_N)
        cfg = self.cfg
        cfg[CFG_R_IMPACT] = 15000
        cfg[CFG_T_DESC_MIN] = 50
        cfg[CFG_T_DESC_MAX] = 2000
        cfg[CFG_T_IMPWIN] = 100
        cfg[CFG_T_DECIDE] = 2000
        cfg[CFG_REC_PCT] = 40
        cfg[CFG_FAULT_N] = 10
        cfg[CFG_CLEAR_N] = 200
        cfg[CFG_FALL_ALARM] = 60000
        self.set_body_weight(bw)
        self.set_limits(limits if limits is not None else phase_limits(PHASE_FULL, bw))

    def set_limits(self, limits):
        """limits: [comp, tens, mom(, debounce(, phase))], units 0.1 N / 0.01 N*m."""
        comp, tens, mom = int(limits[0]), int(limits[1]), int(limits[2])
        deb = int(limits[3]) if len(limits) > 3 else 20
        phase = int(limits[4]) if len(limits) > 4 else -1
        if not (0 < comp <= 131071 and 0 < tens <= 131071 and 0 < mom <= 32767
                and 1 <= deb <= 1000):
            raise ValueError("limits out of range")
        c = self.cfg
        c[CFG_COMP], c[CFG_TENS], c[CFG_MOM], c[CFG_DEB], c[CFG_PHASE] = comp, tens, mom, deb, phase
        c[CFG_MOM2] = mom * mom
        c[CFG_COMP_REL] = comp * 9 // 10
        c[CFG_TENS_REL] = tens * 9 // 10
        r = mom * 9 // 10
        c[CFG_MOM2_REL] = r * r
        c[CFG_COMP_WARN] = comp * 8 // 10
        c[CFG_TENS_WARN] = tens * 8 // 10
        r = mom * 8 // 10
        c[CFG_MOM2_WARN] = r * r

    def limits(self):
        c = self.cfg
        return [c[CFG_COMP], c[CFG_TENS], c[CFG_MOM], c[CFG_DEB], c[CFG_PHASE]]

    def set_body_weight(self, bw):
        """bw: body weight in 0.1 N (200 N .. 2000 N). Sets the %BW thresholds."""
        bw = int(bw)
        if not 2000 <= bw <= 20000:
            raise ValueError("body weight 2000..20000 (0.1 N)")
        c = self.cfg
        c[CFG_BW] = bw
        c[CFG_STEP_ON] = bw * 20 // 100
        c[CFG_STEP_OFF] = bw * 10 // 100
        c[CFG_F_IMPACT] = bw * IMPACT_PCT_BW // 100

    def bind(self, out):
        """Fix the input buffer (dsp out, array('i', 8)) of the per-sample path. Then
        `detect.kernel(det.tab)` is one sample (the hot path: a single ptr32 conversion)."""
        bind_table(self.tab, _T_O, out, 8)
        self.out = out          # the table holds addresses only: keep the buffer alive

    def step(self, out):
        """One sample of dsp's out (array('i', 8)); returns the OR of the EV_* codes. Any buffer
        (re-bound when it changes); the hot path calls kernel(tab) directly."""
        if out is not self.out:
            self.bind(out)
        return kernel(self.tab)

    def alarm_level(self):
        """0 none, 1 low (warning zone >= 80 % of a limit, or a load or IMU sensor fault), 2 high
        (overload active, or a fall in the last CFG_FALL_ALARM samples until ack())."""
        st = self.st
        if st[_OA] or self.fx[FX_FALARM] > 0:
            return 2
        if st[_WARN] or st[_FAULT] or self.fx[FX_IMU_FAULT]:
            return 1
        return 0

    def ack(self):
        """Silence the fall alarm."""
        self.fx[FX_FALARM] = 0

    # --- the inertial path (imufall.py) ----------------------------------------------------
    def attach_imu(self, rate_hz=104):
        """Enable the inertial fall path (imufall.ImuPath on this detector's ev and fx).
        Returns it; `imu_step(row)` is one IMU sample."""
        import imufall
        self.imu = imufall.ImuPath(self.ev, self.fx, self.cfg[CFG_FALL_ALARM], rate_hz)
        return self.imu

    def imu_step(self, row):
        """One IMU sample (row = array('i', 8): t, ax, ay, az (mg), gx, gy, gz (0.1 dps), flags);
        returns the OR of event codes (EV_FALL_IMU, EV_IMU_FAULT, EV_IMU_CLEAR)."""
        e = self.imu.step(row)
        if e & EV_FALL_IMU:
            self.act[A_FALLS] = self.act[A_FALLS] + 1
        return e

    def status(self):
        """A short dict for `oimon info`: which fall paths are working."""
        if self.imu is None:
            imu = "absent"
        elif self.fx[FX_IMU_FAULT]:
            imu = "fault"
        else:
            imu = "ok"
        return {"imu": imu, "load": "fault" if self.st[_FAULT] else "ok",
                "falls": "load+imu" if imu == "ok" else "load only"}

    @property
    def valid(self):
        return self.st[_FAULT] == 0

    @property
    def faulted(self):
        return self.st[_FAULT] != 0

    @property
    def overload_active(self):
        return self.st[_OA] != 0

    @property
    def samples(self):
        """Samples processed (the int32 word: wraps after 2^32; read only when reporting)."""
        return self.st[_N]

    def reset_activity(self):
        a = self.act
        for i in range(ACT_N):
            a[i] = 0
