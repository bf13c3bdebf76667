"""The copyright metadata database: the Spotify tracks table (`dataset.csv`), read with
its damage checked.

A copy that has been through a spreadsheet is refused, not matched: it starts with a
UTF-8 byte-order mark, and its non-ASCII text has been encoded twice ("mamÃ¡" for
"mamá"), so every accented title and artist would silently fail to match.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .. import storage

CATALOGUE_COLUMNS = ("track_id", "artists", "album_name", "track_name")
TEXT_COLUMNS = ("artists", "album_name", "track_name")
BOM = b"\xef\xbb\xbf"
# A UTF-8 lead byte read as cp1252/latin-1 (Ã, Â, â, Å, Ð, ...) followed by what a
# continuation byte becomes: the fingerprint of text encoded twice.
_SUSPECT = re.compile("[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192"
                      "\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]")


class CatalogueFormatError(ValueError):
    """The catalogue file cannot be trusted; the message names the damage."""


def double_encoded(text: str) -> str | None:
    """The repaired text when `text` is UTF-8 that was decoded as cp1252 (or latin-1) and
    encoded again, else None."""
    if not _SUSPECT.search(text):
        return None
    for enc in ("cp1252", "latin-1"):
        try:
            fixed = text.encode(enc).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if fixed != text:
            return fixed
    return None


def read_catalogue(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """The catalogue's rows (track_id, artists, album_name, track_name, as text) and notes.
    Rows with neither artists nor a track name are dropped (they can match nothing) and
    counted in the notes. Raises :class:`CatalogueFormatError` on a byte-order mark, text
    encoded twice, bytes that are not UTF-8 or missing columns."""
    shown = path
    path = storage.local_copy(path)  # a cached copy when the table is on an object store
    with open(path, "rb") as f:
        head = f.read(3)
    damage = []
    if head == BOM:
        damage.append("it starts with a UTF-8 byte-order mark (the mark a spreadsheet leaves)")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                         usecols=lambda c: c in CATALOGUE_COLUMNS)
    except UnicodeDecodeError as e:
        raise CatalogueFormatError(f"{shown}: not UTF-8 ({e})") from None
    except ValueError as e:
        raise CatalogueFormatError(f"{shown}: not a readable CSV ({e})") from None
    missing = [c for c in CATALOGUE_COLUMNS if c not in df.columns]
    if missing:
        raise CatalogueFormatError(f"{shown}: lacks column(s) {', '.join(missing)} (expected the Spotify tracks "
                                   "table: track_id, artists, album_name, track_name, ...)")
    bad = []
    for col in TEXT_COLUMNS:
        for i, v in df[col].items():
            fixed = double_encoded(v)
            if fixed is not None:
                bad.append((i, col, v, fixed))
    if bad:
        i, col, v, fixed = bad[0]
        damage.append(f"{len(bad)} value(s) are double-encoded UTF-8 (mojibake), e.g. data row {i + 1} {col} "
                      f"{v[:60]!r}, which should read {fixed[:60]!r}")
    if damage:
        raise CatalogueFormatError(f"{shown}: refused, the file looks damaged by a spreadsheet: " + "; ".join(damage)
                                   + ". Use the table as published.")
    df = df[list(CATALOGUE_COLUMNS)]
    empty = (df["artists"].str.strip() == "") & (df["track_name"].str.strip() == "")
    notes = [f"{int(empty.sum())} catalogue row(s) with neither artists nor a track name dropped"] if empty.any() else []
    return df[~empty].reset_index(drop=True), notes
