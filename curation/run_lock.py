"""One run per output folder: a second `curate run` (or `curate release`, or a scheduled run)
on the same output refuses with a clear message instead of interleaving writes.

The lock is an advisory `flock` on OUT/work/run.lock, held by the process for the whole run:
the kernel releases it when the process ends, however it ends (kill -9 included), so a killed
run never leaves it stuck. The file records who holds it, for the message. For an output on an
object store the lock file is local (under the object cache, keyed by the output URL): it keeps
runs on one machine apart, not runs on different machines (schedule those apart).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from . import storage


class RunLocked(RuntimeError):
    pass


def lock_path(output_dir) -> Path:
    if storage.is_remote(output_dir):
        digest = hashlib.sha256(storage.url(output_dir).encode()).hexdigest()[:32]
        return storage.cache_dir().parent / "locks" / f"{digest}.lock"
    return Path(output_dir) / "work" / "run.lock"


@contextmanager
def run_lock(output_dir, what: str = "curate run") -> Iterator[None]:
    path = lock_path(output_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except ValueError:
                holder = {}
            who = (f"{holder.get('what', 'a run')}, pid {holder.get('pid')} on {holder.get('host')}, "
                   f"since {holder.get('started_at')}") if holder else "another process"
            raise RunLocked(f"another run is working on {storage.url(output_dir)} ({who}): wait for it to "
                            f"finish (the lock {path} is released when that process ends)") from None
        info = {"what": what, "pid": os.getpid(), "host": socket.gethostname(),
                "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
