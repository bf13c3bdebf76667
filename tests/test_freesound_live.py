import io
import json
import logging

import pytest
import soundfile as sf

from curation import synth
from curation.config import FreesoundAPIConfig
from curation.sources import freesound as fs
from curation.sources import freesound_api as fs_api
from curation.sources import freesound_crawl as fs_crawl
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
    """The crawl's settings; the lookback off unless a test turns it on (its own tests below)."""
    kw.setdefault("lookback_days", 0)
    return FreesoundAPIConfig(base_url=srv.url + "/apiv2", query="birds", page_size=2, max_retries=3,
                              backoff_s=0.0, timeout_s=5, **kw)


def client(srv, sleeps=None, **kw):
    return fs_api.FreesoundClient(srv.url + "/apiv2", TOKEN, timeout_s=5, max_retries=3, backoff_s=0.01,
                              sleep=(sleeps.append if sleeps is not None else (lambda s: None)), **kw)


def test_crawl_pages_by_creation_time_and_asks_for_every_field(server, tmp_path):
    pages = tmp_path / "pages"
    summary = fs_crawl.crawl(api_cfg(server), pages, client=client(server))
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


def test_429_backs_off_and_5xx_and_bad_json_are_retried(server, tmp_path, caplog):
    """Freesound's 429 carries no Retry-After (apiv2/exceptions.py): the client backs off."""
    server.faults = {"search:1": [429], "search:3": [500], "search:4": ["malformed"], "search:6": [429],
                     "search:7": [500]}
    sleeps = []
    summary = fs_crawl.crawl(api_cfg(server), tmp_path / "pages", client=client(server, sleeps))
    assert summary["caught_up"] and summary["pages"] == 4 and not summary["error"]
    assert summary["requests"] == 4 + 5  # every attempt counts against the budget
    assert sleeps == [0.01] * 5  # two 429s, two 500s, one malformed page: each backs off once
    assert caplog.text.count("throttled the crawl (429)") == 2
    assert len(fs.page_files(tmp_path / "pages")) == 4


def test_a_later_run_continues_after_the_last_sound_and_sees_new_uploads(server, tmp_path):
    server.down_from_search = 3
    pages = tmp_path / "pages"
    first = fs_crawl.crawl(api_cfg(server), pages, client=client(server))
    assert first["pages"] == 2 and not first["caught_up"] and "HTTP 500" in first["error"]
    server.down_from_search = 0
    # meanwhile sound 4 is deleted and two sounds are uploaded: page numbers would skip one
    server.sounds = [x for x in server.sounds if x["id"] != 4] + sounds_for(server.url, [6, 7])
    server.requests.clear()
    second = fs_crawl.crawl(api_cfg(server), pages, client=client(server))
    assert second["caught_up"] and second["sounds"] == 3
    assert server.search_filters()[0] == f"created:[{server.sounds[2]['created']} TO *]"
    assert [r.id for r in fs.read_pages(pages)] == ["1", "2", "3", "5", "6", "7"]
    # nothing new: one request, nothing saved
    server.requests.clear()
    third = fs_crawl.crawl(api_cfg(server), pages, client=client(server))
    assert third["caught_up"] and third["sounds"] == 0 and third["requests"] == 1


def test_ties_in_creation_time_across_a_page_are_all_fetched(server, tmp_path):
    for x in server.sounds:
        x["created"] = "2024-02-02T10:00:00.000000"  # five sounds uploaded at once
    pages = tmp_path / "pages"
    summary = fs_crawl.crawl(api_cfg(server), pages, client=client(server))
    assert summary["caught_up"] and summary["sounds"] == 5
    assert sorted(r.id for r in fs.read_pages(pages)) == ["1", "2", "3", "4", "5"]


