"""Records as partitions: the stage runner's markers and counts, ingest into partitions with
duplicates across them, and the table forms of the stages against their record forms."""
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from curation.sources import ingest
from curation import record_table as rt
from curation.config import load_config
from curation.sources import freesound
from curation.stage import read_marker, run_on_partition, write_part
from manifests.schema import manifest_table, sort_manifest

REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "real"


def _table(n: int) -> pa.Table:
    recs = [freesound.result_to_record({"id": i, "name": f"s{i}", "license": "cc0", "username": "u"}, str(i))
            for i in range(1, n + 1)]
    return rt.from_records(recs)


def test_a_partition_is_skipped_while_its_key_holds(tmp_path):
    src = tmp_path / "in.parquet"
    write_part(src, _table(6))
    calls = []

    def stage(t, rep):
        calls.append(t.num_rows)
        odd = pc.equal(pc.bit_wise_and(pc.cast(t.column("id"), pa.int64()), 1), 1)
        rep.add("looked", t.num_rows)
        return rt.exclude(t, odd, "license_unknown")

    dst = tmp_path / "out" / "part-00000.parquet"
    first = run_on_partition("licenses", stage, str(src), str(dst), "k1")
    assert first["counts"] == {"license_unknown": 3, "passed": 3, "looked": 6} and not first["skipped"]
    assert read_marker(dst)["key"] == "k1"
    again = run_on_partition("licenses", stage, str(src), str(dst), "k1")
    assert again["skipped"] and again["counts"] == {**first["counts"], "unchanged": 6} and calls == [6]
    # another key (new input or new settings) runs it again; so does a marker asking to
    run_on_partition("licenses", stage, str(src), str(dst), "k2")
    run_on_partition("licenses", stage, str(src), str(dst), "k2", rerun_if=lambda prev: True)
    assert calls == [6, 6, 6]
    # a half-written output (no marker) is never taken as done
    dst.with_name("part-00000.done.json").unlink()
    assert not run_on_partition("licenses", stage, str(src), str(dst), "k2")["skipped"]
    out = pq.read_table(dst)
    assert out.column("reason").to_pylist() == ["license_unknown", "", "license_unknown", "", "license_unknown", ""]


def test_a_stage_that_loses_records_is_an_error(tmp_path):
    src = tmp_path / "in.parquet"
    write_part(src, _table(3))
    with pytest.raises(RuntimeError, match="changed the number of records"):
        run_on_partition("licenses", lambda t, rep: t.slice(0, 2), str(src), str(tmp_path / "o.parquet"), "k")


def _pages_config(tmp_path: Path, pages: Path, labels_csv: Path) -> Path:
    (tmp_path / "audio").mkdir(exist_ok=True)
    cfg = tmp_path / "curate.toml"
    cfg.write_text(f'output_dir = "{tmp_path / "out"}"\n[freesound]\npages_dir = "{pages}"\n'
                   f'audio_dir = "{tmp_path / "audio"}"\n[music]\ncheckpoint = "{tmp_path / "x.pth"}"\n'
                   f'labels_csv = "{labels_csv}"\n')
    (tmp_path / "x.pth").write_bytes(b"")
    return cfg


def test_ingest_partitions_resolve_duplicates_across_partitions(tmp_path, demo_dir, labels_csv):
    """The demo pages (which repeat sounds across pages, one with other metadata) cut into
    one page per partition give the records `dedupe` gives over all of them at once."""
    if not REAL.is_dir():
        pytest.skip(f"the real Freesound pages are expected at {REAL} (../shared, present in CI)")
    pages = tmp_path / "pages"
    shutil.copytree(demo_dir / "freesound" / "pages", pages)
    shutil.copy(REAL / "freesound" / "sound_209943.json", pages / "zz_sound.json")
    shutil.copy(REAL / "freesound" / "search_text_page.json", pages / "zz_search.json")
    cfg = load_config(_pages_config(tmp_path, pages, labels_csv))
    parts, rep = ingest.ingest_parts(cfg, tmp_path / "parts", partition_records=1, workers=2)
    assert len(parts) == len(list(pages.glob("*.json")))
    got = rt.unify([pq.read_table(p) for p in parts])
    want = rt.from_records(ingest.dedupe(freesound.read_pages(pages)))
    key = lambda t: sorted(json.dumps(r, sort_keys=True) for r in manifest_table(t).to_pylist())  # noqa: E731
    assert rep.counts["distinct"] == got.num_rows == want.num_rows
    assert key(got) == key(want)
    assert pc.sum(pc.greater(got.column("seen"), 1)).as_py() >= 1  # the demo's repeats were merged
    # unchanged inputs: nothing is read again
    again, rep2 = ingest.ingest_parts(cfg, tmp_path / "parts", partition_records=1, workers=2)
    assert again == parts and rep2.counts == rep.counts
    (pages / "zz_search.json").write_text("{not json")
    parts3, _ = ingest.ingest_parts(cfg, tmp_path / "parts", partition_records=1, workers=1)
    ids = set(rt.unify([pq.read_table(p) for p in parts3]).column("id").to_pylist())
    assert "malformed:zz_search.json" in ids  # the changed page was read again


