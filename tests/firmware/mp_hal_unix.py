# The sim side of the HAL: the simulated sensor keeps its pace across the wrap of ticks_us()
# (2**30 us on the unix port): a virtual device streams for hours, not 536 s.
import time
import hal_unix as H


def test_pacer_counts_through_the_ticks_wrap():
    real = H.ticks_us
    try:
        p = H._Pacer(1000, 1)
        t = p.t0
        for _ in range(20 * 60 * 10):          # 20 minutes in 100 ms steps
            t = time.ticks_add(t, 100000)
            H.ticks_us = lambda: t
            d = p.due()
        assert d == 20 * 60 * 1000, d
        p10 = H._Pacer(1000, 10)                # ten times real time
        t = p10.t0
        t = time.ticks_add(t, 1500000)
        H.ticks_us = lambda: t
        assert p10.due() == 15000
    finally:
        H.ticks_us = real
