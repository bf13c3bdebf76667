"""`curate review serve`: a small web application over the run's review queue and the ledger.

Starlette (already in the stack through Prefect's server) and uvicorn; pages are made on the
server, with one small script for keys and buttons (no framework). The queue view filters,
counts and pages the items (the page's weight does not grow with the queue); the item view
shows the evidence as tables, the recording's waveform with the music spans drawn on it, and a
player that starts at each span; a decision (clear / reject / skip, with a note) is appended to
the ledger at once (`ledger.py`) with the reviewer's name, the time and the digest of the
evidence it was made on, and the next waiting item opens.

Without a reviewer name the workspace is read-only. It binds to 127.0.0.1; bound elsewhere it
asks for a token (a secret, read as the API tokens are) in every request, as a cookie set by
`/?token=...` or an `Authorization: Bearer` header. Every text from metadata is escaped, links
are made only of http(s) URLs, and scripts run only from the application itself (CSP).
"""
from __future__ import annotations

import hmac
import html
import json
import urllib.parse
from pathlib import Path

from . import ledger
from .evidence import link, tables
from .workspace import Queue

PER_PAGE = 50
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

CSS = """
body{font-family:system-ui,sans-serif;margin:1.2rem 2rem;max-width:78rem;color:#222}
a{color:#1f5fa8} h1{font-size:1.4rem} h4{margin:.9rem 0 .3rem}
table{border-collapse:collapse;font-size:.88rem;margin:.4rem 0} td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}
tr.decided td{color:#777} .muted{color:#666;font-size:.85rem} .err{color:#a00}
.bar{display:flex;gap:1rem;align-items:center;flex-wrap:wrap;background:#f5f5f5;padding:.5rem .8rem;border-radius:6px}
.progress{height:.6rem;background:#ddd;border-radius:3px;width:14rem;display:inline-block;vertical-align:middle}
.progress span{display:block;height:100%;background:#54a24b;border-radius:3px}
.decide button{font-size:1rem;margin-right:.4rem;padding:.3rem .9rem} kbd{border:1px solid #bbb;border-radius:3px;padding:0 .25rem;font-size:.8rem}
.stale{background:#fff3cd;border:1px solid #e0c46c;padding:.4rem .8rem} img.wave{width:100%;max-width:64rem;border:1px solid #ddd}
.spans button{margin:.15rem}
"""

JS = r"""
(function () {
  const body = document.body;
  const item = body.dataset.item ? JSON.parse(body.dataset.item) : null;
  const player = document.getElementById('player');
  function play(start, src) {
    if (!player || !item) return;
    player.src = (src || item.audio) + '?start=' + encodeURIComponent(start);
    player.dataset.start = String(start);
    player.play().catch(function () {});
  }
  document.querySelectorAll('[data-play]').forEach(function (b) {
    b.addEventListener('click', function () { play(parseFloat(b.dataset.play), b.dataset.src); });
  });
  const status = document.getElementById('status');
  function decide(decision) {
    if (!item || body.dataset.readonly === '1') return;
    const note = document.getElementById('note').value;
    fetch('/api/decide', {method: 'POST', headers: {'Content-Type': 'application/json'},
                          body: JSON.stringify({source: item.source, id: item.id, decision: decision, note: note})})
      .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
      .then(function (res) {
        if (!res[0]) { status.textContent = res[1].error || 'not saved'; return; }
        status.textContent = 'saved: ' + decision + ' by ' + res[1].row.reviewer;
        body.dataset.saved = decision;
        if (res[1].next) location.href = res[1].next; else location.href = item.back;
      });
  }
  document.querySelectorAll('[data-decide]').forEach(function (b) {
    b.addEventListener('click', function () { decide(b.dataset.decide); });
  });
  document.addEventListener('keydown', function (ev) {
    if (ev.target && (ev.target.tagName === 'INPUT' || ev.target.tagName === 'TEXTAREA')) return;
    if (!item) return;
    if (ev.key === 'c') decide('clear');
    else if (ev.key === 'r') decide('reject');
    else if (ev.key === 's') decide('skip');
    else if (ev.key === 'n' && item.next) location.href = item.next;
    else if (/^[1-9]$/.test(ev.key)) {
      const b = document.querySelector('[data-play-key="' + ev.key + '"]');
      if (b) play(parseFloat(b.dataset.play));
    }
  });
})();
"""