def test_manifest_from_a_table_is_the_manifest_of_the_records(demo_dir):
    recs = ingest.dedupe(freesound.read_pages(demo_dir / "freesound" / "pages"))
    recs[0].evidence["music"] = {"is_music": True, "top_labels": ["Music"], "music_seconds": 31.5}
    recs[0].evidence["shard"] = "shard-000000.tar"
    t = sort_manifest(manifest_table(rt.from_records(recs)))
    rows = {r["id"]: r for r in t.to_pylist()}
    r0 = rows[recs[0].id]
    assert json.loads(r0["evidence"]) == json.loads(json.dumps(recs[0].evidence))
    assert r0["evidence"] == json.dumps(recs[0].evidence, sort_keys=True, ensure_ascii=False)
    assert r0["is_music"] is True and r0["music_top_labels"] == ["Music"] and r0["shard"] == "shard-000000.tar"
    ids = t.column("id").to_pylist()
    numeric = [i for i in ids if i.isdigit()]
    assert numeric == sorted(numeric, key=int) and ids[-1].startswith("malformed:")


@pytest.fixture
def prefect_server(tmp_path):
    """One Prefect server for the test's flow and its Dask workers (as a deployment has)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.server import local_server

    with local_server(tmp_path / "prefect_home") as url, temporary_settings(updates={PREFECT_API_URL: url}):
        yield url


@pytest.mark.slow
def test_release_shards_on_dask_match_the_local_release(tmp_path, demo_dir, prefect_server):
    """One Dask task per shard, on two worker processes: the same shards, byte for byte, as
    the in-process release, and only the changed shard written again."""
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from curation.audio import AudioError
    from curation.config import Config
    from curation.release.writers import flac_bytes
    from flows.curate import release_phase

    recs = []
    for p in sorted((demo_dir / "freesound" / "audio").iterdir()):
        try:
            flac_bytes(p)
        except AudioError:
            continue  # the demo's damaged files
        recs.append(freesound.result_to_record({"id": int(p.stem), "name": p.name, "username": "demo",
                                                "license": "http://creativecommons.org/publicdomain/zero/1.0/"},
                                               p.name))
        recs[-1].audio_path, recs[-1].status, recs[-1].license = str(p), "included", "cc0"
    assert len(recs) >= 5
    part = tmp_path / "part-00000.parquet"
    write_part(part, rt.from_records(recs))

    def release(out: Path, runner) -> tuple[dict, dict]:
        cfg = Config(path=tmp_path / "curate.toml", output_dir=out)
        cfg.release.shard_max_records = 2
        cfg.task_runner = "dask" if isinstance(runner, DaskTaskRunner) else "local"

        @flow(task_runner=runner)
        def go():
            return release_phase([str(part)], cfg)[1].counts

        counts = go()
        shards = sorted((out / "release" / "shards").glob("*.tar"))
        return counts, {p.name: p.read_bytes() for p in shards}

    local_counts, local = release(tmp_path / "local", ThreadPoolTaskRunner(max_workers=1))
    dask = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})
    dask_counts, on_dask = release(tmp_path / "dask", dask)
    assert local_counts["shards"] == dask_counts["shards"] == len(local) == -(-len(recs) // 2)
    assert dask_counts["shards_written"] == len(local)
    assert on_dask == local
    # a rerun writes nothing; a changed record rewrites its shard only
    again, _ = release(tmp_path / "local", ThreadPoolTaskRunner(max_workers=1))
    assert again["shards_written"] == 0
    t = pq.read_table(part)
    write_part(part, rt.where(pc.equal(t.column("id"), recs[0].id), "a new title", t, "title"))
    third, after = release(tmp_path / "local", ThreadPoolTaskRunner(max_workers=1))
    assert third["shards_written"] == 1
    assert [n for n in local if after[n] != local[n]] == ["shard-000000.tar"]
