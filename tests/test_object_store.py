"""Inputs, output and shards on an object store: a local S3 server (moto in server mode,
started here) behind fsspec, as a Dask cluster's workers would share one."""
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from curation.storage import read_pandas
from tests.conftest import cli_env, curate

BUCKET = "curation-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a loopback port, the AWS variables pointing at it (credentials are
    moto's dummies), a bucket, and an fsspec filesystem on it."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
           "CURATE_CACHE_DIR": str(tmp_path_factory.mktemp("object-cache"))}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"moto server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir(BUCKET)
        yield {"fs": fs, "env": env, "endpoint": endpoint}
    proc.terminate()
    proc.wait(timeout=30)


def test_writes_are_whole_or_absent(s3):
    from curation import storage

    fs = s3["fs"]
    dest = storage.as_path(f"s3://{BUCKET}/w/part.bin")
    with pytest.raises(RuntimeError):
        with storage.writing(dest) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed while writing")
    assert not fs.exists(f"{BUCKET}/w/part.bin")
    with storage.writing(dest) as tmp:
        tmp.write_bytes(b"whole")
    assert fs.cat(f"{BUCKET}/w/part.bin") == b"whole" and not tmp.exists()


def test_local_copies_follow_the_object(s3, tmp_path):
    from curation import storage
    from curation.audio import AudioError, local_audio

    fs = s3["fs"]
    fs.pipe(f"{BUCKET}/a/1.wav", b"one")
    first = storage.local_copy(f"s3://{BUCKET}/a/1.wav")
    assert first.read_bytes() == b"one" and first.suffix == ".wav"
    assert storage.local_copy(f"s3://{BUCKET}/a/1.wav") == first  # cached
    fs.pipe(f"{BUCKET}/a/1.wav", b"changed")  # a new object: a new ETag, fetched again
    again = storage.local_copy(f"s3://{BUCKET}/a/1.wav")
    assert again != first and again.read_bytes() == b"changed"
    with pytest.raises(AudioError) as e:
        local_audio(f"s3://{BUCKET}/a/missing.wav")
    assert e.value.reason == "audio_missing"
    local = tmp_path / "x.wav"
    assert storage.local_copy(local) == local  # a local path is its own copy


def test_listings_and_versions(s3):
    from curation import storage
    from curation.sources.freesound import audio_index, page_files
    from curation.stage import files_key, folder_key

    fs = s3["fs"]
    for name in ("2.wav", "2.mp3", "10.flac", "notes.txt", "x.wav"):
        fs.pipe(f"{BUCKET}/l/audio/{name}", b"a")
    fs.pipe(f"{BUCKET}/l/audio/sub/3.wav", b"a")
    for name in ("page_10.json", "page_2.json", "README"):
        fs.pipe(f"{BUCKET}/l/pages/{name}", b"{}")
    index = audio_index(storage.as_path(f"s3://{BUCKET}/l/audio"))
    assert {k: v.name for k, v in index.items()} == {"2": "2.wav", "10": "10.flac"}  # not below the folder
    assert [p.name for p in page_files(storage.as_path(f"s3://{BUCKET}/l/pages"))] == ["page_2.json", "page_10.json"]
    folder = storage.as_path(f"s3://{BUCKET}/l/audio")
    k1 = folder_key(folder)
    assert folder_key(folder) == k1
    fs.pipe(f"{BUCKET}/l/audio/10.flac", b"new content")
    assert folder_key(folder) != k1
    one = f"s3://{BUCKET}/l/audio/2.wav"
    assert storage.file_version(one)[0] == 1 and storage.file_version(f"s3://{BUCKET}/l/none") is None
    assert files_key([storage.as_path(one)]) == files_key([storage.as_path(one)])


