# oimon main loop: sample -> calibrate/filter (dsp) -> detect -> alarm, stream and log.
# One sample per iteration at the source's rate; everything else (link, alarm patterns, log
# flushing) runs between samples and never allocates on the sampling path.
from array import array
import gc
import json
import micropython
from micropython import const
import hal
from oimon_common import protocol as P
import config
from oimon_common import calib
import dsp
import detect
from oimon_common import events
import alarm
import board
from oimon_common import exercise
import cmds
import flashlog
import retighten_dev

FW_VERSION = "0.1.0"
_OUT_N = const(8)
_STREAM_OFF = const(0)
_STREAM_CAL = const(1)
_STREAM_RAW = const(2)
_M30 = const(0x3FFFFFFF)        # counters wrap here: small ints on the 32-bit port (no bigint)
_CATCH_UP = const(16)           # samples taken from the ring before the next idle() pass
_LOG_BACKLOG = const(16)             # a C_LOG step only while fewer samples wait
_EX_MASK = const(3)                  # Exercise.step on every 4th sample
_TX_SLOW_MS = const(10)         # a stream write that waited this long: the host is not
                                # reading (our image gives up after 5 ms per 64-byte packet;
                                # MicroPython's stdout write also says how much it took)
_TX_HOLD_MS = const(1000)       # then the stream drops (and counts) frames this long
CALIB_PATH = hal.STORAGE + "/calib.bin"
CLOCK_VALID = 1577836800        # 2020-01-01: a clock before this was never set
OVERLOAD_ALARM_MIN_MS = 2500    # one full high-priority burst (alarm.py)
# Planned garbage collection (docs/timing-model.md "Collections"): the loop allocates nothing in
# steady state, commands and events do (~45 KB a day); a collection halts the interpreter ~4 ms
# on the board's heap (2-3 samples lost). So it is done on purpose while the limb carries nothing
# (GC_QUIET_S seconds unloaded, e.g. sitting, doffed, on the charger) once half the heap that
# was free after the last collection is used, and at once only below GC_FLOOR.
GC_QUIET_S = 60
GC_FLOOR = 16384
GC_FORCE_GAP_MS = 600000
GC_FLOOR_LOOK_MS = 60000
BUTTON_LONG_MS = 1500


def _wrap_add(v, k):
    # (v + k) mod 2**30 for 0 <= v, k < 2**30 without a big-int temporary on the 32-bit port
    room = _M30 - v
    return v + k if k <= room else k - room - 1


def _nofeed():
    pass


@micropython.viper
def _put_raw(buf, off: int, raw):
    # four int24 little-endian
    p = ptr8(buf)
    r = ptr32(raw)
    for i in range(4):
        v = r[i]
        p[off] = v
        p[off + 1] = v >> 8
        p[off + 2] = v >> 16
        off += 3


@micropython.viper
def _put_cal(buf, off: int, out):
    # = P.put_cal(buf, off, out[0], out[1], out[2]): three int16 LE, axial >> AXIAL_WIRE_SHIFT
    # (0.1 N -> 0.2 N), each clamped to int16 (the Python version costs ~1/3 ms per sample on
    # the ESP32-S3 in the timing model: docs/timing-model.md)
    p = ptr8(buf)
    o = ptr32(out)
    i = 0
    while i < 3:
        v = o[i]
        if i == 0:
            v = v >> 1
        if v > 32767:
            v = 32767
        elif v < -32768:
            v = -32768
        p[off] = v
        p[off + 1] = v >> 8
        off += 2
        i += 1


