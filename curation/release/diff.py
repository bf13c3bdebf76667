"""What changed between two release versions: records added, removed (and why), changed
(license, audio, metadata). Read with DuckDB from each version's records.parquet, and the
newer version's manifest.parquet for why a record left."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb

FIELDS = ["change", "source", "id", "reason", "detail"]

# Why a record left, from the newer version's manifest reason.
_CATEGORY = """
CASE
  WHEN m.reason IS NULL THEN 'not in the run'
  WHEN m.reason = 'takedown' THEN 'takedown'
  WHEN m.reason IN ('license_changed', 'license_not_allowed', 'license_unknown', 'license_missing',
                    'license_conflict') THEN 'license changed'
  WHEN m.reason LIKE 'genai_%' THEN 'opt-out'
  WHEN m.reason = 'source_deleted' THEN 'deleted'
  WHEN m.reason LIKE 'copyright_%' THEN 'copyright'
  ELSE m.reason
END"""


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def diff_versions(a: Path, b: Path) -> list[dict]:
    """Rows `change, source, id, reason, detail`, sorted by change, source and id."""
    for d in (a, b):
        for f in ("records.parquet", "manifest.parquet"):
            if not (Path(d) / f).is_file():
                raise FileNotFoundError(f"{d} is not a release version (no {f})")
    ra, rb = _q(Path(a) / "records.parquet"), _q(Path(b) / "records.parquet")
    ma, mb = _q(Path(a) / "manifest.parquet"), _q(Path(b) / "manifest.parquet")
    sql = f"""
    WITH a AS (SELECT * FROM read_parquet({ra})), b AS (SELECT * FROM read_parquet({rb})),
         m AS (SELECT source, id, status, reason, evidence FROM read_parquet({mb})),
         ma AS (SELECT source, id, status, reason, evidence FROM read_parquet({ma}))
    SELECT 'added' AS change, b.source, b.id,
           CASE WHEN ma.status IS NULL THEN 'new' ELSE 'was ' || ma.status || coalesce(': ' || nullif(ma.reason, ''), '') END AS reason,
           CASE WHEN ma.reason = 'duplicate'
                THEN 'the next copy of ' || coalesce(json_extract_string(ma.evidence, '$.same_audio.kept'), '?')
                     || ', kept before and now out of this version'
                ELSE '' END AS detail
    FROM b ANTI JOIN a USING (key) LEFT JOIN ma ON ma.source = b.source AND ma.id = b.id
    UNION ALL
    SELECT 'removed', a.source, a.id, {_CATEGORY},
           coalesce(m.reason, '') || coalesce(': ' || json_extract_string(m.evidence, '$.takedown.reason'), '')
    FROM a ANTI JOIN b USING (key) LEFT JOIN m ON m.source = a.source AND m.id = a.id
    UNION ALL
    SELECT 'changed', a.source, a.id,
           concat_ws(', ',
             CASE WHEN a.license IS DISTINCT FROM b.license OR a.license_url IS DISTINCT FROM b.license_url THEN 'license' END,
             CASE WHEN a.audio_sha256 IS DISTINCT FROM b.audio_sha256 THEN 'audio' END,
             CASE WHEN a.metadata_sha256 IS DISTINCT FROM b.metadata_sha256 THEN 'metadata' END),
           concat_ws('; ',
             CASE WHEN a.license_url IS DISTINCT FROM b.license_url OR a.license IS DISTINCT FROM b.license
                  THEN 'license ' || coalesce(a.license_url, a.license, '') || ' -> ' || coalesce(b.license_url, b.license, '') END,
             CASE WHEN a.title IS DISTINCT FROM b.title THEN 'title ' || coalesce(a.title, '') || ' -> ' || coalesce(b.title, '') END,
             CASE WHEN a.author IS DISTINCT FROM b.author THEN 'author ' || coalesce(a.author, '') || ' -> ' || coalesce(b.author, '') END,
             CASE WHEN a.url IS DISTINCT FROM b.url THEN 'url ' || coalesce(a.url, '') || ' -> ' || coalesce(b.url, '') END)
    FROM a JOIN b USING (key)
    WHERE a.license IS DISTINCT FROM b.license OR a.license_url IS DISTINCT FROM b.license_url
       OR a.audio_sha256 IS DISTINCT FROM b.audio_sha256 OR a.metadata_sha256 IS DISTINCT FROM b.metadata_sha256
    """
    con = duckdb.connect()
    try:
        rows = con.execute(f"SELECT * FROM ({sql}) ORDER BY change, source, CAST(id AS BIGINT)").fetchall()
    finally:
        con.close()
    return [dict(zip(FIELDS, r)) for r in rows]


def summary(rows: list[dict]) -> dict:
    """Counts: {"added": n, "removed": n, "changed": n, "removed_by_reason": {...},
    "changed_by_kind": {...}}."""
    out = {"added": 0, "removed": 0, "changed": 0, "removed_by_reason": {}, "changed_by_kind": {}}
    for r in rows:
        out[r["change"]] += 1
        if r["change"] == "removed":
            out["removed_by_reason"][r["reason"]] = out["removed_by_reason"].get(r["reason"], 0) + 1
        if r["change"] == "changed":
            for kind in r["reason"].split(", "):
                out["changed_by_kind"][kind] = out["changed_by_kind"].get(kind, 0) + 1
    return out


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