def test_partitions_and_markers_on_the_store(s3):
    """The stage runner's contract (skip on a matching marker) with both ends on the store."""
    from curation import record_table as rt
    from curation import storage
    from curation.sources import freesound
    from curation.stage import read_marker, run_on_partition, write_part

    recs = [freesound.result_to_record({"id": i, "name": f"s{i}", "license": "cc0", "username": "u"}, str(i))
            for i in range(1, 5)]
    src = f"s3://{BUCKET}/stages/ingest/part-00000.parquet"
    dst = f"s3://{BUCKET}/stages/licenses/part-00000.parquet"
    write_part(storage.as_path(src), rt.from_records(recs))
    calls = []

    def stage(t, rep):
        calls.append(t.num_rows)
        return rt.exclude(t, pc.equal(t.column("id"), "2"), "license_unknown")

    first = run_on_partition("licenses", stage, src, dst, "k")
    assert first["counts"] == {"license_unknown": 1, "passed": 3} and first["path"] == dst
    assert read_marker(storage.as_path(dst))["key"] == "k"
    assert run_on_partition("licenses", stage, src, dst, "k")["skipped"] and calls == [4]
    assert storage.read_parquet(dst).column("reason").to_pylist() == ["", "license_unknown", "", ""]
    assert storage.parquet_rows(dst) == 4
    assert isinstance(storage.read_parquet(dst), pa.Table)


def test_config_paths_as_urls(s3, tmp_path, labels_csv):
    from curation.config import ConfigError, load_config
    from curation.storage import is_remote

    s3["fs"].pipe(f"{BUCKET}/cfg/tracks.csv", b"x")
    s3["fs"].pipe(f"{BUCKET}/cfg/audio/1.mp3", b"x")
    (tmp_path / "x.pth").write_bytes(b"")

    def write(body: str) -> Path:
        p = tmp_path / "c.toml"
        p.write_text(f'output_dir = "s3://{BUCKET}/cfg/out"\n{body}\n[music]\ncheckpoint = "x.pth"\n'
                     f'labels_csv = "{labels_csv}"\n[copyright]\nspotify_tracks_csv = "s3://{BUCKET}/cfg/tracks.csv"\n')
        return p

    cfg = load_config(write(f'[fma]\ntracks_csv = "s3://{BUCKET}/cfg/tracks.csv"\naudio_dir = "s3://{BUCKET}/cfg/audio"'))
    assert is_remote(cfg.output_dir) and str(cfg.shard_dir) == f"s3://{BUCKET}/cfg/out/release/shards"
    assert str(cfg.work_dir / "stages") == f"s3://{BUCKET}/cfg/out/work/stages"
    with pytest.raises(ConfigError, match="fma.tracks_csv.*not found"):
        load_config(write(f'[fma]\ntracks_csv = "s3://{BUCKET}/cfg/nothing.csv"\naudio_dir = "s3://{BUCKET}/cfg/audio"'))
    with pytest.raises(ConfigError, match="must be a local path"):
        load_config(write(f'[fma]\ntracks_csv = "s3://{BUCKET}/cfg/tracks.csv"\naudio_dir = "s3://{BUCKET}/cfg/audio"'
                          f'\n[training]\nhf_home = "s3://{BUCKET}/hf"'))
    with pytest.raises(ConfigError, match="no filesystem for 'nosuch://'"):
        load_config(write('[fma]\ntracks_csv = "nosuch://x/tracks.csv"\naudio_dir = "nosuch://x/a"'))


def _upload(fs, local: Path, prefix: str) -> None:
    for p in sorted(local.rglob("*")):
        if p.is_file():
            fs.put_file(str(p), f"{prefix}/{p.relative_to(local).as_posix()}")


