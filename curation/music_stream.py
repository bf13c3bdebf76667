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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .audio import AudioError
from .music import SAMPLE_RATE, Accumulator, MusicDetector, MusicResult, Segment, Segmenter, bucket_length, run_segments

BLOCK_SECONDS = 10.0
_SNDFILE_EXTS = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".aifc", ".mp3", ".au", ".w64", ".caf"}
# libsndfile's parse log when a RIFF/AIFF chunk claims more bytes than the file holds.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)


@dataclass
class StreamInfo:
    sample_rate: int
    channels: int
    format: str
    frames: int = 0  # native frames decoded so far

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    def to_dict(self) -> dict:
        return {"seconds": round(self.seconds, 3), "sample_rate": self.sample_rate, "channels": self.channels,
                "format": self.format}


def _sndfile_blocks(path: Path, info_out: list) -> Iterator[np.ndarray]:
    import soundfile as sf
    import soxr

    try:
        f = sf.SoundFile(str(path))
    except Exception as e:
        raise AudioError("audio_unreadable", f"soundfile: {e}"[:300]) from None
    with f:
        m = _SHORT_CHUNK.search(f.extra_info or "")
        if m and int(m.group(1)) > int(m.group(2)) and int(m.group(1)) not in (0xFFFFFFFF, 0x7FFFFFFF):
            raise AudioError("audio_truncated", f"the header promises {m.group(1)} bytes of audio, "
                                                f"the file holds {m.group(2)}")
        info = StreamInfo(int(f.samplerate), int(f.channels), path.suffix.lower().lstrip("."))
        info_out.append(info)
        header_frames = int(f.frames)
        rs = None if f.samplerate == SAMPLE_RATE else soxr.ResampleStream(
            f.samplerate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        block = max(1, int(BLOCK_SECONDS * f.samplerate))
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except Exception as e:
                # the header was read: the stream itself is cut short or corrupt part way
                raise AudioError("audio_truncated", f"decoding failed after {info.seconds:.1f} s: {e}"[:300]) from None
            last = len(data) < block
            info.frames += len(data)
            mono = data.mean(axis=1) if len(data) else np.zeros(0, np.float32)
            if not np.isfinite(mono).all():
                raise AudioError("audio_unreadable", "decoded samples are not finite")
            out = mono if rs is None else rs.resample_chunk(mono, last=last)
            if len(out):
                yield out.astype(np.float32, copy=False)
            if last:
                break
        # mp3 and flac headers carry the length; a stream that ends early was cut short
        if path.suffix.lower() in (".mp3", ".flac") and header_frames > 0 and info.frames < header_frames - f.samplerate // 10:
            raise AudioError("audio_truncated", f"decoded {info.frames} of the {header_frames} frames the header gives")


def _ffmpeg_blocks(path: Path, info_out: list) -> Iterator[np.ndarray]:
    from torchcodec.decoders import AudioDecoder

    try:
        native = AudioDecoder(str(path))
        md = native.metadata
        dec = AudioDecoder(str(path), sample_rate=SAMPLE_RATE, num_channels=1)
    except Exception as e:
        raise AudioError("audio_unreadable", f"ffmpeg: {e}"[:300]) from None
    info = StreamInfo(int(md.sample_rate or 0), int(md.num_channels or 0), path.suffix.lower().lstrip("."))
    info_out.append(info)
    start, got = 0.0, 0
    while True:
        try:
            s = dec.get_samples_played_in_range(start, start + BLOCK_SECONDS)
        except Exception as e:
            if got == 0 and start == 0.0:
                raise AudioError("audio_unreadable", f"ffmpeg: {e}"[:300]) from None
            msg = str(e)
            if "end" in msg.lower() or "range" in msg.lower():
                break
            raise AudioError("audio_truncated", f"decoding failed after {start:.1f} s: {msg}"[:300]) from None
        data = s.data.numpy()[0] if s.data.numel() else np.zeros(0, np.float32)
        if len(data) == 0:
            break
        got += len(data)
        info.frames = int(round(got / SAMPLE_RATE * info.sample_rate))
        yield data.astype(np.float32, copy=False)
        start += BLOCK_SECONDS
    header = md.duration_seconds_from_header
    if header and info.seconds < header - 0.5:
        raise AudioError("audio_truncated", f"decoded {info.seconds:.1f} s of the {header:.1f} s the header gives")


def mono32k_blocks(path: Path, info_out: list) -> Iterator[np.ndarray]:
    """Mono 32 kHz float32 blocks of a file; `info_out` receives its StreamInfo first."""
    path = Path(path)
    if not path.is_file():
        raise AudioError("audio_missing", f"file not found: {path.name}")
    if path.stat().st_size == 0:
        raise AudioError("audio_empty", "file is zero bytes")
    if path.suffix.lower() in _SNDFILE_EXTS:
        try:
            yield from _sndfile_blocks(path, info_out)
            return
        except AudioError as e:
            if e.reason != "audio_unreadable" or info_out:
                raise
            info_out.clear()  # libsndfile could not open it: FFmpeg may
    yield from _ffmpeg_blocks(path, info_out)


# ----------------------------------------------------------------------------- messages

def _decode_messages(jobs: Iterable[tuple[object, str]], chunk_seconds: float, context_seconds: float):
    """For each (key, path): ("seg", Segment)..., then ("end", key, info) or ("err", key, reason, detail)."""
    for key, path in jobs:
        seg = Segmenter(key, chunk_seconds, context_seconds)
        info: list[StreamInfo] = []
        try:
            n = 0
            for block in mono32k_blocks(Path(path), info):
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
    max_batch_seconds: float = 64.0,
    stats: dict | None = None,
) -> Iterator[Scored]:
    """Score each (key, path); yields one Scored per job, in completion order. A batch holds
    at most `batch_size` segments and `max_batch_seconds` of (padded) audio."""
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
