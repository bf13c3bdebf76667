"""Deciding without measuring everything: scoring stops once the music rule is settled, short
recordings are decided without the model, a source can be music by source; the decisions are
those of scoring every frame, and the cache never passes an early result off as a full one."""
import json

import numpy as np
import pytest
import soundfile as sf

from curation import record_table as rt
from curation import synth
from curation.config import Config
from curation.music.cache import MusicCache
from curation.music.detector import HOP, SAMPLE_RATE, MusicDetector
from curation.music.stream import score_files
from curation.music.stage import audio_and_music
from curation.records import Record
from manifests.explain import explain_lines
from manifests.schema import manifest_table
from tests.test_music_stream import EnergyModel


class HashModel:
    """Frame probabilities that look random but are a function of the audio around each frame
    alone (so any cut of the recording sees the same values): near-threshold values
    everywhere, unlike a model with clean music/non-music regions."""

    checksum = "hash"

    def __init__(self):
        self.batches = []

    def __call__(self, batch):
        self.batches.append(batch.shape)
        n = batch.shape[1] // HOP + 1
        padded = np.pad(batch, ((0, 0), (0, HOP)))
        sums = np.stack([padded[:, i * HOP: i * HOP + HOP].astype(np.float64).sum(axis=1) for i in range(n)], axis=1)
        out = np.zeros((batch.shape[0], n, 527), dtype=np.float32)
        out[:, :, 137] = np.abs(np.sin(sums * 997.0 + 0.3))
        return out


