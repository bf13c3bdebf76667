"""The curation flow: each stage of `curation.pipeline` as a Prefect task, in order.

Runs in-process (`curate run CONFIG`, no server needed) or on a schedule from a Prefect
deployment; with `task_runner = "dask"` the music stage is spread over a Dask cluster.
Tasks pass records as return values, so they work the same in other processes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from curation import pipeline
from curation.atomic import atomic_write_text
from curation.config import Config, load_config
from curation.records import Record
from manifests.schema import write_manifest

# Tasks never cache through Prefect: the stages keep their own content-keyed caches in
# OUT/work, which survive a killed run and are what makes a rerun cheap.
TASK = dict(cache_policy=NO_CACHE, persist_result=False)

Progress = Callable[[str, int], Callable[[int], None]]


def _no_progress(_label: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


@task(name="ingest", **TASK)
def ingest_task(cfg: Config) -> tuple[list[Record], pipeline.StageReport]:
    return pipeline.ingest(cfg)


@task(name="licenses", **TASK)
def licenses_task(records: list[Record], cfg: Config) -> tuple[list[Record], pipeline.StageReport]:
    rep = pipeline.apply_licenses(records, cfg)
    return records, rep


@task(name="model-info", **TASK)
def model_info_task(cfg: Config) -> pipeline.ModelInfo:
    return pipeline.model_info(cfg)


@task(name="music", **TASK)
def music_task(records: list[Record], cfg: Config, info: pipeline.ModelInfo,
               progress: Callable[[int], None] | None = None) -> tuple[list[Record], pipeline.StageReport]:
    client = None
    if cfg.freesound.api is not None and any(r.source == "freesound" and r.pending for r in records):
        from curation.sources import freesound as fs_src

        client = fs_src.FreesoundClient.from_config(cfg.freesound.api)
    rep = pipeline.audio_and_music(
        records, cfg, lambda: pipeline.load_detector(cfg, info), info.sha256, info.random_init,
        client=client, progress=progress or (lambda _n: None),
    )
    return records, rep


@task(name="copyright", **TASK)
def copyright_task(records: list[Record], cfg: Config) -> tuple[list[Record], pipeline.StageReport]:
    return records, pipeline.check_copyright(records, cfg)


@task(name="review", **TASK)
def review_task(records: list[Record], cfg: Config) -> tuple[list[Record], list[dict], pipeline.StageReport]:
    from curation.review import write_queue
    from curation.review_page import write_review_page

    queue, rep = pipeline.apply_review(records, cfg)
    write_queue(cfg.output_dir / "review" / "queue.csv", queue)
    write_review_page(cfg.output_dir / "review" / "index.html", queue,
                      {(r.source, r.id): r.audio_path for r in records if r.status == "review"})
    pipeline.finalize(records)
    return records, queue, rep


@task(name="release", **TASK)
def release_task(records: list[Record], cfg: Config,
                 progress: Callable[[int], None] | None = None) -> tuple[list[Record], pipeline.StageReport]:
    rep = pipeline.release(records, cfg, progress=progress or (lambda _n: None))
    return records, rep


@task(name="manifest", **TASK)
def manifest_task(records: list[Record], cfg: Config) -> str:
    path = cfg.output_dir / "manifests" / "records.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(path, records)
    return str(path)


@task(name="train-and-generate", **TASK)
def training_task(cfg: Config) -> dict:
    from training.bridge import train_and_generate

    return train_and_generate(cfg.output_dir / "release" / "shards", cfg.training, cfg.output_dir / "training")


def _batches(records: list[Record], size: int) -> list[list[Record]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


# The progress display of the process that started the flow (see `run`).
_progress: list[Progress] = [_no_progress]


def run_stages(cfg: Config, progress: Progress | None = None) -> dict:
    """The stages in order; called inside the flow, so every call below is a task run."""
    progress = progress or _progress[0]
    logger = get_run_logger()
    reports: list[pipeline.StageReport] = []

    records, rep = ingest_task(cfg)
    reports.append(rep)
    logger.info("ingest: %d distinct records %s", len(records), rep.counts)
    records, rep = licenses_task(records, cfg)
    reports.append(rep)

    info = model_info_task(cfg)
    if info.random_init or not info.published:
        what = "RANDOMLY INITIALISED" if info.random_init else "not the published PANNs checkpoint"
        logger.warning("music model %s is %s (sha256 %s): its music decisions are not real",
                       info.checkpoint, what, info.sha256[:16])
    pending = [r for r in records if r.pending]
    if cfg.task_runner == "dask" and pending:
        futures = [music_task.submit(b, cfg, info) for b in _batches(pending, 32)]
        done: dict[tuple[str, str], Record] = {}
        rep = pipeline.StageReport("music")
        for f in futures:
            recs, r_ = f.result()
            done.update({(r.source, r.id): r for r in recs})
            for k, v in r_.counts.items():
                rep.add(k, v)
        records = [done.get((r.source, r.id), r) for r in records]
    else:
        records, rep = music_task(records, cfg, info, progress("music detection", len(pending)))
    reports.append(rep)

    records, rep = copyright_task(records, cfg)
    reports.append(rep)
    records, queue, rep = review_task(records, cfg)
    reports.append(rep)
    n_inc = sum(r.status == "included" for r in records)
    records, rep = release_task(records, cfg, progress("release shards", n_inc))
    reports.append(rep)
    manifest = manifest_task(records, cfg)

    training = None
    if cfg.training.enabled:
        training = training_task(cfg)

    counts: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
        if r.reason:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
    summary = {
        "records": len(records),
        "status": dict(sorted(counts.items())),
        "reasons": dict(sorted(reasons.items())),
        "review_waiting": len(queue),
        "music_model": {"checkpoint": info.checkpoint, "sha256": info.sha256, "random_init": info.random_init,
                        "published": info.published},
        "stages": [{"name": s.name, "counts": s.counts, "notes": s.notes} for s in reports],
        "manifest": manifest,
        "training": training,
    }
    atomic_write_text(cfg.output_dir / "manifests" / "run_summary.json",
                      json.dumps(summary, indent=2, sort_keys=True, default=str))
    return summary


@flow(name="curate", log_prints=True)
def curate_flow(config_path: str) -> dict:
    """The whole curation run for one config file."""
    # Prefect ships this function, by value, to Dask workers with each task: it must name
    # nothing that does not pickle (such as the progress display, which run_stages looks up).
    return run_stages(load_config(config_path))


def task_runner_for(cfg: Config):
    if cfg.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=cfg.dask_address) if cfg.dask_address else DaskTaskRunner()
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=1)


def run(config_path: str | Path, progress: Progress = _no_progress) -> dict:
    """Load and validate the config (a bad one stops here with a ConfigError), then run the flow."""
    cfg = load_config(config_path)
    _progress[0] = progress
    try:
        return curate_flow.with_options(task_runner=task_runner_for(cfg))(str(Path(config_path).resolve()))
    finally:
        _progress[0] = _no_progress
