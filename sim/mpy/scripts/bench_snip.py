# Event-record size bench (sim/oimon_sim/bench_log.py event_record_bytes): simulated loads
# (int32 x 3 per sample, argv[1]) through flashlog.Snippet, one event at sample argv[2], logged on
# a power-cut partition double (tests/firmware/shims/powercut_part.py); prints "RESULT {json}".
import sys
import json
import struct
from array import array
import flashlog
from oimon_common import protocol as P
from oimon_common import decode as D
from powercut_part import CutPart, Rng


def run(path, trig):
    f = open(path, 'rb'); data = f.read(); f.close()
    n = len(data) // 12
    s = flashlog.Snippet(1000); out = array('i', [0] * 8)
    lg = flashlog.Log(snippet=s, part=CutPart(Rng(1), 16), clock=lambda: 1700000000)
    head = b'{"kind":"overload","sample":123456,"peak":12345,"phase":"full","t":1700000000}'
    for i in range(n):
        a, b, c = struct.unpack_from('<iii', data, 12 * i)
        out[0] = a; out[1] = b; out[2] = c
        s.push(out)
        if i == trig:
            lg.event(head, 1)
    lg.sync()
    r = [x for x in lg.since(0) if x[1] == flashlog.K_SNIPPET][0]
    ev, prio, sn = D.unpack_snippet(r[3])
    return {'record_bytes': len(r[3]) + 16, 'samples': sn['n'], 'raw_bytes': 6 * sn['n'] + 7 + 5 + 16}


if __name__ == '__main__':
    print('RESULT', json.dumps(run(sys.argv[1], int(sys.argv[2]))))
