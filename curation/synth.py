"""Synthetic audio for demos, tests and benchmarks: music-like (chords, bass, beat) and
field-recording-like (filtered noise, chirps). Deterministic for a given seed."""
from __future__ import annotations

import numpy as np

_CHORDS = ([0, 4, 7], [5, 9, 12], [7, 11, 14], [9, 12, 16])


def music(seconds: float, sr: int = 44100, seed: int = 0, bpm: float = 110.0) -> np.ndarray:
    """A chord progression with a bass line and a kick/hat beat; mono float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    root = 48 + int(rng.integers(0, 12))
    beat = 60.0 / bpm
    bar = 4 * beat
    out = np.zeros(n, dtype=np.float64)
    chord_idx = (t // bar).astype(int) % len(_CHORDS)
    for k in range(3):
        midi = root + np.take([c[k] for c in _CHORDS], chord_idx)
        f = 440.0 * 2 ** ((midi - 69) / 12)
        phase = 2 * np.pi * np.cumsum(f) / sr
        out += 0.12 * (np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.15 * np.sin(3 * phase))
    bass_f = 440.0 * 2 ** ((root - 12 + np.take([c[0] for c in _CHORDS], chord_idx) - 69) / 12)
    out += 0.2 * np.sin(2 * np.pi * np.cumsum(bass_f) / sr)
    pos = t % beat
    out += 0.5 * np.sin(2 * np.pi * 55 * pos) * np.exp(-pos * 18)  # kick on every beat
    half = (t + beat / 2) % beat
    out += 0.08 * rng.standard_normal(n) * np.exp(-half * 60)  # hat between beats
    out *= 0.9 / max(1e-9, np.abs(out).max())
    return out.astype(np.float32)


def field_recording(seconds: float, sr: int = 44100, seed: int = 0) -> np.ndarray:
    """Wind-like brown noise with sparse bird-like chirps; mono float32."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    brown = np.cumsum(rng.standard_normal(n))
    brown -= np.convolve(brown, np.ones(2048) / 2048, mode="same")
    out = 0.3 * brown / max(1e-9, np.abs(brown).max())
    for _ in range(max(1, int(seconds // 2))):
        start = int(rng.integers(0, max(1, n - sr // 4)))
        length = min(sr // 5, n - start)
        tt = np.arange(length) / sr
        f0 = rng.uniform(2500, 5000)
        chirp = np.sin(2 * np.pi * (f0 * tt + 4000 * tt**2)) * np.hanning(length)
        out[start : start + length] += 0.3 * chirp
    out *= 0.8 / max(1e-9, np.abs(out).max())
    return out.astype(np.float32)
