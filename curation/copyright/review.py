"""Human review: the queue of what waits, and the decisions that let it go or keep it out.

Decisions come from a CSV (`source,id,decision,reviewer,note`) named in the config.
Each run merges that file into a ledger kept in the output folder
(`OUT/review/decisions.csv`), so a decision persists after the file changes or goes.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .. import safe_text
from ..atomic import atomic_write_text
from ..safe_text import uncell

log = logging.getLogger(__name__)

DECISION_FIELDS = ["source", "id", "decision", "reviewer", "note", "decided_at", "evidence_digest"]
QUEUE_FIELDS = ["source", "id", "title", "author", "url", "reason", "evidence"]


class DecisionsError(ValueError):
    pass


@dataclass(frozen=True)
class Decision:
    source: str
    id: str
    decision: str  # clear | reject
    reviewer: str
    note: str
    decided_at: str = ""  # ISO 8601 UTC; the decisions file's time when it does not say
    # the evidence it was made on (review workspace decisions: `review/ledger.py`); "" for a
    # decisions file written by hand, which applies whatever the evidence is now
    evidence_digest: str = ""


def read_decisions(path: Path) -> tuple[dict[tuple[str, str], Decision], list[str]]:
    """Decisions by (source, id), and a warning for each row that could not be used."""
    warnings: list[str] = []
    out: dict[tuple[str, str], Decision] = {}
    try:
        text = path.read_text(encoding="utf-8")
        file_time = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OSError, UnicodeDecodeError) as e:
        raise DecisionsError(f"review decisions file {path} is unreadable: {e}") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [f for f in ("source", "id", "decision") if f not in (reader.fieldnames or [])]
    if missing:
        raise DecisionsError(
            f"review decisions file {path} lacks column(s) {', '.join(missing)} "
            f"(header must be {','.join(DECISION_FIELDS)})"
        )
    for n, row in enumerate(reader, start=2):
        row = {k: uncell(v) if isinstance(v, str) else v for k, v in row.items()}  # spreadsheet-safe cells
        src, rid = (row.get("source") or "").strip(), (row.get("id") or "").strip()
        dec = (row.get("decision") or "").strip().lower()
        if not src or not rid or dec not in ("clear", "reject"):
            warnings.append(f"{path.name} line {n}: ignored (need source, id and decision clear|reject)")
            continue
        out[(src, rid)] = Decision(src, rid, dec, (row.get("reviewer") or "").strip(), (row.get("note") or "").strip(),
                                   (row.get("decided_at") or "").strip() or file_time,
                                   (row.get("evidence_digest") or "").strip())
    return out, warnings


def write_decisions(path: Path, decisions: dict[tuple[str, str], Decision]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(DECISION_FIELDS)
    for key in sorted(decisions):
        d = decisions[key]
        w.writerow(safe_text.row([d.source, d.id, d.decision, d.reviewer, d.note, d.decided_at, d.evidence_digest]))
    atomic_write_text(path, buf.getvalue())


def merged_decisions(ledger: Path, incoming: Path | None) -> tuple[dict[tuple[str, str], Decision], list[str]]:
    """The ledger updated with the incoming file (a later decision for the same record wins)."""
    decisions: dict[tuple[str, str], Decision] = {}
    warnings: list[str] = []
    if ledger.exists():
        decisions, w = read_decisions(ledger)
        warnings += w
    if incoming is not None:
        new, w = read_decisions(incoming)
        warnings += w
        for key, d in new.items():
            old = decisions.get(key)
            # the same decision read again keeps the time it was first recorded
            if old is not None and (old.decision, old.reviewer, old.note) == (d.decision, d.reviewer, d.note):
                continue
            decisions[key] = d
    return decisions, warnings


def write_queue(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=QUEUE_FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: safe_text.cell(v) for k, v in
                    {**r, "evidence": json.dumps(r.get("evidence", {}), sort_keys=True, ensure_ascii=False)}.items()})
    atomic_write_text(path, buf.getvalue())
