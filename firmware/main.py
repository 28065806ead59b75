# Entry point on the ESP32 (and in the virtual device): start the monitor. When the monitor
# releases the port (the host asked for the REPL, e.g. before `oimon deploy`), hal.after_main()
# hands over: on the ESP32 MicroPython's own REPL follows; the unix side serves a raw REPL.
import app
import hal

app.main()
hal.after_main()
