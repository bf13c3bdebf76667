"""The release: attribution CSVs and WebDataset shards of exactly the included records.

Shards are plain tars of `KEY.flac` (44.1 kHz stereo) + `KEY.json`, written with a fixed
mtime and in a fixed order so the same inputs give the same bytes.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import soundfile as sf

from .. import safe_text, storage
from ..atomic import atomic_write_text
from ..audio import audio_blocks, file_sha256
from ..records import Record, record_key
from ..sources.fma import url_was_derived

RELEASE_SR = 44100
# The published layout first (Stable Audio Open's `id,title,author,license,url`), then the
# exact license deed, the license as the source wrote it, and whether the URL was derived.
ATTRIBUTION_FIELDS = ["id", "title", "author", "license", "url", "license_url", "license_raw", "source",
                      "url_derived"]
TAR_MTIME = 0.0


def _clean(text: str, limit: int = 400) -> str:
    t = re.sub(r"<[^>]+>", " ", str(text or ""))  # Freesound descriptions may carry HTML
    t = re.sub(r"\s+", " ", t).strip()
    return t if len(t) <= limit else t[: limit - 1].rstrip() + "…"


def prompt_for(r: Record) -> str:
    """A text prompt from the metadata: title/description, tags, genres."""
    parts = []
    title = _clean(r.title, 120)
    if title:
        parts.append(title)
    desc = _clean(r.description, 240)
    if desc and desc.lower() != title.lower():
        parts.append(desc)
    if r.genres:
        parts.append("Genre: " + ", ".join(_clean(g, 40) for g in r.genres))
    if r.tags:
        parts.append("Tags: " + ", ".join(_clean(t, 40) for t in r.tags[:20]))
    return ". ".join(p.rstrip(".") for p in parts) or f"{r.source} recording {r.id}"


# Every sample's JSON has these keys, these types, whatever the record or the shard holds
# (the release's card declares them as its features, so a loader infers nothing).
SAMPLE_TEXT_FIELDS = ("text", "source", "id", "license", "license_raw", "license_url", "author", "title", "url")
SAMPLE_LIST_FIELDS = ("tags", "genres")
SAMPLE_QUALITY_FIELDS = ("loudness_lufs", "true_peak_dbtp", "bandwidth_hz")


def sample_metadata(r: Record) -> dict:
    meta = {"text": prompt_for(r)}
    for k in SAMPLE_TEXT_FIELDS[1:]:
        v = getattr(r, k)
        meta[k] = "" if v is None else str(v)
    for k in SAMPLE_LIST_FIELDS:
        meta[k] = [str(v) for v in (getattr(r, k) or []) if v is not None]
    # the copies of this recording that were left out (curation/dedup/duplicates.py)
    same = r.evidence.get("same_audio") or {}
    meta["duplicates"] = sorted(c["record"] for c in same.get("copies", [])) if same.get("role") == "kept" else []
    # what the samples say (curation/quality): for a loader that normalises or filters
    # (numbers always: a training loader's collate takes no nulls; a value not measured is 0.0
    # and the sample says so in its flags)
    q = r.evidence.get("quality") or {}
    missing = False
    for k in SAMPLE_QUALITY_FIELDS:
        v = q.get(k)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
        meta[k] = float(v) if ok else 0.0
        missing |= not ok
    meta["quality_flags"] = [str(f) for f in q.get("flags") or []] + (["not_measured"] if missing else [])
    return meta


def sample_features_yaml() -> list[dict]:
    """The features of a release's samples as a dataset card's `dataset_info.features`
    (what `datasets` reads instead of inferring them from the first shard)."""
    json_fields = [{"name": k, "dtype": "string"} for k in SAMPLE_TEXT_FIELDS]
    json_fields += [{"name": k, "list": "string"} for k in (*SAMPLE_LIST_FIELDS, "duplicates", "quality_flags")]
    json_fields += [{"name": k, "dtype": "float64"} for k in SAMPLE_QUALITY_FIELDS]
    json_fields.append({"name": "seconds", "dtype": "float64"})  # written beside the audio (write_shard)
    return [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"},
            {"name": "flac", "dtype": "audio"}, {"name": "json", "struct": sorted(json_fields, key=lambda f: f["name"])}]


def sort_key(r: Record) -> tuple:
    return (r.source, int(r.id))


def flac_bytes(path: Path) -> tuple[bytes, float]:
    """The recording as 44.1 kHz stereo 16-bit FLAC, converted as a stream: memory holds the
    compressed result, never the whole recording decoded."""
    buf = io.BytesIO()
    frames = 0
    with sf.SoundFile(buf, "w", RELEASE_SR, 2, format="FLAC", subtype="PCM_16") as out:
        for block in audio_blocks(path, [], RELEASE_SR, 2):
            out.write(np.clip(block, -1.0, 1.0))
            frames += len(block)
    return buf.getvalue(), frames / RELEASE_SR


def write_attribution(path: Path, records: Iterable[Record]) -> int:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(ATTRIBUTION_FIELDS)
    n = 0
    for r in records:
        w.writerow(safe_text.row([r.id, r.title, r.author, r.license, r.url, r.license_url, r.license_raw, r.source,
                                  "true" if url_was_derived(r.evidence) else "false"]))
        n += 1
    atomic_write_text(path, buf.getvalue())
    return n


def _shard_fingerprint(chunk: list[Record]) -> str:
    h = hashlib.sha256()
    for r in chunk:
        h.update(json.dumps([record_key(r.source, r.id), r.evidence.get("audio", {}).get("sha256"),
                             sample_metadata(r)], sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


def _previous_assignment(shard_dir: Path, state_dir: Path,
                         published: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """{shard name: record keys} of the shards the last release wrote and still holds; where a
    shard's state is missing or unreadable, the assignment the last published version
    recorded (`published`), so a damaged state does not move records to new shards."""
    out: dict[str, list[str]] = dict(published or {})
    if not state_dir.is_dir():
        return out
    for state in state_dir.glob("shard-*.tar.json"):
        name = state.name[: -len(".json")]
        try:
            st = json.loads(state.read_text())
        except (ValueError, OSError):
            continue  # a state that cannot be read: its shard is planned afresh
        keys = st.get("keys") if isinstance(st, dict) else None
        if isinstance(keys, list) and (shard_dir / name).exists():
            out[name] = [str(k) for k in keys]
    return out


def plan_shards(records: list[Record], max_records: int, shard_dir: Path, state_dir: Path,
                published: dict[str, list[str]] | None = None) -> list[dict]:
    """The shards the records make: name, keys, fingerprint, its records, and whether it must be
    written (`write`), which it need not when its records, audio and metadata are unchanged
    since it was written (its fingerprint in `state_dir`).

    Assignment is stable and append-only: a record stays in the shard it was released in; new
    records fill new shards (in key order, `max_records` each) numbered after the last. So one
    removal or change rewrites one shard, and new records write only new shards; a shard whose
    records all left is gone. (Shards emptied in part are not merged: see the README.)"""
    records = sorted(records, key=sort_key)
    by_key = {record_key(r.source, r.id): r for r in records}
    groups: list[tuple[str, list[Record]]] = []
    placed: set[str] = set()
    prev = _previous_assignment(shard_dir, state_dir, published)
    for name in sorted(prev):
        members = [by_key[k] for k in dict.fromkeys(prev[name]) if k in by_key and k not in placed]
        if members:
            members.sort(key=sort_key)
            groups.append((name, members))
            placed.update(record_key(r.source, r.id) for r in members)
    fresh = [r for r in records if record_key(r.source, r.id) not in placed]
    n = 1 + max((int(name[len("shard-"):-len(".tar")]) for name in prev), default=-1)
    for start in range(0, len(fresh), max_records):
        groups.append((f"shard-{n:06d}.tar", fresh[start : start + max_records]))
        n += 1
    plans = []
    for name, chunk in groups:
        target, state = shard_dir / name, state_dir / f"{name}.json"
        fp = _shard_fingerprint(chunk)
        write = True
        if state.exists() and target.exists():
            try:
                prev_state = json.loads(state.read_text())
            except (ValueError, OSError):
                prev_state = {}
            if not isinstance(prev_state, dict):
                prev_state = {}  # garbage: the shard is written again
            write = not (prev_state.get("fingerprint") == fp and _unchanged(target, prev_state))
        plans.append({"name": name, "keys": [record_key(r.source, r.id) for r in chunk], "fingerprint": fp,
                      "records": chunk, "write": write})
    return plans


def _unchanged(target, prev: dict) -> bool:
    """Whether the shard at `target` is the one `prev` recorded: its sha256 on local disk; on an
    object store its size and ETag (not a download of every shard at every run)."""
    if storage.is_remote(target):
        return prev.get("version") == list(storage.file_version(target) or ())
    return prev.get("sha256") == file_sha256(target)


def write_shard(shard_dir: Path, state_dir: Path, name: str, chunk: list[Record], fingerprint: str,
                progress: Callable[[int], None] | None = None) -> None:
    """One shard: FLAC and JSON of each record, in order, then its state (fingerprint, sha256;
    size and ETag on an object store). The shard appears whole or not at all."""
    from webdataset import TarWriter  # here, not at the top: it imports torch (~450 MB)

    target = shard_dir / name
    with storage.writing(target) as tmp:
        with TarWriter(str(tmp), mtime=TAR_MTIME, user="curation", group="curation") as tw:
            for r in chunk:
                audio, seconds = flac_bytes(r.audio_path)
                meta = sample_metadata(r)
                meta["seconds"] = round(seconds, 3)
                tw.write({"__key__": record_key(r.source, r.id), "flac": audio,
                          "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")})
                if progress:
                    progress(1)
        sha = file_sha256(tmp)
    state = {"fingerprint": fingerprint, "sha256": sha, "keys": [record_key(r.source, r.id) for r in chunk]}
    if storage.is_remote(target):
        state["version"] = list(storage.file_version(target) or ())
    atomic_write_text(state_dir / f"{name}.json", json.dumps(state))


def prune_shards(shard_dir: Path, keep: set[str]) -> None:
    """Remove shards no longer produced, and temporary files of interrupted writes."""
    if storage.is_remote(shard_dir):
        for old in shard_dir.iterdir() if shard_dir.exists() else ():
            if old.name not in keep and old.suffix == ".tar":
                old.unlink()
        return
    if not shard_dir.is_dir():
        return
    for old in list(shard_dir.iterdir()):
        if old.name not in keep and (old.suffix == ".tar" or old.name.startswith(".tmp-")):
            old.unlink()
