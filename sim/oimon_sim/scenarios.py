"""Load scenarios with ground truth (device units: axial 0.1 N, moments 0.01 N*m).

Shapes are grounded in published figures (docs/sim.md): OPRA users' walking peaks 498-684 N
resultant force and 26.5-39.8 N*m bending (Frossard et al.), walking loading rate ~5.6 kN/s."""
import numpy as np

G = 9.81


def _stance(phase):
    """Double-hump vertical force of one stance (phase 0..1), peak 1.0."""
    p = np.clip(phase, 0, 1)
    return np.sin(np.pi * p) * (0.78 + 0.22 * np.cos(2 * np.pi * (2 * p)) ** 2) / 0.78 * 0.78 \
        + 0.0 * p


def walk(duration_s, rate=1000, body_weight_kg=75, cadence_spm=100, peak_bw=0.85, seed=0):
    """Level walking on the prosthetic side: stance 60% of a stride; axial peak `peak_bw` x BW
    (75 kg, 0.85 BW = 625 N: inside the OPRA range 498-684 N), AP moment peak ~35 N*m with the
    sign change of heel strike to toe-off, ML moment ~ 0.6 x AP."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * rate)
    t = np.arange(n) / rate
    stride = 120.0 / cadence_spm                     # s per stride of the prosthetic leg
    jitter = 1 + 0.02 * rng.standard_normal(int(duration_s / stride) + 2)
    starts = np.cumsum(np.concatenate([[0.2], stride * jitter]))
    load = np.zeros((n, 3))
    ax_peak = peak_bw * body_weight_kg * G * 10       # 0.1 N
    for k, s0 in enumerate(starts[:-1]):
        st = 0.6 * stride * jitter[k]
        i0, i1 = int(s0 * rate), min(n, int((s0 + st) * rate))
        if i0 >= n:
            break
        ph = (t[i0:i1] - s0) / st
        load[i0:i1, 0] = ax_peak * _stance(ph)
        load[i0:i1, 1] = 3500 * np.sin(2 * np.pi * ph) * np.sin(np.pi * ph)
        load[i0:i1, 2] = 2000 * np.sin(np.pi * ph) ** 2
    truth = []
    return load, truth


def demo(duration_s=8, rate=1000, body_weight_kg=75):
    """The demo: walking, then one stumble-like spike that exceeds the full-phase compression
    limit (2.0 kN for 120 ms) at t = 5 s."""
    load, truth = walk(duration_s, rate, body_weight_kg)
    i0, i1 = int(5.0 * rate), int(5.12 * rate)
    ramp = np.sin(np.linspace(0, np.pi, i1 - i0))
    load[i0:i1, 0] = np.maximum(load[i0:i1, 0], 20000 * ramp)
    truth.append({"kind": "overload", "start": i0, "end": i1})
    return load, truth


SCENARIOS = {"walk": walk, "demo": demo}
