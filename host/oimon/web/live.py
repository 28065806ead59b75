"""The live feed of `oimon serve`: one thread reads the calibrated stream of the connected (or
virtual) device through the same Link as `oimon record`, feeds every axial sample into the
firmware's own exercise classifier (oimon_common.exercise.Exercise: the zones, hysteresis and
dwell the device itself signals), and keeps the last seconds as 20 ms blocks (the block's largest
axial load and bending moment, so no peak is hidden) for the WebSocket clients.

The thread never raises into the server: a lost device is a state ("link lost: retrying") shown on
the page, and it reconnects."""
import math
import threading
import time
from collections import deque

from oimon import exercise as X
from oimon import link
from oimon.errors import OimonError
from oimon_common import exercise as FX
from oimon_common import limits as L
from oimon_common import protocol as P
from oimon_common import decode as D

BLOCK_MS = 20
KEEP_S = 12
ZONE_TEXT = {0: "no session", FX.ZONE_UNDER: "LOAD MORE", FX.ZONE_IN: "IN ZONE - HOLD",
             FX.ZONE_OVER: "TOO MUCH", FX.ZONE_ALARM: "UNLOAD NOW"}
ZONE_KEY = {0: "none", FX.ZONE_UNDER: "under", FX.ZONE_IN: "in", FX.ZONE_OVER: "over",
            FX.ZONE_ALARM: "alarm"}
DEFAULT_TARGET_FRACTION = 0.5   # no plan on the device: coach to 50 % of the Phase I cap


