"""A firmware bundle on the host: the folder tools/bundle.py writes from firmware/manifest.py
(compiled .mpy modules at their paths on the device, main.py, bundle.json). `oimon deploy` and
`oimon flash` copy it; nothing here needs a source checkout."""
import hashlib
import json
import os
from pathlib import Path

from oimon.errors import OimonError
from oimon_common import protocol as P

DEFAULT_DIR = "build/bundle/xtensawin"
FORMAT = 1
# sys.implementation._mpy >> 10: the native architecture (py/persistentcode.h MP_NATIVE_ARCH_*)
MPY_ARCH = {0: None, 1: "x86", 2: "x64", 3: "armv6", 4: "armv6m", 5: "armv7m", 6: "armv7em",
            7: "armv7emsp", 8: "armv7emdp", 9: "xtensa", 10: "xtensawin", 11: "rv32imc"}
# shared modules the device never needs (host-side decoders): not in firmware/manifest.py
HOST_ONLY = ("decode.py",)
# files at the root of the board that are the firmware's, never the patient's data
KEEP = ("boot.py",)


def arch_of_mpy(v):
    return MPY_ARCH.get((int(v) >> 10) & 0x0F)


def resolve(path):
    """--bundle, else $OIMON_BUNDLE, else ./build/bundle/xtensawin."""
    return Path(path or os.environ.get("OIMON_BUNDLE") or DEFAULT_DIR)


class Bundle:
    def __init__(self, root, meta):
        self.root = Path(root)
        self.meta = meta
        self.arch = meta["arch"]
        self.protocol = meta["protocol"]
        self.firmware = meta.get("firmware") or "?"
        self.paths = [f["path"] for f in meta["files"]]

    def files(self):
        """(path on the device, bytes) of every file, each checked against bundle.json."""
        for f in self.meta["files"]:
            data = (self.root / f["path"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != f["sha256"]:
                raise OimonError("bundle %s: %s does not match bundle.json (rebuild it: make firmware)"
                                 % (self.root, f["path"]))
            yield f["path"], data


def load(path):
    """The bundle at `path`, checked: bundle.json readable, of this format and protocol, every
    listed file present. One clear OimonError otherwise."""
    path = Path(path)
    try:
        meta = json.loads((path / "bundle.json").read_text())
    except FileNotFoundError:
        raise OimonError("no firmware bundle in %s: run `make firmware` (or give --bundle)" % path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise OimonError("firmware bundle %s: bundle.json is unreadable (%s)" % (path, e))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT \
            or not isinstance(meta.get("files"), list) or not meta["files"]:
        raise OimonError("firmware bundle %s: not a bundle of format %d" % (path, FORMAT))
    if meta.get("protocol") != P.VERSION:
        raise OimonError("firmware bundle %s speaks protocol %s, this oimon speaks %d: rebuild it "
                         "with this oimon's sources (make firmware)" % (path, meta.get("protocol"), P.VERSION))
    for f in meta["files"]:
        if not isinstance(f, dict) or not isinstance(f.get("path"), str) or ".." in f["path"] \
                or f["path"].startswith("/") or not (path / f["path"]).is_file():
            raise OimonError("firmware bundle %s: %r is missing" % (path, f.get("path") if isinstance(f, dict) else f))
    if not any(p == "main.py" for p in (f["path"] for f in meta["files"])):
        raise OimonError("firmware bundle %s has no main.py" % path)
    return Bundle(path, meta)


def check_board(bundle, arch):
    """Refuse a bundle whose native code the board cannot load (.mpy built for another arch)."""
    if arch is not None and arch != bundle.arch:
        raise OimonError("the bundle is built for %s, the board's MicroPython loads %s .mpy files: "
                         "build one for it (tools/bundle.py --arch %s)" % (bundle.arch, arch, arch))


def stale(bundle, root_names):
    """Files at the board's root that an older firmware left and that would shadow or waste
    space: .mpy modules not in the bundle, .py sources of the bundle's modules."""
    ours = set(bundle.paths)
    out = []
    for n in root_names:
        if n in ours or n in KEEP or n == "main.py":
            continue
        if n.endswith(".mpy") or (n.endswith(".py") and n[:-3] + ".mpy" in ours):
            out.append(n)
    return sorted(out)
