# Command handling on the device: decode a T_CMD payload, act, answer with one T_RESP.
# handle() never lets an exception out: garbled input gets an error status (docs/protocol.md).
# Patient-level commands (< P.AUTH_MIN) need no key; prosthetist commands carry the auth header
# (auth.py) and every refusal is logged as a security event (rate-limited: the log must not be
# flooded out by a hostile host). Checked values are range-checked here again, whatever the host.
# Issue 12 (docs/security.md): maintenance (REPL, deploy, key change) needs a signed command
# (C_MAINT, C_REKEY) or the physical action at power-up; the clock moves at patient level only
# within TIME_STEP_S of the device clock and never before its floor (C_CLOCK, signed, for more);
# a lost/corrupt/tampered configuration refuses signed commands but C_REPROVISION and C_MAINT;
# the replay counter is stored (auth.Auth.accept) before a command acts, and nothing changes in
# RAM unless its file was written.
from micropython import const
import json
import os
import binascii
import hal
from oimon_common import protocol as P
import config
import auth
import flashlog

from oimon_common import settings as S

# Range checks: oimon_common/settings.py (the host checks the same ranges in its units).
LOG_MAX = 16384                  # bytes of records per C_LOG answer (default)
SEC_PER_MIN = 10                 # security records per minute at most; the rest are counted

_sec = {"t": 0, "n": 0, "suppressed": 0}


def _info(dev):
    c = dev.cfg
    a = auth.get()
    d = {
        "device_id": hal.DEVICE_ID,
        "protocol": P.VERSION,
        "fw": dev.FW_VERSION,
        "platform": hal.PLATFORM,
        "rate": dev.rate,
        "calibrated": dev.cal is not None,
        "config_state": c.state,
        "phase": c["phase"],
        "limits": c.limits(),
        "body_weight_kg": c["body_weight_kg"],
        "clock": hal.unix_time(),
        "samples": dev.count,
        "retighten_last": c["retighten_last"],
        "retighten_interval_months": c["retighten_interval_months"],
        "retighten_due": dev.retighten_due,
        "log_seq": dev.log.seq,
        "log_fill": dev.log.fill_pct(),
        "log_lost": dev.log.lost(),
        "log_full": dev.log.full,
        # every sample lost since boot is counted and marked (gap records); how close the loop
        # came to losing any (the ring's high-water mark) and the planned collections
        "acquisition": {"lost": getattr(dev, "lost", 0), "gaps": getattr(dev, "gaps", 0),
                        "ring_peak": getattr(dev.src, "peak", -1),
                        "gc_planned": getattr(dev, "gc_planned", 0),
                        "gc_forced": getattr(dev, "gc_forced", 0)},
    }
    d.update(a.info())
    sup = getattr(dev, "sup", None)
    if sup is not None:
        d.update(sup.info())
    return d


def auth_events(dev):
    """Log what the security state noticed (a key pinned, a replaced key refused)."""
    a = auth.get()
    while a.events:
        dev.log.append(flashlog.K_SECURITY, json.dumps(a.events.pop(0)).encode())


def security(dev, what, cmd, **more):
    """Log a security event (refused command etc.), at most SEC_PER_MIN a minute."""
    auth_events(dev)
    now = hal.ticks_ms()
    if hal.ticks_diff(now, _sec["t"]) >= 60000 or not _sec["n"]:
        _sec["t"] = now
        _sec["n"] = 0
    if _sec["n"] >= SEC_PER_MIN:
        _sec["suppressed"] += 1
        return
    _sec["n"] += 1
    rec = {"refused": what, "cmd": cmd}
    for k in more:
        rec[k] = more[k]
    if _sec["suppressed"]:
        rec["suppressed"] = _sec["suppressed"]
        _sec["suppressed"] = 0
    dev.log.append(flashlog.K_SECURITY, json.dumps(rec).encode())


def handle(dev, cmd, argbytes):
    try:
        _handle(dev, cmd, argbytes)
        auth_events(dev)
    except Exception as e:  # noqa: BLE001 - a command must never stop the monitor
        try:
            dev.respond(cmd & 0xFF, P.S_ERROR, {"error": "device error: %s" % type(e).__name__})
        except Exception:  # noqa: BLE001
            pass