class LiveSource:
    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.blocks = deque(maxlen=KEEP_S * 1000 // BLOCK_MS)
        self.seq = 0                 # number of blocks ever made (clients ask "since")
        self.events = deque(maxlen=20)
        self.state = "connecting"
        self.error = None
        self.info = {}
        self.samples = 0
        self.load_kg = 0.0
        self.zone = 0
        self.target = None
        self.limits = None
        self.bw_n = L.BW_DEFAULT / 10.0
        self._stop = threading.Event()
        self._thread = None
        self._acc = None
        self._anchor = None

    # --- control ---
    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="oimon-live", daemon=True)
            self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- snapshot for a client ---
    def snapshot(self, since=0):
        with self.lock:
            first = self.seq - len(self.blocks)
            start = max(since, first)
            pts = list(self.blocks)[start - first:] if start < self.seq else []
            return {"state": self.state, "error": self.error,
                    "device_id": self.info.get("device_id"), "patient": self.info.get("patient"),
                    "phase": self.info.get("phase"), "samples": self.samples,
                    "seq": self.seq, "points": pts, "load_kg": round(self.load_kg, 2),
                    "zone": ZONE_KEY.get(self.zone, "none"), "zone_text": ZONE_TEXT.get(self.zone, ""),
                    "target": self.target, "limits": self.limits, "bw_N": self.bw_n,
                    "events": list(self.events), "now": time.time()}

    # --- the reader ---
    def _run(self):
        while not self._stop.is_set():
            try:
                self._session()
            except (OimonError, OSError, ValueError) as e:
                with self.lock:
                    self.state = "link lost: retrying"
                    self.error = str(e).replace(str(self.port), "the device")[:200]
            if self._stop.wait(1.0):
                break

    def _setup(self, ln):
        info = ln.command(P.C_INFO)
        cfg = ln.command(P.C_CONFIG)
        lim = info.get("limits") or {}
        bw_kg = info.get("body_weight_kg") or cfg.get("body_weight_kg")
        phase = info.get("phase") or cfg.get("phase") or "full"
        if not all(k in lim for k in ("comp", "tens", "moment")):
            bw = L.body_weight_0p1N(bw_kg) if bw_kg else L.BW_DEFAULT
            c, t, m = L.phase_limits(L.PHASES.index(phase) if phase in L.PHASES else L.PHASE_FULL, bw)[:3]
            lim = {"comp": c, "tens": t, "moment": m}
        plan = cfg.get("exercise_plan")
        note = "the device's exercise plan"
        try:
            if plan:
                X.validate(plan)
        except OimonError:
            plan = None
        if not plan and bw_kg:
            tkg = round(DEFAULT_TARGET_FRACTION * X.cap_limit_kg(bw_kg), 1)
            plan = X.make_plan(bw_kg, start_kg=tkg, step_kg=0, cap_kg=tkg, utc_offset_min=0)
            note = "no plan on the device: %.1f kg shown (half the Phase I cap)" % tkg
        ex = None
        target = None
        if plan:
            ex = FX.Exercise(plan)
            err = ex.start(0, ex.day_of(int(time.time())), int(time.time()))
            if err:
                ex = None
                note = err
            else:
                tkg = ex.target_dkg / 10.0
                lo, hi, al = X.thresholds_kg(plan, tkg)
                target = {"kg": tkg, "lo": round(lo, 2), "hi": round(hi, 2), "alarm": round(al, 2),
                          "note": note}
        with self.lock:
            self.info = {"device_id": info.get("device_id"), "patient": cfg.get("patient") or info.get("patient"),
                         "phase": phase}
            self.limits = {"comp_N": lim["comp"] / 10.0, "tens_N": lim["tens"] / 10.0,
                           "moment_Nm": lim["moment"] / 100.0}
            self.bw_n = bw_kg * 9.80665 if bw_kg else L.BW_DEFAULT / 10.0
            self.target = target or {"kg": None, "note": note or "no exercise plan"}
        return ex

    def _session(self):
        with link.Link(self.port) as ln:
            ex = self._setup(ln)
            ln.command(P.C_STREAM, {"mode": "cal"})
            with self.lock:
                self.state = "live"
                self.error = None
            t0 = None
            with self.lock:
                self._anchor = None
                self._acc = None
            try:
                while not self._stop.is_set():
                    frames = ln.pending + ln.read_frames()
                    ln.pending = []
                    for ftype, _seq, pl in frames:
                        if ftype == P.T_SAMPLES:
                            try:
                                first, rate, rows = D.unpack_samples(pl)
                            except ValueError:
                                continue
                            if t0 is None:
                                t0 = first
                            self._samples(first, rate, rows, t0, ex)
                        elif ftype == P.T_EVENT:
                            self._event(pl)
            finally:
                try:
                    ln.command(P.C_STREAM, {"mode": "off"}, timeout=1.0)
                except OimonError:
                    pass

    def _event(self, pl):
        import json
        from oimon.eventtext import describe
        try:
            ev = json.loads(pl)
        except ValueError:
            return
        with self.lock:
            self.events.append({"t": time.time(), "kind": ev.get("kind") or ev.get("event"),
                                "text": describe(ev)})

    def _samples(self, first, rate, rows, t0, ex):
        per = max(1, rate * BLOCK_MS // 1000)
        now = time.time()
        out = []
        acc = self._acc
        for i, r in enumerate(rows):
            ax, m1, m2 = r[0], r[1], r[2]
            n = (first + i - t0) & 0xFFFFFFFF
            ms = n * 1000 // rate
            if ex is not None:
                ex.step(ax, ms)
            mres = math.hypot(m1, m2)
            if acc is None:
                acc = [n, ax, ax, mres, 0]
            acc[1] = max(acc[1], ax)
            acc[2] = min(acc[2], ax)
            acc[3] = max(acc[3], mres)
            acc[4] += 1
            if acc[4] >= per:
                big = acc[1] if abs(acc[1]) >= abs(acc[2]) else acc[2]
                out.append((acc[0] / float(rate), big / 10.0, acc[3] / 100.0))
                acc = None
        self._acc = acc
        tail = rows[-max(1, rate // 20):]
        with self.lock:
            if out and self._anchor is None:
                # wall clock of sample 0, from the first block's arrival; after that the device's
                # own sample counter times every block (monotonic, no arrival jitter)
                self._anchor = now - out[-1][0]
            for tt, a, m in out:
                self.blocks.append([round(self._anchor + tt, 3), round(a, 1), round(m, 2)])
                self.seq += 1
            self.samples += len(rows)
            self.load_kg = sum(r[0] for r in tail) / len(tail) / X.N_PER_KG_0P1
            self.zone = ex.zone if ex is not None else 0
