"""`curate`: the command line. Each verb is a thin wrapper over a library function."""
from __future__ import annotations

import csv
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Audio dataset curation and licensing.")
licenses_app = typer.Typer(no_args_is_help=True, help="License normalisation.")
models_app = typer.Typer(no_args_is_help=True, help="Model weights for the music detector.")
music_app = typer.Typer(no_args_is_help=True, help="Music detection.")
copyright_app = typer.Typer(no_args_is_help=True, help="Copyright checks.")
app.add_typer(copyright_app, name="copyright")
quality_app = typer.Typer(no_args_is_help=True, help="Audio quality: silence, clipping, false bandwidth, channels.")
app.add_typer(quality_app, name="quality")
review_app = typer.Typer(no_args_is_help=True, help="Human review: the workspace and the static export.")
app.add_typer(review_app, name="review")
fingerprint_app = typer.Typer(no_args_is_help=True, help="The local landmark fingerprint index.")
app.add_typer(fingerprint_app, name="fingerprint")
app.add_typer(licenses_app, name="licenses")
app.add_typer(models_app, name="models")
app.add_typer(music_app, name="music")


class _ReleaseGroup(TyperGroup):
    """`curate release CONFIG` runs the release stage; `curate release diff|verify ...` the others."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["stage", *args]
        return super().parse_args(ctx, args)


release_app = typer.Typer(cls=_ReleaseGroup, no_args_is_help=True,
                          help="Release versions: `curate release CONFIG` publishes the last run's release as the "
                               "next version; `diff A B` and `verify DIR` compare and check versions.")
app.add_typer(release_app, name="release")

err = Console(stderr=True, soft_wrap=True)


def _tables() -> Console:
    """Where tables go: the terminal's width on a terminal; piped or redirected, their full
    width (rich would otherwise cut them at 80 columns)."""
    if sys.stdout.isatty():
        return Console(soft_wrap=True)
    return Console(soft_wrap=True, width=100_000)

# Prefect's temporary server sends usage telemetry from a background job that races the
# run for its SQLite database; a curation run has no use for it.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect waits 20 s for its temporary server by default; a loaded 2-core machine can take
# longer (measured: over 20 s while other jobs ran), and a run must not fail for that.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def _fail(msg: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, markup=True)
    raise typer.Exit(code)


@app.command("demo-data")
def demo_data(
    directory: Path = typer.Argument(..., help="Folder to write the demo inputs and curate.toml into."),
    labels_csv: Path = typer.Option(None, help="AudioSet class_labels_indices.csv (found automatically if not given)."),
) -> None:
    """Write demo inputs in the real formats and DIR/curate.toml."""
    from .demo import DEMO_BANNER, write_demo

    try:
        cfg = write_demo(directory, labels_csv)
    except (OSError, ValueError) as e:
        _fail(f"cannot write the demo into {directory}: {e.strerror or e}" if isinstance(e, OSError) else str(e))
    err.print(DEMO_BANNER, style="bold yellow", markup=False)
    typer.echo(str(cfg))


@contextmanager
def _progress_factory():
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as prog:

        def make(label: str, total: int):
            tid = prog.add_task(label, total=total)
            return lambda n: prog.advance(tid, n)

        yield make


@app.command()
def run(config: Path = typer.Argument(..., help="The run's TOML config.")) -> None:
    """Run the whole curation flow (in-process Prefect, no server needed)."""
    from .config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as e:
        _fail(str(e))
    server = _start_server()  # comes up while the pipeline is imported and the inputs checked
    from flows.curate import run as run_flow

    from .copyright.catalogue import CatalogueFormatError
    from .copyright.review import DecisionsError
    from .inputs import InputError, check_inputs
    from .sources.fma import FMAFormatError

    from .release.takedowns import TakedownError
    from .run_lock import RunLocked

    try:
        check_inputs(cfg)
        _wait_server(server)
        with _progress_factory() as make:
            summary = run_flow(config, progress=make, inputs_checked=True)
    except (InputError, CatalogueFormatError, FMAFormatError, TakedownError, DecisionsError, RunLocked) as e:
        _fail(str(e), 1)
    except OSError as e:
        _fail_on_full_disk(e)
    _report_run(summary)


def _start_server():
    """The run's temporary Prefect server, started now (flows/server.py: RunServer); None when
    PREFECT_API_URL names a server already."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    from flows.server import RunServer

    return RunServer()


