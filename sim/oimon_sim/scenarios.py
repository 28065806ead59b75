"""Load scenarios with ground truth (device units: axial 0.1 N, moments 0.01 N*m).

Every entry of SCENARIOS is fn(duration_s, rate=1000, body_weight_kg=75, seed=0, **params) ->
(load (n, 3) float, truth list). The load is noise-free and what the connector carries; the truth
list holds dicts {"kind": "truth", "label", "start", "end", "expect", "allow", ...} with sample
indices (end exclusive): `expect` the detector event kinds that should report it, `allow` kinds
that may appear inside without counting as false ("*": anything). Sensor faults (fault_*) act on
raw ADC counts: their truth entries carry the fault, apply_faults() puts it into raw counts.

generate() is what `oimon sim generate` and the virtual device use: chunked (one segment of at
most SEGMENT_S seconds at a time, so 24 h take bounded memory), with sensor noise, smooth
transitions between segments, and conversion to int32 device units or raw counts.

Shapes and magnitudes are grounded in published figures (sources in docs/sim.md):
OPRA users' walking peaks 498-684 N resultant force and 26.5-39.8 N*m bending; daily-activity
maximum 1322 N (161 % BW) and 88 N*m; femur failure envelope 2768 N / 138 N*m; cadaver bending
failure 100.4 +- 38.5 N*m; walking loading rate ~5.6 kN/s; falls in four phases: loading,
descent, impact, recovery (Frossard et al. 2010)."""
import functools

import numpy as np

from oimon_sim import sensor as _sensor

G = 9.81
NM = 100.0                  # device units per N*m
SEGMENT_S = 300.0           # longest piece generate() holds in memory
BLEND_S = 0.25              # cross-fade between segments
NOISE = (15.0, 15.0, 15.0)  # sensor noise, device units (1.5 N, 0.15 N*m)
FAULT_EXPECT = ["fault", "sensor_fault"]


class ScenarioError(ValueError):
    pass


def _bw(kg):
    """Body weight in device units (0.1 N)."""
    return kg * G * 10.0


def truth(label, start, end, expect=(), allow=(), **kw):
    d = {"kind": "truth", "label": label, "start": int(start), "end": int(end),
         "expect": list(expect), "allow": list(allow)}
    for k, v in kw.items():
        d[k] = v.item() if isinstance(v, np.generic) else v
    return d


# --- building blocks -----------------------------------------------------------------------
def _norm_shape(f):
    p = np.linspace(0, 1, 2001)
    return lambda q: f(q) / f(p).max()


# stance shapes (phase 0..1 -> peak 1.0): double hump with the valley at mid-stance
_STANCE = {
    "level": _norm_shape(lambda p: np.sin(np.pi * p) + 0.25 * np.sin(3 * np.pi * p)),
    "stairs_down": _norm_shape(lambda p: np.sin(np.pi * p) + 0.30 * np.sin(3 * np.pi * p)
                               + 0.18 * np.sin(2 * np.pi * p)),
    "stairs_up": _norm_shape(lambda p: np.sin(np.pi * p) + 0.15 * np.sin(3 * np.pi * p)
                             - 0.15 * np.sin(2 * np.pi * p)),
}
_AP = _norm_shape(lambda p: np.sin(2 * np.pi * p) * np.sin(np.pi * p))     # +flexion, -extension


def _gait(n, rate, rng, stride_s, stance_frac, peak, ap, ml, shape="level", tension=0.0,
          lead_s=0.2):
    """Prosthetic-side gait cycles over n samples. peak/ap/ml/tension in device units.
    Returns (load (n, 3), heel-strike indices)."""
    load = np.zeros((n, 3))
    f = _STANCE[shape]
    t = lead_s
    strikes = []
    while True:
        j = 1 + 0.02 * rng.standard_normal()
        a = 1 + 0.04 * rng.standard_normal()
        st, sw = stance_frac * stride_s * j, (1 - stance_frac) * stride_s * j
        i0, i1, i2 = int(t * rate), int((t + st) * rate), int((t + st + sw) * rate)
        if i0 >= n:
            break
        strikes.append(i0)
        ph = (np.arange(i0, min(i1, n)) / rate - t) / st
        load[i0:i0 + len(ph), 0] = a * peak * f(ph)
        load[i0:i0 + len(ph), 1] = a * ap * _AP(ph)
        load[i0:i0 + len(ph), 2] = a * ml * np.sin(np.pi * ph) ** 2
        if i1 < n and tension:
            q = (np.arange(i1, min(i2, n)) / rate - t - st) / sw
            load[i1:i1 + len(q), 0] = -tension * np.sin(np.pi * q)
        t += st + sw
    return load, strikes


def _posture(n, rate, rng, axial, ap=0.0, ml=0.0, sway=0.05):
    """Quiet standing/sitting: a level plus slow sway (a few sinusoids, 0.05-0.5 Hz)."""
    t = np.arange(n) / rate
    load = np.empty((n, 3))
    for c, lvl in enumerate((axial, ap, ml)):
        s = np.zeros(n)
        for _ in range(3):
            fr = rng.uniform(0.05, 0.5)
            s += np.sin(2 * np.pi * fr * t + rng.uniform(0, 2 * np.pi)) / 3
        amp = sway * abs(axial) if c == 0 else max(abs(lvl) * 0.3, 100.0 * sway / 0.05)
        load[:, c] = lvl + amp * s
    return load


def _ramp(a, b, m):
    """Cosine ramp from vector a to b over m samples: (m, 3)."""
    w = 0.5 - 0.5 * np.cos(np.pi * np.arange(m) / max(m, 1))
    return np.outer(1 - w, a) + np.outer(w, b)


def _pulse(m, rise_frac=0.35):
    """Asymmetric bump 0 -> 1 -> 0 over m samples, peak at rise_frac."""
    x = np.arange(m) / max(m - 1, 1)
    k = int(rise_frac * (m - 1))
    y = np.empty(m)
    y[:k + 1] = np.sin(0.5 * np.pi * x[:k + 1] / max(rise_frac, 1e-9))
    y[k + 1:] = np.cos(0.5 * np.pi * (x[k + 1:] - rise_frac) / (1 - rise_frac))
    return np.clip(y, 0, 1)


def _walk_params(body_weight_kg, cadence_spm, speed_mps, peak_bw):
    if speed_mps is None:
        speed_mps = 0.65 * cadence_spm / 60.0                 # step length 0.65 m
    if peak_bw is None:
        peak_bw = 0.72 + 0.12 * speed_mps                      # 1.08 m/s -> 0.85 BW
    k = body_weight_kg / 75.0
    ap = 32 * NM * k * (0.8 + 0.2 * speed_mps)                 # ~32 N*m at 75 kg, 1 m/s
    ml = 17 * NM * k * (0.8 + 0.2 * speed_mps)
    stance = float(np.clip(0.64 - 0.05 * speed_mps, 0.55, 0.65))
    return speed_mps, peak_bw, ap, ml, stance


