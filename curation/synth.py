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


_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])


def _add(out: np.ndarray, start: int, seg: np.ndarray) -> None:
    end = min(len(out), start + len(seg))
    if end > start:
        out[start:end] += seg[: end - start]


def _tone(freq: float, n: int, sr: int, harmonics: np.ndarray, decay: float) -> np.ndarray:
    t = np.arange(n) / sr
    x = sum(w * np.sin(2 * np.pi * freq * (k + 1) * t) for k, w in enumerate(harmonics) if freq * (k + 1) < sr / 2)
    env = np.minimum(1.0, t / 0.01) * np.exp(-t * decay)
    return (x * env).astype(np.float32)


def song(seconds: float, sr: int = 44100, seed: int = 0) -> np.ndarray:
    """A distinct piece per seed: its own key, tempo, chord progression, melody, bass line,
    drum pattern and timbres (unlike `music`, whose pieces share one progression). Mono."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    out = np.zeros(n + sr, dtype=np.float32)
    beat = 60.0 / rng.uniform(80, 160)
    root = 40 + int(rng.integers(0, 12))
    prog = rng.integers(0, 7, size=int(rng.integers(3, 7)))
    lead_h = rng.dirichlet(np.ones(5)) * 0.25
    pad_h = rng.dirichlet(np.ones(3)) * 0.08
    bass_h = rng.dirichlet(np.ones(3)) * 0.3

    def midi(deg: int, octave: int) -> float:
        semis = _MAJOR[deg % 7] + 12 * (deg // 7 + octave)
        return 440.0 * 2 ** ((root + semis - 69) / 12)

    t, bar = 0.0, 0
    while t < seconds:
        chord = int(prog[bar % len(prog)])
        start = int(t * sr)
        length = int(4 * beat * sr)
        for k in (0, 2, 4):  # the chord, held for the bar
            seg = _tone(midi(chord + k, 1), length, sr, pad_h, 1.0)
            _add(out, start, seg)
        for b in range(4):  # bass on the beats
            s0 = int((t + b * beat) * sr)
            seg = _tone(midi(chord + (0 if b % 2 == 0 else 4), 0), int(beat * sr), sr, bass_h, 4.0)
            _add(out, s0, seg)
        pos = 0.0  # the melody, a new phrase each bar
        while pos < 4 * beat:
            dur = beat * float(rng.choice([0.25, 0.5, 0.5, 1.0, 1.5]))
            if rng.random() < 0.85:
                s0 = int((t + pos) * sr)
                seg = _tone(midi(chord + int(rng.integers(-2, 8)), 2), int(dur * sr), sr, lead_h, 3.0)
                _add(out, s0, seg)
            pos += dur
        for b in range(8):  # drums: kick, snare, hats in a pattern of this song
            s0 = int((t + b * beat / 2) * sr)
            m = min(int(0.15 * sr), len(out) - s0)
            if m <= 0:
                continue
            tt = np.arange(m) / sr
            if b % 4 == 0 or rng.random() < 0.1:
                out[s0 : s0 + m] += 0.5 * np.sin(2 * np.pi * 50 * tt) * np.exp(-tt * 20)
            if b % 4 == 2:
                out[s0 : s0 + m] += 0.2 * rng.standard_normal(m) * np.exp(-tt * 25)
            out[s0 : s0 + m] += 0.05 * rng.standard_normal(m) * np.exp(-tt * 80)
        t += 4 * beat
        bar += 1
    out = out[:n]
    return (out * 0.9 / max(1e-9, np.abs(out).max())).astype(np.float32)
