"""Plots of recordings and event snippets as PNG files (oimon plot, the report, sim sweep): the
host library's drawing code; a failed write leaves no half-written file.

What every plot of loads shows (issue 15): clock time with its time zone on the x axis; force
also in % body weight (right axis); the limits in force on every plot of calibrated data (the
recording's own, else the phase's defaults, said so in the legend); overloads as shaded spans
(not lines), other events as short ticks with labels thinned so they never merge into a
stripe; channels the source does not have (an imported walk without moments, the raw stream's
unused 4th input) left out; the ground truth of simulated recordings as a labelled band."""
import datetime as dt
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from oimon import recording  # noqa: E402
from oimon.errors import OimonError  # noqa: E402
from oimon.files import replacing  # noqa: E402
from oimon_common import limits as L  # noqa: E402

MAX_POINTS = 20000       # min/max decimation keeps a day's plot readable and fast
MAX_LABELS = 12          # event labels per plot; the rest are drawn unlabelled
G = 9.80665
EVENT_COLORS = {"fall": "#d62728", "overload": "#ff7f0e", "fault": "#7f7f7f", "exercise": "#2ca02c"}


def save_png(fig, path, dpi=100):
    """Write a figure as a PNG beside the target and rename it into place (a failed write
    leaves no half-written file), close the figure; one clear OimonError if it cannot. A file
    object (the HTML report's in-memory image) is written directly."""
    if hasattr(path, "write"):
        try:
            fig.savefig(path, format="png", dpi=dpi)
        finally:
            plt.close(fig)
        return
    try:
        with replacing(path, ".part.png") as tmp:
            fig.savefig(tmp, dpi=dpi)
    except OSError as e:
        raise OimonError("cannot write %s: %s" % (path, e.strerror))
    finally:
        plt.close(fig)


def _decimate(t, y):
    n = len(t)
    if n <= MAX_POINTS:
        return t, y
    k = int(np.ceil(n / (MAX_POINTS / 2)))
    m = n // k
    yb = y[:m * k].reshape(m, k)
    tb = t[:m * k].reshape(m, k)[:, 0]
    return np.repeat(tb, 2), np.column_stack([yb.min(1), yb.max(1)]).ravel()


# --- time axis ---------------------------------------------------------------------------------
def local_tz():
    return dt.datetime.now().astimezone().tzinfo


def tz_label(tz=None, when=None):
    from oimon.report import tz_label as _tl
    return _tl(tz, when)


def _start_dt(header):
    s = header.get("start_time")
    if not s:
        return None
    try:
        d = dt.datetime.fromisoformat(str(s))
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)


def _time_axis(ax, t0_unix, seconds, tz):
    """Format ax's x axis (matplotlib date numbers) as clock time in tz with its label."""
    tz = tz or local_tz()
    span = seconds
    fmt = "%H:%M:%S.%f" if span < 10 else "%H:%M:%S" if span < 6 * 3600 else "%d %b %H:%M"
    loc = mdates.AutoDateLocator(tz=tz, minticks=4, maxticks=9)
    ax.xaxis.set_major_locator(loc)
    if fmt.endswith("%f"):
        ax.xaxis.set_major_formatter(_MsFormatter(tz))
    else:
        ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=tz))
    when = dt.datetime.fromtimestamp(t0_unix, dt.timezone.utc).astimezone(tz)
    ax.set_xlabel("clock time, %s (%s)" % (tz_label(tz, when), when.strftime("%Y-%m-%d")))


class _MsFormatter(mdates.DateFormatter):
    def __init__(self, tz):
        super().__init__("%H:%M:%S.%f", tz=tz)

    def __call__(self, x, pos=0):
        return super().__call__(x, pos)[:-5]      # tenths of a second


def _dates(t_unix):
    return np.asarray(t_unix, dtype=float) / 86400.0 + _EPOCH


_EPOCH = mdates.date2num(dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc))


# --- limits ------------------------------------------------------------------------------------
def limits_for(header):
    """(limits in device units {comp, tens, moment}, body weight N, where they came from)."""
    bw_kg = header.get("body_weight_kg")
    bw = L.body_weight_0p1N(bw_kg) if bw_kg else L.BW_DEFAULT
    lim = header.get("limits")
    if isinstance(lim, dict) and all(k in lim for k in ("comp", "tens", "moment")):
        return lim, bw / 10.0, "phase %s limits" % header.get("phase", "?") if header.get("phase") else "limits"
    phase = header.get("phase") or "full"
    ph = L.PHASES.index(phase) if phase in L.PHASES else L.PHASE_FULL
    comp, tens, mom = L.phase_limits(ph, bw)[:3]
    return {"comp": comp, "tens": tens, "moment": mom}, bw / 10.0, \
        "phase %s default limits (not in the recording)" % phase


