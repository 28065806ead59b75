"""`oimon serve`: the clinic dashboard, a local web application over the same SQLite database
(docs/dashboard.md). Starlette (ASGI) served by uvicorn on 127.0.0.1; the charts are plotly.js,
served from the plotly wheel's own copy, so every page works with no network.

Pages: /  devices with the retightening due or overdue first, recent events across patients;
/patient/{device}  the report's charts, interactive, an event's loads one click away, the
printable report; /live  the connected (or virtual) device's loads against its limits and the
Phase I biofeedback bar, fed over the WebSocket /ws/live. JSON behind each: /api/overview,
/api/patient/{device}, /api/patient/{device}/event/{k}, /api/live. Pseudonyms and device ids
only; no paths of this machine."""
import asyncio
import contextlib
import datetime as dt
import html
import json
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from oimon import db, report, retighten
from oimon.errors import OimonError

RECENT_DAYS = 30


def plotly_js_path():
    import plotly
    p = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not p.exists():
        raise OimonError("plotly.min.js is missing from the plotly package: reinstall plotly")
    return p


def _e(x):
    return html.escape("" if x is None else str(x))


def _json_script(obj):
    return json.dumps(obj, default=_default).replace("</", "<\\/")


def _default(o):
    if isinstance(o, (dt.date, dt.datetime)):
        return o.isoformat()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(type(o).__name__)


CSS = report.CSS + """
nav{background:#1f5f99;color:#fff;padding:.5em 1em;margin:-1.5em -1em 1em;display:flex;gap:1.5em;align-items:center}
nav a{color:#fff;text-decoration:none;font-weight:bold}nav .brand{font-size:1.15em}
a{color:#1f5f99}tr.click{cursor:pointer}tr.click:hover{background:#eef4fb}
.chart{width:100%;height:380px;border:1px solid #ddd;margin:.4em 0}
.bar{position:relative;height:64px;border:1px solid #888;border-radius:6px;background:#f4f4f4;margin:.6em 0;overflow:hidden}
.bar .zone{position:absolute;top:0;bottom:0;background:#bfe6bf}
.bar .over{position:absolute;top:0;bottom:0;background:#ffe2b3}
.bar .alarm{position:absolute;top:0;bottom:0;width:3px;background:#d62728}
.bar .fill{position:absolute;left:0;top:20px;bottom:20px;background:#1f5f99;transition:width .08s}
.zonetext{font-size:2em;font-weight:bold;padding:.2em .5em;border-radius:6px;display:inline-block;min-width:9em;text-align:center}
.z-under{background:#fff1c4}.z-in{background:#bfe6bf}.z-over{background:#ffd49a}.z-alarm{background:#f4a0a0}.z-none{background:#eee}
"""


def page(title, body, scripts=""):
    return HTMLResponse(
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'><title>%s - oimon</title>"
        "<style>%s</style></head><body><nav><span class=brand>oimon clinic</span><a href='/'>devices</a>"
        "<a href='/live'>live</a></nav>%s%s</body></html>" % (_e(title), CSS, body, scripts))


LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def create_app(db_path=None, device_port=None, today=None, tz=None, hosts=None):
    """The ASGI app. db_path: the SQLite database (opened per request); device_port: the port of
    the device for the live page (None: the page says how to connect one). hosts: the Host
    names it answers to (default the loopback names: a web page elsewhere cannot reach it by
    DNS rebinding); the WebSocket also refuses a page of another origin."""
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    allowed = list(hosts or LOOPBACK_HOSTS)
    from oimon.web.live import LiveSource
    state = {"live": None}
    tz = tz or report.local_tz()

    def con():
        return db.connect(db_path)

    def the_day():
        return today or dt.date.today()

    def live_source():
        if device_port is None:
            return None
        if state["live"] is None:
            state["live"] = LiveSource(device_port).start()
        return state["live"]

    # --- data ---
    def overview_data():
        c = con()
        try:
            st = retighten.all_status(c, the_day())
            pseu = {r["device_id"]: r["pseudonym"] for r in c.execute("SELECT device_id, pseudonym FROM device")}
            order = {"overdue": 0, "due soon": 1, "never recorded": 2, "ok": 3}
            devs = []
            since = the_day() - dt.timedelta(days=RECENT_DAYS)
            recent = []
            for s in sorted(st, key=lambda s: (order.get(s["state"], 9), s["days_left"] if s["days_left"]
                                               is not None else 1e9, s["device_id"])):
                per = {"since": since, "until": the_day(), "why": ""}
                evs = report.merged_events(c, s["device_id"], per, tz=tz)
                last = c.execute("SELECT max(t) FROM device_record WHERE device_id = ?",
                                 (s["device_id"],)).fetchone()[0] if report._has_table(c, "device_record") else None
                devs.append({"device_id": s["device_id"], "patient": pseu.get(s["device_id"]) or "",
                             "state": s["state"], "due": s["due"], "days_left": s["days_left"],
                             "last": s["last"], "falls": sum(1 for e in evs if e["kind"] == "fall"),
                             "overloads": sum(1 for e in evs if e["kind"] == "overload"),
                             "faults": sum(1 for e in evs if e["kind"] == "sensor fault"),
                             "last_sync": report.clock(last, tz, "%Y-%m-%d %H:%M") if last else None})
                for e in evs:
                    recent.append({"device_id": s["device_id"], "patient": pseu.get(s["device_id"]) or "",
                                   "start": e["start"], "when": report.clock(e["start"], tz, "%Y-%m-%d %H:%M:%S"),
                                   "kind": e["kind"], "peak": e["peak"], "pct": e["pct"], "limit": e["limit"],
                                   "score": e["score"]})
            recent.sort(key=lambda e: -(e["start"] or 0))
            return {"today": the_day().isoformat(), "tz": report.tz_label(tz), "devices": devs,
                    "recent": recent[:50], "recent_days": RECENT_DAYS}
        finally:
            c.close()

    def patient_data(device_id):
        c = con()
        try:
            report.device_list(c, device_id)
            d = report.device_report(c, device_id, the_day(), tz=tz)
        finally:
            c.close()
        s = d["settings"]
        evs = report.worst_first(d["events"])
        return {
            "device_id": device_id, "patient": d["pseudonym"], "tz": report.tz_label(tz),
            "period": {"since": d["period"]["since"], "until": d["period"]["until"], "why": d["period"]["why"]},
            "headline": [{"label": a, "value": b, "detail": c_, "state": st} for a, b, c_, st in report.headline(d)],
            "settings": {"phase": s["phase"], "body_weight_kg": s["body_weight_kg"], "limits": s["limits"],
                         "limits_source": s["limits_source"], "bw_N": s["bw_N"]},
            "days": [{k: (v.isoformat() if k == "day" else v) for k, v in x.items() if k != "hist"}
                     for x in d["days"]],
            "hist": d["hist"], "hist_bins": [lo for lo, _hi in report.HIST_BINS],
            "events": [{"k": i, "start": e["start"], "when": report.clock(e["start"], tz, "%Y-%m-%d %H:%M:%S"),
                        "kind": e["kind"], "dur_s": e["dur_s"], "peak": e["peak"], "pct": e["pct"],
                        "limit": e["limit"], "plot": bool(e["snippet"] or e["recording_id"] is not None)}
                       for i, e in enumerate(evs)],
            "exercise": d["exercise"],
            "health": [{"what": a, "value": b, "state": st} for a, b, st in d["health"]],
        }

    def event_data(device_id, k):
        c = con()
        try:
            report.device_list(c, device_id)
            d = report.device_report(c, device_id, the_day(), tz=tz)
            evs = report.worst_first(d["events"])
            if not 0 <= k < len(evs):
                raise OimonError("no event %d" % k)
            got = report.event_series(c, evs[k])
        finally:
            c.close()
        if got is None:
            return {"k": k, "series": None}
        import numpy as np
        t0, rate, rows, ev = got
        step = max(1, int(len(rows) // 1500))
        t = t0 + np.arange(len(rows)) / rate
        return {"k": k, "kind": ev["kind"], "start": ev["start"],
                "series": {"t": [report.clock(x, tz, "%Y-%m-%d %H:%M:%S.%f")[:-3] for x in t[::step]],
                           "axial_N": (rows[::step, 0] * 0.1).round(1).tolist(),
                           "moment_Nm": (np.hypot(rows[::step, 1], rows[::step, 2]) * 0.01).round(2).tolist()},
                "limits": d["settings"]["limits"], "bw_N": d["settings"]["bw_N"]}

    # --- endpoints ---
    def api_overview(request):
        return JSONResponse(json.loads(_json_script(overview_data())))

    def api_patient(request):
        try:
            return JSONResponse(json.loads(_json_script(patient_data(request.path_params["device"]))))
        except OimonError as e:
            return JSONResponse({"error": str(e)}, status_code=404)

    def api_event(request):
        try:
            return JSONResponse(json.loads(_json_script(event_data(request.path_params["device"],
                                                                   int(request.path_params["k"])))))
        except (OimonError, ValueError) as e:
            return JSONResponse({"error": str(e)}, status_code=404)

    def home(request):
        d = overview_data()
        rows = []
        for x in d["devices"]:
            cls = report.STATE_CLASS.get(x["state"], "")
            due = x["due"] or "-"
            if x["state"] == "overdue":
                due += " (%d days overdue)" % -x["days_left"]
            elif x["days_left"] is not None:
                due += " (in %d days)" % x["days_left"]
            rows.append("<tr class='click %s' data-href='/patient/%s'><td><a href='/patient/%s'>%s</a></td><td>%s</td>"
                        "<td>%s</td><td>%s</td><td class=n>%d</td><td class=n>%d</td><td class=n>%d</td><td>%s</td></tr>" % (
                            cls, _e(x["device_id"]), _e(x["device_id"]), _e(x["patient"] or "-"), _e(x["device_id"]),
                            _e(x["state"]), _e(due), x["falls"], x["overloads"], x["faults"], _e(x["last_sync"] or "never")))
        ev_rows = []
        for e in d["recent"][:25]:
            ev_rows.append("<tr class='click%s' data-href='/patient/%s'><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
                           "<td class=n>%s</td><td>%s</td></tr>" % (
                               " bad" if e["kind"] == "fall" else "", _e(e["device_id"]), _e(e["when"]),
                               _e(e["patient"] or e["device_id"]), _e(e["kind"]), _e(e["peak"]),
                               "-" if e["pct"] is None else "%.0f %%" % e["pct"], _e(e["limit"] or "-")))
        body = ("<h1>Devices</h1><p class=muted>%s; retightening due or overdue first. Times are %s.</p>"
                "<table id=devices><tr><th>patient</th><th>device</th><th>retightening</th><th>due</th>"
                "<th>falls</th><th>overloads</th><th>sensor faults</th><th>last sync</th></tr>%s</table>"
                "<p class='muted small'>falls, overloads and faults: the last %d days.</p>"
                "<h2>Recent events across patients</h2>%s" % (
                    _e(d["today"]), _e(d["tz"]), "".join(rows) or "<tr><td colspan=8>no devices yet: "
                    "connect one and run oimon sync</td></tr>", RECENT_DAYS,
                    ("<table id=recent><tr><th>start</th><th>patient</th><th>event</th><th>peak</th><th>%% of limit</th>"
                     "<th>limit</th></tr>%s</table>" % "".join(ev_rows)) if ev_rows
                    else "<p>No events in the last %d days.</p>" % RECENT_DAYS))
        return page("devices", body, _ROW_LINKS)

    def patient(request):
        dev = request.path_params["device"]
        try:
            d = patient_data(dev)
        except OimonError as e:
            return page("not found", "<h1>Not found</h1><p>%s</p>" % _e(e))
        cards = "".join("<div class='card %s'>%s<b>%s</b><span class=small>%s</span></div>" % (
            _e(c["state"] or ""), _e(c["label"]), _e(c["value"]), _e(c["detail"])) for c in d["headline"])
        s = d["settings"]
        health = "".join("<tr class='%s'><td>%s</td><td>%s</td></tr>" % (_e(h["state"] or ""), _e(h["what"]), _e(h["value"]))
                         for h in d["health"])
        body = ("<h1>%s <span class=muted>(%s)</span></h1>"
                "<p>Period %s .. %s, %s. Times are %s. The report: <a href='/patient/%s/report.html'>HTML</a>, <a href='/patient/%s/report.pdf'>PDF</a></p>"
                "<div class=headline>%s</div>"
                "<p>Phase <b>%s</b>, body weight <b>%s</b>; limits: compression %.0f N, tension %.0f N, bending %.1f N*m "
                "<span class=muted>(%s)</span></p>"
                "<h2>Daily activity</h2><div id=activity class=chart></div><div id=hist class=chart style='height:260px'></div>"
                "<h2>Events</h2><div id=timeline class=chart style='height:260px'></div>"
                "<p class=muted>Click an event for its loads.</p><div id=eventplot class=chart style='display:none'></div>"
                "<table id=events><tr><th>start</th><th>event</th><th>duration</th><th>peak</th><th>%% of limit</th>"
                "<th>limit</th></tr></table>"
                "<h2>Exercise compliance</h2><div id=exercise></div>"
                "<h2>Device health</h2><table>%s</table>" % (
                    _e(d["patient"] or "no pseudonym"), _e(dev), _e(d["period"]["since"] or "first record"),
                    _e(d["period"]["until"] or "now"), _e(d["period"]["why"]), _e(d["tz"]), _e(dev), _e(dev), cards, _e(s["phase"]),
                    "%.1f kg" % s["body_weight_kg"] if s["body_weight_kg"] else "unknown (75 kg assumed)",
                    s["limits"]["comp_N"], s["limits"]["tens_N"], s["limits"]["moment_Nm"], _e(s["limits_source"]), health))
        return page(d["patient"] or dev, body, "<script src='/static/plotly.min.js'></script><script>const D=%s;%s</script>"
                    % (_json_script(d), _PATIENT_JS))

    def patient_report(request):
        dev = request.path_params["device"]
        c = con()
        try:
            text = report.build(c, dev, the_day(), tz=tz)
        except OimonError as e:
            return PlainTextResponse(str(e), status_code=404)
        finally:
            c.close()
        return HTMLResponse(text)

    def patient_pdf(request):
        import tempfile
        dev = request.path_params["device"]
        c = con()
        try:
            text = report.build(c, dev, the_day(), tz=tz, print_mode=True)
        except OimonError as e:
            return PlainTextResponse(str(e), status_code=404)
        finally:
            c.close()
        with tempfile.TemporaryDirectory(prefix="oimon-web-pdf-") as d:
            try:
                out = report.to_pdf(text, Path(d) / "report.pdf")
            except OimonError as e:
                return PlainTextResponse(str(e), status_code=503)
            data = out.read_bytes()
        name = "oimon-report-%s-%s.pdf" % ("".join(ch for ch in dev if ch.isalnum() or ch in "-_"),
                                           the_day().isoformat())
        return Response(data, media_type="application/pdf",
                        headers={"Content-Disposition": "inline; filename=%s" % name})

    def live_page(request):
        if device_port is None:
            body = ("<h1>Live</h1><p>No device connected to this dashboard. Start it with the device's port: "
                    "<code>oimon --port PORT serve</code>, or a virtual device: <code>oimon serve --virtual demo</code>.</p>")
            return page("live", body)
        live_source()
        body = ("<h1>Live <span id=who class=muted></span></h1><p id=state class=muted>connecting...</p>"
                "<h2>Phase I biofeedback</h2><div><span id=zonetext class='zonetext z-none'>-</span> "
                "<span id=loadkg style='font-size:1.6em;margin-left:.6em'>- kg</span></div>"
                "<div id=bar class=bar><div class=zone id=bzone></div><div class=over id=bover></div>"
                "<div class=alarm id=balarm></div><div class=fill id=bfill></div></div>"
                "<p id=target class=muted></p>"
                "<h2>Loads against the limits</h2><div id=livechart class=chart></div>"
                "<p class=small>samples received: <b id=samples>0</b></p><h3>Events</h3><ul id=events></ul>")
        return page("live", body, "<script src='/static/plotly.min.js'></script><script>%s</script>" % _LIVE_JS)

    def api_live(request):
        src = live_source()
        if src is None:
            return JSONResponse({"state": "no device"}, status_code=404)
        return JSONResponse(src.snapshot(int(request.query_params.get("since", 0) or 0)))

    async def ws_live(websocket):
        origin = websocket.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != websocket.headers.get("host"):
            await websocket.close(code=1008)          # another site's page: not this dashboard
            return
        await websocket.accept()
        src = live_source()
        if src is None:
            await websocket.send_json({"state": "no device"})
            await websocket.close()
            return
        since = 0
        try:
            while True:
                snap = src.snapshot(since)
                since = snap["seq"]
                await websocket.send_text(json.dumps(snap))
                await asyncio.sleep(0.1)
        except (WebSocketDisconnect, RuntimeError, ConnectionError):
            return

    js_path = plotly_js_path()

    def plotly_js(request):
        return FileResponse(js_path, media_type="application/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    def favicon(request):
        return Response(status_code=204)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            if state["live"] is not None:
                state["live"].stop()

    routes = [Route("/", home), Route("/patient/{device}", patient),
              Route("/patient/{device}/report.html", patient_report),
              Route("/patient/{device}/report.pdf", patient_pdf), Route("/live", live_page),
              Route("/api/overview", api_overview), Route("/api/patient/{device}", api_patient),
              Route("/api/patient/{device}/event/{k}", api_event), Route("/api/live", api_live),
              WebSocketRoute("/ws/live", ws_live), Route("/static/plotly.min.js", plotly_js),
              Route("/favicon.ico", favicon)]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed)])
    app.state.live = state
    return app


