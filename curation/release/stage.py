"""The release: attribution CSVs and the shard plan over the included records, one job per shard
to write, the decided partitions kept for `curate release`, and the published version."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from .. import storage
from .. import record_table as rt
from ..atomic import atomic_write_text
from ..config import Config
from ..stage import FanIn, ModelInfo, Progress, StageReport, release_memory


def release_plan(parts: list[str], cfg: Config) -> tuple[str, list[tuple[str, str, str]], StageReport]:
    """The release's first step, over every partition: reads only the included rows, writes
    the attribution CSVs and which shard each record goes to (`work/release/shards.parquet`),
    removes shards no longer produced, and returns the shards to write as jobs (name, a
    Parquet file of its records, fingerprint) for `write_shard_job`, one task each."""
    from .writers import plan_shards, prune_shards, sort_key, write_attribution
    from ..stage import write_part

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
    from .versions import published_assignment

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
    from . import takedowns, versions

    down = takedowns.load(cfg.output_dir, cfg.release.takedowns)
    model = {"checkpoint": Path(info.checkpoint).name, "sha256": info.sha256, "random_init": info.random_init,
             "published": info.published}
    return versions.publish(cfg, model, [t.to_dict() for t in sorted(down.values(), key=lambda t: (t.source, int(t.id)))])


def release_index(plans: list[dict]) -> "pa.Table":
    """What a release version holds, one row per record: its shard, what the attribution
    says, and digests of its audio and of the metadata its shard sample carries (what
    `curate release diff` compares)."""
    from .versions import INDEX_SCHEMA, index_row

    rows = [index_row(r, p["name"]) for p in plans for r in p["records"]]
    return pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)


def write_shard_job(name: str, job: str, fingerprint: str, cfg: Config, progress: Progress | None = None) -> int:
    """One shard of the release (a task of its own: on Dask, one per worker at a time)."""
    from .writers import write_shard

    recs = rt.to_records(storage.read_parquet(job))
    for r in recs:
        r.audio_path = str(cfg.resolve(r.audio_path) or "")
    write_shard(cfg.shard_dir, cfg.work_dir / "shards", name, recs, fingerprint, progress)
    storage.as_path(job).unlink(missing_ok=True)
    return len(recs)


def explain(row: dict, ev: dict) -> list[str]:
    """The shard the record was released in, for `curate explain`."""
    out: list[str] = []
    if ev.get("shard"):
        out.append(f"  release: in {ev['shard']}")
    return out


RELEASE = FanIn(
    name="release",
    reads=("status",),  # of the included rows, every column: the attribution CSVs and the shards carry them
    writes=(),  # the release's files: attribution CSVs, shards, work/release/shards.parquet
    reasons={},  # decides nothing: what it is given included, it publishes
    run=release_plan,
    explain=explain,
)
