"""What the model made, against what it was trained on: a generated clip that holds a recording
of the release (a memorised copy) is reported with the record and the seconds.

The release's recordings already have prints (the duplicates step made one for every recording
it saw, kept by the audio file's SHA-256): they are read from the cache, indexed, and each
generated clip is looked up as any new recording is.
"""
from __future__ import annotations

from pathlib import Path

from .. import storage
from ..config import Config
from .match import Index
from .prints import PrintCache, print_file

#: A generated clip holds a training recording when they share at least this much audio (or
#: nearly all of a shorter recording).
MEMORISED_MIN_S = 3.0


def release_prints(cfg: Config) -> tuple[list[str], list]:
    """(record keys, prints) of the included records of the run's manifest whose prints are in
    the cache."""
    from .duplicates import print_cache_dir

    path = storage.as_path(cfg.output_dir) / "manifests" / "records.parquet"
    t = storage.read_parquet(path, columns=["source", "id", "status", "audio_sha256"])
    cache = PrintCache(print_cache_dir(cfg))
    keys, prints = [], []
    for s, i, st, sha in zip(*(t.column(c).to_pylist() for c in ("source", "id", "status", "audio_sha256"))):
        if st != "included" or not sha:
            continue
        p = cache.get(sha)
        if p is not None and p.usable:
            keys.append(f"{s}_{i}")
            prints.append(p)
    return keys, prints


def memorised(cfg: Config, clips: list[Path]) -> dict:
    """{"references": n, "clips": [{"clip", "records": [{"record", "shared_seconds", "at_seconds",
    "clip_at_seconds", "score"}]}]}: each generated clip and the release recordings it holds."""
    keys, prints = release_prints(cfg)
    out = {"references": len(prints), "clips": []}
    index = Index(prints) if prints else None
    for clip in clips:
        found = []
        if index is not None:
            p = print_file(clip)
            for hit in index.lookup(p):
                ref = prints[hit.other]
                if hit.shared_seconds >= min(MEMORISED_MIN_S, 0.9 * ref.span_seconds):
                    found.append({"record": keys[hit.other], "shared_seconds": hit.shared_seconds,
                                  "at_seconds": round(hit.start_seconds + hit.offset_seconds, 3),
                                  "clip_at_seconds": hit.start_seconds, "score": hit.score})
        out["clips"].append({"clip": Path(clip).name, "records": sorted(found, key=lambda x: -x["shared_seconds"])})
    return out
