"""Audio identification benchmark: the landmark index against Chromaprint on the same set.

Generates reference tracks (synthetic music), mixes 10 s excerpts of them under
field-recording-like noise at +10, 0 and -5 dB SNR into longer recordings, adds recordings
that match nothing (noise alone, and music not in the index), and prints recall at each
SNR, the false-positive rate, index build speed and query time, for the landmark index
and for Chromaprint (`fpcalc -raw`, Debian's libchromaprint-tools) with a sliding
bit-error-rate search of each query against each reference.

Then the index is grown with filler references (random hashes at the density measured on
the references, each `--scale-ref-seconds` long: 210 s, a song) to each size of `--scale-refs`
(1,000 and 10,000) and a sample of the queries is timed again, as it is and with the transform
search, with the index's size per hour of reference audio.

    .venv/bin/python benchmarks/fingerprint.py [--refs 30] [--per-snr 40] [--negatives 100]
        [--scale-refs 1000,10000] [--scale-ref-seconds 210] [--scale-sample 30]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curation import synth  # noqa: E402
from curation.copyright.fingerprint import FRAME_SECONDS, FingerprintIndex  # noqa: E402

SR = 22050
SNRS = (10, 0, -5)
CP_THRESHOLD = 0.35  # bit error rate under which Chromaprint windows are taken to match
CP_WINDOW, CP_STRIDE = 40, 10  # items (about 5 s, 1.2 s)


def make_set(root: Path, n_refs: int, per_snr: int, n_neg: int, seed: int):
    rng = np.random.default_rng(seed)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "queries").mkdir(exist_ok=True)
    refs = []
    for i in range(n_refs):
        x = synth.song(60.0, sr=SR, seed=1000 + i)
        sf.write(str(root / "refs" / f"ref{i:03d}.wav"), x, SR)
        refs.append(x)
    queries = []  # (path, expected reference or None, snr)
    for snr in SNRS:
        for j in range(per_snr):
            i = int(rng.integers(n_refs))
            start = int(rng.integers(0, 50 * SR))
            ex = refs[i][start : start + 10 * SR]
            noise = synth.field_recording(30.0, sr=SR, seed=int(rng.integers(1 << 30)))
            noise *= np.sqrt(np.mean(ex**2) / (np.mean(noise**2) * 10 ** (snr / 10)))
            pos = int(rng.integers(0, 20 * SR))
            mix = noise.copy()
            mix[pos : pos + len(ex)] += ex
            p = root / "queries" / f"snr{snr:+d}_{j:03d}.wav"
            sf.write(str(p), mix / max(1.0, np.abs(mix).max()), SR)
            queries.append((p, f"ref{i:03d}.wav", snr))
    for j in range(n_neg):
        x = synth.field_recording(30.0, sr=SR, seed=int(rng.integers(1 << 30)))
        if j % 2:  # music, but not any reference
            x = 0.5 * x + synth.song(30.0, sr=SR, seed=5000 + j)
        p = root / "queries" / f"neg_{j:03d}.wav"
        sf.write(str(p), x / max(1.0, np.abs(x).max()), SR)
        queries.append((p, None, None))
    return sorted((root / "refs").iterdir()), queries


def report(name: str, found: dict, queries, build_s: float, ref_seconds: float, query_s: float) -> None:
    print(f"--- {name}")
    for snr in SNRS:
        pos = [(p, ref) for p, ref, s in queries if s == snr]
        hit = sum(1 for p, ref in pos if found.get(p) == ref)
        print(f"  recall at {snr:+d} dB SNR: {hit / len(pos):.3f}  ({hit}/{len(pos)})")
    # every negative counts: whether a "non-matching" recording shares audio with a reference is
    # checked only where the index matched it, so the figure without those is shown beside, with
    # their count, never instead
    neg = [p for p, ref, _ in queries if ref is None]
    fp = sum(1 for p in neg if found.get(p))
    wrong = sum(1 for p, ref, _ in queries if ref is not None and found.get(p) not in (None, ref))
    print(f"  false positives: {fp / len(neg):.4f}  ({fp}/{len(neg)} non-matching recordings; "
          f"{wrong} matching ones given the wrong reference)")
    shared = [p for p in neg if p in SHARED]
    if shared:
        rest = [p for p in neg if p not in SHARED]
        fp2 = sum(1 for p in rest if found.get(p))
        print(f"  without the {len(shared)} whose music a spectrogram check (no code shared with the index) finds "
              f"holds the matched reference's passage: {fp2}/{len(rest)}")
    print(f"  index build: {build_s:.1f} s, {ref_seconds / build_s:.0f} x real time")
    n = len(queries)
    print(f"  query: {1000 * query_s / n:.0f} ms per 30 s recording, {30 * n / query_s:.0f} x real time")


SHARED: set = set()  # "non-matching" recordings found to hold a reference's audio


def shared_audio(root: Path, query: Path, m) -> tuple[float, float] | None:
    """Spectrogram correlation of the matched 10 s of the query's own music (regenerated,
    without its noise) and of the reference at the match, and of two unaligned stretches:
    synth.song draws from a small pool of bars, so two seeds can hold the same passage."""
    from scipy.signal import stft

    j = int(query.stem.split("_")[1])
    if j % 2 == 0:
        return None
    music = synth.song(30.0, sr=SR, seed=5000 + j)
    ref, _ = sf.read(str(root / "refs" / m.reference), dtype="float32")

    def spec(z):
        return np.log(np.abs(stft(z, fs=SR, nperseg=1024, noverlap=768)[2]) + 1e-4).ravel()

    a = max(0, int(m.candidate_start * SR))
    b = max(0, int((m.candidate_start - m.offset_seconds) * SR))
    n = min(10 * SR, len(music) - a, len(ref) - b)
    if n < SR:
        return None
    aligned = float(np.corrcoef(spec(music[a : a + n]), spec(ref[b : b + n]))[0, 1])
    c = (b + 20 * SR) % max(1, len(ref) - n)
    unaligned = float(np.corrcoef(spec(music[a : a + n]), spec(ref[c : c + n]))[0, 1])
    return (aligned, unaligned) if aligned >= 0.5 else None


def run_landmark(root: Path, refs, queries):
    t0 = time.perf_counter()
    with FingerprintIndex(root / "index") as ix:
        for p in refs:
            ix.add(p)
    build = time.perf_counter() - t0
    found = {}
    t0 = time.perf_counter()
    with FingerprintIndex(root / "index", read_only=True) as ix:
        for p, _, _ in queries:
            m = ix.query(p)
            found[p] = m[0].reference if m else None
            if m and p.name.startswith("neg"):
                print(f"  matched a non-matching recording, {p.name}: {m[0]}")
                r = shared_audio(root, p, m[0])
                if r is not None:
                    SHARED.add(p)
                    print(f"    but its music holds the reference's audio: spectrogram correlation {r[0]:.2f} at the "
                          f"match (unaligned: {r[1]:.2f})")
    return found, build, time.perf_counter() - t0


def scale_check(root: Path, queries, n_refs: int, sample: int = 30, ref_seconds: float = 60.0) -> None:
    """Grow the index to n_refs references with filler tracks of `ref_seconds` each (random
    hashes at the density measured on the real references, hashes per second: a catalogue's
    worth of rows, not its audio) and query a sample again."""
    import pyarrow as pa

    rng = np.random.default_rng(0)
    with FingerprintIndex(root / "index") as ix:
        have, per_s = ix.con.execute("SELECT count(*), sum(n_hashes) / sum(seconds) FROM refs "
                                     "WHERE name NOT LIKE 'filler%'").fetchone()
        have = ix.count()
        per_ref = int(per_s * ref_seconds)
        frames = int(ref_seconds / FRAME_SECONDS)
        t0 = time.perf_counter()
        for start in range(int(have) + 1, n_refs + 1, 500):
            ids = np.arange(start, min(n_refs, start + 499) + 1, dtype=np.int32)
            n = per_ref * len(ids)
            tbl = pa.table({"hash": rng.integers(0, 1 << 24, n, dtype=np.int32),  # noqa: F841
                            "ref_id": np.repeat(ids, per_ref), "t": rng.integers(0, frames, n, dtype=np.int32)})
            ix.con.execute("INSERT INTO hashes SELECT * FROM tbl")
            ix.con.execute("INSERT INTO refs SELECT i, 'filler' || i, 'filler' || i, ?, ? FROM range(?, ?) r(i)",
                           [ref_seconds, per_ref, int(ids[0]), int(ids[-1]) + 1])
        ix.con.execute("CHECKPOINT")
        grow = time.perf_counter() - t0
        rows, hours = ix.con.execute("SELECT (SELECT count(*) FROM hashes), sum(seconds) / 3600 FROM refs").fetchone()
    size = sum(f.stat().st_size for f in (root / "index").iterdir()) / 2**20
    picked = [queries[i] for i in np.random.default_rng(1).choice(len(queries), sample, replace=False)]
    from curation.copyright.fingerprint import IDENTITY, TRANSFORMS

    print(f"--- at {n_refs:,} references ({hours:,.0f} h of reference audio, fillers of {ref_seconds:.0f} s; "
          f"{rows:,} hashes, {size:,.0f} MB on disk: {size / hours:.1f} MB per hour; filled in {grow:.0f} s):")
    for label, transforms in (("as it is", (IDENTITY,)), (f"with the {len(TRANSFORMS)} transforms", TRANSFORMS)):
        t0 = time.perf_counter()
        ok = 0
        with FingerprintIndex(root / "index", read_only=True) as ix:
            for p, ref, _ in picked:
                m = ix.query(p, transforms=transforms)
                ok += (m[0].reference if m else None) == ref
        q = time.perf_counter() - t0
        print(f"  {label}: {1000 * q / sample:.0f} ms per query, {ok}/{sample} sampled queries answered as before")


def fpcalc(path: Path, seconds: int = 120) -> np.ndarray:
    # fpcalc prints the fingerprint, then complains about the end of the file and exits 3
    out = subprocess.run(["fpcalc", "-raw", "-plain", "-length", str(seconds), str(path)], capture_output=True,
                         text=True).stdout.strip()
    return np.array([int(v) for v in out.split(",") if v], dtype=np.int64).astype(np.uint32)


_POP = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)


def popcount32(x: np.ndarray) -> np.ndarray:
    return _POP[x & 0xFFFF].astype(np.uint16) + _POP[x >> 16]


def chromaprint_best(q: np.ndarray, ref: np.ndarray) -> float:
    """The lowest bit error rate of any 5 s window of the query at any alignment in the reference."""
    if len(q) < CP_WINDOW or len(ref) < CP_WINDOW:
        return 1.0
    wins = np.lib.stride_tricks.sliding_window_view(q, CP_WINDOW)[::CP_STRIDE]  # (W, 40)
    rwin = np.lib.stride_tricks.sliding_window_view(ref, CP_WINDOW)  # (R, 40)
    best = 1.0
    for w in wins:
        ber = popcount32(np.bitwise_xor(rwin, w)).sum(axis=1) / (32 * CP_WINDOW)
        best = min(best, float(ber.min()))
    return best


def run_chromaprint(refs, queries):
    t0 = time.perf_counter()
    ref_fp = {p.name: fpcalc(p) for p in refs}
    build = time.perf_counter() - t0
    best = {}
    t0 = time.perf_counter()
    for p, _, _ in queries:
        q = fpcalc(p)
        scores = {name: chromaprint_best(q, fp) for name, fp in ref_fp.items()}
        best[p] = min(scores.items(), key=lambda kv: kv[1])
    return best, build, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refs", type=int, default=30)
    ap.add_argument("--per-snr", type=int, default=40)
    ap.add_argument("--negatives", type=int, default=100)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--work", default=None)
    ap.add_argument("--no-chromaprint", action="store_true", help="measure the landmark index only")
    ap.add_argument("--scale-refs", default="1000,10000", help="grow the index to each of these many references "
                    "(filler) and time queries again; 0 skips it")
    ap.add_argument("--scale-ref-seconds", type=float, default=210.0, help="length of each filler reference "
                    "(210 s: a song; the synthetic references are 60 s)")
    ap.add_argument("--scale-sample", type=int, default=30, help="queries timed at each size")
    args = ap.parse_args()
    root = Path(args.work or tempfile.mkdtemp(prefix="fp-bench-"))
    shutil.rmtree(root / "index", ignore_errors=True)
    refs, queries = make_set(root, args.refs, args.per_snr, args.negatives, args.seed)
    print(f"{len(refs)} references of 60 s; {args.per_snr} recordings of 30 s per SNR holding a 10 s excerpt; "
          f"{args.negatives} recordings matching nothing (noise, and music not indexed)")
    ref_seconds = 60.0 * len(refs)
    found, build, query = run_landmark(root, refs, queries)
    report("landmark index (curation.copyright.fingerprint)  targets: recall >= 0.9 at 0 dB, no false positives",
           found, queries, build, ref_seconds, query)
    if shutil.which("fpcalc") and not args.no_chromaprint:
        best, build, query = run_chromaprint(refs, queries)
        found = {p: (name if ber < CP_THRESHOLD else None) for p, (name, ber) in best.items()}
        report(f"Chromaprint (fpcalc -raw; best 5 s window, bit error rate < {CP_THRESHOLD})", found, queries,
               build, ref_seconds, query)
        # the same search with its threshold set where at most 0.5% of non-matching recordings pass
        neg = np.sort([ber for p, (_, ber) in best.items() if p.name.startswith("neg")])
        thr = float(neg[int(len(neg) * 0.005)]) if len(neg) else CP_THRESHOLD
        found = {p: (name if ber < thr else None) for p, (name, ber) in best.items()}
        report(f"Chromaprint, threshold {thr:.3f} (false positives held to <= 0.5%)", found, queries, build,
               ref_seconds, query)
    elif not args.no_chromaprint:
        print("--- Chromaprint: fpcalc not found (apt-get install libchromaprint-tools)")
    for n in sorted(int(v) for v in str(args.scale_refs).split(",") if v.strip()):
        if n > len(refs):
            scale_check(root, queries, n, sample=args.scale_sample, ref_seconds=args.scale_ref_seconds)


if __name__ == "__main__":
    main()
