"""Benchmarks of the per-sample hot path (firmware/dsp.py + detect.py) and of the numpy model.

Each function returns a dict of figures; nothing here asserts timings (tests do not time), and
nothing is wired into the Makefile (`make bench` is assembled elsewhere).

    hot_path_us_per_sample()     calibrate + filter + detect, 3 channels, viper, i386 unix port
    hot_path_speedup_vs_float()  vs a plain float bytecode version of the same algorithm
                                 (tests/firmware/shims/float_hotpath.py), same run
    alloc_bytes_per_sample()     gc.mem_alloc() over >= 10 000 steady-state samples (target 0)
    esp32_cpu_load_estimate()    1 kHz x 3 channels on a 240 MHz ESP32, method in its docstring
    model_replay_throughput()    numpy model, seconds of CPU per 24 h of 1 kHz x 3 channels
"""
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from . import filter_design, model, mp

ROOT = Path(__file__).resolve().parents[2]
SHIMS = ROOT / "tests" / "firmware" / "shims"

# MicroPython script: loads N raw samples (walking etc.) into memory, then times loops
_SCRIPT = r"""
import os, gc, time
from array import array
import calib, dsp, detect
n = int(os.getenv('B_N'))
buf = array('i', [0] * (4 * n))
with open(os.getenv('B_RAW'), 'rb') as f:
    f.readinto(buf)
cal = calib.load(os.getenv('B_CAL'))
reps = int(os.getenv('B_REPS'))
raw = array('i', [0, 0, 0, 0])
out = array('i', [0] * 8)

def base():
    t = time.ticks_us()
    for r in range(reps):
        i = 0
        while i < 4 * n:
            raw[0] = buf[i]; raw[1] = buf[i + 1]; raw[2] = buf[i + 2]; raw[3] = buf[i + 3]
            i += 4
    return time.ticks_diff(time.ticks_us(), t)

def fixed(which):
    p = dsp.Pipeline(cal)
    d = detect.Detector()
    step = p.step
    dstep = d.step
    t = time.ticks_us()
    for r in range(reps):
        i = 0
        while i < 4 * n:
            raw[0] = buf[i]; raw[1] = buf[i + 1]; raw[2] = buf[i + 2]; raw[3] = buf[i + 3]
            step(raw, out)
            if which:
                dstep(out)
            i += 4
    return time.ticks_diff(time.ticks_us(), t)

def floating():
    import float_hotpath as fh
    g = [[cal.matrix[3 * c + j] / (1 << cal.shifts[c]) for j in range(3)] for c in range(3)]
    b = [float(v) for v in os.getenv('B_B').split(',')]
    a = [float(v) for v in os.getenv('B_A').split(',')]
    p = fh.FloatPipeline(g, cal.offsets, b, a)
    d = fh.FloatDetector()
    fout = [0.0] * 8
    step = p.step
    dstep = d.step
    t = time.ticks_us()
    for r in range(reps):
        i = 0
        while i < 4 * n:
            raw[0] = buf[i]; raw[1] = buf[i + 1]; raw[2] = buf[i + 2]; raw[3] = buf[i + 3]
            step(raw, fout)
            dstep(fout)
            i += 4
    return time.ticks_diff(time.ticks_us(), t)

def alloc():
    p = dsp.Pipeline(cal)
    d = detect.Detector()
    step = p.step
    dstep = d.step
    i = 0
    while i < 4 * 200:                 # warm up: priming, first events
        raw[0] = buf[i]; raw[1] = buf[i + 1]; raw[2] = buf[i + 2]; raw[3] = buf[i + 3]
        step(raw, out)
        dstep(out)
        i += 4
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    i = 0
    while i < 4 * n:
        raw[0] = buf[i]; raw[1] = buf[i + 1]; raw[2] = buf[i + 2]; raw[3] = buf[i + 3]
        step(raw, out)
        dstep(out)
        i += 4
    used = gc.mem_alloc() - a0
    gc.enable()
    return used

what = os.getenv('B_WHAT')
res = {}
if 'time' in what:
    res['base_us'] = base()
    res['pipeline_us'] = fixed(0)
    res['hot_us'] = fixed(1)
if 'float' in what:
    res['float_us'] = floating()
if 'alloc' in what:
    res['alloc_bytes'] = alloc()
print('RESULT', res)
"""


def _walking_raw(n, seed=0):
    """n raw samples: walking, stairs, a stumble and sitting (so every detection path runs)."""
    cal = model.default_calibration()
    parts = []
    for name in ("walking", "stairs", "stumble", "sitting", "overload"):
        f, _ = model.scenario(name, seed=seed)
        parts.append(f)
    f = np.concatenate(parts)
    while len(f) < n:
        f = np.concatenate([f, f])
    return model.forces_to_raw(f[:n], cal), cal


def _run_mp(what, n=20000, reps=3, bits=32):
    raw, cal = _walking_raw(n)
    b, a = filter_design.butter()
    with tempfile.TemporaryDirectory() as td:
        rp = os.path.join(td, "raw.bin")
        raw.astype("<i4").tofile(rp)
        cp = os.path.join(td, "cal.bin")
        with open(cp, "wb") as f:
            f.write(cal.pack())
        proc = mp.run(["-X", "heapsize=16M", "-c", _SCRIPT], extra_path=[SHIMS], bits=bits,
                      timeout=1800, B_N=n, B_RAW=rp, B_CAL=cp, B_REPS=reps, B_WHAT=what,
                      B_B=",".join(repr(float(v)) for v in b),
                      B_A=",".join(repr(float(v)) for v in a))
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout + proc.stderr)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[7:].replace("'", '"')), n * reps


