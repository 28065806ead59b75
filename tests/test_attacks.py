"""Issue 12: the attack suite. An attacker with a USB cable, the `oimon` command and mpremote
(and, on a development board, write access to the device's files) tries every case of the issue
and more; each must be refused, the monitor must go on sampling, and the limits the prosthetist
set must stay. Prints "attack suite: N of N refused" (also on `make test`'s output)."""
import json
import sys
import time
from binascii import crc32

import pytest

from oimon import auth as A
from oimon import keystore as K
from oimon import link
from oimon.cli import main
from oimon.errors import OimonError
from oimon_common import protocol as P
from oimon_sim.device import VirtualDevice

RESULTS = []


def case(name, refused, detail=""):
    RESULTS.append((name, bool(refused), detail))


def _sampling(ln):
    a = ln.command(P.C_INFO)["samples"]
    time.sleep(0.25)
    return ln.command(P.C_INFO)["samples"] > a


def _expect_refusal(fn, *match):
    try:
        fn()
    except (OimonError, SystemExit) as e:
        return not match or any(m in str(e) for m in match)
    return False


@pytest.fixture
def prosthetist(tmp_path):
    """A virtual device the clinic provisioned: key pinned, phase II, 80 kg."""
    storage = tmp_path / "dev"
    ks = K.Keystore(tmp_path / "clinic" / "keys.json")
    vd = VirtualDevice(None, storage=storage, device_id="SIM-ATK")
    key = ks.provision(vd.device_id)
    K.write_key_file(key, storage / "key.bin")
    vd.start()
    with link.Link(vd.path) as ln:
        ln.command_auth(P.C_SET, {"phase": "II", "body_weight_kg": 80}, ks)
    yield vd, ks, key, tmp_path
    vd.stop()


def _restart(vd):
    vd.stop()
    vd.start()
    time.sleep(0.3)