@pytest.mark.slow
def test_the_demo_on_the_store_with_dask_workers_matches_the_local_run(s3, tmp_path, demo_dir):
    """The demo with every input, the output and the shards on S3 and its stages on a Dask
    LocalCluster (worker processes), which share the store: the same decisions, attribution
    and shards, byte for byte, as the run on local disk; a rerun skips every partition; and
    no credential appears in anything written."""
    import shutil

    fs = s3["fs"]
    work = tmp_path / "demo"
    shutil.copytree(demo_dir, work, ignore=shutil.ignore_patterns("out", "out*"))
    base = f"{BUCKET}/demo/in"
    for d in ("freesound", "fma_full", "fma_metadata", "spotify"):
        _upload(fs, work / d, f"{base}/{d}")
    local_toml = (work / "curate.toml").read_text().replace("enabled = true", "enabled = false")
    (work / "local.toml").write_text(local_toml)
    remote_toml = local_toml.replace('output_dir = "out"', f'output_dir = "s3://{BUCKET}/demo/out"')
    for d in ("freesound/pages", "freesound/audio", "fma_metadata/tracks.csv", "fma_metadata/raw_tracks.csv",
              "fma_full", "spotify/dataset.csv"):
        remote_toml = remote_toml.replace(f'"{d}"', f'"s3://{base}/{d}"')
    remote_toml = remote_toml.replace("[freesound]", 'task_runner = "dask"\n\n[freesound]', 1)
    remote_toml = remote_toml.replace("[release]", f'[release]\nshard_dir = "s3://{BUCKET}/demo/shards"', 1)
    (work / "s3.toml").write_text(remote_toml)
    assert "s3://" in remote_toml and str(work) not in remote_toml.split("[music]")[0]

    env = cli_env(work, music_cache=True)
    curate("run", str(work / "local.toml"), env=env)
    first = curate("run", str(work / "s3.toml"), env=env, timeout=900)
    out = f"{BUCKET}/demo/out"

    for rel in ("release/freesound_attribution.csv", "release/fma_attribution.csv", "review/queue.csv",
                "review/index.html"):
        assert fs.cat(f"{out}/{rel}") == (work / "out" / rel).read_bytes(), rel
    local_shards = {p.name: p.read_bytes() for p in (work / "out" / "release" / "shards").glob("*.tar")}
    remote_shards = {p.rsplit("/", 1)[1]: fs.cat(p) for p in fs.find(f"{BUCKET}/demo/shards") if p.endswith(".tar")}
    assert len(local_shards) >= 2 and remote_shards == local_shards
    assert not fs.exists(f"{out}/release/shards")  # the shards went to the configured folder

    with fs.open(f"{out}/manifests/records.parquet", "rb") as f:
        import pyarrow.parquet as pq

        remote = pq.read_table(f, use_threads=False).to_pandas()
    local = read_pandas(work / "out" / "manifests" / "records.parquet")
    assert len(remote) == len(local) == 24
    for col in local.columns:
        if col == "evidence":  # a decoder's error names the file: the object, not a local path
            ev = [json.loads(e) for e in remote[col]]
            assert all(str(work) not in json.dumps(e) for e in ev)
            continue
        assert remote[col].astype(str).tolist() == local[col].astype(str).tolist(), col

    summary = json.loads(fs.cat(f"{out}/manifests/run_summary.json"))
    again = curate("run", str(work / "s3.toml"), env=env, timeout=900)
    summary2 = json.loads(fs.cat(f"{out}/manifests/run_summary.json"))
    for stage in summary2["stages"]:
        if stage["name"] in ("licenses", "eval_sets", "music", "copyright"):
            assert any("unchanged since the last run: skipped" in n for n in stage["notes"]), stage
    assert summary2["status"] == summary["status"] and summary2["reasons"] == summary["reasons"]
    assert {p.rsplit("/", 1)[1]: fs.cat(p) for p in fs.find(f"{BUCKET}/demo/shards")} == remote_shards

    explained = curate("explain", str(work / "s3.toml"), "freesound", "1001", env=env)
    assert "freesound 1001" in explained.stdout

    secret = s3["env"]["AWS_SECRET_ACCESS_KEY"]
    for path in fs.find(f"{BUCKET}/demo"):
        if not path.endswith((".tar", ".mp3", ".wav", ".flac", ".ogg", ".aiff")):
            assert secret.encode() not in fs.cat(path), path
    for proc in (first, again, explained):
        assert secret not in proc.stdout + proc.stderr
