"""`make demo`: the main job end to end on the virtual device.

1. start the virtual device (the firmware's main loop on the i386 MicroPython unix port, fed by
   the built-in `demo` scenario: walking and one overload) on a pty;
2. `oimon record` streams from that pty through pyserial (framed binary protocol) into a
   recording, with events into SQLite;
3. `oimon retighten record` stores a retightening on the device (signed with its key) and in
   the database; 4. `oimon plot` writes a PNG; `oimon retighten status` prints the
   retightening line; 5. `oimon sync` pulls the device's log (events with their snippets), and
   `oimon report` writes the clinical report (HTML, and a PDF where Chromium is installed);
6. prints where each output is and how to open the clinic dashboard (`oimon serve`)."""
import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

from oimon import keystore
from oimon_sim.device import start_virtual_device


def oimon(*args, env=None):
    """Run the installed `oimon` command as a user would; stop the demo if it fails."""
    exe = shutil.which("oimon", path=os.path.dirname(sys.executable)) or "oimon"
    proc = subprocess.run([exe, *args], env=env, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit("demo: 'oimon %s' failed (exit %d)" % (" ".join(args), proc.returncode))
    return proc.stdout


def _short(p):
    """A path relative to the current folder where that is shorter (what to type)."""
    p = str(p)
    try:
        rel = os.path.relpath(p)
    except ValueError:
        return p
    return rel if len(rel) < len(p) else p


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/demo", help="output folder (default build/demo)")
    ap.add_argument("--seconds", type=float, default=6.0, help="how long to record")
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    db, rec, png = out / "oimon.sqlite", out / "demo.oimrec", out / "demo.png"
    keys = out / "keys.json"
    env = dict(os.environ, OIMON_DB=str(db), OIMON_KEYSTORE=str(keys))
    # the device key, as `oimon deploy` provisions it on a real board
    (out / "device").mkdir()
    keystore.write_key_file(keystore.open(keys).provision("SIM-DEMO"), out / "device" / "key.bin")
    print("demo: starting the virtual device (firmware on the i386 MicroPython unix port)")
    vd = start_virtual_device("demo", speed=1, duration=max(8.0, a.seconds + 2),
                              storage=out / "device", device_id="SIM-DEMO")
    try:
        print("demo: virtual device on %s" % vd.path)
        env["OIMON_PORT"] = vd.path
        oimon("info", env=env)
        oimon("config", "set", "patient=P-DEMO", env=env)      # a pseudonym, signed with the key
        oimon("record", "--duration", str(a.seconds), "--out", str(rec), env=env)
        last = (dt.date.today() - dt.timedelta(days=60)).isoformat()
        oimon("retighten", "record", "SIM-DEMO", "--date", last, "--torque", "12", env=env)
        oimon("sync", env=env)
    finally:
        vd.stop()
    oimon("events", env=env)
    oimon("plot", str(rec), "--out", str(png), env=env)
    status = oimon("retighten", "status", env=env).strip()
    report, pdf = out / "report.html", out / "report.pdf"
    oimon("report", "--out", str(report), env=env)
    try:
        oimon("report", "--out", str(pdf), env=env)
    except SystemExit:                      # no Chromium here: the HTML report is the product
        pdf = None
    print()
    print("recording:    %s" % rec)
    print("database:     %s" % db)
    print("plot (PNG):   %s" % png)
    print("retightening: %s" % status)
    print("report:       %s" % report)
    if pdf is not None:
        print("report (PDF): %s" % pdf)
    exe = os.path.join(os.path.dirname(sys.executable), "oimon")
    print("dashboard:    %s --db %s serve   then open http://127.0.0.1:8765/ "
          "(add --virtual demo for the live page)" % (_short(exe), _short(db)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
