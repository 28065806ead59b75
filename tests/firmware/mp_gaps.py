# Lost samples are marked and counters never go blind (issue 11), on the 32-bit port:
#   - dsp: FL_GAP on the first sample after a gap, no load rate across it (no false impact)
#   - app: the sample counter counts ACQUIRED samples (a gap is a jump), the stream carries a
#     T_GAP record, counters wrap at 2**30 with no allocation, the wire's u32 runs across
#     2**30 and 2**31 without a jump.
import gc
import micropython
from array import array

import dsp
from oimon_common import calib
from oimon_common import protocol as P
from oimon_common import decode as D


def _cal():
    return calib.Calibration([0, 0, 0, 0], [100000, 0, 0, 0, 100000, 0, 0, 0, 100000],
                             [24, 24, 24], 1, 1700000000)


def test_gap_flag_and_no_load_rate_across_a_gap():
    p = dsp.Pipeline(_cal())
    raw = array("i", [0, 0, 0, 0])
    out = array("i", [0] * 8)
    for _ in range(50):
        raw[0] = 1000
        p.step(raw, out)
    assert out[dsp.OUT_RATE] == 0 and not out[dsp.OUT_FLAGS] & dsp.FL_GAP
    p.gap()                                  # samples were lost; the load jumped meanwhile
    raw[0] = 200000
    fl = p.step(raw, out)
    assert fl & dsp.FL_GAP and out[dsp.OUT_FLAGS] & dsp.FL_GAP
    assert out[dsp.OUT_RATE] == 0, out[dsp.OUT_RATE]   # not a 10 ms slope across the gap
    fl = p.step(raw, out)
    assert not fl & dsp.FL_GAP and out[dsp.OUT_RATE] == 0
    # without the gap mark the same jump is a steep load rate
    q = dsp.Pipeline(_cal())
    raw[0] = 1000
    for _ in range(50):
        q.step(raw, out)
    raw[0] = 200000
    q.step(raw, out)
    assert out[dsp.OUT_RATE] > 5000, out[dsp.OUT_RATE]


class _Src:
    # sample source with the driver's gap attribute: `lose` samples lost before the next one
    RATE = 1000

    def __init__(self):
        self.overruns = 0
        self.samples = 0
        self.gap = 0
        self.lose = 0
        self.k = 0

    def read(self, buf):
        k = self.k = (self.k + 1) % 50          # a quiet, live bridge (never "stuck")
        buf[0] = 100 * k
        buf[1] = 100 * k + 1
        buf[2] = 100 * k + 2
        buf[3] = 0
        self.gap = self.lose
        self.lose = 0
        return 1


class _Tx:
    # the host side: frames into a pre-allocated buffer (no allocation while locked)
    def __init__(self):
        self.buf = bytearray(8192)
        self.n = 0

    def write(self, b, n=-1):
        if n < 0:
            n = len(b)
        o = self.n
        if o + n <= len(self.buf):
            for i in range(n):
                self.buf[o + i] = b[i]
            self.n = o + n
        return n


def _device():
    import app
    d = app.Device()
    d.src = _Src()
    d._has_gap = True
    d.tx = _Tx()
    d._tx_ok = lambda: True
    d.stream = 1
    d.batch_max = 10
    return d


def _frames(tx):
    dec = P.Decoder()
    out = []
    for i in range(tx.n):
        fr = dec.byte(tx.buf[i])
        if fr is not None:
            out.append((fr[0], bytes(fr[2])))
    return out


def test_gap_record_in_stream_and_counter_counts_acquired_samples():
    d = _device()
    for _ in range(25):
        d.sample()
    d.src.lose = 7
    for _ in range(25):
        d.sample()
    if d.batch_n:
        d._batch_send()
    assert d.count == 57 and d.lost == 7 and d.gaps == 1
    fr = _frames(d.tx)
    gaps = [D.unpack_gap(p) for t, p in fr if t == P.T_GAP]
    assert gaps == [(25, 7, P.GAP_ACQ)], gaps
    firsts = [(D.unpack_samples(p)[0], len(D.unpack_samples(p)[2])) for t, p in fr if t == P.T_SAMPLES]
    # batches are contiguous except across the gap record: 25 + 7 = 32
    nxt = 0
    for f, n in firsts:
        assert f == nxt or (nxt == 25 and f == 32), (f, nxt, firsts)
        nxt = f + n
    assert nxt == 57


def _run_across(start, hi):
    d = _device()
    d.count = start
    d.count_hi = hi
    d.src.samples = start
    for _ in range(5):
        d.sample()
    micropython.heap_lock()                  # across the wrap: nothing allocates per sample
    try:
        for _ in range(200):
            d.sample()
    finally:
        micropython.heap_unlock()
    if d.batch_n:
        d._batch_send()
    return d


def test_counters_wrap_across_2_30_and_2_31_without_allocation_or_jump():
    for start, hi, wire0 in (((1 << 30) - 100, 0, (1 << 30) - 100), ((1 << 30) - 100, 1, (1 << 31) - 100)):
        d = _run_across(start, hi)
        assert d.count == 105, d.count                   # (2**30 - 100) + 205 - 2**30
        assert d.count_hi == hi + 1
        assert isinstance(d.count, int) and d.count < (1 << 30)
        firsts = [D.unpack_samples(p)[0] for t, p in _frames(d.tx) if t == P.T_SAMPLES]
        assert firsts[0] == wire0, (firsts[0], wire0)
        for a, b in zip(firsts, firsts[1:]):
            assert (b - a) % (1 << 32) == 10, (a, b)      # no jump at 2**30 or 2**31
        d = None                                          # one Device at a time in the heap
        gc.collect()
