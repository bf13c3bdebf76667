"""A local HTTP server on 127.0.0.1 that speaks the parts of Freesound APIv2 the pipeline uses:
text search (`query`, `filter` with `created:[T TO *]` and `id:(a OR b)`, `sort` created_asc /
created_desc / score, `page`, `page_size`, `fields`, `next`), sound instances (404 once
deleted), token auth, previews, OAuth2 originals, a daily request limit (429 with the API's
daily-limit message), and injected faults (429 with Retry-After, 500, malformed JSON), keyed
by the N-th search request ("search:N") or a preview ("preview:ID")."""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOKEN = "s3cr3t-token-value"
OAUTH = "oauth-access-0123"


class FakeFreesound:
    def __init__(self, sounds: list[dict], audio: dict[int, bytes], page_size: int = 2):
        self.sounds = sounds
        self.audio = audio
        self.page_size = page_size
        self.faults: dict[str, list] = {}  # "search:N" or "preview:ID" -> list of fault codes, consumed in order
        self.requests: list[tuple[str, dict, dict]] = []
        self.down_from_search = 0  # > 0: this search request and every later one get a 500
        self.hang_s = 2.0  # how long a "hang" fault keeps the client waiting
        self.daily_limit = 0  # > 0: API requests beyond this many get the daily-limit 429
        self.api_requests = 0
        self.searches = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def _send(self, code, body: bytes, ctype="application/json", headers=None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                parts = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                with outer.lock:
                    outer.requests.append((parts.path, q, dict(self.headers)))
                auth = self.headers.get("Authorization", "")
                if parts.path.startswith("/apiv2/sounds/") and parts.path.endswith("/download/"):
                    if auth != f"Bearer {OAUTH}":
                        return self._send(401, b'{"detail": "Authentication credentials were not provided."}')
                    sid = int(parts.path.split("/")[3])
                    return self._send(200, outer.audio[sid], "application/octet-stream")
                if auth != f"Token {TOKEN}":
                    return self._send(401, json.dumps({"detail": f"Invalid token header {auth}"}).encode())
                if parts.path.startswith("/apiv2/"):
                    with outer.lock:
                        outer.api_requests += 1
                        over = outer.daily_limit and outer.api_requests > outer.daily_limit
                    if over:
                        return self._send(429, b'{"detail": "Request was throttled because of exceeding a request '
                                               b'limit rate (2000/day)"}', headers={"Retry-After": "86400"})
                m = re.fullmatch(r"/apiv2/sounds/(\d+)/", parts.path)
                if m:
                    found = [x for x in outer.sounds if x["id"] == int(m.group(1))]
                    if not found:
                        return self._send(404, b'{"detail": "Not found."}')
                    return self._send(200, json.dumps(_only(found[0], q.get("fields"))).encode())
                if parts.path.startswith("/previews/"):
                    sid = int(parts.path.split("/")[2].split(".")[0])
                    if outer._fault(f"preview:{sid}", self):
                        return
                    return self._send(200, outer.audio[sid], "audio/ogg")
                if parts.path != "/apiv2/search/text/":
                    return self._send(404, b'{"detail": "Not found."}')
                with outer.lock:
                    outer.searches += 1
                    n = outer.searches
                if outer._fault(f"search:{n}", self):
                    return
                if outer.down_from_search and n >= outer.down_from_search:
                    return self._send(500, b"<html>Server Error</html>", "text/html")
                page = int(q.get("page", 1))
                size = min(int(q.get("page_size", 15)), 150)
                hits = _search(outer.sounds, q.get("filter", ""), q.get("sort", "score"))
                start = (page - 1) * size
                results = [_only(x, q.get("fields")) for x in hits[start : start + size]]
                base = f"http://{self.headers['Host']}/apiv2/search/text/"
                rest = "&".join(f"{k}={v}" for k, v in sorted(q.items()) if k != "page")
                nxt = f"{base}?{rest}&page={page + 1}" if start + size < len(hits) else None
                prev = f"{base}?{rest}&page={page - 1}" if page > 1 else None
                body = {"count": len(hits), "next": nxt, "previous": prev, "results": results}
                return self._send(200, json.dumps(body).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _fault(self, key: str, handler) -> bool:
        with self.lock:
            queue = self.faults.get(key) or []
            fault = queue.pop(0) if queue else None
        if fault is None:
            return False
        if fault == 429:
            handler._send(429, b'{"detail": "Request was throttled."}', headers={"Retry-After": "0"})
        elif fault == 500:
            handler._send(500, b"<html>Server Error</html>", "text/html")
        elif fault == "malformed":
            handler._send(200, b'{"count": 3, "results": [')
        elif fault == "reset":  # headers for the whole body, half of it, then the connection drops
            body = self.audio.get(int(key.split(":")[1]), b"x" * 1000) if key.startswith("preview:") else b"{}" * 500
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            handler.close_connection = True
        elif fault == "hang":  # no answer within the client's timeout
            time.sleep(self.hang_s)
            try:
                handler._send(500, b"late")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting, as it should
        return True

    def search_pages(self) -> list[int]:
        return [int(q.get("page", 1)) for p, q, _ in self.requests if p == "/apiv2/search/text/"]

    def search_filters(self) -> list[str]:
        return [q.get("filter", "") for p, q, _ in self.requests if p == "/apiv2/search/text/"]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _only(sound: dict, fields: str | None) -> dict:
    """The fields asked for, as the API returns them (all of them when none are named)."""
    if not fields:
        return dict(sound)
    want = fields.split(",")
    return {k: sound[k] for k in want if k in sound}


def _search(sounds: list[dict], flt: str, sort: str) -> list[dict]:
    """The filter's `created:[T TO *]` (inclusive) and `id:(a OR b ...)` terms, then the sort;
    other filter terms are accepted and ignored (the tests' catalogue has nothing to filter)."""
    hits = list(sounds)
    m = re.search(r"created:\[(\S+) TO \*\]", flt)
    if m:
        hits = [x for x in hits if str(x.get("created", "")) >= m.group(1)]
    m = re.search(r"id:\(([\d\s]+(?:OR[\d\s]+)*)\)", flt)
    if m:
        ids = {int(t) for t in m.group(1).replace("OR", " ").split()}
        hits = [x for x in hits if x["id"] in ids]
    if sort in ("created_asc", "created_desc"):
        hits.sort(key=lambda x: (str(x.get("created", "")), x["id"]), reverse=sort == "created_desc")
    return hits


def created(i: int) -> str:
    """Creation times one minute apart, in the API's format."""
    return f"2024-01-01T{i // 60 % 24:02d}:{i % 60:02d}:00.000000"


def sounds_for(server_url: str, ids, license_url="http://creativecommons.org/publicdomain/zero/1.0/") -> list[dict]:
    return [
        {
            "id": i, "name": f"sound {i}", "tags": ["test"], "description": "", "license": license_url,
            "username": "tester", "url": f"https://freesound.org/people/tester/sounds/{i}/",
            "previews": {"preview-hq-ogg": f"{server_url}/previews/{i}.ogg"}, "type": "wav",
            "gen_ai_preference": "no-additional-preferences", "created": created(i),
        }
        for i in ids
    ]
