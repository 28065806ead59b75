# ADC drivers on MicroPython against fakes: ADS131M04 (fake register map + DRDY) and HX711.
import micropython
from array import array

import ads131m04
from ads131m04 import ADS131M04, ADS131M04IO
from fake_ads131m04 import FakeADS131M04, crc_ccitt


def _nosleep(ms):
    pass


class _Ticks:
    # the driver's clock in a test: the ADC converts every 1000 us of it; it stands still
    # unless a test moves it (the fake converts when told, not on a clock: wall time between
    # two convert() calls on a loaded machine must not look like lost samples)
    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t


def make(crc=True, ring=8, gains=(128, 128, 128, 1), id_word=0x2400):
    dev = FakeADS131M04(id_word)
    io = ADS131M04IO(dev.spi, dev.cs, dev.drdy, dev.sync_reset, sleep_ms=_nosleep)
    adc = ADS131M04(io, gains=gains, ring=ring, crc=crc, ticks_us=_Ticks())
    return dev, adc


def test_crc16_matches_ccitt_check_value():
    b = bytearray(b"123456789")
    assert ads131m04.crc16(b, 9) == 0x29B1          # CRC-16/CCITT-FALSE check value
    assert crc_ccitt(b, 9) == 0x29B1


def test_sign24():
    assert ads131m04.sign24(0x7FFFFF) == 8388607
    assert ads131m04.sign24(0x800000) == -8388608
    assert ads131m04.sign24(0xFFFFFF) == -1
    assert ads131m04.sign24(0) == 0


def test_rate_from_clkin_and_osr():
    dev, adc = make()
    assert adc.RATE == 1000
    assert adc.clock_word() == 0x0F16                # all channels, OSR 4096 (code 5), HR


def test_begin_checks_id_and_writes_config():
    dev, adc = make(gains=(128, 64, 32, 1))
    adc.begin()
    assert dev.resets >= 1, "hardware reset through SYNC/RESET"
    assert adc.id == 0x2400
    assert (0x03, 0x0F16) in dev.writes
    assert (0x04, 0x0567) in dev.writes             # PGAGAIN0=7 (128), 1=6, 2=5, 3=0
    assert dev.regs[2] == 0x1110                     # 24-bit, TIMEOUT, RX_CRC_EN, RESET cleared
    assert dev.regs[1] & 0x0400 == 0, "RESET flag cleared"
    assert dev.crc_rejected == 0, "every command frame carried a valid input CRC"
    assert dev.drdy.handler is not None and dev.drdy.trigger == dev.drdy.IRQ_FALLING


def test_begin_without_crc():
    dev, adc = make(crc=False)
    adc.begin()
    assert dev.regs[2] == 0x0110


def test_wrong_id_raises():
    dev, adc = make(id_word=0x2200)                  # an ADS131M02
    try:
        adc.begin()
    except OSError as e:
        assert "0x2200" in str(e)
    else:
        raise AssertionError("no error for a wrong ID")


def test_frame_decode_negative_and_saturation():
    dev, adc = make()
    adc.begin()
    buf = array("i", (0, 0, 0, 0))
    assert adc.read(buf) == 0, "nothing before DRDY"
    dev.convert(0x7FFFFF, 0x800000, -1, 12345)
    assert adc.read(buf) == 1
    assert list(buf) == [8388607, -8388608, -1, 12345], list(buf)
    assert adc.read(buf) == 0
    dev.convert(-123456, 1, -8388607, 0)
    assert adc.read(buf) == 1
    assert list(buf) == [-123456, 1, -8388607, 0]
    assert adc.status & 0xF == 0xF


def test_ring_buffer_order_and_overrun():
    dev, adc = make(ring=8)                           # holds 7 samples
    adc.begin()
    for k in range(10):
        dev.convert(k, -k, 1000 * k, 7)
    assert adc.available() == 7, (adc.available(), adc.overruns, adc.stale, adc.crc_errors)
    assert adc.overruns == 3
    buf = array("i", (0, 0, 0, 0))
    got = []
    while adc.read(buf):
        got.append(buf[0])
        assert buf[1] == -buf[0] and buf[2] == 1000 * buf[0] and buf[3] == 7
    assert got == [0, 1, 2, 3, 4, 5, 6], got
    # the ring wraps and keeps going
    for k in range(20):
        dev.convert(k, 0, 0, 0)
        assert adc.read(buf) == 1 and buf[0] == k
    assert adc.overruns == 3


def test_late_interrupt_counts_lost_sample():
    # Losses are counted from the conversion grid (the ADC converts every 1 ms on its crystal):
    # a handler that runs after two conversions finds one fresh sample, the other was lost.
    dev = FakeADS131M04()
    clk = _Ticks()
    io = ADS131M04IO(dev.spi, dev.cs, dev.drdy, dev.sync_reset, sleep_ms=_nosleep)
    adc = ADS131M04(io, ring=8, ticks_us=clk)
    adc.begin()
    buf = array("i", (0, 0, 0, 0))
    clk.t = 10
    dev.convert(0, 0, 0, 0)                           # read at once: the grid starts here
    assert adc.read(buf) == 1 and buf[0] == 0 and adc.gap == 0
    h = dev.drdy.handler
    dev.drdy.irq(None, 0)                             # hold the edges back, like a late soft IRQ
    clk.t = 1000
    dev.convert(1, 0, 0, 0)
    clk.t = 2000
    dev.convert(2, 0, 0, 0)                           # sample 1 overwritten in the ADC
    clk.t = 2100
    h(dev.drdy)                                       # queued handler of edge 1 reads sample 2
    h(dev.drdy)                                       # queued handler of edge 2: no new data
    assert adc.read(buf) == 1 and buf[0] == 2
    assert adc.gap == 1                               # sample 2 comes after one lost sample
    assert adc.read(buf) == 0
    assert adc.overruns == 1 and adc.stale == 1
    clk.t = 3000                                      # on time again: no gap
    dev.drdy.irq(h, dev.drdy.IRQ_FALLING)
    dev.convert(3, 0, 0, 0)
    assert adc.read(buf) == 1 and buf[0] == 3 and adc.gap == 0 and adc.overruns == 1