# --- scenarios -----------------------------------------------------------------------------
def walk(duration_s, rate=1000, body_weight_kg=75, seed=0, cadence_spm=100, speed_mps=None,
         peak_bw=None):
    """Level walking on the prosthetic side: stance ~60 % of a stride, double-hump axial force
    peaking at `peak_bw` x BW (75 kg at 1.1 m/s: 0.85 BW = 625 N, inside OPRA's 498-684 N),
    AP moment ~32 N*m changing sign from heel strike to toe-off, ML ~17 N*m, swing tension."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * rate))
    speed, peak_bw, ap, ml, stance = _walk_params(body_weight_kg, cadence_spm, speed_mps, peak_bw)
    load, strikes = _gait(n, rate, rng, 120.0 / cadence_spm, stance, peak_bw * _bw(body_weight_kg),
                          ap, ml, tension=0.04 * _bw(body_weight_kg))
    tr = [truth("walk", 0, n, cadence_spm=cadence_spm, speed_mps=round(speed, 3),
                strides=len(strikes), peak_bw=round(peak_bw, 3))]
    return load, tr


def demo(duration_s=8, rate=1000, body_weight_kg=75, seed=0):
    """The demo: walking, then one stumble-like spike that exceeds the full-phase compression
    limit (2.0 kN for 120 ms) at t = 5 s."""
    load, tr = walk(duration_s, rate, body_weight_kg, seed)
    i0, i1 = int(5.0 * rate), int(5.12 * rate)
    ramp = np.sin(np.linspace(0, np.pi, i1 - i0))
    load[i0:i1, 0] = np.maximum(load[i0:i1, 0], 20000 * ramp)
    tr.append(truth("overload", i0, i1, expect=["overload"], allow=["*"], peak_n=2000.0))
    return load, tr


def stand(duration_s, rate=1000, body_weight_kg=75, seed=0):
    """Quiet standing: ~45 % BW on the prosthesis with postural sway."""
    n = int(round(duration_s * rate))
    load = _posture(n, rate, np.random.default_rng(seed), 0.45 * _bw(body_weight_kg), 200, 100)
    return load, [truth("rest", 0, n, posture="stand")]


def sit(duration_s, rate=1000, body_weight_kg=75, seed=0):
    """Sitting: the foot rests on the floor, ~4 % BW."""
    n = int(round(duration_s * rate))
    load = _posture(n, rate, np.random.default_rng(seed), 0.04 * _bw(body_weight_kg), 50, 0,
                    sway=0.2)
    return load, [truth("rest", 0, n, posture="sit")]


def doffed(duration_s, rate=1000, body_weight_kg=75, seed=0):
    """Prosthesis off (night): no load at all."""
    n = int(round(duration_s * rate))
    return np.zeros((n, 3)), [truth("rest", 0, n, posture="doffed")]


def stairs(duration_s, rate=1000, body_weight_kg=75, seed=0, direction="both", steps=12):
    """Flights of `steps` steps (step-over-step, cadence 80 steps/min) with a 4 s landing between.
    Descent loads more (peak ~1.25 BW, AP ~50 N*m) than ascent (~1.05 BW, ~40 N*m); both stay
    below the daily-activity maximum of 161 % BW / 88 N*m."""
    if direction not in ("up", "down", "both"):
        raise ScenarioError("direction must be up, down or both")
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * rate))
    bw, k = _bw(body_weight_kg), body_weight_kg / 75.0
    load = _posture(n, rate, rng, 0.45 * bw, 200, 100)
    tr = []
    stride = 120.0 / 80
    flight = steps / 2 * stride + 0.3
    t, d = 1.0, "up" if direction in ("up", "both") else "down"
    while (t + flight) * rate <= n:
        i0, i1 = int(t * rate), int((t + flight) * rate)
        if d == "up":
            seg, _ = _gait(i1 - i0, rate, rng, stride, 0.62, 1.05 * bw, 40 * NM * k, 20 * NM * k,
                           "stairs_up", 0.05 * bw, lead_s=0.1)
        else:
            seg, _ = _gait(i1 - i0, rate, rng, stride, 0.60, 1.25 * bw, 50 * NM * k, 25 * NM * k,
                           "stairs_down", 0.05 * bw, lead_s=0.1)
        load[i0:i1] = seg
        tr.append(truth("stairs_" + d, i0, i1, steps=steps))
        t += flight + 4.0
        if direction == "both":
            d = "down" if d == "up" else "up"
    _smooth_edges(load, tr, rate)
    return load, tr


def _smooth_edges(load, tr, rate, m_s=0.15):
    """Cross-fade into and out of each truth interval (avoid steps at activity changes)."""
    m = int(m_s * rate)
    for d in tr:
        for e in (d["start"], d["end"]):
            a, b = max(0, e - m // 2), min(len(load), e + m // 2)
            if b - a > 2:
                load[a:b] = _ramp(load[a], load[b - 1], b - a)


def sit_to_stand(duration_s, rate=1000, body_weight_kg=75, seed=0, reps=None):
    """Repeated sit-to-stand: sit 3 s (~4 % BW), rise 1.5 s (peak ~0.6 BW, AP ~15 N*m with the
    trunk lean), stand 3 s (~45 % BW), sit down 2 s; 10 s a repetition."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * rate))
    bw = _bw(body_weight_kg)
    sitv = np.array([0.04 * bw, 50, 0])
    standv = np.array([0.45 * bw, 200, 100])
    load = np.tile(sitv, (n, 1))
    tr = []
    t = 0.5
    count = 0
    while (t + 9.5) * rate <= n and (reps is None or count < reps):
        i = int((t + 3.0) * rate)
        m = int(1.5 * rate)
        up = _ramp(sitv, standv, m)
        up[:, 0] += 0.15 * bw * _pulse(m, 0.55)
        up[:, 1] += 15 * NM * _pulse(m, 0.4)
        load[i:i + m] = up
        j = i + m
        ms = int(3.0 * rate)
        load[j:j + ms] = _posture(ms, rate, rng, standv[0], standv[1], standv[2])
        k = j + ms
        md = int(2.0 * rate)
        down = _ramp(load[k - 1], sitv, md)
        down[:, 1] += 10 * NM * _pulse(md, 0.5)
        load[k:k + md] = down
        tr.append(truth("sit_to_stand", i, k + md))
        t += 10.0
        count += 1
    load[:, 0] += 0.01 * bw * rng.standard_normal(1)   # per-run level difference
    return load, tr


