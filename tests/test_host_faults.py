"""The host fault suite (issue 14): every class of host fault or bad input is one line on
stderr starting "oimon: ", the documented exit status (2, docs/host.md), no traceback, and
nothing changed on disk (every file under the test's folder hashed before and after).

Classes: bad numbers (NaN, inf, negative, zero, huge, words) and dates on the command line;
unknown keys; deep nesting and NaN in JSON files (config, plan, keystore); hostile captures;
corrupt, truncated, newer, foreign, locked database files; disk full (a small tmpfs when this
runs as root, else RLIMIT_FSIZE in a subprocess); a firmware that dies at start-up."""
import hashlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from fakestream import FakeStream
from oimon import cli, db, recording
from oimon_common import protocol as P

ROOT = Path(__file__).resolve().parents[1]
GAIT = ROOT.parent / "shared" / "data" / "gaitpdb" / "GaCo01_01.txt"
DEEP = "[" * 100000 + "]" * 100000


def _tree_hash(folder):
    """{relative path: sha256} of every file (a -wal/-shm left open would show up too)."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _one_line(rc, err, want=None, code=2):
    assert rc == code, (rc, err)
    assert err.startswith("oimon: ") and err.count("\n") == 1, repr(err)
    assert "Traceback" not in err and "oimon: oimon" not in err
    if want:
        assert want in err, err


def _run(capsys, *argv):
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def work(tmp_path, capsys):
    """A folder with a good database, a recording and a CSV; returns (folder, files)."""
    dbp = tmp_path / "db.sqlite"
    assert cli.main(["--db", str(dbp), "retighten", "record", "OI-1", "--date", "2025-01-01",
                     "--host-only"]) == 0
    rec = tmp_path / "walk.oimrec"
    assert cli.main(["sim", "generate", "--scenario", "walk", "--duration", "2", "--out",
                     str(rec)]) == 0
    capsys.readouterr()
    files = {"db": dbp, "rec": rec, "out": tmp_path / "out.oimrec", "png": tmp_path / "o.png",
             "csv": tmp_path / "o.csv", "dir": tmp_path, "long": tmp_path / ("x" * 300)}
    for name, text in (("deep", DEEP), ("nan", '{"body_weight_kg": NaN}'),
                       ("inf", '{"limits": {"comp": Infinity}}'), ("neg", '{"body_weight_kg": -5}'),
                       ("huge", '{"limits": {"comp": 1e9}}'), ("unknown", '{"colour": "red"}'),
                       ("true", "true"), ("dup", '{"phase": "I", "phase": "II"}'),
                       ("boolnum", '{"body_weight_kg": true}'), ("notjson", "{phase: I")):
        p = tmp_path / ("%s.json" % name)
        p.write_text(text)
        files[name] = p
    return tmp_path, files


BAD_ARGS = [
    # numbers: NaN, inf, negative, zero, huge, words, on every kind of number argument
    (["record", "--duration", "nan", "--out", "{out}"], "--duration"),
    (["record", "--duration", "inf", "--out", "{out}"], "--duration"),
    (["record", "--duration", "-5", "--out", "{out}"], "out of range"),
    (["record", "--duration", "0", "--out", "{out}"], "out of range"),
    (["record", "--duration", "1e999", "--out", "{out}"], "finite"),
    (["record", "--duration", "ten", "--out", "{out}"], "not a number"),
    (["record", "--reconnect", "-1", "--out", "{out}"], "out of range"),
    (["record", "--out", "{long}"], "too long"),
    (["record", "--out", "{dir}/no/such/r.oimrec"], "does not exist"),
    (["sim", "generate", "--scenario", "walk", "--duration", "1", "--body-weight", "nan",
      "--out", "{out}"], "--body-weight"),
    (["sim", "generate", "--scenario", "walk", "--duration", "1", "--seed", "1e30",
      "--out", "{out}"], "--seed"),
    (["sim", "generate", "--scenario", "walk", "--duration", "1", "--set", "colour=red",
      "--out", "{out}"], "no parameter 'colour'"),
    (["sim", "generate", "--scenario", "walk", "--duration", "1", "--set", "cadence_spm=nan",
      "--out", "{out}"], "cadence_spm"),
    (["sim", "generate", "--scenario", "walk", "--duration", "1", "--set", "cadence_spm=1e400",
      "--out", "{out}"], "cadence_spm"),
    (["exercise", "plan", "--dry-run", "--body-weight-kg", "80", "--cap-kg", "inf"], "--cap-kg"),
    (["exercise", "plan", "--dry-run", "--body-weight-kg", "-80"], "out of range"),
    (["calibrate", "--dry-run", "--plan", "{deep}"], "nested"),
    (["calibrate", "--dry-run", "--masses", "5,nan,10"], "--masses"),
    (["calibrate", "--dry-run", "--lever-arm", "inf"], "--lever-arm"),
    (["report", "--out", "{dir}/r.html", "--max-plots", "nan"], "--max-plots"),
    # dates: before any device existed, impossible, in the future
    (["retighten", "record", "OI-1", "--date", "2019-06-01", "--host-only"], "before any oimon"),
    (["retighten", "record", "OI-1", "--date", "2025-02-30", "--host-only"], "not a date"),
    (["retighten", "record", "OI-1", "--date", "2999-01-01", "--host-only"], "future"),
    (["exercise", "report", "--since", "1999-01-01"], "before any oimon"),
    # files: deep nesting, NaN/inf, negative, huge, unknown keys, not an object, duplicates
    (["sim", "replay", "{rec}", "--config", "{deep}"], "nested"),
    (["sim", "replay", "{rec}", "--config", "{nan}"], "NaN"),
    (["sim", "replay", "{rec}", "--config", "{inf}"], "Infinity"),
    (["sim", "replay", "{rec}", "--config", "{neg}"], "body_weight_kg"),
    (["sim", "replay", "{rec}", "--config", "{huge}"], "limits.comp"),
    (["sim", "replay", "{rec}", "--config", "{unknown}"], "unknown key 'colour'"),
    (["sim", "replay", "{rec}", "--config", "{true}"], "JSON object"),
    (["sim", "replay", "{rec}", "--config", "{dup}"], "duplicate key"),
    (["sim", "replay", "{rec}", "--config", "{boolnum}"], "body_weight_kg"),
    (["sim", "replay", "{rec}", "--config", "{notjson}"], "not valid JSON"),
    (["exercise", "report", "--plan", "{deep}"], "nested"),
    (["exercise", "report", "--plan", "{nan}"], "NaN"),
    # import: units against the time column, --rate against it, --start
    (["import", str(GAIT), "--columns", "1,18", "--units", "ms,N", "--out", "{out}"],
     "rather than ms"),
    (["import", str(GAIT), "--columns", "1,18", "--units", "s,N", "--rate", "50", "--out",
      "{out}"], "disagrees"),
    (["import", str(GAIT), "--columns", "1,18", "--units", "s,N", "--rate", "nan", "--out",
      "{out}"], "--rate"),
    (["import", str(GAIT), "--columns", "1,18", "--units", "s,N", "--resample", "-1000",
      "--out", "{out}"], "--resample"),
    (["import", str(GAIT), "--columns", "1,18", "--units", "s,N", "--start", "yesterday",
      "--out", "{out}"], "ISO 8601"),
    (["export", "csv", "{rec}", "--out", "{dir}/none/x.csv"], "does not exist"),
    (["export", "csv", "{rec}", "--out", "{long}"], "too long"),
    # argparse: printed once, named command
    (["record", "--bogus", "--out", "{out}"], "unrecognized arguments"),
    (["frobnicate"], "invalid choice"),
    (["sim", "replay"], "required"),
]


@pytest.mark.parametrize("argv, want", BAD_ARGS, ids=[" ".join(a[:3]) + " " + w
                                                      for a, w in BAD_ARGS])
def test_bad_input_is_one_line_and_changes_nothing(work, capsys, argv, want):
    folder, files = work
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    before = _tree_hash(folder)
    rc, out, err = _run(capsys, "--db", files["db"], "--port", "/dev/oimon-none", *argv)
    _one_line(rc, err, want)
    assert _tree_hash(folder) == before


def test_oimon_alone_prints_help_and_global_options_anywhere(capsys, tmp_path):
    rc, out, err = _run(capsys)
    assert rc == 0 and out.startswith("usage: oimon") and "COMMAND" in out and not err
    dbp = tmp_path / "db.sqlite"
    # --db after the subcommand, --port after it (the last one given counts)
    rc, out, err = _run(capsys, "retighten", "record", "OI-2", "--date", "2025-01-01",
                        "--host-only", "--db", dbp)
    assert rc == 0 and dbp.exists(), err
    rc, out, err = _run(capsys, "--port", "/dev/first-none", "info", "--port", "/dev/oimon-x")
    _one_line(rc, err, "/dev/oimon-x")


def test_messages_are_in_the_users_units(capsys, tmp_path):
    rc, out, err = _run(capsys, "sim", "generate", "--scenario", "walk", "--duration", "1",
                        "--body-weight", "500", "--out", tmp_path / "x.oimrec")
    _one_line(rc, err, "500")
    rc, out, err = _run(capsys, "calibrate", "--dry-run", "--lever-arm", "5")
    _one_line(rc, err, "5 m is out of range")


# --- databases ---------------------------------------------------------------------------------
def _good_db(path):
    assert cli.main(["--db", str(path), "retighten", "record", "OI-1", "--date", "2025-01-01",
                     "--host-only"]) == 0
    con = db.connect(path)                      # a few pages, so damage can hit a b-tree page
    with con:
        for i in range(200):
            db.set_interval(con, "OI-%d" % i, 3)
    db.close_all()


def _make_db(kind, path):
    if kind == "not-sqlite":
        path.write_bytes(os.urandom(8192))
    elif kind == "text":
        path.write_text("device_id,date\nOI-1,2025-01-01\n")
    elif kind == "truncated":
        _good_db(path)
        path.write_bytes(path.read_bytes()[:3000])
    elif kind == "corrupt":
        _good_db(path)
        b = bytearray(path.read_bytes())
        page = int.from_bytes(b[16:18], "big")
        for k in range(1, len(b) // page):
            b[k * page:k * page + 64] = os.urandom(64)
        path.write_bytes(bytes(b))
    elif kind == "newer":
        _good_db(path)
        c = sqlite3.connect(path)
        c.execute("PRAGMA user_version = 99")
        c.commit()
        c.close()
    elif kind == "foreign":
        c = sqlite3.connect(path)
        c.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
        c.execute("INSERT INTO moz_places(url) VALUES ('x')")
        c.commit()
        c.close()
    elif kind == "folder":
        path.mkdir()
    elif kind == "header-only":
        path.write_bytes(db.SQLITE_MAGIC + bytes(84))


DB_KINDS = ["not-sqlite", "text", "truncated", "corrupt", "newer", "foreign", "folder",
            "header-only"]
DB_COMMANDS = [["events"], ["retighten", "status"], ["retighten", "record", "OI-1", "--date",
               "2025-02-01", "--host-only"], ["retighten", "interval", "OI-1", "4"],
               ["report", "--out", "{dir}/r.html"], ["exercise", "report"]]


@pytest.mark.parametrize("kind", DB_KINDS)
@pytest.mark.parametrize("cmd", DB_COMMANDS, ids=[c[0] + "-" + c[1] if len(c) > 1 else c[0]
                                                  for c in DB_COMMANDS])
def test_bad_database_is_refused_and_never_modified(tmp_path, capsys, kind, cmd):
    dbp = tmp_path / "db.sqlite"
    _make_db(kind, dbp)
    capsys.readouterr()
    before = _tree_hash(tmp_path)
    rc, out, err = _run(capsys, "--db", dbp, *[c.format(dir=tmp_path) for c in cmd])
    _one_line(rc, err, "database")
    assert _tree_hash(tmp_path) == before
    assert not (tmp_path / "r.html").exists()


def test_locked_database_is_one_line_after_the_busy_timeout(tmp_path, capsys, monkeypatch):
    dbp = tmp_path / "db.sqlite"
    _good_db(dbp)
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.3)
    holder = sqlite3.connect(dbp, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        before = hashlib.sha256(dbp.read_bytes()).hexdigest()
        for cmd in (["retighten", "record", "OI-1", "--date", "2025-02-01", "--host-only"],
                    ["retighten", "interval", "OI-1", "4"]):
            rc, out, err = _run(capsys, "--db", dbp, *cmd)
            _one_line(rc, err, "busy")
        assert hashlib.sha256(dbp.read_bytes()).hexdigest() == before
    finally:
        holder.rollback()
        holder.close()
    rc, out, err = _run(capsys, "--db", dbp, "retighten", "interval", "OI-1", "4")
    assert rc == 0, err                               # and fine once the other writer is done


def test_database_is_wal_with_a_busy_timeout(tmp_path):
    con = db.connect(tmp_path / "db.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA busy_timeout").fetchone()[0] == int(db.BUSY_TIMEOUT_S * 1000)
    assert con.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    db.close_all()


class _Link:
    """Stands in for link.Link in db.device_change tests: accepts, refuses or goes silent."""

    def __init__(self, mode):
        self.mode = mode

    def send(self):
        from oimon import link
        from oimon.errors import OimonError
        if self.mode == "refuse":
            raise link.DeviceRefused("device refused: value out of range")
        if self.mode == "silent":
            raise OimonError("device on X is not answering")
        return {"set": ["phase"]}


@pytest.mark.parametrize("mode, rows, status", [("accept", 1, "accepted"), ("refuse", 0, None),
                                                ("silent", 1, "unconfirmed")])
def test_device_change_is_journaled_before_it_is_sent(tmp_path, mode, rows, status):
    from oimon.errors import OimonError
    dbp = tmp_path / "db.sqlite"
    con = db.connect(dbp)
    seen = {}
    try:
        with db.device_change(con, "OI-9", "set", {"phase": "II"}):
            seen["journal"] = sorted(p.name for p in tmp_path.glob("db.sqlite-intent-*.json"))
            _Link(mode).send()
    except OimonError:
        assert mode != "accept"
    assert seen["journal"] == ["db.sqlite-intent-%d.json" % os.getpid()]   # before sending
    assert not list(tmp_path.glob("db.sqlite-intent-*"))                   # and gone after
    got = con.execute("SELECT status, command, data FROM config_change").fetchall()
    assert len(got) == rows
    if rows:
        assert got[0][0] == status and got[0][1] == "set" and json.loads(got[0][2]) == {"phase": "II"}
    db.close_all()


def test_journal_of_a_process_that_died_is_stored_on_the_next_connect(tmp_path):
    dbp = tmp_path / "db.sqlite"
    db.connect(dbp)
    db.close_all()
    p = subprocess.Popen(["true"])
    p.wait()                                          # a pid that is surely gone
    (tmp_path / ("db.sqlite-intent-%d.json" % p.pid)).write_text(json.dumps(
        {"device_id": "OI-7", "command": "set", "data": {"phase": "III"}}))
    con = db.connect(dbp)
    (status, dev), = con.execute("SELECT status, device_id FROM config_change").fetchall()
    assert status == "unconfirmed" and dev == "OI-7"
    assert not list(tmp_path.glob("db.sqlite-intent-*"))
    db.close_all()


# --- JSON in other places: the keystore, captures ---------------------------------------------
def test_deep_keystore_is_one_line(tmp_path, capsys):
    ks = tmp_path / "keys.json"
    ks.write_text(DEEP)
    ks.chmod(0o600)
    fake = FakeStream()
    try:
        before = _tree_hash(tmp_path)
        rc, out, err = _run(capsys, "--db", tmp_path / "db.sqlite", "--keystore", ks, "--port",
                            fake.url, "config", "set", "comp=900")
        _one_line(rc, err, "keystore")
        assert _tree_hash(tmp_path) == before
    finally:
        fake.close()


def test_hostile_captures_decode_without_a_traceback(tmp_path, capsys):
    rng = np.random.default_rng(14)
    parts = [bytes(P.encode(P.T_EVENT, 1, DEEP[:5000].encode())),
             bytes(P.encode(P.T_RESP, 2, b"\x01\x00" + DEEP[:4000].encode())),
             bytes(P.encode(P.T_LOG, 3, b"\xff" * 30)),
             bytes(P.encode(P.T_CMD, 4, bytes((P.C_SET,)) + b"\x00" * 3)),
             bytes(P.encode(P.T_SAMPLES, 5, b"\x01\x02")),
             bytes(P.encode(P.T_EVENT, 6, b'{"a": NaN, "b": 1e999}')),
             bytes(P.encode(P.T_EVENT, 6, b"{}")),          # the same number again
             rng.integers(0, 256, 20000, dtype=np.uint8).tobytes()]
    cap = tmp_path / "cap.bin"
    cap.write_bytes(b"".join(parts))
    for extra in ([], ["--json"]):
        rc, out, err = _run(capsys, "decode", cap, *extra)
        assert rc == 0 and not err, err
    last = out.strip().splitlines()[-1]
    summary = json.loads(last)["summary"]
    assert summary["repeats"] >= 1 and summary["lost"] < 1000    # not 65 535 lost frames
    rc, out, err = _run(capsys, "decode", tmp_path)
    _one_line(rc, err, "folder")


# --- disk full ----------------------------------------------------------------------------------
@pytest.fixture
def full_disk():
    """A 1 MiB tmpfs (as root), else None (the RLIMIT_FSIZE tests cover it then)."""
    d = tempfile.mkdtemp(prefix="oimon-full-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d],
                       capture_output=True)
    if r.returncode:
        os.rmdir(d)
        yield None
        return
    try:
        yield Path(d)
    finally:
        subprocess.run(["umount", "-l", d], capture_output=True)
        os.rmdir(d)


def _fill(folder):
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        except OSError:
            pass


def _fsize_limited(argv, limit, cwd):
    """oimon in a subprocess whose files may not grow past `limit` bytes (EFBIG, as a full
    disk gives ENOSPC)."""
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "host"), str(ROOT / "common"),
                                                       str(ROOT / "sim")]))
    return subprocess.run([sys.executable, "-m", "oimon"] + [str(a) for a in argv], cwd=cwd,
                          env=env, capture_output=True, text=True, preexec_fn=pre, timeout=300)


def test_disk_full_while_generating_a_recording(tmp_path, capsys, full_disk):
    if full_disk is not None:
        out = full_disk / "big.oimrec"
        rc, o, err = _run(capsys, "sim", "generate", "--scenario", "walk", "--duration", "300",
                          "--out", out)
        _one_line(rc, err, "disk full")
        assert not out.exists() and not list(full_disk.glob("*.part"))
    r = _fsize_limited(["sim", "generate", "--scenario", "walk", "--duration", "60", "--out",
                        tmp_path / "big.oimrec"], 200000, tmp_path)
    _one_line(r.returncode, r.stderr, "too large")
    assert not list(tmp_path.glob("big.oimrec*"))


def test_disk_full_during_database_writes(tmp_path, capsys, full_disk):
    folder = full_disk if full_disk is not None else tmp_path
    dbp = folder / "db.sqlite"
    _good_db(dbp)
    if full_disk is not None:
        _fill(full_disk)
        for i in range(30):                         # enough rows to need a new page
            before = hashlib.sha256(dbp.read_bytes()).hexdigest()
            rc, out, err = _run(capsys, "--db", dbp, "retighten", "interval", "NEW-%03d-%s" % (
                i, "x" * 40), "3")
            if rc:
                break
        _one_line(rc, err, "disk full")
        db.close_all()
        (full_disk / "filler").unlink()
        assert hashlib.sha256(dbp.read_bytes()).hexdigest() == before
        assert sqlite3.connect(dbp).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # no tmpfs (or in addition): files may not grow past the database's size
    db.close_all()
    before = hashlib.sha256(dbp.read_bytes()).hexdigest()
    r = _fsize_limited(["--db", dbp, "retighten", "interval", "NEW-" + "y" * 60, "3"], 2000,
                       folder)
    _one_line(r.returncode, r.stderr, "database")
    assert hashlib.sha256(dbp.read_bytes()).hexdigest() == before


def test_disk_full_during_record_keeps_a_readable_file(tmp_path, capsys, full_disk):
    if full_disk is None:
        pytest.skip("needs root for a tmpfs; the RLIMIT_FSIZE case is in the generate test")
    fake = FakeStream(period_s=0.01, batch=84)
    (full_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 300 * 1024))
    out = full_disk / "r.oimrec"
    try:
        rc, o, err = _run(capsys, "--db", tmp_path / "db.sqlite", "--port", fake.url, "record",
                          "--duration", "120", "--out", out)
    finally:
        fake.close()
    _one_line(rc, err, "disk full")
    assert not fake.stream                            # the device was told to stop
    with recording.Reader(out) as r:
        n = sum(len(c[2]) for c in r.chunks() if c[0] == "samples")
        assert n >= 4096 and r.errors                 # readable up to its last complete chunk
    got = sqlite3.connect(tmp_path / "db.sqlite").execute("SELECT samples FROM recording").fetchone()
    assert got is not None and 0 < got[0]


# --- the virtual device's start-up ----------------------------------------------------------------
def test_firmware_dying_at_start_leaves_no_folder(tmp_path, monkeypatch):
    from oimon.errors import OimonError
    from oimon_sim import device, mp
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "main.py").write_text("raise SystemExit('the firmware died at start-up')\n")
    monkeypatch.setattr(mp, "FIRMWARE", fw)
    made = []
    real = tempfile.mkdtemp

    def mkdtemp(*a, **k):
        made.append(real(*a, **k))
        return made[-1]
    monkeypatch.setattr(device.tempfile, "mkdtemp", mkdtemp)
    with pytest.raises(OimonError, match="exited at start"):
        device.start_virtual_device("walk", duration=2)
    assert made and not any(Path(m).exists() for m in made)
