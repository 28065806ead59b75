# The supervisor (issue 12, docs/security.md): the monitor never stops watching.
#   - boot: reset cause, explicit CPU clock, watchdog (machine.WDT, fed ONLY from the sampling
#     loop: app.Device.run feeds it after each sample), RTC chip (RV-3028) read into the clock,
#     the button held at power-up (the physical action), self-test (ADC identity/CRC, excitation
#     through the spare channel AIN3, buzzer/LED/vibration drive, config and calibration
#     integrity, clock source, battery); all logged (K_BOOT) and shown by `oimon info`;
#   - while running (tick(), between samples): excitation on AIN3, battery and charger, clock
#     floor, configuration/calibration state: each problem is a technical alarm (alarm.TECHNICAL),
#     logged when raised and cleared (K_TECH);
#   - a top-level handler: any exception is logged (K_TECH "crash"), the technical alarm sounds
#     and the board resets (the monitor starts again);
#   - maintenance (C_MAINT signed, or after the physical action): the watchdog is set to the
#     window and the port goes to the REPL; nothing feeds the watchdog there, so the board resets
#     into the monitor when the window ends.
# Never on the sampling path: tick() runs at most every TICK_MS, allocation there is fine.
import sys
import gc
import json
import micropython
import hal
import board
import alarm
from oimon_common import protocol as P
import auth
import config
import slotstore
import rv3028
import battery

WDT_MS = board.WDT_MS
PHYSICAL_HOLD_MS = 3000          # the button held this long at power-up = physical action
PHYSICAL_WINDOW_S = 600          # after it, unsigned maintenance is accepted this long
TICK_MS = 50
EXC_BAD_N = 3                    # consecutive bad AIN3 checks before the alarm (150 ms)
EXC_GOOD_N = 10                  # consecutive good ones before it clears
CLOCK_SAVE_S = 600               # the clock floor is stored at most this often
CLOCK_VALID = 1577836800
CRASH_PATH = hal.STORAGE + "/.crash"
RESTART_ALARM_MS = 300000        # "restarted after an exception" stays raised this long
ECHO = True                      # a crash's traceback also to stderr (the virtual device's log)
EXC_LO = board.EXC_AIN3_COUNTS - board.EXC_AIN3_COUNTS * board.EXC_AIN3_TOL_PCT // 100
EXC_HI = board.EXC_AIN3_COUNTS + board.EXC_AIN3_COUNTS * board.EXC_AIN3_TOL_PCT // 100


class FailedSensor:
    """Stands in for an ADC that did not start: never a sample. The monitor keeps serving the
    link and sounds the technical alarm; the supervisor feeds the watchdog for it."""
    RATE = 1000
    overruns = 0
    samples = 0

    def __init__(self, why):
        self.why = why

    def read(self, buf):
        return 0


def _nofeed():
    pass


