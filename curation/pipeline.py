"""The stages as plain functions over lists of records. Prefect flows (flows/) only call
these; tests call them directly.

Every record that enters ends with a status: `included`, `excluded` (with a reason) or
`review` (with a reason), and every stage writes its evidence under
`record.evidence[stage]`.
"""
from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from . import storage
from .licenses import terms as licenses
from . import record_table as rt
from .atomic import atomic_write_text
from .audio import file_sha256
from .config import Config
from .records import Record, valid_id
from .stage import StageReport, reason_counts, release_memory
from .sources import fma as fma_src
from .sources import freesound as fs_src

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


def _noop(_: int) -> None:
    pass


# --------------------------------------------------------------------------- 1. ingest


def freesound_dirs(cfg: Config) -> tuple[Path | None, Path | None]:
    fs = cfg.freesound
    if fs.api is not None:
        return cfg.work_dir / "freesound" / "pages", cfg.work_dir / "freesound" / "audio"
    return fs.pages_dir, fs.audio_dir


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


# --------------------------------------------------------------------------- 2. licenses


# Licenses whose terms ask that each use name the author, link the work and name the license.
NEEDS_ATTRIBUTION = frozenset({"cc-by", "sampling+"})


def _license_of(license_raw: str, source: str, fma_license_url: str) -> tuple[licenses.LicenseDecision, str, str]:
    """The record's license class, why it cannot be trusted ("" when it can), and FMA's
    license URL from raw_tracks.csv ("" without one). FMA's license title is checked against
    that URL, which names the exact license; where both are given they must agree."""
    dec = licenses.classify(license_raw)
    url = (fma_license_url or "").strip()
    if source != "fma" or not url:
        return dec, "", ""
    by_url = licenses.license_terms(url)
    if dec.license == "missing":
        return licenses.LicenseDecision(url, by_url.license), "", url
    return dec, licenses.terms_conflict(licenses.license_terms(license_raw), by_url), url


def _ev_field(table, column: str, key: str):
    """One key of a JSON evidence column, parsed once per distinct value."""
    if column not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    return rt.per_distinct(table, [column], lambda row: {
        "v": None if row[column] is None else str((json.loads(row[column]) or {}).get(key) or "") or None},
        {"v": pa.string()})["v"]


def _exclude_unsafe_urls(table):
    """A record whose work URL is not an http(s) link (javascript:, data:, spaces, quotes) is
    excluded, `url_unsafe`: the URL is published in the attribution and shown as a link."""
    from .safe_text import encode_url, safe_href

    url = table.column("url")
    # an http(s) URL with raw spaces, tabs or quotes is the same URL percent-encoded
    odd = pc.and_(pc.match_substring_regex(url, r"^[Hh][Tt][Tt][Pp][Ss]?://"),
                  pc.match_substring_regex(url, r"[\s\"'<>\\`\x00-\x1f\x7f]"))
    if pc.any(odd).as_py():
        raw = url.to_pylist()
        flags = odd.to_pylist()
        table = rt.where(odd, pa.array([encode_url(u) if f else u for u, f in zip(raw, flags)], pa.string()),
                         table, "url")
        table = rt.where(odd, pa.array([rt.ev_json(u) if f else None for u, f in zip(raw, flags)], pa.string()),
                         table, rt.EV + "url_raw")
        url = table.column("url")
    unsafe = pc.and_(rt.pending(table), pc.and_(pc.not_equal(url, ""), pc.invert(
        pc.match_substring_regex(url, r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s\"'<>\\`\x00-\x1f\x7f]+$"))))
    if not pc.any(unsafe).as_py():
        return table
    detail = pa.array([rt.ev_json(f"the work's URL is not an http(s) link: {u[:200]!r}")
                       if m and safe_href(u) is None else None
                       for u, m in zip(url.to_pylist(), unsafe.to_pylist())], pa.string())
    table = rt.where(unsafe, detail, table, rt.EV + "detail")
    return rt.exclude(table, unsafe, "url_unsafe")


