"""Is the landmark index's estimated false-match probability what it says? On real audio only.

The index holds the references of `fingerprint_conditions.py` (Debian's game soundtracks, every
other track). Every query here is a negative by construction: it holds no audio of an indexed
track. Groups (each reported on its own):
  - music not in the index, as it is (a 10-20 s excerpt of a kept-out track, alone);
  - music not in the index under real ambience at 0 dB;
  - music not in the index, transformed (speed x0.95-x1.05, tempo x0.95/x1.05, pitch +-1
    semitone) under the ambience at 0 dB;
  - real ambience alone; dense real effects alone.
A third of each group is re-encoded as mp3. For each query the lowest estimated false-match
probability of any reference it would match at any limit (the index's other rules, minimum
score and spread, as they are) is recorded, and the table gives, for each decade x of the
estimate, the queries whose best estimate is at most x: what the estimate promises is x per
query (N x of N), what is observed is counted.

A query that matches at a tiny estimate may still share audio with the reference by the game's
own making (one theme in two tracks): every match at the default limit is checked by Chromaprint
(fpcalc, Debian's libchromaprint-tools; no code shared with the index) between the kept-out track
the query was cut from and the matched reference, and reported with and without those.

    .venv/bin/python benchmarks/fingerprint_calibration.py [--per-group 200] [--seed 11]
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

from benchmarks.fingerprint_conditions import backgrounds, bed, effects, music_tracks, pitch, speed, tempo  # noqa: E402
from benchmarks.fingerprint_real import mix  # noqa: E402
from curation.audio import load_mono  # noqa: E402
from curation.copyright import fingerprint as fp  # noqa: E402
# the lowest bit error rate of any 5 s window of one fingerprint against any alignment in the other
from benchmarks.fingerprint import chromaprint_best as chromaprint_shared  # noqa: E402,F401
from benchmarks.fingerprint import fpcalc as _fpcalc  # noqa: E402

SR = 16000
CP_SHARED = 0.25  # Chromaprint bit error rate under which two tracks are taken to share audio


def fpcalc(path: str) -> np.ndarray:
    """A whole track's Chromaprint fingerprint (up to 20 min)."""
    return _fpcalc(Path(path), seconds=1200)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-group", type=int, default=200)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="fp-cal-"))
    work.mkdir(parents=True, exist_ok=True)

    refs, others = music_tracks()
    paths = dict(refs + others)
    load = {n: x for n, x in ((n, load_mono(p, SR)) for n, p in refs + others) if len(x) >= 25 * SR}
    refs = [(n, p) for n, p in refs if n in load]
    others = [n for n, _ in others if n in load]
    bgs, fx = backgrounds(), effects()
    index_dir = work / "index"
    if not (index_dir / "index.duckdb").exists():
        with fp.FingerprintIndex(index_dir) as ix:
            for name, p in refs:
                ix.add(Path(p), name=name)
    print(f"index: {len(refs)} tracks; negatives cut from {len(others)} kept-out tracks, {len(bgs)} ambient loops, "
          f"{len(fx)} effects")

    def excerpt(name: str) -> np.ndarray:
        a = load[name]
        n = int(rng.uniform(10, 20) * SR)
        s = int(rng.integers(0, max(1, len(a) - n)))
        return a[s : s + n]

    def transformed(x: np.ndarray) -> np.ndarray:
        kind = rng.integers(3)
        if kind == 0:
            return speed(x, float(rng.choice([0.95, 0.97, 0.98, 1.02, 1.03, 1.05])))
        if kind == 1:
            return tempo(x, float(rng.choice([0.95, 1.05])))
        return pitch(x, float(rng.choice([-1.0, 1.0])))

    groups = {
        "music not in the index, as it is": lambda n: excerpt(n),
        "music not in the index, 0 dB ambience": lambda n: mix(excerpt(n), bed(bgs, 30.0, rng), 0, rng),
        "music not in the index, transformed, 0 dB ambience": lambda n: mix(transformed(excerpt(n)),
                                                                             bed(bgs, 30.0, rng), 0, rng),
        "ambience alone": lambda n: bed(bgs, 30.0, rng),
        "dense effects alone": lambda n: bed(fx, 30.0, rng, dense=True),
    }
    results = []  # (group, source track or None, mp3, best estimate, best reference)
    t0 = time.perf_counter()
    with fp.FingerprintIndex(index_dir, read_only=True) as ix:
        for g, make in groups.items():
            for j in range(args.per_group):
                src = others[int(rng.integers(len(others)))] if "music" in g else None
                x = make(src)
                mp3 = j % 3 == 0
                p = work / "q.wav"
                sf.write(str(p), x / max(1.0, float(np.abs(x).max())), SR)
                if mp3:
                    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(p), "-b:a", "128k",
                                    str(work / "q.mp3")], check=True)
                    p = work / "q.mp3"
                m = ix.query(p, max_false_match=1.0)
                best = min(m, key=lambda k: k.false_match_probability) if m else None
                results.append((g, src, mp3, best.false_match_probability if best else 1.0,
                                best.reference if best else ""))
    n = len(results)
    print(f"{n} negative queries of up to 30 s, {1000 * (time.perf_counter() - t0) / n:.0f} ms each\n")

    decades = [10.0 ** -k for k in range(1, 13)]
    est = np.array([r[3] for r in results])
    names = list(groups)
    print("| estimate at most | promised (N x) | observed, all | " + " | ".join(names) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in names) + " |")
    for x in decades:
        per = [sum(1 for r in results if r[0] == g and r[3] <= x) for g in names]
        print(f"| {x:.0e} | {n * x:.3g} | {int((est <= x).sum())} of {n} | " + " | ".join(map(str, per)) + " |")

    limit = fp.MAX_FALSE_MATCH
    hits = [r for r in results if r[3] <= limit]
    print(f"\nmatches at the default limit ({limit:.0e}): {len(hits)} of {n}")
    shared = 0
    cache: dict[str, np.ndarray] = {}
    for g, src, mp3, e, ref in hits:
        note = ""
        if src:
            for k in (src, ref):
                if k not in cache:
                    cache[k] = fpcalc(paths[k])
            ber = chromaprint_shared(cache[src], cache[ref])
            if ber < CP_SHARED:
                shared += 1
                note = f"; Chromaprint: the two tracks share audio (bit error rate {ber:.2f})"
            else:
                note = f"; Chromaprint: no shared audio found (best bit error rate {ber:.2f})"
        print(f"    {g}{' (mp3)' if mp3 else ''}: {src or '-'} -> {ref} at {e:.1e}{note}")
    print(f"false matches at the default limit: {len(hits)} of {n}; {len(hits) - shared} of {n - shared} "
          f"without the {shared} whose tracks Chromaprint finds to share audio")


if __name__ == "__main__":
    main()
