"""The host's SQLite database (docs/database.md): devices, recordings, events, summaries,
retightenings, calibration certificates. The schema is versioned (PRAGMA user_version) and
migrated forward on open; every change runs in a transaction.

connect() looks at a file before it writes anything to it: not SQLite, damaged, another
program's database, or a schema newer than this oimon: one OimonError line and the file is left
exactly as it was. Then WAL journal and a busy timeout (another writer: wait, then one line).
Every sqlite3 error of a later statement is one line too (cli.main)."""
import errno
import json
import os
import sqlite3
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

from oimon.errors import OimonError
from oimon.files import replacing

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
    # 5: gaps in the device log's sequence found by `oimon sync` (records rotated away before a
    # sync, refused by a full log, or event snippets thinned), docs/database.md "log_gaps"
    """
    CREATE TABLE log_gaps (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        n INTEGER NOT NULL,
        snippets INTEGER NOT NULL DEFAULT 0,
        t_before INTEGER,
        t_after INTEGER,
        cause TEXT NOT NULL,
        found_at INTEGER NOT NULL,
        UNIQUE(device_id, first_seq)
    );
    CREATE INDEX log_gaps_device ON log_gaps(device_id, first_seq);
    """,
]
MIGRATIONS.append(
    # 6: config_change is the journal of every authenticated device change (config set,
    # retighten record, calibrate, exercise plan), written BEFORE the command is sent
    # (status 'sent'), then 'accepted' / deleted when refused / 'unconfirmed' when the device
    # did not answer: a change the device accepted is never missing (docs/database.md)
    """
    ALTER TABLE config_change ADD COLUMN command TEXT NOT NULL DEFAULT 'set';
    ALTER TABLE config_change ADD COLUMN status TEXT NOT NULL DEFAULT 'accepted';
    """)
SCHEMA_VERSION = len(MIGRATIONS)
SQLITE_MAGIC = b"SQLite format 3\x00"
OIMON_TABLES = {"device", "recording", "event", "summary", "retightening", "calibration"}
BUSY_TIMEOUT_S = float(os.environ.get("OIMON_DB_BUSY_TIMEOUT", "30"))


def default_path():
    env = os.environ.get("OIMON_DB")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "oimon" / "oimon.sqlite"


def error_line(e, path=None):
    """One line for an sqlite3 error (or OSError) of database `path`."""
    msg = (str(e).splitlines() or [e.__class__.__name__])[0]
    low = msg.lower()
    path = path or _LAST_PATH[0]
    where = "database %s" % path if path else "database"
    if "disk i/o error" in low and path and _no_space(path):
        low = "disk is full"
    if "locked" in low or "busy" in low:
        return "%s is busy (another oimon is writing to it; waited %g s): try again" % (
            where, BUSY_TIMEOUT_S)
    if "disk is full" in low or "database or disk is full" in low or \
            getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return "%s: disk full: nothing was written (free some space and try again)" % where
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        return "%s is damaged (%s): restore it from a backup; it was not changed" % (where, msg)
    if "readonly" in low or "read-only" in low:
        return "%s is read-only (%s)" % (where, msg)
    if "unable to open" in low:
        return "%s: cannot open (%s)" % (where, msg)
    return "%s: %s" % (where, msg)


