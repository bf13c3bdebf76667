"""`curate demo-data DIR`: small demo inputs in the real formats, and a config to run them.

- Freesound: saved APIv2 search pages (`{count, next, previous, results}`) and audio
  `{id}.{ext}` in wav, flac, ogg, aiff and mp3, with the faults a real crawl meets
  (non-commercial and unknown licenses, each of Freesound's four `gen_ai_preference` values,
  an absent one and an unknown one, missing, corrupt and empty audio, a hostile name, a
  duplicate, a malformed result).
- FMA: `fma_metadata/tracks.csv` in its published layout (two header rows and a
  `track_id` row) with one malformed line, `fma_metadata/raw_tracks.csv` with FMA's track
  and license URLs (one missing URL to derive, one license conflict, one track that cannot
  be attributed), audio at `fma_full/XXX/XXXXXX.mp3`.
- The Spotify tracks table (its published schema), an example review decisions file.
- A PANNs checkpoint and a T5 cache with RANDOM weights: the real ones cannot be fetched
  offline. Their decisions mean nothing, and every output says so.
"""
from __future__ import annotations

import datetime

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from . import synth
from .data import audioset_labels_csv
from .music.detector import read_labels

FMA_COLUMNS = {
    "album": ["comments", "date_created", "date_released", "engineer", "favorites", "id", "information",
              "listens", "producer", "tags", "title", "tracks", "type"],
    "artist": ["active_year_begin", "active_year_end", "associated_labels", "bio", "comments", "date_created",
               "favorites", "id", "latitude", "location", "longitude", "members", "name", "related_projects",
               "tags", "website", "wikipedia_page"],
    "set": ["split", "subset"],
    "track": ["bit_rate", "comments", "composer", "date_created", "date_recorded", "duration", "favorites",
              "genre_top", "genres", "genres_all", "information", "interest", "language_code", "license",
              "listens", "lyricist", "number", "publisher", "tags", "title"],
}
SPOTIFY_HEADER = ["", "track_id", "artists", "album_name", "track_name", "popularity", "duration_ms", "explicit",
                  "danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness",
                  "instrumentalness", "liveness", "valence", "tempo", "time_signature", "track_genre"]

DEMO_BANNER = (
    "DEMO: the PANNs checkpoint and the T5 encoder in this demo are RANDOMLY INITIALISED stand-ins "
    "(the real weights cannot be fetched offline). Music decisions and the generated clip mean nothing; "
    "run `curate models fetch` and point [music] checkpoint at the real file for real decisions."
)


def find_labels_csv() -> Path:
    """The AudioSet class list: $AUDIOSET_LABELS_CSV when it names a readable list, else the shipped one."""
    env = os.environ.get("AUDIOSET_LABELS_CSV", "")
    if env and Path(env).is_file():
        try:
            read_labels(Path(env))
            return Path(env)
        except Exception:
            pass
    return audioset_labels_csv()


def _fs_result(rid: int, name: str, license_url: str, username: str, tags: list[str], description: str,
               ext: str, duration: float, gen_ai: str | None = None) -> dict:
    res = {
        "id": rid, "name": name, "tags": tags, "description": description, "license": license_url,
        "username": username, "url": f"https://freesound.org/people/{username}/sounds/{rid}/",
        "previews": {
            "preview-hq-mp3": f"https://cdn.freesound.org/previews/{rid // 1000}/{rid}_1-hq.mp3",
            "preview-hq-ogg": f"https://cdn.freesound.org/previews/{rid // 1000}/{rid}_1-hq.ogg",
        },
        "type": ext, "duration": duration, "samplerate": 44100, "channels": 2, "filesize": 0,
        # the naive form of pages saved before the API gave a zone (Brussels time), later ids later
        "created": (datetime.datetime(2016, 1, 1) + datetime.timedelta(hours=7 * rid)).isoformat(timespec="microseconds"),
    }
    if gen_ai is not None:
        res["gen_ai_preference"] = gen_ai
    return res


