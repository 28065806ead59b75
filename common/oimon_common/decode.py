# Host-side decoders of what the device sends (sample batches, gap records, log records, event
# snippets, T_LOG chunks) and the encoders tests use to build them. Shared code, MicroPython
# compatible (the firmware tests use it on the unix port), but the device never needs it: it is
# in no firmware manifest (firmware/manifest.py), so it never ships to the board. The layouts are
# protocol.py's (docs/protocol.md, docs/device-log.md).
import struct
try:
    from binascii import crc32
except ImportError:  # pragma: no cover
    from zlib import crc32
from oimon_common.protocol import (AXIAL_WIRE_SHIFT, GAP_BYTES, KIND_NAMES, LOG_HDR, RAW_BYTES,
                                   REC_HDR, REC_MAGIC, REC_TRL, SAMPLE_BYTES, SAMPLE_HDR,
                                   SNIP_HDR, pack_samples, rec_check, rec_fields)


def unpack_gap(payload):
    """Host side: (first, n, cause) of a T_GAP payload; ValueError if malformed."""
    if len(payload) != GAP_BYTES:
        raise ValueError("gap record of %d bytes" % len(payload))
    return struct.unpack_from("<IIB", payload, 0)


def pack_samples_bytes(first, rate, rows):
    """Host/tests: a T_SAMPLES payload from rows of (axial 0.1 N, M_AP, M_ML 0.01 N*m)."""
    b = bytearray(SAMPLE_HDR + SAMPLE_BYTES * len(rows))
    pack_samples(b, first, rate, len(rows))
    o = SAMPLE_HDR
    for a, m1, m2 in rows:
        struct.pack_into("<hhh", b, o, max(-32768, min(32767, a >> AXIAL_WIRE_SHIFT)),
                         max(-32768, min(32767, m1)), max(-32768, min(32767, m2)))
        o += SAMPLE_BYTES
    return bytes(b)


def unpack_samples(payload):
    """Host side: (first, rate, list of (axial_0p1N, m_ap_0p01Nm, m_ml_0p01Nm)) of a T_SAMPLES
    payload; raises ValueError if its length does not match n."""
    if len(payload) < SAMPLE_HDR:
        raise ValueError("short sample batch")
    t0, rate, n = struct.unpack_from("<IHH", payload, 0)
    if len(payload) != SAMPLE_HDR + SAMPLE_BYTES * n:
        raise ValueError("sample batch length %d does not match n=%d" % (len(payload), n))
    vals = struct.unpack_from("<%dh" % (3 * n), payload, SAMPLE_HDR)
    s = AXIAL_WIRE_SHIFT
    rows = [(vals[3 * i] << s, vals[3 * i + 1], vals[3 * i + 2]) for i in range(n)]
    return t0, rate, rows


def unpack_raw(payload):
    if len(payload) < SAMPLE_HDR:
        raise ValueError("short raw batch")
    t0, rate, n = struct.unpack_from("<IHH", payload, 0)
    if len(payload) != SAMPLE_HDR + RAW_BYTES * n:
        raise ValueError("raw batch length %d does not match n=%d" % (len(payload), n))
    rows = []
    p = SAMPLE_HDR
    for _ in range(n):
        r = []
        for _c in range(4):
            v = payload[p] | (payload[p + 1] << 8) | (payload[p + 2] << 16)
            if v & 0x800000:
                v -= 0x1000000
            r.append(v)
            p += 3
        rows.append(tuple(r))
    return t0, rate, rows


def parse_record(rec):
    """Host side: a whole record (bytes) -> dict(kind, kind_name, seq, t, payload), or
    ValueError."""
    rec = bytes(rec)
    if rec_check(rec, 0, len(rec)) != len(rec):
        raise ValueError("corrupt log record")
    kind, seq, t, p, ln = rec_fields(rec, 0)
    return {"kind": kind, "kind_name": KIND_NAMES.get(kind, str(kind)), "seq": seq, "t": t,
            "payload": rec[p:p + ln]}


def pack_record(kind, seq, t, payload):
    """Host/tests: one record as bytes (the device builds them in place, flashlog.Log)."""
    b = bytearray(REC_HDR + len(payload) + REC_TRL)
    struct.pack_into("<BBHII", b, 0, REC_MAGIC, kind, len(payload), seq, t)
    b[REC_HDR:REC_HDR + len(payload)] = payload
    c = crc32(bytes(b[:REC_HDR + len(payload)])) & 0xFFFFFFFF
    struct.pack_into("<I", b, REC_HDR + len(payload), c)
    return bytes(b)


def unpack_event(payload):
    """Host side: (head dict, snippet dict or None) of a K_EVENT payload; ValueError if bad."""
    import json
    payload = bytes(payload)
    if len(payload) < 2:
        raise ValueError("short event record")
    hl = payload[0] | (payload[1] << 8)
    if 2 + hl > len(payload):
        raise ValueError("event head overruns the record")
    head = json.loads(payload[2:2 + hl])
    rest = payload[2 + hl:]
    if not rest:
        return head, None
    if len(rest) < SNIP_HDR:
        raise ValueError("short snippet header")
    rate, pre, n, enc = struct.unpack_from("<HHHB", rest, 0)
    data = rest[SNIP_HDR:]
    rows = []
    if enc == 0:
        if len(data) != 6 * n:
            raise ValueError("snippet length does not match n")
        v = struct.unpack("<%dh" % (3 * n), data)
        rows = [(v[3 * i] << AXIAL_WIRE_SHIFT, v[3 * i + 1], v[3 * i + 2]) for i in range(n)]
    elif enc == 1:
        prev = [0, 0, 0]
        i = 0
        cur = [0, 0, 0]
        for _ in range(n):
            for c in range(3):
                if i >= len(data):
                    raise ValueError("snippet data truncated")
                b = data[i]
                if b == 0x80:
                    if i + 3 > len(data):
                        raise ValueError("snippet data truncated")
                    v = data[i + 1] | (data[i + 2] << 8)
                    if v & 0x8000:
                        v -= 0x10000
                    i += 3
                else:
                    v = prev[c] + (b - 256 if b & 0x80 else b)
                    i += 1
                prev[c] = v
                cur[c] = v
            rows.append((cur[0] << AXIAL_WIRE_SHIFT, cur[1], cur[2]))
        if i != len(data):
            raise ValueError("snippet has trailing bytes")
    else:
        raise ValueError("unknown snippet encoding %d" % enc)
    return head, {"rate": rate, "pre": pre, "n": n, "rows": rows}


def unpack_snippet(payload):
    """Host side: (event seq, priority, snippet dict or None) of a K_SNIPPET payload (an empty
    snippet: the capture was lost); ValueError if bad."""
    payload = bytes(payload)
    if len(payload) < 5:
        raise ValueError("short snippet record")
    ev, prio = struct.unpack_from("<IB", payload, 0)
    if len(payload) == 5:
        return ev, prio, None
    return ev, prio, unpack_event(b"\x02\x00{}" + payload[5:])[1]


def unpack_log_chunk(payload):
    """T_LOG payload -> (seq, total, off, bytes)."""
    if len(payload) < LOG_HDR:
        raise ValueError("short log chunk")
    seq, total, off = struct.unpack_from("<IHH", payload, 0)
    if off + len(payload) - LOG_HDR > total:
        raise ValueError("log chunk beyond its record")
    return seq, total, off, bytes(payload[LOG_HDR:])
