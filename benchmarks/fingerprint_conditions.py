"""Audio identification under what happens to music on Freesound, on real audio only.

Music: Debian's game soundtracks (wesnoth-1.16-music, asc-music, drascula-music, the faction
music of megaglest-data; planetblupi-music-ogg as references only, see below), fetched with
`apt-get download` and cached. Every other track is indexed; the rest is "music not in the
index". Backgrounds: real ambient loops (megaglest-data's tileset ambience: day, night, rain,
wind, desert; wesnoth-1.16-data's sounds/ambient: birds, campfire, ship, night, morning), laid
end to end; dense effects: megaglest-data's unit sounds and sound-theme-freedesktop laid over
each other. Queries are 30 s of background holding a 10-20 s excerpt at the condition's SNR
(music power against background power over the excerpt), a third re-encoded as 128 kbit/s mp3.

Labels come from how the set was built: a query holds an excerpt of reference R, or none. No
query is set aside by what the index under test says. planetblupi's tracker modules reuse each
other's patterns, so its tracks are never used as negatives (by construction, not by a match);
the kept-out tracks are listed with their packages so a reader can check them.

Conditions (each reported on its own, wav and mp3 together and apart):
  0 dB effects; -5 dB dense effects; 0, -5, -10, -15 dB background; speed x0.97/x1.03 and
  x0.95/x1.05 (resampled: pitch and tempo together, like tape); tempo x0.95/x1.05 with pitch
  kept and pitch +-1 semitone with tempo kept (librosa's phase vocoder); a phone band (300-3400
  Hz, 8 kHz, mu-law); transforms under the background at 0 dB (the phone band at +10 dB).
Negatives: background alone, dense effects alone, and music not in the index under the
background at 0 dB. A negative cut from a kept-out track that matches is checked by Chromaprint
against the matched reference (benchmarks/fingerprint_calibration.py's check, no code shared with
the index), and the count is given with and without those that share audio.

    .venv/bin/python benchmarks/fingerprint_conditions.py [--per-condition 30] [--seed 7]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curation.audio import load_mono  # noqa: E402
from curation.copyright.fingerprint import FingerprintIndex  # noqa: E402
from curation.realaudio import package_audio  # noqa: E402
from benchmarks.fingerprint_real import mix  # noqa: E402 (music at an SNR over the background where it plays)

SR = 16000
MUSIC = ("wesnoth-1.16-music", "asc-music", "drascula-music")
REF_ONLY = "planetblupi-music-ogg"
GLEST = "megaglest-data"
WESNOTH_DATA = "wesnoth-1.16-data"
EFFECTS = "sound-theme-freedesktop"


def music_tracks() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(indexed, kept out) as (name, path): every other track of each package is indexed."""
    refs, others = [], []
    for pkg in MUSIC:
        # drascula-music ships each track once per language folder (the same music): keep one
        paths = list({p.name: p for p in reversed(package_audio(pkg))}.values())
        for i, p in enumerate(sorted(paths)):
            (refs if i % 2 == 0 else others).append((f"{pkg}/{p.name}", str(p)))
    glest = sorted(p for p in package_audio(GLEST) if "/music/" in str(p) and p.stat().st_size > 0)
    for i, p in enumerate(glest):
        (refs if i % 2 == 0 else others).append((f"{GLEST}/{p.parent.parent.name}/{p.name}", str(p)))
    refs += [(f"{REF_ONLY}/{p.name}", str(p)) for p in package_audio(REF_ONLY)]
    return refs, others


def backgrounds() -> list[np.ndarray]:
    paths = [p for p in package_audio(GLEST) if "/tilesets/" in str(p) and "/sounds/" in str(p)
             and p.stat().st_size > 100_000]
    paths += [p for p in package_audio(WESNOTH_DATA) if "/sounds/ambient/" in str(p) and "wardrums" not in p.name]
    out = []
    for p in paths:
        x = load_mono(p, SR)
        if len(x) >= 3 * SR and np.sqrt(np.mean(x ** 2)) > 1e-3:
            out.append(x)
    return out


def effects() -> list[np.ndarray]:
    paths = [p for p in package_audio(GLEST) if "/techs/" in str(p) and "/music/" not in str(p)
             and p.suffix.lower() in (".wav", ".ogg") and 0 < p.stat().st_size < 400_000]
    paths += list(package_audio(EFFECTS))
    out = []
    for p in paths[::3]:  # a third of glest's unit sounds is plenty
        try:
            x = load_mono(p, SR)
        except Exception:
            continue
        if len(x) > SR // 10 and np.abs(x).max() > 1e-3:
            out.append(x)
    return out


