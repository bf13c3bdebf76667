"""`curate audit`: DuckDB views over an output folder's runs, decisions, reviews and releases,
and the canned queries for the questions data engineers ask. The HTML report
(manifests/report.py) shows the results of these same queries.

Views (all read the files in place; nothing is copied):
- `records`: the current manifest (OUT/manifests/records.parquet), one row per input record.
- `decisions`: the decision history (OUT/manifests/history/*.parquet): each run's new records
  and changed decisions, with `run_id`, `run_at`, `previous_status`, `previous_reason`.
- `reviews`: the review ledger (OUT/review/decisions.csv): every reviewer decision kept.
- `releases`: one row per published version (OUT/releases/vN/release.json).
- `release_records`: every version's records.parquet, with its `version`.
- `reason_stages`: which stage gives each reason (for the funnel).
"""
from __future__ import annotations

import re
from pathlib import Path

import duckdb

from curation import storage
from curation.stages import REASON_STEP, REASONS

VIEWS = ["records", "decisions", "reviews", "review_ledger", "releases", "release_records", "reason_stages"]

# The funnel's rows: the steps of a run (`curation.stages`), with the music stage's audio check
# (a file missing or not decoding) shown as a row of its own, and a takedown counted where it takes
# a record out, the release.
STAGES = ["ingest", "licenses", "eval_sets", "audio", "music", "quality", "duplicates", "copyright", "review", "release"]
_SHOWN_AS = {"takedown": "release"}


def stage_of(reason: str) -> str:
    """The funnel row of a reason: the step that declares it (an unknown one: review)."""
    if reason in _SHOWN_AS:
        return _SHOWN_AS[reason]
    step = REASON_STEP.get(reason, "review")
    return "audio" if step == "music" and reason.startswith("audio_") else step


class AuditError(RuntimeError):
    pass


