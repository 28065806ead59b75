"""Fuzzing the host decoder (seeded generator; OIMON_FUZZ_HOST frames, default 20,000, `make fuzz`
runs 1,000,000) and with hypothesis. The firmware parser and command fuzz run on MicroPython in
tests/firmware/mp_protocol.py and mp_cmds.py."""
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from oimon_common import protocol as P
from oimon_sim import bench_log


def test_host_decoder_seeded_fuzz():
    n = int(os.environ.get("OIMON_FUZZ_HOST") or 20000)
    r = bench_log.fuzz_host(n, seed=5, deadline_s=600)
    assert r["frames"] >= n and r["bad"] > n // 20 and r["crashes"] == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_never_crash_and_every_chunk_is_counted(data):
    d = P.Decoder()
    got = d.feed(data)
    chunks = [c for c in data.split(b"\x00")[:-1] if c]
    assert d.good + d.bad == len(chunks)
    assert len(got) == d.good
    for t, s, pl in got:                       # anything accepted re-encodes to the same bytes
        assert P.encode(t, s, pl)[:-1] in chunks


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=300)), min_size=1, max_size=20),
       st.integers(0, 10 ** 6), st.binary(max_size=50))
def test_resync_after_damage(frames, where, junk):
    enc = [P.encode(t, i, pl) for i, (t, pl) in enumerate(frames)]
    k = where % len(enc)
    damaged = enc[:k] + [junk + enc[k][:-1][: len(enc[k]) // 2] + b"\x00"] + enc[k + 1:]
    d = P.Decoder()
    got = d.feed(b"".join(damaged))
    seqs = [s for _t, s, _p in got]
    for i in range(len(enc)):
        if i != k:
            assert i in seqs
    for t, s, pl in got:
        assert (t, pl) == frames[s]
