# Hot-path timing (sim/oimon_sim/bench_hotpath.py): B_N raw samples (B_RAW) through dsp.kernel +
# detect.kernel (viper), the pipeline alone, the raw copy alone and the float version
# (tests/firmware/shims/float_hotpath.py, B_B/B_A filter coefficients), B_REPS interleaved rounds
# of B_WHAT, the fast loops B_SUB times per round; gc.mem_alloc over the hot loop ("alloc").
# Prints "RESULT {kind: [us per pass]}".
import os, gc, time
from array import array
from oimon_common import calib
import dsp, detect
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
    i = 0
    while i < 4 * n:
        raw[0] = buf[i]; raw[1] = buf[i + 1]; raw[2] = buf[i + 2]; raw[3] = buf[i + 3]
        i += 4
    return time.ticks_diff(time.ticks_us(), t)

def fixed(which):
    p = dsp.Pipeline(cal)
    d = detect.Detector()
    p.bind(raw, out)                   # as Device.__init__: the tables are bound once
    d.bind(out)
    pk = dsp.kernel
    pt = p.tab
    dk = detect.kernel
    dt = d.tab
    t = time.ticks_us()
    i = 0
    if which:
        while i < 4 * n:
            raw[0] = buf[i]; raw[1] = buf[i + 1]; raw[2] = buf[i + 2]; raw[3] = buf[i + 3]
            pk(pt)
            dk(dt)
            i += 4
    else:
        while i < 4 * n:
            raw[0] = buf[i]; raw[1] = buf[i + 1]; raw[2] = buf[i + 2]; raw[3] = buf[i + 3]
            pk(pt)
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
    p.bind(raw, out)
    d.bind(out)
    pk = dsp.kernel
    pt = p.tab
    dk = detect.kernel
    dt = d.tab
    i = 0
    while i < 4 * 200:                 # warm up: priming, first events
        raw[0] = buf[i]; raw[1] = buf[i + 1]; raw[2] = buf[i + 2]; raw[3] = buf[i + 3]
        pk(pt)
        dk(dt)
        i += 4
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    i = 0
    while i < 4 * n:
        raw[0] = buf[i]; raw[1] = buf[i + 1]; raw[2] = buf[i + 2]; raw[3] = buf[i + 3]
        pk(pt)
        dk(dt)
        i += 4
    used = gc.mem_alloc() - a0
    gc.enable()
    return used

what = os.getenv('B_WHAT').split()
kinds = {'base': base, 'hot': lambda: fixed(1), 'pipe': lambda: fixed(0), 'float': floating}
sub = int(os.getenv('B_SUB'))
res = {}
for r in range(reps):                  # interleaved rounds; the fast loops `sub` times per round
    for s in range(sub):
        for w in what:
            if w in kinds and (w != 'float' or s == 0):
                gc.collect()
                res.setdefault(w, []).append(kinds[w]())
if 'alloc' in what:
    res['alloc'] = alloc()
print('RESULT', res)
