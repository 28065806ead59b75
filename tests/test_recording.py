"""The recording format: round trip, streaming, truncation and corruption reported with the byte
offset while the good part stays readable."""
import json
import struct

import numpy as np
import pytest

from oimon import recording
from oimon.errors import OimonError


def _write(path, n=10000, events=((2500, {"kind": "overload", "sample": 2500}),), nch=3):
    rng = np.random.default_rng(1)
    rows = rng.integers(-30000, 30000, size=(n, nch)).astype(np.int32)
    hdr = {"device_id": "T-1", "rate_hz": 1000, "start_time": "2025-01-01T00:00:00+00:00"}
    if nch == 4:
        hdr["kind"] = "raw"
    with recording.Writer(path, hdr) as w:
        at = 0
        for i, ev in list(events) + [(n, None)]:
            w.write(at, rows[at:i])
            at = i
            if ev is not None:
                w.event(ev)
    return rows


def _chunk_offsets(path):
    data = path.read_bytes()
    (hlen,) = struct.unpack_from("<I", data, 8)
    off = 12 + hlen
    offs = []
    while off < len(data):
        offs.append(off)
        (n,) = struct.unpack_from("<I", data, off + 4)
        off += 12 + n
    assert off == len(data)
    return data, offs


def test_round_trip(tmp_path):
    p = tmp_path / "r.oimrec"
    rows = _write(p)
    header, index, samples, events, err = recording.load(p)
    assert err is None
    assert header["device_id"] == "T-1" and header["kind"] == "calibrated"
    assert header["channels"][0]["unit"] == "N"
    assert np.array_equal(samples, rows)
    assert np.array_equal(index, np.arange(len(rows)))
    assert events == [{"kind": "overload", "sample": 2500}]
    phys = recording.physical(header, samples[:1])
    assert phys[0, 0] == pytest.approx(rows[0, 0] * 0.1)


def test_chunks_are_bounded_and_blocks_contiguous(tmp_path):
    p = tmp_path / "r.oimrec"
    rows = _write(p, n=50000, events=())
    with recording.Reader(p) as r:
        sizes = [len(c[2]) for c in r.chunks() if c[0] == "samples"]
        assert max(sizes) <= recording.CHUNK_ROWS
        got = list(r.blocks(rows=12000))
        assert r.error is None and r.end == {"events": 0, "samples": 50000}
    assert [f for f, _ in got] == [i * 12288 for i in range(len(got))]
    assert np.array_equal(np.concatenate([a for _, a in got]), rows)


def test_truncated_at_every_chunk_boundary_and_mid_chunk(tmp_path):
    p = tmp_path / "r.oimrec"
    rows = _write(p, n=20000, events=((5000, {"kind": "a"}), (9000, {"kind": "b"})))
    data, offs = _chunk_offsets(p)
    cuts = []
    for o in offs:                      # at each boundary (the END chunk missing: cut short)
        cuts.append(o)
        cuts.append(o + 5)              # inside a chunk header
        cuts.append(o + 20)             # inside a chunk body
    t = tmp_path / "t.oimrec"
    for cut in cuts:
        t.write_bytes(data[:cut])
        header, index, samples, events, err = recording.load(t)
        assert err is not None, cut
        good = max(o for o in offs if o <= cut)
        assert err.offset == good, (cut, str(err))
        assert str(good) in str(err)
        # every sample before the cut is there, and equal
        assert np.array_equal(samples, rows[:len(samples)])
        expect = sum((struct.unpack_from("<I", data, o + 4)[0] - 8) // 12
                     for o in offs if o < good and data[o:o + 4] == b"SMPL")
        assert len(samples) == expect


def test_truncated_header(tmp_path):
    p = tmp_path / "r.oimrec"
    _write(p, n=100)
    data = p.read_bytes()
    t = tmp_path / "t.oimrec"
    for cut in (0, 5, 10, 30):
        t.write_bytes(data[:cut])
        with pytest.raises(OimonError) as e:
            recording.load(t)
        assert "at byte" in str(e.value)


def test_flipped_byte_costs_one_chunk(tmp_path):
    p = tmp_path / "r.oimrec"
    rows = _write(p, n=20000, events=())
    data, offs = _chunk_offsets(p)
    rng = np.random.default_rng(3)
    t = tmp_path / "t.oimrec"
    for k in range(len(offs) - 1):          # every sample chunk, a random byte in it
        o = offs[k]
        pos = o + int(rng.integers(0, offs[k + 1] - o))
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        t.write_bytes(bytes(bad))
        header, index, samples, events, err = recording.load(t)
        assert err is not None and err.offset == o, (pos, err)
        lost = set(range(k * recording.CHUNK_ROWS, min(len(rows), (k + 1) * recording.CHUNK_ROWS)))
        keep = np.array(sorted(set(range(len(rows))) - lost))
        assert np.array_equal(index, keep)
        assert np.array_equal(samples, rows[keep])


def test_flipped_bytes_everywhere_never_crash(tmp_path):
    p = tmp_path / "r.oimrec"
    rows = _write(p, n=3000, events=((1000, {"kind": "x"}),))
    data = p.read_bytes()
    t = tmp_path / "t.oimrec"
    for pos in range(0, len(data), 97):
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        t.write_bytes(bytes(bad))
        try:
            header, index, samples, events, err = recording.load(t)
        except OimonError as e:             # header damaged: reported, with the offset
            assert "at byte" in str(e)
            continue
        # whatever is returned is an exact copy of what was written
        assert np.array_equal(samples, rows[index])


def test_no_resync_stops_at_first_error(tmp_path):
    p = tmp_path / "r.oimrec"
    _write(p, n=20000, events=())
    data, offs = _chunk_offsets(p)
    bad = bytearray(data)
    bad[offs[1] + 30] ^= 1
    p.write_bytes(bytes(bad))
    with recording.Reader(p, resync=False) as r:
        n = sum(len(c[2]) for c in r.chunks() if c[0] == "samples")
    assert n == recording.CHUNK_ROWS and r.error.offset == offs[1]


def test_not_a_recording(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("time,force\n0,1\n")
    with pytest.raises(OimonError, match=r"bad magic\) at byte 0"):
        recording.load(p)
    with pytest.raises(OimonError, match="cannot open"):
        recording.load(tmp_path / "missing.oimrec")


def test_atomic_writer_leaves_nothing_on_failure(tmp_path):
    p = tmp_path / "a.oimrec"
    with pytest.raises(RuntimeError):
        with recording.Writer(p, {}, atomic=True) as w:
            w.write(0, np.zeros((10, 3), np.int32))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with recording.Writer(p, {}, atomic=True) as w:
        w.write(0, np.zeros((10, 3), np.int32))
    assert [x.name for x in tmp_path.iterdir()] == ["a.oimrec"]


def test_raw_recording_and_header_is_json(tmp_path):
    p = tmp_path / "raw.oimrec"
    rows = _write(p, n=500, events=(), nch=4)
    data = p.read_bytes()
    (hlen,) = struct.unpack_from("<I", data, 8)
    h = json.loads(data[12:12 + hlen])
    assert h["kind"] == "raw" and len(h["channels"]) == 4 and h["version"] == 1
    assert np.array_equal(recording.load(p)[2], rows)
