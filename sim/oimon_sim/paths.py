"""Where the simulator finds the source tree it runs: the firmware (firmware/, common/), the unix
side of the HAL and the MicroPython scripts (sim/mpy/, sim/mpy/scripts/), the MicroPython unix
port (tools/micropython32, 64), the firmware tests' shims and build/. The one place that knows:

    $OIMON_SOURCE    a checkout of the oimon repository (default: the checkout this package is
                     imported from, sim/oimon_sim/ -> two levels up)

The simulator runs the firmware from source, so it needs a checkout; used from an installed
package without one, `source()` raises SourceMissing with one line saying what to set.
"""
import os
from pathlib import Path

from oimon.errors import OimonError


class SourceMissing(OimonError):
    """The simulator is used without an oimon checkout (the commands print it as one line)."""


def _root():
    env = os.environ.get("OIMON_SOURCE")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2]


ROOT = _root()
FIRMWARE = ROOT / "firmware"
COMMON = ROOT / "common"
SIM_MPY = ROOT / "sim" / "mpy"
SCRIPTS = SIM_MPY / "scripts"
TOOLS = ROOT / "tools"
BUILD = ROOT / "build"
FW_TESTS = ROOT / "tests" / "firmware"
SHIMS = FW_TESTS / "shims"


def source():
    """ROOT, after checking that it is an oimon checkout (firmware and simulator scripts)."""
    if not ((FIRMWARE / "dsp.py").is_file() and SCRIPTS.is_dir() and (COMMON / "oimon_common").is_dir()):
        raise SourceMissing("the simulator needs the oimon source tree (firmware/, common/, sim/mpy/)"
                            " but %s is not one: set OIMON_SOURCE to a checkout" % ROOT)
    return ROOT


def script(name):
    """Path of the MicroPython script sim/mpy/scripts/<name>.py (checked to exist)."""
    p = SCRIPTS / (name + ".py")
    if not p.is_file():
        source()
        raise SourceMissing("MicroPython script missing: %s" % p)
    return p
