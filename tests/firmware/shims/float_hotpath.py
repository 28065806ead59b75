# Test double for sim/oimon_sim/bench_hotpath.py: the same signal path as firmware/dsp.py +
# detect.py written the plain way — floating point, ordinary bytecode, no viper — so the
# benchmark can say what the fixed-point viper kernels buy. Same algorithm (docs/algorithm.md):
# calibration matrix, 2nd-order Butterworth (direct form II transposed, float), 10 ms load rate,
# raw flags, fault debounce, overload with debounce/hysteresis, load-cycle latch, histogram,
# four-phase fall. Not bit-exact with the firmware (floats), and never used on the device.
# Call structure as the firmware's hot path: two calls per sample (FloatPipeline.step(raw, out)
# then FloatDetector.step(out), bound methods held in locals) against dsp.kernel(tab) then
# detect.kernel(tab); the benchmark's loop and raw copy are the same for both.


class FloatPipeline:
    def __init__(self, gains, offsets, b, a):
        self.g = [list(r) for r in gains]
        self.off = list(offsets)
        self.b = list(b)
        self.a = list(a)
        self.z = [[0.0, 0.0] for _ in range(3)]
        self.primed = False
        self.ring = [0.0] * 16
        self.ri = 0
        self.prev = [None, None, None]
        self.run = [0, 0, 0]

    def step(self, raw, out):
        fl = 0
        for c in range(3):
            r = raw[c]
            if r == 0x7FFFFF or r == -0x800000:
                fl |= 1 << c
            elif r >= 0x7E0000 or r <= -0x7E0000:
                fl |= 8 << c
            if r == self.prev[c]:
                self.run[c] = min(self.run[c] + 1, 64)
                if self.run[c] >= 64:
                    fl |= 64 << c
            else:
                self.prev[c] = r
                self.run[c] = 1
        d = [raw[j] - self.off[j] for j in range(3)]
        x = [0.0, 0.0, 0.0]
        for c in range(3):
            g = self.g[c]
            v = g[0] * d[0] + g[1] * d[1] + g[2] * d[2]
            x[c] = max(-131071.0, min(131071.0, v))
        b0, b1, b2 = self.b
        a1, a2 = self.a[1], self.a[2]
        if not self.primed:
            for c in range(3):         # steady state of a constant input (DF2T)
                self.z[c][0] = x[c] * (1.0 - b0)
                self.z[c][1] = x[c] * (b2 - a2)
            self.ring = [x[0]] * 16
            self.primed = True
        for c in range(3):
            z = self.z[c]
            y = b0 * x[c] + z[0]
            z[0] = b1 * x[c] - a1 * y + z[1]
            z[1] = b2 * x[c] - a2 * y
            out[c] = y
        ri = self.ri
        out[3] = (x[0] - self.ring[(ri - 10) & 15]) * 10.0     # 0.1 N per 10 ms = 10 N/s
        self.ring[ri] = x[0]
        self.ri = (ri + 1) & 15
        out[4] = fl
        return fl


class FloatDetector:
    def __init__(self, bw=7355.0, comp=18000.0, tens=4000.0, mom=9000.0, deb=20):
        self.bw = bw
        self.comp, self.tens, self.mom, self.deb = comp, tens, mom, deb
        self.n = 0
        self.fault = False
        self.frun = 0
        self.crun = 0
        self.oa = False
        self.con = 0
        self.coff = 0
        self.ovl = {}
        self.latch = False
        self.tfall = -1
        self.trise = 0
        self.pkon = 0.0
        self.dmin = 0.0
        self.fs = 0
        self.timp = 0
        self.cand = {}
        self.lcnt = 0
        self.act = {"steps": 0, "loaded": 0, "valid": 0, "invalid": 0, "pk_ax": 0.0}
        self.hist = [0] * 21

    def step(self, out):
        n = self.n
        self.n += 1
        e = 0
        fl = int(out[4])
        if fl & 0x3F:
            self.frun += 1
        else:
            self.frun = 0
        self.crun = 0 if fl & 0x1FF else min(self.crun + 1, 200)
        if not self.fault:
            if self.frun >= 10 or fl & 0x1C0:
                self.fault = True
                e |= 8
        elif self.crun >= 200:
            self.fault = False
            e |= 16
        if self.fault or fl & 0x7FF:
            if self.oa:
                e |= 2
            self.oa = False
            self.con = self.coff = 0
            self.latch = False
            self.tfall = -1
            self.fs = 0
            self.act["invalid"] += 1
            return e
        self.act["valid"] += 1
        ax, ma, mm, rate = out[0], abs(out[1]), abs(out[2]), out[3]
        m = (ma * ma + mm * mm) ** 0.5
        rising = False
        if not self.latch:
            if ax >= 0.2 * self.bw:
                self.latch = rising = True
                self.trise, self.pkon = n, ax
                self.act["steps"] += 1
            elif self.tfall >= 0:
                self.dmin = min(self.dmin, ax)
        elif ax < 0.1 * self.bw:
            self.latch = False
            self.tfall, self.tloadp, self.pkloadp, self.dmin = n, self.trise, self.pkon, ax
        else:
            self.pkon = max(self.pkon, ax)
        if self.latch:
            self.act["loaded"] += 1
        self.act["pk_ax"] = max(self.act["pk_ax"], ax)
        k = int(ax * 10.0 / self.bw)
        self.hist[max(0, min(20, k))] += 1
        over = ax > self.comp or ax < -self.tens or m > self.mom
        if not self.oa:
            if over:
                self.con += 1
                if self.con == 1:
                    self.ovl = {"start": n, "pk": ax, "min": ax, "m": m, "imp": 0.0}
                o = self.ovl
                o["pk"] = max(o["pk"], ax)
                o["min"] = min(o["min"], ax)
                o["m"] = max(o["m"], m)
                o["imp"] += ax * 1e-4
                if self.con >= self.deb:
                    self.oa = True
                    self.coff = 0
                    e |= 1
            else:
                self.con = 0
        else:
            o = self.ovl
            o["pk"] = max(o["pk"], ax)
            o["min"] = min(o["min"], ax)
            o["m"] = max(o["m"], m)
            o["imp"] += ax * 1e-4
            if ax <= 0.9 * self.comp and ax >= -0.9 * self.tens and m <= 0.9 * self.mom:
                self.coff += 1
                if self.coff >= self.deb:
                    self.oa = False
                    self.con = 0
                    e |= 2
            else:
                self.coff = 0
        if self.fs == 2:
            self.lcnt += 1 if self.latch else 0
            if n - self.timp >= 1999:
                self.fs = 0
                if self.lcnt * 100 < 40 * 1900:
                    e |= 4
        elif self.fs == 1:
            c = self.cand
            c["ax"] = max(c["ax"], ax)
            c["rate"] = max(c["rate"], rate)
            c["m"] = max(c["m"], m)
            if n - self.timp >= 99:
                if c["rate"] >= 15000.0 and c["ax"] >= 1.2 * self.bw:
                    self.fs = 2
                    self.lcnt = 0
                else:
                    self.fs = 0
        elif rising and self.tfall >= 0 and 50 <= n - self.tfall <= 2000:
            self.fs = 1
            self.timp = n
            self.cand = {"ax": ax, "rate": rate, "m": m, "load": self.pkloadp,
                         "dmin": self.dmin}
        return e