def _spans(mask):
    """[(i0, i1)] of the runs where mask is true."""
    if not len(mask):
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]))


def _shade(ax, x, spans, color, label=None):
    for k, (i0, i1) in enumerate(spans):
        ax.axvspan(x[i0], x[min(i1, len(x) - 1)], color=color, alpha=0.22, lw=0,
                   label=label if k == 0 else None)


def _pct_axis(ax, bw_n):
    sec = ax.secondary_yaxis("right", functions=(lambda f: 100.0 * f / bw_n, lambda p: p * bw_n / 100.0))
    sec.set_ylabel("% body weight")
    return sec


# --- one recording -----------------------------------------------------------------------------
def _present_channels(header, phys):
    """Indices of the channels to draw: not the ones an imported source did not have, not an
    input that is zero throughout (the raw stream's unused 4th)."""
    chans = header["channels"]
    imp = (header.get("import") or {}).get("channels")
    keep = []
    for c, ch in enumerate(chans):
        if imp is not None and ch["name"] not in imp:
            continue
        if header.get("kind") == "raw" and len(phys) and not np.any(phys[:, c]):
            continue
        keep.append(c)
    return keep or [0]


def _raw_to_cal(header, samples):
    """A simulated raw recording carries its sensor's perfect calibration: raw counts -> device
    units (0.1 N, 0.01 N*m); None if the header has none."""
    cal = header.get("calibration") or {}
    if not isinstance(cal, dict) or "gain" not in cal or "offset" not in cal:
        return None
    g = np.asarray(cal["gain"], dtype=float)
    off = np.asarray(cal["offset"], dtype=float)
    if g.shape != (3, 3) or off.shape != (3,) or samples.shape[1] < 3:
        return None
    return (samples[:, :3].astype(float) - off) @ g.T


def plot(path, out, tz=None, calibration=None):
    """PNG of a recording: the load channels against clock time, limits, events and truth.
    calibration: {"gain" 3x3 device units per count, "offset" [3] counts} for a raw recording
    (the device's certificate from the database), else the header's own if it has one."""
    fig, err = figure(path, tz, calibration)
    save_png(fig, out)
    return err


def calibration_from_certificate(cert):
    """The plot's calibration from a certificate (docs/database.md), or None."""
    try:
        g = np.asarray(cert["matrix_units_per_count"], dtype=float)
        off = np.asarray(cert["offsets_counts"], dtype=float)
    except (KeyError, TypeError, ValueError):
        return None
    if g.shape != (3, 3) or off.shape != (3,):
        return None
    return {"gain": g.tolist(), "offset": off.tolist(), "source": "the device's calibration certificate"}