def _e(v) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _page(title: str, body: str, attrs: str = "") -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<link rel='icon' href='data:,'><style>{CSS}</style></head><body{attrs}>{body}"
            "<script src='/static/app.js'></script></body></html>")


class Workspace:
    """What the application serves: the queue (read once; `reload` after a run) and the ledger."""

    def __init__(self, out_dir, meanings: dict | None = None, reference_dir=None):
        self.out_dir = Path(out_dir)
        self.reference_dir = Path(reference_dir).resolve() if reference_dir else None
        self.meanings = meanings or {}
        self.queue = Queue.load(self.out_dir)
        self._ledger_stamp = None
        self._decided: dict = {}
        self.cache = self.out_dir / "review" / "cache"

    def decided(self) -> dict:
        p = ledger.ledger_path(self.out_dir)
        try:
            st = p.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._ledger_stamp:
            self._decided = self.queue.decisions()
            self._ledger_stamp = stamp
        return self._decided


def _current(item: dict, history: list[dict]) -> dict | None:
    """The decision that stands on the item's evidence as it is now (skips decide nothing)."""
    for r in reversed(history):
        if r["decision"] == "skip":
            continue
        return r if r["evidence_digest"] == item["evidence_digest"] else None
    return None


def _filters(params) -> dict:
    score = params.get("min_score") or ""
    try:
        min_score = float(score) if score else None
    except ValueError:
        min_score = None
    return {"source": params.get("source") or "", "reason": params.get("reason") or "",
            "backend": params.get("backend") or "", "min_score": min_score,
            "since_before": params.get("since") or "", "state": params.get("state", "waiting") or ""}


def _select(name: str, values, chosen: str, label: str) -> str:
    opts = "".join(f"<option value='{_e(v)}'{' selected' if v == chosen else ''}>{_e(v or 'any')}</option>"
                   for v in ["", *values])
    return f"<label>{_e(label)} <select name='{_e(name)}'>{opts}</select></label>"


