"""Ingest, review, the release plan, the manifest and version publishing: the stages that
are not yet objects of their own (issue 29; the per-partition stages are in their folders and
listed in `curation/stages.py`).

Every record that enters ends with a status: `included`, `excluded` (with a reason) or
`review` (with a reason), and every stage writes its evidence under
`record.evidence[stage]`.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from . import storage
from . import record_table as rt
from .atomic import atomic_write_text
from .config import Config
from .records import Record
from .stage import Progress, StageReport, release_memory
from .sources import fma as fma_src
from .sources import freesound as fs_src
from .sources.freesound import freesound_dirs
from .music.stage import ModelInfo

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- 1. ingest


def crawl_summary_path(cfg: Config) -> Path:
    return cfg.work_dir / "freesound" / "last_crawl.json"


def crawl_summary(cfg: Config) -> dict | None:
    """What this run's crawl did (None without a live API)."""
    if cfg.freesound.api is None:
        return None
    try:
        return json.loads(crawl_summary_path(cfg).read_text())
    except (OSError, ValueError, FileNotFoundError):
        return None


def _ingest_page_group(files: list[str], dst: str) -> int:
    """One partition from a group of saved Freesound pages (runs in a worker process)."""
    from .stage import write_part

    table = rt.unify(list(fs_src.read_page_files([storage.as_path(f) for f in files])))
    write_part(storage.as_path(dst), table)
    return table.num_rows


def _ingest_inputs(cfg: Config) -> list[Path]:
    pages_dir, _ = freesound_dirs(cfg)
    files = fs_src.page_files(pages_dir) if pages_dir is not None and pages_dir.is_dir() else []
    files += [p for p in (cfg.fma.tracks_csv, cfg.fma.raw_tracks_csv) if p is not None]
    return files


