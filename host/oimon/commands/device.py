"""oimon ports | info | time | flash | deploy: find boards, ask a device about itself, put
MicroPython and the firmware on it."""
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from oimon import link
from oimon.errors import OimonError
from oimon_common import protocol as P

from oimon import bundle as B

ESP_IMAGE_MAGIC = 0xE9
ESP32S3_CHIP_ID = 9                       # esptool's IMAGE_CHIP_ID for the ESP32-S3


def register(sub):
    p = sub.add_parser("ports", help="list serial ports, marking likely ESP32 boards")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ports)
    p = sub.add_parser("info", help="device id, firmware, calibration, limits, clock, retightening")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("time", help="set the device clock from this computer's")
    p.add_argument("--signed", action="store_true",
                   help="prosthetist: set it however far off it is (signed C_CLOCK); without it "
                   "the device accepts a correction of at most 5 minutes")
    p.set_defaults(func=cmd_time)
    p = sub.add_parser("flash", help="erase the board and write a MicroPython ESP32-S3 image, then deploy")
    p.add_argument("--firmware", required=True, metavar="IMAGE",
                   help="MicroPython image for the ESP32-S3 (written at 0x0)")
    p.add_argument("--baud", type=int, default=460800, help="esptool baud rate (default 460800)")
    p.add_argument("--no-deploy", action="store_true", help="only write MicroPython")
    p.add_argument("--bundle", help="firmware bundle to deploy after flashing (as for deploy)")
    p.add_argument("--connect-attempts", type=int, default=3, help=argparse_suppress())
    p.add_argument("--yes", "-y", action="store_true",
                   help="do not ask before erasing the whole flash (log, calibration, key)")
    p.add_argument("--backup", metavar="FILE",
                   help="first save the whole flash to FILE (esptool read-flash 0 ALL)")
    p.add_argument("--force", action="store_true",
                   help="erase even though the device log holds records not yet synced")
    p.set_defaults(func=cmd_flash)
    p = sub.add_parser("deploy", help="copy the compiled firmware, board config and device key "
                       "to the board (skips files already there)")
    p.add_argument("--bundle", help="firmware bundle folder (tools/bundle.py, `make firmware`; "
                   "default: $OIMON_BUNDLE, else ./%s)" % B.DEFAULT_DIR)
    p.add_argument("--device-id", help="device id for the key (default: asked from the device)")
    p.add_argument("--no-key", action="store_true", help="do not copy the device key")
    p.add_argument("--no-reset", action="store_true", help="leave the board at the REPL")
    p.set_defaults(func=cmd_deploy)


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


# --- ports -----------------------------------------------------------------------------------
def cmd_ports(args):
    ports = link.list_ports_marked()
    if args.json:
        print(json.dumps([{"device": d, "description": desc, "esp32": mark} for d, desc, mark in ports],
                         indent=2))
        return 0
    if not ports:
        print("no serial ports found (a virtual device's pty or a pyserial URL works with --port)")
    for dev, desc, mark in ports:
        print("%-20s %s%s" % (dev, desc, "  <- likely %s" % mark if mark else ""))
    likely = [d for d, _x, m in ports if m]
    if len(likely) == 1:
        print("\noimon will use %s (override with --port or OIMON_PORT)" % likely[0])
    return 0


def open_link(args):
    return link.Link(link.resolve_port(args.port))


# --- info ------------------------------------------------------------------------------------
def _fmt_limits(lim):
    if not lim:
        return "?"
    return "compression %.0f N, tension %.0f N, bending %.1f N*m" % (
        lim.get("comp", 0) / 10.0, lim.get("tens", 0) / 10.0, lim.get("moment", 0) / 100.0)


def _retighten_line(info, today=None):
    from oimon import retighten
    last = info.get("retighten_last") or ""
    iv = info.get("retighten_interval_months") or 3
    today = today or dt.date.today()
    try:
        d = dt.date.fromisoformat(last) if last else None
    except ValueError:
        return "unreadable date %r on the device" % last
    s = retighten.status(d, iv, today)
    if s["state"] == "never recorded":
        return "NEVER RECORDED (every %d months)" % iv
    if s["state"] == "overdue":
        return "OVERDUE by %d days (last %s, due %s)" % (-s["days_left"], s["last"], s["due"])
    return "%s: due %s, in %d days (last %s)" % (s["state"], s["due"], s["days_left"], s["last"])


