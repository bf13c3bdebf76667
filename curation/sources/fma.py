"""Free Music Archive: `fma_metadata/tracks.csv` in its published layout, and the
`raw_tracks.csv` beside it, which holds what tracks.csv lacks: each track's page URL and
the URL of its exact license.

tracks.csv has two header rows (`track`/`album`/`artist`/`set` over the field names) and
an index row `track_id`. Audio lives at `AUDIO_DIR/XXX/XXXXXX.mp3`.
"""
from __future__ import annotations

import ast
import csv
import html
import io
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from .. import storage
from ..records import Record, valid_id
from ..safe_text import clean, clean_fields

REQUIRED = [("track", "title"), ("track", "license"), ("artist", "name")]


class FMAFormatError(ValueError):
    pass


def audio_path(audio_dir: Path, rid: str) -> Path:
    tid = f"{int(rid):06d}"
    return audio_dir / tid[:3] / f"{tid}.mp3"


def _str(v: object) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return str(v)


def _list(v: object) -> list[str]:
    s = _str(v).strip()
    if not s:
        return []
    if s.startswith("["):
        try:
            val = ast.literal_eval(s)
            return [str(x) for x in val] if isinstance(val, (list, tuple)) else [s]
        except (ValueError, SyntaxError):
            return [s]
    return [s]


def read_tracks(tracks_csv: Path) -> Iterator[Record]:
    """One record per data row. A row whose field count differs from the header's (a
    truncated or split line) or whose track_id is not an integer is kept, excluded as
    malformed; a file not in the published layout is an :class:`FMAFormatError`."""
    try:
        # Bytes that are not UTF-8 are kept (surrogateescape) and replaced in the one row they
        # are in (clean_fields), not a reason to refuse the whole file.
        with storage.as_path(tracks_csv).open("r", newline="", encoding="utf-8", errors="surrogateescape") as f:
            rows = csv.reader(f)
            groups, fields = next(rows, []), next(rows, [])
            index_row = next(rows, [])
            if not index_row or index_row[0] != "track_id" or any(index_row[1:]):
                raise FMAFormatError(f"{tracks_csv}: third row is not the `track_id` index row of FMA's layout")
            cols: dict[tuple[str, str], int] = {}
            group = ""
            for i, (g, name) in enumerate(zip(groups, fields)):
                group = g or group
                if i:
                    cols[(group, name)] = i
            missing = [c for c in REQUIRED if c not in cols]
            if missing:
                raise FMAFormatError(
                    f"{tracks_csv}: missing column(s) {', '.join('/'.join(c) for c in missing)} "
                    "(expected FMA's two header rows, e.g. track/title)"
                )
            width = len(fields)
            for n, row in enumerate(rows, start=4):
                if not row:
                    continue
                first = row[0].strip()
                if not valid_id(first):
                    r = Record(source="fma", id=f"malformed:line{n}")
                    r.exclude("malformed_record", detail=f"line {n}: track_id is not an integer: {first[:60]!r}")
                    yield r
                    continue
                rid = str(int(first))
                if len(row) != width:
                    r = Record(source="fma", id=rid)
                    r.exclude("malformed_record", detail=f"line {n}: {len(row)} fields, expected {width}")
                    yield r
                    continue

                def get(key: tuple[str, str]) -> str:
                    return row[cols[key]] if key in cols else ""

                genre = get(("track", "genre_top"))
                text, cleaned = clean_fields({"title": get(("track", "title")), "author": get(("artist", "name")),
                                              "description": get(("album", "title")),
                                              "tags": _list(get(("track", "tags"))),
                                              "genres": [genre] if genre else []})
                r = Record(
                    source="fma",
                    id=rid,
                    title=text["title"],
                    author=text["author"],
                    url="",  # tracks.csv has no URL: only raw_tracks.csv gives FMA's own (attach_raw_tracks)
                    license_raw=clean(get(("track", "license")), 500)[0],
                    tags=text["tags"],
                    description=text["description"],
                    genres=text["genres"],
                )
                if cleaned:
                    r.evidence["text_cleaned"] = cleaned
                at = _date_created(get(("track", "date_created")))
                if at:
                    r.evidence["uploaded"] = {"at": at, "field": "fma:track.date_created"}
                declared = _declared_seconds(get(("track", "duration")))
                if declared is not None:
                    r.evidence["declared"] = {"seconds": declared, "field": "fma:track.duration"}
                yield r
    except (csv.Error, UnicodeDecodeError) as e:
        raise FMAFormatError(f"{tracks_csv}: not a readable CSV ({e})") from None


def _date_created(value: str) -> str | None:
    """tracks.csv's `track.date_created` (`2008-11-26 01:48:12`, FMA's own clock, no zone given:
    read as UTC) in the form Freesound's `created` is kept in; None for anything else."""
    import datetime as dt

    from .freesound import CREATED_FORMAT

    try:
        return dt.datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S").strftime(CREATED_FORMAT)
    except (ValueError, AttributeError):
        return None


def _declared_seconds(text: str) -> float | None:
    """track.duration: whole seconds in tracks.csv ("168"); "MM:SS" as raw_tracks.csv writes it."""
    t = (text or "").strip()
    try:
        if ":" in t:
            parts = [float(p) for p in t.split(":")]
            secs = 0.0
            for p in parts:
                secs = secs * 60 + p
        else:
            secs = float(t)
    except ValueError:
        return None
    return secs if 0 < secs < 1e7 else None


# --------------------------------------------------------------------------- raw_tracks.csv