_ROW_LINKS = """<script>
document.querySelectorAll('tr.click').forEach(function(r){r.addEventListener('click',function(){location.href=r.dataset.href;});});
</script>"""

_PATIENT_JS = r"""
const cfg={displaylogo:false,responsive:true};
const days=D.days.map(d=>d.day);
const lim=D.settings.limits, bw=D.settings.bw_N;
function has(k){return D.days.some(d=>d[k]!==null&&d[k]!==undefined);}
if(D.days.length){
 const tr=[];
 tr.push({x:days,y:D.days.map(d=>d.steps),type:'bar',name:'load cycles',marker:{color:'#1f77b4'},yaxis:'y'});
 tr.push({x:days,y:D.days.map(d=>d.loaded_h),type:'bar',name:'hours loaded',marker:{color:'#2ca02c'},yaxis:'y2',xaxis:'x'});
 tr.push({x:days,y:D.days.map(d=>d.peak_pct_bw),mode:'lines+markers',name:'peak % BW',line:{color:'#d62728'},yaxis:'y3'});
 const lp=100*lim.comp_N/bw;
 tr.push({x:[days[0],days[days.length-1]],y:[lp,lp],mode:'lines',name:'compression limit',line:{color:'#d62728',dash:'dash'},yaxis:'y3'});
 Plotly.newPlot('activity',tr,{margin:{t:30,l:70,r:20,b:40},title:{text:'Daily activity'+(has('steps')?'':' (no daily summaries yet: sync after midnight)'),font:{size:14}},
  grid:{rows:3,columns:1,pattern:'coupled'},yaxis:{title:{text:'load cycles'}},yaxis2:{title:{text:'hours'}},yaxis3:{title:{text:'peak % BW'},rangemode:'tozero'},
  xaxis:{type:'date',dtick:86400000,tickformat:'%d %b'},showlegend:true,legend:{orientation:'h',y:-0.15}},cfg);
} else {document.getElementById('activity').innerHTML='<p>No activity data in this period.</p>';}
if(D.hist){
 Plotly.newPlot('hist',[{x:D.hist_bins.slice(0,D.hist.length).map(b=>b+5),y:D.hist,type:'bar',marker:{color:'#1f5f99'},name:'% of loaded time'}],
  {margin:{t:30,l:60,r:20,b:50},title:{text:'How heavily the leg was loaded',font:{size:14}},yaxis:{title:{text:'% of loaded time'}},
  xaxis:{title:{text:'axial load, % body weight (10 % bins)'}}},cfg);
} else {document.getElementById('hist').style.display='none';}
const colors={'fall':'#d62728','overload':'#ff7f0e','sensor fault':'#7f7f7f'};
const kinds=[...new Set(D.events.map(e=>e.kind))];
Plotly.newPlot('timeline',kinds.map(k=>{const es=D.events.filter(e=>e.kind===k);return {x:es.map(e=>e.when),y:es.map(e=>e.pct===null?100:e.pct),
  customdata:es.map(e=>e.k),text:es.map(e=>e.kind+': '+e.peak),mode:'markers',type:'scatter',name:k,marker:{color:colors[k]||'#333',size:9}};}),
  {margin:{t:30,l:60,r:20,b:40},title:{text:D.events.length?'Events (% of the limit crossed)':'No events in this period',font:{size:14}},
   yaxis:{title:{text:'% of limit'}},shapes:[{type:'line',xref:'paper',x0:0,x1:1,y0:100,y1:100,line:{color:'#d62728',dash:'dash'}}]},cfg);
document.getElementById('timeline').on('plotly_click',ev=>{if(ev.points.length)showEvent(ev.points[0].customdata);});
const tb=document.getElementById('events');
function fmtDur(s){if(s===null)return '-';return s<1?Math.round(s*1000)+' ms':s.toFixed(1)+' s';}
D.events.slice(0,200).forEach(e=>{const r=tb.insertRow();r.className='click'+(e.kind==='fall'?' bad':'');r.dataset.k=e.k;
 [e.when,e.kind,fmtDur(e.dur_s),e.peak||'-',e.pct===null?'-':Math.round(e.pct)+' %',e.limit||'-'].forEach(v=>{r.insertCell().textContent=v;});
 r.addEventListener('click',()=>showEvent(e.k));});
function showEvent(k){fetch('/api/patient/'+encodeURIComponent(D.device_id)+'/event/'+k).then(r=>r.json()).then(d=>{
 const el=document.getElementById('eventplot');el.style.display='block';
 if(!d.series){el.innerHTML='<p>No snippet or recording holds this event\'s loads.</p>';return;}
 const s=d.series,t0=s.t[0],t1=s.t[s.t.length-1];
 Plotly.newPlot(el,[{x:s.t,y:s.axial_N,name:'axial N',line:{color:'#1f77b4'}},{x:s.t,y:s.moment_Nm,name:'bending N*m',yaxis:'y2',line:{color:'#111'}}],
 {margin:{t:30,l:60,r:60,b:40},title:{text:d.kind+' at '+t0.slice(0,19),font:{size:14}},yaxis:{title:{text:'axial [N]'},domain:[0.42,1]},
  yaxis2:{title:{text:'bending [N*m]'},domain:[0,0.34],anchor:'x',rangemode:'tozero'},xaxis:{type:'date',anchor:'y2'},
  shapes:[{type:'line',x0:t0,x1:t1,y0:d.limits.comp_N,y1:d.limits.comp_N,line:{color:'#d62728',dash:'dash'}},
          {type:'line',x0:t0,x1:t1,y0:d.limits.moment_Nm,y1:d.limits.moment_Nm,yref:'y2',line:{color:'#9467bd',dash:'dot'}}]},cfg);
 el.scrollIntoView({behavior:'smooth',block:'center'});});}
const ex=document.getElementById('exercise');
if(D.exercise&&D.exercise.days.length){
 const r=D.exercise.days,t=D.exercise.totals;
 ex.innerHTML='<p><b>'+t.done+'</b> of '+t.prescribed+' prescribed sessions done; '+t.loaded_min.toFixed(0)+' minutes loaded; time in the target zone '+(t.in_band_pct===null?'-':Math.round(t.in_band_pct)+' %')+'.</p><div id=exchart class=chart></div>';
 const x=r.map(d=>d.date);
 Plotly.newPlot('exchart',[
  {x:x,y:r.map(d=>d.target_kg===null?null:d.target_kg*(1+(d.band_pct||0)/100)),mode:'lines',line:{width:0,shape:'hv'},showlegend:false,hoverinfo:'skip'},
  {x:x,y:r.map(d=>d.target_kg===null?null:d.target_kg*(1-(d.band_pct||0)/100)),mode:'lines',fill:'tonexty',fillcolor:'rgba(44,160,44,0.2)',line:{width:0,shape:'hv'},name:'target zone'},
  {x:x,y:r.map(d=>d.target_kg),mode:'lines',line:{color:'#2ca02c',shape:'hv'},name:'target'},
  {x:x,y:r.map(d=>d.mean_kg),mode:'markers',marker:{color:'#1f77b4',size:9},name:'mean held'},
  {x:x,y:r.map(d=>d.peak_kg),mode:'markers',marker:{color:'#d62728',symbol:'triangle-down'},name:'peak'},
  {x:x,y:r.map(d=>d.done),type:'bar',yaxis:'y2',marker:{color:'rgba(31,119,180,0.35)'},name:'sessions done'},
  {x:x,y:r.map(d=>d.prescribed),mode:'markers',yaxis:'y2',marker:{symbol:'line-ew-open',size:18,color:'#555'},name:'prescribed'}],
  {margin:{t:20,l:60,r:60,b:40},yaxis:{title:{text:'load (kg)'},rangemode:'tozero'},yaxis2:{title:{text:'sessions'},overlaying:'y',side:'right',dtick:1,rangemode:'tozero'},
   xaxis:{type:'date',dtick:86400000,tickformat:'%d %b'},legend:{orientation:'h',y:-0.2}},cfg);
} else {ex.innerHTML='<p>No exercise sessions in this period.</p>';}
"""

