"""Freesound APIv2: the client (token auth, 429 waits, bounded retries) and the daily request
budget, which the crawl (`freesound_crawl.py`) and the audio download share."""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import requests

from .. import storage
from ..atomic import atomic_write_bytes, atomic_write_text
from ..config import FreesoundAPIConfig
from .freesound import SEARCH_PATHS, FreesoundAPIError, created_at

log = logging.getLogger(__name__)


def resolve_token(api: FreesoundAPIConfig) -> str:
    from ..secrets import read_secret

    token = read_secret(api.token_env, api.token_secret_block)
    if not token:
        raise FreesoundAPIError(
            f"no Freesound API token: set {api.token_env} or name a Prefect Secret block in "
            "freesound.api.token_secret_block"
        )
    return token


@dataclass
class FreesoundClient:
    """A small APIv2 client on requests: token auth, 429 waits, bounded retries."""

    base_url: str
    token: str
    timeout_s: float = 30.0
    max_retries: int = 5
    backoff_s: float = 1.0
    oauth_token: str = ""
    sleep: Callable[[float], None] = time.sleep
    budget: "RequestBudget | None" = None  # counts and paces the API's requests (not CDN downloads)

    @classmethod
    def from_config(cls, api: FreesoundAPIConfig) -> "FreesoundClient":
        return cls(api.base_url, resolve_token(api), api.timeout_s, api.max_retries, api.backoff_s,
                   oauth_token=os.environ.get(api.oauth_token_env, ""))

    def __post_init__(self) -> None:
        self.requests = 0  # API requests made by this client (each retry is one)
        self._search_path = 0  # index in SEARCH_PATHS
        self._search_seen = False  # a search answered: later 404s are pages past the end
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "audio-curation/0.1"

    def _redact(self, text: str) -> str:
        for secret in (self.token, self.oauth_token):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _auth(self, oauth: bool) -> dict[str, str]:
        if oauth:
            return {"Authorization": f"Bearer {self.oauth_token}"}
        return {"Authorization": f"Token {self.token}"}

    def _get(self, url: str, params: dict | None = None, oauth: bool = False, stream: bool = False):
        attempt = 0
        throttled = 0
        where = self._redact(urlsplit(url).path)
        is_api = url.startswith(self.base_url.rstrip("/"))
        while True:
            if is_api:
                if self.budget is not None:
                    self.budget.take()
                self.requests += 1
            # credentials go only where they are needed: the API (token) and originals (OAuth2);
            # previews are public CDN links and get neither
            headers = self._auth(oauth) if (is_api or oauth) else {}
            try:
                resp = self.session.get(url, params=params, headers=headers, timeout=self.timeout_s, stream=stream)
            except (requests.Timeout, requests.ConnectionError) as e:
                attempt += 1
                if attempt > self.max_retries:
                    raise FreesoundAPIError(
                        f"GET {where}: {type(e).__name__} after {attempt} attempts"
                    ) from None
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
                continue
            if resp.status_code == 429 and _daily_limit(resp):
                if self.budget is not None:
                    self.budget.exhaust()
                raise DailyLimitReached(f"GET {where}: HTTP 429, the API's daily request limit is reached")
            if resp.status_code == 429:
                throttled += 1
                if throttled > max(self.max_retries, 10):
                    raise FreesoundAPIError(f"GET {where}: still throttled (429) after {throttled} waits")
                # Freesound's 429s carry no Retry-After (apiv2/exceptions.py Throttled has no `wait`):
                # back off, and where our own minute window is full, wait until it frees
                wait = _retry_after(resp.headers.get("Retry-After"), self.backoff_s * 2 ** min(throttled - 1, 6))
                if self.budget is not None and not resp.headers.get("Retry-After"):
                    wait = max(wait, self.budget.minute_wait())
                log.warning("Freesound throttled the crawl (429); waiting %.1f s", wait)
                self.sleep(wait)
                continue
            if resp.status_code >= 500:
                attempt += 1
                if attempt > self.max_retries:
                    raise FreesoundAPIError(f"GET {where}: HTTP {resp.status_code} after {attempt} attempts")
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
                continue
            if resp.status_code in (401, 403):
                raise FreesoundAPIError(f"GET {where}: HTTP {resp.status_code} (check the API token)")
            if resp.status_code == 404:
                raise NotFound(f"GET {where}: HTTP 404")
            if resp.status_code >= 400:
                raise FreesoundAPIError(f"GET {where}: HTTP {resp.status_code}")
            return resp

    def get_json(self, url: str, params: dict | None = None) -> tuple[dict, bytes]:
        """A page as parsed JSON and the raw bytes; malformed JSON is retried, then an error."""
        attempt = 0
        while True:
            resp = self._get(url, params=params)
            body = resp.content
            try:
                data = json.loads(body)
                if not isinstance(data, dict) or not isinstance(data.get("results"), list):
                    raise ValueError("not a search page")
                return data, body
            except ValueError:
                attempt += 1
                if attempt > self.max_retries:
                    raise FreesoundAPIError(
                        f"GET {self._redact(urlsplit(url).path)}: malformed JSON after {attempt} attempts"
                    ) from None
                self.sleep(self.backoff_s * 2 ** (attempt - 1))

    def search(self, params: dict) -> tuple[dict, bytes]:
        """One search page (`/search/`; `/search/text/` only where `/search/` is missing). A
        page past the end is a 404 on the real API (apiv2/views.py TextSearch: `page >
        paginator.num_pages and count != 0`): it is returned as an empty last page."""
        base = self.base_url.rstrip("/")
        while True:
            try:
                page, raw = self.get_json(base + SEARCH_PATHS[self._search_path], params)
                self._search_seen = True
                return page, raw
            except NotFound:
                if int(params.get("page", 1)) > 1 and self._search_seen:
                    return {"count": None, "next": None, "previous": None, "results": []}, b""
                if self._search_seen or self._search_path + 1 >= len(SEARCH_PATHS):
                    raise
                self._search_path += 1
                log.warning("the API has no %s; searching %s (deprecated) instead", SEARCH_PATHS[0],
                            SEARCH_PATHS[self._search_path])

    def sound_exists(self, sound_id: str) -> bool:
        """Whether `/sounds/ID/` answers (False on 404: the sound was deleted)."""
        try:
            self._get(self.base_url.rstrip("/") + f"/sounds/{int(sound_id)}/", params={"fields": "id"})
            return True
        except NotFound:
            return False

    def download(self, url: str, dest: Path, oauth: bool = False) -> Path:
        """The file at `url` in `dest`, whole: a connection reset or timeout part way, or fewer
        bytes than Content-Length says, is retried (bounded); nothing is written until the
        whole file is here, so a half-downloaded file is never left to be scored."""
        where = self._redact(urlsplit(url).path)
        for attempt in range(1, self.max_retries + 2):
            resp = self._get(url, oauth=oauth, stream=True)
            try:
                data = b"".join(resp.iter_content(1 << 16))
                want = resp.headers.get("Content-Length")
                if want is not None and resp.headers.get("Content-Encoding", "identity") == "identity" \
                        and int(want) != len(data):
                    raise requests.exceptions.ContentDecodingError(f"{len(data)} of {want} bytes")
            except (requests.exceptions.RequestException, ValueError) as e:
                if attempt > self.max_retries:
                    raise FreesoundAPIError(f"GET {where}: download incomplete after {attempt} attempts "
                                            f"({type(e).__name__})") from None
                log.warning("download of %s broke off (%s); trying again", where, type(e).__name__)
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
                continue
            finally:
                resp.close()
            atomic_write_bytes(dest, data)
            return dest
        raise AssertionError("unreachable")


