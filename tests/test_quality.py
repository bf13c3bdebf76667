"""The quality measures and stage: loudness against pyloudnorm, true peak against a full 4x
oversampling, each kind of damage found (copies made by the FFmpeg CLI and by numpy, neither
sharing code with the stage), good audio left alone (a quiet take is not silence), the stage as
the flow runs it (measures from the music stage's decode, or its own decode for older
evidence), the actions, the config keys, and the sample metadata. The real-file figures are
benchmarks/quality.py's."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from curation import synth
from curation.config import Config, QualityConfig
from curation.quality.measure import Meter, measure_file
from curation.quality.stage import QUALITY, findings, judged
from curation.records import Record
from tests.stage_run import run_stage

pytestmark = pytest.mark.skipif(subprocess.run(["which", "ffmpeg"], capture_output=True).returncode != 0,
                                reason="needs the ffmpeg CLI to make damaged copies")


def ff(*args) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True)


def _stereo(seconds: float, seed: int) -> np.ndarray:
    left = synth.song(seconds, 44100, seed=seed)
    right = 0.8 * left + 0.2 * synth.song(seconds, 44100, seed=seed + 100)
    x = np.stack([left, right], axis=1)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("quality")
    good = d / "good.wav"
    sf.write(good, _stereo(12, 1), 44100)
    out = {"good": good}
    # FFmpeg's copies
    ff("-i", good, "-af", "volume=20dB", "-c:a", "pcm_s16le", d / "ff-clipped.wav")
    ff("-i", good, "-af", "aresample=8000,aresample=44100", d / "ff-low-bandwidth.wav")
    ff("-i", good, "-af", "pan=stereo|c0=c0|c1=0*c1", d / "ff-dead-channel.wav")
    ff("-i", good, "-af", "pan=stereo|c0=c0|c1=-1*c1", d / "ff-phase-inverted.wav")
    ff("-t", "1", "-i", good, "-af", "apad=pad_dur=79", d / "ff-silent.wav")
    ff("-i", good, "-af", "volume=0.7,dcshift=0.2", d / "ff-dc-offset.wav")
    ff("-i", good, "-af", "volume=-30dB", d / "ff-quiet-take.wav")
    # numpy's
    x = _stereo(12, 2)
    sf.write(d / "np-clipped.wav", np.clip(10 * x, -1, 1), 44100, subtype="PCM_16")
    sf.write(d / "np-dead-channel.wav", np.stack([x[:, 0], np.zeros(len(x))], axis=1), 44100)
    sf.write(d / "np-phase-inverted.wav", np.stack([x[:, 0], -x[:, 0]], axis=1), 44100)
    sf.write(d / "np-silent.wav", np.r_[x[:44100], np.zeros((44100 * 79, 2), np.float32)], 44100)
    sf.write(d / "np-dc-offset.wav", 0.7 * x + 0.2, 44100)
    # a low-rate recording saved at 44.1 kHz: upsampled by repeating samples through a lowpass
    from scipy.signal import resample_poly

    low = resample_poly(resample_poly(x, 1, 6, axis=0), 6, 1, axis=0)  # 7.35 kHz content at 44.1 kHz
    sf.write(d / "np-low-bandwidth.wav", np.clip(low, -1, 1), 44100)
    for p in d.glob("*.wav"):
        out[p.stem] = p
    return out


EXPECT = {"clipped": "audio_clipped", "low-bandwidth": "audio_low_bandwidth", "dead-channel": "audio_dead_channel",
          "phase-inverted": "audio_phase_inverted", "silent": "audio_silent", "dc-offset": "audio_dc_offset"}


def test_loudness_is_pyloudnorms_and_true_peak_is_a_full_oversampling(files):
    import pyloudnorm
    from scipy.signal import resample_poly

    for name in ("good", "ff-quiet-take", "np-clipped"):
        x, sr = sf.read(files[name], dtype="float64", always_2d=True)
        q = measure_file(files[name])
        assert abs(q["loudness_lufs"] - pyloudnorm.Meter(sr).integrated_loudness(x)) < 0.05, name
        full = 20 * np.log10(np.abs(resample_poly(x, 4, 1, axis=0)).max())
        assert abs(q["true_peak_dbtp"] - full) < 0.05, name
    # an inter-sample peak: a quarter-rate sine sampled 45 degrees off its crest
    t = np.arange(44100)
    sine = np.sin(2 * np.pi * t / 4 + np.pi / 4).astype(np.float32)[:, None]
    m = Meter()
    m.update(sine, 44100)
    r = m.result()
    assert r["sample_peak"] == pytest.approx(0.70711, abs=1e-4) and abs(r["true_peak_dbtp"]) < 0.2  # 4x: 0.12 dB ripple


@pytest.mark.parametrize("gen", ["ff", "np"])
def test_each_damage_is_found_and_good_audio_is_not(files, gen):
    cfg = QualityConfig()
    for kind, reason in EXPECT.items():
        q = measure_file(files[f"{gen}-{kind}"])
        found = {f["reason"] for f in findings(q, cfg)}
        assert reason in found, (gen, kind, q)
    for name in ("good", "ff-quiet-take"):
        q = measure_file(files[name])
        assert findings(q, cfg) == [], (name, q)
        if name == "ff-quiet-take":  # a quiet take is not silence
            assert q["silent_share"] < 0.2 and q["loudness_lufs"] < -40


def test_actions_exclude_flag_or_off():
    q = {"measured": True, "silent_share": 0.0, "channel_rms_dbfs": [-20.0, -20.5], "clipped_share": 0.01,
         "bandwidth_share": 0.9, "channel_correlation": 0.5, "low_correlation": 0.9, "dc_offset": 0.0}
    reason, ev = judged(q, QualityConfig())
    assert reason is None and ev["flags"] == ["audio_clipped"]
    assert ev["found"] == [{"reason": "audio_clipped", "value": 0.01, "threshold": 0.002, "action": "flag"}]
    reason, ev = judged(q, QualityConfig(clipped="exclude"))
    assert reason == "audio_clipped" and ev["flags"] == []
    reason, ev = judged(q, QualityConfig(clipped="off"))
    assert reason is None and ev["found"] == []
    dead = {**q, "clipped_share": 0.0, "channel_rms_dbfs": [-20.0, None]}
    assert judged(dead, QualityConfig())[0] == "audio_dead_channel"  # excluded by default


def test_the_stage_as_the_flow_runs_it(tmp_path, files):
    """Measures in the evidence as the music stage's decode leaves them, or measured here for
    evidence from before the stage; exclusions, flags, explain, the sample metadata."""
    from curation.audio import file_sha256
    from curation.quality.stage import explain
    from curation.release.writers import sample_metadata

    cfg = Config(path=tmp_path / "c.toml", output_dir=tmp_path / "out")
    recs = []
    for i, name in enumerate(("good", "np-silent", "ff-clipped", "np-dead-channel")):
        r = Record("freesound", str(i + 1), audio_path=str(files[name]))
        audio = {"sha256": file_sha256(files[name]), "seconds": 1.0}
        if i != 0:  # as the music stage leaves it
            audio["quality"] = measure_file(files[name])
        r.evidence["audio"] = audio
        recs.append(r)
    recs.append(Record("freesound", "9", status="excluded", reason="license_not_allowed"))
    out, counts = run_stage(QUALITY, recs, cfg, tmp_path)
    by = {r.id: r for r in out}
    assert by["1"].status == "pending" and by["1"].evidence["quality"]["found"] == []
    assert by["2"].status == "excluded" and by["2"].reason == "audio_silent"
    assert by["3"].status == "pending" and by["3"].evidence["quality"]["flags"] == ["audio_clipped"]
    assert by["4"].status == "excluded" and by["4"].reason == "audio_dead_channel"
    assert by["9"].reason == "license_not_allowed" and "quality" not in by["9"].evidence
    assert counts["measured_here"] == 1 and counts["measured_in_decode"] == 3
    lines = explain({}, by["3"].evidence)
    assert "LUFS" in lines[0] and "audio_clipped (flag): measured" in lines[1]
    meta = sample_metadata(by["3"])
    assert meta["quality_flags"] == ["audio_clipped"] and isinstance(meta["loudness_lufs"], float)
    assert isinstance(meta["bandwidth_hz"], float) and isinstance(meta["true_peak_dbtp"], float)
    unmeasured = sample_metadata(Record("fma", "5"))
    assert unmeasured["loudness_lufs"] == 0.0 and unmeasured["quality_flags"] == ["not_measured"]


def test_the_music_stage_decode_carries_the_measures(tmp_path, files):
    """What rides on the music stage's decode is what a decode of its own measures."""
    from curation.music.stream import Plan, _decode_messages

    plan = Plan(10.0, 1.0, (), 0)
    msgs = list(_decode_messages([(0, "k", str(files["ff-dc-offset"]), "check")], plan, [0]))
    end = [m for m in msgs if m[0] == "end"][0]
    assert end[2]["quality"] == measure_file(files["ff-dc-offset"])