def info_lines(info):
    clock = info.get("clock")
    drift = ""
    if isinstance(clock, (int, float)):
        off = clock - time.time()
        drift = "  (%+d s from this computer%s)" % (round(off), ": run `oimon time`" if abs(off) > 60 else "")
        clock = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(clock))
    cal = "calibrated" if info.get("calibrated") else "UNCALIBRATED: run `oimon calibrate`"
    cfg = info.get("config_state")
    rows = [
        ("device", info.get("device_id")),
        ("firmware", "%s on %s" % (info.get("fw"), info.get("platform", "?"))),
        ("calibration", cal),
        ("configuration", {"ok": "ok", "default": "DEFAULTS (never configured)",
                           "corrupt": "CORRUPT: defaults in use, set it again"}.get(cfg, cfg)),
        ("rehab phase", info.get("phase")),
        ("limits", _fmt_limits(info.get("limits"))),
        ("body weight", "%s kg" % info.get("body_weight_kg")),
        ("clock", "%s%s" % (clock, drift)),
        ("samples", "%s at %s Hz" % (info.get("samples"), info.get("rate"))),
    ]
    tech = info.get("technical")
    if isinstance(tech, list):
        rows.append(("technical", "TECHNICAL ALARM: " + ", ".join(tech) if tech else "none"))
    if "reset_cause" in info:
        rows.append(("last reset", info.get("reset_cause")))
    if "key_state" in info:
        rows.append(("device key", "%s (keys provisioned: %s, counter %s%s)" % (
            info.get("key_state"), info.get("keys_provisioned"), info.get("auth_counter"),
            ", after a PHYSICAL RESET" if info.get("after_physical_reset") else "")))
    if "battery_mv" in info:
        rows.append(("battery", "%s mV%s" % (info.get("battery_mv"),
                                             ", charging" if info.get("charging") else "")))
    if "clock_source" in info:
        rows.append(("clock source", "%s%s" % (info.get("clock_source"),
                                               "" if info.get("clock_valid") else " (NOT SET)")))
    st = (info.get("health") or {}).get("selftest") if isinstance(info.get("health"), dict) else None
    if isinstance(st, dict):
        for k in sorted(st):
            v = st[k]
            if isinstance(v, dict) and "ok" in v:
                v = ("ok" if v["ok"] else "pending" if v["ok"] is None else "FAILED") + \
                    "".join(" %s=%s" % (kk, v[kk]) for kk in sorted(v) if kk != "ok")
            elif isinstance(v, dict):
                v = ", ".join("%s=%s" % (kk, v[kk]) for kk in sorted(v))
            rows.append(("self-test " + k, v))
    acq = info.get("acquisition")
    if isinstance(acq, dict):
        rows.append(("acquisition", "%s samples lost in %s gap(s) since boot (each marked)%s; "
                     "collections %s planned, %s forced" % (
                         acq.get("lost"), acq.get("gaps"),
                         "; ring peak %s of 512" % acq["ring_peak"] if acq.get("ring_peak", -1) >= 0 else "",
                         acq.get("gc_planned"), acq.get("gc_forced"))))
    if "log_used" in info or "log_fill" in info:
        fill = info.get("log_fill", info.get("log_used"))
        rows.append(("log", "%s%% full" % fill if isinstance(fill, (int, float)) else fill))
    rows.append(("retightening", _retighten_line(info)))
    known = {"device_id", "fw", "platform", "calibrated", "config_state", "phase", "limits",
             "body_weight_kg", "clock", "samples", "rate", "retighten_last",
             "retighten_interval_months", "log_used", "log_fill", "technical", "reset_cause",
             "key_state", "keys_provisioned", "auth_counter", "after_physical_reset",
             "battery_mv", "charging", "clock_source", "clock_valid", "health", "nonce", "key",
             "acquisition"}
    rows += [(k, info[k]) for k in sorted(info) if k not in known]
    return ["%-15s %s" % r for r in rows]


def cmd_info(args):
    with open_link(args) as ln:
        info = ln.command(P.C_INFO)
        if "reset_cause" in info:            # a supervised firmware: its self-test too
            try:
                info["health"] = ln.command(P.C_HEALTH)
            except OimonError:
                pass
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print("\n".join(info_lines(info)))
    return 0


def cmd_time(args):
    with open_link(args) as ln:
        if getattr(args, "signed", False):
            r = ln.command_auth(P.C_CLOCK, {"t": int(time.time())}, args.keystore)
        else:
            r = ln.command(P.C_TIME, {"t": int(time.time())})
    print("device clock set to %s" % time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(r["clock"])))


