"""The host's SQLite database (docs/database.md): devices, recordings, events, summaries,
retightenings, calibration certificates. The schema is versioned (PRAGMA user_version) and
migrated forward on open; every change runs in a transaction."""
import json
import os
import sqlite3
from pathlib import Path

from oimon.errors import OimonError

MIGRATIONS = [
    # 1: the first schema
    """
    CREATE TABLE device (
        device_id TEXT PRIMARY KEY,
        pseudonym TEXT NOT NULL DEFAULT '',
        retighten_interval_months INTEGER NOT NULL DEFAULT 3,
        created TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE recording (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        path TEXT NOT NULL,
        started TEXT NOT NULL,
        duration_s REAL NOT NULL DEFAULT 0,
        samples INTEGER NOT NULL DEFAULT 0,
        frames_good INTEGER NOT NULL DEFAULT 0,
        frames_bad INTEGER NOT NULL DEFAULT 0,
        seq_gaps INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE event (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        recording_id INTEGER REFERENCES recording(id),
        kind TEXT NOT NULL,
        t REAL,
        sample INTEGER,
        data TEXT NOT NULL
    );
    CREATE INDEX event_device ON event(device_id, t);
    CREATE TABLE summary (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        day TEXT NOT NULL,
        data TEXT NOT NULL,
        UNIQUE(device_id, day)
    );
    CREATE TABLE retightening (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        date TEXT NOT NULL,
        torque_nm REAL,
        recorded TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE calibration (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        date TEXT NOT NULL,
        data TEXT NOT NULL
    );
    """,
    # 2: calibration certificates get their own columns; configuration changes are kept
    """
    ALTER TABLE calibration ADD COLUMN max_error_pct REAL;
    ALTER TABLE calibration ADD COLUMN bound_pct REAL;
    CREATE INDEX calibration_device ON calibration(device_id, date);
    CREATE TABLE config_change (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        t TEXT NOT NULL DEFAULT (datetime('now')),
        data TEXT NOT NULL
    );
    CREATE INDEX retightening_device ON retightening(device_id, date);
    """,
    # 3: Phase I exercise sessions (docs/exercise.md): one device session summary per row
    """
    CREATE TABLE exercise_session (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        t INTEGER,
        day TEXT NOT NULL,
        data TEXT NOT NULL,
        UNIQUE(device_id, t, day)
    );
    CREATE INDEX exercise_session_device ON exercise_session(device_id, day);
    """,
    # 4: the device log is pulled with `oimon sync`: how far per device; an event seen both in a
    # live stream and in the log is stored once (same device, kind, sample and time)
    """
    ALTER TABLE device ADD COLUMN log_seq INTEGER NOT NULL DEFAULT 0;
    DELETE FROM event WHERE id NOT IN (
        SELECT min(id) FROM event GROUP BY device_id, kind, sample, t);
    CREATE UNIQUE INDEX event_once ON event(device_id, kind, sample, t);
    CREATE TABLE device_record (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        t INTEGER,
        data TEXT NOT NULL,
        UNIQUE(device_id, seq)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def default_path():
    env = os.environ.get("OIMON_DB")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "oimon" / "oimon.sqlite"


def connect(path=None):
    path = Path(path) if path else default_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(str(path))
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA foreign_keys = ON")
        ver = con.execute("PRAGMA user_version").fetchone()[0]
    except (sqlite3.DatabaseError, OSError) as e:
        raise OimonError("database %s: %s" % (path, e))
    if ver > SCHEMA_VERSION:
        raise OimonError("database %s has schema %d, newer than this oimon (%d): update oimon"
                         % (path, ver, SCHEMA_VERSION))
    for v in range(ver, SCHEMA_VERSION):
        try:
            with con:
                con.executescript("BEGIN;" + MIGRATIONS[v] + "PRAGMA user_version = %d;" % (v + 1))
        except sqlite3.DatabaseError as e:
            raise OimonError("database %s: migration to schema %d failed: %s" % (path, v + 1, e))
    return con


def ensure_device(con, device_id):
    con.execute("INSERT OR IGNORE INTO device(device_id) VALUES (?)", (device_id,))


def set_interval(con, device_id, months):
    ensure_device(con, device_id)
    con.execute("UPDATE device SET retighten_interval_months = ? WHERE device_id = ?",
                (int(months), device_id))


def set_pseudonym(con, device_id, pseudonym):
    ensure_device(con, device_id)
    con.execute("UPDATE device SET pseudonym = ? WHERE device_id = ?", (pseudonym, device_id))


def add_calibration(con, device_id, date, cert):
    """Store a calibration certificate (dict, see docs/database.md); returns its id."""
    ensure_device(con, device_id)
    cur = con.execute(
        "INSERT INTO calibration(device_id, date, data, max_error_pct, bound_pct) VALUES (?,?,?,?,?)",
        (device_id, date, json.dumps(cert, sort_keys=True), cert.get("max_error_pct"),
         cert.get("bound_pct")))
    return cur.lastrowid


def add_config_change(con, device_id, changes):
    ensure_device(con, device_id)
    con.execute("INSERT INTO config_change(device_id, data) VALUES (?,?)",
                (device_id, json.dumps(changes, sort_keys=True)))


def devices(con):
    return [r["device_id"] for r in con.execute("SELECT device_id FROM device ORDER BY device_id")]


def add_event(con, device_id, ev, recording_id=None):
    """Store an event once (a repeat from the log of one seen live is ignored)."""
    con.execute("INSERT OR IGNORE INTO event(device_id, recording_id, kind, t, sample, data) "
                "VALUES (?,?,?,?,?,?)",
                (device_id, recording_id, ev.get("kind", "?"), ev.get("t"), ev.get("sample"),
                 json.dumps(ev, sort_keys=True)))


def tamper_attempts(con, device_id=None):
    """Security records that are tamper attempts (issue 12; oimon sync stores them in
    device_record, kind 'security'): [(device_id, seq, t, data dict)], oldest first."""
    import json as _json
    q = "SELECT device_id, seq, t, data FROM device_record WHERE kind = 'security'"
    args = ()
    if device_id:
        q += " AND device_id = ?"
        args = (device_id,)
    out = []
    for d, seq, t, data in con.execute(q + " ORDER BY device_id, seq", args):
        try:
            v = _json.loads(data)
        except ValueError:
            continue
        if isinstance(v, dict) and ("refused" in v or v.get("physical_reset")):
            out.append((d, seq, t, v))
    return out
