"""oimon record | events: stream calibrated samples into a recording, events into SQLite."""
import datetime as dt
import json
import os
import signal
import sqlite3
import struct
import sys
import threading
import time

from oimon.eventtext import describe
from oimon import db, link, recording, validate
from oimon.errors import OimonError
from oimon_common import protocol as P
from oimon_common import decode as D


def register(sub):
    p = sub.add_parser("record", help="stream the device's loads into a recording")
    p.add_argument("--duration", type=validate.duration(), default=None,
                   help="seconds, > 0 (default: until Ctrl-C, SIGTERM or SIGHUP)")
    p.add_argument("--out", required=True, help="recording file to write")
    p.add_argument("--raw", action="store_true", help="raw ADC counts instead of calibrated loads")
    p.add_argument("--reconnect", type=validate.number(0, 3600, unit="s"), default=30,
                   help="seconds to keep trying when the link drops (default 30)")
    p.add_argument("--live-plot", metavar="PNG",
                   help="redraw the last 10 s into this PNG every second (headless live view)")
    p.add_argument("--status", choices=("auto", "always", "never"), default="auto",
                   help="live status line on stderr (default: when stderr is a terminal)")
    p.set_defaults(func=cmd_record)
    p = sub.add_parser("events", help="list the events in the database")
    p.add_argument("--device", help="only this device")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_events)


class RecordStopped(OimonError):
    """The recording cannot go on (another device on the port): not retried."""