def test_counters_wrap_small_and_keep_counting():
    # samples/overruns wrap at 2**30 (small ints on the 32-bit port, no big-int allocation)
    dev, adc = make(ring=8)
    adc.begin()
    adc.samples = (1 << 30) - 3
    adc.overruns = (1 << 30) - 1
    buf = array("i", (0, 0, 0, 0))
    for k in range(6):
        dev.convert(k, 0, 0, 0)
        assert adc.read(buf) == 1
    assert adc.samples == 3, adc.samples
    for k in range(9):                                # ring of 8 holds 7: 2 dropped
        dev.convert(k, 0, 0, 0)
    assert adc.overruns == 1, adc.overruns


def test_crc_error_drops_frame():
    dev, adc = make()
    adc.begin()
    dev.corrupt_next = True
    dev.convert(5, 5, 5, 5)
    buf = array("i", (0, 0, 0, 0))
    assert adc.read(buf) == 0
    assert adc.crc_errors == 1
    dev.convert(6, 6, 6, 6)
    assert adc.read(buf) == 1 and buf[0] == 6


def test_interrupt_and_read_do_not_allocate():
    dev, adc = make(ring=16)
    adc.begin()
    buf = array("i", (0, 0, 0, 0))
    isr = dev.drdy.handler
    # the fake itself allocates in write_readinto; measure the driver with a quiet bus
    rx_frame = bytearray(18)
    dev.convert(3, 2, 1, 0)
    adc.read(buf)

    class QuietSPI:
        def write_readinto(self, tx, rx):
            for i in range(18):
                rx[i] = frame[i]
            dev.drdy._v = 1                           # the frame took the data out

    frame = bytearray(18)
    frame[1] = 0x0F                                   # STATUS: all DRDY bits
    frame[3], frame[4], frame[5] = 0xFF, 0xFF, 0xFE   # ch0 = -2
    c = crc_ccitt(frame, 15)
    frame[15], frame[16] = c >> 8, c & 0xFF
    adc.io.spi = QuietSPI()
    micropython.heap_lock()
    try:
        for _ in range(40):
            dev.drdy._v = 0                           # a conversion: DRDY low
            isr(None)
            adc.read(buf)
    finally:
        micropython.heap_unlock()
    assert buf[0] == -2 and adc.crc_errors == 0 and adc.overruns == 0


def test_standby_and_wakeup():
    dev, adc = make()
    adc.begin()
    assert adc.standby() == 0x0022
    assert dev.drdy.handler is None
    assert adc.wakeup() == 0x0033
    assert dev.drdy.handler is not None


# --- HX711 (bench boards) ----------------------------------------------------------------
from hx711 import HX711, HX711IO
from fake_hx711 import FakeHX711Bus


def make_hx(nchips=3, gain=128, rate=10):
    bus = FakeHX711Bus(nchips)
    return bus, HX711(HX711IO(bus.sck, bus.douts), gain=gain, rate=rate)


def test_hx711_not_ready_returns_0():
    bus, hx = make_hx()
    buf = array("i", (9, 9, 9, 9))
    assert hx.read(buf) == 0
    assert list(buf) == [9, 9, 9, 9]
    assert hx.RATE == 10 and hx.overruns == 0


def test_hx711_parallel_read_negative_and_saturation():
    bus, hx = make_hx(3)
    buf = array("i", (0, 0, 0, 0))
    bus.convert(123456, -654321, 0)
    assert hx.read(buf) == 1
    assert list(buf) == [123456, -654321, 0, 0], list(buf)
    assert hx.saturated == 0
    assert all(c.pulses == 25 for c in bus.chips), "24 data bits + 1 pulse (A, gain 128)"
    assert hx.read(buf) == 0, "DOUT high after the read"
    bus.convert(0x7FFFFF, 0x800000, -1)
    assert hx.read(buf) == 1
    assert list(buf) == [8388607, -8388608, -1, 0]
    assert hx.saturated == 1


def test_hx711_gain_pulses_and_rate():
    bus, hx = make_hx(1, gain=64, rate=80)
    buf = array("i", (0, 0, 0, 0))
    bus.convert(5)
    assert hx.read(buf) == 1 and buf[0] == 5
    bus.convert(6)
    assert bus.chips[0].gain == 64
    assert hx.RATE == 80
    try:
        HX711(HX711IO(bus.sck, bus.douts), rate=1000)
    except ValueError:
        pass
    else:
        raise AssertionError("1 kSPS is not an HX711 rate")