def licenses_table(table, cfg: Config):
    """The license stage over a table: license class, Freesound's gen-AI preference against
    what the release declares, and whether the record can be attributed as its license asks.
    Every decision depends on a few repeated values, so each is made once per distinct value."""
    rel = cfg.release
    src = table.column("source")
    is_fs = pc.and_(pc.equal(src, "freesound"), pc.invert(pc.starts_with(table.column("id"), "malformed:")))

    def genai(row):
        g = licenses.genai_decision(row["gen_ai_preference"], bool(row["genai_present"]), rel.open_source_model,
                                    rel.noncommercial, cfg.freesound.require_genai_preference)
        return {"ev": rt.ev_json({"preference": row["gen_ai_preference"], "present": bool(row["genai_present"]),
                                  "rule": g.rule, "release_open_source_model": rel.open_source_model,
                                  "release_noncommercial": rel.noncommercial}),
                "reason": g.reason}

    g = rt.per_distinct(table, ["gen_ai_preference", "genai_present"], genai,
                        {"ev": pa.string(), "reason": pa.string()}, mask=is_fs)
    table = rt.where(is_fs, g["ev"], table, "ev_genai")

    pend = rt.pending(table)
    table = rt.set_column(table, "_fma_license_url", _ev_field(table, "ev_fma_raw", "license_url"))
    table = rt.set_column(table, "_attribution_detail", _ev_field(table, "ev_attribution", "detail"))
    table = rt.set_column(table, "_url_derived", pc.equal(
        pc.fill_null(_ev_field(table, "ev_attribution", "url_source"), ""), fma_src.URL_DERIVED))
    table = rt.set_column(table, "_url_empty", pc.equal(table.column("url"), ""))
    table = rt.set_column(table, "_genai_reason", g["reason"])

    def decide(row):
        dec, conflict, fma_url = _license_of(row["license_raw"], row["source"], row["_fma_license_url"] or "")
        license_url = licenses.deed_url(fma_url or row["license_raw"]) if dec.license != "missing" else ""
        ev = {"raw": row["license_raw"], "class": dec.license, "allowed": dec.allowed}
        if fma_url:
            ev["license_url_raw"] = fma_url
        ev["license_url"] = license_url
        out = {"license": dec.license, "ev_license": rt.ev_json(ev)}
        if conflict:
            license_url = ""  # two statements disagree: name no deed
            out.update(reason="license_conflict", ev_detail=rt.ev_json(
                f"tracks.csv title {row['license_raw']!r} and raw_tracks.csv license_url {fma_url!r} disagree: "
                f"{conflict}"))
        elif dec.license == "missing":
            out["reason"] = "license_missing"
        elif dec.license == "unknown":
            out["reason"] = "license_unknown"
        elif not dec.allowed:
            out["reason"] = "license_not_allowed"
        elif row["_genai_reason"]:
            out.update(reason=row["_genai_reason"], ev_gen_ai_preference=rt.ev_json(row["gen_ai_preference"]))
        elif dec.license in NEEDS_ATTRIBUTION:
            missing = []
            if row["_url_empty"]:
                missing.append(row["_attribution_detail"] or "no URL of the work")
            elif row["_url_derived"] and not cfg.fma.derived_urls:
                missing.append("the URL was derived, and [fma] derived_urls = false")
            if not license_url:
                missing.append(f"the license title {row['license_raw']!r} names no version and no license URL is given")
            if missing:
                out.update(reason="attribution_incomplete", ev_detail=rt.ev_json("; ".join(missing)))
        out["license_url"] = license_url
        return out

    outs = {"license": pa.string(), "license_url": pa.string(), "ev_license": pa.string(), "reason": pa.string(),
            "ev_detail": pa.string(), "ev_gen_ai_preference": pa.string()}
    d = rt.per_distinct(table, ["source", "license_raw", "_fma_license_url", "_genai_reason", "gen_ai_preference",
                                "_url_empty", "_url_derived", "_attribution_detail"], decide, outs, mask=pend)
    table = table.drop_columns(["_fma_license_url", "_attribution_detail", "_url_derived", "_url_empty",
                                "_genai_reason"])
    for col in ("license", "license_url", "ev_license"):
        table = rt.where(pend, d[col], table, col)
    excluded = pc.and_(pend, pc.is_valid(d["reason"]))
    for col in ("ev_detail", "ev_gen_ai_preference"):
        has = pc.and_(excluded, pc.is_valid(d[col]))
        if pc.any(has).as_py():
            table = rt.where(has, d[col], table, col)
    table = rt.where(excluded, "excluded", table, "status")
    table = rt.where(excluded, d["reason"], table, "reason")
    table = _exclude_unsafe_urls(table)
    if rt.EV + "license_changed_from" in table.column_names:
        # a sound fetched again under a license it may no longer be used under (see _latest)
        changed = pc.and_(pc.fill_null(pc.equal(table.column("reason"), "license_not_allowed"), False),
                          pc.and_(excluded, pc.is_valid(table.column(rt.EV + "license_changed_from"))))
        if pc.any(changed).as_py():
            table = rt.where(changed, "license_changed", table, "reason")
    return table