class Recorder:
    """Streams one device into a recording file and the database.

    Each connection starts with a handshake (C_INFO, C_TIME, C_STREAM with a fresh random
    session id): every frame before the C_STREAM answer that carries our session id is stale
    (left in the port's buffer by an earlier program or a crashed host) and dropped, so are
    sample batches that start before the answer's "first". A different "boot" id in the answer
    (or a device counter below the last one seen) means the device restarted: a new segment
    (recording.Writer.segment) with its own time base, so time in the file never runs
    backwards. The file is flushed and the database row updated every FLUSH_S, so a killed
    process leaves both readable up to the last flush."""

    FLUSH_S = 1.0            # file flush (a SIGKILL loses at most this much)
    DB_UPDATE_S = 5.0        # the recording row's totals
    STALL_S = 3.0            # no sample for this long while connected: handshake again

    def __init__(self, port, out, con, raw=False, reconnect=30.0, status=None):
        self.port = port
        self.out = out
        self.con = con
        self.raw = raw
        self.reconnect = reconnect
        self.status = status
        self.ln = None
        self.samples = 0
        self.events = []
        self.good = self.bad = self.gaps = self.lost = 0
        self.batch_errors = 0
        self.stale = 0               # frames dropped: from before this record's stream
        self.duplicates = 0          # samples dropped: already written (repeated batches)
        self.restarts = 0            # device restarts seen (new segments)
        self.next_index = None
        self.info = None
        self.live = None              # LivePlot or None
        self.reconnects = 0
        self.rec_id = None
        self.w = None
        self._rate_mark = (time.monotonic(), 0)
        self.rate_now = 0.0
        self.rate = 1000
        self._boot = None            # boot id of the device's current run
        self._seg = None             # (file index of the segment's device_first, device_first)
        self._dev_next = None        # the device counter (unwrapped) expected next
        self._t0 = None              # monotonic time of the first handshake
        self._idx0 = 0               # file index at _t0
        self._last_sample_at = 0.0
        self._pending_segment = None
        self.stop = {"now": False}

    # --- connection and handshake ---------------------------------------------------------
    def _connect(self):
        self.ln = link.Link(self.port)
        self._handshake()

    def _handshake(self, fresh=True):
        """fresh: a new connection (frames before the answer are stale); else the same link
        after a silence (a busy machine can starve the stream for seconds): the frames that
        came meanwhile are this stream's and are kept."""
        ln = self.ln
        info = ln.command(P.C_INFO)
        if self.info is not None and info.get("device_id") != self.info.get("device_id"):
            ln.close()
            self.ln = None
            raise RecordStopped("the device on %s is now %s, not %s: recording stopped; what was "
                                "recorded is kept" % (self.port, info.get("device_id"),
                                                      self.info.get("device_id")))
        self.info = info
        ln.command(P.C_TIME, {"t": int(time.time())})
        session = int.from_bytes(os.urandom(4), "little")
        r = ln.command(P.C_STREAM, {"mode": "raw" if self.raw else "cal", "session": session},
                       match=lambda d: isinstance(d, dict) and d.get("session", session) == session)
        ln.dec.reset_seq()
        if fresh:
            self.stale += len(ln.pending)     # everything before the answer: not this stream
        else:
            for ftype, _seq, pl in ln.pending:
                self._frame(ftype, pl)
        ln.pending = []
        now = time.monotonic()
        self._last_sample_at = now
        first = r.get("first") if isinstance(r, dict) else None
        boot = r.get("boot") if isinstance(r, dict) else None
        self.rate = (r.get("rate") if isinstance(r, dict) else None) or self.info.get("rate", 1000)
        if not isinstance(first, int):
            first = None
        restarted = self._seg is not None and (
            (boot is not None and self._boot is not None and boot != self._boot)
            or (first is not None and self._dev_next is not None
                and first < (self._dev_next & 0xFFFFFFFF) and self._dev_next < 1 << 32))
        self._boot = boot
        self._min_first = first               # device batches before this are stale
        if self._seg is None:
            self._t0 = now
            self._seg = "start"               # set at the first batch (its index is the base)
        elif restarted:
            self.restarts += 1
            self._pending_segment = {"reason": "device restart", "boot": boot,
                                     "at": now, "start_time": _iso_now()}
            self._seg = "restart"
            self._dev_next = None

    def _disconnect(self, stop=True):
        if self.ln is None:
            return
        if stop:
            try:
                self.ln.command(P.C_STREAM, {"mode": "off"}, timeout=1.0)
            except OimonError:
                pass
        self._count()
        self.ln.close()
        self.ln = None

    def _count(self):
        d = self.ln.dec
        self.good += d.good
        self.bad += d.bad
        self.gaps += d.gaps
        self.lost += d.lost
        d.good = d.bad = d.gaps = d.lost = 0

    # --- the run ---------------------------------------------------------------------------
    def header(self):
        started = dt.datetime.now(dt.timezone.utc)
        return {
            "device_id": self.info.get("device_id"), "firmware": self.info.get("fw"),
            "rate_hz": self.info.get("rate", 1000), "kind": "raw" if self.raw else "calibrated",
            "start_time": started.isoformat(), "calibrated": self.info.get("calibrated"),
            "limits": self.info.get("limits"), "phase": self.info.get("phase"),
            "body_weight_kg": self.info.get("body_weight_kg"), "source": "oimon record",
            "version": recording.SEGMENTS_VERSION,
        }

    def run(self, duration, stop=None):
        """Record for `duration` s (None/0: until stop["now"] or KeyboardInterrupt). A failure
        before the first sample leaves no recording row and no file; later ones keep both."""
        stop = stop if stop is not None else self.stop
        self.stop = stop
        try:
            self._connect()
            header = self.header()
            self.w = recording.Writer(self.out, header)
        except BaseException:
            self._disconnect()
            raise
        try:
            dev_id = header["device_id"]

            def insert():
                with self.con:
                    db.ensure_device(self.con, dev_id)
                    return self.con.execute(
                        "INSERT INTO recording(device_id, path, started) VALUES (?,?,?)",
                        (dev_id, os.path.abspath(str(self.out)), header["start_time"])).lastrowid
            self.rec_id = db.retry(insert, what="database write (recording row)")
            self._loop(duration, stop)
        except BaseException:
            failed = True
            raise
        else:
            failed = False
        finally:
            self._finish(header, failed)
        return header

    def _finish(self, header, failed):
        err = None
        if self.ln is not None:
            self._disconnect()
        try:
            self.w.close()
        except OimonError as e:
            err = e
        if self.rec_id is not None:
            if failed and not self.samples and not self.events:
                self._quiet_db("DELETE FROM recording WHERE id=?", (self.rec_id,))
                try:
                    os.unlink(self.out)
                except OSError:
                    pass
                self.rec_id = None
            else:
                try:
                    self._update_row()
                except (OimonError, sqlite3.Error) as e:
                    err = err or OimonError(db.error_line(e) if isinstance(e, sqlite3.Error) else str(e))
        elif failed:
            try:
                os.unlink(self.out)
            except OSError:
                pass
        if err is not None and not failed:
            raise err

    def _quiet_db(self, q, a):
        try:
            with self.con:
                self.con.execute(q, a)
        except sqlite3.Error:
            pass

    def _update_row(self):
        def upd():
            with self.con:
                self.con.execute(
                    "UPDATE recording SET duration_s=?, samples=?, frames_good=?, frames_bad=?, "
                    "seq_gaps=? WHERE id=?",
                    (self.w.flushed_samples / float(self.w.header["rate_hz"]),
                     self.w.flushed_samples,
                     self.good + (self.ln.dec.good if self.ln else 0),
                     self.bad + (self.ln.dec.bad if self.ln else 0),
                     self.gaps + (self.ln.dec.gaps if self.ln else 0), self.rec_id))
        db.retry(upd, what="database write (recording totals)")

    def _loop(self, duration, stop):
        t_end = time.monotonic() + duration if duration else None
        last_status = last_flush = last_db = time.monotonic()
        while not stop["now"] and (t_end is None or time.monotonic() < t_end):
            try:
                frames = self.ln.pending + self.ln.read_frames()
                self.ln.pending = []
            except OimonError:
                self._disconnect(stop=False)
                self._reconnect(t_end)
                continue
            for ftype, seq, pl in frames:
                self._frame(ftype, pl)
            now = time.monotonic()
            if now - self._last_sample_at > self.STALL_S:
                # the device went quiet on a port that stayed open (a restart behind a USB-UART
                # bridge: the stream is off after boot): ask again
                try:
                    self._handshake(fresh=False)
                except RecordStopped:
                    raise
                except OimonError:
                    self._disconnect(stop=False)
                    self._reconnect(t_end)
                continue
            if now - last_flush >= self.FLUSH_S:
                self.w.flush()
                last_flush = now
            if now - last_db >= self.DB_UPDATE_S:
                self.w.flush()               # the row never counts more than the file holds
                last_flush = now
                self._update_row()
                last_db = now
            if now - last_status > 1.0:
                t0, n0 = self._rate_mark
                self.rate_now = (self.samples - n0) / max(now - t0, 1e-6)
                self._rate_mark = (now, self.samples)
                last_status = now
                if self.status:
                    self.status(self)
                if self.live:
                    self.live.draw(self)

    def _reconnect(self, t_end):
        self.reconnects += 1
        if self.status:
            sys.stderr.write("\nlink to %s lost: reconnecting (up to %g s)...\n" % (self.port, self.reconnect))
        give_up = time.monotonic() + self.reconnect
        busy = False
        while time.monotonic() < give_up and (t_end is None or time.monotonic() < t_end):
            if self.stop["now"]:
                return
            time.sleep(0.5)
            try:
                self._connect()
                return
            except RecordStopped:
                raise
            except OimonError as e:           # gone, not answering, or busy (the path may
                busy = isinstance(e, link.PortBusy)   # now be another program's port)
                if self.ln is not None:
                    self.ln.close()
                    self.ln = None
        if (t_end is not None and time.monotonic() >= t_end) or self.stop["now"]:
            return
        raise OimonError("lost the device on %s%s; what was recorded is kept" % (
            self.port, " (the port is now in use by another program)" if busy else ""))

    # --- frames ----------------------------------------------------------------------------
    def _unwrap(self, first):
        """The device's u32 counter as a growing integer (it wraps after 49.7 days at 1 kHz)."""
        if self._dev_next is None:
            return first
        base = self._dev_next & ~0xFFFFFFFF
        v = base + first
        if v < self._dev_next - (1 << 31):
            v += 1 << 32
        elif v > self._dev_next + (1 << 31) and v >= 1 << 32:
            v -= 1 << 32
        return v

    def _to_file_index(self, dev_first, n):
        """(file index of the batch's first kept row, rows to skip) or None to drop it all."""
        if self._min_first is not None and self._dev_next is None:
            if dev_first < self._min_first and self._min_first - dev_first < 1 << 31:
                self.stale += 1
                return None                   # from before our C_STREAM answer
        if self._seg in ("start", "restart"):
            if self._seg == "start":
                base = dev_first              # the first segment: the device's own counter
                self._idx0 = base
            else:
                elapsed = self._pending_segment["at"] - self._t0
                base = max(self.next_index or 0, self._idx0 + int(round(elapsed * self.rate)))
                seg = {k: v for k, v in self._pending_segment.items() if k != "at"}
                seg.update(segment=self.restarts, first=base, device_first=dev_first)
                self.w.segment(seg)
                self._pending_segment = None
            self._seg = (base, dev_first)
            self._dev_next = dev_first
        dev = self._unwrap(dev_first)
        if dev < self._dev_next - (1 << 20):
            # far behind what this run of the device already sent, yet the same boot: the
            # device restarted without us seeing the handshake change (old firmware)
            self.restarts += 1
            base = max(self.next_index or 0, self._idx0 + int(round(
                (time.monotonic() - self._t0) * self.rate)))
            self.w.segment({"segment": self.restarts, "first": base, "device_first": dev_first,
                            "start_time": _iso_now(), "boot": self._boot,
                            "reason": "device counter ran backwards"})
            self._seg = (base, dev_first)
            dev = dev_first
        idx = self._seg[0] + (dev - self._seg[1])
        skip = 0
        if self.next_index is not None and idx < self.next_index:
            skip = self.next_index - idx              # already written: a repeated batch
            if skip >= n:
                self.duplicates += n
                return None
            self.duplicates += skip
        self._dev_next = max(self._dev_next, dev + n)
        return idx + skip, skip

    def _frame(self, ftype, pl):
        w = self.w
        if ftype in (P.T_SAMPLES, P.T_RAW):
            try:
                first, _rate, rows = (D.unpack_raw if ftype == P.T_RAW else D.unpack_samples)(pl)
            except (ValueError, struct.error):
                self.batch_errors += 1
                return
            if not rows:
                return
            m = self._to_file_index(first, len(rows))
            if m is None:
                return
            idx, skip = m
            rows = rows[skip:]
            w.write(idx, rows)
            self.samples += len(rows)
            self.next_index = idx + len(rows)
            self._last_sample_at = time.monotonic()
            if self.live:
                self.live.add(idx, rows)
        elif ftype == P.T_GAP:
            # samples missing from the stream (lost in acquisition, or frames dropped while the
            # host did not read): kept in the recording as a "gap" event at the first missing one
            try:
                first, n, cause = D.unpack_gap(pl)
            except ValueError:
                self.batch_errors += 1
                return
            at = first
            if isinstance(self._seg, tuple):          # the device counter in this file's time base
                at = self._seg[0] + (self._unwrap(first) - self._seg[1])
            w.event({"kind": "gap", "sample": at, "n": n,
                     "cause": P.GAP_CAUSES.get(cause, str(cause))})
            self.sample_gaps = getattr(self, "sample_gaps", 0) + n
        elif ftype == P.T_EVENT:
            try:
                ev = json.loads(pl)
            except (ValueError, RecursionError):
                self.batch_errors += 1
                return
            if not isinstance(ev, dict):
                self.batch_errors += 1
                return
            if isinstance(ev.get("sample"), int) and isinstance(self._seg, tuple):
                fi = self._seg[0] + (self._unwrap(ev["sample"]) - self._seg[1])
                if fi != ev["sample"]:
                    ev = dict(ev, sample=fi, device_sample=ev["sample"])
            self.events.append(ev)
            w.event(ev)
            dev = self.info.get("device_id")
            db.retry(lambda: self._add_event(dev, ev), what="database write (event)")

    def _add_event(self, dev, ev):
        with self.con:
            db.add_event(self.con, dev, ev, self.rec_id)


