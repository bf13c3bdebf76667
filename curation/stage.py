"""Running one stage over one partition: the contract every stage shares.

A stage is a function `fn(table, rep) -> table` over a records table (`record_table`). The
runner here reads the partition, applies the stage, counts the reasons it gave over the rows
it changed (one place, so no stage counts for itself), writes the result atomically, then a
completion marker keyed by the input's key and the stage's settings. A rerun whose key
matches skips the partition and reuses its counts: a killed run resumes where it stopped,
and a rerun with nothing changed reads nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from . import storage
from .atomic import atomic_write_text
from .records import STATUSES


#: A stage's progress callback: records done since the last call.
Progress = Callable[[int], None]


def noop(_n: int) -> None:
    pass


def _never(_cfg) -> None:
    return None


def _nothing_to_say(_row: dict, _evidence: dict) -> list[str]:
    return []


@dataclass(frozen=True)
class ModelInfo:
    """The music model as the run uses it (`music.stage.model_info`), handed to every stage's
    `settings` and `setup` as `info`: its checksum, and whether its weights are real."""

    checkpoint: str
    labels_csv: str
    sha256: str
    random_init: bool
    published: bool


@dataclass(frozen=True)
class Stage:
    """One stage over the records table's partitions: all the runner needs to know of it.

    `settings(cfg, info)` is what its output depends on besides the input partition (with
    `version`, bumped when its decisions change, it keys the completion marker: a rerun whose
    key matches skips the partition). `setup(cfg, info, progress)` loads what the stage needs
    once per worker and returns its one function, `fn(table, rep) -> table`. `rerun_if(cfg)`
    says which finished partitions a matching marker does not settle (answers that were only
    "ask again"); `start_run(cfg)` runs once per run, before the first partition; `explain(row,
    evidence)` gives `curate explain`'s lines of what it did to a manifest row. `reads` and
    `writes` name the columns it reads and may write (`ev_*`: evidence), `reasons` the reason
    codes it may set with what each means (the stage list, `curation/stages.py`, assembles the
    whole table from them; the runner refuses a reason the stage did not declare)."""

    name: str
    version: int
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    reasons: Mapping[str, str]
    settings: Callable[[Any, Any], tuple]
    setup: Callable[[Any, Any, Progress], Callable[[pa.Table, "StageReport"], pa.Table]]
    count_passed: bool = True  # count the pending rows it lets by as `passed`
    rerun_if: Callable[[Any], Callable[[dict], bool] | None] = _never
    start_run: Callable[[Any], None] | None = None
    explain: Callable[[dict, dict], list[str]] = _nothing_to_say  # `curate explain`'s lines of it

    def key(self, cfg, info) -> str:
        """What its completion markers are keyed by, besides the input partition's key."""
        return settings_key(self.name, self.version, *self.settings(cfg, info), paths=cfg.portable)

    def run(self, cfg, info, src: str, dst: str, key: str, progress: Progress = noop) -> dict:
        """This stage over partition `src` into `dst` (the runner's marker keyed by `key`):
        what the flow's task and the CLI verbs that run one stage call."""
        return run_on_partition(self.name, self.setup(cfg, info, progress), src, dst, key,
                                count_passed=self.count_passed, rerun_if=self.rerun_if(cfg), reasons=self.reasons)


@dataclass(frozen=True)
class FanIn:
    """A step over all partitions at once, not one by one (ingest makes them; review applies one
    ledger and writes one queue; the release plans shards over every included record): it
    declares what it reads, writes and may decide as a `Stage` does, and `run` is its one
    function (its signature is its own: what the flow hands it)."""

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    reasons: Mapping[str, str]
    run: Callable[..., Any]
    explain: Callable[[dict, dict], list[str]] = _nothing_to_say


def settings_key(*parts: Any, paths: Callable[[Any], str] | None = None) -> str:
    """A short stable hash of settings (dataclasses, paths, plain values). `paths` writes each
    path (e.g. `Config.portable`: relative to the output or config folder, so a moved folder
    keeps its keys)."""
    def plain(v):
        if is_dataclass(v):
            return {f: plain(getattr(v, f)) for f in v.__dataclass_fields__}
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, Path) or type(v).__name__.endswith("Path"):
            return paths(v) if paths else str(v)
        return v
    text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _entries_key(entries: Iterable[tuple[str, int, str] | tuple[str, None, None]]) -> str:
    h = hashlib.sha256()
    for p, size, version in entries:
        line = f"{p}\0{size}\0{version}\n" if size is not None else f"{p}\0missing\n"
        h.update(line.encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:32]


def files_key(paths: Iterable[Path], name: Callable[[Any], str] = str) -> str:
    """What a rerun compares to tell whether input files changed: names (as `name` writes
    them), sizes, versions (mtimes; ETags on an object store), hashed as they come."""
    def entries():
        for p in paths:
            v = storage.file_version(p)
            yield (name(p), *v) if v else (name(p), None, None)
    return _entries_key(entries())


def folder_key(folder: Path) -> str:
    """`files_key` of everything under `folder` (names relative to it, so the key follows the
    folder when it moves), in a fixed order, from one listing (so a folder of half a million
    files is never held as a list, nor stat'ed one by one on a store)."""
    root = str(storage.url(folder)).rstrip("/") if storage.is_remote(folder) else str(folder).rstrip("/")

    def rel():
        for p, size, version in storage.listing(folder):
            yield (p[len(root):] if p.startswith(root) else p), size, version
    return _entries_key(rel())