def queue_view(ws: Workspace, params, reviewer: str) -> str:
    f = _filters(params)
    decided = ws.decided()
    items = ws.queue.items
    done = sum(1 for r in items if _current(r, decided.get((r["source"], r["id"]), [])))
    shown = ws.queue.filtered(**f, decided=decided)
    try:
        page = max(1, int(params.get("page") or 1))
    except ValueError:
        page = 1
    pages = max(1, -(-len(shown) // PER_PAGE))
    page = min(page, pages)
    rows = shown[(page - 1) * PER_PAGE: page * PER_PAGE]
    q = {k: v for k, v in params.items() if k != "page" and v}
    back = urllib.parse.urlencode(q)
    counts: dict[str, int] = {}
    for r in shown:
        counts[r["reason"]] = counts.get(r["reason"], 0) + 1
    trs = []
    for r in rows:
        hist = decided.get((r["source"], r["id"]), [])
        cur = _current(r, hist)
        score = "" if r["score"] is None else f"{r['score']:.3g}"
        href = f"/item/{urllib.parse.quote(r['source'])}/{urllib.parse.quote(r['id'])}" + (f"?{back}" if back else "")
        trs.append(
            f"<tr class='{'decided' if cur else 'waiting'}' data-key='{_e(r['source'])}:{_e(r['id'])}'>"
            f"<td><a href='{_e(href)}'>{_e(r['source'])} {_e(r['id'])}</a></td><td>{_e(r['title'])}</td>"
            f"<td>{_e(r['author'])}</td><td>{_e(r['reason'])}</td><td>{_e(r['backend'])}</td>"
            f"<td>{score}</td>"
            f"<td>{_e((r['waiting_since'] or '')[:10])}</td>"
            f"<td>{_e(cur['decision'] + ' by ' + cur['reviewer']) if cur else ('stale: ask again' if r['stale'] else '')}</td></tr>")
    nav = []
    for label, p in (("first", 1), ("previous", page - 1), ("next", page + 1), ("last", pages)):
        if 1 <= p <= pages and p != page:
            nav.append(f"<a rel='{label}' href='/?{_e(urllib.parse.urlencode({**q, 'page': p}))}'>{label}</a>")
    vals = lambda k: sorted({r[k] for r in items if r[k]})  # noqa: E731
    pct = 100 * done / max(len(items), 1)
    who = (f"reviewing as <b id='reviewer'>{_e(reviewer)}</b> <a href='/reviewer'>change</a>" if reviewer else
           "<b>read-only</b>: <a href='/reviewer'>give your name</a> to decide")
    body = f"""<h1>Review queue</h1>
<div class='bar'><span id='progress'>{done:,} decided of {len(items):,} ({len(items) - done:,} waiting)</span>
<span class='progress'><span style='width:{pct:.1f}%'></span></span><span>{who}</span></div>
<form class='bar' method='get' action='/' id='filters'>
{_select('source', vals('source'), f['source'], 'source')} {_select('reason', vals('reason'), f['reason'], 'reason')}
{_select('backend', vals('backend'), f['backend'], 'backend')}
<label>score &ge; <input name='min_score' size='5' value='{_e(params.get('min_score') or '')}'></label>
<label>waiting since before <input name='since' type='date' value='{_e(f['since_before'])}'></label>
{_select('state', ['waiting', 'decided'], f['state'], 'state')}
<button type='submit'>filter</button></form>
<p class='muted' id='counts'>{len(shown):,} item(s) match: {_e(', '.join(f'{k} {v:,}' for k, v in sorted(counts.items())) or 'none')}.
Page {page} of {pages}.</p>
<table id='queue'><thead><tr><th>record</th><th>title</th><th>author</th><th>reason</th><th>checked by</th><th>score</th>
<th>waiting since</th><th>decision</th></tr></thead><tbody>{''.join(trs)}</tbody></table>
<p id='pages'>{' '.join(nav)}</p>"""
    return _page(f"Review queue: {len(items) - done:,} waiting", body)


def _next_key(ws: Workspace, params, key: tuple[str, str]) -> tuple[str, str] | None:
    decided = ws.decided()
    f = _filters(params)
    f["state"] = "waiting"
    shown = ws.queue.filtered(**f, decided=decided)
    keys = [(r["source"], r["id"]) for r in shown]
    if key in keys:
        i = keys.index(key)
        rest = keys[i + 1:] + keys[:i]
    else:
        rest = keys
    return rest[0] if rest else None


def _href(key, back: str) -> str:
    return f"/item/{urllib.parse.quote(key[0])}/{urllib.parse.quote(key[1])}" + (f"?{back}" if back else "")


def item_view(ws: Workspace, key: tuple[str, str], params, reviewer: str) -> str | None:
    i = ws.queue.by_key.get(key)
    if i is None:
        return None
    r = ws.queue.items[i]
    ev = json.loads(r["evidence"] or "{}")
    spans = json.loads(r["music_spans"] or "[]")
    hist = ws.decided().get(key, [])
    cur = _current(r, hist)
    back_q = urllib.parse.urlencode({k: v for k, v in params.items() if v})
    nxt = _next_key(ws, params, key)
    base = f"/item/{urllib.parse.quote(key[0])}/{urllib.parse.quote(key[1])}"
    data = {"source": key[0], "id": key[1], "audio": base + "/audio", "next": _href(nxt, back_q) if nxt else "",
            "back": "/" + (f"?{back_q}" if back_q else "")}
    span_buttons = "".join(
        f"<button type='button' data-play='{float(a):.2f}' data-play-key='{k + 1}'>"
        f"<kbd>{k + 1}</kbd> {float(a):.1f}-{float(b):.1f} s</button>" for k, (a, b) in enumerate(spans[:9]))
    matches = [m for m in ev.get("matches") or [] if m.get("candidate_start") is not None]
    match_buttons = "".join(
        f"<button type='button' data-play='{max(0.0, float(m['candidate_start']) - 1):.2f}'>match at "
        f"{float(m['candidate_start']):.1f} s</button>" for m in matches[:5])
    # the matched reference's passage, beside the recording's, where the reference audio is here
    for k, m in enumerate(ev.get("matches") or []):
        if "reference" in m and reference_file(ws, str(m["reference"])) is not None:
            match_buttons += (f"<button type='button' data-src='{_e(base)}/reference/{k}' "
                              f"data-play='{max(0.0, float(m.get('reference_start') or 0) - 1):.2f}'>reference "
                              f"{_e(m['reference'])} at {float(m.get('reference_start') or 0):.1f} s</button>")
    history = "".join(f"<tr><td>{_e(h['decided_at'])}</td><td>{_e(h['reviewer'])}</td><td>{_e(h['decision'])}</td>"
                      f"<td>{_e(h['note'])}</td><td>{'this evidence' if h['evidence_digest'] == r['evidence_digest'] else 'other evidence'}</td></tr>"
                      for h in hist)
    ro = not reviewer
    stale = f"<p class='stale'>Back in the queue: {_e(r['stale'])}</p>" if r["stale"] else ""
    seconds = f"{r['seconds']:.1f} s" if r["seconds"] else "length unknown"
    body = f"""<p><a href='{_e(data['back'])}'>&larr; queue</a> {'&middot; <a href="' + _e(data['next']) + '">next waiting &rarr;</a> <kbd>n</kbd>' if nxt else ''}</p>
<h1 id='title'>{_e(r['title']) or '(untitled)'} <span class='muted'>{_e(key[0])} {_e(key[1])}</span></h1>
<p>by <b>{_e(r['author'])}</b> &middot; {_e(r['license'])} &middot; {link(r['url'])} &middot; {seconds} &middot; waiting since {_e(r['waiting_since'])}</p>
<p id='reason'><b>{_e(r['reason'])}</b>: {_e(ws.meanings.get(r['reason'], ''))}</p>{stale}
<img class='wave' id='wave' alt='waveform with the music spans' src='{_e(base)}/waveform.png'>
<p class='spans'>music spans: {span_buttons or '<span class=muted>none recorded</span>'} {match_buttons}</p>
<audio id='player' controls preload='none'></audio>
<div id='evidence'>{tables(ev)}</div>
<div class='decide bar'>{'<b>read-only</b>: <a href="/reviewer">give your name</a> to decide' if ro else 'as <b>' + _e(reviewer) + '</b>'}
<label>note <input id='note' size='40'></label>
<button type='button' data-decide='clear'{' disabled' if ro else ''}><kbd>c</kbd> clear</button>
<button type='button' data-decide='reject'{' disabled' if ro else ''}><kbd>r</kbd> reject</button>
<button type='button' data-decide='skip'{' disabled' if ro else ''}><kbd>s</kbd> skip</button>
<span id='status' class='muted'>{_e('decided: ' + cur['decision'] + ' by ' + cur['reviewer']) if cur else ''}</span></div>
<h4>Decisions on this item</h4><table id='history'><thead><tr><th>when</th><th>reviewer</th><th>decision</th><th>note</th><th>on</th></tr></thead>
<tbody>{history}</tbody></table>"""
    attrs = f" data-item='{_e(json.dumps(data))}' data-readonly='{1 if ro else 0}'"
    return _page(f"{key[0]} {key[1]}: review", body, attrs)


def reference_file(ws: Workspace, name: str) -> Path | None:
    """A match's reference recording under `--references` (never outside it), if it is there."""
    if ws.reference_dir is None or not name:
        return None
    p = (ws.reference_dir / name).resolve()
    return p if p.is_relative_to(ws.reference_dir) and p.is_file() else None


def waveform_png(ws: Workspace, key: tuple[str, str]) -> bytes:
    """The recording's waveform (min/max per column) with the music spans shaded; cached by the
    audio's path and evidence digest."""
    import hashlib
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    r = ws.queue.items[ws.queue.by_key[key]]
    tag = hashlib.sha256(f"{r['audio_path']}|{r['music_spans']}".encode()).hexdigest()[:20]
    cached = ws.cache / f"{tag}.png"
    if cached.is_file():
        return cached.read_bytes()
    spans = json.loads(r["music_spans"] or "[]")
    fig, ax = plt.subplots(figsize=(10, 1.8), dpi=80)
    audio = None
    if r["audio_path"]:
        from ..audio import AudioError, load_mono

        try:
            audio = load_mono(r["audio_path"], 2000)
        except (AudioError, OSError):
            audio = None
    if audio is not None and len(audio):
        cols = 1000
        n = len(audio) // cols * cols or len(audio)
        blocks = audio[:n].reshape(-1, max(1, n // cols)) if n >= cols else audio[None, :]
        t = np.linspace(0, len(audio) / 2000, len(blocks))
        ax.fill_between(t, blocks.min(axis=1), blocks.max(axis=1), color="#4c78a8", linewidth=0)
        ax.set_xlim(0, len(audio) / 2000)
    else:
        ax.text(0.5, 0.5, "the audio could not be read", ha="center", va="center", transform=ax.transAxes)
    for a, b in spans:
        ax.axvspan(float(a), float(b), color="#f58518", alpha=0.25, linewidth=0)
    ax.set_yticks([])
    ax.set_xlabel("seconds (shaded: music)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    ws.cache.mkdir(parents=True, exist_ok=True)
    from ..atomic import atomic_write_bytes

    atomic_write_bytes(cached, buf.getvalue())
    return buf.getvalue()


def make_app(out_dir, meanings: dict | None = None, token: str = "", reference_dir=None):
    """The Starlette application over OUT/review (`reference_dir`: the fingerprint index's
    reference recordings, for playing a match's passage of them)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
    from starlette.routing import Route

    ws = Workspace(out_dir, meanings, reference_dir)

    def headers() -> dict:
        return {"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'unsafe-inline'; "
                                           "img-src 'self' data:; media-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

    def allowed(request: Request) -> bool:
        if not token:
            return True
        got = request.cookies.get("review_token") or ""
        auth = request.headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            got = auth[7:]
        return hmac.compare_digest(got.encode(), token.encode())

    def reviewer_of(request: Request) -> str:
        return " ".join((request.cookies.get("reviewer") or "").split())[:80]

    def guard(handler):
        async def inner(request: Request):
            if token and request.query_params.get("token") and \
                    hmac.compare_digest(request.query_params["token"].encode(), token.encode()):
                resp = RedirectResponse(request.url.path, status_code=303)
                resp.set_cookie("review_token", token, httponly=True, samesite="strict")
                return resp
            if not allowed(request):
                return HTMLResponse(_page("token needed", "<h1>A token is needed</h1><p>This workspace is bound "
                                          "beyond this machine: open it with <code>?token=...</code>.</p>"),
                                    status_code=401, headers=headers())
            return await handler(request)
        return inner

    async def home(request: Request):
        return HTMLResponse(queue_view(ws, dict(request.query_params), reviewer_of(request)), headers=headers())

    async def item(request: Request):
        key = (request.path_params["source"], request.path_params["rid"])
        page = item_view(ws, key, dict(request.query_params), reviewer_of(request))
        if page is None:
            return HTMLResponse(_page("not in the queue", f"<h1>{_e(key[0])} {_e(key[1])} is not in the queue</h1>"
                                      "<p><a href='/'>queue</a></p>"), status_code=404, headers=headers())
        return HTMLResponse(page, headers=headers())

    async def wave(request: Request):
        key = (request.path_params["source"], request.path_params["rid"])
        if key not in ws.queue.by_key:
            return Response(status_code=404)
        return Response(waveform_png(ws, key), media_type="image/png", headers=headers())

    async def audio(request: Request):
        from ..copyright.review_page import preview_mp3

        key = (request.path_params["source"], request.path_params["rid"])
        i = ws.queue.by_key.get(key)
        if i is None or not ws.queue.items[i]["audio_path"]:
            return Response(status_code=404)
        try:
            start = max(0.0, float(request.query_params.get("start") or 0))
        except ValueError:
            start = 0.0
        data = preview_mp3(ws.queue.items[i]["audio_path"], start)
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="audio/mpeg", headers=headers())

    async def reference(request: Request):
        from ..copyright.review_page import preview_mp3

        key = (request.path_params["source"], request.path_params["rid"])
        i = ws.queue.by_key.get(key)
        if i is None:
            return Response(status_code=404)
        matches = json.loads(ws.queue.items[i]["evidence"] or "{}").get("matches") or []
        k = request.path_params["k"]
        m = matches[k] if 0 <= k < len(matches) else {}
        path = reference_file(ws, str(m.get("reference") or ""))
        try:
            start = max(0.0, float(request.query_params.get("start") or 0))
        except ValueError:
            start = 0.0
        data = preview_mp3(str(path), start) if path is not None else None
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="audio/mpeg", headers=headers())

    async def decide(request: Request):
        who = reviewer_of(request)
        if not who:
            return JSONResponse({"error": "read-only: give your name first"}, status_code=403, headers=headers())
        origin = request.headers.get("origin")
        if origin and urllib.parse.urlsplit(origin).netloc != request.headers.get("host"):
            return JSONResponse({"error": "a decision comes from this workspace's own pages"}, status_code=403,
                                headers=headers())
        try:
            body = await request.json()
            key = (str(body["source"]), str(body["id"]))
            decision = str(body["decision"])
            note = str(body.get("note") or "")[:2000]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "send source, id, decision"}, status_code=400, headers=headers())
        i = ws.queue.by_key.get(key)
        if i is None:
            return JSONResponse({"error": f"{key[0]} {key[1]} is not in the queue"}, status_code=404, headers=headers())
        if decision not in ledger.DECISIONS:
            return JSONResponse({"error": "decision is clear, reject or skip"}, status_code=400, headers=headers())
        row = ledger.append(ledger.ledger_path(ws.out_dir), key[0], key[1], decision, who, note,
                            ws.queue.items[i]["evidence_digest"])
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.headers.get("referer") or "").query))
        nxt = _next_key(ws, params, key)
        back = urllib.parse.urlencode({k: v for k, v in params.items() if v})
        return JSONResponse({"row": row, "next": _href(nxt, back) if nxt else ""}, headers=headers())

    async def reviewer(request: Request):
        if request.method == "POST":
            form = await request.form()
            name = " ".join(str(form.get("name") or "").split())[:80]
            resp = RedirectResponse("/", status_code=303)
            if name:
                resp.set_cookie("reviewer", name, samesite="strict", max_age=3600 * 24 * 365)
            else:
                resp.delete_cookie("reviewer")
            return resp
        return HTMLResponse(_page("reviewer", f"""<h1>Who is reviewing?</h1><form method='post' action='/reviewer'>
<label>your name <input name='name' id='name' value='{_e(reviewer_of(request))}' autofocus></label>
<button type='submit'>save</button></form><p class='muted'>Your name goes with each decision into the ledger.</p>"""),
            headers=headers())

    async def script(request: Request):
        return Response(JS, media_type="text/javascript", headers=headers())

    async def reload(request: Request):
        ws.queue = Queue.load(ws.out_dir)
        return RedirectResponse("/", status_code=303)

    routes = [
        Route("/", guard(home)),
        Route("/item/{source}/{rid}", guard(item)),
        Route("/item/{source}/{rid}/waveform.png", guard(wave)),
        Route("/item/{source}/{rid}/audio", guard(audio)),
        Route("/item/{source}/{rid}/reference/{k:int}", guard(reference)),
        Route("/api/decide", guard(decide), methods=["POST"]),
        Route("/reviewer", guard(reviewer), methods=["GET", "POST"]),
        Route("/reload", guard(reload), methods=["POST"]),
        Route("/static/app.js", script),
    ]
    return Starlette(routes=routes)