class Device:
    FW_VERSION = FW_VERSION

    def __init__(self, src=None, make_src=None):
        self.cfg = config.load()
        self.cal = calib.load(CALIB_PATH)
        # the log first: its recovery reads every block header of the partition, and the ADC's
        # ring (512 samples) would overflow if it already ran (docs/device-log.md); the
        # supervisor hands a make_src that turns a failed ADC into a FailedSensor
        self.log = flashlog.Log(hal.STORAGE)
        self.log.reader_window()             # C_LOG's window, made now: a sync allocates nothing
        if src is None:
            src = make_src() if make_src is not None else hal.sensor()
        self.src = src
        self.rate = self.src.RATE
        self.pipe = dsp.Pipeline(self.cal)
        self.det = detect.Detector(self.cfg.detector_limits(self.rate), self.cfg.body_weight_0p1N())
        self.raw = array("i", (0, 0, 0, 0))
        self.out = array("i", [0] * _OUT_N)
        self.pipe.bind(self.raw, self.out)   # per sample: dsp.kernel, detect.kernel on bound tables
        self.det.bind(self.out)
        self._pk, self._pt = dsp.kernel, self.pipe.tab
        self._dk, self._dt = detect.kernel, self.det.tab
        self.imu = hal.imu()                 # LSM6DSO32 (None: load-only fall detection)
        if self.imu is not None:
            self.det.attach_imu(self.imu.RATE)
        self._imu_row = array("i", [0] * 8)
        # ACQUIRED samples since boot, lost ones included (a gap shows as a jump): count wraps at
        # 2**30 and count_hi counts the wraps (the wire's u32 = (count_hi & 3) << 30 | count)
        self.count = 0
        self.count_hi = 0
        self.lost = 0                        # samples lost in acquisition (wraps at 2**30)
        self.gaps = 0                        # gaps (runs of lost samples)
        self.tx_dropped = 0                  # stream frames dropped (host not reading)
        self._drop_first = -1                # counter / wraps of the first sample not streamed
        self._drop_hi = 0
        self._tx_hold = 0                    # ticks_ms until which the stream stays dropped
        self._tx_held = False
        self._nonblock = hal.STREAM_NONBLOCK
        self._has_gap = hasattr(self.src, "gap")
        self._glog_first = self._glog_hi = self._glog_n = self._glog_k = 0   # K_GAP not yet logged
        self._glog_t = hal.ticks_ms()
        self.rx, self.tx = hal.serial()
        self.enc = P.Encoder()
        self._gapsave = bytearray(self.enc.max_payload)   # a batch's samples while a gap record goes out
        self.dec = P.Decoder(512)
        self._rxb = bytearray(1)
        self.stream = _STREAM_OFF
        self.batch_n = 0
        self.batch_max = self.cfg["stream_batch"]
        self.batch_first = 0
        self.events = []                     # events not yet sent (also logged)
        self.logrd = [0] * cmds.LR_SIZE      # the C_LOG read in progress (cmds.log_step)
        self._avail = getattr(self.src, "available", None)   # samples waiting in the ring
        self.snip = flashlog.Snippet(self.rate)     # fed per sample: self.snip.push(out)
        self.log.snip = self.snip
        self.retighten_due = False           # the low-priority reminder (alarm wiring reads it)
        self.reminder = retighten_dev.Reminder()
        self.alarm = alarm.Alarm(hal.PWM(hal.Pin(board.BUZZER), freq=1000, duty_u16=0),
                                 hal.Pin(board.LED, hal.Pin.OUT), hal.Pin(board.VIB, hal.Pin.OUT))
        self._ovl_clear_at = -1              # ticks_ms when the overload alarm may stop
        self._retighten_alarm = False
        self.button = hal.Pin(board.BUTTON, hal.Pin.IN, hal.Pin.PULL_UP)
        self._btn_down = -1                  # ticks_ms the button went down, -1 = up
        self._btn_next = 0
        self.exercise = exercise.Exercise(self.cfg.get("exercise_plan"), self.cfg["body_weight_kg"])
        self._day = -1                       # UTC day the activity counters belong to
        self._day_partial = True             # counting began after that day's midnight
        self._day_next = 0                   # ticks_ms of the next look at the clock
        self.released = False                # a maintenance window (C_MAINT) ended the loop
        self.maint_s = 0                     # its length (supervisor.py)
        self.break_ins = 0                   # mpremote's break-in bytes seen (they do nothing)
        self.gc_planned = 0                  # collections done on purpose (quiet or floor)
        self.gc_forced = 0                   # of them, at the floor (the limb maybe loaded)
        self._gc_quiet = 0                   # seconds the limb has carried nothing
        self._gc_t = hal.ticks_ms()
        self._gc_mark = 0                    # collect when gc.mem_free() falls below this
        self._gc_forced_t = hal.ticks_add(hal.ticks_ms(), -GC_FORCE_GAP_MS)
        self._gc_floor_t = hal.ticks_ms()
        self.sup = None                      # supervisor.Supervisor: tick() between samples
        self.feed = _nofeed                  # the watchdog, fed after each sample
        self.running = True
        self._daily(hal.ticks_ms())          # the day the counters belong to, before any command
        gc.collect()
        self._gc_mark = gc.mem_free() // 2
        if hasattr(self.src, "restart"):
            self.src.restart()               # monitoring starts now, not at the ADC's power-up

    def set_calibration(self, cal):
        """C_CALIB: store a checked calibration and use it from the next sample on."""
        calib.save(CALIB_PATH, cal)
        self.cal = cal
        self.pipe.set_calibration(cal)

    def tare(self):
        """C_TARE: average the next second of raw samples (prosthesis unloaded) as the new
        offsets; idle() stores them in the calibration file when the window is full."""
        if self.cal is None:
            return {"error": "uncalibrated: calibrate first (tare only moves the offsets)"}
        self.pipe.tare_start(dsp.TARE_N_DEFAULT)
        return {"tare": "started", "samples": dsp.TARE_N_DEFAULT}

    def _tare_finish(self):
        if self.pipe.tare_state != dsp.TARE_RUNNING or not self.pipe.tare_done():
            return
        ok = self.pipe.tare_state == dsp.TARE_OK
        if ok:
            calib.save(CALIB_PATH, self.cal)         # the pipeline's calibration, new offsets
        self.log.append(flashlog.K_CALIB, json.dumps(
            {"tare": "ok" if ok else "failed", "offsets": self.pipe.tare_offsets}).encode())

    def apply_config(self):
        """Hand changed settings (limits, phase, body weight, batch size) to the running loop."""
        self.det.set_body_weight(self.cfg.body_weight_0p1N())
        self.det.set_limits(self.cfg.detector_limits(self.rate))
        self.batch_max = self.cfg["stream_batch"]

    # --- sampling path ---------------------------------------------------------------------
    def sample(self):
        if not self.src.read(self.raw):
            return 0
        if self._has_gap and self.src.gap:
            self._on_gap(self.src.gap)
        out = self.out
        self._pk(self._pt)                   # = self.pipe.step(self.raw, out)
        self.snip.push(out)                  # the event log's 1 s pre-trigger ring
        ev = self._dk(self._dt)              # = self.det.step(out)
        if ev:
            self.on_event(ev)
        if self.exercise.active and not self.count & _EX_MASK:
            # every 4th sample (4 ms): a zone must hold 40 ms (exercise.DWELL_MS) and the
            # session's times come from ticks_ms, so this is the same session at a quarter of
            # the CPU (a live view streams meanwhile: docs/benchmarks.md "Timing model")
            z = self.exercise.step(out[0], hal.ticks_ms())
            if z:
                self.alarm.cue(min(z, exercise.ZONE_OVER) - 1)   # CUE_UNDER/IN/OVER = 0/1/2
        if self.stream:
            self._batch_add()
        c = self.count
        if c == _M30:                        # compare first: 2**30 itself is a big int
            self.count = 0
            self.count_hi = _wrap_add(self.count_hi, 1)
        else:
            self.count = c + 1
        return 1

    def _advance(self, n):
        # count += n for samples that were lost (their counter values are skipped)
        room = _M30 - self.count             # values left before the wrap (no big int)
        while n > room:
            n -= room + 1
            room = _M30
            self.count = 0
            self.count_hi = _wrap_add(self.count_hi, 1)
        self.count += n

    def _on_gap(self, n):
        # n samples were lost before this one: mark it (FL_GAP, no load rate across the gap),
        # put a gap record in the stream and the log, skip their counter values.
        self.pipe.gap()
        self.lost = _wrap_add(self.lost, n)
        self.gaps = _wrap_add(self.gaps, 1)
        first, hi = self.count, self.count_hi
        if self.stream and self.batch_n:
            self._batch_send()               # the batch before the gap ends here
        self._advance(n)
        if self.stream:
            self._send_gap(first, hi, n, P.GAP_ACQ)
        # the log gets one K_GAP record per second at most, from idle(): nothing allocates here
        if self._glog_n == 0:
            self._glog_first, self._glog_hi = first, hi
        self._glog_n = _wrap_add(self._glog_n, n)
        self._glog_k += 1

    def _log_gaps(self):
        # idle(): the gaps since the last record: first lost counter, samples lost, gaps
        if self._glog_n and hal.ticks_diff(hal.ticks_ms(), self._glog_t) >= 1000:
            self.log.append(P.K_GAP, b'{"first":%d,"hi":%d,"lost":%d,"gaps":%d}' % (
                self._glog_first, self._glog_hi, self._glog_n, self._glog_k))
            self._glog_n = self._glog_k = 0
            self._glog_t = hal.ticks_ms()

    def _send_gap(self, first, hi, n, cause):
        if not self._tx_ok():
            if cause == P.GAP_ACQ and self._drop_first < 0:
                self._drop_first, self._drop_hi = first, hi   # the stream gap will cover it
            return
        pl = self.enc.payload
        P.pack_gap(pl, first, n, cause)
        pl[3] = (pl[3] & 0x3F) | ((hi & 3) << 6)
        self._tx(P.T_GAP, P.GAP_BYTES)

    # --- stream: never blocks sampling; drops and counts whole frames ---------------------------
    def _tx_ok(self):
        # a frame may go out now: the host is reading (or no host holds the port)
        if not self._nonblock:
            return True
        if self._tx_held:
            if hal.ticks_diff(hal.ticks_ms(), self._tx_hold) < 0:
                return False
            self._tx_held = False
        return hal.tx_ready() == 1

    def _tx(self, ftype, n):
        # Write one frame; True if it went out whole as far as we can tell. A write that
        # waited (a host holds the port without reading; USB CDC waits for FIFO room, then
        # gives up the rest) holds the stream back for _TX_HOLD_MS: the next frames are
        # dropped and counted, not waited for.
        k = self.enc.finish_n(ftype, n)      # framing first: only the write itself is timed
        t0 = hal.ticks_ms()
        r = self.tx.write(self.enc.out, k)   # no allocation; bytes taken (None: not told)
        t1 = hal.ticks_ms()
        slow = self._nonblock and hal.ticks_diff(t1, t0) >= _TX_SLOW_MS
        if slow or (r is not None and r < k):
            self._tx_held = True
            self._tx_hold = hal.ticks_add(t1, _TX_HOLD_MS)
        if r is not None:
            return r >= k                    # cut short: the host missed this frame
        return not slow

    def _drop(self, first, n):
        # a stream frame of n samples from counter `first` was not sent
        self.tx_dropped = _wrap_add(self.tx_dropped, 1)
        if self._drop_first < 0:
            self._drop_first = first
            self._drop_hi = self.count_hi if first <= self.count else self.count_hi - 1

    def _flush_drops(self):
        # The link takes frames again: tell the host which counters it did not get, from the
        # first not sent up to the batch about to go (acquisition gaps meanwhile included).
        if self._drop_first >= 0:
            f, h = self._drop_first, self._drop_hi
            n = self.batch_first - f
            if n < 0:
                n += _M30 + 1
            self._drop_first = -1
            self._send_gap(f, h, n, P.GAP_STREAM)

    def _batch_add(self):
        pl = self.enc.payload
        if self.batch_n == 0:
            self.batch_first = self.count
        if self.stream == _STREAM_CAL:
            _put_cal(pl, P.SAMPLE_HDR + P.SAMPLE_BYTES * self.batch_n, self.out)
        else:
            _put_raw(pl, P.SAMPLE_HDR + P.RAW_BYTES * self.batch_n, self.raw)
        self.batch_n += 1
        if self.batch_n >= self.batch_max:
            self._batch_send()

    def _batch_send(self):
        n = self.batch_n
        self.batch_n = 0
        if not self._tx_ok():
            self._drop(self.batch_first, n)
            return
        if self._drop_first >= 0:
            # the gap record goes first; it uses the payload buffer: keep the batch's samples
            per = P.SAMPLE_BYTES if self.stream == _STREAM_CAL else P.RAW_BYTES
            P.blit(self._gapsave, 0, self.enc.payload, P.SAMPLE_HDR, per * n)  # no slices
            self._flush_drops()
            P.blit(self.enc.payload, P.SAMPLE_HDR, self._gapsave, 0, per * n)
            if not self._tx_ok():
                self._drop(self.batch_first, n)
                return
        per = P.SAMPLE_BYTES if self.stream == _STREAM_CAL else P.RAW_BYTES
        pl = self.enc.payload
        P.pack_samples(pl, self.batch_first, self.rate, n)
        hi = self.count_hi if self.batch_first <= self.count else self.count_hi - 1
        pl[3] = (pl[3] & 0x3F) | ((hi & 3) << 6)
        t = P.T_SAMPLES if self.stream == _STREAM_CAL else P.T_RAW
        if not self._tx(t, P.SAMPLE_HDR + per * n):
            self._drop(self.batch_first, n)  # maybe cut short: the host hears of it as a gap

    # --- events and link ---------------------------------------------------------------------
    def on_event(self, code):
        t = hal.unix_time()
        for e in events.from_array(self.det.samples - 1, code, self.det.ev):
            e["t"] = t
            e["kind"] = e["event"]
            e["sample"] = e["n"]             # the host's name for the detector's sample index
            self.events.append(e)
            # the head now, its 1 s + 2 s snippet 2 s later (falls, worst overloads: "hi" ring)
            pr = flashlog.priority(e, self.det.cfg[detect.CFG_COMP])
            self.log.event(json.dumps(e).encode(), pr)
        self._alarm_for(code)

    # --- alarms, button, exercise sessions ------------------------------------------------------
    def _alarm_for(self, code):
        # high priority sounds at once (tick now: the output starts within this sample)
        now = hal.ticks_ms()
        if code & detect.EV_OVERLOAD_START:
            self.alarm.raise_(alarm.HIGH, alarm.OVERLOAD)
            self._ovl_clear_at = -1
        if code & detect.EV_OVERLOAD_END:
            # a short overload still gets one full burst, so the patient notices it
            self._ovl_clear_at = hal.ticks_add(now, OVERLOAD_ALARM_MIN_MS)
        if code & (detect.EV_FALL | detect.EV_FALL_IMU):
            self.alarm.raise_(alarm.HIGH, alarm.FALL)        # until acknowledged
        if code & (detect.EV_FAULT | detect.EV_IMU_FAULT):
            self.alarm.raise_(alarm.LOW, alarm.SENSOR_FAULT)
        if code & (detect.EV_FAULT_CLEAR | detect.EV_IMU_CLEAR) and not self.det.alarm_level():
            self.alarm.clear(alarm.SENSOR_FAULT)
        self.alarm.tick(now)
        if code & (detect.EV_OVERLOAD_START | detect.EV_FALL | detect.EV_FAULT | detect.EV_FALL_IMU
                   | detect.EV_IMU_FAULT):
            self.log.append(flashlog.K_ALARM, b'{"raised":%d}' % code)

    def ack_alarm(self):
        """Button or host (C_ACK): silence the sounding alarm; the fall alarm ends."""
        was = self.alarm.active() >= 0
        self.alarm.ack()
        self.det.ack()
        self.alarm.clear(alarm.FALL)
        return was

    def exercise_start(self):
        t = hal.unix_time()
        return self.exercise.start(hal.ticks_ms(), self.exercise.day_of(t), t)

    def exercise_stop(self):
        s = self.exercise.stop(hal.ticks_ms())
        if s:
            s["kind"] = "exercise"
            self.log.append(flashlog.K_SUMMARY, json.dumps(s).encode())
            if self.stream:
                self.send(P.T_SUMMARY, s)
        return s

    def _daily(self, now):
        # Once a minute: at the first UTC midnight after the counters began, log the day's
        # activity (detect.Detector.act: steps, time loaded, peaks, events, %BW histogram) as a
        # K_SUMMARY record, and start the new day's counters. A clock never set: nothing.
        if hal.ticks_diff(now, self._day_next) < 0:
            return
        self._day_next = hal.ticks_add(now, 60000)
        t = hal.unix_time()
        if t < CLOCK_VALID:
            return
        day = t // 86400
        if self._day < 0:
            self._day = day
        elif day != self._day:
            s = self.daily_summary()
            self.log.append(flashlog.K_SUMMARY, json.dumps(s).encode())
            if self.stream:
                self.send(P.T_SUMMARY, s)
            self.det.reset_activity()
            self._day_partial = day != self._day + 1      # a clock jump: not from midnight
            self._day = day

    def clock_set(self):
        """The clock was set (C_TIME): look at the retightening due date and the day now."""
        self.reminder.check(self, True)
        self._day_next = hal.ticks_ms()
        self._daily(self._day_next)

    def daily_summary(self):
        """The current day's activity in device units (the host converts: docs/protocol.md)."""
        a = self.det.act
        s = {"kind": "daily", "day": self._day, "partial": self._day_partial,
             "bw": self.cfg.body_weight_0p1N(), "rate": self.rate, "hist": list(self.det.hist)}
        for i in range(len(events.ACT_FIELDS)):
            s[events.ACT_FIELDS[i]] = a[i]
        return s

    def _service_outputs(self, now):
        if self._ovl_clear_at >= 0 and hal.ticks_diff(now, self._ovl_clear_at) >= 0:
            self.alarm.clear(alarm.OVERLOAD)
            self._ovl_clear_at = -1
        if self.retighten_due != self._retighten_alarm:
            self._retighten_alarm = self.retighten_due
            if self.retighten_due:
                self.alarm.raise_(alarm.LOW, alarm.RETIGHTEN)
                self.log.append(flashlog.K_ALARM, b'{"raised":"retighten"}')
            else:
                self.alarm.clear(alarm.RETIGHTEN)
        self._daily(now)
        if self.exercise.active and self.exercise.due(now):
            self.exercise_stop()
        if hal.ticks_diff(now, self._btn_next) >= 0:      # the button, polled every 10 ms
            self._btn_next = hal.ticks_add(now, 10)
            down = self.button.value() == 0
            if down and self._btn_down < 0:
                self._btn_down = now
            elif not down and self._btn_down >= 0:
                held = hal.ticks_diff(now, self._btn_down)
                self._btn_down = -1
                if held >= BUTTON_LONG_MS:                # long press: exercise session on/off
                    if self.exercise.active:
                        self.exercise_stop()
                    else:
                        self.exercise_start()
                elif held >= 30:                          # short press: acknowledge
                    self.ack_alarm()
        self.alarm.tick(now)

    def send(self, ftype, obj):
        if self.stream and self.batch_n:
            self._batch_send()               # keep samples in order with what follows
        if not self._tx_ok():
            self.tx_dropped = _wrap_add(self.tx_dropped, 1)    # it is in the log all the same
            return
        body = json.dumps(obj).encode()
        if len(body) > self.enc.max_payload:
            return
        n = len(body)
        self.enc.payload[:n] = body
        self._tx(ftype, n)

    def respond(self, cmd, status, data):
        if self.stream and self.batch_n:
            self._batch_send()
        body = json.dumps(data).encode()
        if len(body) > self.enc.max_payload - 2:
            status = P.S_ERROR
            body = b'{"error":"response too long"}'
        pl = self.enc.payload
        pl[0] = cmd
        pl[1] = status
        pl[2:2 + len(body)] = body
        self.enc.write(self.tx, P.T_RESP, 2 + len(body))

    def poll_link(self):
        n = 0
        while n < 64:
            a = hal.rx_any()
            if a < 0:
                self.running = False          # the host side of the link is gone for good
                return
            if not a:
                break
            if self.rx.readinto(self._rxb) != 1:
                break
            n += 1
            fr = self.dec.byte(self._rxb[0])
            if self.dec.break_in:                 # mpremote's "\r\x03": counted, ignored
                self.dec.break_in = False
                self.break_ins += 1
            if fr is not None:
                ftype, seq, payload = fr
                if ftype == P.T_CMD and len(payload) >= 1:
                    cmds.handle(self, payload[0], payload[1:])
            if not self.running:
                self.log.sync()                   # nothing queued is lost on the way out
                return

    def flush_events(self):
        while self.events:
            e = self.events.pop(0)
            if self.stream:
                self.send(P.T_EVENT, e)

    def imu_poll(self):
        """The IMU's FIFO batch through the inertial fall path (docs/algorithm.md 5.7): every
        sample waiting, stamped with the latest load sample; no data for 100 ms is a fault."""
        imu = self.imu
        if imu is None:
            return
        k = imu.read(self.det.st)
        if k == 0:
            if imu.stale(hal.ticks_ms()):
                e = self.det.imu.stale()
                if e:
                    self.on_event(e)
            return
        row = self._imu_row
        for i in range(k):
            imu.row(i, row)
            e = self.det.imu_step(row)
            if e:
                self.on_event(e)

    def _gc_plan(self, now):
        # Once a second: the limb's quiet streak. gc.mem_free() walks the heap's allocation table
        # (~0.7 ms on the board, in C, soft interrupts waiting), so the heap is looked at only
        # when a planned collection could follow (quiet for GC_QUIET_S, then every 10 s) and once
        # a minute for the floor.
        if hal.ticks_diff(now, self._gc_t) < 1000:
            return
        self._gc_t = now
        q = self._gc_quiet + 1 if self.log.is_quiet() else 0
        self._gc_quiet = q
        floor_look = hal.ticks_diff(now, self._gc_floor_t) >= GC_FLOOR_LOOK_MS
        if not floor_look and (q < GC_QUIET_S or (q - GC_QUIET_S) % 10):
            return
        if floor_look:
            self._gc_floor_t = now
        f = gc.mem_free()
        # at the floor at once, but not again within GC_FORCE_GAP_MS (live data that fills the
        # heap would otherwise cost samples every minute; the record below tells the clinic)
        forced = f < GC_FLOOR and hal.ticks_diff(now, self._gc_forced_t) >= GC_FORCE_GAP_MS
        if forced or (f < self._gc_mark and q >= GC_QUIET_S):
            gc.collect()                     # the samples it costs are counted and marked as a
            self.gc_planned += 1             # gap by the driver and _on_gap, as any other
            if forced:
                self.gc_forced += 1
                self._gc_forced_t = now
            f = gc.mem_free()                # (~0.7 ms on the board: once)
            self._gc_mark = f // 2
            self.log.append(P.K_TECH, b'{"gc":%d,"forced":%d,"free":%d}' % (
                self.gc_planned, 1 if forced else 0, f))

    def idle(self):
        self.imu_poll()
        self.poll_link()
        if self.events:
            self.flush_events()
        self._tare_finish()
        if self._glog_n:
            self._log_gaps()
        if self.logrd[0] and (self._avail is None or self._avail() < _LOG_BACKLOG):
            cmds.log_step(self)              # one T_LOG chunk or one reader step per pass, only
            #                                  while samples do not wait (sampling comes first)
        self.log.service()
        self.reminder.check(self)
        now = hal.ticks_ms()
        self._service_outputs(now)
        self._gc_plan(now)

    def run(self, stop=None):
        """The main loop. stop: None on the device; the simulator's bounded runs pass a
        function called after each idle() pass that returns True to end the loop."""
        micropython.kbd_intr(-1)             # 0x03 in a frame must not raise KeyboardInterrupt
        feed = self.feed                     # the watchdog: fed only here, after a sample
        sup = self.sup
        try:
            k = 0
            while self.running:
                if self.sample():
                    feed()
                    k += 1
                    if k < _CATCH_UP:
                        continue              # catch up first when samples queued up
                k = 0
                self.idle()
                if stop is not None and stop():
                    break
                if sup is not None:
                    sup.tick()
        finally:
            micropython.kbd_intr(3)


def main():
    Device().run()
