"""The copyright stage: FMA tracks against the catalogue (`metadata_match`), Freesound music
against audio identification (`audio_id`)."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from .. import record_table as rt
from ..config import Config
from ..records import Record
from .. import storage
from ..stage import Stage, StageReport, files_key, folder_key, per_worker


def copyright_table(table, cfg: Config, rep: "StageReport | None" = None, catalogue=None):
    """The copyright stage over a table: FMA rows still pending against the catalogue (in
    columns: titles and artists in, evidence, status and reason out), Freesound music against the
    audio backend (only those rows travel as records: the backends ask one recording at a time).
    `catalogue()` gives the loaded catalogue (the stage's setup keeps one per worker)."""
    rep = rep if rep is not None else StageReport("copyright")
    src = table.column("source")
    pend = rt.pending(table)
    fma = pc.and_(pend, pc.equal(src, "fma"))
    if pc.any(fma).as_py():
        table = _fma_against_catalogue(table, fma, catalogue() if catalogue else load_catalogue(cfg), cfg, rep)
    if "ev_music" in table.column_names:
        is_music = rt.per_distinct(table, ["ev_music"], lambda row: {
            "m": bool(row["ev_music"] and json.loads(row["ev_music"]).get("is_music"))}, {"m": pa.bool_()},
            mask=pc.is_valid(table.column("ev_music")))["m"]
        is_music = pc.fill_null(is_music, False)
    else:
        is_music = pa.repeat(False, table.num_rows)
    asked = pc.and_(pend, pc.and_(pc.equal(src, "freesound"), is_music))
    recs = rt.to_records(table.filter(asked))
    if recs:
        kept = [r.audio_path for r in recs]
        for r in recs:  # the backends read the file where it is now
            r.audio_path = str(cfg.resolve(r.audio_path) or "")
        _music_against_audio_id(recs, cfg, rep)
        for r, p in zip(recs, kept):
            r.audio_path = p
        table = rt.replace_rows(table, asked, rt.from_records(recs))
    return table


def match_settings(cfg: Config):
    """The metadata matcher's thresholds as the config sets them (the run and the CLI alike)."""
    from .metadata_match import MatchSettings

    c = cfg.copyright
    return MatchSettings(artist_min=c.artist_min, artist_common_title=c.artist_common_title,
                         common_title_artists=c.common_title_artists, short_title_chars=c.short_title_chars)


def load_catalogue(cfg: Config):
    """The Spotify tracks table as a matcher with the config's thresholds, read and indexed."""
    from .metadata_match import CatalogueMatcher

    return CatalogueMatcher.from_csv(cfg.copyright.spotify_tracks_csv, match_settings(cfg))


def _fma_against_catalogue(table, mask, matcher, cfg: Config, rep: StageReport):
    if matcher.cat.empty:
        rep.notes.append(f"the copyright catalogue {cfg.copyright.spotify_tracks_csv} has no rows: "
                         f"no FMA track matched it")
    sub = table.filter(mask)
    res = matcher.match(sub.column("title").to_pylist(), sub.column("author").to_pylist())
    flagged, evidence = [], []
    for m in res.itertuples(index=False):
        flagged.append(bool(m.flagged))
        evidence.append(rt.ev_json({
            "method": "metadata:spotify", "flagged": bool(m.flagged), "score": round(float(m.score), 2),
            "title_score": round(float(m.title_score), 2), "artist_score": round(float(m.artist_score), 2),
            "candidate": matcher.candidate(int(m.crow)) if m.flagged else {},
            "candidates": m.candidates, "normalizations": list(m.normalizations),
            "candidates_considered": int(m.candidates_considered),
        }))
    n = sum(flagged)
    if n:
        rep.add("review", n)
    if len(flagged) - n:
        rep.add("clear", len(flagged) - n)
    flag = pa.array(flagged, pa.bool_())
    return rt.put(table, mask, {
        "status": pc.if_else(flag, "review", sub.column("status")),
        "reason": pc.if_else(flag, "copyright_match_review", sub.column("reason")),
        "ev_copyright": pa.array(evidence, pa.string()),
    })


def _music_against_audio_id(asked: list[Record], cfg: Config, rep: StageReport) -> None:
    """Each Freesound recording called music, asked of the configured backend, one at a time."""
    from .audio_id import IdResult, RunStop, make_backend, stop_note

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


def _copyright(cfg, info, progress):
    """The catalogue is read and indexed once per worker process (and again only when its file
    or the thresholds change), the first time a partition holds an FMA track to match."""
    path = cfg.copyright.spotify_tracks_csv

    def catalogue():
        return per_worker(("catalogue", str(path), storage.file_version(path), match_settings(cfg)),
                          lambda: load_catalogue(cfg))
    return lambda t, rep: copyright_table(t, cfg, rep, catalogue)


def _copyright_settings(cfg, info) -> tuple:
    c = cfg.copyright
    return (c, files_key([p for p in (c.spotify_tracks_csv,) if p is not None], cfg.portable),
            folder_key(c.fingerprint_index) if c.fingerprint_index else "")


def _copyright_start(cfg) -> None:
    """A quota or key refusal heard by an earlier run does not hold for this one."""
    from .audio_id import RunStop

    RunStop(cfg.work_dir).clear()


def explain(row: dict, ev: dict) -> list[str]:
    """The copyright check's method, score and candidate, for `curate explain`."""
    out: list[str] = []
    cr = ev.get("copyright")
    if cr:
        line = f"  copyright: {cr.get('method')}"
        if "flagged" in cr:
            line += f", flagged={cr['flagged']} score={cr.get('score')} (title {cr.get('title_score')}, " \
                    f"artist {cr.get('artist_score')})"
        out.append(line)
        if cr.get("candidate"):
            out.append(f"  copyright candidate: {json.dumps(cr['candidate'], ensure_ascii=False)}")
        if cr.get("normalizations"):
            out.append(f"  normalisations: {', '.join(cr['normalizations'])}")
    return out


#: The reasons this stage may set, and what each means.
COPYRIGHT_REASONS = {
    "copyright_match_review": "possible copyright match: waiting for human review",
    "copyright_audio_review": "music: waiting for audio identification / human review",
    "copyright_audio_match": "the audio holds an excerpt of a reference recording: waiting for human review",
    "copyright_audio_retry": "music: the identification service gave no answer (error recorded); kept out, asked again next run",
}


COPYRIGHT = Stage(
    name="copyright",
    version=1,
    reads=("source", "title", "author", "audio_path", "status", "ev_music"),
    writes=("status", "reason", "ev_copyright"),
    reasons=COPYRIGHT_REASONS,
    settings=_copyright_settings,
    setup=_copyright,
    rerun_if=lambda cfg: (lambda prev: prev.get("counts", {}).get("copyright_audio_retry", 0) > 0),
    start_run=_copyright_start,
    explain=explain,
)
