"""A local HTTP server on 127.0.0.1 that answers as Freesound APIv2 does, for the parts the
pipeline uses. Each behaviour follows MTG/freesound (read at 4318dcd, July 2026; file:line):

- search at `/apiv2/search/`, and `/apiv2/search/text/` "Kept for backwards compatibility"
  (apiv2/urls.py:45-48); `legacy_only = True` serves
  only the old path, as a server from before the new one would;
- `query`, `filter` (`created:[A TO B]`, `*` for an open end, and `id:(a OR b)`), `sort`
  (created_asc / created_desc / score), `page`, `page_size` (at most 150), `fields`, `next` and
  `previous` links built on `apiv2-sound-search`, i.e. `/apiv2/search/` (apiv2/views.py
  TextSearch.get, :207-216); a page past the end, or below 1, is a 404 (:202 `page >
  paginator.num_pages and count != 0`, :185 `page < 1`: NotFoundException); an empty filter is a
  400 "Invalid filter." (apiv2/forms.py:148-152 clean_filter);
- a date in a filter without its zone is refused by Solr's `pdate` field, which the API passes
  on as a 400 "Search server error: ..." (apiv2/apiv2_utils.py:364-371, SearchEngineException);
- `created` in the real form, UTC with `Z` and no microseconds (apiv2/serializers.py:209-210
  `get_created`: `obj.created.replace(microsecond=0)`, with freesound/settings.py:108 `USE_TZ = True`;
  before that, naive in settings.py:100 `TIME_ZONE = "Europe/Brussels"`);
- only sounds whose `processing_state` and `moderation_state` are "OK" are in the search index
  (search/management/commands/post_dirty_sounds_to_search_engine.py:131): a sound with
  `"moderation_state": "PENDING"` is found once it is set to "OK", with its upload time unchanged;
- a result the index holds that cannot be serialised is `null` in `results` (apiv2/views.py:255-258
  TextSearch: "synchronization errors between solr index, gaia and the database. In that case
  sounds are set to null"): ids in `nulls`;
- sound instances (`/apiv2/sounds/ID/`, 404 once deleted), token auth, OAuth2 originals;
- previews are public CDN links: a preview request that carries any credential is refused
  (a reminder that credentials go only where they are needed);
- throttling as DRF's `SimpleRateThrottle.allow_request`: a sliding window of the times of the
  requests it let through (a refused request is not recorded), `minute_limit` per 60 s and
  `daily_limit` per 24 h on `clock` (rates: freesound/settings.py:874, level 1 `["60/minute",
  "2000/day", None]`); the 429 says "Request was throttled because of exceeding a request limit
  rate (60/minute)" or "(2000/day)" (apiv2/throttling.py:70 and :127) and carries no Retry-After
  (apiv2/exceptions.py:81-84 Throttled sets no `wait`);
- injected faults (429, 500, malformed JSON, reset, hang), keyed by the N-th search request
  ("search:N") or a preview ("preview:ID")."""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOKEN = "s3cr3t-token-value"
OAUTH = "oauth-access-0123"
SEARCH = "/apiv2/search/"
LEGACY_SEARCH = "/apiv2/search/text/"
DATE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"


def throttled(rate: str) -> bytes:
    return json.dumps({"detail": f"Request was throttled because of exceeding a request limit rate ({rate})"}).encode()