# --- flash -----------------------------------------------------------------------------------
def check_image(path):
    """A MicroPython ESP32-S3 image to write at 0x0 (bootloader first): ESP image magic and the
    S3's chip id in the extended header. Checked before the port is touched."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(16)
        size = p.stat().st_size
    except OSError as e:
        raise OimonError("firmware image %s: %s" % (path, e.strerror))
    if size < 4096 or len(head) < 16 or head[0] != ESP_IMAGE_MAGIC:
        raise OimonError("%s is not an ESP32 firmware image (no ESP image header at 0x0): "
                         "use MicroPython's ESP32_GENERIC_S3 .bin" % path)
    chip = head[12] | (head[13] << 8)
    if chip != ESP32S3_CHIP_ID:
        raise OimonError("%s is an image for another chip (chip id %d), not the ESP32-S3" % (path, chip))
    if size > 16 << 20:
        raise OimonError("%s is %d bytes: larger than the 16 MB flash" % (path, size))
    return size


def _esptool(argv, quiet=False):
    """Run esptool; returns its output. A failure raises OimonError with esptool's own reason."""
    cmd = [sys.executable, "-m", "esptool"] + argv
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace")
    except OSError as e:
        raise OimonError("cannot run esptool: %s" % e)
    out = []
    for line in proc.stdout:
        out.append(line)
        if not quiet:
            sys.stderr.write(line)
    rc = proc.wait()
    if rc:
        text = "".join(out)
        reason = [ln.strip() for ln in text.splitlines()
                  if "fatal error" in ln.lower() or ln.strip().startswith("Failed")]
        why = reason[-1] if reason else (text.strip().splitlines() or ["exit %d" % rc])[-1]
        why = why.replace("A fatal error occurred: ", "")
        raise OimonError("esptool: %s" % why)
    return "".join(out)


def _resync(port):
    """After esptool's sync bytes: a frame delimiter, so a running monitor's decoder drops them."""
    try:
        import serial
        with serial.serial_for_url(port, baudrate=115200, timeout=0.1) as s:
            s.write(b"\x00")
    except Exception:               # noqa: BLE001 - best effort on a port that may be gone
        pass


def _unsynced(port, dbpath):
    """(device_id, records on the device after the last one pulled, last seq) from a monitor
    running on the port, or None if none answers (a bare board, MicroPython's REPL)."""
    from oimon import db
    try:
        with link.Link(port, timeout=1.5) as ln:
            info = ln.command(P.C_INFO)
            st = ln.command(P.C_STATUS)
    except link.PortBusy:
        raise
    except OimonError:
        return None
    dev = info.get("device_id")
    seq = (st.get("log") or {}).get("seq") if isinstance(st, dict) else None
    if not isinstance(dev, str) or not isinstance(seq, int):
        return None
    con = db.connect(dbpath)
    row = con.execute("SELECT log_seq FROM device WHERE device_id = ?", (dev,)).fetchone()
    pulled = row[0] if row else 0
    return dev, max(0, seq - pulled), pulled


def _confirm_erase(port, what, assume_yes):
    if assume_yes:
        return
    if not sys.stdin.isatty():
        raise OimonError("flash erases the whole flash of the board on %s (%s): give --yes to "
                         "confirm (no terminal to ask)" % (port, what))
    sys.stderr.write("erase the whole flash of the board on %s (%s)? type yes: " % (port, what))
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("yes", "y"):
        raise OimonError("flash cancelled: nothing was erased")


