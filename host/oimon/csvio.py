"""CSV in and out of recordings (oimon import, oimon export csv): both stream blocks of rows,
so a 24 h file passes through in bounded memory."""
import io
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from oimon import recording
from oimon.errors import OimonError

BLOCK_LINES = 1 << 16
MIN_RATE, MAX_RATE = 1.0, 20000.0      # plausible sample rates of a load recording (Hz)
TIME_UNITS = {"s": 1.0, "ms": 1e-3}
# device units per physical unit
FORCE_UNITS = {"N": 10.0, "kN": 1e4, "daN": 100.0, "kgf": 98.0665, "kg": 98.0665, "lbf": 44.482216}
MOMENT_UNITS = {"N*m": 100.0, "Nm": 100.0, "N.m": 100.0, "kN*m": 1e5, "N*cm": 1.0, "Ncm": 1.0}
CHANNEL_NAMES = [c["name"] for c in recording.CAL_CHANNELS]


def _parse_spec(columns, units, channels):
    try:
        cols = [int(c) for c in columns.split(",")]
    except ValueError:
        raise OimonError("--columns wants 1-based column numbers like 1,18, got %r" % columns)
    if any(c < 1 for c in cols):
        raise OimonError("--columns are 1-based (the first column is 1)")
    us = [u.strip() for u in units.split(",")]
    if len(us) != len(cols):
        raise OimonError("--units names %d units for %d columns" % (len(us), len(cols)))
    time_col = None
    data = []
    for c, u in zip(cols, us):
        if u in TIME_UNITS:
            if time_col is not None:
                raise OimonError("two time columns (%d and %d)" % (time_col[0], c))
            time_col = (c, TIME_UNITS[u])
        elif u in FORCE_UNITS or u in MOMENT_UNITS:
            data.append((c, u))
        else:
            raise OimonError("unknown unit %r (time: %s; force: %s; moment: %s)" % (
                u, ", ".join(TIME_UNITS), ", ".join(FORCE_UNITS), ", ".join(MOMENT_UNITS)))
    if not data:
        raise OimonError("no data column: give a force or moment column")
    if len(data) > 3:
        raise OimonError("at most 3 data columns (axial, moment_ap, moment_ml)")
    names = [n.strip() for n in channels.split(",")] if channels else CHANNEL_NAMES[:len(data)]
    if len(names) != len(data) or any(n not in CHANNEL_NAMES for n in names) \
            or len(set(names)) != len(names):
        raise OimonError("--channels wants %d distinct names of %s" % (len(data), ", ".join(CHANNEL_NAMES)))
    spec = []
    for (c, u), name in zip(data, names):
        ch = CHANNEL_NAMES.index(name)
        if ch == 0 and u not in FORCE_UNITS:
            raise OimonError("axial is a force: unit %r is not one" % u)
        if ch > 0 and u not in MOMENT_UNITS:
            raise OimonError("%s is a moment: unit %r is not one" % (name, u))
        spec.append((c - 1, ch, FORCE_UNITS.get(u) or MOMENT_UNITS[u]))
    return time_col, spec, cols


def _split(line, delim):
    return line.split(delim) if delim else line.split()


def _is_number_line(line, delim, cols=None):
    """A data line: the asked-for columns (all fields if None) are numbers (other columns may
    be text, e.g. an export's clock_utc)."""
    f = _split(line.strip(), delim)
    try:
        [float(x) for x in f if x.strip() != ""]
        return bool(f)
    except ValueError:
        pass
    if cols is None or not all(c < len(f) for c in cols):
        return False
    try:
        [float(f[c]) for c in cols]
        return True
    except ValueError:
        return False


def _guess_delim(line):
    for d in ("\t", ",", ";"):
        if d in line:
            return d
    return None