@dataclass
class StageReport:
    """What a stage did, for the run summary and the logs."""

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None
    records: int | None = None

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def merge(self, counts: dict[str, int], notes: list[str] = ()) -> None:
        for k, v in counts.items():
            self.add(k, v)
        for n in notes:
            if n not in self.notes:
                self.notes.append(n)


def reason_counts(before: pa.Table, after: pa.Table, count_passed: bool) -> dict[str, int]:
    """Reasons counted over the rows a stage changed (status or reason), and with
    `count_passed`, how many pending rows it let by."""
    changed = pc.or_(pc.not_equal(before.column("status"), after.column("status")),
                     pc.not_equal(before.column("reason"), after.column("reason")))
    reasons = pc.if_else(pc.equal(after.column("reason"), ""), after.column("status"), after.column("reason"))
    counts = {item["values"]: item["counts"] for item in pc.value_counts(pc.filter(reasons, changed)).to_pylist()}
    if count_passed:
        passed = pc.sum(pc.and_(pc.equal(before.column("status"), "pending"), pc.invert(changed))).as_py() or 0
        if passed:
            counts["passed"] = passed
    return counts


def read_part(path: str | Path) -> pa.Table:
    return storage.read_parquet(path)


def write_part(path: Path, table: pa.Table) -> None:
    storage.write_parquet(path, table, compression="zstd")


def marker_path(part: Path) -> Path:
    return part.with_name(part.name.replace(".parquet", ".done.json"))


def part_digest(part: Path) -> list:
    """What a marker records of the part it vouches for: sha256 and size locally; size and
    ETag on an object store (not a download of every part at every run)."""
    if storage.is_remote(part):
        return list(storage.file_version(part) or ())
    from .audio import file_sha256

    return [file_sha256(part), os.path.getsize(part)]


def read_marker(part: Path) -> dict | None:
    """The marker of a finished part, or None when there is none or it cannot be trusted: a
    marker that does not parse, or a part whose bytes are not the ones the marker recorded
    (truncated, overwritten, garbage): the stage then runs again."""
    m = marker_path(part)
    if not (m.is_file() and part.is_file()):
        return None
    try:
        info = json.loads(m.read_text())
        if not isinstance(info, dict) or info.get("file") != part_digest(part):
            return None
        return info
    except (ValueError, OSError):
        return None


def write_marker(part: Path, info: dict) -> None:
    atomic_write_text(marker_path(part), json.dumps(info, sort_keys=True))


# Tallies of work done rather than of outcomes: a skipped partition did none of it this run.
WORK_DONE = ("scored", "cached")


class UndeclaredReason(RuntimeError):
    """A stage set a reason it does not declare: a bug in the stage, never bad input."""


def run_on_partition(name: str, fn: Callable[[pa.Table, StageReport], pa.Table], src: str, dst: str, key: str,
                     count_passed: bool = True, rerun_if: Callable[[dict], bool] | None = None,
                     reasons: Collection[str] | None = None) -> dict:
    """Apply stage `fn` to partition `src`, writing `dst` and its marker; or skip it when the
    marker says `dst` was made from the same key. Returns the marker: path, key, rows, counts,
    notes, and whether it was skipped."""
    src_p, dst_p = storage.as_path(src), storage.as_path(dst)
    prev = read_marker(dst_p)
    if prev is not None and prev.get("key") == key and not (rerun_if and rerun_if(prev)):
        counts = {k: v for k, v in prev.get("counts", {}).items() if k not in WORK_DONE}
        counts["unchanged"] = prev.get("rows", 0)
        return {**prev, "path": str(dst_p), "counts": counts, "skipped": True}  # where it is now
    t0 = time.perf_counter()
    before = read_part(src_p)
    rep = StageReport(name)
    after = fn(before, rep)
    if after.num_rows != before.num_rows:
        raise RuntimeError(f"stage {name} changed the number of records in {src_p.name}: "
                           f"{before.num_rows} in, {after.num_rows} out")
    counts = reason_counts(before, after, count_passed)
    if reasons is not None:
        undeclared = sorted(k for k in counts if k not in reasons and k not in (*STATUSES, "pending", "passed"))
        if undeclared:
            raise UndeclaredReason(f"stage {name} set reason(s) it does not declare: {', '.join(undeclared)}")
    for k, v in rep.counts.items():
        counts.setdefault(k, v)  # the stage's own tallies, where the reasons did not already count it
    write_part(dst_p, after)
    info = {"path": str(dst_p), "key": key, "rows": after.num_rows, "counts": counts, "notes": rep.notes,
            "seconds": round(time.perf_counter() - t0, 3), "file": part_digest(dst_p)}
    write_marker(dst_p, info)
    del before, after
    release_memory()
    return {**info, "skipped": False}


_PER_WORKER: dict[tuple, Any] = {}


def per_worker(key: tuple, make: Callable[[], Any]) -> Any:
    """What a stage loads once per worker process (a model, a catalogue, an index), made the
    first time `key` is asked for and kept for every later partition and run in the process.
    `key` names everything it was made from (a file's version, the settings), so a changed
    input is loaded again."""
    if key not in _PER_WORKER:
        _PER_WORKER[key] = make()
    return _PER_WORKER[key]


def release_memory() -> None:
    """Hand a finished partition's memory back to the system before the next is read: Arrow's
    allocator otherwise keeps it, and a run's peak grows with every partition."""
    pa.default_memory_pool().release_unused()
