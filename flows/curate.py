"""The curation flow: the stages (`curation/stages.py`, then review and release) as Prefect tasks, in order.

Runs in-process (`curate run CONFIG`, no server needed) or on a schedule from a Prefect
deployment; with `task_runner = "dask"` the per-partition stages are spread over a Dask
cluster. Records travel as Parquet partitions under OUT/work/stages; tasks pass their paths
and counts, never the records.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from curation import storage
from curation.release import stage as release
from curation.sources import ingest
from curation.atomic import atomic_write_text
from curation.config import Config, load_config
from curation.run_lock import run_lock
from curation.stage import ModelInfo, StageReport, settings_key
from curation.music.stage import model_info
from curation.stages import BETWEEN, BY_NAME, DUPLICATES, INGEST, REASONS, RELEASE, REVIEW

# Tasks never cache through Prefect: the stages keep their own content-keyed caches in
# OUT/work, which survive a killed run and are what makes a rerun cheap.
TASK = dict(cache_policy=NO_CACHE, persist_result=False)

Progress = Callable[[str, int], Callable[[int], None]]


def _no_progress(_label: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


@task(name="ingest", **TASK)
def ingest_task(cfg: Config) -> tuple[list[str], StageReport]:
    workers = cfg.ingest_workers or os.cpu_count() or 1
    return INGEST.run(cfg, cfg.work_dir / "stages" / "ingest", cfg.partition_records, workers)


@task(name="model-info", **TASK)
def model_info_task(cfg: Config) -> ModelInfo:
    return model_info(cfg)


@task(name="stage", **TASK)
def stage_task(name: str, src: str, dst: str, key: str, cfg: Config, info: ModelInfo,
               progress: Callable[[int], None] | None = None) -> dict:
    """One stage over one partition; only paths and counts cross the task boundary."""
    return BY_NAME[name].run(cfg, info, src, dst, key, progress or (lambda _n: None))


@task(name="duplicates", **TASK)
def duplicates_task(parts: list[tuple[str, str]], cfg: Config) -> tuple[list[tuple[str, str]], StageReport]:
    return DUPLICATES.run(parts, cfg, cfg.work_dir / "stages" / "duplicates")


@task(name="review", **TASK)
def review_task(parts: list[str], cfg: Config) -> tuple[list[str], int, StageReport]:
    from curation.copyright.review import write_queue
    from curation.copyright.review_page import write_review_page

    from curation.review.workspace import write_queue_table

    parts, queue, rep = REVIEW.run(parts, cfg, cfg.work_dir / "stages" / "review")
    write_queue_table(cfg.output_dir, queue, resolve=cfg.resolve)  # what `curate review serve` shows
    paths = {(q["source"], q["id"]): str(cfg.resolve(q.pop("audio_path")) or "") for q in queue}
    write_queue(cfg.output_dir / "review" / "queue.csv", queue)
    write_review_page(cfg.output_dir / "review" / "index.html", queue, paths, REASONS)
    return parts, len(queue), rep


@task(name="release-plan", **TASK)
def release_plan_task(parts: list[str], cfg: Config) -> tuple[str, list[tuple[str, str, str]], StageReport]:
    return RELEASE.run(parts, cfg)


@task(name="shard", **TASK)
def shard_task(name: str, job: str, fingerprint: str, cfg: Config,
               progress: Callable[[int], None] | None = None) -> int:
    return release.write_shard_job(name, job, fingerprint, cfg, progress)


def release_phase(parts: list[str], cfg: Config, progress: Progress | None = None) -> tuple[str, StageReport]:
    """Attribution and the plan in one task, then one task per shard to write (FLAC encode,
    tar, sha256), spread over the workers on Dask."""
    t0 = time.perf_counter()
    shards, jobs, rep = release_plan_task(parts, cfg)
    rep.notes.append(f"planned in {time.perf_counter() - t0:.1f} s; {len(jobs)} shard(s) to write")
    local = cfg.task_runner != "dask"
    bar = (progress or _no_progress)("release shards", rep.counts["records"])
    bar(rep.counts["records"] - sum(storage.parquet_rows(j) for _, j, _ in jobs))  # kept as they were
    futures = [shard_task.submit(name, job, fp, cfg, bar if local else None) for name, job, fp in jobs]
    for f in futures:
        n = f.result()
        if not local:
            bar(n)
    rep.counts["shards_written"] = len(jobs)
    return shards, rep


@task(name="manifest", **TASK)
def manifest_task(parts: list[str], shards: str, cfg: Config) -> tuple[str, dict]:
    from manifests.write import manifest_parts

    return manifest_parts(parts, shards, cfg)


@task(name="publish-version", **TASK)
def version_task(cfg: Config, info: ModelInfo) -> dict:
    return release.publish_version(cfg, info)


@task(name="audit-report", **TASK)
def report_task(cfg: Config) -> str | None:
    """OUT/report/index.html (manifests/report.py); a report that cannot be made only warns."""
    from manifests.audit import AuditError
    from manifests.report import build

    try:
        return str(build(cfg))
    except AuditError as e:
        get_run_logger().info("no audit report: %s", e)
    except Exception as e:  # the run's outputs are written; the report is a view of them
        get_run_logger().warning("could not write the audit report: %s: %s", type(e).__name__, e)
    return None


@task(name="train-and-generate", **TASK)
def training_task(cfg: Config, version: str) -> dict:
    """Fine-tune on the release version just published (or the last one, if unchanged)."""
    from curation.release.versions import DATASET_CONFIG, releases_dir
    from training.bridge import train_and_generate

    ds_config = storage.as_path(releases_dir(cfg.output_dir)) / version / DATASET_CONFIG
    report = train_and_generate(ds_config, cfg.training, cfg.output_dir / "training")
    report["memorised"] = memorised_check(cfg, cfg.output_dir / "training" / "generated.wav")
    return report


def memorised_check(cfg: Config, clip: Path) -> dict:
    """The generated clip looked up against the release's recordings (curation/dedup/memorised.py);
    a check that cannot run says why, and the run goes on."""
    from curation.audio import AudioError
    from curation.dedup.memorised import memorised

    try:
        return memorised(cfg, [clip])
    except (AudioError, OSError, ValueError) as e:
        get_run_logger().warning("could not look the generated clip up against the release: %s", e)
        return {"error": str(e)}


# Configs whose input tables `run` checked in this process before starting the flow.
_checked: set[str] = set()

# The progress display of the process that started the flow (see `run`).
_progress: list[Progress] = [_no_progress]


def _timed(rep: StageReport, t0: float, records: int) -> StageReport:
    rep.seconds = round(time.perf_counter() - t0, 3)
    rep.records = records
    return rep


def map_stage(name: str, parts: list[tuple[str, str]], cfg: Config, info: ModelInfo,
              progress: Progress) -> tuple[list[tuple[str, str]], StageReport]:
    """Run stage `name` over every partition on the flow's task runner: one task per
    partition, in any order; in-process, records are counted as they go, elsewhere as each
    partition completes."""
    logger = get_run_logger()
    stage = BY_NAME[name]
    settings = stage.key(cfg, info)
    out_dir = cfg.work_dir / "stages" / name
    total = sum(storage.parquet_rows(p) for p, _ in parts)
    bar = progress(name, total)
    local = cfg.task_runner != "dask"
    if stage.start_run is not None:
        stage.start_run(cfg)
    t0 = time.perf_counter()
    futures = []
    for i, (src, key) in enumerate(parts):
        dst = str(out_dir / f"part-{i:05d}.parquet")
        futures.append(stage_task.submit(name, src, dst, settings_key(key, settings), cfg, info,
                                         bar if local and name == "music" else None))
    rep = StageReport(name)
    out = []
    skipped = 0
    for f in futures:
        res = f.result()
        rep.merge(res["counts"], res["notes"])
        skipped += res["skipped"]
        out.append((res["path"], res["key"]))
        if not (local and name == "music") or res["skipped"]:
            bar(res["rows"])
    rep = _timed(rep, t0, total)
    if skipped:
        rep.notes.append(f"{skipped} of {len(parts)} partition(s) unchanged since the last run: skipped")
    logger.info("%s: %d records in %.1f s (%.0f records/s)%s", name, total, rep.seconds,
                total / rep.seconds if rep.seconds else 0, f", {skipped} partition(s) skipped" if skipped else "")
    return out, rep


def run_stages(cfg: Config, progress: Progress | None = None) -> dict:
    """The stages in order; called inside the flow, so every call below is a task run."""
    progress = progress or _progress[0]
    logger = get_run_logger()
    reports: list[StageReport] = []

    t0 = time.perf_counter()
    parts, rep = ingest_task(cfg)
    n = rep.counts.get("distinct", 0)
    reports.append(_timed(rep, t0, n))
    logger.info("ingest: %d distinct records in %d partition(s), %.1f s %s", n, len(parts), rep.seconds, rep.counts)
    keyed = list(zip(parts, ingest.ingest_part_keys(parts)))
    crawl = ingest.crawl_summary(cfg)

    info = model_info_task(cfg)
    if info.random_init or not info.published:
        what = "RANDOMLY INITIALISED" if info.random_init else "not the published PANNs checkpoint"
        logger.warning("music model %s is %s (sha256 %s): its music decisions are not real",
                       info.checkpoint, what, info.sha256[:16])
    for step in BETWEEN:
        if step is DUPLICATES:
            t0 = time.perf_counter()
            keyed, rep = duplicates_task(keyed, cfg)
            reports.append(_timed(rep, t0, n))
            logger.info("duplicates: %s in %.1f s", rep.counts, rep.seconds)
            continue
        keyed, rep = map_stage(step.name, keyed, cfg, info, progress)
        reports.append(rep)
    release.save_decided_parts(cfg, [p for p, _ in keyed])
    from curation.copyright.audio_id import RunStop, stop_note

    stopped = RunStop(cfg.work_dir).read()
    if stopped:
        logger.warning("copyright: %s", stop_note(stopped))
    return finish(cfg, info, [p for p, _ in keyed], n, reports, crawl, progress, stopped=stopped)


def finish(cfg: Config, info: ModelInfo, decided: list[str], n: int, reports: list[StageReport],
           crawl: dict | None, progress: Progress, train: bool = True, stopped: dict | None = None) -> dict:
    """Review, release, manifest and the release version, from the decided partitions (what
    `curate release` runs alone)."""
    t0 = time.perf_counter()
    parts, waiting, rep = review_task(decided, cfg)
    reports.append(_timed(rep, t0, n))
    t0 = time.perf_counter()
    shards, rep = release_phase(parts, cfg, progress)
    reports.append(_timed(rep, t0, rep.counts.get("records", 0)))
    t0 = time.perf_counter()
    manifest, tally = manifest_task(parts, shards, cfg)
    reports.append(_timed(StageReport("manifest"), t0, n))
    version = version_task(cfg, info)
    if version["published"]:
        get_run_logger().info("release %s published (parent %s): %d records in %d shards, %d shared with the parent",
                              version["version"], version["parent"], version["records"], version["shards"],
                              version["shards_shared_with_parent"])
    else:
        get_run_logger().info("release unchanged since %s: no new version", version["version"])

    report = report_task(cfg)

    training = None
    if cfg.training.enabled and train:
        training = training_task(cfg, version["version"])

    summary = {
        "release_version": version,
        "report": report,
        "records": sum(tally["status"].values()),
        "status": tally["status"],
        "reasons": tally["reasons"],
        "review_waiting": waiting,
        "review": _backlog(cfg, waiting),
        "music_model": {"checkpoint": info.checkpoint, "sha256": info.sha256, "random_init": info.random_init,
                        "published": info.published},
        "stages": [{"name": s.name, "counts": s.counts, "notes": s.notes, "seconds": s.seconds,
                    "records": s.records} for s in reports],
        "manifest": manifest,
        "training": training,
        "tally": {k: tally[k] for k in ("decisions", "licenses", "music")},
        "changes": tally["changes"],
        "crawl": crawl,
        "copyright_stopped": stopped,  # a spent quota or a refused key: the rest of the run was not asked
    }
    atomic_write_text(cfg.output_dir / "manifests" / "run_summary.json",
                      json.dumps(summary, indent=2, sort_keys=True, default=str))
    publish_artifacts(summary)
    return summary


def _backlog(cfg: Config, waiting: int) -> dict:
    """What waits for review, by reason, and where to review it (the run summary and its artifact)."""
    from curation.review import ledger
    from curation.review.workspace import queue_path

    by_reason: dict[str, int] = {}
    from curation import storage

    try:
        for r in storage.read_parquet(queue_path(cfg.output_dir), columns=["reason"]).column("reason").to_pylist():
            by_reason[r] = by_reason.get(r, 0) + 1
    except Exception:  # no queue file (nothing waits), or the store could not be read: counts stay empty
        pass
    return {"waiting": waiting, "by_reason": by_reason, "config": str(cfg.path),
            "page": str(cfg.output_dir / "review" / "index.html"),
            "decided_in_workspace": len(ledger.read(ledger.ledger_path(cfg.output_dir)))}


def publish_artifacts(summary: dict) -> None:
    from flows.artifacts import publish

    try:
        publish(summary)
    except Exception as e:  # the run's outputs are written: an API hiccup must not fail it
        get_run_logger().warning("could not publish the run's artifacts: %s: %s", type(e).__name__, e)


def release_stages(cfg: Config, progress: Progress | None = None, train: bool = False) -> dict:
    """The release stage alone over the last run's decided partitions: takedowns and review
    decisions applied again, the release, manifest and version (training only when asked)."""
    progress = progress or _progress[0]
    decided = release.load_decided_parts(cfg)
    n = sum(storage.parquet_rows(p) for p in decided)
    info = model_info_task(cfg)
    return finish(cfg, info, decided, n, [], None, progress, train=train)


@flow(name="curate-release", log_prints=True)
def release_flow(config_path: str, train: bool = False) -> dict:
    """`curate release CONFIG [--train]`: the release stage of the last run, published as a version."""
    cfg = load_config(config_path)
    with run_lock(cfg.output_dir, "curate release"):
        return release_stages(cfg, train=train)


@flow(name="curate", log_prints=True)
def curate_flow(config_path: str) -> dict:
    """The whole curation run for one config file."""
    # Prefect ships this function, by value, to Dask workers with each task: it must name
    # nothing that does not pickle (such as the progress display, which run_stages looks up).
    from curation.inputs import check_inputs

    cfg = load_config(config_path)
    if config_path not in _checked:  # a scheduled run checks its tables here; `run` did already
        check_inputs(cfg)
    with run_lock(cfg.output_dir, "curate run"):
        return run_stages(cfg)


def task_runner_for(cfg: Config):
    if cfg.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=cfg.dask_address) if cfg.dask_address else DaskTaskRunner()
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=1)


def run(config_path: str | Path, progress: Progress = _no_progress, release_only: bool = False,
        train: bool = False, inputs_checked: bool = False) -> dict:
    """Load and validate the config (a bad one stops here with a ConfigError), then run the
    flow (`release_only`: the release stage of the last run alone)."""
    from curation.inputs import check_inputs

    cfg = load_config(config_path)
    if not inputs_checked:
        check_inputs(cfg)  # a damaged input table stops the run before it starts (InputError)
    if release_only:
        release.load_decided_parts(cfg)  # no earlier run: say so before starting Prefect
    with run_lock(cfg.output_dir):  # another run at work: say so before starting Prefect (the flow locks)
        pass
    _progress[0] = progress
    _checked.add(str(Path(config_path).resolve()))  # the flow below need not check them again
    runner = task_runner_for(cfg)
    try:
        if release_only:
            return release_flow.with_options(task_runner=runner)(str(Path(config_path).resolve()), train=train)
        return curate_flow.with_options(task_runner=runner)(str(Path(config_path).resolve()))
    finally:
        _progress[0] = _no_progress
        _checked.discard(str(Path(config_path).resolve()))
