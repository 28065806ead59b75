"""The validation layer (host/oimon/validate.py) and the calibration wizard's step check."""
import numpy as np
import pytest

from fakestream import FakeStream
from oimon import calibration as C
from oimon import cli, validate
from oimon.errors import OimonError


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e999", "", "5kg", "0x10",
                                  "1,5"])
def test_numbers_refused(text):
    with pytest.raises(OimonError):
        validate.check_number(validate.parse_number(text, "x"), "x", 0, 100)


def test_numbers_accepted_and_ranges_in_units():
    assert validate.check_number(validate.parse_number(" 42.5 ", "x"), "x", 0, 100) == 42.5
    assert validate.parse_number("7", "n", integer=True) == 7
    assert validate.parse_number("7.0", "n", integer=True) == 7
    with pytest.raises(OimonError, match="whole number"):
        validate.parse_number("7.5", "n", integer=True)
    with pytest.raises(OimonError, match=r"-5 kg is out of range \(must be 30..200 kg\)"):
        validate.check_number(-5, "body weight", 30, 200, unit="kg")
    with pytest.raises(OimonError, match="not true"):
        validate.check_number(True, "x")
    with pytest.raises(OimonError, match="implausibly large"):
        validate.check_number(1e300, "x")


@pytest.mark.parametrize("text, msg", [
    ("[" * 40 + "]" * 40, "nested"), ('{"a": NaN}', "NaN"), ('{"a": -Infinity}', "Infinity"),
    ('{"a": 1, "a": 2}', "duplicate"), (b"\xff\xfe", "UTF-8"), ("{", "not valid JSON"),
    ('"' + "[" * 50 + '"', None),                      # brackets inside a string are text
])
def test_untrusted_json(text, msg):
    if msg is None:
        assert validate.loads(text) == "[" * 50
        return
    with pytest.raises(OimonError, match=msg):
        validate.loads(text)


def test_dates():
    assert str(validate.parse_date("2025-03-01")) == "2025-03-01"
    for bad, msg in (("2019-01-01", "before any oimon"), ("2025-02-30", "not a date"),
                     ("2999-01-01", "future"), ("01.03.2025", "not a date")):
        with pytest.raises(OimonError, match=msg):
            validate.parse_date(bad)


def test_out_paths(tmp_path):
    assert validate.check_out_path(str(tmp_path / "a.csv")) == str(tmp_path / "a.csv")
    for p, msg in ((tmp_path / ("y" * 300), "too long"), (tmp_path / "no" / "a", "does not exist"),
                   (tmp_path, "is a folder"), ("", "empty")):
        with pytest.raises(OimonError, match=msg):
            validate.check_out_path(str(p))


# --- the calibration wizard's step check ----------------------------------------------------------
TARE = np.array([12000.0, -8000.0, 5000.0])


def _raw(load):
    """Raw means the design's sensor gives for load (N, N*m, N*m), with 1.5 % cross-talk."""
    S = np.array([[56.0, 0.8, -0.5], [30.0, 10100.0, 160.0], [-20.0, 130.0, 10100.0]])
    return TARE + S @ np.asarray(load, float)


def _step(axis, kg, lever=0.5):
    plan = C.check_plan({"lever_arm_m": lever, "steps": [
        {"name": "tare"}, {"axis": "axial", "mass_kg": 10}, {"axis": "ap", "mass_kg": 10},
        {"axis": "ml", "mass_kg": 10}, {"axis": axis, "mass_kg": kg}]})
    return plan["steps"][-1]


def test_a_step_that_fits_is_accepted():
    for axis, kg in (("axial", 10), ("axial", 50), ("ap", 5), ("ap", -20), ("ml", -5)):
        s = _step(axis, kg)
        assert C.check_step(s, _raw(s["load"]), TARE) is None, (axis, kg)
        # within the stated tolerance: a sensor 20 % less sensitive than the design
        assert C.check_step(s, TARE + 0.8 * (_raw(s["load"]) - TARE), TARE) is None


def test_a_10_kg_axial_step_read_as_ap_moment_is_refused():
    s = _step("axial", 10)
    seen = _raw([98.1, 40.0, 0.0])           # the jig bent the connector: AP answers most
    msg = C.check_step(s, seen, TARE)
    assert msg and "the ap channel answered, not axial" in msg and "AP +40.29 N*m" in msg, msg


@pytest.mark.parametrize("load, words", [
    ([-98.1, 0, 0], "opposite sign"),        # the mass hung the other way
    ([196.1, 0, 0], "axial is 196.1 N"),     # 20 kg on the jig, 10 kg in the plan
    ([45.0, 0, 0], "axial is 45.0 N"),       # half the mass
    ([98.1, 0, 20.0], "ml channel answered"),
])
def test_misfits_say_what_was_seen(load, words):
    msg = C.check_step(_step("axial", 10), _raw(load), TARE)
    assert msg and words in msg, msg


def test_plan_misfit_refuses_the_calibration():
    from oimon.commands.calibrate import check_steps
    plan = C.check_plan(C.default_plan())
    means = np.array([_raw(s["load"]) for s in plan["steps"]])
    check_steps(plan, means)                 # all fit
    means[3] = _raw([0, 30.0, 0])            # step 4 (20 kg axial) read as a moment
    with pytest.raises(OimonError, match="step 4: .*ap channel answered.*nothing was written"):
        check_steps(plan, means)


def test_cap_is_judged_with_the_devices_body_weight(capsys):
    fake = FakeStream(info={"body_weight_kg": 82})
    try:
        rc = cli.main(["--port", fake.url, "exercise", "plan", "--cap-kg", "60", "--dry-run"])
        err = capsys.readouterr().err
    finally:
        fake.close()
    assert rc == 2 and err.count("\n") == 1 and "82" in err and "100 kg" not in err, err