def _inspect(path):
    """Refuse a file that is not an oimon database before anything writes to it (read-only)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    except OSError as e:
        raise OimonError("database %s: cannot open (%s)" % (path, e.strerror or e))
    if path.is_dir():
        raise OimonError("database %s is a folder, not a file" % path)
    if st.st_size == 0:
        return                                   # an empty file: a new database
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError as e:
        raise OimonError("database %s: cannot read (%s)" % (path, e.strerror or e))
    if head[:16] != SQLITE_MAGIC:
        raise OimonError("database %s is not an SQLite database (not created by oimon?): "
                         "refused, left unchanged" % path)
    if len(head) < 100 or st.st_size < 512:
        raise OimonError("database %s is truncated (%d bytes): restore it from a backup; "
                         "it was not changed" % (path, st.st_size))
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    if page < 512 or page & (page - 1):
        raise OimonError("database %s is damaged (page size %d): restore it from a backup; "
                         "it was not changed" % (path, page))
    # "in-header database size" is valid when the change counter matches version-valid-for
    if pages and head[24:28] == head[92:96] and st.st_size < pages * page:
        raise OimonError("database %s is truncated (%d of %d bytes): restore it from a backup; "
                         "it was not changed" % (path, st.st_size, pages * page))
    # read-only; without a -wal beside it (no writer has it open) also immutable, so that the
    # look leaves no -wal/-shm behind on a file that is then refused
    immutable = "" if os.path.exists(str(path) + "-wal") else "&immutable=1"
    uri = "file:%s?mode=ro%s" % (urllib.parse.quote(str(path.resolve())), immutable)
    try:
        ro = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            ver = ro.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in ro.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            ro.close()
    except sqlite3.Error as e:
        raise OimonError(error_line(e, path))
    if ver > SCHEMA_VERSION:
        raise OimonError("database %s has schema %d, newer than this oimon (%d): update oimon; "
                         "it was not changed" % (path, ver, SCHEMA_VERSION))
    if tables and (ver == 0 or not OIMON_TABLES <= tables):
        raise OimonError("database %s belongs to another program (tables %s): refused, left "
                         "unchanged" % (path, ", ".join(sorted(tables)[:5])))


_OPEN = []                               # connections of this process: close_all() at exit
_LAST_PATH = [None]                      # the database last opened (for error lines)


def _no_space(path):
    """True if the database's file system has (almost) no room left."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(str(path))) or ".")
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def close_all():
    """Close every connection connect() opened (cli.main does at the end of each command): the
    last close checkpoints the WAL into the database file, so the file is complete and alone
    when the command returns."""
    while _OPEN:
        con = _OPEN.pop()
        try:
            con.close()
        except sqlite3.Error:
            pass


