"""Freesound: the APIv2 client (live crawl and audio download) and the saved-page reader.

A live crawl writes every search page, exactly as the API returned it, into a folder,
and the saved-page reader is what turns pages into records, so a live run and an
offline run over the same pages give the same records.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import quote, urlsplit

import requests

from .. import storage
from ..atomic import atomic_write_bytes, atomic_write_text
from ..config import Config, FreesoundAPIConfig
import pyarrow as pa

from ..record_table import BASE, ev_json, to_records
from ..records import Record, valid_id
from ..safe_text import clean, clean_fields

log = logging.getLogger(__name__)

def freesound_dirs(cfg: "Config") -> tuple[Path | None, Path | None]:
    fs = cfg.freesound
    if fs.api is not None:
        return cfg.work_dir / "freesound" / "pages", cfg.work_dir / "freesound" / "audio"
    return fs.pages_dir, fs.audio_dir


#: Everything the pipeline reads from a search result.
FIELDS = (
    "id,name,tags,description,license,username,url,previews,type,duration,"
    "samplerate,channels,filesize,gen_ai_preference,created"
)
AUDIO_EXTS = ("wav", "flac", "ogg", "aiff", "aif", "mp3", "m4a", "opus")
#: Search endpoints: `/search/` is today's; `/search/text/` is "kept for backwards
#: compatibility" (MTG/freesound apiv2/urls.py) and asked only where `/search/` is missing.
SEARCH_PATHS = ("/search/", "/search/text/")
#: The zone naive `created` values were written in before the API became time-zone aware
#: (MTG/freesound freesound/settings.py: TIME_ZONE = "Europe/Brussels"; USE_TZ = True since 2025).
NAIVE_ZONE = "Europe/Brussels"
CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def normalize_created(value: object) -> str | None:
    """A `created` value as the search filter takes it: UTC, whole seconds, with `Z`
    (`2024-01-01T00:00:00Z`). Accepts today's form (`...Z` or an offset) and the naive form of
    pages saved before the API was time-zone aware (`2024-01-01T00:00:00.123456`, local time in
    Brussels); None for anything else (Solr's `pdate` refuses a date without its zone: a cursor
    read from old pages, echoed as received, made every later request a 400)."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(NAIVE_ZONE))
    return when.astimezone(dt.timezone.utc).strftime(CREATED_FORMAT)


def created_epoch(created: str) -> float:
    import calendar

    return float(calendar.timegm(time.strptime(created, CREATED_FORMAT)))


def created_at(epoch: float) -> str:
    return time.strftime(CREATED_FORMAT, time.gmtime(epoch))


class FreesoundAPIError(RuntimeError):
    """The API could not be read; the message never carries a credential."""


