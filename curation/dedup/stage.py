"""The evaluation-set stage: a record that a public evaluation set's published list names
(`[dedup] eval_lists`, read by `eval_lists.py`) is excluded with reason `eval_set` and the
names of the lists, before any audio is decoded for it."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .. import record_table as rt
from .. import storage
from ..config import Config
from ..stage import Stage, StageReport, files_key, per_worker


def load_lists(cfg: Config):
    """The configured lists, read once per worker process (again when a file changes)."""
    from .eval_lists import listed, read_eval_list

    paths = list(cfg.dedup.eval_lists)
    key = ("eval lists", tuple((str(p), storage.file_version(p)) for p in paths))
    return per_worker(key, lambda: listed([read_eval_list(p) for p in paths]))


def eval_sets_table(table: pa.Table, named: dict, rep: StageReport) -> pa.Table:
    """Pending rows that a list names, excluded, each with the lists that name it."""
    if not named or table.num_rows == 0:
        return table
    hit = pc.and_(rt.pending(table), rt.rows_named(table, named))
    if not pc.any(hit).as_py():
        return table
    sub = table.filter(hit)
    evidence = [rt.ev_json({"lists": named[(s, i)]})
                for s, i in zip(sub.column("source").to_pylist(), sub.column("id").to_pylist())]
    table = rt.put(table, hit, {"ev_eval_set": pa.array(evidence, pa.string())})
    return rt.exclude(table, hit, "eval_set")


def _setup(cfg, info, progress):
    named = load_lists(cfg) if cfg.dedup.eval_lists else {}
    return lambda t, rep: eval_sets_table(t, named, rep)


def explain(row: dict, ev: dict) -> list[str]:
    """The evaluation sets that list the record, for `curate explain`."""
    lists = (ev.get("eval_set") or {}).get("lists")
    return [f"  evaluation sets: listed in {', '.join(lists)}"] if lists else []


#: The reasons this stage may set, and what each means.
EVAL_SETS_REASONS = {
    "eval_set": "a public evaluation set ([dedup] eval_lists) holds the sound: training on it would leak its test data",
}


EVAL_SETS = Stage(
    name="eval_sets",
    version=1,
    reads=("source", "id", "status"),
    writes=("status", "reason", "ev_eval_set"),
    reasons=EVAL_SETS_REASONS,
    settings=lambda cfg, info: (files_key(list(cfg.dedup.eval_lists), cfg.portable),),
    setup=_setup,
    count_passed=False,  # what it lets by is not decided by it
    explain=explain,
)