_is_int = S.is_int
_is_num = S.is_num


def _handle(dev, cmd, argbytes):
    if cmd >= P.AUTH_MIN:
        if cmd not in _AUTH:
            dev.respond(cmd, P.S_UNKNOWN, {"error": "unknown command %d" % cmd})
            return
        a = auth.get()
        r, counter, argbytes = a.check(hal.DEVICE_ID, cmd, argbytes)
        if r != auth.OK:
            security(dev, auth.REASONS[r], cmd, counter=counter)
            dev.respond(cmd, P.S_REPLAY if r == auth.REPLAY else
                        P.S_BAD_REQUEST if r == auth.MALFORMED else P.S_AUTH,
                        {"error": auth.REASONS[r]})
            return
        if not dev.cfg.usable() and cmd not in (P.C_REPROVISION, P.C_MAINT):
            msg = ("configuration %s: phase I limits in force; re-provision first "
                   "(`oimon config reprovision`)" % dev.cfg.state)
            security(dev, msg, cmd, counter=counter)
            dev.respond(cmd, P.S_AUTH, {"error": msg})
            return
        # the counter is stored before acting, so a replay after a power cut fails too; if it
        # cannot be stored the command is refused and nothing happens
        if not a.accept(counter):
            security(dev, auth.REASONS[auth.STORE_FAIL], cmd, counter=counter)
            dev.respond(cmd, P.S_ERROR, {"error": auth.REASONS[auth.STORE_FAIL]})
            return
        _ctx["counter"] = counter
    try:
        args = json.loads(argbytes) if len(argbytes) else {}
    except Exception:  # noqa: BLE001 - ValueError, UnicodeError, RuntimeError (nesting)
        args = None
    if not isinstance(args, dict):
        if cmd >= P.AUTH_MIN:
            security(dev, "arguments are not a JSON object", cmd)
        dev.respond(cmd, P.S_BAD_REQUEST, {"error": "arguments are not a JSON object"})
        return
    f = _AUTH.get(cmd) if cmd >= P.AUTH_MIN else _PATIENT.get(cmd)
    if f is None:
        dev.respond(cmd, P.S_UNKNOWN, {"error": "unknown command %d" % cmd})
        return
    st, data = f(dev, args)
    if st is None:
        return                   # it answered itself (stream, repl)
    if st != P.S_OK and cmd >= P.AUTH_MIN:
        security(dev, data.get("error", "refused"), cmd)
    dev.respond(cmd, st, data)


def _err(status, msg):
    return status, {"error": msg}


_ctx = {"counter": 0}
STORE_ERROR = "the setting could not be stored (flash full or failing): nothing changed"


def _store(dev, ch):
    """cfg.update or the answer for a failed save (RAM unchanged)."""
    if dev.cfg.update(ch):
        return None
    return _err(P.S_ERROR, STORE_ERROR)


# --- patient level ------------------------------------------------------------------------
def _c_info(dev, a):
    return P.S_OK, _info(dev)


def _c_status(dev, a):
    return P.S_OK, {"samples": dev.count, "overruns": dev.src.overruns, "stream": dev.stream,
                    "clock": hal.unix_time(), "log": dev.log.stats(),
                    "retighten_due": dev.retighten_due}


def _clock_now(dev, t):
    hal.set_unix_time(t)
    sup = getattr(dev, "sup", None)
    if sup is not None:
        sup.clock_changed(t)
    dev.clock_set()
    return P.S_OK, {"clock": hal.unix_time()}


def _c_time(dev, a):
    # patient level: a drift correction within TIME_STEP_S of the device clock, or setting a
    # clock that is not valid (never set, RTC lost); never before the clock floor (the latest
    # time the device has stored) minus TIME_STEP_S. More needs the prosthetist (C_CLOCK).
    t = a.get("t")
    if not _is_int(t) or not 1577836800 <= t < 4102444800:
        return _err(P.S_RANGE, "t must be unix seconds in 2020..2099")
    sup = getattr(dev, "sup", None)
    now = hal.unix_time()
    valid = sup.clock_valid() if sup is not None else now >= 1577836800
    floor = sup.floor if sup is not None else 0
    step = P.TIME_STEP_S
    if t < floor - step or (valid and abs(t - now) > step):
        why = ("clock change of %+d s refused: at patient level the clock moves at most %d s "
               "and never before %d; the prosthetist sets it (`oimon time --signed`)"
               % (t - now, step, floor - step))
        security(dev, "clock change beyond the patient-level bound", P.C_TIME, delta=t - now)
        return _err(P.S_AUTH, why)
    return _clock_now(dev, t)


