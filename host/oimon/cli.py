"""The `oimon` command: one entry point with subcommands (see `oimon --help`).

Each subcommand lives in a module of this package with `register(sub)`, which adds its parser
and sets `func`; main(argv) is callable from tests and turns OimonError into one line on stderr
and exit status 2."""
import argparse
import importlib
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


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise OimonError("%s: %s" % (self.prog, message))


def build_parser():
    p = _Parser(prog="oimon", description="oimon: OI connector load monitor host tool")
    p.add_argument("--version", action="version", version="oimon " + __version__)
    p.add_argument("--port", "-p", help="serial port, pty path or pyserial URL "
                   "(default: $OIMON_PORT, else the one ESP32 board found)")
    p.add_argument("--keystore", help="prosthetist key store (default: $OIMON_KEYSTORE, else "
                   "beside the database); mode 0600")
    p.add_argument("--db", help="SQLite database (default: $OIMON_DB, else ~/.local/share/oimon/oimon.sqlite)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        rc = args.func(args)
        return 0 if rc is None else rc
    except OimonError as e:
        print("oimon: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("oimon: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
