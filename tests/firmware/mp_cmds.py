# Commands (firmware/cmds.py), HMAC auth (firmware/auth.py) and the retightening reminder
# (firmware/retighten_dev.py) on the i386 MicroPython, against a stand-in Device.
import os

_DIR = "/tmp/oimon-mpcmds-%d" % (os.urandom(1)[0] * 256 + os.urandom(1)[0])
os.putenv("OIMON_STORAGE", _DIR)
os.putenv("OIMON_DEVICE_ID", "SIM-TEST")

import json  # noqa: E402
import fwtest  # noqa: E402
import struct  # noqa: E402
import hal  # noqa: E402
from oimon_common import protocol as P  # noqa: E402
from oimon_common import decode as D
import config  # noqa: E402
import flashlog  # noqa: E402
import auth  # noqa: E402
import cmds  # noqa: E402
import retighten_dev as R  # noqa: E402
from powercut_fs import Rng  # noqa: E402

KEY = bytes(range(1, 33))


def _clean():
    fwtest.clean(_DIR)


_TXBUF = bytearray(24000)


class Tx:
    # what the device wrote, in a buffer made once (writes allocate nothing; `data` copies)
    def __init__(self):
        self.buf = _TXBUF
        self.n = 0

    def write(self, b, n=None):
        n = len(b) if n is None else n
        k = min(n, len(self.buf) - self.n)
        P.blit(self.buf, self.n, b, 0, k)
        self.n += k
        return n

    @property
    def data(self):
        return bytes(memoryview(self.buf)[:self.n])

    @data.setter
    def data(self, v):
        self.n = 0


class Src:
    overruns = 0


class Alarm:
    def __init__(self):
        self.on = True
        self.acks = 0

    def active(self):
        return self.on

    def ack(self):
        self.acks += 1
        self.on = False


class Dev:
    FW_VERSION = "test"

    def __init__(self, key=KEY):
        _clean()
        if key is not None:
            with open(auth.KEY_PATH, "wb") as f:
                f.write(key)
        auth.boot().events = []           # the security state of this "boot" (its log: supervisor)
        self.cfg = config.load()
        self.cal = None
        self.rate = 1000
        self.count = 0
        self.src = Src()
        self.stream = 0
        self.batch_n = 0
        self.batch_max = 50
        self.enc = P.Encoder()
        self.tx = Tx()
        self.log = flashlog.Log(hal.STORAGE)
        self.retighten_due = False
        self.reminder = R.Reminder()
        from oimon_common import exercise
        self.exercise = exercise.Exercise()
        self.running = True
        self.released = False
        self.resp = []
        self.logrd = [0] * cmds.LR_SIZE   # C_LOG's read in progress (cmds.log_step)
        self.log_steps = 0

    def _tx_ok(self):
        return True

    def _tx(self, ftype, n):
        self.enc.write(self.tx, ftype, n)
        return True

    def respond(self, cmd, status, data):
        json.dumps(data)                  # must be serialisable
        self.resp.append((cmd, status, data))

    def _batch_send(self):
        self.batch_n = 0

    def clock_set(self):
        self.reminder.check(self, True)

    def apply_config(self):
        self.batch_max = self.cfg["stream_batch"]

    def set_calibration(self, cal):
        from oimon_common import calib
        calib.save(hal.STORAGE + "/calib.bin", cal)
        self.cal = cal

    def tare(self):
        return {"error": "uncalibrated: calibrate first (tare only moves the offsets)"}

    def ack_alarm(self):
        al = getattr(self, "alarm", None)
        was = bool(al and al.active())
        if al:
            al.ack()
        return was

    def call(self, cmd, args=None, raw=None):
        n = len(self.resp)
        cmds.handle(self, cmd, raw if raw is not None else json.dumps(args or {}).encode())
        k = 0
        while self.logrd[0] and k < 100000:   # C_LOG: the main loop's idle() passes
            cmds.log_step(self)
            k += 1
        self.log_steps += k
        assert len(self.resp) == n + 1, (cmd, self.resp[n:])
        return self.resp[-1][1], self.resp[-1][2]

    def signed(self, cmd, args, counter, key=KEY, dev_id=None):
        a = json.dumps(args).encode()
        mac = auth.hmac_sha256(key, P.auth_message(dev_id or hal.DEVICE_ID, counter, cmd, a,
                                                   auth.get().nonce))
        return self.call(cmd, raw=struct.pack("<I", counter) + mac + a)

    def security(self):
        self.log.sync()
        return [json.loads(r[3]) for r in self.log.since(0) if r[1] == flashlog.K_SECURITY]