def _c_clock(dev, a):
    t = a.get("t")
    if not _is_int(t) or not 1577836800 <= t < 4102444800:
        return _err(P.S_RANGE, "t must be unix seconds in 2020..2099")
    sup = getattr(dev, "sup", None)
    if sup is not None:
        sup.floor = 0                 # the prosthetist's time is the new reference
    dev.log.append(flashlog.K_CONFIG, json.dumps({"clock": t, "was": hal.unix_time()}).encode())
    return _clock_now(dev, t)


# A random id of this boot (docs/protocol.md C_STREAM): the host starts a new recording segment
# when it changes (the device restarted: its sample counter began again at 0).
_BOOT = int.from_bytes(os.urandom(4), "little")


def _c_stream(dev, a):
    m = {"off": 0, "cal": 1, "raw": 2}.get(a.get("mode")) if isinstance(a.get("mode"), str) else None
    if m is None:
        return _err(P.S_BAD_REQUEST, "mode must be off, cal or raw")
    ses = a.get("session", 0)
    if not _is_int(ses) or not 0 <= ses <= 0xFFFFFFFF:
        return _err(P.S_BAD_REQUEST, "session must be 0..4294967295")
    if dev.stream and dev.batch_n:
        dev._batch_send()
    dev.batch_n = 0
    dev.stream = 0           # the response goes out before the first batch of the new mode:
    # every sample frame after it belongs to this session (the host drops the ones before)
    dev.respond(P.C_STREAM, P.S_OK, {"mode": a["mode"], "rate": dev.rate, "first": dev.count,
                                     "session": ses, "boot": _BOOT})
    dev.stream = m
    return None, None


# dev.logrd: the C_LOG read in progress (a list made once by the Device)
_LR_ON = const(0)
_LR_SEQ = const(1)        # record being sent (0: none)
_LR_OFF = const(2)        # bytes of it sent
_LR_N = const(3)          # records sent
_LR_BYTES = const(4)
_LR_MAX = const(5)
_LR_T = const(6)          # ticks_ms of the last progress
_LR_T0 = const(7)         # ticks_ms the read began
LR_SIZE = const(8)
LOG_STALL_MS = const(10000)   # a host that takes nothing for this long: the read is given up
LOG_READ_MAX_MS = 60000        # a read ends (answered, "more") after this long: no host holds
#                                 the log's rotation longer (docs/security.md)
LOG_STEP_US = 1500            # steps go on within one idle() pass while they took less than this


def _c_log(dev, a):
    # The read runs in bounded steps from the main loop (log_step, one T_LOG chunk or one reader
    # step per pass): sampling and detection go on during a sync of any size; the answer goes
    # out when the read ends.
    since = a.get("since", 0)
    mx = a.get("max", LOG_MAX)
    if not _is_int(since) or since < 0 or not _is_int(mx) or not 1 <= mx <= 1 << 20:
        return _err(P.S_BAD_REQUEST, "since must be a sequence number >= 0, max 1..1048576")
    lr = dev.logrd
    if lr[_LR_ON]:
        return _err(P.S_BUSY, "a log read is in progress")
    dev.log.read_start(since, mx, True)
    lr[_LR_ON] = 1
    lr[_LR_SEQ] = lr[_LR_OFF] = lr[_LR_N] = lr[_LR_BYTES] = 0
    lr[_LR_MAX] = mx
    lr[_LR_T] = lr[_LR_T0] = hal.ticks_ms()
    return None, None


