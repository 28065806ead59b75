"""The `oimon` command: one entry point with subcommands (see `oimon --help`).

Each subcommand lives in a module of this package with `register(sub)`, which adds its parser
and sets `func`; main(argv) is callable from tests and turns every failure into one line on
stderr (docs/host.md "Errors"): OimonError, a bad argument, an OS error (disk full, name too
long, permission), an SQLite error, input nested too deeply: exit status 2, no traceback.
Ctrl-C is 130. The global options --port/--db/--keystore are accepted before or after the
subcommand."""
import argparse
import errno
import importlib
import os
import sqlite3
import sys

from oimon import __version__
from oimon.errors import OimonError

COMMAND_MODULES = [
    "oimon.commands.device",      # ports, info, time, flash, deploy
    "oimon.commands.config",      # config show|set
    "oimon.commands.calibrate",   # calibrate
    "oimon.commands.report",      # report
    "oimon.commands.record",      # record, events
    "oimon.commands.plot",        # plot
    "oimon.commands.retighten",   # retighten record|status|interval
    "oimon.commands.sim",         # sim device|generate|replay|...
    "oimon.commands.exercise",    # exercise plan|live|report
    "oimon.commands.io",          # import, export csv
    "oimon.commands.decode",      # decode a raw capture of the serial stream
    "oimon.commands.sync",        # pull the device log into the database
    "oimon.commands.serve",       # the clinic dashboard (web)
]

GLOBAL_OPTIONS = [
    (("--port", "-p"), "serial port, pty path or pyserial URL "
                       "(default: $OIMON_PORT, else the one ESP32 board found)"),
    (("--keystore",), "prosthetist key store (default: $OIMON_KEYSTORE, else beside the "
                      "database); mode 0600"),
    (("--db",), "SQLite database (default: $OIMON_DB, else ~/.local/share/oimon/oimon.sqlite)"),
]


class UsageError(OimonError):
    """A command line argparse refused: printed as it is (it names the command)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, the global options on every subcommand (given after
    the subcommand they override the ones before it), and every bare float/int argument
    checked as finite and plausible (oimon.validate)."""

    def __init__(self, *a, _root=False, **kw):
        super().__init__(*a, **kw)
        if not _root:
            g = self.add_argument_group("global options (also accepted before the command)")
            for names, help_ in GLOBAL_OPTIONS:
                g.add_argument(*names, default=argparse.SUPPRESS, help=help_)

    def add_argument(self, *a, **kw):
        from oimon import validate
        t = kw.get("type")
        if t is float:
            kw["type"] = validate.number()
        elif t is int:
            kw["type"] = validate.integer()
        return super().add_argument(*a, **kw)

    def error(self, message):
        sub = self.prog[len("oimon"):].strip() if self.prog.startswith("oimon") else self.prog
        raise UsageError("oimon: %s%s (see %s --help)" % (sub + ": " if sub else "", message,
                                                         self.prog))


def build_parser():
    p = _Parser(prog="oimon", description="oimon: OI connector load monitor host tool", _root=True)
    p.add_argument("--version", action="version", version="oimon " + __version__)
    for names, help_ in GLOBAL_OPTIONS:
        p.add_argument(*names, help=help_)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def _os_line(e):
    what = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        what = "disk full (no space left on the device)"
    elif e.errno == errno.EDQUOT:
        what = "disk quota exceeded"
    elif e.errno == errno.EFBIG:
        what = "file too large for this file system or limit"
    return "%s%s" % ("%s: " % e.filename if getattr(e, "filename", None) else "", what)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        if not argv:
            parser.print_help()
            return 0
        args = parser.parse_args(argv)
        rc = args.func(args)
        return 0 if rc is None else rc
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except OimonError as e:
        print("oimon: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("oimon: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        print("oimon: %s" % _os_line(e), file=sys.stderr)
        return 2
    except sqlite3.Error as e:
        from oimon import db
        print("oimon: %s" % db.error_line(e), file=sys.stderr)
        return 2
    except RecursionError:
        print("oimon: input nested too deeply", file=sys.stderr)
        return 2
    except MemoryError:
        print("oimon: out of memory (input too large?)", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the last net: one line, never a traceback
        if os.environ.get("OIMON_DEBUG"):
            raise
        print("oimon: internal error: %s: %s (set OIMON_DEBUG=1 for the traceback)"
              % (e.__class__.__name__, (str(e).splitlines() or [""])[0]), file=sys.stderr)
        return 1
    finally:
        _close_databases()


def _close_databases():
    try:
        from oimon import db
        db.close_all()
    except Exception:  # noqa: BLE001 - closing must not turn success into failure
        pass


if __name__ == "__main__":
    sys.exit(main())
