"""Benchmarks of the device log, the link protocol and the parsers (each returns a dict):

  power_cuts(n)             power-cut soak of firmware/flashlog.py on the i386 MicroPython
  wire_bytes_per_sample()   stream bytes per calibrated sample, measured from real frames
  event_record_bytes()      bytes of an event's 3 s snippet record (sim loads, MicroPython)
  retention()               days each log ring keeps on a heavy day, from the on-flash format
  fuzz_firmware(n)          mutated/random frames into the firmware parser (MicroPython)
  fuzz_commands(n)          garbled command payloads into cmds.handle (MicroPython)
  fuzz_host(n)              mutated/random frames into the host decoder (CPython)

`python -m oimon_sim.bench_log powercut|fuzz|wire|retention|all [options]` prints JSON and exits 1
when a check fails (`make powercut-soak`, `make fuzz`)."""
import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from oimon_common import events as E
from oimon_common import protocol as P
from oimon_common import decode as D
from oimon_sim import mp, paths
from oimon_sim import scenarios as S

FW_TESTS = paths.FW_TESTS
SHIMS = paths.SHIMS


class BenchError(RuntimeError):
    pass


def _mp_call(module, function, *args, timeout=3600, **env):
    """module.function(*args) (a firmware test module, int args, giving a dict) on MicroPython
    with the firmware tests on the path (sim/mpy/scripts/call.py)."""
    p = mp.run([str(paths.script("call")), module, function] + [str(int(a)) for a in args],
               extra_path=[SHIMS, FW_TESTS], timeout=timeout, **env)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise BenchError("MicroPython run failed:\n%s%s" % (p.stdout[-2000:], p.stderr[-2000:]))


# --- device log ------------------------------------------------------------------------------
def power_cuts(n=300, seed=12345):
    t = time.monotonic()
    r = _mp_call("mp_flashlog", "powercut_soak", n, seed)
    r["seconds"] = round(time.monotonic() - t, 1)
    r["ok"] = r["records_lost"] == 0 and r["corrupt_records_returned"] == 0 and r["power_cuts"] >= n
    return r


def _sim_loads(kind, seconds=3.0, seed=1):
    fn = {"walk": S.walk, "overload": S.overload, "fall": S.fall}[kind]
    load = fn(max(seconds, 20.0), seed=seed)[0]
    rng = np.random.default_rng(seed)
    load = load + rng.normal(0, 1, load.shape) * np.array(S.NOISE)
    return np.round(load).astype(np.int32)


def event_record_bytes(kinds=("walk", "overload", "fall")):
    out = {}
    with tempfile.TemporaryDirectory(prefix="oimon-bench-") as d:
        for k in kinds:
            load = _sim_loads(k)
            peak = max(1500, min(int(np.argmax(np.abs(load[:, 0]))), len(load) - 2600))
            f = Path(d) / ("%s.i32" % k)
            f.write_bytes(load[peak - 1500:peak + 2500].astype("<i4").tobytes())   # trigger at the peak
            p = mp.run([str(paths.script("bench_snip")), str(f), "1500"], extra_path=[SHIMS, FW_TESTS])
            line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                raise BenchError("snippet bench failed: %s" % (p.stdout + p.stderr)[-2000:])
            out[k] = json.loads(line[0][7:])
    return out


# --- retention (issue 14: >= 100 days of events, daily summaries, exercise sessions) --------
# A heavy day (docs/device-log.md "Retention"): 50 events (the figure), of which 5 are
# falls or the worst overloads (snippets in the "hi" ring), 10 alarm records, 1 daily summary,
# 2 exercise sessions, 1 security, 0.5 config records, 5 acquisition-gap records.
HEAVY_DAY = {"events": 50, "hi_events": 5, "alarms": 10, "summaries": 1, "sessions": 2,
             "security": 1, "config": 0.5, "gaps": 5}
PART_BLOCKS = 1408          # firmware/flashlog.py PART_BLOCKS: 5.5 MiB of the 8 MB module
BLOCK, HDR, FOVH, WBUF = 4096, 24, 7, 1024   # firmware/flashlog.py: block, block header,
                                             # fragment overhead, fragment buffer
REC_OVH = 16                # record header 12 + CRC 4 (protocol.py REC_HDR, REC_TRL)


def _json_len(obj):
    return len(json.dumps(obj).encode())       # MicroPython's json.dumps has the same separators