def _wait_server(server) -> None:
    if server is None:
        return
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or 180)
    try:
        server.wait(timeout)
    except RuntimeError as e:
        _fail(str(e), 1)


def _fail_on_full_disk(e: OSError) -> None:
    """A full disk is said plainly (what finished is kept; the next run resumes); any other
    OSError is a bug to see in full."""
    import errno

    if e.errno != errno.ENOSPC:
        raise e
    _fail(f"No space left on device{f' writing {e.filename}' if e.filename else ''}: nothing partial was left "
          "visible; free some space and run again (finished work is kept and resumed)", 1)


def _report_run(summary: dict) -> None:
    mm = summary["music_model"]
    if mm["random_init"] or not mm["published"]:
        what = "RANDOMLY INITIALISED" if mm["random_init"] else "NOT the published PANNs checkpoint"
        err.print(f"[bold yellow]WARNING: the music model is {what} (sha256 {mm['sha256'][:16]}…): "
                  "its music decisions are not real.[/]")
    tr = summary.get("training")
    if tr and tr.get("t5", {}).get("random_init"):
        err.print("[bold yellow]WARNING: the T5 text encoder is a RANDOMLY INITIALISED stand-in: "
                  "the generated clip is not a real Stable Audio Open output.[/]")
    for c in ((tr or {}).get("memorised") or {}).get("clips", []):
        for m in c["records"]:
            err.print(f"[bold yellow]MEMORISED: the generated clip {c['clip']} holds {m['shared_seconds']} s of "
                      f"{m['record']} (from {m['at_seconds']} s of it), a training recording[/]", highlight=False)
    if summary.get("copyright_stopped"):
        from rich.markup import escape

        from .copyright.audio_id import stop_note

        err.print(f"[bold yellow]copyright: {escape(stop_note(summary['copyright_stopped']))}[/]", highlight=False)
    err.print(f"records: {summary['records']}  " + "  ".join(f"{k}: {v}" for k, v in summary["status"].items()))
    for reason, n in summary["reasons"].items():
        err.print(f"  {reason}: {n}")
    v = summary.get("release_version") or {}
    if v.get("published"):
        err.print(f"release {v['version']} published ({v['records']} records, {v['shards']} shards, "
                  f"{v['shards_shared_with_parent']} shared with {v['parent'] or 'no parent'})")
    elif v:
        err.print(f"release unchanged: still {v['version']}")
    typer.echo(summary["manifest"])


@app.command()
def audit(
    config: Path = typer.Argument(..., help="The run's TOML config."),
    query: str = typer.Argument(None, help="A canned query's name (see the list without one) or any SQL over "
                                "the views records, decisions, reviews, releases, release_records."),
    version: str = typer.Option(None, help="The release version for 'licenses' and 'since' (e.g. v2)."),
    record: str = typer.Option(None, help="SOURCE:ID for 'history' (e.g. freesound:1234)."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV on standard output."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines on standard output."),
    report: bool = typer.Option(False, "--report", help="Write OUT/report/index.html and print its path."),
) -> None:
    """Ask DuckDB about every run, decision, review and release of an output folder."""
    import json as json_mod

    from manifests.audit import CANNED, VIEWS, AuditError, connect, run_query

    from .config import ConfigError, load_config

    try:
        cfg = load_config(config, check_inputs=False)  # reads the output folder only
        con = connect(cfg.output_dir)
    except (ConfigError, AuditError) as e:
        _fail(str(e), 1)
    if report:
        from manifests.report import build

        try:
            typer.echo(str(build(cfg)))
        except AuditError as e:
            _fail(str(e), 1)
        except Exception as e:  # duckdb's own errors over a damaged or foreign output folder
            _fail(f"the report could not be made: {type(e).__name__}: {str(e).splitlines()[0]}", 1)
        return
    if not query:
        from rich.table import Table

        t = Table("view", "columns", title="views")
        for v in VIEWS:
            t.add_row(v, ", ".join(r[0] for r in con.execute(f"DESCRIBE {v}").fetchall()))
        _tables().print(t)
        t = Table("query", "what it answers", title="canned queries")
        for name, (what, _) in CANNED.items():
            t.add_row(name, what)
        _tables().print(t)
        return
    try:
        cols, rows = run_query(con, query, version=version, record=record)
    except AuditError as e:
        _fail(str(e), 1)
    except Exception as e:  # duckdb's own errors: a typo in SQL, an unknown column
        _fail(f"{type(e).__name__}: {e}", 1)
    if as_csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(cols)
        w.writerows(["" if v is None else v for v in r] for r in rows)
    elif as_json:
        for r in rows:
            typer.echo(json_mod.dumps(dict(zip(cols, r)), default=str, ensure_ascii=False))
    else:
        from rich.table import Table

        from rich.text import Text

        t = Table(*cols)
        for r in rows:  # as text, never as markup: metadata may hold [brackets]
            t.add_row(*(Text("" if v is None else str(v)) for v in r))
        _tables().print(t)
        err.print(f"{len(rows)} row(s)", markup=False)