def _update_records(records: list[Record], table) -> None:
    """Put a table's decisions back into the `Record`s it was made from (same order)."""
    for r, new in zip(records, rt.to_records(table)):
        r.__dict__.update(new.__dict__)


def _report(name: str, before, after) -> StageReport:
    """What a stage did: the reason it gave each row it decided, `passed` for pending rows it let by."""
    rep = StageReport(name)
    rep.merge(reason_counts(before, after, count_passed=True))
    return rep


def apply_licenses(records: list[Record], cfg: Config) -> StageReport:
    """`licenses_table` over a list of records, updating them in place."""
    before = rt.from_records(records)
    after = licenses_table(before, cfg)
    _update_records(records, after)
    return _report("license", before, after)


# --------------------------------------------------------------------------- 3-4. audio and music


class AudioLocator:
    """Where each record's audio is, from one listing of each audio folder (taken when first
    asked, once per partition) rather than a probe per record and extension: on an object
    store each probe is a request. FMA's nested folders: one stat a track locally, one
    recursive listing on a store."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._fs: dict[str, Path] | None = None
        self._fma: set[str] | None = None

    def freesound_index(self) -> dict[str, Path]:
        if self._fs is None:
            _, audio_dir = freesound_dirs(self.cfg)
            self._fs = fs_src.audio_index(audio_dir) if audio_dir is not None else {}
        return self._fs

    def fma(self, rid: str) -> Path | None:
        d = self.cfg.fma.audio_dir
        if d is None or not valid_id(rid):
            return None
        p = fma_src.audio_path(d, rid)
        if storage.is_remote(d):
            if self._fma is None:
                self._fma = {u for u, _, _ in storage.listing(d)}
            return p if str(p) in self._fma else None
        return p if p.is_file() else None

    def locate(self, source: str, rid: str) -> Path | None:
        return self.fma(rid) if source == "fma" else self.freesound_index().get(rid)


def resolve_audio(r: Record, cfg: Config, client: fs_src.FreesoundClient | None,
                  locator: AudioLocator | None = None) -> Path | None:
    found = (locator or AudioLocator(cfg)).locate(r.source, r.id)
    if r.source == "fma":
        return found
    _, audio_dir = freesound_dirs(cfg)
    if found is None and cfg.freesound.api is not None and client is not None:
        try:
            found = fs_src.download_audio(r, cfg.freesound.api, audio_dir, client)
        except fs_src.FreesoundAPIError as e:
            r.evidence["download_error"] = str(e)
            return None
    return found


def _audio_found(table, locator: AudioLocator) -> "pa.Array":
    """Whether each row's audio is already there (see AudioLocator), as one Arrow mask."""
    src, ids = table.column("source"), table.column("id")
    index = locator.freesound_index()
    found = pc.and_(pc.equal(src, "freesound"), pc.is_in(ids, value_set=pa.array(list(index), pa.string())))
    is_fma = pc.and_(pc.equal(src, "fma"), rt.pending(table))
    if locator.cfg.fma.audio_dir is not None and pc.any(is_fma).as_py():
        rows = pc.indices_nonzero(is_fma).to_pylist()
        hits = [i for i, rid in zip(rows, pc.take(ids, pa.array(rows, pa.int64())).to_pylist())
                if locator.fma(rid) is not None]
        if hits:
            mask = pc.is_in(pa.array(range(table.num_rows), pa.int64()), value_set=pa.array(hits, pa.int64()))
            found = pc.or_(found, mask)
    return found


def music_table(table, cfg: Config, detector_factory: Callable[[], "object"], checksum: str,
                checkpoint_random: bool, client: fs_src.FreesoundClient | None = None,
                progress: Progress = _noop, rep: "StageReport | None" = None):
    """The audio and music stage over a table. Rows without audio on disk (and none to
    download) are excluded in one step; only the rows with audio travel as records."""
    rep = rep if rep is not None else StageReport("music")
    pend = rt.pending(table)
    progress(table.num_rows - (pc.sum(pend).as_py() or 0))  # decided before this stage
    can_fetch = pc.equal(table.column("source"), "freesound") if client is not None else pa.repeat(False, table.num_rows)
    locator = AudioLocator(cfg)
    has = pc.and_(pend, pc.or_(_audio_found(table, locator), can_fetch))
    missing = pc.and_(pend, pc.invert(has))
    n_missing = pc.sum(missing).as_py() or 0
    if n_missing:
        table = rt.exclude(table, missing, "audio_missing")
        rep.add("audio_missing", n_missing)
        progress(n_missing)
    recs = rt.to_records(table.filter(has))
    if recs:
        audio_and_music(recs, cfg, detector_factory, checksum, checkpoint_random, client, progress, rep, locator)
        table = rt.replace_rows(table, has, rt.from_records(recs))
    return table