def _page_sort_key(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def page_files(pages_dir: Path) -> list[Path]:
    return sorted((p for name, p in storage.entries(pages_dir) if name.endswith(".json")), key=_page_sort_key)


# The columns a search result fills, beside the ones every record starts with.
_RESULT_COLUMNS = ("source", "id", "title", "author", "url", "license_raw", "gen_ai_preference", "genai_present",
                   "tags", "description", "status", "reason", "ev_attribution", "ev_previews", "ev_original_type",
                   "ev_detail", "ev_text_cleaned", "ev_declared")


_URL_SOURCE_JSON = {v: ev_json({"url_source": v}) for v in ("api", "built:freesound.org/people/USER/sounds/ID/", "")}


def _malformed_values(where: str, detail: str) -> tuple:
    """The values of `_RESULT_COLUMNS` for input that is no record: kept, excluded, with why."""
    return ("freesound", f"malformed:{where}", "", "", "", "", "", None, [], "", "excluded", "malformed_record",
            None, None, None, ev_json(detail), None, None)


def _deleted_values(rid: str, checked_at: str) -> tuple:
    """A sound the API answered 404 for when it was checked again: excluded, `source_deleted`
    (ingest keeps the metadata of its last fetched version beside this decision)."""
    return ("freesound", rid, "", "", "", "", "", False, [], "", "excluded", "source_deleted",
            None, None, None, ev_json(f"the API answered 404 for this sound on {checked_at}"), None, None)


def _result_values(res: object, where: str) -> tuple:
    """One API search result as the values of `_RESULT_COLUMNS`; a malformed one is kept, excluded."""
    if not isinstance(res, dict) or not valid_id(res.get("id")) or isinstance(res.get("id"), bool):
        rid = res.get("id") if isinstance(res, dict) else None
        return _malformed_values(where, f"result without a valid integer id ({rid!r:.60})")
    tags = res.get("tags") or []
    if not isinstance(tags, list):
        tags = [str(tags)]
    rid = str(res["id"])
    username = str(res.get("username") or "")
    api_url = res.get("url")
    url = str(api_url or (f"https://freesound.org/people/{quote(username)}/sounds/{rid}/" if username else ""))
    url_source = "api" if api_url else ("built:freesound.org/people/USER/sounds/ID/" if url else "")
    previews = res.get("previews")
    gp = res.get("gen_ai_preference")
    text, cleaned = clean_fields({"title": str(res.get("name") or ""), "author": username,
                                  "description": str(res.get("description") or ""), "tags": [str(t) for t in tags]})
    url, _ = clean(url, 2000)
    return (
        "freesound", rid, text["title"], text["author"], url, clean(str(res.get("license") or ""), 500)[0],
        "" if gp is None else clean(str(gp), 200)[0], gp is not None, text["tags"], text["description"],
        "pending", "",
        _URL_SOURCE_JSON[url_source],
        ev_json({k: clean(str(v), 2000)[0] for k, v in sorted(previews.items())}) if isinstance(previews, dict) else None,
        ev_json(clean(str(res["type"]), 50)[0]) if res.get("type") else None,
        None,
        ev_json(cleaned) if cleaned else None,
        _declared(res.get("duration"), "freesound:duration"),
    )


def _declared(value: object, field: str) -> str | None:
    """The length the metadata declares, as evidence (`audio_truncated` is judged against it)."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not seconds > 0 or seconds != seconds or seconds == float("inf") or isinstance(value, bool):
        return None
    return ev_json({"seconds": round(seconds, 3), "field": field})


def _results_table(rows: list[tuple]) -> pa.Table:
    cols = list(zip(*rows)) if rows else [[] for _ in _RESULT_COLUMNS]
    n = len(rows)
    arrays, names = [], []
    given = dict(zip(_RESULT_COLUMNS, cols))
    for f in BASE:
        if f.name in given:
            arrays.append(pa.array(given[f.name], type=f.type))
        elif f.name == "seen":
            arrays.append(pa.repeat(pa.scalar(1, pa.int32()), n))
        elif f.name == "genres":
            arrays.append(pa.array([[]] * n, type=f.type))
        else:
            arrays.append(pa.repeat(pa.scalar("", f.type), n))
        names.append(f.name)
    for c in _RESULT_COLUMNS:
        if c.startswith("ev_") and any(v is not None for v in given[c]):
            arrays.append(pa.array(given[c], type=pa.string()))
            names.append(c)
    return pa.Table.from_arrays(arrays, names=names)


def result_to_record(res: object, where: str) -> Record:
    """One API search result (a dict) to a record; a malformed one is kept, excluded."""
    return to_records(_results_table([_result_values(res, where)]))[0]


def _page_results(path: Path) -> tuple[list, str]:
    """The results of a saved response: a search page (`{count, next, previous, results}`), a
    saved sound instance (`/apiv2/sounds/ID/`, one object with an `id`) or a bare `results`
    array, as other tools save them; else no results and why."""
    try:
        page = json.loads(path.read_bytes().decode("utf-8"))
        if isinstance(page, dict) and isinstance(page.get("deleted"), list):
            return {"deleted": [str(i) for i in page["deleted"] if valid_id(i)],
                    "checked_at": str(page.get("checked_at", ""))}, "deleted"
        if isinstance(page, list):
            results = page
        elif isinstance(page, dict) and "results" not in page and "id" in page:
            results = [page]
        else:
            results = page["results"]
        if not isinstance(results, list):
            raise TypeError("results is not a list")
        return results, ""
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        return [], type(e).__name__


def read_pages_tables(pages_dir: Path, batch_rows: int = 50_000) -> Iterator[pa.Table]:
    """Records from a folder of saved API responses, as tables of about `batch_rows` rows, in
    page order. An unreadable page is kept as one excluded record."""
    return read_page_files(page_files(pages_dir), batch_rows)


def read_page_files(paths: list[Path], batch_rows: int = 50_000) -> Iterator[pa.Table]:
    """Records from these saved API responses, in order (see `read_pages_tables`)."""
    rows: list[tuple] = []
    for path in paths:
        results, error = _page_results(path)
        if error == "deleted":
            rows.extend(_deleted_values(rid, results["checked_at"]) for rid in results["deleted"])
        elif error:
            rows.append(_malformed_values(path.name, f"unreadable page {path.name}: {error}"))
        else:
            rows.extend(_result_values(res, f"{path.name}#{i}") for i, res in enumerate(results))
        if len(rows) >= batch_rows:
            yield _results_table(rows)
            rows = []
    if rows:
        yield _results_table(rows)


def read_pages(pages_dir: Path) -> Iterator[Record]:
    """Records from a folder of saved API responses (see `read_pages_tables`)."""
    for t in read_pages_tables(pages_dir):
        yield from to_records(t)


def audio_index(audio_dir: Path) -> dict[str, Path]:
    """`{id: path}` for the folder, listed once, with the file `find_audio` would pick."""
    rank = {}
    for i, ext in enumerate(AUDIO_EXTS):
        rank[ext] = (i, 0)
        rank[ext.upper()] = (i, 1)
    best: dict[str, tuple] = {}
    if not audio_dir.is_dir():
        return {}
    for name, path in storage.entries(audio_dir):
        stem, dot, ext = name.partition(".")
        if not dot or ext not in rank or not valid_id(stem):
            continue
        if stem not in best or rank[ext] < best[stem][0]:
            best[stem] = (rank[ext], path)
    return {k: v[1] for k, v in best.items()}


def find_audio(audio_dir: Path, rid: str) -> Path | None:
    """`{id}.{ext}` in the audio folder; the id is validated, never a path fragment."""
    if not valid_id(rid):
        return None
    for ext in AUDIO_EXTS:
        for cand in (audio_dir / f"{rid}.{ext}", audio_dir / f"{rid}.{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


# --------------------------------------------------------------------------- live API


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


def _cursor_from_pages(pages_dir: Path) -> str | None:
    """The newest creation time in pages saved before the cursor kept it (older crawls); naive
    and zoned `created` values alike, normalised."""
    last = None
    for p in page_files(pages_dir):
        try:
            page = json.loads(p.read_bytes().decode("utf-8"))
            for r in page.get("results", []):
                c = normalize_created(r.get("created")) if isinstance(r, dict) and valid_id(r.get("id")) else None
                if c and (last is None or c > last):
                    last = c
        except (ValueError, AttributeError):
            continue
    return last


def _load_checked(path) -> dict[str, float]:
    """When each ingested sound was last fetched (id -> epoch seconds)."""
    p = storage.as_path(path)
    if not p.is_file():
        return {}
    t = storage.read_parquet(p)
    return dict(zip(t.column("id").to_pylist(), t.column("checked").to_pylist()))


def _save_checked(path, checked: dict[str, float]) -> None:
    storage.write_parquet(path, pa.table({"id": pa.array(list(checked), pa.string()),
                                          "checked": pa.array(list(checked.values()), pa.float64())}))


def _save_page(pages_dir: Path, cursor: dict, body: bytes) -> None:
    cursor["pages"] = cursor.get("pages", 0) + 1
    atomic_write_bytes(pages_dir / f"page_{cursor['pages']:06d}.json", body)


def _refresh(api: FreesoundAPIConfig, client: FreesoundClient, pages_dir: Path, cursor: dict, cursor_path: Path,
             checked: dict[str, float], now: float) -> tuple[int, int]:
    """Fetch again, oldest first, the sounds last fetched `refresh_days` ago or more, a page of
    them per request (`filter=id:(a OR b ...)`), while the budget lasts. A sound the search no
    longer returns is asked for by id; a 404 is saved as a deletion. Returns (sounds checked,
    sounds found deleted)."""
    due_before = now - api.refresh_days * 86_400
    due = sorted((t, i) for i, t in checked.items() if t <= due_before)
    done = deleted_n = 0
    for start in range(0, len(due), api.page_size):
        if client.budget is not None and client.budget.left <= 0:
            break
        ids = [i for _, i in due[start : start + api.page_size]]
        params = {"query": "", "filter": "id:(" + " OR ".join(ids) + ")", "fields": FIELDS,
                  "page_size": len(ids), "sort": "created_asc"}
        page, raw = client.search(params)
        got = {str(r.get("id")) for r in page["results"] if isinstance(r, dict)}
        gone = [i for i in ids if i not in got and not client.sound_exists(i)]
        stamp = created_at(now)
        if got:
            _save_page(pages_dir, cursor, _without_nulls(page, raw))
        if gone:
            _save_page(pages_dir, cursor, json.dumps({"deleted": gone, "checked_at": stamp}).encode())
        for i in ids:
            if i in gone:
                checked.pop(i, None)
            else:
                checked[i] = now
        atomic_write_text(cursor_path, json.dumps(cursor))
        done += len(ids)
        deleted_n += len(gone)
    return done, deleted_n


def _without_nulls(page: dict, raw: bytes, keep: list | None = None, **extra) -> bytes:
    """The page as saved: as sent, unless results were left out (`keep`: those kept), some were
    null, or `extra` keys are added; then re-encoded, escaped to ASCII (a lone surrogate the API
    sent as \\ud800 stays as it was sent). Null results are sounds the search index holds that
    the API could not serialise (apiv2/views.py TextSearch: "synchronization errors between solr
    index, gaia and the database. In that case sounds are set to null"): no record, counted."""
    results = page["results"]
    nulls = sum(1 for r in results if r is None)
    kept = [r for r in results if r is not None] if keep is None else keep
    if not nulls and not extra and keep is None:
        return raw
    doc = {**page, "results": kept, **extra}
    if len(kept) + nulls < len(results):
        doc["seen_before"] = len(results) - len(kept) - nulls
    if nulls:
        doc["null_results"] = nulls
    return json.dumps(doc, ensure_ascii=True).encode("ascii")


def _keyset(client: FreesoundClient, api: FreesoundAPIConfig, pages_dir: Path, cursor: dict, cursor_path: Path,
            checked: dict[str, float], clock: Callable[[], float], *, start: str | None, end: str | None,
            state: str, tally: dict, max_pages: int = 0, **mark) -> bool:
    """Search `created:[start TO end]` (`*` where None) oldest first, always page 1 of a filter
    that moves on to the newest creation time seen (page 2, 3 ... only while more than a page
    of sounds share one second). A sound is new when its id was never fetched (`checked`), so
    ties, a second-precision `created` and overlapping windows lose and repeat nothing. Saves
    each page of new sounds; `cursor[state]` is the creation time reached, saved after every
    page. Returns whether the window was searched to its end."""
    page_no = 1
    while not (max_pages and tally["pages"] >= max_pages):
        at = cursor.get(state) or start
        rng = f"created:[{at or '*'} TO {end or '*'}]" if (at or end) else ""
        flt = " ".join(x for x in (api.filter, rng) if x)
        params = {"query": api.query, "fields": FIELDS, "page_size": api.page_size, "sort": "created_asc",
                  "page": page_no}
        if flt:
            params["filter"] = flt
        page, raw = client.search(params)
        tally["requests"] += 1
        results = page["results"]
        tally["nulls"] += sum(1 for r in results if r is None)
        dicts = [r for r in results if isinstance(r, dict)]
        tally["seen"] += len(dicts)
        new = [r for r in dicts if not (valid_id(r.get("id")) and str(r.get("id")) in checked)]
        if new:
            body = _without_nulls(page, raw, keep=new if len(new) < len(dicts) else None, **mark)
            _save_page(pages_dir, cursor, body)
            for r in new:
                if valid_id(r.get("id")):
                    checked[str(r.get("id"))] = clock()
            tally["pages"] += 1
            tally["sounds"] += len(new)
        reached = max((c for c in (normalize_created(r.get("created")) for r in dicts) if c), default=None)
        if reached and (not at or reached > at):
            cursor[state] = reached
            page_no = 1
        else:
            page_no += 1  # a full page of sounds of one second: the next page of the same filter
        atomic_write_text(cursor_path, json.dumps(cursor))
        if not page.get("next"):
            return True
    return False


def crawl(api: FreesoundAPIConfig, pages_dir: Path, client: FreesoundClient | None = None,
          clock: Callable[[], float] = time.time) -> dict:
    """Fetch the search results uploaded since the last crawl into `pages_dir`, one saved page
    per request, within the request budget.

    Keyset pagination: results sorted by creation time and filtered to start at the newest
    creation time seen (`created:[T TO *]`, T in UTC with `Z`), always page 1 of that filter;
    so a resumed or later run continues exactly there and sees new uploads, and a sound
    deleted meanwhile shifts nothing (page numbers would skip one). The cursor is saved after
    every page. Then, caught up, the lookback: a sound is in the search index only once its
    processing and moderation are OK (MTG/freesound
    search/management/commands/post_dirty_sounds_to_search_engine.py), and `created` is its
    upload time, so a sound approved after the crawl passed its upload time would never be
    returned; each run searches `lookback_days` behind the cursor again for ids never fetched.
    Then the refresh of sounds fetched `refresh_days` ago. An API failure after the retries,
    or the budget spent (ours or the API's 429), stops the crawl, not the run: the summary
    says why and the next run continues.
    """
    storage.mkdirs(pages_dir)
    state_dir = pages_dir.parent
    cursor_path = state_dir / "crawl_cursor.json"
    cursor: dict = {}
    if cursor_path.exists():
        try:
            cursor = json.loads(cursor_path.read_text())
        except (ValueError, OSError):
            cursor = {}
    if not (isinstance(cursor, dict) and isinstance(cursor.get("last_created"), (str, type(None)))
            and isinstance(cursor.get("pages", 0), int)):
        cursor = {}  # garbage: the cursor is read again from the saved pages
    if "last_created" not in cursor:  # no cursor, or one from page-number crawls: read the saved pages
        cursor = {"last_created": _cursor_from_pages(pages_dir), "pages": len(page_files(pages_dir))}
    for k in ("last_created", "lookback_at"):  # a cursor written from naive pages: normalised
        if cursor.get(k) is not None:
            cursor[k] = normalize_created(cursor[k])
    client = client or FreesoundClient.from_config(api)
    if client.budget is None:
        client.budget = RequestBudget(state_dir / "api_budget.json", api.daily_budget, api.per_minute)
    start_requests = client.requests
    caught_up = False
    error = stopped = ""
    checked_path = state_dir / "checked.parquet"
    checked = _load_checked(checked_path)
    if not checked and cursor.get("pages"):  # pages from before this state was kept: fetched now
        now = clock()
        checked = {i: now for t in read_pages_tables(pages_dir) for i in t.column("id").to_pylist() if valid_id(i)}
    forward = {"requests": 0, "pages": 0, "sounds": 0, "seen": 0, "nulls": 0}
    back = {"requests": 0, "pages": 0, "sounds": 0, "seen": 0, "nulls": 0}
    lookback: dict = {}
    refreshed = deleted = 0
    try:
        caught_up = _keyset(client, api, pages_dir, cursor, cursor_path, checked, clock, start=None, end=None,
                            state="last_created", tally=forward, max_pages=api.max_pages)
        if caught_up and api.lookback_days > 0 and cursor.get("last_created"):
            end = cursor["last_created"]
            begin = created_at(created_epoch(end) - api.lookback_days * DAY_S)
            if not (cursor.get("lookback_at") and begin <= cursor["lookback_at"] <= end):
                cursor["lookback_at"] = None  # a new pass over the window
            lookback = {"from": begin, "to": end, "resumed_at": cursor.get("lookback_at")}
            done = _keyset(client, api, pages_dir, cursor, cursor_path, checked, clock, start=begin, end=end,
                           state="lookback_at", tally=back, lookback=True)
            if done:
                cursor["lookback_at"] = None
                cursor["lookback_done"] = created_at(clock())
                atomic_write_text(cursor_path, json.dumps(cursor))
            lookback["complete"] = done
        if caught_up and api.refresh_days > 0:
            refreshed, deleted = _refresh(api, client, pages_dir, cursor, cursor_path, checked, clock())
    except DailyLimitReached as e:
        stopped = error = str(e)
        log.warning("Freesound crawl stopped at the daily limit: %s (the next run continues)", e)
    except FreesoundAPIError as e:
        error = str(e)
        log.error("Freesound crawl stopped: %s (the next run continues after %s)", error, cursor.get("last_created"))
    _save_checked(checked_path, checked)
    if lookback:
        lookback.update(requests=back["requests"], seen=back["seen"], found=back["sounds"])
        lookback.setdefault("complete", False)
        if back["sounds"]:
            log.warning("the lookback found %d sound(s) uploaded before the cursor and indexed after it "
                        "passed them (approved late)", back["sounds"])
    nulls = forward["nulls"] + back["nulls"]
    if nulls:
        log.warning("the search returned %d null result(s) (sounds the API could not serialise); the "
                    "lookback asks for them again", nulls)
    budget = client.budget
    return {"pages": forward["pages"] + back["pages"], "sounds": forward["sounds"] + back["sounds"],
            "new_uploads": forward["sounds"], "caught_up": caught_up, "error": error, "stopped": stopped,
            "lookback": lookback, "null_results": nulls, "refreshed": refreshed, "deleted": deleted,
            "requests": client.requests - start_requests,
            "requests_today": budget.used if budget is not None else 0,
            "daily_budget": api.daily_budget, "cursor": cursor}


def download_audio(record: Record, api: FreesoundAPIConfig, audio_dir: Path, client: FreesoundClient) -> Path:
    """Download one record's audio to `audio_dir/{id}.{ext}` (skipped when already there)."""
    existing = find_audio(audio_dir, record.id)
    if existing:
        return existing
    if api.download == "original" and client.oauth_token:
        ext = str(record.evidence.get("original_type", "")).lower()
        if ext not in AUDIO_EXTS:
            raise FreesoundAPIError(f"sound {record.id}: unsupported original type {ext!r}")
        url = api.base_url.rstrip("/") + f"/sounds/{record.id}/download/"
        return client.download(url, audio_dir / f"{record.id}.{ext}", oauth=True)
    previews = record.evidence.get("previews") or {}
    for key, ext in (("preview-hq-ogg", "ogg"), ("preview-hq-mp3", "mp3"), ("preview-lq-ogg", "ogg"),
                     ("preview-lq-mp3", "mp3")):
        if previews.get(key):
            return client.download(previews[key], audio_dir / f"{record.id}.{ext}")
    raise FreesoundAPIError(f"sound {record.id}: no preview URL in the search result")