@release_app.command("stage", hidden=True)
def release_stage(config: Path = typer.Argument(..., help="The run's TOML config."),
                  train: bool = typer.Option(False, "--train", help="Also fine-tune on the version "
                                             "([training] enabled); `curate run` trains by itself.")) -> None:
    """The release stage alone over the last run's decided records (takedowns and review
    decisions applied again), published as the next version if it changed. No training
    unless --train."""
    from .config import ConfigError
    from .copyright.review import DecisionsError
    from .inputs import InputError
    from .release.stage import NoRunYet
    from .release.takedowns import TakedownError
    from .run_lock import RunLocked

    try:
        server = _start_server()
        from flows.curate import run as run_flow

        _wait_server(server)
        with _progress_factory() as make:
            summary = run_flow(config, progress=make, release_only=True, train=train)
    except (ConfigError, InputError, NoRunYet, TakedownError, DecisionsError, RunLocked) as e:
        _fail(str(e), 1)
    except OSError as e:
        _fail_on_full_disk(e)
    _report_run(summary)


def _version_dir(value: str, config: Path | None) -> Path:
    p = Path(value)
    if not p.is_dir() and config is not None:
        from .config import ConfigError, load_config
        from .release.versions import releases_dir

        try:
            p = Path(releases_dir(load_config(config, check_inputs=False).output_dir)) / value
        except ConfigError as e:
            _fail(str(e))
    if not p.is_dir():
        _fail(f"no release version at {value}")
    return p


@release_app.command("diff")
def release_diff(
    a: str = typer.Argument(..., help="The older version: its folder, or its name (v1) with --config."),
    b: str = typer.Argument(..., help="The newer version."),
    config: Path = typer.Option(None, help="The run's TOML config, to name versions as v1, v2."),
    csv_out: Path = typer.Option(None, "--csv", help="Write the CSV here (default: standard output)."),
) -> None:
    """Records added, removed (with the reason) and changed (license, audio, metadata) from A to B:
    CSV `change,source,id,reason,detail`, and a summary on the terminal."""
    from .atomic import atomic_write_text
    from .release.diff import diff_versions, summary, to_csv

    da, db = _version_dir(a, config), _version_dir(b, config)
    try:
        rows = diff_versions(da, db)
    except FileNotFoundError as e:
        _fail(str(e))
    text = to_csv(rows)
    if csv_out:
        atomic_write_text(csv_out, text)
    else:
        sys.stdout.write(text)
    s = summary(rows)
    err.print(f"{da.name} -> {db.name}: {s['added']} added, {s['removed']} removed, {s['changed']} changed",
              markup=False)
    for reason, n in sorted(s["removed_by_reason"].items()):
        err.print(f"  removed, {reason}: {n}", markup=False)
    for kind, n in sorted(s["changed_by_kind"].items()):
        err.print(f"  changed, {kind}: {n}", markup=False)