def static_loading(duration_s, rate=1000, body_weight_kg=75, seed=0, target_kg=20.0, hold_s=15.0,
                   reps=None):
    """Phase I static loading exercise: the patient loads the prosthesis on a bathroom scale to
    `target_kg` over 2 s, holds it (tremor ~3 %, slow corrections ~5 %), unloads over 2 s, rests
    8 s. Moments small (lever arm ~2 cm of misalignment)."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * rate))
    tgt = target_kg * G * 10
    load = np.zeros((n, 3))
    tr = []
    cyc = 4 + hold_s + 8
    t = 1.0
    count = 0
    while (t + cyc - 7) * rate <= n and (reps is None or count < reps):
        i0 = int(t * rate)
        m = int(2 * rate)
        h = int(hold_s * rate)
        hold = _posture(h, rate, rng, tgt, 0, 0, sway=0.05)
        hold[:, 0] += 0.03 * tgt * np.sin(2 * np.pi * 8 * np.arange(h) / rate) * rng.uniform(0.3, 1)
        seq = np.concatenate([_ramp(np.zeros(3), hold[0], m), hold,
                              _ramp(hold[-1], np.zeros(3), m)])
        seq[:, 1] = seq[:, 0] * 0.2 * rng.uniform(-1, 1)    # 0.1 N x up to 2 cm -> 0.01 N*m
        seq[:, 2] = seq[:, 0] * 0.1 * rng.uniform(-1, 1)
        e = min(n, i0 + len(seq))
        load[i0:e] = seq[:e - i0]
        tr.append(truth("static_loading", i0, e, target_kg=target_kg, hold_s=hold_s))
        t += cyc
        count += 1
    return load, tr


def _event_time(duration_s, at_s, default_frac=0.4, need_after=0.0):
    at = duration_s * default_frac if at_s is None else float(at_s)
    if at < 1.0 or at + need_after > duration_s:
        raise ScenarioError("needs at least %.0f s (event at %.1f s + %.0f s after it)" % (
            max(1.0, at) + need_after, at, need_after))
    return at


def stumble(duration_s, rate=1000, body_weight_kg=75, seed=0, at_s=None):
    """Walking with one stumble that recovers: a stance loaded fast (~15 kN/s) to ~1.45 BW with a
    forward AP moment of ~65 N*m (below the daily-activity maximum of 161 % BW / 88 N*m), then two
    quick recovery steps and walking on. No fall: the detector must not raise a fall alarm."""
    at = _event_time(duration_s, at_s, 0.4, 3.0)
    load, tr = walk(duration_s, rate, body_weight_kg, seed)
    rng = np.random.default_rng([seed, 7])
    bw, k = _bw(body_weight_kg), body_weight_kg / 75.0
    i0 = int(at * rate)
    m = int(0.45 * rate)
    spike = _pulse(int(0.16 * rate), 0.3)
    seg = np.zeros((m, 3))
    seg[:, 0] = 0.9 * bw * np.sin(np.pi * np.arange(m) / m)
    seg[int(0.05 * rate):int(0.05 * rate) + len(spike), 0] += (0.55 + 0.05 * rng.standard_normal()) * bw * spike
    seg[:, 1] = 30 * NM * k * np.sin(np.pi * np.arange(m) / m)
    seg[int(0.05 * rate):int(0.05 * rate) + len(spike), 1] += 35 * NM * k * spike
    seg[:, 2] = 15 * NM * k * np.sin(np.pi * np.arange(m) / m)
    quick, _ = _gait(int(1.4 * rate), rate, rng, 0.7, 0.55, 0.95 * bw, 35 * NM * k, 18 * NM * k,
                     tension=0.04 * bw, lead_s=0.25)
    blk = np.concatenate([seg, quick])
    e = min(len(load), i0 + len(blk))
    load[i0:e] = blk[:e - i0]
    d = truth("stumble", i0, e, expect=[], allow=["overload"],
              peak_n=round(float(load[i0:e, 0].max()) / 10, 1))
    _smooth_edges(load, [d], rate, 0.08)
    tr.append(d)
    return load, tr


FALL_SEVERITY = {   # impact: axial x BW, moment N*m at 75 kg
    "low": (0.9, 40.0),
    "medium": (1.5, 70.0),
    "high": (2.3, 110.0),       # above the cadaver bending failure mean 100.4 N*m, below 138 N*m
}
FALL_DIRECTION = {"forward": (1, 1), "backward": (1, -1), "left": (2, -1), "right": (2, 1)}


def fall(duration_s, rate=1000, body_weight_kg=75, seed=0, direction="forward",
         severity="medium", at_s=None):
    """A fall in the four phases of Frossard et al. (2010): loading (0.35 s: the limb loaded
    abnormally to ~1.1 BW, moment building in the fall direction), descent (0.6 s: the limb
    unloads, slight tension), impact (0.12 s: axial and bending spikes scaled by `severity`),
    recovery (lying 6 s, getting up 3 s, standing). Directions: forward/backward (AP moment
    +/-), left/right (ML moment -/+)."""
    if direction not in FALL_DIRECTION:
        raise ScenarioError("direction must be one of %s" % ", ".join(FALL_DIRECTION))
    if severity not in FALL_SEVERITY:
        raise ScenarioError("severity must be one of %s" % ", ".join(FALL_SEVERITY))
    at = _event_time(duration_s, at_s, 0.3, 11.0)
    n = int(round(duration_s * rate))
    rng = np.random.default_rng([seed, 11])
    bw, k = _bw(body_weight_kg), body_weight_kg / 75.0
    load, tr = walk(at, rate, body_weight_kg, seed)
    tr[0]["end"] = len(load)
    ch, sg = FALL_DIRECTION[direction]
    other = 3 - ch
    imp_bw, imp_nm = FALL_SEVERITY[severity]
    imp_bw *= 1 + 0.05 * rng.standard_normal()
    imp_nm *= k * (1 + 0.05 * rng.standard_normal())
    start = load[-1].copy() if len(load) else np.zeros(3)
    # loading
    m1 = int(0.35 * rate)
    p1 = _ramp(start, np.zeros(3), m1)
    p1[:, 0] += 1.1 * bw * np.sin(0.5 * np.pi * np.arange(m1) / m1)
    p1[:, ch] += sg * 0.5 * imp_nm * NM * (np.arange(m1) / m1) ** 1.5
    p1[:, other] += 10 * NM * k * np.sin(np.pi * np.arange(m1) / m1)
    # descent
    m2 = int(0.6 * rate)
    p2 = _ramp(p1[-1], np.array([-0.03 * bw, 0, 0]), m2)
    p2[:, ch] += sg * 5 * NM * k * np.sin(3 * np.pi * np.arange(m2) / m2)
    # impact
    m3 = int(0.12 * rate)
    sp = _pulse(m3, 0.25)
    p3 = np.tile(p2[-1], (m3, 1))
    p3[:, 0] += imp_bw * bw * sp
    p3[:, ch] += sg * imp_nm * NM * sp
    p3[:, other] += 0.3 * imp_nm * NM * sp * rng.choice([-1, 1])
    ring = np.exp(-np.arange(m3) / (0.03 * rate)) * np.sin(2 * np.pi * 25 * np.arange(m3) / rate)
    p3[:, 0] += 0.1 * bw * ring
    # recovery: lying, getting up, standing
    m4 = int(6.0 * rate)
    lying = _posture(m4, rate, rng, 0.02 * bw, 0, 0, sway=0.3)
    lying[:int(0.3 * rate)] = _ramp(p3[-1], lying[int(0.3 * rate)], int(0.3 * rate))
    m5 = int(3.0 * rate)
    up = _ramp(lying[-1], np.array([0.45 * bw, 200, 100]), m5)
    up[:, 0] += 0.25 * bw * _pulse(m5, 0.6)
    up[:, 1] += 20 * NM * k * _pulse(m5, 0.5)
    rest = max(0, n - len(load) - m1 - m2 - m3 - m4 - m5)
    standing = _posture(rest, rate, rng, 0.45 * bw, 200, 100)
    i_load = len(load)
    i_desc, i_imp = i_load + m1, i_load + m1 + m2
    i_rec = i_imp + m3
    i_end = i_rec + m4 + m5
    load = np.concatenate([load, p1, p2, p3, lying, up, standing])[:n]
    pk = i_imp + int(np.argmax(p3[:, 0]))
    tr.append(truth("fall", i_load, i_end, expect=["fall"], allow=["*"], direction=direction,
                    severity=severity, impact=pk,
                    phases={"loading": i_load, "descent": i_desc, "impact": i_imp,
                            "recovery": i_rec},
                    impact_n=round(float(p3[:, 0].max()) / 10, 1),
                    impact_nm=round(float(np.abs(p3[:, ch]).max()) / NM, 1)))
    tr.append(truth("rest", i_end, n, posture="stand"))
    return load, tr


def _walk_then(duration_s, at, rate, body_weight_kg, seed):
    n = int(round(duration_s * rate))
    load, tr = walk(at, rate, body_weight_kg, seed)
    tr[0]["end"] = len(load)
    return n, load, tr


def _get_up(load, n, rate, rng, bw, p1, p2, p3, down):
    """The end of a fall after the loading (p1), descent (p2) and impact (p3): `down` (lying or
    sitting), getting up (3 s), standing for the rest of the n samples. Returns the whole load,
    the fall's first and end index and its phases."""
    m5 = int(3.0 * rate)
    up = _ramp(down[-1], np.array([0.45 * bw, 200, 100]), m5)
    up[:, 0] += 0.25 * bw * _pulse(m5, 0.6)
    rest = max(0, n - len(load) - len(p1) - len(p2) - len(p3) - len(down) - m5)
    standing = _posture(rest, rate, rng, 0.45 * bw, 200, 100)
    i_load = len(load)
    i_desc = i_load + len(p1)
    i_imp = i_desc + len(p2)
    i_rec = i_imp + len(p3)
    i_up = i_rec + len(down)
    out = np.concatenate([load, p1, p2, p3, down, up, standing])[:n]
    return out, i_load, i_up + m5, {"loading": i_load, "descent": i_desc, "impact": i_imp,
                                    "recovery": i_rec, "getting_up": i_up}


