"""Calibration: the least-squares fit recovers a known gain matrix (unit level and through the
virtual device, whose simulated sensor is driven by the plan's loads), the acceptance bound
refuses bad fits, and nothing is written when it does."""
import json

import numpy as np
import pytest

from oimon import calibration as C
from oimon import db, keystore
from oimon_sim.device import start_virtual_device
from oimon_sim import sensor
from test_host_support import assert_user_error, run_cli

PLAN = {"lever_arm_m": 0.5, "bound_pct": 0.5, "hold_s": 0.5, "samples": 200, "steps": [
    {"name": "tare"},
    {"axis": "axial", "mass_kg": 20}, {"axis": "axial", "mass_kg": 50},
    {"axis": "ap", "mass_kg": 10}, {"axis": "ap", "mass_kg": -20},
    {"axis": "ml", "mass_kg": 10}, {"axis": "ml", "mass_kg": -20}]}


def _synthetic(plan, S=sensor.DEFAULT_S, noise=0.0, seed=0):
    model = sensor.SensorModel(S, noise_counts=noise, seed=seed)
    p = C.check_plan(plan)
    loads = np.array([s["load"] for s in p["steps"]])
    raw = np.array([model.raw(np.tile(ld / C.SCALE, (200, 1)))[:, :3].mean(axis=0) for ld in loads])
    return p, loads, raw, model


def test_fit_recovers_the_gain_matrix():
    p, loads, raw, model = _synthetic(PLAN, noise=20)
    off, G = C.fit(raw, loads)
    np.testing.assert_allclose(G, np.linalg.inv(sensor.DEFAULT_S), rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(off, sensor.DEFAULT_OFFSET[:3], atol=3)
    res = C.residuals(off, G, raw, loads)
    assert res["pct"].max() < 0.05


def test_fit_with_other_cross_talk():
    S = np.array([[60.0, 4.0, -3.0], [2.5, 150.0, 6.0], [-1.5, 5.0, 120.0]])
    p, loads, raw, model = _synthetic(C.default_plan(), S=S)
    off, G = C.fit(raw, loads)
    np.testing.assert_allclose(G, np.linalg.inv(S), rtol=1e-3)


def test_bad_fit_is_refused_by_the_bound():
    p, loads, raw, model = _synthetic(PLAN)
    raw = raw.copy()
    raw[2, 0] += 200000             # a mass slipped: 250 N off on one step
    off, G = C.fit(raw, loads)
    cert = C.certificate("X", p, raw, np.zeros_like(raw), off, G, C.residuals(off, G, raw, loads), "d")
    assert not cert["passed"] and cert["max_error_pct"] > p["bound_pct"]


def test_degenerate_readings_refused():
    p, loads, raw, model = _synthetic(PLAN)
    raw = raw.copy()
    raw[:, 2] = 5000                # ML bridge disconnected
    with pytest.raises(Exception) as e:
        C.fit(raw, loads)
    assert "degenerate" in str(e.value)


def test_default_plan_uses_the_jig():
    p = C.check_plan(C.default_plan())
    loads = np.array([s["load"] for s in p["steps"]])
    assert loads[:, 0].max() == pytest.approx(50 * C.G)
    assert loads[:, 1].max() == pytest.approx(20 * C.G * 0.5)      # 98.1 N*m
    assert loads[:, 2].min() == pytest.approx(-20 * C.G * 0.5)


@pytest.fixture
def jig_device(tmp_path, capsys, monkeypatch):
    """The virtual device whose sensor plays the plan: the simulated jig (DEFAULT_S), with a
    provisioned key (host keystore + the device's key.bin)."""
    monkeypatch.setenv("OIMON_KEYSTORE", str(tmp_path / "keys.json"))
    (tmp_path / "storage").mkdir()
    keystore.write_key_file(keystore.open().provision("JIG-0001"), tmp_path / "storage" / "key.bin")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    rec = tmp_path / "jig.oimrec"
    rc, out, err = run_cli(capsys, "calibrate", "--plan", plan, "--write-jig", rec)
    assert rc == 0, err
    vd = start_virtual_device(recording=str(rec), speed=4, storage=tmp_path / "storage",
                              device_id="JIG-0001", calibrated=False)
    yield vd, plan
    vd.stop()


def test_plan_against_the_simulated_jig_recovers_inv_S(jig_device, tmp_path, capsys):
    vd, plan = jig_device
    dbp = tmp_path / "db.sqlite"
    rc, out, err = run_cli(capsys, "--port", vd.path, "--db", dbp, "calibrate", "--plan", plan,
                           "--dry-run", "--json")
    assert rc == 0, err + vd.log_tail()
    cert = json.loads(out)
    assert cert["passed"] and cert["max_error_pct"] <= PLAN["bound_pct"]
    G = np.array(cert["matrix_units_per_count"])
    ideal = np.linalg.inv(sensor.DEFAULT_S)
    # within the stated bound: the fitted matrix maps every full-scale load like the ideal one
    fs_raw = np.diag(C.FULL_SCALE / C.SCALE) @ sensor.DEFAULT_S.T          # rows: raw per axis at FS
    err_pct = np.abs((fs_raw @ (G - ideal).T) * C.SCALE) / C.FULL_SCALE * 100
    assert err_pct.max() < PLAN["bound_pct"], err_pct
    # offsets within 50 counts (< 0.07 N axial, < 0.004 N*m): the jig recording is in whole device units
    np.testing.assert_allclose(cert["offsets_counts"], sensor.DEFAULT_OFFSET[:3], atol=50)
    assert "axial" in err and "% of full scale" in err
    assert not dbp.exists() or not db.connect(dbp).execute("SELECT * FROM calibration").fetchall()


def test_tight_bound_refuses_and_writes_nothing(jig_device, tmp_path, capsys):
    vd, plan = jig_device
    dbp = tmp_path / "db.sqlite"
    db.connect(dbp).close()
    before = dbp.read_bytes()
    p = json.loads(plan.read_text())
    p["steps"][1]["mass_kg"] = 40          # the plan says 40 kg, the jig holds 20 kg
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(p))
    rc, out, err = run_cli(capsys, "--port", vd.path, "--db", dbp, "calibrate", "--plan", bad)
    assert_user_error(rc, err, "calibration refused")
    assert dbp.read_bytes() == before
    rc, out, err = run_cli(capsys, "--port", vd.path, "info", "--json")
    assert json.loads(out)["calibrated"] is False


def test_calibration_is_written_and_certified(jig_device, tmp_path, capsys):
    vd, plan = jig_device
    dbp = tmp_path / "db.sqlite"
    rc, out, err = run_cli(capsys, "--port", vd.path, "--db", dbp, "calibrate", "--plan", plan)
    assert rc == 0, err + vd.log_tail()
    assert "calibration written to JIG-0001 (calibrated)" in out
    rc, out, err = run_cli(capsys, "--port", vd.path, "info", "--json")
    assert json.loads(out)["calibrated"] is True
    row = db.connect(dbp).execute("SELECT device_id, data, max_error_pct, bound_pct FROM calibration").fetchone()
    cert = json.loads(row["data"])
    assert row["device_id"] == "JIG-0001" and row["bound_pct"] == 0.5
    assert cert["passed"] and row["max_error_pct"] < 0.5 and cert["revision"] == 1
    assert len(cert["steps"]) == len(PLAN["steps"])
