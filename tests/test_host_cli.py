"""The host command's conventions without firmware: port marking and selection, pyserial URLs
(loop://, socket://), one-line errors with exit 2 and no change to the database, input checks
before anything is sent, flash's image checks, info's human output."""
import json
import os
import sqlite3

import pytest
from serial.tools import list_ports_common

from oimon import cli, db, link
from oimon.commands import config as cmd_config
from oimon_common import protocol as P
from test_host_support import FAKE_INFO, FakeDevice, assert_user_error, run_cli


def _port(dev, vid=None, pid=None, desc="n/a"):
    p = list_ports_common.ListPortInfo(dev)
    p.vid, p.pid, p.description = vid, pid, desc
    return p


@pytest.fixture
def fake_ports(monkeypatch):
    ports = []
    monkeypatch.setattr(link.list_ports, "comports", lambda *a, **k: list(ports))
    monkeypatch.delenv("OIMON_PORT", raising=False)
    return ports


def test_ports_marking(fake_ports, capsys):
    fake_ports += [_port("/dev/ttyS0", desc="ttyS0"),
                   _port("/dev/ttyACM0", 0x303A, 0x1001, "USB JTAG/serial debug unit"),
                   _port("/dev/ttyUSB0", 0x10C4, 0xEA60, "CP2102"),
                   _port("/dev/ttyUSB1", 0x1A86, 0x7523, "USB2.0-Serial"),
                   _port("/dev/ttyUSB2", 0x0403, 0x6001, "FT232R"),
                   _port("/dev/ttyUSB3", 0x046D, 0xC52B, "a mouse receiver")]
    marks = {d: m for d, _desc, m in link.list_ports_marked()}
    assert marks["/dev/ttyS0"] is None and marks["/dev/ttyUSB3"] is None
    assert "ESP32-S3" in marks["/dev/ttyACM0"]
    assert "CP210x" in marks["/dev/ttyUSB0"] and "CH340" in marks["/dev/ttyUSB1"]
    assert "FT232R" in marks["/dev/ttyUSB2"]
    rc, out, err = run_cli(capsys, "ports")
    assert rc == 0
    assert "/dev/ttyACM0" in out and "<- likely ESP32-S3" in out
    assert "/dev/ttyS0" in out and "ttyS0  <-" not in out
    rc, out, _ = run_cli(capsys, "ports", "--json")
    assert {p["device"]: p["esp32"] for p in json.loads(out)}["/dev/ttyS0"] is None
    # several boards: choose with --port
    with pytest.raises(Exception) as e:
        link.resolve_port(None)
    assert "several boards" in str(e.value)


def test_port_selection(fake_ports, monkeypatch, capsys):
    with pytest.raises(Exception) as e:
        link.resolve_port(None)
    assert "no oimon device found" in str(e.value)
    fake_ports.append(_port("/dev/ttyACM3", 0x303A, 0x1001))
    assert link.resolve_port(None) == "/dev/ttyACM3"
    rc, out, _ = run_cli(capsys, "ports")
    assert "oimon will use /dev/ttyACM3" in out
    monkeypatch.setenv("OIMON_PORT", "loop://")
    assert link.resolve_port(None) == "loop://"
    assert link.resolve_port("/dev/pts/9") == "/dev/pts/9"
    monkeypatch.delenv("OIMON_PORT")
    fake_ports.clear()
    rc, out, err = run_cli(capsys, "ports")
    assert rc == 0 and "no serial ports found" in out
    rc, out, err = run_cli(capsys, "--db", "/nonexistent-dir-xyz/db", "info")
    assert_user_error(rc, err, "no oimon device found")


def test_loop_url_is_not_a_device(capsys, tmp_path):
    # loop:// echoes our own command frame back: nothing answers
    rc, out, err = run_cli(capsys, "--port", "loop://", "info")
    assert_user_error(rc, err, "not answering")