def test_the_budget_is_a_sliding_24_hours_not_a_utc_day(server, tmp_path):
    """Freesound's day limit is DRF's SimpleRateThrottle: the requests of the last 24 h, not of a
    calendar day. Three requests at 08:00 leave none at 23:50 and none at 00:05 the next UTC day
    (a calendar-day budget would have spent three more there, into the API's 429); at 08:01 the
    window has freed them."""
    import calendar

    day0 = calendar.timegm((2026, 3, 1, 8, 0, 0))
    now = [float(day0)]
    waits = []

    def sleep(s):
        waits.append(s)
        now[0] += s

    server.clock = lambda: now[0]
    server.daily_limit = 3
    pages = tmp_path / "pages"

    def run():
        c = client(server)
        c.budget = fs_api.RequestBudget(tmp_path / "api_budget.json", per_day=3, per_minute=1, clock=lambda: now[0],
                                    sleep=sleep)
        return fs_crawl.crawl(api_cfg(server), pages, client=c, clock=lambda: now[0])

    first = run()
    assert first["requests"] == 3 and first["stopped"] and "budget (3 per 24 h) is spent" in first["error"]
    assert first["requests_today"] == 3 and waits and 59 < waits[0] <= 60.01  # one request a minute
    assert "2026-03-02T08:00:00Z" in first["error"]  # when the first of them frees
    for hhmm in ((23, 50), (24, 5)):  # the same evening, and just after midnight UTC
        now[0] = day0 + (hhmm[0] - 8) * 3600 + hhmm[1] * 60
        n = len(server.requests)
        assert run()["requests"] == 0 and len(server.requests) == n
    now[0] = day0 + 86_400 + 181  # 08:03 the next day: the three have aged out
    third = run()
    assert third["caught_up"] and not third["error"] and [r.id for r in fs.read_pages(pages)] == ["1", "2", "3", "4", "5"]
    assert len(server.allowed) == server.api_requests  # the API never had to refuse one


def test_the_apis_daily_limit_stops_the_crawl_and_a_later_run_asks_again(server, tmp_path):
    """The API's own /day 429 (the key is shared with another client): the crawl stops without
    waiting inside the run; a run within the hour asks nothing; a later one asks once (a refused
    request costs nothing: SimpleRateThrottle records only what it lets through) and continues
    once the API's window frees."""
    now = [1_780_000_000.0]
    server.clock = lambda: now[0]
    server.allowed = [now[0] - 3600.0] * 3  # another client spent the key's day an hour ago
    server.daily_limit = 4
    sleeps = []
    pages = tmp_path / "pages"

    def run():
        c = client(server, sleeps)
        c.budget = fs_api.RequestBudget(tmp_path / "api_budget.json", per_day=2000, per_minute=0, clock=lambda: now[0])
        return fs_crawl.crawl(api_cfg(server), pages, client=c, clock=lambda: now[0])

    first = run()
    assert first["pages"] == 1 and "daily request limit" in first["stopped"] and not sleeps  # no waiting out a day
    last = server.requests[-1]
    state = json.loads((tmp_path / "api_budget.json").read_text())
    assert state["blocked_until"] == now[0] + 3600 and len(state["requests"]) == 2
    now[0] += 1800
    n = len(server.requests)
    assert run()["requests"] == 0 and len(server.requests) == n
    now[0] += 1900  # past the hour: one request, refused again
    again = run()
    assert again["requests"] == 1 and "daily request limit" in again["stopped"]
    now[0] += 86_400  # the API's window has freed
    done = run()
    assert done["caught_up"] and not done["error"] and [r.id for r in fs.read_pages(pages)] == ["1", "2", "3", "4", "5"]
    assert last[0] == "/apiv2/search/"


def test_bounded_retries_then_a_clear_error_without_the_token(server, caplog):
    server.down_from_search = 1
    c = client(server)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(fs.FreesoundAPIError) as e:
            c.get_json(server.url + "/apiv2/search/text/", {"query": "x"})
    assert "HTTP 500 after 4 attempts" in str(e.value)
    assert TOKEN not in str(e.value) and TOKEN not in caplog.text


def test_bad_token_error_never_echoes_it(server):
    c = fs_api.FreesoundClient(server.url + "/apiv2", "wrong-token-123", max_retries=1, sleep=lambda s: None)
    with pytest.raises(fs.FreesoundAPIError) as e:
        c.get_json(server.url + "/apiv2/search/text/")
    assert "401" in str(e.value) and "wrong-token-123" not in str(e.value)


def test_connection_refused_is_retried_then_reported():
    c = fs_api.FreesoundClient("http://127.0.0.1:9/apiv2", TOKEN, timeout_s=0.5, max_retries=2, backoff_s=0,
                           sleep=lambda s: None)
    with pytest.raises(fs.FreesoundAPIError, match="ConnectionError after 3 attempts"):
        c.get_json("http://127.0.0.1:9/apiv2/search/text/")


def test_token_from_env_or_missing(monkeypatch):
    api = FreesoundAPIConfig(token_env="MY_FS_TOKEN")
    monkeypatch.setenv("MY_FS_TOKEN", "abc")
    assert fs_api.resolve_token(api) == "abc"
    monkeypatch.delenv("MY_FS_TOKEN")
    with pytest.raises(fs.FreesoundAPIError, match="MY_FS_TOKEN"):
        fs_api.resolve_token(api)


