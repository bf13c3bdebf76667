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


def test_crawl_pages_by_creation_time_and_asks_for_every_field(server, tmp_path):
    pages = tmp_path / "pages"
    summary = fs.crawl(api_cfg(server), pages, client=client(server))
    assert summary["caught_up"] and not summary["error"] and summary["sounds"] == 5
    assert summary["pages"] == summary["requests"] == 4  # 2 new, then 1 new beside the last one seen
    assert server.search_pages() == [1, 1, 1, 1]  # keyset: always the first page of a moving filter
    filters = server.search_filters()
    assert filters[0] == "" and filters[1] == f"created:[{server.sounds[1]['created']} TO *]"
    path, q, headers = server.requests[0]
    assert headers["Authorization"] == f"Token {TOKEN}"
    assert q["query"] == "birds" and q["page_size"] == "2" and q["sort"] == "created_asc"
    assert {"id", "license", "username", "previews", "gen_ai_preference", "tags", "created"} <= set(q["fields"].split(","))
    recs = list(fs.read_pages(pages))
    assert [r.id for r in recs] == ["1", "2", "3", "4", "5"]  # each once
    first = json.loads((pages / "page_000001.json").read_text())
    assert first["count"] == 5 and len(first["results"]) == 2
    assert json.loads((pages / "page_000002.json").read_text())["seen_before"] == 1


def test_default_page_size_is_150():
    assert FreesoundAPIConfig().page_size == 150


def test_429_waits_retry_after_and_5xx_and_bad_json_are_retried(server, tmp_path):
    server.faults = {"search:1": [429], "search:3": [500], "search:4": ["malformed"], "search:6": [429],
                     "search:7": [500]}
    sleeps = []
    summary = fs.crawl(api_cfg(server), tmp_path / "pages", client=client(server, sleeps))
    assert summary["caught_up"] and summary["pages"] == 4 and not summary["error"]
    assert summary["requests"] == 4 + 5  # every attempt counts against the budget
    assert sleeps.count(0.0) == 2  # Retry-After: 0, twice
    assert len(fs.page_files(tmp_path / "pages")) == 4


def test_a_later_run_continues_after_the_last_sound_and_sees_new_uploads(server, tmp_path):
    server.down_from_search = 3
    pages = tmp_path / "pages"
    first = fs.crawl(api_cfg(server), pages, client=client(server))
    assert first["pages"] == 2 and not first["caught_up"] and "HTTP 500" in first["error"]
    server.down_from_search = 0
    # meanwhile sound 4 is deleted and two sounds are uploaded: page numbers would skip one
    server.sounds = [x for x in server.sounds if x["id"] != 4] + sounds_for(server.url, [6, 7])
    server.requests.clear()
    second = fs.crawl(api_cfg(server), pages, client=client(server))
    assert second["caught_up"] and second["sounds"] == 3
    assert server.search_filters()[0] == f"created:[{server.sounds[2]['created']} TO *]"
    assert [r.id for r in fs.read_pages(pages)] == ["1", "2", "3", "5", "6", "7"]
    # nothing new: one request, nothing saved
    server.requests.clear()
    third = fs.crawl(api_cfg(server), pages, client=client(server))
    assert third["caught_up"] and third["sounds"] == 0 and third["requests"] == 1


def test_ties_in_creation_time_across_a_page_are_all_fetched(server, tmp_path):
    for x in server.sounds:
        x["created"] = "2024-02-02T10:00:00.000000"  # five sounds uploaded at once
    pages = tmp_path / "pages"
    summary = fs.crawl(api_cfg(server), pages, client=client(server))
    assert summary["caught_up"] and summary["sounds"] == 5
    assert sorted(r.id for r in fs.read_pages(pages)) == ["1", "2", "3", "4", "5"]


def test_the_daily_budget_stops_the_crawl_and_the_next_day_continues(server, tmp_path):
    now = [1_700_000_000.0]
    waits = []

    def sleep(s):
        waits.append(s)
        now[0] += s

    pages = tmp_path / "pages"
    budget = fs.RequestBudget(tmp_path / "api_budget.json", per_day=2, per_minute=1, clock=lambda: now[0], sleep=sleep)
    c = client(server)
    c.budget = budget
    first = fs.crawl(api_cfg(server), pages, client=c)
    assert first["pages"] == 2 and first["stopped"] and "daily request budget (2)" in first["error"]
    assert first["requests_today"] == 2 and len(server.requests) == 2
    assert waits and 59 < waits[0] <= 60.01  # one request a minute
    # a later run the same day makes no request at all
    again = fs.RequestBudget(tmp_path / "api_budget.json", per_day=2, per_minute=1, clock=lambda: now[0], sleep=sleep)
    assert again.left == 0
    c2 = client(server)
    c2.budget = again
    assert fs.crawl(api_cfg(server), pages, client=c2)["requests"] == 0 and len(server.requests) == 2
    now[0] += 86_400  # the next UTC day
    c3 = client(server)
    c3.budget = fs.RequestBudget(tmp_path / "api_budget.json", per_day=10, per_minute=0, clock=lambda: now[0])
    third = fs.crawl(api_cfg(server), pages, client=c3)
    assert third["caught_up"] and [r.id for r in fs.read_pages(pages)] == ["1", "2", "3", "4", "5"]


