import json

import pytest

from curation.sources.ingest import dedupe
from curation.sources import fma, freesound


def test_fma_published_layout(demo_dir):
    recs = {r.id: r for r in fma.read_tracks(demo_dir / "fma_metadata" / "tracks.csv")}
    assert set(recs) == {"2", "3", "5", "10", "20", "26", "33", "40", "41", "42"}
    # tracks.csv has no URL column: no URL is made up
    assert all(r.url == "" for r in recs.values())
    r = recs["5"]
    assert (r.title, r.author, r.license_raw, r.genres) == (
        "Lonely (Remastered 2011)", "The Exampels", "Creative Commons Attribution 4.0", ["Pop"])
    assert recs["33"].status == "excluded" and recs["33"].reason == "malformed_record"
    assert fma.audio_path(demo_dir / "fma_full", "2") == demo_dir / "fma_full" / "000" / "000002.mp3"


def test_fma_bad_rows_are_kept_with_a_reason(tmp_path, demo_dir):
    text = (demo_dir / "fma_metadata" / "tracks.csv").read_text()
    width = len(text.splitlines()[1].split(","))
    text += "../../etc," + ",".join([""] * (width - 1)) + "\n"
    text += "40," + ",".join(["x"] * (width + 3)) + "\n"
    p = tmp_path / "tracks.csv"
    p.write_text(text)
    recs = list(fma.read_tracks(p))
    bad = [r for r in recs if r.reason == "malformed_record"]
    assert {r.id for r in bad} >= {"33", "40"}
    assert any(r.id.startswith("malformed:") and "../../etc" in r.evidence["detail"] for r in bad)


def test_fma_wrong_layout_is_a_clear_error(tmp_path):
    p = tmp_path / "tracks.csv"
    p.write_text("track_id,title\n1,x\n")
    with pytest.raises(fma.FMAFormatError, match="track_id"):
        list(fma.read_tracks(p))


def test_freesound_saved_pages(demo_dir):
    recs = list(freesound.read_pages(demo_dir / "freesound" / "pages"))
    assert len(recs) == 15
    r = recs[0]
    assert (r.id, r.author, r.license_raw) == ("1001", "loopmaker", "http://creativecommons.org/publicdomain/zero/1.0/")
    assert "synth" in r.tags
    assert recs[11].reason == "malformed_record"
    by_id = {r.id: r for r in recs}
    assert (by_id["1005"].gen_ai_preference, by_id["1005"].genai_present) == ("no-gen-ai", True)
    # a result without the field (as before Freesound added it) is told apart from one with it
    assert (by_id["1003"].gen_ai_preference, by_id["1003"].genai_present) == ("", False)
    assert by_id["1001"].genai_present and by_id["1001"].gen_ai_preference == "no-additional-preferences"


def test_freesound_unreadable_page_is_a_record(tmp_path):
    (tmp_path / "page_1.json").write_text("{not json")
    (tmp_path / "page_2.json").write_text(json.dumps({"count": 1, "next": None, "results": [{"id": 7}]}))
    recs = list(freesound.read_pages(tmp_path))
    assert [r.reason for r in recs] == ["malformed_record", ""]
    assert recs[0].id == "malformed:page_1.json"


def test_find_audio_uses_only_the_id(tmp_path):
    (tmp_path / "5.flac").write_bytes(b"x")
    assert freesound.find_audio(tmp_path, "5") == tmp_path / "5.flac"
    assert freesound.find_audio(tmp_path, "../5") is None
    assert freesound.find_audio(tmp_path, "6") is None


def test_duplicates_become_one_record(demo_dir):
    recs = dedupe(freesound.read_pages(demo_dir / "freesound" / "pages"))
    ids = [r.id for r in recs]
    assert ids.count("1001") == 1
    r = next(r for r in recs if r.id == "1001")
    assert r.seen == 2 and r.pending


def test_conflicting_duplicates_are_excluded(demo_dir):
    recs = list(freesound.read_pages(demo_dir / "freesound" / "pages"))
    twin = freesound.result_to_record(
        {"id": 1002, "name": "Forest wind and birds", "license": "http://creativecommons.org/licenses/by-nc/3.0/",
         "username": "fieldrec"}, "x")
    out = {r.id: r for r in dedupe(recs + [twin])}
    assert out["1002"].reason == "duplicate_conflict"
    assert "license_raw" in out["1002"].evidence["conflicting_fields"]


def test_raw_tracks_give_fma_urls_derived_and_missing(demo_dir):
    raw = fma.read_raw_tracks(demo_dir / "fma_metadata" / "raw_tracks.csv")
    recs = {r.id: r for r in fma.read_tracks(demo_dir / "fma_metadata" / "tracks.csv")}
    for r in recs.values():
        fma.attach_raw_tracks(r, raw)
    assert recs["2"].url == "https://freemusicarchive.org/music/AWOL/AWOL_-_A_Way_Of_Life/Food/"
    assert recs["2"].evidence["attribution"]["url_source"] == "raw_tracks.track_url"
    assert recs["10"].url == "https://freemusicarchive.org/music/Kimiko__The_Band/Summer/Summer_Nights_-_Radio_Edit/"
    assert recs["10"].evidence["attribution"]["url_source"] == "derived:album_url+title"
    assert recs["41"].url == "" and "neither" in recs["41"].evidence["attribution"]["detail"]
    assert recs["42"].url == "" and "not in raw_tracks" in recs["42"].evidence["attribution"]["detail"]


@pytest.mark.parametrize("url,expected", [
    ("http://freemusicarchive.org/music/AWOL/AWOL_-_A_Way_Of_Life/Food",
     "https://freemusicarchive.org/music/AWOL/AWOL_-_A_Way_Of_Life/Food/"),
    ("https://freemusicarchive.org/music/A/B/C/", "https://freemusicarchive.org/music/A/B/C/"),
    ("http://freemusicarchive.org/track/5/", ""),  # not FMA's /music/ page
    ("http://evil.example/music/A/B/C", ""),
    ("javascript:alert(1)", ""),
    ("", ""),
])
def test_fma_url_form(url, expected):
    assert fma.fma_url(url) == expected


@pytest.mark.parametrize("title,slug", [
    ("Food", "Food"), ("Sharper &amp; Clearer", "Sharper__Clearer"), ("W.T.M.", "WTM"),
    ("Gimme a Buck or I'll Touch You / Boilermaker", "Gimme_a_Buck_or_Ill_Touch_You__Boilermaker"),
    ("... listening to the sunshine burn the grass", "_listening_to_the_sunshine_burn_the_grass"),
    ("KränkentanzSuite", "KrnkentanzSuite"), ("Ghost & Shadows ( REPRISE )  ", "Ghost__Shadows__REPRISE___"),
])
def test_title_slug_as_fma_made_them(title, slug):
    # each pair is a real raw_tracks.csv title and the end of its track_url
    assert fma.title_slug(title) == slug