def test_download_preview_with_token_and_original_with_oauth(server, tmp_path):
    recs = [fs.result_to_record(s, str(i)) for i, s in enumerate(server.sounds)]
    server.faults = {"preview:1": [429]}
    c = client(server)
    p = fs_crawl.download_audio(recs[0], api_cfg(server), tmp_path, c)
    assert p == tmp_path / "1.ogg" and p.read_bytes() == server.audio[1]
    # already there: not fetched again
    n = len(server.requests)
    assert fs_crawl.download_audio(recs[0], api_cfg(server), tmp_path, c) == p and len(server.requests) == n
    c2 = client(server, oauth_token=OAUTH)
    p2 = fs_crawl.download_audio(recs[1], api_cfg(server, download="original"), tmp_path / "orig", c2)
    assert p2.name == "2.wav" and p2.read_bytes() == server.audio[2]
    assert server.requests[-1][2]["Authorization"] == f"Bearer {OAUTH}"


def test_a_download_cut_off_or_timed_out_is_retried_and_never_left_half_written(server, tmp_path):
    recs = [fs.result_to_record(s, str(i)) for i, s in enumerate(server.sounds)]
    server.hang_s = 1.5
    server.faults = {"preview:1": ["reset", "hang", "reset"], "preview:2": ["reset"] * 4}
    c = fs_api.FreesoundClient(server.url + "/apiv2", TOKEN, timeout_s=0.5, max_retries=3, backoff_s=0.0,
                           sleep=lambda s: None)
    p = fs_crawl.download_audio(recs[0], api_cfg(server), tmp_path, c)
    assert p.read_bytes() == server.audio[1]  # whole, after two resets and a timeout
    with pytest.raises(fs.FreesoundAPIError, match="download incomplete after 4 attempts") as e:
        fs_crawl.download_audio(recs[1], api_cfg(server), tmp_path, c)
    assert TOKEN not in str(e.value)
    assert not list(tmp_path.glob("2.*")) and not list(tmp_path.glob(".tmp-*"))  # nothing half-written


def test_refresh_finds_changed_licenses_opt_outs_and_deletions(server, tmp_path, labels_csv):
    """Sounds fetched `refresh_days` ago are fetched again, a page of ids per request; the next
    ingest takes the newest version of each: a license changed to one not allowed is
    `license_changed`, an opt-out `genai_opt_out`, a 404 `source_deleted` (its last metadata kept)."""
    import time as _time

    from curation.sources import ingest
    from curation.licenses.stage import LICENSES
    from tests.stage_run import run_stage
    from curation.sources.freesound import freesound_dirs
    from curation import record_table as rt
    from curation.config import load_config
    from curation.stage import read_part

    cfg_path = tmp_path / "curate.toml"
    (tmp_path / "x.pth").write_bytes(b"")
    cfg_path.write_text(f'output_dir = "out"\n[freesound.api]\nbase_url = "{server.url}/apiv2"\nquery = "birds"\n'
                        f'page_size = 2\nbackoff_s = 0.0\nrefresh_days = 30\n[music]\ncheckpoint = "x.pth"\n'
                        f'labels_csv = "{labels_csv}"\n')
    cfg = load_config(cfg_path)
    pages, _ = freesound_dirs(cfg)
    day = 86_400
    start = _time.time() - 40 * day
    first = fs_crawl.crawl(cfg.freesound.api, pages, client=client(server), clock=lambda: start)
    assert first["sounds"] == 5 and first["refreshed"] == 0
    # a month later: one license changed, one opt-out, one deletion, one new upload
    server.sounds[1]["license"] = "http://creativecommons.org/licenses/by-nc/4.0/"
    server.sounds[2]["gen_ai_preference"] = "no-gen-ai"
    server.sounds = [x for x in server.sounds if x["id"] != 4] + sounds_for(server.url, [6])
    server.requests.clear()
    second = fs_crawl.crawl(cfg.freesound.api, pages, client=client(server), clock=lambda: start + 35 * day)
    assert second["sounds"] == 1 and second["refreshed"] == 5 and second["deleted"] == 1
    filters = server.search_filters()
    assert "id:(1 OR 2)" in filters and "id:(5)" in filters  # oldest first, a page of ids per request
    assert [p for p, _, _ in server.requests if p.startswith("/apiv2/sounds/")] == ["/apiv2/sounds/4/"]
    # within refresh_days nothing is asked again
    server.requests.clear()
    third = fs_crawl.crawl(cfg.freesound.api, pages, client=client(server), clock=lambda: start + 36 * day)
    assert third["refreshed"] == 0 and third["lookback"]["found"] == 0
    assert third["requests"] == 1 + third["lookback"]["requests"]  # caught up; the lookback finds nothing

    parts, rep = ingest.ingest_parts(cfg, tmp_path / "parts", partition_records=3, workers=1, client=client(server))
    recs = rt.to_records(rt.unify([read_part(p) for p in parts]))
    recs, _ = run_stage(LICENSES, recs, cfg, tmp_path)
    by_id = {r.id: r for r in recs}
    assert sorted(by_id) == ["1", "2", "3", "4", "5", "6"] and rep.counts["distinct"] == 6
    assert by_id["2"].reason == "license_changed"
    assert by_id["2"].evidence["license_changed_from"] == "http://creativecommons.org/publicdomain/zero/1.0/"
    assert by_id["3"].reason == "genai_opt_out"
    assert by_id["4"].reason == "source_deleted" and by_id["4"].title == "sound 4"
    assert {by_id[i].status for i in ("1", "5", "6")} == {"pending"}
    assert by_id["1"].seen == 2 and by_id["1"].evidence["versions"] == 2


