"""oimon serve [--bind 127.0.0.1] [--http-port 8765] [--virtual SCENARIO]: the clinic dashboard
(oimon.web, docs/dashboard.md) over the database; the live page follows the device on --port
(or $OIMON_PORT), or a virtual device started here."""
import ipaddress
import sys

from oimon import db, web
from oimon.errors import OimonError


def register(sub):
    p = sub.add_parser("serve", help="the clinic dashboard in the browser: devices due for "
                       "retightening, recent events, patient pages, a live page (local only)")
    p.add_argument("--bind", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only)")
    p.add_argument("--http-port", type=int, default=8765, help="TCP port (default 8765)")
    p.add_argument("--virtual", metavar="SCENARIO",
                   help="start a virtual device playing this scenario for the live page (e.g. demo)")
    p.add_argument("--no-live", action="store_true", help="no live page, even if a port is set")
    p.set_defaults(func=cmd_serve)


def _check_bind(addr):
    if addr == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise OimonError("--bind %r is not an IP address (the default 127.0.0.1 keeps the dashboard "
                         "on this computer)" % addr)
    return str(ip)


def cmd_serve(args):
    bind = _check_bind(args.bind)
    if not 1 <= args.http_port <= 65535:
        raise OimonError("--http-port %d is outside 1..65535" % args.http_port)
    db.connect(args.db).close()               # a broken database fails here, in one line
    vd = None
    port = None if args.no_live else args.port
    if args.virtual and not args.no_live:
        from oimon_sim.device import start_virtual_device
        vd = start_virtual_device(args.virtual, speed=1, duration=120)     # played in a loop
        port = vd.path
    elif port is None and not args.no_live:
        import os
        port = os.environ.get("OIMON_PORT")
    try:
        loop = ipaddress.ip_address(bind).is_loopback
        app = web.create_app(args.db, device_port=port,
                             hosts=None if loop else ["*"])      # --bind elsewhere: any Host name
        if not ipaddress.ip_address(bind).is_loopback:
            print("oimon serve: warning: listening on %s: other computers on this network can open "
                  "the dashboard" % bind, file=sys.stderr)
        host = "[%s]" % bind if ":" in bind else bind
        print("oimon dashboard on http://%s:%d/  (live page: %s; Ctrl-C stops)" % (
            host, args.http_port, "a virtual device" if vd else "the device" if port else "no device"))
        sys.stdout.flush()
        web.serve(app, bind, args.http_port)
    finally:
        if vd is not None:
            vd.stop()
    return 0
