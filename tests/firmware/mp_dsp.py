# Signal path on the i386 MicroPython (32-bit words like the ESP32): calibration file,
# flags, tare, the viper calibrate+filter kernel against an arbitrary-precision bytecode
# reference (any 32-bit wrap would show as a difference), overflow stress at full scale,
# zero-input limit cycles, DC exactness, allocation. docs/algorithm.md is the specification.
import gc
import os
import random
from array import array

from oimon_common import calib
import dsp

MP_HEAPSIZE = "1024k"   # the bignum reference and random vectors (test data), not the firmware

TMP = "/tmp/oimon_mp_dsp_%d" % os.getpid() if hasattr(os, "getpid") else "/tmp/oimon_mp_dsp"
FULL = 0x7FFFFF
XMAX = 131071


def _cal(gains_q=None, shifts=(24, 24, 24), offsets=(0, 0, 0, 0)):
    m = gains_q or [100000, 0, 0, 0, 100000, 0, 0, 0, 100000]
    return calib.Calibration(list(offsets), list(m), list(shifts), 1, 1700000000)


# ---- arbitrary-precision reference of docs/algorithm.md (bytecode ints never wrap) ----------
def _trunc16(v):
    return v >> 16 if v >= 0 else -((-v) >> 16)


class Ref:
    def __init__(self, cal, fc=20):
        self.cal = cal
        self.co = dsp.FILTERS[fc]
        self.x1 = None
        self.s1 = [0, 0, 0]
        self.s2 = [0, 0, 0]
        self.smax = 0

    def calibrate(self, raw):
        cal = self.cal
        d = []
        for j in range(3):
            v = raw[j] - cal.offsets[j]
            d.append(max(-FULL, min(FULL, v)))
        x = []
        for c in range(3):
            acc = 0
            for j in range(3):
                acc += (d[j] * cal.matrix[3 * c + j]) >> 12
            sh = cal.shifts[c]
            v = (acc + (1 << (sh - 13))) >> (sh - 12)
            x.append(max(-XMAX, min(XMAX, v)))
        return x

    def step(self, raw):
        F, SA, WA, C1, C2, B0, KB = self.co
        x = self.calibrate(raw)
        if self.x1 is None:
            self.x1 = list(x)
        y = []
        for c in range(3):
            s1, s2, x1 = self.s1[c], self.s2[c], self.x1[c]
            u = x[c] - x1
            R = (C1 * s1 + C2 * s2) >> 16
            P = (u * B0) >> KB
            y.append(x1 + ((P - R + (1 << (F - 1))) >> F))
            self.s1[c] = _trunc16(SA * s1 - WA * s2 + (u << (F + 16)))
            self.s2[c] = _trunc16(WA * s1 + SA * s2)
            self.smax = max(self.smax, abs(self.s1[c]), abs(self.s2[c]))
            self.x1[c] = x[c]
        return y


def _drive(seq, cal, fc=20):
    """Run the viper kernel and the reference over raw triples; assert identical outputs."""
    p = dsp.Pipeline(cal, fc)
    ref = Ref(cal, fc)
    raw = array("i", [0, 0, 0, 0])
    out = array("i", [0] * 8)
    ymax = 0
    for i, r in enumerate(seq):
        raw[0], raw[1], raw[2] = r
        p.step(raw, out)
        y = ref.step(r)
        assert [out[0], out[1], out[2]] == y, (i, r, list(out), y)
        for v in y:
            ymax = max(ymax, abs(v))
    return p, ref, ymax


# ---- calibration file -------------------------------------------------------------------------
def test_calibration_roundtrip():
    cal = _cal(offsets=(1, -2, 3, -4))
    calib.save(TMP, cal)
    back = calib.load(TMP)
    assert back == cal and calib.last_error == "", calib.last_error
    assert back.version == 1 and back.date == 1700000000
    os.remove(TMP)


