from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "audioset"
LABELS = SHARED / "class_labels_indices.csv"


@pytest.fixture(scope="session")
def labels_csv() -> Path:
    if LABELS.is_file():
        return LABELS
    from curation.demo import find_labels_csv

    found = find_labels_csv()
    if found is None:
        pytest.fail(f"the AudioSet class list is expected at {LABELS} (or set AUDIOSET_LABELS_CSV)")
    return found


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


def cli_env(tmp: Path) -> dict:
    env = dict(os.environ)
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