# RFC 4231 HMAC-SHA256 test cases 1, 2, 3, 4, 6, 7 (case 5 is a truncated MAC)
RFC4231 = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than "
     b"block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]


def test_hmac_rfc4231_vectors():
    import binascii
    for key, msg, want in RFC4231:
        assert binascii.hexlify(auth.hmac_sha256(key, msg)).decode() == want, want


def test_constant_time_equal():
    a = bytes(32)
    assert auth.equal(a, bytes(32))
    assert not auth.equal(a, b"\x00" * 31 + b"\x01")
    assert not auth.equal(a, b"\x80" + bytes(31))
    assert not auth.equal(a, bytes(31))


def test_patient_commands():
    d = Dev()
    st, info = d.call(P.C_INFO)
    assert st == P.S_OK and info["device_id"] == "SIM-TEST" and info["key"] is True
    assert "auth_counter" not in d.call(P.C_CONFIG)[1]
    t = hal.unix_time() + 100                  # a drift correction (issue 12: bounded)
    st, r = d.call(P.C_TIME, {"t": t})
    assert st == P.S_OK and abs(r["clock"] - t) < 3
    assert d.call(P.C_TIME, {"t": t - 150 * 86400})[0] == P.S_AUTH
    assert d.call(P.C_TIME, {"t": 5})[0] == P.S_RANGE
    assert d.call(P.C_TIME, {"t": "x"})[0] == P.S_RANGE
    st, r = d.call(P.C_STREAM, {"mode": "cal"})
    assert st == P.S_OK and d.stream == 1 and r["session"] == 0 and isinstance(r["boot"], int)
    st, r2 = d.call(P.C_STREAM, {"mode": "cal", "session": 0xDEADBEEF})
    assert st == P.S_OK and r2["session"] == 0xDEADBEEF and r2["boot"] == r["boot"]
    assert d.call(P.C_STREAM, {"mode": "cal", "session": -1})[0] == P.S_BAD_REQUEST
    assert d.call(P.C_STREAM, {"mode": "cal", "session": "x"})[0] == P.S_BAD_REQUEST
    d.call(P.C_STREAM, {"mode": "off"})
    assert d.stream == 0
    assert d.call(P.C_STREAM, {"mode": "fast"})[0] == P.S_BAD_REQUEST
    assert d.call(P.C_STATUS)[0] == P.S_OK
    d.alarm = Alarm()
    st, r = d.call(P.C_ACK)
    assert st == P.S_OK and r == {"acknowledged": True} and d.alarm.acks == 1
    st, r = d.call(P.C_REPL)                   # unsigned release of a keyed device: refused
    assert st == P.S_AUTH and d.running and not d.released
    assert d.call(0x7F)[0] == P.S_UNKNOWN
    assert d.call(0xFE)[0] == P.S_UNKNOWN
    assert d.call(P.C_INFO, raw=b"[1,2]")[0] == P.S_BAD_REQUEST
    assert d.call(P.C_INFO, raw=b"\xff\xfe")[0] == P.S_BAD_REQUEST


