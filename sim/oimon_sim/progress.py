"""A progress bar on stderr for long simulator runs: drawn only when stderr is a terminal (or
when forced with --progress), at most 5 times a second, and erased at the end."""
import sys
import time


class Progress:
    def __init__(self, total, label="", unit="", scale=1.0, enabled=None, stream=None):
        self.stream = stream or sys.stderr
        if enabled is None:
            try:
                enabled = self.stream.isatty()
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = bool(enabled)
        self.total = max(float(total), 1e-9)
        self.label = label
        self.unit = unit
        self.scale = scale
        self.done = 0.0
        self.t0 = time.monotonic()
        self._last = 0.0

    def update(self, done):
        self.done = float(done)
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2 and self.done < self.total:
            return
        self._last = now
        frac = min(1.0, self.done / self.total)
        el = now - self.t0
        eta = el * (1 - frac) / frac if frac > 0 else 0
        bar = "#" * int(30 * frac)
        self.stream.write("\r%s [%-30s] %3d%% %.1f/%.1f%s  %ds left " % (
            self.label, bar, int(100 * frac), self.done * self.scale, self.total * self.scale,
            self.unit, int(eta + 0.5)))
        self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