def test_the_config_keys(tmp_path):
    from curation.config import ConfigError, load_config

    base = 'output_dir = "out"\n[music]\ncheckpoint = "c.pth"\n[fma]\ntracks_csv = "t.csv"\naudio_dir = "."\n'
    (tmp_path / "t.csv").write_text("x\n")
    (tmp_path / "c.pth").write_bytes(b"x")
    p = tmp_path / "c.toml"
    base += '[copyright]\nspotify_tracks_csv = "t.csv"\n'
    p.write_text(base + '[quality]\nclipped = "exclude"\nmin_bandwidth_share = 0.3\n')
    cfg = load_config(p)
    assert cfg.quality.clipped == "exclude" and cfg.quality.min_bandwidth_share == 0.3 and cfg.quality.silent == "exclude"
    p.write_text(base + '[quality]\nclipped = "drop"\n')
    with pytest.raises(ConfigError, match="quality.clipped"):
        load_config(p)
    p.write_text(base + '[quality]\nsilent_min_share = 2\n')
    with pytest.raises(ConfigError, match="silent_min_share"):
        load_config(p)


def test_calibrate_keeps_every_good_file_and_says_what_it_catches(tmp_path, files):
    from tests.conftest import curate

    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    for n in ("good", "ff-quiet-take"):
        (good / f"{n}.wav").write_bytes(files[n].read_bytes())
    for n in ("ff-clipped", "np-silent", "ff-low-bandwidth", "np-dc-offset"):
        (bad / f"{n}.wav").write_bytes(files[n].read_bytes())
    cfg = tmp_path / "c.toml"
    (tmp_path / "p").mkdir()
    cfg.write_text('output_dir = "out"\n[music]\ncheckpoint = "c.pth"\n[freesound]\npages_dir = "p"\naudio_dir = "p"\n[quality]\nclipped = "exclude"\n')
    p = curate("quality", "calibrate", str(cfg), "--good", str(good), "--bad", str(bad), "--out", str(tmp_path / "cal"))
    import json

    th = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert th["clipped_share"]["caught"] >= 1 and th["silent_share"]["caught"] >= 1
    assert th["bandwidth_share"]["caught"] >= 1 and th["dc_offset"]["caught"] >= 1
    assert all(v["of"] == 4 for v in th.values() if v["key"] not in ("dead_channel_dbfs", "max_correlation"))
    assert "keeps every good file" in p.stdout and "Traceback" not in p.stderr
