"""Design and quantisation of the oimon low-pass filter (docs/algorithm.md, section "Filter").

CPython only (scipy). Nothing is written at import. The firmware (`firmware/dsp.py`) carries the
quantised table this module produces (`firmware_table()`); tests check the two agree.

The filter is a 2nd-order Butterworth low-pass H(z) = b0 (1 + z^-1)^2 / (1 + a1 z^-1 + a2 z^-2)
from scipy.signal.butter, realised in "complement" form so that DC is exact and a constant input
can leave no residue:

    y[n] = x[n] - (1 - z^-1) K(z) x[n],   K(z) = (1 - H(z)) / (1 - z^-1)
    u[n] = x[n] - x[n-1]
    s[n+1] = Q(A s[n] + B u[n])          A = r [[cos t, -sin t], [sin t, cos t]], B = [1, 0]^T
    y[n]   = x[n-1] + b0 u[n] - C s[n]   (K's direct term is 1 - b0)

A is a normal (rotation-scaling) matrix with ||A||_2 = r < 1 (the pole radius) and Q is
truncation toward zero of each component, so under u = 0 (constant input) ||s||_2 strictly
decreases on the integer lattice until s = 0 exactly: no zero-input or constant-input limit cycle,
and y = x exactly in the steady state.

Integer form (the kernel): s is kept in units of 2^-F calibrated LSB; A in Q16 (SA, WA); C in
Q16 (C1, C2); b0 as B0 / 2^QB with |B0| < 2^13 so u * B0 fits 32 bits; KB = QB - F.
"""
import math

import numpy as np
import scipy.signal as signal

FS_DEFAULT = 1000.0
FC_DEFAULT = 20.0
#: cut-offs the firmware carries in its table (Hz at 1 kHz)
FC_TABLE = (5, 10, 15, 20, 25, 30, 40, 50)
QA = 16          # Q-format of SA, WA
QC = 16          # Q-format of C1, C2
XMAX = 131071    # calibrated input clamp (2^17 - 1), see docs/algorithm.md
S_LIMIT = 1 << 27  # state magnitude the split multiplies need (|s| < 2^27)


def butter(fc=FC_DEFAULT, fs=FS_DEFAULT):
    b, a = signal.butter(2, fc, fs=fs)
    return b, a


def design(fc=FC_DEFAULT, fs=FS_DEFAULT, F=8):
    """Quantised coefficients for cut-off fc at rate fs, state with F fractional bits."""
    b, a = butter(fc, fs)
    b0, a1, a2 = float(b[0]), float(a[1]), float(a[2])
    p = np.roots(a)
    p = p[np.argmax(p.imag)]
    sig, om = float(p.real), float(abs(p.imag))
    if om <= 0:
        raise ValueError("poles must be complex (Butterworth, fc < fs/2)")
    SA = int(round(sig * (1 << QA)))
    WA = int(round(om * (1 << QA)))
    sq, wq = SA / (1 << QA), WA / (1 << QA)
    # K(z) - (1 - b0) = (n1 z^-1 + n2 z^-2) / A(z); match Markov parameters g1, g2 with the
    # quantised A so the realised K has exactly the numerator of the float design
    k0, k1 = 1.0 - b0, b0 - a2
    n1, n2 = k1 - k0 * a1, -k0 * a2
    g1, g2 = n1, n2 - a1 * n1
    c1 = g1
    c2 = (g2 - c1 * sq) / wq
    C1 = int(round(c1 * (1 << QC)))
    C2 = int(round(c2 * (1 << QC)))
    QB = 0
    while abs(b0) * (1 << (QB + 1)) < (1 << 13) - 1:
        QB += 1
    B0 = int(round(b0 * (1 << QB)))
    d = dict(fc=fc, fs=fs, b=b, a=a, b0=b0, sigma=sig, omega=om, c1=c1, c2=c2,
             F=F, SA=SA, WA=WA, C1=C1, C2=C2, QB=QB, B0=B0, KB=QB - F)
    check(d)
    return d


def check(d):
    """Assert the integer constraints the kernel relies on (docs/algorithm.md, overflow proof)."""
    assert 0 < d["SA"] < (1 << 16) and 0 < d["WA"] < (1 << 16)
    assert d["SA"] ** 2 + d["WA"] ** 2 < (1 << 32), "quantised A must keep ||A|| < 1"
    assert abs(d["C1"]) < (1 << 16) and abs(d["C2"]) < (1 << 16)
    assert 0 < d["B0"] < (1 << 13) and d["KB"] >= 0
    assert 1 <= d["F"] <= 12
    b = bounds(d)
    assert b["s_max"] < S_LIMIT, b
    assert b["word_max"] < (1 << 31), b