def test_auth_accepts_good_refuses_bad_replay_malformed_and_logs():
    d = Dev()
    st, r = d.signed(P.C_SET, {"phase": "II"}, 5)
    assert st == P.S_OK, r
    assert d.cfg["phase"] == "II" and auth.get().counter == 5
    assert auth.Auth().counter == 5                        # persisted before acting
    assert d.signed(P.C_SET, {"phase": "III"}, 5)[0] == P.S_REPLAY
    assert d.signed(P.C_SET, {"phase": "III"}, 4)[0] == P.S_REPLAY
    assert d.signed(P.C_SET, {"phase": "III"}, 6, key=b"\x01" * 32)[0] == P.S_AUTH
    assert d.signed(P.C_SET, {"phase": "III"}, 6, dev_id="SIM-OTHER")[0] == P.S_AUTH
    # a MAC over other arguments
    a = b'{"phase":"I"}'
    mac = auth.hmac_sha256(KEY, P.auth_message(hal.DEVICE_ID, 7, P.C_SET, b'{"phase":"II"}'))
    assert d.call(P.C_SET, raw=struct.pack("<I", 7) + mac + a)[0] == P.S_AUTH
    # the same MAC with another command byte
    mac = auth.hmac_sha256(KEY, P.auth_message(hal.DEVICE_ID, 7, P.C_SET, a))
    assert d.call(P.C_WIPE, raw=struct.pack("<I", 7) + mac + a)[0] == P.S_AUTH
    assert d.call(P.C_SET, raw=b"\x01\x02")[0] == P.S_BAD_REQUEST
    assert d.call(P.C_SET, raw=b"")[0] == P.S_BAD_REQUEST
    # a good MAC over garbage arguments: refused, logged, counter used up
    assert d.signed(P.C_SET, [1], 8)[0] == P.S_BAD_REQUEST
    assert d.cfg["phase"] == "II"
    sec = d.security()
    assert len(sec) == 9, sec
    assert [s["cmd"] for s in sec].count(P.C_SET) == 8
    assert sec[0]["refused"].startswith("counter")
    # unauthenticated: nothing happens without a key
    d2 = Dev(key=None)
    assert d2.signed(P.C_SET, {"phase": "I"}, 100)[0] == P.S_AUTH
    assert d2.cfg["phase"] == "I"
    assert d2.security()[0]["refused"] == "no key provisioned"


def test_security_log_is_rate_limited():
    d = Dev()
    for i in range(50):
        d.call(P.C_SET, raw=b"\x00" * 40)
    sec = d.security()
    assert len(sec) == cmds.SEC_PER_MIN


def test_set_range_checks_change_nothing():
    d = Dev()
    before = json.dumps(d.cfg.data)
    c = [10]

    def bad(args):
        c[0] += 1
        st, r = d.signed(P.C_SET, args, c[0])
        assert st in (P.S_RANGE, P.S_BAD_REQUEST), (args, st, r)

    bad({"phase": "IV"})
    bad({"body_weight_kg": 10})
    bad({"body_weight_kg": True})
    bad({"body_weight_kg": "80"})
    bad({"limits": {"I": {"comp": 100}}})
    bad({"limits": {"I": {"comp": 5000.5}}})
    bad({"limits": {"V": {"comp": 5000}}})
    bad({"limits": {"I": {"tens": 6000}}})          # tension above compression
    bad({"limits": []})
    bad({"patient": "x" * 40})
    bad({"patient": "Jane Doe"})
    bad({"unknown": 1})
    bad({})
    bad({"phase": "I", "body_weight_kg": 500})     # all or nothing
    c0 = auth.get().counter
    assert json.dumps(d.cfg.data) == before
    st, r = d.signed(P.C_SET, {"phase": "I", "body_weight_kg": 82.5, "patient": "P-017",
                                "limits": {"I": {"comp": 6000, "tens": 1200}}}, c0 + 1)
    assert st == P.S_OK, r
    assert d.cfg.limits() == {"comp": 6000, "tens": 1200, "moment": 1500}
    d.log.sync()
    kinds = [r[1] for r in d.log.since(0)]
    assert flashlog.K_CONFIG in kinds


