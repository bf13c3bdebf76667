"""Music detection over files at corpus scale: streaming decode, worker processes, batches.

Worker processes decode each file in blocks, downmix and resample it to 32 kHz mono as a
stream, and cut it into segments (`Segmenter`); the main process batches segments of the
same padded length and runs the model, so decoding overlaps inference and memory stays
bounded whatever a recording's length. A file that fails to decode part way is reported as
an error, never scored on the part that decoded.

Each job has a mode:
- "full": every segment is scored.
- "decide": segments are scored until the rule is settled. A decoder may hand over only the
  segments the main process allows (`AHEAD` beyond those scored); once a recording is music
  it is told to stop, and decodes the rest of the file without resampling it, so that a file
  cut short or damaged later on fails exactly as it would in "full" mode. Where the header
  gives the exact length, a recording is also settled as not music once the frames left
  could not make up the music frames it lacks; that rests on the header, so when the file
  turns out longer than it promised and the frames past the promise could change the
  decision, the recording is scored again in full. A recording too short to ever be music
  is decided without the model.
- "check": the file is decoded and checked, never scored (a decision taken by source).
"""
from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..audio import AudioError, StreamInfo, audio_blocks
from .detector import FPS, HOP, SAMPLE_RATE, Accumulator, MusicDetector, MusicResult, Segment, bucket_length, run_segments

MODES = ("full", "decide", "check")
STOP = -1  # allowance of a recording whose decision is made: decode and check the rest only
UNLIMITED = 2**31 - 1
AHEAD = 2  # segments a "decide" recording may have decoded beyond those scored


class Plan:
    """How the decoders cut recordings, and which are short enough to decide unscored."""

    def __init__(self, chunk_seconds: float, context_seconds: float, first_chunks: tuple, short_frames: int):
        self.chunk_seconds, self.context_seconds = chunk_seconds, context_seconds
        self.first_chunks, self.short_frames = tuple(first_chunks), short_frames

    def segmenter(self, key: object):
        from .detector import Segmenter

        return Segmenter(key, self.chunk_seconds, self.context_seconds, self.first_chunks)

    def args(self) -> tuple:
        return (self.chunk_seconds, self.context_seconds, self.first_chunks, self.short_frames)


# ----------------------------------------------------------------------------- messages

