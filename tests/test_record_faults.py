"""oimon record against a scripted device (tests/fakestream.py): stale frames from before the
record are dropped, a device restart starts a new segment and time never runs backwards, a
repeated batch is written once, SIGTERM/SIGHUP end a recording like Ctrl-C, a failed record
leaves no row and no stream, the port is exclusive. Every wait is on a condition with a
generous bound (the machine is shared)."""
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from fakestream import STALE_AXIAL, FakeStream
from oimon import cli, link, recording
from oimon.commands import record as R
from oimon_common import protocol as P

ROOT = Path(__file__).resolve().parents[1]


def _run(argv, capsys):
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _stop_when(fake, cond):
    """SIGTERM to this process once cond(fake) holds: the recorder's handler ends cleanly."""
    def go():
        try:
            fake.wait(cond)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
    th = threading.Thread(target=go, daemon=True)
    th.start()
    return th


def _check_monotonic(index):
    assert len(index) and np.all(np.diff(index) > 0), "time runs backwards or repeats"


def test_stale_frames_are_dropped_and_sigterm_ends_cleanly(tmp_path, capsys):
    fake = FakeStream(stale_batches=40)
    rec, dbp = tmp_path / "r.oimrec", tmp_path / "db.sqlite"
    try:
        th = _stop_when(fake, lambda f: f.sent >= 30)
        rc, out, err = _run(["--db", dbp, "record", "--port", fake.url, "--duration", "120",
                             "--out", rec, "--reconnect", "0"], capsys)
        th.join(5)
    finally:
        fake.close()
    assert rc == 0, err
    assert "stale frames from before the recording dropped" in out, out
    h, index, samples, events, error = recording.load(rec)
    assert error is None                                  # END chunk written: clean stop
    assert h["version"] == 2 and len(samples) >= 29 * 50
    assert not (samples[:, 0] == STALE_AXIAL).any()
    assert all(e.get("kind") != "stale" for e in events)
    _check_monotonic(index)
    # the right rows at the right index (the wire format rounds axial to 0.2 N)
    assert np.abs(samples[:, 0] - index % 30000).max() <= 1
    # the device was told to stop; the row has the totals
    assert fake.commands[-1] == (P.C_STREAM, {"mode": "off"})
    row = sqlite3.connect(dbp).execute("SELECT samples, path FROM recording").fetchone()
    assert row[0] == len(samples) and row[1] == str(rec)


