"""The shared protocol module: the device (i386 MicroPython) and the host (CPython) agree byte
for byte; framing, gaps, resync, records, snippets; the virtual device's link: 0x03 bytes in
frames do not interrupt it, a release command (C_REPL) or mpremote's break-in ends its loop."""
import random
import json
import time
import zlib

import pytest

from oimon import link
from oimon.errors import OimonError
from oimon_common import protocol as P
from oimon_common import decode as D
from oimon_sim import bench_log, mp
from oimon_sim.device import VirtualDevice


def _mp(code):
    p = mp.run(["-c", code])
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_binascii_crc32_on_device_equals_zlib_crc32_on_host():
    rng = random.Random(3)
    bufs = [b"", b"123456789", bytes(range(256)), rng.randbytes(1000), b"\x00" * 77]
    code = "import binascii\nfrom oimon_common import protocol as P\n"
    for b in bufs:
        code += ("b = %r\nbb = bytearray(b) + bytearray(4)\nP.crc_put(bb, 0, len(b))\n"
                 "print(binascii.crc32(b) & 0xFFFFFFFF, bytes(bb[len(b):]).hex())\n" % b)
    lines = _mp(code).split()
    for i, b in enumerate(bufs):
        c = zlib.crc32(b)
        assert int(lines[2 * i]) == c
        assert lines[2 * i + 1] == c.to_bytes(4, "little").hex()


def test_frames_are_identical_on_device_and_host():
    rng = random.Random(4)
    cases = [(P.T_SAMPLES, rng.randbytes(308)), (P.T_EVENT, b'{"kind":"fall"}'),
             (P.T_RESP, b"\x01\x00{}"), (P.T_LOG, bytes(300)), (P.T_RAW, b"\x00" * 600 + b"\x01")]
    code = "from oimon_common import protocol as P\ne = P.Encoder()\n"
    for t, pl in cases:
        code += "print(bytes(e.frame(%d, %r)).hex())\n" % (t, pl)
    lines = _mp(code).split()
    dec = P.Decoder()
    for i, (t, pl) in enumerate(cases):
        host = P.encode(t, i, pl)
        assert lines[i] == host.hex()
        assert dec.feed(bytes.fromhex(lines[i])) == [(t, i, pl)]


def test_wire_bytes_per_sample_at_most_8():
    r = bench_log.wire_bytes_per_sample(batch=50, seconds=4)
    assert r["wire_bytes_per_sample"] <= 8.0, r
    # the smallest batch C_SET accepts (10) still fits
    r10 = bench_log.wire_bytes_per_sample(batch=10, seconds=2)
    assert r10["wire_bytes_per_sample"] <= 8.0, r10


def test_sequence_gaps_counted_and_corrupt_frames_never_delivered():
    frames = [P.encode(P.T_EVENT, s, b'{"n":%d}' % s) for s in range(20)]
    bad = bytearray(frames[5])
    bad[3] ^= 0x10
    stream = b"".join(frames[:5]) + bytes(bad) + b"".join(frames[6:9]) + b"".join(frames[12:])
    dec = P.Decoder()
    got = dec.feed(stream)
    assert [s for _t, s, _p in got] == [0, 1, 2, 3, 4, 6, 7, 8] + list(range(12, 20))
    assert dec.bad == 1 and dec.gaps == 2 and dec.lost == 1 + 3
    for t, s, pl in got:
        assert pl == b'{"n":%d}' % s


def test_resync_at_next_delimiter_after_garbage_and_overflow():
    dec = P.Decoder(64)
    good = P.encode(P.T_STATUS, 7, b"{}")
    got = dec.feed(b"\xff" * 500 + b"\x00" + good + b"\x13\x37" + good[:-1] + b"\x00" + good)
    assert [s for _t, s, _p in got] == [7, 7]
    assert dec.bad == 2
    # a frame too long for the buffer is one bad frame, the next one is fine
    dec = P.Decoder(64)
    got = dec.feed(P.encode(P.T_LOG, 1, bytes(200)) + good)
    assert dec.bad == 1 and [s for _t, s, _p in got] == [7]


