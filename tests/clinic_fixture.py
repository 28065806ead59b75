"""A clinic's database as `oimon sync` and `oimon record` leave it (tests of the report and the
dashboard), and the headless-Chromium and server helpers those tests share.

P-017 (OI-1): Phase II, 80 kg, a week of walking with daily summaries, overloads (start and
end records, snippets), one fall with its snippet, a sensor fault, Phase I exercise sessions,
retightened 80 days before `today` (due soon). OI-2: nothing but the device (never retightened).
OI-3 (P-020): retightened long ago (overdue)."""
import contextlib
import datetime as dt
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np

from oimon import db, recording, retighten

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "build" / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TODAY = dt.date(2026, 3, 10)
BW_KG = 80.0


def _ts(d, h, m=0, s=0):
    return dt.datetime(d.year, d.month, d.day, h, m, s, tzinfo=dt.timezone.utc).timestamp()


def _walk_rows(n, peak=6000, spike_at=None, spike=0, rate=1000):
    t = np.arange(n) / rate
    ax = peak * np.clip(np.sin(2 * np.pi * t), 0, None)
    ap = 2500 * np.sin(2 * np.pi * t) * (ax > 0)
    ml = 900 * np.sin(4 * np.pi * t) * (ax > 0)
    if spike_at is not None:
        ax = ax + spike * np.exp(-((t - spike_at) / 0.04) ** 2)
    return np.column_stack([ax, ap, ml]).astype(int)


def _snippet(rows):
    return {"rate": 1000, "pre": 1000, "n": len(rows), "rows": [list(map(int, r)) for r in rows]}


def _overload(con, dev, t_end, onset, dur, pk_ax, pk_m, which, snippet=None):
    n_end = onset + dur + 19
    base = {"onset": onset, "start": onset - 19, "which": which, "pk_ax": pk_ax, "min_ax": 500,
            "pk_map": pk_m, "pk_mml": 100, "pk_m2": pk_m * pk_m + 100 * 100}
    st = dict(base, event="overload_start", kind="overload_start", n=onset, sample=onset,
              t=int(t_end - (n_end - onset) / 1000.0), state=1, dur=20, end=0)
    if snippet is not None:
        st["snippet"] = snippet
    en = dict(base, event="overload_end", kind="overload_end", n=n_end, sample=n_end, t=int(t_end),
              state=2, dur=dur, end=onset + dur)
    db.add_event(con, dev, st)
    db.add_event(con, dev, en)


