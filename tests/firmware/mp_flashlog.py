# Device log (firmware/flashlog.py) on the i386 MicroPython: layout, recovery, rotation,
# snippets, and the power-cut soak (OIMON_POWERCUTS cuts, default 300; `make powercut-soak`
# runs 10,000 through sim/oimon_sim/bench_log.py).
import os
import json
import micropython
from oimon_common import protocol as P
import flashlog
from powercut_fs import CutFs, PowerCut, Rng

_T = 1700000000


def _clock():
    return _T


def _log(fs, **kw):
    a = {"seg_size": 2048, "budget": 8192, "block": 512, "queue": 4096, "clock": _clock}
    a.update(kw)
    return flashlog.Log("/dev", fs=fs, **a)


def test_roundtrip_and_recovery():
    fs = CutFs(Rng(1))
    lg = _log(fs)
    want = []
    for i in range(100):
        pl = bytes([i & 0xFF]) * (i % 40) + b"\x00\x6f"
        s = lg.append(1 + i % 7, pl)
        assert s == i + 1
        want.append((s, 1 + i % 7, _T, pl))
    assert lg.durable_seq == 0          # nothing written yet: append never touches flash
    assert fs.files == {}
    lg.sync()
    assert lg.durable_seq == 100
    got = lg.since(0)
    assert got == want, got[:3]
    lg2 = _log(fs)                      # reboot
    assert lg2.seq == 100
    assert lg2.since(95) == want[95:]
    assert lg2.append(2, b"x") == 101


def test_service_does_one_bounded_step():
    fs = CutFs(Rng(2))
    lg = _log(fs, block=512)
    for i in range(30):
        lg.append(flashlog.K_EVENT, b"e" * 100)     # not urgent
    n0 = lg.pending()
    writes = 0
    while lg.pending():
        before = lg.pending()
        lg.service(True)
        assert before - lg.pending() <= 512
        writes += 1
        assert writes < 50
    assert lg.durable_seq == 30
    # not forced: a small non-urgent record waits for FLUSH_MS
    lg.append(flashlog.K_EVENT, b"x")
    assert lg.service() == 0 and lg.pending()
    # urgent kinds go out at the next step (after the GAP_MS pause)
    lg.append(flashlog.K_ALARM, b"a")
    import time
    time.sleep_ms(flashlog.GAP_MS + 5)
    for _ in range(3):
        lg.service()
    assert lg.pending() == 0 and lg.durable_seq == 32


def test_corrupt_record_is_skipped_and_reading_goes_on():
    fs = CutFs(Rng(3))
    lg = _log(fs, seg_size=1 << 20, budget=1 << 22)
    for i in range(20):
        lg.append(2, b"rec%02d" % i + b"\x6f" * 5)
    lg.sync()
    path = list(fs.files)[0]
    data = fs.files[path]
    rec_len = P.REC_HDR + 10 + P.REC_TRL
    data[5 * rec_len + 14] ^= 0x40        # payload of record 6
    data[9 * rec_len + 0] = 0x00          # magic of record 10
    data[12 * rec_len + 2] = 0xFF         # length of record 13
    lg2 = _log(fs, seg_size=1 << 20, budget=1 << 22)
    c0 = lg2.corrupt                      # the boot scan saw them too
    got = [r[0] for r in lg2.since(0)]
    assert got == [s for s in range(1, 21) if s not in (6, 10, 13)], got
    assert lg2.corrupt - c0 == 3
    assert lg2.seq == 20


def test_torn_tail_dropped_and_new_segment_started():
    fs = CutFs(Rng(4))
    lg = _log(fs)
    for i in range(10):
        lg.append(3, b"abcdefgh%d" % i)
    lg.sync()
    path = list(fs.files)[0]
    fs.files[path] = fs.files[path][:-7] + b"\xff\xff"
    lg2 = _log(fs)
    assert lg2.seq == 9
    assert [r[0] for r in lg2.since(0)] == list(range(1, 10))
    lg2.append(3, b"new")
    lg2.sync()
    assert len(fs.files) == 2                         # the torn segment is left as it is
    assert [r[0] for r in lg2.since(0)] == list(range(1, 11))


