import numpy as np
import pytest

from curation.music import detector as music
from curation.music.detector import FPS, HOP, SAMPLE_RATE, MusicDetector, Segmenter, music_indices, read_labels, run_segments


def test_music_subtree_has_150_classes(labels_csv):
    idx = music_indices(read_labels(labels_csv))
    assert len(idx) == 150
    assert set(range(137, 283)) <= set(idx.tolist())
    assert {28, 30, 31, 92} <= set(idx.tolist())
    assert 0 not in idx  # Speech


def test_music_mids_match_the_ontology(labels_csv):
    import json

    from tests.conftest import SHARED

    if not (SHARED / "ontology.json").is_file():
        pytest.skip(f"the AudioSet ontology is expected at {SHARED} (../shared, present in CI)")
    onto = {n["id"]: n for n in json.loads((SHARED / "ontology.json").read_text())}
    sub, todo = set(), ["/m/04rlf"]
    while todo:
        mid = todo.pop()
        if mid not in sub:
            sub.add(mid)
            todo += onto[mid]["child_ids"]
    in_list = {mid for _, mid, _ in read_labels(labels_csv)}
    assert set(music.music_mids()) == sub & in_list


class KnownModel:
    """A stand-in with known framewise outputs: music probability p(t) of the absolute time t."""

    checksum = "known"

    def __init__(self, prob_of_second, music_class=137):
        self.prob = prob_of_second
        self.cls = music_class
        self.calls = []
        self.offset = 0

    def __call__(self, batch):
        n = batch.shape[1] // HOP + 1  # centred frames, as Cnn14 gives
        self.calls.append(batch.shape)
        out = np.zeros((batch.shape[0], n, 527), dtype=np.float32)
        # the audio carries its own time stamps, so chunking cannot fool the model
        t = np.pad(batch[:, ::HOP], ((0, 0), (0, 1)))[:, :n]
        out[:, :, self.cls] = self.prob(t)
        out[:, :, 0] = 0.9  # speech everywhere, not music
        return out


def score_file(det, audio, tmp_path):
    """`det`'s result for `audio` the way the flow gets it: written as a file (32 kHz float WAV,
    so the time stamps survive) and scored by `score_files` in full."""
    import soundfile as sf

    from curation.music.stream import score_files

    path = tmp_path / f"clip-{len(list(tmp_path.glob('clip-*.wav')))}.wav"
    sf.write(str(path), audio, SAMPLE_RATE, subtype="FLOAT")
    (done,) = list(score_files(det, [("clip", str(path), "full")], workers=0))
    assert done.error is None, done.error
    return done.result


def stamped(seconds):
    n = int(seconds * SAMPLE_RATE)
    return (np.arange(n) / SAMPLE_RATE).astype(np.float32)


@pytest.mark.parametrize("seconds,music_from,expected_music", [(100, 70, 30.0), (100, 70.5, 29.5), (45, 10, 35.0)])
def test_rule_counts_seconds_of_music_frames(labels_csv, seconds, music_from, expected_music, tmp_path):
    model = KnownModel(lambda t: np.where(t >= music_from, 0.2, 0.1))
    det = MusicDetector(model, labels_csv, threshold=0.15, min_music_seconds=30)
    res = score_file(det, stamped(seconds), tmp_path)
    assert res.music_seconds == pytest.approx(expected_music, abs=0.011)
    assert res.is_music == (expected_music >= 30)
    assert res.max_music_prob == pytest.approx(0.2)
    assert res.top_labels[0].startswith("Speech")


def test_threshold_is_inclusive(labels_csv, tmp_path):
    det = MusicDetector(KnownModel(lambda t: np.full_like(t, 0.15)), labels_csv, 0.15, 30)
    assert score_file(det, stamped(31), tmp_path).is_music
    det = MusicDetector(KnownModel(lambda t: np.full_like(t, 0.1499)), labels_csv, 0.15, 30)
    assert not score_file(det, stamped(31), tmp_path).is_music


@pytest.mark.parametrize("seconds,chunk,context,block,first", [
    (150.37, 60, 1, 10**9, ()), (150.37, 60, 1, 12345, ()), (121.0, 30, 0, 32000, ()), (0.2, 60, 1, 999, ()),
    (59.999, 20, 2.5, 7, ()), (150.37, 60, 1, 12345, (30, 10, 10, 10)), (45.5, 60, 1, 32000, (30, 10, 10, 10)),
    (31.0, 60, 1, 777, (30, 10)), (0.5, 60, 1, 999, (30, 10))])