def slide_down(duration_s, rate=1000, body_weight_kg=75, seed=0, limb_bw=0.5, at_s=None,
               direction="backward"):
    """A slide down onto the buttocks: the knee gives way while loaded (0.4 s, ~0.9 BW), the limb
    unloads while the body slides down (0.7 s), the prosthetic foot meets the floor with only
    `limb_bw` x BW (0.3-0.7) at ~6 kN/s (no hard impact), the buttocks land (~2 g at the thigh),
    then sitting on the floor, leg out, ~3 % BW (8 s), getting up (3 s), standing."""
    at = _event_time(duration_s, at_s, 0.3, 13.0)
    n, load, tr = _walk_then(duration_s, at, rate, body_weight_kg, seed)
    rng = np.random.default_rng([seed, 17])
    bw = _bw(body_weight_kg)
    start = load[-1].copy() if len(load) else np.zeros(3)
    m1 = int(0.4 * rate)
    p1 = _ramp(start, np.array([0.6 * bw, 1500, 300]), m1)
    p1[:, 0] += 0.3 * bw * np.sin(np.pi * np.arange(m1) / m1)
    m2 = int(0.7 * rate)
    p2 = _ramp(p1[-1], np.array([0.02 * bw, 0, 0]), m2)
    m3 = int(0.25 * rate)
    lb = float(limb_bw) * (1 + 0.05 * rng.standard_normal())
    p3 = np.tile(p2[-1], (m3, 1))
    p3[:, 0] += lb * bw * _pulse(m3, 0.25)
    p3[:, 1] += 800 * _pulse(m3, 0.25)
    m4 = int(8.0 * rate)
    sitf = _posture(m4, rate, rng, 0.03 * bw, 0, 0, sway=0.3)
    load, i_load, i_end, phases = _get_up(load, n, rate, rng, bw, p1, p2, p3, sitf)
    tr.append(truth("slide_down", i_load, i_end, expect=["fall"], allow=["*"], fall_kind="slide_down",
                    direction=direction, limb_bw=round(lb, 3), imu_impact_g=2.0, phases=phases))
    tr.append(truth("rest", i_end, n, posture="stand"))
    return load, tr


