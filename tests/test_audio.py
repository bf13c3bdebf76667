import numpy as np
import pytest
import soundfile as sf

from curation import synth
from curation.audio import AudioError, decode, resample, to_stereo


@pytest.mark.parametrize("fmt,subtype,ext", [
    ("WAV", "PCM_16", "wav"), ("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg"),
    ("AIFF", "PCM_16", "aiff"), ("MP3", "MPEG_LAYER_III", "mp3"),
])
def test_decodes_common_formats(tmp_path, fmt, subtype, ext):
    x = synth.music(2.0, sr=44100, seed=1)
    p = tmp_path / f"a.{ext}"
    sf.write(str(p), np.stack([x, x], 1), 44100, format=fmt, subtype=subtype)
    d = decode(p)
    assert d.sample_rate == 44100 and d.samples.shape[1] == 2
    assert abs(d.seconds - 2.0) < 0.1  # mp3 adds encoder padding
    assert np.abs(d.samples).max() > 0.1


def test_ffmpeg_fallback_for_m4a(tmp_path):
    """Formats libsndfile cannot read go through torchcodec (FFmpeg)."""
    import subprocess

    wav = tmp_path / "a.wav"
    sf.write(str(wav), synth.music(1.0, seed=2), 44100)
    m4a = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), str(m4a)], check=True)
    d = decode(m4a)
    assert abs(d.seconds - 1.0) < 0.1


@pytest.mark.parametrize("content,reason", [
    (None, "audio_missing"), (b"", "audio_empty"), (b"RIFF....WAVEgarbage" * 10, "audio_unreadable"),
])
def test_bad_audio_has_its_own_reason(tmp_path, content, reason):
    p = tmp_path / "x.wav"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(AudioError) as e:
        decode(p)
    assert e.value.reason == reason


def test_zero_length_wav_is_empty(tmp_path):
    p = tmp_path / "z.wav"
    sf.write(str(p), np.zeros((0, 1), dtype=np.float32), 16000)
    with pytest.raises(AudioError) as e:
        decode(p)
    assert e.value.reason == "audio_empty"


def test_resample_and_stereo():
    x = np.ones(48000, dtype=np.float32)
    y = resample(x, 48000, 32000)
    assert len(y) == 32000
    s = to_stereo(np.ones((10, 3), dtype=np.float32))
    assert s.shape == (10, 2)
