"""Music detection over files at corpus scale: streaming decode, worker processes, batches.

Worker processes decode each file in blocks, downmix and resample it to 32 kHz mono as a
stream, and cut it into segments (`music.Segmenter`); the main process batches segments
of the same padded length and runs the model, so decoding overlaps inference and memory
stays bounded whatever a recording's length. A file that fails to decode part way is
reported as an error, never scored on the part that decoded.
"""
from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..audio import AudioError, StreamInfo, audio_blocks
from .detector import SAMPLE_RATE, Accumulator, MusicDetector, MusicResult, Segment, Segmenter, bucket_length, run_segments

# ----------------------------------------------------------------------------- messages

def _decode_messages(jobs: Iterable[tuple[object, str]], chunk_seconds: float, context_seconds: float):
    """For each (key, path): ("seg", Segment)..., then ("end", key, info) or ("err", key, reason, detail)."""
    for key, path in jobs:
        seg = Segmenter(key, chunk_seconds, context_seconds)
        info: list[StreamInfo] = []
        try:
            n = 0
            for block in audio_blocks(path, info, SAMPLE_RATE, 1):
                n += len(block)
                for s in seg.feed(block):
                    yield ("seg", s)
            if n == 0 or (info and info[0].frames == 0):
                raise AudioError("audio_empty", "decodes to zero samples")
            for s in seg.finish():
                yield ("seg", s)
            yield ("end", key, info[0].to_dict())
        except AudioError as e:
            yield ("err", key, e.reason, e.detail)
        except Exception as e:  # a decoder bug on one file must not stop the corpus
            yield ("err", key, "audio_unreadable", f"{type(e).__name__}: {e}"[:300])


def peak_rss_kb() -> int:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: a spawned worker inherits its
    parent's figure through fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _worker(in_q, out_q, chunk_seconds: float, context_seconds: float) -> None:
    def jobs():
        while True:
            job = in_q.get()
            if job is None:
                return
            yield job

    for msg in _decode_messages(jobs(), chunk_seconds, context_seconds):
        out_q.put(msg)
    out_q.put(("bye", peak_rss_kb()))


def batch_limit(length: int, batch_size: int, max_batch_seconds: float) -> int:
    """How many segments of `length` samples go into one model call."""
    return max(1, min(batch_size, int(max_batch_seconds * SAMPLE_RATE // length)))


@dataclass
class Scored:
    key: object
    result: MusicResult | None = None
    audio: dict | None = None
    error: AudioError | None = None
    music_prob: np.ndarray | None = None  # per frame, when asked for (calibration)


def score_files(
    detector: MusicDetector,
    jobs: list[tuple[object, str]],
    batch_size: int = 8,
    workers: int = 2,
    keep_frames: bool = False,
    max_batch_seconds: float | None = None,
    stats: dict | None = None,
) -> Iterator[Scored]:
    """Score each (key, path); yields one Scored per job, in completion order. A batch holds
    at most `batch_size` segments and `max_batch_seconds` of (padded) audio (None: the
    default for the model's device)."""
    if not max_batch_seconds:
        from .detector import default_max_batch_seconds

        max_batch_seconds = default_max_batch_seconds(getattr(detector.model, "device", "cpu"))
    if mp.current_process().daemon:
        workers = 0  # inside a daemonic process (a Dask worker, say), which may not have children
    chunk_s, ctx_s = detector.chunk_seconds, detector.context_seconds
    max_len = Segmenter(None, chunk_s, ctx_s).max_len
    accs: dict[object, Accumulator] = {}
    ended: dict[object, dict] = {}
    failed: set = set()
    buckets: dict[int, list[Segment]] = {}

    def run_bucket(length: int) -> Iterator[Scored]:
        segs = buckets.pop(length)
        live = [s for s in segs if s.key not in failed]
        if not live:
            return
        for s, fw in zip(live, run_segments(detector.model, live, max_len)):
            acc = accs.setdefault(s.key, Accumulator(detector.music_idx))
            acc.add(s, fw)
        yield from finished()

    def finished() -> Iterator[Scored]:
        for key in [k for k in ended if k in accs and accs[k].complete]:
            acc = accs.pop(key)
            yield Scored(key, detector.result(acc), ended.pop(key),
                         music_prob=acc.music_prob() if keep_frames else None)

    def handle(msg) -> Iterator[Scored]:
        kind = msg[0]
        if kind == "seg":
            s = msg[1]
            if s.key in failed:
                return
            length = bucket_length(len(s.audio), max_len)
            buckets.setdefault(length, []).append(s)
            if len(buckets[length]) >= batch_limit(length, batch_size, max_batch_seconds):
                yield from run_bucket(length)
        elif kind == "end":
            ended[msg[1]] = msg[2]
            yield from finished()
        elif kind == "err":
            key = msg[1]
            failed.add(key)
            accs.pop(key, None)
            yield Scored(key, error=AudioError(msg[2], msg[3]))

    def flush() -> Iterator[Scored]:
        while buckets:
            yield from run_bucket(max(buckets, key=lambda k: len(buckets[k])))

    if workers <= 0:
        for msg in _decode_messages(jobs, chunk_s, ctx_s):
            yield from handle(msg)
        yield from flush()
        return

    ctx = mp.get_context("spawn")  # the parent holds torch's threads: never fork it
    in_q = ctx.Queue()
    out_q = ctx.Queue(maxsize=max(4, 2 * batch_size))
    for job in jobs:
        in_q.put((job[0], str(job[1])))
    procs = [ctx.Process(target=_worker, args=(in_q, out_q, chunk_s, ctx_s), daemon=True)
             for _ in range(workers)]
    for _ in procs:
        in_q.put(None)
    for p in procs:
        p.start()
    try:
        alive = len(procs)
        while alive:
            try:
                msg = out_q.get(timeout=0.05)
            except queue_mod.Empty:
                if buckets:  # the decoders are behind: keep the model busy with what is here
                    yield from run_bucket(max(buckets, key=lambda k: len(buckets[k])))
                elif not any(p.is_alive() for p in procs):
                    raise RuntimeError("music decode workers died") from None
                continue
            if msg[0] == "bye":
                alive -= 1
                if stats is not None:
                    stats["worker_peak_rss_mb"] = max(stats.get("worker_peak_rss_mb", 0), msg[1] / 1024)
                continue
            yield from handle(msg)
        yield from flush()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=5)