# --------------------------------------------------------------------------- against the real API's behaviour


def test_a_sound_approved_after_the_cursor_passed_it_is_found_by_the_lookback(server, tmp_path):
    """Sound 3 is uploaded between 2 and 4 but moderated late: the first crawl passes its upload
    time while it is not in the index. Once approved, it keeps its upload time, behind the
    cursor; the next run's lookback finds it, and says so."""
    server.sounds[2]["moderation_state"] = "PENDING"
    pages = tmp_path / "pages"
    first = fs_crawl.crawl(api_cfg(server, lookback_days=30), pages, client=client(server))
    assert first["caught_up"] and first["sounds"] == 4 and first["lookback"]["found"] == 0
    assert first["lookback"]["complete"] and first["lookback"]["to"] == server.sounds[4]["created"]
    server.sounds[2]["moderation_state"] = "OK"
    server.requests.clear()
    second = fs_crawl.crawl(api_cfg(server, lookback_days=30), pages, client=client(server))
    assert second["new_uploads"] == 0 and second["lookback"]["found"] == 1 and second["sounds"] == 1
    lb = [f for f in server.search_filters() if " TO " in f and not f.endswith("TO *]")]
    assert lb and lb[0] == f"created:[2023-12-02T00:05:00Z TO {server.sounds[4]['created']}]"
    assert sorted(r.id for r in fs.read_pages(pages)) == ["1", "2", "3", "4", "5"]
    saved = json.loads(fs.page_files(pages)[-1].read_text())
    assert saved["lookback"] is True and [r["id"] for r in saved["results"]] == [3]
    # without the lookback the sound is never seen: the loss this guards against
    server.sounds[1]["moderation_state"] = "PENDING"
    other = tmp_path / "other" / "pages"
    fs_crawl.crawl(api_cfg(server), other, client=client(server))
    server.sounds[1]["moderation_state"] = "OK"
    fs_crawl.crawl(api_cfg(server), other, client=client(server))
    assert "2" not in {r.id for r in fs.read_pages(other)}


def test_a_lookback_cut_short_by_the_budget_resumes_where_it_stopped(server, tmp_path):
    pages = tmp_path / "pages"
    fs_crawl.crawl(api_cfg(server, lookback_days=30), pages, client=client(server))
    server.sounds += sounds_for(server.url, [0])  # uploaded first, approved only now
    server.sounds[-1]["created"] = "2024-01-01T00:00:30Z"
    c = client(server)
    c.budget = fs_api.RequestBudget(tmp_path / "b.json", per_day=2, per_minute=0)
    cut = fs_crawl.crawl(api_cfg(server, lookback_days=30), pages, client=c)
    assert cut["stopped"] and cut["lookback"]["complete"] is False and cut["lookback"]["requests"] == 1
    at = json.loads((tmp_path / "crawl_cursor.json").read_text())["lookback_at"]
    assert at and at.endswith("Z")
    server.requests.clear()
    done = fs_crawl.crawl(api_cfg(server, lookback_days=30), pages, client=client(server))
    assert done["lookback"]["resumed_at"] == at and done["lookback"]["complete"]
    assert "0" in {r.id for r in fs.read_pages(pages)}


