"""Accelerometer files (UMAFall layout: t_s, ax_g, ay_g, az_g; .csv or .csv.gz) -> IMU rows of
the device (docs/recording-format.md "IMU"; docs/algorithm.md 5.7).

Resampling, stated: the source timestamps are when the phone app *received* each sample
(bursts: up to half of them repeat the previous stamp, gaps of 24-283 ms) while the sample
numbers have no gaps, so the samples are taken as evenly spaced over the recording
(t_k = k * duration / (N - 1), the file's measured rate) and linearly interpolated
(numpy.interp, per axis) onto the device's IMU grid of 104 Hz: IMU sample j at j/104 s,
stamped t = floor(j * 125 / 13) load samples (ms). `method="timestamps"` instead interpolates on
the stored timestamps, repeated stamps replaced by their group's mean value. Acceleration g ->
mg (rounded), clamped to the +-32 g part's range. The angular rate is not in such files: it is
MISSING in the recording and the rows carry IF_NOGYRO; the load channels are missing too (the
recording has no SMPL rows and says so in its header)."""
import gzip
import io

import numpy as np

from oimon.errors import OimonError

IMU_HZ = 104
IF_GAP, IF_NOGYRO = 1, 2
MISSING = -0x80000000            # stored value of a missing channel (never a measurement)
METHODS = ("index", "timestamps")


def _open_text(path):
    try:
        raw = open(path, "rb").read()
    except OSError as e:
        raise OimonError("%s: cannot read (%s)" % (path, e.strerror))
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise OimonError("%s: damaged gzip file (%s)" % (path, e))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OimonError("%s: not a text file" % path)


def read_accel(path):
    """-> (t_s (n,), acc_g (n, 3)) from a t_s,ax_g,ay_g,az_g file (header line, '%' comments)."""
    text = _open_text(path)
    rows = []
    for ln, line in enumerate(io.StringIO(text), 1):
        s = line.strip()
        if not s or s.startswith("%") or s.startswith("#"):
            continue
        parts = s.replace(";", ",").split(",")
        try:
            vals = [float(p) for p in parts[:4]]
        except ValueError:
            if not rows:
                continue               # the header line
            raise OimonError("%s: line %d is not 4 numbers: %r" % (path, ln, s[:60]))
        if len(vals) < 4:
            raise OimonError("%s: line %d has %d columns, want t_s,ax_g,ay_g,az_g" % (path, ln, len(vals)))
        rows.append(vals)
    if len(rows) < 2:
        raise OimonError("%s: fewer than 2 samples" % path)
    a = np.array(rows, float)
    if not np.all(np.isfinite(a)):
        raise OimonError("%s: a value is not a finite number" % path)
    if np.any(np.diff(a[:, 0]) < 0):
        raise OimonError("%s: time goes backwards" % path)
    if a[-1, 0] <= a[0, 0]:
        raise OimonError("%s: all samples have the same time" % path)
    return a[:, 0] - a[0, 0], a[:, 1:4]


def to_imu_rows(t, acc, method="index", rate=IMU_HZ):
    """-> rows (m, 8) int32: t (load samples, ms), ax, ay, az (mg), gx, gy, gz (0), flags."""
    if method not in METHODS:
        raise OimonError("--resample-method is one of %s" % ", ".join(METHODS))
    n = len(t)
    dur = float(t[-1])
    if method == "index":
        ts = np.arange(n) * dur / (n - 1)
        val = acc
    else:
        ts, inv = np.unique(t, return_inverse=True)
        val = np.zeros((len(ts), 3))
        np.add.at(val, inv, acc)
        val /= np.bincount(inv)[:, None]
    m = int(np.floor(dur * rate)) + 1
    grid = np.arange(m) / rate
    rows = np.zeros((m, 8), np.int64)
    rows[:, 0] = (np.arange(m) * 1000) // rate if rate != IMU_HZ else (np.arange(m) * 125) // 13
    for c in range(3):
        rows[:, 1 + c] = np.clip(np.rint(np.interp(grid, ts, val[:, c]) * 1000), -32000, 32000)
    rows[:, 7] = IF_NOGYRO
    return rows.astype(np.int32)


def read_imu_file(path, method="index"):
    """-> (rows, info dict for the recording header's `import`)."""
    t, acc = read_accel(path)
    rows = to_imu_rows(t, acc, method)
    dt = np.diff(t)
    info = {"source": str(path), "columns": ["t_s", "ax_g", "ay_g", "az_g"],
            "units": ["s", "g", "g", "g"], "samples": int(len(t)),
            "original_rate_hz": round((len(t) - 1) / float(t[-1]), 3),
            "repeated_timestamps": round(float(np.mean(dt == 0)), 4),
            "largest_gap_ms": round(float(dt.max()) * 1000, 1),
            "resampling": ("samples evenly spaced over the recording (timestamps are arrival "
                           "times), linear interpolation onto %d Hz" % IMU_HZ) if method == "index"
            else "linear interpolation on the timestamps (repeated stamps averaged) onto %d Hz" % IMU_HZ,
            "missing": ["gyro_x", "gyro_y", "gyro_z", "axial", "moment_ap", "moment_ml"]}
    return rows, info
