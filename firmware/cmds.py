# Command handling on the device: decode a T_CMD payload, act, answer with a T_RESP.
import json
import hal
import protocol as P


def _info(dev):
    c = dev.cfg
    return {
        "device_id": hal.DEVICE_ID,
        "fw": dev.FW_VERSION,
        "platform": hal.PLATFORM,
        "rate": dev.rate,
        "calibrated": dev.cal is not None,
        "config_state": c.state,
        "phase": c["phase"],
        "limits": c.limits(),
        "body_weight_kg": c["body_weight_kg"],
        "clock": hal.unix_time(),
        "samples": dev.count,
        "retighten_last": c["retighten_last"],
        "retighten_interval_months": c["retighten_interval_months"],
    }


def handle(dev, cmd, argbytes):
    try:
        args = json.loads(argbytes) if argbytes else {}
        if not isinstance(args, dict):
            raise ValueError
    except ValueError:
        dev.respond(cmd, P.S_BAD_REQUEST, {"error": "arguments are not a JSON object"})
        return
    if cmd == P.C_INFO:
        dev.respond(cmd, P.S_OK, _info(dev))
    elif cmd == P.C_STATUS:
        dev.respond(cmd, P.S_OK, {"samples": dev.count, "overruns": dev.src.overruns,
                                  "stream": dev.stream, "clock": hal.unix_time()})
    elif cmd == P.C_TIME:
        t = args.get("t")
        if not isinstance(t, int) or t < 1577836800:
            dev.respond(cmd, P.S_RANGE, {"error": "t must be unix seconds after 2020"})
            return
        hal.set_unix_time(t)
        dev.respond(cmd, P.S_OK, {"clock": hal.unix_time()})
    elif cmd == P.C_STREAM:
        mode = args.get("mode")
        m = {"off": 0, "cal": 1, "raw": 2}.get(mode)
        if m is None:
            dev.respond(cmd, P.S_BAD_REQUEST, {"error": "mode must be off, cal or raw"})
            return
        if dev.stream and dev.batch_n:
            dev._batch_send()
        dev.batch_n = 0
        dev.respond(cmd, P.S_OK, {"mode": mode, "rate": dev.rate, "first": dev.count})
        dev.stream = m
    elif cmd == P.C_CONFIG:
        dev.respond(cmd, P.S_OK, dev.cfg.data_public() if hasattr(dev.cfg, "data_public") else
                    {k: dev.cfg.data[k] for k in dev.cfg.data if k != "auth_counter"})
    else:
        dev.respond(cmd, P.S_UNKNOWN, {"error": "unknown command %d" % cmd})
