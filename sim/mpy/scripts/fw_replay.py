# The firmware's signal path (dsp.Pipeline + detect.Detector) over a raw recording, for the
# bit-exact comparisons with the model (sim/oimon_sim/fwrun.py runs it on the unix port).
# Environment: OIMON_RAW raw counts (int32 x 4 per sample), OIMON_CAL calib.bin ('' = none),
# OIMON_LIMITS comp,tens,mom,deb,phase, OIMON_BW, OIMON_FC; writes OIMON_OUT (dsp out, int32 x 8
# per sample) and OIMON_EVENTS (one line per event: n code slot words; last line ACT ...).
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


def run():
    n = 0
    step = pipe.step
    dstep = det.step
    while fi.readinto(raw) == 16:
        step(raw, out)
        e = dstep(out)
        fo.write(out)
        if e:
            for b in ORDER:
                if e & b:
                    o, names = SLOT[b]
                    fe.write('%d %d %s\n' % (n, b, ' '.join(str(ev[o + i]) for i in range(len(names)))))
        n += 1


run()
fe.write('ACT %s\n' % ' '.join(str(v) for v in det.act))
fo.close()
fe.close()