def small_record_bytes():
    """Payload sizes of the small records from the firmware's own dict layouts with the largest
    realistic values (oimon_common.events for events, app.daily_summary, exercise.summary)."""
    def big(fields):                  # every field at a large realistic value (9 digits, signed)
        return [-123456789] * len(fields)
    ovl = E.event(123456789, 2, big(E.OVL_FIELDS))
    fall = E.event(123456789, 4, big(E.FALL_FIELDS))
    evs = []
    for e in (ovl, fall):
        e = dict(e)
        e.update({"t": 1767225600, "kind": e["event"], "sample": e["n"]})
        evs.append(2 + _json_len(e) - 1 + len(',"snip":4294967295}'))
    daily = {"kind": "daily", "day": 20454, "partial": False, "bw": 7355, "rate": 1000,
             "hist": [123456789] * 11}
    for k in E.ACT_FIELDS:
        daily[k] = 123456789
    sess = {"kind": "exercise", "t": 1767225600, "day": 20454, "date": "2026-01-01", "n": 2,
            "spd": 3, "minutes": 15, "level": 4, "target_kg": 37.5, "target": 3678,
            "band_pct": 10, "margin_pct": 5, "dur_ms": 900000, "loaded_ms": 654321,
            "in_ms": 543210, "under_ms": 65432, "over_ms": 45678, "in_pct": 83, "peak": 4567,
            "mean": 3650, "over_n": 12, "alarm_n": 3, "complete": True}
    return {"event_head": max(evs), "alarm": len(b'{"raised":4}'), "summary": _json_len(daily),
            "session": _json_len(sess), "security": 120, "config": 220,
            "gap": len(b'{"first":123456789,"lost":12345}')}


def _flash_bytes(payload):
    """Bytes a record of `payload` bytes takes in a ring: the record and 7 bytes per fragment
    (fragments hold at most 1017 bytes and end at block ends)."""
    rec = payload + REC_OVH
    frags = 1 + rec // (WBUF - FOVH) + rec // (BLOCK - HDR)    # <= 1017 B each, and splits
                                                               # at block ends
    return rec + frags * FOVH