def test_attack_suite(prosthetist, capsys):
    vd, ks, key, tmp = prosthetist
    own = tmp / "own-keys.json"
    port = vd.path
    with link.Link(port) as ln:
        lim0 = ln.command(P.C_INFO)["limits"]
        # 1. the unauthenticated release command
        case("C_REPL without a key", _expect_refusal(lambda: ln.command(P.C_REPL), "authentication"))
        # 2. the three bytes 00 0D 03, a terminal's Ctrl-C, mpremote's break-in + raw REPL
        ln.ser.write(b"\x00\x0d\x03")
        ln.ser.write(b"\x03\x03\r\x03\x03\r\x01")
        time.sleep(0.3)
        ln.ser.read(65536)
        case("00 0D 03 / Ctrl-C / break-in", _sampling(ln))
        # 3. an unsigned maintenance request dressed as the signed code
        case("C_MAINT without auth header",
             _expect_refusal(lambda: ln.command(P.C_MAINT, {"seconds": 900}), "bad request"))
        # 4. a signed command from another keystore (the patient's own key)
        oks = K.Keystore(own)
        oks.provision(vd.device_id)
        case("config set with the patient's own key",
             _expect_refusal(lambda: ln.command_auth(P.C_SET, {"phase": "full"}, oks), "bad MAC"))
        # 5. limits beyond the failure envelope, even with the right key
        case("comp=3000 N (device)", _expect_refusal(
            lambda: ln.command_auth(P.C_SET, {"limits": {"full": {"comp": 30000}}}, ks), "range"))
        case("moment=140 N*m (device)", _expect_refusal(
            lambda: ln.command_auth(P.C_SET, {"limits": {"full": {"moment": 14000}}}, ks), "range"))
        # 6. replay of a captured signed command
        info = ln.command(P.C_INFO)
        c = ks.next_counter(vd.device_id, info["auth_counter"])
        body = A.sign(key, vd.device_id, c, P.C_RETIGHTEN, b'{"date":"2026-01-02"}',
                      A.nonce_bytes(info))
        ln.command(P.C_RETIGHTEN, payload=body)
        case("replay of a captured command", _expect_refusal(
            lambda: ln.command(P.C_RETIGHTEN, payload=body), "replay"))
        # 7. a captured command never delivered, used in a later window (higher counter)
        info = ln.command(P.C_INFO)
        c = ks.next_counter(vd.device_id, info["auth_counter"]) + 50
        held = A.sign(key, vd.device_id, c, P.C_SET, b'{"phase":"full"}', A.nonce_bytes(info))
        # 8. the patient moves the clock 150 days back (retightening looks not due), 10 days on
        now = int(time.time())
        case("clock 150 days back", _expect_refusal(
            lambda: ln.command(P.C_TIME, {"t": now - 150 * 86400}), "authentication"))
        case("clock 10 days forward", _expect_refusal(
            lambda: ln.command(P.C_TIME, {"t": now + 10 * 86400}), "authentication"))
        # 9. a MAC for another device id
        info = ln.command(P.C_INFO)
        other = A.sign(key, "SIM-OTHER", info["auth_counter"] + 100, P.C_SET, b'{"phase":"full"}',
                       A.nonce_bytes(info))
        case("command signed for another device", _expect_refusal(
            lambda: ln.command(P.C_SET, payload=other), "authentication"))
        # 10. a flood of garbage frames and stray bytes
        for i in range(200):
            ln.write_frame(P.T_CMD, bytes((i % 256,)) + bytes(range(i % 60)))
        ln.ser.write(bytes(range(256)) * 8)
        time.sleep(0.3)
        ln.ser.read(1 << 20)
        case("garbage flood", _sampling(ln))
    # 11. `oimon --keystore OWN deploy`: refused before anything is copied
    rc = main(["--port", port, "--keystore", str(own), "deploy", "--no-reset"])
    err = capsys.readouterr().err
    case("oimon --keystore OWN deploy", rc != 0 and ("bad MAC" in err or "keystore" in err)
         and (vd.storage / "key.bin").read_bytes() == key, err.strip()[-120:])
    rc = main(["--port", port, "--keystore", str(tmp / "empty.json"), "deploy", "--no-reset"])
    err = capsys.readouterr().err
    case("oimon deploy with a keystore without this device", rc != 0 and "physical" in err,
         err.strip()[-120:])
    # 12. `oimon config set` beyond the envelope is refused by the host too (exit 2)
    rc = main(["--port", port, "--keystore", str(ks.path), "config", "set", "phase=full",
               "comp=3000", "moment=140"])
    capsys.readouterr()
    case("oimon config set comp=3000 moment=140 (host)", rc == 2)
    # 13. a device reporting counter 2**32-2 must not exhaust the host keystore
    before = K.Keystore(ks.path).devices[vd.device_id]["counter"]
    try:
        K.Keystore(ks.path).next_counter(vd.device_id, 2 ** 32 - 2)
        refused = False
    except OimonError:
        refused = True
    case("device reports counter 2^32-2", refused and
         K.Keystore(ks.path).devices[vd.device_id]["counter"] == before)
    # 14. after a reboot the held command's window is gone
    _restart(vd)
    with link.Link(vd.path) as ln:
        case("held command after a reboot", _expect_refusal(
            lambda: ln.command(P.C_SET, payload=held), "authentication"))
        case("monitor after the attacks: limits unchanged",
             ln.command(P.C_INFO)["limits"] == lim0 and _sampling(ln))
    # --- with write access to the board's files (mpremote on a development board) ---------
    vd.stop()
    st = vd.storage
    # 15. key.bin replaced: the attacker's key is refused (the pin), limits stay
    good_key = (st / "key.bin").read_bytes()
    (st / "key.bin").write_bytes(bytes(32 * [0xA5]))
    mine = K.Keystore(tmp / "mine.json")
    mine.devices[vd.device_id] = {"key": bytes(32 * [0xA5]), "counter": 0}
    vd.start()
    time.sleep(0.3)
    with link.Link(vd.path) as ln:
        case("key.bin replaced", _expect_refusal(
            lambda: ln.command_auth(P.C_SET, {"phase": "full"}, mine), "key refused"))
        case("key.bin replaced: limits unchanged", ln.command(P.C_INFO)["limits"] == lim0)
    vd.stop()
    (st / "key.bin").write_bytes(good_key)
    # 16. config.json with a valid CRC (phase full, 3000 N): tampered -> phase I, not full
    body = json.dumps({"phase": "full", "limits": {"full": {"comp": 30000}}}).encode()
    (st / "config.json").write_bytes(body + b"\n%08x\n" % (crc32(body) & 0xFFFFFFFF))
    vd.start()
    time.sleep(0.3)
    with link.Link(vd.path) as ln:
        i = ln.command(P.C_INFO)
        case("config.json with a valid CRC", i["phase"] == "I" and i["config_state"] == "tampered"
             and any("configuration" in t for t in i["technical"]))
        case("signed command while the config is tampered", _expect_refusal(
            lambda: ln.command_auth(P.C_SET, {"phase": "full"}, ks), "re-provision"))
    vd.stop()
    # 17. one flipped bit in config.json: phase I, never the looser defaults
    raw = bytearray((st / "config.json").read_bytes())
    raw[5] ^= 0x01
    (st / "config.json").write_bytes(bytes(raw))
    vd.start()
    time.sleep(0.3)
    with link.Link(vd.path) as ln:
        i = ln.command(P.C_INFO)
        case("config.json bit flip", i["phase"] == "I" and i["limits"]["comp"] < 5000)
        # the prosthetist re-provisions with the clinic's key: phase I, then sets again
        ln.command_auth(P.C_REPROVISION, {"confirm": "reprovision"}, ks)
        ln.command_auth(P.C_SET, {"phase": "II"}, ks)
        case("clinic recovers with its key", ln.command(P.C_INFO)["phase"] == "II")
    # 18. the replay-counter store deleted with config intact: refused as tampered
    vd.stop()
    for p in ("auth.a", "auth.b"):
        (st / p).write_bytes(b"x")
    vd.start()
    time.sleep(0.3)
    with link.Link(vd.path) as ln:
        i = ln.command(P.C_INFO)
        case("security store corrupted", i["phase"] == "I" and i["key_state"] == "store corrupt"
             and _expect_refusal(lambda: ln.command_auth(P.C_SET, {"phase": "full"}, ks)))
    # the clinic sees the attempts: `oimon sync` lists them, the database keeps them
    from oimon import db
    dbp = tmp / "clinic.sqlite"
    capsys.readouterr()
    assert main(["--port", vd.path, "--db", str(dbp), "sync", "--all"]) == 0
    out = capsys.readouterr().out
    tamper = db.tamper_attempts(db.connect(str(dbp)), vd.device_id)
    case("tamper attempts reported by oimon sync", "TAMPER ATTEMPTS" in out and len(tamper) >= 5,
         out[-200:])
    n_ok = sum(1 for _n, ok, _d in RESULTS if ok)
    lines = ["  %s %s%s" % ("refused" if ok else "ACCEPTED", n, " (%s)" % d if d and not ok else "")
             for n, ok, d in RESULTS]
    summary = "attack suite: %d of %d refused" % (n_ok, len(RESULTS))
    with capsys.disabled():
        sys.stdout.write("\n" + "\n".join(lines) + "\n" + summary + "\n")
    assert n_ok == len(RESULTS), summary + "\n" + "\n".join(lines)