def test_rotation_keeps_budget_and_newest():
    fs = CutFs(Rng(5))
    lg = _log(fs, seg_size=1024, budget=4096, block=256)
    for i in range(400):
        lg.append(2, b"%05d" % i + b"." * 40)
        lg.service(True)
    lg.sync()
    total = sum(len(v) for v in fs.files.values())
    assert total <= 4096 + 256, total
    got = lg.since(0)
    assert got[-1][0] == 400
    seqs = [r[0] for r in got]
    assert seqs == list(range(seqs[0], 401))
    assert len(fs.removed) > 0


def test_wipe_keeps_sequence_going():
    fs = CutFs(Rng(6))
    lg = _log(fs, seg_size=512)
    for i in range(50):
        lg.append(2, b"y" * 30)
    lg.sync()
    upto = lg.wipe()
    assert upto == 50
    got = lg.since(0)
    assert len(got) == 1 and got[0][0] == 51 and got[0][1] == flashlog.K_SECURITY
    assert json.loads(got[0][3]) == {"wiped": 50}
    lg2 = _log(fs, seg_size=512)
    assert lg2.seq == 51


def _feed(snip, lg, n, start):
    out = snip._test_out
    for k in range(n):
        v = start + k
        out[0] = (v * 7) % 20000 - 5000      # 0.1 N
        out[1] = (v * 3) % 4000 - 2000
        out[2] = -((v * 5) % 3000)
        snip.push(out)
    return start + n


def test_event_snippet_pre_and_post_trigger():
    from array import array
    fs = CutFs(Rng(7))
    snip = flashlog.Snippet(1000)
    snip._test_out = array("i", [0] * 8)
    lg = flashlog.Log("/dev", snippet=snip, fs=fs, clock=_clock)
    v = _feed(snip, lg, 2500, 0)
    assert lg.event(b'{"kind":"overload"}') == 0      # capture running
    assert lg.event(b'{"kind":"second"}') == 1        # a second event: logged at once, no snippet
    v = _feed(snip, lg, 1999, v)
    assert not snip.ready
    v = _feed(snip, lg, 1, v)
    assert snip.ready
    v = _feed(snip, lg, 10, v)                       # the loop goes on before service() runs
    lg.sync()
    recs = lg.since(0)
    assert [r[0] for r in recs] == [1, 2]
    head, sn = P.unpack_event(recs[1][3])
    assert head == {"kind": "overload"}
    assert sn["rate"] == 1000 and sn["pre"] == 1000 and sn["n"] == 3000
    rows = sn["rows"]
    for k in (0, 999, 1000, 2999):
        x = 1500 + k
        assert rows[k] == ((((x * 7) % 20000 - 5000) >> 1) << 1, (x * 3) % 4000 - 2000, -((x * 5) % 3000)), (k, rows[k])
    assert len(recs[1][3]) < 2 + 19 + 7 + 6 * 3000          # delta coding helped
    h2, s2 = P.unpack_event(recs[0][3])
    assert h2 == {"kind": "second"} and s2 is None


def test_snippet_early_trigger_and_clamping():
    from array import array
    snip = flashlog.Snippet(100)
    out = array("i", [0] * 8)
    lg = flashlog.Log("/dev", snippet=snip, fs=CutFs(Rng(8)), clock=_clock)
    out[0] = 100000                                   # 10 kN: clamps to int16 wire units
    out[1] = -70000
    out[2] = 5
    for _ in range(20):
        snip.push(out)
    lg.event(b"{}")
    for _ in range(200):
        snip.push(out)
    lg.sync()
    head, sn = P.unpack_event(lg.since(0)[0][3])
    assert sn["pre"] == 20 and sn["n"] == 220
    assert sn["rows"][0] == (32767 << 1, -32768, 5)