def retention(blocks=PART_BLOCKS, day=HEAVY_DAY, snippet_bytes=None, small=None):
    """Days each ring keeps at the given day, from the on-flash format: usable blocks (a ring's
    blocks minus its erased reserve minus the head being filled) x (4096 - 24 header) / bytes a
    day in that ring. Pure arithmetic on the format; snippet sizes measured on MicroPython."""
    src = (paths.FIRMWARE / "flashlog.py").read_text()    # (MicroPython code: read, not imported)
    res_max = int(src.split("RESERVE_MAX = const(")[1].split(")")[0])
    j = max(2, blocks // 2)                   # firmware/flashlog.py layout()
    hi = max(2, blocks * 3 // 8)
    lo = blocks - j - hi
    small = small or small_record_bytes()
    if snippet_bytes is None:
        eb = event_record_bytes(("walk", "overload", "fall"))
        snippet_bytes = max(v["record_bytes"] for v in eb.values()) - REC_OVH
    per_day = {
        "journal": day["events"] * _flash_bytes(small["event_head"])
        + day["alarms"] * _flash_bytes(small["alarm"])
        + day["summaries"] * _flash_bytes(small["summary"])
        + day["sessions"] * _flash_bytes(small["session"])
        + day["security"] * _flash_bytes(small["security"])
        + day["config"] * _flash_bytes(small["config"])
        + day["gaps"] * _flash_bytes(small["gap"]),
        "hi": day["hi_events"] * _flash_bytes(snippet_bytes),
        "lo": (day["events"] - day["hi_events"]) * _flash_bytes(snippet_bytes),
    }
    out = {"blocks": blocks, "flash_mib": blocks * BLOCK / 2 ** 20, "day": day,
           "record_payload_bytes": dict(small, snippet=snippet_bytes), "rings": {}}
    for name, n in (("journal", j), ("hi", hi), ("lo", lo)):
        reserve = max(2, min(res_max, n // 8))
        usable = (n - reserve - 1) * (BLOCK - HDR)
        out["rings"][name] = {"blocks": n, "reserve": reserve, "usable_bytes": usable,
                              "bytes_per_day": int(per_day[name]),
                              "days": round(usable / per_day[name], 1)}
    out["days_events_summaries_sessions"] = out["rings"]["journal"]["days"]
    out["days_snippets_falls_worst"] = out["rings"]["hi"]["days"]
    out["days_snippets_other"] = out["rings"]["lo"]["days"]
    out["ok"] = out["days_events_summaries_sessions"] >= 100
    return out


# --- protocol --------------------------------------------------------------------------------
def wire_bytes_per_sample(batch=50, seconds=10.0):
    """Frames built by the firmware's Encoder on MicroPython from simulated walking loads (the
    same bytes the device streams), checked by decoding them on CPython."""
    load = _sim_loads("walk", seconds)
    wire = np.stack([np.clip(load[:, 0] >> 1, -32768, 32767), np.clip(load[:, 1], -32768, 32767),
                     np.clip(load[:, 2], -32768, 32767)], axis=1).astype("<i2")
    with tempfile.TemporaryDirectory(prefix="oimon-bench-") as d:
        (Path(d) / "walk.i16").write_bytes(wire.tobytes())
        p = mp.run([str(paths.script("bench_wire")), str(Path(d) / "walk.i16"), str(int(batch))])
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        raise BenchError("wire bench failed: %s" % (p.stdout + p.stderr)[-2000:])
    r = json.loads(line[0][7:])
    # the same frames from CPython's Encoder, decoded: equal length and content
    e = P.Encoder()
    total = 0
    dec = P.Decoder()
    n = 0
    for i in range(0, r["samples"], batch):
        P.pack_samples(e.payload, i, 1000, batch)
        e.payload[P.SAMPLE_HDR:P.SAMPLE_HDR + 6 * batch] = wire[i:i + batch].tobytes()
        fr = bytes(e.finish(P.T_SAMPLES, P.SAMPLE_HDR + 6 * batch))
        total += len(fr)
        for _t, _s, pl in dec.feed(fr):
            n += len(D.unpack_samples(pl)[2])
    if total != r["bytes"] or n != r["samples"]:
        raise BenchError("MicroPython and CPython frames differ")
    r["batch"] = batch
    r["wire_bytes_per_sample"] = round(r["bytes"] / r["samples"], 3)
    return r


# --- fuzzing ---------------------------------------------------------------------------------
def fuzz_firmware(n=100000, seed=7):
    t = time.monotonic()
    r = _mp_call("mp_protocol", "fuzz_decoder", n, seed)
    r["seconds"] = round(time.monotonic() - t, 1)
    r["ok"] = r["frames"] >= n
    return r


def fuzz_commands(n=20000, seed=99):
    t = time.monotonic()
    r = _mp_call("mp_cmds", "garbled_commands", n, seed)
    r["seconds"] = round(time.monotonic() - t, 1)
    r["ok"] = r["commands"] >= n
    return r


def _mutate(rng, b):
    b = bytearray(b)
    for _ in range(1 + rng.randrange(3)):
        if not b:
            break
        j = rng.randrange(len(b))
        op = rng.randrange(6)
        if op == 0:
            b[j] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[j] = rng.randrange(256)
        elif op == 2:
            del b[j]
        elif op == 3:
            b.insert(j, rng.randrange(256))
        elif op == 4:
            b.insert(j, 0)
        else:
            b[j:j] = rng.randbytes(rng.randrange(40))
    return bytes(b)


def fuzz_host(n=1000000, seed=1, chunk=1000, deadline_s=None):
    """n frames (valid, mutated, junk-prefixed, merged) into oimon_common.protocol.Decoder in random
    read sizes. Fails (BenchError) on a crash, a corrupt frame delivered, a missed intact frame
    (no resync) or a chunk counted neither good nor bad."""
    rng = random.Random(seed)
    enc = P.Encoder()
    dec = P.Decoder()
    types = (P.T_SAMPLES, P.T_RAW, P.T_EVENT, P.T_RESP, P.T_LOG, P.T_STATUS, 0x77)
    sent = mutated = junk = 0
    t0 = time.monotonic()
    while sent < n:
        dec.reset_seq()
        g0, b0 = dec.good, dec.bad
        stream = bytearray()
        want = {}
        intact = 0
        last_intact = False
        for _ in range(chunk):
            ftype = types[rng.randrange(len(types))]
            pl = rng.randbytes(rng.randrange(64))
            fr = bytes(enc.frame(ftype, pl))
            seq = (enc.seq - 1) & 0xFFFF
            want[seq] = (ftype, pl)
            r = rng.randrange(10)
            ok = True
            if r == 0:
                fr = _mutate(rng, fr[:-1]) + b"\x00"
                mutated += 1
                ok = False
            elif r == 1:
                fr = rng.randbytes(rng.randrange(80)) + b"\x00" + fr
                junk += 1
            elif r == 2 and last_intact:
                del stream[-1]                  # delimiter lost: merged with the previous frame
                intact -= 1
                mutated += 1
                ok = False
            intact += ok
            last_intact = ok
            stream += fr
            sent += 1
        chunks = sum(1 for c in bytes(stream).split(b"\x00") if c)
        i = 0
        got = []
        while i < len(stream):
            k = 1 + rng.randrange(512)
            got += dec.feed(stream[i:i + k])
            i += k
        for ftype, seq, pl in got:
            if want.get(seq) != (ftype, pl):
                raise BenchError("a corrupt frame got through (seq %d)" % seq)
        if dec.good - g0 < intact:
            raise BenchError("missed %d intact frames: no resync" % (intact - (dec.good - g0)))
        if (dec.good - g0) + (dec.bad - b0) != chunks:
            raise BenchError("a chunk was counted neither good nor bad")
        if deadline_s and time.monotonic() - t0 > deadline_s:
            raise BenchError("hang: %d frames took more than %d s" % (sent, deadline_s))
    return {"frames": sent, "mutated": mutated, "junk_runs": junk, "good": dec.good,
            "bad": dec.bad, "gaps": dec.gaps, "crashes": 0, "hangs": 0,
            "seconds": round(time.monotonic() - t0, 1), "ok": True}


def run(cuts=10000, fuzz=True):
    """`make bench`: the flat figures for build/bench.json."""
    pc = power_cuts(cuts)
    w = wire_bytes_per_sample()
    rt = retention()
    out = {"power_cuts": pc["power_cuts"], "records_lost": pc["records_lost"],
           "corrupt_records_returned": pc["corrupt_records_returned"],
           "wire_bytes_per_sample": w["wire_bytes_per_sample"], "wire_batch": w["batch"],
           "event_record_bytes": rt["record_payload_bytes"]["snippet"] + REC_OVH}
    out.update(retention_figures(rt))
    if fuzz:
        ff, fc, fh = fuzz_firmware(), fuzz_commands(), fuzz_host()
        out.update({"fuzz_firmware_frames": ff["frames"], "fuzz_command_payloads": fc["commands"],
                    "fuzz_host_frames": fh["frames"], "fuzz_crashes": 0, "fuzz_hangs": 0,
                    "fuzz_ok": bool(ff["ok"] and fc["ok"] and fh["ok"])})
    return out


def retention_figures(rt=None):
    """The flat `log_retention_days_*` figures for build/bench.json."""
    rt = rt or retention()
    return {"log_retention_days_events": rt["days_events_summaries_sessions"],
            "log_retention_days_summaries": rt["days_events_summaries_sessions"],
            "log_retention_days_sessions": rt["days_events_summaries_sessions"],
            "log_retention_days_snippets_hi": rt["days_snippets_falls_worst"],
            "log_retention_days_snippets_lo": rt["days_snippets_other"],
            "log_partition_mib": rt["flash_mib"]}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m oimon_sim.bench_log")
    ap.add_argument("what", choices=["powercut", "fuzz", "wire", "budget", "retention", "all"])
    ap.add_argument("--cuts", type=int, default=10000)
    ap.add_argument("--host", type=int, default=1000000)
    ap.add_argument("--firmware", type=int, default=100000)
    ap.add_argument("--commands", type=int, default=20000)
    a = ap.parse_args(argv)
    out = {}
    try:
        if a.what in ("powercut", "all"):
            out["power_cut_soak"] = power_cuts(a.cuts)
        if a.what in ("fuzz", "all"):
            out["fuzz_firmware"] = fuzz_firmware(a.firmware)
            out["fuzz_commands"] = fuzz_commands(a.commands)
            out["fuzz_host"] = fuzz_host(a.host)
        if a.what in ("wire", "all"):
            out["wire"] = wire_bytes_per_sample()
        if a.what in ("budget", "retention", "all"):
            out["retention"] = retention()
    except BenchError as e:
        print(json.dumps(out, indent=1))
        print("FAILED: %s" % e, file=sys.stderr)
        return 1
    print(json.dumps(out, indent=1))
    bad = [k for k, v in out.items() if isinstance(v, dict) and v.get("ok") is False]
    if bad:
        print("FAILED: %s" % ", ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
