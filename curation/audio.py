"""Decoding and resampling. Every decoder failure becomes an :class:`AudioError` with a
reason code, so the caller can record it on the record and go on."""
from __future__ import annotations

import hashlib
import re
from typing import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class AudioError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Decoded:
    samples: np.ndarray  # float32, (frames, channels)
    sample_rate: int

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / self.sample_rate


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _decode_torchcodec(path: Path) -> Decoded:
    from torchcodec.decoders import AudioDecoder

    dec = AudioDecoder(str(path))
    samples = dec.get_all_samples()
    data = samples.data.numpy().T.astype(np.float32, copy=False)  # (frames, channels)
    return Decoded(np.ascontiguousarray(data), int(samples.sample_rate))


def decode(path: Path | None) -> Decoded:
    """Decode a whole file (wav, flac, ogg, aiff, mp3 through libsndfile; others through FFmpeg)."""
    if path is None:
        raise AudioError("audio_missing", "no audio file found")
    path = Path(path)
    if not path.is_file():
        raise AudioError("audio_missing", f"file not found: {path.name}")
    if path.stat().st_size == 0:
        raise AudioError("audio_empty", "file is zero bytes")
    errors = []
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        out = Decoded(data, int(sr))
    except Exception as e:  # libsndfile reports corrupt and unsupported files alike
        errors.append(f"soundfile: {e}")
        try:
            out = _decode_torchcodec(path)
        except Exception as e2:
            errors.append(f"ffmpeg: {e2}")
            raise AudioError("audio_unreadable", "; ".join(errors)[:300]) from None
    if out.samples.shape[0] == 0 or out.sample_rate <= 0:
        raise AudioError("audio_empty", "decodes to zero samples")
    if not np.isfinite(out.samples).all():
        raise AudioError("audio_unreadable", "decoded samples are not finite")
    return out


def to_mono(samples: np.ndarray) -> np.ndarray:
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- streaming

BLOCK_SECONDS = 10.0
_SNDFILE_EXTS = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".aifc", ".mp3", ".au", ".w64", ".caf"}
# libsndfile's parse log when a RIFF/AIFF chunk claims more bytes than the file holds.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)


@dataclass
class StreamInfo:
    sample_rate: int
    channels: int
    format: str
    frames: int = 0  # native frames decoded so far

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    def to_dict(self) -> dict:
        return {"seconds": round(self.seconds, 3), "sample_rate": self.sample_rate, "channels": self.channels,
                "format": self.format}


def _layout(data: np.ndarray, channels_out: int) -> np.ndarray:
    """(frames, ch) to mono (frames,) or stereo (frames, 2): mono is duplicated, more than
    two channels are downmixed."""
    if channels_out == 1 or data.shape[1] > 2:
        mono = data.mean(axis=1)
        return mono if channels_out == 1 else np.repeat(mono[:, None], 2, axis=1)
    return data if data.shape[1] == 2 else np.repeat(data, 2, axis=1)


def _sndfile_blocks(path: Path, info_out: list, sr_out: int, channels_out: int) -> Iterator[np.ndarray]:
    try:
        f = sf.SoundFile(str(path))
    except Exception as e:
        raise AudioError("audio_unreadable", f"soundfile: {e}"[:300]) from None
    with f:
        m = _SHORT_CHUNK.search(f.extra_info or "")
        if m and int(m.group(1)) > int(m.group(2)) and int(m.group(1)) not in (0xFFFFFFFF, 0x7FFFFFFF):
            raise AudioError("audio_truncated", f"the header promises {m.group(1)} bytes of audio, "
                                                f"the file holds {m.group(2)}")
        info = StreamInfo(int(f.samplerate), int(f.channels), path.suffix.lower().lstrip("."))
        info_out.append(info)
        header_frames = int(f.frames)
        rs = None if f.samplerate == sr_out else soxr.ResampleStream(
            f.samplerate, sr_out, channels_out, dtype="float32", quality="HQ")
        block = max(1, int(BLOCK_SECONDS * f.samplerate))
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except Exception as e:
                # the header was read: the stream itself is cut short or corrupt part way
                raise AudioError("audio_truncated", f"decoding failed after {info.seconds:.1f} s: {e}"[:300]) from None
            last = len(data) < block
            info.frames += len(data)
            x = _layout(data, channels_out)
            if not np.isfinite(x).all():
                raise AudioError("audio_unreadable", "decoded samples are not finite")
            out = x if rs is None else rs.resample_chunk(np.ascontiguousarray(x), last=last)
            if len(out):
                yield out.astype(np.float32, copy=False)
            if last:
                break
        # mp3 and flac headers carry the length; a stream that ends early was cut short
        if path.suffix.lower() in (".mp3", ".flac") and header_frames > 0 and info.frames < header_frames - f.samplerate // 10:
            raise AudioError("audio_truncated", f"decoded {info.frames} of the {header_frames} frames the header gives")


def _ffmpeg_blocks(path: Path, info_out: list, sr_out: int, channels_out: int) -> Iterator[np.ndarray]:
    from torchcodec.decoders import AudioDecoder

    try:
        native = AudioDecoder(str(path))
        md = native.metadata
        # channels are mixed here, as for libsndfile: FFmpeg's downmix is 3 dB louder than a mean
        dec = AudioDecoder(str(path), sample_rate=sr_out)
    except Exception as e:
        raise AudioError("audio_unreadable", f"ffmpeg: {e}"[:300]) from None
    info = StreamInfo(int(md.sample_rate or 0), int(md.num_channels or 0), path.suffix.lower().lstrip("."))
    info_out.append(info)
    start, got = 0.0, 0
    while True:
        try:
            s = dec.get_samples_played_in_range(start, start + BLOCK_SECONDS)
        except Exception as e:
            if got == 0 and start == 0.0:
                raise AudioError("audio_unreadable", f"ffmpeg: {e}"[:300]) from None
            msg = str(e)
            if "end" in msg.lower() or "range" in msg.lower():
                break
            raise AudioError("audio_truncated", f"decoding failed after {start:.1f} s: {msg}"[:300]) from None
        if s.data.numel() == 0:
            break
        data = _layout(s.data.numpy().T, channels_out).astype(np.float32, copy=False)
        got += len(data)
        info.frames = int(round(got / sr_out * info.sample_rate))
        yield data
        start += BLOCK_SECONDS
    header = md.duration_seconds_from_header
    if header and info.seconds < header - 0.5:
        raise AudioError("audio_truncated", f"decoded {info.seconds:.1f} s of the {header:.1f} s the header gives")


def audio_blocks(path: Path, info_out: list, sr_out: int, channels_out: int = 1) -> Iterator[np.ndarray]:
    """A file as float32 blocks at `sr_out`, mono (frames,) or stereo (frames, 2), decoded,
    converted and resampled as a stream, so memory does not grow with the file's length.
    `info_out` receives its StreamInfo first. Raises AudioError with a reason code."""
    path = Path(path)
    if not path.is_file():
        raise AudioError("audio_missing", f"file not found: {path.name}")
    if path.stat().st_size == 0:
        raise AudioError("audio_empty", "file is zero bytes")
    if path.suffix.lower() in _SNDFILE_EXTS:
        try:
            yield from _sndfile_blocks(path, info_out, sr_out, channels_out)
            return
        except AudioError as e:
            if e.reason != "audio_unreadable" or info_out:
                raise
            info_out.clear()  # libsndfile could not open it: FFmpeg may
    yield from _ffmpeg_blocks(path, info_out, sr_out, channels_out)