def test_the_apis_daily_limit_stops_the_crawl_not_the_caller(server, tmp_path):
    server.daily_limit = 2
    sleeps = []
    summary = fs.crawl(api_cfg(server), tmp_path / "pages", client=client(server, sleeps))
    assert summary["pages"] == 2 and "daily request limit" in summary["stopped"]
    assert not sleeps  # no waiting out a day inside the run
    assert json.loads((tmp_path / "api_budget.json").read_text())["used"] >= 2000  # spent for today


def test_bounded_retries_then_a_clear_error_without_the_token(server, caplog):
    server.down_from_search = 1
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


def test_a_download_cut_off_or_timed_out_is_retried_and_never_left_half_written(server, tmp_path):
    recs = [fs.result_to_record(s, str(i)) for i, s in enumerate(server.sounds)]
    server.hang_s = 1.5
    server.faults = {"preview:1": ["reset", "hang", "reset"], "preview:2": ["reset"] * 4}
    c = fs.FreesoundClient(server.url + "/apiv2", TOKEN, timeout_s=0.5, max_retries=3, backoff_s=0.0,
                           sleep=lambda s: None)
    p = fs.download_audio(recs[0], api_cfg(server), tmp_path, c)
    assert p.read_bytes() == server.audio[1]  # whole, after two resets and a timeout
    with pytest.raises(fs.FreesoundAPIError, match="download incomplete after 4 attempts") as e:
        fs.download_audio(recs[1], api_cfg(server), tmp_path, c)
    assert TOKEN not in str(e.value)
    assert not list(tmp_path.glob("2.*")) and not list(tmp_path.glob(".tmp-*"))  # nothing half-written


def test_refresh_finds_changed_licenses_opt_outs_and_deletions(server, tmp_path, labels_csv):
    """Sounds fetched `refresh_days` ago are fetched again, a page of ids per request; the next
    ingest takes the newest version of each: a license changed to one not allowed is
    `license_changed`, an opt-out `genai_opt_out`, a 404 `source_deleted` (its last metadata kept)."""
    import time as _time

    from curation import pipeline
    from curation import record_table as rt
    from curation.config import load_config
    from curation.stage import read_part

    cfg_path = tmp_path / "curate.toml"
    (tmp_path / "x.pth").write_bytes(b"")
    cfg_path.write_text(f'output_dir = "out"\n[freesound.api]\nbase_url = "{server.url}/apiv2"\nquery = "birds"\n'
                        f'page_size = 2\nbackoff_s = 0.0\nrefresh_days = 30\n[music]\ncheckpoint = "x.pth"\n'
                        f'labels_csv = "{labels_csv}"\n')
    cfg = load_config(cfg_path)
    pages, _ = pipeline.freesound_dirs(cfg)
    day = 86_400
    start = _time.time() - 40 * day
    first = fs.crawl(cfg.freesound.api, pages, client=client(server), clock=lambda: start)
    assert first["sounds"] == 5 and first["refreshed"] == 0
    # a month later: one license changed, one opt-out, one deletion, one new upload
    server.sounds[1]["license"] = "http://creativecommons.org/licenses/by-nc/4.0/"
    server.sounds[2]["gen_ai_preference"] = "no-gen-ai"
    server.sounds = [x for x in server.sounds if x["id"] != 4] + sounds_for(server.url, [6])
    server.requests.clear()
    second = fs.crawl(cfg.freesound.api, pages, client=client(server), clock=lambda: start + 35 * day)
    assert second["sounds"] == 1 and second["refreshed"] == 5 and second["deleted"] == 1
    filters = server.search_filters()
    assert "id:(1 OR 2)" in filters and "id:(5)" in filters  # oldest first, a page of ids per request
    assert [p for p, _, _ in server.requests if p.startswith("/apiv2/sounds/")] == ["/apiv2/sounds/4/"]
    # within refresh_days nothing is asked again
    server.requests.clear()
    third = fs.crawl(cfg.freesound.api, pages, client=client(server), clock=lambda: start + 36 * day)
    assert third["refreshed"] == 0 and third["requests"] == 1

    parts, rep = pipeline.ingest_parts(cfg, tmp_path / "parts", partition_records=3, workers=1, client=client(server))
    recs = rt.to_records(rt.unify([read_part(p) for p in parts]))
    pipeline.apply_licenses(recs, cfg)
    by_id = {r.id: r for r in recs}
    assert sorted(by_id) == ["1", "2", "3", "4", "5", "6"] and rep.counts["distinct"] == 6
    assert by_id["2"].reason == "license_changed"
    assert by_id["2"].evidence["license_changed_from"] == "http://creativecommons.org/publicdomain/zero/1.0/"
    assert by_id["3"].reason == "genai_opt_out"
    assert by_id["4"].reason == "source_deleted" and by_id["4"].title == "sound 4"
    assert {by_id[i].status for i in ("1", "5", "6")} == {"pending"}
    assert by_id["1"].seen == 2 and by_id["1"].evidence["versions"] == 2
