"""Decoding and resampling. Every decoder failure becomes an :class:`AudioError` with a
reason code, so the caller can record it on the record and go on."""
from __future__ import annotations

import hashlib
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


def to_stereo(samples: np.ndarray) -> np.ndarray:
    """(frames, ch) to (frames, 2): mono is duplicated, more than two channels are downmixed."""
    if samples.ndim == 1:
        samples = samples[:, None]
    ch = samples.shape[1]
    if ch == 2:
        return samples
    if ch == 1:
        return np.repeat(samples, 2, axis=1)
    mono = samples.mean(axis=1, keepdims=True)
    return np.repeat(mono, 2, axis=1)