def cmd_flash(args):
    """Check the image, then (before anything is erased): the device log synced (--force
    skips), --backup read, the user's yes (--yes for scripts); then erase and write."""
    from oimon import validate
    size = check_image(args.firmware)
    if args.backup:
        validate.check_out_path(args.backup, "--backup")
        if os.path.exists(args.backup):
            raise OimonError("--backup %s exists: choose a new file (an old backup is never "
                             "overwritten)" % args.backup)
    bundle = None if args.no_deploy else B.load(B.resolve(args.bundle))   # fail before erasing
    port = link.resolve_port(args.port)
    if "://" in port:
        raise OimonError("flash needs a serial port, not %s" % port)
    state = _unsynced(port, args.db)
    if state is None:
        what = "no oimon monitor answered: its log, calibration and key, if any, are lost"
        print("oimon: warning: could not check the device log (no monitor answering on %s)"
              % port, file=sys.stderr)
    else:
        dev, n, pulled = state
        if n and not args.force:
            raise OimonError("the log of %s holds %d records not yet synced (after #%d): run "
                             "'oimon sync' first, or give --force to lose them; nothing was "
                             "erased" % (dev, n, pulled))
        what = "%s: its log%s, calibration and key are erased" % (
            dev, " (%d records NOT synced)" % n if n else " (synced)")
    _confirm_erase(port, what, args.yes)
    base = ["--chip", "esp32s3", "--port", port, "--baud", str(args.baud),
            "--connect-attempts", str(args.connect_attempts)]
    lock = link.PortLock(port)               # no oimon uses the port while esptool has it
    try:
        if args.backup:
            print("saving the whole flash to %s" % args.backup, file=sys.stderr)
            part = args.backup + ".part"
            try:
                _esptool(base + ["read-flash", "0", "ALL", part], quiet=True)
                os.replace(part, args.backup)
            except BaseException:
                _resync(port)
                try:
                    os.unlink(part)
                except OSError:
                    pass
                raise
        print("erasing the flash of the ESP32-S3 on %s" % port, file=sys.stderr)
        try:
            _esptool(base + ["erase-flash"], quiet=True)
        except OimonError:
            _resync(port)
            raise
        print("writing %s (%d bytes) at 0x0" % (args.firmware, size), file=sys.stderr)
        _esptool(base + ["write-flash", "0x0", str(args.firmware)])
    finally:
        lock.release()
    print("MicroPython written to %s" % port)
    if args.no_deploy:
        return 0
    time.sleep(2.0)                          # the board boots MicroPython (USB re-enumerates)
    return deploy(port, bundle, device_id=None, key=True, reset=True, wait=15,
                  keystore=args.keystore)


# --- deploy ----------------------------------------------------------------------------------
def _device_key(device_id, keystore_path=None, out=print):
    """The device's key from the host keystore as (device file name, bytes); a device deployed
    for the first time gets a new random key (provisioned here, kept for every later deploy)."""
    from oimon import keystore
    ks = keystore.open(keystore_path)
    if not ks.has(device_id):
        ks.provision(device_id)
        out("provisioned a new key for %s in %s" % (device_id, ks.path))
    return ("key.bin", bytes(ks.key(device_id)))


def _release(port, keystore=None, seconds=300):
    """Ask a running monitor for a maintenance window (the REPL for mpremote, at most `seconds`;
    the board resets into the monitor when it ends). A device with a key needs the signed
    C_MAINT (the prosthetist's keystore); one without a key, or within the window the button
    held at power-up opened, takes the unsigned request. Returns its info, or None if nothing
    answered in the monitor's protocol (the board is at the REPL already)."""
    ln = link.Link(port, timeout=1.5)
    try:
        try:
            info = ln.command(P.C_INFO)
        except OimonError:
            return None
        if "nonce" not in info:                          # firmware from before issue 12
            ln.command(P.C_REPL)
        elif info.get("key") and not info.get("physical_window"):
            from oimon import keystore as K
            ks = keystore if isinstance(keystore, K.Keystore) else K.open(keystore)
            if not ks.has(info.get("device_id")):
                raise OimonError(
                    "device %s holds a key that keystore %s does not: maintenance needs the "
                    "prosthetist's keystore, or the button held at power-up (physical reset)"
                    % (info.get("device_id"), ks.path))
            ln.command_auth(P.C_MAINT, {"seconds": seconds}, ks)
        else:
            ln.command(P.C_REPL, {"seconds": seconds})
        time.sleep(0.3)
        return info
    finally:
        ln.close()


