"""The simulated sensor: how loads on the connector become raw ADC counts, the inverse of the
calibration the device applies. raw = offset + S @ load (load in device units: axial 0.1 N,
moments 0.01 N*m), rounded, clipped to the 24-bit ADC's codes 0x800000..0x7FFFFF like the
ADS131M04 (and the HX711) at saturation. Channel 3 (AIN3, gain 1) senses the bridge excitation
through a 1:5 divider (hardware/README.md section 3): EXC_AIN3_COUNTS while excitation is on."""
import numpy as np

ADC_MAX = 0x7FFFFF
ADC_MIN = -0x800000

# counts per device unit, from the hardware design (hardware/README.md, "Bridges and ADC"):
# axial 56 counts/N = 5.6 counts / 0.1 N (5 kN = 280 k counts, 3.4 % of the ADC range),
# bending 10 100 counts/(N*m) = 101 counts / 0.01 N*m; ~1.5 % cross-talk as real bridges have.
DEFAULT_S = np.array([
    [5.6, 0.08, -0.05],
    [0.3, 101.0, 1.6],
    [-0.2, 1.3, 101.0],
])
# ADS131M04 input noise at gain 128, OSR 4096 (~0.15 uV rms): ~140 counts rms, ~2.5 N axial
# before the 20 Hz low-pass. A live bridge is never noise-free: the firmware flags 64 identical
# raw samples as a stuck output.
DEFAULT_NOISE = 140.0
EXC_AIN3_COUNTS = 3495253       # = board.EXC_AIN3_COUNTS (hardware/pinmap.json): 500 mV of 1200 mV
DEFAULT_OFFSET = np.array([12000, -8000, 5000, EXC_AIN3_COUNTS], dtype=np.int64)


class SensorModel:
    def __init__(self, S=DEFAULT_S, offset=DEFAULT_OFFSET, noise_counts=DEFAULT_NOISE, seed=0):
        self.S = np.asarray(S, dtype=float)
        self.offset = np.asarray(offset, dtype=np.int64)
        self.noise = noise_counts
        self.rng = np.random.default_rng(seed)

    def raw(self, load):
        """load: (n, 3) in device units -> (n, 4) int32 raw counts."""
        load = np.asarray(load, dtype=float)
        r = load @ self.S.T
        if self.noise:
            r = r + self.rng.normal(0, self.noise, r.shape)
        out = np.empty((len(load), 4), dtype=np.int64)
        out[:, :3] = np.rint(r).astype(np.int64) + self.offset[:3]
        out[:, 3] = self.offset[3]
        return np.clip(out, ADC_MIN, ADC_MAX).astype(np.int32)

    def gain_matrix(self):
        """What a perfect calibration finds: device units per count."""
        return np.linalg.inv(self.S)


def write_raw(path, raw):
    """The file the virtual device's SimSensor plays: int32 LE, 4 per sample."""
    np.ascontiguousarray(raw, dtype="<i4").tofile(str(path))