def music_cache_dir(cfg: Config) -> Path:
    """[music] cache_dir, else $CURATION_MUSIC_CACHE_DIR (one cache for every output on a
    machine), else OUT/work/music_cache. Entries are keyed by audio, checkpoint, rule and cut,
    so any runs may share one."""
    env = os.environ.get("CURATION_MUSIC_CACHE_DIR")
    return cfg.music.cache_dir or (Path(env) if env else cfg.work_dir / "music_cache")


# A decoded length this far short of the one the metadata declares is a truncated file. FMA
# writes whole seconds (up to 1 s off either way) and an mp3 decoder trims the encoder's delay
# and padding (tens of ms); a download cut off part way loses far more (README: Truncated audio).
TRUNCATED_MIN_SECONDS = 2.0
TRUNCATED_MIN_SHARE = 0.02


def declared_shortfall(r: Record, decoded_seconds) -> tuple[float, str] | None:
    """(declared seconds, field) when the decoded audio is well short of the declared length."""
    declared = r.evidence.get("declared") or {}
    try:
        want, got = float(declared.get("seconds")), float(decoded_seconds)
    except (TypeError, ValueError):
        return None
    if want - got > max(TRUNCATED_MIN_SECONDS, TRUNCATED_MIN_SHARE * want):
        return want, str(declared.get("field", ""))
    return None


