"""The release stage on a Dask cluster: one Dask task per shard, 1 worker against 2.

    python benchmarks/release_dask.py [--recordings 2000] [--seconds 3] [--shard-records 100]

Cuts N short recordings (OGG Vorbis, as Freesound previews are) from real music, Debian's
wesnoth and asc soundtracks (fetched with apt-get download and cached, never committed), and
releases them through the flow's own release phase (`flows.curate.release_phase`: attribution,
a plan of shards, one task per shard that encodes 44.1 kHz stereo FLAC, writes the tar and its
sha256) on a Prefect DaskTaskRunner over a LocalCluster of 1, then 2 single-threaded worker
processes. Prints the wall time of each and the speed-up; both releases must be byte-identical.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def make_clips(out: Path, n: int, seconds: float) -> list[Path]:
    import numpy as np
    import soundfile as sf

    from curation.audio import load_mono
    from curation.realaudio import package_audio

    out.mkdir(parents=True, exist_ok=True)
    have = sorted(out.glob("*.ogg"))
    if len(have) >= n:
        return have[:n]
    sources = package_audio("wesnoth-1.16-music") + package_audio("asc-music")
    sr = 22050
    clips = []
    for src in sources:
        try:
            y = load_mono(src, sr)
        except Exception:  # noqa: BLE001 - a source the decoder cannot read is skipped
            continue
        step = int(seconds * sr)
        for start in range(0, len(y) - step, step):
            clips.append(y[start : start + step])
            if len(clips) >= n:
                break
        if len(clips) >= n:
            break
    if len(clips) < n:
        sys.exit(f"only {len(clips)} clips of {seconds} s in the soundtracks")
    paths = []
    for i, c in enumerate(clips):
        p = out / f"{1000 + i}.ogg"
        sf.write(p, np.stack([c, c[::-1]], axis=1).astype("float32"), sr, format="OGG", subtype="VORBIS")
        paths.append(p)
    return paths


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.tar")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recordings", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--shard-records", type=int, default=100)
    ap.add_argument("--workers", type=int, action="append", help="cluster sizes to time (default 1 and 2)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="release-dask-"))
    from flows.server import local_server

    with local_server(root / "prefect_home"):  # before Prefect is imported: workers report to it
        run(args, root)
    shutil.rmtree(root, ignore_errors=True)


def run(args, root: Path) -> None:
    from curation import record_table as rt
    from curation.config import Config
    from curation.records import Record
    from curation.stage import write_part
    from flows.curate import release_phase

    cache = Path.home() / ".cache" / "audio-curation" / f"release-clips-{args.seconds:g}s"
    clips = make_clips(cache, args.recordings, args.seconds)
    print(f"{len(clips)} clips of {args.seconds:g} s (OGG Vorbis, 22.05 kHz stereo) cut from Debian's "
          "wesnoth and asc soundtracks")
    recs = []
    for p in clips:
        r = Record(source="freesound", id=p.stem, title=f"clip {p.stem}", author="wesnoth", license="cc0",
                   license_raw="http://creativecommons.org/publicdomain/zero/1.0/",
                   license_url="https://creativecommons.org/publicdomain/zero/1.0/",
                   url=f"https://freesound.org/people/x/sounds/{p.stem}/", audio_path=str(p), status="included")
        r.evidence["audio"] = {"sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        recs.append(r)
    part = root / "part-00000.parquet"
    write_part(part, rt.from_records(recs))

    from prefect import flow
    from prefect_dask import DaskTaskRunner

    results = {}
    for n in args.workers or [1, 2]:
        out = root / f"out{n}"
        cfg = Config(path=root / "curate.toml", output_dir=out)
        cfg.release.shard_max_records = args.shard_records
        cfg.task_runner = "dask"
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": n, "threads_per_worker": 1, "processes": True,
                                                "dashboard_address": None})

        @flow(name=f"release-{n}-workers", task_runner=runner)
        def bench(cfg=cfg):
            t0 = time.perf_counter()
            shards_path, rep = release_phase([str(part)], cfg)
            return time.perf_counter() - t0, rep.counts, rep.notes

        secs, counts, notes = bench()
        results[n] = secs
        print(f"{n} worker(s): {secs:.1f} s for {counts['shards']} shards ({counts['shards_written']} written; "
              f"{notes[0]}), "
              f"{len(recs) / secs:.0f} recordings/s; release sha256 {digest(out / 'release' / 'shards')[:16]}")
    if 1 in results and 2 in results:
        same = digest(root / "out1" / "release" / "shards") == digest(root / "out2" / "release" / "shards")
        print(f"speed-up 2 workers / 1: x{results[1] / results[2]:.2f}; identical shards: {same}")


if __name__ == "__main__":
    main()
