"""`make demo`'s path inside `make test`: virtual device on a pty -> oimon record (framed binary
stream through pyserial) -> recording + SQLite -> PNG plot -> retightening status."""
import sqlite3

import numpy as np

from oimon import recording
from oimon_sim import demo


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    # the demo's overload comes at 5 s of the device's time: 10 s of recording leave room for
    # a device that runs at half speed on a busy machine (a bound, not a guess at 1 kHz)
    assert demo.main(["--out", str(out), "--seconds", "10"]) == 0
    text = capsys.readouterr().out
    rec, db, png = out / "demo.oimrec", out / "oimon.sqlite", out / "demo.png"
    for label, path in (("recording:", rec), ("database:", db), ("plot (PNG):", png)):
        assert any(ln.startswith(label) and ln.endswith(str(path)) for ln in text.splitlines())
    assert "retightening: SIM-DEMO: retightening ok" in text

    header, index, samples, events, err = recording.load(rec)
    assert err is None
    assert header["device_id"] == "SIM-DEMO" and header["kind"] == "calibrated"
    assert len(samples) >= 5000                        # ~6 s at 1 kHz, nothing lost
    assert np.all(np.diff(index) == 1)                 # contiguous sample counter: no gaps
    axial_n = samples[:, 0] * 0.1
    assert 450 < axial_n.max() < 2500                  # walking (~625 N) and the 2 kN overload
    con = sqlite3.connect(db)
    (gaps,) = con.execute("SELECT seq_gaps FROM recording").fetchone()
    assert gaps == 0
    kinds = [k for (k,) in con.execute("SELECT kind FROM event")]
    assert any(k.startswith("overload") for k in kinds), kinds
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20000
    # the demo ends with the clinical report and the way to the dashboard
    report = out / "report.html"
    assert any(ln.startswith("report:") and ln.endswith(str(report)) for ln in text.splitlines())
    html = report.read_text()
    assert "SIM-DEMO" in html and "P-DEMO" in html and "Events" in html and "overload" in html
    assert str(out) not in html                          # no paths of this machine
    assert any(ln.startswith("dashboard:") and "serve" in ln and "http://127.0.0.1:" in ln
               for ln in text.splitlines())
