"""Release versions: OUT/releases/v1, v2, ..., each published once and never changed.

A version holds the attribution CSVs, the shards, `records.parquet` (what it holds, one row
per record), `manifest.parquet` (every record of the run that made it, with why it is in or
out), `release.json`, a dataset card `README.md` and `SHA256SUMS` over every other file
(`sha256sum -c SHA256SUMS` reads it). A run publishes a version only when the attribution or
the shards differ from the last version's. A shard unchanged since the parent version is the
parent's very file (a hard link; a server-side copy on a store), not a copy; new and changed
shards are copied from the working release and checked against the digests the run recorded,
so a version never shares a file with the working release, which later runs replace and
anyone may touch. On an object store a version
is written in place, its SHA256SUMS last: a folder without one is an interrupted publish,
removed and written again by the next.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from .. import storage
from ..atomic import atomic_write_bytes
from ..audio import file_sha256
from ..records import Record, record_key

SUMS = "SHA256SUMS"
ATTRIBUTION = ("freesound_attribution.csv", "fma_attribution.csv")
_VERSION = re.compile(r"^v([0-9]+)$")

INDEX_SCHEMA = pa.schema([
    ("key", pa.string()), ("source", pa.string()), ("id", pa.string()), ("shard", pa.string()),
    ("license", pa.string()), ("license_url", pa.string()), ("title", pa.string()), ("author", pa.string()),
    ("url", pa.string()), ("audio_sha256", pa.string()), ("audio_seconds", pa.float64()),
    ("metadata_sha256", pa.string()),
])


DATASET_CONFIG = "dataset_config.json"  # stable-audio-tools' dataset config of the version


def sat_dataset_config(name: str) -> dict:
    """The stable-audio-tools dataset config that trains on a version: its shards, as WebDataset
    (each sample's `text` is the prompt, so no custom metadata module is needed). The path is
    relative to the version's folder: run from there, or see `resolve_dataset_config`."""
    return {"dataset_type": "wds", "datasets": [{"id": f"release-{name}", "path": "shards"}], "random_crop": True}


def resolve_dataset_config(path) -> dict:
    """A version's dataset config with its shard paths made absolute (relative to the file)."""
    cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    base = Path(path).resolve().parent
    for d in cfg.get("datasets", []):
        if "path" in d and not str(d["path"]).startswith(("s3://", "/")):
            d["path"] = str(base / d["path"])
    return cfg


def index_row(r: Record, shard: str) -> dict:
    from .writers import sample_metadata

    audio = r.evidence.get("audio") or {}
    meta = json.dumps(sample_metadata(r), sort_keys=True, ensure_ascii=False).encode("utf-8")
    return {"key": record_key(r.source, r.id), "source": r.source, "id": r.id, "shard": shard,
            "license": r.license, "license_url": r.license_url, "title": r.title, "author": r.author,
            "url": r.url, "audio_sha256": audio.get("sha256"), "audio_seconds": audio.get("seconds"),
            "metadata_sha256": hashlib.sha256(meta).hexdigest()}


def releases_dir(output_dir):
    return storage.as_path(output_dir) / "releases"


def versions(root) -> list[str]:
    """The published versions under `root` (OUT/releases), oldest first: folders `vN` with
    their SHA256SUMS."""
    root = storage.as_path(root)
    if not root.exists():
        return []
    found = []
    for p in root.iterdir():
        m = _VERSION.match(p.name)
        if m and (p / SUMS).exists():
            found.append((int(m.group(1)), p.name))
    return [name for _, name in sorted(found)]


def published_assignment(output_dir) -> dict[str, list[str]]:
    """{shard: record keys} as the latest version recorded them (empty before the first)."""
    root = releases_dir(output_dir)
    have = versions(root)
    if not have:
        return {}
    try:
        t = storage.read_parquet(root / have[-1] / "records.parquet", columns=["key", "shard"])
    except (OSError, ValueError):
        return {}
    out: dict[str, list[str]] = {}
    for k, s in zip(t.column("key").to_pylist(), t.column("shard").to_pylist()):
        out.setdefault(s, []).append(k)
    return out


def read_sums(path) -> dict[str, str]:
    """{relative path: sha256} from a SHA256SUMS file (sha256sum's text format)."""
    out = {}
    for line in storage.as_path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if not name or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(f"{path}: not a sha256sum line: {line!r}")
        out[name] = digest
    return out


def sums_text(sums: dict[str, str]) -> str:
    return "".join(f"{sums[k]}  {k}\n" for k in sorted(sums))


def _content(cfg, shards: list[str]) -> dict[str, str]:
    """{path in a version: sha256} of the attribution CSVs and shards as the run left them
    (a shard's digest from the state written with it)."""
    out = {}
    for name in ATTRIBUTION:
        p = storage.as_path(cfg.output_dir) / "release" / name
        out[name] = file_sha256(p)
    state_dir = cfg.work_dir / "shards"
    for name in shards:
        out[f"shards/{name}"] = json.loads((state_dir / f"{name}.json").read_text())["sha256"]
    return out


def _link(src, dst) -> bool:
    """`dst` as the same file as `src`: a hard link where the filesystem allows one (True),
    else a copy (a server-side copy within one object store)."""
    src, dst = storage.as_path(src), storage.as_path(dst)
    if not storage.is_remote(src) and not storage.is_remote(dst):
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
            return True
        except OSError:
            shutil.copy2(src, dst)
            return False
    if storage.is_remote(src) and storage.is_remote(dst) and src.protocol == dst.protocol:
        dst.fs.copy(src.path, dst.path)
        return False
    with storage.writing(dst) as tmp:
        shutil.copyfile(storage.local_copy(src), tmp)
    return False


class PublishError(RuntimeError):
    """The working release changed under the publish (a file is not the one the run wrote)."""


def _copy(src, dst, sha256: str | None = None) -> None:
    """`dst` a copy of `src` (a version never shares a file with the working release, which
    later runs replace and anyone may touch); with `sha256`, the copy must have that digest."""
    src, dst = storage.as_path(src), storage.as_path(dst)
    if storage.is_remote(src) and storage.is_remote(dst) and src.protocol == dst.protocol:
        dst.fs.copy(src.path, dst.path)
        got = file_sha256(dst) if sha256 else None
    else:
        with storage.writing(dst) as tmp:
            shutil.copyfile(storage.local_copy(src), tmp)
            got = file_sha256(tmp) if sha256 else None
    if sha256 and got != sha256:
        raise PublishError(f"{src} is not the file this run wrote (sha256 {got[:16]}…, expected {sha256[:16]}…): "
                           "run again")


def _write(path, data: bytes) -> str:
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _summary(index: pa.Table) -> dict:
    rows = index.select(["source", "license", "license_url", "audio_seconds", "shard"]).to_pylist()
    by_source: dict[str, int] = {}
    licenses: dict[str, dict[str, int]] = {}
    deeds: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for r in rows:
        by_source[r["source"]] = by_source.get(r["source"], 0) + 1
        lic = licenses.setdefault(r["source"], {})
        lic[r["license"] or ""] = lic.get(r["license"] or "", 0) + 1
        deeds[r["license_url"] or ""] = deeds.get(r["license_url"] or "", 0) + 1
        seconds[r["source"]] = seconds.get(r["source"], 0.0) + float(r["audio_seconds"] or 0.0)
    total_s = sum(seconds.values())
    return {
        "records": {"total": len(rows), "by_source": dict(sorted(by_source.items()))},
        "licenses": {s: dict(sorted(v.items())) for s, v in sorted(licenses.items())},
        "license_deeds": dict(sorted(deeds.items())),
        "seconds": {"total": round(total_s, 3), "hours": round(total_s / 3600, 3),
                    "by_source": {s: round(v, 3) for s, v in sorted(seconds.items())}},
    }


def publish(cfg, music_model: dict, takedowns: list[dict], now: datetime | None = None) -> dict:
    """Publish the working release (OUT/release and its shards) as the next version if it
    differs from the last one. Returns {"version", "published", "parent", ...counts}."""
    root = releases_dir(cfg.output_dir)
    index = storage.read_parquet(cfg.work_dir / "release" / "index.parquet")
    shards = sorted(set(index.column("shard").to_pylist()))
    content = _content(cfg, shards)
    have = versions(root)
    parent = have[-1] if have else None
    parent_sums = read_sums(root / parent / SUMS) if parent else {}
    if parent and {k: v for k, v in parent_sums.items() if k in content or k.startswith("shards/")} == content:
        return {"version": parent, "published": False, "parent": None}

    n = int(_VERSION.match(parent).group(1)) + 1 if parent else 1
    name = f"v{n}"
    final = root / name
    remote = storage.is_remote(root)
    if remote:
        if final.exists():  # an interrupted publish (no SHA256SUMS, or versions() had listed it)
            final.fs.rm(final.path, recursive=True)
        work = final
    else:
        Path(root).mkdir(parents=True, exist_ok=True)
        for old in Path(root).glob(".tmp-v*"):
            shutil.rmtree(old, ignore_errors=True)
        if Path(final).exists():  # a folder of that name that is no published version
            shutil.rmtree(final)
        work = Path(root) / f".tmp-{name}-{os.getpid()}"
        work.mkdir()

    try:
        return _publish_into(cfg, work, final, remote, name, parent, parent_sums, index, shards, content,
                             music_model, takedowns, now)
    except BaseException:
        # nothing partial stays visible: a local version is only renamed into place when whole;
        # on a store, a folder without SHA256SUMS is no version (removed by the next publish)
        if not remote:
            shutil.rmtree(work, ignore_errors=True)
        raise


def _publish_into(cfg, work, final, remote, name, parent, parent_sums, index, shards, content, music_model,
                  takedowns, now) -> dict:
    from .card import dataset_card

    sums: dict[str, str] = {}
    linked = 0
    for rel in ATTRIBUTION:
        _copy(storage.as_path(cfg.output_dir) / "release" / rel, work / rel, content[rel])
        sums[rel] = content[rel]
    shared = []
    root = releases_dir(cfg.output_dir)
    for shard in shards:
        rel = f"shards/{shard}"
        if parent is not None and parent_sums.get(rel) == content[rel]:
            linked += _link(root / parent / rel, work / rel)  # the parent's very file
            shared.append(shard)
        else:
            _copy(cfg.shard_dir / shard, work / rel, content[rel])
        sums[rel] = content[rel]
    with storage.writing(work / "records.parquet") as tmp:
        import pyarrow.parquet as pq

        pq.write_table(index, tmp)
        sums["records.parquet"] = file_sha256(tmp)
    manifest = storage.as_path(cfg.output_dir) / "manifests" / "records.parquet"
    _copy(manifest, work / "manifest.parquet")
    sums["manifest.parquet"] = file_sha256(work / "manifest.parquet")

    info = {
        "name": cfg.release.name,
        "version": name,
        "parent": parent,
        "created_at": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        **_summary(index),
        "shards": {"count": len(shards), "max_records": cfg.release.shard_max_records,
                   "shared_with_parent": len(shared), "new": len(shards) - len(shared),
                   "hard_linked": linked},
        "music_model": music_model,
        "config_sha256": file_sha256(cfg.path),
        "release_declares": {"open_source_model": cfg.release.open_source_model,
                             "noncommercial": cfg.release.noncommercial},
        "takedowns": takedowns,
    }
    sums["release.json"] = _write(work / "release.json",
                                  (json.dumps(info, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())
    sums["README.md"] = _write(work / "README.md", dataset_card(info).encode("utf-8"))
    sums[DATASET_CONFIG] = _write(work / DATASET_CONFIG,
                                  (json.dumps(sat_dataset_config(name), indent=2) + "\n").encode("utf-8"))
    atomic_write_bytes(work / SUMS, sums_text(sums).encode("utf-8"))
    if not remote:
        os.replace(work, final)
    return {"version": name, "published": True, "parent": parent, "records": info["records"]["total"],
            "shards": len(shards), "shards_shared_with_parent": len(shared)}