def _iso_now():
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _status_line(r):
    last = r.events[-1].get("kind") if r.events else "-"
    d = r.ln.dec if r.ln else None
    sys.stderr.write("\r%8d samples  %6.0f Hz  %d frames  %d bad  %d gaps  %d reconnects  last event: %-12s" % (
        r.samples, r.rate_now, r.good + (d.good if d else 0), r.bad + (d.bad if d else 0),
        r.gaps + (d.gaps if d else 0), r.reconnects, last))
    sys.stderr.flush()


class LivePlot:
    """The last `seconds` of samples, redrawn into a PNG (written atomically) once a second."""

    def __init__(self, path, seconds=10.0, rate=1000):
        import numpy as np
        self.np = np
        self.path = str(path)
        self.n = int(seconds * rate)
        self.rate = rate
        self.buf = None
        self.idx = None
        self.fill = 0
        self.frames = 0

    def add(self, first, rows):
        np = self.np
        a = np.asarray(rows, dtype=float)
        if self.buf is None:
            self.buf = np.zeros((self.n, a.shape[1]))
            self.idx = np.zeros(self.n)
        k = len(a)
        if k >= self.n:
            a = a[-self.n:]
            first += k - self.n
            k = self.n
        self.buf = np.roll(self.buf, -k, axis=0)
        self.idx = np.roll(self.idx, -k)
        self.buf[-k:] = a
        self.idx[-k:] = first + np.arange(k)
        self.fill = min(self.n, self.fill + k)

    def draw(self, r):
        if self.buf is None or not self.fill:
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from oimon.plots import save_png
        raw = r.raw
        chans = recording.RAW_CHANNELS if raw else recording.CAL_CHANNELS
        y = self.buf[-self.fill:]
        t = (self.idx[-self.fill:] - self.idx[-1]) / float(self.rate)
        fig, axes = plt.subplots(len(chans), 1, sharex=True, figsize=(9, 1.6 * len(chans) + 0.6))
        lim = None
        if not raw:        # the device's limits in force (device units), else the phase's defaults
            from oimon.plots import limits_for
            info = r.info or {}
            lim, _bw, _src = limits_for({"limits": info.get("limits"), "phase": info.get("phase"),
                                         "body_weight_kg": info.get("body_weight_kg")})
        for c, ax in enumerate(axes):
            ax.plot(t, y[:, c] * chans[c]["scale"], lw=0.8, color="C%d" % c)
            ax.set_ylabel("%s [%s]" % (chans[c]["name"], chans[c]["unit"]), fontsize=8)
            ax.grid(True, alpha=0.3)
            if lim and c == 0:
                ax.axhline(lim["comp"] * 0.1, color="r", ls="--", lw=0.9,
                           label="compression limit %.0f N" % (lim["comp"] * 0.1))
                ax.axhline(-lim["tens"] * 0.1, color="m", ls="--", lw=0.9,
                           label="tension limit %.0f N" % (lim["tens"] * 0.1))
                ax.legend(loc="upper left", fontsize=7)
            elif lim:      # each moment against the resultant's limit (a moment alone cannot exceed it)
                for sg in (1, -1):
                    ax.axhline(sg * lim["moment"] * 0.01, color="r", ls="--", lw=0.9)
        last = r.events[-1].get("kind") if r.events else "-"
        axes[0].set_title("%s live: %.0f Hz, %d gaps, last event %s" % (
            (r.info or {}).get("device_id", "?"), r.rate_now, r.gaps, last), fontsize=9)
        axes[-1].set_xlabel("time [s] (0 = now)")
        fig.tight_layout()
        save_png(fig, self.path, dpi=80)
        self.frames += 1


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def cmd_record(args):
    validate.check_out_path(args.out, "--out")
    if args.live_plot:
        validate.check_out_path(args.live_plot, "--live-plot")
    port = link.resolve_port(args.port)
    con = db.connect(args.db)
    show = args.status == "always" or (args.status == "auto" and sys.stderr.isatty())
    r = Recorder(port, args.out, con, raw=args.raw, reconnect=args.reconnect,
                 status=_status_line if show else None)
    if args.live_plot:
        r.live = LivePlot(args.live_plot)
    stop = {"now": False, "signal": None}
    r.stop = stop

    def _stop(signum, frame):
        # the first Ctrl-C / SIGTERM / SIGHUP ends the recording cleanly at the next read (the
        # file gets its END chunk, the row its totals, the device stops streaming); a second
        # one interrupts whatever is running
        if stop["now"]:
            raise KeyboardInterrupt
        stop["now"] = True
        stop["signal"] = signum

    main_thread = threading.current_thread() is threading.main_thread()
    old = {}
    if main_thread:
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                old[sig] = signal.signal(sig, _stop)
    try:
        r.run(args.duration, stop)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
    if r.status:
        sys.stderr.write("\n")
    extra = []
    if r.reconnects:
        extra.append("%d reconnects" % r.reconnects)
    if r.restarts:
        extra.append("%d device restarts (new segments)" % r.restarts)
    if r.stale:
        extra.append("%d stale frames from before the recording dropped" % r.stale)
    if r.duplicates:
        extra.append("%d repeated samples dropped" % r.duplicates)
    print("recorded %d samples (%.1f s) to %s: %d frames, %d bad, %d sequence gaps, %d events%s"
          % (r.samples, r.samples / float(r.rate or 1000), args.out, r.good,
             r.bad, r.gaps, len(r.events), "".join(", " + e for e in extra)))
    return 0


def cmd_events(args):
    con = db.connect(args.db)
    q = "SELECT device_id, kind, t, sample, data FROM event"
    params = ()
    if args.device:
        q += " WHERE device_id = ?"
        params = (args.device,)
    rows = con.execute(q + " ORDER BY t, id", params).fetchall()
    if args.json:
        print(json.dumps([json.loads(r["data"]) | {"device_id": r["device_id"]} for r in rows], indent=2))
        return
    if not rows:
        print("no events")
    for r in rows:
        when = dt.datetime.fromtimestamp(r["t"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") \
            if r["t"] else "?"
        print("%s  %-10s %-14s %s" % (when, r["device_id"], r["kind"], describe(json.loads(r["data"]))))
    for g in db.log_gaps(con, args.device or None):      # what `oimon sync` found missing
        when = dt.datetime.fromtimestamp(g["t_after"], dt.timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S") if g["t_after"] else "?"
        print("%s  %-10s %-14s %d log record%s #%d-#%d (%s)" % (
            when, g["device_id"], "LOG GAP", g["n"], "" if g["n"] == 1 else "s",
            g["first_seq"], g["last_seq"], g["cause"]))