def test_a_cursor_from_pages_saved_before_the_api_was_zone_aware_is_normalised(server, tmp_path):
    """Pages saved before 2025 hold naive `created` values (Brussels time, microseconds); Solr
    refuses a date without `Z` (the stand-in answers that 400). The cursor is normalised to UTC
    with `Z`, so the next crawl goes on instead of failing on every run."""
    pages = tmp_path / "pages"
    pages.mkdir()
    old = [dict(x, created=f"2024-01-01T01:0{i}:00.123456") for i, x in enumerate(server.sounds[:2])]
    (pages / "page_000001.json").write_text(json.dumps({"count": 2, "next": None, "previous": None,
                                                        "results": old}))
    (tmp_path / "crawl_cursor.json").write_text(json.dumps({"last_created": "2024-01-01T01:01:00.123456",
                                                            "last_id": 2, "pages": 1}))
    summary = fs_crawl.crawl(api_cfg(server), pages, client=client(server))
    assert not summary["error"] and summary["caught_up"]
    assert server.search_filters()[0] == "created:[2024-01-01T00:01:00Z TO *]"  # 01:01 in Brussels is 00:01 UTC
    assert sorted(r.id for r in fs.read_pages(pages)) == ["1", "2", "3", "4", "5"]
    # the stand-in refuses what the old code sent
    c = client(server)
    with pytest.raises(fs.FreesoundAPIError, match="HTTP 400"):
        c.search({"query": "", "filter": "created:[2024-01-01T01:01:00.123456 TO *]"})
    assert fs_crawl._cursor_from_pages(pages).endswith("Z")


def test_search_uses_the_current_endpoint_and_falls_back_only_where_it_is_missing(server, tmp_path):
    fs_crawl.crawl(api_cfg(server), tmp_path / "a" / "pages", client=client(server))
    assert {p for p, _, _ in server.requests if "search" in p} == {"/apiv2/search/"}
    server.requests.clear()
    server.legacy_only = True
    summary = fs_crawl.crawl(api_cfg(server), tmp_path / "b" / "pages", client=client(server))
    assert summary["caught_up"] and summary["sounds"] == 5
    paths = [p for p, _, _ in server.requests if "search" in p]
    assert paths[0] == "/apiv2/search/" and set(paths[1:]) == {"/apiv2/search/text/"}  # asked once, then the old path


def test_null_results_are_counted_not_records_and_a_page_past_the_end_is_the_end(server, tmp_path):
    server.nulls = {2}
    pages = tmp_path / "pages"
    summary = fs_crawl.crawl(api_cfg(server), pages, client=client(server))
    assert summary["caught_up"] and summary["null_results"] >= 1 and summary["sounds"] == 4
    assert sorted(r.id for r in fs.read_pages(pages)) == ["1", "3", "4", "5"]  # no record made of a null
    assert all(None not in json.loads(p.read_text())["results"] for p in fs.page_files(pages))
    # sound 2 serialises again: the lookback of a later run finds it
    server.nulls = set()
    later = fs_crawl.crawl(api_cfg(server, lookback_days=30), pages, client=client(server))
    assert later["lookback"]["found"] == 1 and "2" in {r.id for r in fs.read_pages(pages)}
    # a page past the end: the real API answers 404 (views.py: page > num_pages and count != 0)
    c = client(server)
    page, _ = c.search({"query": "", "page": 1, "page_size": 2})
    assert page["results"]
    page, raw = c.search({"query": "", "page": 9, "page_size": 2})
    assert page["results"] == [] and page["next"] is None and raw == b""
    # inside a crawl: five sounds of one second, paged through the tie; two deleted before its page 3
    for x in server.sounds:
        x["created"] = "2024-02-02T10:00:00Z"

    def delete(n):
        if n == 4:
            server.sounds = server.sounds[:3]
    server.on_search = delete
    server.searches = 0
    server.requests.clear()
    tie = fs_crawl.crawl(api_cfg(server), tmp_path / "tie" / "pages", client=client(server))
    assert server.search_pages() == [1, 1, 2, 3]  # the last one is past the end: a 404
    assert tie["caught_up"] and not tie["error"]
    assert sorted(r.id for r in fs.read_pages(tmp_path / "tie" / "pages")) == ["1", "2", "3", "4"]


def test_previews_go_without_credentials(server, tmp_path):
    recs = [fs.result_to_record(s, str(i)) for i, s in enumerate(server.sounds)]
    c = client(server, oauth_token=OAUTH)
    fs_crawl.download_audio(recs[0], api_cfg(server), tmp_path, c)
    path, _, headers = server.requests[-1]
    assert path == "/previews/1.ogg" and "Authorization" not in headers
    fs_crawl.crawl(api_cfg(server), tmp_path / "pages", client=c)
    assert all(h.get("Authorization") == f"Token {TOKEN}" for p, _, h in server.requests if p.startswith("/apiv2/"))
