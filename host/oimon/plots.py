"""Plots of recordings as PNG files (oimon plot, the report, sim sweep): the host library's
drawing code; a failed write leaves no half-written file."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from oimon import recording  # noqa: E402
from oimon.errors import OimonError  # noqa: E402

MAX_POINTS = 20000       # min/max decimation keeps a day's plot readable and fast


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
    tmp = "%s.part.png" % path
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
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


def plot(path, out):
    header, index, samples, events, err = recording.load(path)
    if not len(samples):
        raise OimonError("%s: no samples to plot%s" % (path, " (%s)" % err if err else ""))
    rate = float(header.get("rate_hz", 1000))
    t = (index - index[0]) / rate
    phys = recording.physical(header, samples)
    chans = header["channels"]
    fig, axes = plt.subplots(len(chans), 1, sharex=True, figsize=(11, 2.2 * len(chans) + 0.8))
    axes = np.atleast_1d(axes)
    lim = header.get("limits") or {}
    for c, ax in enumerate(axes):
        tt, yy = _decimate(t, phys[:, c])
        ax.plot(tt, yy, lw=0.7, color="C%d" % c)
        ax.set_ylabel("%s [%s]" % (chans[c]["name"], chans[c]["unit"]))
        ax.grid(True, alpha=0.3)
        if header.get("kind") == "calibrated" and lim:
            if c == 0:
                if "comp" in lim:
                    ax.axhline(lim["comp"] * 0.1, color="r", ls="--", lw=0.8, label="compression limit")
                if "tens" in lim:
                    ax.axhline(-lim["tens"] * 0.1, color="m", ls="--", lw=0.8, label="tension limit")
            elif "moment" in lim:
                for s in (1, -1):
                    ax.axhline(s * lim["moment"] * 0.01, color="r", ls="--", lw=0.8)
        for ev in events:
            if ev.get("kind") == "gap" and ev.get("sample") is not None:   # samples missing
                x = (ev["sample"] - index[0]) / rate
                ax.axvspan(x, x + max(int(ev.get("n", 1)), 1) / rate, color="orange", alpha=0.35, lw=0)
                if c == 0:
                    ax.annotate("gap %d" % int(ev.get("n", 0)), (x, 0), xycoords=("data", "axes fraction"),
                                fontsize=8, rotation=90, va="bottom", ha="right", color="darkorange")
                continue
            if ev.get("sample") is not None:
                x = (ev["sample"] - index[0]) / rate
                ax.axvline(x, color="k", lw=0.8, alpha=0.6)
                if c == 0:
                    ax.annotate(ev.get("kind", "?"), (x, 1), xycoords=("data", "axes fraction"),
                                fontsize=8, rotation=90, va="top", ha="right")
    axes[0].set_title("%s  %s  (%s, %d samples at %g Hz)" % (
        header.get("device_id", "?"), header.get("start_time", "")[:19], header.get("kind"),
        len(samples), rate))
    if header.get("kind") == "calibrated" and lim:
        axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("time [s]")
    fig.tight_layout()
    save_png(fig, out)
    return err