@release_app.command("verify")
def release_verify(
    directory: Path = typer.Argument(..., help="A release version's folder (OUT/releases/vN, or a copy)."),
    manifest: Path = typer.Option(None, help="The manifest records must be allowed under (default: the "
                                  "current OUT/manifests/records.parquet next to OUT/releases, else the version's own)."),
) -> None:
    """Check every checksum, that attribution and shards match one to one, and that every record is
    allowed under the current manifest. Exits 1 on any problem."""
    from .release.verify import verify

    problems, checked = verify(directory, manifest)
    for p in problems:
        err.print(f"[red]FAIL[/] {escape(p)}", markup=True, highlight=False)
    if problems:
        err.print(f"{directory}: {len(problems)} problem(s)", markup=False)
        raise typer.Exit(1)
    err.print(f"{directory}: OK ({checked['records']} records, {checked['shards']} shards, "
              f"allowed under {checked['manifest']})", markup=False)


@app.command()
def deploy(
    config: Path = typer.Argument(..., help="The run's TOML config (its path is the deployment's parameter)."),
    name: str = typer.Option(None, help="Deployment name (default [deployment] name, 'daily')."),
    pool: str = typer.Option(None, help="Process work pool, created if missing (default [deployment] work_pool)."),
    cron: str = typer.Option(None, help="Cron schedule (default [deployment] cron, '0 3 * * *')."),
    timezone: str = typer.Option(None, help="The schedule's time zone (default [deployment] timezone, 'UTC')."),
    interval: int = typer.Option(None, help="Every this many seconds instead of the cron schedule "
                                 "(default [deployment] interval_seconds, 0: cron)."),
    paused: bool = typer.Option(False, help="Create the schedule paused."),
) -> None:
    """Deploy the flow to the Prefect server in PREFECT_API_URL on a cron (or interval) schedule."""
    from .config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as e:
        _fail(str(e))
    from flows.deploy import deploy as deploy_flow

    d = cfg.deployment
    try:
        if interval is not None and interval < 0:
            _fail("--interval must be >= 0 (0: the cron schedule)")
        got = deploy_flow(config, name or d.name, pool or d.work_pool, cron or d.cron, timezone or d.timezone,
                          paused=paused, interval_seconds=d.interval_seconds if interval is None else interval)
    except Exception as e:  # the server unreachable, a pool of another type, a bad schedule
        _fail(f"could not deploy: {type(e).__name__}: {e}", 1)
    err.print(f"deployment {got.name} ({got.id}): {got.schedule}, work pool {got.work_pool}, "
              f"config {got.config_path}")
    err.print(f"start a worker: prefect worker start --pool {got.work_pool}")
    err.print(f"run it now:     prefect deployment run '{got.name}'")
    typer.echo(got.id)


@app.command()
def explain(
    config: Path = typer.Argument(..., help="The run's TOML config."),
    source: str = typer.Argument(..., help="freesound or fma"),
    record_id: str = typer.Argument(..., metavar="ID"),
) -> None:
    """Print how one record was decided."""
    from manifests.explain import NotInManifest, explain_lines, find_row

    from .config import ConfigError, load_config

    try:
        cfg = load_config(config, check_inputs=False)  # reads the output folder only
        row = find_row(cfg.output_dir / "manifests" / "records.parquet", source, record_id)
    except (ConfigError, FileNotFoundError, NotInManifest) as e:
        _fail(str(e), 1)
    for line in explain_lines(row):
        typer.echo(line)


@licenses_app.command("classify")
def licenses_classify() -> None:
    """Raw license strings on stdin, one a line; CSV `raw,license,allowed` on stdout."""
    from .licenses.terms import classify

    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["raw", "license", "allowed"])
    for line in sys.stdin.read().splitlines():
        d = classify(line)
        w.writerow([line, d.license, "true" if d.allowed else "false"])


