"""oimon decode CAPTURE [--json]: frames, counts of good/bad frames and sequence gaps, bad input."""
import json

from oimon.cli import main
from oimon_common import protocol as P
from oimon_common import decode as D


def _capture():
    fr = [P.encode(P.T_SAMPLES, 0, D.pack_samples_bytes(0, 1000, [(100, 2, -3)] * 4)),
          P.encode(P.T_EVENT, 1, b'{"kind":"overload","peak":20000}'),
          P.encode(P.T_RESP, 2, bytes((P.C_INFO, P.S_OK)) + b'{"device_id":"X"}')]
    bad = bytearray(P.encode(P.T_EVENT, 3, b'{"kind":"fall"}'))
    bad[4] ^= 0xFF
    rec = D.pack_record(P.K_ALARM, 9, 1700000000, b'{"a":1}')
    log = P.encode(P.T_LOG, 6, (9).to_bytes(4, "little") + len(rec).to_bytes(2, "little")
                   + bytes(2) + rec)
    return b"".join(fr) + bytes(bad) + b"\x11\x22\x33\x00" + log + P.encode(P.T_STATUS, 7, b"{}")[:-3]


def test_decode_prints_frames_and_counts(tmp_path, capsys):
    f = tmp_path / "cap.bin"
    f.write_bytes(_capture())
    assert main(["decode", str(f)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 5
    assert "samples" in out[0] and "n=4" in out[0]
    assert "overload" in out[1]
    assert "fall" not in "\n".join(out)                # the corrupt frame is never shown
    assert 'kind="alarm"' in out[3]
    assert out[-1].startswith("4 good frames, 3 bad frames, 1 sequence gaps")


def test_decode_json(tmp_path, capsys):
    f = tmp_path / "cap.bin"
    f.write_bytes(_capture())
    assert main(["decode", str(f), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d.get("seq") for d in lines[:-1]] == [0, 1, 2, 6]
    assert lines[1]["data"] == {"kind": "overload", "peak": 20000}
    assert lines[-1]["summary"]["good"] == 4 and lines[-1]["summary"]["bad"] == 3
    assert lines[-1]["summary"]["gaps"] == 1 and lines[-1]["summary"]["lost"] == 3


def test_decode_empty_and_garbage(tmp_path, capsys):
    f = tmp_path / "e.bin"
    f.write_bytes(b"")
    assert main(["decode", str(f)]) == 0
    assert capsys.readouterr().out.strip() == "0 good frames, 0 bad frames, 0 sequence gaps (0 frames missing), 0 bytes"
    f.write_bytes(bytes(range(1, 256)) * 10 + b"\x00")
    assert main(["decode", str(f)]) == 0
    assert capsys.readouterr().out.strip().startswith("0 good frames, 1 bad frames")


def test_bad_input_one_line_exit_2(tmp_path, capsys):
    for argv in (["decode", str(tmp_path / "missing.bin")], ["decode", str(tmp_path)], ["decode"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("oimon: ") and err.count("\n") == 1 and "Traceback" not in err
    f = tmp_path / "noperm.bin"
    f.write_bytes(b"x")
    f.chmod(0)
    try:
        import os
        if os.geteuid() != 0:
            assert main(["decode", str(f)]) == 2
            assert "cannot read" in capsys.readouterr().err
    finally:
        f.chmod(0o600)