class _CsvBlocks:
    """Numeric blocks (float64, all requested columns) of a delimited text file."""

    def __init__(self, path, cols, delim=None, skip=None):
        self.path = path
        try:
            self.f = open(path, "r", encoding="utf-8", errors="replace", newline="")
        except OSError as e:
            raise OimonError("%s: cannot open (%s)" % (path, e.strerror))
        self.cols = [c - 1 for c in cols]
        self.line_no = 0
        first = None
        skipped = 0
        while True:
            line = self.f.readline()
            if not line:
                break
            self.line_no += 1
            if not line.strip():
                skipped += 1
                continue
            d = delim if delim is not None else _guess_delim(line)
            if skip is not None and skipped < skip:
                skipped += 1
                continue
            if skip is None and not _is_number_line(line, d, self.cols):
                skipped += 1
                if skipped > 100:
                    raise OimonError("%s: no numeric rows in the first 100 lines" % path)
                continue
            first = line
            self.delim = d
            break
        if first is None:
            raise OimonError("%s: no data rows" % path)
        self._pending = [first]
        self._pending_no = self.line_no

    def __iter__(self):
        maxc = max(self.cols)
        while True:
            lines = self._pending
            start_no = self._pending_no
            self._pending = []
            for line in self.f:
                lines.append(line)
                if len(lines) >= BLOCK_LINES:
                    break
            if not lines:
                return
            self.line_no = start_no + len(lines)
            self._pending_no = self.line_no + 1
            rows = []
            for k, line in enumerate(lines):
                if not line.strip():
                    continue
                f = _split(line.strip("\r\n"), self.delim)
                if len(f) <= maxc:
                    raise OimonError("%s:%d: %d fields, column %d asked for" % (
                        self.path, start_no + k, len(f), maxc + 1))
                try:
                    rows.append([float(f[c]) for c in self.cols])
                except ValueError:
                    raise OimonError("%s:%d: not a number in columns %s: %r" % (
                        self.path, start_no + k, ",".join(str(c + 1) for c in self.cols),
                        line.strip()[:60]))
            if rows:
                a = np.array(rows, dtype=float)
                if not np.isfinite(a).all():
                    raise OimonError("%s:%d..%d: NaN or infinite value" % (
                        self.path, start_no, start_no + len(lines) - 1))
                yield a

    def close(self):
        self.f.close()