def write(path, parts, sr=44100, fmt="FLAC", sub="PCM_16"):
    """parts: [(seconds, "music" | "quiet")]: synthetic music or near-silence, in order."""
    xs = [synth.music(s, sr=sr, seed=i) if kind == "music" else
          np.random.default_rng(i).standard_normal(int(s * sr)).astype(np.float32) * 0.002
          for i, (s, kind) in enumerate(parts)]
    x = np.concatenate(xs)
    stereo = np.stack([x, x], axis=1)
    with sf.SoundFile(str(path), "w", sr, 2, format=fmt, subtype=sub) as f:
        for j in range(0, len(stereo), sr):  # libsndfile's Vorbis encoder crashes on long writes
            f.write(stereo[j: j + sr])
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("decide")
    spec = {
        "all_music.flac": [(200, "music")],                       # music from the start: stops at 30 s
        "late_music.flac": [(45, "quiet"), (40, "music")],         # stops once 30 s of music are in
        "quiet_long.flac": [(130, "quiet")],                       # never music: stops once 30 s cannot be had
        "some_music.wav": [(60, "quiet"), (20, "music")],         # too little music: stops at 50.01 s of 80
        "almost.flac": [(29.5, "music"), (40, "quiet")],           # 29.5 s of music: scored in full
        "short_music.flac": [(25, "music")],                       # too short to be music: no model
        "just_30.wav": [(30.2, "music")],                          # just long enough: one chunk, scored
        "mp3_music.mp3": [(95, "music")],
        "ogg_mixed.ogg": [(20, "quiet"), (50, "music"), (20, "quiet")],
    }
    for name, parts in spec.items():
        ext = name.rsplit(".", 1)[1]
        fmt, sub = {"flac": ("FLAC", "PCM_16"), "wav": ("WAV", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"),
                    "ogg": ("OGG", "VORBIS")}[ext]
        write(d / name, parts, fmt=fmt, sub=sub)
    # damage after the point where scoring stops: the decision must still be the file's error
    full = (d / "all_music.flac").read_bytes()
    (d / "cut_late.flac").write_bytes(full[: len(full) * 3 // 4])
    full = (d / "mp3_music.mp3").read_bytes()
    (d / "cut_late.mp3").write_bytes(full[: len(full) * 3 // 4])
    names = sorted(spec) + ["cut_late.flac", "cut_late.mp3"]
    return d, names


def score(model, labels_csv, d, names, mode, workers=0, threshold=0.15, fraction=0.0, batch=4):
    det = MusicDetector(model, labels_csv, threshold, 30, min_music_fraction=fraction)
    stats = {}
    out = {s.key: s for s in score_files(det, [(n, str(d / n)) for n in names], batch, workers, stats=stats,
                                         mode=mode)}
    return out, stats


def outcome(s):
    return ("error", s.error.reason) if s.error else ("music", s.result.is_music)


@pytest.mark.parametrize("workers", [0, 2])
def test_decisions_are_those_of_scoring_everything(corpus, labels_csv, workers):
    d, names = corpus
    full, fstats = score(EnergyModel(), labels_csv, d, names, "full", workers)
    dec, dstats = score(EnergyModel(), labels_csv, d, names, "decide", workers)
    assert set(full) == set(dec) == set(names)
    assert {n: outcome(full[n]) for n in names} == {n: outcome(dec[n]) for n in names}
    assert outcome(full["all_music.flac"]) == ("music", True) and outcome(full["quiet_long.flac"]) == ("music", False)
    # damage after the stopping point is still found: the rest of the file is decoded
    assert outcome(dec["cut_late.flac"]) == ("error", "audio_truncated")
    assert outcome(dec["cut_late.mp3"]) == ("error", "audio_truncated")
    how = {n: dec[n].result.decided for n in names if dec[n].result}
    # its music is in its last chunks: settled early or by its last chunk, as the batches fall
    assert how.pop("late_music.flac") in ("early", "full")
    assert how == {"all_music.flac": "early", "quiet_long.flac": "early", "some_music.wav": "early",
                   "almost.flac": "full", "short_music.flac": "short", "just_30.wav": "full",
                   "mp3_music.mp3": "early", "ogg_mixed.ogg": "early"}
    for n, res in ((n, dec[n].result) for n in how):
        ref = full[n].result
        assert ref.decided == "full" and ref.music_seconds_bound == "exact"
        assert res.seconds == pytest.approx(ref.seconds, abs=0.02)  # the recording's length either way
        assert dec[n].audio == full[n].audio
        if res.decided == "full":
            assert res.to_dict() == ref.to_dict()
        else:  # a lower bound, over fewer frames
            assert res.music_seconds_bound == "lower" and res.music_seconds <= ref.music_seconds
            assert res.measured_seconds < ref.measured_seconds
    assert dec["all_music.flac"].result.measured_seconds == 31.0  # the first chunk settles it
    assert dec["all_music.flac"].result.music_seconds == 31.0
    assert dec["late_music.flac"].result.is_music
    # not music once the frames left (by the header's exact length) cannot make 30 s: the cut has
    # a chunk end 29.99 s before the end (quiet_long: 31+10+10+10 s, then 39.01 s instead of 60;
    # some_music: 31+10 s, then 9.01 s instead of 10)
    assert (dec["quiet_long.flac"].result.measured_seconds, dec["quiet_long.flac"].result.is_music) == (100.01, False)
    assert (dec["some_music.wav"].result.measured_seconds, dec["some_music.wav"].result.is_music) == (50.01, False)
    assert dec["some_music.wav"].result.rule == "none" and "rescored" not in dstats
    assert dec["short_music.flac"].result.measured_seconds == 0.0
    assert dstats["model_seconds"] < 0.75 * fstats["model_seconds"]  # about 0.63 here


def test_stopping_early_stops_the_model_and_the_resampling(corpus, labels_csv):
    d, _ = corpus
    model = EnergyModel()
    out, stats = score(model, labels_csv, d, ["all_music.flac"], "decide", batch=1)
    # one 32 s input (the first 31 s chunk and 1 s of context): the 32 s bucket exactly; the
    # 10 s chunk decoded ahead of it is dropped unscored
    assert model.batches == [(1, 32 * SAMPLE_RATE)]
    assert stats["model_seconds"] == 32.0 and stats["scored_seconds"] == 31.0
    assert out["all_music.flac"].audio["seconds"] == 200.0


@pytest.mark.parametrize("threshold", [0.15, 0.6, 0.85, 0.95])
def test_identity_with_frame_values_near_the_threshold(corpus, labels_csv, threshold):
    d, names = corpus
    full, _ = score(HashModel(), labels_csv, d, names, "full", threshold=threshold)
    dec, _ = score(HashModel(), labels_csv, d, names, "decide", threshold=threshold, workers=2)
    assert {n: outcome(full[n]) for n in names} == {n: outcome(dec[n]) for n in names}
    for n in names:
        if dec[n].result and dec[n].result.decided == "full":
            assert dec[n].result.to_dict() == full[n].result.to_dict()


def test_a_file_longer_than_its_header_promised_is_scored_again_in_full(corpus, labels_csv, monkeypatch):
    """The not-music stop rests on the header's length. A header promising a third of the file
    settles late_music (45 s quiet, then 40 s music) as not music after its first chunk; its
    decoder, told to stop, still decodes the rest and finds 85 s: the frames past the promise
    could make it music, so it is scored again in full, and is music."""
    from curation.music import stream

    real = stream.audio_blocks

    def lying(path, info, *a, **k):
        for block in real(path, info, *a, **k):
            if path.endswith("late_music.flac"):
                info[0].header_frames = min(info[0].header_frames, 33 * info[0].sample_rate)
            yield block

    monkeypatch.setattr(stream, "audio_blocks", lying)
    names = ["late_music.flac", "quiet_long.flac"]
    full, _ = score(EnergyModel(), labels_csv, d := corpus[0], names, "full")
    dec, stats = score(EnergyModel(), labels_csv, d, names, "decide")
    assert stats["rescored"] == 1
    assert dec["late_music.flac"].result.to_dict() == full["late_music.flac"].result.to_dict()
    assert dec["late_music.flac"].result.is_music and dec["late_music.flac"].result.decided == "full"
    assert dec["late_music.flac"].audio == full["late_music.flac"].audio
    assert dec["quiet_long.flac"].result.decided == "early"  # its header told the truth


def test_fraction_rule_scores_short_clips(corpus, labels_csv):
    d, names = corpus
    full, _ = score(EnergyModel(), labels_csv, d, names, "full", fraction=0.5)
    dec, _ = score(EnergyModel(), labels_csv, d, names, "decide", fraction=0.5)
    assert {n: outcome(full[n]) for n in names} == {n: outcome(dec[n]) for n in names}
    assert dec["short_music.flac"].result.decided == "full" and dec["short_music.flac"].result.is_music
    assert dec["short_music.flac"].result.rule == "fraction"


def test_check_mode_decodes_and_never_scores(corpus, labels_csv):
    d, names = corpus
    out = {s.key: s for s in score_files(None, [(n, str(d / n), "check") for n in names], 4, 2)}
    assert {n for n in names if out[n].error} == {"cut_late.flac", "cut_late.mp3"}
    assert out["all_music.flac"].result is None and out["all_music.flac"].audio["seconds"] == 200.0


def make_cfg(tmp_path, d, measure, **music):
    cfg = Config(path=tmp_path / "c.toml", output_dir=tmp_path / "out")
    audio = tmp_path / "by_id"
    audio.mkdir(exist_ok=True)
    cfg.freesound.pages_dir = d
    cfg.freesound.audio_dir = audio
    cfg.music.workers = 0
    cfg.music.measure = measure
    for k, v in music.items():
        setattr(cfg.music, k, v)
    return cfg


def records(cfg, d, names, source="freesound"):
    out = []
    for i, n in enumerate(names, 1):
        dest = (cfg.freesound.audio_dir if source == "freesound" else cfg.fma.audio_dir)
        if source == "fma":
            from curation.sources.fma import audio_path

            p = audio_path(dest, str(i))
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes((d / n).read_bytes())
        else:
            (dest / f"{i}.{n.rsplit('.', 1)[1]}").write_bytes((d / n).read_bytes())
        out.append(Record(source=source, id=str(i)))
    return out


def test_cache_never_serves_an_early_result_as_a_full_one(corpus, labels_csv, tmp_path):
    d, _ = corpus
    names = ["all_music.flac", "short_music.flac", "almost.flac", "quiet_long.flac"]
    made = []

    def factory():
        made.append(1)
        return MusicDetector(EnergyModel(), labels_csv, 0.15, 30)

    cfg = make_cfg(tmp_path, d, "decide")
    recs = records(cfg, d, names)
    rep = audio_and_music(recs, cfg, factory, "ck", False)
    assert rep.counts["decided_early"] == 2 and rep.counts["decided_short"] == 1 and rep.counts["decided_full"] == 1
    assert [r.evidence["music"]["decided"] for r in recs] == ["early", "short", "full", "early"]
    # a rerun that measures everything: the early and the short results are scored again, the
    # full one is taken from the cache
    cfg.music.measure = "full"
    again = records(cfg, d, names)
    rep = audio_and_music(again, cfg, factory, "ck", False)
    assert rep.counts["cached"] == 1 and rep.counts["scored"] == 3
    assert [r.evidence["music"]["decided"] for r in again] == ["full"] * 4
    assert again[0].evidence["music"]["music_seconds"] == pytest.approx(200, abs=0.5)
    assert [r.evidence["music"]["is_music"] for r in again] == [r.evidence["music"]["is_music"] for r in recs]
    # ... and those full results now serve a deciding run too
    cfg.music.measure = "decide"
    third = records(cfg, d, names)
    n_made = len(made)
    rep = audio_and_music(third, cfg, factory, "ck", False)
    assert rep.counts["cached"] == 4 and len(made) == n_made
    assert [r.evidence["music"]["decided"] for r in third] == ["full"] * 4
    # an entry claiming an unknown way of deciding is not trusted
    cache = MusicCache(cfg.work_dir / "music_cache")
    for p in cache.root.glob("*/*.json"):
        e = json.loads(p.read_text())
        e["music"]["decided"] = "guessed"
        p.write_text(json.dumps(e))
    fourth = records(cfg, d, names)
    rep = audio_and_music(fourth, cfg, factory, "ck", False)
    assert "cached" not in rep.counts


def test_a_source_taken_as_music_is_checked_not_scored(corpus, labels_csv, tmp_path):
    d, _ = corpus
    made = []

    def factory():
        made.append(1)
        return MusicDetector(EnergyModel(), labels_csv, 0.15, 30)

    cfg = make_cfg(tmp_path, d, "decide")
    cfg.fma.audio_dir = tmp_path / "fma_audio"
    assert cfg.music.fma == "source" and cfg.music.freesound == "score"
    recs = records(cfg, d, ["quiet_long.flac", "cut_late.flac", "short_music.flac"], source="fma")
    rep = audio_and_music(recs, cfg, factory, "ck", False)
    assert made == []  # no model loaded for a source that does not need it
    ok, cut, short = recs
    assert ok.evidence["music"]["decided"] == "source" and ok.evidence["music"]["is_music"] is True
    assert ok.evidence["audio"]["seconds"] == 130.0
    assert cut.status == "excluded" and cut.reason == "audio_truncated"  # still decoded and checked
    assert short.evidence["music"]["decided"] == "source"
    assert rep.counts["checked"] == 2
    # the manifest says how each decision was reached, and explain says it in words
    table = rt.from_records(recs)
    man = manifest_table(table).to_pylist()
    assert [(r["music_rule"], r["is_music"], r["music_seconds"]) for r in man] == [
        ("source", True, None), (None, None, None), ("source", True, None)]
    assert any("taken as music because its source is fma" in ln for ln in explain_lines(man[0]))
    # scored instead when asked
    cfg.music.fma = "score"
    again = records(cfg, d, ["quiet_long.flac", "short_music.flac"], source="fma")
    audio_and_music(again, cfg, factory, "ck", False)
    assert [r.evidence["music"]["decided"] for r in again] == ["early", "short"]
    man = manifest_table(rt.from_records(again)).to_pylist()
    assert [(r["music_rule"], r["music_seconds_lower_bound"], r["music_measured_seconds"]) for r in man] == [
        ("early", True, 100.01), ("short", True, 0.0)]


def test_manifest_marks_an_early_decision(corpus, labels_csv, tmp_path):
    d, _ = corpus
    cfg = make_cfg(tmp_path, d, "decide")
    recs = records(cfg, d, ["all_music.flac", "some_music.wav"])
    audio_and_music(recs, cfg, lambda: MusicDetector(EnergyModel(), labels_csv, 0.15, 30), "ck", False)
    row, nm = manifest_table(rt.from_records(recs)).to_pylist()
    assert row["music_rule"] == "early" and row["music_rule_fired"] == "seconds" and row["is_music"]
    assert row["music_seconds_lower_bound"] is True and row["music_measured_seconds"] == 31.0
    assert row["music_seconds"] == 31.0 and row["audio_seconds"] == 200.0
    lines = explain_lines(row)
    assert any("scoring stopped early at 31.0 s of 200.0 s" in ln for ln in lines), lines
    assert any("(enough music frames were found)" in ln for ln in lines), lines
    assert nm["music_rule"] == "early" and nm["is_music"] is False and nm["music_rule_fired"] == "none"
    assert nm["music_measured_seconds"] == 50.01 and nm["audio_seconds"] == 80.0
    lines = explain_lines(nm)
    assert any("scoring stopped early at 50.01 s of 80.0 s" in ln and "could not make up" in ln for ln in lines), lines
