"""Flash-free deploy to the virtual device (release -> raw REPL on the unix port -> mpremote
copies and sha256 checks -> reset -> the monitor runs again), idempotence; the raw REPL itself
against mpremote's own client; flash with the real esptool against a pty that is no ESP32.

The bundle deployed to the virtual device is built for x86 (the i386 unix port loads x86 native
code), so after deploy the monitor runs from the deployed .mpy files; a second virtual device with
no firmware sources on its path shows the bundle is complete."""
import hashlib
import json
import os
import subprocess
import sys
import time
import tty

from oimon import bundle as B
from oimon_common import protocol as P
from oimon_sim.device import VirtualDevice, start_virtual_device
from oimon_sim import mp
from oimon.link import Link
from test_host_support import ROOT, assert_user_error, build_bundle, run_cli


def test_deploy_to_the_virtual_device_is_idempotent(tmp_path, capsys):
    bundle = build_bundle(tmp_path / "bundle", "x86")
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["protocol"] == P.VERSION and meta["arch"] == "x86"
    paths = {f["path"] for f in meta["files"]}
    assert {"app.mpy", "main.py", "board.mpy", "lib/oimon_common/protocol.mpy"} <= paths
    assert not any("decode" in p or "hal_unix" in p for p in paths)   # host/sim code stays home
    vd = start_virtual_device("walk", speed=1, duration=10, storage=tmp_path / "storage")
    try:
        (vd.storage / "protocol.mpy").write_bytes(b"an old flat module")   # left by an old deploy
        rc, out, err = run_cli(capsys, "--port", vd.path, "deploy", "--bundle", bundle, "--no-key")
        assert rc == 0, err + vd.log_tail()
        assert "copied app.mpy" in out and "copied main.py" in out and "copied board.mpy" in out
        assert "copied lib/oimon_common/protocol.mpy" in out and "removed stale protocol.mpy" in out
        assert "is running firmware" in out
        for f in meta["files"]:
            assert hashlib.sha256((vd.storage / f["path"]).read_bytes()).hexdigest() == f["sha256"]
        # again: nothing to copy
        rc, out, err = run_cli(capsys, "--port", vd.path, "deploy", "--bundle", bundle, "--no-key")
        assert rc == 0, err
        assert "0 files copied" in out and "copied" not in out.replace("0 files copied", "")
        # one module changed on the board: only that one is copied
        (vd.storage / "dsp.mpy").write_bytes(b"stale")
        rc, out, err = run_cli(capsys, "--port", vd.path, "deploy", "--bundle", bundle, "--no-key")
        assert rc == 0 and "copied dsp.mpy" in out and "1 files copied" in out, out + err
        rc, out, err = run_cli(capsys, "--port", vd.path, "info", "--json")
        assert rc == 0 and '"device_id": "SIM-0001"' in out
    finally:
        vd.stop()
    # the deployed bundle alone (no firmware/ or common/ on the path) runs the monitor
    raw = tmp_path / "still.raw"
    raw.write_bytes(bytes(16 * 1000))
    vd2 = VirtualDevice(raw, storage=tmp_path / "storage", sources=False)
    vd2.start()
    try:
        rc, out, err = run_cli(capsys, "--port", vd2.path, "info", "--json")
        assert rc == 0, err + vd2.log_tail()
        assert json.loads(out)["protocol"] == P.VERSION
    finally:
        vd2.stop()


def test_deploy_refuses_a_bundle_for_another_board(tmp_path, capsys):
    bundle = build_bundle(tmp_path / "bundle", "xtensawin")
    vd = start_virtual_device("walk", speed=1, duration=10, storage=tmp_path / "storage")
    try:
        rc, out, err = run_cli(capsys, "--port", vd.path, "deploy", "--bundle", bundle, "--no-key")
        assert_user_error(rc, err, "built for xtensawin")
        assert not (vd.storage / "app.mpy").exists()
    finally:
        vd.stop()


def test_deploy_refuses_a_missing_or_damaged_bundle(tmp_path, capsys):
    rc, out, err = run_cli(capsys, "--port", "/dev/does-not-exist", "deploy", "--bundle", tmp_path / "none")
    assert_user_error(rc, err, "make firmware")
    bundle = build_bundle(tmp_path / "bundle", "x86")
    (bundle / "dsp.mpy").write_bytes(b"tampered")
    try:
        list(B.load(bundle).files())
        raise AssertionError("a tampered bundle was accepted")
    except B.OimonError as e:
        assert "does not match bundle.json" in str(e)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["protocol"] = P.VERSION + 1
    (bundle / "bundle.json").write_text(json.dumps(meta))
    rc, out, err = run_cli(capsys, "--port", "/dev/does-not-exist", "deploy", "--bundle", bundle)
    assert_user_error(rc, err, "protocol")


def test_the_manifest_lists_every_device_module():
    """firmware/manifest.py is the one list of what ships: every firmware module (not main.py,
    which stays a source file) and every shared module but the host-only ones."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import bundle as tb
    finally:
        sys.path.pop(0)
    listed = {src.resolve() for src, _t in tb.manifest_modules()}
    fw = {p.resolve() for p in (ROOT / "firmware").glob("*.py")
          if p.name not in ("main.py", "manifest.py")}
    common = {p.resolve() for p in (ROOT / "common" / "oimon_common").glob("*.py")
              if p.name not in B.HOST_ONLY}
    assert fw - listed == set(), "firmware modules missing from firmware/manifest.py"
    assert common - listed == set(), "shared modules missing from firmware/manifest.py"
    assert not {p for p in listed if p.name in B.HOST_ONLY}


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
