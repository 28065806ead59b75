"""Flash-free deploy to the virtual device (release -> raw REPL on the unix port -> mpremote
copies and sha256 checks -> reset -> the monitor runs again), idempotence; the raw REPL itself
against mpremote's own client; flash with the real esptool against a pty that is no ESP32.

The unix port cannot import .mpy files built for xtensawin, so on the virtual device deploy only
copies the files and verifies their hashes; the monitor that comes back runs from firmware/."""
import hashlib
import os
import subprocess
import sys
import time
import tty

from oimon_sim.device import start_virtual_device
from oimon_sim import mp
from oimon.link import Link
from oimon_common import protocol as P
from test_host_support import ROOT, assert_user_error, build_firmware, run_cli


def test_deploy_to_the_virtual_device_is_idempotent(tmp_path, capsys):
    build = build_firmware(tmp_path / "build")
    vd = start_virtual_device("walk", speed=1, duration=10, storage=tmp_path / "storage")
    try:
        rc, out, err = run_cli(capsys, "--port", vd.path, "deploy", "--build", build, "--no-key")
        assert rc == 0, err + vd.log_tail()
        assert "copied app.mpy" in out and "copied main.py" in out and "copied board.mpy" in out
        assert "is running firmware" in out
        for m in build.glob("*.mpy"):
            if m.name == "main.mpy":
                assert not (vd.storage / "main.mpy").exists()
                continue
            assert hashlib.sha256((vd.storage / m.name).read_bytes()).digest() == \
                hashlib.sha256(m.read_bytes()).digest(), m.name
        assert (vd.storage / "main.py").read_bytes() == (ROOT / "firmware" / "main.py").read_bytes()
        # again: nothing to copy
        rc, out, err = run_cli(capsys, "--port", vd.path, "deploy", "--build", build, "--no-key")
        assert rc == 0, err
        assert "0 files copied" in out and "copied" not in out.replace("0 files copied", "")
        # one module changed on the board: only that one is copied
        (vd.storage / "dsp.mpy").write_bytes(b"stale")
        rc, out, err = run_cli(capsys, "--port", vd.path, "deploy", "--build", build, "--no-key")
        assert rc == 0 and "copied dsp.mpy" in out and "1 files copied" in out, out + err
        rc, out, err = run_cli(capsys, "--port", vd.path, "info", "--json")
        assert rc == 0 and '"device_id": "SIM-0001"' in out
    finally:
        vd.stop()


def test_deploy_refuses_a_missing_build(tmp_path, capsys):
    rc, out, err = run_cli(capsys, "--port", "/dev/does-not-exist", "deploy", "--build", tmp_path / "none")
    assert_user_error(rc, err, "make firmware")


def test_rawrepl_with_mpremote(tmp_path):
    """sim/mpy/rawrepl.py answers mpremote's own command line: cp (twice: up to date), sha256sum,
    exec with an exception."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    store = tmp_path / "store"
    store.mkdir()
    log = open(tmp_path / "log", "wb")
    p = subprocess.Popen([mp.interpreter(), "-c", "import rawrepl; rawrepl.serve()"], stdin=master,
                         stdout=master, stderr=log, env=mp.env(), cwd=str(store),
                         start_new_session=True)
    os.close(master)
    try:
        src = tmp_path / "blob.bin"
        src.write_bytes(bytes(range(256)) * 9 + b"tail")

        def mpr(*a):
            return subprocess.run([sys.executable, "-m", "mpremote", "connect", path] + list(a),
                                  capture_output=True, text=True, timeout=60)
        r = mpr("fs", "cp", str(src), ":blob.bin")
        assert r.returncode == 0, r.stdout + r.stderr
        assert (store / "blob.bin").read_bytes() == src.read_bytes()
        r = mpr("fs", "cp", str(src), ":blob.bin")
        assert "Up to date" in r.stdout
        r = mpr("fs", "sha256sum", ":blob.bin")
        assert hashlib.sha256(src.read_bytes()).hexdigest() in r.stdout
        r = mpr("exec", "print(6 * 7)")
        assert r.stdout.strip() == "42"
        r = mpr("exec", "1/0")
        assert r.returncode != 0 and "ZeroDivisionError" in r.stdout + r.stderr
    finally:
        p.kill()
        p.wait()
        os.close(slave)
        log.close()


def test_flash_against_a_virtual_device_is_one_clear_line(tmp_path, capsys):
    img = tmp_path / "micropython-esp32s3.bin"
    # a plausible S3 image header (magic 0xE9, chip id 9 at byte 12): the port is what fails
    img.write_bytes(bytes([0xE9, 3, 2, 0x3F, 0, 0, 0, 0, 0xEE, 0, 0, 0, 9, 0]) + bytes(300000))
    vd = start_virtual_device("demo", speed=1, duration=10, storage=tmp_path / "storage")
    try:
        # the demo's overload (at 5 s) goes into the device log: wait for it (a condition,
        # generous bound), then the monitor's log is not synced: refused before any erase
        t_end = time.monotonic() + 90
        while time.monotonic() < t_end:
            with Link(vd.path) as ln:
                if ln.command(P.C_STATUS)["log"]["seq"] >= 1:
                    break
            time.sleep(0.3)
        rc, out, err = run_cli(capsys, "--port", vd.path, "--db", tmp_path / "db.sqlite", "flash",
                               "--firmware", img, "--no-deploy", "--yes")
        assert_user_error(rc, err, "not yet synced")
        # no terminal, no --yes: refused
        rc, out, err = run_cli(capsys, "--port", vd.path, "--db", tmp_path / "db.sqlite", "flash",
                               "--firmware", img, "--no-deploy", "--force")
        assert_user_error(rc, err, "--yes")
        rc, out, err = run_cli(capsys, "--port", vd.path, "--db", tmp_path / "db.sqlite", "flash",
                               "--firmware", img, "--no-deploy", "--force", "--yes",
                               "--backup", tmp_path / "backup.bin")
        assert_user_error(rc, err.splitlines()[-1] + "\n", "esptool:")
        assert "saving the whole flash" in err and "erasing" not in err       # backup first
        assert not (tmp_path / "backup.bin").exists() and not (tmp_path / "backup.bin.part").exists()
        assert err.splitlines()[-1].startswith("oimon: esptool:")
        # the monitor on the virtual device is untouched
        rc, out, err = run_cli(capsys, "--port", vd.path, "info", "--json")
        assert rc == 0 and "SIM-0001" in out
    finally:
        vd.stop()