_LIVE_JS = r"""
const cfg={displaylogo:false,responsive:true};
let pts=[],lim=null,bw=750,tgt=null,started=false;
function bar(s){const t=s.target;if(!t||t.kg===null){document.getElementById('target').textContent=t?t.note:'';return;}
 const full=t.alarm*1.25,pc=v=>Math.max(0,Math.min(100,100*v/full));
 const z=document.getElementById('bzone');z.style.left=pc(t.lo)+'%';z.style.width=(pc(t.hi)-pc(t.lo))+'%';
 const o=document.getElementById('bover');o.style.left=pc(t.hi)+'%';o.style.width=(pc(t.alarm)-pc(t.hi))+'%';
 document.getElementById('balarm').style.left=pc(t.alarm)+'%';
 document.getElementById('bfill').style.width=pc(Math.max(0,s.load_kg))+'%';
 document.getElementById('target').textContent='target '+t.kg.toFixed(1)+' kg, zone '+t.lo.toFixed(1)+'-'+t.hi.toFixed(1)+' kg, unload above '+t.alarm.toFixed(1)+' kg ('+t.note+')';}
function draw(){if(!pts.length||!lim)return;const x=pts.map(p=>new Date(p[0]*1000));const x0=x[0],x1=x[x.length-1];
 const data=[{x:x,y:pts.map(p=>p[1]),name:'axial N',line:{color:'#1f77b4'}},{x:x,y:pts.map(p=>p[2]),name:'bending N*m',yaxis:'y2',line:{color:'#111'}}];
 const lay={margin:{t:20,l:60,r:60,b:40},uirevision:'live',xaxis:{type:'date',anchor:'y2'},
  yaxis:{title:{text:'axial [N]'},domain:[0.42,1]},yaxis2:{title:{text:'bending [N*m]'},domain:[0,0.34],anchor:'x',rangemode:'tozero'},
  shapes:[{type:'line',x0:x0,x1:x1,y0:lim.comp_N,y1:lim.comp_N,line:{color:'#d62728',dash:'dash'}},
          {type:'line',x0:x0,x1:x1,y0:-lim.tens_N,y1:-lim.tens_N,line:{color:'#e377c2',dash:'dash'}},
          {type:'line',x0:x0,x1:x1,y0:lim.moment_Nm,y1:lim.moment_Nm,yref:'y2',line:{color:'#9467bd',dash:'dot'}}],
  annotations:[{x:x0,y:lim.comp_N,text:'compression limit '+lim.comp_N.toFixed(0)+' N',showarrow:false,xanchor:'left',yanchor:'bottom',font:{size:10,color:'#d62728'}},
               {x:x1,y:lim.moment_Nm,yref:'y2',text:'bending limit '+lim.moment_Nm.toFixed(0)+' N*m',showarrow:false,xanchor:'right',yanchor:'bottom',font:{size:10,color:'#9467bd'}}]};
 if(!started){Plotly.newPlot('livechart',data,lay,cfg);started=true;}else{Plotly.react('livechart',data,lay,cfg);}
 document.getElementById('livechart').dataset.points=pts.length;}
function onmsg(s){document.getElementById('state').textContent=s.state+(s.error?' ('+s.error+')':'')+(s.phase?' - phase '+s.phase:'');
 if(s.device_id)document.getElementById('who').textContent=(s.patient||'')+' ('+s.device_id+')';
 lim=s.limits||lim;bw=s.bw_N||bw;document.getElementById('samples').textContent=s.samples;
 pts=pts.concat(s.points||[]);if(pts.length){const cut=pts[pts.length-1][0]-10;pts=pts.filter(p=>p[0]>=cut);}
 const zt=document.getElementById('zonetext');zt.textContent=s.zone_text||'-';zt.className='zonetext z-'+(s.zone||'none');zt.dataset.zone=s.zone;
 document.getElementById('loadkg').textContent=(s.load_kg||0).toFixed(1)+' kg';bar(s);
 const ul=document.getElementById('events');ul.innerHTML='';(s.events||[]).slice(-8).reverse().forEach(e=>{const li=document.createElement('li');
  li.textContent=new Date(e.t*1000).toLocaleTimeString()+' '+e.kind+': '+e.text;ul.appendChild(li);});}
let last=0;setInterval(()=>{const n=Date.now();if(n-last>180){last=n;draw();}},200);
function connect(){const ws=new WebSocket((location.protocol==='https:'?'wss://':'ws://')+location.host+'/ws/live');
 ws.onmessage=m=>onmsg(JSON.parse(m.data));ws.onclose=()=>{document.getElementById('state').textContent='disconnected: reconnecting';setTimeout(connect,1000);};}
connect();
"""


def serve(app, host="127.0.0.1", port=8765, log_level="warning"):
    import uvicorn
    uvicorn.run(app, host=host, port=port, log_level=log_level, ws="websockets-sansio")
