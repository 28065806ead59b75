"""Events in words: what `oimon events`, the report and `oimon sim replay` print."""
from oimon.eventtext import describe


def test_overload_fall_fault_in_words():
    ov = {"kind": "overload_end", "which": 5, "pk_ax": 21417, "min_ax": 6000, "pk_m2": 6580 ** 2,
          "dur": 45}
    assert describe(ov) == ("over the compression and bending limit, peak axial 2142 N, "
                            "peak bending 65.8 N*m, lasted 45 ms")
    fall = {"event": "fall", "pk_ax": 10332, "pk_rate": 51000, "pk_m2": 7690 ** 2, "loaded": 95,
            "rec_len": 1900}
    assert describe(fall) == ("impact 1033 N, at 51.0 kN/s, bending 76.9 N*m, "
                              "leg loaded 5 % of the 1.9 s after")
    assert describe({"kind": "fault", "flags": 0x041}) == "axial saturated and stuck"
    assert describe({"kind": "fault", "flags": 0x010}) == "moment AP at the rail: open bridge?"
