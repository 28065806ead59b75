"""Locate and run the MicroPython unix port that `make micropython` provisions.

The firmware runs on the unix port with these folders on MICROPYPATH, first match wins:
shims (test doubles, if any), sim/mpy (the unix/sim side of the HAL), firmware/ and common/
(the shared package oimon_common, in /lib on the device).
"""
import os
import subprocess
from pathlib import Path

from .paths import COMMON, FIRMWARE, ROOT, SIM_MPY, TOOLS, source  # noqa: F401 - ROOT for callers


class MicroPythonMissing(RuntimeError):
    pass


def interpreter(bits=32):
    """Path of the wrapper for the i386 (bits=32, default, like the ESP32) or amd64 build."""
    env = os.environ.get("OIMON_MICROPYTHON%d" % bits)
    path = Path(env) if env else TOOLS / ("micropython%d" % bits)
    if not os.access(path, os.X_OK):
        raise MicroPythonMissing("MicroPython unix port not found at %s: run 'make micropython'" % path)
    return str(path)


def micropypath(extra=(), sources=True):
    """MICROPYPATH: `extra` first, then the unix side of the HAL, then (sources=True) the
    firmware and shared sources; sources=False runs only what `extra` holds (a deployed bundle)."""
    parts = [str(p) for p in extra] + [str(SIM_MPY)]
    if sources:
        parts += [str(FIRMWARE), str(COMMON)]
    return ":".join(parts)


def env(extra_path=(), sources=True, **more):
    e = dict(os.environ)
    e["MICROPYPATH"] = micropypath(extra_path, sources)
    e.update({k: str(v) for k, v in more.items()})
    return e


def run(args, extra_path=(), bits=32, timeout=120, input=None, **envmore):
    """Run the unix port with `args`; returns CompletedProcess (text stdout/stderr)."""
    source()
    return subprocess.run([interpreter(bits)] + list(args), env=env(extra_path, **envmore),
                          capture_output=True, text=input is None or isinstance(input, str),
                          timeout=timeout, input=input, cwd=str(ROOT))
