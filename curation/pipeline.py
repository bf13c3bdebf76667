"""The stages as plain functions over lists of records. Prefect flows (flows/) only call
these; tests call them directly.

Every record that enters ends with a status: `included`, `excluded` (with a reason) or
`review` (with a reason), and every stage writes its evidence under
`record.evidence[stage]`.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from . import licenses
from .atomic import atomic_write_text
from .audio import file_sha256
from .config import Config
from .records import Record
from .sources import fma as fma_src
from .sources import freesound as fs_src

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


def _noop(_: int) -> None:
    pass


@dataclass
class StageReport:
    """What a stage did, for the run summary and the logs."""

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


# --------------------------------------------------------------------------- 1. ingest


def freesound_dirs(cfg: Config) -> tuple[Path | None, Path | None]:
    fs = cfg.freesound
    if fs.api is not None:
        return cfg.work_dir / "freesound" / "pages", cfg.work_dir / "freesound" / "audio"
    return fs.pages_dir, fs.audio_dir


def ingest(cfg: Config, client: fs_src.FreesoundClient | None = None) -> tuple[list[Record], StageReport]:
    rep = StageReport("ingest")
    records: list[Record] = []
    pages_dir, _ = freesound_dirs(cfg)
    if cfg.freesound.api is not None:
        summary = fs_src.crawl(cfg.freesound.api, pages_dir, client=client)
        rep.counts["freesound_pages"] = summary["pages"]
        if summary["error"]:
            rep.notes.append(f"Freesound crawl incomplete: {summary['error']}")
    if pages_dir is not None and pages_dir.is_dir():
        for r in fs_src.read_pages(pages_dir):
            records.append(r)
            rep.add("freesound")
    if cfg.fma.tracks_csv is not None:
        raw = fma_src.read_raw_tracks(cfg.fma.raw_tracks_csv) if cfg.fma.raw_tracks_csv else None
        if raw is None:
            rep.notes.append("no [fma] raw_tracks_csv: FMA's track URLs are unknown, so CC BY tracks cannot be "
                             "attributed and are excluded (attribution_incomplete)")
        elif raw.unreadable:
            rep.notes.append(f"raw_tracks.csv: {raw.unreadable} row(s) without a readable track_id, attached to no track")
        for r in fma_src.read_tracks(cfg.fma.tracks_csv):
            fma_src.attach_raw_tracks(r, raw)
            records.append(r)
            rep.add("fma")
    out = dedupe(records)
    rep.counts["distinct"] = len(out)
    return out, rep


# Fields two copies of one record must agree on. A field one copy lacks is no disagreement:
# a search page asked for fewer fields than a saved sound instance, say.
_COMPARED = ("title", "author", "license_raw", "url", "gen_ai_preference", "description", "tags")


def _value(r: Record, k: str):
    if k == "tags":
        return tuple(sorted(r.tags)) or None  # the API returns tags in no fixed order
    if k == "gen_ai_preference":
        return r.gen_ai_preference if r.genai_present else None
    return getattr(r, k) or None


def dedupe(records: Iterable[Record]) -> list[Record]:
    """One record per (source, id). Copies that disagree on a field both carry are
    excluded: we cannot tell which metadata (license!) is right. Copies that agree are
    merged, each field taken from the first copy that has it."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.source, r.id)].append(r)
    out = []
    for (_, _), group in groups.items():
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


def _license_of(r: Record) -> tuple[licenses.LicenseDecision, str, str]:
    """The record's license class, why it cannot be trusted ("" when it can), and FMA's
    license URL from raw_tracks.csv ("" without one). FMA's license title is checked against
    that URL, which names the exact license; where both are given they must agree."""
    dec = licenses.classify(r.license_raw)
    url = str((r.evidence.get("fma_raw") or {}).get("license_url") or "").strip()
    if r.source != "fma" or not url:
        return dec, "", ""
    by_url = licenses.license_terms(url)
    if dec.license == "missing":
        return licenses.LicenseDecision(url, by_url.license), "", url
    return dec, licenses.terms_conflict(licenses.license_terms(r.license_raw), by_url), url


