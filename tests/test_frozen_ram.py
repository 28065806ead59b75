"""The frozen image's heap model (sim/oimon_sim/mp.py frozen_heap): what each firmware module
keeps in RAM when frozen is measured on the i386 unix port (sim/mpy/scripts/frozen_ram.py:
compile() the source, then the heap's growth across exec() of the module body), for every module
of firmware/manifest.py, and frozen_heap() gives the timing runs the board's heap plus the .mpy
code less that RAM. Behaviour only: what is measured, and that the numbers are consistent."""
import sys

import pytest

from oimon_sim import mp

ROOT = mp.ROOT


def _manifest_names():
    """Module names of firmware/manifest.py, as tools/bundle.py (`make firmware`) reads it."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import bundle as tb
    finally:
        sys.path.pop(0)
    names = set()
    for _src, target in tb.manifest_modules():
        name = target[len("lib/"):] if target.startswith("lib/") else target
        name = name.replace("/", ".")
        names.add(name[:-len(".__init__")] if name.endswith(".__init__") else name)
    return names


@pytest.fixture(scope="module")
def measured():
    return mp.frozen_ram()


def test_the_port_compiles_and_execs_source():
    """The method needs the builtin compile() and exec() (MICROPY_PY_BUILTINS_COMPILE)."""
    p = mp.run(["-c", "g = {}\nexec(compile('x = [1, 2]', 'm', 'exec'), g)\nprint(g['x'])"])
    assert p.returncode == 0 and p.stdout.strip() == "[1, 2]", p.stdout + p.stderr


def test_every_manifest_module_is_measured_or_failed_with_a_reason(measured):
    names = _manifest_names()
    assert names and "app" in names and "oimon_common.protocol" in names
    ram, failed = measured["modules"], measured["failed"]
    assert set(ram) | set(failed) == names
    assert not set(ram) & set(failed)
    for name, why in failed.items():
        assert isinstance(why, str) and why.strip(), name
    assert measured["total"] == sum(ram.values())
    # the board's HAL imports only on the board (machine.Pin): measured with a stand-in machine
    assert "hal_esp32" in ram or "hal_esp32" in failed
    for name, why in measured["stubbed"].items():
        assert name in names and "machine" in why, (name, why)


def test_each_module_keeps_less_in_ram_than_its_code_takes_in_the_heap(measured):
    ram, code = measured["modules"], measured["code"]
    for name, n in ram.items():
        assert 0 < n < code[name], (name, n, code.get(name))


def test_both_measures_cover_the_modules_the_running_firmware_imports(measured):
    names = _manifest_names()
    loaded, extra = set(measured["loaded"]), set(measured["extra"])
    assert set(mp.FIRMWARE_IMPORTS) <= loaded <= names
    assert "hal" in loaded and mp.BOARD_HAL not in loaded
    assert "hal_unix" in extra and not extra & names      # the unix HAL stands in for hal_esp32
    # the per-module code of those modules adds up to what code_in_heap_bytes() measures at once
    # (qstr pools grow in steps, so which import pays for a pool differs a little)
    code = mp.code_in_heap_bytes()
    assert abs(measured["code_loaded"] - code) < 0.05 * code, (measured["code_loaded"], code)
    ram = mp.frozen_ram_bytes()
    assert sum(measured["modules"].get(m, 0) for m in loaded) < ram <= measured["total"] or \
        mp.BOARD_HAL in measured["failed"]


def test_frozen_heap_is_the_board_heap_plus_the_code_less_its_ram():
    board = mp.kib(mp.BOARD_HEAP)
    code = mp.code_in_heap_bytes()
    heap = mp.frozen_heap()
    assert heap.endswith("k")
    kib = int(heap[:-1])
    assert board < kib < board + code / 1024
    assert kib == (board * 1024 + code - mp.frozen_ram_bytes()) // 1024
