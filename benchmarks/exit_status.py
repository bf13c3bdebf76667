"""Processes that read Parquet and end well exit 0: N runs of each `curate` verb that reads
the demo's Parquet files, and of the plain ways a script might read a manifest.

pandas 2.0.2 (pinned by stable-audio-tools) hands pyarrow a Python file object for a local
path; pyarrow's reader threads then call into Python, and now and then the process aborts at
exit after its work is done ("terminate called without an active exception", status 134).
The code under test reads Parquet with Arrow's own file reader (`storage.read_parquet`,
DuckDB); the baselines show the abort is real on this stack.

    .venv/bin/python benchmarks/exit_status.py [--runs 200] [--flow-runs 50] [--only explain,audit] [--work DIR]

Each case prints its runs, the exit statuses other than 0 with their last line of stderr,
and the seconds a run took.
"""
from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CURATE = str(Path(sys.executable).parent / "curate")


def demo(work: Path) -> Path:
    cfg = work / "curate.toml"
    if (work / "out" / "releases" / "v1").is_dir():
        return cfg
    subprocess.run([CURATE, "demo-data", str(work)], check=True, capture_output=True)
    cfg.write_text(cfg.read_text().replace("enabled = true", "enabled = false"))
    subprocess.run([CURATE, "run", str(cfg)], check=True, capture_output=True)
    return cfg


def cases(cfg: Path) -> dict[str, list[str]]:
    out = cfg.parent / "out"
    manifest = str(out / "manifests" / "records.parquet")
    py = sys.executable
    return {
        "run (nothing to do)": [CURATE, "run", str(cfg)],
        "release (unchanged)": [CURATE, "release", str(cfg)],
        "explain": [CURATE, "explain", str(cfg), "fma", "10"],
        "audit": [CURATE, "audit", str(cfg), "reasons", "--csv"],
        "release-diff": [CURATE, "release", "diff", "v1", "v1", "--config", str(cfg)],
        "release-verify": [CURATE, "release", "verify", str(out / "releases" / "v1")],
        "storage.read_pandas": [py, "-c", f"from curation.storage import read_pandas; read_pandas({manifest!r})"],
        "baseline: pd.read_parquet(path)": [py, "-c", f"import pandas as pd; pd.read_parquet({manifest!r})"],
        "baseline: pq.read_table(open(path))": [
            py, "-c", f"import pyarrow.parquet as pq; pq.read_table(open({manifest!r}, 'rb'))"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--flow-runs", type=int, default=50, help="runs of `curate run` and `curate release` (10 s each)")
    ap.add_argument("--only", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "curation-bench-exit"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cfg = demo(work)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    chosen = cases(cfg)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    print(f"{'case':38} {'runs':>5} {'exit 0':>7} {'other':>6} {'s/run':>6}  statuses")
    for name, cmd in chosen.items():
        statuses: collections.Counter = collections.Counter()
        lines = []
        t0 = time.time()
        runs = args.flow_runs if cmd[1:2] in (["run"], ["release"]) else args.runs
        for _ in range(runs):
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
            statuses[p.returncode] += 1
            if p.returncode != 0:
                lines.append(p.stderr.strip().splitlines()[-1][:100] if p.stderr.strip() else "")
        per = (time.time() - t0) / runs
        bad = sum(n for rc, n in statuses.items() if rc != 0)
        print(f"{name:38} {runs:5d} {statuses[0]:7d} {bad:6d} {per:6.2f}  {dict(statuses)}", flush=True)
        for ln in sorted(set(lines)):
            print(f"{'':38}   {ln}")


if __name__ == "__main__":
    main()
