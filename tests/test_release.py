import csv
import io
import json
import tarfile

import numpy as np
import pytest
import soundfile as sf

from curation import synth
from curation.records import Record
from curation.release.writers import ATTRIBUTION_FIELDS, prompt_for, write_attribution
from tests.stage_run import release_shards


def make_records(tmp_path, n=5):
    recs = []
    for i in range(1, n + 1):
        p = tmp_path / "audio" / f"{i}.wav"
        p.parent.mkdir(exist_ok=True)
        sr = 48000 if i % 2 else 22050
        x = synth.music(1.5, sr=sr, seed=i)
        sf.write(str(p), x, sr)  # mono, at another rate
        r = Record(source="freesound" if i % 2 else "fma", id=str(i * 10), title=f'Title {i} "q"\t../x',
                   author=f"author{i}", url=f"https://example.org/{i}", license="cc-by", license_raw="Attribution",
                   tags=["birds", "field-recording"], description="<p>A <b>nice</b> sound.</p>", genres=["Rock"])
        r.audio_path = str(p)
        r.evidence["audio"] = {"sha256": f"h{i}"}
        recs.append(r)
    return recs


def test_prompt_from_metadata():
    r = Record(source="freesound", id="1", title="Rain", description="<p>Heavy rain</p>", tags=["rain", "storm"],
               genres=["Ambient"])
    assert prompt_for(r) == "Rain. Heavy rain. Genre: Ambient. Tags: rain, storm"


def test_shards_hold_flac_44k_stereo_and_json(tmp_path):
    recs = make_records(tmp_path)
    shards = release_shards(recs, tmp_path / "shards", 2, tmp_path)
    assert [s["name"] for s in shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    seen = []
    for s in shards:
        with tarfile.open(tmp_path / "shards" / s["name"]) as tf:
            names = tf.getnames()
            for m in tf.getmembers():
                assert m.mtime == 0 and "/" not in m.name
                data = tf.extractfile(m).read()
                key, ext = m.name.split(".", 1)
                if ext == "flac":
                    audio, sr = sf.read(io.BytesIO(data), always_2d=True)
                    assert sr == 44100 and audio.shape[1] == 2
                    assert abs(audio.shape[0] / sr - 1.5) < 0.01
                else:
                    meta = json.loads(data)
                    assert {"text", "source", "id", "license", "author", "title", "url"} <= set(meta)
                    assert key == f"{meta['source']}_{meta['id']}"
                    seen.append(key)
        assert len(names) == 2 * len(s["keys"])
    assert sorted(seen) == sorted(f"{r.source}_{r.id}" for r in recs)


def test_unchanged_shards_are_not_rewritten_and_stale_ones_go(tmp_path):
    recs = make_records(tmp_path)
    release_shards(recs, tmp_path / "shards", 2, tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "shards").iterdir()}
    again = release_shards(recs, tmp_path / "shards", 2, tmp_path)
    assert [s["written"] for s in again] == [False, False, False]
    recs[0].title = "changed"  # freesound_10, in the second shard once sorted
    third = release_shards(recs[:4], tmp_path / "shards", 2, tmp_path)
    assert [s["written"] for s in third] == [False, True]
    after = {p.name: p.read_bytes() for p in (tmp_path / "shards").iterdir()}
    assert set(after) == {"shard-000000.tar", "shard-000001.tar"}
    assert after["shard-000000.tar"] == before["shard-000000.tar"]


def test_shard_assignment_is_stable_and_append_only(tmp_path):
    """A record stays in its shard: removing one rewrites that shard only; new records go to
    new shards; the shards before are byte for byte the same."""
    recs = make_records(tmp_path, 8)
    first = release_shards(recs, tmp_path / "shards", 3, tmp_path)
    assert [len(s["keys"]) for s in first] == [3, 3, 2]
    before = {p.name: p.read_bytes() for p in (tmp_path / "shards").iterdir()}
    gone = first[0]["keys"][1]  # from the middle of the first shard: sorted packing would shift every shard
    kept = [r for r in recs if f"{r.source}_{r.id}" != gone]
    second = release_shards(kept, tmp_path / "shards", 3, tmp_path)
    assert [s["written"] for s in second] == [True, False, False]
    assert [s["keys"] for s in second[1:]] == [s["keys"] for s in first[1:]]
    after = {p.name: p.read_bytes() for p in (tmp_path / "shards").iterdir()}
    assert after["shard-000001.tar"] == before["shard-000001.tar"] and after["shard-000002.tar"] == before["shard-000002.tar"]
    (tmp_path / "more").mkdir()
    more = make_records(tmp_path / "more", 12)[8:]  # four new recordings
    for r in more:
        r.id = str(int(r.id) + 1)  # ids not used before
    third = release_shards(kept + more, tmp_path / "shards", 3, tmp_path)
    assert [s["name"] for s in third if s["written"]] == ["shard-000003.tar", "shard-000004.tar"]
    assert sorted(k for s in third[3:] for k in s["keys"]) == sorted(f"{r.source}_{r.id}" for r in more)
    # every record once, in some shard
    assert sorted(k for s in third for k in s["keys"]) == sorted(f"{r.source}_{r.id}" for r in kept + more)


def test_attribution_csv_survives_hostile_text(tmp_path):
    recs = make_records(tmp_path, 2)
    n = write_attribution(tmp_path / "a.csv", recs)
    rows = list(csv.reader(open(tmp_path / "a.csv", newline="")))
    assert n == 2 and rows[0][:5] == ["id", "title", "author", "license", "url"] == ATTRIBUTION_FIELDS[:5]
    assert rows[1][1] == recs[0].title


@pytest.mark.slow
def test_stable_audio_tools_reads_the_shards(tmp_path):
    from stable_audio_tools.data.dataset import create_dataloader_from_config

    recs = make_records(tmp_path, 4)
    release_shards(recs, tmp_path / "shards", 2, tmp_path)
    loader = create_dataloader_from_config(
        {"dataset_type": "wds", "datasets": [{"id": "t", "path": str(tmp_path / "shards")}], "random_crop": False},
        batch_size=2, sample_size=16384, sample_rate=44100, audio_channels=2, num_workers=1,
    )
    audio, info = next(iter(loader))
    if audio.ndim == 4:  # the wds loader adds a leading batch axis of 1; its training wrappers drop it
        audio = audio[0]
    assert tuple(audio.shape) == (2, 2, 16384)
    assert np.isfinite(audio.numpy()).all() and float(audio.abs().max()) > 0.01
    # ... and wraps each metadata value in a list of one, which its conditioners unwrap
    assert len(info) == 2
    assert all(i["text"][0].startswith("Title") for i in info)
    assert {i["source"][0] for i in info} <= {"freesound", "fma"}
    assert all(int(i["seconds_total"][0]) == 2 for i in info)
