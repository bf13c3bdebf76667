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