def connect(path=None):
    """The database at path (default_path()), created or migrated as needed; see the module
    docstring for what is refused."""
    path = Path(path) if path else default_path()
    _LAST_PATH[0] = str(path)
    _inspect(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OimonError("database %s: cannot create its folder (%s)" % (path, e.strerror or e))
    try:
        con = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA busy_timeout = %d" % int(BUSY_TIMEOUT_S * 1000))
        con.execute("PRAGMA foreign_keys = ON")
        ver = con.execute("PRAGMA user_version").fetchone()[0]
    except (sqlite3.Error, OSError) as e:
        raise OimonError(error_line(e, path))
    if ver > SCHEMA_VERSION:                 # another oimon migrated it meanwhile
        con.close()
        raise OimonError("database %s has schema %d, newer than this oimon (%d): update oimon"
                         % (path, ver, SCHEMA_VERSION))
    for v in range(ver, SCHEMA_VERSION):
        try:
            with con:
                con.executescript("BEGIN IMMEDIATE;" + MIGRATIONS[v]
                                  + "PRAGMA user_version = %d;" % (v + 1))
        except sqlite3.Error as e:
            con.close()
            raise OimonError("%s (migration to schema %d)" % (error_line(e, path), v + 1))
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode = WAL")
    except sqlite3.Error:
        pass                                 # e.g. a file system without shared memory
    _OPEN.append(con)
    if path.exists():
        _recover_intents(con, os.path.abspath(str(path)))
    return con


def retry(fn, attempts=5, what="database write"):
    """fn() again after a busy/locked error (the busy timeout waited already); the last error
    becomes one OimonError line."""
    for i in range(attempts):
        try:
            return fn()
        except sqlite3.OperationalError as e:
            low = str(e).lower()
            if ("locked" not in low and "busy" not in low) or i == attempts - 1:
                raise OimonError("%s failed: %s" % (what, error_line(e)))
            time.sleep(0.2 * (i + 1))


def _db_file(con):
    for row in con.execute("PRAGMA database_list"):
        if row[1] == "main":
            return row[2] or None
    return None


def _intent_path(dbfile, pid=None):
    return "%s-intent-%d.json" % (dbfile, os.getpid() if pid is None else pid)


def _write_intent(path, rec):
    try:
        with replacing(path, ".tmp") as tmp:
            with open(tmp, "w") as f:
                json.dump(rec, f, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        raise OimonError("cannot journal the change before sending it (%s: %s): nothing was "
                         "sent to the device" % (path, "disk full" if e.errno == errno.ENOSPC
                                                 else e.strerror or e))


def _recover_intents(con, dbfile):
    """Journal files a process left behind when it died between sending a change and storing
    it: stored now as 'unconfirmed' config_change rows (the device may have accepted them)."""
    import glob
    for path in glob.glob(glob.escape(dbfile) + "-intent-*.json"):
        try:
            pid = int(path.rsplit("-", 1)[1].split(".")[0])
        except ValueError:
            continue
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
                continue                     # that oimon is still running
            except ProcessLookupError:
                pass
            except OSError:
                continue
        try:
            with open(path) as f:
                rec = json.load(f)
            with con:
                add_config_change(con, rec["device_id"], rec["data"], rec.get("command", "set"),
                                  "unconfirmed")
            os.unlink(path)
        except (OSError, ValueError, KeyError, TypeError, sqlite3.Error):
            continue


@contextmanager
def device_change(con, device_id, command, data):
    """A change sent to the device, journaled so that it is never missing from the database
    once the device accepted it: before the block sends it, a journal file beside the database
    (DB-intent-PID.json, fsync'ed) holds it; accepted: a config_change row (status 'accepted',
    retried while the database is busy), then the journal file goes; refused
    (link.DeviceRefused: the device changed nothing): the journal file goes and the database is
    untouched; no answer: a row 'unconfirmed'. If the process dies in between, the next
    connect() stores the journal file as an 'unconfirmed' row."""
    from oimon.link import DeviceRefused
    dbfile = _db_file(con)
    jpath = _intent_path(dbfile) if dbfile else None
    if jpath:
        _write_intent(jpath, {"device_id": device_id, "command": command, "data": data})

    def store(status):
        with con:
            add_config_change(con, device_id, data, command, status)

    def drop_journal():
        if jpath:
            try:
                os.unlink(jpath)
            except OSError:
                pass
    try:
        yield
    except DeviceRefused:
        drop_journal()
        raise
    except BaseException:
        try:
            store("unconfirmed")
            drop_journal()
        except (sqlite3.Error, OimonError):
            pass                             # the journal file stays: stored on next connect
        raise
    retry(lambda: store("accepted"), what="database write (the device accepted %s; its "
          "journal %s keeps it until it is stored)" % (command, jpath))
    drop_journal()


def _quiet(fn, *a):
    try:
        fn(*a)
    except (sqlite3.Error, OimonError):
        pass


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


def add_config_change(con, device_id, changes, command="set", status="accepted"):
    ensure_device(con, device_id)
    con.execute("INSERT INTO config_change(device_id, data, command, status) VALUES (?,?,?,?)",
                (device_id, json.dumps(changes, sort_keys=True), command, status))


def devices(con):
    return [r["device_id"] for r in con.execute("SELECT device_id FROM device ORDER BY device_id")]


def add_event(con, device_id, ev, recording_id=None):
    """Store an event once (a repeat from the log of one seen live is ignored)."""
    con.execute("INSERT OR IGNORE INTO event(device_id, recording_id, kind, t, sample, data) "
                "VALUES (?,?,?,?,?,?)",
                (device_id, recording_id, ev.get("kind", "?"), ev.get("t"), ev.get("sample"),
                 json.dumps(ev, sort_keys=True)))


def add_log_gap(con, device_id, gap):
    """Store one gap of the device log's sequence (a dict with the log_gaps columns); a gap
    already stored (same device and first seq) is kept as it is."""
    con.execute("INSERT OR IGNORE INTO log_gaps(device_id, first_seq, last_seq, n, snippets, "
                "t_before, t_after, cause, found_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (device_id, gap["first_seq"], gap["last_seq"], gap["n"], gap.get("snippets", 0),
                 gap.get("t_before"), gap.get("t_after"), gap["cause"], gap["found_at"]))


def log_gaps(con, device_id=None):
    """The stored log gaps (oldest first) as dicts, of one device or all."""
    q = "SELECT * FROM log_gaps"
    a = ()
    if device_id is not None:
        q += " WHERE device_id = ?"
        a = (device_id,)
    return [dict(r) for r in con.execute(q + " ORDER BY device_id, first_seq", a)]


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
