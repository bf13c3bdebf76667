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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, proc: subprocess.Popen, timeout_s: float, poll_s: float) -> str:
    """Poll `url`/health until it answers (""), the server exits ("exited") or `timeout_s`
    passes ("timeout")."""
    deadline = time.time() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return ""
        except OSError:
            if proc.poll() is not None:
                return "exited"
            if time.time() > deadline:
                return "timeout"
            time.sleep(poll_s)


def _end(proc: subprocess.Popen, grace_s: float) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def local_server(home: Path, timeout_s: float = 180) -> Iterator[str]:
    """Start `prefect server start` on a free local port with its database under `home`;
    yield its API URL, set in `os.environ` (which worker processes inherit) while it runs."""
    port = _free_port()
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    exe = Path(sys.executable).parent / "prefect"
    proc = subprocess.Popen([str(exe), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    before = os.environ.get("PREFECT_API_URL")
    try:
        if _wait_up(url, proc, timeout_s, 0.5):
            raise RuntimeError(f"the Prefect server did not start (exit code {proc.poll()})")
        os.environ["PREFECT_API_URL"] = url
        yield url
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        _end(proc, 30)


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

        self.port = _free_port()
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
        why = _wait_up(self.url, self.proc, timeout_s, 0.2)
        if why == "exited":
            self.log.seek(0)
            err = self.log.read().decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"the Prefect server exited ({self.proc.returncode})"
                               + (f": {err[-1][:300]}" if err else ""))
        if why == "timeout":
            raise RuntimeError(f"the Prefect server did not answer within {timeout_s:.0f} s "
                               "(set PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS for more)")

    def stop(self) -> None:
        _end(self.proc, 20)
        if os.environ.get("PREFECT_API_URL") == self.url:
            os.environ.pop("PREFECT_API_URL", None)
