"""Input validation, one layer per kind of value (docs/host.md "Input checks").

Every command-line value and every value read from a user's file goes through one of these:
numbers (finite, in range, in the user's unit), durations (> 0), dates (not before the device
could exist, not in the future), keys (known names only), JSON documents (bounded depth and size,
no NaN/Infinity), paths (length, folder exists). Each failure is an OimonError with one line that
names the value, what was expected and what was given.

argparse types: number(), integer(), duration(), date_arg(); the `oimon` parser wraps every bare
`type=float`/`type=int` in number()/integer(), so no argument anywhere accepts nan, inf or 1e999.
"""
import datetime as dt
import json
import math
import os

from oimon.errors import OimonError

# ~ the first oimon prototype: a date before it cannot be a date of this device's history
DEVICE_EPOCH = dt.date(2024, 1, 1)
MAX_JSON_DEPTH = 32
MAX_JSON_BYTES = 16 << 20
MAX_PATH = 1024                  # PATH_MAX is 4096 on Linux; a longer name is a mistake
MAX_NAME = 255                   # NAME_MAX of ext4/xfs/tmpfs
HUGE = 1e12                      # no quantity of this tool is anywhere near


class ArgError(OimonError):
    """A bad value; argparse turns the ValueError/ArgumentTypeError text into its message."""


def _fmt(x):
    return ("%g" % x) if isinstance(x, float) else str(x)


def check_number(x, what, lo=None, hi=None, lo_open=False, hi_open=False, unit="", integer=False):
    """x as a finite number within [lo, hi] (open ends with lo_open/hi_open), else OimonError
    naming `what` and the range in `unit`."""
    u = (" " + unit) if unit else ""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise OimonError("%s must be a number%s, not %s" % (what, " in " + unit if unit else "",
                                                           _show(x)))
    if isinstance(x, float) and not math.isfinite(x):
        raise OimonError("%s must be a finite number%s, not %s" % (what, " in " + unit if unit
                                                                   else "", _fmt(x)))
    if integer and x != int(x):
        raise OimonError("%s must be a whole number, not %s" % (what, _fmt(x)))
    if lo is None and hi is None and abs(x) > HUGE:
        raise OimonError("%s %s%s is implausibly large" % (what, _fmt(x), u))
    bad = (lo is not None and (x <= lo if lo_open else x < lo)) or \
          (hi is not None and (x >= hi if hi_open else x > hi))
    if bad:
        raise OimonError("%s %s%s is out of range (must be %s%s)" % (
            what, _fmt(x), u, _range(lo, hi, lo_open, hi_open), u))
    return int(x) if integer else x


def _range(lo, hi, lo_open, hi_open):
    if lo is not None and hi is not None:
        if not lo_open and not hi_open:
            return "%s..%s" % (_fmt(lo), _fmt(hi))
        return "%s %s and %s %s" % (">" if lo_open else ">=", _fmt(lo), "<" if hi_open else "<=",
                                    _fmt(hi))
    if lo is not None:
        return "%s %s" % (">" if lo_open else ">=", _fmt(lo))
    return "%s %s" % ("<" if hi_open else "<=", _fmt(hi))


def _show(x):
    s = json.dumps(x) if not isinstance(x, (bytes, bytearray)) else repr(x)
    return s if len(s) <= 40 else s[:37] + "..."


def parse_number(text, what="value", integer=False):
    """Text -> finite float/int, or OimonError (nan, inf, 1e999, '', '5kg' are refused)."""
    s = str(text).strip()
    try:
        if integer:
            v = int(s, 10)
        else:
            v = float(s)
    except ValueError:
        try:
            f = float(s)
        except ValueError:
            f = None
        if integer and f is not None and math.isfinite(f) and f == int(f):
            return int(f)
        raise OimonError("%s %r is not a %s" % (what, str(text)[:40],
                                                "whole number" if integer else "number"))
    if not integer and not math.isfinite(v):
        raise OimonError("%s %r is not a finite number" % (what, str(text)[:40]))
    return v


class _Type:
    """An argparse type: its errors are ArgumentTypeError so argparse names the option."""

    def __init__(self, integer=False, lo=None, hi=None, lo_open=False, hi_open=False, unit="",
                 name=None):
        self.integer, self.lo, self.hi = integer, lo, hi
        self.lo_open, self.hi_open, self.unit = lo_open, hi_open, unit
        self.__name__ = name or ("whole number" if integer else "number")

    def __call__(self, text):
        import argparse
        try:
            v = parse_number(text, "value", self.integer)
            return check_number(v, "value", self.lo, self.hi, self.lo_open, self.hi_open,
                                self.unit, self.integer)
        except OimonError as e:
            raise argparse.ArgumentTypeError(str(e))

    def __repr__(self):
        return self.__name__


