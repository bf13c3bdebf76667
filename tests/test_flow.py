"""The whole flow, as a user runs it (`curate run`), on the demo inputs."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

from curation.storage import read_pandas
from tests.conftest import cli_env, curate

pytestmark = pytest.mark.slow

ALL_INPUTS = {("freesound", str(i)) for i in range(1001, 1014)} | {("freesound", "malformed:page_000002.json#5")} | {
    ("fma", i) for i in ("2", "3", "5", "10", "20", "26", "33", "40", "41", "42")}


def tree_digest(root: Path, parts=("release", "manifests/records.parquet", "review/queue.csv")) -> dict:
    out = {}
    for part in parts:
        p = root / part
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
        for f in files:
            out[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def work(demo_run):
    return demo_run["root"]  # the demo's inputs and its run (conftest: one for the session)


@pytest.fixture(scope="module")
def first_run(demo_run):
    return demo_run


def manifest(out: Path) -> pd.DataFrame:
    return read_pandas(out / "manifests" / "records.parquet")


def test_every_input_record_ends_in_the_manifest_once(first_run):
    df = manifest(first_run["out"])
    keys = list(zip(df["source"], df["id"]))
    assert len(keys) == len(set(keys))
    assert set(keys) == ALL_INPUTS
    assert set(df["status"]) <= {"included", "excluded", "review"}
    assert (df["reason"] == "").eq(df["status"] == "included").all()


def test_reasons_for_each_kind_of_fault(first_run):
    df = manifest(first_run["out"]).set_index(["source", "id"])
    reason = df["reason"].to_dict()
    assert reason[("freesound", "1004")] == "license_not_allowed"
    assert reason[("freesound", "1005")] == "genai_opt_out"
    assert reason[("freesound", "1006")] == "license_unknown"
    assert reason[("freesound", "1007")] == "audio_missing"
    assert reason[("freesound", "1008")] == "audio_unreadable"
    assert reason[("freesound", "1009")] == "audio_empty"
    assert reason[("freesound", "malformed:page_000002.json#5")] == "malformed_record"
    assert reason[("fma", "3")] == "license_not_allowed" and df.loc[("fma", "3"), "license"] == "cc-by-nc-sa"
    assert reason[("fma", "33")] == "malformed_record"
    # Freesound's gen-AI preference against the demo release (open-source model, commercial)
    assert reason[("freesound", "1011")] == "genai_noncommercial_only"
    assert reason[("freesound", "1012")] == "genai_preference_unknown"
    assert reason[("freesound", "1013")] == "duplicate"  # 1002 uploaded again as an mp3
    for rid, pref, present in (("1001", "no-additional-preferences", True), ("1002", "open-source-models", True),
                               ("1003", "", False)):
        row = df.loc[("freesound", rid)]
        assert row["status"] != "excluded" or not row["reason"].startswith("genai"), rid
        assert (row["gen_ai_preference"], row["gen_ai_preference_present"]) == (pref, present)
    assert df.loc[("freesound", "1003"), "genai_rule"].startswith("absent")
    fs = df.xs("freesound", level="source").drop(index="malformed:page_000002.json#5")
    assert fs["release_open_source_model"].all() and not fs["release_noncommercial"].any()
    # FMA: a license title and license URL that disagree; tracks no real URL can be found for
    assert reason[("fma", "40")] == "license_conflict"
    assert reason[("fma", "41")] == "attribution_incomplete" and reason[("fma", "42")] == "attribution_incomplete"
    assert df.loc[("freesound", "1001"), "seen"] == 2
    # the hostile name is kept as metadata and never becomes a path
    assert df.loc[("freesound", "1010"), "status"] == "included"
    assert df.loc[("freesound", "1010"), "shard"].startswith("shard-")


def test_music_and_copyright_decisions_follow_the_rule(first_run):
    df = manifest(first_run["out"])
    # Freesound recordings are decided by the model (or, too short to be music, without it);
    # FMA tracks are music by source (music.fma = "source"): decoded and checked, not scored
    scored = df[df["music_rule"].isin(["full", "early", "short"])]
    assert len(scored) >= 4 and (scored["source"] == "freesound").all()
    assert (scored["is_music"] == (scored["music_seconds"] >= 30)).all()
    assert (scored["music_seconds_lower_bound"] == (scored["music_rule"] != "full")).all()
    fma_ok = df[(df["source"] == "fma") & df["audio_sha256"].notna()]
    assert len(fma_ok) >= 4 and (fma_ok["music_rule"] == "source").all() and fma_ok["is_music"].all()
    assert fma_ok["music_seconds"].isna().all() and not fma_ok["music_checkpoint_random"].any()
    # the demo's model is random, and the manifest says so, with its checksum
    modelled = scored[scored["music_rule"] != "short"]
    assert len(modelled) >= 1 and modelled["music_checkpoint_random"].all()
    ckpt = first_run["out"].parent / "models" / "panns_random_init.pth"
    assert set(modelled["music_checkpoint_sha256"]) == {hashlib.sha256(ckpt.read_bytes()).hexdigest()}
    fs_music = scored[(scored["source"] == "freesound") & scored["is_music"]]
    assert (fs_music["status"] == "review").all() and (fs_music["reason"] == "copyright_audio_review").all()
    fma = df[df["source"] == "fma"].set_index("id")
    assert fma.loc["5", "status"] == "review" and fma.loc["5", "reason"] == "copyright_match_review"
    cand = json.loads(fma.loc["5", "copyright_candidate"])
    assert cand["track_name"] == "Lonely" and cand["artists"] == "The Examples"
    # a flagged track cleared by the reviewer's decisions file is in, with the decision recorded
    assert fma.loc["10", "status"] == "included" and fma.loc["10", "review_decision"] == "clear"
    assert fma.loc["10", "review_reviewer"] == "demo-reviewer"
    queue = pd.read_csv(first_run["out"] / "review" / "queue.csv", dtype=str)
    waiting = set(zip(df.loc[df["status"] == "review", "source"], df.loc[df["status"] == "review", "id"]))
    assert set(zip(queue["source"], queue["id"])) == waiting
    page = (first_run["out"] / "review" / "index.html").read_text()
    assert f"{len(waiting)} waiting" in page and page.count("data:audio/mpeg;base64,") == len(waiting)
    assert all(f"data-source='{s}' data-id='{i}'" in page for s, i in waiting)
    assert fma.loc["10", "review_decided_at"].endswith("Z")


def test_release_holds_exactly_the_included_records(first_run):
    out = first_run["out"]
    df = manifest(out)
    included = {f"{s}_{i}" for s, i in zip(df.loc[df.status == "included", "source"], df.loc[df.status == "included", "id"])}
    keys = []
    for tar in sorted((out / "release" / "shards").glob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                key, ext = m.name.split(".", 1)
                if ext == "flac":
                    keys.append(key)
                    info = sf.info(tf.extractfile(m))
                    assert info.samplerate == 44100 and info.channels == 2
    assert sorted(keys) == sorted(included)
    rows = []
    for source in ("freesound", "fma"):
        csv = pd.read_csv(out / "release" / f"{source}_attribution.csv", dtype=str, keep_default_na=False)
        assert list(csv.columns[:6]) == ["id", "title", "author", "license", "url", "license_url"]
        assert set(csv["license"]) <= {"cc0", "cc-by", "sampling+"}
        assert csv["license_url"].str.startswith("https://creativecommons.org/").all()
        rows += [f"{source}_{i}" for i in csv["id"]]
        if source == "fma":
            by_id = csv.set_index("id")
            # FMA's own URLs in the published form; the derived one is marked
            assert by_id.loc["2", "url"] == "https://freemusicarchive.org/music/AWOL/AWOL_-_A_Way_Of_Life/Food/"
            assert by_id.loc["2", "license_url"] == "https://creativecommons.org/licenses/by/4.0/"
            assert by_id.loc["2", "url_derived"] == "false" and by_id.loc["10", "url_derived"] == "true"
            assert csv["url"].str.startswith("https://freemusicarchive.org/music/").all()
    assert sorted(rows) == sorted(included)


def test_training_and_generation(first_run):
    out = first_run["out"] / "training"
    report = json.loads((out / "done.json").read_text())
    assert report["steps"] == 4 and report["t5"]["random_init"] is True
    info = sf.info(out / "generated.wav")
    assert info.samplerate == 44100 and info.channels == 2 and info.frames > 0
    assert (out / "model.ckpt").stat().st_size > 0
    assert "RANDOMLY INITIALISED" in first_run["proc"].stderr


def test_explain(first_run, work):
    text = curate("explain", str(work / "curate.toml"), "fma", "10", env=cli_env(work)).stdout
    assert "fma 10: INCLUDED" in text and "review: clear by demo-reviewer" in text and "Attribution" in text
    assert "[DERIVED: check before publishing]" in text
    text = curate("explain", str(work / "curate.toml"), "freesound", "1005", env=cli_env(work)).stdout
    assert "genai_opt_out" in text and "rule: no-gen-ai" in text
    text = curate("explain", str(work / "curate.toml"), "freesound", "1003", env=cli_env(work)).stdout
    assert "gen_ai_preference: absent" in text and "open_source_model=true, noncommercial=false" in text
    proc = curate("explain", str(work / "curate.toml"), "fma", "999999", env=cli_env(work), check=False)
    assert proc.returncode == 1 and "not in" in proc.stderr


def test_noncommercial_release_that_requires_the_preference(work):
    """The same inputs, for a noncommercial open-source model that insists on the field."""
    text = (work / "curate.toml").read_text().replace('output_dir = "out"', 'output_dir = "out_nc"')
    text = text.replace("noncommercial = false", "noncommercial = true").replace("enabled = true", "enabled = false")
    text = text.replace('audio_dir = "freesound/audio"', 'audio_dir = "freesound/audio"\nrequire_genai_preference = true')
    config = work / "nc.toml"
    config.write_text(text)
    curate("run", str(config), env=cli_env(work, music_cache=True))
    df = manifest(work / "out_nc").set_index(["source", "id"])
    reason = df["reason"].to_dict()
    assert reason[("freesound", "1003")] == "genai_preference_missing"
    assert reason[("freesound", "1005")] == "genai_opt_out"
    assert not reason[("freesound", "1011")].startswith("genai")  # noncommercial-open-source-models: allowed
    assert df.loc[("freesound", "1011"), "release_noncommercial"]
    assert not reason[("freesound", "1002")].startswith("genai")


def _config_with_output(work: Path, name: str) -> Path:
    text = (work / "curate.toml").read_text().replace('output_dir = "out"', f'output_dir = "{name}"')
    p = work / f"{name}.toml"
    p.write_text(text)
    return p


def _run_and_kill(config: Path, env: dict, ready) -> None:
    exe = Path(sys.executable).parent / "curate"
    proc = subprocess.Popen([str(exe), "run", str(config)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_killed_runs_resume_to_the_same_release(first_run, work):
    env = cli_env(work)
    config = _config_with_output(work, "out_killed")
    out = work / "out_killed"
    # killed in the middle of music detection
    cache = out / "work" / "music_cache"
    _run_and_kill(config, env, lambda: len(list(cache.glob("*/*.json"))) >= 2)
    cached = len(list(cache.glob("*/*.json")))
    assert not (out / "manifests" / "records.parquet").exists()
    curate("run", str(config), env=env)
    summary = json.loads((out / "manifests" / "run_summary.json").read_text())
    music = next(s for s in summary["stages"] if s["name"] == "music")["counts"]
    assert music.get("cached", 0) >= cached  # finished work is not redone
    assert tree_digest(out) == tree_digest(first_run["out"])  # byte for byte

    # killed during training, after the shards were written
    for f in ("done.json", "job.json", "generated.wav"):
        (out / "training" / f).unlink()
    shutil.rmtree(out / "manifests")
    _run_and_kill(config, env, lambda: (out / "training" / "job.json").exists())
    curate("run", str(config), env=env)
    summary = json.loads((out / "manifests" / "run_summary.json").read_text())
    counts = {s["name"]: s["counts"] for s in summary["stages"]}
    assert counts["music"].get("scored", 0) == 0 and counts["release"]["shards_written"] == 0
    assert summary["training"]["skipped"] is False and (out / "training" / "generated.wav").exists()
    assert tree_digest(out) == tree_digest(first_run["out"])
    # (a rerun of a finished run redoing nothing: test_first_contact's copied output folder)


def test_identification_services_in_the_flow(work):
    """Freesound music through AcoustID, then ACRCloud (local servers speaking their APIs):
    the reference recording is found with its MusicBrainz id / ISRC and sent to review, and
    no key or secret reaches the manifest or the run's output. (Error codes: test_id_services.)"""
    from tests.fake_id_services import ACOUSTID_KEY, ACR_KEY, ACR_SECRET, FakeAcoustId, FakeAcrCloud

    ref = work / "freesound" / "audio" / "1001.wav"
    base = (work / "curate.toml").read_text().replace("enabled = true", "enabled = false")
    env = cli_env(work, music_cache=True)
    env.update(ACOUSTID_API_KEY=ACOUSTID_KEY, ACRCLOUD_ACCESS_KEY=ACR_KEY, ACRCLOUD_ACCESS_SECRET=ACR_SECRET)
    acoustid, acr = FakeAcoustId(), FakeAcrCloud()
    try:
        acoustid.add_reference(ref, "3a1e6a0e-8e0c-4f0e-9d8e-2f9b1f5c9e11", "Loop", "Someone Famous")
        acr.add_reference(ref, "Loop", "Someone Famous", "USRC17607839")
        runs = {}
        for name, table in (("acoustid", f'[copyright.acoustid]\nendpoint = "{acoustid.url}"\nmin_interval_s = 0\n'),
                            ("acrcloud", f'[copyright.acrcloud]\nendpoint = "{acr.url}"\nmin_interval_s = 0\n')):
            text = base.replace('output_dir = "out"', f'output_dir = "out_{name}"')
            text = text.replace("[copyright]", f'[copyright]\naudio_backend = "{name}"') + "\n" + table
            (work / f"{name}.toml").write_text(text)
            proc = curate("run", str(work / f"{name}.toml"), env=env)
            runs[name] = (manifest(work / f"out_{name}"), proc.stdout + proc.stderr)
        # ACRCloud's quota spent (3003): one request, the rest of the run not asked, and the summary says why
        acr.quota = 0
        asked = len(acr.requests)
        (work / "acrquota.toml").write_text((work / "acrcloud.toml").read_text().replace(
            'output_dir = "out_acrcloud"', 'output_dir = "out_acrquota"'))
        quota = curate("run", str(work / "acrquota.toml"), env=env)
        quota_df = manifest(work / "out_acrquota").set_index(["source", "id"])
        # AcoustID refusing the key: the run stops before any lookup, in a line, without a traceback
        bad = curate("run", str(work / "acoustid.toml"), env={**env, "ACOUSTID_API_KEY": "wrong-key-123"}, check=False)
    finally:
        acoustid.close()
        acr.close()
    assert asked >= 1 and len(acoustid.requests) == 1 + asked + 1  # the key check, the lookups, the bad key's check
    assert "fingerprint" not in acoustid.requests[0] and "fingerprint" in acoustid.requests[1]
    assert len(acr.requests) == asked + 1  # the quota run: one request, 3003, then none
    assert "quota is spent" in quota.stderr and "asked again by the next run" in quota.stderr
    retry = quota_df[quota_df["reason"] == "copyright_audio_retry"]
    assert len(retry) == asked and all("3003" in json.dumps(json.loads(e)["copyright"]) for e in retry["evidence"])
    assert bad.returncode == 1 and "AcoustID refused the application key (error 4" in bad.stderr
    assert "Traceback" not in bad.stderr and "wrong-key-123" not in bad.stderr + bad.stdout
    assert "fingerprint" not in acoustid.requests[-1]  # the check was the last request: nothing looked up
    for name, (df, output) in runs.items():
        raw = (work / f"out_{name}" / "manifests" / "records.parquet").read_bytes()
        for secret in (ACOUSTID_KEY, ACR_KEY, ACR_SECRET):
            assert secret.encode() not in raw and secret not in output
        df = df.set_index(["source", "id"])
        row = df.loc[("freesound", "1001")]
        assert row["status"] == "review" and row["reason"] == "copyright_audio_match"
        ev = json.loads(row["evidence"])["copyright"]
        assert ev["method"] == f"audio:{name}"
        if name == "acoustid":
            assert ev["matches"][0]["recordings"][0]["musicbrainz_recording_id"] == "3a1e6a0e-8e0c-4f0e-9d8e-2f9b1f5c9e11"
        else:
            assert ev["matches"][0]["isrc"] == "USRC17607839" and ev["sample"]["from_music_spans"]
        assert "Someone Famous" in (work / f"out_{name}" / "review" / "index.html").read_text()


