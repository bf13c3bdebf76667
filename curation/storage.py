"""Where files live: a local folder or an object store (`s3://`, `gs://`, ... through fsspec).

A path in the config may be a URL; `as_path` turns it into a `UPath` (universal_pathlib), which
has pathlib's API over fsspec, and leaves a local path a `pathlib.Path`. Most code then works on
either unchanged; what cannot (a decoder or `fpcalc` that opens a file by name, a write that must
appear whole) goes through the few functions here:

- `writing(dest)`: a local temporary file to write, moved into place (local) or uploaded as one
  object (a store's PUT is atomic: a reader sees the old object or the new one, never half).
- `local_copy(path)`: a local file to read: the path itself, or a cached download keyed by the
  object's URL, size and ETag, so a changed object is fetched again and an unchanged one once.
- `read_parquet`, `parquet_rows`, `listing`: Arrow and listings through the store's filesystem.

Credentials and the endpoint come from the store's own environment (for S3: `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, or `~/.aws`), never from the config, so they never
reach a manifest or a log; a Dask worker reads them from its own environment.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq

LOCAL_PROTOCOLS = ("", "file", "local")


def is_url(value: Any) -> bool:
    """True for a store URL such as `s3://bucket/key` (a `file://` URL is a local path)."""
    s = str(value)
    return "://" in s and not s.startswith("file://")


def as_path(value: Any):
    """A `Path` for a local path, a `UPath` for a store URL; paths pass through."""
    if value is None:
        return None
    if isinstance(value, Path):
        return value
    if is_remote(value):
        return value
    s = os.fspath(value) if not isinstance(value, str) and hasattr(value, "__fspath__") else str(value)
    if s.startswith("file://"):
        return Path(s[len("file://"):])
    if is_url(s):
        from upath import UPath

        return UPath(s)
    return Path(s)


def is_remote(path: Any) -> bool:
    protocol = getattr(path, "protocol", None)
    return protocol is not None and not isinstance(path, Path) and protocol not in LOCAL_PROTOCOLS


def url(path: Any) -> str:
    """The string that `as_path` turns back into the same path (tasks pass these)."""
    return str(path)


def _fs_path(path):
    """(filesystem, path within it) for Arrow, or (None, local path string)."""
    if is_remote(path):
        return path.fs, path.path
    return None, str(path)


def mkdirs(path) -> None:
    """A folder and its parents; nothing to do on an object store, which has no folders."""
    if not is_remote(path):
        Path(path).mkdir(parents=True, exist_ok=True)


@contextmanager
def writing(dest) -> Iterator[Path]:
    """Yield a local temporary path; when the block ends without an error, it becomes `dest`
    whole (os.replace locally, one upload to a store). On an error nothing appears at `dest`."""
    dest = as_path(dest)
    if is_remote(dest):
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=dest.suffix)
        os.close(fd)
        tmp_p = Path(tmp)
        try:
            yield tmp_p
            dest.fs.put_file(str(tmp_p), dest.path)
        finally:
            tmp_p.unlink(missing_ok=True)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_p = dest.with_name(f".tmp-{os.getpid()}-{dest.name}")
    try:
        yield tmp_p
        os.replace(tmp_p, dest)
    except BaseException:
        tmp_p.unlink(missing_ok=True)
        raise


def write_bytes(dest, data: bytes) -> None:
    """`data` as one object on a store (`atomic.atomic_write_bytes` for a local path)."""
    dest = as_path(dest)
    dest.fs.pipe_file(dest.path, data)


def cache_dir() -> Path:
    """Where downloaded copies of stored objects are kept (CURATE_CACHE_DIR, or the user cache)."""
    env = os.environ.get("CURATE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "audio-curation" / "objects"


def local_copy(path) -> Path:
    """A local file holding `path`'s bytes: `path` itself when local, else a cached download.
    Raises FileNotFoundError when the object does not exist."""
    path = as_path(path)
    if not is_remote(path):
        return Path(path)
    info = path.fs.info(path.path)
    if info.get("type") != "file":
        raise FileNotFoundError(str(path))
    tag = f"{path}\0{info.get('size')}\0{info.get('ETag') or info.get('etag') or info.get('mtime') or ''}"
    digest = hashlib.sha256(tag.encode("utf-8", "surrogateescape")).hexdigest()
    # The object's own suffix is kept: decoders pick a format by it.
    target = cache_dir() / digest[:2] / f"{digest[2:34]}{path.suffix.lower()}"
    if target.is_file() and target.stat().st_size == info.get("size"):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    try:
        path.fs.get_file(path.path, str(tmp))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def read_parquet(path, columns: list[str] | None = None, filters=None):
    """A Parquet file as a table: `columns` only, the rows `filters` (pyarrow's DNF) keep.

    On a store it is read in this thread, whole, and then filtered: Arrow's dataset reader
    over an fsspec file leaves I/O threads behind that call into Python, and now and then one
    aborts the process at exit ("terminate called without an active exception", exit -6;
    apache/arrow#39162, #34314): 4 of 60 `curate explain` runs against a local S3 did."""
    path = as_path(path)
    if is_remote(path):
        with path.fs.open(path.path, "rb") as f:
            table = pq.ParquetFile(f).read(columns=columns, use_threads=False)
        return table.filter(pq.filters_to_expression(filters)) if filters else table
    return pq.read_table(str(path), columns=columns, filters=filters)


def read_pandas(path, columns: list[str] | None = None):
    """A Parquet file as a pandas DataFrame, read by Arrow's own file reader.

    Not `pandas.read_parquet(path)`: pandas 2.0.2 (stable-audio-tools' pin) opens a local
    path as a Python file object and hands that to pyarrow, whose reader threads then call
    into Python; now and then the process aborts at exit after its work is done ("terminate
    called without an active exception", exit status 134): measured 1 in 100 plain
    `pd.read_parquet` runs of a demo manifest, 4 in 100 `pq.read_table(open(path, "rb"))`,
    0 in 100 `pq.read_table(path)` (benchmarks/exit_status.py)."""
    return read_parquet(path, columns=columns).to_pandas()


def parquet_file(path) -> pq.ParquetFile:
    path = as_path(path)
    if is_remote(path):
        return pq.ParquetFile(path.fs.open(path.path, "rb"))
    return pq.ParquetFile(path)


def parquet_rows(path) -> int:
    return parquet_file(path).metadata.num_rows


def write_parquet(path, table, **kwargs) -> None:
    """A table written whole to `path` (see `writing`)."""
    with writing(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


def listing(folder) -> Iterator[tuple[str, int, str]]:
    """(path, size, version) of every file under `folder`, sorted by path, from one listing;
    version is the mtime in ns locally, the ETag (or mtime) on a store."""
    folder = as_path(folder)
    if is_remote(folder):
        found = folder.fs.find(folder.path, detail=True)
        proto = folder.protocol
        for name in sorted(found):
            info = found[name]
            if info.get("type", "file") != "file":
                continue
            version = info.get("ETag") or info.get("etag") or str(info.get("mtime") or info.get("LastModified") or "")
            yield f"{proto}://{name}", int(info.get("size") or 0), str(version)
        return
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(root, name)
            try:
                st = os.stat(p)
            except OSError:
                continue
            yield p, st.st_size, str(st.st_mtime_ns)


def entries(folder) -> Iterator[tuple[str, Any]]:
    """(name, path) of each file directly in `folder` (not below), from one listing."""
    folder = as_path(folder)
    if is_remote(folder):
        proto = folder.protocol
        for info in folder.fs.ls(folder.path, detail=True):
            if info.get("type") == "file":
                name = info["name"].rstrip("/").rsplit("/", 1)[-1]
                yield name, as_path(f"{proto}://{info['name']}")
        return
    with os.scandir(folder) as it:
        for e in it:
            if e.is_file():
                yield e.name, Path(e.path)


def file_version(path) -> tuple[int, str] | None:
    """(size, version) of one file, None when it is missing (see `listing` for version)."""
    path = as_path(path)
    try:
        if is_remote(path):
            info = path.fs.info(path.path)
            if info.get("type") != "file":
                return None
            return int(info.get("size") or 0), str(info.get("ETag") or info.get("etag") or info.get("mtime") or "")
        st = os.stat(path)
        return st.st_size, str(st.st_mtime_ns)
    except (OSError, FileNotFoundError):
        return None
