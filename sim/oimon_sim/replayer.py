"""Streaming bit-exact replay of the firmware's signal path on the host, over the kernels of
kernels.py (docs/algorithm.md):

    filtered, events = replay(raw, cal, limits)          # raw (n, 4) int32 raw counts

`Replayer` is the streaming form: feed blocks of any size, state is carried exactly, so a 24 h
recording can be replayed with bounded memory (`Replayer.feed(block)`,
`Replayer.feed_calibrated(block)` for recordings of calibrated values, `Replayer.stream(blocks)`
running the two stages on the two cores). replay.py (`oimon sim replay`) is built on it; the
reference it is tested against is the firmware itself on MicroPython (fwrun.py).
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from oimon_common.events import ACT_FIELDS, SLOT, event
from .kernels import (ACT_HIST, ACT_N, BW_DEFAULT, CFG, CFG_N, EV_N, EVROW, HIST_N, _K_B0,  # noqa: F401
                      _K_CAL, _K_F, _K_M, _K_N, _K_OFF, _K_SH, _S_N, _S_PREV, _ST_N, _TFALL,
                      _det_block, _dsp_block, coefficients, make_config)

SEGMENT = 1 << 20                 # replay(): samples per Replayer.feed call


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
                evs.append(event(row[0], code, row[2:2 + len(SLOT[code][1])]))
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