class _Board:
    """mpremote's serial transport, errors turned into OimonError."""

    def __init__(self, port):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport
        self.TransportError = TransportError
        try:
            self.t = SerialTransport(port, baudrate=115200)
        except (TransportError, OSError, Exception) as e:   # noqa: BLE001 - pyserial errors vary
            raise OimonError("cannot open %s for the REPL: %s" % (port, e))
        try:
            self.t.enter_raw_repl(soft_reset=False, timeout_overall=5)
        except Exception as e:                               # noqa: BLE001
            self.close()
            raise OimonError("the board on %s does not give a MicroPython REPL (%s)" % (
                port, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__))

    def device_id(self):
        """The id the firmware will report, asked at the REPL (a freshly flashed board has no
        monitor running yet): hal.DEVICE_ID, or on a bare ESP32 the same from its unique id."""
        code = ("try:\n import hal\n print(hal.DEVICE_ID)\nexcept ImportError:\n import machine\n"
                " print('OIM-' + ''.join('%02X' % b for b in machine.unique_id()))\n")
        try:
            return self.t.exec(code).decode().strip() or None
        except Exception:                                    # noqa: BLE001 - mpremote errors vary
            return None

    def sha256(self, name):
        try:
            return self.t.fs_hashfile(name, "sha256")
        except OSError:
            return None

    def listdir(self):
        return [e.name for e in self.t.fs_listdir("")]

    def mpy_arch(self):
        """The native architecture the board's MicroPython loads .mpy files for
        (sys.implementation._mpy), or None if it does not say."""
        try:
            v = int(self.t.exec("import sys\nprint(sys.implementation._mpy)").decode().strip())
        except Exception:                                    # noqa: BLE001 - mpremote errors vary
            return None
        return B.arch_of_mpy(v)

    def write(self, name, data):
        parts = name.split("/")[:-1]
        for i in range(len(parts)):                          # lib/, lib/oimon_common/
            d = "/".join(parts[:i + 1])
            try:
                self.t.fs_mkdir(d)
            except Exception:                                # noqa: BLE001 - it exists already
                pass
        self.t.fs_writefile(name, data)

    def remove(self, name):
        self.t.fs_rmfile(name)

    def reset(self):
        try:
            self.t.exec_raw_no_follow("import machine\nmachine.reset()")
        except Exception:                                    # noqa: BLE001 - it may vanish at once
            pass

    def close(self):
        try:
            if self.t.in_raw_repl:
                self.t.exit_raw_repl()
        except Exception:                                    # noqa: BLE001
            pass
        try:
            self.t.close()
        except Exception:                                    # noqa: BLE001
            pass


def deploy(port, bundle, device_id=None, key=True, reset=True, wait=10, out=print, keystore=None):
    """Copy a firmware bundle (oimon.bundle.Bundle) onto the board at `port`: release the
    running monitor, check the board's MicroPython takes the bundle's .mpy files, copy what
    differs (sha256 before and after), remove stale modules, add the device key, reset, wait for
    the monitor to answer with the bundle's protocol version."""
    info = _release(port, keystore)
    device_id = device_id or (info or {}).get("device_id")
    board = _Board(port)
    copied = same = 0
    try:
        B.check_board(bundle, board.mpy_arch())
        files = list(bundle.files())
        if key:
            device_id = device_id or board.device_id()
            if not device_id:
                raise OimonError("the board did not say its id: give --device-id (or --no-key)")
            files.append(_device_key(device_id, keystore, out))
        for name, data in files:
            want = hashlib.sha256(data).digest()
            if board.sha256(name) == want:
                same += 1
                continue
            board.write(name, data)
            if board.sha256(name) != want:
                raise OimonError("%s: the copy on the board does not match (sha256)" % name)
            copied += 1
            out("copied %s (%d bytes)" % (name, len(data)))
        for name in B.stale(bundle, board.listdir()):
            board.remove(name)
            out("removed stale %s" % name)
        if reset:
            board.reset()
    except (OSError, board.TransportError) as e:
        raise OimonError("deploy to %s failed: %s" % (port, e))
    finally:
        board.close()
    out("deployed firmware %s (%s, protocol %d) to %s: %d files copied, %d already up to date%s" % (
        bundle.firmware, bundle.arch, bundle.protocol, device_id or port, copied, same,
        "" if key else " (no device key)"))
    if reset:
        info = _wait_monitor(port, wait)
        out("%s is running firmware %s (%s)" % (info.get("device_id"), info.get("fw"),
                                                "calibrated" if info.get("calibrated") else "UNCALIBRATED"))
    return 0


def _wait_monitor(port, seconds):
    t_end = time.monotonic() + seconds
    last = None
    while time.monotonic() < t_end:
        time.sleep(0.3)
        try:
            with link.Link(port, timeout=1.0) as ln:
                return ln.command(P.C_INFO)
        except OimonError as e:
            last = e
    raise OimonError("the monitor did not come back on %s after the reset (%s)" % (port, last))


def cmd_deploy(args):
    port = link.resolve_port(args.port)
    bundle = B.load(B.resolve(args.bundle))
    return deploy(port, bundle, device_id=args.device_id, key=not args.no_key,
                  reset=not args.no_reset, keystore=args.keystore)
