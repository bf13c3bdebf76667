"""The per-partition stages, in the order the flow runs them: each one `Stage` (curation/stage.py)
that says what it reads, writes and may decide, what keys its completion marker, and what it
loads once per worker. The flow (flows/curate.py) runs this list; adding a stage is adding its
object here.

(Issue 29, under way: the stage bodies still live in curation/pipeline.py; each object moves
into its stage's folder with its body.)"""
from __future__ import annotations

import pyarrow.compute as pc

from . import pipeline
from . import record_table as rt
from .stage import Stage, files_key, folder_key


def _licenses(cfg, info, progress):
    return lambda t, rep: pipeline.licenses_table(t, cfg)


LICENSES = Stage(
    name="licenses",
    version=3,
    reads=("source", "id", "license_raw", "gen_ai_preference", "genai_present", "url", "status",
           "ev_fma_raw", "ev_attribution", "ev_license_changed_from"),
    writes=("license", "license_url", "url", "status", "reason", "ev_license", "ev_genai", "ev_detail",
            "ev_gen_ai_preference", "ev_url_raw"),
    reasons=("license_missing", "license_unknown", "license_not_allowed", "license_conflict", "license_changed",
             "genai_opt_out", "genai_noncommercial_only", "genai_closed_model", "genai_preference_unknown",
             "genai_preference_missing", "attribution_incomplete", "url_unsafe"),
    settings=lambda cfg, info: (cfg.release, cfg.freesound.require_genai_preference, cfg.fma.derived_urls),
    setup=_licenses,
)


def _music_settings(cfg, info) -> tuple:
    _, audio_dir = pipeline.freesound_dirs(cfg)
    listing = [folder_key(d) for d in (audio_dir, cfg.fma.audio_dir) if d is not None and d.is_dir()]
    return cfg.music, info.sha256, listing, cfg.freesound.api is not None


def _music(cfg, info, progress):
    from .sources import freesound as fs_src

    def music(t, rep):
        client = None
        if cfg.freesound.api is not None and pc.any(pc.and_(rt.pending(t),
                                                            pc.equal(t.column("source"), "freesound"))).as_py():
            client = fs_src.FreesoundClient.from_config(cfg.freesound.api)
        return pipeline.music_table(t, cfg, lambda: pipeline.load_detector(cfg, info), info.sha256, info.random_init,
                                    client=client, progress=progress, rep=rep)
    return music


def _music_rerun(cfg):
    if cfg.freesound.api is not None:  # downloads to try again
        return lambda prev: prev.get("counts", {}).get("audio_missing", 0) > 0
    return None


MUSIC = Stage(
    name="music",
    version=4,
    reads=("source", "id", "audio_path", "download_url", "status", "ev_declared"),
    writes=("audio_path", "status", "reason", "ev_audio", "ev_music"),
    reasons=("audio_missing", "audio_unreadable", "audio_empty", "audio_truncated", "music_detection_failed"),
    settings=_music_settings,
    setup=_music,
    count_passed=False,  # every record it reads is decided: music or not
    rerun_if=_music_rerun,
)


def _copyright_settings(cfg, info) -> tuple:
    c = cfg.copyright
    return (c, files_key([p for p in (c.spotify_tracks_csv,) if p is not None], cfg.portable),
            folder_key(c.fingerprint_index) if c.fingerprint_index else "")


def _copyright_start(cfg) -> None:
    """A quota or key refusal heard by an earlier run does not hold for this one."""
    from .copyright.audio_id import RunStop

    RunStop(cfg.work_dir).clear()


COPYRIGHT = Stage(
    name="copyright",
    version=1,
    reads=("source", "title", "author", "audio_path", "status", "ev_music"),
    writes=("status", "reason", "ev_copyright"),
    reasons=("copyright_match_review", "copyright_audio_review", "copyright_audio_match", "copyright_audio_retry"),
    settings=_copyright_settings,
    setup=lambda cfg, info, progress: (lambda t, rep: pipeline.copyright_table(t, cfg, rep)),
    rerun_if=lambda cfg: (lambda prev: prev.get("counts", {}).get("copyright_audio_retry", 0) > 0),
    start_run=_copyright_start,
)

#: What runs over each partition, in order.
PER_PARTITION: tuple[Stage, ...] = (LICENSES, MUSIC, COPYRIGHT)
BY_NAME = {s.name: s for s in PER_PARTITION}
