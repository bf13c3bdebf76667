"""The curation flow as a Prefect deployment: a cron schedule, a process work pool, the config
path as its parameter. Built on Prefect's own deployment API (`flow.from_source(...).deploy`);
`curate deploy CONFIG` calls it against the server in `PREFECT_API_URL`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = "flows/curate.py:curate_flow"


@dataclass
class Deployed:
    id: str
    name: str  # "curate/<deployment name>", as `prefect deployment run` takes it
    work_pool: str
    cron: str
    timezone: str
    config_path: str
    interval_seconds: int = 0

    @property
    def schedule(self) -> str:
        return f"every {self.interval_seconds} s" if self.interval_seconds else f"'{self.cron}' {self.timezone}"


def ensure_process_pool(name: str) -> bool:
    """Create the process work pool `name` when the server has none of that name; True if created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            return True
    if pool.type != "process":
        raise ValueError(f"work pool {name!r} exists with type {pool.type!r}, not 'process'")
    return False


def deploy(config_path: str | Path, name: str, work_pool: str, cron: str, timezone: str = "UTC",
           paused: bool = False, interval_seconds: int = 0) -> Deployed:
    """Create or update the deployment `curate/<name>`: `curate_flow(config_path)` from this
    checkout's code, run by a worker of `work_pool` at each `cron` time in `timezone` (or every
    `interval_seconds`, when that is > 0)."""
    from prefect import flow
    from prefect.schedules import Cron, Interval

    config_path = str(Path(config_path).resolve())
    ensure_process_pool(work_pool)
    remote = flow.from_source(source=str(REPO), entrypoint=ENTRYPOINT)
    schedule = Interval(interval_seconds, timezone=timezone) if interval_seconds > 0 else Cron(cron, timezone=timezone)
    dep_id = remote.deploy(name=name, work_pool_name=work_pool, schedule=schedule,
                           parameters={"config_path": config_path}, paused=paused, build=False, push=False,
                           concurrency_limit=1,  # one run at a time over one output
                           print_next_steps=False, ignore_warnings=True,
                           description="Audio dataset curation: ingest, licenses, music, copyright, release")
    return Deployed(str(dep_id), f"curate/{name}", work_pool, cron, timezone, config_path, interval_seconds)
