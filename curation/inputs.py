"""Every input table checked before any stage runs.

A damaged table (0 bytes, random bytes, another delimiter, a required column missing, a folder
where the file should be, a path that does not exist) stops the run with a line or two that
names the file and what is wrong, before Prefect starts and before any work is done. A
well-formed table with a header and no rows is no damage: it holds nothing (an empty Spotify
table matches nothing; the run summary says so).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Callable

from . import storage
from .config import Config

HEAD_BYTES = 1 << 16  # what is read of each table to check its header
DELIMITERS = (";", "\t", "|")


class InputError(ValueError):
    """An input table that cannot be used; the message names the file and the damage."""


@dataclass
class Table:
    label: str  # what the file is, in words
    key: str  # the config key that names it
    path: object
    required: tuple[str, ...]
    header_row: int = 0  # the row holding the column names (FMA's tracks.csv: 1)
    deep: Callable[[object], object] | None = None  # a reader that checks the whole file


def _head(t: Table) -> bytes:
    p = storage.as_path(t.path)
    what = f"{t.label} {p} ({t.key})"
    try:
        if p.is_dir():
            raise InputError(f"{what} is a folder; expected a CSV file")
        if not p.exists():
            raise InputError(f"{what} does not exist")
        with p.open("rb") as f:
            head = f.read(HEAD_BYTES)
    except InputError:
        raise
    except (OSError, ValueError) as e:
        raise InputError(f"{what} cannot be read: {e}") from None
    if not head:
        raise InputError(f"{what} is empty (0 bytes); expected a CSV header: {', '.join(t.required)}")
    return head


def _header(t: Table, head: bytes) -> list[str]:
    p = storage.as_path(t.path)
    what = f"{t.label} {p}"
    if b"\x00" in head:
        raise InputError(f"{what} is not a text CSV (it holds NUL bytes: binary data?)")
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = text.splitlines()
    bad = text.count("\ufffd")
    if bad and bad * 50 > max(len(text), 1):  # far more than a stray byte: random or binary data
        raise InputError(f"{what} is not a UTF-8 text CSV ({bad} undecodable bytes in its first "
                         f"{len(head)} bytes)")
    try:
        rows = list(csv.reader(io.StringIO("\n".join(lines[: t.header_row + 2]))))
    except csv.Error as e:
        raise InputError(f"{what}: its header is not readable CSV ({e})") from None
    if len(rows) <= t.header_row:
        raise InputError(f"{what} has no header row with its columns ({', '.join(t.required)})")
    if t.header_row:  # FMA's layout: a group row, the names, then `track_id`
        group, names = rows[0], rows[t.header_row]
        cols, g = [], ""
        for i, name in enumerate(names):
            g = (group[i] if i < len(group) else "") or g
            cols.append(f"{g}/{name}")
        return cols
    return [c.strip() for c in rows[0]]


def check_table(t: Table) -> None:
    head = _head(t)
    cols = _header(t, head)
    missing = [c for c in t.required if c not in cols]
    if missing:
        p = storage.as_path(t.path)
        first = head.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()[t.header_row] \
            if len(head.splitlines()) > t.header_row else ""
        for d in DELIMITERS:
            if first.count(d) >= max(1, len(t.required) - 1) and first.count(",") < first.count(d):
                raise InputError(f"{t.label} {p}: its columns are separated by {d!r}, not commas "
                                 f"(expected a comma-separated header with {', '.join(t.required)})")
        shown = ", ".join(c for c in cols[:8] if c) or "nothing"
        raise InputError(f"{t.label} {p}: lacks column(s) {', '.join(missing)} (its header has {shown}"
                         f"{', ...' if len(cols) > 8 else ''})")
    if t.deep is not None:
        try:
            t.deep(t.path)
        except InputError:
            raise
        except (ValueError, OSError) as e:  # the readers' own format errors name the file
            raise InputError(str(e)) from None


def tables(cfg: Config) -> list[Table]:
    """The input tables a run with this config reads."""
    from .copyright.catalogue import CATALOGUE_COLUMNS, read_catalogue
    from .copyright.review import read_decisions
    from .release.takedowns import FIELDS as TAKEDOWN_FIELDS, read as read_takedowns
    from .sources import fma

    out = []
    if cfg.fma.tracks_csv is not None:
        out.append(Table("FMA tracks table", "fma.tracks_csv", cfg.fma.tracks_csv,
                         tuple("/".join(c) for c in fma.REQUIRED), header_row=1,
                         deep=lambda p: next(iter(fma.read_tracks(storage.as_path(p))), None)))
        if cfg.fma.raw_tracks_csv is not None:
            out.append(Table("FMA raw_tracks table", "fma.raw_tracks_csv", cfg.fma.raw_tracks_csv,
                             fma.RAW_REQUIRED))
        if cfg.copyright.spotify_tracks_csv is not None:
            out.append(Table("copyright catalogue (Spotify tracks table)", "copyright.spotify_tracks_csv",
                             cfg.copyright.spotify_tracks_csv, CATALOGUE_COLUMNS,
                             deep=lambda p: read_catalogue(storage.as_path(p))))
    if cfg.copyright.review_decisions is not None:
        out.append(Table("review decisions", "copyright.review_decisions", cfg.copyright.review_decisions,
                         ("source", "id", "decision"), deep=lambda p: read_decisions(storage.as_path(p))))
    if cfg.release.takedowns is not None:
        out.append(Table("takedown list", "release.takedowns", cfg.release.takedowns, tuple(TAKEDOWN_FIELDS),
                         deep=read_takedowns))
    return out


def check_output_dir(cfg: Config) -> None:
    out = storage.as_path(cfg.output_dir)
    if storage.is_remote(out):
        return
    for p in [out, *out.parents]:
        if p.exists():
            if not p.is_dir():
                raise InputError(f"output_dir {out}: {'it' if p == out else p} is a file, not a folder")
            break


def check_inputs(cfg: Config) -> None:
    """Raise InputError for the output folder or the first input table that cannot be used."""
    check_output_dir(cfg)
    for t in tables(cfg):
        check_table(t)
    check_eval_lists(cfg)
    check_services(cfg)


def check_eval_lists(cfg: Config) -> None:
    """Every evaluation-set list read whole: one that cannot be read with certainty stops the run."""
    from .dedup.eval_lists import EvalListError, read_eval_list

    for p in cfg.dedup.eval_lists:
        try:
            read_eval_list(p)
        except EvalListError as e:
            raise InputError(f"{e} (dedup.eval_lists)") from None


def check_services(cfg: Config) -> None:
    """The identification service's credentials, asked before any lookup where the service can
    say whether it takes them without looking anything up (AcoustID): a refused key stops the
    run here with a line that says so. A service that cannot answer now is no reason to stop:
    the lookups record that and a later run asks again."""
    if cfg.copyright.audio_backend != "acoustid":
        return
    import logging

    from .config import AcoustIdConfig
    from .copyright.acoustid import AcoustIdBackend, KeyRefused
    from .copyright.service import ServiceError

    try:
        backend = AcoustIdBackend(cfg.copyright.acoustid or AcoustIdConfig())
    except ValueError as e:  # no key at all
        raise InputError(str(e)) from None
    try:
        backend.check_key()
    except KeyRefused as e:
        raise InputError(f"{e}; no recording was looked up") from None
    except ServiceError as e:
        logging.getLogger(__name__).warning("AcoustID could not be asked about the key now (%s); the lookups "
                                            "will record what it answers", backend.client.redact(str(e)))
