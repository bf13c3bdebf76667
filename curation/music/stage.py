"""The audio and music stage: each record's audio found, decoded and checked, and decided music or
not by the PANNs model (`stream`, `detector`), with results cached by content (`cache`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from .. import record_table as rt
from .. import storage
from ..audio import file_sha256
from ..config import Config
from ..records import Record, valid_id
from ..sources import fma as fma_src
from ..sources import freesound as fs_src
from ..sources import freesound_api as fs_api
from ..sources import freesound_crawl as fs_crawl
from ..sources.freesound import freesound_dirs
from ..stage import ModelInfo, Progress, Stage, StageReport, folder_key, noop, per_worker


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


def resolve_audio(r: Record, cfg: Config, client: fs_api.FreesoundClient | None,
                  locator: AudioLocator | None = None) -> Path | None:
    found = (locator or AudioLocator(cfg)).locate(r.source, r.id)
    if r.source == "fma":
        return found
    _, audio_dir = freesound_dirs(cfg)
    if found is None and cfg.freesound.api is not None and client is not None:
        try:
            found = fs_crawl.download_audio(r, cfg.freesound.api, audio_dir, client)
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
                checkpoint_random: bool, client: fs_api.FreesoundClient | None = None,
                progress: Progress = noop, rep: "StageReport | None" = None):
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
    client: fs_api.FreesoundClient | None = None,
    progress: Progress = noop,
    rep: StageReport | None = None,
    locator: AudioLocator | None = None,
) -> StageReport:
    """Decode each record that passed the license stage, exclude what cannot be read, and
    decide the rest: music or not (scored until the rule is settled, or in full with
    `music.measure = "full"`), or music by source (`music.fma`/`music.freesound` = "source",
    decoded and checked only). Results are cached by audio content, checkpoint, rule and cut,
    so a resumed, repeated or grown run scores only what is new."""
    from .detector import Rule
    from .cache import CONTENT_ERRORS, PATH_TOKEN, MusicCache, cache_key, error_key, serves, source_key
    from .stream import score_files

    rep = rep if rep is not None else StageReport("music")
    locator = locator or AudioLocator(cfg)
    m = cfg.music
    cache = MusicCache(music_cache_dir(cfg))
    rule = Rule(m.threshold, m.min_music_seconds, m.min_music_fraction)
    by_key: dict[tuple[str, str], Record] = {}
    jobs: list[tuple[tuple[str, str], str, str]] = []
    keys: dict[tuple[str, str], tuple[str, str, Path]] = {}  # record -> (cache key, audio sha256, file)

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
        by_key[rid], keys[rid] = r, (key, sha, path)
        jobs.append((rid, str(path), mode))

    if jobs:
        scoring = any(mode != "check" for _, _, mode in jobs)
        detector = detector_factory() if scoring else None
        stats: dict = {}
        for done in score_files(detector, jobs, batch_size=m.batch_size, workers=min(m.workers, len(jobs)),
                                max_batch_seconds=m.max_batch_seconds, stats=stats):
            r = by_key[done.key]
            key, sha, path = keys[done.key]
            if done.error is not None:
                if done.error.reason in CONTENT_ERRORS:
                    cache.put(error_key(sha), {"audio": {"sha256": sha}, "error": {
                        "reason": done.error.reason, "detail": done.error.detail.replace(str(path), PATH_TOKEN)}})
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


def model_info(cfg: Config) -> ModelInfo:
    from .models import is_published_checkpoint, is_random_checkpoint
    from .detector import checkpoint_sha256, read_labels

    read_labels(cfg.music.labels_csv)
    sha = checkpoint_sha256(cfg.music.checkpoint)
    return ModelInfo(str(cfg.music.checkpoint), str(cfg.music.labels_csv), sha,
                     is_random_checkpoint(cfg.music.checkpoint),
                     is_published_checkpoint(cfg.music.checkpoint, sha))


def load_detector(cfg: Config, info: ModelInfo):
    """One detector per process and model: loading Cnn14 costs seconds and 300 MB."""
    from .detector import MusicDetector, PannsModel

    m = cfg.music
    key = ("music detector", info.checkpoint, info.sha256, info.labels_csv, m.device, m.threshold,
           m.min_music_seconds, m.top_labels, m.min_music_fraction, m.chunk_seconds, m.context_seconds,
           tuple(m.first_chunks))

    def make():
        model = PannsModel(Path(info.checkpoint), Path(info.labels_csv), m.device, checksum=info.sha256)
        return MusicDetector(model, Path(info.labels_csv), m.threshold, m.min_music_seconds, m.top_labels,
                             m.min_music_fraction, m.chunk_seconds, m.context_seconds, m.first_chunks)
    return per_worker(key, make)


def _music_settings(cfg, info) -> tuple:
    _, audio_dir = freesound_dirs(cfg)
    listing = [folder_key(d) for d in (audio_dir, cfg.fma.audio_dir) if d is not None and d.is_dir()]
    return cfg.music, info.sha256, listing, cfg.freesound.api is not None


def _music(cfg, info, progress):
    def music(t, rep):
        client = None
        if cfg.freesound.api is not None and pc.any(pc.and_(rt.pending(t),
                                                            pc.equal(t.column("source"), "freesound"))).as_py():
            client = fs_api.FreesoundClient.from_config(cfg.freesound.api)
        return music_table(t, cfg, lambda: load_detector(cfg, info), info.sha256, info.random_init,
                           client=client, progress=progress, rep=rep)
    return music


def _music_rerun(cfg):
    if cfg.freesound.api is not None:  # downloads to try again
        return lambda prev: prev.get("counts", {}).get("audio_missing", 0) > 0
    return None


def explain(row: dict, ev: dict) -> list[str]:
    """The audio as decoded and the music decision, for `curate explain`."""
    out: list[str] = []
    audio = ev.get("audio")
    if audio:
        if "error" in audio:
            from ..audio import in_words

            out.append(f"  audio: {in_words(str(audio['error']))}")
            out.append(f"  audio: the decoder said: {audio['error']}")
        else:
            out.append(f"  audio: {audio.get('format')} {audio.get('seconds')} s, {audio.get('sample_rate')} Hz, "
                       f"{audio.get('channels')} ch, sha256 {str(audio.get('sha256'))[:16]}")
    music = ev.get("music")
    if music:
        if "error" in music:
            out.append(f"  music: classifier failed: {music['error']}")
        elif music.get("decided") == "source":
            out.append(f"  music: taken as music because its source is {music.get('source')} "
                       f"(music.{music.get('source')} = \"source\"); the model was not run")
        elif music.get("decided") == "short":
            out.append(f"  music: not music, decided without the model: {music.get('seconds')} s is shorter "
                       f"than the {music.get('min_music_seconds')} s of music frames the rule needs")
        else:
            verdict = "counts as music" if music.get("is_music") else "not music"
            if music.get("decided") == "early":
                why = ("enough music frames were found" if music.get("is_music") else
                       "the frames left could not make up the music frames it lacks")
                out.append(f"  music: scoring stopped early at {music.get('measured_seconds')} s of "
                           f"{music.get('seconds')} s, once the rule was settled ({why}); "
                           "music_seconds is a lower bound")
            rules = f">= {music.get('min_music_seconds')} s"
            if music.get("min_music_fraction"):
                rules += f", or >= {music['min_music_fraction']:.0%} of a shorter clip"
            fired = f"; rule fired: {music['rule']}" if music.get("is_music") and music.get("rule") else ""
            out.append(
                f"  music: {verdict}: {music.get('music_seconds')} s ({music.get('music_fraction') or 0:.0%} of "
                f"{music.get('seconds')} s) of frames >= {music.get('threshold')} (rule: {rules}{fired}), "
                f"max prob {music.get('max_music_prob')}, top {', '.join(music.get('top_labels') or [])}"
            )
            out.append(f"  music model sha256 {str(music.get('checkpoint_sha256'))[:16]}"
                       + ("  [RANDOM WEIGHTS: decision not real]" if music.get("checkpoint_random") else ""))
    return out


#: The reasons this stage may set, and what each means.
MUSIC_REASONS = {
    "audio_missing": "no audio file for the record",
    "audio_unreadable": "the audio file could not be decoded",
    "audio_empty": "the audio file decodes to no samples",
    "audio_truncated": "the audio file stops decoding part way (truncated or corrupt): not scored on a part",
    "music_detection_failed": "the music classifier failed on this recording",
}


MUSIC = Stage(
    name="music",
    version=4,
    reads=("source", "id", "audio_path", "download_url", "status", "ev_declared"),
    writes=("audio_path", "status", "reason", "ev_audio", "ev_music"),
    reasons=MUSIC_REASONS,
    settings=_music_settings,
    setup=_music,
    count_passed=False,  # every record it reads is decided: music or not
    rerun_if=_music_rerun,
    explain=explain,
)