def log_step(dev):
    """One bounded step of the C_LOG read (idle()): send one T_LOG chunk of the record being
    sent, or take one reader step. A host that holds the port without reading: the chunk waits
    (nothing dropped: a chunk cut short is sent again, the host ignores a repeat); after
    LOG_STALL_MS without progress the read is given up. An error ends the read and is
    answered, as in handle(): it never reaches the main loop."""
    try:
        t0 = hal.ticks_us()
        while dev.logrd[_LR_ON] and _log_step(dev) and \
                hal.ticks_diff(hal.ticks_us(), t0) < LOG_STEP_US:
            pass                             # steps until LOG_STEP_US of this pass are used
    except Exception as e:  # noqa: BLE001 - a command must never stop the monitor
        dev.logrd[_LR_ON] = 0
        try:
            dev.log.read_stop()
            dev.respond(P.C_LOG, P.S_ERROR, {"error": "device error: %s" % type(e).__name__})
        except Exception:  # noqa: BLE001
            pass


def _log_step(dev):
    lr = dev.logrd
    log = dev.log
    now = hal.ticks_ms()
    seq = lr[_LR_SEQ]
    if seq:
        if not dev._tx_ok():
            if hal.ticks_diff(now, lr[_LR_T]) > LOG_STALL_MS:
                log.read_stop()
                lr[_LR_ON] = 0
            return False
        if dev.stream and dev.batch_n:
            dev._batch_send()                # the payload buffer is the batch's until then
        ln = log.rlen
        o = lr[_LR_OFF]
        k = dev.enc.max_payload - P.LOG_HDR
        if ln - o < k:
            k = ln - o
        pl = dev.enc.payload
        pl[0] = seq & 0xFF
        pl[1] = (seq >> 8) & 0xFF
        pl[2] = (seq >> 16) & 0xFF
        pl[3] = (seq >> 24) & 0xFF
        pl[4] = ln & 0xFF
        pl[5] = ln >> 8
        pl[6] = o & 0xFF
        pl[7] = o >> 8
        P.blit(pl, P.LOG_HDR, log.rwin, o, k)
        if not dev._tx(P.T_LOG, P.LOG_HDR + k):
            return False                     # cut short (or slow): this chunk again later
        lr[_LR_T] = now
        o += k
        if o < ln:
            lr[_LR_OFF] = o
            return True
        lr[_LR_SEQ] = 0
        lr[_LR_N] += 1
        lr[_LR_BYTES] += ln
        return True
    long = hal.ticks_diff(now, lr[_LR_T0]) >= LOG_READ_MAX_MS
    s = 0 if long else log.read_step()
    if s > 0:
        lr[_LR_SEQ] = s
        lr[_LR_OFF] = 0
        return True
    if s < 0:
        return True
    lr[_LR_ON] = 0
    if long:
        log.read_stop()
    last = log.read_last
    top = log.horizon()                  # records still in RAM (or an event's snippet) wait
    more = (long or lr[_LR_BYTES] >= lr[_LR_MAX]) and last < top
    dev.respond(P.C_LOG, P.S_OK, {"records": lr[_LR_N], "bytes": lr[_LR_BYTES], "last": last,
                                  "seq": log.seq, "more": more, "pending": log.seq - top,
                                  "corrupt": log.corrupt, "lost": log.lost()})
    return False


def _c_ack(dev, a):
    was = dev.ack_alarm()
    dev.log.append(flashlog.K_ALARM, b'{"ack":%d}' % (1 if was else 0))
    return P.S_OK, {"acknowledged": was}


def _c_health(dev, a):
    sup = getattr(dev, "sup", None)
    if sup is None:
        return _err(P.S_UNKNOWN, "no supervisor")
    return P.S_OK, sup.health()


def _c_config(dev, a):
    return P.S_OK, dev.cfg.data_public()


def _seconds(a):
    s = a.get("seconds", 300)
    if not _is_int(s) or not 10 <= s <= P.MAINT_MAX_S:
        return None
    return s


def _release(dev, cmd, s, by):
    # the response first, then the main loop ends; the supervisor sets the watchdog to the
    # window and hands the port to the REPL; the board resets into the monitor when it ends
    dev.log.append(flashlog.K_SECURITY, json.dumps({"maintenance": s, "by": by}).encode())
    dev.respond(cmd, P.S_OK, {"released": True, "seconds": s, "by": by})
    dev.running = False
    dev.released = True
    dev.maint_s = s
    return None, None


