"""Free Music Archive: `fma_metadata/tracks.csv` in its published layout.

The file has two header rows (`track`/`album`/`artist`/`set` over the field names)
and an index row `track_id`. Audio lives at `AUDIO_DIR/XXX/XXXXXX.mp3`.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

import pandas as pd

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
    bad: list[list[str]] = []

    def keep_bad(fields: list[str]):
        bad.append(fields)
        return None

    try:
        df = pd.read_csv(
            tracks_csv, index_col=0, header=[0, 1], dtype=str, keep_default_na=False,
            engine="python", on_bad_lines=keep_bad,
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, IndexError) as e:
        raise FMAFormatError(f"{tracks_csv}: not in the FMA tracks.csv layout ({e})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise FMAFormatError(
            f"{tracks_csv}: missing column(s) {', '.join('/'.join(c) for c in missing)} "
            "(expected FMA's two header rows, e.g. track/title)"
        )
    cols = set(df.columns)

    def get(row, key):
        return _str(row[key]) if key in cols else ""

    # pandas reads the `track_id` row that follows the headers as a data row with an
    # empty body; it is part of the layout, not a record.
    for n, (idx, row) in enumerate(df.iterrows()):
        rid = _str(idx).strip()
        if rid == "track_id" and not any(_str(v) for v in row.values):
            continue
        if not valid_id(rid):
            r = Record(source="fma", id=f"malformed:row{n + 1}")
            r.exclude("malformed_record", detail=f"track_id is not an integer: {rid[:60]!r}")
            yield r
            continue
        rid = str(int(rid))
        genres = [g for g in [get(row, ("track", "genre_top"))] if g]
        r = Record(
            source="fma",
            id=rid,
            title=get(row, ("track", "title")),
            author=get(row, ("artist", "name")),
            url=get(row, ("track", "url")) or f"https://freemusicarchive.org/track/{rid}/",
            license_raw=get(row, ("track", "license")),
            tags=_list(get(row, ("track", "tags"))),
            description=get(row, ("album", "title")),
            genres=genres,
        )
        yield r
    for i, fields in enumerate(bad):
        first = fields[0].strip() if fields else ""
        rid = str(int(first)) if valid_id(first) else f"malformed:badline{i + 1}"
        r = Record(source="fma", id=rid)
        r.exclude("malformed_record", detail=f"line has {len(fields)} fields, expected {len(df.columns) + 1}",
                  track_id_seen=first[:60])
        yield r
