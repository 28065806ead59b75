# Unix/sim doubles of the supervisor's hardware (issue 12): watchdog, reset cause, RV-3028 RTC on
# I2C, battery voltage and charger state, the button at power-up, CPU frequency, the hand-over to
# the REPL for a bounded maintenance window. hal_unix.py re-exports these names (`from hw_unix
# import *`), so firmware code sees the same names as on the ESP32 (hal_esp32.py).
# State that must survive a "power cycle" of the virtual device lives in files in the storage
# folder ($OIMON_STORAGE): the RTC chip's registers (rv3028.bin), the reset cause (.reset_cause).
# Environment (tests): OIMON_SIM_WDT_MS watchdog timeout (default 30000: a loaded test machine
# must not trip it), OIMON_SIM_BUTTON_MS the button is held this long after start (physical
# action at power-up), OIMON_SIM_RTC "lost" = the RTC chip lost its time (PORF set), "absent" =
# no chip answers; the battery reads from the file sim_battery in storage ("mV charging"), else
# 4000 mV, not charging.
import os
import sys
import time

_STORAGE = os.getenv("OIMON_STORAGE") or ".oimon-device"
_T0 = time.ticks_ms()


class SimReset(Exception):
    """machine_reset() on the unix port: the supervisor boots the monitor again in-process."""


def _write(name, data):
    try:
        with open(_STORAGE + "/" + name, "wb") as f:
            f.write(data)
    except OSError:
        pass


def _read(name):
    try:
        with open(_STORAGE + "/" + name, "rb") as f:
            return f.read()
    except OSError:
        return None


def reset_cause():
    """Why the board (re)started: power-on, watchdog, software, exception, ... (the ESP32 side
    maps machine.reset_cause()). The model reads what machine_reset()/the watchdog recorded."""
    r = _read(".reset_cause")
    if r is None:
        return "power-on"
    try:
        os.remove(_STORAGE + "/.reset_cause")
    except OSError:
        pass
    return r.decode() or "power-on"


def machine_reset(cause="software"):
    _write(".reset_cause", cause.encode())
    raise SimReset(cause)


class WDT:
    """machine.WDT model: fed by feed(); a thread ends the process (as the chip's reset ends
    everything) when nobody fed it for `timeout` ms. The timeout is $OIMON_SIM_WDT_MS on the unix
    port (the ESP32's is the one asked for)."""
    feeds = 0
    started = 0
    timeout = 0
    _last = 0
    _thread = False

    def __init__(self, id=0, timeout=5000):
        env = os.getenv("OIMON_SIM_WDT_MS")
        WDT.timeout = int(env) if env else max(timeout, 30000)
        WDT._last = time.ticks_ms()
        WDT.started += 1
        if not WDT._thread:
            WDT._thread = True
            import _thread
            _thread.start_new_thread(WDT._watch, ())
            try:
                sys.atexit(WDT._stop)        # let the thread end before the interpreter does
            except AttributeError:
                pass

    def feed(self):
        WDT.feeds += 1
        WDT._last = time.ticks_ms()

    _run = True

    @staticmethod
    def _stop():
        WDT._run = False
        time.sleep_ms(120)

    @staticmethod
    def _watch():
        while WDT._run:
            time.sleep_ms(50)
            if time.ticks_diff(time.ticks_ms(), WDT._last) > WDT.timeout:
                _write(".reset_cause", b"watchdog")
                sys.stderr.write("hw_unix: watchdog expired: reset\n")
                import ffi
                ffi.open("libc.so.6").func("v", "_exit", "i")(75)


_FREQ = [0]


def set_cpu_freq(hz=160000000):
    _FREQ[0] = hz
    return hz


def cpu_freq():
    return _FREQ[0]


def button_down():
    """The button (active low on the board) as the supervisor reads it at power-up."""
    ms = int(os.getenv("OIMON_SIM_BUTTON_MS") or 0)
    return ms > 0 and time.ticks_diff(time.ticks_ms(), _T0) < ms


# --- RV-3028-C7 register model on a fake I2C bus ---------------------------------------------
# What the driver uses (firmware/rv3028.py): 0x00..0x06 time/date (BCD), 0x0E status (bit 0
# PORF), 0x1B..0x1E the 32-bit UNIX time counter (LSB first). The counter runs with the host's
# clock: stored as (unix time at write, host time at write).
class I2C:
    ADDR = 0x52

    def __init__(self, id=0, scl=None, sda=None, freq=400000):
        self.mode = os.getenv("OIMON_SIM_RTC") or ""

    def scan(self):
        return [] if self.mode == "absent" else [I2C.ADDR]

    def _state(self):
        if self.mode == "lost":
            return None
        r = _read("rv3028.bin")
        if r is None:                          # a chip that kept time: the host's clock
            return int(time.time()), int(time.time())
        try:
            a, b = r.decode().split()
            return int(a), int(b)
        except ValueError:
            return None

    def _now(self):
        st = self._state()
        if st is None:
            return 0, 1                        # counter 0 and PORF: the time was lost
        return st[0] + int(time.time()) - st[1], 0

    def readfrom_mem(self, addr, reg, n):
        if self.mode == "absent" or addr != I2C.ADDR:
            raise OSError(19)                  # ENODEV: no acknowledge
        t, porf = self._now()
        regs = bytearray(0x40)
        regs[0x0E] = porf
        regs[0x1B] = t & 0xFF
        regs[0x1C] = (t >> 8) & 0xFF
        regs[0x1D] = (t >> 16) & 0xFF
        regs[0x1E] = (t >> 24) & 0xFF
        return bytes(regs[reg:reg + n])

    def writeto_mem(self, addr, reg, data):
        if self.mode == "absent" or addr != I2C.ADDR:
            raise OSError(19)
        if reg == 0x1B and len(data) >= 4:
            t = data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24)
            _write("rv3028.bin", b"%d %d" % (t, int(time.time())))
            if self.mode == "lost":
                self.mode = ""
        elif reg == 0x0E:
            pass                               # PORF cleared: the model keeps no flag


def i2c():
    return I2C(0)


# --- battery ------------------------------------------------------------------------------------
def battery_read():
    """(VBAT mV, charging 0/1) as the battery driver samples them (firmware/battery.py)."""
    r = _read("sim_battery")
    if r:
        try:
            a = r.decode().split()
            return int(a[0]), int(a[1]) if len(a) > 1 else 0
        except ValueError:
            pass
    return 4000, 0


def after_main(seconds=0):
    """The maintenance window: serve the REPL (sim/mpy/rawrepl.py) for mpremote for at most
    `seconds`; True = boot the monitor again (reset, timeout), False = the link is gone."""
    try:
        import rawrepl
    except ImportError:
        return False
    why = rawrepl.serve(seconds, restart=False)
    if why == "eof":
        return False
    # the window ended (a board's watchdog resets it) or mpremote reset the board
    _write(".reset_cause", b"watchdog" if why == "timeout" else b"software")
    return True
