"""oimon record | events: stream calibrated samples into a recording, events into SQLite."""
import datetime as dt
import json
import os
import signal
import sys
import threading
import time

from oimon.eventtext import describe
from oimon import db, link, recording
from oimon.errors import OimonError
from oimon_common import protocol as P


def register(sub):
    p = sub.add_parser("record", help="stream the device's loads into a recording")
    p.add_argument("--duration", type=float, default=0, help="seconds (default: until Ctrl-C)")
    p.add_argument("--out", required=True, help="recording file to write")
    p.add_argument("--raw", action="store_true", help="raw ADC counts instead of calibrated loads")
    p.add_argument("--reconnect", type=float, default=30,
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


class Recorder:
    """Streams one device into a recording file and the database."""

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
        self.next_index = None
        self.info = None
        self.live = None              # LivePlot or None
        self.reconnects = 0
        self._rate_mark = (time.monotonic(), 0)
        self.rate_now = 0.0

    def _connect(self):
        self.ln = link.Link(self.port)
        self.info = self.ln.command(P.C_INFO)
        self.ln.command(P.C_TIME, {"t": int(time.time())})
        self.ln.command(P.C_STREAM, {"mode": "raw" if self.raw else "cal"})
        self.ln.dec.reset_seq()

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

    def run(self, duration):
        self._connect()
        started = dt.datetime.now(dt.timezone.utc)
        header = {
            "device_id": self.info.get("device_id"), "firmware": self.info.get("fw"),
            "rate_hz": self.info.get("rate", 1000), "kind": "raw" if self.raw else "calibrated",
            "start_time": started.isoformat(), "calibrated": self.info.get("calibrated"),
            "limits": self.info.get("limits"), "phase": self.info.get("phase"),
            "body_weight_kg": self.info.get("body_weight_kg"), "source": "oimon record",
        }
        dev_id = header["device_id"]
        with self.con:
            db.ensure_device(self.con, dev_id)
            cur = self.con.execute(
                "INSERT INTO recording(device_id, path, started) VALUES (?,?,?)",
                (dev_id, os.path.abspath(str(self.out)), started.isoformat()))
        self.rec_id = cur.lastrowid
        t_end = time.monotonic() + duration if duration else None
        last_status = 0.0
        w = recording.Writer(self.out, header)
        try:
            while t_end is None or time.monotonic() < t_end:
                try:
                    frames = self.ln.pending + self.ln.read_frames()
                    self.ln.pending = []
                except OimonError:
                    self._count()
                    self.ln.close()
                    self.ln = None
                    self._reconnect(t_end)
                    continue
                for ftype, seq, pl in frames:
                    self._frame(w, ftype, pl)
                now = time.monotonic()
                if now - last_status > 1.0:
                    t0, n0 = self._rate_mark
                    self.rate_now = (self.samples - n0) / max(now - t0, 1e-6)
                    self._rate_mark = (now, self.samples)
                    last_status = now
                    if self.status:
                        self.status(self)
                    if self.live:
                        self.live.draw(self)
        finally:
            if self.ln is not None:
                self._disconnect()
            w.close()
            with self.con:
                self.con.execute(
                    "UPDATE recording SET duration_s=?, samples=?, frames_good=?, frames_bad=?, "
                    "seq_gaps=? WHERE id=?",
                    (self.samples / float(header["rate_hz"]), self.samples, self.good, self.bad,
                     self.gaps, self.rec_id))
        return header

    def _reconnect(self, t_end):
        self.reconnects += 1
        if self.status:
            sys.stderr.write("\nlink to %s lost: reconnecting (up to %g s)...\n" % (self.port, self.reconnect))
        give_up = time.monotonic() + self.reconnect
        while time.monotonic() < give_up and (t_end is None or time.monotonic() < t_end):
            time.sleep(0.5)
            try:
                self._connect()
                return
            except OimonError:
                if self.ln is not None:
                    self.ln.close()
                    self.ln = None
        raise OimonError("lost the device on %s; what was recorded is kept" % self.port)

    def _frame(self, w, ftype, pl):
        if ftype in (P.T_SAMPLES, P.T_RAW):
            try:
                first, _rate, rows = (P.unpack_raw if ftype == P.T_RAW else P.unpack_samples)(pl)
            except ValueError:
                self.batch_errors += 1
                return
            w.write(first, rows)
            self.samples += len(rows)
            if self.live:
                self.live.add(first, rows)
        elif ftype == P.T_EVENT:
            try:
                ev = json.loads(pl)
            except ValueError:
                self.batch_errors += 1
                return
            self.events.append(ev)
            w.event(ev)
            with self.con:
                db.add_event(self.con, self.info.get("device_id"), ev, self.rec_id)


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
        for c, ax in enumerate(axes):
            ax.plot(t, y[:, c] * chans[c]["scale"], lw=0.8, color="C%d" % c)
            ax.set_ylabel("%s [%s]" % (chans[c]["name"], chans[c]["unit"]), fontsize=8)
            ax.grid(True, alpha=0.3)
        last = r.events[-1].get("kind") if r.events else "-"
        axes[0].set_title("%s live: %.0f Hz, %d gaps, last event %s" % (
            (r.info or {}).get("device_id", "?"), r.rate_now, r.gaps, last), fontsize=9)
        axes[-1].set_xlabel("time [s] (0 = now)")
        fig.tight_layout()
        save_png(fig, self.path, dpi=80)
        self.frames += 1


def cmd_record(args):
    port = link.resolve_port(args.port)
    con = db.connect(args.db)
    show = args.status == "always" or (args.status == "auto" and sys.stderr.isatty())
    r = Recorder(port, args.out, con, raw=args.raw, reconnect=args.reconnect,
                 status=_status_line if show else None)
    if args.live_plot:
        r.live = LivePlot(args.live_plot)
    old = signal.getsignal(signal.SIGINT)
    stop = {"now": False}

    def _sigint(signum, frame):
        stop["now"] = True
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        signal.signal(signal.SIGINT, _sigint)
    try:
        r.run(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, old)
    if r.status:
        sys.stderr.write("\n")
    print("recorded %d samples (%.1f s) to %s: %d frames, %d bad, %d sequence gaps, %d events%s"
          % (r.samples, r.samples / float((r.info or {}).get("rate", 1000)), args.out, r.good,
             r.bad, r.gaps, len(r.events),
             ", %d reconnects" % r.reconnects if r.reconnects else ""))
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
