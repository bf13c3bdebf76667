"""Free Music Archive: `fma_metadata/tracks.csv` in its published layout.

The file has two header rows (`track`/`album`/`artist`/`set` over the field names)
and an index row `track_id`. Audio lives at `AUDIO_DIR/XXX/XXXXXX.mp3`.
"""
from __future__ import annotations

import ast
import csv
from pathlib import Path
from typing import Iterator

from ..records import Record, valid_id

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
        with open(tracks_csv, newline="", encoding="utf-8") as f:
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
                yield Record(
                    source="fma",
                    id=rid,
                    title=get(("track", "title")),
                    author=get(("artist", "name")),
                    url=get(("track", "url")) or f"https://freemusicarchive.org/track/{rid}/",
                    license_raw=get(("track", "license")),
                    tags=_list(get(("track", "tags"))),
                    description=get(("album", "title")),
                    genres=[genre] if genre else [],
                )
    except (csv.Error, UnicodeDecodeError) as e:
        raise FMAFormatError(f"{tracks_csv}: not a readable CSV ({e})") from None
