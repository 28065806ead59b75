# What each module of firmware/manifest.py keeps in RAM when it is frozen into the image
# (sim/oimon_sim/mp.py frozen_ram_bytes, frozen_heap; docs/timing-model.md).
#   micropython -X heapsize=4096k frozen_ram.py MANIFEST [ROOT ...]
# with the firmware on MICROPYPATH as .mpy files (oimon_sim.mp.env(compiled=True)).
#
# A frozen module's raw code, bytecode, native code, qstrs and constant objects are in flash;
# what the heap gets is what running the module body makes: its globals dict, a function object
# per def (and default-argument tuples), class objects and their dicts, module-level arrays,
# lists, dicts, strings built at import. Here each module's source is compiled with the builtin
# compile() first (bytecode, qstrs and constants go into the heap then, as the freezer puts them
# into flash), then run with exec() into a fresh globals dict; the heap's growth across the exec
# (gc.collect() on both sides, the dict kept alive) is that module's RAM when frozen. Its imports
# are already in sys.modules (imported normally first), so an exec measures the module alone.
#
# Also measured, per module: "code", the heap the module takes when it is first imported from its
# .mpy file (bytecode, native code, qstrs, constants and the RAM above; its own imports are
# measured apart, through a hook on __import__), as oimon_sim.mp.code_in_heap_bytes() measures
# the whole firmware; "loaded": the manifest modules that importing the ROOTs loads (the running
# firmware), "extra": the other modules that brings in (the unix side of the HAL), with their
# "code" too. A module that imports only on the board (machine.Pin ...) is measured with a
# stand-in `machine` that has the names its body binds ("stubbed", with the unix port's error);
# one that cannot be measured even so is in "failed" with the reason.
# Prints one JSON line: {"modules": {name: bytes}, "total": n, "failed": {name: reason}, ...}.
import sys
import os
import gc
import json
import builtins
import micropython
import machine      # the unix port's (the stand-in below adds the board's names)

RUNS = 3            # the smallest growth of RUNS execs: a stale pointer on the C stack could keep
                    # a little garbage alive through one gc.collect() (the runs agree today)
MODULE_OBJ = 16     # the module object itself, which exec() into a dict does not make:
                    # mp_obj_new_module's mp_module_context_t, 4 words = one 16-byte GC block


class _Hw:
    # stands for any machine class: a module body only binds it to names, never calls it
    OUT = 1
    IN = 0
    PULL_UP = 2
    ATTN_11DB = 3

    def __init__(self, *a, **k):
        pass


class _Machine:
    # machine on the ESP32 as far as a module body uses it: names bound, unique_id() (6 bytes on
    # the ESP32-S3), the reset causes (small ints); what the body allocates is then the same
    Pin = SPI = PWM = RTC = WDT = I2C = ADC = _Hw
    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5

    def unique_id(self):
        return b"\x30\xae\xa4\x12\x34\x56"

    def freq(self, hz=0):
        return 240000000

    def reset(self):
        pass

    def reset_cause(self):
        return 1


def _stubs():
    m = _Machine()
    for k in dir(machine):
        if not k.startswith("__") and not hasattr(m, k):
            setattr(m, k, getattr(machine, k))
    return {"machine": m}


STUBS = _stubs()


def manifest_modules(path):
    """[(module name, source path)] in the manifest's order: the manifest run with stand-ins for
    MicroPython's manifest functions, as tools/bundle.py reads it (include: the port's own)."""
    base = path.rsplit("/", 1)[0] if "/" in path else "."
    out = []

    def module(name, base_path=".", opt=0):
        src = (base if base_path == "." else base + "/" + base_path) + "/" + name
        mod = name[:-3].replace("/", ".")
        if mod.endswith(".__init__"):
            mod = mod[:-9]
        out.append((mod, src))

    def package(name, files=None, base_path=".", opt=0):
        d = (base if base_path == "." else base + "/" + base_path) + "/" + name
        for f in sorted(os.listdir(d)) if files is None else files:
            if f.endswith(".py"):
                module(name + "/" + f, base_path=base_path)

    def nothing(*a, **k):
        pass

    f = open(path)
    text = f.read()
    f.close()
    exec(text, {"include": nothing, "module": module, "package": package, "freeze": nothing,
                "require": nothing, "metadata": nothing})
    return out


def _stubbed(fn, *args):
    saved = {}
    for name, stub in STUBS.items():
        saved[name] = sys.modules.get(name)
        sys.modules[name] = stub
    try:
        return fn(*args)
    finally:
        for name, old in saved.items():
            if old is None:
                del sys.modules[name]
            else:
                sys.modules[name] = old


