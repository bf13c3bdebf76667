"""The records manifest: one row per distinct input record, and how to read it back."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.atomic import atomic_path
from curation import record_table as rt
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


# Manifest columns read out of one evidence key: column -> (evidence key, field, how to read it).
_FROM_EVIDENCE = {
    "url_source": ("attribution", "url_source", None),
    "genai_rule": ("genai", "rule", None),
    "release_open_source_model": ("genai", "release_open_source_model", None),
    "release_noncommercial": ("genai", "release_noncommercial", None),
    "audio_sha256": ("audio", "sha256", None),
    "audio_seconds": ("audio", "seconds", None),
    "audio_sample_rate": ("audio", "sample_rate", None),
    "audio_channels": ("audio", "channels", None),
    "is_music": ("music", "is_music", None),
    "music_seconds": ("music", "music_seconds", None),
    "music_fraction": ("music", "music_fraction", None),
    "music_rule": ("music", "rule", None),
    "music_max_prob": ("music", "max_music_prob", None),
    "music_top_labels": ("music", "top_labels", None),
    "music_checkpoint_sha256": ("music", "checkpoint_sha256", None),
    "music_checkpoint_random": ("music", "checkpoint_random", None),
    "copyright_method": ("copyright", "method", None),
    "copyright_score": ("copyright", "score", None),
    "copyright_candidate": ("copyright", "candidate",
                            lambda c: json.dumps(c, sort_keys=True, ensure_ascii=False) if c else None),
    "review_decision": ("review", "decision", None),
    "review_reviewer": ("review", "reviewer", None),
    "review_note": ("review", "note", None),
    "review_decided_at": ("review", "decided_at", None),
}


def _evidence_json(table: pa.Table) -> pa.Array:
    """The whole evidence as one JSON object per row, joined from the per-key columns in key
    order: the same text `json.dumps(evidence, sort_keys=True)` gives."""
    pieces = [pc.binary_join_element_wise(pa.scalar(json.dumps(c[len(rt.EV):]) + ": "), table.column(c), "")
              for c in rt.ev_columns(table)]
    if not pieces:
        return pa.array(["{}"] * table.num_rows, type=pa.string())
    inner = pc.binary_join_element_wise(*pieces, ", ", null_handling="skip")
    return pc.binary_join_element_wise("{", inner, "}", "")


def manifest_table(table: pa.Table) -> pa.Table:
    """Manifest rows (SCHEMA) for a records table, in the table's order."""
    cols = {f: table.column(f) for f in ("source", "id", "status", "reason", "title", "author", "url", "license_raw",
                                         "license", "license_url", "gen_ai_preference", "seen")}
    cols["gen_ai_preference_present"] = table.column("genai_present")
    by_key: dict[str, list[str]] = {}
    for col, (key, _, _) in _FROM_EVIDENCE.items():
        by_key.setdefault(key, []).append(col)
    for key, names in by_key.items():
        ev = rt.EV + key
        if ev not in table.column_names:
            continue

        def read(row, names=names, ev=ev):
            v = json.loads(row[ev]) if row[ev] is not None else {}
            v = v if isinstance(v, dict) else {}
            out = {}
            for n in names:
                _, fld, conv = _FROM_EVIDENCE[n]
                out[n] = conv(v.get(fld)) if conv else v.get(fld)
            return out

        cols.update(rt.per_distinct(table, [ev], read, {n: SCHEMA.field(n).type for n in names},
                                    mask=pc.is_valid(table.column(ev))))
    if rt.EV + "shard" in table.column_names:
        cols["shard"] = rt.per_distinct(table, [rt.EV + "shard"], lambda row: {"s": json.loads(row[rt.EV + "shard"])},
                                        {"s": pa.string()}, mask=pc.is_valid(table.column(rt.EV + "shard")))["s"]
    cols["evidence"] = _evidence_json(table)
    n = table.num_rows
    return pa.Table.from_arrays([cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in SCHEMA],
                                schema=SCHEMA)


def sort_manifest(table: pa.Table) -> pa.Table:
    """Source, then numeric ids in numeric order, then any other id in text order."""
    ids = table.column("id")
    numeric = pc.match_substring_regex(ids, r"^[0-9]{1,18}$")
    num = pc.if_else(numeric, pc.cast(pc.if_else(numeric, ids, "0"), pa.int64()), 0)
    t = table.append_column("_nonnum", pc.invert(numeric)).append_column("_num", num)
    t = t.sort_by([("source", "ascending"), ("_nonnum", "ascending"), ("_num", "ascending"), ("id", "ascending")])
    return t.drop_columns(["_nonnum", "_num"])


def write_manifest(path: Path, records: list[Record]) -> None:
    write_manifest_table(path, sort_manifest(manifest_table(rt.from_records(records))))


def write_manifest_table(path: Path, table: pa.Table) -> None:
    tmp = atomic_path(path)
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


def _sql_text(p: Path) -> str:
    return str(p).replace("'", "''")


def write_manifest_parts(path: Path, parts: list[Path], spill_dir: Path, memory_limit: str = "512MB") -> int:
    """The one sorted manifest file from manifest partitions, sorted by DuckDB, which spills
    to disk rather than hold a large manifest in memory. Returns the row count."""
    import duckdb

    tmp = atomic_path(path)
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute(f"SET temp_directory = '{_sql_text(spill_dir)}'")
        con.execute("SET preserve_insertion_order = false")
        files = [str(p) for p in parts]
        n = con.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchone()[0]
        con.execute(
            "COPY (SELECT * FROM read_parquet(?) ORDER BY source, NOT regexp_full_match(id, '[0-9]{1,18}'), "
            "CASE WHEN regexp_full_match(id, '[0-9]{1,18}') THEN CAST(id AS BIGINT) ELSE 0 END, id) "
            f"TO '{_sql_text(tmp)}' (FORMAT parquet, COMPRESSION zstd)", [files])
    finally:
        con.close()
    tmp.replace(path)
    return n


def read_manifest(path: Path):
    """The manifest as a pandas DataFrame."""
    return pq.read_table(path).to_pandas()
