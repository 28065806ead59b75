"""oimon sync finds every gap in the device log's sequence, stores it in log_gaps and says it in
one line; snippets (K_SNIPPET) attach to their event; K_LOST reports mark refused records."""
import json

from oimon import db
from oimon.commands import sync as S
from oimon_common import protocol as P
from oimon_common import decode as D

T0 = 1772323200          # 2026-03-01 00:00 UTC
DAY = 86400


class FakeLink:
    """The two calls pull() makes, over records built as the device builds them."""

    def __init__(self, records, device_id="OIM-GAPS"):
        self.records = records
        self.device_id = device_id

    def command(self, cmd, args=None):
        assert cmd == P.C_INFO
        return {"device_id": self.device_id}

    def read_log(self, since=0):
        out = [D.parse_record(b) for s, b in self.records if s > since]
        return out, {"corrupt": 0}


def _rec(seq, kind, payload, t):
    return seq, D.pack_record(kind, seq, t, payload)


def _event(seq, t, snip=None):
    head = {"kind": "overload_start", "event": "overload_start", "sample": seq * 1000, "t": t}
    if snip:
        head["snip"] = snip
    h = json.dumps(head).encode()
    return _rec(seq, P.K_EVENT, bytes((len(h) & 0xFF, len(h) >> 8)) + h, t)


def _snippet(seq, ev, t, n=3):
    body = bytes([0, 0, 0, 0, 0, 0]) * n
    pl = ev.to_bytes(4, "little") + b"\x01" + (1000).to_bytes(2, "little") + \
        (1).to_bytes(2, "little") + n.to_bytes(2, "little") + b"\x00" + body
    return _rec(seq, P.K_SNIPPET, pl, t)


def test_gaps_found_stored_and_said_in_one_line(tmp_path, capsys):
    con = db.connect(tmp_path / "db.sqlite")
    recs = [_rec(s, P.K_ALARM, b'{"raised":1}', T0 + s) for s in range(1, 11)]
    n = S.pull(con, FakeLink(recs))
    assert n["records"] == 10 and n["gaps"] == []
    # the device rotated #11..#2210 away before the next sync; one snippet (#2215) thinned;
    # #2300..#2304 refused by a full log (the device's K_LOST report says so)
    recs = [_event(2211, T0 + 20 * DAY, snip=2212), _snippet(2212, 2211, T0 + 20 * DAY)]
    recs += [_rec(s, P.K_ALARM, b'{"raised":1}', T0 + 20 * DAY + s) for s in range(2213, 2214)]
    recs += [_event(2214, T0 + 21 * DAY, snip=2215)]
    recs += [_rec(s, P.K_ALARM, b"{}", T0 + 21 * DAY + s) for s in range(2216, 2300)]
    recs += [_rec(2305, P.K_LOST, b'{"lost":5,"from":2300,"to":2304,"dropped":5}', T0 + 22 * DAY)]
    n = S.pull(con, FakeLink(recs))
    gaps = db.log_gaps(con, "OIM-GAPS")
    assert [(g["first_seq"], g["last_seq"], g["n"], g["cause"]) for g in gaps] == [
        (11, 2210, 2200, "rotated"), (2215, 2215, 1, "snippets"), (2300, 2304, 5, "refused")]
    assert gaps[0]["t_before"] == T0 + 10 and gaps[0]["t_after"] == T0 + 20 * DAY
    assert n["lost"] == 2205
    line = S.gap_line(n["gaps"])
    assert "LOST 2205 log records in 2 gaps between #11 (2026-03-01) and #2304" in line, line
    assert "1 event snippet thinned" in line and "\n" not in line
    # the snippet is on its event; the thinned one's event has none
    evs = {json.loads(d)["log_seq"]: json.loads(d) for (d,) in
           con.execute("SELECT data FROM event")}
    assert evs[2211]["snippet"]["n"] == 3 and "snippet" not in evs[2214]
    # again: nothing new, no gap stored twice
    n = S.pull(con, FakeLink(recs))
    assert n["records"] == 0 and n["gaps"] == [] and len(db.log_gaps(con)) == 3


def test_gap_before_the_first_sync_and_after_a_reconnect(tmp_path):
    con = db.connect(tmp_path / "db.sqlite")
    recs = [_rec(s, P.K_SUMMARY, b'{"kind":"x"}', T0 + s * DAY) for s in range(500, 503)]
    n = S.pull(con, FakeLink(recs))
    assert [(g["first_seq"], g["last_seq"], g["cause"]) for g in n["gaps"]] == [(1, 499, "rotated")]
    assert n["gaps"][0]["t_before"] is None
    assert "between #1 (" in S.gap_line(n["gaps"])


def test_find_gaps_without_a_clock():
    g = S.find_gaps([{"seq": 5, "t": 0}, {"seq": 9, "t": 0}], 0)
    assert [(x["first_seq"], x["last_seq"], x["cause"]) for x in g] == [(1, 4, "rotated"),
                                                                         (6, 8, "lost")]
    assert "(?)" in S.gap_line(g)


def test_schema_has_log_gaps(tmp_path):
    con = db.connect(tmp_path / "db.sqlite")
    cols = [r[1] for r in con.execute("PRAGMA table_info(log_gaps)")]
    assert cols[:4] == ["id", "device_id", "first_seq", "last_seq"] and "cause" in cols


def test_events_lists_the_gaps(tmp_path, capsys):
    from oimon.cli import main
    dbp = tmp_path / "db.sqlite"
    con = db.connect(dbp)
    S.pull(con, FakeLink([_rec(s, P.K_ALARM, b"{}", T0 + s) for s in (1, 2, 50)]))
    con.close()
    assert main(["--db", str(dbp), "events"]) == 0
    out = capsys.readouterr().out
    assert "LOG GAP" in out and "47 log records #3-#49 (lost)" in out, out