def _lit(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _empty(columns: dict[str, str]) -> str:
    return "SELECT " + ", ".join(f"NULL::{t} AS {c}" for c, t in columns.items()) + " WHERE false"


_HISTORY = {"run_id": "VARCHAR", "run_at": "TIMESTAMPTZ", "source": "VARCHAR", "id": "VARCHAR", "status": "VARCHAR",
            "reason": "VARCHAR", "previous_status": "VARCHAR", "previous_reason": "VARCHAR"}
_REVIEWS = {"source": "VARCHAR", "id": "VARCHAR", "decision": "VARCHAR", "reviewer": "VARCHAR", "note": "VARCHAR",
            "decided_at": "VARCHAR"}
_LEDGER = {**_REVIEWS, "evidence_digest": "VARCHAR"}
_RELEASES = {"version": "VARCHAR", "number": "INTEGER", "parent": "VARCHAR", "created_at": "TIMESTAMPTZ",
             "records": "BIGINT", "shards": "BIGINT", "shards_shared_with_parent": "BIGINT", "hours": "DOUBLE",
             "takedowns": "BIGINT", "music_model_sha256": "VARCHAR", "music_model_random": "BOOLEAN",
             "config_sha256": "VARCHAR"}
_RELEASE_RECORDS = {"version": "VARCHAR", "key": "VARCHAR", "source": "VARCHAR", "id": "VARCHAR", "shard": "VARCHAR",
                    "license": "VARCHAR", "license_url": "VARCHAR", "title": "VARCHAR", "author": "VARCHAR",
                    "url": "VARCHAR", "audio_sha256": "VARCHAR", "audio_seconds": "DOUBLE",
                    "metadata_sha256": "VARCHAR"}


_DUCK_TYPES = {"string": "VARCHAR", "double": "DOUBLE", "int32": "INTEGER", "int64": "BIGINT", "bool": "BOOLEAN",
               "list<item: string>": "VARCHAR[]"}


def connect(output_dir) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the views over `output_dir` (a local folder)."""
    from curation.release.versions import versions

    if storage.is_remote(output_dir):
        raise AuditError("curate audit reads a local output folder; copy the store's manifests/, review/ and "
                         "releases/ folders down first")
    out = Path(output_dir)
    manifest = out / "manifests" / "records.parquet"
    if not manifest.is_file():
        raise AuditError(f"no manifest at {manifest}: run `curate run` first")
    con = duckdb.connect()
    # a manifest written before a column was added: that column reads as NULL
    import pyarrow.parquet as pq

    from .schema import SCHEMA

    have = set(pq.read_schema(manifest).names)
    missing = [f for f in SCHEMA if f.name not in have]
    extra = "".join(f", NULL::{_DUCK_TYPES.get(str(f.type), 'VARCHAR')} AS {f.name}" for f in missing)
    con.execute(f"CREATE VIEW records AS SELECT *{extra} FROM read_parquet({_lit(manifest)})")
    hist = sorted((out / "manifests" / "history").glob("*.parquet"))
    con.execute("CREATE VIEW decisions AS " + (
        f"SELECT * FROM read_parquet([{', '.join(_lit(p) for p in hist)}], union_by_name = true)" if hist
        else _empty(_HISTORY)))
    ledger = out / "review" / "decisions.csv"
    con.execute("CREATE VIEW reviews AS " + (
        f"SELECT * FROM read_csv({_lit(ledger)}, header = true, all_varchar = true)"
        if ledger.is_file() and ledger.stat().st_size else _empty(_REVIEWS)))
    web = out / "review" / "ledger.csv"  # every decision made in the review workspace, in order
    con.execute("CREATE VIEW review_ledger AS " + (
        f"SELECT * FROM read_csv({_lit(web)}, header = true, all_varchar = true, ignore_errors = true)"
        if web.is_file() and web.stat().st_size else _empty(_LEDGER)))
    have = versions(out / "releases")
    rel = [out / "releases" / v for v in have]
    if rel:
        files = ", ".join(_lit(d / "release.json") for d in rel)
        con.execute(f"""CREATE VIEW releases AS
            SELECT version, CAST(regexp_extract(version, '[0-9]+') AS INTEGER) AS number, parent,
                   CAST(created_at AS TIMESTAMPTZ) AS created_at, records.total AS records,
                   shards.count AS shards, shards.shared_with_parent AS shards_shared_with_parent,
                   seconds.hours AS hours, len(takedowns) AS takedowns,
                   music_model.sha256 AS music_model_sha256, music_model.random_init AS music_model_random,
                   config_sha256
            FROM read_json([{files}], format = 'auto', union_by_name = true)""")
        parts = " UNION ALL ".join(
            f"SELECT {_lit(d.name)} AS version, * FROM read_parquet({_lit(d / 'records.parquet')})" for d in rel)
        con.execute(f"CREATE VIEW release_records AS {parts}")
    else:
        con.execute("CREATE VIEW releases AS " + _empty(_RELEASES))
        con.execute("CREATE VIEW release_records AS " + _empty(_RELEASE_RECORDS))
    rows = [(r, stage_of(r), STAGES.index(stage_of(r))) for r in REASONS]
    con.execute("CREATE TABLE reason_stages (reason VARCHAR, stage VARCHAR, stage_order INTEGER)")
    con.executemany("INSERT INTO reason_stages VALUES (?, ?, ?)", rows)
    return con


def latest_versions(con) -> list[str]:
    return [r[0] for r in con.execute("SELECT version FROM releases ORDER BY number").fetchall()]


# The canned questions: name -> (what it answers, SQL with $parameters).
CANNED: dict[str, tuple[str, str]] = {
    "reasons": ("records by source, status and reason", """
        SELECT source, status, coalesce(nullif(reason, ''), '-') AS reason, count(*) AS records
        FROM records GROUP BY ALL ORDER BY source, status, records DESC, reason"""),
    "funnel": ("records left after each stage, and how many it took out", """
        WITH s AS (SELECT * FROM (VALUES """ + ", ".join(f"('{st}', {i})" for i, st in enumerate(STAGES)) + """) t(stage, stage_order)),
             out AS (SELECT rs.stage_order, count(*) AS n FROM records r
                     JOIN reason_stages rs ON rs.reason = r.reason WHERE r.status = 'excluded' GROUP BY ALL),
             waiting AS (SELECT count(*) AS n FROM records WHERE status = 'review'),
             total AS (SELECT count(*) AS n FROM records)
        SELECT s.stage,
               CAST(coalesce(o.n, 0) + CASE WHEN s.stage = 'review' THEN (SELECT n FROM waiting) ELSE 0 END AS BIGINT)
                 AS taken_out,
               CAST((SELECT n FROM total)
                 - (SELECT coalesce(sum(n), 0) FROM out WHERE out.stage_order <= s.stage_order)
                 - CASE WHEN s.stage_order >= """ + str(STAGES.index("review")) + """ THEN (SELECT n FROM waiting) ELSE 0 END AS BIGINT) AS remaining
        FROM s LEFT JOIN out o ON o.stage_order = s.stage_order ORDER BY s.stage_order"""),
    "included": ("license mix of the included records by source (the current manifest)", """
        SELECT source, coalesce(license, '') AS license, count(*) AS records FROM records
        WHERE status = 'included' GROUP BY ALL ORDER BY source, license"""),
    "music": ("music decisions by how they were reached (music_rule: full, early, short, source), how many "
              "are music, and the model time they took", """
        SELECT source, coalesce(music_rule, 'full') AS music_rule, count(*) AS records,
               count(*) FILTER (WHERE is_music) AS music,
               round(coalesce(sum(music_measured_seconds), 0) / 3600, 3) AS model_hours,
               round(coalesce(sum(music_seconds), 0) / 3600, 3) AS music_hours,
               bool_or(coalesce(music_seconds_lower_bound, false)) AS lower_bound
        FROM records WHERE is_music IS NOT NULL GROUP BY ALL ORDER BY source, music_rule"""),
    "duplicates": ("groups of recordings that hold the same audio: the copy kept, its status, how many copies "
                   "of which kinds, and under how many authors", """
        SELECT "group" AS kept, count(*) AS records,
               any_value(status) FILTER (WHERE source || '_' || id = "group") AS kept_status,
               count(*) FILTER (WHERE reason = 'duplicate') AS copies,
               string_agg(DISTINCT duplicate_kind, ',' ORDER BY duplicate_kind) AS kinds,
               count(DISTINCT lower(author)) AS authors,
               string_agg(DISTINCT author, ', ' ORDER BY author) AS author_names
        FROM records WHERE "group" IS NOT NULL GROUP BY "group" ORDER BY records DESC, kept"""),
    "releases": ("the published versions", "SELECT * FROM releases ORDER BY number"),
    "licenses": ("license mix of a release (--version, default the latest)", """
        SELECT source, license, license_url, count(*) AS records, round(sum(audio_seconds) / 3600, 3) AS hours
        FROM release_records WHERE version = $version GROUP BY ALL ORDER BY source, records DESC, license_url"""),
    "since": ("records that entered or left the release since a version (--version, default the one before the "
              "latest), with their decision now and when it was made", """
        WITH a AS (SELECT key, source, id FROM release_records WHERE version = $version),
             b AS (SELECT key, source, id FROM release_records WHERE version = $latest),
             last AS (SELECT source, id, max(run_at) AS decided_at FROM decisions GROUP BY ALL),
             moved AS (SELECT 'entered' AS change, source, id FROM b ANTI JOIN a USING (key)
                       UNION ALL SELECT 'left', source, id FROM a ANTI JOIN b USING (key))
        SELECT m.change, m.source, m.id, r.status, coalesce(nullif(r.reason, ''), '-') AS reason,
               l.decided_at
        FROM moved m LEFT JOIN records r USING (source, id) LEFT JOIN last l USING (source, id)
        ORDER BY m.change, m.source, CAST(m.id AS BIGINT)"""),
    "backlog": ("records waiting for review, oldest first, with the days they have waited", """
        WITH since AS (SELECT source, id, max(run_at) AS waiting_since FROM decisions
                       WHERE status = 'review' GROUP BY ALL)
        SELECT r.source, r.id, r.reason, s.waiting_since,
               CAST(floor(epoch(now() - s.waiting_since) / 86400) AS INTEGER) AS days_waiting,
               r.title, r.author
        FROM records r LEFT JOIN since s USING (source, id)
        WHERE r.status = 'review' ORDER BY s.waiting_since NULLS FIRST, r.source, CAST(r.id AS BIGINT)"""),
    "quality": ("what the samples say (curation/quality): each finding excluded or flagged, how many "
                "recordings, their median loudness and bandwidth; and all that were measured", """
        WITH m AS (SELECT * FROM records WHERE loudness_lufs IS NOT NULL OR bandwidth_hz IS NOT NULL
                                            OR silent_share IS NOT NULL)
        SELECT * FROM (
            SELECT 'measured' AS action, '-' AS finding, count(*) AS records,
                   round(median(loudness_lufs), 2) AS median_lufs, round(median(bandwidth_hz)) AS median_bandwidth_hz
            FROM m
            UNION ALL
            SELECT 'excluded', reason, count(*), round(median(loudness_lufs), 2), round(median(bandwidth_hz))
            FROM m WHERE reason IN ('audio_silent', 'audio_dead_channel', 'audio_clipped', 'audio_low_bandwidth',
                                    'audio_phase_inverted', 'audio_dc_offset') GROUP BY ALL
            UNION ALL
            SELECT 'flagged', f, count(*), round(median(loudness_lufs), 2), round(median(bandwidth_hz))
            FROM (SELECT unnest(quality_flags) AS f, loudness_lufs, bandwidth_hz FROM m) GROUP BY ALL)
        ORDER BY action = 'measured' DESC, action, finding"""),
    "disagreements": ("review items on which reviewers decided differently (the workspace's ledger): each "
                      "reviewer's last word, and which one stands (the latest)", """
        WITH last AS (SELECT source, id, reviewer, arg_max(decision, decided_at) AS decision,
                             max(decided_at) AS decided_at, arg_max(note, decided_at) AS note
                      FROM review_ledger WHERE decision IN ('clear', 'reject') GROUP BY ALL),
             split AS (SELECT source, id FROM last GROUP BY ALL HAVING count(DISTINCT decision) > 1)
        SELECT l.source, l.id, l.reviewer, l.decision, l.decided_at, l.note,
               l.decided_at = max(l.decided_at) OVER (PARTITION BY l.source, l.id) AS stands
        FROM last l JOIN split USING (source, id)
        ORDER BY l.source, CAST(l.id AS BIGINT), l.decided_at"""),
    "evidence": ("the strongest copyright evidence still waiting for review", """
        SELECT source, id, title, author, reason, copyright_method, round(copyright_score, 4) AS copyright_score,
               copyright_candidate
        FROM records WHERE status = 'review'
        ORDER BY copyright_score DESC NULLS LAST, source, CAST(id AS BIGINT) LIMIT 20"""),
    "history": ("every decision recorded for one record (--record SOURCE:ID)", """
        SELECT run_at, run_id, status, coalesce(nullif(reason, ''), '-') AS reason, previous_status, previous_reason
        FROM decisions WHERE source = $source AND id = $id ORDER BY run_at"""),
}


def run_query(con, name_or_sql: str, version: str | None = None, record: str | None = None):
    """(column names, rows) of a canned query by name, or of any SQL over the views."""
    if name_or_sql not in CANNED:
        if re.fullmatch(r"[A-Za-z_][\w-]*", name_or_sql.strip()):  # one word: a query's name, not SQL
            from rapidfuzz import process as rf_process

            near = [n for n, score, _ in rf_process.extract(name_or_sql.strip(), list(CANNED), limit=3)
                    if score >= 60]
            raise AuditError(f"{name_or_sql!r} is not a known query"
                             + (f"; did you mean {', '.join(near)}?" if near else "")
                             + f" (canned queries: {', '.join(CANNED)}; or give SQL over the views)")
        cur = con.execute(name_or_sql)
        return [d[0] for d in cur.description], cur.fetchall()
    sql = CANNED[name_or_sql][1]
    params: dict = {}
    if "$version" in sql or "$latest" in sql:
        have = latest_versions(con)
        if not have:
            raise AuditError(f"'{name_or_sql}' needs a published release: none under releases/")
        if "$latest" in sql:
            params["latest"] = have[-1]
            if version is None:
                if len(have) < 2:
                    raise AuditError(f"'{name_or_sql}' compares with an earlier version: only {have[-1]} is published")
                version = have[-2]
        version = version or have[-1]
        if version not in have:
            raise AuditError(f"no release version {version!r} (published: {', '.join(have)})")
        params["version"] = version
    if "$source" in sql:
        m = re.fullmatch(r"(freesound|fma):([0-9]+)", record or "")
        if not m:
            raise AuditError(f"'{name_or_sql}' needs --record SOURCE:ID (e.g. freesound:1234)")
        params["source"], params["id"] = m.group(1), m.group(2)
    cur = con.execute(sql, params)
    return [d[0] for d in cur.description], cur.fetchall()