def test_log_records_and_event_snippets_round_trip():
    rec = D.pack_record(P.K_ALARM, 42, 1700000000, b'{"x":1}')
    r = D.parse_record(rec)
    assert r == {"kind": P.K_ALARM, "kind_name": "alarm", "seq": 42, "t": 1700000000,
                 "payload": b'{"x":1}'}
    for i in range(len(rec)):
        b = bytearray(rec)
        b[i] ^= 0x01
        with pytest.raises(ValueError):
            D.parse_record(bytes(b))
    with pytest.raises(ValueError):
        D.parse_record(rec[:-1])
    head = b'{"kind":"overload"}'
    snip = bytes((0xE8, 0x03, 2, 0, 3, 0, 1)) + bytes((0x80, 0x10, 0x00, 5, 0xFB)) + \
        bytes((1, 0x80, 0xFF, 0x7F, 0)) + bytes((0xFF, 0, 0))
    h, s = D.unpack_event(len(head).to_bytes(2, "little") + head + snip)
    assert h == {"kind": "overload"} and s["pre"] == 2 and s["n"] == 3
    assert s["rows"] == [(32, 5, -5), (34, 32767, -5), (32, 32767, -5)]
    for bad in (snip[:-1], snip + b"\x00", snip[:5]):
        with pytest.raises(ValueError):
            D.unpack_event(len(head).to_bytes(2, "little") + head + bad)


def test_auth_message_layout():
    m = P.auth_message("SIM-1", 0x01020304, P.C_SET, b"{}", b"NONCE-08")
    assert m == b"oimon-cmd2\x05SIM-1NONCE-08\x04\x03\x02\x01\x20{}"


# --- the virtual device: REPL port handling ---------------------------------------------------
# After the monitor loop returns, firmware/main.py calls hal.after_main(): on the ESP32 that is
# MicroPython's own REPL, on the virtual device sim/mpy/rawrepl.py. mpremote's SerialTransport
# is what `mpremote` itself runs: enter_raw_repl() sends b"\r\x03", flushes, then b"\r\x01".
def _mpremote_exec(path, code):
    from mpremote.transport_serial import SerialTransport
    t = SerialTransport(path, baudrate=115200)
    try:
        t.enter_raw_repl()
        return t.exec(code)
    finally:
        try:
            t.exit_raw_repl()
        except Exception:  # noqa: BLE001
            pass
        t.close()


def test_ctrl_c_bytes_in_frames_do_not_interrupt_and_release_gives_mpremote_the_board():
    with VirtualDevice(None, speed=1) as vd:
        with link.Link(vd.path) as ln:
            ln.enc.seq = 0x0303                       # 0x03 in the header of every frame
            assert ln.command(P.C_INFO)["device_id"]
            ln.write_frame(P.T_CMD, bytes((P.C_STREAM,)) + b'{"mode":"cal","x":"\x03\x03"}')
            ln.write_frame(P.T_STATUS, b"\x03\r\x03" * 40)   # not a command: ignored
            raw = bytearray()
            t = time.monotonic() + 1.0
            while time.monotonic() < t:
                raw += ln.ser.read(4096)
            assert raw.count(b"\x00") > 5               # frames are streaming
            r = ln.command(P.C_STREAM, {"mode": "off"})
            assert r["mode"] == "off"
            assert vd.alive()
            assert ln.command(P.C_INFO)["device_id"]   # still the monitor, not a REPL
            r = ln.command(P.C_REPL)                  # no key: the first deploy's release
            assert r["released"] is True and r["by"] == "unprovisioned"
        assert _mpremote_exec(vd.path, "print(6 * 7)").strip() == b"42"
        assert vd.alive()


def test_mpremote_break_in_does_not_take_the_board_while_it_streams():
    # issue 12: mpremote's break-in (b"\r\x03", Ctrl-C, then Ctrl-A for the raw REPL) no
    # longer ends monitoring: the bytes are counted and ignored, the stream goes on
    with VirtualDevice(None, speed=1) as vd:
        with link.Link(vd.path) as ln:
            ln.command(P.C_STREAM, {"mode": "cal"})
            time.sleep(0.2)
            ln.ser.write(b"\r\x03\x03\r\x01")
            raw = bytearray()
            t = time.monotonic() + 1.0
            while time.monotonic() < t:
                raw += ln.ser.read(4096)
            assert b"raw REPL" not in raw and raw.count(b"\x00") > 5     # still streaming
            assert ln.command(P.C_STREAM, {"mode": "off"})["mode"] == "off"
            assert ln.command(P.C_HEALTH)["break_ins"] >= 1
            time.sleep(1.2)
            recs, _st = ln.read_log(0)
        assert any("break-in" in json.loads(r["payload"]).get("refused", "")
                   for r in recs if r["kind"] == P.K_SECURITY)          # logged as a tamper attempt
        assert vd.alive()


def test_garbage_commands_are_answered_with_an_error():
    with VirtualDevice(None, speed=1) as vd:
        with link.Link(vd.path) as ln:
            with pytest.raises(OimonError, match="bad request"):
                ln.command(P.C_INFO, payload=b"[1,")
            with pytest.raises(OimonError, match="unknown"):
                ln.command(0x7E)
            assert vd.alive()