def test_chunks_are_stitched_without_gaps_or_overlap(seconds, chunk, context, block, first):
    """Frame i of the stitched output is the model's frame at sample i * HOP of the whole
    recording, whatever the chunking and however the stream arrives."""
    model = KnownModel(lambda t: t / 1000.0)
    audio = stamped(seconds)
    seg = Segmenter("k", chunk, context, first)
    segments = []
    for i in range(0, len(audio), block):
        segments += seg.feed(audio[i : i + block])
    segments += seg.finish()
    assert [s.index for s in segments] == list(range(len(segments)))
    assert [s.last for s in segments] == [False] * (len(segments) - 1) + [True]
    assert max(len(s.audio) for s in segments) <= seg.max_len
    fw = np.concatenate([run_segments(model, [s], seg.max_len)[0] for s in segments])
    assert fw.shape == (max(1, len(audio) // HOP), 527)
    t = fw[:, 137] * 1000
    assert t[0] == 0
    assert np.allclose(np.diff(t), HOP / SAMPLE_RATE, atol=1e-4)


def test_music_seconds_across_a_chunk_border(labels_csv, tmp_path):
    """Music from 50 s to 80 s straddles the 60 s border: 30 s counted, once."""
    model = KnownModel(lambda t: np.where((t >= 50) & (t < 80), 0.9, 0.0))
    det = MusicDetector(model, labels_csv, 0.15, 30, chunk_seconds=60, context_seconds=1, first_chunks=())
    res = score_file(det, stamped(125), tmp_path)
    assert res.music_seconds == pytest.approx(30.0, abs=0.011) and res.is_music and res.rule == "seconds"
    assert len(model.calls) == 3


def test_short_clip_is_padded_to_its_bucket(labels_csv, tmp_path):
    model = KnownModel(lambda t: np.full_like(t, 0.5))
    det = MusicDetector(model, labels_csv, 0.15, 30)
    res = score_file(det, stamped(0.2), tmp_path)
    assert model.calls == [(1, SAMPLE_RATE)]
    assert res.seconds == 0.2


@pytest.mark.parametrize("seconds,music_from,fraction,expected", [
    (10, 5, 0.0, ("none", False)),      # off by default: a 10 s loop is never music
    (10, 5, 0.5, ("fraction", True)),   # half its frames are music
    (10, 6, 0.5, ("none", False)),
    (40, 0, 0.5, ("seconds", True)),    # long recordings keep Stable Audio Open's rule
    (40, 25, 0.3, ("none", False)),     # 15 s of 40 s: the fraction rule is only for short clips
])
def test_short_clip_fraction_rule(labels_csv, seconds, music_from, fraction, expected, tmp_path):
    model = KnownModel(lambda t: np.where(t >= music_from, 0.5, 0.0))
    det = MusicDetector(model, labels_csv, 0.15, 30, min_music_fraction=fraction)
    res = score_file(det, stamped(seconds), tmp_path)
    assert (res.rule, res.is_music) == expected
    assert res.music_fraction == pytest.approx((seconds - music_from) / seconds, abs=0.002)


def test_random_checkpoint_of_the_real_architecture(random_checkpoint, labels_csv, tmp_path):
    from curation.music.models import is_random_checkpoint

    model = music.PannsModel(random_checkpoint, labels_csv, device="cpu")
    assert is_random_checkpoint(random_checkpoint)
    assert model.device == "cpu" and not model.half
    fw = model(np.zeros((2, SAMPLE_RATE * 2), dtype=np.float32))
    assert fw.shape == (2, 2 * FPS + 1, 527)  # centred frames: one at each end
    assert ((fw >= 0) & (fw <= 1)).all()
    det = MusicDetector(model, labels_csv, 0.15, 30)
    res = score_file(det, np.zeros(SAMPLE_RATE * 3, dtype=np.float32), tmp_path)
    assert res.seconds == 3.0 and res.checkpoint_sha256 == music.checkpoint_sha256(random_checkpoint)


def test_wrong_checkpoint_is_a_clear_error(tmp_path, labels_csv):
    import torch

    bad = tmp_path / "bad.pth"
    torch.save({"model": {"nope": torch.zeros(1)}}, bad)
    with pytest.raises(music.MusicModelError, match="not a Cnn14_DecisionLevelMax checkpoint"):
        music.PannsModel(bad, labels_csv, device="cpu")


def test_device_selection():
    assert music.pick_device("auto", cuda_available=True) == "cuda"
    assert music.pick_device("auto", cuda_available=False) == "cpu"
    assert music.pick_device("cpu", cuda_available=True) == "cpu"
    assert music.pick_device("cuda", cuda_available=True) == "cuda"
    with pytest.raises(music.MusicModelError, match="no CUDA device"):
        music.pick_device("cuda", cuda_available=False)
    assert music.use_half("cuda") and not music.use_half("cpu")


def test_gpu_path_selection_on_this_machine(random_checkpoint, labels_csv, monkeypatch):
    """On a machine without CUDA, auto runs on the CPU in full precision; with CUDA reported,
    the model is placed on it in half precision (the move itself is what fails here)."""
    import torch

    if torch.cuda.is_available():
        m = music.PannsModel(random_checkpoint, labels_csv, device="auto")
        assert m.device == "cuda" and m.half
        return
    m = music.PannsModel(random_checkpoint, labels_csv, device="auto")
    assert m.device == "cpu" and not m.half
    assert next(m.model.parameters()).dtype == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    moved = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: moved.append(a) or self)
    m = music.PannsModel(random_checkpoint, labels_csv, device="auto")
    assert m.device == "cuda" and m.half and ("cuda",) in moved
    assert next(m.model.parameters()).dtype == torch.float16


def test_labels_with_the_wrong_class_count(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("index,mid,display_name\n0,/m/09x0r,Speech\n")
    with pytest.raises(music.MusicModelError, match="527"):
        read_labels(p)


def test_panns_never_imported_with_an_empty_class_list(tmp_path, labels_csv, monkeypatch):
    """An empty ~/panns_data/class_labels_indices.csv (left by an offline import) is replaced
    before panns_inference is imported."""
    import subprocess
    import sys

    home = tmp_path / "home"
    (home / "panns_data").mkdir(parents=True)
    (home / "panns_data" / "class_labels_indices.csv").write_text("")
    code = (
        "from pathlib import Path; from curation.music.detector import build_cnn14; "
        f"m = build_cnn14(Path({str(labels_csv)!r})); "
        "import panns_inference.config as c; print(c.classes_num)"
    )
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "527"
