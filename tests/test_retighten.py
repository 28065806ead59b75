"""Retightening schedule: calendar months with month-end clamping, leap years, the 14-day
"due soon" boundary, per-device intervals, and the CLI (record / status / interval)."""
import datetime as dt
import json

import pytest
from hypothesis import given, strategies as st

from oimon import cli, db, retighten

D = dt.date


@pytest.mark.parametrize("last, months, due", [
    (D(2024, 11, 30), 3, D(2025, 2, 28)),     # 30 Nov + 3 months: no 30 Feb
    (D(2023, 11, 30), 3, D(2024, 2, 29)),     # ... leap year
    (D(2023, 11, 29), 3, D(2024, 2, 29)),
    (D(2024, 11, 28), 3, D(2025, 2, 28)),
    (D(2024, 8, 31), 3, D(2024, 11, 30)),     # 31 Aug -> 30 Nov
    (D(2024, 1, 31), 1, D(2024, 2, 29)),
    (D(2025, 1, 31), 1, D(2025, 2, 28)),
    (D(2024, 10, 15), 3, D(2025, 1, 15)),     # over the year end
    (D(2024, 12, 31), 3, D(2025, 3, 31)),
    (D(2024, 2, 29), 12, D(2025, 2, 28)),     # leap day + a year
    (D(2023, 2, 28), 12, D(2024, 2, 28)),
    (D(2024, 5, 31), 6, D(2024, 11, 30)),
    (D(2099, 11, 30), 3, D(2100, 2, 28)),     # 2100 is not a leap year
    (D(2399, 11, 30), 3, D(2400, 2, 29)),     # 2400 is
])
def test_add_months_month_ends_and_leap_years(last, months, due):
    assert retighten.add_months(last, months) == due
    assert retighten.status(last, months, last)["due"] == due.isoformat()


@given(st.dates(min_value=D(1900, 1, 1), max_value=D(2400, 1, 1)), st.integers(1, 12))
def test_add_months_properties(d, months):
    r = retighten.add_months(d, months)
    assert (r.year * 12 + r.month) - (d.year * 12 + d.month) == months
    assert r.day == d.day or (r.day < d.day and (r + dt.timedelta(days=1)).day == 1)


def test_states_at_the_boundaries():
    last = D(2025, 1, 10)                     # due 2025-04-10
    due = D(2025, 4, 10)

    def state(today):
        return retighten.status(last, 3, today)["state"]

    assert state(due - dt.timedelta(days=15)) == "ok"
    assert state(due - dt.timedelta(days=14)) == "due soon"          # exactly 14 days: due soon
    assert retighten.status(last, 3, due - dt.timedelta(days=14))["days_left"] == 14
    assert state(due - dt.timedelta(days=1)) == "due soon"
    assert state(due) == "due soon"                                  # the due day itself
    assert state(due + dt.timedelta(days=1)) == "overdue"
    assert retighten.status(last, 3, due + dt.timedelta(days=1))["days_left"] == -1
    assert state(last) == "ok"
    assert retighten.status(None, 3, due)["state"] == "never recorded"


def _run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_record_status_interval(tmp_path, capsys):
    dbp = str(tmp_path / "db.sqlite")
    rc, out, err = _run(capsys, "--db", dbp, "retighten", "record", "OI-7", "--date", "2024-11-30",
                        "--torque", "12", "--host-only")
    assert rc == 0 and "OI-7" in out and "2025-02-28" in out, (out, err)
    _run(capsys, "--db", dbp, "retighten", "record", "OI-8", "--date", "2025-01-01", "--host-only")
    con = db.connect(dbp)
    db.ensure_device(con, "OI-9")
    con.commit()
    rc, out, _ = _run(capsys, "--db", dbp, "retighten", "status", "--today", "2025-02-14", "--json")
    rows = {r["device_id"]: r for r in json.loads(out)}
    assert rows["OI-7"]["state"] == "due soon" and rows["OI-7"]["due"] == "2025-02-28"
    assert rows["OI-7"]["days_left"] == 14 and rows["OI-7"]["torque_nm"] == 12
    assert rows["OI-8"]["state"] == "ok" and rows["OI-8"]["due"] == "2025-04-01"
    assert rows["OI-9"]["state"] == "never recorded"
    rc, out, _ = _run(capsys, "--db", dbp, "retighten", "status", "--today", "2025-03-01")
    assert "OI-7: retightening overdue by 1 days" in out
    assert "OI-9: retightening never recorded" in out
    # a 6-month interval for OI-8: due 2025-07-01
    rc, out, _ = _run(capsys, "--db", dbp, "retighten", "interval", "OI-8", "6")
    assert rc == 0 and "6 months" in out
    rc, out, _ = _run(capsys, "--db", dbp, "retighten", "status", "--today", "2025-06-17", "--json")
    rows = {r["device_id"]: r for r in json.loads(out)}
    assert rows["OI-8"]["due"] == "2025-07-01" and rows["OI-8"]["state"] == "due soon"
    assert rows["OI-8"]["interval_months"] == 6
    # the latest retightening counts, not the first recorded
    _run(capsys, "--db", dbp, "retighten", "record", "OI-7", "--date", "2025-02-20", "--host-only")
    rc, out, _ = _run(capsys, "--db", dbp, "retighten", "status", "--today", "2025-03-01", "--json")
    rows = {r["device_id"]: r for r in json.loads(out)}
    assert rows["OI-7"]["due"] == "2025-05-20" and rows["OI-7"]["state"] == "ok"


@pytest.mark.parametrize("argv, msg", [
    (["retighten", "record", "OI-1", "--date", "2025-02-30"], "not a date"),
    (["retighten", "record", "OI-1", "--date", "yesterday"], "not a date"),
    (["retighten", "record", "OI-1", "--date", "2999-01-01"], "in the future"),
    (["retighten", "record", "OI-1", "--date", "2025-01-01", "--torque", "-3"], "torque"),
    (["retighten", "record", "OI-1", "--date", "2025-01-01", "--torque", "500"], "torque"),
    (["retighten", "record", "", "--date", "2025-01-01"], "device id"),
    (["--port", "/dev/does-not-exist", "retighten", "record", "OI-1", "--date", "2025-01-01"],
     "cannot open port"),
    (["retighten", "interval", "OI-1", "0"], "outside"),
    (["retighten", "interval", "OI-1", "13"], "outside"),
    (["retighten", "interval", "OI-1", "three"], "whole number"),
    (["retighten", "status", "--today", "2025-13-01"], "not a date"),
    (["retighten", "frobnicate"], "invalid choice"),
])
def test_cli_bad_input_one_line_exit_2_db_unchanged(tmp_path, capsys, argv, msg):
    dbp = tmp_path / "db.sqlite"
    assert cli.main(["--db", str(dbp), "retighten", "record", "OI-1", "--date", "2024-01-01", "--host-only"]) == 0
    before = dbp.read_bytes()
    capsys.readouterr()
    rc = cli.main(["--db", str(dbp)] + argv)
    out, err = capsys.readouterr()
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("oimon: ") and msg in err, err
    assert "Traceback" not in err
    assert dbp.read_bytes() == before
