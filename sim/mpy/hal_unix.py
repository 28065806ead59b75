# Unix/sim side of the HAL (MicroPython unix port): the same names as firmware/hal_esp32.py.
# Pins, PWM and SPI are inert doubles that remember their state; the sensor is SimSensor, which
# plays raw ADC counts written by the simulator. Configured by the environment:
#   OIMON_STORAGE     folder for the device's files (default ./.oimon-device)
#   OIMON_SIM_SENSOR  raw counts file: int32 little-endian, 4 per sample (channels 0..3)
#   OIMON_SIM_RATE    sample rate of that file in Hz (default 1000)
#   OIMON_SIM_SPEED   1 = real time, 10 = ten times faster, 0 = as fast as read (default 1)
#   OIMON_SIM_LOOP    1 = start the file again at its end, 0 = hold the last sample (default 1)
#   OIMON_DEVICE_ID   device id (default "SIM-0001")
#   OIMON_VCLOCK      1 = the timing-faithful device model (docs/timing-model.md): model time
#                     (sim/mpy/vclock.py), the real ADS131M04 driver on a converting ADC with
#                     its 2-deep FIFO (vadc.py), the modelled USB/UART link (vlink.py), flash
#                     and GC stalls. Its own knobs: OIMON_CPU_MHZ, OIMON_UART_MIRROR,
#                     OIMON_FLASH_WORST, OIMON_BOARD_HEAP_KIB, OIMON_BOARD_PSRAM, OIMON_SIM_T0.
import os
import sys
import time
from array import array

VIRTUAL = 1 if os.getenv("OIMON_VCLOCK") == "1" else 0
# our board image flashes with CONFIG_SPI_FLASH_AUTO_SUSPEND (0: the stock image's full stalls)
FLASH_AUTO_SUSPEND = int(os.getenv("OIMON_FLASH_AUTOSUSPEND") or 1)
ticks_diff = time.ticks_diff
ticks_add = time.ticks_add

if VIRTUAL:
    import vclock
    import vlink
    _CLK = vclock.CLOCK
    ticks_us = _CLK.ticks_us
    ticks_ms = _CLK.ticks_ms
    _T0 = int(os.getenv("OIMON_SIM_T0") or time.time())

    def sleep_ms(ms):
        _CLK.wait(ms * 1000, 0)             # mp_hal_delay_ms runs soft interrupts

    def vstall(us):
        _CLK.stall(us)

    def vflash_worst():
        return _CLK.flash_worst

    def vserial():
        return vlink.LINK.rx, vlink.LINK.tx

    def vrx_any():
        return vlink.LINK.rx_any()

    def vtx_ready():
        return vlink.LINK.ready()
else:
    ticks_us = time.ticks_us
    ticks_ms = time.ticks_ms
    sleep_ms = time.sleep_ms

    def vstall(us):
        pass

    def vflash_worst():
        return 0

PLATFORM = "unix"
STORAGE = os.getenv("OIMON_STORAGE") or ".oimon-device"
DEVICE_ID = os.getenv("OIMON_DEVICE_ID") or "SIM-0001"


def _mkdirs(path):
    p = ""
    for part in path.split("/"):
        p = p + part + "/" if part else "/" if not p else p
        if part:
            try:
                os.mkdir(p)
            except OSError:
                pass


_mkdirs(STORAGE)


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        # an input with a pull-up idles high (a button not pressed)
        self._v = value if value is not None else (1 if pull == Pin.PULL_UP else 0)
        self.handler = None

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0

    def on(self):
        self._v = 1

    def off(self):
        self._v = 0

    def irq(self, handler=None, trigger=0, hard=False):
        self.handler = handler


class PWM:
    def __init__(self, pin, freq=0, duty_u16=0):
        self.pin = pin
        self._f = freq
        self._d = duty_u16

    def freq(self, f=None):
        if f is None:
            return self._f
        self._f = f

    def duty_u16(self, d=None):
        if d is None:
            return self._d
        self._d = d

    def deinit(self):
        self._d = 0


