import numpy as np
import pytest
import soundfile as sf

from curation import synth
from curation.audio import AudioError, audio_blocks, decode, resample


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


def test_resample():
    assert len(resample(np.ones(48000, dtype=np.float32), 48000, 32000)) == 32000


@pytest.mark.parametrize("channels,sr,ext", [(1, 22050, "wav"), (2, 48000, "flac"), (6, 44100, "wav"), (2, 44100, "m4a")])
@pytest.mark.parametrize("sr_out,ch_out", [(44100, 2), (32000, 1)])
def test_stream_blocks_convert_rate_and_channels(tmp_path, channels, sr, ext, sr_out, ch_out):
    import subprocess

    x = synth.music(23.0, sr=sr, seed=3)
    data = np.stack([x * (1 - 0.1 * c) for c in range(channels)], axis=1)
    p = tmp_path / f"a.{ext}"
    if ext == "m4a":
        sf.write(str(tmp_path / "src.wav"), data, sr)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(tmp_path / "src.wav"), str(p)], check=True)
    else:
        sf.write(str(p), data, sr)
    info = []
    blocks = list(audio_blocks(p, info, sr_out, ch_out))
    assert info[0].sample_rate == sr and info[0].channels == channels
    out = np.concatenate(blocks)
    assert out.ndim == (1 if ch_out == 1 else 2) and (ch_out == 1 or out.shape[1] == 2)
    assert abs(len(out) / sr_out - 23.0) < 0.1
    # the stream matches a one-shot conversion of the whole file
    whole = decode(p)
    mono = whole.samples.mean(axis=1)
    ref = resample(mono, whole.sample_rate, sr_out)
    got = out if ch_out == 1 else out.mean(axis=1)
    n = min(len(ref), len(got)) - 2000
    assert np.abs(got[3000:n] - ref[3000:n]).max() < 0.02
