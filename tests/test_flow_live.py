"""The flow against a local server speaking Freesound APIv2, and on a Dask cluster."""
import io
import json

import pytest
import soundfile as sf

from curation.storage import read_pandas
from curation import synth
from tests.conftest import prefect_homes, cli_env, curate
from tests.fake_freesound import TOKEN, FakeFreesound, created, sounds_for

pytestmark = pytest.mark.slow


def ogg(seconds, seed):
    buf = io.BytesIO()
    sf.write(buf, synth.field_recording(seconds, seed=seed), 44100, format="OGG", subtype="VORBIS")
    return buf.getvalue()


CONFIG = """
output_dir = "out"
task_runner = "{runner}"
[freesound.api]
base_url = "{url}/apiv2"
query = "birds"
page_size = 2
backoff_s = 0.0
max_retries = 3
[music]
checkpoint = "{models}/panns_random_init.pth"
labels_csv = "{models}/class_labels_indices.csv"
"""


@pytest.mark.parametrize("runner", ["local", "dask"])
def test_live_crawl_through_the_flow_keeps_the_token_secret(tmp_path, demo_dir, runner):
    with FakeFreesound([], {}) as srv:
        srv.sounds = sounds_for(srv.url, [11, 12, 13])
        srv.sounds[1]["license"] = "http://creativecommons.org/licenses/by-nc/4.0/"
        srv.sounds.append({"id": 14, "name": "no previews", "license": srv.sounds[0]["license"],
                           "username": "u", "previews": {}, "created": created(14)})
        srv.audio = {i: ogg(2.0, i) for i in (11, 12, 13)}
        srv.faults = {"search:1": [429], "search:3": [500], "preview:13": [500] * 10}
        cfg = tmp_path / "curate.toml"
        cfg.write_text(CONFIG.format(runner=runner, url=srv.url, models=(demo_dir / "models").as_posix()))
        env = cli_env(tmp_path)
        env["FREESOUND_API_TOKEN"] = TOKEN
        proc = curate("run", str(cfg), env=env)

    out = tmp_path / "out"
    df = read_pandas(out / "manifests" / "records.parquet").set_index("id")
    assert set(df.index) == {"11", "12", "13", "14"}
    assert df.loc["11", "status"] == "included"
    assert df.loc["12", "reason"] == "license_not_allowed"
    assert df.loc["13", "reason"] == "audio_missing"  # the download failed after its retries
    assert "HTTP 500" in json.loads(df.loc["13", "evidence"])["download_error"]
    assert df.loc["14", "reason"] == "audio_missing"
    assert (out / "work" / "freesound" / "audio" / "11.ogg").read_bytes() == srv.audio[11]
    assert len(list((out / "work" / "freesound" / "pages").glob("*.json"))) == 3  # 2, 1 and 1 new
    # the token appears in no output, log or artifact
    secret = TOKEN.encode()
    assert TOKEN not in proc.stdout and TOKEN not in proc.stderr
    for root in (out, *prefect_homes(tmp_path)):
        for f in root.rglob("*"):
            if f.is_file():
                assert secret not in f.read_bytes(), f


def test_three_runs_over_a_changing_catalogue(tmp_path, demo_dir):
    """Scheduled runs as a deployment makes them, over a catalogue that changes between runs:
    new uploads come in, a license changes, a sound is deleted, an uploader opts out. Each run
    ends with the expected decisions, release and summary; audio is downloaded once."""
    import tarfile

    def included(out):
        df = read_pandas(out / "manifests" / "records.parquet").set_index("id")
        return df, sorted(df.index[df["status"] == "included"])

    def released(out):
        keys = set()
        for tar in (out / "release" / "shards").glob("*.tar"):
            with tarfile.open(tar) as t:
                keys |= {m.name.split(".")[0] for m in t.getmembers()}
        return sorted(k.split("_")[1] for k in keys)

    with FakeFreesound([], {}) as srv:
        srv.sounds = sounds_for(srv.url, [31, 32, 33, 34])
        srv.audio = {i: ogg(2.0, i) for i in range(31, 36)}
        cfg = tmp_path / "curate.toml"
        cfg.write_text(CONFIG.format(runner="local", url=srv.url, models=(demo_dir / "models").as_posix())
                       .replace("max_retries = 3", "max_retries = 3\nrefresh_days = 0.00001"))
        env = cli_env(tmp_path)
        env["FREESOUND_API_TOKEN"] = TOKEN
        out = tmp_path / "out"

        curate("run", str(cfg), env=env)
        df, inc = included(out)
        assert inc == ["31", "32", "33", "34"] and released(out) == inc

        srv.sounds[1]["license"] = "http://creativecommons.org/licenses/by-nc/4.0/"
        srv.sounds += sounds_for(srv.url, [35])
        curate("run", str(cfg), env=env)
        df, inc = included(out)
        assert inc == ["31", "33", "34", "35"] and released(out) == inc
        assert df.loc["32", "reason"] == "license_changed"
        ch = json.loads((out / "manifests" / "run_summary.json").read_text())["changes"]
        assert (ch["added"], ch["changed"]) == (1, 1)
        assert ch["transitions"] == {"included/ -> excluded/license_changed": 1}

        srv.sounds = [x for x in srv.sounds if x["id"] != 33]
        srv.sounds[2]["gen_ai_preference"] = "no-gen-ai"  # sound 34
        curate("run", str(cfg), env=env)
        df, inc = included(out)
        assert inc == ["31", "35"] and released(out) == inc
        assert df.loc["33", "reason"] == "source_deleted" and df.loc["33", "title"] == "sound 33"
        assert df.loc["34", "reason"] == "genai_opt_out"
        summary = json.loads((out / "manifests" / "run_summary.json").read_text())
        assert summary["changes"]["transitions"] == {"included/ -> excluded/genai_opt_out": 1,
                                                     "included/ -> excluded/source_deleted": 1}
        assert summary["crawl"]["refreshed"] == 5 and summary["crawl"]["deleted"] == 1
        music = next(st for st in summary["stages"] if st["name"] == "music")["counts"]
        assert music.get("cached") == 2 and "scored" not in music  # results from the cache, nothing scored again
        assert summary["crawl"]["requests_today"] <= 2000
        previews = [p for p, _, _ in srv.requests if p.startswith("/previews/")]
        assert sorted(previews) == sorted(set(previews))  # each recording downloaded once
