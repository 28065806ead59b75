"""Authenticated prosthetist commands and the host keystore: HMAC on the device equals CPython's
hmac, keystore permissions, keys never in output/logs/recordings, replay and forgery refused by
the (virtual) device and logged as security events."""
import hashlib
import hmac
import json
import os
import random
import stat

import pytest

from oimon import auth as A
from oimon import keystore as K
from oimon import link
from oimon.cli import main
from oimon.errors import OimonError
from oimon_common import protocol as P
from oimon_sim import mp
from oimon_sim.device import VirtualDevice

RFC4231_1 = (b"\x0b" * 20, b"Hi There",
             "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")


def test_device_hmac_equals_cpython_hmac():
    rng = random.Random(11)
    cases = [(rng.randbytes(rng.choice((0, 1, 32, 64, 65, 200))), rng.randbytes(rng.randrange(300)))
             for _ in range(25)]
    code = "import auth, binascii\n" + "".join(
        "print(binascii.hexlify(auth.hmac_sha256(%r, %r)).decode())\n" % c for c in cases)
    p = mp.run(["-c", code])
    assert p.returncode == 0, p.stderr
    got = p.stdout.split()
    for (k, m), h in zip(cases, got):
        assert h == hmac.new(k, m, hashlib.sha256).hexdigest()
    k, m, want = RFC4231_1
    assert A.mac(k, "x", 0, 0, b"") != bytes.fromhex(want)       # domain-separated message
    assert hmac.new(k, m, hashlib.sha256).hexdigest() == want


def test_keystore_is_0600_and_looser_modes_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "ks" / "keys.json"
    ks = K.Keystore(path)
    key = ks.provision("OIM-1")
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert K.Keystore(path).key("OIM-1") == key
    assert key.hex() not in repr(K.Keystore(path))
    with pytest.raises(OimonError, match="already has a key"):
        ks.provision("OIM-1")
    assert ks.provision("OIM-2") != key                      # a fresh random key per device
    for mode in (0o644, 0o640, 0o604, 0o660):
        os.chmod(path, mode)
        with pytest.raises(OimonError, match="chmod 600"):
            K.Keystore(path)
    os.chmod(path, 0o600)
    monkeypatch.setenv("OIMON_KEYSTORE", str(path))
    assert K.open().key("OIM-1") == key
    monkeypatch.delenv("OIMON_KEYSTORE")
    monkeypatch.setenv("OIMON_DB", str(tmp_path / "db" / "oimon.sqlite"))
    assert K.default_path() == tmp_path / "db" / "keys.json"
    with pytest.raises(OimonError, match="no key for device OIM-9"):
        K.Keystore(path).key("OIM-9")
    path.write_text("{not json")
    os.chmod(path, 0o600)
    with pytest.raises(OimonError, match="corrupt"):
        K.Keystore(path)


def test_counters_go_up_past_the_devices(tmp_path):
    ks = K.Keystore(tmp_path / "k.json")
    ks.provision("D")
    assert ks.next_counter("D") == 1
    assert ks.next_counter("D", 40) == 41
    assert K.Keystore(tmp_path / "k.json").next_counter("D") == 42


def _provisioned(tmp_path, vd):
    ks = K.Keystore(tmp_path / "keys.json")
    key = ks.provision(vd.device_id)
    K.write_key_file(key, vd.storage / "key.bin")
    return ks, key


def _no_key_in(key, blobs):
    for name, b in blobs:
        assert key not in b, name
        assert key.hex().encode() not in b, name
        assert key.hex().upper().encode() not in b, name