# ---- code: heap of each module's first import from .mpy, its own imports measured apart -------
# The hook's bookkeeping is preallocated (small ints, references to existing names), so that it
# allocates nothing that outlives an import and would be counted.
_real_import = builtins.__import__
NAMES = [None] * 128
BYTES = [0] * 128
KIDS = [0] * 64     # per nesting depth: heap of the imports measured inside the current one
STATE = [0, 0, 1]   # [records, depth, measuring]


def _hook(name, globs=None, locs=None, fromlist=None, level=0):
    if level or not STATE[2] or name in sys.modules:
        return _real_import(name, globs, locs, fromlist, level)
    d = STATE[1]
    KIDS[d + 1] = 0
    STATE[1] = d + 1
    gc.collect()
    a0 = gc.mem_alloc()
    try:
        r = _real_import(name, globs, locs, fromlist, level)
    finally:
        STATE[1] = d
    gc.collect()
    n = gc.mem_alloc() - a0
    if name in sys.modules:         # a module file (built-in modules are not in sys.modules)
        i = STATE[0]
        NAMES[i] = name
        BYTES[i] = n - KIDS[d + 1]
        STATE[0] = i + 1
        KIDS[d] += n
    return r


def _import(name):
    __import__(name)
    return sys.modules[name]


# ---- RAM: what running the already compiled module body makes -------------------------------
KEEP = []           # what was measured stays alive (else the next collection frees it)


def ram_bytes(name, path):
    f = open(path)
    src = f.read()
    f.close()
    code = compile(src, path, "exec")       # bytecode, qstrs, constants: flash when frozen
    src = None
    best = None
    for _ in range(RUNS):
        g = None
        gc.collect()
        a0 = gc.mem_alloc()
        g = {"__name__": name, "__file__": path}    # a frozen module's dict has both
        exec(code, g)
        gc.collect()
        n = gc.mem_alloc() - a0 + MODULE_OBJ
        best = n if best is None or n < best else best
        KEEP.append(g)
    return best


def _why(e):
    return "%s: %s" % (type(e).__name__, e)


def main():
    micropython.opt_level(1)           # the manifest freezes with opt=1 (as mpy-cross -O1)
    mods = manifest_modules(sys.argv[1])
    names = set(n for n, _ in mods)
    builtins.__import__ = _hook
    for n in names:                    # packages first: each import then loads one module file
        if "." in n:
            _import(n.rsplit(".", 1)[0])
    before = set(sys.modules)
    for root in sys.argv[2:]:          # the running firmware, as code_in_heap_bytes() imports it
        __import__(root)
    loaded_now = set(sys.modules) - before
    loaded = [n for n, _ in mods if n in loaded_now or                # (a package: if the
              [m for m in loaded_now if m.startswith(n + ".")]]       # roots use a submodule)
    extra = sorted(n for n in loaded_now if n not in names)
    failed, stubbed = {}, {}
    for name, _ in mods:               # the rest, so that every import is in sys.modules
        if name in sys.modules:
            continue
        try:
            # with the stand-in machine first (it keeps the unix port's names), so that a
            # module that needs it is measured at its first import (its qstrs are new then)
            _stubbed(_import, name)
        except Exception as e:  # noqa: BLE001
            failed[name] = "does not import on the unix port, even with a stand-in machine: " + _why(e)
            continue
        old = sys.modules.pop(name)
        STATE[2] = 0
        try:
            _import(name)
        except Exception as e:  # noqa: BLE001
            stubbed[name] = "on the unix port %s: measured with a stand-in machine" % _why(e)
        STATE[2] = 1
        sys.modules[name] = old
    builtins.__import__ = _real_import
    code = {}
    for i in range(STATE[0]):
        code[NAMES[i]] = BYTES[i]
    ram = {}
    for name, path in mods:
        if name in failed:
            continue
        try:
            ram[name] = _stubbed(ram_bytes, name, path) if name in stubbed else ram_bytes(name, path)
        except Exception as e:  # noqa: BLE001
            failed[name] = "measurement failed: " + _why(e)
    print(json.dumps({"modules": ram, "total": sum(ram.values()), "failed": failed,
                      "code": code, "stubbed": stubbed, "loaded": loaded, "extra": extra,
                      "code_loaded": sum(code.get(n, 0) for n in loaded + extra)}))


main()
