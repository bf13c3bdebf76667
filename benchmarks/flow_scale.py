"""The whole flow at Stable Audio Open's scale: N Freesound records, metadata only.

    python benchmarks/flow_scale.py --records 500000 [--records 1000000] [--keep DIR]

Writes N search results as saved APIv2 pages (150 a page, as the API pages them), made from
the real results under ../shared/real/freesound (their names, descriptions, tags, users),
with Freesound's real license deed URLs (CC0, CC BY 3.0/4.0, Sampling+, BY-NC, from its
licenses.json, plus a few strings it never used) and all four `gen_ai_preference` values
(and results from before the field existed). No audio is given, so about half the records
reach the audio stage and end `audio_missing`. Then `curate run` in a fresh process, timed
wall-clock, with its peak RSS (the process and its children) and the flow's own per-stage
seconds and records per second from `run_summary.json`.

The music model is a randomly initialised checkpoint: nothing is scored here (no audio),
and the run says so.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REAL = REPO.parent / "shared" / "real" / "freesound"
LABELS = REPO / "curation" / "data" / "class_labels_indices.csv"  # the shipped AudioSet class list

# What a real crawl returns (weights roughly those of Freesound's catalogue: CC0 and CC BY
# lead, then BY-NC, Sampling+; a few strings Freesound never issued, to fail closed on).
LICENSES = [
    ("http://creativecommons.org/publicdomain/zero/1.0/", 34),
    ("https://creativecommons.org/publicdomain/zero/1.0/", 6),
    ("https://creativecommons.org/licenses/by/4.0/", 16),
    ("http://creativecommons.org/licenses/by/3.0/", 12),
    ("http://creativecommons.org/licenses/by-nc/3.0/", 14),
    ("https://creativecommons.org/licenses/by-nc/4.0/", 10),
    ("http://creativecommons.org/licenses/sampling+/1.0/", 5),
    ("Attribution Noncommercial", 1),
    ("", 1),
    ("http://creativecommons.org/licenses/by-sa/4.0/", 1),
]
GENAI = [("no-additional-preferences", 80), ("open-source-models", 8), ("noncommercial-open-source-models", 5),
         ("no-gen-ai", 5), (None, 2)]


def _templates() -> list[dict]:
    out = json.loads((REAL / "mock_sounds_data.json").read_text())
    out += json.loads((REAL / "search_text_page.json").read_text())["results"]
    out.append(json.loads((REAL / "sound_209943.json").read_text()))
    return out


def write_pages(pages: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    tpl = _templates()
    lic = [v for v, w in LICENSES for _ in range(w)]
    gen = [v for v, w in GENAI for _ in range(w)]
    pages.mkdir(parents=True, exist_ok=True)
    page_size = 150
    for p, start in enumerate(range(0, n, page_size), start=1):
        results = []
        for i in range(start, min(n, start + page_size)):
            t = tpl[i % len(tpl)]
            sid = 1000 + i
            user = t.get("username") or t.get("url", "https://freesound.org/people/anon/").split("/")[4]
            res = {
                "id": sid,
                "name": f"{t.get('name', 'sound')} {i}",
                "tags": list(t.get("tags") or ["field-recording", "ambience"]),
                "description": t.get("description", ""),
                "license": rng.choice(lic),
                "username": user,
                "url": f"https://freesound.org/people/{user}/sounds/{sid}/",
                "previews": {"preview-hq-ogg": f"https://cdn.freesound.org/previews/{sid // 1000}/{sid}_hq.ogg",
                             "preview-hq-mp3": f"https://cdn.freesound.org/previews/{sid // 1000}/{sid}_hq.mp3"},
                "type": "wav",
                "duration": round(rng.uniform(0.5, 120), 3),
                "samplerate": 44100,
                "channels": 2,
                "filesize": rng.randint(10_000, 20_000_000),
            }
            g = rng.choice(gen)
            if g is not None:
                res["gen_ai_preference"] = g
            results.append(res)
        nxt = f"https://freesound.org/apiv2/search/text/?page={p + 1}" if start + page_size < n else None
        page = {"count": n, "next": nxt, "previous": None, "results": results}
        (pages / f"page_{p:06d}.json").write_text(json.dumps(page))


def write_config(root: Path, checkpoint: Path) -> Path:
    (root / "audio").mkdir(exist_ok=True)
    cfg = root / "curate.toml"
    cfg.write_text(
        f'output_dir = "{root / "out"}"\n'
        f'[freesound]\npages_dir = "{root / "pages"}"\naudio_dir = "{root / "audio"}"\n'
        f'[music]\ncheckpoint = "{checkpoint}"\nlabels_csv = "{LABELS}"\n'
    )
    return cfg


def run_once(cfg: Path, env: dict) -> dict:
    """`curate run` timed, with the peak of the summed RSS of its whole process tree (the run,
    its ingest workers and Prefect's temporary server), sampled every 50 ms."""
    import psutil

    exe = Path(sys.executable).parent / "curate"
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([str(exe), "run", str(cfg)], stdout=out, stderr=err, text=True, env=env)
        root = psutil.Process(proc.pid)
        peak_tree = peak_main = 0
        while proc.poll() is None:
            try:
                procs = [root] + root.children(recursive=True)
                rss = {p.pid: p.memory_info().rss for p in procs}
            except psutil.Error:
                continue
            peak_tree = max(peak_tree, sum(rss.values()))
            peak_main = max(peak_main, rss.get(root.pid, 0))
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        sys.exit(f"curate run failed:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    manifest = Path(stdout.strip().splitlines()[-1])
    summary = json.loads((manifest.parent / "run_summary.json").read_text())
    return {"wall_s": wall, "peak_mb": peak_tree / 2**20, "peak_main_mb": peak_main / 2**20, "summary": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, action="append", help="records per run (repeatable); default 500000")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it")
    ap.add_argument("--rerun", action="store_true", help="also time a second run over the same output")
    args = ap.parse_args()
    sizes = args.records or [500_000]
    import os

    env = dict(os.environ)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    root = args.keep or Path(tempfile.mkdtemp(prefix="flow-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    env["PREFECT_HOME"] = str(root / "prefect_home")
    sys.path.insert(0, str(REPO))
    from curation.music.detector import save_random_checkpoint

    ckpt = root / "panns_random_init.pth"
    if not ckpt.exists():
        save_random_checkpoint(ckpt, LABELS, seed=0)
    print("NOTE: the music model is a RANDOMLY INITIALISED Cnn14 checkpoint; no audio is given, so nothing "
          "is scored and no music decision here is real.")
    results = []
    for n in sorted(sizes):
        case = root / f"n{n}"
        if case.exists() and not args.keep:
            shutil.rmtree(case)
        case.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        if not (case / "pages").is_dir():
            write_pages(case / "pages", n)
        print(f"\n{n:,} records: pages written in {time.perf_counter() - t0:.1f} s")
        shutil.rmtree(case / "out", ignore_errors=True)
        cfg = write_config(case, ckpt)
        runs = [("first run", run_once(cfg, env))]
        if args.rerun:
            runs.append(("rerun", run_once(cfg, env)))
        for label, r in runs:
            s = r["summary"]
            print(f"  {label}: wall {r['wall_s']:.1f} s, peak RSS {r['peak_mb']:.0f} MB (all processes; "
                  f"the run's own {r['peak_main_mb']:.0f} MB); status {s['status']}")
            for st in s["stages"]:
                secs = st.get("seconds")
                rate = f"{st['records'] / secs:,.0f} rec/s" if secs and st.get("records") else ""
                print(f"    {st['name']:<10} {secs if secs is not None else float('nan'):7.2f} s  {rate}")
        results.append((n, runs[0][1]["wall_s"]))
    if len(results) > 1:
        (n0, w0), (n1, w1) = results[0], results[-1]
        print(f"\nscaling {n0:,} -> {n1:,}: x{w1 / w0:.2f} time for x{n1 / n0:.1f} records")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