class NotFound(FreesoundAPIError):
    """HTTP 404."""


class DailyLimitReached(FreesoundAPIError):
    """The day's requests are spent (our budget, or the API's own daily limit): stop until tomorrow."""


def _daily_limit(resp) -> bool:
    """A 429 that says the daily limit is reached (Freesound: "... request limit rate (2000/day)"),
    as opposed to a short burst limit that a wait clears."""
    try:
        text = resp.text[:2000].lower()
    except Exception:
        return False
    return "/day" in text or "per day" in text or "daily" in text


DAY_S = 86_400.0


class RequestBudget:
    """Requests per sliding 24 hours and per minute (Freesound's defaults for level 1: 2,000
    and 60). The API's limits are sliding windows, not calendar days: DRF's
    `SimpleRateThrottle.allow_request` keeps the times of the requests it allowed in the last
    `duration` seconds and refuses while there are `num_requests` of them (a refused request is
    not recorded), with rates from `APIV2_BASIC_THROTTLING_RATES_PER_LEVELS` (MTG/freesound
    freesound/settings.py: `1: ["60/minute", "2000/day", None]`). So the times of this
    project's requests in the last 24 h are kept in `state_path` (successive runs share them);
    `take()` waits for the minute's allowance and raises DailyLimitReached while 24 h hold
    `per_day` requests, saying when the next one frees."""

    def __init__(self, state_path: Path, per_day: int, per_minute: int,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep):
        self.path, self.per_day, self.per_minute = state_path, per_day, per_minute
        self.clock, self.sleep = clock, sleep
        self.recent: list[float] = []  # this minute's
        self.window: list[float] = []  # the last 24 h's, oldest first
        self.blocked_until = 0.0  # the API said its daily limit is reached: no request before this
        now = self.clock()
        try:
            state = json.loads(storage.as_path(state_path).read_text())
            if isinstance(state.get("requests"), list):
                self.window = sorted(float(t) for t in state["requests"] if now - DAY_S < float(t) <= now + 60)
                self.blocked_until = float(state.get("blocked_until") or 0.0)
            elif state.get("day") == time.strftime("%Y-%m-%d", time.gmtime(now)):
                # a state from the calendar-day budget: its requests, of unknown times, count as made now
                self.window = [now] * min(self.per_day, max(0, int(state.get("used", 0))))
        except (OSError, ValueError, FileNotFoundError, AttributeError, TypeError):
            pass  # no state, or one that cannot be trusted: count from zero (the API's own limit still stops us)

    def _prune(self) -> float:
        now = self.clock()
        cut = now - DAY_S
        i = 0
        while i < len(self.window) and self.window[i] <= cut:
            i += 1
        if i:
            del self.window[:i]
        return now

    def _save(self) -> None:
        atomic_write_text(self.path, json.dumps({"window_s": DAY_S, "requests": self.window,
                                                 "blocked_until": self.blocked_until}))

    @property
    def used(self) -> int:
        """Requests in the last 24 h."""
        self._prune()
        return len(self.window)

    @property
    def left(self) -> int:
        now = self._prune()
        if now < self.blocked_until:
            return 0
        return max(0, self.per_day - len(self.window))

    def next_free(self) -> float:
        """When the next request may be made (now, if one may)."""
        now = self._prune()
        at = self.blocked_until if now < self.blocked_until else now
        if len(self.window) >= self.per_day:
            at = max(at, self.window[len(self.window) - self.per_day] + DAY_S)
        return at

    def exhaust(self, probe_s: float = 3600.0) -> None:
        """The API answered its daily-limit 429. Where our own requests fill the window, the
        next frees when the oldest of them is 24 h old; where they do not (the key is shared),
        nobody can say when: ask again in `probe_s` (a refused request costs nothing)."""
        now = self._prune()
        if len(self.window) >= self.per_day:
            self.blocked_until = self.window[len(self.window) - self.per_day] + DAY_S
        else:
            self.blocked_until = now + probe_s
        self._save()

    def minute_wait(self) -> float:
        """Seconds until the minute's allowance has room for one more request (0: now)."""
        now = self.clock()
        self.recent = [t for t in self.recent if now - t < 60.0]
        if self.per_minute > 0 and len(self.recent) >= self.per_minute:
            return 60.0 - (now - self.recent[0]) + 0.01
        return 0.0

    def take(self) -> None:
        now = self._prune()
        if now < self.blocked_until or len(self.window) >= self.per_day:
            at = self.next_free()
            why = ("the API's daily limit was reached" if now < self.blocked_until
                   else f"the request budget ({self.per_day} per 24 h) is spent")
            raise DailyLimitReached(f"{why}; the next request is allowed at {created_at(at)}")
        if self.per_minute > 0:
            while (wait := self.minute_wait()) > 0:
                self.sleep(wait)
            self.recent.append(self.clock())
        self.window.append(self.clock())
        self._save()


def _retry_after(value: str | None, default: float) -> float:
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    return default