def test_retightening_month_ends():
    assert R.add_months(2023, 11, 30, 3) == (2024, 2, 29)
    assert R.add_months(2025, 11, 30, 3) == (2026, 2, 28)
    assert R.add_months(2025, 8, 31, 3) == (2025, 11, 30)
    assert R.add_months(2025, 10, 15, 3) == (2026, 1, 15)
    assert R.parse_date("2025-02-29") is None
    assert R.parse_date("2024-02-29") == (2024, 2, 29)
    assert R.parse_date("2024-2-29") is None
    assert R.parse_date("2024-02-2x") is None
    for z in (0, 19000, 20513, 30000):
        assert R.days_from_civil(*R.civil_from_days(z)) == z


def test_retightening_reminder_due_logged_and_cleared():
    d = Dev()
    hal.set_unix_time(R.days_from_civil(2026, 3, 1) * 86400 + 3600)
    st, r = d.signed(P.C_RETIGHTEN, {"date": "2025-11-30", "torque": 12}, 1)
    assert st == P.S_OK and r["due"] == "2026-02-28", r
    assert d.retighten_due                             # 1 March > 28 Feb: due at once
    d.log.sync()
    recs = [json.loads(x[3]) for x in d.log.since(0) if x[1] == flashlog.K_RETIGHTEN]
    assert recs[0]["recorded"] == "2025-11-30" and recs[1]["reminder"] == "due"
    assert d.call(P.C_INFO)[1]["retighten_due"] is True
    st, r = d.signed(P.C_RETIGHTEN, {"date": "2026-03-01"}, 2)
    assert st == P.S_OK and not d.retighten_due and r["due"] == "2026-06-01"
    assert d.cfg["retighten_last"] == "2026-03-01"
    # the daily check: the day the due date comes
    hal.set_unix_time(R.days_from_civil(2026, 5, 31) * 86400)
    assert not d.reminder.check(d, True)
    hal.set_unix_time(R.days_from_civil(2026, 6, 1) * 86400 + 5)
    assert d.reminder.check(d, True) and d.retighten_due
    assert d.signed(P.C_RETIGHTEN, {"date": "2027-01-01"}, 3)[0] == P.S_RANGE   # future
    assert d.signed(P.C_RETIGHTEN, {"date": "2026-06-01", "torque": 90}, 4)[0] == P.S_RANGE
    assert d.signed(P.C_RETIGHTEN, {"date": "1.6.2026"}, 5)[0] == P.S_BAD_REQUEST
    assert d.cfg["retighten_last"] == "2026-03-01"


def test_log_command_sends_records_then_response():
    d = Dev()
    for i in range(40):
        d.log.append(flashlog.K_SUMMARY, b'{"day":%d}' % i + b"." * 200)
    big = bytes(range(256)) * 12                    # a record bigger than one frame
    s_big = d.log.append(flashlog.K_EVENT, big)
    st, r = d.call(P.C_LOG, {"since": 10, "max": 4000})
    assert st == P.S_OK and r["records"] == 0 and r["pending"] == s_big   # all still in RAM
    d.log.sync()                                    # (the main loop's service() does this)
    st, r = d.call(P.C_LOG, {"since": 10, "max": 4000})
    assert st == P.S_OK and r["more"] and r["records"] < 30, r
    dec = P.Decoder()
    frames = dec.feed(d.tx.data)
    seqs = [D.unpack_log_chunk(pl)[0] for t, s, pl in frames if t == P.T_LOG]
    assert seqs[0] == 11 and seqs[-1] == r["last"]
    d.tx.data = bytearray()
    st, r = d.call(P.C_LOG, {"since": r["last"], "max": 1 << 20})
    assert st == P.S_OK and not r["more"] and r["last"] == s_big
    parts = {}
    for t, s, pl in dec.feed(d.tx.data):
        seq, total, off, b = D.unpack_log_chunk(pl)
        parts.setdefault(seq, bytearray())
        assert off == len(parts[seq])
        parts[seq] += b
    rec = D.parse_record(parts[s_big])
    assert rec["payload"] == big and rec["kind"] == flashlog.K_EVENT
    assert d.call(P.C_LOG, {"since": -1})[0] == P.S_BAD_REQUEST