def _c_repl(dev, a):
    # unsigned maintenance: only a device without a key (first deploy) or within the window
    # the physical action at power-up opened
    s = _seconds(a)
    if s is None:
        return _err(P.S_RANGE, "seconds must be 10..%d" % P.MAINT_MAX_S)
    st = auth.get().state
    sup = getattr(dev, "sup", None)
    if st == "none" and dev.cfg.state in ("default", "ok"):
        return _release(dev, P.C_REPL, s, "unprovisioned")
    if sup is not None and sup.physical_open():
        return _release(dev, P.C_REPL, s, "physical")
    security(dev, "unauthenticated maintenance request", P.C_REPL)
    return _err(P.S_AUTH, "maintenance needs a command signed with the device key (oimon deploy "
                "with the prosthetist's keystore) or the button held at power-up")


def _c_maint(dev, a):
    s = _seconds(a)
    if s is None:
        return _err(P.S_RANGE, "seconds must be 10..%d" % P.MAINT_MAX_S)
    return _release(dev, P.C_MAINT, s, "signed")


def _c_rekey(dev, a):
    h = a.get("key")
    if not isinstance(h, str) or len(h) != 2 * P.KEY_LEN:
        return _err(P.S_BAD_REQUEST, "key must be %d hex digits" % (2 * P.KEY_LEN))
    try:
        enc = binascii.unhexlify(h)
    except Exception:  # noqa: BLE001
        return _err(P.S_BAD_REQUEST, "key is not hex")
    au = auth.get()
    pad = P.rekey_pad(au.key, au.used_nonce, _ctx["counter"])
    new = bytearray(P.KEY_LEN)
    for i in range(P.KEY_LEN):
        new[i] = enc[i] ^ pad[i]
    new = bytes(new)
    if new == au.key or new == bytes(P.KEY_LEN):
        return _err(P.S_RANGE, "the new key must differ from the old one and not be zero")
    if not au.rekey(new):
        return _err(P.S_ERROR, "the new key could not be stored: the old one stays")
    dev.log.append(flashlog.K_SECURITY, json.dumps({"rekeyed": au.gen}).encode())
    return P.S_OK, {"rekeyed": True, "keys_provisioned": au.gen}


def _c_reprovision(dev, a):
    if a.get("confirm") != "reprovision":
        return _err(P.S_BAD_REQUEST, 'reprovision needs {"confirm": "reprovision"}')
    new = config.Config(config.failsafe(), dev.cfg.state, dev.cfg.path)
    if not config.save(new):
        return _err(P.S_ERROR, STORE_ERROR)
    was = dev.cfg.state
    dev.cfg = new
    dev.log.append(flashlog.K_CONFIG, json.dumps({"reprovisioned": was}).encode())
    _apply(dev)
    return P.S_OK, {"reprovisioned": True, "phase": new["phase"], "was": was}


# --- prosthetist level (authenticated) ---------------------------------------------------
def _c_set(dev, a):
    ch, kind, why = S.validate_set(dev.cfg.data, a)
    if ch is None:
        return _err(P.S_BAD_REQUEST if kind == S.BAD_REQUEST else P.S_RANGE, why)
    e = _store(dev, ch)
    if e:
        return e
    dev.log.append(flashlog.K_CONFIG, json.dumps({"set": ch}).encode())
    _apply(dev)
    return P.S_OK, {"set": sorted(ch)}


def _apply(dev):
    """Hand the new settings to the detector and the main loop."""
    dev.apply_config()


def store_calibration(dev, data):
    """Check calibration file bytes (calib.py's format) and hand them to the device, which
    stores and applies them; returns an error string or None."""
    from oimon_common import calib
    cal = calib.unpack(data)
    if cal is None:
        return "calibration rejected: %s" % calib.last_error
    dev.set_calibration(cal)
    return None


def _c_calib(dev, a):
    h = a.get("file")
    if not isinstance(h, str) or not h or len(h) > 2048 or len(h) % 2:
        return _err(P.S_BAD_REQUEST, "file must be the calibration file's bytes in hex")
    try:
        data = binascii.unhexlify(h)
    except Exception:  # noqa: BLE001
        return _err(P.S_BAD_REQUEST, "file is not hex")
    e = store_calibration(dev, data)
    if e:
        return _err(P.S_RANGE, e)
    dev.log.append(flashlog.K_CALIB, json.dumps({
        "crc": binascii.crc32(data) & 0xFFFFFFFF, "bytes": len(data),
        "version": dev.cal.version, "date": dev.cal.date}).encode())
    return P.S_OK, {"stored": len(data)}


