# Overload limits per rehabilitation phase: one table for the device (detect.py, config.py),
# the bit-exact model (sim/oimon_sim/kernels.py, fall_kernels.py) and the host. Justification and sources:
# docs/algorithm.md 5.3. Units: compression/tension 0.1 N, resultant bending moment 0.01 N*m.
PHASES = ("I", "II", "III", "full")
PHASE_I = 0
PHASE_II = 1
PHASE_III = 2
PHASE_FULL = 3
BW_DEFAULT = 7355            # 75 kg x 9.80665 m/s^2 = 735.5 N, in 0.1 N
PHASE_I_CAP = 4903           # Phase I loading rises to 50 % BW, at most 50 kg (490.3 N)
PHASE_I_MARGIN_PCT = 125     # Phase I overload: 25 % above the exercise cap, so a patient in
                             # the exercise band (+-10 %) or at its over-target alarm (+20 %)
                             # is coached by the exercise cues, not by the overload alarm


# Fall detection: the axial peak that, with the load rate, makes a contact an impact
# (docs/algorithm.md 5.4). 80 % BW: low-severity falls (impact ~0.9 BW) are caught, and none of
# walking, stairs, stumbles, sitting down or the gaitpdb walks becomes a fall (tests/test_algorithm.py,
# `oimon sim metrics`); it was 120 % BW, which missed every low-severity fall.
IMPACT_PCT_BW = 80


def phase_limits(phase=PHASE_FULL, bw=BW_DEFAULT, debounce=20):
    """[comp, tens, mom, debounce, phase] for a rehab phase; bw in 0.1 N."""
    if phase == PHASE_I:
        comp, tens, mom = min(bw // 2, PHASE_I_CAP) * PHASE_I_MARGIN_PCT // 100, 1000, 1500
    elif phase == PHASE_II:
        comp, tens, mom = bw, 2000, 3000
    elif phase == PHASE_III:
        comp, tens, mom = 14000, 3000, 6000
    elif phase == PHASE_FULL:
        comp, tens, mom = 18000, 4000, 9000
    else:
        raise ValueError("phase 0..3")
    return [comp, tens, mom, debounce, phase]


def body_weight_0p1N(kg):
    """Body weight as a force in 0.1 N (g = 9.80665 m/s^2)."""
    return int(kg * 98.0665 + 0.5)
