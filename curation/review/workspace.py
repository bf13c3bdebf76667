"""The review queue as the workspace reads it: `OUT/review/queue.parquet`, written by every run
(one row per item waiting: what it is, why it waits, the evidence shown and its digest, the music
spans, the audio file, since when it waits), and the ledger's decisions over it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import ledger

QUEUE_SCHEMA = pa.schema([
    ("source", pa.string()), ("id", pa.string()), ("title", pa.string()), ("author", pa.string()),
    ("url", pa.string()), ("license", pa.string()), ("reason", pa.string()), ("backend", pa.string()),
    ("score", pa.float64()), ("seconds", pa.float64()), ("evidence", pa.string()), ("evidence_digest", pa.string()),
    ("music_spans", pa.string()), ("audio_path", pa.string()), ("waiting_since", pa.string()), ("stale", pa.string()),
])


def queue_path(out_dir):
    from .. import storage

    return storage.as_path(out_dir) / "review" / "queue.parquet"


def _backend(reason: str, ev: dict) -> str:
    if reason == "reupload_other_author":
        return "duplicates"
    return str(ev.get("method") or ev.get("backend") or ("metadata:spotify" if ev.get("candidates") else ""))


def _score(ev: dict) -> float | None:
    vals = [ev.get("score")] + [m.get("score") for m in ev.get("matches") or []] \
        + [max(c.get("title_score") or 0, 0) for c in ev.get("candidates") or []]
    nums = [float(v) for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return max(nums) if nums else None


def write_queue_table(out_dir, queue: list[dict], resolve=lambda p: p) -> Path:
    """OUT/review/queue.parquet from the review step's queue; an item already waiting keeps the
    time it began to."""
    from .. import storage

    path = queue_path(out_dir)
    since: dict[tuple[str, str], str] = {}
    try:
        old = storage.read_parquet(path, columns=["source", "id", "waiting_since"]).to_pylist()
        since = {(r["source"], r["id"]): r["waiting_since"] for r in old}
    except Exception:  # the first run, or a damaged queue file: the times start again
        since = {}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = []
    for q in queue:
        ev = q.get("evidence") or {}
        music = q.get("music") or {}
        rows.append({
            "source": q["source"], "id": q["id"], "title": q.get("title") or "", "author": q.get("author") or "",
            "url": q.get("url") or "", "license": q.get("license") or "", "reason": q.get("reason") or "",
            "backend": _backend(q.get("reason") or "", ev), "score": _score(ev),
            "seconds": float(q["seconds"]) if q.get("seconds") is not None else None,
            "evidence": json.dumps(ev, sort_keys=True, ensure_ascii=False, default=str),
            "evidence_digest": ledger.evidence_digest(ev),
            "music_spans": json.dumps(music.get("music_spans") or []),
            "audio_path": str(resolve(q.get("audio_path")) or "") if q.get("audio_path") else "",
            "waiting_since": since.get((q["source"], q["id"]), now), "stale": q.get("stale") or "",
        })
    storage.mkdirs(path.parent)
    with storage.writing(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=QUEUE_SCHEMA), tmp)
    return path


@dataclass
class Queue:
    """The items waiting, in order (oldest first), with the ledger's decisions."""

    out_dir: Path
    items: list[dict] = field(default_factory=list)
    by_key: dict[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def load(cls, out_dir) -> "Queue":
        path = queue_path(out_dir)
        if not path.is_file():
            raise FileNotFoundError(f"no review queue at {path}: run `curate run` first")
        items = pq.read_table(path).to_pylist()
        items.sort(key=lambda r: (r["waiting_since"] or "", r["source"], int(r["id"]) if r["id"].isdigit() else 0))
        q = cls(Path(out_dir), items)
        q.by_key = {(r["source"], r["id"]): i for i, r in enumerate(items)}
        return q

    def decisions(self) -> dict[tuple[str, str], list[dict]]:
        """Each item's decisions in the order made (history; the last is the one that counts)."""
        out: dict[tuple[str, str], list[dict]] = {}
        for r in ledger.read(ledger.ledger_path(self.out_dir)):
            out.setdefault((r["source"], r["id"]), []).append(r)
        return out

    def filtered(self, source: str = "", reason: str = "", backend: str = "", min_score: float | None = None,
                 since_before: str = "", state: str = "", decided: dict | None = None) -> list[dict]:
        decided = decided if decided is not None else {}
        out = []
        for r in self.items:
            if source and r["source"] != source or reason and r["reason"] != reason:
                continue
            if backend and r["backend"] != backend:
                continue
            if min_score is not None and (r["score"] is None or r["score"] < min_score):
                continue
            if since_before and (r["waiting_since"] or "") >= since_before:
                continue
            last = (decided.get((r["source"], r["id"])) or [None])[-1]
            current = last is not None and last["decision"] != "skip" and last["evidence_digest"] == r["evidence_digest"]
            if state == "waiting" and current or state == "decided" and not current:
                continue
            out.append(r)
        return out