def test_snippet_push_is_allocation_free():
    from array import array
    snip = flashlog.Snippet(1000)
    out = array("i", [1, 2, 3, 4, 5, 6, 7, 8])
    snip.trigger(b"{}")
    micropython.heap_lock()
    try:
        for _ in range(2500):
            snip.push(out)
    finally:
        micropython.heap_unlock()
    assert snip.ready


def _scan_bytes(data):
    # seqs of the valid records in a removed segment's bytes
    out = set()
    i = 0
    while i < len(data):
        r = P.rec_check(data, i, len(data))
        if r > 0:
            out.add(P.rec_fields(data, i)[1])
            i += r
        else:
            i += 1
    return out


def powercut_soak(cuts, seed=12345, verbose=False):
    """Random appends/services/syncs; the power is cut at a random byte; reboot, recover,
    check. Returns a dict of counts (the bench reports it)."""
    rng = Rng(seed)
    fs = CutFs(rng)
    appended = {}          # seq -> (kind, payload): everything ever handed to append()
    acked = set()          # seqs acknowledged (durable_seq reached them)
    returned_bad = 0
    lost = 0
    checked = 0
    boots = 0
    total_acked = 0
    while fs.cuts < cuts:
        fs.reboot()
        lg = _log(fs, seg_size=1024 + rng.below(2048), budget=6144, block=256 << rng.below(3),
                  queue=3072)
        boots += 1
        recs = lg.since(0)
        present = set()
        last = 0
        for s, kind, t, pl in recs:
            if s <= last or appended.get(s) != (kind, pl):
                returned_bad += 1
            last = s
            present.add(s)
        removed = set()
        for data in fs.removed:
            removed |= _scan_bytes(data)
        for s in acked:
            checked += 1
            if s not in present and s not in removed:
                lost += 1
        acked = set(s for s in acked if s in present)     # check each one again next boot
        if recs:                                          # rotated-out records never return
            lo = recs[0][0]
            for s in [s for s in appended if s < lo]:
                del appended[s]
        if lg.seq < last:
            returned_bad += 1
        fs.arm(1 + rng.below(4000))
        mine = []
        try:
            for _ in range(400):
                op = rng.below(10)
                if op < 6:
                    pl = rng.bytes(rng.below(200))
                    if rng.below(4) == 0:
                        pl = bytes([0x6F]) * len(pl)
                    kind = 1 + rng.below(7)
                    s = lg.append(kind, pl)
                    if s:
                        if s in present:
                            returned_bad += 1             # a sequence number used twice
                        appended[s] = (kind, bytes(pl))
                        mine.append(s)
                elif op < 9:
                    lg.service(rng.below(2) == 0)
                else:
                    lg.sync()
                d = lg.durable_seq
                while mine and mine[0] <= d:
                    acked.add(mine.pop(0))
                    total_acked += 1
            fs.disarm()                                   # no cut this time: a clean stop
            lg.sync()
            while mine and mine[0] <= lg.durable_seq:
                acked.add(mine.pop(0))
                total_acked += 1
            fs.cuts += 1                                  # counts as a power-off too
        except PowerCut:
            pass
        if len(fs.removed) > 8:
            fs.removed = fs.removed[-8:]
    return {"power_cuts": fs.cuts, "boots": boots, "records_acknowledged": total_acked,
            "acknowledged_checks": checked, "records_lost": lost,
            "corrupt_records_returned": returned_bad}


def test_powercut_soak():
    n = int(os.getenv("OIMON_POWERCUTS") or 300)
    r = powercut_soak(n, int(os.getenv("OIMON_POWERCUT_SEED") or 12345))
    print("POWERCUT", json.dumps(r))
    assert r["power_cuts"] >= n
    assert r["records_acknowledged"] > n
    assert r["records_lost"] == 0, r
    assert r["corrupt_records_returned"] == 0, r
