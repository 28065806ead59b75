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

from oimon_common.events import ACT_FIELDS, SLOT, event  # noqa: F401
from .kernels import (ACT_HIST, ACT_N, BW_DEFAULT, CFG, CFG_N, EV_N, EVROW, HIST_N, _K_B0,  # noqa: F401
                      _K_CAL, _K_F, _K_M, _K_N, _K_OFF, _K_SH, _S_N, _S_PREV, _ST_N,
                      _dsp_block, coefficients, make_config, fused_block, event_dicts, FL_GAP,
                      CFG_FALL_ALARM)
from . import fall_kernels as _fk

SEGMENT = 1 << 20                 # replay(): samples per Replayer.feed call


class Replayer:
    """Streaming bit-exact replay: feed(raw block) -> (filtered (n, 3) int32, events).

    The state is the firmware's own words (dsp k[]/st[], detect cfg[]/st[]/ev[]/act[]/fx[],
    imufall st[]/cfg[]), carried from block to block, so any block size gives the same result
    (tested). IMU rows (m, 8: t in this replayer's load samples, acc mg, gyro 0.1 dps, flags)
    go with the block they belong to (feed(raw, imu_rows)); rows stamped later than the block
    wait for the next one. gaps: positions in the block of first samples after lost ones
    (FL_GAP)."""

    def __init__(self, cal, limits=None, bw=BW_DEFAULT, fc=20, config=None, keep_extra=False,
                 imu_cfg=None):
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
        self.ev = np.zeros(EV_N, np.int64)
        self.act = np.zeros(ACT_N, np.int64)
        self.fx = _fk.new_fx()
        self.ist = np.zeros(_fk.S_N, np.int64)
        self.ist[_fk._PREV:_fk._PREV + 6] = 0x40000000     # the first row is never "identical"
        self.icfg = np.array(imu_cfg if imu_cfg is not None else
                             _fk.defaults(int(self.cfgw[CFG_FALL_ALARM])), np.int64)
        self._rows = np.zeros((0, 8), np.int64)             # IMU rows not yet due
        self.evbuf = np.zeros((1024, EVROW), np.int64)
        self.keep_extra = keep_extra
        self.events = []
        self.load_missing = False

    def _signal(self, mode, a, gaps=None):
        """Stage 1 (dsp): block -> (filtered (n, 3), load rate (n,), flags (n,), measured (n, 3)).
        Touches only the dsp state (k, ps). mode 2: n samples not measured (FL_UNCAL)."""
        if mode == 2:
            n = int(a)
            z = np.zeros((n, 3), np.int32)
            return z, np.zeros(n, np.int32), np.full(n, 0x200, np.int32), z.astype(np.int64)
        a = np.ascontiguousarray(a[:, :4] if mode == 0 else a[:, :3], dtype=np.int32)
        n = a.shape[0]
        x = np.zeros((n, 3), np.int64)
        y = np.empty((n, 3), np.int32)
        rate = np.empty(n, np.int32)
        fl = np.empty(n, np.int32)
        _dsp_block(mode, a, self.k, self.ps, x, y, rate, fl)
        if self.k[_K_CAL] == 0:
            x[:] = 0                  # uncalibrated: dsp writes out[5..7] = 0 too
        if gaps is not None and len(gaps):
            fl[np.asarray(gaps, np.int64)] |= FL_GAP
        return y, rate, fl, x

    def _detect(self, y, rate, fl, x, rows=None):
        """Stage 2 (detection) of a block and its IMU rows -> its events. Touches only the
        detector state."""
        if rows is not None and len(rows):
            self._rows = np.concatenate([self._rows, np.asarray(rows, np.int64).reshape(-1, 8)])
        rows = np.ascontiguousarray(self._rows, dtype=np.int64)
        evs = []
        i, j = 0, 0
        while i < len(fl):
            i, j, ne = fused_block(y, x, rate, fl, i, self.det, self.cfgw, self.ev, self.act,
                                   self.fx, rows, j, self.ist, self.icfg, self.evbuf)
            evs.extend(event_dicts(self.evbuf[:ne]))
        self._rows = rows[j:]
        self.events.extend(evs)
        return evs

    def _feed(self, mode, a, imu_rows=None, gaps=None):
        y, rate, fl, x = self._signal(mode, a, gaps)
        evs = self._detect(y, rate, fl, x, imu_rows)
        if self.keep_extra:
            return y, evs, rate, fl
        return y, evs

    def stream(self, blocks, calibrated=False, ahead=2):
        """Feed every block of the iterable `blocks` (raw (n, 4), or calibrated (n, 3) if
        `calibrated`; or (block, imu rows, gaps) tuples, block an int n for n load samples not
        measured); yields (filtered, events) per block, in order, like feed() would. Three
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
                    rows = gaps = None
                    m = mode
                    if isinstance(blk, tuple):
                        blk, rows, gaps = blk
                    if isinstance(blk, (int, np.integer)):
                        m = 2
                    fs = sig.submit(self._signal, m, blk, gaps)
                    q.append((fs, det.submit(lambda f, r: (f.result()[0], self._detect(
                        *f.result(), r)), fs, rows)))
                    while len(q) > ahead or (q and q[0][1].done()):
                        yield q.popleft()[1].result()
                while q:
                    yield q.popleft()[1].result()
            finally:
                for fs, fd in q:
                    fs.cancel()
                    fd.cancel()

    def feed(self, raw, imu_rows=None, gaps=None):
        """raw (n, 4) raw counts -> (filtered (n, 3) int32, events of the block)."""
        return self._feed(0, raw, imu_rows, gaps)

    def feed_calibrated(self, x, imu_rows=None, gaps=None):
        """Calibrated device units (n, 3) straight into the stages after calibration (load rate,
        filter, detection): no raw flags; values beyond +-XMAX are clamped (FL_CLAMP)."""
        return self._feed(1, x, imu_rows, gaps)

    def feed_missing(self, n, imu_rows=None):
        """n load samples that were not measured (an IMU-only recording such as UMAFall): the
        detector sees them as uncalibrated (FL_UNCAL: invalid, no load history, no veto)."""
        return self._feed(2, n, imu_rows)

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


def replay(raw, cal, limits=None, bw=BW_DEFAULT, fc=20, segment=SEGMENT, imu_rows=None,
           calibrated=False):
    """raw (n, 4) int32 raw counts -> (filtered (n, 3) int32, events: list of dicts).

    Events are dicts {"n": sample, "event": "overload_start" | "overload_end" | "fall" |
    "fault" | "fault_clear", fields of the firmware's event slot (OVL_FIELDS, FALL_FIELDS,
    FAULT_FIELDS)} in the firmware's report order; the firmware emits the same list
    (tests/test_algorithm.py). imu_rows (m, 8) stamped in samples of raw: the inertial path
    too (docs/algorithm.md 5.7); calibrated: raw is (n, 3) device units."""
    rp = Replayer(cal, limits, bw, fc)
    raw = np.asarray(raw)
    out = np.empty((raw.shape[0], 3), np.int32)
    rows = np.zeros((0, 8), np.int64) if imu_rows is None else np.asarray(imu_rows, np.int64)
    feed = rp.feed_calibrated if calibrated else rp.feed
    for a in range(0, raw.shape[0], segment):
        blk = raw[a:a + segment]
        sel = rows[(rows[:, 0] >= a) & (rows[:, 0] < a + len(blk))] if len(rows) else None
        y, _ = feed(blk, sel)
        out[a:a + len(y)] = y
    return out, rp.events
