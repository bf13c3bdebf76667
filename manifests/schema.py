"""The records manifest: one row per distinct input record, and how to read it back."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation.atomic import atomic_path
from curation.records import Record

SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("id", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("title", pa.string()),
        ("author", pa.string()),
        ("url", pa.string()),
        ("license_raw", pa.string()),
        ("license", pa.string()),
        ("license_url", pa.string()),
        ("url_source", pa.string()),
        ("gen_ai_preference", pa.string()),
        ("gen_ai_preference_present", pa.bool_()),
        ("genai_rule", pa.string()),
        ("release_open_source_model", pa.bool_()),
        ("release_noncommercial", pa.bool_()),
        ("seen", pa.int32()),
        ("audio_sha256", pa.string()),
        ("audio_seconds", pa.float64()),
        ("audio_sample_rate", pa.int32()),
        ("audio_channels", pa.int32()),
        ("is_music", pa.bool_()),
        ("music_seconds", pa.float64()),
        ("music_fraction", pa.float64()),
        ("music_rule", pa.string()),
        ("music_max_prob", pa.float64()),
        ("music_top_labels", pa.list_(pa.string())),
        ("music_checkpoint_sha256", pa.string()),
        ("music_checkpoint_random", pa.bool_()),
        ("copyright_method", pa.string()),
        ("copyright_score", pa.float64()),
        ("copyright_candidate", pa.string()),
        ("review_decision", pa.string()),
        ("review_reviewer", pa.string()),
        ("review_note", pa.string()),
        ("review_decided_at", pa.string()),
        ("shard", pa.string()),
        ("evidence", pa.string()),
    ]
)


def manifest_sort_key(r: Record) -> tuple:
    rid = r.id
    return (r.source, 0 if rid.isdigit() else 1, int(rid) if rid.isdigit() else 0, rid)


def to_row(r: Record) -> dict:
    ev = r.evidence
    audio = ev.get("audio", {})
    music = ev.get("music", {})
    cr = ev.get("copyright", {})
    rv = ev.get("review", {})
    cand = cr.get("candidate")
    genai = ev.get("genai", {})
    return {
        "source": r.source,
        "id": r.id,
        "status": r.status,
        "reason": r.reason,
        "title": r.title,
        "author": r.author,
        "url": r.url,
        "license_raw": r.license_raw,
        "license": r.license,
        "license_url": r.license_url,
        "url_source": ev.get("attribution", {}).get("url_source"),
        "gen_ai_preference": r.gen_ai_preference,
        "gen_ai_preference_present": r.genai_present,
        "genai_rule": genai.get("rule"),
        "release_open_source_model": genai.get("release_open_source_model"),
        "release_noncommercial": genai.get("release_noncommercial"),
        "seen": r.seen,
        "audio_sha256": audio.get("sha256"),
        "audio_seconds": audio.get("seconds"),
        "audio_sample_rate": audio.get("sample_rate"),
        "audio_channels": audio.get("channels"),
        "is_music": music.get("is_music"),
        "music_seconds": music.get("music_seconds"),
        "music_fraction": music.get("music_fraction"),
        "music_rule": music.get("rule"),
        "music_max_prob": music.get("max_music_prob"),
        "music_top_labels": music.get("top_labels"),
        "music_checkpoint_sha256": music.get("checkpoint_sha256"),
        "music_checkpoint_random": music.get("checkpoint_random"),
        "copyright_method": cr.get("method"),
        "copyright_score": cr.get("score"),
        "copyright_candidate": json.dumps(cand, sort_keys=True, ensure_ascii=False) if cand else None,
        "review_decision": rv.get("decision"),
        "review_reviewer": rv.get("reviewer"),
        "review_note": rv.get("note"),
        "review_decided_at": rv.get("decided_at"),
        "shard": ev.get("shard"),
        "evidence": json.dumps(ev, sort_keys=True, ensure_ascii=False, default=str),
    }


def write_manifest(path: Path, records: list[Record]) -> None:
    rows = [to_row(r) for r in sorted(records, key=manifest_sort_key)]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    tmp = atomic_path(path)
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


def read_manifest(path: Path):
    """The manifest as a pandas DataFrame."""
    return pq.read_table(path).to_pandas()