def ingest_parts(cfg: Config, out_dir: Path, partition_records: int, workers: int = 2,
                 client: fs_src.FreesoundClient | None = None) -> tuple[list[str], StageReport]:
    """Ingest into partitions `out_dir/part-NNNNN.parquet`, duplicates resolved across all of
    them. Skipped (nothing read) when the inputs and settings are those of the last ingest."""
    import concurrent.futures as cf
    import multiprocessing as mp

    from .stage import files_key, part_digest, settings_key, write_part

    rep = StageReport("ingest")
    pages_dir, _ = freesound_dirs(cfg)
    if cfg.freesound.api is not None:
        summary = fs_src.crawl(cfg.freesound.api, pages_dir, client=client)
        atomic_write_text(crawl_summary_path(cfg), json.dumps(summary, sort_keys=True))
        rep.counts["freesound_pages"] = summary["pages"]
        rep.counts["api_requests"] = summary["requests"]
        if summary["error"]:
            rep.notes.append(f"Freesound crawl stopped: {summary['error']}; the next run continues")
    key = settings_key("ingest", 4, files_key(_ingest_inputs(cfg), cfg.portable), partition_records, cfg.fma,
                       cfg.freesound.api is not None, paths=cfg.portable)
    state = out_dir / "ingest.json"
    if state.is_file():
        try:
            prev = json.loads(state.read_text())
            prev_parts = [storage.url(cfg.resolve(p)) for p in prev["parts"]]
            same = (prev.get("key") == key and len(prev_parts) == len(prev["digests"])
                    and all(storage.as_path(p).is_file() and part_digest(storage.as_path(p)) == d
                            for p, d in zip(prev_parts, prev["digests"])))
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            same = False  # a state or part that cannot be trusted: ingest again
        if same:
            rep.merge(prev["counts"], prev["notes"])
            return prev_parts, rep
    storage.mkdirs(out_dir)
    if out_dir.is_dir():
        for old in out_dir.glob("part-*.parquet"):
            old.unlink()
    parts: list[str] = []
    if pages_dir is not None and pages_dir.is_dir():
        files = [str(p) for p in fs_src.page_files(pages_dir)]
        per = max(1, partition_records // 150)  # the API's largest page
        groups = [files[i : i + per] for i in range(0, len(files), per)]
        dsts = [str(out_dir / f"part-{i:05d}.parquet") for i in range(len(groups))]
        if workers > 1 and len(groups) > 1:
            with cf.ProcessPoolExecutor(min(workers, len(groups)), mp_context=mp.get_context("spawn")) as ex:
                rows = list(ex.map(_ingest_page_group, groups, dsts))
        else:
            rows = [_ingest_page_group(g, d) for g, d in zip(groups, dsts)]
        rep.add("freesound", sum(rows))
        parts += dsts
    if cfg.fma.tracks_csv is not None:
        raw = fma_src.read_raw_tracks(cfg.fma.raw_tracks_csv) if cfg.fma.raw_tracks_csv else None
        if raw is None:
            rep.notes.append("no [fma] raw_tracks_csv: FMA's track URLs are unknown, so CC BY tracks cannot be "
                             "attributed and are excluded (attribution_incomplete)")
        elif raw.unreadable:
            rep.notes.append(f"raw_tracks.csv: {raw.unreadable} row(s) without a readable track_id, attached to no track")
        chunk: list[Record] = []

        def flush() -> None:
            dst = out_dir / f"part-{len(parts):05d}.parquet"
            write_part(dst, rt.from_records(chunk))
            parts.append(str(dst))
            rep.add("fma", len(chunk))
            chunk.clear()

        for r in fma_src.read_tracks(cfg.fma.tracks_csv):
            fma_src.attach_raw_tracks(r, raw)
            chunk.append(r)
            if len(chunk) >= partition_records:
                flush()
        if chunk:
            flush()
    latest = frozenset({"freesound"}) if cfg.freesound.api is not None else frozenset()
    rep.counts["distinct"] = _dedupe_parts([storage.as_path(p) for p in parts], latest)
    digests = [part_digest(storage.as_path(p)) for p in parts]
    atomic_write_text(state, json.dumps({"key": key, "parts": [cfg.portable(storage.as_path(p)) for p in parts],
                                         "digests": digests, "counts": rep.counts, "notes": rep.notes}))
    return parts, rep


def ingest_part_keys(parts: list[str]) -> list[str]:
    """Each ingest partition's key, for the stages' markers: the ingest's key (its inputs and
    settings, from the state `ingest_parts` wrote beside them) and the partition's place."""
    from .stage import settings_key

    state = json.loads((storage.as_path(parts[0]).parent / "ingest.json").read_text()) if parts else {}
    return [settings_key(state.get("key"), i) for i in range(len(parts))]


def _dedupe_parts(parts: list[Path], latest_wins: frozenset[str] = frozenset()) -> int:
    """`dedupe` across partitions: only the keys are read from every partition, and only the
    partitions holding a repeated key are rewritten. Returns the distinct record count."""
    from .stage import read_part, write_part

    keys = []
    for i, p in enumerate(parts):
        t = storage.read_parquet(p, columns=["source", "id"])
        keys.append(pa.table({"k": _keys(t), "part": pa.repeat(pa.scalar(i, pa.int32()), t.num_rows),
                              "row": pa.array(range(t.num_rows), type=pa.int64())}))
    allk = rt.unify(keys) if keys else pa.table({"k": pa.array([], pa.string())})
    if allk.num_rows == 0:
        return 0
    counts = allk.group_by("k").aggregate([("k", "count")])
    dup = counts.filter(pc.greater(counts.column("k_count"), 1)).column("k")
    distinct = counts.num_rows
    if len(dup) == 0:
        return distinct
    hit = allk.filter(pc.is_in(allk.column("k"), value_set=dup)).sort_by([("part", "ascending"), ("row", "ascending")])
    touched = sorted(set(hit.column("part").to_pylist()))
    copies: list[Record] = []
    where: list[tuple[int, int]] = []
    tables = {i: read_part(parts[i]) for i in touched}
    for i in touched:
        rows = hit.filter(pc.equal(hit.column("part"), i)).column("row")
        for r, row in zip(rt.to_records(tables[i].take(rows)), rows.to_pylist()):
            copies.append(r)
            where.append((i, row))
    firsts = {id(r) for r in dedupe(copies, latest_wins)}
    for i in touched:
        t = tables[i]
        mine = [(row, r) for (pi, row), r in zip(where, copies) if pi == i]
        keep_rows = [row for row, r in mine if id(r) in firsts]
        drop_rows = {row for row, r in mine if id(r) not in firsts}
        if keep_rows:
            mask = pc.is_in(pa.array(range(t.num_rows), type=pa.int64()), value_set=pa.array(keep_rows, pa.int64()))
            t = rt.replace_rows(t, mask, rt.from_records([r for row, r in mine if id(r) in firsts]))
        if drop_rows:
            t = t.filter(pa.array([j not in drop_rows for j in range(t.num_rows)]))
        write_part(parts[i], t)
    return distinct


# Fields two copies of one record must agree on. A field one copy lacks is no disagreement:
# a search page asked for fewer fields than a saved sound instance, say.
_COMPARED = ("title", "author", "license_raw", "url", "gen_ai_preference", "description", "tags")


def _value(r: Record, k: str):
    if k == "tags":
        return tuple(sorted(r.tags)) or None  # the API returns tags in no fixed order
    if k == "gen_ai_preference":
        return r.gen_ai_preference if r.genai_present else None
    return getattr(r, k) or None


def _latest(group: list[Record]) -> Record:
    """Copies of one sound fetched at different times, oldest first (a live crawl's pages, then
    its refreshes): the newest version stands. A license that changed is recorded
    (`license_changed_from`, the license before the newest); a deletion found by a later check
    keeps the last version's metadata and excludes it (`source_deleted`)."""
    versions = [g for g in group if g.reason != "source_deleted"]
    gone = group[-1].reason == "source_deleted"
    keep = versions[-1] if versions else group[-1]
    keep.seen = len(group)
    keep.evidence["versions"] = len(versions)
    lic = [v.license_raw for v in versions]
    if len(set(lic)) > 1:
        keep.evidence["licenses_seen"] = list(dict.fromkeys(lic))
        keep.evidence["license_changed_from"] = next(x for x in reversed(lic) if x != lic[-1])
    if gone and keep is not group[-1]:
        keep.exclude("source_deleted", detail=group[-1].evidence.get("detail", ""))
    return keep


def dedupe(records: Iterable[Record], latest_wins: frozenset[str] = frozenset()) -> list[Record]:
    """One record per (source, id). Copies that disagree on a field both carry are
    excluded: we cannot tell which metadata (license!) is right. Copies that agree are
    merged, each field taken from the first copy that has it. For the sources in
    `latest_wins` (a live crawl, whose copies are versions in fetch order), see `_latest`."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.source, r.id)].append(r)
    out = []
    for (source, _), group in groups.items():
        if source in latest_wins and len(group) > 1:
            out.append(_latest(group))
            continue
        first = group[0]
        first.seen = len(group)
        if len(group) > 1:
            first.evidence["duplicates"] = len(group) - 1
            diff = sorted(k for k in _COMPARED if len({_value(g, k) for g in group} - {None}) > 1)
            if diff and first.pending:
                first.exclude("duplicate_conflict", conflicting_fields=diff,
                              licenses_seen=sorted({g.license_raw for g in group}))
            elif first.pending:
                for g in group[1:]:
                    for k in _COMPARED:
                        if _value(first, k) is None and _value(g, k) is not None:
                            setattr(first, k, getattr(g, k))
                            if k == "gen_ai_preference":
                                first.genai_present = True
                    for k, v in g.evidence.items():
                        first.evidence.setdefault(k, v)
        out.append(first)
    return out


def load_decisions(cfg: Config, rep: StageReport) -> dict:
    """The persisted and new review decisions, merged, and the ledger written back."""
    from .copyright.review import merged_decisions, write_decisions

    ledger = cfg.output_dir / "review" / "decisions.csv"
    decisions, warnings = merged_decisions(ledger, cfg.copyright.review_decisions)
    rep.notes += warnings
    if decisions or ledger.exists():
        write_decisions(ledger, decisions)
    return decisions


def apply_decisions(records: list[Record], decisions: dict, rep: StageReport) -> list[dict]:
    """Apply the decisions to the records; return the queue of those that still wait."""
    queue = []
    for r in records:
        d = decisions.get((r.source, r.id))
        if d is not None:
            r.evidence["review"] = {"decision": d.decision, "reviewer": d.reviewer, "note": d.note,
                                    "decided_at": d.decided_at}
            if d.decision == "reject" and r.status in ("pending", "review"):
                r.status, r.reason = "excluded", "copyright_rejected"
                rep.add("rejected")
            elif d.decision == "clear" and r.status == "review":
                r.evidence["review"]["cleared_reason"] = r.reason
                r.status, r.reason = "pending", ""
                rep.add("cleared")
        if r.status == "review":
            queue.append({"source": r.source, "id": r.id, "title": r.title, "author": r.author, "url": r.url,
                          "reason": r.reason, "evidence": r.evidence.get("copyright", {}),
                          "audio_path": r.audio_path})
    return queue


def _keys(table) -> "pa.Array":
    return pc.binary_join_element_wise(table.column("source"), table.column("id"), "\x1f")


def review_table(table, decisions: dict, rep: StageReport):
    """Decisions applied to the rows they name and to the rows waiting for review; what is
    still pending after that is included. Returns the table and the review queue."""
    named = pa.array([f"{s}\x1f{i}" for s, i in decisions], type=pa.string())
    touch = pc.or_(pc.is_in(_keys(table), value_set=named), pc.equal(table.column("status"), "review"))
    recs = rt.to_records(table.filter(touch))
    queue = apply_decisions(recs, decisions, rep)
    if recs:
        table = rt.replace_rows(table, touch, rt.from_records(recs))
    pend = rt.pending(table)
    table = rt.where(pend, "included", table, "status")
    return table, queue


def decisions_elsewhere(decisions: dict, keys: set, rep: StageReport) -> None:
    elsewhere = sorted(k for k in decisions if k not in keys)
    if elsewhere:
        # kept in the ledger for when those records come back; said, not dropped
        rep.notes.append(f"{len(elsewhere)} decision(s) for records not in this run are kept: "
                         + ", ".join(f"{s} {i}" for s, i in elsewhere[:10]))


def apply_review(records: list[Record], cfg: Config) -> tuple[list[dict], StageReport]:
    """Apply the persisted and new decisions; return the queue of what still waits."""
    rep = StageReport("review")
    decisions = load_decisions(cfg, rep)
    queue = apply_decisions(records, decisions, rep)
    for q in queue:
        q.pop("audio_path")
    rep.counts["waiting"] = len(queue)
    decisions_elsewhere(decisions, {(r.source, r.id) for r in records}, rep)
    return queue, rep


# --------------------------------------------------------------------------- the stages over partitions

def review_parts(parts: list[str], cfg: Config, out_dir: Path) -> tuple[list[str], list[dict], StageReport]:
    """Review decisions over every partition (a fan-in: the ledger and queue are global);
    what is still pending after it is included."""
    from .stage import read_part, write_part

    from .release import takedowns

    rep = StageReport("review")
    decisions = load_decisions(cfg, rep)
    down = takedowns.load(cfg.output_dir, cfg.release.takedowns)
    queue: list[dict] = []
    out = []
    keys: set = set()
    for i, p in enumerate(parts):
        t = read_part(p)
        if decisions or down:
            keys.update(zip(t.column("source").to_pylist(), t.column("id").to_pylist()))
        t, n = takedowns.apply(t, down)
        if n:
            rep.add("takedown", n)
        t, q = review_table(t, decisions, rep)
        queue += q
        dst = out_dir / f"part-{i:05d}.parquet"
        write_part(dst, t)
        out.append(str(dst))
        del t
        release_memory()
    rep.counts["waiting"] = len(queue)
    decisions_elsewhere(decisions, keys, rep)
    absent = sorted(k for k in down if k not in keys)
    if absent:
        rep.notes.append(f"{len(absent)} takedown(s) for records not in this run stay in force: "
                         + ", ".join(f"{s} {i}" for s, i in absent[:10]))
    return out, queue, rep


def release_plan(parts: list[str], cfg: Config) -> tuple[str, list[tuple[str, str, str]], StageReport]:
    """The release's first step, over every partition: reads only the included rows, writes
    the attribution CSVs and which shard each record goes to (`work/release/shards.parquet`),
    removes shards no longer produced, and returns the shards to write as jobs (name, a
    Parquet file of its records, fingerprint) for `write_shard_job`, one task each."""
    from .release.writers import plan_shards, prune_shards, sort_key, write_attribution
    from .stage import write_part

    rep = StageReport("release")
    included = []
    for p in parts:
        included += rt.to_records(storage.read_parquet(p, filters=[("status", "=", "included")]))
        release_memory()
    included.sort(key=sort_key)
    out = cfg.output_dir / "release"
    for source in ("freesound", "fma"):
        n = write_attribution(out / f"{source}_attribution.csv", (r for r in included if r.source == source))
        rep.counts[f"{source}_attribution_rows"] = n
    shard_dir, state_dir, todo = cfg.shard_dir, cfg.work_dir / "shards", cfg.work_dir / "release" / "todo"
    from .release.versions import published_assignment

    plans = plan_shards(included, cfg.release.shard_max_records, shard_dir, state_dir,
                        published_assignment(cfg.output_dir))
    storage.mkdirs(shard_dir)
    prune_shards(shard_dir, {p["name"] for p in plans})
    jobs = []
    for p in plans:
        if p["write"]:
            job = todo / p["name"].replace(".tar", ".parquet")
            write_part(job, rt.from_records(p["records"]))
            jobs.append((p["name"], str(job), p["fingerprint"]))
    where = pa.table({"key": [k for p in plans for k in p["keys"]],
                      "shard": [p["name"] for p in plans for _ in p["keys"]]},
                     schema=pa.schema([("key", pa.string()), ("shard", pa.string())]))
    path = cfg.work_dir / "release" / "shards.parquet"
    write_part(path, where)
    write_part(cfg.work_dir / "release" / "index.parquet", release_index(plans))
    rep.counts["shards"] = len(plans)
    rep.counts["records"] = len(included)
    return str(path), jobs, rep


def _decided_path(cfg: Config) -> Path:
    return cfg.work_dir / "stages" / "decided.json"


def save_decided_parts(cfg: Config, parts: list[str]) -> None:
    """The partitions the per-partition stages ended with, for `curate release` to start from."""
    atomic_write_text(_decided_path(cfg), json.dumps([cfg.portable(storage.as_path(p)) for p in parts]))


class NoRunYet(RuntimeError):
    pass


def load_decided_parts(cfg: Config) -> list[str]:
    path = _decided_path(cfg)
    try:
        parts = json.loads(path.read_text())
        if not (isinstance(parts, list) and parts and all(isinstance(p, str) for p in parts)):
            raise ValueError("not a list of partitions")
    except (OSError, ValueError):
        raise NoRunYet(f"no decided records under {cfg.work_dir}: run `curate run` first") from None
    parts = [storage.url(cfg.resolve(p)) for p in parts]
    missing = [p for p in parts if not storage.as_path(p).exists()]
    if missing:
        raise NoRunYet(f"the last run's partition {missing[0]} is gone: run `curate run` again")
    return parts


def publish_version(cfg: Config, info: "ModelInfo") -> dict:
    """The working release as the next version under OUT/releases (release.versions), with
    the takedowns in force listed."""
    from .release import takedowns, versions

    down = takedowns.load(cfg.output_dir, cfg.release.takedowns)
    model = {"checkpoint": Path(info.checkpoint).name, "sha256": info.sha256, "random_init": info.random_init,
             "published": info.published}
    return versions.publish(cfg, model, [t.to_dict() for t in sorted(down.values(), key=lambda t: (t.source, int(t.id)))])


def release_index(plans: list[dict]) -> "pa.Table":
    """What a release version holds, one row per record: its shard, what the attribution
    says, and digests of its audio and of the metadata its shard sample carries (what
    `curate release diff` compares)."""
    from .release.versions import INDEX_SCHEMA, index_row

    rows = [index_row(r, p["name"]) for p in plans for r in p["records"]]
    return pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)


def write_shard_job(name: str, job: str, fingerprint: str, cfg: Config, progress: Progress | None = None) -> int:
    """One shard of the release (a task of its own: on Dask, one per worker at a time)."""
    from .release.writers import write_shard

    recs = rt.to_records(storage.read_parquet(job))
    for r in recs:
        r.audio_path = str(cfg.resolve(r.audio_path) or "")
    write_shard(cfg.shard_dir, cfg.work_dir / "shards", name, recs, fingerprint, progress)
    storage.as_path(job).unlink(missing_ok=True)
    return len(recs)


def manifest_parts(parts: list[str], shards_path: str, cfg: Config) -> tuple[str, dict]:
    """The final records (each included one with its shard) as the manifest, one sorted file;
    returns its path and the run's tallies (manifests.run_report.Tally) with the changes
    since the manifest it replaced."""
    import tempfile

    from manifests.run_report import Tally, changes, history_rows, previous_decisions
    from manifests.schema import SortedManifestWriter, manifest_table, sort_keys

    shards = storage.read_parquet(shards_path)
    tally = Tally()
    path = cfg.output_dir / "manifests" / "records.parquet"
    storage.mkdirs(path.parent)
    before = previous_decisions(path)
    keys = pa.chunked_array([c for p in parts
                             for c in sort_keys(storage.read_parquet(p, columns=["source", "id"])).chunks],
                            type=pa.string())
    # The sort's spill files stay on local disk, also when the output is on an object store.
    scratch = (Path(tempfile.mkdtemp(prefix="curate-manifest-")) if storage.is_remote(cfg.work_dir)
               else cfg.work_dir / "stages" / "manifest")
    writer = SortedManifestWriter(path, keys, scratch, cfg.partition_records)
    del keys
    for p in parts:
        t = storage.read_parquet(p)
        key = pc.binary_join_element_wise(t.column("source"), t.column("id"), "_")
        at = pc.index_in(key, value_set=shards.column("key"))
        ev = pc.binary_join_element_wise('"', pc.take(shards.column("shard"), at), '"', "")
        t = rt.where(pc.is_valid(at), ev, t, rt.EV + "shard")
        m = manifest_table(t)
        tally.add(m)
        writer.add(m)
        del t, m
        release_memory()
    writer.close()
    if storage.is_remote(cfg.work_dir):
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    after = storage.read_parquet(path, columns=["source", "id", "status", "reason"])
    run_id, run_at = _run_identity()
    hist_dir = cfg.output_dir / "manifests" / "history"
    started = hist_dir.exists() and any(p.name.endswith(".parquet") for p in hist_dir.iterdir())
    history = history_rows(before, after, run_id, run_at, full=not started)
    storage.write_parquet(hist_dir / f"{run_at:%Y%m%dT%H%M%SZ}-{run_id[:8]}.parquet", history)
    return str(path), {**tally.to_dict(), "changes": changes(before, after), "run_id": run_id,
                       "history_rows": history.num_rows}


def _run_identity():
    """(run id, now in UTC): the Prefect flow run's id, else a fresh one."""
    import uuid
    from datetime import datetime, timezone

    try:
        from prefect.runtime import flow_run

        rid = flow_run.id
    except Exception:  # outside a flow run
        rid = None
    return str(rid or uuid.uuid4()), datetime.now(timezone.utc).replace(microsecond=0)
