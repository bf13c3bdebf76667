"""The duplicates step: after the audio and music stage (every allowed recording's audio has
been decoded and checked), before copyright (so no sound is identified twice), over every
partition at once: a recording is a copy of another one anywhere in the run.

Each pending recording with audio gets a print (`prints.py`, kept by the audio file's SHA-256
in `[dedup] cache_dir`, so a rerun decodes only new files); `groups.decide` finds the copies
and picks the kept one; copies are excluded with reason `duplicate`, and a recording that
holds a clip from `[dedup] eval_audio_dirs` with `eval_overlap`. The kept copy's evidence lists
its group; when its copies carry other authors' names, review holds it (`reupload_other_author`,
curation/review/stage.py) until a reviewer clears one copy.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .. import record_table as rt
from .. import storage
from ..atomic import atomic_write_text
from ..audio import file_sha256
from ..config import Config
from ..stage import FanIn, StageReport, read_part, release_memory, settings_key, write_part
from .groups import Candidate, Decision, decide
from .prints import VERSION, PrintCache, prints_for

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".m4a")
READS = ("source", "id", "author", "license", "status", "audio_path", "ev_audio", "ev_uploaded")


def print_cache_dir(cfg: Config) -> Path:
    """[dedup] cache_dir, else OUT/work/prints."""
    return cfg.dedup.cache_dir or cfg.work_dir / "prints"


def eval_clip_files(cfg: Config) -> list[Path]:
    files: list[Path] = []
    for d in cfg.dedup.eval_audio_dirs:
        files += sorted(p for p in Path(d).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTS)
    return files


def _candidates(t: pa.Table, cfg: Config, released: set, decided: dict, down: dict) -> list[tuple[Candidate, str]]:
    out = []
    pend = rt.pending(t)
    if "ev_audio" not in t.column_names or not pc.any(pend).as_py():
        return out
    sub = t.filter(pend).select([c for c in READS if c in t.column_names])
    for row in sub.to_pylist():
        if (row["source"], row["id"]) in down:
            continue  # leaves at review; never the kept copy
        try:
            audio = json.loads(row.get("ev_audio") or "{}")
        except ValueError:
            audio = {}
        try:
            up = json.loads(row.get("ev_uploaded") or "{}")
        except ValueError:
            up = {}
        sha = audio.get("sha256")
        path = cfg.resolve(row.get("audio_path")) if row.get("audio_path") else None
        if not sha or path is None:
            continue
        c = Candidate(row["source"], row["id"], sha, row.get("author") or "", row.get("license") or "",
                      created=str(up.get("at") or "") if isinstance(up, dict) else "",
                      format=str(audio.get("format") or ""), sample_rate=int(audio.get("sample_rate") or 0),
                      keep=cfg.dedup.keep)
        c.released = c.key in released
        d = decided.get((row["source"], row["id"]))
        c.review = d.decision if d is not None else ""
        out.append((c, str(path)))  # a path, or an object store URL
    return out


def _apply(t: pa.Table, decisions: dict[str, Decision]) -> tuple[pa.Table, dict]:
    """The decisions on the partition's rows; what was decided here, for the partition's key."""
    if not decisions or t.num_rows == 0:
        return t, {}
    keys = pc.binary_join_element_wise(t.column("source"), t.column("id"), "_").to_pylist()
    hit = [k in decisions for k in keys]
    if not any(hit):
        return t, {}
    mask = pa.array(hit)
    mine = {k: decisions[k] for k, h in zip(keys, hit) if h}
    order = [k for k, h in zip(keys, hit) if h]
    dup_ev = [rt.ev_json(mine[k].evidence) if mine[k].action in ("kept", "duplicate") else None for k in order]
    ov_ev = [rt.ev_json(mine[k].evidence) if mine[k].action == "eval_overlap" else None for k in order]
    t = rt.put(t, mask, {"ev_same_audio": pa.array(dup_ev, pa.string())})
    if any(v is not None for v in ov_ev):
        t = rt.put(t, mask, {"ev_eval_overlap": pa.array(ov_ev, pa.string())})
    for action, reason in (("duplicate", "duplicate"), ("eval_overlap", "eval_overlap")):
        m = pa.array([h and mine[k].action == action for k, h in zip(keys, hit)])
        if pc.any(m).as_py():
            t = rt.exclude(t, m, reason)
    return t, {k: [mine[k].action, mine[k].evidence] for k in sorted(mine)}


def dedup_parts(parts: list[tuple[str, str]], cfg: Config, out_dir: Path) -> tuple[list[tuple[str, str]], StageReport]:
    """Find the copies over every partition; write each partition with its decisions, keyed by
    its input and what was decided in it (a partition whose decisions did not change keeps its
    key, so copyright does not run on it again)."""
    from ..copyright.review import merged_decisions
    from ..release import takedowns
    from ..release.versions import published_assignment

    rep = StageReport("duplicates")
    t0 = time.perf_counter()
    released = {k for keys in published_assignment(cfg.output_dir).values() for k in keys}
    decided, _ = merged_decisions(cfg.output_dir / "review" / "decisions.csv", cfg.copyright.review_decisions)
    down = takedowns.load(cfg.output_dir, cfg.release.takedowns)
    cands: list[Candidate] = []
    files: dict[str, str] = {}
    for p, _ in parts:
        for c, path in _candidates(read_part(p), cfg, released, decided, down):
            cands.append(c)
            files.setdefault(c.sha256, path)
        release_memory()
    clip_sha = {str(f): file_sha256(f) for f in eval_clip_files(cfg)}
    cache = PrintCache(print_cache_dir(cfg))
    workers = max(1, cfg.music.workers)
    prints, errors, made = prints_for({**files, **{s: f for f, s in clip_sha.items()}}, cache, workers)
    t1 = time.perf_counter()
    clips = [(_clip_name(f, cfg.dedup.eval_audio_dirs), prints[s]) for f, s in clip_sha.items() if s in prints]
    memo = cfg.work_dir / "duplicates" / "pairs.json"
    try:
        known = json.loads(memo.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = None  # the first run, or a damaged memo: everything is looked up
    decisions, counts = decide(cands, prints, clips, cfg.dedup.excerpt_min_share, known=known, derived=cfg.dedup.derived)
    storage.mkdirs(memo.parent)
    atomic_write_text(memo, json.dumps(counts.pop("known")))
    t2 = time.perf_counter()
    rep.counts.update({k: v for k, v in counts.items() if v})
    rep.counts["candidates"] = len(cands)
    if errors:
        rep.counts["print_failed"] = len(errors)
        rep.notes.append(f"{len(errors)} file(s) decoded by the music stage but not for a print (kept, not grouped): "
                         + "; ".join(list(errors.values())[:3]))
    rep.notes.append(f"{made} print(s) made, {len(files) + len(clip_sha) - made - len(errors)} from the cache, "
                     f"in {t1 - t0:.1f} s; {counts['looked_up']} looked up (the rest as the last run found them), "
                     f"grouped in {t2 - t1:.1f} s")
    out = []
    for i, (p, key) in enumerate(parts):
        t = read_part(p)
        t, mine = _apply(t, decisions)
        dst = out_dir / f"part-{i:05d}.parquet"
        write_part(dst, t)
        out.append((str(dst), settings_key(key, "duplicates", VERSION, json.dumps(mine, sort_keys=True, default=str))))
        del t
        release_memory()
    return out, rep


def _clip_name(f: str, dirs) -> str:
    """A clip's name as the evidence gives it: its path under its folder."""
    for d in dirs:
        try:
            return str(Path(f).relative_to(d))
        except ValueError:
            continue
    return Path(f).name


