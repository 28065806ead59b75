# A MicroPython REPL for mpremote on the unix port (the virtual device), over the same pty as the
# monitor's framed link (sys.stdin.buffer / sys.stdout.buffer). The ESP32 drops into MicroPython's
# own REPL when main.py returns; the unix port has none on a pipe, so hal_unix.after_main() calls
# serve() when the monitor loop returns (the host's release command).
#
# What it speaks is what mpremote (transport_serial.py) sends:
#   friendly REPL  Ctrl-A enters the raw REPL; Ctrl-D soft-reboots, i.e. restarts the monitor
#                  (main.py runs again); a line ending in CR is executed (for a person at a terminal)
#   raw REPL       answers b"raw REPL; CTRL-B to exit\r\n>"; bytes collect until Ctrl-D, then
#                  b"OK" + the block's output + b"\x04" + exception text + b"\x04>";
#                  Ctrl-D on an empty block is a soft reboot: b"soft reboot\r\n" + the raw banner,
#                  staying in the raw REPL (as MicroPython does: main.py does not run);
#                  Ctrl-E (raw paste) is refused with b"R\x00", so mpremote falls back to the plain
#                  raw mode; Ctrl-C clears the block; Ctrl-A re-enters; Ctrl-B leaves.
#   machine.reset()  (`mpremote reset`) restarts the monitor, as a hard reset does on the ESP32.
# Blocks run in one persistent namespace (mpremote keeps `f`, `r`, `w`, `h` across blocks); files
# land in the device's storage folder, the process's cwd. Output is not buffered: print() writes
# straight to the pty between b"OK" and the first b"\x04", as on the real board.
import sys
import micropython

_RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
_FRIENDLY_BANNER = b"\r\nMicroPython (oimon virtual device, unix port)\r\nType \"help()\" for more information.\r\n>>> "
_RESET = "reset"
_EOF = "eof"
_TIMEOUT = "timeout"
_KEEP = ("rawrepl", "micropython", "sys", "builtins", "gc")


class _Reset(Exception):
    pass


class _Machine:
    # Stand-in for `machine` inside REPL blocks: reset()/soft_reset() restart the monitor.
    def reset(self):
        raise _Reset()

    def soft_reset(self):
        raise _Reset()

    def __getattr__(self, name):
        import machine as m          # the unix port's own, for anything else
        return getattr(m, name)