def test_signed_commands_on_the_virtual_device(tmp_path, capsys):
    with VirtualDevice(None, device_id="SIM-SEC1") as vd:
        ks, key = _provisioned(tmp_path, vd)
        cap = bytearray()
        with link.Link(vd.path) as ln:
            orig_w, orig_r = ln.ser.write, ln.ser.read
            ln.ser.write = lambda b: (cap.extend(b), orig_w(b))[1]
            ln.ser.read = lambda n=1: (lambda d: (cap.extend(d), d)[1])(orig_r(n))
            assert ln.command_auth(P.C_SET, {"phase": "II"}, ks)["set"] == ["phase"]
            assert ln.command(P.C_INFO)["phase"] == "II"
            # replay the exact bytes of a signed command
            c = ks.next_counter(vd.device_id)
            nonce = A.nonce_bytes(ln.command(P.C_INFO))          # the device's command window
            body = A.sign(key, vd.device_id, c, P.C_SET, b'{"phase":"III"}', nonce)
            assert ln.command(P.C_SET, payload=body)["set"] == ["phase"]
            with pytest.raises(OimonError, match="replayed command refused"):
                ln.command(P.C_SET, payload=body)
            # forged: another key; a MAC for another device; truncated; no auth header at all
            nonce = A.nonce_bytes(ln.command(P.C_INFO))
            bad = A.sign(os.urandom(32), vd.device_id, c + 5, P.C_SET, b'{"phase":"I"}', nonce)
            with pytest.raises(OimonError, match="authentication refused"):
                ln.command(P.C_SET, payload=bad)
            other = A.sign(key, "SIM-OTHER", c + 6, P.C_SET, b'{"phase":"I"}', nonce)
            with pytest.raises(OimonError, match="authentication refused"):
                ln.command(P.C_SET, payload=other)
            with pytest.raises(OimonError, match="bad request"):
                ln.command(P.C_SET, payload=body[:20])
            with pytest.raises(OimonError, match="bad request"):
                ln.command(P.C_SET, {"phase": "I"})
            # range-checked on the device too, whatever the host sent
            with pytest.raises(OimonError, match="out of range"):
                ln.command_auth(P.C_SET, {"limits": {"I": {"comp": 10}}}, ks)
            assert ln.command(P.C_INFO)["phase"] == "III"
            recs, st = ln.read_log(0)
        sec = [json.loads(r["payload"]) for r in recs if r["kind"] == P.K_SECURITY]
        assert sec[0] == {"provisioned": 1, "after_physical_reset": False}   # the key's pin
        sec = [s for s in sec if "refused" in s]
        reasons = [s["refused"] for s in sec]
        assert any("replay" in r for r in reasons) and reasons.count("bad MAC") == 2
        assert "malformed authenticated command" in reasons
        assert len(sec) == 6, sec
        assert st["corrupt"] == 0
        # the key is nowhere: wire bytes, device log, device files (but key.bin), output
        assert main(["--port", vd.path, "info", "--json"]) == 0
        out = capsys.readouterr()
        blobs = [("wire", bytes(cap)), ("stdout", out.out.encode()), ("stderr", out.err.encode())]
        for f in vd.storage.rglob("*"):
            if f.is_file() and f.name != "key.bin":
                blobs.append((str(f), f.read_bytes()))
        blobs += [("records", b"".join(r["payload"] for r in recs))]
        _no_key_in(key, blobs)


def test_no_key_on_device_refuses_and_logs(tmp_path):
    with VirtualDevice(None, device_id="SIM-SEC2") as vd:
        ks = K.Keystore(tmp_path / "keys.json")
        ks.provision(vd.device_id)                  # never copied to the device
        with link.Link(vd.path) as ln:
            with pytest.raises(OimonError, match="no key provisioned"):
                ln.command_auth(P.C_WIPE, {"confirm": "wipe"}, ks)
            assert ln.command(P.C_INFO)["key"] is False
            recs, _st = ln.read_log(0)
        assert [json.loads(r["payload"])["refused"] for r in recs
                if r["kind"] == P.K_SECURITY] == ["no key provisioned"]


def test_keys_stay_out_of_recordings_and_decode_output(tmp_path, capsys):
    from oimon import recording  # noqa: F401 - the recorder writes through it
    with VirtualDevice(None, device_id="SIM-SEC3") as vd:
        ks, key = _provisioned(tmp_path, vd)
        cap = bytearray()
        with link.Link(vd.path) as ln:
            orig_w = ln.ser.write
            ln.ser.write = lambda b: (cap.extend(b), orig_w(b))[1]
            ln.command_auth(P.C_RETIGHTEN, {"date": "2025-01-02", "torque": 12}, ks)
        rec = tmp_path / "r.oirec"
        assert main(["--port", vd.path, "--db", str(tmp_path / "db.sqlite"), "record",
                     "--duration", "0.5", "--out", str(rec)]) == 0
        capf = tmp_path / "cap.bin"
        capf.write_bytes(bytes(cap))
        assert main(["decode", str(capf)]) == 0
        out = capsys.readouterr()
        assert "retighten" in out.out and "counter=" in out.out
        blobs = [("out", out.out.encode()), ("err", out.err.encode())]
        for f in tmp_path.rglob("*"):
            if f.is_file() and f.name not in ("keys.json", "cap.bin"):
                blobs.append((str(f), f.read_bytes()))
        _no_key_in(key, blobs)
