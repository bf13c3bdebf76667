"""The published lists of public evaluation sets cut from Freesound sounds, read in their own formats.

A model trained on a sound that an evaluation set was cut from is tested on its training data.
Each list names those sounds by Freesound id; a record it names is excluded (`eval_set`). The
formats are told apart by their header (or, for WavCaps, by the JSON's keys), as each dataset
publishes it:

| format | file | id |
|---|---|---|
| ESC-50 | `meta/esc50.csv` | `src_file` |
| UrbanSound8K | `UrbanSound8K.csv` | `fsID` |
| FSD50K | `FSD50K.ground_truth/eval.csv`, `dev.csv` | `fname` |
| Clotho | `clotho_metadata_*.csv` | `sound_id` (or `Not found`) |
| DCASE Task 6 exclusions | `dcase20XX_task6_excluded_freesound_ids.csv` | `sound_id` alone |
| WavCaps blacklist | `blacklist_*.json` | the `FreeSound` list (strings; `Not found`) |
| FSDKaggle2018 | `train_post_competition.csv`, `test_post_competition.csv` | `freesound_id` |
| plain | any CSV with `source,id` | both (`freesound` or `fma`) |

Fail closed: a list that cannot be read whole (not there, empty, binary, a header none of these
has, a row whose id is neither an id nor the sets' own `Not found`) is an `EvalListError` naming
the file and line, and the run stops before any stage. `Not found` entries (sounds the set's
makers could not find on Freesound) are counted and said, not guessed at.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from .. import storage
from ..records import SOURCES, valid_id

NOT_FOUND = "Not found"


class EvalListError(ValueError):
    """An evaluation-set list that cannot be read with certainty; the message names it."""


@dataclass(frozen=True)
class EvalList:
    name: str  # what it is, in words, with its file's name: "ESC-50 (esc50.csv)"
    path: str
    format: str
    ids: frozenset  # of (source, id)
    rows: int  # entries read (with repeats and `Not found`)
    not_found: int  # entries the set's makers marked `Not found`


# (format, what it is, columns that tell it, the id column): the first whose columns a header
# holds wins, so the more specific come first.
CSV_FORMATS = [
    ("esc50", "ESC-50", ("filename", "src_file", "take"), "src_file"),
    ("urbansound8k", "UrbanSound8K", ("slice_file_name", "fsID"), "fsID"),
    ("clotho", "Clotho", ("sound_id", "sound_link", "file_name"), "sound_id"),
    ("fsdkaggle2018", "FSDKaggle2018", ("fname", "freesound_id"), "freesound_id"),
    ("fsd50k", "FSD50K", ("fname", "labels", "mids"), "fname"),
    ("plain", "list", ("source", "id"), "id"),
]


def _text(p: Path) -> str:
    try:
        if p.is_dir():
            raise EvalListError(f"evaluation list {p} is a folder; expected a CSV or JSON file")
        if not p.exists():
            raise EvalListError(f"evaluation list {p} does not exist")
        data = p.read_bytes()
    except OSError as e:
        raise EvalListError(f"evaluation list {p} cannot be read: {e}") from None
    if not data.strip():
        raise EvalListError(f"evaluation list {p} is empty")
    if b"\x00" in data:
        raise EvalListError(f"evaluation list {p} is not text (it holds NUL bytes: binary data?)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise EvalListError(f"evaluation list {p} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def _id(value: str, where: str) -> str | None:
    """A Freesound id, None for the sets' `Not found`; anything else stops the reading."""
    v = value.strip()
    if v == NOT_FOUND:
        return None
    if not valid_id(v):
        raise EvalListError(f"{where}: {value!r} is not a Freesound id (nor {NOT_FOUND!r}); "
                            "the list cannot be read with certainty")
    return str(int(v))


def _wavcaps(p: Path, text: str) -> EvalList:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise EvalListError(f"evaluation list {p} is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("FreeSound"), list):
        keys = ", ".join(map(str, doc)) if isinstance(doc, dict) else type(doc).__name__
        raise EvalListError(f"evaluation list {p}: a JSON list must be a WavCaps blacklist, an object with a "
                            f"'FreeSound' list of ids (it has: {keys or 'nothing'})")
    ids, missing = set(), 0
    for i, v in enumerate(doc["FreeSound"]):
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            raise EvalListError(f"evaluation list {p}: FreeSound[{i}] is {v!r}, not a Freesound id")
        rid = _id(str(v), f"evaluation list {p}: FreeSound[{i}]")
        if rid is None:
            missing += 1
        else:
            ids.add(("freesound", rid))
    return EvalList(f"WavCaps blacklist ({p.name})", str(p), "wavcaps", frozenset(ids), len(doc["FreeSound"]), missing)


def _csv(p: Path, text: str) -> EvalList:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [c.strip() for c in next(reader)]
    except (StopIteration, csv.Error) as e:
        raise EvalListError(f"evaluation list {p}: no readable CSV header ({e or 'no rows'})") from None
    fmt = next(((f, label, col) for f, label, cols, col in CSV_FORMATS if set(cols) <= set(header)), None)
    if fmt is None and header == ["sound_id"]:
        fmt = ("dcase_task6", "DCASE Task 6 excluded Freesound ids", "sound_id")
    if fmt is None:
        shown = ", ".join(header[:8]) or "nothing"
        raise EvalListError(
            f"evaluation list {p}: not a list this pipeline reads (its header has {shown}); expected ESC-50, "
            "UrbanSound8K, FSD50K, Clotho, DCASE Task 6, FSDKaggle2018 (CSV), a WavCaps blacklist (JSON) "
            "or a plain CSV with source,id")
    name, label, col = fmt
    at = header.index(col)
    src_at = header.index("source") if name == "plain" else None
    ids, missing, rows = set(), 0, 0
    try:
        for line_no, row in enumerate(reader, start=2):
            if not row or not any(c.strip() for c in row):
                continue
            where = f"evaluation list {p} line {line_no}"
            if len(row) <= at or (src_at is not None and len(row) <= src_at):
                raise EvalListError(f"{where}: {len(row)} field(s), no {col!r}")
            rows += 1
            source = "freesound"
            if src_at is not None:
                source = row[src_at].strip()
                if source not in SOURCES:
                    raise EvalListError(f"{where}: source {row[src_at]!r} is not one of {', '.join(SOURCES)}")
            rid = _id(row[at], f"{where} ({col})")
            if rid is None:
                missing += 1
            else:
                ids.add((source, rid))
    except csv.Error as e:
        raise EvalListError(f"evaluation list {p}: not readable CSV ({e})") from None
    return EvalList(f"{label} ({p.name})", str(p), name, frozenset(ids), rows, missing)


def read_eval_list(path) -> EvalList:
    """One list, its format told by its content (see the module's table)."""
    p = storage.as_path(path)
    text = _text(p)
    out = _wavcaps(p, text) if text.lstrip().startswith(("{", "[")) else _csv(p, text)
    if not out.ids:
        raise EvalListError(f"evaluation list {p} ({out.name}) names no sound: {out.rows} entries, "
                            f"{out.not_found} of them {NOT_FOUND!r}")
    return out


def listed(lists: list[EvalList]) -> dict[tuple[str, str], list[str]]:
    """(source, id) -> the names of the lists that hold it, in the order configured."""
    out: dict[tuple[str, str], list[str]] = {}
    for lst in lists:
        for key in lst.ids:
            out.setdefault(key, []).append(lst.name)
    return out