def figure(path, tz=None, calibration=None):
    """(matplotlib figure, read error or None) of a recording (see plot())."""
    header, index, samples, events, err = recording.load(path)
    if header.get("kind") == "raw" and calibration and not (header.get("calibration") or {}).get("gain"):
        header = dict(header, calibration=calibration)
    if not len(samples):
        raise OimonError("%s: no samples to plot%s" % (os.path.basename(str(path)), " (%s)" % err if err else ""))
    tz = tz or local_tz()
    rate = float(header.get("rate_hz", 1000))
    start = _start_dt(header)
    t0 = start.timestamp() if start else 0.0
    tsec = (index - index[0]) / rate
    kind = header.get("kind")
    converted = False
    if kind == "raw":
        cal = _raw_to_cal(header, samples)
        if cal is not None:
            header = dict(header, kind="calibrated", channels=recording.CAL_CHANNELS)
            phys = cal * np.array([c["scale"] for c in recording.CAL_CHANNELS])
            converted = True
        else:
            phys = recording.physical(header, samples)
    else:
        phys = recording.physical(header, samples)
    chans = header["channels"]
    calibrated = header.get("kind") == "calibrated"
    keep = _present_channels(header, phys)
    # bending: the two moments and their resultant on one panel (the limit is on the resultant)
    moments = [c for c in keep if chans[c]["name"].startswith("moment")] if calibrated else []
    panels = [[c] for c in keep if c not in moments] + ([moments] if moments else [])
    x = _dates(t0 + tsec) if start else tsec
    truth = [e for e in events if recording.is_truth(e)]
    devev = [e for e in events if not recording.is_truth(e)]
    fig, axes = plt.subplots(len(panels), 1, sharex=True, figsize=(11, 2.4 * len(panels) + 1.0 + (0.3 if truth else 0)))
    axes = np.atleast_1d(axes)
    lim, bw_n, lim_src = limits_for(header)

    def xi(sample):
        return x[int(np.clip(np.searchsorted(index, sample), 0, len(x) - 1))]

    for p, (ax, chs) in enumerate(zip(axes, panels)):
        if calibrated and chs == moments:
            for c in chs:
                tt, yy = _decimate(x, phys[:, c])
                ax.plot(tt, yy, lw=0.6, color="C%d" % (c + 1), alpha=0.7, label=chans[c]["name"].replace("_", " "))
            res = np.hypot(phys[:, chs[0]], phys[:, chs[-1]]) if len(chs) == 2 else np.abs(phys[:, chs[0]])
            tt, yy = _decimate(x, res)
            ax.plot(tt, yy, lw=0.8, color="k", label="resultant")
            m = lim["moment"] * 0.01
            ax.axhline(m, color="r", ls="--", lw=1, label="bending limit %.0f N*m" % m)
            _shade(ax, x, _spans(res > m), "#d62728")
            ax.set_ylabel("moment [N*m]")
        else:
            c = chs[0]
            tt, yy = _decimate(x, phys[:, c])
            ax.plot(tt, yy, lw=0.7, color="C%d" % c, label=chans[c]["name"])
            ax.set_ylabel("%s [%s]" % (chans[c]["name"], chans[c]["unit"]))
            if calibrated and chans[c]["name"] == "axial":
                comp, tens = lim["comp"] * 0.1, lim["tens"] * 0.1
                ax.axhline(comp, color="r", ls="--", lw=1, label="compression limit %.0f N" % comp)
                ax.axhline(-tens, color="m", ls="--", lw=1, label="tension limit %.0f N" % tens)
                _shade(ax, x, _spans((phys[:, c] > comp) | (phys[:, c] < -tens)), "#d62728")
                _pct_axis(ax, bw_n)
        ax.grid(True, alpha=0.3)
        _draw_events(ax, devev, xi, p == 0)
        _draw_truth(ax, truth, xi, p == 0)
        ax.legend(loc="upper right", fontsize=7, ncol=3, framealpha=0.8)
    what = "calibrated" if calibrated and not converted else \
        "raw counts converted with %s" % ((header.get("calibration") or {}).get("source")
                                           or "the simulated sensor's calibration") if converted else \
        "raw ADC counts (no calibration known)"
    src = header.get("scenario") and "simulated %s" % header["scenario"] or header.get("source") or ""
    axes[0].set_title("%s  %s  (%s; %s; %.1f s at %g Hz)%s" % (
        header.get("device_id", "?"), start.astimezone(tz).strftime("%Y-%m-%d %H:%M") if start else "",
        src, what, len(samples) / rate, rate,
        "\n%s; %s" % (lim_src, "body weight %.0f kg" % (bw_n / G)) if calibrated else ""), fontsize=9)
    if start:
        _time_axis(axes[-1], t0, tsec[-1], tz)
    else:
        axes[-1].set_xlabel("time [s] (the recording has no start time)")
    fig.tight_layout()
    return fig, err


def _event_kind(e):
    k = e.get("kind") or e.get("event") or "?"
    return "overload" if k.startswith("overload") else "fault" if k.startswith("fault") else k


def _draw_events(ax, events, xi, label):
    """Overloads as shaded spans (start..end from the records' sample indices), other events as
    ticks at the top; labels thinned to MAX_LABELS."""
    spans = {}
    points = []
    gaps = []
    for e in events:
        k = _event_kind(e)
        if k == "gap" and e.get("sample") is not None:      # samples lost (T_GAP, oimon record)
            gaps.append((e["sample"], max(int(e.get("n") or 1), 1)))
            continue
        if k == "overload" and e.get("onset") is not None:
            s = spans.setdefault(e["onset"], [e["onset"], e["onset"] + 20])
            if e.get("end"):
                s[1] = max(s[1], e["end"])
            elif e.get("dur"):
                s[1] = max(s[1], e["onset"] + e["dur"])
        elif e.get("sample") is not None or e.get("n") is not None:
            points.append((e.get("sample", e.get("n")), k))
    for k, (a, b) in enumerate(sorted(spans.values())):
        ax.axvspan(xi(a), xi(b), color=EVENT_COLORS["overload"], alpha=0.3, lw=0,
                   label="overload (device)" if k == 0 else None)
    for k, (a, n) in enumerate(sorted(gaps)):
        ax.axvspan(xi(a), xi(a + n), color="orange", alpha=0.45, lw=0,
                   label="samples lost (gap)" if k == 0 else None)
        if label and k < MAX_LABELS:
            ax.annotate("gap %d" % n, (xi(a), 0.02), xycoords=("data", "axes fraction"),
                        fontsize=7, rotation=90, va="bottom", ha="right", color="darkorange")
    step = max(1, int(math.ceil(len(points) / float(MAX_LABELS))))
    seen = set()
    for j, (s, k) in enumerate(sorted(points)):
        c = EVENT_COLORS.get(k, "k")
        ax.axvline(xi(s), ymin=0.9, ymax=1.0, color=c, lw=1.2,
                   label=k if k not in seen else None)
        seen.add(k)
        if label and j % step == 0:
            ax.annotate(k, (xi(s), 0.89), xycoords=("data", "axes fraction"), fontsize=7,
                        rotation=90, va="top", ha="right", color=c)