def bed(pool: list[np.ndarray], seconds: float, rng, dense: bool = False) -> np.ndarray:
    """Clips from the pool laid end to end (a background), or over each other (dense effects)."""
    n = int(seconds * SR)
    out = np.zeros(n, np.float32)
    pos = 0
    while pos < n:
        x = pool[rng.integers(len(pool))]
        if not dense and len(x) > n:
            s = int(rng.integers(0, len(x) - n))
            x = x[s : s + n]
        x = x * rng.uniform(0.4, 1.0)
        seg = x[: n - pos]
        out[pos : pos + len(seg)] += seg
        pos += max(1, int(len(x) * (rng.uniform(0.2, 0.6) if dense else 1.0)))
    return out


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Played `factor` times faster, pitch and tempo together (resampling)."""
    from scipy.signal import resample

    return resample(x, int(round(len(x) / factor))).astype(np.float32)


def tempo(x: np.ndarray, factor: float) -> np.ndarray:
    import librosa

    return librosa.effects.time_stretch(x, rate=factor).astype(np.float32)


def pitch(x: np.ndarray, semitones: float) -> np.ndarray:
    import librosa

    return librosa.effects.pitch_shift(x, sr=SR, n_steps=semitones).astype(np.float32)


def phone(x: np.ndarray) -> np.ndarray:
    """300-3400 Hz, 8 kHz, 8-bit mu-law, back to 16 kHz."""
    from scipy.signal import butter, resample_poly, sosfilt

    sos = butter(6, [300, 3400], btype="band", fs=SR, output="sos")
    y = resample_poly(sosfilt(sos, x), 1, 2)
    y = np.clip(y / max(1e-9, float(np.abs(y).max())), -1, 1)
    mu = 255.0
    q = np.round(np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu) * 127) / 127
    y = np.sign(q) * ((1 + mu) ** np.abs(q) - 1) / mu
    return resample_poly(y, 2, 1).astype(np.float32)


def to_mp3(wav: Path) -> Path:
    mp3 = wav.with_suffix(".mp3")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-b:a", "128k", str(mp3)], check=True)
    wav.unlink()
    return mp3


# name -> (background kind, SNR dB, transform of the excerpt or None, speed factor the reference sees)
def conditions() -> dict:
    return {
        "0 dB effects": ("effects", 0, None),
        "-5 dB dense effects": ("dense", -5, None),
        "0 dB background": ("background", 0, None),
        "-5 dB background": ("background", -5, None),
        "-10 dB background": ("background", -10, None),
        "-15 dB background": ("background", -15, None),
        "speed x0.97/x1.03": ("background", 0, lambda x, r: speed(x, r.choice([0.97, 1.03]))),
        "speed x0.95/x1.05": ("background", 0, lambda x, r: speed(x, r.choice([0.95, 1.05]))),
        "tempo x0.95/x1.05": ("background", 0, lambda x, r: tempo(x, r.choice([0.95, 1.05]))),
        "pitch +-1 semitone": ("background", 0, lambda x, r: pitch(x, r.choice([-1.0, 1.0]))),
        "phone band": ("background", 10, "phone"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-condition", type=int, default=30)
    ap.add_argument("--negatives", type=int, default=100, help="queries per negative group")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", default=None)
    ap.add_argument("--only", default="", help="comma-separated condition names (default: all)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="fp-cond-"))
    work.mkdir(parents=True, exist_ok=True)

    refs, others = music_tracks()
    load = {}
    for name, p in refs + others:
        x = load_mono(p, SR)
        if len(x) >= 25 * SR:
            load[name] = x
    refs = [(n, p) for n, p in refs if n in load]
    others = [(n, p) for n, p in others if n in load]
    bgs, fx = backgrounds(), effects()
    print(f"music: {len(refs)} tracks indexed ({sum(len(load[n]) for n, _ in refs) / SR / 60:.0f} min), "
          f"{len(others)} kept out; {len(bgs)} real ambient loops; {len(fx)} real effects")
    print("kept out: " + ", ".join(n for n, _ in others))

    t0 = time.perf_counter()
    index_dir = work / "index"
    with FingerprintIndex(index_dir) as ix:
        for name, p in refs:
            ix.add(Path(p), name=name)
    build = time.perf_counter() - t0
    ref_seconds = sum(len(load[n]) for n, _ in refs) / SR
    size = sum(f.stat().st_size for f in index_dir.iterdir())
    print(f"index: built at {ref_seconds / build:.0f}x real time, {size / 1e6:.1f} MB "
          f"({size / 1e6 / (ref_seconds / 3600):.1f} MB per hour of reference audio)")

    qn = [0]

    def write(x: np.ndarray, mp3: bool) -> Path:
        qn[0] += 1
        p = work / f"q{qn[0]:05d}.wav"
        sf.write(str(p), x, SR)
        return to_mp3(p) if mp3 else p

    def excerpt(a: np.ndarray) -> np.ndarray:
        n = int(rng.uniform(10, 20) * SR)
        s = int(rng.integers(0, max(1, len(a) - n)))
        return a[s : s + n]

    def background(kind: str) -> np.ndarray:
        return bed(fx if kind in ("effects", "dense") else bgs, 30.0, rng, dense=kind == "dense")

    only = {c.strip() for c in args.only.split(",") if c.strip()}
    queries = []  # (path, expected reference or None, group, mp3)
    source = {}  # negative query -> the kept-out track it was cut from
    for cname, (kind, snr, transform) in conditions().items():
        if only and cname not in only:
            continue
        for j in range(args.per_condition):
            name, _ = refs[int(rng.integers(len(refs)))]
            x = excerpt(load[name])
            if callable(transform):
                x = transform(x, rng)
            q = mix(x, background(kind), snr, rng)
            if transform == "phone":
                q = phone(q)
            mp3 = j % 3 == 0
            queries.append((write(q, mp3), name, cname, mp3))
    if args.negatives:
        for j in range(args.negatives):
            queries.append((write(background("background"), j % 3 == 0), None, "background alone", j % 3 == 0))
            queries.append((write(background("dense"), j % 3 == 0), None, "dense effects alone", j % 3 == 0))
            name, _ = others[int(rng.integers(len(others)))]
            queries.append((write(mix(excerpt(load[name]), background("background"), 0, rng), j % 3 == 0), None,
                            f"music not in the index", j % 3 == 0))
            source[queries[-1][0]] = name

    import csv

    with open(work / "queries.csv", "w", newline="") as f:  # the labels, for a rerun on the same queries
        w = csv.writer(f)
        w.writerow(["path", "expected", "condition", "mp3"])
        w.writerows((str(p), e or "", g, int(mp3)) for p, e, g, mp3 in queries)
    t0 = time.perf_counter()
    found = {}
    with FingerprintIndex(index_dir, read_only=True) as ix:
        for p, _, _, _ in queries:
            m = ix.query(p)
            found[p] = m[0] if m else None
    qtime = time.perf_counter() - t0
    print(f"{len(queries)} queries of 30 s, {1000 * qtime / max(1, len(queries)):.0f} ms each on this machine\n")
    print(f"| condition | recall | wav | mp3 | given another reference |")
    print(f"| --- | --- | --- | --- | --- |")
    groups = list(dict.fromkeys(g for _, _, g, _ in queries))
    for g in groups:
        rows = [(p, e, mp3) for p, e, gg, mp3 in queries if gg == g]
        if rows[0][1] is None:
            continue

        def rate(sel):
            hit = sum(1 for p, e, _ in sel if found[p] is not None and found[p].reference == e)
            return f"{hit / len(sel):.2f} ({hit}/{len(sel)})" if sel else "-"
        wrong = sum(1 for p, e, _ in rows if found[p] is not None and found[p].reference != e)
        print(f"| {g} | {rate(rows)} | {rate([r for r in rows if not r[2]])} | {rate([r for r in rows if r[2]])} "
              f"| {wrong} |")
    print()
    # a kept-out track may share audio with an indexed one by the game's own making: checked by
    # Chromaprint (no code shared with the index), and each figure given with and without those
    from benchmarks.fingerprint_calibration import CP_SHARED, chromaprint_shared, fpcalc

    paths = dict(refs + others)
    for g in groups:
        rows = [p for p, e, gg, _ in queries if gg == g and e is None]
        if not rows:
            continue
        fp = [p for p in rows if found[p] is not None]
        lines, shared = [], 0
        for p in fp:
            note = ""
            if p in source:
                ber = chromaprint_shared(fpcalc(paths[source[p]]), fpcalc(paths[found[p].reference]))
                shared += ber < CP_SHARED
                note = (f"; cut from {source[p]}, which Chromaprint finds to "
                        f"{'share' if ber < CP_SHARED else 'share no'} audio with it (bit error rate {ber:.2f})")
            lines.append(f"\n    {p.name} -> {found[p].reference} (score {found[p].score}, estimated false-match "
                         f"probability {found[p].false_match_probability:.1e}){note}")
        print(f"false positives, {g}: {len(fp)} of {len(rows)}"
              + (f" ({len(fp) - shared} of {len(rows) - shared} without the {shared} sharing audio)" if shared else "")
              + "".join(lines))


if __name__ == "__main__":
    main()
