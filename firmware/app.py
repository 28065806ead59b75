# oimon main loop: sample -> calibrate/filter (dsp) -> detect -> alarm, stream and log.
# One sample per iteration at the source's rate; everything else (link, alarm patterns, log
# flushing) runs between samples and never allocates on the sampling path.
from array import array
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
CALIB_PATH = hal.STORAGE + "/calib.bin"
CLOCK_VALID = 1577836800        # 2020-01-01: a clock before this was never set
OVERLOAD_ALARM_MIN_MS = 2500    # one full high-priority burst (alarm.py)
BUTTON_LONG_MS = 1500


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


class Device:
    FW_VERSION = FW_VERSION

    def __init__(self, src=None):
        self.cfg = config.load()
        self.cal = calib.load(CALIB_PATH)
        self.src = src if src is not None else hal.sensor()   # supervisor: a failed ADC too
        self.rate = self.src.RATE
        self.pipe = dsp.Pipeline(self.cal)
        self.det = detect.Detector(self.cfg.detector_limits(self.rate), self.cfg.body_weight_0p1N())
        self.raw = array("i", (0, 0, 0, 0))
        self.out = array("i", [0] * _OUT_N)
        self.pipe.bind(self.raw, self.out)   # per sample: dsp.kernel, detect.kernel on bound tables
        self.det.bind(self.out)
        self._pk, self._pt = dsp.kernel, self.pipe.tab
        self._dk, self._dt = detect.kernel, self.det.tab
        self.count = 0                       # samples since boot (wraps at 2**32 on the wire)
        self.rx, self.tx = hal.serial()
        self.enc = P.Encoder()
        self.dec = P.Decoder(512)
        self._rxb = bytearray(1)
        self.stream = _STREAM_OFF
        self.batch_n = 0
        self.batch_max = self.cfg["stream_batch"]
        self.batch_first = 0
        self.events = []                     # events not yet sent (also logged)
        self.snip = flashlog.Snippet(self.rate)     # fed per sample: self.snip.push(out)
        self.log = flashlog.Log(hal.STORAGE, self.snip)
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
        self.sup = None                      # supervisor.Supervisor: tick() between samples
        self.feed = _nofeed                  # the watchdog, fed after each sample
        self.running = True

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
        out = self.out
        self._pk(self._pt)                   # = self.pipe.step(self.raw, out)
        self.snip.push(out)                  # the event log's 1 s pre-trigger ring
        ev = self._dk(self._dt)              # = self.det.step(out)
        if ev:
            self.on_event(ev)
        if self.exercise.active:
            z = self.exercise.step(out[0], hal.ticks_ms())
            if z:
                self.alarm.cue(min(z, exercise.ZONE_OVER) - 1)   # CUE_UNDER/IN/OVER = 0/1/2
        if self.stream:
            self._batch_add()
        self.count += 1
        return 1

    def _batch_add(self):
        pl = self.enc.payload
        if self.batch_n == 0:
            self.batch_first = self.count
        if self.stream == _STREAM_CAL:
            P.put_cal(pl, P.SAMPLE_HDR + P.SAMPLE_BYTES * self.batch_n, self.out[0], self.out[1], self.out[2])
        else:
            _put_raw(pl, P.SAMPLE_HDR + P.RAW_BYTES * self.batch_n, self.raw)
        self.batch_n += 1
        if self.batch_n >= self.batch_max:
            self._batch_send()

    def _batch_send(self):
        n = self.batch_n
        per = P.SAMPLE_BYTES if self.stream == _STREAM_CAL else P.RAW_BYTES
        P.pack_samples(self.enc.payload, self.batch_first, self.rate, n)
        t = P.T_SAMPLES if self.stream == _STREAM_CAL else P.T_RAW
        self.enc.write(self.tx, t, P.SAMPLE_HDR + per * n)     # no allocation
        self.batch_n = 0

    # --- events and link ---------------------------------------------------------------------
    def on_event(self, code):
        t = hal.unix_time()
        for e in events.from_array(self.det.samples - 1, code, self.det.ev):
            e["t"] = t
            e["kind"] = e["event"]
            e["sample"] = e["n"]             # the host's name for the detector's sample index
            self.events.append(e)
            self.log.event(json.dumps(e).encode())   # with the 1 s + 2 s snippet when it is ready
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
        if code & detect.EV_FALL:
            self.alarm.raise_(alarm.HIGH, alarm.FALL)        # until acknowledged
        if code & detect.EV_FAULT:
            self.alarm.raise_(alarm.LOW, alarm.SENSOR_FAULT)
        if code & detect.EV_FAULT_CLEAR:
            self.alarm.clear(alarm.SENSOR_FAULT)
        self.alarm.tick(now)
        if code & (detect.EV_OVERLOAD_START | detect.EV_FALL | detect.EV_FAULT):
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
        body = json.dumps(obj).encode()
        if len(body) > self.enc.max_payload:
            return
        self.tx.write(self.enc.frame(ftype, body))

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

    def idle(self):
        self.poll_link()
        if self.events:
            self.flush_events()
        self._tare_finish()
        self.log.service()
        self.reminder.check(self)
        self._service_outputs(hal.ticks_ms())

    def run(self):
        micropython.kbd_intr(-1)             # 0x03 in a frame must not raise KeyboardInterrupt
        feed = self.feed                     # the watchdog: fed only here, after a sample
        sup = self.sup
        try:
            k = 0
            while self.running:
                if self.sample():
                    feed()
                    k += 1
                    if k < 8:
                        continue              # catch up first when samples queued up
                k = 0
                self.idle()
                if sup is not None:
                    sup.tick()
        finally:
            micropython.kbd_intr(3)


def main():
    Device().run()