def number(lo=None, hi=None, lo_open=False, hi_open=False, unit=""):
    return _Type(False, lo, hi, lo_open, hi_open, unit)


def integer(lo=None, hi=None, unit=""):
    return _Type(True, lo, hi, unit=unit)


def duration(hi=30 * 86400, unit="s"):
    """A duration: > 0 and at most `hi` (30 days by default)."""
    return _Type(False, 0, hi, lo_open=True, unit=unit, name="duration")


def parse_date(text, what="date", earliest=DEVICE_EPOCH, latest_days_ahead=1):
    """YYYY-MM-DD -> date; before `earliest` (the device cannot have existed) or more than
    `latest_days_ahead` days in the future: OimonError."""
    s = str(text).strip()
    try:
        d = dt.date.fromisoformat(s)
    except ValueError:
        raise OimonError("%s %r is not a date of the form YYYY-MM-DD" % (what, s[:40]))
    if earliest is not None and d < earliest:
        raise OimonError("%s %s is before any oimon device existed (%s)" % (what, d, earliest))
    if latest_days_ahead is not None and d > dt.date.today() + dt.timedelta(days=latest_days_ahead):
        raise OimonError("%s %s is in the future" % (what, d))
    return d


def date_arg(earliest=DEVICE_EPOCH, latest_days_ahead=1):
    import argparse

    def conv(text):
        try:
            return parse_date(text, "date", earliest, latest_days_ahead).isoformat()
        except OimonError as e:
            raise argparse.ArgumentTypeError(str(e))
    conv.__name__ = "date"
    return conv


def check_keys(obj, known, what):
    """A dict with only `known` keys, else OimonError naming the unknown ones."""
    if not isinstance(obj, dict):
        raise OimonError("%s must be a JSON object, not %s" % (what, type_name(obj)))
    unknown = sorted(k for k in obj if k not in known)
    if unknown:
        raise OimonError("%s: unknown key%s %s (known: %s)" % (
            what, "s" if len(unknown) > 1 else "", ", ".join(map(repr, unknown)),
            ", ".join(sorted(known))))
    return obj


def type_name(x):
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false",
            type(None): "null", int: "a number", float: "a number"}.get(type(x), type(x).__name__)


def _no_constant(name):
    raise ValueError("%s is not a number JSON allows" % name)


def json_depth_ok(x, limit=MAX_JSON_DEPTH):
    """Iterative (no recursion) depth check of a decoded JSON value."""
    stack = [(x, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            if d > limit:
                return False
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return True


def _raw_depth(text):
    """Bracket nesting of JSON text without parsing it (strings skipped): the json module
    recurses, so a 100 000-deep document must be refused before json.loads sees it."""
    depth = best = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > best:
                best = depth
                if best > MAX_JSON_DEPTH:
                    return best
        elif ch in "]}":
            depth -= 1
    return best


def loads(text, what="JSON"):
    """json.loads for untrusted input: bounded size and depth, NaN/Infinity refused,
    duplicate keys refused; one OimonError line otherwise."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise OimonError("%s: not UTF-8 text (byte %d)" % (what, e.start))
    if len(text) > MAX_JSON_BYTES:
        raise OimonError("%s: %d bytes is too large for JSON input (at most %d)"
                         % (what, len(text), MAX_JSON_BYTES))
    if _raw_depth(text) > MAX_JSON_DEPTH:
        raise OimonError("%s: nested more than %d levels deep" % (what, MAX_JSON_DEPTH))

    def pairs(kv):
        d = {}
        for k, v in kv:
            if k in d:
                raise ValueError("duplicate key %r" % k)
            d[k] = v
        return d
    try:
        return json.loads(text, parse_constant=_no_constant, object_pairs_hook=pairs)
    except RecursionError:
        raise OimonError("%s: nested too deeply" % what)
    except ValueError as e:
        raise OimonError("%s: not valid JSON (%s)" % (what, str(e).splitlines()[0]))


def check_out_path(path, what="output file"):
    """A file to write: name not absurdly long, its folder exists. Returns path."""
    p = os.fspath(path)
    if p == "-":
        return p
    if not p:
        raise OimonError("%s: empty file name" % what)
    if "\0" in p:
        raise OimonError("%s: file name contains a NUL byte" % what)
    if len(os.path.abspath(p)) > MAX_PATH or any(len(c.encode()) > MAX_NAME
                                                 for c in p.split(os.sep)):
        raise OimonError("%s: path too long (%d characters; at most %d, %d per name)"
                         % (what, len(p), MAX_PATH, MAX_NAME))
    d = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(d):
        raise OimonError("%s %s: folder %s does not exist" % (what, p, d))
    if os.path.isdir(p):
        raise OimonError("%s %s is a folder" % (what, p))
    return p
