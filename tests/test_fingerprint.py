import csv
import io

import numpy as np
import pytest
import soundfile as sf

from curation import synth
from curation.copyright.audio_id import FingerprintBackend
from curation.copyright.fingerprint import SR, FingerprintError, FingerprintIndex
from curation.records import Record
from tests.conftest import curate


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    d = tmp_path_factory.mktemp("refs")
    audio = {}
    for i in range(4):
        x = synth.song(30, sr=SR, seed=200 + i)
        sf.write(str(d / f"song{i}.wav"), x, SR)
        audio[f"song{i}.wav"] = x
    return d, audio


def mix(ref, start_s, pos_s, snr_db, seconds=25, seed=0):
    noise = synth.field_recording(seconds, sr=SR, seed=seed)
    ex = ref[int(start_s * SR) : int((start_s + 10) * SR)]
    noise *= np.sqrt(np.mean(ex**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    out = noise.copy()
    out[int(pos_s * SR) : int(pos_s * SR) + len(ex)] += ex
    return out


@pytest.fixture(scope="module")
def all_refs_index(tmp_path_factory, refs):
    """The four references indexed once, for the tests that only query."""
    d, _ = refs
    path = tmp_path_factory.mktemp("all-refs") / "idx"
    with FingerprintIndex(path) as ix:
        for p in sorted(d.iterdir()):
            ix.add(p)
    return path


def melody(seconds, seed):
    """Music from a generator that shares nothing with curation.synth.song, whose songs draw on one
    pool of bars, so that two seeds may hold the same passage (for seeds 77 and 203 the index finds
    19 agreeing hashes at one offset over 6 s, which the transform search lifts past 1e-9): random
    notes of a decaying harmonic tone over a noise pulse."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    out = np.zeros(n, np.float32)
    t = np.arange(int(0.25 * SR)) / SR
    for start in range(0, n - len(t), len(t)):
        f = 220 * 2 ** (rng.integers(0, 24) / 12)
        note = sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3)) * np.exp(-6 * t)
        out[start : start + len(t)] += 0.3 * note + 0.05 * rng.normal(0, 1, len(t)) * np.exp(-40 * t)
    return out


def test_index_lives_on_disk_and_grows(tmp_path, refs):
    d, _ = refs
    with FingerprintIndex(tmp_path / "idx") as ix:
        assert ix.add(d / "song0.wav") and ix.add(d / "song1.wav")
        assert not ix.add(d / "song0.wav")  # the same audio again
    with FingerprintIndex(tmp_path / "idx") as ix:  # reopened from disk, extended
        assert ix.count() == 2
        ix.add(d / "song2.wav")
        assert ix.count() == 3
    with pytest.raises(FingerprintError, match="no fingerprint index"):
        FingerprintIndex(tmp_path / "nothing", read_only=True)


def test_finds_an_excerpt_under_noise_with_its_offset(tmp_path, refs):
    d, audio = refs
    with FingerprintIndex(tmp_path / "idx") as ix:
        for p in sorted(d.iterdir()):
            ix.add(p)
        for snr in (10, 0):
            m = ix.query_audio(mix(audio["song2.wav"], start_s=12, pos_s=6, snr_db=snr))
            assert m and m[0].reference == "song2.wav"
            assert m[0].offset_seconds == pytest.approx(6 - 12, abs=0.05)
            assert 6 - 0.1 <= m[0].candidate_start < 16  # the first agreeing hash lies inside the excerpt
        # music that is not in the index, and plain field recordings, match nothing
        other = synth.song(25, sr=SR, seed=999) + synth.field_recording(25, sr=SR, seed=5)
        assert ix.query_audio(other) == []
        assert ix.query_audio(synth.field_recording(20, sr=SR, seed=6)) == []
        assert ix.query_audio(np.zeros(SR * 5, np.float32)) == []


def test_cli_index_and_query(tmp_path, refs):
    d, audio = refs
    out = curate("fingerprint", "index", str(d), "--index", str(tmp_path / "idx")).stdout
    assert "4 added" in out
    assert "0 added, 4 already indexed" in curate("fingerprint", "index", str(d), "--index",
                                                   str(tmp_path / "idx")).stdout
    hit = tmp_path / "candidate.flac"
    sf.write(str(hit), mix(audio["song1.wav"], 5, 10, 0), SR)
    miss = tmp_path / "quiet.wav"
    sf.write(str(miss), synth.field_recording(10, sr=SR, seed=9), SR)
    rows = list(csv.reader(io.StringIO(curate("fingerprint", "query", "--index", str(tmp_path / "idx"),
                                              str(hit), str(miss)).stdout)))
    assert rows[0] == ["file", "reference", "offset_seconds", "score", "false_match_probability", "spread_seconds",
                       "speed", "pitch_semitones"]
    assert len(rows) == 2 and rows[1][0] == str(hit) and rows[1][1] == "song1.wav"
    assert float(rows[1][2]) == pytest.approx(5.0, abs=0.05) and float(rows[1][4]) <= 1e-9 and int(rows[1][5]) >= 3
    assert rows[1][6:] == ["1", "0"]  # played as it is


def test_backend_sends_matches_to_review_and_clears_the_rest(tmp_path, refs):
    d, audio = refs
    with FingerprintIndex(tmp_path / "idx") as ix:
        ix.add(d / "song3.wav")
    hit, miss = tmp_path / "1.wav", tmp_path / "2.wav"
    sf.write(str(hit), mix(audio["song3.wav"], 0, 2, 10), SR)
    sf.write(str(miss), melody(20, seed=77), SR)
    backend = FingerprintBackend(tmp_path / "idx")
    r1, r2, r3 = (Record(source="freesound", id=str(i)) for i in (1, 2, 3))
    r1.audio_path, r2.audio_path, r3.audio_path = str(hit), str(miss), str(tmp_path / "gone.wav")
    res = backend.identify(r1)
    assert res.status == "review" and res.reason == "copyright_audio_match"
    assert res.evidence["matches"][0]["reference"] == "song3.wav"
    assert backend.identify(r2).status == "clear"
    res = backend.identify(r3)  # cannot tell: fail closed
    assert res.status == "review" and "error" in res.evidence


def test_backend_asks_where_the_music_stage_heard_music(tmp_path, refs):
    """A 3-minute field recording with 12 s of a reference at 100 s: with the music stage's span
    only that window (and a margin) is asked, and the offset is in the recording's own time."""
    from curation.copyright.audio_id import merge_spans

    d, audio = refs
    with FingerprintIndex(tmp_path / "idx") as ix:
        for p in sorted(d.iterdir()):
            ix.add(p)
    long = synth.field_recording(180, sr=SR, seed=11) * 0.3
    ex = audio["song1.wav"][5 * SR : 17 * SR]
    long[100 * SR : 100 * SR + len(ex)] += ex
    path = tmp_path / "long.wav"
    sf.write(str(path), long, SR)
    backend = FingerprintBackend(tmp_path / "idx")
    r = Record(source="freesound", id="9")
    r.audio_path = str(path)
    r.evidence["music"] = {"is_music": True, "music_spans": [[100.5, 111.0], [150.0, 151.0]]}
    res = backend.identify(r)
    assert res.reason == "copyright_audio_match"
    assert res.evidence["queried"]["windows"] == [[98.5, 113.0], [148.0, 153.0]]
    m = res.evidence["matches"][0]
    assert m["reference"] == "song1.wav" and m["offset_seconds"] == pytest.approx(100 - 5, abs=0.05)
    assert 100 - 0.1 <= m["candidate_start"] < 112
    # without spans, the whole recording is asked, with the same answer
    del r.evidence["music"]
    whole = backend.identify(r)
    assert whole.evidence["queried"]["windows"] == [[0.0, 180.0]]
    assert whole.evidence["matches"][0]["offset_seconds"] == pytest.approx(95, abs=0.05)
    assert merge_spans([[1, 2], [3, 4], [10, 11]], 1.0, 10.5) == [[0.0, 5.0], [9.0, 10.5]]


@pytest.mark.parametrize("change,speed,pitch", [("tape", 1.03, 12 * np.log2(1.03)), ("tape", 0.96, 12 * np.log2(0.96)),
                                                ("tempo", 0.95, 0.0), ("pitch", 1.0, 1.0), ("pitch", 1.0, -0.5)])
def test_a_copy_played_faster_stretched_or_pitch_shifted_is_found_with_its_change(all_refs_index, refs, change,
                                                                                 speed, pitch):
    """Landmarks of absolute frequency and time gaps break under any of these; the query undoes
    each transform of the grid on its refined peaks and reports the one that matched, with the
    offset in the candidate's own time."""
    import librosa
    from scipy.signal import resample

    _, audio = refs
    with FingerprintIndex(all_refs_index, read_only=True) as ix:
        ex = audio["song2.wav"][8 * SR : 20 * SR]
        if change == "tape":
            y = resample(ex, int(round(len(ex) / speed)))
        elif change == "tempo":
            y = librosa.effects.time_stretch(ex, rate=speed)
        else:
            y = librosa.effects.pitch_shift(ex, sr=SR, n_steps=pitch)
        noise = synth.field_recording(25, sr=SR, seed=4)
        noise *= np.sqrt(np.mean(ex ** 2) / (np.mean(noise ** 2) * 10))  # +10 dB
        q = noise.copy()
        q[4 * SR : 4 * SR + len(y)] += y[: len(q) - 4 * SR]
        m = ix.query_audio(q.astype(np.float32))
        assert m and m[0].reference == "song2.wav"
        assert m[0].pitch_semitones == pytest.approx(pitch, abs=0.2)
        if change != "pitch":  # half a semitone is also 3% of tape speed: over 12 s the two look alike
            assert m[0].speed == pytest.approx(speed, abs=0.011)
        assert m[0].offset_seconds == pytest.approx(4 - 8 / speed, abs=0.1 if change != "pitch" else 0.4)


def test_music_held_by_two_references_is_found_in_both(tmp_path, refs):
    """A reference that holds another's passage (a medley, a remaster beside the original) shares
    every hash of it: counting only the hashes found in one reference found neither (as real
    music in a small index, whose peaks gather in few bins, lost two thirds of its hashes), and
    a background set by the best other reference let each hide the other."""
    from curation.copyright.fingerprint import FRAME_SECONDS, HOP

    d, audio = refs
    lead = HOP * int(1 / FRAME_SECONDS) * 12  # 12 s of song3, on the frame and peak-window grid
    medley = np.concatenate([audio["song3.wav"][:lead], audio["song1.wav"][: 15 * SR]])
    sf.write(str(tmp_path / "medley.wav"), medley, SR)
    with FingerprintIndex(tmp_path / "idx") as ix:
        for p in [*sorted(d.iterdir()), tmp_path / "medley.wav"]:
            ix.add(p)
        m = {x.reference: x for x in ix.query_audio(mix(audio["song1.wav"], 2, 6, 0).astype(np.float32))}
    # both, each at its own offset: neither hides the other by raising the background
    assert set(m) == {"song1.wav", "medley.wav"}
    assert m["song1.wav"].offset_seconds == pytest.approx(6 - 2, abs=0.05)
    assert m["medley.wav"].offset_seconds == pytest.approx(6 - 2 - lead / SR, abs=0.05)
