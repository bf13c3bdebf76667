"""Ingest: the sources read into partitions of the records table (OUT/work/stages/ingest), each
record once (the same (source, id) seen again: the latest wins or it is a conflict)."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from .. import storage
from .. import record_table as rt
from ..atomic import atomic_write_text
from ..config import Config
from ..records import Record
from ..stage import FanIn, StageReport
from ..sources import fma as fma_src
from ..sources import freesound as fs_src
from ..sources import freesound_api as fs_api
from ..sources import freesound_crawl as fs_crawl
from ..sources.freesound import freesound_dirs


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
    from ..stage import write_part

    table = rt.unify(list(fs_src.read_page_files([storage.as_path(f) for f in files])))
    write_part(storage.as_path(dst), table)
    return table.num_rows


def _ingest_inputs(cfg: Config) -> list[Path]:
    pages_dir, _ = freesound_dirs(cfg)
    files = fs_src.page_files(pages_dir) if pages_dir is not None and pages_dir.is_dir() else []
    files += [p for p in (cfg.fma.tracks_csv, cfg.fma.raw_tracks_csv) if p is not None]
    return files


def ingest_parts(cfg: Config, out_dir: Path, partition_records: int, workers: int = 2,
                 client: fs_api.FreesoundClient | None = None) -> tuple[list[str], StageReport]:
    """Ingest into partitions `out_dir/part-NNNNN.parquet`, duplicates resolved across all of
    them. Skipped (nothing read) when the inputs and settings are those of the last ingest."""
    import concurrent.futures as cf
    import multiprocessing as mp

    from ..stage import files_key, part_digest, settings_key, write_part

    rep = StageReport("ingest")
    pages_dir, _ = freesound_dirs(cfg)
    if cfg.freesound.api is not None:
        summary = fs_crawl.crawl(cfg.freesound.api, pages_dir, client=client)
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
    from ..stage import settings_key

    state = json.loads((storage.as_path(parts[0]).parent / "ingest.json").read_text()) if parts else {}
    return [settings_key(state.get("key"), i) for i in range(len(parts))]


def _dedupe_parts(parts: list[Path], latest_wins: frozenset[str] = frozenset()) -> int:
    """`dedupe` across partitions: only the keys are read from every partition, and only the
    partitions holding a repeated key are rewritten. Returns the distinct record count."""
    from ..stage import read_part, write_part

    keys = []
    for i, p in enumerate(parts):
        t = storage.read_parquet(p, columns=["source", "id"])
        keys.append(pa.table({"k": rt.row_keys(t), "part": pa.repeat(pa.scalar(i, pa.int32()), t.num_rows),
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


#: The reasons this step may set, and what each means.
INGEST_REASONS = {
    "malformed_record": "a metadata row or API result could not be read (see evidence)",
    "duplicate_conflict": "the same (source, id) was seen more than once with different metadata",
    "source_deleted": "the sound was deleted from the source (404 when fetched again)",
}

def explain(row: dict, ev: dict) -> list[str]:
    """What ingest did with the record, for `curate explain`."""
    out: list[str] = []
    if row.get("seen", 1) and row.get("seen", 1) > 1:
        out.append(f"  ingest: seen {row['seen']} times, kept once")
    if ev.get("versions", 1) > 1:
        out.append(f"  ingest: fetched {ev['versions']} times from the API; the newest version stands")
    for k in ("detail", "conflicting_fields", "licenses_seen", "license_changed_from", "download_error", "text_cleaned"):
        if k in ev:
            out.append(f"  ingest: {k} = {ev[k]}")
    return out


INGEST = FanIn(
    name="ingest",
    reads=(),  # the sources' own files: Freesound API pages, FMA's tracks.csv and raw_tracks.csv
    writes=tuple(rt.FIELDS),
    reasons=INGEST_REASONS,
    run=ingest_parts,
    explain=explain,
)