class Supervisor:
    def __init__(self):
        self.reset_cause = hal.reset_cause()
        self.cpu_hz = hal.set_cpu_freq(board.CPU_HZ)
        self.wdt = hal.WDT(timeout=WDT_MS)
        self.t_boot = hal.ticks_ms()
        self.tech = {}               # technical conditions raised: reason -> detail
        self.tech_log = []           # (raised/cleared, reason) before the log existed
        self.physical = False
        self.selftest = {}
        self.dev = None
        self.clock = {"source": "none", "valid": False}
        self.rtc = None
        self.bat = battery.Battery(hal.battery_read)
        self.floor_store = slotstore.SlotStore(hal.STORAGE + "/clock")
        self.floor = 0
        self._next = self.t_boot
        self._next_slow = self.t_boot
        self._exc_bad = 0
        self._exc_good = 0
        self._exc_n = 0
        self._seen = 0
        self.exc_counts = 0
        self.restarted = None
        self.booted = False
        self._bi = 0

    # --- technical alarms ----------------------------------------------------------------------
    def tech_set(self, reason, on, detail=None):
        if bool(on) == (reason in self.tech):
            return
        if on:
            self.tech[reason] = detail
            rec = {"raised": reason}
            if detail is not None:
                rec["detail"] = detail
        else:
            self.tech.pop(reason, None)
            rec = {"cleared": reason}
        d = self.dev
        if d is not None:
            if on:
                d.alarm.raise_(alarm.LOW, alarm.TECHNICAL)
            elif not self.tech:
                d.alarm.clear(alarm.TECHNICAL)
            d.log.append(P.K_TECH, json.dumps(rec).encode())
        else:
            self.tech_log.append(rec)

    # --- boot -----------------------------------------------------------------------------------
    def _physical(self):
        if not hal.button_down():
            return False
        t0 = hal.ticks_ms()
        while hal.ticks_diff(hal.ticks_ms(), t0) < PHYSICAL_HOLD_MS:
            if not hal.button_down():
                return False
            hal.sleep_ms(20)
        return True

    def _clock(self):
        raw = self.floor_store.load()
        if raw is not None and len(raw) == 4:
            self.floor = raw[0] | (raw[1] << 8) | (raw[2] << 16) | (raw[3] << 24)
        try:
            self.rtc = rv3028.RV3028(hal.i2c())
        except Exception:  # noqa: BLE001 - no bus: no chip
            self.rtc = None
        t, ok = self.rtc.read() if self.rtc is not None else (0, False)
        if ok:
            hal.set_unix_time(t)
            self.clock = {"source": "rtc", "valid": True}
            if t + P.TIME_STEP_S < self.floor:
                self.clock["behind_floor_s"] = self.floor - t
        elif self.rtc is not None and self.rtc.present():
            self.clock = {"source": "rtc", "valid": False, "why": "RTC lost its time (PORF)"}
        else:
            self.clock = {"source": "none", "valid": hal.unix_time() >= CLOCK_VALID,
                          "why": "no RTC chip answers"}

    def clock_valid(self):
        return self.clock.get("valid", False) or self.clock.get("set", False)

    def clock_changed(self, t):
        """The clock was set over the link: the RTC chip and the floor follow."""
        self.clock["set"] = True
        if self.rtc is not None:
            self.clock["rtc_written"] = self.rtc.write(t)
        if t > self.floor:
            self._save_floor(t)
        self.tech_set("clock not set", False)

    def _save_floor(self, t):
        t = int(t)
        if self.floor_store.save(bytes((t & 0xFF, (t >> 8) & 0xFF, (t >> 16) & 0xFF, t >> 24))):
            self.floor = t

    def boot(self, make_device):
        """Everything before the loop; returns the Device (make_device(make_src) builds it)."""
        self.physical = self._physical()
        self._clock()
        a = auth.boot()
        if self.physical:
            a.physical_reset()
            config._write(config.failsafe(), config.PATH)   # phase I: never looser after it
        def make_src():                  # called by Device after its log is up
            try:
                return hal.sensor()
            except Exception as e:  # noqa: BLE001 - the ADC's OSError at boot must not end monitoring
                return FailedSensor("%s: %s" % (type(e).__name__, e))
        dev = make_device(make_src)
        src = dev.src
        self.dev = dev
        dev.sup = self
        dev.feed = self.wdt.feed
        self._selftest(dev, src, a)
        self._log_boot(dev, a)
        self.booted = True
        return dev

    def _outputs(self, al):
        # drive each output and read the driver back (what the MCU can check: the pin, not the
        # transducer); then off again (the alarm's tick owns them from here on)
        r = {}
        try:
            al.buz.freq(2000)
            al.buz.duty_u16(32768)
            r["buzzer"] = al.buz.duty_u16() == 32768
            al.buz.duty_u16(0)
        except Exception as e:  # noqa: BLE001
            r["buzzer"] = "error: %s" % type(e).__name__
        for name, pin in (("led", al.led), ("vibration", al.vib)):
            try:
                pin.value(1)
                ok = pin.value() == 1
                pin.value(0)
                r[name] = ok and pin.value() == 0
            except Exception as e:  # noqa: BLE001
                r[name] = "error: %s" % type(e).__name__
        return r

    def _selftest(self, dev, src, a):
        st = self.selftest
        if isinstance(src, FailedSensor):
            st["adc"] = {"ok": False, "error": src.why}
            self.tech_set("ADC failed", True, src.why)
        else:
            aid = getattr(src, "id", None)
            st["adc"] = {"ok": True, "id": aid if aid is not None else "simulated",
                         "crc": getattr(src, "crc", None) is not False,
                         "crc_errors": getattr(src, "crc_errors", 0)}
        st["excitation"] = {"ok": None, "expect": board.EXC_AIN3_COUNTS}    # after 1st samples
        st["outputs"] = self._outputs(dev.alarm)
        if not all(v is True for v in st["outputs"].values()):
            self.tech_set("alarm outputs", True, st["outputs"])
        st["config"] = dev.cfg.state
        st["calibration"] = "ok" if dev.cal is not None else "missing or corrupt"
        st["clock"] = self.clock
        st["key"] = a.state
        st["physical_reset"] = self.physical
        st["cpu_hz"] = self.cpu_hz
        # the heap the design was sized for (hardware/README.md "RAM"): our board image makes
        # one HEAP_AREA at boot; a stock image starts at 64 KiB and grows on demand, collecting
        # before each growth, so a smaller heap means collections while sampling
        heap = gc.mem_free() + gc.mem_alloc()
        st["heap"] = {"ok": heap >= board.HEAP_MIN, "bytes": heap, "min": board.HEAP_MIN}
        if heap < board.HEAP_MIN:
            self.tech_set("heap below design", True, heap)
        # the image: sys.implementation._build is the board it was built for (py/modsys.c,
        # MICROPY_BOARD_BUILD_NAME); a stock image mirrors the REPL to UART0, waits 500 ms per
        # USB packet and erases flash with the cache off: samples lost (docs/timing-model.md)
        build = getattr(sys.implementation, "_build", None)
        st["image"] = {"ok": hal.IMAGE is None or build == hal.IMAGE, "build": build, "want": hal.IMAGE}
        if not st["image"]["ok"]:
            self.tech_set("board image", True, build)
        st["battery"] = self.bat.info() if self.bat.sample() is not None else None
        self._states(dev)
        if not self.clock_valid():
            self.tech_set("clock not set", True, self.clock.get("why"))
        if self.clock.get("behind_floor_s"):
            self.tech_set("clock behind its last known time", True, self.clock["behind_floor_s"])
        try:
            with open(CRASH_PATH) as f:
                self.restarted = f.read(200)
            import os
            os.remove(CRASH_PATH)
        except OSError:
            self.restarted = None
        if self.restarted or self.reset_cause == "watchdog":
            self.tech_set("restarted", True, self.restarted or "watchdog")

    def _states(self, dev):
        st = dev.cfg.state
        self.tech_set("not configured", st == "default")
        for bad in config.BAD_STATES:
            self.tech_set("configuration " + bad, st == bad)
        self.tech_set("uncalibrated", dev.cal is None)
        a = auth.get()
        self.tech_set("device key " + a.state, a.state not in ("ok", "none"))
        bs = self.bat.state
        self.tech_set("battery low", bs == battery.LOW)
        self.tech_set("battery critical", bs == battery.CRITICAL)
        full = getattr(dev.log, "full", False)
        self.tech_set("log full", bool(full() if callable(full) else full))

    def _log_boot(self, dev, a):
        rec = {"reset_cause": self.reset_cause, "selftest": self.selftest,
               "fw": getattr(dev, "FW_VERSION", "?")}
        dev.log.append(P.K_BOOT, json.dumps(rec).encode())
        for r in self.tech_log:
            dev.log.append(P.K_TECH, json.dumps(r).encode())
        self.tech_log = []
        if self.tech:
            dev.alarm.raise_(alarm.LOW, alarm.TECHNICAL)
        while a.events:
            dev.log.append(P.K_SECURITY, json.dumps(a.events.pop(0)).encode())
        if self.physical:
            dev.log.append(P.K_SECURITY, b'{"physical_reset":true,"key":"forgotten",'
                           b'"config":"phase I"}')
        if self.restarted:
            dev.log.append(P.K_TECH, json.dumps({"restarted_after": self.restarted}).encode())

    # --- while running (from the sampling loop, between samples) -------------------------------
    def tick(self):
        now = hal.ticks_ms()
        if hal.ticks_diff(now, self._next) < 0:
            return
        self._next = hal.ticks_add(now, TICK_MS)
        d = self.dev
        if isinstance(d.src, FailedSensor):
            self.wdt.feed()                   # the degraded loop is the sampling loop here
        elif d.count != self._seen:           # a new sample since the last look: check AIN3
            self._seen = d.count
            v = d.raw[3]
            self.exc_counts = v
            if EXC_LO <= v <= EXC_HI:
                self._exc_bad = 0
                self._exc_good += 1
            else:
                self._exc_good = 0
                self._exc_bad += 1
            self._exc_n += 1
            ex = self.selftest["excitation"]
            if ex["ok"] is None and (self._exc_bad >= EXC_BAD_N or self._exc_good >= EXC_BAD_N):
                ex["ok"] = self._exc_good >= EXC_BAD_N
                ex["counts"] = v
                d.log.append(P.K_BOOT, json.dumps({"selftest": {"excitation": ex}}).encode())
            if self._exc_bad >= EXC_BAD_N:
                self.tech_set("excitation lost", True, v)
            elif self._exc_good >= EXC_GOOD_N:
                self.tech_set("excitation lost", False)
        if hal.ticks_diff(now, self._next_slow) < 0:
            return
        self._next_slow = hal.ticks_add(now, 1000)
        if hal.ticks_diff(now, self.t_boot) >= 0 and self._bat_due(now):
            self.bat.sample()
        self._states(d)
        bi = getattr(d, "break_ins", 0)
        if bi != self._bi:                    # mpremote's break-in / Ctrl-C: a tamper attempt
            self._bi = bi
            import cmds
            cmds.security(d, "break-in bytes ignored (mpremote, Ctrl-C)", 0, count=bi)
        if "restarted" in self.tech and hal.ticks_diff(now, self.t_boot) > RESTART_ALARM_MS:
            self.tech_set("restarted", False)
        t = hal.unix_time()
        if self.clock_valid() and t >= CLOCK_VALID and t > self.floor + CLOCK_SAVE_S:
            self._save_floor(t)

    _bat_t = 0

    def _bat_due(self, now):
        if hal.ticks_diff(now, self._bat_t) < battery.PERIOD_MS:
            return False
        self._bat_t = now
        return True

    def info(self):
        """The compact part for C_INFO (the whole self-test: health(), C_HEALTH)."""
        if self.dev is not None:
            self._states(self.dev)
        return {"reset_cause": self.reset_cause, "technical": sorted(self.tech),
                "clock_source": self.clock.get("source"), "clock_valid": self.clock_valid(),
                "battery_mv": self.bat.mv, "charging": bool(self.bat.charging),
                "physical_window": self.physical_open()}

    def health(self):
        return {"reset_cause": self.reset_cause, "selftest": self.selftest,
                "technical": self.tech, "battery": self.bat.info(), "clock": self.clock,
                "clock_floor": self.floor, "cpu_hz": self.cpu_hz,
                "excitation_counts": self.exc_counts, "watchdog_ms": WDT_MS,
                "break_ins": getattr(self.dev, "break_ins", 0)}

    def physical_open(self):
        return self.physical and hal.ticks_diff(hal.ticks_ms(), self.t_boot) < PHYSICAL_WINDOW_S * 1000

    # --- failures and maintenance ----------------------------------------------------------------
    def crash(self, e):
        """Log the exception, sound the technical alarm; the caller resets."""
        name = type(e).__name__
        text = ""
        try:
            import io
            s = io.StringIO()
            sys.print_exception(e, s)
            text = s.getvalue()[-400:]
        except Exception:  # noqa: BLE001
            pass
        try:
            with open(CRASH_PATH, "w") as f:
                f.write("%s: %s" % (name, str(e)[:100]))
        except Exception:  # noqa: BLE001
            pass
        d = self.dev
        if d is not None:
            try:
                d.alarm.raise_(alarm.HIGH, alarm.TECHNICAL)
                d.alarm.buz.freq(660)
                d.alarm.buz.duty_u16(32768)
            except Exception:  # noqa: BLE001
                pass
            try:
                d.log.append(P.K_TECH, json.dumps({"crash": name, "msg": str(e)[:100],
                                                   "tb": text}).encode())
                d.log.sync()
            except Exception:  # noqa: BLE001
                pass
        try:
            if ECHO:
                sys.stderr.write("supervisor: %s, resetting\n%s" % (name, text))
        except Exception:  # noqa: BLE001
            pass

    def maintenance(self, seconds):
        """The window: the watchdog runs on with the window's length (+10 s)."""
        d = self.dev
        try:
            d.log.sync()
        except Exception:  # noqa: BLE001
            pass
        self.wdt = hal.WDT(timeout=(int(seconds) + 10) * 1000)


def main():
    """Boot and run the monitor. Returns True when the monitor must boot again from fresh
    modules (the unix model of a reset), False when main.py should end (the ESP32's REPL for a
    maintenance window, the unix port's link gone)."""
    micropython.kbd_intr(-1)             # Ctrl-C (0x03) never interrupts the monitor
    import app
    sup = None
    try:
        sup = Supervisor()
        dev = sup.boot(lambda make_src: app.Device(make_src=make_src))
        dev.run()
        micropython.kbd_intr(-1)
        if dev.released and dev.maint_s:
            sup.maintenance(dev.maint_s)
            return hal.after_main(dev.maint_s)
        return False                     # the link is gone for good (unix: the pty closed)
    except Exception as e:  # noqa: BLE001 - the top-level handler
        if type(e).__name__ == "SimReset":
            return True
        micropython.kbd_intr(-1)
        try:
            if sup is not None:
                sup.crash(e)
            hal.sleep_ms(500)            # the alarm tone is heard before the reset
            hal.machine_reset("exception")
        except Exception as e2:  # noqa: BLE001
            if type(e2).__name__ == "SimReset":
                return True
        return True