@models_app.command("fetch")
def models_fetch(
    dest: Path = typer.Argument(Path("models"), help="Folder for the checkpoint, class list and models.json."),
    zenodo_api: str = typer.Option(None, help="Zenodo records API URL of the PANNs checkpoint."),
    labels_url: str = typer.Option(None, help="URL of the AudioSet class list."),
) -> None:
    """Download the published PANNs checkpoint and class list, checked against their checksums."""
    from .music.models import LABELS_URL, ZENODO_API, FetchError, fetch_models

    if dest.exists() and not dest.is_dir():
        _fail(f"{dest} is a file: give a folder for the model files", 1)
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err) as prog:
        tid = prog.add_task("download", total=None)
        try:
            info = fetch_models(dest, zenodo_api or ZENODO_API, labels_url or LABELS_URL,
                                progress=lambda done, total: prog.update(tid, completed=done, total=total or None))
        except FetchError as e:
            _fail(str(e), 1)
        except OSError as e:
            _fail(f"cannot write into {dest}: {e.strerror or e}", 1)
    typer.echo(f"{dest / info['checkpoint']['file']}  sha256 {info['checkpoint']['sha256']}")
    typer.echo(f"{dest / info['labels']['file']}  sha256 {info['labels']['sha256']}")


@music_app.command("calibrate")
def music_calibrate(
    config: Path = typer.Argument(..., help="A run config: its [music] section gives the model and the rule."),
    music: Path = typer.Option(..., help="Known music: a folder of audio files, or a text file listing them."),
    non_music: Path = typer.Option(..., help="Known non-music: a folder, or a text file listing them."),
    out: Path = typer.Option(Path("calibration"), help="Folder for the report."),
) -> None:
    """Score known music and non-music; report the highest threshold that misses no music."""
    from .music.calibrate import calibrate, list_audio
    from .config import ConfigError, load_config
    from .music.stage import load_detector, model_info

    try:
        cfg = load_config(config)
        music_files, other_files = list_audio(music), list_audio(non_music)
    except (ConfigError, FileNotFoundError) as e:
        _fail(str(e))
    info = model_info(cfg)
    if info.random_init or not info.published:
        err.print("WARNING: the music model is not the published PANNs checkpoint "
                  f"({'randomly initialised' if info.random_init else 'unverified'}, sha256 {info.sha256[:16]}): "
                  "this calibration says nothing about the real model.", style="bold yellow", markup=False)
    cal = calibrate(load_detector(cfg, info), music_files, other_files, out, cfg.music.batch_size, cfg.music.workers)
    if cal.threshold is None:
        typer.echo(f"no threshold finds every known-music recording: {len(cal.missed_always)} can never pass "
                   f"the rule (see {out / 'recordings.csv'})")
    else:
        typer.echo(f"threshold {cal.threshold:.4f}: no known-music recording missed; "
                   f"false-positive rate on non-music {cal.false_positive_rate:.3f}")
    typer.echo(f"report: {out / 'calibration.json'}, {out / 'music_seconds_hist.png'}")


@quality_app.command("calibrate")
def quality_calibrate(
    config: Path = typer.Argument(..., help="A run config: its [quality] section is compared with what is found."),
    good: Path = typer.Option(..., help="Known-good audio: a folder of files, or a text file listing them."),
    bad: Path = typer.Option(..., help="Known-bad audio (silent, clipped, false bandwidth, ...): a folder or a list."),
    out: Path = typer.Option(Path("quality-calibration"), help="Folder for the report."),
) -> None:
    """For each quality measure, the threshold that keeps every known-good file, and what it catches of the bad."""
    from rich.table import Table

    from .config import ConfigError, load_config
    from .music.calibrate import list_audio
    from .quality.calibrate import calibrate

    try:
        cfg = load_config(config, check_inputs=False)
        good_files, bad_files = list_audio(good), list_audio(bad)
    except (ConfigError, FileNotFoundError) as e:
        _fail(str(e))
    cal = calibrate(good_files, bad_files, out)
    t = Table("measure", "[quality] key", "now", "keeps every good file", "worst good", "bad caught",
              title=f"{len(good_files)} good, {len(bad_files)} bad files")
    for m, r in cal.thresholds.items():
        t.add_row(m, r["key"], str(getattr(cfg.quality, r["key"])), f"{r['threshold']:g}", f"{r['good_worst']:g}",
                  f"{r['caught']} of {r['of']}")
    _tables().print(t)
    failed = sum(1 for r in cal.rows if r["error"])
    if failed:
        err.print(f"{failed} file(s) did not decode (see {out / 'files.csv'})", markup=False)
    typer.echo(f"report: {out / 'calibration.json'}, {out / 'files.csv'}")