def explain(row: dict, ev: dict) -> list[str]:
    """The record's group, for `curate explain`."""
    out: list[str] = []
    d = ev.get("same_audio")
    if d and d.get("role") == "copy":
        played = ""
        if d.get("speed") is not None:
            played = f", played at {100 * float(d['speed']):.1f}% speed"
            if d.get("pitch_semitones"):
                played += f" and {float(d['pitch_semitones']):+.2f} semitones"
        out.append(f"  duplicates: a {d.get('kind')} copy of {d.get('kept')} (by {d.get('kept_author') or '?'}): "
                   f"{d.get('shared_seconds')} s shared at offset {d.get('offset_seconds')} s, score {d.get('score')}{played}")
    elif d and d.get("role") == "kept":
        copies = d.get("copies") or []
        out.append(f"  duplicates: kept for a group of {len(copies) + 1}: "
                   + ", ".join(f"{c['record']} ({c['kind']}, {c.get('shared_seconds')} s)" for c in copies[:10])
                   + (f", and {len(copies) - 10} more" if len(copies) > 10 else ""))
        if d.get("other_authors"):
            out.append("  duplicates: the copies carry other authors' names: "
                       + ", ".join(f"{a['record']} by {a['author'] or '?'} ({a['license']}"
                                 f"{', uploaded ' + a['uploaded'] if a.get('uploaded') else ''})" for a in d.get("authors", [])))
    ov = ev.get("eval_overlap")
    if ov:
        out.append("  evaluation audio: holds " + ", ".join(
            f"{c['clip']} ({c['shared_seconds']} s from {c['at_seconds']} s)" for c in ov.get("clips", [])))
    return out


#: The reasons this step may set, and what each means.
DUPLICATES_REASONS = {
    "duplicate": "the same audio is in the release as another recording (exact, near, excerpt or derived copy): the kept copy is named",
    "eval_overlap": "the recording holds a clip of evaluation audio on disk ([dedup] eval_audio_dirs)",
}

DUPLICATES = FanIn(
    name="duplicates",
    reads=READS,
    writes=("status", "reason", "ev_same_audio", "ev_eval_overlap"),
    reasons=DUPLICATES_REASONS,
    run=dedup_parts,
    explain=explain,
)
