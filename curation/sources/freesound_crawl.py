"""Freesound's live crawl: search pages fetched and saved exactly as the API returned them (the
saved-page reader in `freesound.py` makes the records), an incremental cursor, the refresh of
sounds seen before, and the audio download."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import pyarrow as pa

from .. import storage
from ..atomic import atomic_write_bytes, atomic_write_text
from ..config import FreesoundAPIConfig
from ..records import Record, valid_id
from .freesound import (AUDIO_EXTS, FIELDS, FreesoundAPIError, created_at, created_epoch, find_audio,
                        normalize_created, page_files, read_pages_tables)
from .freesound_api import DAY_S, DailyLimitReached, FreesoundClient, RequestBudget

log = logging.getLogger(__name__)


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