@copyright_app.command("match")
def copyright_match(
    tracks_csv: Path = typer.Argument(..., help="FMA's fma_metadata/tracks.csv (its published layout)."),
    spotify_csv: Path = typer.Argument(..., help="The Spotify tracks table (dataset.csv schema)."),
    out: Path = typer.Option(..., help="CSV to write: id,flagged,score,candidate_track_id."),
    config: Path = typer.Option(None, help="A run's TOML config: match with its [copyright] thresholds, "
                                           "exactly as its runs do (default: the matcher's defaults)."),
) -> None:
    """Match FMA titles and artists against the Spotify table; one row per FMA track (the
    copyright stage of the flow, run over the tracks alone)."""
    import tempfile

    import pandas as pd

    from . import record_table as rt
    from .atomic import atomic_write_text
    from .config import Config, ConfigError, load_config
    from .copyright.stage import COPYRIGHT
    from .sources.fma import FMAFormatError, read_tracks
    from .stage import StageReport, noop

    try:
        cfg = load_config(config) if config else Config(path=Path(tempfile.gettempdir()) / "curate.toml",
                                                         output_dir=Path(tempfile.gettempdir()))
        cfg.copyright.spotify_tracks_csv = spotify_csv
        records = list(read_tracks(tracks_csv))
        ok = [r for r in records if not r.reason]
        rep = StageReport("copyright")
        table = COPYRIGHT.setup(cfg, None, noop)(rt.from_records(ok), rep)
    except (ConfigError, FMAFormatError, OSError, ValueError) as e:
        _fail(str(e))
    ev = [r.evidence.get("copyright", {}) for r in rt.to_records(table)]
    rows = pd.DataFrame({
        "id": [r.id for r in ok],
        "flagged": ["true" if e.get("flagged") else "false" for e in ev],
        "score": [round(float(e.get("score", 0.0)), 2) for e in ev],
        "candidate_track_id": [(e.get("candidate") or {}).get("track_id", "") if e.get("flagged") else "" for e in ev],
    })
    atomic_write_text(out, rows.to_csv(index=False, lineterminator="\n"))
    bad = len(records) - len(ok)
    err.print(f"{len(ok)} tracks matched, {rep.counts.get('review', 0)} flagged"
              + (f"; {bad} malformed rows skipped" if bad else ""), markup=False)
    typer.echo(str(out))


@fingerprint_app.command("index")
def fingerprint_index(
    reference_dir: Path = typer.Argument(..., help="Folder of reference recordings (searched recursively)."),
    index: Path = typer.Option(..., help="Index folder; created, or extended when it exists."),
) -> None:
    """Build or extend an index of reference recordings."""
    from .audio import AudioError
    from .music.calibrate import list_audio
    from .copyright.fingerprint import FingerprintIndex

    try:
        files = list_audio(reference_dir)
    except FileNotFoundError as e:
        _fail(str(e))
    added = skipped = failed = 0
    with FingerprintIndex(index) as ix, Progress(TextColumn("{task.description}"), BarColumn(),
                                                  MofNCompleteColumn(), TimeElapsedColumn(), console=err) as prog:
        tid = prog.add_task("indexing", total=len(files))
        for p in files:
            try:
                if ix.add(p, name=str(p.relative_to(reference_dir))):
                    added += 1
                else:
                    skipped += 1
            except AudioError as e:
                failed += 1
                err.print(f"skipped {p.name}: {e.reason} ({e.detail})", markup=False)
            prog.advance(tid)
        total = ix.count()
    typer.echo(f"{added} added, {skipped} already indexed, {failed} unreadable; {total} references in {index}")


