"""The review workspace's ledger: every decision a reviewer makes, appended at once.

`OUT/review/ledger.csv` (`source,id,decision,reviewer,note,decided_at,evidence_digest`) is
append-only: a line is written whole under an exclusive lock and flushed to disk before the
reviewer is told it is saved, so two reviewers at once never overwrite each other and a crash
loses at most the line being written (a torn last line is skipped when read). A second decision
on an item is history; the latest wins. Each decision carries the digest of the evidence it was
made on: the next run applies it only while the item's evidence is still that
(`curation/review/stage.py`), and sends the item back to the queue, saying why, when it is not.
`skip` is recorded (history, progress) and decides nothing.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from .. import safe_text
from ..safe_text import uncell

LEDGER_FIELDS = ["source", "id", "decision", "reviewer", "note", "decided_at", "evidence_digest"]
DECISIONS = ("clear", "reject", "skip")


def ledger_path(out_dir):
    from .. import storage

    return storage.as_path(out_dir) / "review" / "ledger.csv"


def evidence_digest(evidence: dict) -> str:
    """What a decision was made on: the SHA-256 of the item's evidence as the queue shows it."""
    text = json.dumps(evidence or {}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def append(path: Path, source: str, rid: str, decision: str, reviewer: str, note: str, digest: str) -> dict:
    """One decision, appended and on disk when this returns; the row as written."""
    if decision not in DECISIONS:
        raise ValueError(f"a decision is one of {', '.join(DECISIONS)}, not {decision!r}")
    row = {"source": source, "id": rid, "decision": decision, "reviewer": reviewer.strip(), "note": note.strip(),
           "decided_at": now(), "evidence_digest": digest}
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(safe_text.row([row[k] for k in LEDGER_FIELDS]))
    line = buf.getvalue().encode("utf-8")
    with open(path, "ab") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if fh.tell() == 0:
                fh.write((",".join(LEDGER_FIELDS) + "\n").encode())
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return row


def read(path: Path) -> list[dict]:
    """Every decision in the order made; a line that is not a whole row (a crash while it was
    written) is skipped."""
    from .. import storage

    if storage.is_remote(path):  # an output on an object store: read as it is (the workspace writes locally)
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except (FileNotFoundError, OSError):
            return []
    else:
        if not path.is_file():
            return []
        with open(path, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH)
            try:
                text = fh.read().decode("utf-8", errors="replace")
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        row = {k: uncell(v) if isinstance(v, str) else v for k, v in row.items() if k}
        if not row.get("source") or not row.get("id") or row.get("decision") not in DECISIONS \
                or not row.get("decided_at"):
            continue
        out.append({k: row.get(k) or "" for k in LEDGER_FIELDS})
    return out


def latest(rows: list[dict], decisive: bool = False) -> dict[tuple[str, str], dict]:
    """The last decision on each item (with `decisive`, the last clear or reject)."""
    out: dict[tuple[str, str], dict] = {}
    for r in rows:
        if decisive and r["decision"] == "skip":
            continue
        out[(r["source"], r["id"])] = r
    return out