def test_log_read_runs_in_steps_without_allocation():
    # C_LOG answers when its read ends; meanwhile the main loop runs (one chunk or one record per
    # pass) and a second C_LOG is refused as busy; the steps allocate nothing
    import gc
    import micropython
    d = Dev()
    for i in range(60):
        d.log.append(flashlog.K_SUMMARY, b'{"day":%d}' % i + b"." * 300)
    d.log.sync()
    d.tx.data = b""
    cmds.LOG_STEP_US = 0                            # one step per call (the pass's budget)
    cmds.handle(d, P.C_LOG, b'{"since":0,"max":1048576}')
    assert d.logrd[0] and not d.resp                # nothing answered yet: the read is running
    cmds.handle(d, P.C_LOG, b'{"since":0}')
    assert d.resp[-1][1] == P.S_BUSY, d.resp
    gc.collect()
    steps = 0
    while d.logrd[0] and steps < 10000:
        micropython.heap_lock()                     # an allocation in a step would end the
        try:                                        # read early (the error path): fewer records
            cmds.log_step(d)
        finally:
            micropython.heap_unlock()
        steps += 1
    # every record went out under the lock; only the answer (its JSON, at the end) could not
    assert steps > 60 and d.logrd[3] == 60 and not d.log.reading, (steps, d.logrd)
    frames = P.Decoder().feed(d.tx.data)
    seqs = sorted(set(D.unpack_log_chunk(pl)[0] for t, _s, pl in frames if t == P.T_LOG))
    assert seqs == list(range(1, 61)), seqs
    st, r = d.call(P.C_LOG, {"since": 0, "max": 1 << 20})   # the same read, answered
    assert st == P.S_OK and r["records"] == 60 and not r["more"] and r["last"] == 60, r
    cmds.LOG_STEP_US = 1500


def test_log_read_ends_after_its_time_and_says_more():
    # a read older than LOG_READ_MAX_MS ends at the next record and says "more": no host
    # holds the log's rotation for longer; the host goes on from "last"
    d = Dev()
    for i in range(20):
        d.log.append(flashlog.K_SUMMARY, b'{"day":%d}' % i)
    d.log.sync()
    cmds.LOG_READ_MAX_MS = 0
    try:
        st, r = d.call(P.C_LOG, {"since": 0, "max": 1 << 20})
    finally:
        cmds.LOG_READ_MAX_MS = 60000
    assert st == P.S_OK and r["more"] and r["last"] < 20 and not d.log.reading, r
    st, r = d.call(P.C_LOG, {"since": r["last"], "max": 1 << 20})
    assert st == P.S_OK and not r["more"] and r["last"] == 20, r


def test_calibration_write_through_calib_module():
    from oimon_common import calib
    d = Dev()
    cal = calib.Calibration([10, 20, 30, 0], [1 << 14, 0, 0, 0, 1 << 14, 0, 0, 0, 1 << 14],
                            [16, 16, 16], 3, 1767225600)
    good = cal.pack()
    st, r = d.signed(P.C_CALIB, {"file": "".join("%02x" % b for b in good)}, 1)
    assert st == P.S_OK, r
    assert calib.load(hal.STORAGE + "/calib.bin") == cal and d.cal == cal
    bad = bytearray(good)
    bad[20] ^= 1                                  # CRC no longer matches
    st, r = d.signed(P.C_CALIB, {"file": "".join("%02x" % b for b in bad)}, 2)
    assert st == P.S_RANGE and "crc" in r["error"], r
    assert d.signed(P.C_CALIB, {"file": "zz"}, 3)[0] == P.S_BAD_REQUEST
    assert d.signed(P.C_CALIB, {"file": 5}, 4)[0] == P.S_BAD_REQUEST
    assert calib.load(hal.STORAGE + "/calib.bin") == cal