def test_device_restart_starts_a_segment_time_never_runs_backwards(tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.setattr(R.Recorder, "STALL_S", 0.5)
    fake = FakeStream(restart_after=20, repeat_batch=5)
    rec, dbp = tmp_path / "r.oimrec", tmp_path / "db.sqlite"
    try:
        th = _stop_when(fake, lambda f: f.after_restart >= 20)
        rc, out, err = _run(["--port", fake.url, "--db", dbp, "record", "--duration", "120",
                             "--out", rec], capsys)
        th.join(5)
    finally:
        fake.close()
    assert rc == 0, err
    assert "1 device restarts (new segments)" in out and "repeated samples dropped" in out, out
    with recording.Reader(rec) as r:
        chunks = list(r.chunks())
        segs = r.segments
        assert r.error is None
    assert len(segs) == 1 and segs[0]["reason"] == "device restart" and segs[0]["device_first"] == 0
    index = np.concatenate([np.arange(c[1], c[1] + len(c[2])) for c in chunks if c[0] == "samples"])
    _check_monotonic(index)
    before = index[index < segs[0]["first"]]
    after = index[index >= segs[0]["first"]]
    assert len(before) == 20 * 50 and len(after) >= 19 * 50
    # the restart's pause (>= STALL_S) is in the time base: a jump, never a step back
    assert segs[0]["first"] - before[-1] >= 400
    ev = [c[1] for c in chunks if c[0] == "event" and c[1]["kind"] == "overload_start"]
    assert ev and all(index[0] <= e["sample"] <= index[-1] for e in ev)


def test_record_old_file_with_backwards_index_reads_monotonic(tmp_path):
    """A version 1 file written across a restart before segments existed (18128 -> 7)."""
    p = tmp_path / "old.oimrec"
    with recording.Writer(p, {"device_id": "X"}) as w:
        w.write(18000, np.ones((128, 3), int))
        w.event({"kind": "overload_start", "sample": 18050})
        w.write(7, np.full((100, 3), 2))
        w.event({"kind": "overload_start", "sample": 50})
    h, index, samples, events, err = recording.load(p)
    assert err is None and h["version"] == 1
    _check_monotonic(index)
    assert index[128] == 18128 and events[1]["sample"] == 18128 + 43
    assert events[1]["device_sample"] == 50


def test_failed_out_leaves_no_row_and_no_stream(tmp_path, capsys):
    fake = FakeStream()
    dbp = tmp_path / "db.sqlite"
    try:
        for out in (tmp_path / "no" / "such" / "r.oimrec", tmp_path / ("x" * 300 + ".oimrec"),
                    tmp_path):
            rc, o, err = _run(["--port", fake.url, "--db", dbp, "record", "--duration", "1",
                               "--out", out], capsys)
            assert rc == 2 and err.count("\n") == 1 and err.startswith("oimon: "), err
        # the file cannot be created (a read-only folder): after the handshake began
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            if os.access(ro, os.W_OK):             # root ignores the mode: a folder in its place
                target = tmp_path / "file-not-folder"
                target.write_text("x")
                out = target / "r.oimrec"
            else:
                out = ro / "r.oimrec"
            rc, o, err = _run(["--port", fake.url, "--db", dbp, "record", "--duration", "1",
                               "--out", out], capsys)
        finally:
            ro.chmod(0o700)
        assert rc == 2 and err.count("\n") == 1, err
    finally:
        fake.close()
    assert not fake.stream                      # never left streaming
    if dbp.exists():
        assert sqlite3.connect(dbp).execute("SELECT count(*) FROM recording").fetchone()[0] == 0


def test_second_user_of_the_port_is_told_port_busy(tmp_path, capsys):
    fake = FakeStream()
    try:
        with link.Link(fake.url) as ln:
            ln.command(P.C_INFO)
            with pytest.raises(link.PortBusy, match="port busy"):
                link.Link(fake.url)
            rc, out, err = _run(["--port", fake.url, "info"], capsys)
            assert rc == 2 and err.startswith("oimon: port busy") and err.count("\n") == 1, err
        with link.Link(fake.url) as ln:               # released on close
            assert ln.command(P.C_INFO)["device_id"] == "FAKE-STREAM"
    finally:
        fake.close()


def test_pty_port_is_exclusive(tmp_path):
    import pty
    import tty
    m, s = pty.openpty()
    tty.setraw(s)
    path = os.ttyname(s)
    try:
        a = link.Link(path)
        try:
            with pytest.raises(link.PortBusy):
                link.Link(path)
        finally:
            a.close()
        link.Link(path).close()
    finally:
        os.close(m)
        os.close(s)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_signal_ends_a_recording_in_a_subprocess(tmp_path, sig):
    fake = FakeStream()
    rec, dbp = tmp_path / "r.oimrec", tmp_path / "db.sqlite"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "host"), str(ROOT / "common")]),
               OIMON_LOCK_DIR=str(tmp_path / "locks"))
    p = subprocess.Popen([sys.executable, "-m", "oimon", "--port", fake.url, "--db", str(dbp),
                          "record", "--out", str(rec)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, text=True)
    try:
        fake.wait(lambda f: f.sent >= 20)
        p.send_signal(getattr(signal, sig))
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        fake.close()
    assert p.returncode == 0, err
    assert "Traceback" not in err and out.startswith("recorded "), (out, err)
    h, index, samples, events, error = recording.load(rec)
    assert error is None and len(samples) >= 19 * 50
    row = sqlite3.connect(dbp).execute("SELECT samples FROM recording").fetchone()
    assert row[0] == len(samples)
    assert fake.commands[-1] == (P.C_STREAM, {"mode": "off"})
