import json

import pytest

from curation.pipeline import dedupe
from curation.sources import fma, freesound


def test_fma_published_layout(demo_dir):
    recs = {r.id: r for r in fma.read_tracks(demo_dir / "fma_metadata" / "tracks.csv")}
    assert set(recs) == {"2", "3", "5", "10", "20", "26", "33"}
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
    assert len(recs) == 12
    r = recs[0]
    assert (r.id, r.author, r.license_raw) == ("1001", "loopmaker", "http://creativecommons.org/publicdomain/zero/1.0/")
    assert "synth" in r.tags
    assert recs[-1].reason == "malformed_record"
    assert recs[4].gen_ai_preference == "no-gen-ai"


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
