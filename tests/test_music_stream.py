import subprocess

import numpy as np
import pytest
import soundfile as sf

from curation import synth
from curation.config import Config
from curation.music.detector import HOP, MusicDetector
from curation.music.stream import score_files
from curation.music.stage import audio_and_music
from curation.records import Record


class EnergyModel:
    """Music probability of a frame = its loudness: known outputs from real audio files."""

    checksum = "energy"

    def __init__(self):
        self.batches = []

    def __call__(self, batch):
        self.batches.append(batch.shape)
        n = batch.shape[1] // HOP + 1
        padded = np.pad(batch, ((0, 0), (HOP // 2, HOP)))
        frames = np.stack([np.abs(padded[:, i * HOP : i * HOP + HOP]).mean(axis=1) for i in range(n)], axis=1)
        out = np.zeros((batch.shape[0], n, 527), dtype=np.float32)
        out[:, :, 137] = np.clip(frames * 4, 0, 1)
        return out


def loud_then_quiet(loud, quiet, sr, seed=0):
    loud_part = synth.music(loud, sr=sr, seed=seed) if loud else np.zeros(0, np.float32)
    x = np.concatenate([loud_part, np.zeros(int(quiet * sr), np.float32)])
    return np.stack([x, x], axis=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    files = {}
    for name, (loud, quiet, sr, fmt, sub) in {
        "a.wav": (35, 10, 44100, "WAV", "PCM_16"),
        "b.flac": (5, 3, 48000, "FLAC", "PCM_16"),
        "c.ogg": (2, 1, 22050, "OGG", "VORBIS"),
        "d.mp3": (70, 5, 44100, "MP3", "MPEG_LAYER_III"),
        "e.aiff": (0.5, 0.2, 32000, "AIFF", "PCM_16"),
        "silence.wav": (0, 12, 16000, "WAV", "PCM_16"),
    }.items():
        sf.write(str(d / name), loud_then_quiet(loud, quiet, sr), sr, format=fmt, subtype=sub)
        files[name] = loud
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(d / "a.wav"), str(d / "f.m4a")], check=True)
    files["f.m4a"] = 35
    # faults
    full = (d / "d.mp3").read_bytes()
    (d / "trunc.mp3").write_bytes(full[: len(full) // 2])
    full = (d / "b.flac").read_bytes()
    (d / "trunc.flac").write_bytes(full[: len(full) * 2 // 3])
    full = (d / "a.wav").read_bytes()
    (d / "trunc.wav").write_bytes(full[: len(full) // 2])
    (d / "garbage.ogg").write_bytes(b"OggS" + bytes(range(256)) * 10)
    (d / "empty.wav").write_bytes(b"")
    return d, files


def run(detector, d, names, workers, batch_size=4):
    return {s.key: s for s in score_files(detector, [(n, str(d / n)) for n in names], batch_size, workers)}


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_scores_every_format_and_reports_faults(corpus, labels_csv, workers):
    d, files = corpus
    det = MusicDetector(EnergyModel(), labels_csv, 0.15, 30, chunk_seconds=20, context_seconds=1)
    names = list(files) + ["trunc.mp3", "trunc.flac", "trunc.wav", "garbage.ogg", "empty.wav", "missing.wav"]
    out = run(det, d, names, workers)
    assert set(out) == set(names)
    for name, loud in files.items():
        res = out[name].result
        assert out[name].error is None, out[name].error
        assert res.music_seconds == pytest.approx(loud, abs=0.35), name
        assert res.is_music == (loud >= 30)
    audio = dict(out["a.wav"].audio)
    quality = audio.pop("quality")  # measured on this decode (curation/quality/measure.py)
    assert audio == {"seconds": 45.0, "sample_rate": 44100, "channels": 2, "format": "wav"}
    assert quality["measured"] and quality["seconds"] == 45.0 and quality["measured_at_hz"] == 44100
    reasons = {n: out[n].error.reason for n in names if out[n].error}
    assert reasons == {"trunc.mp3": "audio_truncated", "trunc.flac": "audio_truncated",
                       "trunc.wav": "audio_truncated", "garbage.ogg": "audio_unreadable",
                       "empty.wav": "audio_empty", "missing.wav": "audio_missing"}


def test_results_do_not_depend_on_workers_or_batching(corpus, labels_csv):
    d, files = corpus
    names = sorted(files)
    results = []
    for workers, batch in ((0, 1), (0, 8), (2, 3)):
        det = MusicDetector(EnergyModel(), labels_csv, 0.15, 30, chunk_seconds=20, context_seconds=1)
        out = run(det, d, names, workers, batch)
        results.append({n: out[n].result.to_dict() for n in names})
    assert results[0] == results[1] == results[2]


def test_long_files_are_batched_as_chunks(corpus, labels_csv):
    d, _ = corpus
    model = EnergyModel()
    det = MusicDetector(model, labels_csv, 0.15, 30, chunk_seconds=20, context_seconds=1, first_chunks=())
    run(det, d, ["d.mp3"], workers=0, batch_size=2)
    # 75 s in chunks of 20 s, one of them ending 29.99 s before the end (45.01 s: the frames
    # left after it cannot make the rule's 30 s): 0-20 and 20-40 padded to 22 s (chunk and
    # context) and batched together, 40-45.01 in the 8 s bucket, 45.01-65.01 in 22 s, and the
    # last 9.99 s (with 1 s of context) in the 12 s bucket
    assert model.batches == [(2, 22 * 32000), (1, 8 * 32000), (1, 22 * 32000), (1, 12 * 32000)]


def test_files_that_do_not_decode_are_not_decoded_again(labels_csv, tmp_path):
    """The same bytes give the same decode error: a rerun takes it from the cache, decodes
    nothing and loads no model. A damaged entry is not believed."""
    from curation.music.cache import MusicCache, error_key
    from curation.audio import file_sha256

    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "1.wav").write_bytes(b"RIFF not really a wave file" * 40)
    (audio / "2.ogg").write_bytes(b"")
    cfg = Config(path=tmp_path / "c.toml", output_dir=tmp_path / "out")
    cfg.freesound.audio_dir = audio
    cfg.music.workers = 0
    made = []

    def factory():
        made.append(1)
        return MusicDetector(EnergyModel(), labels_csv, 0.15, 30)

    def recs():
        return [Record(source="freesound", id="1"), Record(source="freesound", id="2")]

    first = recs()
    rep = audio_and_music(first, cfg, factory, "ck", False)
    assert rep.counts == {"audio_unreadable": 1, "audio_empty": 1}
    again = recs()
    rep = audio_and_music(again, cfg, factory, "ck", False)
    assert rep.counts == {"cached": 2, "audio_unreadable": 1, "audio_empty": 1} and len(made) <= 1
    assert [(r.status, r.reason, r.evidence["audio"]) for r in again] == \
        [(r.status, r.reason, r.evidence["audio"]) for r in first]
    # the same bytes in another folder, with the same cache: the error names the file read now
    import shutil

    moved = tmp_path / "elsewhere"
    shutil.copytree(audio, moved)
    cfg.freesound.audio_dir = moved
    there = recs()
    rep = audio_and_music(there, cfg, factory, "ck", False)
    assert rep.counts["cached"] == 2
    assert str(moved / "1.wav") in there[0].evidence["audio"]["error"] and str(audio) not in there[0].evidence["audio"]["error"]
    assert first[0].evidence["audio"]["error"] == there[0].evidence["audio"]["error"].replace(str(moved), str(audio))
    cfg.freesound.audio_dir = audio
    cache = MusicCache(cfg.work_dir / "music_cache")
    cache._path(error_key(file_sha256(audio / "1.wav"))).write_text('{"audio": {}, "error": "garbage"}')
    rep = audio_and_music(recs(), cfg, factory, "ck", False)
    assert rep.counts == {"cached": 1, "audio_unreadable": 1, "audio_empty": 1}


def test_cache_scores_only_what_is_new(corpus, labels_csv, tmp_path):
    d, _ = corpus
    cfg = Config(path=tmp_path / "c.toml", output_dir=tmp_path / "out")
    cfg.freesound.pages_dir = d
    cfg.music.workers = 0
    cfg.music.measure = "full"  # every frame scored: music_seconds exact
    made = []

    def factory():
        made.append(1)
        return MusicDetector(EnergyModel(), labels_csv, 0.15, 30)

    audio = d / "by_id"
    audio.mkdir(exist_ok=True)
    cfg.freesound.audio_dir = audio

    def recs(ids):
        out = []
        for i in ids:
            src = {1: "a.wav", 2: "b.flac", 3: "c.ogg"}[i]
            (audio / f"{i}{src[1:]}").write_bytes((d / src).read_bytes())
            out.append(Record(source="freesound", id=str(i)))
        return out

    rep = audio_and_music(recs([1, 2]), cfg, factory, "ck", False)
    assert rep.counts["scored"] == 2 and made == [1]
    again = recs([1, 2])
    rep = audio_and_music(again, cfg, factory, "ck", False)
    assert rep.counts == {"cached": 2, "music": 1, "not_music": 1, "decided_full": 2} and made == [1]  # no model loaded
    assert again[0].evidence["music"]["music_seconds"] == pytest.approx(35, abs=0.35)
    grown = recs([1, 2, 3])
    rep = audio_and_music(grown, cfg, factory, "ck", False)
    assert rep.counts["cached"] == 2 and rep.counts["scored"] == 1
    # another checkpoint or rule is another key
    rep = audio_and_music(recs([1]), cfg, factory, "other-checkpoint", False)
    assert rep.counts["scored"] == 1
