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
