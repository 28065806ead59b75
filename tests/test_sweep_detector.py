"""`oimon sim sweep --param detector.KEY`: a detector setting the device derives (here the fall
impact threshold, docs/algorithm.md 5.4) can be swept like a limit."""
import csv

from oimon.cli import main
from oimon_sim.generate import generate_recording


def test_sweep_the_fall_impact_threshold(tmp_path, capsys):
    rec = tmp_path / "fall.oimrec"
    # the load path's threshold: a recording without the IMU (with it the inertial path catches
    # this fall whatever the load's threshold, docs/algorithm.md 5.7)
    generate_recording(rec, "fall", 20, seed=2, params={"severity": "low", "direction": "right"},
                       imu=False)
    out = tmp_path / "sweep.csv"
    # 80 % and 120 % of a 75 kg body weight (735.5 N), in 0.1 N
    assert main(["sim", "sweep", str(rec), "--param", "detector.f_impact",
                 "--values", "5884,8826", "--csv", str(out)]) == 0
    rows = {int(r["value"]): float(r["sensitivity"]) for r in csv.DictReader(open(out))}
    assert rows == {5884: 1.0, 8826: 0.0}        # a low-severity fall: 80 % finds it, 120 % not
    fused = tmp_path / "fall_imu.oimrec"
    generate_recording(fused, "fall", 20, seed=2, params={"severity": "low", "direction": "right"})
    assert main(["sim", "sweep", str(fused), "--param", "detector.f_impact",
                 "--values", "5884,8826", "--csv", str(out)]) == 0
    rows = {int(r["value"]): float(r["sensitivity"]) for r in csv.DictReader(open(out))}
    assert rows == {5884: 1.0, 8826: 1.0}        # with the IMU: caught either way
    capsys.readouterr()
    assert main(["sim", "sweep", str(rec), "--param", "detector.nope", "--values", "1",
                 "--csv", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown detector setting(s) nope" in err
    assert not (tmp_path / "x.csv").exists()
