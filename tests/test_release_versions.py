"""Release versions over a changing catalogue: three releases (new records, a license change,
a metadata change, a takedown), their diffs, verify on each and on a tampered copy, the
takedown staying in force, and the shards loading with Hugging Face datasets and
stable-audio-tools."""
import csv
import io
import json
import os
import shutil
import tarfile

import numpy as np
import pytest
import yaml

from curation.storage import read_pandas
from tests.conftest import cli_env, curate
from tests.fake_freesound import TOKEN, FakeFreesound, sounds_for
from tests.test_flow_live import CONFIG, ogg

pytestmark = pytest.mark.slow


def diff(cfg, a, b, env):
    p = curate("release", "diff", a, b, "--config", str(cfg), env=env)
    return list(csv.DictReader(io.StringIO(p.stdout))), p.stderr


def verify(path, env, check=True):
    return curate("release", "verify", str(path), env=env, check=check)


def test_three_releases_diff_verify_and_takedown(tmp_path, demo_dir):
    with FakeFreesound([], {}) as srv:
        srv.sounds = sounds_for(srv.url, [31, 32, 33, 34])
        srv.audio = {i: ogg(2.0, i) for i in range(31, 36)}
        cfg = tmp_path / "curate.toml"
        text = (CONFIG.format(runner="local", url=srv.url, models=(demo_dir / "models").as_posix())
                .replace("max_retries = 3", "max_retries = 3\nrefresh_days = 0.00001"))
        cfg.write_text(text + "[release]\nshard_max_records = 2\n")
        env = cli_env(tmp_path)
        env["FREESOUND_API_TOKEN"] = TOKEN
        out = tmp_path / "out"
        rel = out / "releases"

        # v1: four sounds in two shards
        p = curate("run", str(cfg), env=env)
        assert "release v1 published" in p.stderr
        v1 = rel / "v1"
        info = json.loads((v1 / "release.json").read_text())
        assert info["parent"] is None and info["records"] == {"total": 4, "by_source": {"freesound": 4}}
        assert info["licenses"] == {"freesound": {"cc0": 4}} and info["shards"]["count"] == 2
        assert info["music_model"]["random_init"] is True and len(info["music_model"]["sha256"]) == 64
        assert info["seconds"]["total"] == pytest.approx(8.0, abs=0.1)
        verify(v1, env)
        sums = subprocess_sha256sum(v1)
        assert sums.returncode == 0, sums.stdout  # the coreutils tool reads SHA256SUMS too

        # nothing changed: no new version
        p = curate("run", str(cfg), env=env)
        assert "release unchanged: still v1" in p.stderr and sorted(os.listdir(rel)) == ["v1"]

        # v2: a license change (32 -> NC), a new title (31), a new upload (35)
        srv.sounds[1]["license"] = "http://creativecommons.org/licenses/by-nc/4.0/"
        srv.sounds[0]["name"] = "sound 31, renamed"
        srv.sounds += sounds_for(srv.url, [35])
        curate("run", str(cfg), env=env)
        v2 = rel / "v2"
        rows, summary = diff(cfg, "v1", "v2", env)
        assert [(r["change"], r["id"], r["reason"]) for r in rows] == [
            ("added", "35", "new"), ("changed", "31", "metadata"), ("removed", "32", "license changed")]
        assert "title sound 31 -> sound 31, renamed" in rows[1]["detail"]
        assert rows[2]["detail"] == "license_changed"
        assert "1 added, 1 removed, 1 changed" in summary
        info2 = json.loads((v2 / "release.json").read_text())
        assert info2["parent"] == "v1" and info2["records"]["total"] == 4
        # shard 1 (33, 34) did not change: the very same file as v1's, not a copy
        assert info2["shards"] == {"count": 3, "max_records": 2, "shared_with_parent": 1, "new": 2, "hard_linked": 1}
        # ... and no version shares a file with the working release
        assert os.stat(out / "release" / "shards" / "shard-000000.tar").st_ino != os.stat(v2 / "shards" / "shard-000000.tar").st_ino
        assert os.stat(v1 / "shards" / "shard-000001.tar").st_ino == os.stat(v2 / "shards" / "shard-000001.tar").st_ino
        assert os.stat(v1 / "shards" / "shard-000000.tar").st_ino != os.stat(v2 / "shards" / "shard-000000.tar").st_ino
        verify(v2, env)

        # v3: a takedown of 34, through the release stage alone
        (tmp_path / "takedowns.csv").write_text("source,id,reason,requested_at\n"
                                               "freesound,34,uploader asked 2026-11-20,2026-11-20T10:00:00Z\n")
        cfg.write_text(cfg.read_text() + 'takedowns = "takedowns.csv"\n')
        p = curate("release", str(cfg), env=env)
        assert "release v3 published" in p.stderr
        v3 = rel / "v3"
        rows, _ = diff(cfg, "v2", "v3", env)
        assert [(r["change"], r["id"], r["reason"], r["detail"]) for r in rows] == [
            ("removed", "34", "takedown", "takedown: uploader asked 2026-11-20")]
        info3 = json.loads((v3 / "release.json").read_text())
        assert info3["takedowns"] == [{"source": "freesound", "id": "34", "reason": "uploader asked 2026-11-20",
                                       "requested_at": "2026-11-20T10:00:00Z"}]
        assert "takedown" in curate("explain", str(cfg), "freesound", "34", env=env).stdout
        verify(v3, env)
        # v1 and v2 hold 34 (v1 also 32): no longer allowed under the current manifest
        bad = verify(v2, env, check=False)
        assert bad.returncode == 1 and "freesound_34 is excluded (takedown)" in bad.stderr
        bad = verify(v1, env, check=False)
        assert "freesound_32 is excluded (license_changed)" in bad.stderr
        # ... but each is consistent with the manifest it was published with
        assert curate("release", "verify", str(v2), "--manifest", str(v2 / "manifest.parquet"), env=env).returncode == 0

        # a tampered copy fails: one byte of audio, one attribution field, an extra file
        for how in ("shard", "attribution", "extra"):
            copy = tmp_path / f"tampered-{how}"
            shutil.copytree(v3, copy)  # real copies, not links
            if how == "shard":
                f = next((copy / "shards").glob("*.tar"))
                data = bytearray(f.read_bytes())
                data[len(data) // 2] ^= 0xFF
                f.write_bytes(bytes(data))
            elif how == "attribution":
                f = copy / "freesound_attribution.csv"
                f.write_text(f.read_text().replace("tester", "someone else", 1))
            else:
                (copy / "shards" / "extra.tar").write_bytes(b"")
            bad = verify(copy, env, check=False)
            assert bad.returncode == 1, (how, bad.stderr)
            assert {"shard": "checksum mismatch: shards/", "attribution": "checksum mismatch: freesound_attribution.csv",
                    "extra": "not in SHA256SUMS: shards/extra.tar"}[how] in bad.stderr
        assert "shard says author" in verify(tmp_path / "tampered-attribution", env, check=False).stderr

        # the takedown stays: the list no longer configured, 34 still in the catalogue
        cfg.write_text(cfg.read_text().replace('takedowns = "takedowns.csv"\n', ""))
        p = curate("run", str(cfg), env=env)
        assert "release unchanged: still v3" in p.stderr
        df = read_pandas(out / "manifests" / "records.parquet").set_index("id")
        assert df.loc["34", "status"] == "excluded" and df.loc["34", "reason"] == "takedown"
        assert sorted(os.listdir(rel)) == ["takedowns.csv", "v1", "v2", "v3"]

    # the dataset card: a Hugging Face header, and the text a publisher needs
    card = (v3 / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["license"] == "cc0-1.0" and header["size_categories"] == ["n<1K"]
    assert header["task_categories"] == ["text-to-audio"]
    assert header["configs"][0]["data_files"][0]["path"] == "shards/*.tar"
    assert info3["music_model"]["sha256"] in card and "RANDOMLY INITIALISED" in card and "takedown" in card.lower()

    # v3 loads with Hugging Face datasets (audio decoded) and with stable-audio-tools' loader
    import datasets

    ds = datasets.load_dataset("webdataset", data_files={"train": str(v3 / "shards" / "*.tar")}, split="train",
                               cache_dir=str(tmp_path / "hf_cache"))
    with open(v3 / "freesound_attribution.csv", newline="") as f:
        attributed = sorted(f"freesound_{r['id']}" for r in csv.DictReader(f))
    assert sorted(ds["__key__"]) == attributed == ["freesound_31", "freesound_33", "freesound_35"]
    for row in ds:
        samples = row["flac"].get_all_samples()
        assert samples.sample_rate == 44100 and tuple(samples.data.shape[:1]) == (2,)
        assert samples.data.shape[1] == pytest.approx(2 * 44100, abs=50)
        assert row["json"]["license"] == "cc0" and row["json"]["id"] == row["__key__"].split("_")[1]

    from stable_audio_tools.data.dataset import create_dataloader_from_config

    loader = create_dataloader_from_config(
        {"dataset_type": "wds", "datasets": [{"id": "v3", "path": str(v3 / "shards")}], "random_crop": False},
        batch_size=3, sample_size=44100, sample_rate=44100, audio_channels=2, num_workers=1)
    audio, meta = next(iter(loader))
    audio = audio[0] if audio.ndim == 4 else audio
    assert tuple(audio.shape) == (3, 2, 44100) and np.isfinite(audio.numpy()).all()
    assert {m["id"][0] for m in meta} <= {"31", "33", "35"}  # it samples the shards with replacement


def subprocess_sha256sum(folder):
    import subprocess

    return subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)


def test_no_release_without_a_run(tmp_path, demo_dir):
    cfg = demo_dir / f"no-run-{tmp_path.name}.toml"  # beside the demo inputs its paths name
    cfg.write_text((demo_dir / "curate.toml").read_text()
                   .replace('output_dir = "out"', f'output_dir = "{(tmp_path / "out").as_posix()}"'))
    p = curate("release", str(cfg), env=cli_env(tmp_path), check=False)
    assert p.returncode == 1 and "run `curate run` first" in p.stderr, p.stderr


def test_shard_members_are_flac_and_json(tmp_path):
    """verify's one-to-one check reads shard members as KEY.EXT (what the writer makes)."""
    from curation.release.verify import _shard_samples

    (tmp_path / "shards").mkdir()
    with tarfile.open(tmp_path / "shards" / "shard-000000.tar", "w") as tf:
        for name, data in (("freesound_1.json", b'{"id": "1"}'), ("freesound_2.flac", b"x")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    problems = []
    got = _shard_samples(tmp_path, problems)
    assert set(got) == {"freesound_1"}
    assert sorted(problems) == ["shards/shard-000000.tar: freesound_1 has json, not flac + json",
                                "shards/shard-000000.tar: freesound_2 has flac, not flac + json"]
