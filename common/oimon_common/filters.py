# The low-pass filter table the device (firmware/dsp.py) and the model (sim/oimon_sim) share:
# {cut-off Hz at 1 kHz: (F, SA, WA, C1, C2, B0, KB)}, the quantised normal-form 2nd-order
# Butterworth sections of docs/algorithm.md section 4, produced by
# sim/oimon_sim/filter_design.py firmware_table() (tests/test_algorithm.py checks it).
FILTERS = {
    5: (8, 64080, 1424, 65458, 61266, 8099, 17),
    10: (8, 62626, 2786, 65232, 57125, 7925, 15),
    15: (8, 61174, 4089, 64872, 53155, 4363, 13),
    20: (8, 59726, 5335, 64391, 49335, 7595, 13),
    25: (8, 58282, 6527, 63800, 45667, 5812, 12),
    30: (8, 56843, 7667, 63109, 42148, 4100, 11),
    40: (8, 53984, 9801, 61467, 35519, 7004, 11),
    50: (8, 51151, 11752, 59533, 29438, 5265, 10),
}
