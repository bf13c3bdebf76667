import json

import pytest

from curation.copyright.audio_id import HttpBackend, make_backend
from curation.config import HttpIdConfig
from curation.records import Record
from tests.fake_id_services import reply, serve

TOKEN = "id-service-secret-42"


class Service:
    """A local identification service: token auth, multipart upload, scripted faults."""

    def __init__(self):
        self.script = []  # responses to give, in order: (status, body, headers)
        self.requests = []
        outer = self

        def handle(h, body):
            outer.requests.append((dict(h.headers), body))
            if h.headers.get("X-Api-Key") != f"Key {TOKEN}":
                status, data, headers = 401, {"error": f"bad key {h.headers.get('X-Api-Key')}"}, {}
            else:
                status, data, headers = outer.script.pop(0) if outer.script else (200, {"result": {"matches": []}}, {})
            reply(h, status, data, headers)

        self.server = serve(handle)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/identify"


@pytest.fixture
def service():
    s = Service()
    yield s
    s.server.shutdown()


def cfg(url, **kw):
    base = dict(endpoint=url, auth_header="X-Api-Key", auth_prefix="Key ", file_field="audio",
                fields={"ref": "{source}-{id}"}, match_path="result.matches",
                evidence_paths={"title": "result.matches.0.title", "label": "result.matches.0.label"},
                min_interval_s=0.5, max_retries=3, backoff_s=0.1, timeout_s=5)
    base.update(kw)
    return HttpIdConfig(**base)


def record(tmp_path, rid="7"):
    p = tmp_path / f"{rid}.wav"
    p.write_bytes(b"RIFF-audio-bytes-" + rid.encode())
    r = Record(source="freesound", id=rid)
    r.audio_path = str(p)
    return r


class Clock:
    def __init__(self):
        self.t = 0.0
        self.sleeps = []

    def sleep(self, s):
        self.sleeps.append(round(s, 3))
        self.t += s

    def now(self):
        return self.t


def test_match_after_429_and_5xx_with_rate_limit(service, tmp_path):
    service.script = [
        (429, {"detail": "slow down"}, {"Retry-After": "2"}),
        (503, b"<html>down</html>", {}),
        (200, {"result": {"matches": [{"title": "Famous Song", "label": "Big Label"}]}}, {}),
    ]
    clock = Clock()
    backend = HttpBackend(cfg(service.url), token=TOKEN, sleep=clock.sleep, clock=clock.now)
    res = backend.identify(record(tmp_path))
    assert res.status == "review" and res.reason == "copyright_audio_match"
    assert res.evidence["response"] == {"title": "Famous Song", "label": "Big Label"}
    assert len(service.requests) == 3
    headers, body = service.requests[-1]
    assert b"RIFF-audio-bytes-7" in body and b'name="audio"' in body and b"freesound-7" in body
    assert 2.0 in clock.sleeps and 0.2 in clock.sleeps  # Retry-After, then backoff
    assert TOKEN not in json.dumps(res.evidence)


def test_clear_and_rate_limit_between_recordings(service, tmp_path):
    clock = Clock()
    backend = HttpBackend(cfg(service.url), token=TOKEN, sleep=clock.sleep, clock=clock.now)
    assert backend.identify(record(tmp_path, "1")).status == "clear"
    assert backend.identify(record(tmp_path, "2")).status == "clear"
    assert clock.sleeps == [0.5]  # the second request waited its turn


@pytest.mark.parametrize("script,why", [
    ([(500, b"x", {})] * 4, "HTTP 500 after 4 attempts"),
    ([(200, b"{not json", {})], "JSONDecodeError"),
    ([(200, {"other": 1}, {})], "no 'result.matches'"),
])
def test_unreadable_answers_fail_closed(service, tmp_path, script, why):
    service.script = list(script)
    backend = HttpBackend(cfg(service.url, min_interval_s=0), token=TOKEN, sleep=lambda s: None)
    res = backend.identify(record(tmp_path))
    assert res.status == "review" and res.reason == "copyright_audio_review"
    assert why in res.evidence["error"]


def test_bad_token_never_appears(service, tmp_path):
    backend = HttpBackend(cfg(service.url, min_interval_s=0), token="wrong-secret-token", sleep=lambda s: None)
    res = backend.identify(record(tmp_path))
    assert res.status == "review" and "HTTP 401" in res.evidence["error"]
    assert "wrong-secret-token" not in json.dumps(res.evidence)


def test_token_from_the_environment(service, tmp_path, monkeypatch):
    from curation.config import CopyrightConfig

    monkeypatch.setenv("MY_ID_TOKEN", TOKEN)
    c = CopyrightConfig(audio_backend="http", http=cfg(service.url, token_env="MY_ID_TOKEN", min_interval_s=0))
    backend = make_backend(c)
    assert backend.identify(record(tmp_path)).status == "clear"
    monkeypatch.delenv("MY_ID_TOKEN")
    with pytest.raises(ValueError, match="MY_ID_TOKEN"):
        make_backend(c)
