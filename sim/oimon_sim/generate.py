"""Scenarios written into recordings (oimon sim generate, the tests and the benchmarks), truth
as EVNT chunks before the samples they label."""
import numpy as np

from oimon.errors import OimonError
from oimon_sim import progress as prog

DEFAULT_START = "2025-01-01T00:00:00+00:00"


def generate_recording(out, scenario, duration, seed=0, body_weight_kg=75.0, rate=1000, raw=None,
                       params=None, noise=True, start=DEFAULT_START, device_id="SIM-0001",
                       progress=None, imu=True):
    """Write a scenario into a recording (truth as EVNT chunks before the samples they label).
    With imu (default) the recording carries the connector unit's IMU (scenarios.generate_imu:
    the same movement as the load), IMU chunks written before the samples of their segment.
    Returns the header."""
    # lazy: numpy (recording, scenarios, sensor) costs ~50 ms, and the `oimon` command table
    # imports this module on every start
    from oimon import recording
    from oimon_sim import scenarios, sensor
    params = dict(params or {})
    if scenario not in scenarios.SCENARIOS:
        raise OimonError("unknown scenario %r (choose from %s)" % (
            scenario, ", ".join(sorted(scenarios.SCENARIOS))))
    if raw is None:
        raw = scenarios.is_raw_scenario(scenario)
    if not raw and scenario.startswith("fault_") or (not raw and scenario == "sensor_fault"):
        raise OimonError("scenario %s: sensor faults act on raw counts: leave out --calibrated"
                         % scenario)
    model = sensor.SensorModel()
    header = {
        "device_id": device_id, "firmware": "sim", "rate_hz": int(rate),
        "kind": "raw" if raw else "calibrated", "start_time": start,
        "source": "oimon sim generate", "scenario": scenario, "seed": int(seed),
        "params": params, "duration_s": float(duration), "body_weight_kg": float(body_weight_kg),
        "noise": bool(noise),
    }
    if imu:
        header["imu"] = recording.imu_header(scenarios.IMU_HZ, source="scenarios.imu_rows")
    if not raw and scenarios.is_raw_scenario(scenario):
        header["faults_left_out"] = True
    if raw:
        header["calibration"] = {"offset": [int(v) for v in model.offset[:3]],
                                 "gain": [[float(v) for v in row] for row in model.gain_matrix()]}
        header["sensor"] = {"S": model.S.tolist(), "offset": [int(v) for v in model.offset]}
    else:
        header["calibration"] = None
    n_total = int(round(duration * rate))
    bar = prog.Progress(n_total / rate, "generate %s" % scenario, " h" if duration >= 3600 else " s",
                        1 / 3600 if duration >= 3600 else 1, enabled=progress or None)
    try:
        with recording.Writer(out, header, atomic=True) as w, bar:
            gen_imu = scenarios.generate_imu(scenario, duration, rate, body_weight_kg, seed,
                                             **params) if imu else None
            for first, rows, tr in scenarios.generate(scenario, duration, rate, body_weight_kg,
                                                      seed, raw=raw, model=model, noise=noise,
                                                      **params):
                for d in tr:
                    if raw or not d.get("raw"):     # calibrated: faults are left out
                        w.event(d)
                if gen_imu is None:
                    w.write(first, rows)
                else:                           # each chunk of samples after its IMU rows
                    at, irows = next(gen_imu)
                    j0 = -(-at * scenarios.IMU_HZ // int(rate))
                    step = recording.CHUNK_ROWS
                    for a in range(0, len(rows), step):
                        lo = np.searchsorted(irows[:, 0], first + a)
                        hi = np.searchsorted(irows[:, 0], first + a + step)
                        if hi > lo:
                            w.imu(j0 + int(lo), irows[lo:hi])
                        w.write(first + a, rows[a:a + step])
                bar.update((first + len(rows)) / rate)
    except (scenarios.ScenarioError, TypeError) as e:
        raise OimonError("scenario %s: %s" % (scenario, e))
    return header