def test_socket_url_info_and_config(capsys, tmp_path, monkeypatch):
    fd = FakeDevice()
    try:
        rc, out, err = run_cli(capsys, "--port", fd.url, "info")
        assert rc == 0, err
        assert "calibration     UNCALIBRATED" in out
        assert "FAKE-42" in out and "compression 900 N" in out and "bending 30.0 N*m" in out
        assert "retightening    NEVER RECORDED" in out
        rc, out, err = run_cli(capsys, "--port", fd.url, "info", "--json")
        assert json.loads(out)["device_id"] == "FAKE-42"
        monkeypatch.setenv("OIMON_PORT", fd.url)
        rc, out, err = run_cli(capsys, "config", "show")
        assert rc == 0 and "II" in out and "<- active" in out
        rc, out, err = run_cli(capsys, "time")
        assert rc == 0 and "device clock set" in out
    finally:
        fd.close()


def test_unknown_port_one_line(capsys, tmp_path):
    dbp = tmp_path / "db.sqlite"
    db.connect(dbp).close()
    before = dbp.read_bytes()
    for argv in (["info"], ["config", "show"], ["record", "--duration", "1", "--out", str(tmp_path / "r")],
                 ["deploy", "--bundle", str(tmp_path)], ["calibrate", "--plan", str(tmp_path / "none.json")]):
        rc, out, err = run_cli(capsys, "--port", "/dev/does-not-exist", "--db", dbp, *argv)
        assert_user_error(rc, err)
    rc, out, err = run_cli(capsys, "--port", "socket://127.0.0.1:1", "--db", dbp, "info")
    assert_user_error(rc, err, "cannot open port")
    assert dbp.read_bytes() == before


@pytest.mark.parametrize("assign, msg", [
    ("comp=199", "outside 200..2000 N"), ("comp=2001", "outside 200..2000 N"),
    ("moment=4.9", "outside 5..90"), ("moment=91", "outside 5..90"),
    ("tens=20", "outside 50..1000"), ("body_weight=29", "outside 30..200 kg"), ("weight=201", "outside"),
    ("phase=IV", "choose one of"), ("comp=lots", "not a number"), ("comp=nan", "outside"),
    ("pseudonym=P-2", "given twice"), ("colour=red", "unknown key"), ("comp", "KEY=VALUE"),
])
def test_config_values_checked_before_sending(capsys, tmp_path, assign, msg):
    fd = FakeDevice()
    dbp = tmp_path / "db.sqlite"
    db.connect(dbp).close()
    before = dbp.read_bytes()
    try:
        rc, out, err = run_cli(capsys, "--port", fd.url, "--db", dbp, "config", "set", "patient=P-1", assign)
        assert_user_error(rc, err, msg)
        assert fd.commands == []            # nothing was sent
    finally:
        fd.close()
    assert dbp.read_bytes() == before


def test_config_parse_and_device_units():
    v = cmd_config.parse_assignments(["comp=1500", "tension=300", "moment=45.5", "phase=ii",
                                      "body_weight=82", "patient=P-017"])
    ch = cmd_config.device_changes(v, "full")
    assert ch == {"phase": "II", "body_weight_kg": 82, "patient": "P-017",
                  "limits": {"II": {"comp": 15000, "tens": 3000, "moment": 4550}}}
    assert cmd_config.device_changes(cmd_config.parse_assignments(["comp=200"]), "I") == \
        {"limits": {"I": {"comp": 2000}}}


