"""The flow as a Prefect deployment on a real server: `curate deploy`, a process worker, a
scheduled run and a triggered one, their artifacts read back through the API, and the API
token in none of the logs, artifacts or outputs. Nothing here is mocked."""
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curation.storage import read_pandas
from tests.conftest import cli_env, curate
from tests.fake_freesound import TOKEN, FakeFreesound, sounds_for
from tests.test_flow_live import CONFIG, ogg

pytestmark = pytest.mark.slow

DEPLOYMENT = """
[deployment]
name = "every-minute"
work_pool = "curation-test"
cron = "* * * * *"
timezone = "UTC"
interval_seconds = 10
"""


def _runs(deployment_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async def go():
        async with get_client() as c:
            return await c.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    return asyncio.run(go())


async def _deployment_id(name: str):
    from prefect.client.orchestration import get_client

    async with get_client() as c:
        return (await c.read_deployment_by_name(name)).id


def _bind(fn, arg):
    def call():
        return fn(arg)
    call.runs = fn.runs
    return call


async def _pause(deployment_id: str) -> None:
    from prefect.client.orchestration import get_client

    async with get_client() as c:
        await c.pause_deployment(deployment_id)
        for r in await c.read_flow_runs():
            if str(r.deployment_id) == deployment_id and r.auto_scheduled and \
                    r.state_type.value in ("SCHEDULED", "PENDING"):
                await c.delete_flow_run(r.id)


def _wait(pred, timeout: float, what: str, worker: subprocess.Popen, log: Path):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        if worker.poll() is not None:
            raise AssertionError(f"the worker exited ({worker.returncode}): {log.read_text()[-3000:]}")
        time.sleep(2)
    runs = [(r.name, r.state_name, r.auto_scheduled, str(r.expected_start_time)) for r in pred.runs()]
    raise AssertionError(f"timed out waiting for {what}; runs {runs}: {log.read_text()[-3000:]}")


def test_a_deployment_runs_on_its_schedule_and_on_demand(tmp_path, demo_dir, monkeypatch, prefect_api):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    from flows.server import local_server

    # the server's scheduler and the worker's polling, fast enough for a test
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "5")
    monkeypatch.delenv("FREESOUND_API_TOKEN", raising=False)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    import contextlib

    # the session's server (its scheduler loops every 5 s: conftest), or one of the test's own
    server = contextlib.nullcontext(prefect_api) if prefect_api else local_server(tmp_path / "server_home")
    with FakeFreesound([], {}) as srv, server as api_url, temporary_settings(updates={PREFECT_API_URL: api_url}):
        srv.sounds = sounds_for(srv.url, [21, 22, 23])
        srv.sounds[2]["license"] = "http://creativecommons.org/licenses/by-nc/4.0/"
        srv.audio = {i: ogg(2.0, i) for i in (21, 22, 23)}
        cfg = tmp_path / "curate.toml"
        cfg.write_text(CONFIG.format(runner="local", url=srv.url, models=(demo_dir / "models").as_posix())
                       + DEPLOYMENT)

        env = cli_env(tmp_path)
        env["PREFECT_API_URL"] = api_url
        deployed = curate("deploy", str(cfg), env=env)
        dep_id = str(asyncio.run(_deployment_id("curate/every-minute")))
        assert dep_id in deployed.stdout
        assert "curate/every-minute" in deployed.stderr and "every 10 s" in deployed.stderr

        # the worker has the token; nothing else does
        wenv = dict(env, FREESOUND_API_TOKEN=TOKEN, PREFECT_WORKER_QUERY_SECONDS="2",
                    PREFECT_HOME=str(tmp_path / "worker_home"))
        log = tmp_path / "worker.log"
        prefect = str(Path(sys.executable).parent / "prefect")
        worker = subprocess.Popen([prefect, "worker", "start", "--pool", "curation-test", "--type", "process"],
                                  env=wenv, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        try:
            def done(auto: bool):
                return [r for r in _runs(dep_id) if r.auto_scheduled == auto and r.state_type.value == "COMPLETED"]
            done.runs = lambda: _runs(dep_id)

            def started(_):
                return [r for r in _runs(dep_id) if r.auto_scheduled and r.state_type.value in ("RUNNING", "COMPLETED")]
            started.runs = lambda: _runs(dep_id)

            _wait(_bind(started, None), 240, "a scheduled run to start", worker, log)
            # the first scheduled run is under way (10 s after the deployment): pause the schedule
            # and drop its runs not yet started, so the run on demand waits for no other
            asyncio.run(_pause(dep_id))
            scheduled = _wait(_bind(done, True), 240, "a scheduled run", worker, log)[0]
            failed = [r for r in _runs(dep_id) if r.state_type.value in ("FAILED", "CRASHED")]
            assert not failed, failed
            subprocess.run([prefect, "deployment", "run", "curate/every-minute"], env=env, check=True,
                           capture_output=True)
            triggered = _wait(_bind(done, False), 240, "the triggered run", worker, log)[0]
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a worker can sit on SIGTERM (once in CI): the runs are done
                worker.kill()
                worker.wait(timeout=30)

        assert scheduled.parameters == {"config_path": str(cfg.resolve())}
        out = tmp_path / "out"
        df = read_pandas(out / "manifests" / "records.parquet").set_index("id")
        assert set(df.index) == {"21", "22", "23"}
        assert df.loc["22", "status"] in ("included", "review") and df.loc["23", "reason"] == "license_not_allowed"

        async def read_back(run_id):
            async with get_client() as c:
                arts = await c.read_artifacts(artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
                logs = await c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
                return arts, logs

        for run in (scheduled, triggered):
            arts, logs = asyncio.run(read_back(run.id))
            by_key = {a.key: a for a in arts}
            assert set(by_key) == {"curation-run-summary", "curation-reasons", "curation-report", "curation-review"}
            waiting = int(df["status"].eq("review").sum())
            assert f"**{waiting:,} waiting for review**" in by_key["curation-review"].data
            assert f"curate review serve {cfg.resolve()}" in by_key["curation-review"].data
            # Prefect keeps a link artifact as Markdown: [text](link)
            assert by_key["curation-report"].data == f"[audit report]({(out / 'report' / 'index.html').as_uri()})"
            md = by_key["curation-run-summary"].data
            assert "**3 records**" in md and "| `license_not_allowed` | 1 |" in md and "RANDOMLY INITIALISED" in md
            table = json.loads(by_key["curation-reasons"].data)
            assert {"source": "freesound", "status": "excluded", "reason": "license_not_allowed", "records": 1} \
                in [{k: r[k] for k in ("source", "status", "reason", "records")} for r in table]
            assert logs, "the run's logs reached the server"
            for thing in [md, by_key["curation-reasons"].data] + [entry.message for entry in logs]:
                assert TOKEN not in thing
        # the second run saw the first's manifest: nothing changed in between
        summary = json.loads((out / "manifests" / "run_summary.json").read_text())
        assert summary["changes"]["first_run"] is False and summary["changes"]["changed"] == 0
        assert TOKEN not in log.read_text()
        for f in out.rglob("*"):
            if f.is_file():
                assert TOKEN.encode() not in f.read_bytes(), f