def apply_licenses(records: list[Record], cfg: Config) -> StageReport:
    """License class, Freesound's gen-AI preference against what the release declares, and
    whether the record can be attributed as its license asks."""
    rep = StageReport("license")
    rel = cfg.release
    for r in records:
        g = None
        if r.source == "freesound" and not r.id.startswith("malformed:"):
            # recorded for every Freesound record, decided only for those still pending
            g = licenses.genai_decision(r.gen_ai_preference, bool(r.genai_present), rel.open_source_model,
                                        rel.noncommercial, cfg.freesound.require_genai_preference)
            r.evidence["genai"] = {"preference": r.gen_ai_preference, "present": bool(r.genai_present),
                                   "rule": g.rule, "release_open_source_model": rel.open_source_model,
                                   "release_noncommercial": rel.noncommercial}
        if not r.pending:
            continue
        dec, conflict, fma_url = _license_of(r)
        r.license = dec.license
        ev = {"raw": r.license_raw, "class": dec.license, "allowed": dec.allowed}
        if fma_url:
            ev["license_url_raw"] = fma_url
        r.license_url = licenses.deed_url(fma_url or r.license_raw) if dec.license != "missing" else ""
        ev["license_url"] = r.license_url
        r.evidence["license"] = ev
        if conflict:
            r.license_url = ""  # two statements disagree: name no deed
            r.exclude("license_conflict", detail=f"tracks.csv title {r.license_raw!r} and raw_tracks.csv "
                                                 f"license_url {fma_url!r} disagree: {conflict}")
        elif dec.license == "missing":
            r.exclude("license_missing")
        elif dec.license == "unknown":
            r.exclude("license_unknown")
        elif not dec.allowed:
            r.exclude("license_not_allowed")
        elif g is not None and g.reason:
            r.exclude(g.reason, gen_ai_preference=r.gen_ai_preference)
        elif dec.license in NEEDS_ATTRIBUTION:
            missing = []
            attribution = r.evidence.get("attribution") or {}
            if not r.url:
                missing.append(attribution.get("detail") or "no URL of the work")
            elif fma_src.url_was_derived(r.evidence) and not cfg.fma.derived_urls:
                missing.append("the URL was derived, and [fma] derived_urls = false")
            if not r.license_url:
                missing.append(f"the license title {r.license_raw!r} names no version and no license URL is given")
            if missing:
                r.exclude("attribution_incomplete", detail="; ".join(missing))
        rep.add(r.reason or "passed")
    return rep


# --------------------------------------------------------------------------- 3-4. audio and music


def resolve_audio(r: Record, cfg: Config, client: fs_src.FreesoundClient | None) -> Path | None:
    if r.source == "fma":
        p = fma_src.audio_path(cfg.fma.audio_dir, r.id)
        return p if p.is_file() else None
    _, audio_dir = freesound_dirs(cfg)
    found = fs_src.find_audio(audio_dir, r.id)
    if found is None and cfg.freesound.api is not None and client is not None:
        try:
            found = fs_src.download_audio(r, cfg.freesound.api, audio_dir, client)
        except fs_src.FreesoundAPIError as e:
            r.evidence["download_error"] = str(e)
            return None
    return found


def audio_and_music(
    records: list[Record],
    cfg: Config,
    detector_factory: Callable[[], "object"],
    checksum: str,
    checkpoint_random: bool,
    client: fs_src.FreesoundClient | None = None,
    progress: Progress = _noop,
) -> StageReport:
    """Decode each record that passed the license stage, exclude what cannot be read, and
    score the rest for music. Results are cached by audio content, checkpoint and rule, so
    a resumed, repeated or grown run scores only what is new."""
    from .music import Rule
    from .music_cache import MusicCache, cache_key
    from .music_stream import score_files

    rep = StageReport("music")
    m = cfg.music
    cache = MusicCache(m.cache_dir or cfg.work_dir / "music_cache")
    rule = Rule(m.threshold, m.min_music_seconds, m.min_music_fraction)
    by_key: dict[tuple[str, str], Record] = {}
    jobs: list[tuple[tuple[str, str], str]] = []
    keys: dict[tuple[str, str], tuple[str, str]] = {}  # record -> (cache key, audio sha256)

    def settle(r: Record, entry: dict) -> None:
        r.evidence["audio"] = entry["audio"]
        r.evidence["music"] = {**entry["music"], "checkpoint_random": checkpoint_random}
        rep.add("music" if entry["music"]["is_music"] else "not_music")
        progress(1)

    for r in records:
        if not r.pending:
            continue
        path = resolve_audio(r, cfg, client)
        if path is None:
            r.exclude("audio_missing")
            rep.add("audio_missing")
            progress(1)
            continue
        r.audio_path = str(path)
        sha = file_sha256(path)
        key = cache_key(sha, checksum, rule, m.chunk_seconds, m.context_seconds, m.top_labels)
        entry = cache.get(key)
        if entry is not None:
            rep.add("cached")
            settle(r, entry)
            continue
        rid = (r.source, r.id)
        by_key[rid], keys[rid] = r, (key, sha)
        jobs.append((rid, str(path)))

    if jobs:
        detector = detector_factory()
        stats: dict = {}
        for done in score_files(detector, jobs, batch_size=m.batch_size, workers=min(m.workers, len(jobs)),
                                max_batch_seconds=m.max_batch_seconds, stats=stats):
            r = by_key[done.key]
            key, sha = keys[done.key]
            if done.error is not None:
                r.exclude(done.error.reason, audio={"error": done.error.detail, "sha256": sha})
                rep.add(done.error.reason)
                progress(1)
                continue
            entry = {"audio": {"sha256": sha, **done.audio}, "music": done.result.to_dict()}
            cache.put(key, entry)
            rep.add("scored")
            settle(r, entry)
        if "worker_peak_rss_mb" in stats:
            rep.notes.append(f"decode worker peak RSS {stats['worker_peak_rss_mb']:.0f} MB")
    return rep


