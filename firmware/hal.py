# Hardware abstraction: firmware modules import `hal`, never `machine`.
# The ESP32 side is firmware/hal_esp32.py; the unix/sim side is sim/mpy/hal_unix.py (on
# MICROPYPATH for tests and the virtual device). Both export the names in docs/architecture.md.
import sys

if sys.platform == "esp32":
    from hal_esp32 import *  # noqa: F401,F403
else:
    from hal_unix import *  # noqa: F401,F403