def test_bad_files_one_line(capsys, tmp_path):
    dbp = tmp_path / "db.sqlite"
    db.connect(dbp).close()
    before = dbp.read_bytes()
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(os.urandom(100000))
    other = tmp_path / "esp32.bin"
    other.write_bytes(bytes([0xE9, 3, 2, 0x20]) + bytes(8) + bytes([0, 0]) + bytes(100000))  # chip 0
    plan = tmp_path / "plan.json"
    plan.write_text("{not json")
    cases = [
        (["flash", "--firmware", str(tmp_path / "missing.bin")], "No such file"),
        (["flash", "--firmware", str(garbage)], "not an ESP32 firmware image"),
        (["flash", "--firmware", str(other)], "another chip"),
        (["calibrate", "--plan", str(plan)], "not valid JSON"),
        (["calibrate", "--plan", str(tmp_path / "nope.json")], "cannot read"),
        (["plot", str(garbage), "--out", str(tmp_path / "p.png")], "not an oimon recording"),
        (["report", "--out", str(tmp_path / "r.txt")], ".html or .pdf"),
        (["report", "--out", str(tmp_path / "r.html"), "--device", "NOPE"], "not in the database"),
        (["calibrate", "--plan", str(plan), "--bound", "50"], ""),
    ]
    for argv, msg in cases:
        # the port does not exist: a check that touched it would fail differently
        rc, out, err = run_cli(capsys, "--port", "/dev/does-not-exist", "--db", dbp, *argv)
        assert_user_error(rc, err, msg)
    assert dbp.read_bytes() == before
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("plan, msg", [
    ({"steps": []}, "non-empty"),
    ({"steps": [{"axis": "axial", "mass_kg": 5}, {"axis": "ap", "mass_kg": 5},
                {"axis": "ml", "mass_kg": 5}]}, "tare"),
    ({"steps": [{"name": "tare"}, {"axis": "axial", "mass_kg": 5}]}, "all three axes"),
    ({"steps": [{"name": "tare"}, {"axis": "axial", "mass_kg": 9999}]}, "mass_kg"),
    ({"steps": [{"name": "tare"}, {"axis": "twist", "mass_kg": 5}]}, "axial|ap|ml"),
    ({"lever_arm_m": 0, "steps": [{"name": "tare"}]}, "lever_arm_m"),
])
def test_bad_plans(capsys, tmp_path, plan, msg):
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(plan))
    rc, out, err = run_cli(capsys, "--port", "/dev/does-not-exist", "--db", tmp_path / "db",
                           "calibrate", "--plan", p)
    assert_user_error(rc, err, msg)


def test_corrupt_database(capsys, tmp_path):
    dbp = tmp_path / "db.sqlite"
    dbp.write_bytes(b"this is not sqlite" * 100)
    before = dbp.read_bytes()
    rc, out, err = run_cli(capsys, "--db", dbp, "retighten", "status")
    assert_user_error(rc, err, "database")
    rc, out, err = run_cli(capsys, "--db", dbp, "events")
    assert_user_error(rc, err, "database")
    assert dbp.read_bytes() == before


def test_schema_migrates_forward(tmp_path):
    dbp = tmp_path / "old.sqlite"
    con = sqlite3.connect(dbp)
    con.executescript(db.MIGRATIONS[0] + "PRAGMA user_version = 1;")
    con.execute("INSERT INTO device(device_id) VALUES ('OLD-1')")
    con.commit()
    con.close()
    con = db.connect(dbp)
    assert con.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    assert [r[0] for r in con.execute("SELECT device_id FROM device")] == ["OLD-1"]
    cols = [r[1] for r in con.execute("PRAGMA table_info(calibration)")]
    assert "max_error_pct" in cols and "bound_pct" in cols
    con.execute("PRAGMA user_version = %d" % (db.SCHEMA_VERSION + 1))
    con.commit()
    con.close()
    with pytest.raises(Exception) as e:
        db.connect(dbp)
    assert "newer than this oimon" in str(e.value)


def test_default_db_path(monkeypatch, tmp_path):
    monkeypatch.setenv("OIMON_DB", str(tmp_path / "x.sqlite"))
    assert db.default_path() == tmp_path / "x.sqlite"
    monkeypatch.delenv("OIMON_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert db.default_path() == tmp_path / "data" / "oimon" / "oimon.sqlite"


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for c in ("ports", "info", "flash", "deploy", "calibrate", "config", "record", "events",
              "plot", "report", "retighten"):
        assert c in out


def test_protocol_version_handshake_refuses_a_mismatch(capsys):
    """C_INFO names the device's protocol version; frames of another version are recognised:
    either way one line naming both versions and what to do."""
    for fd in (FakeDevice(info=dict(FAKE_INFO, protocol=P.VERSION + 1)),
               FakeDevice(info={k: v for k, v in FAKE_INFO.items() if k != "protocol"}),
               FakeDevice(frame_version=P.VERSION + 1)):
        try:
            rc, out, err = run_cli(capsys, "--port", fd.url, "info")
            assert_user_error(rc, err, "protocol version")
            assert "oimon deploy" in err and "version %d" % P.VERSION in err
        finally:
            fd.close()
