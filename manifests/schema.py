"""The records manifest: one row per distinct input record, and how to read it back."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation import storage
from curation import record_table as rt

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
        ("music_rule_fired", pa.string()),
        ("music_measured_seconds", pa.float64()),
        ("music_seconds_lower_bound", pa.bool_()),
        ("music_max_prob", pa.float64()),
        ("music_top_labels", pa.list_(pa.string())),
        ("music_checkpoint_sha256", pa.string()),
        ("music_checkpoint_random", pa.bool_()),
        ("loudness_lufs", pa.float64()),  # what the samples say (curation/quality)
        ("true_peak_dbtp", pa.float64()),
        ("bandwidth_hz", pa.float64()),
        ("bandwidth_share", pa.float64()),
        ("clipped_share", pa.float64()),
        ("silent_share", pa.float64()),
        ("dc_offset", pa.float64()),
        ("channel_correlation", pa.float64()),
        ("quality_flags", pa.list_(pa.string())),
        ("group", pa.string()),  # a duplicates group: the key of the copy kept
        ("duplicate_kind", pa.string()),  # a copy's kind: exact / near / excerpt / derived
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
    # how the decision was reached: full (every frame scored), early (scoring stopped once the
    # rule was settled), short (too short to be music: not scored), source (music by source)
    "music_rule": ("music", "decided", None),
    "music_rule_fired": ("music", "rule", None),  # seconds / fraction / none / source
    "music_measured_seconds": ("music", "measured_seconds", None),
    "music_seconds_lower_bound": ("music", "music_seconds_bound", lambda b: None if b is None else b != "exact"),
    "music_max_prob": ("music", "max_music_prob", None),
    "music_top_labels": ("music", "top_labels", None),
    "music_checkpoint_sha256": ("music", "checkpoint_sha256", None),
    "music_checkpoint_random": ("music", "checkpoint_random", None),
    **{c: ("quality", c, None) for c in ("loudness_lufs", "true_peak_dbtp", "bandwidth_hz", "bandwidth_share",
                                         "clipped_share", "silent_share", "dc_offset", "channel_correlation")},
    "quality_flags": ("quality", "flags", None),
    "group": ("same_audio", "group", None),
    "duplicate_kind": ("same_audio", "kind", None),
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


def sort_keys(table: pa.Table) -> pa.Array:
    """One string per row whose text order is the manifest's order: source, then numeric ids
    in numeric order, then any other id in text order."""
    ids = table.column("id")
    numeric = pc.match_substring_regex(ids, r"^[0-9]{1,18}$")
    padded = pc.utf8_lpad(pc.if_else(numeric, ids, ""), 18, "0")
    return pc.binary_join_element_wise(table.column("source"), pc.if_else(numeric, "0", "1"), padded, ids, "\x00")


def sort_manifest(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(sort_keys(table)))


class SortedManifestWriter:
    """The one manifest file, sorted, from partitions that arrive in any order, holding one
    partition and then one bucket in memory, never the whole manifest: rows go to buckets of
    the key range (bounds from the keys alone), each bucket is sorted on its own, and the
    buckets are written in order."""

    def __init__(self, path: Path, all_keys: pa.Array, bucket_dir: Path, bucket_rows: int = 100_000):
        self.path, self.bucket_dir = path, bucket_dir
        cut = pc.sort_indices(all_keys).to_numpy()[bucket_rows::bucket_rows]
        self.bounds = pc.take(all_keys, pa.array(cut, pa.int64())).to_pylist() if len(cut) else []
        self.buckets = len(self.bounds) + 1
        self.n = 0
        bucket_dir.mkdir(parents=True, exist_ok=True)
        for old in bucket_dir.glob("*.arrow"):
            old.unlink()

    def add(self, manifest: pa.Table) -> None:
        import numpy as np

        keys = sort_keys(manifest)
        where = np.zeros(manifest.num_rows, dtype=np.int64)
        for bound in self.bounds:  # the bucket of a key: how many bounds it reaches
            where += pc.greater_equal(keys, bound).to_numpy(zero_copy_only=False)
        t = manifest.append_column("_key", keys)
        for b in np.unique(where):
            # Arrow IPC, uncompressed: written and read back once, at memory speed
            part = t.filter(pa.array(where == b))
            with pa.ipc.new_file(self.bucket_dir / f"b{b:05d}-{self.n:05d}.arrow", part.schema) as w:
                w.write_table(part)
        self.n += 1

    def close(self) -> int:
        rows = 0
        with storage.writing(self.path) as tmp, pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as w:
            for b in range(self.buckets):
                files = sorted(self.bucket_dir.glob(f"b{b:05d}-*.arrow"))
                if not files:
                    continue
                t = pa.concat_tables([pa.ipc.open_file(pa.OSFile(str(f))).read_all() for f in files])
                t = t.take(pc.sort_indices(t.column("_key"))).drop_columns(["_key"])
                w.write_table(t.cast(SCHEMA))
                rows += t.num_rows
                for f in files:
                    f.unlink()
                del t
                pa.default_memory_pool().release_unused()
            if rows == 0:
                w.write_table(SCHEMA.empty_table())
        return rows


def read_manifest(path: Path):
    """The manifest as a pandas DataFrame."""
    return storage.read_parquet(path).to_pandas()
