# Runs the firmware's main loop (app.Device, unchanged) under the timing-faithful device model
# (OIMON_VCLOCK=1: sim/mpy/vclock.py) for a plan of model time and prints one JSON line of
# figures. Used by tests/firmware/mp_timing.py and sim/oimon_sim/bench_timing.py.
#   micropython timing_run.py PLAN_JSON
# PLAN: {"duration": s, "stream": "off"|"cal"|"raw" (from t=0), "host": [[t_s, "none"|"reading"|
#   "held"], ...], "sync": [t_s, ...] (at t a whole `oimon sync`: C_LOG from seq 0, then from
#   the answer's "last" while it says "more", as host/oimon/link.py read_log does), "prefill": n
#   (n records of 120-400 B in the log before sampling starts), "commands": [[t_s, code, "JSON"],
#   ...] (patient commands, e.g. C_EXERCISE), "gc_mark": bytes (preset app's planned-collection
#   mark), "costfs": 0|1 (today's
#   flashlog on littlefs costs), "count0": n (preset app/driver counters), "window_s": s}
import sys
import gc
import json
import micropython
import vclock
import vlink
import hal
import app
from oimon_common import protocol as P

plan = json.loads(sys.argv[1])
CLK = vclock.CLOCK
LINK = vlink.LINK
MODES = {"none": vlink.HOST_NONE, "reading": vlink.HOST_READING, "held": vlink.HOST_HELD}

if plan.get("costfs"):
    import flashlog_littlefs             # today's (littlefs) log: imported before Device() so that
    import vfs_cost                      # its code is in the heap before the buffers are

dev = app.Device()
# what a reading host received, for the plan's "dump": made after the firmware is loaded
LINK.capture(int(__import__("os").getenv("OIMON_VLINK_CAPTURE") or 0))
if plan.get("costfs"):
    dev.log = None                       # one log in memory, as on the board
    gc.collect()
    dev.log = flashlog_littlefs.Log(hal.STORAGE, dev.snip, fs=vfs_cost.CostFS())
    dev.src.restart()                    # that was boot too
# the collections of boot (the log's recovery tables, gc.collect() in flashlog.Log, before the
# ADC starts) are boot time, not a pause while sampling: the model's allocation baseline starts
# here (else vclock charges that drop as a GC pause at its first check, after sampling began)
pre = plan.get("prefill", 0)
if pre:
    # a log with history: n summary/event records (as 3 months of events and days would leave),
    # written and made durable before sampling starts
    body = b'{"kind":"daily","pad":"' + b"x" * 380 + b'"}'
    for i in range(pre):
        n = 120 + (i * 37) % 280
        dev.log.append(P.K_SUMMARY if i % 3 else P.K_EVENT, body[:n - 2] + b'"}')
        if i % 16 == 15:
            dev.log.sync()
    dev.log.sync()
    gc.collect()
    dev.src.restart()
CLK._alloc = gc.mem_alloc()
CLK.alloc_bytes = 0
CLK.gc_pauses = 0                         # the figures are of monitoring, not of boot
CLK.worst_stall = 0
CLK.stall_total = 0
CLK.handler_us = 0
if plan.get("legacy_stream"):
    dev._tx_ok = lambda: True            # today's stream: every frame written, waits and all
if plan.get("gc_mark") is not None:       # preset the planned collection's mark (its tests)
    dev._gc_mark = plan["gc_mark"]
c0 = plan.get("count0", 0)
if c0:
    dev.count = c0
    dev.src.samples = c0
    dev.det_preset = c0
EV = [0]
_on_event = dev.on_event


def on_event(code):
    EV[0] += 1
    _on_event(code)


dev.on_event = on_event
SYNC = [0, None, 0, 0, 0, 0]              # in progress, last C_LOG answer, commands, records,
#                                           ticks_ms of the sync's start, ms all syncs took
_respond = dev.respond


def respond(c, status, data):
    if c == P.C_LOG:
        SYNC[1] = data
    elif TRACE:
        print("response", c, status, data)
    _respond(c, status, data)


