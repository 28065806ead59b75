"""What may import what (issue 10): the host library (host/oimon, not its commands) never imports
the simulator, the simulator never imports the commands (or the CLI that loads them), the shared
package (common/oimon_common) imports nothing of the firmware, host or simulator; so there is no
import cycle oimon <-> oimon_sim. Imports inside functions in the simulator exist only where they
buy start-up time and say so (a `lazy` comment between the def and the import). Read with
ast: every import, at any depth, counts."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = ROOT / "host" / "oimon"
SIM = ROOT / "sim" / "oimon_sim"
COMMON = ROOT / "common" / "oimon_common"
FIRMWARE_MODULES = {p.stem for p in (ROOT / "firmware").glob("*.py")} | \
    {p.stem for p in (ROOT / "sim" / "mpy").glob("*.py")}


def _imports(path, package):
    """[(lineno, absolute module name, line of the enclosing def or 0)] of every import."""
    tree = ast.parse(path.read_text())
    funcs = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                funcs.setdefault(id(sub), node.lineno)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, funcs.get(id(node), 0)) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.append((node.lineno, mod, funcs.get(id(node), 0)))
            out += [(node.lineno, mod + "." + a.name, funcs.get(id(node), 0)) for a in node.names]
    return out


def _files(root):
    return sorted(p for p in root.rglob("*.py"))


def _pkg(path, root, name):
    """The package a module is in (what its relative imports are relative to)."""
    return ".".join([name] + list(path.relative_to(root).parent.parts))


def _starts(mod, prefix):
    return mod == prefix or mod.startswith(prefix + ".")


def test_host_library_never_imports_the_simulator():
    for p in _files(HOST):
        if "commands" in p.relative_to(HOST).parts:
            continue                           # `oimon sim ...` commands drive the simulator
        for line, mod, _ in _imports(p, _pkg(p, HOST, "oimon")):
            assert not _starts(mod, "oimon_sim"), "%s:%d imports %s" % (p, line, mod)


def test_simulator_never_imports_the_commands():
    for p in _files(SIM):
        for line, mod, _ in _imports(p, "oimon_sim"):
            assert not (_starts(mod, "oimon.commands") or _starts(mod, "oimon.cli")), \
                "%s:%d imports %s" % (p, line, mod)


def test_shared_package_imports_nothing_of_firmware_host_or_simulator():
    for p in _files(COMMON):
        for line, mod, _ in _imports(p, "oimon_common"):
            top = mod.split(".")[0]
            assert top not in ("oimon", "oimon_sim") and top not in FIRMWARE_MODULES, \
                "%s:%d imports %s" % (p, line, mod)


def test_simulator_imports_in_functions_only_for_start_up_time():
    for p in _files(SIM):
        lines = p.read_text().splitlines()
        for line, mod, fn in _imports(p, "oimon_sim"):
            if fn:
                near = " ".join(lines[fn - 1:line])     # from the def to the import
                assert "lazy" in near, "%s:%d imports %s inside a function without saying why " \
                    "(a `# lazy: ...` comment)" % (p.relative_to(ROOT), line, mod)


def test_nothing_imports_the_old_model_module():
    for root, name in ((SIM, "oimon_sim"), (HOST, "oimon")):
        for p in _files(root):
            if p.name == "model.py" and root == SIM:
                continue
            for line, mod, _ in _imports(p, name):
                assert not _starts(mod, "oimon_sim.model"), "%s:%d" % (p, line)
    for p in sorted((ROOT / "tests").glob("*.py")):
        for line, mod, _ in _imports(p, "tests"):
            assert not _starts(mod, "oimon_sim.model"), "%s:%d" % (p, line)


# MicroPython's own modules the firmware may use (ports/esp32 and the unix port build them in)
MICROPYTHON_MODULES = {"micropython", "machine", "esp32", "esp", "array", "struct", "binascii",
                       "json", "os", "time", "sys", "select", "gc", "hashlib", "zlib", "errno",
                       "io", "random", "collections", "uctypes", "network", "asyncio",
                       "_thread", "vfs", "deflate", "framebuf", "neopixel", "cryptolib", "btree"}


def test_firmware_imports_only_itself_the_shared_layer_and_micropython():
    """firmware/ is device-only: it imports its own modules, oimon_common, the unix HAL stand-in
    that hal.py selects, and MicroPython's modules; never the host or the simulator."""
    own = {p.stem for p in (ROOT / "firmware").glob("*.py")} | {"hal_unix"}
    for p in _files(ROOT / "firmware"):
        if p.name == "manifest.py":
            continue
        for line, mod, _ in _imports(p, "firmware"):
            top = mod.split(".")[0]
            assert top in own or top == "oimon_common" or top in MICROPYTHON_MODULES, \
                "%s:%d imports %s" % (p, line, mod)
