"""A Prefect server of the run's own, for flows whose tasks run in other processes.

Dask workers report each task to Prefect's API. Without a server to share, every worker
process starts a temporary one of its own (10-15 s of CPU each, and on a loaded machine it
can time out); with `PREFECT_API_URL` in their environment they all use one.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def local_server(home: Path, timeout_s: float = 180) -> Iterator[str]:
    """Start `prefect server start` on a free local port with its database under `home`;
    yield its API URL, set in `os.environ` (which worker processes inherit) while it runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    exe = Path(sys.executable).parent / "prefect"
    proc = subprocess.Popen([str(exe), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    before = os.environ.get("PREFECT_API_URL")
    try:
        deadline = time.time() + timeout_s
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the Prefect server did not start (exit code {proc.poll()})") from None
                time.sleep(0.5)
        os.environ["PREFECT_API_URL"] = url
        yield url
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _die_with_parent() -> None:
    """In the server's process, before it runs: end it when the command that started it ends,
    however that ends (a kill -9 of the command must not leave a server behind)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


class RunServer:
    """The temporary Prefect server of one `curate run` or `curate release`, started as the
    command starts, so the server comes up (8-15 s here) while the command imports the
    pipeline and checks its inputs, instead of after.

    It is the server Prefect would start for the flow (the same uvicorn app, no UI, the
    services of a temporary server, the database under PREFECT_HOME), started earlier, and
    waited for with the command's own margin (a loaded machine is slow to start it). It is
    stopped at exit, after Prefect's own exit handlers have sent the last logs."""

    def __init__(self) -> None:
        import atexit

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/api"
        env = dict(os.environ, PREFECT_UI_ENABLED="0", PREFECT__SERVER_EPHEMERAL="1", PREFECT__SERVER_FINAL="1",
                   PREFECT_SERVER_ANALYTICS_ENABLED="false")
        env.pop("PREFECT_API_URL", None)
        import tempfile

        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log, preexec_fn=_die_with_parent)
        # before Prefect is imported: the flow reports here, and no temporary server is started
        os.environ["PREFECT_API_URL"] = self.url
        atexit.register(self.stop)  # registered first, so it runs after Prefect's handlers

    def wait(self, timeout_s: float) -> None:
        """Return once the server answers; RuntimeError (with why) if it exits or is not up in time."""
        deadline = time.time() + timeout_s
        while True:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None:
                    self.log.seek(0)
                    err = self.log.read().decode(errors="replace").strip().splitlines()
                    raise RuntimeError(f"the Prefect server exited ({self.proc.returncode})"
                                       + (f": {err[-1][:300]}" if err else "")) from None
                if time.time() > deadline:
                    raise RuntimeError(f"the Prefect server did not answer within {timeout_s:.0f} s "
                                       "(set PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS for more)") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if os.environ.get("PREFECT_API_URL") == self.url:
            os.environ.pop("PREFECT_API_URL", None)
