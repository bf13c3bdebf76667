import pandas as pd
import pytest

from curation.copyright.audio_id import make_backend
from curation.copyright.normalize import fold, normalize_title, split_artists
from curation.copyright.metadata_match import CatalogueMatcher
from curation.records import Record


@pytest.mark.parametrize("raw,text,applied", [
    ("Lonely (Remastered 2011)", "lonely", {"version_suffix"}),
    ("Summer Nights - Radio Edit", "summer nights", {"version_suffix"}),
    ("Song Title (Live at Wembley 1986)", "song title", {"version_suffix"}),
    ("Hey Jude - 2015 Remaster", "hey jude", {"version_suffix"}),
    ("Halo [Acoustic Version]", "halo", {"version_suffix"}),
    ("Déjà Vu", "deja vu", {"case_accents_punctuation"}),
    ("Rock & Roll", "rock and roll", {"ampersand"}),
    ("Don't Stop!", "dont stop", {"case_accents_punctuation"}),
    ("(I Can't Get No) Satisfaction", "i cant get no satisfaction", {"case_accents_punctuation"}),
])
def test_title_normalisation(raw, text, applied):
    nt = normalize_title(raw)
    assert nt.text == text
    assert applied <= set(nt.applied)


def test_featured_artists_leave_the_title():
    nt = normalize_title("Bad Habits (feat. Ed Sheeran & Friends)")
    assert nt.text == "bad habits"
    assert nt.featured == ["ed sheeran", "friends"]
    nt = normalize_title("Stay ft. Justin Bieber")
    assert nt.text == "stay" and nt.featured == ["justin bieber"]


def test_artist_splitting():
    assert split_artists("Kimiko;The Band") == ["kimiko", "the band"]
    assert split_artists("Simon & Garfunkel") == ["simon", "garfunkel"]
    assert split_artists("Beyoncé, JAY-Z") == ["beyonce", "jay z"]
    assert fold("AC/DC") == "ac dc"


@pytest.fixture(scope="module")
def index():
    df = pd.DataFrame(
        [
            ("t1", "The Beatles", "Abbey Road", "Come Together - Remastered 2009"),
            ("t2", "Simon & Garfunkel", "Bridge", "The Boxer"),
            ("t3", "Kimiko;The Band", "Summer", "Summer Nights"),
            ("t4", "Somebody Else", "Intro", "Intro"),
            ("t5", "Adele", "25", "Lonely"),
            ("t6", "Beyoncé", "Lemonade", "Formation"),
        ],
        columns=["track_id", "artists", "album_name", "track_name"],
    )
    return CatalogueMatcher(df)


@pytest.mark.parametrize("title,artist,candidate", [
    ("Come Together", "Beatles, The", "t1"),
    ("Come Together (Live)", "the beatles", "t1"),
    ("The Boxer", "Simon and Garfunkel", "t2"),
    ("Summer Nights (Radio Edit)", "The Band & Kimiko", "t3"),
    ("Lnoely", "Adele", "t5"),  # a short title with a typo, strong artist
    ("Formation", "Beyonce", "t6"),
    ("Formation", "Beyonce feat. Someone", "t6"),
])
def test_true_matches_are_flagged(index, title, artist, candidate):
    m = index.match([title], [artist]).iloc[0]
    assert m.flagged, m
    assert index.candidate(m.crow)["track_id"] == candidate
    assert m.title_score > 0 and m.artist_score > 0
    assert m.candidates[0]["track_id"] == candidate and m.candidates[0]["flagged"]


