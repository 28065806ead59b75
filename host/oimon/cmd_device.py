"""oimon ports | info | time: find boards and ask a device about itself."""
import json
import time

from oimon import link
from oimon_fw import protocol as P


def register(sub):
    p = sub.add_parser("ports", help="list serial ports, marking likely ESP32 boards")
    p.set_defaults(func=cmd_ports)
    p = sub.add_parser("info", help="device id, firmware, calibration, limits, clock, retightening")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("time", help="set the device clock from this computer's")
    p.set_defaults(func=cmd_time)


def cmd_ports(args):
    ports = link.list_ports_marked()
    if not ports:
        print("no serial ports found")
    for dev, desc, mark in ports:
        print("%-20s %s%s" % (dev, desc, "  <- %s" % mark if mark else ""))


def open_link(args):
    return link.Link(link.resolve_port(args.port))


def cmd_info(args):
    with open_link(args) as ln:
        info = ln.command(P.C_INFO)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return
    for k in sorted(info):
        print("%-26s %s" % (k, info[k]))


def cmd_time(args):
    with open_link(args) as ln:
        r = ln.command(P.C_TIME, {"t": int(time.time())})
    print("device clock set to %s" % time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["clock"])))
