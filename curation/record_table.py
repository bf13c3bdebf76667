"""Records as Arrow tables: what travels between stages.

A table holds one row per record: the `Record` fields as typed columns, and the evidence as
one JSON column per top-level evidence key (`ev_<key>`, null where the record has none), so
that a stage adds its evidence as a column without reading anyone else's. Stages decide in
columns where they can; where a record really needs Python (decoding its audio, asking a
service about it) they take just those rows as `Record`s (`to_records`) and put them back
(`from_records`, `replace_rows`).
"""
from __future__ import annotations

import json
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from .records import Record

EV = "ev_"
ROW = "_row"  # position in the partition, so rows taken out go back where they were

BASE = pa.schema([
    ("source", pa.string()),
    ("id", pa.string()),
    ("title", pa.string()),
    ("author", pa.string()),
    ("url", pa.string()),
    ("license_raw", pa.string()),
    ("license", pa.string()),
    ("gen_ai_preference", pa.string()),
    ("genai_present", pa.bool_()),
    ("license_url", pa.string()),
    ("tags", pa.list_(pa.string())),
    ("description", pa.string()),
    ("genres", pa.list_(pa.string())),
    ("audio_path", pa.string()),
    ("download_url", pa.string()),
    ("seen", pa.int32()),
    ("status", pa.string()),
    ("reason", pa.string()),
])
FIELDS = BASE.names


# One encoder made once: json.dumps with options builds a new one on every call.
_ENCODE = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str).encode


def ev_json(value: Any) -> str:
    """One evidence value as the manifest writes it (keys sorted, text as it is)."""
    return _ENCODE(value)


def row_keys(table: pa.Table) -> pa.Array:
    """Each row's (source, id) as one string (joined by a unit separator, which neither holds)."""
    return pc.binary_join_element_wise(table.column("source"), table.column("id"), "\x1f")


def rows_named(table: pa.Table, keys) -> pa.Array:
    """A mask of the rows whose (source, id) is one of `keys`."""
    named = pa.array([f"{s}\x1f{i}" for s, i in keys], type=pa.string())
    return pc.is_in(row_keys(table), value_set=named)


def ev_columns(table: pa.Table) -> list[str]:
    return sorted(c for c in table.column_names if c.startswith(EV))


def from_records(records: Iterable[Record]) -> pa.Table:
    records = list(records)
    cols: dict[str, list] = {f: [getattr(r, f) for r in records] for f in FIELDS}
    keys = sorted({k for r in records for k in r.evidence})
    for k in keys:
        cols[EV + k] = [ev_json(r.evidence[k]) if k in r.evidence else None for r in records]
    arrays = [pa.array(cols[f], type=BASE.field(f).type) for f in FIELDS]
    arrays += [pa.array(cols[EV + k], type=pa.string()) for k in keys]
    return pa.Table.from_arrays(arrays, names=FIELDS + [EV + k for k in keys])


def to_records(table: pa.Table) -> list[Record]:
    d = table.to_pydict()
    evs = ev_columns(table)
    out = []
    for i in range(table.num_rows):
        r = Record(**{f: d[f][i] for f in FIELDS})
        r.tags = list(r.tags or [])
        r.genres = list(r.genres or [])
        r.evidence = {c[len(EV):]: json.loads(d[c][i]) for c in evs if d[c][i] is not None}
        out.append(r)
    return out


def unify(tables: list[pa.Table]) -> pa.Table:
    """Tables with different evidence columns as one (missing columns are null)."""
    tables = [t for t in tables if t is not None]
    if not tables:
        return BASE.empty_table()
    return pa.concat_tables(tables, promote_options="default")


def with_rows(table: pa.Table) -> pa.Table:
    if ROW in table.column_names:
        table = table.drop_columns([ROW])
    return table.append_column(ROW, pa.array(range(table.num_rows), type=pa.int64()))


def replace_rows(table: pa.Table, mask: pa.Array, new: pa.Table) -> pa.Table:
    """`table` with the rows under `mask` replaced by `new` (the same rows, in the same order,
    as taken by `table.filter(mask)`), keeping every row where it was."""
    if new.num_rows == 0:
        return table
    t = with_rows(table)
    taken = t.filter(mask).column(ROW)
    if len(taken) != new.num_rows:
        raise ValueError(f"{new.num_rows} rows to put back for {len(taken)} taken")
    new = new.append_column(ROW, taken) if ROW not in new.column_names else new
    kept = t.filter(pc.invert(mask))
    out = unify([kept, new]).sort_by(ROW)
    return out.drop_columns([ROW])


def set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


def put(table: pa.Table, mask: pa.Array, columns: dict[str, pa.Array]) -> pa.Table:
    """Each of `columns` set on the rows under `mask`: its values are those rows', in order
    (as `table.filter(mask)` takes them); other rows keep theirs (a new column: null there)."""
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    for name, values in columns.items():
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        old = table.column(name) if name in table.column_names else pa.nulls(table.num_rows, values.type)
        old = old.combine_chunks() if isinstance(old, pa.ChunkedArray) else old
        table = set_column(table, name, pc.replace_with_mask(old, mask, values.cast(old.type)))
    return table


def where(mask: pa.Array, values, table: pa.Table, name: str) -> pa.Table:
    """Set column `name` to `values` on the rows under `mask` (others keep theirs)."""
    old = table.column(name) if name in table.column_names else pa.nulls(table.num_rows, pa.string())
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.scalar(values, type=old.type)
    return set_column(table, name, pc.if_else(mask, values, old))


def exclude(table: pa.Table, mask: pa.Array, reason: str) -> pa.Table:
    """The column form of `Record.exclude`: only pending rows under `mask` change."""
    mask = pc.and_(mask, pending(table))
    table = where(mask, "excluded", table, "status")
    return where(mask, reason, table, "reason")


def pending(table: pa.Table) -> pa.Array:
    return pc.equal(table.column("status"), "pending")


def per_distinct(table: pa.Table, columns: list[str], fn, outputs: dict[str, pa.DataType],
                 mask: pa.Array | None = None) -> dict[str, pa.Array]:
    """Run `fn(row) -> {output: value}` once per distinct combination of `columns` (a row is a
    dict of those columns) and give each row its combination's outputs; rows outside `mask`
    get nulls. Decisions that depend on a few repeated values (a license string, a gen-AI
    preference) cost one call per value, not one per record."""
    import numpy as np

    if table.num_rows == 0:
        return {k: pa.array([], type=t) for k, t in outputs.items()}
    parts = []
    for c in columns:
        col = table.column(c)
        if not pa.types.is_string(col.type):
            col = pc.cast(col, pa.string())
        parts.append(pc.fill_null(col, "\x00"))
    key = pc.binary_join_element_wise(*parts, "\x1f") if len(parts) > 1 else parts[0]
    if mask is not None:
        key = pc.if_else(mask, key, pa.scalar(None, pa.string()))
    enc = pc.dictionary_encode(key)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    valid = enc.indices.is_valid()  # rows outside `mask`
    idx = pc.fill_null(enc.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    first = np.full(len(enc.dictionary), -1, dtype=np.int64)
    order = np.nonzero(valid.to_numpy(zero_copy_only=False))[0][::-1]
    first[idx[order]] = order  # the last write wins: the first occurrence of each key
    results = [fn(row) for row in table.select(columns).take(pa.array(first)).to_pylist()]
    out = {}
    for name, typ in outputs.items():
        col = pc.take(pa.array([r.get(name) for r in results] or [None], type=typ), pa.array(idx))
        out[name] = col if pc.all(valid).as_py() else pc.if_else(valid, col, pa.scalar(None, typ))
    return out