def fall_other(duration_s, rate=1000, body_weight_kg=75, seed=0, direction="left", impact_g=4.5,
               at_s=None):
    """A fall in which the prosthesis is not the impact point: the sound leg slips, the limb
    unloads in the descent (0.6 s) and never meets the ground (the hip, arm or the other side
    land: `impact_g` at the thigh), lying with the limb unloaded (6 s), getting up (3 s)."""
    if direction not in FALL_DIRECTION:
        raise ScenarioError("direction must be one of %s" % ", ".join(FALL_DIRECTION))
    at = _event_time(duration_s, at_s, 0.3, 11.0)
    n, load, tr = _walk_then(duration_s, at, rate, body_weight_kg, seed)
    rng = np.random.default_rng([seed, 19])
    bw = _bw(body_weight_kg)
    start = load[-1].copy() if len(load) else np.zeros(3)
    m1 = int(0.35 * rate)
    p1 = _ramp(start, np.array([0.3 * bw, 500, 200]), m1)
    m2 = int(0.6 * rate)
    p2 = _ramp(p1[-1], np.array([-0.03 * bw, 0, 0]), m2)
    m3 = int(0.12 * rate)
    p3 = np.tile(p2[-1], (m3, 1))
    p3[:, 0] += 0.05 * bw * _pulse(m3, 0.3)              # the limb's inertia only
    m4 = int(6.0 * rate)
    lying = _posture(m4, rate, rng, 0.02 * bw, 0, 0, sway=0.3)
    load, i_load, i_end, phases = _get_up(load, n, rate, rng, bw, p1, p2, p3, lying)
    tr.append(truth("fall_other", i_load, i_end, expect=["fall"], allow=["*"], fall_kind="other",
                    direction=direction, imu_impact_g=float(impact_g), phases=phases))
    tr.append(truth("rest", i_end, n, posture="stand"))
    return load, tr


def overload(duration_s, rate=1000, body_weight_kg=75, seed=0, peak_bw=3.0, at_s=None):
    """Jump landing on the prosthesis: walking, stand, push-off (~1.3 BW), flight 0.35 s
    (slight tension), landing rising in 50 ms to `peak_bw` x BW (3.0 BW = 2206 N at 75 kg: above
    the daily-activity maximum 1322 N and the full-phase limit, below the femur failure envelope
    2768 N) with AP ~60 N*m, settling to standing in 0.5 s."""
    at = _event_time(duration_s, at_s, 0.4, 3.0)
    n = int(round(duration_s * rate))
    rng = np.random.default_rng([seed, 13])
    bw, k = _bw(body_weight_kg), body_weight_kg / 75.0
    load, tr = walk(at, rate, body_weight_kg, seed)
    tr[0]["end"] = len(load)
    standv = np.array([0.45 * bw, 200, 100])
    pre = _ramp(load[-1] if len(load) else np.zeros(3), standv, int(1.0 * rate))
    m = int(0.3 * rate)
    push = np.tile(standv, (m, 1))
    push[:, 0] += 0.85 * bw * _pulse(m, 0.6)
    fl = _ramp(push[-1], np.array([-0.05 * bw, 0, 0]), int(0.35 * rate))
    ml = int(0.55 * rate)
    x = np.arange(ml) / rate
    land = np.zeros((ml, 3))
    pk = peak_bw * (1 + 0.03 * rng.standard_normal()) * bw
    rise = int(0.05 * rate)
    land[:rise, 0] = pk * np.sin(0.5 * np.pi * np.arange(rise) / rise)
    land[rise:, 0] = standv[0] + (pk - standv[0]) * np.exp(-(x[rise:] - x[rise]) / 0.07)
    land[:, 1] = 60 * NM * k * _pulse(ml, 0.12) + standv[1]
    land[:, 2] = 20 * NM * k * _pulse(ml, 0.15) + standv[2]
    i_land = len(load) + len(pre) + m + len(fl)
    rest = max(0, n - i_land - ml)
    after = _posture(rest, rate, rng, standv[0], standv[1], standv[2])
    load = np.concatenate([load, pre, push, fl, land, after])[:n]
    tr.append(truth("overload", i_land, i_land + int(0.3 * rate), expect=["overload"],
                    allow=["*"], peak_n=round(float(pk) / 10, 1),
                    flight=[i_land - len(fl), i_land],
                    peak_nm=round(float(land[:, 1].max()) / NM, 1)))
    tr.append(truth("rest", i_land + int(0.3 * rate), n, posture="stand"))
    return load, tr


FAULTS = ("open", "saturation", "stuck", "drift")


def sensor_fault(duration_s, rate=1000, body_weight_kg=75, seed=0, fault="open", channel=0,
                 at_s=None, length_s=None, drift_n_per_min=100.0):
    """Walking with a sensor fault on bridge `channel` from at_s for length_s. The fault acts on
    the raw ADC counts (apply_faults): open bridge -> the channel sits on the positive rail;
    saturation -> the channel's offset jumps so that load peaks clip at the rail; stuck -> the
    ADC repeats one code; drift -> the offset drifts by `drift_n_per_min` (axial; moments: the
    same counts) and stays off afterwards."""
    if fault not in FAULTS:
        raise ScenarioError("fault must be one of %s" % ", ".join(FAULTS))
    if int(channel) not in (0, 1, 2):
        raise ScenarioError("channel must be 0, 1 or 2")
    if length_s is None:
        length_s = {"open": 5.0, "saturation": 5.0, "stuck": 10.0}.get(fault, duration_s * 0.5)
    at = _event_time(duration_s, at_s, 0.3, min(float(length_s), duration_s * 0.5))
    load, tr = walk(duration_s, rate, body_weight_kg, seed)
    n = len(load)
    i0 = int(at * rate)
    i1 = n if fault == "drift" else min(n, i0 + int(float(length_s) * rate))
    d = truth("fault_" + fault, i0, i1, expect=FAULT_EXPECT, allow=["*"], fault=fault,
              channel=int(channel), raw=True)
    if fault == "drift":
        d["drift_counts_per_s"] = float(drift_n_per_min) * 10 / 60 * 80
        d["drift_end"] = min(n, i0 + int(float(length_s) * rate))
    tr.append(d)
    return load, tr


def shift_truth(d, at):
    """A truth entry with its sample indices moved by `at`."""
    d = dict(d)
    for k in ("start", "end", "impact", "drift_end"):
        if k in d:
            d[k] += at
    if "phases" in d:
        d["phases"] = {p: v + at for p, v in d["phases"].items()}
    return d


def apply_faults(raw, tr, first=0, rate=1000):
    """Put the sensor faults of truth entries into raw counts (n, 4) int32 whose first row has
    sample index `first`; in place, returns raw."""
    n = len(raw)
    for d in tr:
        if not d.get("raw") or not d["label"].startswith("fault_"):
            continue
        a, b = max(0, d["start"] - first), min(n, d["end"] - first)
        if b <= a:
            continue
        c = d["channel"]
        col = raw[a:b, c].astype(np.int64)
        f = d["fault"]
        if f == "open":
            col[:] = _sensor.ADC_MAX
        elif f == "saturation":
            col += _sensor.ADC_MAX - int(np.percentile(col, 60))
        elif f == "stuck":
            col[:] = col[0]
        elif f == "drift":
            i = np.arange(a, b) + first - d["start"]          # samples since the fault began
            ramp_n = d["drift_end"] - d["start"]
            col += np.rint(d["drift_counts_per_s"] * np.minimum(i, ramp_n) / rate).astype(np.int64)
        raw[a:b, c] = np.clip(col, _sensor.ADC_MIN, _sensor.ADC_MAX)
    return raw


