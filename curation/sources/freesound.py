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
from ..config import FreesoundAPIConfig
import pyarrow as pa

from ..record_table import BASE, ev_json, to_records
from ..records import Record, valid_id
from ..safe_text import clean, clean_fields

log = logging.getLogger(__name__)

#: Everything the pipeline reads from a search result.
FIELDS = (
    "id,name,tags,description,license,username,url,previews,type,duration,"
    "samplerate,channels,filesize,gen_ai_preference,created"
)
AUDIO_EXTS = ("wav", "flac", "ogg", "aiff", "aif", "mp3", "m4a", "opus")


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
            try:
                resp = self.session.get(
                    url, params=params, headers=self._auth(oauth), timeout=self.timeout_s, stream=stream
                )
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
                wait = _retry_after(resp.headers.get("Retry-After"), self.backoff_s * 2 ** min(throttled - 1, 6))
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


class RequestBudget:
    """Requests per UTC day and per minute (Freesound's defaults: 2,000 and 60). The day's count
    is kept in `state_path`, so successive runs of one day share it; `take()` waits for the
    minute's allowance and raises DailyLimitReached when the day's is spent."""

    def __init__(self, state_path: Path, per_day: int, per_minute: int,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep):
        self.path, self.per_day, self.per_minute = state_path, per_day, per_minute
        self.clock, self.sleep = clock, sleep
        self.recent: list[float] = []
        self.day, self.used = self._today(), 0
        try:
            state = json.loads(storage.as_path(state_path).read_text())
            if state.get("day") == self.day:
                self.used = max(0, int(state.get("used", 0)))
        except (OSError, ValueError, FileNotFoundError, AttributeError, TypeError):
            pass  # no state, or one that cannot be trusted: count from zero (the API's own limit still stops us)

    def _today(self) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self.clock()))

    def _save(self) -> None:
        atomic_write_text(self.path, json.dumps({"day": self.day, "used": self.used}))

    @property
    def left(self) -> int:
        if self._today() != self.day:
            return self.per_day
        return max(0, self.per_day - self.used)

    def exhaust(self) -> None:
        self.day, self.used = self._today(), max(self.used, self.per_day)
        self._save()

    def take(self) -> None:
        today = self._today()
        if today != self.day:
            self.day, self.used = today, 0
        if self.used >= self.per_day:
            raise DailyLimitReached(f"the daily request budget ({self.per_day}) is spent for {self.day} (UTC)")
        if self.per_minute > 0:
            while True:
                now = self.clock()
                self.recent = [t for t in self.recent if now - t < 60.0]
                if len(self.recent) < self.per_minute:
                    break
                self.sleep(60.0 - (now - self.recent[0]) + 0.01)
            self.recent.append(self.clock())
        self.used += 1
        self._save()


def _retry_after(value: str | None, default: float) -> float:
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    return default


def _created_key(result: dict) -> tuple[str, int]:
    return (str(result.get("created") or ""), int(result.get("id") or 0))


def _cursor_from_pages(pages_dir: Path) -> tuple[str, int] | None:
    """The last (created, id) in pages saved before the cursor kept it (older crawls)."""
    last = None
    for p in page_files(pages_dir):
        try:
            page = json.loads(p.read_bytes().decode("utf-8"))
            for r in page.get("results", []):
                if isinstance(r, dict) and r.get("created") and valid_id(r.get("id")):
                    k = _created_key(r)
                    last = k if last is None or k > last else last
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
        page, raw = client.get_json(api.base_url.rstrip("/") + "/search/text/", params)
        got = {str(r.get("id")) for r in page["results"] if isinstance(r, dict)}
        gone = [i for i in ids if i not in got and not client.sound_exists(i)]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        for body in ([raw] if got else []) + ([json.dumps({"deleted": gone, "checked_at": stamp}).encode()]
                                                if gone else []):
            cursor["pages"] = cursor.get("pages", 0) + 1
            atomic_write_bytes(pages_dir / f"page_{cursor['pages']:06d}.json", body)
        for i in ids:
            if i in gone:
                checked.pop(i, None)
            else:
                checked[i] = now
        atomic_write_text(cursor_path, json.dumps(cursor))
        done += len(ids)
        deleted_n += len(gone)
    return done, deleted_n