dev.respond = respond
T = {"sample_us": 0, "idle_us": 0}
stalls = list(plan.get("stall", []))      # [[t_s, us], ...]: a forced halt (test of the marks)
host = plan.get("host", [[0, "none"]])
syncs = list(plan.get("sync", []))
cmds_at = list(plan.get("commands", []))  # [[t_s, command code, JSON args], ...]
dur = plan["duration"]
win_s = plan.get("window_s", 1)
enc = P.Encoder(64)


def cmd(c, args):
    enc.payload[0] = c
    n = len(args)
    enc.payload[1:1 + n] = args
    k = enc.finish_n(P.T_CMD, 1 + n)
    LINK.feed(enc.out[:k])


LINK.mode = MODES[host[0][1]]             # the host from t = 0 (a sync needs one too)
if plan.get("stream", "off") != "off":
    cmd(P.C_STREAM, b'{"mode":"%s"}' % plan["stream"].encode())

state = {"hi": 0, "busy_max": 0, "min_free": gc.mem_free(), "t": -1, "windows": 0,
         "busy_sum": 0, "win_sum": 0}
hi = 0
t_start = CLK.sec
CLK.window()
adc = CLK.adc
lost0 = adc.lost


def stop():
    global hi
    CLK.tick()                           # the firmware's time up to here; the harness's
    if LOCK[0]:                          # own (this function) is not charged (leave() below)
        micropython.heap_unlock()        # this function is the harness's: it may allocate
    a0 = gc.mem_alloc()
    s = CLK.sec - t_start
    if TRACE and dev.src.peak > state["hi"]:
        state["hi"] = dev.src.peak
        print("peak", dev.src.peak, "at", CLK.ticks_ms())
    if s != state["t"]:
        state["t"] = s
        while hi + 1 < len(host) and s >= host[hi + 1][0]:
            hi += 1
            LINK.mode = MODES[host[hi][1]]
        while stalls and s >= stalls[0][0]:
            CLK.stall(stalls.pop(0)[1])
        while cmds_at and s >= cmds_at[0][0]:
            c = cmds_at.pop(0)
            cmd(c[1], c[2].encode())
        while syncs and s >= syncs[0]:
            syncs.pop(0)
            SYNC[0] = 1
            SYNC[2] += 1
            SYNC[4] = CLK.ticks_ms()
            cmd(P.C_LOG, b'{"since":0,"max":65536}')
        a = SYNC[1]
        if a is not None:                 # the answer to the last C_LOG: go on while "more"
            SYNC[1] = None
            SYNC[3] += a.get("records", 0)
            if a.get("more"):
                SYNC[2] += 1
                cmd(P.C_LOG, b'{"since":%d,"max":65536}' % a["last"])
            else:
                SYNC[0] = 0
                SYNC[5] += hal.ticks_diff(CLK.ticks_ms(), SYNC[4])
        f = gc.mem_free()
        if f < state["min_free"]:
            state["min_free"] = f
        if s % win_s == 0 and s:
            w, b, st = CLK.window()
            if w:
                state["windows"] += 1
                state["busy_sum"] += b // 1000
                state["win_sum"] += w // 1000
                if b * 100 // w > state["busy_max"]:
                    state["busy_max"] = b * 100 // w
    a1 = gc.mem_alloc()
    if a1 > a0:
        HARNESS[0] += a1 - a0            # the harness's own allocations: not the firmware's
    if LOCK[1] is not None and s >= LOCK[1]:
        LOCK[0] = 1
        micropython.heap_lock()          # debugging aid: the loop's next allocation raises
    CLK.leave()
    return s >= dur


TRACE = plan.get("trace", 0)              # debugging aid: print each new ring high-water mark
if TRACE > 1:                             # ... and idle() parts that take longer than TRACE us
    def _timed(name, fn):
        def w(*a):
            t0 = CLK.ticks_us()
            r = fn(*a)
            d = hal.ticks_diff(CLK.ticks_us(), t0)
            if d > TRACE:
                print("slow", name, d, "us at", CLK.ticks_ms())
            return r
        return w
    for _n in ("imu_poll", "poll_link", "flush_events", "_tare_finish", "_log_gaps", "_service_outputs"):
        setattr(dev, _n, _timed(_n, getattr(dev, _n)))
    dev.log.service = _timed("log.service", dev.log.service)

    dev.reminder.check = _timed("reminder.check", dev.reminder.check)
