# Event records of the detector, shared by the firmware (app.py turns detect.Detector's `ev`
# array into these dicts) and the bit-exact model (sim/oimon_sim/replayer.py builds the same dicts),
# so the host sees the same events from the device as from replay. Runs on MicroPython and
# CPython. Layouts of `ev`: docs/algorithm.md ("Event records").
EV_NAMES = {1: "overload_start", 2: "overload_end", 4: "fall", 8: "fault", 16: "fault_clear",
            32: "fall", 64: "imu_fault", 128: "imu_clear"}
EV_CODES = (1, 2, 4, 8, 16, 32, 64, 128)
# code 32 is a fall decided by the inertial path (firmware/imufall.py): same event name, its own
# slot (ev[48..63]); "path" says which detector decided ("load" or "imu")
OVL_FIELDS = ("state", "start", "onset", "end", "dur", "which", "pk_ax", "min_ax", "pk_map",
              "pk_mml", "pk_m2", "imp_hi", "imp_lo", "trunc", "report")
FALL_FIELDS = ("t_load", "t_desc", "t_imp", "t_dec", "pk_load", "min_desc", "pk_ax", "pk_rate",
               "pk_map", "pk_mml", "pk_m2", "loaded", "rec_len", "steps", "source")
FAULT_FIELDS = ("state", "onset", "raised", "clear", "dur", "flags", "acc")
IMU_FALL_FIELDS = ("t_first", "t_imp", "t_dec", "pk_acc", "dot", "p2", "q2", "dev", "w",
                   "loaded", "valid", "pk_w", "ff", "source", "npost")
IMU_FAULT_FIELDS = ("flags",)
SLOT = {1: (0, OVL_FIELDS), 2: (0, OVL_FIELDS), 4: (16, FALL_FIELDS), 8: (32, FAULT_FIELDS),
        16: (32, FAULT_FIELDS), 32: (48, IMU_FALL_FIELDS), 64: (63, IMU_FAULT_FIELDS),
        128: (63, IMU_FAULT_FIELDS)}
ACT_FIELDS = ("steps", "loaded", "valid", "invalid", "pk_ax", "min_ax", "pk_map", "pk_mml",
              "pk_m2", "overloads", "falls", "faults", "impacts")


def event(n, code, values):
    """One event record: n = detector sample index, code = one EV_* bit, values = the slot's
    words (ev[base:base + len(fields)])."""
    base, names = SLOT[code]
    d = {"n": int(n), "event": EV_NAMES[code]}
    for i in range(len(names)):
        d[names[i]] = int(values[i])
    if code == 4:
        d["path"] = "load"
    elif code == 32:
        d["path"] = "imu"
        d["n"] = d["t_dec"]          # the decision's own time (the IMU row's stamp)
    return d


def from_array(n, codes, ev):
    """All records of one detector step: codes = the OR of EV_* bits, ev = Detector.ev."""
    out = []
    for code in EV_CODES:
        if codes & code:
            base, names = SLOT[code]
            out.append(event(n, code, ev[base:base + len(names)]))
    return out