def crawl(api: FreesoundAPIConfig, pages_dir: Path, client: FreesoundClient | None = None,
          clock: Callable[[], float] = time.time) -> dict:
    """Fetch the search results uploaded since the last crawl into `pages_dir`, one saved page
    per request, within the request budget.

    Keyset pagination: results sorted by creation time (then id) and filtered to start at the
    last sound seen (`created:[T TO *]`), always page 1 of that filter; so a resumed or later
    run continues exactly there and sees new uploads, and a sound deleted meanwhile shifts
    nothing (page numbers would skip one). The cursor is saved after every page. An API
    failure after the retries, or the day's budget spent (ours or the API's 429), stops the
    crawl, not the run: the summary says why and the next run continues.
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
            and isinstance(cursor.get("last_id"), (int, type(None))) and isinstance(cursor.get("pages", 0), int)):
        cursor = {}  # garbage: the cursor is read again from the saved pages
    if "last_created" not in cursor:  # no cursor, or one from page-number crawls: read the saved pages
        last = _cursor_from_pages(pages_dir)
        cursor = {"last_created": last[0] if last else None, "last_id": last[1] if last else None,
                  "pages": len(page_files(pages_dir))}
    client = client or FreesoundClient.from_config(api)
    if client.budget is None:
        client.budget = RequestBudget(state_dir / "api_budget.json", api.daily_budget, api.per_minute)
    start_requests = client.requests
    fetched = sounds = 0
    caught_up = False
    error = stopped = ""
    tie_page = 1  # > 1 only while more than a page of sounds share one creation time
    checked_path = state_dir / "checked.parquet"
    checked = _load_checked(checked_path)
    if not checked and cursor.get("pages"):  # pages from before this state was kept: fetched now
        now = clock()
        checked = {i: now for t in read_pages_tables(pages_dir) for i in t.column("id").to_pylist() if valid_id(i)}
    refreshed = deleted = 0
    try:
        while not (api.max_pages and fetched >= api.max_pages):
            flt = api.filter
            if cursor.get("last_created"):
                flt = f"{flt} created:[{cursor['last_created']} TO *]".strip()
            params = {"query": api.query, "fields": FIELDS, "page_size": api.page_size, "sort": "created_asc",
                      "page": tie_page}
            if flt:
                params["filter"] = flt
            page, raw = client.get_json(api.base_url.rstrip("/") + "/search/text/", params)
            results = [r for r in page["results"] if isinstance(r, dict)]
            after = (cursor.get("last_created") or "", cursor.get("last_id") or 0)
            new = [r for r in results if _created_key(r) > after] if cursor.get("last_created") else results
            if new:
                n = cursor.get("pages", 0) + 1
                if len(new) < len(results):
                    # the filter starts at the last creation time seen (inclusive, for ties): the
                    # results an earlier page holds are left out, each kept result as sent (escaped
                    # to ASCII: a lone surrogate the API sent as \ud800 stays as it was sent)
                    raw = json.dumps({**page, "results": new, "seen_before": len(results) - len(new)},
                                     ensure_ascii=True).encode("ascii")
                atomic_write_bytes(pages_dir / f"page_{n:06d}.json", raw)
                last = max(_created_key(r) for r in new)
                cursor = {"last_created": last[0], "last_id": last[1], "pages": n}
                atomic_write_text(cursor_path, json.dumps(cursor))
                for r in new:
                    checked[str(r.get("id"))] = clock()
                fetched += 1
                sounds += len(new)
                tie_page = 1
            if not page.get("next"):
                caught_up = True  # the last page from the cursor on: nothing newer yet
                break
            if not new:
                tie_page += 1  # a full page of sounds already seen (one creation time): the next one
        if caught_up and api.refresh_days > 0:
            refreshed, deleted = _refresh(api, client, pages_dir, cursor, cursor_path, checked, clock())
    except DailyLimitReached as e:
        stopped = error = str(e)
        log.warning("Freesound crawl stopped at the daily limit: %s (the next run continues)", e)
    except FreesoundAPIError as e:
        error = str(e)
        log.error("Freesound crawl stopped: %s (the next run continues after %s)", error, cursor.get("last_created"))
    _save_checked(checked_path, checked)
    budget = client.budget
    return {"pages": fetched, "sounds": sounds, "caught_up": caught_up, "error": error, "stopped": stopped,
            "refreshed": refreshed, "deleted": deleted,
            "requests": client.requests - start_requests,
            "requests_today": budget.used if budget is not None and budget.day == budget._today() else 0,
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
