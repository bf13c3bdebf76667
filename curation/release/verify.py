"""`curate release verify DIR`: is this release version intact, and may it still go out?

- every file listed in SHA256SUMS is there with that digest, and no file is there unlisted;
- the attribution CSVs and the shards hold the same records, one to one (each shard sample a
  FLAC and a JSON whose source, id, license and URL are the attribution row's);
- every record is included under the current manifest (the run's OUT/manifests/records.parquet
  next to OUT/releases, or the one given): a record since taken down, opted out, deleted or
  relicensed makes an older version fail, as it should no longer be distributed.
"""
from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

import pyarrow.compute as pc

from .. import storage
from ..safe_text import uncell
from ..audio import file_sha256
from .versions import ATTRIBUTION, SUMS, read_sums


def current_manifest(version_dir: Path) -> Path | None:
    p = Path(version_dir).resolve().parent.parent / "manifests" / "records.parquet"
    return p if p.is_file() else None


def _checksums(d: Path, problems: list[str]) -> None:
    try:
        sums = read_sums(d / SUMS)
    except (OSError, ValueError) as e:
        problems.append(f"{SUMS}: cannot read: {e}")
        return
    present = {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() and p.name != SUMS}
    for name in sorted(set(sums) - present):
        problems.append(f"missing: {name} (listed in {SUMS})")
    for name in sorted(present - set(sums)):
        problems.append(f"not in {SUMS}: {name}")
    for name in sorted(set(sums) & present):
        got = file_sha256(d / name)
        if got != sums[name]:
            problems.append(f"checksum mismatch: {name} (sha256 {got[:16]}…, {SUMS} says {sums[name][:16]}…)")


def _attribution(d: Path, problems: list[str]) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for name in ATTRIBUTION:
        p = d / name
        if not p.is_file():
            problems.append(f"missing: {name}")
            continue
        with open(p, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                row = {k: uncell(v) if isinstance(v, str) else v for k, v in row.items()}  # spreadsheet-safe cells
                key = f"{row.get('source')}_{row.get('id')}"
                if key in rows:
                    problems.append(f"{name}: {key} listed twice")
                rows[key] = row
    return rows


def _shard_samples(d: Path, problems: list[str]) -> dict[str, dict]:
    """{key: sample JSON} from every shard, checking each sample has its FLAC and JSON."""
    out: dict[str, dict] = {}
    for shard in sorted((d / "shards").glob("*.tar")) if (d / "shards").is_dir() else ():
        parts: dict[str, set[str]] = {}
        try:
            with tarfile.open(shard) as tf:
                for m in tf:
                    key, _, ext = m.name.partition(".")
                    parts.setdefault(key, set()).add(ext)
                    if ext == "json":
                        meta = json.loads(tf.extractfile(m).read().decode("utf-8"))
                        if key in out:
                            problems.append(f"shards/{shard.name}: {key} is in more than one shard")
                        out[key] = meta
        except (tarfile.TarError, OSError, ValueError) as e:
            problems.append(f"shards/{shard.name}: cannot read: {type(e).__name__}: {e}")
            continue
        for key, exts in sorted(parts.items()):
            if exts != {"flac", "json"}:
                problems.append(f"shards/{shard.name}: {key} has {', '.join(sorted(exts))}, not flac + json")
    return out


def verify(version_dir: Path, manifest: Path | None = None) -> tuple[list[str], dict]:
    """The problems found (none: the version is good) and what was checked."""
    d = Path(version_dir)
    problems: list[str] = []
    if not (d / SUMS).is_file():
        return [f"{d} is not a release version (no {SUMS})"], {}
    _checksums(d, problems)
    att = _attribution(d, problems)
    samples = _shard_samples(d, problems)
    for key in sorted(set(att) - set(samples)):
        problems.append(f"in the attribution but in no shard: {key}")
    for key in sorted(set(samples) - set(att)):
        problems.append(f"in a shard but not in the attribution: {key}")
    for key in sorted(set(att) & set(samples)):
        row, meta = att[key], samples[key]
        for field in ("source", "id", "license", "url", "title", "author"):
            if str(meta.get(field) or "") != str(row.get(field) or ""):
                problems.append(f"{key}: shard says {field} {meta.get(field)!r}, attribution says {row.get(field)!r}")
    manifest = manifest or current_manifest(d) or d / "manifest.parquet"
    checked = {"records": len(att), "shards": len(list((d / "shards").glob("*.tar"))), "manifest": str(manifest)}
    try:
        m = storage.read_parquet(manifest, columns=["source", "id", "status", "reason"])
    except (OSError, ValueError) as e:
        problems.append(f"cannot read the manifest {manifest}: {e}")
        return problems, checked
    keys = pc.binary_join_element_wise(m.column("source"), m.column("id"), "_").to_pylist()
    status = dict(zip(keys, zip(m.column("status").to_pylist(), m.column("reason").to_pylist())))
    for key in sorted(set(att) | set(samples)):
        st = status.get(key)
        if st is None:
            problems.append(f"not allowed: {key} is not in the manifest {manifest}")
        elif st[0] != "included":
            problems.append(f"not allowed: {key} is {st[0]} ({st[1]}) under the manifest {manifest}")
    return problems, checked