TRUTH_SKIP = {"walk", "rest", "stand", "sit"}


def _draw_truth(ax, truth, xi, label):
    """Ground truth of a simulated recording: a band along the bottom for each labelled interval
    that the detector should (or may) report; labels thinned."""
    items = [t for t in truth if t.get("label") not in TRUTH_SKIP or t.get("expect")]
    if not items:
        return
    step = max(1, int(math.ceil(len(items) / float(MAX_LABELS))))
    for j, t in enumerate(items):
        a, b = xi(t.get("start", 0)), xi(t.get("end", t.get("start", 0)))
        ax.axvspan(a, b, ymin=0, ymax=0.06, color="#9467bd", alpha=0.6, lw=0,
                   label="ground truth (simulated)" if j == 0 else None)
        if label and j % step == 0:
            ax.annotate("truth: %s" % t.get("label", "?"), (a, 0.07), xycoords=("data", "axes fraction"),
                        fontsize=7, color="#9467bd", va="bottom")


# --- one event from its snippet --------------------------------------------------------------
def snippet_figure(rows, rate, t_start_unix, settings, ev=None, tz=None):
    """A figure of an event's loads (rows (n, 3) in device units: 0.1 N, 0.01 N*m): axial with
    % BW and both axial limits, the resultant bending moment with its limit, the spans over a
    limit shaded, the event's start marked; clock time in tz."""
    tz = tz or local_tz()
    rows = np.asarray(rows, dtype=float)
    n = len(rows)
    t = t_start_unix + np.arange(n) / float(rate)
    x = _dates(t)
    lim = settings["limits_dev"] if "limits_dev" in settings else settings
    bw_n = settings.get("bw_N") or L.BW_DEFAULT / 10.0
    ax_n = rows[:, 0] * 0.1
    mres = np.hypot(rows[:, 1], rows[:, 2]) * 0.01 if rows.shape[1] >= 3 else None
    fig, axes = plt.subplots(2 if mres is not None else 1, 1, sharex=True, figsize=(8.5, 3.8))
    axes = np.atleast_1d(axes)
    a = axes[0]
    a.plot(x, ax_n, color="C0", lw=1, label="axial")
    comp, tens = lim["comp"] * 0.1, lim["tens"] * 0.1
    a.axhline(comp, color="r", ls="--", lw=1, label="compression limit %.0f N" % comp)
    if ax_n.min() < 0:
        a.axhline(-tens, color="m", ls="--", lw=1, label="tension limit %.0f N" % tens)
    _shade(a, x, _spans((ax_n > comp) | (ax_n < -tens)), "#d62728", "over a limit")
    a.set_ylabel("axial [N]")
    _pct_axis(a, bw_n)
    if mres is not None:
        b = axes[1]
        m = lim["moment"] * 0.01
        b.plot(x, mres, color="k", lw=1, label="bending (resultant)")
        b.axhline(m, color="r", ls="--", lw=1, label="bending limit %.0f N*m" % m)
        _shade(b, x, _spans(mres > m), "#d62728")
        b.set_ylabel("moment [N*m]")
    for axx in axes:
        axx.grid(True, alpha=0.3)
        axx.legend(loc="upper right", fontsize=7, ncol=2, framealpha=0.8)
        if ev and ev.get("start"):
            axx.axvline(_dates(ev["start"]), color="#555", lw=0.8, ls=":")
    if ev:
        a.set_title("%s, %s" % (ev.get("kind", "event"), dt.datetime.fromtimestamp(
            ev.get("start") or t_start_unix, dt.timezone.utc).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")),
            fontsize=9)
    _time_axis(axes[-1], t_start_unix, n / float(rate), tz)
    fig.tight_layout()
    return fig