def hot_path_us_per_sample(n=20000, reps=3):
    """Mean time of `pipe.step(raw, out); det.step(out)` per 1 kHz sample (3 channels + flags)
    on the i386 MicroPython unix port, minus the loop that copies the raw sample (the driver's
    job). Input: synthetic walking/stairs/stumble/sitting/overload through default_calibration."""
    r, total = _run_mp("time", n, reps)
    return {
        "hot_path_us_per_sample": (r["hot_us"] - r["base_us"]) / total,
        "pipeline_us_per_sample": (r["pipeline_us"] - r["base_us"]) / total,
        "detect_us_per_sample": (r["hot_us"] - r["pipeline_us"]) / total,
        "loop_overhead_us_per_sample": r["base_us"] / total,
        "samples": total, "port": "i386 unix, MicroPython 1.25",
    }


def hot_path_speedup_vs_float(n=20000, reps=2):
    """Same run: the viper fixed-point path against FloatPipeline + FloatDetector (plain bytecode,
    floats; tests/firmware/shims/float_hotpath.py). On the unix port floats are boxed objects
    (heap allocation per operation), as on the ESP32."""
    r, total = _run_mp("time float", n, reps)
    hot = (r["hot_us"] - r["base_us"]) / total
    flt = (r["float_us"] - r["base_us"]) / total
    return {"hot_path_speedup_vs_float": flt / hot, "viper_us_per_sample": hot,
            "float_us_per_sample": flt, "samples": total}


def alloc_bytes_per_sample(n=12000):
    """gc.mem_alloc() difference over n steady-state samples of pipe.step + det.step (gc
    disabled), divided by n. Target 0."""
    r, _ = _run_mp("alloc", n, 1)
    return {"alloc_bytes_per_sample": r["alloc_bytes"] / n, "alloc_bytes_total": r["alloc_bytes"],
            "samples": n}


def _host_mhz():
    try:
        for line in open("/proc/cpuinfo"):
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":")[1])
    except OSError:
        pass
    return 2500.0


def esp32_cpu_load_estimate(hot=None, esp_mhz=240.0, host_ipc=2.0, esp_ipc=(0.5, 1.0)):
    """ESP32 CPU load at 1 kHz x 3 channels, estimated (no hardware in the loop):

        t_esp32 = t_i386 * (f_host * IPC_host) / (f_esp32 * IPC_esp32)

    t_i386 is hot_path_us_per_sample() on this host; f_host from /proc/cpuinfo; IPC_host = 2.0
    assumed for interpreter + native code on a modern x86 core; IPC_esp32 bracketed 0.5 (code in
    flash behind the 32 KB cache, misses) .. 1.0 (cache-resident loop, single-issue LX6), 240 MHz.
    Same MicroPython version and the same viper code, so the instruction mix is alike; the i386
    port emits x86 from the same viper source as Xtensa. The result is an estimate: confirm on
    hardware by running the same loop with `mpremote run` (bench script in this module)."""
    if hot is None:
        hot = hot_path_us_per_sample()
    t = hot["hot_path_us_per_sample"]
    mhz = _host_mhz()
    lo = t * mhz * host_ipc / (esp_mhz * esp_ipc[1])
    hi = t * mhz * host_ipc / (esp_mhz * esp_ipc[0])
    return {"esp32_us_per_sample_low": lo, "esp32_us_per_sample_high": hi,
            "esp32_cpu_load_pct_low": lo / 1000.0 * 100, "esp32_cpu_load_pct_high": hi / 1000.0 * 100,
            "host_mhz": mhz, "i386_us_per_sample": t,
            "method": "t_i386 * (f_host*IPC_host)/(240 MHz*IPC_esp32), IPC_host 2.0, "
                      "IPC_esp32 0.5..1.0"}


def model_replay_throughput(minutes=30, segment=model.SEGMENT):
    """CPU seconds (time.process_time, so a busy shared machine does not inflate it) of
    Replayer.feed on `minutes` of 1 kHz raw (walking, stairs, stumble, sitting, overload, tiled),
    scaled to 24 h; peak RSS of the process. Streaming: memory does not grow with the length."""
    base, cal = _walking_raw(300000)
    n = int(minutes * 60000)
    rp = model.Replayer(cal)
    cpu = 0.0
    wall = 0.0
    done = 0
    while done < n:
        k = min(segment, n - done)
        start = done % len(base)
        blk = np.take(base, np.arange(start, start + k) % len(base), axis=0)
        t0, w0 = time.process_time(), time.perf_counter()
        rp.feed(blk)
        cpu += time.process_time() - t0
        wall += time.perf_counter() - w0
        done += k
    scale = 86.4e6 / n
    return {"replay_cpu_s_per_24h": cpu * scale, "replay_wall_s_per_24h": wall * scale,
            "samples": n, "segment": segment, "filter_repairs": rp.flt.repairs,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "events": len(rp.events)}


def run_all():
    hot = hot_path_us_per_sample()
    out = dict(hot)
    out.update(hot_path_speedup_vs_float())
    out.update(alloc_bytes_per_sample())
    out.update(esp32_cpu_load_estimate(hot))
    out.update(model_replay_throughput())
    return out


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run_all(), indent=1, default=float))
