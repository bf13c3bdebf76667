"""The manifest: the final records (each included one with its shard) written as one sorted file,
with the run's tallies and the history of what changed."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from curation import record_table as rt
from curation import storage
from curation.config import Config
from curation.stage import release_memory


def manifest_parts(parts: list[str], shards_path: str, cfg: Config) -> tuple[str, dict]:
    """The final records (each included one with its shard) as the manifest, one sorted file;
    returns its path and the run's tallies (manifests.run_report.Tally) with the changes
    since the manifest it replaced."""
    import tempfile

    from manifests.run_report import Tally, changes, history_rows, previous_decisions
    from manifests.schema import SortedManifestWriter, manifest_table, sort_keys

    shards = storage.read_parquet(shards_path)
    tally = Tally()
    path = cfg.output_dir / "manifests" / "records.parquet"
    storage.mkdirs(path.parent)
    before = previous_decisions(path)
    keys = pa.chunked_array([c for p in parts
                             for c in sort_keys(storage.read_parquet(p, columns=["source", "id"])).chunks],
                            type=pa.string())
    # The sort's spill files stay on local disk, also when the output is on an object store.
    scratch = (Path(tempfile.mkdtemp(prefix="curate-manifest-")) if storage.is_remote(cfg.work_dir)
               else cfg.work_dir / "stages" / "manifest")
    writer = SortedManifestWriter(path, keys, scratch, cfg.partition_records)
    del keys
    for p in parts:
        t = storage.read_parquet(p)
        key = pc.binary_join_element_wise(t.column("source"), t.column("id"), "_")
        at = pc.index_in(key, value_set=shards.column("key"))
        ev = pc.binary_join_element_wise('"', pc.take(shards.column("shard"), at), '"', "")
        t = rt.where(pc.is_valid(at), ev, t, rt.EV + "shard")
        m = manifest_table(t)
        tally.add(m)
        writer.add(m)
        del t, m
        release_memory()
    writer.close()
    if storage.is_remote(cfg.work_dir):
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    after = storage.read_parquet(path, columns=["source", "id", "status", "reason"])
    run_id, run_at = _run_identity()
    hist_dir = cfg.output_dir / "manifests" / "history"
    started = hist_dir.exists() and any(p.name.endswith(".parquet") for p in hist_dir.iterdir())
    history = history_rows(before, after, run_id, run_at, full=not started)
    storage.write_parquet(hist_dir / f"{run_at:%Y%m%dT%H%M%SZ}-{run_id[:8]}.parquet", history)
    return str(path), {**tally.to_dict(), "changes": changes(before, after), "run_id": run_id,
                       "history_rows": history.num_rows}


def _run_identity():
    """(run id, now in UTC): the Prefect flow run's id, else a fresh one."""
    import uuid
    from datetime import datetime, timezone

    try:
        from prefect.runtime import flow_run

        rid = flow_run.id
    except Exception:  # outside a flow run
        rid = None
    return str(rid or uuid.uuid4()), datetime.now(timezone.utc).replace(microsecond=0)
