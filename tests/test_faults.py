"""A few cases of each fault the benchmark (benchmarks/faults.py) runs many times: a kill
inside the release stage, a full disk under the shards, and a damaged work area. Each ends,
once resumed, with the reference release byte for byte and every record in the manifest."""
import shutil

import pytest

from benchmarks import faults
from tests.conftest import cli_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ref(tmp_path_factory, labels_csv):
    root = tmp_path_factory.mktemp("faults")
    cfg = faults.prepare(root / "inputs", labels_csv)
    env = cli_env(root)
    out = root / "ref"
    faults.run(faults.with_output(cfg, out), env)
    digest = faults.release_digest(out)
    records = len(faults.read_pandas(out / "manifests" / "records.parquet", columns=["id"]))
    return {"root": root, "cfg": cfg, "env": env, "out": out, "digest": digest, "records": records}


def test_killed_inside_the_release_stage_resumes_to_the_same_release(ref):
    out = ref["root"] / "killed"
    # after the plan, while shards are written and the version is published
    assert faults.kill_trial(ref["cfg"], out, ref["env"], "release", 0.5, 2, 2, after="release-plan")
    assert not list((out / "releases").glob("v*")) or (out / "releases" / "v1" / "SHA256SUMS").is_file()
    faults.run(faults.with_output(ref["cfg"], out), ref["env"])
    assert faults.check(out, ref["digest"], ref["records"], ref["env"]) == {"lost": 0, "corrupt": 0, "detail": ""}


def test_a_full_disk_under_the_shards_is_a_clear_error_and_the_next_run_completes(ref):
    if not faults.can_mount():
        pytest.skip("mounting a tmpfs (a real full disk) needs root")
    out = ref["root"] / "full"
    clean, why = faults.enospc_trial(ref["cfg"], out, ref["env"], "shards")
    assert clean, why
    faults.run(faults.with_output(ref["cfg"], out), ref["env"])
    assert faults.check(out, ref["digest"], ref["records"], ref["env"]) == {"lost": 0, "corrupt": 0, "detail": ""}


def test_a_damaged_work_area_is_recomputed_not_trusted(ref):
    out = ref["out"]
    rng = faults.random.Random(3)
    for kind in ("stage part truncated", "stage marker garbage", "ingest state garbage", "music cache wrong entry",
                 "shard state garbage", "decided list garbage", "shard truncated"):
        faults.damage(out, kind, rng)
    for marker in (out / "work" / "stages" / "music").glob("*.done.json"):
        marker.write_text("garbage")  # the music stage runs again, and reads the damaged cache
    p = faults.run(faults.with_output(ref["cfg"], out), ref["env"])
    assert faults.check(out, ref["digest"], ref["records"], ref["env"]) == {"lost": 0, "corrupt": 0, "detail": ""}
    summary = faults.json.loads((out / "manifests" / "run_summary.json").read_text())
    music = next(s for s in summary["stages"] if s["name"] == "music")["counts"]
    # the wrong cache entry was not believed: its file was decoded again (scored, or checked
    # for a source taken as music)
    assert music.get("scored", 0) + music.get("unscored", 0) + music.get("checked", 0) >= 1
    assert "Traceback" not in p.stderr
    shutil.rmtree(ref["root"] / "killed", ignore_errors=True)