# --------------------------------------------------------------------------- 5. copyright


def check_copyright(records: list[Record], cfg: Config) -> StageReport:
    from .copyright.audio_id import make_backend
    from .copyright.metadata_match import CatalogueMatcher, MatchSettings

    rep = StageReport("copyright")
    fma = [r for r in records if r.pending and r.source == "fma"]
    if fma:
        c = cfg.copyright
        matcher = CatalogueMatcher.from_csv(c.spotify_tracks_csv, MatchSettings(
            artist_min=c.artist_min, artist_common_title=c.artist_common_title,
            common_title_artists=c.common_title_artists, short_title_chars=c.short_title_chars))
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
    backend = make_backend(cfg.copyright)
    for r in records:
        if r.pending and r.source == "freesound" and r.evidence.get("music", {}).get("is_music"):
            res = backend.identify(r)
            r.evidence["copyright"] = {"method": f"audio:{backend.name}", **res.evidence}
            if res.status == "review":
                r.status, r.reason = "review", res.reason
                rep.add("review")
            else:
                rep.add("clear")
    return rep


def apply_review(records: list[Record], cfg: Config) -> tuple[list[dict], StageReport]:
    """Apply the persisted and new decisions; return the queue of what still waits."""
    from .review import merged_decisions, write_decisions

    rep = StageReport("review")
    ledger = cfg.output_dir / "review" / "decisions.csv"
    decisions, warnings = merged_decisions(ledger, cfg.copyright.review_decisions)
    rep.notes += warnings
    if decisions or ledger.exists():
        write_decisions(ledger, decisions)
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
                          "reason": r.reason, "evidence": r.evidence.get("copyright", {})})
    rep.counts["waiting"] = len(queue)
    known = {(r.source, r.id) for r in records}
    elsewhere = sorted(k for k in decisions if k not in known)
    if elsewhere:
        # kept in the ledger for when those records come back; said, not dropped
        rep.notes.append(f"{len(elsewhere)} decision(s) for records not in this run are kept: "
                         + ", ".join(f"{s} {i}" for s, i in elsewhere[:10]))
    return queue, rep


def finalize(records: list[Record]) -> None:
    for r in records:
        if r.pending:
            r.status, r.reason = "included", ""


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
    from .models import is_published_checkpoint, is_random_checkpoint
    from .music import checkpoint_sha256, read_labels

    read_labels(cfg.music.labels_csv)
    sha = checkpoint_sha256(cfg.music.checkpoint)
    return ModelInfo(str(cfg.music.checkpoint), str(cfg.music.labels_csv), sha,
                     is_random_checkpoint(cfg.music.checkpoint),
                     is_published_checkpoint(cfg.music.checkpoint, sha))


_DETECTORS: dict[tuple, object] = {}


def load_detector(cfg: Config, info: ModelInfo):
    """One detector per process and model: loading Cnn14 costs seconds and 300 MB."""
    from .music import MusicDetector, PannsModel

    m = cfg.music
    key = (info.checkpoint, info.sha256, info.labels_csv, m.device, m.threshold, m.min_music_seconds, m.top_labels,
           m.min_music_fraction, m.chunk_seconds, m.context_seconds)
    if key not in _DETECTORS:
        model = PannsModel(Path(info.checkpoint), Path(info.labels_csv), m.device, checksum=info.sha256)
        _DETECTORS[key] = MusicDetector(model, Path(info.labels_csv), m.threshold, m.min_music_seconds,
                                        m.top_labels, m.min_music_fraction, m.chunk_seconds, m.context_seconds)
    return _DETECTORS[key]


# --------------------------------------------------------------------------- 6. release


def release(records: list[Record], cfg: Config, progress: Progress = _noop) -> StageReport:
    """Attribution CSVs and WebDataset shards of exactly the included records."""
    from .release import write_attribution, write_shards, sort_key

    rep = StageReport("release")
    out = cfg.output_dir / "release"
    included = sorted((r for r in records if r.status == "included"), key=sort_key)
    for source in ("freesound", "fma"):
        n = write_attribution(out / f"{source}_attribution.csv", (r for r in included if r.source == source))
        rep.counts[f"{source}_attribution_rows"] = n
    shards = write_shards(out / "shards", included, cfg.release.shard_max_records, cfg.work_dir / "shards",
                          progress=progress)
    where = {k: s["name"] for s in shards for k in s["keys"]}
    for r in included:
        r.evidence["shard"] = where[f"{r.source}_{r.id}"]
    rep.counts["shards"] = len(shards)
    rep.counts["shards_written"] = sum(s["written"] for s in shards)
    rep.counts["records"] = len(included)
    return rep