class StreamResampler:
    """scipy.signal.resample_poly(x, up, down, axis=0) computed block by block: equal to the
    whole-signal result (to float rounding) with bounded memory. Each output block is computed
    from the input with enough context on both sides that the filter never sees a block edge."""

    def __init__(self, up, down):
        g = math.gcd(up, down)
        self.up, self.down = up // g, down // g
        half = 10 * max(self.up, self.down)               # resample_poly's default filter
        p = half // self.up + 2 * self.down + 4
        self.pad_r = p
        self.pad_l = -(-p // self.down) * self.down      # a multiple of down
        self.hist = None                                 # input from index h0 on
        self.h0 = 0
        self.done = 0                                    # input index consumed (multiple of down)
        self.n = 0

    def _run(self, left, stop, end):
        from scipy.signal import resample_poly
        seg = self.hist[left - self.h0:end - self.h0]
        y = resample_poly(seg, self.up, self.down, axis=0)
        a = (self.done - left) * self.up // self.down
        if stop is None:
            return y[a:]
        return y[a:(stop - left) * self.up // self.down]

    def feed(self, x):
        self.hist = x if self.hist is None else np.concatenate([self.hist, x])
        self.n += len(x)
        safe = (self.n - self.pad_r) // self.down * self.down
        if safe <= self.done:
            return np.zeros((0,) + x.shape[1:])
        left = max(0, self.done - self.pad_l)
        out = self._run(left, safe, self.n)
        self.done = safe
        keep = max(0, self.done - self.pad_l)
        self.hist = self.hist[keep - self.h0:]
        self.h0 = keep
        return out

    def finish(self):
        if self.hist is None or self.done >= self.n:
            return None
        left = max(0, self.done - self.pad_l)
        out = self._run(left, None, self.n)
        self.done = self.n
        return out


def import_csv(path, columns, units, out, rate=None, resample=None, channels=None,
               delimiter=None, skip=None, device_id="IMPORT", start=None):
    time_col, spec, cols = _parse_spec(columns, units, channels)
    if rate is not None and not (0 < rate <= 100000):
        raise OimonError("--rate %s is out of range (0..100000 Hz)" % rate)
    if resample is not None and not (1 <= resample <= 100000):
        raise OimonError("--resample %s is out of range (1..100000 Hz)" % resample)
    if Path(out).resolve() == Path(path).resolve():
        raise OimonError("--out would overwrite the input %s" % path)
    src = _CsvBlocks(path, cols, delimiter.encode().decode("unicode_escape") if delimiter else None,
                     skip)
    idx = {c - 1: k for k, c in enumerate(cols)}
    w = None
    try:
        blocks = iter(src)
        first = next(blocks, None)
        if first is None:
            raise OimonError("%s: no data rows" % path)
        t_first = None
        if time_col is not None:
            t = first[:, idx[time_col[0] - 1]] * time_col[1]
            t_first = float(t[0])
            if len(t) >= 2:
                dt = np.diff(t)
                med = float(np.median(dt))
                if med <= 0:
                    raise OimonError("%s: time column %d does not increase" % (path, time_col[0]))
                col_rate = 1.0 / med
                unit = [u.strip() for u in units.split(",")][cols.index(time_col[0])]
                if not MIN_RATE <= col_rate <= MAX_RATE:
                    other = [u for u in TIME_UNITS if u != unit]
                    raise OimonError(
                        "%s: time column %d steps %.6g %s, i.e. %.6g Hz: not a plausible sample "
                        "rate (%g..%g Hz); is its unit %s rather than %s?" % (
                            path, time_col[0], med / time_col[1], unit, col_rate, MIN_RATE,
                            MAX_RATE, " or ".join(other), unit))
                if rate is None:
                    rate = col_rate
                    if abs(rate - round(rate)) < 1e-3 * rate:
                        rate = float(round(rate))
                elif abs(rate / col_rate - 1) > 0.01:
                    raise OimonError("--rate %g Hz disagrees with time column %d (%.6g Hz with "
                                     "unit %s)" % (rate, time_col[0], col_rate, unit))
        if rate is None:
            raise OimonError("give --rate (no time column to take it from)")
        src_rate = rate
        if resample:
            if abs(rate - round(rate)) > 1e-9:
                raise OimonError("--resample needs a whole-number source rate, not %g Hz" % rate)
            rs = StreamResampler(int(resample), int(round(rate)))
            out_rate = int(resample)
        else:
            rs = None
            out_rate = rate
        header = {
            "device_id": device_id, "firmware": None, "rate_hz": out_rate, "kind": "calibrated",
            "start_time": start, "source": "oimon import", "calibration": None,
            "import": {"file": os.path.basename(str(path)), "columns": cols,
                       "units": [u.strip() for u in units.split(",")],
                       "channels": [CHANNEL_NAMES[ch] for _, ch, _ in spec],
                       "rate_hz": src_rate, "time_offset_s": t_first,
                       "resampled": ("scipy.signal.resample_poly(up=%d, down=%d), Kaiser-windowed "
                                     "FIR (beta 5)" % (rs.up, rs.down)) if rs else None},
        }
        w = recording.Writer(out, header, atomic=True)
        at = 0
        last_t = None
        rows_seen = 0

        def emit(y):
            nonlocal at
            if y is None or not len(y):
                return
            rows = np.clip(np.rint(y), -2**31, 2**31 - 1).astype(np.int32)
            w.write(at, rows)
            at += len(rows)

        for a in _chain(first, blocks):
            if time_col is not None:            # every step one period (+-50 %): no gaps
                t = a[:, idx[time_col[0] - 1]] * time_col[1]
                tt = t if last_t is None else np.concatenate([[last_t], t])
                bad = np.nonzero(np.abs(np.diff(tt) * src_rate - 1) > 0.5)[0]
                if len(bad):
                    k = bad[0] + (0 if last_t is None else -1) + 1
                    raise OimonError("%s: data row %d: time %.6g s is off the %g Hz grid (uneven or "
                                     "missing samples)" % (path, rows_seen + k + 1, t[k], src_rate))
                last_t = float(t[-1])
            rows_seen += len(a)
            dev = np.zeros((len(a), 3))
            for c, ch, scale in spec:
                dev[:, ch] = a[:, idx[c]] * scale
            emit(rs.feed(dev) if rs else dev)
        if rs:
            emit(rs.finish())
        w.close()
        return header, at
    except BaseException:
        if w is not None:
            w.abort()
        raise
    finally:
        src.close()


def _chain(first, rest):
    yield first
    yield from rest


def _fmt(ch, counts):
    if counts:
        return "%d"
    s = ch.get("scale", 1)
    if s >= 1:
        return "%d" if float(s).is_integer() else "%.6g"
    return "%%.%df" % max(0, int(round(-math.log10(s))))


def _start_time(header):
    """The header's start_time (ISO 8601, of the file's first sample) as UTC datetime64[us],
    None if absent or not a time."""
    import datetime as dt
    st = header.get("start_time")
    if not isinstance(st, str):
        return None
    try:
        t = dt.datetime.fromisoformat(st.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return np.datetime64(t, "us")


def check_start(text):
    """--start of an import: an ISO 8601 date or time (UTC if it has no zone), normalised."""
    import datetime as dt
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise OimonError("--start %r is not an ISO 8601 time (e.g. 2025-03-01T10:00:00Z)"
                         % str(text)[:40])
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    if not 1900 <= t.year <= dt.date.today().year + 1:
        raise OimonError("--start %s is not a plausible measurement time" % t.date())
    return t.isoformat()


def export_csv(path, out, counts=False, events=None, salvage=False):
    with recording.Reader(path) as r:
        chans = r.header["channels"]
        scale = np.array([1.0 if counts else c.get("scale", 1) for c in chans])
        names = ["%s_%s" % (c["name"], "counts" if counts else c.get("unit", "")) for c in chans]
        fmts = ["%d", "%.3f"] + [_fmt(c, counts) for c in chans]
        to_stdout = out == "-"
        tmp = None if to_stdout else Path(str(out) + ".part")
        ev_tmp = Path(str(events) + ".part") if events else None
        try:
            f = sys.stdout if to_stdout else open(tmp, "w", newline="")
            ef = open(ev_tmp, "w") if events else None
        except OSError as e:
            raise OimonError("%s: cannot write (%s)" % (out, e.strerror))
        n = 0
        ok = False
        try:
            t0 = _start_time(r.header)
            f.write("sample,time_s," + ",".join(names) + (",clock_utc" if t0 is not None else "")
                    + "\n")
            rate = float(r.rate)
            idx0 = None
            for c in r.chunks():
                if c[0] == "event":
                    if ef:
                        ef.write(json.dumps(c[1], sort_keys=True) + "\n")
                    continue
                _, first, a = c
                if idx0 is None:
                    idx0 = first              # the recording's first sample: time 0, start_time
                idx = np.arange(first, first + len(a))
                rel = (idx - idx0) / rate
                cols = [idx, rel] + [a[:, k] * scale[k] if not counts else a[:, k]
                                     for k in range(a.shape[1])]
                buf = io.StringIO()
                np.savetxt(buf, np.column_stack(cols), fmt=fmts, delimiter=",")
                if t0 is None:
                    f.write(buf.getvalue())
                else:
                    clock = np.datetime_as_string(
                        t0 + np.rint(rel * 1e6).astype("timedelta64[us]"), unit="ms")
                    f.write("".join("%s,%sZ\n" % (ln, ck) for ln, ck in
                                    zip(buf.getvalue().splitlines(), clock)))
                n += len(a)
            if r.error and not salvage:
                raise OimonError("%s (nothing written; --salvage exports the good part)" % r.error)
            ok = True
        finally:
            if not to_stdout:
                f.close()
            if ef:
                ef.close()
            for t, final in ((tmp, out), (ev_tmp, events)):
                if t is None:
                    continue
                if ok:
                    os.replace(t, final)
                else:
                    try:
                        os.unlink(t)
                    except OSError:
                        pass
        return n, r.error


# --- IMU channels (recording format version 3) ---------------------------------------------
IMU_CSV_HEADER = ("imu_sample,t_s,acc_x_g,acc_y_g,acc_z_g,gyro_x_dps,gyro_y_dps,gyro_z_dps,"
                  "flags\n")


def import_imu(path, out, method="index", device_id="IMPORT", start=None):
    """An accelerometer file (UMAFall layout t_s,ax_g,ay_g,az_g; .csv or .csv.gz) -> an IMU-only
    recording: no load samples (header "load": "missing"), IMU rows at 104 Hz with the angular
    rate MISSING and flagged (imu_import.py states the resampling). Returns (header, rows)."""
    from oimon import imu_import
    rows, info = imu_import.read_imu_file(path, method)
    stored = rows.copy()
    stored[:, 4:7] = recording.MISSING
    header = {"device_id": device_id, "firmware": "import", "rate_hz": 1000,
              "kind": "calibrated", "source": "oimon import", "load": "missing",
              "start_time": start or "1970-01-01T00:00:00+00:00", "import": info,
              "imu": recording.imu_header(imu_import.IMU_HZ, info["missing"][:3], "import"),
              "missing": info["missing"]}
    with recording.Writer(out, header, atomic=True) as w:
        w.imu(0, stored)
    return header, rows


def export_imu_csv(path, out, salvage=False):
    """The IMU rows of a recording as CSV: imu_sample, t_s (the load-sample stamp / rate), acc in
    g, gyro in dps, flags; a channel not measured is an empty field. Returns (rows, error)."""
    with recording.Reader(path) as r:
        if r.imu is None:
            raise OimonError("%s: no IMU channels (a version %d recording without IMU data)"
                             % (path, r.version))
        rate = float(r.rate)
        to_stdout = out == "-"
        tmp = None if to_stdout else Path(str(out) + ".part")
        try:
            f = sys.stdout if to_stdout else open(tmp, "w", newline="")
        except OSError as e:
            raise OimonError("%s: cannot write (%s)" % (out, e.strerror))
        n = 0
        ok = False
        try:
            f.write(IMU_CSV_HEADER)
            for c in r.chunks(imu=True):
                if c[0] != "imu":
                    continue
                _, first, a = c
                lines = []
                for i, row in enumerate(a.tolist()):
                    v = ["" if x == recording.MISSING else ("%.3f" % (x / 1000.0))
                         for x in row[1:4]]
                    g = ["" if x == recording.MISSING else ("%.1f" % (x / 10.0)) for x in row[4:7]]
                    lines.append("%d,%.3f,%s,%s,%d\n" % (first + i, row[0] / rate, ",".join(v),
                                                         ",".join(g), row[7]))
                f.write("".join(lines))
                n += len(a)
            if r.error and not salvage:
                raise OimonError("%s (nothing written; --salvage exports the good part)" % r.error)
            ok = True
        finally:
            if not to_stdout:
                f.close()
                if ok:
                    os.replace(tmp, out)
                else:
                    try:
                        os.unlink(tmp)
                    except OSError:
                        pass
        return n, r.error
