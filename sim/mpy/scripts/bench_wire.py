# Wire bytes bench (sim/oimon_sim/bench_log.py wire_bytes_per_sample): the firmware's Encoder
# frames argv[1] (int16 x 3 per sample) in batches of argv[2] samples; prints "RESULT {json}".
import sys
import json
from oimon_common import protocol as P


def run(path, batch):
    f = open(path, 'rb'); data = f.read(); f.close()
    n = len(data) // 6
    e = P.Encoder()
    total = 0; frames = 0; i = 0
    while i + batch <= n:
        P.pack_samples(e.payload, i, 1000, batch)
        e.payload[P.SAMPLE_HDR:P.SAMPLE_HDR + 6 * batch] = data[6 * i:6 * (i + batch)]
        total += e.finish_n(P.T_SAMPLES, P.SAMPLE_HDR + 6 * batch)
        frames += 1; i += batch
    return {'samples': i, 'frames': frames, 'bytes': total}


if __name__ == '__main__':
    print('RESULT', json.dumps(run(sys.argv[1], int(sys.argv[2]))))
