"""The readers on real files, as they are (../shared/real, see its README): FMA's
tracks.csv and raw_tracks.csv, Stable Audio Open's published attribution CSV, the Spotify
table and a spreadsheet-damaged copy of it, Freesound API responses from 2022 and 2025."""
from __future__ import annotations

import collections
import csv
import io
import shutil
from pathlib import Path

import pandas as pd
import pytest

from curation.sources.ingest import dedupe
from curation.licenses.stage import LICENSES
from tests.stage_run import run_stage
from curation.copyright.catalogue import CatalogueFormatError, read_catalogue
from curation.config import Config
from curation.copyright.normalize import split_artists
from curation.release.writers import ATTRIBUTION_FIELDS
from curation.sources import fma, freesound
from tests.conftest import REPO

REAL = REPO.parent / "shared" / "real"
if not REAL.is_dir():  # pragma: no cover - the real files live beside the checkout
    pytest.skip(f"the real files are expected at {REAL}", allow_module_level=True)

TRACKS = REAL / "fma" / "tracks.prefix.csv"
RAW = REAL / "fma" / "raw_tracks_excerpt.csv"

# License titles of the 682 complete records of tracks.prefix.csv (also in the README).
PREFIX_LICENSES = {
    "Attribution-NonCommercial-ShareAlike 3.0 International": 491,
    "Attribution-Noncommercial-No Derivative Works 2.0 UK: England ": 68,
    "Attribution-Noncommercial-Share Alike 3.0 United States": 56,
    "Attribution-NonCommercial-NoDerivatives (aka Music Sharing) 3.0 International": 37,
    "Attribution-Noncommercial-No Derivative Works 3.0 United States": 29,
    "Attribution": 1,
}


def _config(tmp_path: Path, **release) -> Config:
    cfg = Config(path=tmp_path / "c.toml", output_dir=tmp_path / "out")
    for k, v in release.items():
        setattr(cfg.release, k, v)
    return cfg


def test_fma_tracks_prefix_every_complete_record_and_the_cut_one(tmp_path):
    recs = list(fma.read_tracks(TRACKS))
    cut = [r for r in recs if not r.pending]
    assert [(r.id, r.reason) for r in cut] == [("933", "malformed_record")]
    assert "18 fields, expected 53" in cut[0].evidence["detail"]
    # an independent reader (pandas, as FMA's own code reads the file) over the same bytes
    # (pandas refuses the cut record, "EOF inside string": it reads the bytes before it)
    data = TRACKS.read_bytes()
    whole = data[: data.index(b"\n933,") + 1]
    df = pd.read_csv(io.BytesIO(whole), index_col=0, header=[0, 1], dtype=str, keep_default_na=False)
    complete = df.set_axis([str(i) for i in df.index], axis=0)
    got = [r for r in recs if r.pending]
    assert [r.id for r in got] == list(complete.index)
    assert len(got) == 682
    licenses = collections.Counter(r.license_raw for r in got)
    assert licenses == collections.Counter(complete[("track", "license")].tolist()) == PREFIX_LICENSES
    titles = dict(zip(complete.index, complete[("track", "title")]))
    assert all(r.title == titles[r.id] for r in got)  # quoted fields with newlines read whole


def test_raw_tracks_excerpt_is_read_despite_its_bad_byte():
    raw = fma.read_raw_tracks(RAW)
    assert len(raw.rows) == 2000 and raw.unreadable == 0
    bad = {k: v.problem for k, v in raw.rows.items() if v.problem}
    assert list(bad) == ["3451"] and "not UTF-8" in bad["3451"] and "album_title" in bad["3451"]
    # the rows around it are whole
    assert raw.rows["3450"].track_url.startswith("http://freemusicarchive.org/music/")
    assert raw.rows["3452"].license_url.startswith("http://creativecommons.org/")


def test_url_derivation_rule_on_the_real_rows_that_have_a_url():
    raw = fma.read_raw_tracks(RAW)
    both = [v for v in raw.rows.values() if v.track_url and v.album_url]
    exact = sum(fma.derive_track_url(v.album_url, v.track_title) == fma.fma_url(v.track_url) for v in both)
    # FMA numbers colliding titles and keeps a URL when a title is edited: the rule cannot
    # know those, so a derived URL is recorded as derived (measured: 1,721 of 1,984)
    assert len(both) == 1984 and exact == 1721
    # every real row without a track_url lacks the album's too: nothing to derive from
    empty = [v for v in raw.rows.values() if not v.track_url and not v.problem]
    assert len(empty) == 16 and all(fma.derive_track_url(v.album_url, v.track_title) == "" for v in empty)