class FakeFreesound:
    def __init__(self, sounds: list[dict], audio: dict[int, bytes], page_size: int = 2):
        self.sounds = sounds
        self.audio = audio
        self.page_size = page_size
        self.faults: dict[str, list] = {}  # "search:N" or "preview:ID" -> list of fault codes, consumed in order
        self.requests: list[tuple[str, dict, dict]] = []
        self.down_from_search = 0  # > 0: this search request and every later one get a 500
        self.hang_s = 2.0  # how long a "hang" fault keeps the client waiting
        self.daily_limit = 0  # > 0: API requests allowed per sliding 24 h
        self.minute_limit = 0  # > 0: API requests allowed per sliding 60 s
        self.clock = time.time
        self.allowed: list[float] = []  # when each API request let through was made
        self.legacy_only = False  # true: only /apiv2/search/text/ exists
        self.nulls: set[int] = set()  # sounds whose search result is null
        self.on_search = None  # called with N before the N-th search is answered (a catalogue that changes)
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
                q = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                with outer.lock:
                    outer.requests.append((parts.path, q, dict(self.headers)))
                auth = self.headers.get("Authorization", "")
                if parts.path.startswith("/previews/"):
                    if auth:
                        return self._send(400, b'{"detail": "a public CDN link: no credentials here"}')
                    sid = int(parts.path.split("/")[2].split(".")[0])
                    if outer._fault(f"preview:{sid}", self):
                        return
                    return self._send(200, outer.audio[sid], "audio/ogg")
                if parts.path.startswith("/apiv2/sounds/") and parts.path.endswith("/download/"):
                    if auth != f"Bearer {OAUTH}":
                        return self._send(401, b'{"detail": "Authentication credentials were not provided."}')
                    sid = int(parts.path.split("/")[3])
                    return self._send(200, outer.audio[sid], "application/octet-stream")
                if auth != f"Token {TOKEN}":
                    return self._send(401, json.dumps({"detail": f"Invalid token header {auth}"}).encode())
                if parts.path.startswith("/apiv2/"):
                    refused = outer._throttle()
                    if refused:
                        return self._send(429, throttled(refused))
                m = re.fullmatch(r"/apiv2/sounds/(\d+)/", parts.path)
                if m:
                    found = [x for x in outer.sounds if x["id"] == int(m.group(1))]
                    if not found:
                        return self._send(404, b'{"detail": "Not found."}')
                    return self._send(200, json.dumps(_only(found[0], q.get("fields"))).encode())
                if parts.path not in ((LEGACY_SEARCH,) if outer.legacy_only else (SEARCH, LEGACY_SEARCH)):
                    return self._send(404, b'{"detail": "Not found."}')
                with outer.lock:
                    outer.searches += 1
                    n = outer.searches
                if outer.on_search is not None:
                    outer.on_search(n)
                if outer._fault(f"search:{n}", self):
                    return
                if outer.down_from_search and n >= outer.down_from_search:
                    return self._send(500, b"<html>Server Error</html>", "text/html")
                if "filter" in q and not q["filter"].strip():
                    return self._send(400, b'{"detail": "Invalid filter."}')
                bad = _bad_date(q.get("filter", ""))
                if bad:
                    return self._send(400, json.dumps({"detail": f"Search server error: Invalid Date String:'{bad}' "
                                                                 "(please check that your filter syntax and field "
                                                                 "names are correct)"}).encode())
                page = int(q.get("page", 1))
                size = min(int(q.get("page_size", 15)), 150)
                hits = _search([x for x in outer.sounds if _indexed(x)], q.get("filter", ""), q.get("sort", "score"))
                pages = max(1, -(-len(hits) // size))
                if page < 1 or (page > pages and hits):
                    return self._send(404, b'{"detail": "Not found."}')
                start = (page - 1) * size
                results = [None if x["id"] in outer.nulls else _only(x, q.get("fields"))
                           for x in hits[start : start + size]]
                base = f"http://{self.headers['Host']}{SEARCH}"
                rest = "&".join(f"{k}={v}" for k, v in sorted(q.items()) if k != "page")
                nxt = f"{base}?{rest}&page={page + 1}" if start + size < len(hits) else None
                prev = f"{base}?{rest}&page={page - 1}" if page > 1 else None
                body = {"count": len(hits), "next": nxt, "previous": prev, "results": results}
                return self._send(200, json.dumps(body).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _throttle(self) -> str:
        """The rate that refuses this request ("" when it is let through and recorded)."""
        with self.lock:
            now = self.clock()
            self.api_requests += 1
            for limit, span, rate in ((self.minute_limit, 60.0, f"{self.minute_limit}/minute"),
                                      (self.daily_limit, 86_400.0, f"{self.daily_limit}/day")):
                if limit and sum(1 for t in self.allowed if t > now - span) >= limit:
                    return rate
            self.allowed.append(now)
            return ""

    def _fault(self, key: str, handler) -> bool:
        with self.lock:
            queue = self.faults.get(key) or []
            fault = queue.pop(0) if queue else None
        if fault is None:
            return False
        if fault == 429:
            handler._send(429, throttled("60/minute"))
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

    def search_requests(self) -> list[dict]:
        return [q for p, q, _ in self.requests if p in (SEARCH, LEGACY_SEARCH)]

    def search_pages(self) -> list[int]:
        return [int(q.get("page", 1)) for q in self.search_requests()]

    def search_filters(self) -> list[str]:
        return [q.get("filter", "") for q in self.search_requests()]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _indexed(sound: dict) -> bool:
    return sound.get("processing_state", "OK") == "OK" and sound.get("moderation_state", "OK") == "OK"


def _only(sound: dict, fields: str | None) -> dict:
    """The fields asked for, as the API returns them (all of them when none are named); the
    stand-in's own moderation keys are never part of a result."""
    shown = {k: v for k, v in sound.items() if k not in ("processing_state", "moderation_state")}
    if not fields:
        return shown
    return {k: shown[k] for k in fields.split(",") if k in shown}


def _bad_date(flt: str) -> str:
    """A date in a `created:[A TO B]` term that Solr's pdate would refuse ("" when none)."""
    for m in re.finditer(r"created:\[(\S+) TO (\S+)\]", flt):
        for v in m.groups():
            if v != "*" and not re.fullmatch(DATE, v):
                return v
    return ""


def _search(sounds: list[dict], flt: str, sort: str) -> list[dict]:
    """The filter's `created:[A TO B]` (inclusive; `*` an open end) and `id:(a OR b ...)`
    terms, then the sort; other filter terms are accepted and ignored (the tests' catalogue has
    nothing to filter)."""
    hits = list(sounds)
    m = re.search(r"created:\[(\S+) TO (\S+)\]", flt)
    if m:
        lo, hi = m.groups()
        hits = [x for x in hits if (lo == "*" or str(x.get("created", "")) >= lo)
                and (hi == "*" or str(x.get("created", "")) <= hi)]
    m = re.search(r"id:\(([\d\s]+(?:OR[\d\s]+)*)\)", flt)
    if m:
        ids = {int(t) for t in m.group(1).replace("OR", " ").split()}
        hits = [x for x in hits if x["id"] in ids]
    if sort in ("created_asc", "created_desc"):
        hits.sort(key=lambda x: (str(x.get("created", "")), x["id"]), reverse=sort == "created_desc")
    return hits


def created(i: int, day: int = 1) -> str:
    """Creation times one minute apart, in the API's form (UTC, `Z`, whole seconds)."""
    return f"2024-01-{day:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00Z"


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