def audio_and_music(
    records: list[Record],
    cfg: Config,
    detector_factory: Callable[[], "object"],
    checksum: str,
    checkpoint_random: bool,
    client: fs_src.FreesoundClient | None = None,
    progress: Progress = _noop,
    rep: StageReport | None = None,
    locator: AudioLocator | None = None,
) -> StageReport:
    """Decode each record that passed the license stage, exclude what cannot be read, and
    decide the rest: music or not (scored until the rule is settled, or in full with
    `music.measure = "full"`), or music by source (`music.fma`/`music.freesound` = "source",
    decoded and checked only). Results are cached by audio content, checkpoint, rule and cut,
    so a resumed, repeated or grown run scores only what is new."""
    from .music.detector import Rule
    from .music.cache import CONTENT_ERRORS, PATH_TOKEN, MusicCache, cache_key, error_key, serves, source_key
    from .music.stream import score_files

    rep = rep if rep is not None else StageReport("music")
    locator = locator or AudioLocator(cfg)
    m = cfg.music
    cache = MusicCache(music_cache_dir(cfg))
    rule = Rule(m.threshold, m.min_music_seconds, m.min_music_fraction)
    by_key: dict[tuple[str, str], Record] = {}
    jobs: list[tuple[tuple[str, str], str, str]] = []
    keys: dict[tuple[str, str], tuple[str, str]] = {}  # record -> (cache key, audio sha256)
    path_of: dict[tuple[str, str], Path] = {}

    def settle(r: Record, entry: dict) -> None:
        r.evidence["audio"] = entry["audio"]
        short = declared_shortfall(r, entry["audio"].get("seconds"))
        if short is not None:  # a download cut short that decodes cleanly: not scored on a part
            r.exclude("audio_truncated", audio={**entry["audio"], "declared_seconds": short[0],
                                                 "declared_field": short[1],
                                                 "error": f"decoded {entry['audio'].get('seconds')} s of the "
                                                          f"{short[0]} s the metadata ({short[1]}) declares"})
            rep.add("audio_truncated")
            progress(1)
            return
        music = dict(entry["music"])
        music["checkpoint_random"] = checkpoint_random if music.get("decided", "full") in ("full", "early") else False
        r.evidence["music"] = music
        rep.add("music" if music["is_music"] else "not_music")
        rep.add("decided_" + music.get("decided", "full"))
        progress(1)

    for r in records:
        if not r.pending:
            continue
        path = resolve_audio(r, cfg, client, locator)
        if path is None:
            r.exclude("audio_missing")
            rep.add("audio_missing")
            progress(1)
            continue
        r.audio_path = cfg.portable(path)  # $CONFIG/... or $OUT/...: see Config.portable
        sha = file_sha256(path)
        failed = cache.get_error(error_key(sha), sha)
        if failed is not None:  # these bytes did not decode before: not decoded again
            rep.add("cached")
            detail = failed["error"]["detail"].replace(PATH_TOKEN, str(path))  # the decoders name the file
            r.exclude(failed["error"]["reason"], audio={"error": detail, "sha256": sha})
            rep.add(failed["error"]["reason"])
            progress(1)
            continue
        by_source = getattr(m, r.source, "score") == "source"
        if by_source:
            key, mode = source_key(sha), "check"
        else:
            key = cache_key(sha, checksum, rule, m.chunk_seconds, m.context_seconds, m.top_labels, m.first_chunks)
            mode = m.measure
        entry = cache.get(key, sha)
        if entry is not None and (by_source or serves(entry, m.measure)):
            rep.add("cached")
            settle(r, entry)
            continue
        rid = (r.source, r.id)
        by_key[rid], keys[rid] = r, (key, sha)
        jobs.append((rid, str(path), mode))
        path_of[rid] = path

    if jobs:
        scoring = any(mode != "check" for _, _, mode in jobs)
        detector = detector_factory() if scoring else None
        stats: dict = {}
        for done in score_files(detector, jobs, batch_size=m.batch_size, workers=min(m.workers, len(jobs)),
                                max_batch_seconds=m.max_batch_seconds, stats=stats):
            r = by_key[done.key]
            key, sha = keys[done.key]
            if done.error is not None:
                if done.error.reason in CONTENT_ERRORS:
                    cache.put(error_key(sha), {"audio": {"sha256": sha}, "error": {
                        "reason": done.error.reason, "detail": done.error.detail.replace(str(path_of[done.key]), PATH_TOKEN)}})
                r.exclude(done.error.reason, audio={"error": done.error.detail, "sha256": sha})
                rep.add(done.error.reason)
                progress(1)
                continue
            if done.result is None:  # decided by its source: decoded and checked, not scored
                music = {"is_music": True, "decided": "source", "rule": "source", "source": r.source,
                         "seconds": done.audio.get("seconds"), "music_seconds": None, "measured_seconds": 0.0,
                         "checkpoint_sha256": None}
                rep.add("checked")
            else:
                music = done.result.to_dict()
                rep.add("scored" if music["decided"] in ("full", "early") else "unscored")
            entry = {"audio": {"sha256": sha, **done.audio}, "music": music}
            cache.put(key, entry)
            settle(r, entry)
        if "worker_peak_rss_mb" in stats:
            rep.notes.append(f"decode worker peak RSS {stats['worker_peak_rss_mb']:.0f} MB")
        if stats.get("model_seconds"):
            rep.notes.append(f"model ran on {stats['model_seconds']:.1f} s of (padded) audio, "
                             f"{stats['scored_seconds']:.1f} s of frames scored")
    return rep


# --------------------------------------------------------------------------- 5. copyright


def copyright_table(table, cfg: Config, rep: "StageReport | None" = None):
    """The copyright stage over a table: FMA rows still pending against the catalogue,
    Freesound music against the audio backend; only those rows travel as records."""
    src = table.column("source")
    pend = rt.pending(table)
    if "ev_music" in table.column_names:
        is_music = rt.per_distinct(table, ["ev_music"], lambda row: {
            "m": bool(row["ev_music"] and json.loads(row["ev_music"]).get("is_music"))}, {"m": pa.bool_()},
            mask=pc.is_valid(table.column("ev_music")))["m"]
        is_music = pc.fill_null(is_music, False)
    else:
        is_music = pa.repeat(False, table.num_rows)
    need = pc.and_(pend, pc.or_(pc.equal(src, "fma"), pc.and_(pc.equal(src, "freesound"), is_music)))
    recs = rt.to_records(table.filter(need))
    if recs:
        kept = [r.audio_path for r in recs]
        for r in recs:  # the backends read the file where it is now
            r.audio_path = str(cfg.resolve(r.audio_path) or "")
        check_copyright(recs, cfg, rep)
        for r, p in zip(recs, kept):
            r.audio_path = p
        table = rt.replace_rows(table, need, rt.from_records(recs))
    return table


