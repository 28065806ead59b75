# Entry point on the ESP32 (and in the virtual device): the supervisor boots and runs the
# monitor (firmware/supervisor.py). It returns only for a maintenance window (signed C_MAINT, or
# after the physical action at power-up): on the ESP32 MicroPython's REPL follows and the
# watchdog resets the board into the monitor when the window ends; on the unix port it returns
# True after the window (or a reset), and the monitor boots again from fresh modules.
import micropython
micropython.kbd_intr(-1)         # first thing: Ctrl-C must not stop the monitor at boot
import sys

_KEEP = ("sys", "micropython", "gc", "builtins", "hw_unix", "rawrepl", "_thread", "ffi")
while True:
    import supervisor
    if not supervisor.main():
        break
    for _n in list(sys.modules):     # a reset: the next boot imports the modules afresh
        if _n not in _KEEP:
            del sys.modules[_n]
