"""pytest glue: every `def test_*` in tests/firmware/mp_*.py runs on the i386 MicroPython unix
port as its own test item; a failure shows the MicroPython traceback."""
import ast
import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FW_TESTS = ROOT / "tests" / "firmware"
SHIMS = FW_TESTS / "shims"
GAITPDB = ROOT.parent / "shared" / "data" / "gaitpdb"

from oimon_sim import mp  # noqa: E402

# A shared, loaded machine: the virtual device (real-time MicroPython) may answer a command
# late; the host's answer timeout (docs/host.md, OIMON_LINK_TIMEOUT) is generous in tests.
os.environ.setdefault("OIMON_LINK_TIMEOUT", "10")
# Commands run without --db (and so the key store beside it) never touch the user's own
# ~/.local/share/oimon: a database of this test session instead.
os.environ.setdefault("OIMON_DB", os.path.join(tempfile.mkdtemp(prefix="oimon-test-db-"),
                                               "oimon.sqlite"))


class MicroPythonFailure(Exception):
    pass


# The firmware tests run at mp.test_heap(): the board's heap less a quarter, as the unix port
# sees it with the firmware from .mpy (hardware/README.md "RAM budget"). Modules that do not fit
# it, with the reason (remove when they do):
#   mp_flashlog: the tests hold several Logs and whole copies of the partition double's memory
#   (bytes(p.mem), ~100 KB each) to compare before/after a step: the test's own bookkeeping,
#   not the firmware's; the main loop with its log runs at the board's heap (mp_app, timing model).
#   mp_supervisor: simulated reboots in one process: the test still holds the previous Device
#   (its 24 KB log queue and buffers) while the next boots, which a board never does.
_HEAP_EXCEPTIONS = {"mp_flashlog": "1024k", "mp_supervisor": "768k"}


def _module_heap(path):
    if Path(path).stem in _HEAP_EXCEPTIONS:
        return _HEAP_EXCEPTIONS[Path(path).stem]
    # a test module whose own test data need more than the board's heap says so at its top:
    #   MP_HEAPSIZE = "1024k"   (the firmware under test still runs from .mpy)
    for node in ast.parse(Path(path).read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "MP_HEAPSIZE" for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def run_mp_test(path, name, timeout=300):
    """Run one MicroPython test function; returns (ok, output)."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="oimon-mptest-") as storage:   # a fresh device each
        # the board's heap less a quarter (mp.test_heap()), firmware loaded from .mpy files as
        # on the board; OIMON_MP_HEAPSIZE=0 runs the sources with the port's default heap
        heap = os.environ.get("OIMON_MP_HEAPSIZE", _module_heap(path) or mp.test_heap())
        heap = None if heap in ("", "0") else heap
        proc = mp.run([str(FW_TESTS / "_run.py"), path.stem, name],
                      extra_path=[SHIMS, path.parent], timeout=timeout, OIMON_STORAGE=storage,
                      heapsize=heap, compiled=heap is not None)
    out = proc.stdout + proc.stderr
    return proc.returncode == 0 and out.rstrip().endswith("PASS"), out


class MicroPythonItem(pytest.Item):
    def __init__(self, *, name, parent, **kw):
        super().__init__(name=name, parent=parent, **kw)

    def runtest(self):
        ok, out = run_mp_test(self.path, self.name)
        if not ok:
            raise MicroPythonFailure(out)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, MicroPythonFailure):
            return "MicroPython (i386 unix port) failed:\n" + str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, "[micropython] %s::%s" % (self.path.name, self.name)


class MicroPythonFile(pytest.File):
    def collect(self):
        tree = ast.parse(self.path.read_text(), filename=str(self.path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                yield MicroPythonItem.from_parent(self, name=node.name)


def _mp_test_dirs():
    # tests/firmware, plus folders named in $OIMON_MP_TEST_DIRS (the harness's own self-test
    # points it at tests/harness to prove that a failing firmware test fails the run)
    extra = [Path(p).resolve() for p in os.environ.get("OIMON_MP_TEST_DIRS", "").split(os.pathsep) if p]
    return [FW_TESTS] + extra


def _is_mp_test(path):
    return path.suffix == ".py" and path.name.startswith("mp_") \
        and any(d in path.parents for d in _mp_test_dirs())


def pytest_collect_file(parent, file_path):
    # A file named on the command line goes through pytest_pycollect_makemodule below instead.
    if _is_mp_test(file_path) and not parent.session.isinitpath(file_path):
        return MicroPythonFile.from_parent(parent, path=file_path)
    return None


def pytest_pycollect_makemodule(module_path, parent):
    # `pytest tests/firmware/mp_x.py`: never import a MicroPython test module into CPython.
    if _is_mp_test(module_path):
        return MicroPythonFile.from_parent(parent, path=module_path)
    return None


@pytest.fixture(scope="session")
def gaitpdb():
    if not GAITPDB.is_dir():
        raise RuntimeError("../shared/data/gaitpdb is missing: CI provides it beside the clone")
    return GAITPDB