@pytest.fixture(scope="module")
def crowded():
    """A catalogue where filler words are frequent, as in the real table: many "X Collective",
    "The X", "X Band", "Lil X" artists, and titles that many artists use."""
    rows = []
    names = ["Amber", "Delta", "Marigold", "Copper", "Juniper", "Saffron", "Obsidian", "Tangerine", "Vermilion",
             "Cobalt", "Fjord", "Lantern", "Meadow", "Orchid", "Quarry", "Riverbed", "Sparrow", "Thistle"]
    for i, n in enumerate(names):
        for j, filler in enumerate(["Collective", "Band", "Orchestra", "Quartet"]):
            rows.append((f"c{i}-{j}", f"{n} {filler}", "LP", ["Love", "Intro", "Echo", "Track 1"][j]))
        rows.append((f"t{i}", f"The {n}s", "LP", f"{n} Song"))
        rows.append((f"l{i}", f"Lil {n}", "LP", "Interlude"))
    rows += [("g1", "Kimiko Ishizaka", "LP", "Golden Fire"), ("g2", "Kimiko Ishizaka;Someone Else", "LP", "Part 2"),
             ("x1", "Beyoncé", "LP", "Halo - Remastered"), ("x2", "The Offspring", "LP", "Pretty Fly (For A White Guy)")]
    return CatalogueMatcher(pd.DataFrame(rows, columns=["track_id", "artists", "album_name", "track_name"]))


@pytest.mark.parametrize("title,artist", [
    ("Love", "Zephyr Collective"),          # a common title; the artists share only a filler word
    ("Intro", "Violet Band"),
    ("Interlude", "Lil Zephyr"),
    ("Golden Tufe", "Kimiko Ishizaka"),     # the artist's other song, sharing a word
    ("Part 1", "Kimiko Ishizaka"),          # numbers differ
    ("Love", "Marie Curie & Amber Band"),   # a credit of several artists, one word of which overlaps
    ("Echo", "Copper"),                     # a common title and half an artist's name
])
def test_filler_words_and_common_titles_are_not_matches(crowded, title, artist):
    m = crowded.match([title], [artist]).iloc[0]
    assert not m.flagged, (title, artist, crowded.candidate(m.crow))


@pytest.mark.parametrize("title,artist,candidate", [
    ("Love", "Amber Collective", "c0-0"),
    ("Love", "Amber Colective", "c0-0"),        # a typo in a filler word
    ("Golden Fire (Live)", "Kimiko Ishizaka", "g1"),
    ("Golden Fier", "Kimiko Ishizaka", "g1"),   # a typo in a rare title
    ("Part 2", "Someone Else, Kimiko Ishizaka", "g2"),
    ("Halo", "Beyonce", "x1"),
    ("Pretty Fly", "The Offspring", "x2"),       # the catalogue's title has a bracket the query lacks
    ("Intro", "Delta Band", "c1-1"),
])
def test_matches_survive_in_a_crowded_catalogue(crowded, title, artist, candidate):
    m = crowded.match([title], [artist]).iloc[0]
    assert m.flagged and crowded.candidate(m.crow)["track_id"] == candidate, m


@pytest.mark.parametrize("title,artist", [
    ("Intro", "Nobody Known"),          # generic title, another artist
    ("The Boxer", "Completely Different"),  # same title, another artist
    ("Something Else", "Adele"),        # the artist's other song
    ("Food", "AWOL"),
])
def test_hard_negatives_are_not_flagged(index, title, artist):
    assert not index.match([title], [artist]).iloc[0].flagged


def test_missing_columns_are_a_clear_error():
    with pytest.raises(ValueError, match="track_name"):
        CatalogueMatcher(pd.DataFrame({"track_id": [], "artists": [], "album_name": []}))


def test_review_backend_sends_music_to_a_human():
    res = make_backend("review").identify(Record(source="freesound", id="1"))
    assert res.status == "review" and res.reason == "copyright_audio_review"
    with pytest.raises(ValueError):
        make_backend("nope")


def test_copyright_match_cli(tmp_path, demo_dir):
    import csv

    from tests.conftest import curate

    out = tmp_path / "m.csv"
    curate("copyright", "match", str(demo_dir / "fma_metadata" / "tracks.csv"),
           str(demo_dir / "spotify" / "dataset.csv"), "--out", str(out))
    rows = {r["id"]: r for r in csv.DictReader(open(out))}
    assert list(next(csv.reader(open(out)))) == ["id", "flagged", "score", "candidate_track_id"]
    assert set(rows) == {"2", "3", "5", "10", "20", "26", "40", "41", "42"}  # the malformed line 33 is not a track
    assert rows["5"]["flagged"] == "true" and rows["5"]["candidate_track_id"] == "4qPNDBW1i3p13qLCt0Ki3A"
    assert rows["10"]["flagged"] == "true" and rows["2"]["flagged"] == "false"
    assert rows["2"]["candidate_track_id"] == ""


