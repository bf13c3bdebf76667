"""Fault injection over the demo-sized input: does every run that is interrupted, starved of
disk or handed a damaged work area end, once resumed, with the release an uninterrupted run
makes, and no record lost?

    python benchmarks/faults.py [--trials 30] [--seed 1] [--kinds kill,enospc,damage,api] [--keep DIR]

- kill: `curate run` killed with SIGKILL (its whole process group) at each stage boundary
  (ingest, licenses, music, copyright, review, release plan, shards, manifest, version), then at
  random points inside the audio (music), copyright and release stages, until --trials kills;
  each resumed with `curate run`.
- enospc: the shard folder, the manifests folder and the releases folder each on a tmpfs too
  small for what is written there (a real "No space left on device", needs root); the run
  must fail with a clear error, leave no partial shard, manifest or version visible, and the
  next run (with room) completes.
- damage: after a finished run, work files truncated or replaced by garbage (stage partitions,
  their markers, the ingest state, music cache entries, shard states, the decided-partitions
  list, a shard); the next run must detect them and recompute.
- api: a live crawl of the local server speaking Freesound's APIv2 (tests/fake_freesound.py) with
  429 storms, 5xx, malformed JSON, timeouts, connections reset mid-download, and a server down
  for a whole run (the crawl stops with its cursor saved; the next run finishes it); the release
  must be the fault-free crawl's, and the token in no output file.

After each trial: the release (attribution CSVs, shards, each version's shards, attribution
and records.parquet) must be byte-identical to the reference run's, the manifest must hold
every input record with the reference's decisions, `curate release verify` must pass on the
latest version, and no partial version may be left. Prints one row per trial and a summary
table (trials, faults survived, records lost, releases corrupted).

All runs share one Prefect server started here (PREFECT_API_URL), so a trial does not pay
for a temporary server each time. Tests run a few cases of each kind (tests/test_faults.py).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from curation.storage import read_pandas  # noqa: E402
CURATE = str(Path(sys.executable).parent / "curate")

BOUNDARIES = ["ingest", "licenses", "music", "copyright", "review", "release-plan", "shards", "manifest", "version"]


def prepare(root: Path, labels_csv: Path | None = None) -> Path:
    """The demo inputs under `root`, training off; returns the config path."""
    from curation.demo import write_demo

    cfg = write_demo(root, labels_csv)
    text = cfg.read_text().replace("[training]\nenabled = true", "[training]\nenabled = false")
    cfg.write_text(text)
    return cfg


def with_output(cfg: Path, out: Path, extra: str = "") -> Path:
    """A copy of the config writing to `out` (beside the inputs its paths name)."""
    new = cfg.with_name(f"{out.name}.toml")
    text = cfg.read_text().replace('output_dir = "out"', f'output_dir = "{out.as_posix()}"')
    if extra:
        text = text.replace("[release]\n", "[release]\n" + extra)
    new.write_text(text)
    return new


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def release_digest(out: Path, latest_only: bool = False) -> dict[str, str]:
    """What must be identical after any fault: the working release, every version's shards,
    attribution and records index (or the latest version's only, named `latest/...`), and the
    manifest's decisions."""
    d: dict[str, str] = {}
    for p in sorted((out / "release").rglob("*")):
        if p.is_file() and not p.name.startswith(".tmp"):
            d[str(p.relative_to(out))] = sha(p)
    versions = sorted((out / "releases").glob("v*"), key=lambda v: int(v.name[1:]))
    for v in versions[-1:] if latest_only else versions:
        for p in sorted(v.rglob("*")):
            if p.is_file() and (p.suffix in (".tar", ".csv") or p.name == "records.parquet"):
                d[f"latest/{p.relative_to(v)}" if latest_only else str(p.relative_to(out))] = sha(p)
    m = read_pandas(out / "manifests" / "records.parquet", columns=["source", "id", "status", "reason"])
    d["manifest decisions"] = hashlib.sha256(m.sort_values(["source", "id"]).to_csv(index=False).encode()).hexdigest()
    return d


def content_digest(out: Path) -> dict[str, str]:
    """The latest release's content without its shard layout: attribution, each record's audio
    and metadata digests, the manifest's decisions (for a run that published a version more
    than the reference: its shards are cut differently, append-only, by design)."""
    versions = sorted((out / "releases").glob("v*"), key=lambda v: int(v.name[1:]))
    v = versions[-1]
    d = {name: sha(v / name) for name in ("freesound_attribution.csv", "fma_attribution.csv")}
    idx = read_pandas(v / "records.parquet").drop(columns=["shard"]).sort_values("key")
    d["records"] = hashlib.sha256(idx.to_csv(index=False).encode()).hexdigest()
    m = read_pandas(out / "manifests" / "records.parquet", columns=["source", "id", "status", "reason"])
    d["manifest decisions"] = hashlib.sha256(m.sort_values(["source", "id"]).to_csv(index=False).encode()).hexdigest()
    return d


def check(out: Path, ref: dict, ref_records: int, env: dict, latest_only: bool = False,
          content_only: bool = False) -> dict:
    """Records lost and release corrupted after a trial's last run."""
    res = {"lost": 0, "corrupt": 0, "detail": ""}
    try:
        m = read_pandas(out / "manifests" / "records.parquet", columns=["source", "id"])
        res["lost"] = max(0, ref_records - len(m.drop_duplicates()))
        got = content_digest(out) if content_only else release_digest(out, latest_only)
    except Exception as e:  # noqa: BLE001 - a trial that left no readable manifest is corrupt
        return {"lost": ref_records, "corrupt": 1, "detail": f"{type(e).__name__}: {e}"}
    bad = sorted(k for k in set(ref) | set(got) if ref.get(k) != got.get(k))
    partial = [p.name for p in (out / "releases").iterdir() if p.name.startswith(".tmp")] \
        if (out / "releases").is_dir() else []
    versions = sorted(p for p in (out / "releases").glob("v*")) if (out / "releases").is_dir() else []
    verify = subprocess.run([CURATE, "release", "verify", str(versions[-1])], env=env, capture_output=True, text=True) \
        if versions else None
    if bad or partial or verify is None or verify.returncode != 0:
        res["corrupt"] = 1
        res["detail"] = "; ".join(filter(None, [f"differs: {', '.join(bad[:4])}" if bad else "",
                                                 f"partial version {partial}" if partial else "",
                                                 "no version" if verify is None else
                                                 (verify.stderr.strip()[-300:] if verify.returncode else "")]))
    return res


def run(cfg: Path, env: dict, check_ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([CURATE, "run", str(cfg)], env=env, capture_output=True, text=True, timeout=900)
    if check_ok and p.returncode != 0:
        raise RuntimeError(f"curate run {cfg} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def _count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern))) if folder.is_dir() else 0


def boundary_reached(out: Path, name: str, parts: int, shards: int) -> bool:
    w = out / "work"
    return {
        "ingest": lambda: (w / "stages" / "ingest" / "ingest.json").is_file(),
        "licenses": lambda: _count(w / "stages" / "licenses", "*.done.json") >= parts,
        "music": lambda: _count(w / "stages" / "music", "*.done.json") >= parts,
        "copyright": lambda: _count(w / "stages" / "copyright", "*.done.json") >= parts,
        "review": lambda: (w / "stages" / "decided.json").is_file() and _count(w / "stages" / "review", "*.parquet") >= parts,
        "release-plan": lambda: (w / "release" / "index.parquet").is_file(),
        "shards": lambda: _count(w / "shards", "*.json") >= shards,
        "manifest": lambda: (out / "manifests" / "records.parquet").is_file(),
        "version": lambda: (out / "releases" / "v1").is_dir(),
    }[name]()


def run_and_kill(cfg: Path, env: dict, trigger, delay: float = 0.0, timeout: float = 600) -> bool:
    """Start `curate run`, wait for `trigger()`, then `delay` seconds, then SIGKILL the process
    group. False when the run ended before it could be killed."""
    proc = subprocess.Popen([CURATE, "run", str(cfg)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    end = time.time() + timeout
    while proc.poll() is None and not trigger() and time.time() < end:
        time.sleep(0.02)
    if delay and proc.poll() is None:
        time.sleep(delay)
    if proc.poll() is not None:
        return False
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def kill_trial(cfg: Path, out: Path, env: dict, where: str, delay: float, parts: int, shards: int,
               after: str | None = None) -> bool:
    trigger_name = after or where
    return run_and_kill(with_output(cfg, out), env, lambda: boundary_reached(out, trigger_name, parts, shards), delay)


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def can_mount() -> bool:
    d = Path(tempfile.mkdtemp(prefix="mount-probe-"))
    try:
        with tmpfs(d, "1m"):
            return os.path.ismount(d)
    except (subprocess.CalledProcessError, OSError):
        return False
    finally:
        shutil.rmtree(d, ignore_errors=True)


def enospc_trial(cfg: Path, out: Path, env: dict, where: str) -> tuple[bool, str]:
    """Run with `where` (shards | manifests | releases) on a full tmpfs; then with room. Returns
    (the failing run was clean, why not)."""
    folder = {"shards": out / "release" / "shards", "manifests": out / "manifests", "releases": out / "releases"}[where]
    size = {"shards": "600k", "manifests": "8k", "releases": "1m"}[where]
    c = with_output(cfg, out)
    with tmpfs(folder, size):
        p = run(c, env, check_ok=False)
        problems = []
        if p.returncode == 0:
            problems.append("the run did not fail")
        if "No space left on device" not in p.stderr and "no space left" not in p.stderr.lower():
            problems.append("no clear ENOSPC error: " + p.stderr.strip()[-200:])
        leftovers = [x.name for x in folder.rglob("*") if x.name.startswith(".tmp")]
        if leftovers:
            problems.append(f"partial files visible: {leftovers[:3]}")
        if where == "manifests" and (folder / "records.parquet").exists():
            problems.append("a manifest appeared")
        if where == "releases" and any(folder.glob("v*")):
            problems.append("a version appeared")
        if where == "shards":
            for tar in folder.glob("*.tar"):
                try:
                    import tarfile

                    with tarfile.open(tar) as tf:
                        tf.getmembers()
                except Exception:  # noqa: BLE001
                    problems.append(f"partial shard {tar.name}")
        # the files written to the tmpfs go with it: copy them out for the next run
        keep = Path(tempfile.mkdtemp(prefix="enospc-keep-"))
        shutil.copytree(folder, keep / "x", dirs_exist_ok=True)
    shutil.copytree(keep / "x", folder, dirs_exist_ok=True)
    shutil.rmtree(keep, ignore_errors=True)
    return not problems, "; ".join(problems)


DAMAGE = ["stage part truncated", "stage marker garbage", "ingest state garbage", "music cache garbage",
          "music cache wrong entry", "shard state garbage", "decided list garbage", "shard truncated",
          "stage part garbage"]


def damage(out: Path, kind: str, rng: random.Random) -> str:
    w = out / "work"

    def pick(pattern: str, folder: Path) -> Path:
        files = sorted(folder.glob(pattern))
        if not files:
            raise FileNotFoundError(f"nothing matches {folder}/{pattern}")
        return rng.choice(files)

    if kind == "stage part truncated":
        p = pick("*/part-*.parquet", w / "stages")
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif kind == "stage part garbage":
        p = pick("*/part-*.parquet", w / "stages")
        p.write_bytes(os.urandom(p.stat().st_size))
    elif kind == "stage marker garbage":
        p = pick("*/*.done.json", w / "stages")
        p.write_text('{"key": ')
    elif kind == "ingest state garbage":
        p = w / "stages" / "ingest" / "ingest.json"
        p.write_text("[1, 2")
    elif kind == "music cache garbage":
        p = pick("*/*.json", w / "music_cache")
        p.write_bytes(b"\x00garbage")
    elif kind == "music cache wrong entry":  # a result (not a cached decode error) replaced by another recording's
        results = sorted(f for f in (w / "music_cache").glob("*/*.json") if '"music"' in f.read_text())
        if not results:
            raise FileNotFoundError(f"no music result in {w / 'music_cache'}")
        p = rng.choice(results)
        p.write_text(json.dumps({"audio": {"sha256": "0" * 64}, "music": {"is_music": True, "music_seconds": 999}}))
    elif kind == "shard state garbage":
        p = pick("*.json", w / "shards")
        p.write_text("null")
    elif kind == "decided list garbage":
        p = w / "stages" / "decided.json"
        p.write_text("{")
    elif kind == "shard truncated":
        p = pick("*.tar", out / "release" / "shards")
        p.write_bytes(p.read_bytes()[:1000])
    else:
        raise ValueError(kind)
    return str(p.relative_to(out))


# API trouble during a live crawl (tests/fake_freesound.py faults, keyed "search:N" / "preview:ID").
def _searches(first: int, n: int, fault) -> dict:
    """`fault` on n consecutive search requests from the first-th (retries count as requests)."""
    return {f"search:{i}": [fault] for i in range(first, first + n)}


API_FAULTS = {
    "429 storm": (_searches(1, 8, 429), 1),
    "5xx": (_searches(2, 3, 500), 1),
    "malformed JSON": (_searches(1, 2, "malformed"), 1),
    "timeouts": (_searches(2, 2, "hang"), 1),
    "reset mid-download": ({"preview:53": ["reset", "reset"], "preview:55": ["reset"]}, 1),
    "server down for a run": (_searches(2, 4, 500), 2),  # the crawl stops, cursor saved; the next run ends it
}


def api_trials(cfg: Path, root: Path, env: dict, record) -> None:
    """The live crawl over the fake APIv2 server: a reference run, then each fault in
    API_FAULTS on a fresh server and output; the release must match the reference."""
    from tests.fake_freesound import TOKEN, FakeFreesound, sounds_for
    from tests.test_flow_live import CONFIG, ogg

    audio = {i: ogg(1.5, i) for i in range(51, 57)}
    models = (cfg.parent / "models").as_posix()

    def live(out: Path, faults: dict, runs: int) -> tuple[int, str]:
        with FakeFreesound([], {}) as srv:
            srv.sounds = sounds_for(srv.url, range(51, 57))
            srv.audio = dict(audio)
            srv.faults = {k: list(v) for k, v in faults.items()}
            srv.hang_s = 2.0
            c = out.parent / f"{out.name}.toml"
            c.write_text(CONFIG.format(runner="local", url=srv.url, models=models)
                         .replace('output_dir = "out"', f'output_dir = "{out.as_posix()}"')
                         .replace("max_retries = 3", "max_retries = 3\ntimeout_s = 1.0"))
            e = dict(env, FREESOUND_API_TOKEN=TOKEN)
            rc, err = 0, ""
            for _ in range(runs):
                p = run(c, e, check_ok=False)
                rc, err = p.returncode, p.stderr
                if rc:
                    break
            return rc, err

    ref_out = root / "api-ref"
    rc, err = live(ref_out, {}, 1)
    if rc:
        raise RuntimeError(f"the reference live run failed:\n{err[-2000:]}")
    ref = release_digest(ref_out, latest_only=True)
    ref_content = content_digest(ref_out)  # a crawl stopped for a run publishes a version more
    ref_records = len(read_pandas(ref_out / "manifests" / "records.parquet", columns=["id"]))
    for name, (faults, runs) in API_FAULTS.items():
        t = time.time()
        out = root / f"api-{name.replace(' ', '-')}"
        rc, err = live(out, faults, runs)
        res = check(out, ref_content if runs > 1 else ref, ref_records, env, latest_only=True,
                    content_only=runs > 1) if rc == 0 else \
            {"lost": ref_records, "corrupt": 1, "detail": err.strip()[-300:]}
        if token_leaked(out):
            res["corrupt"], res["detail"] = 1, "the token reached an output file"
        record("api", name + (f" ({runs} runs)" if runs > 1 else ""), True, res, time.time() - t)
        shutil.rmtree(out, ignore_errors=True)


def token_leaked(out: Path) -> bool:
    from tests.fake_freesound import TOKEN

    return any(TOKEN.encode() in f.read_bytes() for f in out.rglob("*") if f.is_file())


@contextlib.contextmanager
def prefect_server(env: dict):
    """One Prefect server for every run of the benchmark (runs then skip the temporary one)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    prefect = str(Path(sys.executable).parent / "prefect")
    log = open(Path(env["PREFECT_HOME"]) / "server.log", "w")
    proc = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    import urllib.request

    end = time.time() + 180
    while time.time() < end:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
        raise RuntimeError("the Prefect server did not start")
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=30, help="kill trials (boundaries first, then random points)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default="kill,enospc,damage,api")
    ap.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary folder)")
    args = ap.parse_args()
    kinds = set(args.kinds.split(","))
    rng = random.Random(args.seed)
    root = args.keep or Path(tempfile.mkdtemp(prefix="faults-"))
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PREFECT_HOME"] = str(root / "prefect_home")
    Path(env["PREFECT_HOME"]).mkdir(exist_ok=True)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env.pop("FREESOUND_API_TOKEN", None)
    cfg = prepare(root / "inputs")
    rows = []
    with prefect_server(env) as api:
        env["PREFECT_API_URL"] = api
        t0 = time.time()
        ref_out = root / "ref"
        run(with_output(cfg, ref_out), env)
        ref_s = time.time() - t0
        ref = release_digest(ref_out)
        ref_records = len(read_pandas(ref_out / "manifests" / "records.parquet", columns=["id"]))
        parts = len(list((ref_out / "work" / "stages" / "licenses").glob("*.done.json")))
        shards = len(list((ref_out / "work" / "shards").glob("*.json")))
        print(f"reference run: {ref_s:.1f} s, {ref_records} records, {parts} partition(s), {shards} shard(s)", flush=True)

        def record(kind, what, survived, res, seconds, killed=True):
            rows.append({"kind": kind, "fault": what, "killed": killed, "survived": survived and not res["corrupt"]
                         and not res["lost"], "records_lost": res["lost"], "release_corrupt": res["corrupt"],
                         "detail": res["detail"], "seconds": round(seconds, 1)})
            r = rows[-1]
            print(f"{kind:7} {what:42} {'OK ' if r['survived'] else 'BAD'} lost={r['records_lost']} "
                  f"corrupt={r['release_corrupt']} {seconds:5.1f}s {r['detail'][:150]}", flush=True)

        if "kill" in kinds:
            plan = [(b, 0.0, None) for b in BOUNDARIES]
            windows = ["licenses", "music", "copyright", "release-plan"]  # kill after this, inside the next stage
            while len(plan) < args.trials:
                after = rng.choice(windows)
                plan.append((f"random after {after}", rng.uniform(0.0, 4.0), after))
            for i, (where, delay, after) in enumerate(plan[: args.trials]):
                t = time.time()
                out = root / f"kill{i:02d}"
                killed = kill_trial(cfg, out, env, where, delay, parts, shards, after=after)
                p = run(with_output(cfg, out), env, check_ok=False)
                res = check(out, ref, ref_records, env) if p.returncode == 0 else \
                    {"lost": ref_records, "corrupt": 1, "detail": p.stderr.strip()[-300:]}
                label = where if not delay else f"{where} +{delay:.1f}s"
                record("kill", label, True, res, time.time() - t, killed)
                shutil.rmtree(out, ignore_errors=True)
        if "enospc" in kinds:
            if not can_mount():
                print("enospc: skipped (mounting a tmpfs needs root)")
            else:
                for where in ("shards", "manifests", "releases"):
                    t = time.time()
                    out = root / f"enospc-{where}"
                    clean, why = enospc_trial(cfg, out, env, where)
                    p = run(with_output(cfg, out), env, check_ok=False)
                    res = check(out, ref, ref_records, env) if p.returncode == 0 else \
                        {"lost": ref_records, "corrupt": 1, "detail": p.stderr.strip()[-300:]}
                    if why:
                        res["detail"] = (why + "; " + res["detail"]).strip("; ")
                    record("enospc", f"{where} folder full", clean, res, time.time() - t)
                    shutil.rmtree(out, ignore_errors=True)
        if "damage" in kinds:
            out = root / "damaged"
            shutil.copytree(ref_out, out, symlinks=True)
            c = with_output(cfg, out)
            run(c, env)  # the copy's own first run (its paths differ from the reference's)
            for kind in DAMAGE:
                t = time.time()
                what = damage(out, kind, rng)
                p = run(c, env, check_ok=False)
                res = check(out, ref, ref_records, env) if p.returncode == 0 else \
                    {"lost": ref_records, "corrupt": 1, "detail": p.stderr.strip()[-300:]}
                record("damage", f"{kind} ({Path(what).name})", True, res, time.time() - t)
        if "api" in kinds:
            api_trials(cfg, root, env, record)
    by_kind: dict[str, dict] = {}
    for r in rows:
        k = by_kind.setdefault(r["kind"], {"trials": 0, "survived": 0, "lost": 0, "corrupt": 0, "not_killed": 0})
        k["trials"] += 1
        k["survived"] += r["survived"]
        k["lost"] += r["records_lost"]
        k["corrupt"] += r["release_corrupt"]
        k["not_killed"] += not r["killed"]
    print()
    print(f"{'fault':8} {'trials':>6} {'survived':>8} {'records lost':>12} {'releases corrupted':>18}")
    for kind, k in by_kind.items():
        print(f"{kind:8} {k['trials']:>6} {k['survived']:>8} {k['lost']:>12} {k['corrupt']:>18}"
              + (f"   ({k['not_killed']} run(s) ended before the kill)" if k["not_killed"] else ""))
    (root / "faults.json").write_text(json.dumps(rows, indent=2))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
