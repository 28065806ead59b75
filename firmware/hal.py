# Hardware abstraction: firmware modules import `hal`, never `machine`.
# The ESP32 side is firmware/hal_esp32.py; the unix/sim side is sim/mpy/hal_unix.py (on
# MICROPYPATH for tests and the virtual device). Both export the names in docs/architecture.md.
import sys
import select

if sys.platform == "esp32":
    from hal_esp32 import *  # noqa: F401,F403
else:
    from hal_unix import *  # noqa: F401,F403

# The host link is MicroPython's stdio on both sides: the ESP32's USB (CDC) REPL port, and the
# pty the virtual device's stdin/stdout are.
_poll = select.poll()
_poll.register(sys.stdin, select.POLLIN)


def serial():
    """(rx, tx): the host link as raw binary streams."""
    return sys.stdin.buffer, sys.stdout.buffer


def rx_any():
    """1 if a byte can be read without blocking, 0 if not, -1 if the link is gone for good
    (the other side of the virtual device's pty closed; the USB port never reports it)."""
    r = _poll.poll(0)
    if r and r[0][1] & select.POLLIN:
        return 1
    if r and r[0][1] & (select.POLLHUP | select.POLLERR):
        return -1
    return 0