class _Repl:
    def __init__(self):
        self.rx = sys.stdin.buffer
        self.tx = sys.stdout.buffer
        self.b = bytearray(1)
        self.ns = None
        self.deadline = None             # ticks_ms when the maintenance window ends
        self.new_namespace()

    def new_namespace(self):
        self.ns = {"__name__": "__main__"}

    def read(self):
        # one byte as int, -1 at end of input (the host side of the pty is gone for good), -2
        # when the maintenance window is over (the monitor boots again, as the WDT resets a board)
        if self.deadline is not None:
            import select
            import time
            p = select.poll()
            p.register(sys.stdin, select.POLLIN)
            while True:
                left = time.ticks_diff(self.deadline, time.ticks_ms())
                if left <= 0:
                    return -2
                if p.poll(min(left, 200)):
                    break
        try:
            n = self.rx.readinto(self.b)
        except OSError:
            return -1
        if not n:
            return -1
        return self.b[0]

    def write(self, data):
        self.tx.write(data)

    def run(self, src):
        # exec one block; returns the exception or None. _Reset propagates.
        saved = sys.modules.get("machine")
        sys.modules["machine"] = _Machine()
        try:
            exec(src, self.ns)
        except _Reset:
            raise
        except BaseException as e:       # noqa: B902 - report everything, as the REPL does
            return e
        finally:
            if saved is None:
                sys.modules.pop("machine", None)
            else:
                sys.modules["machine"] = saved
        return None

    def raw(self):
        # the raw REPL; returns _RESET, _EOF, or "friendly" after Ctrl-B
        self.write(_RAW_BANNER)
        buf = bytearray()
        while True:
            c = self.read()
            if c < 0:
                return _EOF if c == -1 else _TIMEOUT
            if c == 0x01:                     # Ctrl-A: re-enter
                buf = bytearray()
                self.write(b"\r\n" + _RAW_BANNER)
            elif c == 0x02:                   # Ctrl-B: friendly REPL
                self.write(_FRIENDLY_BANNER)
                return "friendly"
            elif c == 0x03:                   # Ctrl-C: drop the block
                buf = bytearray()
            elif c == 0x05:                   # Ctrl-E: raw paste request ("A\x01" follows)
                self.read()
                self.read()
                self.write(b"R\x00")          # understood, not supported: plain raw mode
            elif c == 0x04:
                if not buf:                    # soft reboot, stay in the raw REPL
                    self.new_namespace()
                    self.write(b"soft reboot\r\n" + _RAW_BANNER)
                    continue
                src = bytes(buf)
                buf = bytearray()
                self.write(b"OK")
                try:
                    err = self.run(src)
                except _Reset:
                    return _RESET
                self.write(b"\x04")
                if err is not None:
                    sys.print_exception(err, sys.stdout)
                self.write(b"\x04>")
            else:
                buf.append(c)

    def friendly(self):
        # a minimal friendly REPL; returns _RESET, _EOF, or "raw" on Ctrl-A
        line = bytearray()
        while True:
            c = self.read()
            if c < 0:
                return _EOF if c == -1 else _TIMEOUT
            if c == 0x01:
                self.write(b"\r\n")
                return "raw"
            if c == 0x04:                     # soft reboot: main.py runs again
                self.write(b"\r\nMPY: soft reboot\r\n")
                return _RESET
            if c == 0x03:
                line = bytearray()
                self.write(b"\r\nKeyboardInterrupt\r\n>>> ")
            elif c in (0x0D, 0x0A):
                self.write(b"\r\n")
                if line:
                    src = bytes(line)
                    line = bytearray()
                    try:
                        err = self._line(src)
                    except _Reset:
                        return _RESET
                    if err is not None:
                        sys.print_exception(err, sys.stdout)
                self.write(b">>> ")
            elif c in (0x08, 0x7F):
                if line:
                    line = line[:-1]
                    self.write(b"\x08 \x08")
            elif c >= 0x20:
                line.append(c)
                self.write(bytes((c,)))

    def _line(self, src):
        try:
            code = compile(src, "<stdin>", "eval")
        except SyntaxError:
            return self.run(src)
        saved = sys.modules.get("machine")
        sys.modules["machine"] = _Machine()
        try:
            v = eval(code, self.ns)
            if v is not None:
                print(repr(v))
        except _Reset:
            raise
        except BaseException as e:       # noqa: B902
            return e
        finally:
            if saved is None:
                sys.modules.pop("machine", None)
            else:
                sys.modules["machine"] = saved
        return None

    def session(self, mode="friendly"):
        # serve until a reset (restart the monitor) or the end of input
        if mode == "friendly":
            self.write(_FRIENDLY_BANNER)
        while True:
            mode = self.raw() if mode == "raw" else self.friendly()
            if mode in (_RESET, _EOF, _TIMEOUT):
                return mode


def _restart_monitor():
    # What a reset does: forget the loaded firmware modules, run main's monitor again. A failing
    # monitor start is reported on stderr (the device log) and leaves the REPL serving, as a
    # real board drops to the REPL when main.py raises.
    for name in list(sys.modules):
        if name not in _KEEP:
            del sys.modules[name]
    try:
        import app
        app.main()
    except Exception as e:              # noqa: BLE001
        sys.print_exception(e, sys.stderr)


def serve(seconds=None, restart=True):
    """Serve the REPL after the monitor released the port; a reset restarts the monitor and
    serving resumes when it releases the port again. Returns at the end of input. With
    `seconds` the window ends then (the caller boots the monitor: a board's watchdog resets it);
    restart=False returns at the first reset or timeout instead of restarting the monitor here."""
    micropython.kbd_intr(-1)               # 0x03 is a REPL control byte here, not a signal
    repl = _Repl()
    if seconds:
        import time
        repl.deadline = time.ticks_add(time.ticks_ms(), int(seconds) * 1000)
    while True:
        why = repl.session()
        if why != _RESET or not restart:
            return why
        _restart_monitor()
        repl.new_namespace()
