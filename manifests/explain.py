"""Why is this recording in, or out? One manifest row, told stage by stage."""
from __future__ import annotations

import json
from pathlib import Path

from curation import storage
from curation.stages import ALL, REASONS


class NotInManifest(LookupError):
    pass


def find_row(manifest: Path, source: str, rid: str) -> dict:
    if not manifest.is_file():
        raise FileNotFoundError(f"no manifest at {manifest}: run `curate run` first")
    # the filter is pushed into the reader: row groups whose statistics exclude it are not read
    hit = storage.read_parquet(manifest, filters=[("source", "=", source), ("id", "=", str(rid))])
    if hit.num_rows == 0:
        raise NotInManifest(f"{source} {rid} is not in {manifest}")
    return hit.to_pylist()[0]


def explain_lines(row: dict) -> list[str]:
    """Plain-text lines, one fact each, in the order the stages ran."""
    ev = json.loads(row.get("evidence") or "{}")
    out = [f"{row['source']} {row['id']}: {row['status'].upper()}"
           + (f" ({row['reason']}: {REASONS.get(row['reason'], '')})" if row["reason"] else "")]
    out.append(f"  title: {row['title']!r}  author: {row['author']!r}  url: {row['url']}")
    for step in ALL:  # each step tells what it did, in the order the steps ran
        out += step.explain(row, ev)
    return out
