# The LSM6DSO32 driver on the i386 MicroPython through a fake part on the I2C bus: set-up, FIFO
# batches decoded to mg / 0.1 dps rows with load-sample timestamps, a 2 s main-loop stall survived
# without loss, a longer one marked as a gap, bus errors, no data, no allocation per batch.
import gc
from array import array

from fake_lsm6dso import FakeLSM6DSO
import lsm6dso
import imufall


def C(n):
    # the detector's clock word: st[0] = the next load sample, so the latest is n
    return array("i", [n + 1])


def _drv(who=0x6C):
    part = FakeLSM6DSO(who)
    t = [0]
    d = lsm6dso.LSM6DSO(lsm6dso.LSM6DSOIO(part), lambda: t[0])
    return part, d, t


def test_begin_configures_and_checks_the_id():
    part, d, t = _drv()
    assert d.begin() and d.ok
    assert part.regs[0x10] == 0x44 and part.regs[0x11] == 0x4C     # 104 Hz, 32 g / 2000 dps
    assert part.regs[0x09] == 0x44 and part.regs[0x0A] == 0x06     # FIFO 104 Hz, continuous
    part, d, t = _drv(0x6A)                                         # another part: refused
    assert not d.begin() and d.read(C(100)) == 0 and d.stale(0)


def test_batch_rows_units_and_timestamps():
    part, d, t = _drv()
    d.begin()
    for i in range(10):
        part.sample((1024, -1024, 32767), (100, -100, 32767))
    k = d.read(C(5000))
    assert k == 10
    row = array("i", [0] * 8)
    d.row(9, row)
    assert list(row) == [5000, 1000, -1000, 31999, 70, -70, 22936, 0], list(row)
    d.row(0, row)
    assert row[0] == 5000 - (9 * 2462 >> 8)                          # 9 periods of 9.6 ms back
    assert d.samples == 10 and d.overruns == 0


def test_two_second_stall_loses_nothing_longer_is_a_gap():
    part, d, t = _drv()
    d.begin()
    for i in range(208):                                           # 2 s at 104 Hz: 416 words
        part.sample((i, 0, 1024), (0, 0, 0))
    assert d.read(C(2000)) == 208 and d.overruns == 0
    row = array("i", [0] * 8)
    d.row(0, row)
    assert row[1] == 0 and row[7] == 0
    for i in range(300):                                           # 2.9 s: the FIFO overflows
        part.sample((i, 0, 1024), (0, 0, 0))
    k = d.read(C(5000))
    assert d.overruns == 1 and 200 <= k < 300
    d.row(0, row)
    assert row[7] & imufall.IF_GAP                                 # the next row carries the gap
    d.row(1, row)
    assert row[7] == 0


def test_bus_error_and_no_data_make_it_stale():
    part, d, t = _drv()
    d.begin()
    part.sample((0, 0, 1024), (0, 0, 0))
    t[0] = 10
    assert d.read(C(10)) == 1 and not d.stale(50)
    part.fail = True
    assert d.read(C(20)) == 0 and d.errors == 1
    part.fail = False
    assert d.stale(10 + lsm6dso.NODATA_MS)
    part.sample((0, 0, 1024), (0, 0, 0))
    t[0] = 200
    assert d.read(C(200)) == 1 and not d.stale(201)
    row = array("i", [0] * 8)
    d.row(0, row)
    assert row[7] & imufall.IF_GAP                                 # samples may be lost: a gap


def test_no_allocation_per_batch():
    part, d, t = _drv()
    d.begin()
    row = array("i", [0] * 8)
    for i in range(40):
        part.sample((i, 0, 1024), (0, 0, 0))
    d.read(C(0))
    for i in range(40):
        part.sample((i, 0, 1024), (0, 0, 0))
    clk = C(100)
    part.fifo = list(part.fifo) + [b"\0" * 7] * 0
    gc.collect()
    gc.disable()
    m = gc.mem_alloc()
    k = d.read(clk)
    for i in range(k):
        d.row(i, row)
    used = gc.mem_alloc() - m
    gc.enable()
    assert k == 40
    assert used <= 0, used      # (the fake part's FIFO list shrinks as it is read)