def test_exercise_plan_validated_and_stored():
    d = Dev()
    plan = {"v": 1, "preset": "2x20", "start_date": "2026-01-05", "utc_offset_min": 60,
            "body_weight_kg": 75, "start_kg": 5, "step_kg": 5, "interval_days": 7, "cap_kg": 30,
            "sessions_per_day": 2, "minutes": 20, "band_pct": 10, "margin_pct": 20}
    st, r = d.signed(P.C_PLAN, plan, 1)
    assert st == P.S_OK, r
    assert config.load()["exercise_plan"] == plan
    p2 = dict(plan)
    p2["cap_kg"] = 70
    assert d.signed(P.C_PLAN, p2, 2)[0] == P.S_RANGE
    assert d.signed(P.C_PLAN, {"x": "y" * 900}, 3)[0] == P.S_RANGE
    assert config.load()["exercise_plan"] == plan


def test_wipe_needs_confirmation():
    d = Dev()
    for i in range(5):
        d.log.append(flashlog.K_ALARM, b"{}")
    assert d.signed(P.C_WIPE, {}, 1)[0] == P.S_BAD_REQUEST
    st, r = d.signed(P.C_WIPE, {"confirm": "wipe"}, 2)
    assert st == P.S_OK and r["wiped"] >= 5
    recs = d.log.since(0)
    assert len(recs) == 1 and recs[0][1] == flashlog.K_SECURITY


def _garble(rng, b):
    b = bytearray(b)
    for _ in range(1 + rng.below(4)):
        op = rng.below(4)
        if op == 0 and b:
            b[rng.below(len(b))] = rng.below(256)
        elif op == 1 and b:
            j = rng.below(len(b))
            b = b[:j] + b[j + 1:]
        elif op == 2:
            j = rng.below(len(b) + 1)
            b = b[:j] + bytes((rng.below(256),)) + b[j:]
        else:
            b = b[:rng.below(len(b) + 1)]
    return bytes(b)


SAMPLES = [b'{"t":1767225600}', b'{"mode":"cal"}', b'{"since":0,"max":100}', b'{}',
           b'{"phase":"II","limits":{"I":{"comp":5000}}}', b'{"date":"2026-01-01","torque":10}',
           b'{"file":"4f49434c"}', b'{"confirm":"wipe"}', b'{"body_weight_kg":80}',
           b'{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}']


def garbled_commands(n, seed=99):
    rng = Rng(seed)
    d = Dev()
    codes = [P.C_INFO, P.C_TIME, P.C_STREAM, P.C_LOG, P.C_ACK, P.C_CONFIG, P.C_STATUS,
             P.C_REPL, P.C_SET, P.C_CALIB, P.C_RETIGHTEN, P.C_PLAN, P.C_WIPE, P.C_TARE]
    errors = 0
    counter = 1
    for i in range(n):
        cmd = codes[rng.below(len(codes))] if rng.below(8) else rng.below(256)
        base = SAMPLES[rng.below(len(SAMPLES))]
        k = rng.below(4)
        if k == 0:
            raw = rng.bytes(rng.below(60))
        else:
            raw = _garble(rng, base)
        if cmd >= P.AUTH_MIN and rng.below(2):
            counter += 1                               # correctly signed garbage
            mac = auth.hmac_sha256(KEY, P.auth_message(hal.DEVICE_ID, counter, cmd, raw,
                                                       auth.get().nonce))
            raw = struct.pack("<I", counter) + mac + raw
        try:
            obj = json.loads(raw[P.AUTH_HDR:] if cmd >= P.AUTH_MIN and len(raw) >= P.AUTH_HDR else raw)
            valid = isinstance(obj, dict)
        except Exception:  # noqa: BLE001
            valid = len(raw) == 0
        st, r = d.call(cmd, raw=raw)
        if not valid and st == P.S_OK:
            raise AssertionError("garbled %r to %d answered ok" % (raw, cmd))
        if st != P.S_OK:
            errors += 1
            assert isinstance(r, dict) and isinstance(r.get("error"), str), r
        d.running = True
        d.stream = 0
        d.tx.data = bytearray()
        if len(d.resp) > 100:
            d.resp = d.resp[-2:]
    return {"commands": n, "errors": errors}


def test_garbled_command_payloads_never_raise():
    n = int(os.getenv("OIMON_FUZZ_CMDS") or 2000)
    r = garbled_commands(n)
    print("FUZZCMDS", json.dumps(r))
    assert r["errors"] > n // 2
