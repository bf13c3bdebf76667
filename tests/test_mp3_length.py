"""A header's length estimate is not a promise: real mp3s with a few damaged frames are
kept, truly cut files are still excluded (issue: Debian's asc-music was excluded whole)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from curation.audio import AudioError, audio_blocks
from curation.music.stream import UNLIMITED, Plan, _decode_messages
from curation.realaudio import package_audio


def _decode(path: Path) -> dict:
    info: list = []
    n = sum(len(b) for b in audio_blocks(path, info, 32000, 1))
    d = info[0].to_dict()
    d["out_s"] = n / 32000
    return d


@pytest.fixture(scope="module")
def asc_music() -> list[Path]:
    files = package_audio("asc-music")  # apt-get download + dpkg-deb -x, cached
    assert len(files) == 3
    return files


def test_real_asc_music_mp3s_are_kept_with_the_shortfall_recorded(asc_music):
    # the audio stage's own decode, as the music stage runs it
    jobs = [(i, p.name, str(p), "full") for i, p in enumerate(asc_music)]
    msgs = list(_decode_messages(jobs, Plan(60.0, 1.0, (), 0), [UNLIMITED] * len(jobs)))
    ends = {m[1]: m[2] for m in msgs if m[0] == "end"}
    assert not [m for m in msgs if m[0] == "err"]
    assert set(ends) == {p.name for p in asc_music}
    for name, audio in ends.items():
        check = audio["length_check"]
        # libsndfile ends 0.25-0.38 s short of a size-based estimate: a few damaged frames
        assert check["expected_from"] == "estimate from size and bitrate"
        assert 0.2 < check["shortfall_s"] < 0.5, (name, check)
        assert audio["seconds"] > 280


@pytest.fixture(scope="module")
def lame_mp3(tmp_path_factory) -> bytes:
    """60 s of stereo noise through libsndfile's LAME: a file with a Xing frame count."""
    p = tmp_path_factory.mktemp("mp3") / "x.mp3"
    x = (np.random.RandomState(1).randn(44100 * 60, 2) * 0.1).astype("float32")
    sf.write(str(p), x, 44100, format="MP3", subtype="MPEG_LAYER_III")
    return p.read_bytes()


def _damaged(data: bytes, start: int, n: int) -> bytes:
    b = bytearray(data)
    b[start:start + n] = np.random.RandomState(0).bytes(n)
    return bytes(b)


def test_cut_files_are_still_excluded(lame_mp3, tmp_path):
    for name, data in (("half", lame_mp3[: len(lame_mp3) // 2]), ("tail", lame_mp3[:-20000])):
        p = tmp_path / f"{name}.mp3"
        p.write_bytes(data)
        with pytest.raises(AudioError) as e:
            _decode(p)
        assert e.value.reason == "audio_truncated" and "xing/vbri frame count" in e.value.detail
        assert "FFmpeg too ends short" in e.value.detail


def test_a_few_damaged_frames_are_decoded_past(lame_mp3, tmp_path):
    # 3 kB of garbage mid-file: libsndfile's mpg123 gives up resyncing and stops there;
    # FFmpeg skips the damage and reaches the frame count, so FFmpeg reads the file
    p = tmp_path / "dmg.mp3"
    p.write_bytes(_damaged(lame_mp3, len(lame_mp3) // 2, 3000))
    d = _decode(p)
    check = d["length_check"]
    assert check["decoder"] == "ffmpeg" and check["decoded_s"] <= 30.5  # libsndfile stopped at the damage
    assert check["ffmpeg"]["shortfall_s"] < 0.5 and check["ffmpeg"]["complaints"]
    assert d["out_s"] == pytest.approx(60 - check["ffmpeg"]["shortfall_s"], abs=0.05)


def test_a_long_damaged_stretch_is_excluded(lame_mp3, tmp_path):
    p = tmp_path / "dmg60.mp3"
    p.write_bytes(_damaged(lame_mp3, len(lame_mp3) // 2, 60000))  # about 1.5 s of frames
    with pytest.raises(AudioError) as e:
        _decode(p)
    assert e.value.reason == "audio_truncated"


def test_real_file_with_damaged_frames_is_kept(asc_music, tmp_path):
    data = asc_music[1].read_bytes()
    p = tmp_path / "asc_dmg.mp3"
    p.write_bytes(_damaged(data, len(data) // 2, 3 * 261))  # three 261-byte frames
    d = _decode(p)
    assert d["length_check"]["shortfall_s"] < 1.0 and d["seconds"] > 280