def test_fma_urls_are_in_the_form_stable_audio_open_published():
    with open(REAL / "sao" / "fma_dataset_attribution2.csv", newline="", encoding="utf-8") as f:
        sao = list(csv.DictReader(f))
    assert len(sao) == 13874
    assert all(fma.fma_url(r["url"]) == r["url"] for r in sao)
    with open(REAL / "sao" / "fma_dataset_attribution2.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert ATTRIBUTION_FIELDS[: len(header)] == header  # the published layout comes first


def test_fma_licenses_and_urls_on_real_rows(tmp_path):
    raw = fma.read_raw_tracks(RAW)
    recs = list(fma.read_tracks(TRACKS))
    for r in recs:
        fma.attach_raw_tracks(r, raw)
    recs, counts = run_stage(LICENSES, recs, _config(tmp_path), tmp_path)
    by_id = {r.id: r for r in recs}
    # FMA's own URLs, in the published form; none made up
    assert by_id["2"].url == "https://freemusicarchive.org/music/AWOL/AWOL_-_A_Way_Of_Life/Food/"
    assert all(r.url == "" or r.url.startswith("https://freemusicarchive.org/music/") for r in recs)
    # title and license URL agree on every real row ("aka Music Sharing" is BY-NC-ND 3.0)
    assert counts.get("license_conflict", 0) == 0
    assert by_id["10"].license == "cc-by-nc-nd"
    assert by_id["10"].license_url == "https://creativecommons.org/licenses/by-nc-nd/3.0/"
    # the one CC BY track is a single with neither track_url nor album_url: not attributable
    assert by_id["614"].license == "cc-by" and by_id["614"].reason == "attribution_incomplete"
    assert counts == {"license_not_allowed": 681, "attribution_incomplete": 1}


def test_spotify_rows_load_and_multi_artist_credits_split():
    df, notes = read_catalogue(REAL / "spotify" / "dataset.partial.csv")
    assert len(df) == 23676 and notes == ["1 catalogue row(s) with neither artists nor a track name dropped"]
    multi = df[df["artists"].str.contains(";")]
    assert len(multi) > 1000
    row = multi.iloc[0]["artists"]
    assert split_artists(row) == [a.strip().lower() for a in row.split(";")]
    # pandas' re-save: "Unnamed: 0" header, rows shuffled, CRLF line ends
    sample, _ = read_catalogue(REAL / "spotify" / "dataset_sample.csv")
    assert len(sample) == 9999 and not sample["track_name"].str.endswith("\r").any()
    assert set(sample["track_id"]) <= set(df["track_id"]) | set(sample["track_id"])


def test_spreadsheet_damaged_spotify_copy_is_refused_naming_the_damage():
    with pytest.raises(CatalogueFormatError) as e:
        read_catalogue(REAL / "spotify" / "dataset_sample.excel-resaved.csv")
    msg = str(e.value)
    assert "byte-order mark" in msg and "double-encoded" in msg and "Agustín" in msg


def _saved(tmp_path: Path) -> Path:
    pages = tmp_path / "pages"
    pages.mkdir()
    for name in ("search_text_page.json", "sound_209943.json", "mock_sounds_data.json"):
        shutil.copyfile(REAL / "freesound" / name, pages / name)
    return pages


def test_freesound_responses_from_2022_and_2025_read_into_records(tmp_path):
    recs = list(freesound.read_pages(_saved(tmp_path)))
    # mock_sounds_data (15 sounds), search page (2), sound instance (1)
    assert len(recs) == 18 and all(r.pending for r in recs)
    # 209943 is in the search page (default fields) and as a sound instance (all fields):
    # one record, the fields merged, since where both have a field they agree
    merged = {r.id: r for r in dedupe(recs)}["209943"]
    assert merged.pending and merged.seen == 2 and merged.description == "this is a bass sound"
    by_id = collections.defaultdict(list)
    for r in recs:
        by_id[r.id].append(r)
    inst = by_id["209943"][-1]
    assert inst.url == "https://freesound.org/people/Veiler/sounds/209943/"
    assert inst.license_raw == "http://creativecommons.org/publicdomain/zero/1.0/"
    # none of these responses has gen_ai_preference (they predate it or did not ask for it)
    assert all(r.genai_present is False for r in recs)
    # the search page has no url field: the sound's page is built from username and id
    page_rec = by_id["529718"][0]
    assert page_rec.url == "https://freesound.org/people/Veiler/sounds/529718/"
    assert page_rec.evidence["attribution"]["url_source"].startswith("built:")


@pytest.mark.parametrize("require,expected", [(False, {"cc0": 3, "cc-by-nc": 15}), (True, {})])
def test_absent_gen_ai_preference_is_the_default_unless_required(tmp_path, require, expected):
    recs = dedupe(freesound.read_pages(_saved(tmp_path)))
    cfg = _config(tmp_path)
    cfg.freesound.require_genai_preference = require
    recs, _ = run_stage(LICENSES, recs, cfg, tmp_path)
    reasons = collections.Counter(r.reason for r in recs)
    if require:
        assert reasons == {"genai_preference_missing": 2, "license_not_allowed": 15}
    else:
        assert reasons == {"": 2, "license_not_allowed": 15}
        ok = [r for r in recs if r.pending]
        assert all(r.evidence["genai"]["rule"].startswith("absent") for r in ok)
        assert all(r.license_url == "https://creativecommons.org/publicdomain/zero/1.0/" for r in ok)


def test_upload_times_are_read_from_the_real_tables_and_pages():
    """The duplicates step keeps the earliest upload of equal obligations: tracks.csv's
    `track.date_created` and a saved sound's naive `created` (Brussels time) become UTC."""
    recs = {r.id: r for r in fma.read_tracks(TRACKS)}
    assert recs["2"].evidence["uploaded"] == {"at": "2008-11-26T01:48:12Z", "field": "fma:track.date_created"}
    dated = sum(1 for r in recs.values() if "uploaded" in r.evidence)
    assert dated >= 0.95 * len(recs)
    import json

    res = json.loads((REAL / "freesound" / "sound_209943.json").read_text())
    r = freesound.result_to_record(res, "sound_209943.json")
    assert r.evidence["uploaded"] == {"at": "2013-12-08T13:04:19Z", "field": "freesound:created"}
