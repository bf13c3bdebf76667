"""Takedown requests: records that leave the next release and stay out of every later one.

The configured file (`[release] takedowns`) is a CSV `source,id,reason,requested_at`. Each run
adds what it lists to a ledger, OUT/releases/takedowns.csv, and applies the ledger: a record
taken down stays out even when a later crawl ingests it again or the configured file no
longer lists it (to withdraw a takedown made by mistake, edit the ledger). A file that cannot be
read with certainty stops the run: a release must not go out with a takedown silently skipped.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .. import record_table as rt
from .. import storage
from ..atomic import atomic_write_text
from ..records import SOURCES, valid_id

FIELDS = ["source", "id", "reason", "requested_at"]


class TakedownError(ValueError):
    """The takedown list cannot be read with certainty."""


@dataclass(frozen=True)
class Takedown:
    source: str
    id: str
    reason: str
    requested_at: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.id)

    def to_dict(self) -> dict:
        return {"source": self.source, "id": self.id, "reason": self.reason, "requested_at": self.requested_at}


def _when(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"requested_at {value!r} is not an ISO 8601 date or time") from None


def read(path) -> list[Takedown]:
    """The requests in a takedown CSV, validated row by row; raises TakedownError naming the
    file and line of the first row it cannot read."""
    path = storage.as_path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise TakedownError(f"takedown list not found: {path}") from None
    except UnicodeDecodeError as e:
        raise TakedownError(f"takedown list {path} is not UTF-8: {e}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        raise TakedownError(f"takedown list {path}: header must name {','.join(FIELDS)} (missing {', '.join(missing)})")
    out = []
    for row in reader:
        line = reader.line_num
        try:
            if None in row or any(row.get(f) is None for f in FIELDS):
                raise ValueError("wrong number of fields")
            source, rid = row["source"].strip(), row["id"].strip()
            if source not in SOURCES:
                raise ValueError(f"source {source!r} is not one of {', '.join(sorted(SOURCES))}")
            if not valid_id(rid):
                raise ValueError(f"id {rid!r} is not a record id")
            _when(row["requested_at"])
        except ValueError as e:
            raise TakedownError(f"takedown list {path}, line {line}: {e}") from None
        out.append(Takedown(source, rid, row["reason"].strip(), row["requested_at"].strip()))
    return out


def _merge(items: list[Takedown]) -> dict[tuple[str, str], Takedown]:
    """One request per record: the earliest (the record has been out since then)."""
    merged: dict[tuple[str, str], Takedown] = {}
    for t in items:
        have = merged.get(t.key)
        if have is None or _when(t.requested_at) < _when(have.requested_at):
            merged[t.key] = t
    return merged


def ledger_path(output_dir) -> Path:
    return storage.as_path(output_dir) / "releases" / "takedowns.csv"


def write(path, items) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FIELDS)
    for t in sorted(items, key=lambda t: (t.source, int(t.id))):
        w.writerow([t.source, t.id, t.reason, t.requested_at])
    atomic_write_text(path, buf.getvalue())


def load(output_dir, configured) -> dict[tuple[str, str], Takedown]:
    """Every takedown in force: the ledger's and the configured file's (the ledger is written
    back when the file adds any)."""
    ledger = ledger_path(output_dir)
    have = read(ledger) if ledger.exists() else []
    new = read(configured) if configured is not None else []
    merged = _merge(have + new)
    if merged != _merge(have):
        write(ledger, merged.values())
    return merged


def apply(table: pa.Table, takedowns: dict[tuple[str, str], Takedown]) -> tuple[pa.Table, int]:
    """Every listed record in `table` excluded with reason `takedown`, whatever was decided
    before (kept in the evidence). Returns the table and how many rows it took down."""
    if not takedowns or table.num_rows == 0:
        return table, 0
    mask = rt.rows_named(table, takedowns)
    hits = pc.sum(mask).as_py() or 0
    if not hits:
        return table, 0
    recs = rt.to_records(table.filter(mask))
    for r in recs:
        t = takedowns[(r.source, r.id)]
        # "pending" this late means it passed every check: it would have been included
        before = "included" if r.status == "pending" else r.status
        r.evidence["takedown"] = {**t.to_dict(), "status_before": before, "reason_before": r.reason}
        r.status, r.reason = "excluded", "takedown"
    return rt.replace_rows(table, mask, rt.from_records(recs)), hits
