"""The review workspace at SAO's scale of review: response times and page weight.

A queue of 20,000 items (and of 200 and 2,000, to show that the queue page's weight does not
grow with the queue) is written as the review step writes it (`write_queue_table`), with a
ledger of 5,000 decisions by three reviewers. Audio: real files of Debian's free game
soundtracks (wesnoth-1.16-music; `apt-get download`, cached, never committed), repeated across
the items. Evidence: a third catalogue candidates, a third fingerprint matches, a third
re-uploads under other names. The real server (uvicorn, as `curate review serve` runs it) is
asked over HTTP (requests) for the first queue page, filtered and later pages, and item pages;
the waveform image cold and cached; a 30 s audio preview.

    .venv/bin/python benchmarks/review_workspace.py [--items 20000]

Targets (issue 31): the queue view under 300 ms, an item view under 500 ms, on this machine.
"""
from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curation.realaudio import package_audio  # noqa: E402
from curation.review import ledger  # noqa: E402
from curation.review.workspace import write_queue_table  # noqa: E402


def make_queue(out: Path, n: int, audio: list[Path], decisions: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    queue = []
    for k in range(n):
        src = "fma" if k % 3 == 0 else "freesound"
        rid = str(100000 + k)
        kind = k % 3
        if kind == 0:
            ev = {"method": "metadata:spotify", "candidates": [
                {"track_name": f"Song {k % 997}", "artists": f"Band {k % 313}", "album_name": "An album", "track_id": f"t{k}",
                 "title_score": 90 + rng.random() * 10, "artist_score": 80 + rng.random() * 20, "flagged": True}]}
            reason = "copyright_match_review"
        elif kind == 1:
            ev = {"method": "audio:fingerprint", "matches": [
                {"reference": f"refs/track{k % 500}.ogg", "offset_seconds": rng.uniform(0, 60), "candidate_start": rng.uniform(0, 60),
                 "reference_start": rng.uniform(0, 120), "score": rng.randint(20, 400), "false_match_probability": 1e-12}]}
            reason = "copyright_audio_match"
        else:
            ev = {"group": f"freesound_{k}", "kept": f"freesound_{100000 + k}", "other_authors": True,
                  "copies": [{"record": f"freesound_{900000 + k}", "kind": "near", "shared_seconds": 30.0}],
                  "authors": [{"record": f"freesound_{100000 + k}", "author": "ann", "license": "cc-by", "uploaded": None},
                              {"record": f"freesound_{900000 + k}", "author": "bob", "license": "cc0", "uploaded": None}]}
            reason = "reupload_other_author"
        start = rng.uniform(0, 20)
        queue.append({"source": src, "id": rid, "title": f"Recording {k}", "author": f"user{k % 4000}",
                      "url": f"https://freesound.org/people/u/sounds/{rid}/", "license": "cc-by", "reason": reason,
                      "evidence": ev, "audio_path": str(audio[k % len(audio)]), "seconds": 60.0,
                      "music": {"music_spans": [[round(start, 2), round(start + 31, 2)]]}})
    write_queue_table(out, queue)
    path = ledger.ledger_path(out)
    from curation.review.ledger import evidence_digest

    for k in rng.sample(range(n), min(decisions, n)):
        q = queue[k]
        ledger.append(path, q["source"], q["id"], rng.choice(["clear", "reject", "skip"]), rng.choice(["ann", "bob", "cy"]),
                      "", evidence_digest(q["evidence"]))
    return [(q["source"], q["id"]) for q in queue]


class Served:
    def __init__(self, out: Path):
        import uvicorn

        from curation.review.server import make_app
        from curation.stages import REASONS

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(make_app(out, REASONS), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self):
        self.server.should_exit = True
        self.thread.join(10)


def timed(session: requests.Session, url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = session.get(url, timeout=60)
    ms = (time.perf_counter() - t0) * 1000
    r.raise_for_status()
    return ms, len(r.content)


def stats(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"median {statistics.median(xs):6.1f} ms, p95 {xs[int(0.95 * (len(xs) - 1))]:6.1f} ms, max {xs[-1]:6.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--asks", type=int, default=40)
    a = ap.parse_args()
    audio = [p for p in package_audio("wesnoth-1.16-music")][:12]
    print(f"audio: {len(audio)} real files of wesnoth-1.16-music, repeated across the items")
    weights = {}
    for n in sorted({200, 2000, a.items}):
        with tempfile.TemporaryDirectory() as d:
            out = Path(d)
            t0 = time.perf_counter()
            keys = make_queue(out, n, audio, decisions=n // 4)
            made = time.perf_counter() - t0
            srv = Served(out)
            s = requests.Session()
            s.cookies.set("reviewer", "ann")
            try:
                timed(s, srv.url + "/")  # the first request warms the application
                first = [timed(s, srv.url + "/") for _ in range(a.asks)]
                weights[n] = first[0][1]
                if n != a.items:
                    print(f"{n:6d} items: queue page {first[0][1]:,} bytes, {stats([t for t, _ in first])}")
                    continue
                rng = random.Random(1)
                later = [timed(s, srv.url + f"/?page={rng.randint(1, n // 50)}") for _ in range(a.asks)]
                filt = [timed(s, srv.url + f"/?reason=copyright_audio_match&min_score=100&page={rng.randint(1, 20)}")
                        for _ in range(a.asks)]
                items = [timed(s, srv.url + f"/item/{k[0]}/{k[1]}") for k in rng.sample(keys, a.asks)]
                some = rng.sample(keys, 5)
                cold = [timed(s, srv.url + f"/item/{k[0]}/{k[1]}/waveform.png")[0] for k in some]
                warm = [timed(s, srv.url + f"/item/{k[0]}/{k[1]}/waveform.png")[0] for k in some]
                prev = [timed(s, srv.url + f"/item/{k[0]}/{k[1]}/audio?start=10")[0] for k in some]
                print(f"{n:6d} items (queue and ledger of {n // 4:,} decisions written in {made:.1f} s):")
                print(f"  queue, first page       {stats([t for t, _ in first])}  ({first[0][1]:,} bytes)")
                print(f"  queue, a later page     {stats([t for t, _ in later])}")
                print(f"  queue, filtered         {stats([t for t, _ in filt])}")
                print(f"  item view               {stats([t for t, _ in items])}  ({statistics.median(b for _, b in items):,.0f} bytes)")
                print(f"  waveform image, cold    {stats(cold)}")
                print(f"  waveform image, cached  {stats(warm)}")
                print(f"  30 s audio preview      {stats(prev)}")
                q_ok = statistics.median(t for t, _ in first + later + filt) < 300
                i_ok = statistics.median(t for t, _ in items) < 500
                print(f"targets: queue view under 300 ms: {'met' if q_ok else 'NOT MET'}; "
                      f"item view under 500 ms: {'met' if i_ok else 'NOT MET'}")
            finally:
                srv.close()
    print("queue page weight by queue length: " + ", ".join(f"{n:,} items {w:,} bytes" for n, w in sorted(weights.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