def test_copyright_match_cli_with_a_config_agrees_with_the_run(tmp_path, demo_dir):
    """With --config, the CLI matches with the run's thresholds (it runs the flow's
    copyright stage over the tracks), so the two cannot disagree."""
    import csv
    import shutil

    from curation.config import load_config
    from curation.copyright.stage import COPYRIGHT
    from curation.sources.fma import read_tracks
    from tests.conftest import curate
    from tests.stage_run import run_stage

    shutil.copytree(demo_dir, tmp_path / "demo", ignore=shutil.ignore_patterns("out*"))
    cfg_path = tmp_path / "demo" / "curate.toml"
    text = cfg_path.read_text()
    assert "[copyright]\n" in text
    cfg_path.write_text(text.replace("[copyright]\n", "[copyright]\nartist_min = 1.0\nartist_common_title = 1.0\n"))
    tracks, spotify = demo_dir / "fma_metadata" / "tracks.csv", demo_dir / "spotify" / "dataset.csv"
    out_default, out_cfg = tmp_path / "default.csv", tmp_path / "cfg.csv"
    curate("copyright", "match", str(tracks), str(spotify), "--out", str(out_default))
    curate("copyright", "match", str(tracks), str(spotify), "--out", str(out_cfg), "--config", str(cfg_path))
    flagged = lambda p: {r["id"] for r in csv.DictReader(open(p)) if r["flagged"] == "true"}  # noqa: E731
    recs = [r for r in read_tracks(tracks) if not r.reason]
    recs, _ = run_stage(COPYRIGHT, recs, load_config(cfg_path), tmp_path / "work")
    assert flagged(out_cfg) == {r.id for r in recs if r.status == "review"}
    assert flagged(out_cfg) < flagged(out_default)  # stricter thresholds: fewer, and the CLI used them


def test_the_catalogue_is_read_once_per_worker_and_again_when_it_changes(tmp_path, demo_dir, monkeypatch):
    """The copyright stage's setup keeps the indexed catalogue for every later partition in the
    process; a catalogue file that changes is read again, and the decisions follow it."""
    import shutil

    from curation.config import load_config
    from curation.copyright import metadata_match
    from curation.copyright.stage import COPYRIGHT
    from curation.sources.fma import read_tracks
    from tests.stage_run import run_stage

    shutil.copytree(demo_dir, tmp_path / "demo", ignore=shutil.ignore_patterns("out*"))
    cfg = load_config(tmp_path / "demo" / "curate.toml")
    reads = []
    real = metadata_match.CatalogueMatcher.from_csv.__func__
    monkeypatch.setattr(metadata_match.CatalogueMatcher, "from_csv",
                        classmethod(lambda cls, *a, **k: reads.append(a[0]) or real(cls, *a, **k)))
    tracks = [r for r in read_tracks(tmp_path / "demo" / "fma_metadata" / "tracks.csv") if not r.reason]
    half = len(tracks) // 2
    first, _ = run_stage(COPYRIGHT, tracks[:half], cfg, tmp_path / "w")
    second, _ = run_stage(COPYRIGHT, tracks[half:], cfg, tmp_path / "w")
    assert len(reads) == 1
    flagged = {r.id for r in first + second if r.status == "review"}
    assert flagged and all(r.reason == "copyright_match_review" for r in first + second if r.id in flagged)
    cat = cfg.copyright.spotify_tracks_csv
    lines = cat.read_text().splitlines(keepends=True)
    cat.write_text(lines[0])  # the catalogue emptied: header only
    again, counts = run_stage(COPYRIGHT, tracks, cfg, tmp_path / "w")
    assert len(reads) == 2 and {r.status for r in again} == {"pending"} and counts["clear"] == len(tracks)