# --- the day ---------------------------------------------------------------------------------
# (name, natural length s, params) of the episodes that happen once each per day
def _day_episodes(rng, duration_s):
    dirs, sevs = list(FALL_DIRECTION), list(FALL_SEVERITY)
    eps = []
    for i in range(10):
        eps.append(("stairs", 25.0, {"direction": "up" if i % 2 == 0 else "down", "steps": 12}))
    for _ in range(4):
        eps.append(("sit_to_stand", 31.0, {"reps": 3}))
    eps.append(("static_loading", 3 * 27.0 + 2, {"target_kg": 20.0, "hold_s": 15.0, "reps": 3}))
    for _ in range(3):
        eps.append(("stumble", 10.0, {"at_s": 4.0}))
    for i in range(2):
        eps.append(("fall", 20.0, {"direction": dirs[int(rng.integers(4))],
                                   "severity": sevs[int(rng.integers(3))], "at_s": 4.0}))
    for _ in range(2):
        eps.append(("overload", 10.0, {"at_s": 4.0}))
    for f, ch in (("open", 1), ("saturation", 0), ("stuck", 2)):
        eps.append(("sensor_fault", 20.0, {"fault": f, "channel": ch, "at_s": 6.0}))
    drift_len = float(min(600.0, max(20.0, duration_s / 100)))
    eps.append(("sensor_fault", drift_len + 10, {"fault": "drift", "channel": 0, "at_s": 5.0,
                                                 "length_s": drift_len}))
    return eps


def day_plan(duration_s=86400.0, seed=0):
    """The schedule of `day`: [(scenario name, seconds, params, seed)]. Night (prosthesis off),
    then the day's episodes in random order, each between fillers of walking, standing and
    sitting; the fillers take what the episodes leave (24 h: ~1.5 h walking in bouts, ~4.5 h
    standing, ~8 h sitting, ~9 h off). Shorter days squeeze the fillers, never the episodes."""
    rng = np.random.default_rng([seed, 24])
    eps = _day_episodes(rng, duration_s)
    need = sum(e[1] for e in eps)
    if duration_s < need + 60:
        raise ScenarioError("day needs at least %d s (its episodes take %d s)" % (need + 60, need))
    order = rng.permutation(len(eps))
    filler = duration_s - need
    night_am, night_pm = 0.28 * filler, 0.09 * filler
    awake = filler - night_am - night_pm
    k = len(eps) + 1
    walk_t = rng.dirichlet(np.ones(k)) * awake * 0.10
    stand_t = rng.dirichlet(np.ones(k)) * awake * 0.30
    sit_t = rng.dirichlet(np.ones(k)) * awake * 0.60
    plan = [("doffed", night_am, {})]

    def fillers(i):
        out = []
        for name, t in (("stand", stand_t[i] * 0.3), ("walk", walk_t[i]), ("stand", stand_t[i] * 0.7),
                        ("sit", sit_t[i])):
            if t >= 1.0:
                p = {}
                if name == "walk":
                    cad = float(np.round(rng.uniform(85, 115), 1))
                    p = {"cadence_spm": cad}
                out.append((name, t, p))
        return out

    for j, i in enumerate(order):
        plan += fillers(j)
        plan.append(eps[i])
    plan += fillers(k - 1)
    plan.append(("doffed", night_pm, {}))
    # round to whole samples at 1 kHz, make the total exact
    plan = [(nm, float(np.floor(t * 1000) / 1000), p) for nm, t, p in plan if t > 0]
    plan[-1] = (plan[-1][0], plan[-1][1] + duration_s - sum(t for _, t, _ in plan), plan[-1][2])
    seeds = rng.integers(0, 2**31, size=len(plan))
    return [(nm, t, p, int(s)) for (nm, t, p), s in zip(plan, seeds)]


def _pieces(name, dur, rate, bw, seed, params):
    """Yield (load, truth) for one plan entry; long stationary/walking entries come in pieces of
    at most SEGMENT_S s (each a complete scenario of its own)."""
    fn = SCENARIOS[name]
    if name in ("doffed", "sit", "stand", "walk") and dur > SEGMENT_S:
        k = int(np.ceil(dur / SEGMENT_S))
        total = int(round(dur * rate))
        edges = np.linspace(0, total, k + 1).astype(int)
        for j in range(k):
            yield fn((edges[j + 1] - edges[j]) / rate, rate, bw, seed + j, **params)
    else:
        yield fn(dur, rate, bw, seed, **params)


def day(duration_s=86400.0, rate=1000, body_weight_kg=75, seed=0):
    """A day of all the scenarios (see day_plan). Whole-array form: a 24 h day needs ~2 GiB here;
    generate() streams it instead."""
    loads, tr, at = [], [], 0
    for load, t in segments("day", duration_s, rate, body_weight_kg, seed):
        tr += [shift_truth(d, at) for d in t]
        loads.append(load)
        at += len(load)
    return np.concatenate(loads), tr


def segments(name, duration_s, rate=1000, body_weight_kg=75, seed=0, **params):
    """Yield (load, truth with indices relative to the segment) in time order."""
    if name not in SCENARIOS:
        raise ScenarioError("unknown scenario %r (choose from %s)" % (name, ", ".join(sorted(SCENARIOS))))
    if name != "day":
        if name in ("doffed", "sit", "stand", "walk") and duration_s > SEGMENT_S:
            yield from _pieces(name, duration_s, rate, body_weight_kg, seed, params)
        else:
            yield SCENARIOS[name](duration_s, rate, body_weight_kg, seed, **params)
        return
    if params:
        raise ScenarioError("day takes no parameters")
    for nm, dur, p, s in day_plan(duration_s, seed):
        for load, tr in _pieces(nm, dur, rate, body_weight_kg, s, p):
            yield load, tr


def is_raw_scenario(name, params=None):
    """Scenarios whose truth includes sensor faults: generated as raw counts."""
    return name == "day" or name.startswith("fault_") or name == "sensor_fault"


