"""One stage over a list of records, the way the flow runs it: the records as one partition,
the stage's `setup` and the runner's `run_on_partition` (counting, marker, the written part),
keyed as `map_stage` keys it. Tests that want a stage's decisions call this, not a twin."""
from __future__ import annotations

from pathlib import Path

from curation import record_table as rt
from curation.records import Record
from curation.stage import Stage, noop, read_part, run_on_partition, settings_key, write_part


def run_stage(stage: Stage, records: list[Record], cfg, work: Path, info=None) -> tuple[list[Record], dict]:
    """(the records as the stage left them, its counts)."""
    work = Path(work) / f"stage-{stage.name}"
    work.mkdir(parents=True, exist_ok=True)
    n = len(list(work.glob("in-*.parquet")))
    src, dst = work / f"in-{n:03d}.parquet", work / f"out-{n:03d}.parquet"
    write_part(src, rt.from_records(records))
    res = run_on_partition(stage.name, stage.setup(cfg, info, noop), str(src), str(dst),
                           settings_key(f"test-{n}", stage.key(cfg, info)), count_passed=stage.count_passed,
                           rerun_if=stage.rerun_if(cfg))
    return rt.to_records(read_part(dst)), res["counts"]


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
