import json
import math

import numpy as np
import pytest
import soundfile as sf

from curation import synth
from curation.music.calibrate import calibrate, critical_threshold
from curation.music.detector import MusicDetector
from tests.test_music_stream import EnergyModel


def test_critical_threshold():
    prob = np.array([0.9] * 100 + [0.3] * 3000 + [0.1] * 1000, dtype=np.float32)  # 41 s
    assert critical_threshold(prob, 30, 0) == pytest.approx(0.3)  # 3000 frames at >= 0.3 are 31 s
    assert critical_threshold(prob, 35, 0) == pytest.approx(0.1)
    short = np.array([0.8] * 500 + [0.05] * 500, dtype=np.float32)  # 10 s
    assert critical_threshold(short, 30, 0) == -math.inf
    assert critical_threshold(short, 30, 0.5) == pytest.approx(0.8)
    assert critical_threshold(short, 30, 0.6) == pytest.approx(0.05)


def write(path, loud_level, seconds, sr=22050, seed=0):
    x = synth.music(seconds, sr=sr, seed=seed) * loud_level
    sf.write(str(path), x, sr)
    return path


def test_calibration_on_a_labelled_toy_set(tmp_path, labels_csv):
    # EnergyModel: a frame's music probability is 4 x its mean absolute amplitude
    music = [write(tmp_path / f"m{i}.wav", level, 35, seed=i) for i, level in enumerate((1.0, 0.5, 0.2))]
    other = [write(tmp_path / f"n{i}.wav", level, 40, seed=10 + i) for i, level in enumerate((0.3, 0.05, 0.01))]
    other.append(write(tmp_path / "short.wav", 1.0, 5, seed=20))
    (tmp_path / "broken.wav").write_bytes(b"RIFFxxxxWAVEjunk")
    det = MusicDetector(EnergyModel(), labels_csv, 0.15, 30)
    cal = calibrate(det, music, other + [tmp_path / "broken.wav"], tmp_path / "report", workers=0)
    crit = {r["file"].split("/")[-1]: r["critical_threshold"] for r in cal.rows}
    # the quietest music decides the threshold; it misses no music
    assert cal.threshold == pytest.approx(min(crit["m0.wav"], crit["m1.wav"], crit["m2.wav"]), abs=1e-4)
    assert cal.threshold == pytest.approx(crit["m2.wav"], abs=1e-4)
    grid = {g["threshold"]: g for g in cal.grid}
    below = max(t for t in grid if t <= cal.threshold)
    assert grid[below]["recall"] == 1.0
    # the loud non-music recording (0.3 > 0.2) is a false positive there; the quiet ones and the short clip are not
    assert crit["n0.wav"] >= cal.threshold > crit["n1.wav"]
    assert crit["short.wav"] == -math.inf
    assert cal.false_positive_rate == pytest.approx(1 / 4)
    report = json.loads((tmp_path / "report" / "calibration.json").read_text())
    assert report["counts"] == {"music": 3, "non_music": 5, "errors": 1}
    png = (tmp_path / "report" / "music_seconds_hist.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "never" in (tmp_path / "report" / "recordings.csv").read_text()


def test_music_that_can_never_pass_is_reported(tmp_path, labels_csv):
    det = MusicDetector(EnergyModel(), labels_csv, 0.15, 30)
    cal = calibrate(det, [write(tmp_path / "loop.wav", 1.0, 10)], [], tmp_path / "r", workers=0)
    assert cal.threshold is None and cal.missed_always == [str(tmp_path / "loop.wav")]
    det = MusicDetector(EnergyModel(), labels_csv, 0.15, 30, min_music_fraction=0.5)
    cal = calibrate(det, [write(tmp_path / "loop.wav", 1.0, 10)], [], tmp_path / "r", workers=0)
    assert cal.threshold is not None and cal.threshold > 0.15


@pytest.mark.slow
def test_calibrate_cli(tmp_path, demo_dir):
    from tests.conftest import cli_env, curate

    (tmp_path / "music").mkdir()
    (tmp_path / "other").mkdir()
    write(tmp_path / "music" / "a.wav", 1.0, 31)
    write(tmp_path / "other" / "b.wav", 0.1, 3)
    cfg = tmp_path / "c.toml"
    d = demo_dir.as_posix()
    cfg.write_text(f"""output_dir = "out"
[freesound]
pages_dir = "{d}/freesound/pages"
audio_dir = "{d}/freesound/audio"
[music]
checkpoint = "{d}/models/panns_random_init.pth"
labels_csv = "{d}/models/class_labels_indices.csv"
workers = 1
""")
    proc = curate("music", "calibrate", str(cfg), "--music", str(tmp_path / "music"), "--non-music",
                  str(tmp_path / "other"), "--out", str(tmp_path / "rep"), env=cli_env(tmp_path))
    assert "threshold" in proc.stdout and "RANDOM" not in proc.stdout
    assert "randomly initialised" in proc.stderr
    assert (tmp_path / "rep" / "music_seconds_hist.png").exists()
