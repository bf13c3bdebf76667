from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_ROOT = REPO.parent / "shared"  # real files for some tests; absent on a user's clone
SHARED = SHARED_ROOT / "audioset"


@pytest.fixture(scope="session")
def labels_csv() -> Path:
    """The AudioSet class list the package ships (what the demo and the music stage use)."""
    from curation.data import audioset_labels_csv

    return audioset_labels_csv()


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory, labels_csv) -> Path:
    """A randomly initialised Cnn14_DecisionLevelMax checkpoint of the real architecture."""
    from curation.music.detector import save_random_checkpoint

    path = tmp_path_factory.mktemp("panns") / "panns_random_init.pth"
    save_random_checkpoint(path, labels_csv, seed=0)
    return path


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory, labels_csv) -> Path:
    """The demo inputs, written once; tests copy what they change."""
    from curation.demo import write_demo

    root = tmp_path_factory.mktemp("demo")
    write_demo(root, labels_csv)
    return root


@pytest.fixture(scope="session", autouse=True)
def prefect_api(tmp_path_factory):
    """One Prefect server for the whole test run: every `curate` call and flow reports to it
    (PREFECT_API_URL) instead of starting a temporary server of its own (15-20 s each here).
    CURATION_TEST_EPHEMERAL=1 runs each call on its own temporary server, as a user's
    `curate run` does."""
    if os.environ.get("CURATION_TEST_EPHEMERAL") == "1":
        yield None
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.server import local_server

    os.environ["CURATION_TEST_MUSIC_CACHE"] = str(tmp_path_factory.mktemp("music_cache"))
    home = tmp_path_factory.mktemp("prefect_server")
    os.environ["CURATION_TEST_PREFECT_HOME"] = str(home)
    # the scheduler loops every 5 s (the deployment test's interval schedule), not every 60 s
    loop = os.environ.get("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS")
    os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = "5"
    try:
        server = local_server(home)
        url = server.__enter__()
    finally:
        if loop is None:
            os.environ.pop("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", None)
        else:
            os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = loop
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        _flush_prefect()  # the last logs and events of in-process flows, while the server is up
        server.__exit__(None, None, None)


def _flush_prefect() -> None:
    try:
        from prefect.logging.handlers import APILogHandler

        APILogHandler.flush()
    except Exception:
        pass
    try:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all()
    except Exception:
        pass


def prefect_homes(tmp: Path) -> list[Path]:
    """Where a test's Prefect runs keep their state: its own home and the shared server's."""
    homes = [tmp / "prefect_home"]
    if os.environ.get("CURATION_TEST_PREFECT_HOME"):
        homes.append(Path(os.environ["CURATION_TEST_PREFECT_HOME"]))
    return homes


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, demo_dir) -> dict:
    """The demo as `make demo` runs it, once for the tests that only read its outputs (tests
    that change it copy it first)."""
    import shutil
    import time

    root = tmp_path_factory.mktemp("demo_run")
    shutil.copytree(demo_dir, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("out", "out*"))
    t0 = time.time()
    proc = curate("run", str(root / "curate.toml"), env=cli_env(root, music_cache=True))
    return {"root": root, "out": root / "out", "proc": proc, "seconds": time.time() - t0}


def cli_env(tmp: Path, music_cache: bool = False) -> dict:
    """The environment of a `curate` call. `music_cache`: the session's one music cache
    (CURATION_MUSIC_CACHE_DIR), for runs that do not count cache hits or damage the cache: the
    demo's audio is then scored once for the whole session, not once per run."""
    env = dict(os.environ)
    env.pop("CURATION_MUSIC_CACHE_DIR", None)
    if music_cache and os.environ.get("CURATION_TEST_MUSIC_CACHE"):
        env["CURATION_MUSIC_CACHE_DIR"] = os.environ["CURATION_TEST_MUSIC_CACHE"]
    env["PREFECT_HOME"] = str(tmp / "prefect_home")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # a loaded 2-core machine can take longer than the default to start the temporary server
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    env.pop("FREESOUND_API_TOKEN", None)
    return env


def curate(*args: str, env: dict | None = None, input: str | None = None, check: bool = True,
           timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed `curate` command the way a user does."""
    exe = Path(sys.executable).parent / "curate"
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, input=input,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"curate {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