RAW_REQUIRED = ("track_id", "track_title", "track_url", "album_url", "license_title", "license_url")
FMA_HOSTS = ("freemusicarchive.org", "www.freemusicarchive.org")
URL_DERIVED = "derived:album_url+title"  # the url_source of a URL built from album_url and title
_BAD_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8


@dataclass
class RawTrack:
    """One row of raw_tracks.csv, as far as attribution needs it."""

    line: int
    track_title: str = ""
    track_url: str = ""
    album_url: str = ""
    license_title: str = ""
    license_url: str = ""
    problem: str = ""  # why this row cannot be trusted ("" when it can)


@dataclass
class RawTracks:
    rows: dict[str, RawTrack]
    unreadable: int = 0  # rows whose track_id could not be read: attached to no track
    path: str = ""


def read_raw_tracks(path: Path) -> RawTracks:
    """FMA's raw_tracks.csv, by track id. The file is read as bytes, so one byte that is not
    UTF-8 spoils only the row it sits in (that row gets a `problem`), never the file; a
    row with the wrong number of fields, too. A file without the needed columns is an
    :class:`FMAFormatError`."""
    text = storage.as_path(path).read_bytes().decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, [])
        missing = [c for c in RAW_REQUIRED if c not in header]
        if missing:
            raise FMAFormatError(f"{path}: not FMA's raw_tracks.csv (missing column(s) {', '.join(missing)})")
        col = {name: i for i, name in enumerate(header)}
        out = RawTracks({}, path=str(path))
        line = 2
        for row in reader:
            start, line = line, reader.line_num + 1
            if not row:
                continue
            first = row[0].strip()
            if not valid_id(first):
                out.unreadable += 1
                continue
            rid = str(int(first))
            raw = RawTrack(start)
            if len(row) != len(header):
                raw.problem = f"raw_tracks.csv line {start}: {len(row)} fields, expected {len(header)}"
            else:
                for name in ("track_title", "track_url", "album_url", "license_title", "license_url"):
                    setattr(raw, name, row[col[name]])
                bad = [header[i] for i, v in enumerate(row) if _BAD_BYTE.search(v)]
                if bad:
                    raw.problem = f"raw_tracks.csv line {start}: bytes that are not UTF-8 in {', '.join(bad)}"
            prev = out.rows.get(rid)
            if prev is not None:
                if not prev.problem and prev != replace(raw, line=prev.line):
                    prev.problem = f"raw_tracks.csv lines {prev.line} and {start}: two different rows for one track"
                continue
            out.rows.setdefault(rid, raw)
        return out
    except csv.Error as e:
        raise FMAFormatError(f"{path}: not a readable CSV ({e})") from None


def url_was_derived(evidence: dict) -> bool:
    """Whether a record's URL was derived rather than read (see derive_track_url)."""
    return (evidence.get("attribution") or {}).get("url_source") == URL_DERIVED


def fma_url(url: str) -> str:
    """FMA's own page URL in the published https, trailing-slash form, or "" for anything
    that is not a /music/ page on freemusicarchive.org."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or (parts.hostname or "").lower() not in FMA_HOSTS:
        return ""
    path = parts.path.rstrip("/")
    if parts.query or parts.fragment or not path.startswith("/music/") or path.count("/") < 2:
        return ""
    return f"https://freemusicarchive.org{path}/"


def title_slug(title: str) -> str:
    """The last part of a track's URL as FMA made it at upload: HTML entities read, every
    character but ASCII letters, digits, space, `_` and `-` dropped, each space an `_`."""
    return re.sub(r"[^A-Za-z0-9 _\-]", "", html.unescape(title)).replace(" ", "_")


def derive_track_url(album_url: str, title: str) -> str:
    """A track URL built the way FMA builds them, from the album page and the title. Measured
    on the 1,984 rows of the real raw_tracks.csv excerpt that have both: 86.7% exact; FMA
    adds a number to a title that collides (`_1`, `_1_1127`: 11.6%) and keeps the URL
    when a title is edited later (1.6%). So a derived URL is recorded as derived."""
    album = fma_url(album_url)
    slug = title_slug(title)
    if not album or album.count("/") < 6 or not slug.strip("_"):
        return ""
    return f"{album}{slug}/"


def attach_raw_tracks(r: Record, raw: RawTracks | None) -> None:
    """Put what raw_tracks.csv knows about one tracks.csv record on it: FMA's page URL (its
    `track_url`, else one derived from `album_url` and the title) and the license URL. The
    license stage decides with it; nothing is decided here but a row that cannot be read."""
    if r.source != "fma" or not r.pending:
        return
    if raw is None:
        r.evidence["attribution"] = {"url_source": "", "detail": "no raw_tracks.csv configured: FMA's URL is unknown"}
        return
    row = raw.rows.get(r.id)
    if row is None:
        r.evidence["attribution"] = {"url_source": "", "detail": "track not in raw_tracks.csv"}
        return
    if row.problem:
        r.exclude("malformed_record", detail=row.problem)
        return
    r.evidence["fma_raw"] = {"line": row.line, "track_url": row.track_url, "album_url": row.album_url,
                             "license_title": row.license_title, "license_url": row.license_url}
    url = fma_url(row.track_url)
    if url:
        r.url, source = url, "raw_tracks.track_url"
    elif not row.track_url.strip():
        r.url = derive_track_url(row.album_url, r.title)
        source = URL_DERIVED if r.url else ""
    else:
        source = ""
    r.evidence["attribution"] = {"url_source": source}
    if not r.url:
        r.evidence["attribution"]["detail"] = (
            f"track_url {row.track_url[:80]!r} is not an FMA page" if row.track_url.strip()
            else "raw_tracks.csv has neither track_url nor album_url for this track")