def _decode_messages(jobs: Iterable[tuple], plan: Plan, allow):
    """For each (slot, key, path, mode): ("len", key, frames) when the header promises an
    exact length (at most `frames` frames), before any segment; ("seg", Segment)..., then
    ("end", key, info, how, frames, frames_max) or ("err", key, reason, detail); ("wait", key)
    while the allowance `allow[slot]` holds the next segment back. `how` is "short" (not
    scored: too short to be music), "check" (not scored: a check-mode job) or "" (its segments
    were handed over). `frames` is the recording's frame count, `frames_max` the most it can be
    (the same, unless the decoder stopped resampling and counted native frames instead)."""
    from ..quality.measure import Meter

    for slot, key, path, mode in jobs:
        seg = plan.segmenter(key)
        info: list[StreamInfo] = []
        meter = Meter()  # the quality measures ride on this decode (curation/quality/measure.py)
        stopped = [mode == "check"]

        def skip(slot=slot, stopped=stopped) -> bool:
            if not stopped[0] and allow[slot] == STOP:
                stopped[0] = True
            return stopped[0]

        def hand_over(segments: list[Segment], slot=slot, stopped=stopped, key=key):
            for s in segments:
                while not stopped[0]:
                    a = allow[slot]
                    if a == STOP:
                        stopped[0] = True
                    elif s.index < a:
                        yield ("seg", s)
                        break
                    else:
                        yield ("wait", key)

        try:
            n = 0
            for block in audio_blocks(path, info, SAMPLE_RATE, 1, skip=skip, tap=meter.update):
                if n == 0 and info[0].header_frames and plan.short_frames:
                    # the same cut in every mode: a chunk ends where the frames left, by the
                    # header, are one short of what the rule needs
                    bound = _frames_at_most(info[0].header_frames, info[0].sample_rate)
                    seg.stop_frame = max(0, bound - plan.short_frames + 1)
                    if mode == "decide":
                        yield ("len", key, bound)
                n += len(block)
                yield from hand_over(seg.feed(block))
            if (n == 0 and not stopped[0]) or (info and info[0].frames == 0):
                raise AudioError("audio_empty", "decodes to zero samples")
            frames = frames_max = max(1, n // HOP)
            if stopped[0] and info:  # resampling stopped part way: count the native frames
                frames = max(1, round(info[0].frames * SAMPLE_RATE / max(1, info[0].sample_rate)) // HOP)
                frames_max = _frames_at_most(info[0].frames, info[0].sample_rate)
            how = "check" if mode == "check" else ""
            if not stopped[0] and mode == "decide" and seg.index == 0 and frames < plan.short_frames:
                how = "short"  # nothing handed over yet, and it can never be music
            elif not stopped[0]:
                yield from hand_over(seg.finish())
            yield ("end", key, {**info[0].to_dict(), "quality": meter.result()}, how, frames, frames_max)
        except AudioError as e:
            yield ("err", key, e.reason, e.detail)
        except Exception as e:  # a decoder bug on one file must not stop the corpus
            yield ("err", key, "audio_unreadable", f"{type(e).__name__}: {e}"[:300])


def _frames_at_most(native: int, sample_rate: int) -> int:
    """The most frames `native` samples at `sample_rate` can make once resampled to 32 kHz
    (a streaming resampler's output may run a sample over the exact ratio)."""
    return max(1, (-(-native * SAMPLE_RATE // max(1, sample_rate)) + 1) // HOP)


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


def _worker(in_q, out_q, plan_args: tuple, allow) -> None:
    def jobs():
        while True:
            job = in_q.get()
            if job is None:
                return
            yield job

    for msg in _decode_messages(jobs(), Plan(*plan_args), allow):
        if msg[0] == "wait":
            time.sleep(0.002)
            continue
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
    detector: MusicDetector | None,
    jobs: list[tuple],
    batch_size: int = 8,
    workers: int = 2,
    keep_frames: bool = False,
    max_batch_seconds: float | None = None,
    stats: dict | None = None,
    mode: str = "full",
    plan: Plan | None = None,
) -> Iterator[Scored]:
    """Score each (key, path) or (key, path, mode) job (`mode` when a job names none; see the
    module's text); yields one Scored per job, in completion order: a result, or an error, or
    for a "check" job neither (`audio` only). A batch holds at most `batch_size` segments and
    `max_batch_seconds` of (padded) audio (None: the default for the model's device).
    `stats` receives model_seconds (padded input the model ran on) and scored_seconds."""
    jobs = [(j[0], str(j[1]), j[2] if len(j) > 2 else mode) for j in jobs]
    for _, _, m in jobs:
        if m not in MODES:
            raise ValueError(f"unknown scoring mode {m!r}")
    if detector is None and any(m != "check" for _, _, m in jobs):
        raise ValueError("scoring needs a detector")
    if plan is None:
        if detector is None:
            plan = Plan(60.0, 1.0, (), 0)
        else:
            plan = Plan(detector.chunk_seconds, detector.context_seconds, detector.first_chunks,
                        detector.rule.short_frames())
    if not max_batch_seconds:
        from .detector import default_max_batch_seconds

        max_batch_seconds = default_max_batch_seconds(getattr(getattr(detector, "model", None), "device", "cpu"))
    if mp.current_process().daemon:
        workers = 0  # inside a daemonic process (a Dask worker, say), which may not have children
    stats = stats if stats is not None else {}
    stats.setdefault("model_seconds", 0.0)
    stats.setdefault("scored_seconds", 0.0)
    max_len = plan.segmenter(None).max_len
    slots = {key: i for i, (key, _, _) in enumerate(jobs)}
    modes = {key: m for key, _, m in jobs}
    initial = {"full": UNLIMITED, "decide": AHEAD, "check": STOP}
    if workers > 0:
        ctx = mp.get_context("spawn")  # the parent holds torch's threads: never fork it
        allow = ctx.RawArray("i", max(1, len(jobs)))
    else:
        ctx, allow = None, np.zeros(max(1, len(jobs)), dtype=np.int64)
    for key, _, m in jobs:
        allow[slots[key]] = initial[m]
    gated = any(m == "decide" for _, _, m in jobs)
    accs: dict[object, Accumulator] = {}
    ended: dict[object, tuple] = {}
    decided: dict[object, Accumulator] = {}  # settled before every segment was scored
    bounds: dict[object, int] = {}  # the most frames a recording has, by its header
    not_music: set = set()  # of `decided`: settled as not music on its header's promise
    redo: list = []  # settled as not music, but longer than promised: scored again in full
    failed: set = set()
    buckets: dict[int, list[Segment]] = {}
    # "decide" recordings are scored in order, one segment at a time: a later segment the
    # decoder handed over early waits here, so that no chunk is scored past the decision
    held: dict[object, dict[int, Segment]] = {}
    inflight: set = set()

    def place(s: Segment) -> int:
        length = bucket_length(len(s.audio), max_len)
        buckets.setdefault(length, []).append(s)
        return length

    def release(key) -> None:
        if key in inflight or key in decided or key in failed or key not in held:
            return
        nxt = len(accs[key].parts) if key in accs else 0
        s = held[key].pop(nxt, None)
        if s is not None:
            inflight.add(key)
            place(s)

    def run_bucket(length: int) -> Iterator[Scored]:
        segs = buckets.pop(length)
        live = [s for s in segs if s.key not in failed and s.key not in decided]
        if not live:
            return
        L = max(bucket_length(len(s.audio), max_len) for s in live)
        stats["model_seconds"] += L * len(live) / SAMPLE_RATE
        touched = []
        for s, fw in zip(live, run_segments(detector.model, live, max_len)):
            acc = accs.setdefault(s.key, Accumulator(detector.music_idx))
            acc.add(s, fw)
            stats["scored_seconds"] += len(fw) / FPS
            touched.append(s.key)
        for key in dict.fromkeys(touched):
            if modes[key] != "decide" or key in decided:
                continue
            inflight.discard(key)
            acc = accs[key]
            if acc.complete:
                held.pop(key, None)
                continue  # every frame is in: decided in full below
            if detector.settled(acc) or (key in bounds and detector.hopeless(acc, bounds[key])):
                allow[slots[key]] = STOP
                if not detector.settled(acc):
                    not_music.add(key)
                decided[key] = accs.pop(key)
                held.pop(key, None)
            else:
                allow[slots[key]] = len(acc.parts) + AHEAD
                release(key)
        yield from finished()

    def finished() -> Iterator[Scored]:
        for key in list(ended):
            info, how, frames, frames_max = ended[key]
            if key in decided:
                # the decoder stopped resampling: the file's own length gives the frame count
                del ended[key]
                acc = decided.pop(key)
                if key in not_music and not detector.hopeless(acc, frames_max):
                    redo.append(key)  # the frames past the header's promise could make it music
                    continue
                yield Scored(key, detector.result(acc, "early", frames), info)
            elif how == "check":
                del ended[key]
                yield Scored(key, None, info)
            elif how == "short":
                del ended[key]
                yield Scored(key, detector.rule.short(frames, None), info)
            elif key in accs and accs[key].complete:
                acc = accs.pop(key)
                del ended[key]
                yield Scored(key, detector.result(acc), info,
                             music_prob=acc.music_prob() if keep_frames else None)

    def handle(msg) -> Iterator[Scored]:
        kind = msg[0]
        if kind == "seg":
            s = msg[1]
            if s.key in failed or s.key in decided:
                return
            if modes[s.key] == "decide":
                held.setdefault(s.key, {})[s.index] = s
                release(s.key)
                return
            length = place(s)
            if len(buckets[length]) >= batch_limit(length, batch_size, max_batch_seconds):
                yield from run_bucket(length)
        elif kind == "len":
            bounds[msg[1]] = msg[2]
        elif kind == "end":
            ended[msg[1]] = (msg[2], msg[3], msg[4], msg[5])
            yield from finished()
        elif kind == "err":
            key = msg[1]
            failed.add(key)
            accs.pop(key, None)
            held.pop(key, None)
            decided.pop(key, None)  # an error later in the file wins, as it would in full
            not_music.discard(key)
            allow[slots[key]] = STOP
            yield Scored(key, error=AudioError(msg[2], msg[3]))
        elif kind == "wait":
            # in-process decoding waits on the model: run what is batched
            if not buckets:
                raise RuntimeError(f"music scoring stalled on {msg[1]!r}")
            yield from run_bucket(max(buckets, key=lambda k: len(buckets[k])))

    def flush() -> Iterator[Scored]:
        while buckets:
            yield from run_bucket(max(buckets, key=lambda k: len(buckets[k])))
        if redo:
            stats["rescored"] = stats.get("rescored", 0) + len(redo)
            again = [(k, p, "full") for k, p, _ in jobs if k in set(redo)]
            redo.clear()
            yield from score_files(detector, again, batch_size, 0, keep_frames, max_batch_seconds, stats, plan=plan)

    work = [(slots[k], k, p, m) for k, p, m in jobs]
    if workers <= 0:
        for msg in _decode_messages(work, plan, allow):
            yield from handle(msg)
        yield from flush()
        return

    in_q = ctx.Queue()
    out_q = ctx.Queue(maxsize=max(4, 2 * batch_size))
    for job in work:
        in_q.put(job)
    procs = [ctx.Process(target=_worker, args=(in_q, out_q, plan.args(), allow), daemon=True)
             for _ in range(workers)]
    for _ in procs:
        in_q.put(None)
    for p in procs:
        p.start()
    try:
        alive = len(procs)
        while alive:
            try:
                # a gated decoder waits on the model: run what is batched as soon as none is queued
                msg = out_q.get(timeout=0.002 if gated and buckets else 0.05)
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