def _c_retighten(dev, a):
    import retighten_dev as R
    d = R.parse_date(a.get("date"))
    if d is None:
        return _err(P.S_BAD_REQUEST, "date must be YYYY-MM-DD")
    t = hal.unix_time()
    if t >= R.CLOCK_VALID and R.days_from_civil(d[0], d[1], d[2]) > t // 86400 + 1:
        return _err(P.S_RANGE, "date %s is in the future" % R.date_str(d))
    ch = {"retighten_last": R.date_str(d)}
    tq = a.get("torque")
    if tq is not None:
        if not _is_num(tq) or not S.TORQUE_NM[0] < tq <= S.TORQUE_NM[1]:
            return _err(P.S_RANGE, "torque is outside 0..50 N*m")
        ch["retighten_torque_nm"] = tq
    iv = a.get("interval_months")
    if iv is not None:
        if not _is_int(iv) or not S.INTERVAL_MONTHS[0] <= iv <= S.INTERVAL_MONTHS[1]:
            return _err(P.S_RANGE, "interval_months is outside %d..%d" % S.INTERVAL_MONTHS)
        ch["retighten_interval_months"] = iv
    e = _store(dev, ch)
    if e:
        return e
    dev.log.append(flashlog.K_RETIGHTEN, json.dumps({"recorded": ch["retighten_last"],
                                                      "torque": tq}).encode())
    dev.reminder.recorded(dev)
    due = R.due_date(dev.cfg)
    return P.S_OK, {"last": ch["retighten_last"], "due": R.date_str(due) if due else None}


def _c_plan(dev, a):
    plan = a
    if len(json.dumps(plan)) > S.PLAN_MAX:
        return _err(P.S_RANGE, "plan longer than %d bytes" % S.PLAN_MAX)
    from oimon_common import exercise
    e = exercise.validate_plan(plan, dev.cfg["body_weight_kg"])
    if e:
        return _err(P.S_RANGE, e)
    e = _store(dev, {"exercise_plan": plan})
    if e:
        return e
    dev.log.append(flashlog.K_CONFIG, json.dumps({"plan": plan.get("preset", "") or True}).encode())
    dev.exercise.set_plan(plan, dev.cfg["body_weight_kg"])
    return P.S_OK, {"stored": True}


def _c_wipe(dev, a):
    if a.get("confirm") != "wipe":
        return _err(P.S_BAD_REQUEST, 'wipe needs {"confirm": "wipe"}')
    upto = dev.log.wipe()
    return P.S_OK, {"wiped": upto, "seq": dev.log.seq}


def _c_tare(dev, a):
    r = dev.tare()
    if "error" in r:
        return _err(P.S_BUSY, r["error"])
    return P.S_OK, r


def _c_exercise(dev, a):
    act = a.get("action")
    if act == "start":
        why = dev.exercise_start()
        if why:
            return _err(P.S_BUSY, why)
        ex = dev.exercise
        return P.S_OK, {"started": True, "target_kg": ex.target_dkg / 10, "minutes": ex.plan["minutes"],
                        "session_today": ex.sessions_today}
    if act == "stop":
        if not dev.exercise.active:
            return _err(P.S_BUSY, "no exercise session is running")
        return P.S_OK, dev.exercise_stop()
    return _err(P.S_BAD_REQUEST, 'action must be "start" or "stop"')


_PATIENT = {P.C_INFO: _c_info, P.C_STATUS: _c_status, P.C_TIME: _c_time, P.C_STREAM: _c_stream,
            P.C_LOG: _c_log, P.C_ACK: _c_ack, P.C_CONFIG: _c_config, P.C_REPL: _c_repl,
            P.C_EXERCISE: _c_exercise, P.C_HEALTH: _c_health}
_AUTH = {P.C_SET: _c_set, P.C_CALIB: _c_calib, P.C_RETIGHTEN: _c_retighten, P.C_PLAN: _c_plan,
         P.C_WIPE: _c_wipe, P.C_TARE: _c_tare, P.C_MAINT: _c_maint, P.C_CLOCK: _c_clock,
         P.C_REKEY: _c_rekey, P.C_REPROVISION: _c_reprovision}