def test_calibration_missing_or_corrupt_is_uncalibrated():
    try:
        os.remove(TMP)
    except OSError:
        pass
    assert calib.load(TMP) is None and calib.last_error == "missing"
    data = bytearray(_cal().pack())
    for pos, err in ((74, "crc"), (20, "crc"), (0, "magic")):
        bad = bytearray(data)
        bad[pos] ^= 0x40
        with open(TMP, "wb") as f:
            f.write(bad)
        assert calib.load(TMP) is None and calib.last_error == err, (pos, calib.last_error)
    with open(TMP, "wb") as f:
        f.write(data[:40])
    assert calib.load(TMP) is None and calib.last_error == "short"
    os.remove(TMP)
    # out-of-range values with a valid CRC are refused too
    c = _cal()
    c.shifts[0] = 31
    assert c.check() == "range"
    p = dsp.Pipeline(c)
    assert not p.calibrated
    raw = array("i", [100000, 0, 0, 0])
    out = array("i", [7] * 8)
    fl = p.step(raw, out)
    assert fl & dsp.FL_UNCAL and list(out[:4]) == [0, 0, 0, 0]


def test_flags_saturation_rail_stuck():
    p = dsp.Pipeline(_cal())
    out = array("i", [0] * 8)
    raw = array("i", [FULL, -0x800000, 0x7E0000, 0])
    assert p.step(raw, out) == 0x1 | 0x2 | 0x20
    raw = array("i", [-0x7E0000, 5, 6, 0])
    assert p.step(raw, out) == 0x8
    for i in range(61):
        raw[1] = i
        p.step(raw, out)
    raw[1] = 1000
    assert (p.step(raw, out) & dsp.FL_STUCK) == 0     # ch 0 and 2: 63 identical samples
    assert (p.step(raw, out) & dsp.FL_STUCK) == 0x40 | 0x100   # 64th identical raw: ch 0, 2


def test_tare_sets_offsets():
    cal = _cal()
    p = dsp.Pipeline(cal)
    raw = array("i", [0, 0, 0, 0])
    out = array("i", [0] * 8)
    p.tare_start(1024)
    assert not p.tare_done()
    for i in range(1024):
        raw[0] = 8000000 + (i & 7)      # mean 8000003.5 -> rounds half up to 8000004
        raw[1] = -8000000 - (i & 3)     # mean -8000001.5 -> -8000001
        raw[2] = 1234
        raw[3] = -5
        assert (p.step(raw, out) & dsp.FL_TARE) != 0
    assert p.tare_done() and p.tare_state == dsp.TARE_FAILED     # beyond +-2^22: refused
    p.tare_start(16)
    for i in range(16):
        raw[0], raw[1], raw[2] = 4000000 + i, -3000000 - i, 77
        p.step(raw, out)
    assert p.tare_done() and p.tare_state == dsp.TARE_OK
    assert p.tare_offsets == [4000008, -3000007, 77, -5], p.tare_offsets  # floor(mean + 1/2)
    assert cal.offsets == p.tare_offsets
    raw[0], raw[1], raw[2] = 4000008, -3000007, 77
    for i in range(50):
        assert (p.step(raw, out) & dsp.FL_TARE) == 0
    assert list(out[:3]) == [0, 0, 0]
    # a saturated sample during the tare fails it
    p.tare_start(8)
    raw[0] = FULL
    for i in range(8):
        p.step(raw, out)
    assert p.tare_done() and p.tare_state == dsp.TARE_FAILED


# ---- kernel exactness and overflow --------------------------------------------------------------
def test_kernel_matches_reference_random():
    random.seed(7)
    cal = _cal([201000, 3000, -5000, 1500, 150000, 2000, -4000, 2500, 149000], (25, 25, 25),
               (15000, -42000, 8000, 0))
    seq = []
    v = [0, 0, 0]
    for i in range(6000):
        if i % 500 == 0:
            v = [random.getrandbits(24) - (1 << 23) for _ in range(3)]
        seq.append([max(-0x800000, min(FULL, v[c] + random.getrandbits(10) - 512))
                    for c in range(3)])
    _drive(seq, cal)


