"""Release versions at scale: what one removal and 1,000 additions cost against a full build.

    python benchmarks/release_versions.py [--records 100000] [--shard-records 1000] [--seconds 0.5]
                                          [--clips 200] [--workers 2]

Builds a release of N records (short recordings cut from real music, Debian's wesnoth and asc
soundtracks, fetched with apt-get download and cached, never committed; each record points at
one of --clips clips), with the release's own code: the stable shard plan
(`release.writers.plan_shards`), shard writing (FLAC 44.1 kHz stereo + JSON, in worker processes
as the flow's Dask tasks do), the attribution CSVs and index, and a published version
(`release.versions.publish`: hard links, SHA256SUMS, release.json, the dataset card). Then:

1. removes one record from the middle of the release and publishes v2;
2. adds 1,000 new records and publishes v3;
3. verifies v3 (`release.verify.verify`: every checksum, attribution against shards).

Prints, for each step, the shards the plan rewrote or added, the shards v_n shares with its
parent (the same files, hard-linked), the bytes newly written, and the wall time, against the
full build.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _write(args) -> int:
    from curation.release.writers import write_shard

    shard_dir, state_dir, name, chunk, fp = args
    write_shard(Path(shard_dir), Path(state_dir), name, chunk, fp)
    return len(chunk)


def make_records(clips: list[Path], first_id: int, n: int, sha: dict[Path, str]):
    from curation.records import Record

    recs = []
    for i in range(n):
        rid = first_id + i
        clip = clips[rid % len(clips)]
        source = "fma" if rid % 5 == 0 else "freesound"
        r = Record(source=source, id=str(rid), title=f"Clip {rid}", author=f"artist{rid % 97}",
                   url=f"https://example.org/{source}/{rid}", license="cc0",
                   license_url="https://creativecommons.org/publicdomain/zero/1.0/", license_raw="CC0 1.0",
                   tags=["music", "loop"], status="included")
        r.audio_path = str(clip)
        r.evidence["audio"] = {"sha256": sha[clip], "seconds": 0.5}
        recs.append(r)
    return recs


def release(cfg, records, pool) -> dict:
    """The release stage as the flow runs it, and the version it publishes."""
    import pyarrow as pa

    from curation.release.stage import release_index
    from curation.release.versions import publish
    from curation.release.writers import plan_shards, prune_shards, sort_key, write_attribution
    from curation.stage import write_part

    t0 = time.perf_counter()
    records = sorted(records, key=sort_key)
    out = cfg.output_dir / "release"
    for source in ("freesound", "fma"):
        write_attribution(out / f"{source}_attribution.csv", (r for r in records if r.source == source))
    plans = plan_shards(records, cfg.release.shard_max_records, cfg.shard_dir, cfg.work_dir / "shards")
    cfg.shard_dir.mkdir(parents=True, exist_ok=True)
    prune_shards(cfg.shard_dir, {p["name"] for p in plans})
    write_part(cfg.work_dir / "release" / "index.parquet", release_index(plans))
    t_plan = time.perf_counter() - t0
    todo = [p for p in plans if p["write"]]
    jobs = [(str(cfg.shard_dir), str(cfg.work_dir / "shards"), p["name"], p["records"], p["fingerprint"]) for p in todo]
    list(pool.map(_write, jobs))
    t_write = time.perf_counter() - t0 - t_plan
    manifest = pa.table({"source": [r.source for r in records], "id": [r.id for r in records],
                         "status": ["included"] * len(records), "reason": [""] * len(records)})
    write_part(cfg.output_dir / "manifests" / "records.parquet", manifest)
    t1 = time.perf_counter()
    v = publish(cfg, {"checkpoint": "none", "sha256": "0" * 64, "random_init": True, "published": False}, [])
    t_publish = time.perf_counter() - t1
    written = sum((cfg.shard_dir / p["name"]).stat().st_size for p in todo)
    total = sum((cfg.shard_dir / p["name"]).stat().st_size for p in plans)
    return {"version": v["version"], "shards": len(plans), "rewritten": len(todo),
            "written_names": [p["name"] for p in todo], "shared": v["shards_shared_with_parent"],
            "bytes_written": written, "bytes_total": total, "plan_s": t_plan, "write_s": t_write,
            "publish_s": t_publish, "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--shard-records", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="Build here and keep it (default: a temporary folder).")
    args = ap.parse_args()

    from benchmarks.release_dask import make_clips
    from curation.audio import file_sha256
    from curation.config import Config
    from curation.release.verify import verify

    cache = Path(os.environ.get("CURATE_BENCH_CACHE", Path.home() / ".cache" / "audio-curation-bench"))
    clips = make_clips(cache / f"clips-{args.seconds}s", args.clips, args.seconds)
    sha = {c: file_sha256(c) for c in clips}
    root = args.keep or Path(tempfile.mkdtemp(prefix="release-versions-"))
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "curate.toml").write_text('output_dir = "out"\n')
    cfg = Config(path=root / "curate.toml", output_dir=root / "out")
    cfg.release.shard_max_records = args.shard_records

    records = make_records(clips, 1, args.records, sha)
    print(f"{args.records} records ({len(clips)} real-music clips of {args.seconds} s, 22.05 kHz OGG), "
          f"{args.shard_records} per shard, {args.workers} writer process(es); in {root}")
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        full = release(cfg, records, pool)
        rows.append(("v1: full build", full))
        gone = records[len(records) // 2]
        records = [r for r in records if r is not gone]
        rows.append((f"v2: remove 1 ({gone.source} {gone.id})", release(cfg, records, pool)))
        records += make_records(clips, args.records + 1, 1000, sha)
        rows.append(("v3: add 1,000", release(cfg, records, pool)))
    t0 = time.perf_counter()
    problems, checked = verify(cfg.output_dir / "releases" / "v3")
    t_verify = time.perf_counter() - t0

    print(f"{'step':34} {'shards':>6} {'written':>7} {'shared':>6} {'MB written':>10} {'MB total':>8} "
          f"{'plan s':>6} {'write s':>7} {'publish s':>9} {'wall s':>7} {'vs full':>7}")
    for label, r in rows:
        print(f"{label:34} {r['shards']:>6} {r['rewritten']:>7} {r['shared']:>6} {r['bytes_written'] / 1e6:>10.1f} "
              f"{r['bytes_total'] / 1e6:>8.1f} {r['plan_s']:>6.1f} {r['write_s']:>7.1f} {r['publish_s']:>9.2f} "
              f"{r['wall_s']:>7.1f} {r['wall_s'] / full['wall_s']:>7.3f}")
    for label, r in rows[1:]:
        print(f"  {label}: wrote {', '.join(r['written_names']) or 'nothing'}")
    print(f"verify v3: {'OK' if not problems else f'{len(problems)} problem(s): ' + '; '.join(problems[:3])} "
          f"({checked.get('records')} records, {checked.get('shards')} shards) in {t_verify:.1f} s")
    ok = rows[1][1]["rewritten"] <= 1 and rows[2][1]["written_names"] and all(
        int(n[len("shard-"):-len(".tar")]) >= full["shards"] for n in rows[2][1]["written_names"])
    print("targets: remove 1 -> <= 1 shard rewritten; add 1,000 -> only new shards:", "MET" if ok and not problems
          else "NOT MET")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