def match_settings(cfg: Config):
    """The metadata matcher's thresholds as the config sets them (the run and the CLI alike)."""
    from .copyright.metadata_match import MatchSettings

    c = cfg.copyright
    return MatchSettings(artist_min=c.artist_min, artist_common_title=c.artist_common_title,
                         common_title_artists=c.common_title_artists, short_title_chars=c.short_title_chars)


def check_copyright(records: list[Record], cfg: Config, rep: "StageReport | None" = None) -> StageReport:
    from .copyright.audio_id import make_backend
    from .copyright.metadata_match import CatalogueMatcher

    rep = rep if rep is not None else StageReport("copyright")
    fma = [r for r in records if r.pending and r.source == "fma"]
    if fma:
        matcher = CatalogueMatcher.from_csv(cfg.copyright.spotify_tracks_csv, match_settings(cfg))
        if matcher.cat.empty:
            rep.notes.append(f"the copyright catalogue {cfg.copyright.spotify_tracks_csv} has no rows: "
                             f"no FMA track matched it")
        res = matcher.match([r.title for r in fma], [r.author for r in fma])
        for r, m in zip(fma, res.itertuples(index=False)):
            r.evidence["copyright"] = {
                "method": "metadata:spotify", "flagged": bool(m.flagged), "score": round(float(m.score), 2),
                "title_score": round(float(m.title_score), 2), "artist_score": round(float(m.artist_score), 2),
                "candidate": matcher.candidate(int(m.crow)) if m.flagged else {},
                "candidates": m.candidates, "normalizations": list(m.normalizations),
                "candidates_considered": int(m.candidates_considered),
            }
            if m.flagged:
                r.status, r.reason = "review", "copyright_match_review"
                rep.add("review")
            else:
                rep.add("clear")
    asked = [r for r in records if r.pending and r.source == "freesound" and r.evidence.get("music", {}).get("is_music")]
    if not asked:
        return rep
    from .copyright.audio_id import IdResult, RunStop, stop_note

    backend = make_backend(cfg.copyright)
    stop = RunStop(cfg.work_dir)
    for r in asked:
        stopped = stop.read()
        if stopped:  # a quota spent or a key refused earlier this run: no request can pass
            res = IdResult("review", "copyright_audio_retry", {"backend": backend.name, "retry": True,
                                                               "not_asked": stopped["message"]})
            rep.add("not_asked")
        else:
            res = backend.identify(r)
            if res.evidence.get("stop_run"):
                stop.set(backend.name, str(res.evidence["stop_run"]))
        r.evidence["copyright"] = {"method": f"audio:{backend.name}", **res.evidence}
        if res.status == "review":
            r.status, r.reason = "review", res.reason
            rep.add("review")
        else:
            rep.add("clear")
    if stop.read():
        rep.notes.append(stop_note(stop.read()))
    return rep


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


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ModelInfo:
    """The music model as the run uses it: its checksum, and whether its weights are real."""

    checkpoint: str
    labels_csv: str
    sha256: str
    random_init: bool
    published: bool


def model_info(cfg: Config) -> ModelInfo:
    from .music.models import is_published_checkpoint, is_random_checkpoint
    from .music.detector import checkpoint_sha256, read_labels

    read_labels(cfg.music.labels_csv)
    sha = checkpoint_sha256(cfg.music.checkpoint)
    return ModelInfo(str(cfg.music.checkpoint), str(cfg.music.labels_csv), sha,
                     is_random_checkpoint(cfg.music.checkpoint),
                     is_published_checkpoint(cfg.music.checkpoint, sha))


_DETECTORS: dict[tuple, object] = {}


def load_detector(cfg: Config, info: ModelInfo):
    """One detector per process and model: loading Cnn14 costs seconds and 300 MB."""
    from .music.detector import MusicDetector, PannsModel

    m = cfg.music
    key = (info.checkpoint, info.sha256, info.labels_csv, m.device, m.threshold, m.min_music_seconds, m.top_labels,
           m.min_music_fraction, m.chunk_seconds, m.context_seconds, tuple(m.first_chunks))
    if key not in _DETECTORS:
        model = PannsModel(Path(info.checkpoint), Path(info.labels_csv), m.device, checksum=info.sha256)
        _DETECTORS[key] = MusicDetector(model, Path(info.labels_csv), m.threshold, m.min_music_seconds,
                                        m.top_labels, m.min_music_fraction, m.chunk_seconds, m.context_seconds,
                                        m.first_chunks)
    return _DETECTORS[key]


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
