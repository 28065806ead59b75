"""Host side of lost samples (issue 11): `oimon record` keeps a T_GAP record as a "gap" event,
`oimon plot` shades it, `oimon sim replay` lists the missing samples."""
import numpy as np

from oimon import plots, recording
from oimon.commands import record
from oimon_common import protocol as P
from oimon_sim import replay


class _W:
    def __init__(self):
        self.events = []

    def event(self, ev):
        self.events.append(ev)


def test_record_keeps_gap_records_as_events():
    r = record.Recorder("port", "out", None)
    w = r.w = _W()
    pl = bytearray(P.GAP_BYTES)
    P.pack_gap(pl, 12345, 28, P.GAP_ACQ)
    r._frame(P.T_GAP, bytes(pl))
    assert w.events == [{"kind": "gap", "sample": 12345, "n": 28, "cause": "acquisition"}]
    r._frame(P.T_GAP, b"\x01\x02")               # malformed: counted, nothing stored
    assert r.batch_errors == 1 and len(w.events) == 1


def _recording(path):
    w = recording.Writer(path, {"device_id": "T", "kind": "calibrated", "rate_hz": 1000})
    rows = np.zeros((2000, 3), np.int32)
    rows[:, 0] = 7000
    w.write(0, rows[:1000])
    w.event({"kind": "gap", "sample": 1000, "n": 28, "cause": "acquisition"})
    w.write(1028, rows[1000:])                       # the counter jumps over the lost samples
    w.close()


def test_plot_and_replay_show_the_gap(tmp_path):
    rec = tmp_path / "g.oimon"
    _recording(rec)
    plots.plot(rec, tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 0
    res = replay.replay_file(rec)
    assert res["gap_list"] == [(1000, 28)] and res["gap_samples"] == 28
    assert "1 gaps, 28 samples missing: sample 1000 (+28)" in replay.format_events(res)
