# Phase I exercise bench (sim/oimon_sim/bench_exercise.py): the firmware's exercise module fed
# with dsp.Pipeline output of raw counts (mode "raw") or with loads directly. argv[1]: jobs.json
# (mode, data, calib, jobs [{plan, day, n}]); prints one JSON line of results per job.
import sys, json, time
from array import array
from oimon_common import exercise as E
jobs = json.load(open(sys.argv[1]))
mode = jobs["mode"]
path = jobs["data"]
pipe = None
if mode == "raw":
    from oimon_common import calib
    import dsp
    pipe = dsp.Pipeline(calib.load(jobs["calib"]))
    assert pipe.calibrated, calib.last_error
f = open(path, "rb")
width = 4 if mode == "raw" else 1
CH = 512
buf = array("i", bytes(4 * width * CH))
mv = memoryview(buf)
raw = array("i", (0, 0, 0, 0))
out = array("i", [0] * 8)
res = []
for job in jobs["jobs"]:
    ex = E.Exercise()
    err = ex.set_plan(job["plan"])
    assert err is None, err
    ex.start(0, job["day"])
    n = job["n"]
    changes = []
    xs = array("i", bytes(4 * n))
    i = 0
    if pipe is not None:
        pipe.set_calibration(pipe.cal)          # re-prime the filter per job
    while i < n:
        m = min(CH, n - i)
        f.readinto(mv[:m * width])
        for k in range(m):
            if pipe is not None:
                j = 4 * k
                raw[0] = buf[j]; raw[1] = buf[j + 1]; raw[2] = buf[j + 2]; raw[3] = buf[j + 3]
                pipe.step(raw, out)
                x = out[0]
            else:
                x = buf[k]
            xs[i] = x
            z = ex.step(x, i)
            if z:
                changes.append((i, z))
            i += 1
    s = ex.stop(n)
    # timing of Exercise.step alone over the same values
    ex2 = E.Exercise(job["plan"])
    ex2.start(0, job["day"])
    st = ex2.step
    t0 = time.ticks_us()
    for k in range(n):
        st(xs[k], k)
    us = time.ticks_diff(time.ticks_us(), t0)
    res.append({"summary": s, "changes": changes, "step_us": us / n})
print(json.dumps(res))
