import io
import json
import logging

import pytest
import soundfile as sf

from curation import synth
from curation.config import FreesoundAPIConfig
from curation.sources import freesound as fs
from tests.fake_freesound import OAUTH, TOKEN, FakeFreesound, sounds_for


def ogg(seconds=1.0, seed=0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, synth.field_recording(seconds, seed=seed), 44100, format="OGG", subtype="VORBIS")
    return buf.getvalue()


@pytest.fixture
def server():
    srv = FakeFreesound([], {})
    with srv:
        srv.sounds = sounds_for(srv.url, range(1, 6))
        srv.audio = {i: ogg(seed=i) for i in range(1, 6)}
        yield srv


def api_cfg(srv, **kw) -> FreesoundAPIConfig:
    return FreesoundAPIConfig(base_url=srv.url + "/apiv2", query="birds", page_size=2, max_retries=3,
                              backoff_s=0.0, timeout_s=5, **kw)


def client(srv, sleeps=None, **kw):
    return fs.FreesoundClient(srv.url + "/apiv2", TOKEN, timeout_s=5, max_retries=3, backoff_s=0.01,
                              sleep=(sleeps.append if sleeps is not None else (lambda s: None)), **kw)


def test_crawl_follows_next_and_asks_for_every_field(server, tmp_path):
    pages = tmp_path / "pages"
    summary = fs.crawl(api_cfg(server), pages, client=client(server))
    assert summary == {"pages": 3, "done": True, "resumed": False, "error": ""}
    assert server.search_pages() == [1, 2, 3]
    path, q, headers = server.requests[0]
    assert headers["Authorization"] == f"Token {TOKEN}"
    assert q["query"] == "birds" and q["page_size"] == "2"
    assert {"id", "license", "username", "previews", "gen_ai_preference", "tags"} <= set(q["fields"].split(","))
    recs = list(fs.read_pages(pages))
    assert [r.id for r in recs] == ["1", "2", "3", "4", "5"]
    # pages are kept exactly as the API sent them
    first = json.loads((pages / "page_000001.json").read_text())
    assert first["count"] == 5 and len(first["results"]) == 2


def test_default_page_size_is_150():
    assert FreesoundAPIConfig().page_size == 150


def test_429_waits_retry_after_and_5xx_and_bad_json_are_retried(server, tmp_path):
    server.faults = {"page:1": [429], "page:2": [500, "malformed"], "page:3": [429, 500]}
    sleeps = []
    summary = fs.crawl(api_cfg(server), tmp_path / "pages", client=client(server, sleeps))
    assert summary["done"] and summary["pages"] == 3 and not summary["error"]
    assert server.search_pages() == [1, 1, 2, 2, 2, 3, 3, 3]
    assert sleeps.count(0.0) == 2  # Retry-After: 0, twice
    assert len(fs.page_files(tmp_path / "pages")) == 3


def test_interrupted_crawl_continues_from_the_cursor(server, tmp_path):
    server.faults = {"page:3": [500] * 10}
    pages = tmp_path / "pages"
    first = fs.crawl(api_cfg(server), pages, client=client(server))
    assert first["pages"] == 2 and not first["done"]
    assert "HTTP 500" in first["error"]
    server.requests.clear()
    server.faults = {}
    second = fs.crawl(api_cfg(server), pages, client=client(server))
    assert second["done"] and second["resumed"] and second["pages"] == 3
    assert server.search_pages() == [3]  # pages 1 and 2 are not fetched again
    assert [r.id for r in fs.read_pages(pages)] == ["1", "2", "3", "4", "5"]


def test_bounded_retries_then_a_clear_error_without_the_token(server, caplog):
    server.faults = {"page:1": [500] * 10}
    c = client(server)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(fs.FreesoundAPIError) as e:
            c.get_json(server.url + "/apiv2/search/text/", {"query": "x"})
    assert "HTTP 500 after 4 attempts" in str(e.value)
    assert TOKEN not in str(e.value) and TOKEN not in caplog.text


def test_bad_token_error_never_echoes_it(server):
    c = fs.FreesoundClient(server.url + "/apiv2", "wrong-token-123", max_retries=1, sleep=lambda s: None)
    with pytest.raises(fs.FreesoundAPIError) as e:
        c.get_json(server.url + "/apiv2/search/text/")
    assert "401" in str(e.value) and "wrong-token-123" not in str(e.value)


def test_connection_refused_is_retried_then_reported():
    c = fs.FreesoundClient("http://127.0.0.1:9/apiv2", TOKEN, timeout_s=0.5, max_retries=2, backoff_s=0,
                           sleep=lambda s: None)
    with pytest.raises(fs.FreesoundAPIError, match="ConnectionError after 3 attempts"):
        c.get_json("http://127.0.0.1:9/apiv2/search/text/")


def test_token_from_env_or_missing(monkeypatch):
    api = FreesoundAPIConfig(token_env="MY_FS_TOKEN")
    monkeypatch.setenv("MY_FS_TOKEN", "abc")
    assert fs.resolve_token(api) == "abc"
    monkeypatch.delenv("MY_FS_TOKEN")
    with pytest.raises(fs.FreesoundAPIError, match="MY_FS_TOKEN"):
        fs.resolve_token(api)


def test_download_preview_with_token_and_original_with_oauth(server, tmp_path):
    recs = [fs.result_to_record(s, str(i)) for i, s in enumerate(server.sounds)]
    server.faults = {"preview:1": [429]}
    c = client(server)
    p = fs.download_audio(recs[0], api_cfg(server), tmp_path, c)
    assert p == tmp_path / "1.ogg" and p.read_bytes() == server.audio[1]
    # already there: not fetched again
    n = len(server.requests)
    assert fs.download_audio(recs[0], api_cfg(server), tmp_path, c) == p and len(server.requests) == n
    c2 = client(server, oauth_token=OAUTH)
    p2 = fs.download_audio(recs[1], api_cfg(server, download="original"), tmp_path / "orig", c2)
    assert p2.name == "2.wav" and p2.read_bytes() == server.audio[2]
    assert server.requests[-1][2]["Authorization"] == f"Bearer {OAUTH}"
