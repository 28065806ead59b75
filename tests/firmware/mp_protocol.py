# The shared protocol module (firmware/protocol.py) on the i386 MicroPython: CRC, COBS, framing,
# no allocation on the stream path, mpremote break-in detection, and the parser fuzz
# (OIMON_FUZZ_MP frames, default 3000; `make fuzz` runs 100,000).
import os
import json
import micropython
from binascii import crc32
from oimon_common import protocol as P
from powercut_fs import Rng

MP_HEAPSIZE = "1024k"   # the fuzzer's frames and corpus are test data, not the firmware


def test_crc_matches_reference_values():
    assert crc32(b"123456789") & 0xFFFFFFFF == 0xCBF43926
    b = bytearray(b"123456789" + bytes(4))
    P.crc_put(b, 0, 9)
    assert bytes(b[9:]) == b"\x26\x39\xf4\xcb"
    rng = Rng(5)
    for n in (0, 1, 7, 64, 1000):
        data = rng.bytes(n)
        buf = bytearray(data) + bytearray(4)
        P.crc_put(buf, 0, n)
        c = crc32(data) & 0xFFFFFFFF
        assert bytes(buf[n:]) == bytes([c & 255, (c >> 8) & 255, (c >> 16) & 255, c >> 24])


def test_roundtrip_and_gap_counting():
    e = P.Encoder()
    d = P.Decoder()
    out = bytearray()
    for i in range(10):
        out += e.frame(P.T_EVENT, b'{"i":%d}' % i)
    got = d.feed(out)
    assert [g[1] for g in got] == list(range(10))
    assert d.good == 10 and d.bad == 0 and d.gaps == 0
    e.seq = 20
    got = d.feed(bytes(e.frame(P.T_STATUS, b"{}")))
    assert d.gaps == 1 and d.lost == 10


def test_stream_path_is_allocation_free():
    e = P.Encoder()

    class Sink:
        def __init__(self):
            self.n = 0

        def write(self, b, k):
            self.n += k

    s = Sink()
    pl = e.payload
    P.pack_samples(pl, 123456, 1000, 50)
    micropython.heap_lock()
    try:
        for _ in range(20):
            k = e.write(s, P.T_SAMPLES, P.SAMPLE_HDR + 50 * P.SAMPLE_BYTES)
    finally:
        micropython.heap_unlock()
    assert s.n == 20 * k
    f = P.Decoder().feed(bytes(e.out[:k]))
    assert f[0][0] == P.T_SAMPLES and len(f[0][2]) == 308


def test_mpremote_break_in_detected_and_frames_with_ctrl_c_are_not():
    d = P.Decoder()
    e = P.Encoder()
    # frames full of 0x03 and 0x0D bytes: never a break-in
    for i in range(300):
        e.seq = (i * 0x0303) & 0xFFFF
        d.feed(bytes(e.frame(P.T_CMD, bytes([3, 13, 3, 3, 1]) * (i % 9))))
    assert not d.break_in and d.bad == 0
    d.feed(b"\r\x03")                       # what mpremote's enter_raw_repl sends first
    assert d.break_in


def _mutate(rng, fr):
    b = bytearray(fr)
    for _ in range(1 + rng.below(3)):
        op = rng.below(6)
        if not b:
            break
        j = rng.below(len(b))
        if op == 0:
            b[j] ^= 1 << rng.below(8)
        elif op == 1:
            b[j] = rng.below(256)
        elif op == 2:
            b = b[:j] + b[j + 1:]
        elif op == 3:
            b = b[:j] + bytes((rng.below(256),)) + b[j:]
        elif op == 4:
            b = b[:j] + bytes((0,)) + b[j:]
        else:
            b = b[:j] + rng.bytes(rng.below(40)) + b[j:]
    return b


def fuzz_decoder(n_frames, seed=7):
    """Valid frames, some mutated, some random junk, fed byte by byte; checks that no bad frame
    gets through, that every untouched frame after a bad one is found (resync), and that every
    delimited chunk is counted good or bad."""
    rng = Rng(seed)
    e = P.Encoder()
    d = P.Decoder()
    sent = 0
    mutated = 0
    junk = 0
    while sent < n_frames:
        d.reset_seq()
        g0 = d.good
        b0 = d.bad
        stream = bytearray()
        want = {}
        intact = []
        chunks = 0
        for i in range(100):
            ftype = (P.T_SAMPLES, P.T_EVENT, P.T_RESP, P.T_LOG, P.T_CMD, 0x7F)[rng.below(6)]
            pl = rng.bytes(rng.below(60))
            fr = bytes(e.frame(ftype, pl))
            seq = (e.seq - 1) & 0xFFFF
            want[seq] = (ftype, pl)
            r = rng.below(10)
            if r == 0:
                fr = _mutate(rng, fr[:-1]) + b"\x00"
                mutated += 1
            elif r == 1:
                fr = rng.bytes(rng.below(80)) + b"\x00" + fr
                junk += 1
            elif r == 2 and i > 0 and intact and intact[-1] == i - 1:
                stream = stream[:-1]             # the previous frame's delimiter is lost
                intact.pop()
                mutated += 1
                fr = fr
                r = 9
                want[seq] = None                 # merged with the previous one
            if r >= 2 and want[seq] is not None:
                intact.append(i)
            stream += fr
            sent += 1
        chunks = len([c for c in bytes(stream).split(b"\x00") if c])
        got = d.feed(stream)
        for ftype, seq, pl in got:
            w = want.get(seq)
            assert w is not None and w == (ftype, pl), "a corrupt frame got through"
        assert d.good - g0 >= len(intact), (d.good - g0, len(intact))
        assert (d.good - g0) + (d.bad - b0) == chunks, ((d.good - g0), (d.bad - b0), chunks)
    return {"frames": sent, "mutated": mutated, "junk_runs": junk, "good": d.good, "bad": d.bad,
            "gaps": d.gaps, "crashes": 0}


def test_fuzz_firmware_parser():
    n = int(os.getenv("OIMON_FUZZ_MP") or 3000)
    r = fuzz_decoder(n)
    print("FUZZMP", json.dumps(r))
    assert r["frames"] >= n and r["bad"] > 0


def _cobs_reference(data):
    # COBS as written in its paper, for comparison with the device's viper encoder
    out = bytearray()
    block = bytearray()
    for b in data:
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block = bytearray()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(255)
                out += block
                block = bytearray()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def test_viper_cobs_encoder_equals_the_reference():
    import random
    random.seed(3)
    dst = bytearray(2200)
    cases = [b"", b"\x00", b"\x01" * 254, b"\x01" * 255, b"\x00" * 10, b"\x01" * 253 + b"\x00"]
    for _ in range(300):
        n = random.getrandbits(11) % 1100
        cases.append(bytes(random.getrandbits(8) if random.getrandbits(2) else 0 for _ in range(n)))
    for c in cases:
        m = P.cobs_encode(c, len(c), dst)
        assert bytes(dst[:m]) == _cobs_reference(c), c
