"""AcoustID and ACRCloud backends against local servers that speak their documented APIs."""
import json

import numpy as np
import pytest
import soundfile as sf

from curation import synth
from curation.config import AcoustIdConfig, AcrCloudConfig, CopyrightConfig
from curation.copyright.acoustid import AcoustIdBackend
from curation.copyright.acrcloud import AcrCloudBackend, loudest_window
from curation.copyright.audio_id import make_backend
from curation.records import Record
from tests.fake_id_services import ACOUSTID_KEY, ACR_KEY, ACR_SECRET, FakeAcoustId, FakeAcrCloud

SR = 22050
MBID = "3a1e6a0e-8e0c-4f0e-9d8e-2f9b1f5c9e11"


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    d = tmp_path_factory.mktemp("id-audio")
    paths = {}
    for name, seed in (("known", 11), ("other", 12)):
        paths[name] = d / f"{name}.wav"
        sf.write(str(paths[name]), synth.song(40.0, sr=SR, seed=seed), SR)
    paths["broken"] = d / "broken.wav"
    paths["broken"].write_bytes(b"RIFF\x00\x00not audio at all")
    return paths


def record(path, rid="1", spans=None):
    r = Record(source="freesound", id=rid)
    r.audio_path = str(path)
    if spans is not None:
        r.evidence["music"] = {"is_music": True, "music_spans": spans}
    return r


class Sleeps:
    def __init__(self):
        self.calls = []

    def __call__(self, s):
        self.calls.append(s)


@pytest.fixture
def acoustid(audio):
    s = FakeAcoustId()
    s.add_reference(audio["known"], MBID, "Famous Song", "Famous Artist")
    yield s
    s.close()


def acoustid_backend(url, key=ACOUSTID_KEY, **kw):
    cfg = AcoustIdConfig(endpoint=url, min_interval_s=0, backoff_s=0.01, max_retries=2, **kw)
    return AcoustIdBackend(cfg, key=key, sleep=Sleeps())


def test_acoustid_match_goes_to_review_with_musicbrainz_ids(acoustid, audio):
    res = acoustid_backend(acoustid.url).identify(record(audio["known"]))
    assert res.status == "review" and res.reason == "copyright_audio_match"
    rec = res.evidence["matches"][0]["recordings"][0]
    assert rec["musicbrainz_recording_id"] == MBID and rec["title"] == "Famous Song"
    assert rec["artists"] == ["Famous Artist"] and res.evidence["matches"][0]["score"] == 0.97
    form = acoustid.requests[-1]
    assert form["client"] == ACOUSTID_KEY and int(form["duration"]) in (39, 40) and form["meta"] == "recordings releasegroups"
    assert ACOUSTID_KEY not in json.dumps(res.evidence)


def test_acoustid_no_match_and_low_score_are_clear(acoustid, audio):
    res = acoustid_backend(acoustid.url).identify(record(audio["other"]))
    assert res.status == "clear" and res.evidence["matches"] == [] and res.evidence["best_score"] == 0.0
    res = acoustid_backend(acoustid.url, min_score=0.99).identify(record(audio["known"]))
    assert res.status == "clear" and res.evidence["best_score"] == 0.97


@pytest.mark.parametrize("script,key,why", [
    ([], "wrong-key-123", "AcoustID error 4: invalid API key"),
    ([(200, b"<html>proxy</html>")], ACOUSTID_KEY, "not JSON"),
    ([(503, {"status": "error", "error": {"code": 13, "message": "service unavailable"}})] * 3, ACOUSTID_KEY,
     "HTTP 503 after 3 attempts"),
    ([(200, {"status": "error", "error": {"code": 14, "message": "too many requests"}})] * 3, ACOUSTID_KEY,
     "AcoustID error 14"),
    ([(200, {"status": "ok", "results": [{"id": "x", "score": "high"}]})], ACOUSTID_KEY, "unreadable result"),
])
def test_acoustid_errors_are_recorded_and_retried_later(acoustid, audio, script, key, why):
    acoustid.script = list(script)
    res = acoustid_backend(acoustid.url, key=key).identify(record(audio["known"]))
    assert res.status == "review" and res.reason == "copyright_audio_retry" and res.evidence["retry"]
    assert why in res.evidence["error"]
    assert key not in json.dumps(res.evidence)


def test_acoustid_transient_errors_then_an_answer(acoustid, audio):
    acoustid.script = [(429, {"status": "error", "error": {"code": 14, "message": "slow down"}}),
                       (200, {"status": "error", "error": {"code": 5, "message": "internal error"}})]
    backend = acoustid_backend(acoustid.url)
    res = backend.identify(record(audio["known"]))
    assert res.reason == "copyright_audio_match" and len(acoustid.requests) == 3
    assert len(backend.client.sleep.calls) == 2


def test_acoustid_unreadable_audio_goes_to_a_human(acoustid, audio):
    res = acoustid_backend(acoustid.url).identify(record(audio["broken"]))
    assert res.status == "review" and res.reason == "copyright_audio_review" and "fpcalc" in res.evidence["error"]
    assert acoustid.requests == []


