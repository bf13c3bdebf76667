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
from tests.fake_id_services import ACOUSTID_KEY, ACR_KEY, ACR_SECRET, FakeAcoustId, FakeAcrCloud, acoustid_error

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


@pytest.mark.parametrize("script,why", [
    ([(200, b"<html>proxy</html>")], "not JSON"),
    ([acoustid_error(13)] * 3, "HTTP 503 after 3 attempts"),
    ([acoustid_error(14, "3/s")] * 3, "HTTP 429 after 3 attempts"),
    ([acoustid_error(5)] * 3, "HTTP 500 after 3 attempts"),
    ([(200, {"status": "ok", "results": [{"id": "x", "score": "high"}]})], "unreadable result"),
])
def test_acoustid_passing_errors_are_recorded_and_asked_again_later(acoustid, audio, script, why):
    """Errors a later request may pass (with the real server's HTTP statuses: 13 -> 503,
    14 -> 429, 5 -> 500), an unreadable answer: `copyright_audio_retry`, asked again next run."""
    acoustid.script = list(script)
    res = acoustid_backend(acoustid.url).identify(record(audio["known"]))
    assert res.status == "review" and res.reason == "copyright_audio_retry" and res.evidence["retry"]
    assert why in res.evidence["error"] and "stop_run" not in res.evidence
    assert ACOUSTID_KEY not in json.dumps(res.evidence)


def test_acoustid_transient_errors_then_an_answer(acoustid, audio):
    acoustid.script = [acoustid_error(14, "3/s"), acoustid_error(5)]
    backend = acoustid_backend(acoustid.url)
    res = backend.identify(record(audio["known"]))
    assert res.reason == "copyright_audio_match" and len(acoustid.requests) == 3
    assert len(backend.client.sleep.calls) == 2


def test_acoustid_an_invalid_fingerprint_goes_to_a_human_not_back_to_the_queue(acoustid, audio, monkeypatch):
    """Error 3 (and 2, 19: this request as it is) would be sent again unchanged by every run."""
    import curation.copyright.acoustid as acoustid_mod

    monkeypatch.setattr(acoustid_mod, "chromaprint", lambda *a, **k: (40, "not-a-fingerprint!"))
    res = acoustid_backend(acoustid.url).identify(record(audio["known"]))
    assert res.reason == "copyright_audio_review" and res.evidence["code"] == 3 and res.evidence["retry"] is False
    assert "AcoustID error 3: invalid fingerprint" in res.evidence["error"] and len(acoustid.requests) == 1


def test_acoustid_a_request_too_large_goes_to_a_human(acoustid, audio):
    acoustid.max_body = 100  # the server's limit: 413 with error 19
    res = acoustid_backend(acoustid.url).identify(record(audio["known"]))
    assert res.reason == "copyright_audio_review" and res.evidence["code"] == 19
    assert "request too large" in res.evidence["error"]


def test_acoustid_a_refused_key_is_found_before_any_lookup(acoustid, audio):
    from curation.copyright.acoustid import KeyRefused

    acoustid_backend(acoustid.url).check_key()  # a good key: answered 2 (no fingerprint), looks nothing up
    with pytest.raises(KeyRefused, match="error 4: invalid API key") as e:
        acoustid_backend(acoustid.url, key="wrong-key-123").check_key()
    assert "wrong-key-123" not in str(e.value) and "ACOUSTID_API_KEY" in str(e.value)
    assert all("fingerprint" not in form for form in acoustid.requests) and len(acoustid.requests) == 2
    # refused during a run (a key revoked meanwhile): the rest of the run is not asked
    res = acoustid_backend(acoustid.url, key="wrong-key-123").identify(record(audio["known"]))
    assert res.reason == "copyright_audio_retry" and "error 4" in res.evidence["stop_run"]


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
    assert m["isrcs"] == ["GBAYE0601498"] and m["source"] == "music"
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


@pytest.mark.parametrize("script,why", [
    ([(200, {"status": {"msg": "Timeout", "code": 2005, "version": "1.0"}})], "ACRCloud 2005"),
    ([(200, b"{\"status\": ")], "unreadable answer"),
    ([(500, b"oops")] * 3, "HTTP 500 after 3 attempts"),
    ([(200, {"status": {"msg": "Success", "code": 0, "version": "1.0"}, "metadata": {}})],
     "without metadata.music or metadata.custom_files"),
])
def test_acrcloud_other_codes_are_recorded_never_a_pass(acr, audio, script, why):
    acr.script = list(script)
    res = acr_backend(acr.url).identify(record(audio["known"]))
    assert res.status == "review" and res.reason == "copyright_audio_retry" and res.evidence["retry"]
    assert why in res.evidence["error"] and "stop_run" not in res.evidence
    assert ACR_SECRET not in json.dumps(res.evidence) and ACR_KEY not in json.dumps(res.evidence)


@pytest.mark.parametrize("key,secret,code", [(ACR_KEY, ACR_SECRET, 3003), ("wrong-key", ACR_SECRET, 3001),
                                             (ACR_KEY, "not-the-secret", 3014)])