@fingerprint_app.command("query")
def fingerprint_query(
    files: list[Path] = typer.Argument(..., help="Candidate recordings."),
    index: Path = typer.Option(..., help="Index folder."),
    max_false_match: float = typer.Option(1e-10, help="A match must be this unlikely by chance (estimated "
                                          "false-match probability; README: how it is calibrated)."),
) -> None:
    """CSV file,reference,offset_seconds,score,false_match_probability,spread_seconds,speed,pitch_semitones: one
    row per match found (speed: how many times as fast the file plays the reference; pitch_semitones: how far its
    pitch is moved; offset_seconds: where the reference's start falls in the file)."""
    from .audio import AudioError
    from .copyright.fingerprint import FingerprintError, FingerprintIndex

    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["file", "reference", "offset_seconds", "score", "false_match_probability", "spread_seconds",
                "speed", "pitch_semitones"])
    try:
        ix = FingerprintIndex(index, read_only=True)
    except FingerprintError as e:
        _fail(str(e))
    with ix:
        for f in files:
            try:
                for m in ix.query(f, max_false_match=max_false_match):
                    w.writerow([str(f), m.reference, f"{m.offset_seconds:.2f}", m.score,
                                f"{m.false_match_probability:.3g}", m.spread_seconds, f"{m.speed:g}",
                                f"{m.pitch_semitones:g}"])
            except AudioError as e:
                err.print(f"{f}: {e.reason} ({e.detail})", markup=False)


def main() -> None:  # pragma: no cover
    app()


@review_app.command("serve")
def review_serve(
    config: Path = typer.Argument(..., help="The run's TOML config."),
    host: str = typer.Option("127.0.0.1", help="Where to listen; beyond this machine a token is required."),
    port: int = typer.Option(8765, help="Port (0: any free one)."),
    token_env: str = typer.Option("CURATE_REVIEW_TOKEN", help="Environment variable holding the token."),
    token_block: str = typer.Option("", help="Else a Prefect Secret block holding it."),
    references: Path = typer.Option(None, help="The fingerprint index's reference recordings (the folder "
                                               "`curate fingerprint index` read): a match's passage of them plays "
                                               "beside the recording's."),
) -> None:
    """The review workspace: queue, items, decisions written to OUT/review/ledger.csv at once."""
    from .config import ConfigError, load_config
    from .review.server import LOCAL_HOSTS, make_app
    from .secrets import read_secret
    from .stages import REASONS

    try:
        cfg = load_config(config, check_inputs=False)
    except ConfigError as e:
        _fail(str(e), 1)
    token = read_secret(token_env, token_block)
    if host not in LOCAL_HOSTS and not token:
        _fail(f"--host {host} reaches beyond this machine: set a token in ${token_env} (or a Prefect Secret "
              "block, --token-block) first", 1)
    try:
        application = make_app(cfg.output_dir, REASONS, token if host not in LOCAL_HOSTS else "", references)
    except FileNotFoundError as e:
        _fail(str(e), 1)
    import uvicorn

    shown = f"[{host}]" if ":" in host else host
    err.print(f"review workspace for {cfg.output_dir}: http://{shown}:{port}/"
              + (" (open it with ?token=... once)" if host not in LOCAL_HOSTS else ""), markup=False)
    uvicorn.run(application, host=host, port=port, log_level="warning")


@review_app.command("export")
def review_export(config: Path = typer.Argument(..., help="The run's TOML config.")) -> None:
    """Write the static review page (OUT/review/index.html) from the queue, for offline review."""
    import json as json_mod

    import pyarrow.parquet as pq

    from .config import ConfigError, load_config
    from .copyright.review_page import write_review_page
    from .review.workspace import queue_path
    from .stages import REASONS

    try:
        cfg = load_config(config, check_inputs=False)
    except ConfigError as e:
        _fail(str(e), 1)
    qp = queue_path(cfg.output_dir)
    if not qp.is_file():
        _fail(f"no review queue at {qp}: run `curate run` first", 1)
    rows = pq.read_table(qp).to_pylist()
    queue = [{**r, "evidence": json_mod.loads(r["evidence"] or "{}")} for r in rows]
    path = cfg.output_dir / "review" / "index.html"
    write_review_page(path, queue, {(r["source"], r["id"]): r["audio_path"] for r in rows}, REASONS)
    typer.echo(str(path))