def test_acoustid_key_from_the_environment(acoustid, audio, monkeypatch):
    c = CopyrightConfig(audio_backend="acoustid", acoustid=AcoustIdConfig(endpoint=acoustid.url, min_interval_s=0,
                                                                          key_env="MY_ACOUSTID_KEY"))
    with pytest.raises(ValueError, match="MY_ACOUSTID_KEY"):
        make_backend(c)
    monkeypatch.setenv("MY_ACOUSTID_KEY", ACOUSTID_KEY)
    assert make_backend(c).identify(record(audio["known"])).reason == "copyright_audio_match"


# --------------------------------------------------------------------------- ACRCloud


@pytest.fixture
def acr(audio):
    s = FakeAcrCloud()
    s.add_reference(audio["known"], "Famous Song", "Famous Artist", "GBAYE0601498")
    yield s
    s.close()


def acr_backend(url, key=ACR_KEY, secret=ACR_SECRET, **kw):
    cfg = AcrCloudConfig(endpoint=url, min_interval_s=0, backoff_s=0.01, max_retries=2, **kw)
    return AcrCloudBackend(cfg, access_key=key, access_secret=secret, sleep=Sleeps())


def test_acrcloud_match_with_isrc_and_offset(acr, audio):
    res = acr_backend(acr.url).identify(record(audio["known"], spans=[[20.0, 40.0]]))
    assert res.status == "review" and res.reason == "copyright_audio_match"
    m = res.evidence["matches"][0]
    assert m["title"] == "Famous Song" and m["artists"] == ["Famous Artist"] and m["isrc"] == "GBAYE0601498"
    sample = res.evidence["sample"]
    assert sample["seconds"] == 12.0 and 20.0 <= sample["start_s"] <= 28.0 and sample["from_music_spans"]
    assert abs(m["play_offset_ms"] / 1000 - sample["start_s"]) < 0.5  # where in the reference the sample is
    fields = acr.requests[-1]
    assert fields["data_type"] == "audio" and fields["signature_version"] == "1"
    text = json.dumps(res.evidence)
    assert ACR_KEY not in text and ACR_SECRET not in text


def test_acrcloud_no_result_is_clear(acr, audio):
    res = acr_backend(acr.url).identify(record(audio["other"]))
    assert res.status == "clear" and res.evidence["status"]["code"] == 1001


@pytest.mark.parametrize("script,secret,why", [
    ([], "not-the-secret", "ACRCloud 3014: Invalid Signature"),
    ([(200, {"status": {"msg": "Timeout", "code": 2005, "version": "1.0"}})], ACR_SECRET, "ACRCloud 2005"),
    ([(200, {"status": {"msg": "Limit exceeded", "code": 3003, "version": "1.0"}})] * 3, ACR_SECRET,
     "ACRCloud 3003"),
    ([(200, b"{\"status\": ")], ACR_SECRET, "unreadable answer"),
    ([(500, b"oops")] * 3, ACR_SECRET, "HTTP 500 after 3 attempts"),
    ([(200, {"status": {"msg": "Success", "code": 0, "version": "1.0"}, "metadata": {}})], ACR_SECRET,
     "without metadata.music"),
])
def test_acrcloud_other_codes_are_recorded_never_a_pass(acr, audio, script, secret, why):
    acr.script = list(script)
    res = acr_backend(acr.url, secret=secret).identify(record(audio["known"]))
    assert res.status == "review" and res.reason == "copyright_audio_retry" and res.evidence["retry"]
    assert why in res.evidence["error"]
    assert secret not in json.dumps(res.evidence) and ACR_KEY not in json.dumps(res.evidence)


def test_acrcloud_rate_limit_code_is_retried(acr, audio):
    acr.script = [(200, {"status": {"msg": "QpS limit exceeded", "code": 3015, "version": "1.0"}})]
    backend = acr_backend(acr.url)
    res = backend.identify(record(audio["known"]))
    assert res.reason == "copyright_audio_match" and len(acr.requests) == 2 and backend.client.sleep.calls
    assert acr.requests[0]["signature"] and acr.requests[1]["signature"]


def test_acrcloud_unreadable_audio_goes_to_a_human(acr, audio):
    res = acr_backend(acr.url).identify(record(audio["broken"]))
    assert res.reason == "copyright_audio_review" and acr.requests == []


def test_loudest_window_stays_in_the_music():
    sr = 100
    x = np.full(60 * sr, 0.01, np.float32)
    x[5 * sr : 10 * sr] = 1.0     # loud, but not music
    x[40 * sr : 45 * sr] = 0.5    # the loudest music
    a, b = loudest_window(x, sr, 8, spans=[[30.0, 60.0]])
    assert 37 * sr <= a <= 40 * sr and b - a == 8 * sr
    a, _ = loudest_window(x, sr, 8)
    assert 2 * sr <= a <= 5 * sr
    assert loudest_window(x[: 3 * sr], sr, 8) == (0, 3 * sr)


def test_acrcloud_needs_its_endpoint(demo_dir):
    from curation.config import ConfigError, load_config

    text = (demo_dir / "curate.toml").read_text().replace("[copyright]", '[copyright]\naudio_backend = "acrcloud"')
    (demo_dir / "acr_no_endpoint.toml").write_text(text)
    with pytest.raises(ConfigError, match="acrcloud.endpoint"):
        load_config(demo_dir / "acr_no_endpoint.toml")
