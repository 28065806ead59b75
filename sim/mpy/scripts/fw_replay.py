# The firmware's signal path (dsp.Pipeline + detect.Detector) over a raw recording, for the
# bit-exact comparisons with the model (sim/oimon_sim/fwrun.py runs it on the unix port).
# Environment: OIMON_RAW raw counts (int32 x 4 per sample), OIMON_CAL calib.bin ('' = none),
# OIMON_LIMITS comp,tens,mom,deb,phase, OIMON_BW, OIMON_FC; writes OIMON_OUT (dsp out, int32 x 8
# per sample) and OIMON_EVENTS (one line per event: n code slot words; last line ACT ...).
# OIMON_IMU (optional): IMU rows (int32 x 8: t, acc mg, gyro 0.1 dps, flags) through the
# inertial path as the device's app does: in batches every OIMON_IMU_BATCH load samples, each
# row once the load sample it is stamped with has been processed.
import os
from array import array
from oimon_common import calib
from oimon_common.events import SLOT
import dsp
import detect

cal = calib.load(os.getenv('OIMON_CAL') or '/nonexistent')
lim = [int(v) for v in os.getenv('OIMON_LIMITS').split(',')]
det = detect.Detector(lim, int(os.getenv('OIMON_BW')))
pipe = dsp.Pipeline(cal, int(os.getenv('OIMON_FC')))
raw = array('i', [0] * 4)
out = array('i', [0] * 8)
ev = det.ev
fi = open(os.getenv('OIMON_RAW'), 'rb')
fo = open(os.getenv('OIMON_OUT'), 'wb')
fe = open(os.getenv('OIMON_EVENTS'), 'w')
# report order of the device (app.py): fault, fault clear, overload end, overload start, fall
ORDER = (detect.EV_FAULT, detect.EV_FAULT_CLEAR, detect.EV_OVERLOAD_END,
         detect.EV_OVERLOAD_START, detect.EV_FALL)
IORDER = (detect.EV_IMU_FAULT, detect.EV_IMU_CLEAR, detect.EV_FALL_IMU)
fimu = open(os.getenv('OIMON_IMU'), 'rb') if os.getenv('OIMON_IMU') else None
batch = int(os.getenv('OIMON_IMU_BATCH') or 100)
row = array('i', [0] * 8)
if fimu is not None:
    det.attach_imu()


def put(n, e, order):
    for b in order:
        if e & b:
            o, names = SLOT[b]
            t = ev[o + 2] if b == detect.EV_FALL_IMU else n
            fe.write('%d %d %s\n' % (t, b, ' '.join(str(ev[o + i]) for i in range(len(names)))))


def imu_batch(n, have):
    # rows stamped up to the latest load sample n (have: a row already read and not yet due)
    while True:
        if not have:
            if fimu.readinto(row) != 32:
                return False, True
            have = True
        if row[0] - n > 0:
            return have, False
        e = det.imu_step(row)
        if e:
            put(row[0], e, IORDER)
        have = False


def run():
    n = 0
    step = pipe.step
    dstep = det.step
    have = False
    done = fimu is None
    while fi.readinto(raw) == 16:
        step(raw, out)
        e = dstep(out)
        fo.write(out)
        if e:
            put(n, e, ORDER)
        if not done and n % batch == batch - 1:
            have, done = imu_batch(n, have)
        n += 1
    if not done:
        imu_batch(n - 1, have)


run()
fe.write('ACT %s\n' % ' '.join(str(v) for v in det.act))
fo.close()
fe.close()