def test_overflow_full_scale_steps_and_alternation():
    # gains large enough that the 24-bit range drives the calibrated clamp +-XMAX on all three
    # channels with maximal cross-talk: every word of the kernel at its worst case
    m = (1 << 18) - 1
    cal = _cal([m, m, m, m, -m, m, -m, -m, m], (13, 13, 13))
    seq = []
    for k in range(4):                               # full-scale steps, both directions
        seq += [[FULL, FULL, FULL]] * 300 + [[-0x800000, -0x800000, -0x800000]] * 300
    for i in range(2000):                            # alternating full scale
        s = FULL if i & 1 else -0x800000
        seq.append([s, -s - 1, s])
    for i in range(2000):                            # alternation with period 2..40
        s = FULL if (i // (1 + i % 20)) & 1 else -0x800000
        seq.append([s, s, -s - 1])
    random.seed(3)
    for i in range(3000):                            # random full-scale sign pattern
        seq.append([FULL if random.getrandbits(1) else -0x800000 for _ in range(3)])
    p, ref, ymax = _drive(seq, cal)
    assert ref.smax < (1 << 27), ref.smax            # docs/algorithm.md: |s| < 2^27
    assert ymax <= XMAX * 11 // 10, ymax              # overshoot bound


def test_overflow_every_cutoff():
    m = (1 << 18) - 1
    cal = _cal([m, 0, 0, 0, m, 0, 0, 0, m], (13, 13, 13))
    for fc in sorted(dsp.FILTERS):
        seq = []
        for i in range(1500):
            s = FULL if (i // (1 + (i // 100) % 13)) & 1 else -0x800000
            seq.append([s, -s - 1, s])
        p, ref, ymax = _drive(seq, cal, fc)
        assert ref.smax < (1 << 27), (fc, ref.smax)


def test_calibration_extremes_exact():
    m = (1 << 18) - 1
    for shifts in ((13, 13, 13), (30, 30, 30), (20, 13, 30)):
        cal = _cal([m, -m, m, -m, m, -m, m, m, m], shifts, (-(1 << 22), 1 << 22, 0, 0))
        seq = [[FULL, -0x800000, FULL], [-0x800000, FULL, -0x800000], [0, 0, 0],
               [FULL, FULL, FULL], [-0x800000, -0x800000, -0x800000], [1, -1, 4095],
               [-4096, 4096, -1]]
        _drive(seq * 3, cal)


def test_zero_input_no_limit_cycle_and_dc_exact():
    cal = _cal([(1 << 18) - 1, 0, 0, 0, (1 << 18) - 1, 0, 0, 0, (1 << 18) - 1], (13, 13, 13))
    p = dsp.Pipeline(cal)
    raw = array("i", [0, 0, 0, 0])
    out = array("i", [0] * 8)
    for i in range(997):            # leave the state large (alternating full scale)
        s = FULL if i & 1 else -0x800000
        raw[0], raw[1], raw[2] = s, -s, s
        p.step(raw, out)
    raw[0], raw[1], raw[2] = 0, 0, 0
    settled = None
    for i in range(2000):
        p.step(raw, out)
        st = p.st
        if settled is None and all(st[3 + c] == 0 and st[6 + c] == 0 for c in range(3)):
            settled = i
        if settled is not None:
            assert list(out[:3]) == [0, 0, 0], (i, list(out))
    assert settled is not None and settled < 400, settled      # state exactly 0: no cycle
    # constant input: output equals it exactly (DC exact, no dead band)
    for level in (1, -1, 12345, -98765, XMAX):
        raw[0] = raw[1] = raw[2] = level * 32 // 1      # 13-bit shift: ~1/32 unit per count
        for i in range(600):
            p.step(raw, out)
        x = Ref(cal).calibrate([raw[0], raw[1], raw[2]])
        assert list(out[:3]) == x, (level, list(out), x)


def test_load_rate_fast_path():
    cal = _cal([1 << 12, 0, 0, 0, 1 << 12, 0, 0, 0, 1 << 12], (24, 24, 24))   # 1 unit / 4096 c
    p = dsp.Pipeline(cal)
    raw = array("i", [0, 0, 0, 0])
    out = array("i", [0] * 8)
    for i in range(20):
        raw[0] = 7 + (i & 1)
        p.step(raw, out)
    assert out[dsp.OUT_RATE] == 0
    rates = []
    for i in range(30):              # axial ramps 56 units (5.6 N) per ms = 5.6 kN/s
        raw[0] = (56 * (i + 1)) << 12
        p.step(raw, out)
        rates.append(out[dsp.OUT_RATE])
    assert rates[20:] == [5600] * 10, rates


def test_step_is_allocation_free():
    p = dsp.Pipeline(_cal())
    raw = array("i", [1000, 2000, 3000, 0])
    out = array("i", [0] * 8)
    step = p.step
    for i in range(100):
        step(raw, out)
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for i in range(10000):
        raw[0] = i
        step(raw, out)
    used = gc.mem_alloc() - a
    gc.enable()
    assert used == 0, used


# ---- against scipy (CPython writes the reference: tests/test_algorithm.py) ---------------------
def check_scipy_reference():
    """OIMON_REF: int32 file of n x 4 raw counts then n x 3 float-reference outputs x 1000
    (rounded, 0.001 LSB), written by tests/test_algorithm.py; OIMON_TOL: tolerance in LSB over
    the samples after OIMON_SKIP."""
    path = os.getenv("OIMON_REF")
    n = int(os.getenv("OIMON_N"))
    tol = int(os.getenv("OIMON_TOL"))
    skip = int(os.getenv("OIMON_SKIP"))
    cal = _cal([1 << 17, 0, 0, 0, 1 << 17, 0, 0, 0, 1 << 17], (24, 24, 24))   # 128 counts/LSB
    p = dsp.Pipeline(cal)
    raw = array("i", [0, 0, 0, 0])
    ref = array("i", [0, 0, 0])
    out = array("i", [0] * 8)
    worst = 0
    with open(path, "rb") as f:
        for i in range(n):
            f.readinto(raw)
            p.step(raw, out)
            pos = f.tell()
            f.seek(16 * n + 12 * i)
            f.readinto(ref)
            f.seek(pos)
            if i >= skip:
                for c in range(3):
                    e = abs(out[c] * 1000 - ref[c])
                    if e > worst:
                        worst = e
    print("worst error %d.%03d LSB" % (worst // 1000, worst % 1000))
    assert worst <= tol * 1000, worst


# ---- the bound hot path: dsp.kernel(pipe.tab) is Pipeline.step on the bound buffers ----------
def test_bound_kernel_equals_step_and_allocates_nothing():
    cal = _cal([200000, 3000, -6000, 2000, 134000, 3000, -4000, 2700, 133000], (25, 25, 25),
               (15000, -42000, 8000, 0))
    a = dsp.Pipeline(cal)
    b = dsp.Pipeline(cal)
    raw = array("i", [0, 0, 0, 0])
    out = array("i", [0] * 8)
    b.bind(raw, out)
    kernel, tab = dsp.kernel, b.tab
    random.seed(7)
    v = [0, 0, 0]
    for i in range(3000):
        for c in range(3):
            v[c] = max(-0x800000, min(FULL, v[c] + random.getrandbits(17) - 65536))
        if i % 500 == 7:
            v[1] = FULL                                    # saturation, then rail on ch 2
            v[2] = 0x7E0001
        r = array("i", [v[0], v[1], v[2], i])              # step(): fresh buffers each call
        o = array("i", [0] * 8)
        fa = a.step(r, o)
        raw[0], raw[1], raw[2], raw[3] = v[0], v[1], v[2], i
        fb = kernel(tab)
        assert fa == fb and list(o) == list(out), (i, list(o), list(out))
    b.step(raw, out)                                   # step() on the bound buffers: no rebind
    assert b.raw is raw and b.out is out
    gc.collect()
    gc.disable()
    m = gc.mem_alloc()
    for i in range(10000):
        raw[0] = i
        kernel(tab)
    used = gc.mem_alloc() - m
    gc.enable()
    assert used == 0, used
