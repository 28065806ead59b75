"""oimon decode CAPTURE [--json]: decode a raw byte capture of the serial stream (both
directions' frames are recognised), one line per frame, then a last line with the counts of
good frames, bad frames and sequence gaps. Bad frames are counted, never printed as data; the
decoder resynchronises at the next 0x00 delimiter."""
import json
import struct

from oimon import validate
from oimon.errors import OimonError
from oimon_common import protocol as P
from oimon_common import decode as D

STATUS = {P.S_OK: "ok", P.S_BAD_REQUEST: "bad request", P.S_UNKNOWN: "unknown command",
          P.S_AUTH: "auth refused", P.S_REPLAY: "replay refused", P.S_RANGE: "out of range",
          P.S_BUSY: "busy", P.S_ERROR: "device error"}


def register(sub):
    p = sub.add_parser("decode", help="decode a raw capture of the serial stream")
    p.add_argument("capture", help="file with the raw bytes as read from the port")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_decode)


def _json(b):
    """The JSON of a frame, or None: a capture is untrusted (bounded depth, no NaN)."""
    try:
        return validate.loads(bytes(b), "frame")
    except OimonError:
        return None


def describe(ftype, seq, pl):
    """dict describing one good frame (no key material: a command's MAC is left out)."""
    d = {"seq": seq, "type": P.TYPE_NAMES.get(ftype, "0x%02x" % ftype), "len": len(pl)}
    try:
        if ftype in (P.T_SAMPLES, P.T_RAW):
            first, rate, rows = (D.unpack_samples if ftype == P.T_SAMPLES else D.unpack_raw)(pl)
            d.update(first=first, rate=rate, n=len(rows))
            if rows:
                d["first_sample"] = list(rows[0])
        elif ftype in (P.T_EVENT, P.T_SUMMARY, P.T_STATUS):
            d["data"] = _json(pl)
            if d["data"] is None:
                d["malformed"] = True
        elif ftype == P.T_RESP:
            if len(pl) < 2:
                raise ValueError("short response")
            d.update(cmd=P.CMD_NAMES.get(pl[0], pl[0]), status=STATUS.get(pl[1], pl[1]),
                     data=_json(pl[2:]) if len(pl) > 2 else {})
        elif ftype == P.T_LOG:
            rs, total, off, chunk = D.unpack_log_chunk(pl)
            d.update(record=rs, total=total, offset=off, chunk=len(chunk))
            if off == 0 and len(chunk) == total:
                r = D.parse_record(chunk)
                d.update(kind=r["kind_name"], t=r["t"])
        elif ftype == P.T_CMD:
            if not pl:
                raise ValueError("empty command")
            cmd = pl[0]
            d["cmd"] = P.CMD_NAMES.get(cmd, cmd)
            args = pl[1:]
            if cmd >= P.AUTH_MIN:
                if len(args) < P.AUTH_HDR:
                    raise ValueError("short authenticated command")
                d["counter"] = struct.unpack_from("<I", args, 0)[0]
                args = args[P.AUTH_HDR:]
            d["args"] = _json(args) if args else {}
    except (ValueError, struct.error, KeyError, IndexError, TypeError, OverflowError,
            RecursionError) as e:
        d["malformed"] = (str(e).splitlines() or [e.__class__.__name__])[0][:200]
    return d


def _line(d):
    extra = " ".join("%s=%s" % (k, json.dumps(v, separators=(",", ":")))
                     for k, v in d.items() if k not in ("seq", "type", "len"))
    return "%5d %-8s %4d  %s" % (d["seq"], d["type"], d["len"], extra)


def decode_bytes(data):
    """(list of frame dicts, counts dict) of a capture's bytes."""
    dec = P.Decoder()
    frames = [describe(*f) for f in dec.feed(data)]
    tail = dec._n                         # bytes after the last delimiter: an incomplete frame
    counts = {"good": dec.good, "bad": dec.bad + (1 if tail else 0), "gaps": dec.gaps,
              "lost": dec.lost, "repeats": dec.repeats, "bytes": len(data)}
    return frames, counts


def cmd_decode(args):
    try:
        with open(args.capture, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise OimonError("capture %s does not exist" % args.capture)
    except IsADirectoryError:
        raise OimonError("capture %s is a folder, not a file" % args.capture)
    except OSError as e:
        raise OimonError("cannot read capture %s: %s" % (args.capture, e.strerror or e))
    frames, c = decode_bytes(data)
    for d in frames:
        print(json.dumps(d, separators=(",", ":")) if args.json else _line(d))
    if args.json:
        print(json.dumps({"summary": c}, separators=(",", ":")))
    else:
        print("%d good frames, %d bad frames, %d sequence gaps (%d frames missing), %s%d bytes"
              % (c["good"], c["bad"], c["gaps"], c["lost"],
                 "%d repeated frames (number went back), " % c["repeats"] if c["repeats"] else "",
                 c["bytes"]))
    return 0
