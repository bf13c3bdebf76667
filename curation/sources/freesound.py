"""Freesound: the saved-page reader, which turns the API's search pages (a live crawl's, saved as
the API returned them: `freesound_crawl.py`) into records, so a live run and an offline run over
the same pages give the same records; and where a sound's audio file is."""
from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import pyarrow as pa

from .. import storage
from ..config import Config
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
                   "ev_detail", "ev_text_cleaned", "ev_declared", "ev_uploaded")


_URL_SOURCE_JSON = {v: ev_json({"url_source": v}) for v in ("api", "built:freesound.org/people/USER/sounds/ID/", "")}


def _malformed_values(where: str, detail: str) -> tuple:
    """The values of `_RESULT_COLUMNS` for input that is no record: kept, excluded, with why."""
    return ("freesound", f"malformed:{where}", "", "", "", "", "", None, [], "", "excluded", "malformed_record",
            None, None, None, ev_json(detail), None, None, None)


def _deleted_values(rid: str, checked_at: str) -> tuple:
    """A sound the API answered 404 for when it was checked again: excluded, `source_deleted`
    (ingest keeps the metadata of its last fetched version beside this decision)."""
    return ("freesound", rid, "", "", "", "", "", False, [], "", "excluded", "source_deleted",
            None, None, None, ev_json(f"the API answered 404 for this sound on {checked_at}"), None, None, None)


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
        uploaded(normalize_created(res.get("created")), "freesound:created"),
    )


def uploaded(at: str | None, field: str) -> str | None:
    """When the source says the recording was uploaded (UTC, `CREATED_FORMAT`), as evidence:
    the duplicates step keeps the earliest upload of equal obligations."""
    return None if not at else ev_json({"at": at, "field": field})


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
