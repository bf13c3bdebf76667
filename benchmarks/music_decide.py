"""Deciding vs measuring: the music stage with `measure = "decide"` against `measure = "full"`
over the same corpora, decisions compared record by record. Run through
`benchmarks/music_throughput.py --decide fma|sao|both`.

Corpora, each reported on its own:
- FMA-like: full tracks of 2 to 8 minutes, nearly all music.
- SAO-like mix: durations log-normal with a median of 12 s and a mean of 50 s (capped at 20
  minutes), 30% music.
each built three ways that share no code with the music stage:
- real: Debian's game soundtracks (wesnoth, asc, drascula, planetblupi) as music, Debian's
  recorded speech prompts (asterisk-core-sounds-en-wav) and desktop sound effects
  (sound-theme-freedesktop) as not music; cut or joined to the drawn lengths;
- gen-a: `curation.synth` (music, songs, field recordings);
- gen-b: this file's own generator (chords, drums; brown-noise ambience with impacts).

The model is the STAND-IN of `standin_panns.py` (real architecture, random trunk, a music head
fitted here on other clips): its decisions follow the audio only roughly and are not PANNs'.
What the benchmark measures is what deciding saves, and that it changes no decision.
"""
from __future__ import annotations

import json
import math
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from curation import synth  # noqa: E402
from curation.config import MusicConfig  # noqa: E402
from curation.realaudio import package_audio  # noqa: E402

MUSIC_PKGS = ("wesnoth-1.16-music", "asc-music", "drascula-music", "planetblupi-music-ogg")
OTHER_PKGS = ("asterisk-core-sounds-en-wav", "sound-theme-freedesktop")
MIN_MUSIC_SECONDS = MusicConfig().min_music_seconds  # the benchmark runs the default rule
FORMATS = {"flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III"),
           "wav": ("WAV", "PCM_16")}


# ----------------------------------------------------------------------------- generator B