def test_acrcloud_quota_and_credential_codes_stop_the_asking_at_once(acr, audio, key, secret, code):
    """3003 is the project's quota ("limit exceeded, please upgrade your account"): no backoff
    (it was about 31 s per recording), one request, and the answer says to stop asking."""
    acr.quota = 0
    backend = acr_backend(acr.url, key=key, secret=secret)
    res = backend.identify(record(audio["known"]))
    assert res.reason == "copyright_audio_retry" and res.evidence["retry"]
    assert res.evidence["stop_run"].startswith(f"ACRCloud {code}") and len(acr.requests) == 1
    assert not backend.client.sleep.calls
    assert secret not in json.dumps(res.evidence) and key not in json.dumps(res.evidence)


def test_acrcloud_no_fingerprint_goes_to_a_human(acr, audio, tmp_path):
    quiet = tmp_path / "quiet.wav"
    sf.write(str(quiet), np.zeros(SR * 20, np.float32), SR)
    res = acr_backend(acr.url).identify(record(quiet))
    assert res.reason == "copyright_audio_review" and res.evidence["retry"] is False
    assert "ACRCloud 2004" in res.evidence["error"] and len(acr.requests) == 1


def test_acrcloud_a_match_in_a_custom_bucket_is_read(acr, audio):
    acr.custom_bucket = True
    res = acr_backend(acr.url).identify(record(audio["known"], spans=[[20.0, 40.0]]))
    assert res.reason == "copyright_audio_match" and len(acr.requests) == 1
    m = res.evidence["matches"][0]
    assert m["source"] == "custom_files" and m["title"] == "Famous Song" and m["bucket_id"] == "12345"
    assert m["audio_id"] and m["acrid"]


def test_acrcloud_every_isrc_of_a_list(audio):
    s = FakeAcrCloud()
    try:
        s.add_reference(audio["known"], "Famous Song", "Famous Artist", ["GBAYE0601498", "USRC17607839"])
        res = acr_backend(s.url).identify(record(audio["known"], spans=[[20.0, 40.0]]))
    finally:
        s.close()
    m = res.evidence["matches"][0]
    assert m["isrcs"] == ["GBAYE0601498", "USRC17607839"] and m["isrc"] == "GBAYE0601498, USRC17607839"
    from curation.copyright.review_page import _evidence_html

    html = _evidence_html(res.evidence)
    assert "GBAYE0601498" in html and "USRC17607839" in html


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


def test_a_spent_quota_stops_the_asking_for_the_rest_of_the_run_in_every_partition(acr, audio, tmp_path, monkeypatch):
    """What the copyright stage does with ACRCloud's 3003: the recording that heard it and every
    later one, in this partition and in the next, stay `copyright_audio_retry` without a request;
    the stage's note says why; the flow clears the stop when the next run's stage starts."""
    from curation.copyright import stage as copyright_stage
    from curation.config import load_config
    from curation.copyright.audio_id import RunStop
    from tests.stage_run import run_stage_result

    out = tmp_path / "out"
    (tmp_path / "x.pth").write_bytes(b"")
    (tmp_path / "pages").mkdir()
    (tmp_path / "audio").mkdir()
    (tmp_path / "c.toml").write_text(f'output_dir = "{out}"\n[freesound]\npages_dir = "pages"\naudio_dir = "audio"\n'
                                     f'[music]\ncheckpoint = "x.pth"\n'
                                     f'[copyright]\naudio_backend = "acrcloud"\n'
                                     f'[copyright.acrcloud]\nendpoint = "{acr.url}"\nmin_interval_s = 0\n')
    monkeypatch.setenv("ACRCLOUD_ACCESS_KEY", ACR_KEY)
    monkeypatch.setenv("ACRCLOUD_ACCESS_SECRET", ACR_SECRET)
    cfg = load_config(tmp_path / "c.toml", check_inputs=False)
    acr.quota = 1

    def part(ids):
        recs = [record(audio["known"], rid=i, spans=[[20.0, 40.0]]) for i in ids]
        return run_stage_result(copyright_stage.COPYRIGHT, recs, cfg, tmp_path / "work")

    first, rep1 = part(["1", "2", "3"])
    assert [r.reason for r in first] == ["copyright_audio_match", "copyright_audio_retry", "copyright_audio_retry"]
    assert len(acr.requests) == 2 and rep1["counts"]["not_asked"] == 1
    assert "ACRCloud 3003" in first[1].evidence["copyright"]["stop_run"]
    assert "3003" in first[2].evidence["copyright"]["not_asked"]
    assert any("quota is spent" in n and "asked again by the next run" in n for n in rep1["notes"])
    second, rep2 = part(["4", "5"])  # another partition, another task: not asked either
    assert {r.reason for r in second} == {"copyright_audio_retry"} and len(acr.requests) == 2
    assert rep2["counts"]["not_asked"] == 2
    assert RunStop(cfg.work_dir).read()
    copyright_stage.COPYRIGHT.start_run(cfg)  # the next run's copyright stage, as the flow starts it
    assert RunStop(cfg.work_dir).read() is None
    acr.quota = 5
    third, _ = part(["4", "5"])
    assert {r.reason for r in third} == {"copyright_audio_match"} and len(acr.requests) == 4