def _write(path: Path, audio: np.ndarray, sr: int, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    stereo = np.stack([audio, audio * 0.9], axis=1)
    kw = {"format": fmt}
    if fmt == "OGG":
        kw["subtype"] = "VORBIS"
    elif fmt == "MP3":
        kw["subtype"] = "MPEG_LAYER_III"
    elif fmt in ("WAV", "AIFF", "FLAC"):
        kw["subtype"] = "PCM_16"
    sf.write(str(path), stereo, sr, **kw)


def write_freesound(root: Path) -> None:
    pages, audio = root / "freesound" / "pages", root / "freesound" / "audio"
    pages.mkdir(parents=True, exist_ok=True)
    audio.mkdir(parents=True, exist_ok=True)
    by = "http://creativecommons.org/licenses/by/3.0/"
    cc0 = "http://creativecommons.org/publicdomain/zero/1.0/"
    # gen_ai_preference: Freesound's four values, one absent (a response from before the field
    # existed) and one that is none of them
    dflt = "no-additional-preferences"
    page1 = [
        _fs_result(1001, "Warm synth loop 110bpm", cc0, "loopmaker", ["synth", "loop", "music", "chords"],
                   "A warm chord progression with a beat.", "wav", 40.0, gen_ai=dflt),
        _fs_result(1002, "Forest wind and birds", "https://creativecommons.org/licenses/by/4.0/", "fieldrec",
                   ["field-recording", "birds", "wind", "forest"], "Recorded at dawn.", "flac", 6.0,
                   gen_ai="open-source-models"),
        _fs_result(1003, "Chirps", "http://creativecommons.org/licenses/sampling+/1.0/", "sampler",
                   ["birds", "chirp"], "Short chirps.", "ogg", 4.0),
        _fs_result(1004, "Street at night", "http://creativecommons.org/licenses/by-nc/3.0/", "citywalker",
                   ["city", "night"], "Noncommercial only.", "wav", 3.0, gen_ai=dflt),
        _fs_result(1005, "Rain on roof", by, "optout", ["rain"], "Please no AI.", "aiff", 3.0, gen_ai="no-gen-ai"),
        _fs_result(1006, "Mystery tone", "All rights reserved", "someone", ["tone"], "", "wav", 2.0, gen_ai=dflt),
    ]
    page2 = [
        _fs_result(1007, "Lost file", cc0, "someone", ["drums"], "The audio went missing.", "mp3", 2.0, gen_ai=dflt),
        _fs_result(1008, "Broken upload", by, "someone", ["noise"], "", "wav", 2.0, gen_ai=dflt),
        _fs_result(1009, "Empty upload", cc0, "someone", ["silence"], "", "wav", 0.0, gen_ai=dflt),
        _fs_result(1010, '../../x\t"quoted"\nname', cc0, "ha\tcker", ["../etc", "a,b"],
                   "<b>HTML</b> and 'quotes'", "mp3", 3.0, gen_ai=dflt),
        _fs_result(1001, "Warm synth loop 110bpm", cc0, "loopmaker", ["synth", "loop", "music", "chords"],
                   "A warm chord progression with a beat.", "wav", 40.0, gen_ai=dflt),  # seen again on the next page
        {"id": "not-a-number", "name": "malformed result", "license": cc0},
        _fs_result(1011, "Harbour gulls", cc0, "coastal", ["gulls", "harbour"], "Noncommercial models only.",
                   "wav", 3.0, gen_ai="noncommercial-open-source-models"),
        _fs_result(1012, "Door creak", cc0, "someone", ["door"], "", "wav", 2.0, gen_ai="ask-me-first"),
        # 1002 again, uploaded a second time as an mp3: a near copy (the duplicates step)
        _fs_result(1013, "Forest wind and birds (mp3)", "https://creativecommons.org/licenses/by/4.0/", "fieldrec",
                   ["field-recording", "birds", "wind", "forest"], "Recorded at dawn.", "mp3", 5.5,
                   gen_ai="open-source-models"),
    ]
    base = "https://freesound.org/apiv2/search/?query=&page_size=6"
    docs = [
        {"count": 15, "next": base + "&page=2", "previous": None, "results": page1},
        {"count": 15, "next": None, "previous": base + "&page=1", "results": page2},
    ]
    for i, doc in enumerate(docs, start=1):
        (pages / f"page_{i:06d}.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")

    _write(audio / "1001.wav", synth.music(40.0, seed=1), 44100, "WAV")
    _write(audio / "1002.flac", synth.field_recording(6.0, seed=2), 48000, "FLAC")
    _write(audio / "1003.ogg", synth.field_recording(4.0, seed=3), 44100, "OGG")
    _write(audio / "1004.wav", synth.field_recording(3.0, seed=4), 44100, "WAV")
    _write(audio / "1005.aiff", synth.field_recording(3.0, seed=5), 44100, "AIFF")
    _write(audio / "1006.wav", synth.field_recording(2.0, seed=6), 44100, "WAV")
    (audio / "1008.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEthis is not audio" * 3)
    (audio / "1009.wav").write_bytes(b"")
    _write(audio / "1010.mp3", synth.field_recording(3.0, seed=10), 44100, "MP3")
    _write(audio / "1011.wav", synth.field_recording(3.0, seed=11), 44100, "WAV")
    _write(audio / "1012.wav", synth.field_recording(2.0, seed=12), 44100, "WAV")
    _write(audio / "1013.mp3", synth.field_recording(6.0, seed=2), 48000, "MP3")


RAW_TRACKS_HEADER = [
    "track_id", "album_id", "album_title", "album_url", "artist_id", "artist_name", "artist_url", "artist_website",
    "license_image_file", "license_image_file_large", "license_parent_id", "license_title", "license_url", "tags",
    "track_bit_rate", "track_comments", "track_composer", "track_copyright_c", "track_copyright_p",
    "track_date_created", "track_date_recorded", "track_disc_number", "track_duration", "track_explicit",
    "track_explicit_notes", "track_favorites", "track_file", "track_genres", "track_image_file",
    "track_information", "track_instrumental", "track_interest", "track_language_code", "track_listens",
    "track_lyricist", "track_number", "track_publisher", "track_title", "track_url",
]
FMA = "http://freemusicarchive.org/music"


def write_fma(root: Path) -> None:
    meta, audio = root / "fma_metadata", root / "fma_full"
    meta.mkdir(parents=True, exist_ok=True)
    tracks = [
        # id, title, artist, license title (tracks.csv), genre, seconds (None: no audio),
        # raw_tracks.csv: (license_url, album_url, track_url) or None for no row
        (2, "Food", "AWOL", "Attribution", "Hip-Hop", 35.0,
         ("http://creativecommons.org/licenses/by/4.0/", f"{FMA}/AWOL/AWOL_-_A_Way_Of_Life/",
          f"{FMA}/AWOL/AWOL_-_A_Way_Of_Life/Food")),
        (3, "Electric Ave", "AWOL", "Attribution-NonCommercial-ShareAlike 3.0 International", "Hip-Hop", None,
         ("http://creativecommons.org/licenses/by-nc-sa/3.0/", f"{FMA}/AWOL/AWOL_-_A_Way_Of_Life/",
          f"{FMA}/AWOL/AWOL_-_A_Way_Of_Life/Electric_Ave")),
        (5, "Lonely (Remastered 2011)", "The Exampels", "Creative Commons Attribution 4.0", "Pop", 32.0,
         ("http://creativecommons.org/licenses/by/4.0/", f"{FMA}/The_Exampels/Lonely_Days/",
          f"{FMA}/The_Exampels/Lonely_Days/Lonely_Remastered_2011")),
        # no track_url: FMA's URL is derived from the album's and the title, and marked so
        (10, "Summer Nights - Radio Edit", "Kimiko & The Band", "Attribution", "Pop", 31.0,
         ("http://creativecommons.org/licenses/by/4.0/", f"{FMA}/Kimiko__The_Band/Summer/", "")),
        (20, "Untitled Sketch 4", "Nobody Known", "CC0 1.0 Universal", "Experimental", 12.0,
         ("http://creativecommons.org/publicdomain/zero/1.0/", f"{FMA}/Nobody_Known/Sketches/",
          f"{FMA}/Nobody_Known/Sketches/Untitled_Sketch_4")),
        (26, "Quiet Walk", "Nobody Known", "Attribution-NoDerivatives 4.0 International", "Folk", None,
         ("http://creativecommons.org/licenses/by-nd/4.0/", f"{FMA}/Nobody_Known/Sketches/",
          f"{FMA}/Nobody_Known/Sketches/Quiet_Walk")),
        # the title says CC BY 3.0, the license URL a noncommercial license: license_conflict
        (40, "Two Minds", "Nobody Known", "Attribution 3.0 International", "Folk", 5.0,
         ("http://creativecommons.org/licenses/by-nc/3.0/", f"{FMA}/Nobody_Known/Sketches/",
          f"{FMA}/Nobody_Known/Sketches/Two_Minds")),
        # a single: neither track_url nor album_url, so no real URL: attribution_incomplete
        (41, "Loose Single", "Nobody Known", "Attribution", "Folk", 5.0,
         ("http://creativecommons.org/licenses/by/4.0/", "", "")),
        # not in raw_tracks.csv at all: attribution_incomplete
        (42, "Unlisted", "Nobody Known", "Attribution", "Folk", 5.0, None),
    ]
    cols = pd.MultiIndex.from_tuples([(g, f) for g, fs in FMA_COLUMNS.items() for f in fs])
    df = pd.DataFrame("", index=pd.Index([t[0] for t in tracks], name="track_id"), columns=cols)
    raw_rows = []
    for tid, title, artist, lic, genre, secs, raw in tracks:
        df.loc[tid, ("track", "title")] = title
        df.loc[tid, ("artist", "name")] = artist
        df.loc[tid, ("track", "license")] = lic
        df.loc[tid, ("track", "genre_top")] = genre
        df.loc[tid, ("track", "tags")] = "[]"
        df.loc[tid, ("album", "title")] = f"{artist} demo album"
        df.loc[tid, ("set", "subset")] = "small"
        df.loc[tid, ("track", "duration")] = str(int(secs or 0))
        df.loc[tid, ("track", "date_created")] = str(datetime.datetime(2008, 11, 26, 1, 48) + datetime.timedelta(days=3 * tid))
        if secs:
            p = audio / f"{tid:06d}"[:3] / f"{tid:06d}.mp3"
            # synth.music plays the same chords in one of twelve keys: two tracks in one key at
            # one tempo are the same audio, which the duplicates step would rightly group. The
            # short sketches (never scored: too short to be music) are played at their own tempo.
            bpm = 110.0 if secs >= 30 else 100.0 + tid % 40
            _write(p, synth.music(secs, seed=tid, bpm=bpm), 44100, "MP3")
        if raw is not None:
            row = dict.fromkeys(RAW_TRACKS_HEADER, "")
            row.update(track_id=str(tid), track_title=title, artist_name=artist, license_title=lic,
                       license_url=raw[0], album_url=raw[1], track_url=raw[2], tags="[]")
            raw_rows.append(row)
    text = df.to_csv(lineterminator="\n")
    text += "33,a malformed line,with too few fields\n"
    (meta / "tracks.csv").write_text(text, encoding="utf-8")
    pd.DataFrame(raw_rows, columns=RAW_TRACKS_HEADER).to_csv(meta / "raw_tracks.csv", index=False,
                                                            lineterminator="\n")


def write_spotify(root: Path) -> Path:
    rows = [
        ("5SuOikwiRyPMVoIQDJUgSV", "Gen Hoshino", "Comedy", "Comedy", "pop"),
        ("4qPNDBW1i3p13qLCt0Ki3A", "The Examples", "Lonely Days", "Lonely", "pop"),
        ("1iJBSr7s7jYXzM8EGcbK5b", "Kimiko;The Band", "Summer", "Summer Nights", "pop"),
        ("6lfxq3CG4xtTiEg7opyCyx", "Somebody Else", "Intro", "Intro", "rock"),
    ]
    path = root / "spotify" / "dataset.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(SPOTIFY_HEADER)]
    for i, (tid, artists, album, name, genre) in enumerate(rows):
        vals = [str(i), tid, artists, album, name, "50", "200000", "False", "0.5", "0.5", "1", "-7.0", "1",
                "0.05", "0.1", "0.0", "0.1", "0.5", "120.0", "4", genre]
        lines.append(",".join(vals))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


CONFIG = """\
# Demo configuration written by `curate demo-data`. Relative paths are relative to this file.
output_dir = "out"

[freesound]
pages_dir = "freesound/pages"
audio_dir = "freesound/audio"

[fma]
tracks_csv = "fma_metadata/tracks.csv"
raw_tracks_csv = "fma_metadata/raw_tracks.csv"   # FMA's track and license URLs
audio_dir = "fma_full"

[music]
# RANDOM weights (see the banner): replace with the file `curate models fetch` downloads.
checkpoint = "models/panns_random_init.pth"
labels_csv = "models/class_labels_indices.csv"
threshold = 0.15
min_music_seconds = 30

[copyright]
spotify_tracks_csv = "spotify/dataset.csv"
review_decisions = "review_decisions.csv"

[release]
shard_max_records = 4
open_source_model = true   # the model's weights are published (Freesound's open-source-models)
noncommercial = false      # true admits noncommercial-open-source-models

[training]
enabled = true
model_config = "models/tiny_cpu.json"
hf_home = "hf_home"
steps = 4
batch_size = 2
prompt = "warm synth loop with a beat"
seconds = 0.37
generation_steps = 4
"""


def write_demo(root: Path, labels_csv: Path | None = None) -> Path:
    """Write every demo input under `root` and return the config's path."""
    from .music.detector import save_random_checkpoint
    from training.t5cache import build_random_t5_cache

    labels_csv = labels_csv or find_labels_csv()
    read_labels(labels_csv)
    root.mkdir(parents=True, exist_ok=True)
    write_freesound(root)
    write_fma(root)
    write_spotify(root)
    (root / "review_decisions.csv").write_text(
        "source,id,decision,reviewer,note\n"
        "fma,10,clear,demo-reviewer,\"Cleared: the uploader holds the rights to this recording\"\n",
        encoding="utf-8",
    )
    models = root / "models"
    models.mkdir(exist_ok=True)
    shutil.copyfile(labels_csv, models / "class_labels_indices.csv")
    ckpt = models / "panns_random_init.pth"
    if not ckpt.exists():
        save_random_checkpoint(ckpt, models / "class_labels_indices.csv", seed=0)
    build_random_t5_cache(root / "hf_home")
    tiny = Path(__file__).resolve().parent.parent / "training" / "configs" / "tiny_cpu.json"
    shutil.copyfile(tiny, models / "tiny_cpu.json")
    cfg = root / "curate.toml"
    cfg.write_text(CONFIG, encoding="utf-8")
    return cfg