LOCK = [0, plan.get("lock_at")]       # from lock_at (model s) on, the loop may not allocate
# monitoring starts here: the harness's own set-up above is not the firmware's time
CLK.leave()
dev.src.restart()
lost0 = adc.lost
CLK._alloc = gc.mem_alloc()
CLK.alloc_bytes = CLK.gc_pauses = CLK.worst_stall = CLK.stall_total = CLK.handler_us = 0
HARNESS = [0]
A_START = gc.mem_alloc()
dev.run(stop)
A_END = gc.mem_alloc()
if LOCK[0]:
    micropython.heap_unlock()


def _cost(fn, n):
    # model us per call of fn over a block of calls (DRDY handler time and stalls taken out)
    h0, s0 = CLK.handler_us, CLK.stall_total
    t0 = CLK.ticks_us()
    k = 0
    while k < n and fn():
        k += 1
    d = hal.ticks_diff(CLK.ticks_us(), t0) - (CLK.handler_us - h0) - (CLK.stall_total - s0)
    return d // k if k else 0

total = gc.mem_free() + gc.mem_alloc()
res = {
    "model_s": CLK.sec - t_start,
    "conversions_lost_fifo": adc.lost - lost0,
    "driver_lost": dev.src.overruns,
    "app_lost": dev.lost,
    "gaps": dev.gaps,
    "count": dev.count, "count_hi": dev.count_hi,
    "samples": dev.src.samples,
    "ring_avail": dev.src.available(),
    "worst_stall_us": CLK.worst_stall,
    # bytes the firmware's loop allocated (the model's and the harness's own taken out); with a
    # collection in the run, the model's count between collections (an upper bound)
    "alloc_bytes": A_END - A_START - HARNESS[0] if not CLK.gc_pauses else CLK.alloc_bytes,
    "gc_pauses": CLK.gc_pauses, "gc_pause_us": CLK.gc_pause_us(),
    "busy_pct_max": state["busy_max"],
    "busy_ms": state["busy_sum"], "window_ms": state["win_sum"],
    "handler_ms": CLK.handler_us // 1000,
    "heap_total": total, "heap_min_free": state["min_free"],
    "tx_dropped": dev.tx_dropped, "link_sent": LINK.sent, "link_cut": LINK.cut,
    "link_wait_ms": LINK.wait_us // 1000, "uart_stall_ms": LINK.uart_stall_us // 1000,
    "log_writes": dev.log.stats().get("writes", 0) if hasattr(dev.log, "stats") else 0,
    "events": EV[0],
    "sync_commands": SYNC[2], "sync_records": SYNC[3], "sync_ms": SYNC[5],
    "exercise_active": bool(dev.exercise.active),
    "gc_planned": dev.gc_planned, "gc_forced": dev.gc_forced,
    "ring_peak": getattr(dev.src, "peak", -1),
    "stall_ms": CLK.stall_total // 1000,
    "scale16": CLK.scale16, "mhz": CLK.mhz, "headroom": CLK.headroom, "capped": CLK.capped,
}
if plan.get("cpu"):
    # the loop's own costs, measured after the run in blocks (no per-call instrumentation):
    # 500 idle() passes; then the ring filled for 0.3 s and drained by sample()
    T["idle_us"] = _cost(lambda: dev.idle() or 1, 500)
    CLK.wait(300000)
    T["sample_us"] = _cost(dev.sample, 300)
res["sample_us_mean"] = T["sample_us"]
res["idle_us_mean"] = T["idle_us"]
print(json.dumps(res))

if plan.get("dump"):
    with open(plan["dump"], "wb") as f:
        f.write(memoryview(LINK.cap)[:LINK.cap_n])