def test_music_decided_by_the_audio_then_fingerprinted_in_the_flow(work, tmp_path, labels_csv):
    """With a model whose decisions depend on the audio (benchmarks/standin_panns.py: the real
    Cnn14 architecture, a random trunk, a music head fitted on synthetic music against field
    recordings made with other seeds; not PANNs), the flow decides the demo's 40 s of music as
    music and 40 s of field recording in the place of 1003's audio as not music, each from the
    model's frames (the random checkpoint of the other flow tests calls every frame music). The
    music then goes through the fingerprint backend: an excerpt of a reference is sent to review
    with the reference and offset, and the manifest and review page carry it."""
    from benchmarks.standin_panns import build
    from curation import synth
    from curation.audio import load_mono
    from curation.copyright.fingerprint import FingerprintIndex

    clips = {kind: [gen(12.0, sr=32000, seed=s).astype("float32") for s in (101, 102)]
             for kind, gen in (("music", synth.music), ("other", synth.field_recording))}
    fitted = build(tmp_path / "standin.pth", labels_csv, clips["music"], clips["other"])
    assert fitted["train_accuracy"] > 0.9
    demo = tmp_path / "demo"
    shutil.copytree(work, demo, ignore=shutil.ignore_patterns("out", "out*", "prefect_home", "fp_index"))
    sf.write(str(demo / "freesound" / "audio" / "1003.ogg"), synth.field_recording(40.0, seed=7), 44100,
             format="OGG", subtype="VORBIS")
    with FingerprintIndex(demo / "fp_index") as ix:
        ix.add(demo / "freesound" / "audio" / "1001.wav", name="takedown/loop.wav")
    text = (demo / "curate.toml").read_text().replace("enabled = true", "enabled = false")
    text = text.replace('checkpoint = "models/panns_random_init.pth"', f'checkpoint = "{tmp_path / "standin.pth"}"')
    text = text.replace("[copyright]", '[copyright]\naudio_backend = "fingerprint"\nfingerprint_index = "fp_index"')
    (demo / "curate.toml").write_text(text)
    proc = curate("run", str(demo / "curate.toml"), env=cli_env(demo))
    assert fitted["sha256"][:16] in proc.stderr + proc.stdout  # the run names the model it used
    df = manifest(demo / "out").set_index(["source", "id"])
    music = {i: json.loads(df.loc[("freesound", i), "evidence"])["music"] for i in ("1001", "1003")}
    assert music["1001"]["is_music"] is True and music["1001"]["decided"] in ("full", "early")
    assert music["1003"]["is_music"] is False and music["1003"]["decided"] in ("full", "early")
    assert music["1001"]["music_seconds"] >= 30 > music["1003"]["music_seconds"]
    assert len(load_mono(demo / "freesound" / "audio" / "1003.ogg", 8000)) >= 39 * 8000
    row = df.loc[("freesound", "1001")]
    assert row["status"] == "review" and row["reason"] == "copyright_audio_match"
    ev = json.loads(row["evidence"])["copyright"]
    assert ev["method"] == "audio:fingerprint" and ev["matches"][0]["reference"] == "takedown/loop.wav"
    assert abs(ev["matches"][0]["offset_seconds"]) < 0.1
    assert "takedown/loop.wav" in (demo / "out" / "review" / "index.html").read_text()
    assert df.loc[("freesound", "1003"), "status"] == "included"  # not music: not listened to