def realised_tf(d):
    """(b, a) of the integer kernel's linear part (quantised coefficients, no rounding)."""
    A = np.array([[d["SA"], -d["WA"]], [d["WA"], d["SA"]]], float) / (1 << QA)
    B = np.array([[1.0], [0.0]])
    C = np.array([[d["C1"], d["C2"]]], float) / (1 << QC)
    b0 = d["B0"] / (1 << d["QB"])
    nk, dk = signal.ss2tf(A, B, C, np.array([[1.0 - b0]]))
    nk, dk = np.atleast_1d(nk[0]), np.atleast_1d(dk)
    # H = 1 - (1 - z^-1) K = (dk - conv([1, -1], nk)) / dk, coefficients in z^-1
    num = np.zeros(len(dk) + 1)
    num[:len(dk)] += dk
    num -= np.convolve([1.0, -1.0], nk)
    return num[:len(dk)] if abs(num[-1]) < 1e-15 else num, dk


def state_l1(d, n=20000):
    """L1 norms of the impulse responses x -> s1, x -> s2 (real units) and u -> |s|_2."""
    A = np.array([[d["SA"], -d["WA"]], [d["WA"], d["SA"]]], float) / (1 << QA)
    v = np.array([1.0, 0.0])
    S = np.zeros((n, 2))
    for i in range(n):
        S[i] = v
        v = A @ v
    G = np.diff(np.vstack([[0.0, 0.0], S]), axis=0)
    return np.abs(G).sum(0), float(np.sqrt((S ** 2).sum(1)).sum())


def bounds(d, xmax=XMAX):
    """Worst-case magnitudes of every intermediate word, for any input |x| <= xmax.

    s = G x (linear part) + e (truncation residue): |s_i| <= L1(G_i) xmax 2^F + e_max with
    e_max = sqrt(2) / (1 - r) (one LSB per component per step, decaying by r)."""
    F = d["F"]
    (l1, l2), _ = state_l1(d)
    r = math.sqrt(d["SA"] ** 2 + d["WA"] ** 2) / (1 << QA)
    e_max = math.sqrt(2) / (1 - r) + 1
    s1 = l1 * xmax * (1 << F) + e_max
    s2 = l2 * xmax * (1 << F) + e_max
    s_max = max(s1, s2)
    sh = s_max / (1 << 14) + 1
    umax = 2 * xmax
    U = umax * (1 << (F + 2))
    H = (d["SA"] + d["WA"]) * sh
    Hc = (abs(d["C1"]) + abs(d["C2"])) * sh
    L = (d["SA"] + d["WA"]) * ((1 << 14) - 1) + 65535
    Lc = (abs(d["C1"]) + abs(d["C2"])) * ((1 << 14) - 1)
    T = H + L / (1 << 14) + U
    R = Hc + Lc / (1 << 14)
    P = umax * d["B0"]
    y = (R / 4 + (P >> d["KB"]) + (1 << F)) / (1 << F) + xmax
    words = dict(s_max=s_max, s1_max=s1, s2_max=s2, H=H, L=L, U=U, T=T, Hc=Hc, Lc=Lc, R=R,
                 P=P, y_max=y, r=r, e_max=e_max, l1_s1=l1, l1_s2=l2)
    words["word_max"] = max(abs(v) for k, v in words.items()
                            if k in ("H", "L", "U", "T", "Hc", "Lc", "R", "P"))
    return words


def firmware_table(fcs=FC_TABLE, fs=FS_DEFAULT, F=8):
    """{fc: (F, SA, WA, C1, C2, B0, KB)}: the table dsp.py carries."""
    out = {}
    for fc in fcs:
        d = design(fc, fs, F)
        out[int(fc)] = (d["F"], d["SA"], d["WA"], d["C1"], d["C2"], d["B0"], d["KB"])
    return out


def reference(x, fc=FC_DEFAULT, fs=FS_DEFAULT, x0=None):
    """Float reference: scipy.signal.lfilter of the float Butterworth design, started in the
    steady state of the first sample (as the kernel is primed)."""
    b, a = butter(fc, fs)
    x = np.asarray(x, float)
    zi = signal.lfilter_zi(b, a) * (x[0] if x0 is None else x0)
    y, _ = signal.lfilter(b, a, x, zi=zi)
    return y


if __name__ == "__main__":  # pragma: no cover - manual inspection
    for fc, row in firmware_table().items():
        d = design(fc)
        print(fc, row, {k: round(v, 1) for k, v in bounds(d).items()})