def make_db(tmp_path, today=TODAY, with_recording=True):
    dbp = Path(tmp_path) / "clinic.sqlite"
    con = db.connect(dbp)
    dev = "OI-1"
    visit = today - dt.timedelta(days=80)
    with con:
        db.ensure_device(con, dev)
        db.set_pseudonym(con, dev, "P-017")
        retighten.record(con, dev, visit, 12.0)
        con.execute("INSERT INTO config_change(device_id, t, data) VALUES (?,?,?)",
                    (dev, (today - dt.timedelta(days=7)).isoformat() + " 09:30:00",
                     json.dumps({"phase": "II", "body_weight_kg": BW_KG, "patient": "P-017"})))
        bw_n = BW_KG * 9.80665
        for k in range(7, 0, -1):
            d = today - dt.timedelta(days=k)
            hist = [0, 2, 4, 6, 8, 20, 25, 15, 10, 6, 3, 1] + [0] * 9
            tot = float(sum(hist))
            con.execute("INSERT INTO summary(device_id, day, data) VALUES (?,?,?)", (dev, d.isoformat(), json.dumps({
                "day": d.isoformat(), "partial": k == 7, "steps": 3200 + 410 * k, "loaded_h": 2.0 + 0.3 * k,
                "worn_valid_h": 11.0, "invalid_h": 0.2 if k == 3 else 0.0,
                "peak_axial_N": 700.0 + 25 * k + (1500 if k == 2 else 0), "peak_tension_N": 40.0,
                "peak_moment_Nm": 27.0 + k, "overloads": 3 if k == 2 else 0, "falls": 1 if k == 2 else 0,
                "sensor_faults": 1 if k == 3 else 0, "body_weight_N": bw_n, "events": 0,
                "hist_pct_bw": {"%d-%d%%" % (10 * i, 10 * i + 10) if i < 20 else ">=200%": round(100 * h / tot, 2)
                                for i, h in enumerate(hist)}})))
        # events: three overloads on day -2 (one very high with its snippet), a fall, a fault
        d2 = today - dt.timedelta(days=2)
        _overload(con, dev, _ts(d2, 10, 15, 3), 40000, 90, 21000, 1100, 1,
                  _snippet(_walk_rows(3000, spike_at=1.05, spike=15000)))
        _overload(con, dev, _ts(d2, 10, 15, 9), 46000, 130, 7200, 3350, 4)
        _overload(con, dev, _ts(d2, 16, 40, 0), 90000, 110, 6900, 3200, 4)
        fall_rows = _walk_rows(3000, peak=5000, spike_at=1.0, spike=9000)
        fall_rows[1300:, 0] = 200
        db.add_event(con, dev, {"event": "fall", "kind": "fall", "n": 120000, "sample": 120000,
                                "t": int(_ts(d2, 17, 2, 30)), "t_imp": 119990, "pk_ax": 13900, "pk_rate": 41000,
                                "pk_m2": 4100 ** 2, "loaded": 300, "rec_len": 3000,
                                "snippet": _snippet(fall_rows)})
        d3 = today - dt.timedelta(days=3)
        db.add_event(con, dev, {"event": "fault", "kind": "fault", "n": 5000, "sample": 5000, "onset": 4900,
                                "t": int(_ts(d3, 12, 0, 0)), "flags": 8, "state": 1})
        db.add_event(con, dev, {"event": "fault_clear", "kind": "fault_clear", "n": 9000, "sample": 9000,
                                "onset": 4900, "t": int(_ts(d3, 12, 0, 4)), "flags": 8, "dur": 4100, "state": 0})
        # an overload before the visit: outside the default period
        _overload(con, dev, _ts(visit - dt.timedelta(days=5), 9, 0, 0), 1000, 100, 9000, 3400, 4)
        # exercise: two sessions a day prescribed, five days, the target rising with the plan
        for k in range(5, 0, -1):
            d = today - dt.timedelta(days=k)
            for n in (1, 2) if k % 2 else (1,):
                tkg = 15.0 if k > 3 else 20.0
                loaded = 19 * 60000 if n == 1 else 12 * 60000
                con.execute("INSERT INTO exercise_session(device_id, t, day, data) VALUES (?,?,?,?)", (
                    dev, int(_ts(d, 8 + 8 * (n - 1))), d.isoformat(), json.dumps({
                        "kind": "exercise", "date": d.isoformat(), "n": n, "t": int(_ts(d, 8 + 8 * (n - 1))),
                        "spd": 2, "minutes": 20, "target_kg": tkg, "band_pct": 10, "margin_pct": 20,
                        "loaded_ms": loaded, "in_ms": int(loaded * (0.55 + 0.05 * n)), "over_n": 3 - n,
                        "alarm_n": 1 if k == 4 else 0, "mean": int(tkg * 98.1 * 0.97),
                        "peak": int(tkg * 98.1 * 1.3), "level": 2, "complete": loaded >= 16 * 60000})))
        con.execute("INSERT INTO device_record(device_id, seq, kind, t, data) VALUES (?,?,?,?,?)",
                    (dev, 1, "config", int(_ts(today - dt.timedelta(days=7), 9, 30)),
                     json.dumps({"set": {"phase": "II", "body_weight_kg": BW_KG}})))
        con.execute("INSERT INTO device_record(device_id, seq, kind, t, data) VALUES (?,?,?,?,?)",
                    (dev, 2, "alarm", int(_ts(d2, 10, 15, 3)), json.dumps({"raised": 1})))
        db.add_calibration(con, dev, "2025-11-15T09:00:00+00:00", {
            "max_error": {"axial": 0.4, "ap": 0.02, "ml": 0.03}, "max_error_pct": 0.008,
            "bound_pct": 0.5, "revision": 1})
        db.ensure_device(con, "OI-2")
        db.ensure_device(con, "OI-3")
        db.set_pseudonym(con, "OI-3", "P-020")
        retighten.record(con, "OI-3", today - dt.timedelta(days=120), 11.5)
    if with_recording:
        rec = Path(tmp_path) / "walk.oimrec"
        start = dt.datetime(d2.year, d2.month, d2.day, 16, 39, 58, tzinfo=dt.timezone.utc)
        rows = _walk_rows(5000)
        with recording.Writer(rec, {"device_id": dev, "rate_hz": 1000, "kind": "calibrated",
                                    "start_time": start.isoformat(), "phase": "II", "body_weight_kg": BW_KG,
                                    "limits": {"comp": 7845, "tens": 2000, "moment": 3000}}) as w:
            w.write(88000, rows)
        with con:
            cur = con.execute("INSERT INTO recording(device_id, path, started, duration_s, samples) "
                              "VALUES (?,?,?,?,?)", (dev, str(rec), start.isoformat(), 5.0, 5000))
            con.execute("UPDATE event SET recording_id = ? WHERE device_id = ? AND sample IN (90000, 90129)",
                        (cur.lastrowid, dev))
    con.close()
    return dbp


# --- Chromium ----------------------------------------------------------------------------------
@contextlib.contextmanager
def browser():
    """A headless Chromium (the system's, /usr/bin/chromium) driven by Playwright."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def artifact(name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


# --- the dashboard in a thread -------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(app):
    """uvicorn serving `app` on 127.0.0.1 in a thread; yields the base URL."""
    import uvicorn
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                        ws="websockets-sansio", lifespan="on"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    t_end = time.monotonic() + 60
    while not srv.started:
        if time.monotonic() > t_end or not th.is_alive():
            raise AssertionError("the dashboard did not start")
        time.sleep(0.05)
    try:
        yield "http://127.0.0.1:%d" % port
    finally:
        srv.should_exit = True
        th.join(timeout=30)