def generate(name, duration_s, rate=1000, body_weight_kg=75, seed=0, raw=None, model=None,
             noise=True, **params):
    """Stream a scenario: yield (first sample index, rows int32, truth entries with absolute
    indices) per segment; rows are device units (n, 3) or raw counts (n, 4) when raw (default:
    raw for fault scenarios and day). Same arguments, same output, whatever the chunking."""
    if raw is None:
        raw = is_raw_scenario(name)
    model = model or _sensor.SensorModel()
    at = 0
    prev = None
    for k, (load, tr) in enumerate(segments(name, duration_s, rate, body_weight_kg, seed, **params)):
        load = np.array(load, dtype=float)
        n = len(load)
        if not n:
            continue
        if prev is not None:                     # cross-fade from where the last one ended
            m = min(n, int(BLEND_S * rate))
            w = (0.5 - 0.5 * np.cos(np.pi * np.arange(m) / m))[:, None]
            load[:m] = (1 - w) * prev + w * load[:m]
        prev = load[-1].copy()
        if noise:
            rng = np.random.default_rng([seed, k, 99])
            load += rng.standard_normal((n, 3)) * np.array(NOISE)
        tr = [shift_truth(d, at) for d in tr]
        if raw:
            rows = apply_faults(model.raw(load), tr, at, rate)
        else:
            rows = np.clip(np.rint(load), -2**31, 2**31 - 1).astype(np.int32)
        yield at, rows, tr
        at += n


def fault_scenario(fault):
    f = functools.partial(sensor_fault, fault=fault)
    f.__doc__ = sensor_fault.__doc__
    return f


SCENARIOS = {
    "walk": walk,
    "demo": demo,
    "stand": stand,
    "sit": sit,
    "doffed": doffed,
    "stairs": stairs,
    "stairs_up": functools.partial(stairs, direction="up"),
    "stairs_down": functools.partial(stairs, direction="down"),
    "sit_to_stand": sit_to_stand,
    "static_loading": static_loading,
    "stumble": stumble,
    "fall": fall,
    "slide_down": slide_down,
    "fall_other": fall_other,
    "overload": overload,
    "sensor_fault": sensor_fault,
    "fault_open": fault_scenario("open"),
    "fault_saturation": fault_scenario("saturation"),
    "fault_stuck": fault_scenario("stuck"),
    "fault_drift": fault_scenario("drift"),
    "day": day,
}


SUMMARY = {
    "walk": "level walking; --set cadence_spm=100 speed_mps=1.1 peak_bw=0.85",
    "demo": "walking and one 2 kN overload at 5 s (make demo)",
    "stand": "quiet standing, ~45 % BW",
    "sit": "sitting, ~4 % BW",
    "doffed": "prosthesis off: no load",
    "stairs": "flights up and down; --set direction=up|down|both steps=12",
    "stairs_up": "flights of stairs up",
    "stairs_down": "flights of stairs down",
    "sit_to_stand": "repeated sit-to-stand, 10 s each; --set reps=N",
    "static_loading": "Phase I bathroom-scale loading; --set target_kg=20 hold_s=15 reps=N",
    "stumble": "walking, a stumble that recovers; --set at_s=S",
    "fall": "walking, a fall in four phases; --set direction=forward|backward|left|right "
            "severity=low|medium|high at_s=S",
    "slide_down": "walking, a slide down onto the buttocks (limb contact 0.3-0.7 BW); "
                  "--set limb_bw=0.5 at_s=S",
    "fall_other": "walking, a fall landing on the hip/arm (the prosthesis unloaded); "
                  "--set direction=left impact_g=4.5 at_s=S",
    "overload": "walking, a jump landing at 3.0 BW; --set peak_bw=3.0 at_s=S",
    "sensor_fault": "walking, a sensor fault; --set fault=open|saturation|stuck|drift channel=0",
    "fault_open": "walking, open bridge (rail) for 5 s (raw)",
    "fault_saturation": "walking, input clipping at the rail for 5 s (raw)",
    "fault_stuck": "walking, ADC code stuck for 10 s (raw)",
    "fault_drift": "walking, offset drift 100 N/min (raw)",
    "day": "24 h mix of all of the above, night off (raw; at least 700 s)",
}


def describe(name):
    return SUMMARY.get(name, "")


# --- inertial channels (the connector unit's IMU, docs/algorithm.md 5.7) -----------------------
# The unit sits on the connector below the residual femur, so the IMU moves with the thigh.
# Kinematics per truth label, consistent with the load of the same scenario:
# - posture: the angle theta of the thigh from vertical and the direction d (device x-y plane)
#   it tilts to: standing/walking 0; sitting 90 deg towards +x (thigh forward); lying after a
#   fall 85-95 deg towards -x (forward, prone), +x (backward, supine), +-y (sideways); a doffed
#   prosthesis lies on its side (90 deg, +y);
# - gait: thigh swing +-17 deg at the stride frequency (gyro peaks ~100 dps, Winter 2009:
#   thigh range of motion ~45 deg in level walking); vertical dynamic acceleration from the load
#   itself, 100 mg per BW/s of its positive 10 ms loading rate (level walking ~7.6 BW/s ->
#   ~0.8 g over gravity; stair descent ~2.3 g; a jump landing ~6 g), smoothed over 20 ms;
# - falls: free fall during the descent (specific force down to ~25 % of 1 g), the body's impact
#   along the vertical (3.5 / 5 / 7 g for low / medium / high severity; thigh and pelvis peaks of
#   falls onto a floor reach 3-8 g), lying still, getting up over 3 s;
# - noise 3 mg and 0.3 dps rms; the unit's rotation about the thigh axis is random per seed
#   (the detector must not depend on how it is mounted).
IMU_HZ = 104
_G_MG = 1000.0
FALL_IMPACT_G = {"low": 3.5, "medium": 5.0, "high": 7.0}
FALL_LIE_DIR = {"forward": (-1.0, 0.0), "backward": (1.0, 0.0), "left": (0.0, -1.0),
                "right": (0.0, 1.0)}


