# ESP32 side of the HAL (docs/architecture.md): the same names as sim/mpy/hal_unix.py.
# Imported by firmware/hal.py when sys.platform == 'esp32'; only this module and the drivers'
# IO classes touch the hardware. Pins come from board.py (generated from hardware/pinmap.json).
import time
import machine
from machine import Pin, SPI, PWM, RTC  # noqa: F401  (re-exported)

import board

ticks_us = time.ticks_us
ticks_ms = time.ticks_ms
ticks_diff = time.ticks_diff
ticks_add = time.ticks_add
sleep_ms = time.sleep_ms

PLATFORM = "esp32"
STORAGE = "/"
DEVICE_ID = "OIM-" + "".join("%02X" % b for b in machine.unique_id())

_EPOCH_2000 = 946684800     # MicroPython on the ESP32 counts seconds from 2000-01-01


def unix_time():
    return time.time() + _EPOCH_2000


def set_unix_time(t):
    y, mo, d, h, mi, s, wd, yd = time.gmtime(int(t) - _EPOCH_2000)
    RTC().datetime((y, mo, d, wd, h, mi, s, 0))


_sensor = None


def sensor():
    # The ADS131M04 on the FSPI bus, configured and sampling at 1 kHz from its DRDY interrupt.
    global _sensor
    if _sensor is None:
        from ads131m04 import ADS131M04, ADS131M04IO
        Pin(board.EXC_EN, Pin.OUT, value=1)          # bridge excitation on
        spi = SPI(board.ADC_SPI_ID, baudrate=board.ADC_SPI_BAUD, polarity=board.ADC_SPI_POLARITY,
                  phase=board.ADC_SPI_PHASE, sck=Pin(board.ADC_SCK), mosi=Pin(board.ADC_MOSI),
                  miso=Pin(board.ADC_MISO))
        io = ADS131M04IO(spi, Pin(board.ADC_CS, Pin.OUT, value=1),
                         Pin(board.ADC_DRDY, Pin.IN, Pin.PULL_UP),
                         Pin(board.ADC_SYNC_RESET, Pin.OUT, value=1), sleep_ms)
        adc = ADS131M04(io, gains=(board.ADC_GAIN0, board.ADC_GAIN1, board.ADC_GAIN2, board.ADC_GAIN3),
                        osr=board.ADC_OSR, clkin=board.ADC_CLKIN_HZ, ring=board.ADC_RING)
        sleep_ms(5)                                   # excitation and reference settle
        adc.begin()
        _sensor = adc
    return _sensor


_imu = None


def imu():
    # The LSM6DSO32 on the I2C bus it shares with the RTC (hardware/README.md "IMU"). A part that
    # does not answer is still returned: it reports no data, so the IMU fault is raised and shown.
    global _imu
    if _imu is None:
        from machine import I2C
        from lsm6dso import LSM6DSO, LSM6DSOIO
        i2c = I2C(board.I2C_ID, scl=Pin(board.I2C_SCL), sda=Pin(board.I2C_SDA), freq=400000)
        _imu = LSM6DSO(LSM6DSOIO(i2c, board.IMU_I2C_ADDR), time.ticks_ms)
        _imu.begin()
    return _imu


def machine_reset():
    machine.reset()


# --- supervisor hardware (issue 12; docs/security.md, hardware/README.md) ----------------------
WDT = machine.WDT                 # machine.WDT(timeout=ms): the task watchdog; a new WDT(...)
                                  # reconfigures the timeout (ports/esp32/machine_wdt.c)

_CAUSES = {getattr(machine, "PWRON_RESET", 1): "power-on",
           getattr(machine, "HARD_RESET", 2): "hard",
           getattr(machine, "WDT_RESET", 3): "watchdog",
           getattr(machine, "DEEPSLEEP_RESET", 4): "deep sleep",
           getattr(machine, "SOFT_RESET", 5): "software"}


def reset_cause():
    """machine.reset_cause() as a word (a panic after an exception reads as hard/software)."""
    try:
        return _CAUSES.get(machine.reset_cause(), "unknown")
    except Exception:  # noqa: BLE001
        return "unknown"


def machine_reset(cause="software"):
    machine.reset()


def set_cpu_freq(hz=board.CPU_HZ):
    """An explicit CPU clock (the power budget in hardware/README.md assumes it)."""
    machine.freq(hz)
    return machine.freq()


def cpu_freq():
    return machine.freq()


def button_down():
    return Pin(board.BUTTON, Pin.IN, Pin.PULL_UP).value() == 0


def i2c():
    return machine.I2C(board.I2C_ID, scl=Pin(board.I2C_SCL), sda=Pin(board.I2C_SDA), freq=400000)


_vbat = None


def battery_read():
    """(VBAT mV, charging 0/1): divider switched on for the reading only (it draws 1.6 uA)."""
    global _vbat
    if _vbat is None:
        _vbat = machine.ADC(Pin(board.VBAT_SENSE), atten=machine.ADC.ATTN_11DB)
    en = Pin(board.VBAT_SENSE_EN, Pin.OUT, value=1)
    time.sleep_us(200)
    uv = _vbat.read_uv()
    en.value(0)
    chg = Pin(board.CHG_STAT, Pin.IN, Pin.PULL_UP).value() == 0
    return uv * board.VBAT_DIV_NUM // 1000, 1 if chg else 0


def after_main(seconds=0):
    """The monitor released the port for maintenance: return to main.py, whose end starts
    MicroPython's REPL. The supervisor has set the watchdog to the window's length: nothing
    feeds it at the REPL, so the board resets into the monitor when the window ends."""
    return False
