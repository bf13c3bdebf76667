import numpy as np
import pytest
import soundfile as sf

from curation import synth
from curation.audio import audio_blocks


def stage_reason(p):
    """The reason the music stage's reader (`score_files`, checking without a model) gives."""
    from curation.music.stream import score_files

    (done,) = list(score_files(None, [("k", str(p), "check")], workers=0))
    return done.error.reason if done.error is not None else None


def decode(p, sr_out=None, channels_out=2):
    """The file as the stages read it (`audio_blocks`): (blocks joined, its StreamInfo)."""
    info = []
    blocks = list(audio_blocks(p, info, sr_out or 44100, channels_out))
    return (np.concatenate(blocks) if blocks else np.zeros((0, channels_out), np.float32)), info[0]


@pytest.mark.parametrize("fmt,subtype,ext", [
    ("WAV", "PCM_16", "wav"), ("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg"),
    ("AIFF", "PCM_16", "aiff"), ("MP3", "MPEG_LAYER_III", "mp3"),
])
def test_decodes_common_formats(tmp_path, fmt, subtype, ext):
    x = synth.music(2.0, sr=44100, seed=1)
    p = tmp_path / f"a.{ext}"
    sf.write(str(p), np.stack([x, x], 1), 44100, format=fmt, subtype=subtype)
    x_out, info = decode(p)
    assert info.sample_rate == 44100 and info.channels == 2 and x_out.shape[1] == 2
    assert abs(len(x_out) / 44100 - 2.0) < 0.1  # mp3 adds encoder padding
    assert np.abs(x_out).max() > 0.1


def test_ffmpeg_fallback_for_m4a(tmp_path):
    """Formats libsndfile cannot read go through torchcodec (FFmpeg)."""
    import subprocess

    wav = tmp_path / "a.wav"
    sf.write(str(wav), synth.music(1.0, seed=2), 44100)
    m4a = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), str(m4a)], check=True)
    x_out, info = decode(m4a)
    assert abs(len(x_out) / 44100 - 1.0) < 0.1


@pytest.mark.parametrize("content,reason", [
    (None, "audio_missing"), (b"", "audio_empty"), (b"RIFF....WAVEgarbage" * 10, "audio_unreadable"),
])
def test_bad_audio_has_its_own_reason(tmp_path, content, reason):
    p = tmp_path / "x.wav"
    if content is not None:
        p.write_bytes(content)
    assert stage_reason(p) == reason


def test_zero_length_wav_is_empty(tmp_path):
    p = tmp_path / "z.wav"
    sf.write(str(p), np.zeros((0, 1), dtype=np.float32), 16000)
    assert stage_reason(p) == "audio_empty"


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
    # the stream matches a one-shot conversion of the whole file (libsndfile, or the FFmpeg
    # command line for m4a, then soxr: not the code under test)
    if ext == "m4a":
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(p), str(tmp_path / "back.wav")], check=True)
        whole, whole_sr = sf.read(str(tmp_path / "back.wav"), dtype="float32", always_2d=True)
    else:
        whole, whole_sr = sf.read(str(p), dtype="float32", always_2d=True)
    import soxr

    ref = soxr.resample(whole.mean(axis=1), whole_sr, sr_out, quality="HQ")
    got = out if ch_out == 1 else out.mean(axis=1)
    n = min(len(ref), len(got)) - 2000
    assert np.abs(got[3000:n] - ref[3000:n]).max() < 0.02