def gen_b_music(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Chord progressions of detuned saw-like tones over a kick and hi-hats."""
    n = int(seconds * sr)
    out = np.zeros(n, np.float64)
    bpm = rng.uniform(70, 150)
    beat = int(sr * 60 / bpm)
    root = rng.uniform(45, 60)
    prog = [0, 5, 7, 3, 8, 10][: rng.integers(3, 6)]
    t = np.arange(4 * beat) / sr
    for bar, start in enumerate(range(0, n, 4 * beat)):
        m = min(4 * beat, n - start)
        chord = root + prog[bar % len(prog)]
        tone = np.zeros(m)
        for semis in (0, 4 if rng.random() < 0.5 else 3, 7, 12):
            f = 440.0 * 2 ** ((chord + semis - 69) / 12)
            for h in range(1, 6):
                tone += np.sin(2 * np.pi * f * h * t[:m] * (1 + 0.001 * h)) / h
        out[start:start + m] += 0.05 * tone * (0.6 + 0.4 * np.exp(-t[:m] * 1.5))
    kick_t = np.arange(int(0.15 * sr)) / sr
    kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-kick_t * 30)) * kick_t) * np.exp(-kick_t * 20)
    hat = rng.standard_normal(int(0.04 * sr)) * np.exp(-np.arange(int(0.04 * sr)) / (0.008 * sr))
    hat = np.diff(hat, prepend=0)
    for i, start in enumerate(range(0, n, beat // 2)):
        if i % 2 == 0:
            seg = kick[: n - start]
            out[start:start + len(seg)] += 0.5 * seg
        seg = hat[: n - start]
        out[start:start + len(seg)] += 0.15 * seg
    return (out / max(1e-9, np.abs(out).max()) * 0.7).astype(np.float32)


def gen_b_ambience(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Brown noise with a slow swell, and impacts at random times: rain, traffic, a workshop."""
    n = int(seconds * sr)
    brown = np.cumsum(rng.standard_normal(n))
    k = sr // 10  # less its 0.1 s moving average: no drift, no DC
    c = np.concatenate([[0.0], np.cumsum(brown)])
    lo = np.clip(np.arange(n) - k // 2, 0, n)
    hi = np.clip(np.arange(n) + k // 2, 0, n)
    brown -= (c[hi] - c[lo]) / np.maximum(1, hi - lo)
    brown /= max(1e-9, np.abs(brown).max())
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * np.arange(n) / sr * rng.uniform(0.02, 0.2) + rng.uniform(0, 6))
    out = 0.3 * brown * swell
    for _ in range(int(seconds * rng.uniform(0.2, 2.0))):
        at = int(rng.integers(0, max(1, n - sr // 4)))
        m = min(sr // 4, n - at)
        out[at:at + m] += rng.uniform(0.1, 0.5) * rng.standard_normal(m) * np.exp(-np.arange(m) / (0.02 * sr))
    return (out / max(1e-9, np.abs(out).max()) * 0.6).astype(np.float32)


# ----------------------------------------------------------------------------- real files

_CACHE: dict = {}


def _load(path: Path, sr: int, offset: float = 0.0, duration: float | None = None) -> np.ndarray:
    """Mono at `sr`, read with soundfile and resampled with soxr; short files kept in memory."""
    import soxr

    key = (str(path), sr, offset, duration)
    if key in _CACHE:
        return _CACHE[key]
    with sf.SoundFile(str(path)) as f:
        f.seek(int(offset * f.samplerate))
        x = f.read(-1 if duration is None else int(duration * f.samplerate), dtype="float32", always_2d=True)
        native = f.samplerate
    x = x.mean(axis=1)
    if native != sr and len(x):
        x = soxr.resample(x, native, sr).astype(np.float32)
    if duration is None and len(x) < 60 * sr:
        _CACHE[key] = x
    return x


class RealPool:
    """Real files split once: some to fit the stand-in's head, the rest for the corpora."""

    def __init__(self, rng: np.random.Generator):
        music = [p for pkg in MUSIC_PKGS for p in package_audio(pkg)]
        other = [p for pkg in OTHER_PKGS for p in package_audio(pkg)]
        dur = {p: sf.info(str(p)).duration for p in music}
        music = [p for p in music if dur[p] >= 30]
        rng.shuffle(music)
        rng.shuffle(other)
        self.train_music, self.music = music[:4], music[4:]
        self.train_other, self.other = other[:30], other[30:]
        self.dur = dur

    def full_tracks(self, n: int) -> list[Path]:
        """Whole tracks of 2 to 8 minutes."""
        return [p for p in self.music if 120 <= self.dur[p] <= 480][:n]

    def music_excerpt(self, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
        out, got = [], 0
        while got < seconds * sr:
            p = self.music[int(rng.integers(len(self.music)))]
            want = max(1.0, seconds - got / sr)  # resampling can leave a sample or two to fill
            start = float(rng.uniform(0, max(0.0, self.dur[p] - want)))
            x = _load(p, sr, start, want)
            if not len(x):
                continue
            out.append(x)
            got += len(x)
        return np.concatenate(out)[: int(seconds * sr)]

    def other_joined(self, seconds: float, sr: int, rng: np.random.Generator, pool=None) -> np.ndarray:
        """Speech prompts and sound effects one after another, with short pauses."""
        pool = pool or self.other
        out, got = [], 0
        while got < seconds * sr:
            x = _load(pool[int(rng.integers(len(pool)))], sr)
            pause = np.zeros(int(rng.uniform(0.1, 1.0) * sr), np.float32)
            out += [x, pause]
            got += len(x) + len(pause)
        return np.concatenate(out)[: int(seconds * sr)]


# ----------------------------------------------------------------------------- corpora

def write(path: Path, x: np.ndarray, sr: int) -> None:
    fmt, sub = FORMATS[path.suffix[1:]]
    with sf.SoundFile(str(path), "w", sr, 1, format=fmt, subtype=sub) as f:
        for j in range(0, len(x), sr):  # libsndfile's Vorbis encoder crashes on long writes
            f.write(x[j:j + sr])


def clip(kind: str, music: bool, seconds: float, sr: int, rng: np.random.Generator, real: RealPool) -> np.ndarray:
    if seconds > 60 and kind != "real":  # made a minute at a time: generating it needs little memory
        pieces = [clip(kind, music, min(60.0, seconds - t), sr, rng, real) for t in np.arange(0, seconds, 60.0)]
        return np.concatenate(pieces)[: int(seconds * sr)]
    seed = int(rng.integers(1 << 30))
    if kind == "gen-a":
        if music:
            return synth.song(seconds, sr=sr, seed=seed) if seed % 2 else synth.music(seconds, sr=sr, seed=seed)
        return synth.field_recording(seconds, sr, seed)
    if kind == "gen-b":
        return gen_b_music(seconds, sr, rng) if music else gen_b_ambience(seconds, sr, rng)
    return real.music_excerpt(seconds, sr, rng) if music else real.other_joined(seconds, sr, rng)


def sao_durations(n: int, rng: np.random.Generator) -> np.ndarray:
    """Log-normal, median 12 s, mean 50 s (before the cap), capped at 20 minutes."""
    mu = math.log(12.0)
    sigma = math.sqrt(2 * math.log(50.0 / 12.0))
    return np.clip(rng.lognormal(mu, sigma, n), 0.5, 1200.0)


def build_corpus(which: str, kind: str, root: Path, n: int, seed: int, real: RealPool) -> list[dict]:
    """Files named by record id under root; returns [{id, path, music (by design), seconds}]."""
    root.mkdir(parents=True, exist_ok=True)
    listing = root / "corpus.json"
    if listing.exists():
        return json.loads(listing.read_text())
    rng = np.random.default_rng(seed)
    rows = []
    if which == "fma" and kind == "real":
        for i, p in enumerate(real.full_tracks(n)):
            dest = root / f"{i + 1}{p.suffix}"
            dest.write_bytes(p.read_bytes())
            rows.append({"id": str(i + 1), "path": str(dest), "music": True, "seconds": real.dur[p]})
    else:
        if which == "fma":
            durs = rng.uniform(120, 480, n)
            music = np.ones(n, bool)
            music[rng.choice(n, max(1, n // 10), replace=False)] = False  # nearly all music
        else:
            durs = sao_durations(n, rng)
            music = np.zeros(n, bool)
            music[rng.choice(n, int(round(0.3 * n)), replace=False)] = True
        exts = ["mp3", "ogg", "flac"] if which == "fma" else ["flac", "ogg", "wav", "mp3"]
        for i in range(n):
            sr = (44100, 32000, 48000)[i % 3]
            dest = root / f"{i + 1}.{exts[i % len(exts)]}"
            write(dest, clip(kind, bool(music[i]), float(durs[i]), sr, rng, real), sr)
            rows.append({"id": str(i + 1), "path": str(dest), "music": bool(music[i]), "seconds": float(durs[i])})
    listing.write_text(json.dumps(rows))
    return rows


# ----------------------------------------------------------------------------- the stand-in

def standin(work: Path, labels: Path, real: RealPool) -> tuple[Path, dict]:
    from benchmarks.standin_panns import build

    path = work / "standin_panns.pth"
    meta = work / "standin_panns.json"
    if path.exists() and meta.exists():
        return path, json.loads(meta.read_text())
    rng = np.random.default_rng(7)
    music = [synth.music(10, sr=32000, seed=100 + i) for i in range(4)]
    music += [synth.song(10, sr=32000, seed=200 + i) for i in range(4)]
    music += [_load(p, 32000)[32000 * 20: 32000 * 30] for p in real.train_music]
    other = [synth.field_recording(10, 32000, 300 + i) for i in range(6)]
    other += [rng.standard_normal(320000).astype(np.float32) * a for a in (0.3, 0.03)]
    other += [np.zeros(320000, np.float32)]
    other += [real.other_joined(10, 32000, rng, pool=real.train_other) for _ in range(5)]
    info = build(path, labels, [m for m in music if len(m) >= 32000], other)
    meta.write_text(json.dumps(info))
    return path, info


# ----------------------------------------------------------------------------- the stage, both ways

def run_stage(rows: list[dict], ckpt: Path, labels: Path, measure: str, work: Path, workers: int,
              batch_size: int) -> tuple[dict, float, float]:
    """The music stage as the flow runs it, over an empty cache: per-record outcome, wall
    seconds, model seconds."""
    from curation.config import Config
    from curation.music.stage import audio_and_music, load_detector, model_info
    from curation.records import Record

    audio_dir = Path(rows[0]["path"]).parent
    cfg = Config(path=work / "bench.toml", output_dir=work / "out")
    cfg.freesound.pages_dir = audio_dir
    cfg.freesound.audio_dir = audio_dir
    m = cfg.music
    m.checkpoint, m.labels_csv = ckpt, labels
    if measure == "source":  # taken as music by source: decoded and checked, never scored
        m.freesound = "source"
    else:
        m.measure = measure
    m.workers, m.batch_size, m.device = workers, batch_size, "cpu"
    m.cache_dir = work / f"cache-{measure}-{time.time_ns()}"
    info = model_info(cfg)
    load_detector(cfg, info)  # loading the model is not part of the figure
    records = [Record(source="freesound", id=r["id"]) for r in rows]
    t0 = time.perf_counter()
    rep = audio_and_music(records, cfg, lambda: load_detector(cfg, info), info.sha256, True)
    wall = time.perf_counter() - t0
    model_s = 0.0
    for note in rep.notes:
        if note.startswith("model ran on"):
            model_s = float(note.split()[3])
    out = {}
    for r in records:
        mus = r.evidence.get("music", {})
        out[r.id] = {"status": r.status, "reason": r.reason, "is_music": mus.get("is_music"),
                     "decided": mus.get("decided"), "measured": mus.get("measured_seconds")}
    return out, wall, model_s


def compare(name: str, rows: list[dict], ckpt: Path, labels: Path, work: Path, workers: int, batch: int) -> dict:
    dec, wall_d, model_d = run_stage(rows, ckpt, labels, "decide", work, workers, batch)
    full, wall_f, model_f = run_stage(rows, ckpt, labels, "full", work, workers, batch)
    same = sum(1 for r in rows if (dec[r["id"]]["status"], dec[r["id"]]["reason"], dec[r["id"]]["is_music"])
               == (full[r["id"]]["status"], full[r["id"]]["reason"], full[r["id"]]["is_music"]))
    n = len(rows)
    src = {}
    if name.startswith("fma/"):  # the default for FMA: music by source, the model never runs
        src, wall_s, _ = run_stage(rows, ckpt, labels, "source", work, workers, batch)
    by_model = sum(1 for r in rows if full[r["id"]]["is_music"])
    # what the rule can say: a recording shorter than min_music_seconds is never music under it
    reach = [r["music"] and r["seconds"] >= MIN_MUSIC_SECONDS for r in rows]
    agree = sum(1 for r, want in zip(rows, reach) if bool(full[r["id"]]["is_music"]) == want)
    how = {k: sum(1 for r in rows if dec[r["id"]]["decided"] == k) for k in ("early", "short", "full")}
    # an early decision either way: music once 30 s of music frames are in, not music once the
    # frames left cannot make them up
    how["early_not_music"] = sum(1 for r in rows if dec[r["id"]]["decided"] == "early" and not dec[r["id"]]["is_music"])
    res = {"corpus": name, "records": n, "audio_hours": sum(r["seconds"] for r in rows) / 3600,
           "music_by_design": sum(r["music"] for r in rows), "music_by_design_in_reach": sum(reach), "music_by_model": by_model, "model_agrees": agree,
           "model_s_full": model_f, "model_s_decide": model_d, "model_ratio": model_d / model_f if model_f else 0.0,
           "wall_full": wall_f, "wall_decide": wall_d, "wall_ratio": wall_d / wall_f, "identical": same,
           "decided": how}
    print(f"  {name:10s} {n:4d} rec {res['audio_hours']:5.2f} h | music: design {res['music_by_design']:3d}, "
          f"{sum(reach):3d} of them >= {MIN_MUSIC_SECONDS:.0f} s; stand-in {by_model:3d} (agrees on {agree}/{n}) | model-s full {model_f:8.1f} decide {model_d:7.1f} "
          f"= {res['model_ratio']:.3f} | wall full {wall_f:6.1f} s decide {wall_d:6.1f} s = {res['wall_ratio']:.3f} | "
          f"decided early {how['early']} ({how['early_not_music']} not music), short {how['short']}, "
          f"in full {how['full']} | identical {same}/{n}",
          flush=True)
    if src:
        differ = sum(1 for r in rows if src[r["id"]]["is_music"] != full[r["id"]]["is_music"])
        res.update({"wall_source": wall_s, "source_differs": differ})
        print(f"  {'':10s} music by source (music.fma = \"source\", the default): 0 model-s, wall {wall_s:6.1f} s = "
              f"{wall_s / wall_f:.3f} of scoring everything; {differ} of {n} decisions differ from the model's "
              f"(its non-music tracks, taken as music)", flush=True)
    return res


def main(args, labels: Path) -> None:
    work = Path(args.work) / "decide"
    work.mkdir(parents=True, exist_ok=True)
    real = RealPool(np.random.default_rng(11))
    ckpt, info = standin(work, labels, real)
    print("=" * 100)
    print("STAND-IN music model: real Cnn14 architecture, RANDOM trunk, a music head fitted on labelled clips")
    print(f"(not PANNs; its decisions follow the audio only roughly). sha256 {info['sha256']}, "
          f"head fitted on {info['train_frames']} frames, train accuracy {info['train_accuracy']:.3f}")
    print("=" * 100)
    results = []
    which = ["fma", "sao"] if args.decide == "both" else [args.decide]
    for w in which:
        n = args.fma_tracks if w == "fma" else args.sao_records
        print(f"{'FMA-like: full tracks of 2-8 min, nearly all music' if w == 'fma' else 'SAO-like mix: log-normal durations (median 12 s, mean 50 s, cap 20 min), 30% music'}"
              f"; targets: model-seconds {'and wall <= 0.2' if w == 'fma' else '<= 0.75'} of scoring everything, "
              f"every decision identical")
        for kind in ("real", "gen-a", "gen-b"):
            seed = zlib.crc32(f"{w}/{kind}".encode()) % 1000 + 1
            rows = build_corpus(w, kind, work / f"{w}-{kind}-{n}", n, seed=seed, real=real)
            results.append(compare(f"{w}/{kind}", rows, ckpt, labels, work, args.workers, args.batch_size))
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(f"figures: {work / 'results.json'}")
