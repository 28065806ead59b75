# Hardware abstraction: firmware modules import `hal`, never `machine`.
# The ESP32 side is firmware/hal_esp32.py; the unix/sim side is sim/mpy/hal_unix.py (on
# MICROPYPATH for tests and the virtual device). Both export the names in docs/architecture.md.
# This module adds what both sides share: the host link helpers and the flash cost model
# (docs/timing-model.md), which the log calls around its flash operations.
import sys
import select
from micropython import const

if sys.platform == "esp32":
    from hal_esp32 import *  # noqa: F401,F403
    VIRTUAL = 0

    def vstall(us):             # the board's flash operation costs its own time
        pass

    def vflash_worst():
        return 0

    FLASH_AUTO_SUSPEND = 1      # the board image's CONFIG_SPI_FLASH_AUTO_SUSPEND (hardware/README.md)
    IMAGE = "OIMON_S3"          # the board image the timing model holds for (hardware/README.md)
else:
    IMAGE = None                # the unix port: no board image to check
    from hal_unix import *  # noqa: F401,F403
    from hal_unix import VIRTUAL, vstall, vflash_worst, FLASH_AUTO_SUSPEND
    if VIRTUAL:
        from hal_unix import vserial, vrx_any, vtx_ready

# ---- flash cost model (docs/timing-model.md, table "flash") ---------------------------------
# On the board every SPI1 flash operation (read, page program, erase) disables the caches:
# both cores stop unless they run from IRAM, soft interrupts (DRDY) wait, the ADC's two-deep
# output FIFO overflows after ~2 ms at 1 kSPS. With CONFIG_SPI_FLASH_AUTO_SUSPEND (our board
# image, hardware/README.md; flash GD25QxxE / XM25QxxC) the flash suspends a program/erase
# when the cache needs it, so the interpreter stalls only for the suspend latency.
FLASH_PAGE = const(256)              # program page
FLASH_SECTOR = const(4096)           # smallest erase
FLASH_STALL_BUDGET_US = const(1500)  # longest stall the acquisition absorbs with no sample lost
_OVH_US = const(20)                  # esp_flash API call + cache off/on, per call
_BP1_US = (30, 50)                   # first byte of a program (typ, max)   W25Q64JV tBP1
_BP2_10US = (25, 120)                # each further byte, in 0.1 us          W25Q64JV tBP2
_PP_US = (400, 3000)                 # full page program                     W25Q64JV tPP
_SE_US = (45000, 400000)             # 4 KB sector erase                     W25Q64JV tSE
_RD_10US_PER_KB = const(300)         # read at 80 MHz QIO incl. command: ~30 us per KB
_SUS_US = (20, 40)                   # suspend latency with auto suspend (GD25Q64E tSUS)
_META_B = const(64)                  # littlefs metadata commit (sync): about one short program


def flash_estimate(op, nbytes=0, worst=0, suspend=-1):
    """Interpreter stall in us of one flash operation on the board: op is "prog" (nbytes
    programmed, split at page boundaries as the chip does), "erase" (nbytes rounded up to 4 KB
    sectors), "read" or "sync" (a littlefs metadata commit). worst=1: datasheet maximum."""
    w = 1 if worst else 0
    if suspend < 0:
        suspend = FLASH_AUTO_SUSPEND
    if op == "read":
        return _OVH_US + (nbytes * _RD_10US_PER_KB) // 10240
    if op == "sync":
        op, nbytes = "prog", _META_B
    if op == "prog":
        t = 0
        n = nbytes
        while n > 0:
            k = FLASH_PAGE if n > FLASH_PAGE else n
            p = _BP1_US[w] + ((k - 1) * _BP2_10US[w]) // 10
            t += p if p < _PP_US[w] else _PP_US[w]
            n -= k
        if suspend:                  # the program runs on while the cache reads: short stalls
            t = _SUS_US[w] * ((nbytes + FLASH_PAGE - 1) // FLASH_PAGE)
        return _OVH_US + t
    if op == "erase":
        k = (nbytes + FLASH_SECTOR - 1) // FLASH_SECTOR
        if k < 1:
            k = 1
        if suspend:
            return _OVH_US + _SUS_US[w] * k
        return _OVH_US + _SE_US[w] * k
    raise ValueError("flash op")


def flash_cost(op, nbytes=0):
    """Call around each flash operation (before or after it): returns the modelled stall in us
    (typical). In the simulator the virtual clock stops the interpreter for that long; on the
    board it is only the estimate (the real operation costs what it costs)."""
    us = flash_estimate(op, nbytes, vflash_worst())
    vstall(us)
    return us


# ---- host link ---------------------------------------------------------------------------------
# The host link is MicroPython's stdio on both sides: the ESP32's USB (CDC) REPL port, and the
# pty the virtual device's stdin/stdout are (or, under the virtual clock, the modelled link).
_poll = select.poll()
_poll.register(sys.stdin, select.POLLIN)
try:
    _opoll = select.poll()
    _opoll.register(sys.stdout, select.POLLOUT)
except Exception:           # a port whose stdout cannot be polled: the stream then learns of a
    _opoll = None           # silent host from a write that waited (app.py _tx)


def serial():
    """(rx, tx): the host link as raw binary streams."""
    if VIRTUAL:
        return vserial()
    return sys.stdin.buffer, sys.stdout.buffer


def rx_any():
    """1 if a byte can be read without blocking, 0 if not, -1 if the link is gone for good
    (the other side of the virtual device's pty closed; the USB port never reports it)."""
    if VIRTUAL:
        return vrx_any()
    r = _poll.ipoll(0)                  # ipoll: no list allocated per call
    for obj, ev in r:
        if ev & select.POLLIN:
            return 1
        if ev & (select.POLLHUP | select.POLLERR):
            return -1
    return 0


# The stream drops frames rather than wait (app.py) where waiting costs samples: on the board
# and in the timing model. The real-time virtual device's pty is host flow control (the host
# reads; a write that waits there is the shared machine, not the link): it keeps blocking writes.
STREAM_NONBLOCK = 1 if (sys.platform == "esp32" or VIRTUAL) else 0


def tx_ready():
    """1 if the link takes a write now without waiting (USB CDC: the TX FIFO has room or no
    host holds the port; TinyUSB's write otherwise waits up to 500 ms per packet)."""
    if VIRTUAL:
        return vtx_ready()
    if _opoll is None:
        return 1
    for obj, ev in _opoll.ipoll(0):
        if ev & select.POLLOUT:
            return 1
    return 0
