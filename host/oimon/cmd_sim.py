"""oimon sim ...: the simulator's commands (virtual device, scenarios, replay, metrics)."""
import sys
import tempfile
import time
from pathlib import Path

from oimon.errors import OimonError


def register(sub):
    p = sub.add_parser("sim", help="simulator: virtual device, scenarios, replay, metrics")
    s = p.add_subparsers(dest="sim_command", metavar="SIMCOMMAND", parser_class=type(p))
    s.required = True
    d = s.add_parser("device", help="run the firmware on the unix port behind a pty")
    g = d.add_mutually_exclusive_group()
    g.add_argument("--scenario", default="walk", help="built-in scenario (default walk)")
    g.add_argument("--recording", help="recording file to play (raw counts or calibrated)")
    d.add_argument("--speed", type=int, default=1, help="1 = real time (default), 0 = as fast as possible")
    d.add_argument("--duration", type=float, default=60, help="scenario length in s, looped")
    d.add_argument("--storage", help="folder for the device's files (default: a temporary one)")
    d.add_argument("--device-id", default="SIM-0001")
    d.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (default: Ctrl-C)")
    d.set_defaults(func=cmd_device)


def start_virtual_device(scenario="walk", recording=None, speed=1, duration=60, storage=None,
                         device_id="SIM-0001", body_weight_kg=75):
    """Generate the sensor input, write the calibration the device would have, start it."""
    from oimon_sim import scenarios, sensor, vdev_setup
    from oimon_sim.device import VirtualDevice
    work = Path(tempfile.mkdtemp(prefix="oimon-sim-"))
    model = sensor.SensorModel()
    if recording:
        raw = vdev_setup.raw_from_recording(recording, model)
    else:
        if scenario not in scenarios.SCENARIOS:
            raise OimonError("unknown scenario %r (choose from %s)" % (
                scenario, ", ".join(sorted(scenarios.SCENARIOS))))
        load, _truth = scenarios.SCENARIOS[scenario](duration, 1000, body_weight_kg)
        raw = model.raw(load)
    raw_path = work / "sensor.raw"
    sensor.write_raw(raw_path, raw)
    vd = VirtualDevice(raw_path, speed=speed, storage=storage or (work / "storage"),
                       device_id=device_id)
    vdev_setup.provision(vd.storage, model)
    vd.start()
    return vd


def cmd_device(args):
    vd = start_virtual_device(args.scenario, args.recording, args.speed, args.duration,
                              args.storage, args.device_id)
    print(vd.path, flush=True)
    print("virtual device %s on %s (storage %s); Ctrl-C stops it" % (
        args.device_id, vd.path, vd.storage), file=sys.stderr, flush=True)
    t_end = time.monotonic() + args.seconds if args.seconds else None
    try:
        while vd.alive() and (t_end is None or time.monotonic() < t_end):
            time.sleep(0.2)
        if not vd.alive():
            raise OimonError("virtual device stopped: %s" % vd.log_tail().strip().splitlines()[-1:])
    except KeyboardInterrupt:
        pass
    finally:
        vd.stop()