def _kinematics(load, tr, rate, body_weight_kg, rng):
    """Per load sample: theta (rad), d (n, 2), free-fall factor ff, extra vertical acceleration
    (mg), from the truth entries (indices relative to this load) and the load."""
    n = len(load)
    bw = _bw(body_weight_kg)
    theta = np.zeros(n)
    d = np.tile([1.0, 0.0], (n, 1))
    ff = np.zeros(n)
    extra = np.zeros(n)
    gait = np.zeros(n, bool)
    for e in tr:
        a, b = max(0, e["start"]), min(n, e["end"])
        if b <= a:
            continue
        lab = e["label"]
        if lab in ("walk", "stairs_up", "stairs_down", "stumble", "fault_open",
                   "fault_saturation", "fault_stuck", "fault_drift"):
            gait[a:b] = True
        elif lab == "rest":
            p = e.get("posture")
            if p == "sit":
                theta[a:b] = np.pi / 2
            elif p == "doffed":
                theta[a:b] = np.pi / 2
                d[a:b] = (0.0, 1.0)
        elif lab == "sit_to_stand":
            m1, m2, m3 = int(1.5 * rate), int(3.0 * rate), int(2.0 * rate)
            th = np.concatenate([np.pi / 2 * (1 - _ramp(np.zeros(3), np.ones(3), m1)[:, 0]),
                                 np.zeros(m2), np.pi / 2 * _ramp(np.zeros(3), np.ones(3), m3)[:, 0]])
            theta[a:b] = np.resize(th, b - a) if len(th) < b - a else th[:b - a]
    # sit_to_stand scenarios sit between their repetitions
    s2s = [e for e in tr if e["label"] == "sit_to_stand"]
    if s2s:
        inside = np.zeros(n, bool)
        for e in s2s:
            inside[max(0, e["start"]):min(n, e["end"])] = True
        theta[~inside] = np.pi / 2
    for e in tr:
        lab = e["label"]
        if lab in ("fall", "fall_other", "slide_down"):
            ph = e["phases"]
            i_load, i_desc, i_imp, i_rec = (ph["loading"], ph["descent"], ph["impact"],
                                            ph["recovery"])
            i_lie_end = ph.get("getting_up", e["end"] - int(3.0 * rate))
            i_end = e["end"]
            lie = FALL_LIE_DIR.get(e.get("direction", "forward"), (-1.0, 0.0))
            lie_th = (0.5 * np.pi) * (0.94 + 0.04 * rng.random())
            gait[i_load:i_end] = False
            d[i_load:i_end] = lie
            th = theta
            th[i_load:i_desc] = np.linspace(0, 0.15, i_desc - i_load)
            th[i_desc:i_imp] = 0.15 + (lie_th * 0.85 - 0.15) * _ramp(np.zeros(3), np.ones(3), i_imp - i_desc)[:, 0]
            th[i_imp:i_rec] = np.linspace(lie_th * 0.85, lie_th, i_rec - i_imp)
            th[i_rec:i_lie_end] = lie_th
            m = i_end - i_lie_end
            th[i_lie_end:i_end] = lie_th * (1 - _ramp(np.zeros(3), np.ones(3), m)[:, 0])
            k = i_imp - i_desc
            depth = 0.75 if lab != "slide_down" else 0.45
            ff[i_desc:i_imp] = depth * np.sin(np.pi * np.arange(k) / max(k, 1)) ** 0.7
            g_imp = e.get("imu_impact_g") or FALL_IMPACT_G.get(e.get("severity", "medium"), 5.0)
            mi = int(0.06 * rate)
            extra[i_imp:i_imp + mi] += (g_imp - 1.0) * _G_MG * _pulse(mi, 0.3)[:len(extra[i_imp:i_imp + mi])]
            r = np.exp(-np.arange(int(0.3 * rate)) / (0.05 * rate)) * np.sin(2 * np.pi * 8 * np.arange(int(0.3 * rate)) / rate)
            seg = extra[i_imp + mi:i_imp + mi + len(r)]
            seg += 0.25 * (g_imp - 1) * _G_MG * r[:len(seg)]
            gu = rng.standard_normal(m) * 150
            extra[i_lie_end:i_end] += np.convolve(gu, np.ones(50) / 50, "same")[:m] * 3
        elif lab == "overload" and "flight" in e:
            a, b = e["flight"]
            ff[a:b] = 0.8 * np.sin(np.pi * np.arange(b - a) / max(b - a, 1))
    # gait: swing and the load-driven vertical acceleration
    t = np.arange(n) / rate
    f_stride = 0.9
    swing = 0.30 * np.sin(2 * np.pi * f_stride * t + rng.uniform(0, 2 * np.pi))
    theta = np.where(gait, theta + swing, theta)
    ax = load[:, 0] / bw
    lag = max(1, int(0.01 * rate))
    r = np.zeros(n)
    r[lag:] = (ax[lag:] - ax[:-lag]) / 0.01              # BW/s over 10 ms
    r = np.convolve(np.clip(r, 0, None), np.ones(int(0.02 * rate)) / int(0.02 * rate), "same")
    extra += 100.0 * r
    return theta, d, ff, extra


def imu_rows(load, tr, first, rate=1000, body_weight_kg=75, seed=0, noise=True):
    """IMU rows (m, 8) int32 for the load samples [first, first + len(load)) of a scenario:
    t (load sample), ax, ay, az (mg), gx, gy, gz (0.1 dps), flags 0; one row per IMU sample j
    of the recording (j / 104 s), t = floor(j * 1000 / 104) (floor(j * 125 / 13) at 1 kHz)."""
    n = len(load)
    rng = np.random.default_rng([seed, 104])
    theta, d, ff, extra = _kinematics(np.asarray(load, float), tr, rate, body_weight_kg, rng)
    psi = np.random.default_rng([seed, 105]).uniform(0, 2 * np.pi)   # mounting about the axis
    c, s = np.cos(psi), np.sin(psi)
    dx = c * d[:, 0] - s * d[:, 1]
    dy = s * d[:, 0] + c * d[:, 1]
    up = np.stack([np.sin(theta) * dx, np.sin(theta) * dy, np.cos(theta)], 1)
    acc = ((1 - ff) * _G_MG + extra)[:, None] * up
    dth = np.gradient(theta) * rate                       # rad/s
    gyro = (dth * 572.9578)[:, None] * np.stack([-dy, dx, np.zeros(n)], 1)   # 0.1 dps
    j0 = -(-first * IMU_HZ // rate)
    j1 = -(-(first + n) * IMU_HZ // rate)
    j = np.arange(j0, j1)
    ts = (j * rate) // IMU_HZ
    idx = np.clip(ts - first, 0, n - 1)
    rows = np.zeros((len(j), 8), np.int64)
    rows[:, 0] = ts
    a = acc[idx]
    g = gyro[idx]
    if noise:
        a = a + rng.standard_normal(a.shape) * 3.0
        g = g + rng.standard_normal(g.shape) * 3.0
    rows[:, 1:4] = np.clip(np.rint(a), -31999, 31999)
    rows[:, 4:7] = np.clip(np.rint(g), -22899, 22899)
    return rows.astype(np.int32)


def generate_imu(name, duration_s, rate=1000, body_weight_kg=75, seed=0, **params):
    """The IMU of generate(name, ...): yields (first load sample, IMU rows) per segment, from the
    same segments (same seeds), so the two streams describe the same movement."""
    at = 0
    for k, (load, tr) in enumerate(segments(name, duration_s, rate, body_weight_kg, seed, **params)):
        n = len(load)
        if not n:
            continue
        yield at, imu_rows(load, tr, at, rate, body_weight_kg, seed * 7919 + k)
        at += n