class SPI:
    def __init__(self, id, baudrate=1000000, polarity=0, phase=0, sck=None, mosi=None, miso=None):
        self.id = id

    def write(self, buf):
        pass

    def readinto(self, buf, write=0):
        for i in range(len(buf)):
            buf[i] = 0

    def write_readinto(self, wbuf, rbuf):
        self.readinto(rbuf)


_EPOCH_2000 = 946684800


class RTC:
    # The unix clock, optionally shifted by datetime(): a set RTC keeps running.
    _offset = 0

    def datetime(self, dt=None):
        if dt is None:
            t = time.localtime(int(time.time()) + RTC._offset)
            # (year, month, day, weekday, hours, minutes, seconds, subseconds) like machine.RTC
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        y, mo, d, h, mi, s = dt[0], dt[1], dt[2], dt[4], dt[5], dt[6]   # dt[3]: weekday
        RTC._offset = int(time.mktime((y, mo, d, h, mi, s, 0, 0))) - int(time.time())


def _now_s():
    if VIRTUAL:
        _CLK.tick()
        return _T0 + _CLK.sec
    return int(time.time())


def unix_time():
    return _now_s() + RTC._offset


def set_unix_time(t):
    RTC._offset = int(t) - _now_s()


class _Pacer:
    # Samples the clock says are due since start at `rate` x `speed`. ticks_us() wraps (2**30 us
    # on the unix port) and ticks_diff() is right only within half of that (~9 min), so the
    # reference moves forward every second; before that fix a virtual device stopped sampling
    # after ~536 s. (el // 100) * per_s stays a small int on the 32-bit port.
    def __init__(self, rate, speed):
        self.per_s = rate * speed
        self.t0 = ticks_us()
        self.base = 0

    def due(self):
        el = ticks_diff(ticks_us(), self.t0)
        while el >= 1000000:
            self.t0 = ticks_add(self.t0, 1000000)
            self.base += self.per_s
            el -= 1000000
        return self.base + (el // 100) * self.per_s // 10000


class SimSensor:
    # Plays raw counts from a file through the sample-source interface (docs/architecture.md).
    def __init__(self, path, rate=1000, speed=1, loop=1, chunk=256):
        self.RATE = rate
        self.overruns = 0
        self.samples = 0
        self._f = open(path, "rb")
        self._buf = bytearray(16 * chunk)
        self._mv = memoryview(self._buf)
        self._words = array("i", bytes(4 * 4 * chunk))
        self._n = 0      # samples in the chunk buffer
        self._i = 0      # next sample in it
        self._loop = loop
        self._pace = _Pacer(rate, speed) if speed else None   # speed 0: as fast as read
        self._end = False

    def _fill(self):
        n = self._f.readinto(self._buf)
        if not n and self._loop:
            self._f.seek(0)
            n = self._f.readinto(self._buf)
        if not n:
            self._end = True
            return 0
        n //= 16
        w = self._words
        b = self._buf
        for k in range(4 * n):
            j = 4 * k
            v = b[j] | (b[j + 1] << 8) | (b[j + 2] << 16) | (b[j + 3] << 24)
            if v & 0x80000000:
                v -= 0x100000000
            w[k] = v
        self._n = n
        self._i = 0
        return n

    def due(self):
        # Samples the clock says should have been taken by now (speed 0: always one).
        if self._pace is None:
            return 1
        return self._pace.due() - self.samples

    def read(self, buf):
        if self._end:
            return 0
        if self.due() <= 0:
            return 0
        if self._i >= self._n and not self._fill():
            return 0
        j = 4 * self._i
        w = self._words
        buf[0] = w[j]
        buf[1] = w[j + 1]
        buf[2] = w[j + 2]
        buf[3] = w[j + 3]
        self._i += 1
        self.samples += 1
        return 1


class NullSensor:
    # No sensor file: a quiet bridge at mid-scale zero (the device reads as unloaded).
    def __init__(self, rate=1000):
        self.RATE = rate
        self.overruns = 0
        self.samples = 0
        self._pace = _Pacer(rate, 1)

    def read(self, buf):
        if self._pace.due() <= self.samples:
            return 0
        buf[0] = buf[1] = buf[2] = 0
        buf[3] = 3495253              # AIN3: the excitation sense (board.EXC_AIN3_COUNTS)
        self.samples += 1
        return 1


_vsensor = None


def vsensor():
    # The real driver on the modelled converter (one per process, like the board's).
    global _vsensor
    if _vsensor is None:
        import vadc
        from ads131m04 import ADS131M04, ADS131M04IO
        adc = vadc.VADC(os.getenv("OIMON_SIM_SENSOR"), int(os.getenv("OIMON_SIM_RATE") or 1000),
                        int(os.getenv("OIMON_SIM_LOOP") or 1))
        _CLK.adc = adc
        io = ADS131M04IO(adc, adc.cs, adc.drdy, adc.sync_reset, sleep_ms)
        import board
        drv = ADS131M04(io, gains=(board.ADC_GAIN0, board.ADC_GAIN1, board.ADC_GAIN2, board.ADC_GAIN3),
                        osr=board.ADC_OSR, clkin=board.ADC_CLKIN_HZ,
                        ring=int(os.getenv("OIMON_ADC_RING") or 0) or board.ADC_RING,
                        ticks_us=_CLK.ticks_us)
        drv.begin()
        _vsensor = drv
    return _vsensor


def sensor():
    if VIRTUAL:
        return vsensor()
    path = os.getenv("OIMON_SIM_SENSOR")
    rate = int(os.getenv("OIMON_SIM_RATE") or 1000)
    if not path:
        return NullSensor(rate)
    return SimSensor(path, rate, int(os.getenv("OIMON_SIM_SPEED") or 1), int(os.getenv("OIMON_SIM_LOOP") or 1))


class SimIMU:
    """IMU rows from a file the simulator wrote ($OIMON_SIM_IMU: int32 LE rows of ax, ay, az (mg),
    gx, gy, gz (0.1 dps), flags at 104 Hz), delivered like the LSM6DSO32 driver: read(clk) takes
    the rows due by the load sample clk[0] - 1 (row k is due at k * 125 // 13) into self.rows."""
    RATE = 104

    def __init__(self, path):
        from array import array
        self.f = open(path, "rb")
        self.rows = array("i", [0] * (8 * 256))
        self._b = bytearray(28)
        self.k = 0
        self.samples = 0
        self.overruns = 0
        self.errors = 0
        self.ok = True

    def read(self, clk):
        n = clk[0] - 1
        k = 0
        while k < 256 and (self.k * 125) // 13 <= n:
            if self.f.readinto(self._b) != 28:
                self.f.seek(0)
                if self.f.readinto(self._b) != 28:
                    return k
            r = 8 * k
            self.rows[r] = (self.k * 125) // 13
            for j in range(7):
                v = self._b[4 * j] | (self._b[4 * j + 1] << 8) | (self._b[4 * j + 2] << 16) | (self._b[4 * j + 3] << 24)
                if v & 0x80000000:
                    v -= 0x100000000
                self.rows[r + 1 + j] = v
            self.k += 1
            k += 1
        self.samples += k
        return k

    def row(self, i, dst):
        for j in range(8):
            dst[j] = self.rows[8 * i + j]

    def stale(self, now_ms):
        return False


def imu():
    path = os.getenv("OIMON_SIM_IMU")
    return SimIMU(path) if path else None


def machine_reset():
    sys.exit(0)


def after_main():
    # The ESP32 drops to MicroPython's REPL when main.py returns. The unix port has no raw REPL
    # on a pipe, so the virtual device serves one (sim/mpy/rawrepl.py) for mpremote.
    try:
        import rawrepl
    except ImportError:
        return
    rawrepl.serve()
from hw_unix import *  # noqa: F401,F403,E402  (issue 12: WDT, reset cause, RTC chip, battery, button)
