"""One stage over a list of records, the way the flow runs it: the records as one partition,
the stage's `run` (its `setup`, then the runner's `run_on_partition`) (counting, marker, the written part),
keyed as `map_stage` keys it. Tests that want a stage's decisions call this, not a twin."""
from __future__ import annotations

from pathlib import Path

from curation import record_table as rt
from curation.records import Record
from curation.stage import Stage, read_part, settings_key, write_part


def run_stage(stage: Stage, records: list[Record], cfg, work: Path, info=None) -> tuple[list[Record], dict]:
    """(the records as the stage left them, its counts)."""
    recs, res = run_stage_result(stage, records, cfg, work, info)
    return recs, res["counts"]


def run_stage_result(stage: Stage, records: list[Record], cfg, work: Path, info=None) -> tuple[list[Record], dict]:
    """(the records as the stage left them, the runner's result: counts, notes, marker)."""
    work = Path(work) / f"stage-{stage.name}"
    work.mkdir(parents=True, exist_ok=True)
    n = len(list(work.glob("in-*.parquet")))
    src, dst = work / f"in-{n:03d}.parquet", work / f"out-{n:03d}.parquet"
    write_part(src, rt.from_records(records))
    res = stage.run(cfg, info, str(src), str(dst), settings_key(f"test-{n}", stage.key(cfg, info)))
    return rt.to_records(read_part(dst)), res


def run_review(records: list[Record], cfg, work: Path) -> tuple[list[Record], list[dict], object]:
    """The review stage as the flow runs it (`review_parts` over one partition): (the records
    after it, the queue, its report)."""
    from curation.review.stage import review_parts

    work = Path(work) / "stage-review"
    work.mkdir(parents=True, exist_ok=True)
    n = len(list(work.glob("in-*.parquet")))
    src = work / f"in-{n:03d}.parquet"
    write_part(src, rt.from_records(records))
    parts, queue, rep = review_parts([str(src)], cfg, work / f"out-{n:03d}")
    return rt.to_records(read_part(parts[0])), queue, rep


def release_shards(records: list[Record], shard_dir: Path, max_records: int, work: Path) -> list[dict]:
    """The release's shards as the flow writes them: `release_plan` over one partition of the
    records (each included), then `write_shard_job` for every shard it plans. One entry per
    shard, in order: name, keys (in the shard's order), and whether it was written this time."""
    import copy

    from curation.config import Config
    from curation.release.stage import release_plan, write_shard_job

    work = Path(work)
    cfg = Config(path=work / "curate.toml", output_dir=work / "out")
    cfg.release.shard_dir, cfg.release.shard_max_records = Path(shard_dir), max_records
    recs = [copy.deepcopy(r) for r in records]
    for r in recs:
        r.status, r.reason = "included", ""
    (work / "release-in").mkdir(parents=True, exist_ok=True)
    n = len(list((work / "release-in").glob("*.parquet")))
    src = work / "release-in" / f"part-{n:03d}.parquet"
    write_part(src, rt.from_records(recs))
    where, jobs, _ = release_plan([str(src)], cfg)
    for name, job, fingerprint in jobs:
        write_shard_job(name, job, fingerprint, cfg)
    shards: dict[str, list[str]] = {}
    for row in read_part(where).to_pylist():
        shards.setdefault(row["shard"], []).append(row["key"])
    written = {name for name, _, _ in jobs}
    return [{"name": name, "keys": keys, "written": name in written} for name, keys in shards.items()]
