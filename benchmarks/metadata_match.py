"""Metadata matching at FMA scale, judged on three sets that share no code with the matcher
(see `benchmarks/match_sets/`): A, synthetic names from syllables; B, Faker names built to
hold the false positives an outside check found (filler-word artists, common titles, one-word
credit overlaps, the artist's other songs); C, real Spotify rows split so that labels need no
matcher. A and B: 106,574 queries against 114,000 catalogue rows; C: what the real rows give.
Prints precision, recall, wall time and peak memory per set, and the misses and false
positives by kind.

    .venv/bin/python benchmarks/metadata_match.py [--sets A,B,C] [--queries 106574] [--catalogue 114000]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.match_sets import faker_names, spotify_real, syllables  # noqa: E402
from curation.copyright.metadata_match import CatalogueMatcher, MatchSettings  # noqa: E402

SETS = {"A": ("syllables", syllables.make), "B": ("faker names", faker_names.make),
        "C": ("real Spotify rows", spotify_real.make)}

def run_set(key: str, n_queries: int, n_catalogue: int, seed: int) -> None:
    name, make = SETS[key]
    cat, q = make(n_queries, n_catalogue, seed)
    label = q["label"].to_numpy(bool)
    print(f"=== set {key} ({name}): catalogue {len(cat):,} rows, queries {len(q):,} ({int(label.sum()):,} true "
          f"matches, {int((~label).sum()):,} negatives)")
    print("    kinds:", q["kind"].value_counts().to_dict())
    t0 = time.perf_counter()
    matcher = CatalogueMatcher(cat, MatchSettings())
    t1 = time.perf_counter()
    res = matcher.match(q["title"], q["artist"])
    t2 = time.perf_counter()
    flagged = res["flagged"].to_numpy()
    tp = int((flagged & label).sum())
    fp = int((flagged & ~label).sum())
    fn = int((~flagged & label).sum())
    precision = tp / max(1, tp + fp)
    recall = tp / max(1, tp + fn)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"    precision {precision:.4f} (target >= 0.98)   recall {recall:.4f} (target >= 0.995)")
    print(f"    sent to review {int(flagged.sum()):,} (true {tp:,}, false {fp:,}; missed {fn:,})")
    print(f"    wall time {t2 - t0:.1f} s (index {t1 - t0:.1f} s, match {t2 - t1:.1f} s; target < 30 s at "
          f"106,574 x 114,000), peak RSS {peak:.0f} MB")
    missed = q[~flagged & label]
    if len(missed):
        print("    missed by kind:", missed["kind"].value_counts().to_dict())
        for _, r in missed.head(4).iterrows():
            print("      missed:", repr(r.title), "/", repr(r.artist))
    fps = q[flagged & ~label]
    if len(fps):
        print("    false positives by kind:", fps["kind"].value_counts().to_dict())
        for i in fps.index[:6]:
            c = matcher.candidate(int(res.at[i, "crow"]))
            print("      false positive:", repr(q.at[i, "title"]), "/", repr(q.at[i, "artist"]), "->",
                  repr(c["track_name"]), "/", repr(c["artists"]))


def main() -> None:
    import subprocess

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="A,B,C")
    ap.add_argument("--queries", type=int, default=106_574)
    ap.add_argument("--catalogue", type=int, default=114_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    keys = [k.strip().upper() for k in args.sets.split(",") if k.strip()]
    if len(keys) == 1:
        run_set(keys[0], args.queries, args.catalogue, args.seed)
        return
    for k in keys:  # one process per set, so that each peak memory figure is its own
        subprocess.run([sys.executable, __file__, "--sets", k, "--queries", str(args.queries), "--catalogue",
                        str(args.catalogue), "--seed", str(args.seed)], check=True)


if __name__ == "__main__":
    main()
