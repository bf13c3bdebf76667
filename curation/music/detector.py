"""Music detection with PANNs (Cnn14_DecisionLevelMax, framewise, 32 kHz mono).

A recording is music when at least ``min_music_seconds`` of its frames have a
music-related class probability (the highest over the AudioSet ontology's Music
subtree) of at least ``threshold`` -- Stable Audio Open's rule (0.15, 30 s).
"""
from __future__ import annotations

import csv
import os
import logging
import math
import shutil
import sys
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 32000
HOP = 320
FPS = SAMPLE_RATE // HOP  # 100 frames per second
CLASSES = 527
CHUNK_SECONDS = 60.0  # long recordings are scored in chunks of this length
# The first minute is cut finer, so that a recording that is music can be decided after 32,
# 44, 56 or 68 s of model input rather than a whole chunk (see `Segmenter`). 31 s: with its
# 1 s of context it fills the 32 s bucket exactly, and leaves 1 s of slack over the 30 s rule.
FIRST_CHUNKS = (31.0, 10.0, 10.0, 10.0)
MIN_INPUT = SAMPLE_RATE  # the CNN needs about a second of input; shorter clips are zero-padded


class MusicModelError(RuntimeError):
    pass


def music_mids() -> list[str]:
    text = resources.files("curation.data").joinpath("audioset_music_mids.txt").read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def read_labels(labels_csv: Path) -> list[tuple[int, str, str]]:
    """The AudioSet class list (`index,mid,display_name`), checked to be PANNs' 527 classes."""
    try:
        with open(labels_csv, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        out = [(int(r["index"]), r["mid"], r["display_name"]) for r in rows]
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise MusicModelError(f"class list {labels_csv} is unreadable: {e}") from None
    if len(out) != CLASSES or [i for i, _, _ in out] != list(range(CLASSES)):
        raise MusicModelError(
            f"class list {labels_csv} has {len(out)} classes; PANNs needs the {CLASSES} AudioSet classes in order"
        )
    return out


def music_indices(labels: list[tuple[int, str, str]]) -> np.ndarray:
    mids = set(music_mids())
    idx = np.array([i for i, mid, _ in labels if mid in mids], dtype=np.int64)
    if len(idx) == 0:
        raise MusicModelError("no music classes found in the class list")
    return idx


def ensure_panns_labels(labels_csv: Path) -> None:
    """Place the class list where panns-inference reads it at import, before importing it.

    panns-inference downloads `~/panns_data/class_labels_indices.csv` at import time and,
    offline, leaves an empty file behind; every later import then sees zero classes.
    """
    labels = read_labels(labels_csv)
    target = Path.home() / "panns_data" / "class_labels_indices.csv"
    ok = False
    if target.is_file():
        try:
            ok = len(read_labels(target)) == len(labels)
        except MusicModelError:
            ok = False
    if not ok:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")  # processes may place it at once
        shutil.copyfile(labels_csv, tmp)
        tmp.replace(target)
    cfg = sys.modules.get("panns_inference.config")
    if cfg is not None and getattr(cfg, "classes_num", CLASSES) != CLASSES:
        raise MusicModelError(
            "panns_inference was already imported with an empty class list; restart the process "
            f"(the list is now in place at {target})"
        )


class FramewiseModel(Protocol):
    """Anything that maps mono 32 kHz audio (batch, samples) to (batch, frames, 527)."""

    checksum: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def checkpoint_sha256(path: Path) -> str:
    from ..audio import file_sha256

    return file_sha256(path)


def pick_device(requested: str, cuda_available: bool | None = None) -> str:
    """`auto` takes CUDA when there is one; `cuda` without one is an error, not a silent CPU run."""
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if requested == "cpu":
        return "cpu"
    if requested == "cuda":
        if not cuda_available:
            raise MusicModelError("music.device is 'cuda' but no CUDA device is available")
        return "cuda"
    return "cuda" if cuda_available else "cpu"


def default_max_batch_seconds(device: str) -> float:
    return 512.0 if device == "cuda" else 64.0


def use_half(device: str) -> bool:
    """Half precision on the GPU (about twice the throughput); full precision on the CPU,
    where half is slower."""
    return device == "cuda"


def build_cnn14(labels_csv: Path):
    ensure_panns_labels(labels_csv)
    from panns_inference.models import Cnn14_DecisionLevelMax

    return Cnn14_DecisionLevelMax(
        sample_rate=SAMPLE_RATE, window_size=1024, hop_size=HOP, mel_bins=64, fmin=50, fmax=14000,
        classes_num=CLASSES,
    )


def _libc():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def _trim() -> None:
    """Hand the heap's free memory back to the system after a large batch. Without it the
    model's many tens-of-MB activations fragment glibc's heap and a 60-minute recording grew
    past 4 GB; with it, 1.5 GB. (Fixing glibc's mmap threshold instead bounded memory too,
    but page-faulting every activation cost about 10% of throughput.) A no-op off glibc."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


class PannsModel:
    """PANNs Cnn14_DecisionLevelMax loaded from a checkpoint file (`{"model": state_dict}`)."""

    def __init__(self, checkpoint: Path, labels_csv: Path, device: str = "auto", checksum: str | None = None):
        import torch

        self.device = pick_device(device)
        self.checksum = checksum or checkpoint_sha256(checkpoint)
        model = build_cnn14(labels_csv)
        try:
            # mmap: the file's pages are read as they are copied in, not held twice
            state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:
            raise MusicModelError(f"cannot read PANNs checkpoint {checkpoint}: {e}") from None
        state = state.get("model", state) if isinstance(state, dict) else state
        try:
            model.load_state_dict(state)
        except Exception as e:
            raise MusicModelError(f"{checkpoint} is not a Cnn14_DecisionLevelMax checkpoint: {e}") from None
        model.eval().to(self.device)
        self.half = use_half(self.device)
        if self.half:
            model.half()
        self.model = model

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        if self.half:
            x = x.half()
        with torch.inference_mode():
            out = self.model(x)["framewise_output"]
        result = out.float().cpu().numpy()
        del out, x
        if batch.size >= 8 * SAMPLE_RATE:
            _trim()
        return result


def music_spans(is_music: np.ndarray, max_gap_s: float = 1.0, keep: int = 20) -> list[list[float]]:
    """[start, end] seconds of runs of music frames (gaps under `max_gap_s` bridged), the
    `keep` longest, in time order."""
    idx = np.flatnonzero(is_music)
    if len(idx) == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > max_gap_s * FPS)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    longest = np.sort(np.argsort(-(ends - starts), kind="stable")[:keep])
    return [[round(starts[i] / FPS, 2), round(ends[i] / FPS, 2)] for i in longest]


@dataclass(frozen=True)
class Rule:
    """Stable Audio Open's rule, and the optional short-clip rule."""

    threshold: float = 0.15
    min_music_seconds: float = 30.0
    min_music_fraction: float = 0.0  # 0: off

    @property
    def needed_frames(self) -> int:
        """Music frames that make a recording music under the seconds rule."""
        return max(1, math.ceil(self.min_music_seconds * FPS - 1e-9))

    def short_frames(self) -> int:
        """A recording of fewer frames than this can never be music: decided without the model
        (0 when the fraction rule is on, which scores short clips)."""
        return 0 if self.min_music_fraction > 0 else self.needed_frames

    def decide(self, music_prob: np.ndarray, class_mean: np.ndarray, label_names: list[str], checksum: str,
               top_k: int = 3, decided: str = "full", total_frames: int | None = None) -> "MusicResult":
        """The rule over a recording's frame probabilities. `decided="early"`: only some frames
        were scored (unscored ones are -inf in `music_prob`, which then spans the frames up to the
        last scored one) and the recording has `total_frames`; music_seconds is a lower bound."""
        scored = np.isfinite(music_prob)
        measured = int(scored.sum())
        frames = len(music_prob) if total_frames is None else max(total_frames, len(music_prob))
        music_frames = int((music_prob >= self.threshold).sum())
        music_seconds = round(music_frames / FPS, 2)
        fraction = round(music_frames / frames, 4) if frames else 0.0
        seconds = round(frames / FPS, 2)
        rule = "none"
        if music_seconds >= self.min_music_seconds:
            rule = "seconds"
        elif self.min_music_fraction > 0 and seconds < self.min_music_seconds and fraction >= self.min_music_fraction:
            rule = "fraction"
        top = np.argsort(-class_mean, kind="stable")[:top_k]
        exact = decided == "full"
        return MusicResult(
            music_spans=music_spans(music_prob >= self.threshold),
            is_music=rule != "none",
            music_seconds=music_seconds,
            music_fraction=fraction,
            max_music_prob=round(float(music_prob[scored].max()), 4) if measured else 0.0,
            top_labels=[f"{label_names[i]}:{class_mean[i]:.3f}" for i in top],
            seconds=seconds,
            rule=rule,
            checkpoint_sha256=checksum,
            threshold=self.threshold,
            min_music_seconds=self.min_music_seconds,
            min_music_fraction=self.min_music_fraction,
            decided=decided,
            measured_seconds=round(measured / FPS, 2),
            music_seconds_bound="exact" if exact else "lower",
        )

    def short(self, total_frames: int, checksum: str) -> "MusicResult":
        """A recording too short for the rule to ever call it music, decided without the model."""
        return MusicResult(
            is_music=False, music_seconds=0.0, music_fraction=0.0, max_music_prob=None, top_labels=[],
            seconds=round(total_frames / FPS, 2), rule="none", checkpoint_sha256=checksum,
            threshold=self.threshold, min_music_seconds=self.min_music_seconds,
            min_music_fraction=self.min_music_fraction, decided="short", measured_seconds=0.0,
            music_seconds_bound="lower",
        )


DECIDED = ("full", "early", "short", "source")


@dataclass
class MusicResult:
    is_music: bool
    music_seconds: float | None
    music_fraction: float | None
    max_music_prob: float | None
    top_labels: list[str]
    seconds: float
    rule: str  # which rule made it music: "seconds", "fraction", or "none"
    checkpoint_sha256: str | None
    threshold: float
    min_music_seconds: float
    min_music_fraction: float
    # where the music is: [start, end] seconds of the longest runs of music frames
    music_spans: list = field(default_factory=list)
    # how the decision was reached: "full" (every frame scored), "early" (scoring stopped once
    # the rule was settled), "short" (too short to ever be music: no model), "source" (taken as
    # music because of its source: no model)
    decided: str = "full"
    measured_seconds: float = 0.0  # seconds of frames the model scored
    music_seconds_bound: str = "exact"  # "lower" when not every frame was scored

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- segments

# Inputs are zero-padded up to one of these lengths (seconds), whatever else is in the
# batch, so a recording's scores never depend on what it was batched with.
BUCKET_SECONDS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


@dataclass
class Segment:
    """A piece of one recording as the model sees it: `audio` (mono 32 kHz) holds the chunk
    and its context; frames [keep_from, keep_from + keep_n) of the output are the chunk's."""

    key: object
    index: int
    audio: np.ndarray
    keep_from: int
    keep_n: int
    last: bool
    frame0: int = 0  # the recording's frame index of this chunk's first kept frame


def _chunk_samples(seconds: float) -> int:
    return max(HOP, int(seconds * SAMPLE_RATE) // HOP * HOP)


class Segmenter:
    """Cuts a stream of mono 32 kHz blocks into chunks, each with up to `context` samples
    either side: first the `first_chunks` (seconds), then chunks of `chunk_seconds`. The
    chunks' frames tile the recording exactly: frame i is the frame at sample i * HOP, for i
    in [0, max(1, n // HOP)). The cut is the same whether a recording is scored in full or
    until its decision is made, so the frames scored are the same either way.

    `stop_frame` (set before the first block, from a header's exact length): a chunk that
    would run across that frame ends there instead, so that a recording whose frames left
    after it cannot make the rule is settled right there rather than a chunk later."""

    def __init__(self, key: object, chunk_seconds: float = CHUNK_SECONDS, context_seconds: float = 1.0,
                 first_chunks: tuple[float, ...] | list[float] = ()):
        self.key = key
        self.chunk = _chunk_samples(chunk_seconds)
        self.first = [_chunk_samples(x) for x in first_chunks]
        self.context = int(context_seconds * SAMPLE_RATE) // HOP * HOP
        self.buf = np.zeros(0, dtype=np.float32)
        self.buf_start = 0  # absolute sample index of buf[0]
        self.start = 0  # absolute sample index of the next chunk
        self.total = 0
        self.index = 0
        self.stop_frame = 0

    @property
    def max_len(self) -> int:
        return max([self.chunk, *self.first]) + 2 * self.context

    def chunk_at(self, index: int) -> int:
        return self.first[index] if index < len(self.first) else self.chunk

    def _next_chunk(self) -> int:
        chunk = self.chunk_at(self.index)
        stop = self.stop_frame * HOP
        # never the first chunk: one 32 s call settles most recordings either way
        return stop - self.start if self.index and self.start < stop < self.start + chunk else chunk

    def _emit(self, end_of_stream: bool) -> Segment:
        s, c, chunk = self.start, self.context, self._next_chunk()
        lo = max(0, s - c)
        hi = min(self.total, s + chunk + c)
        audio = self.buf[lo - self.buf_start : hi - self.buf_start]
        last = end_of_stream and s + chunk >= self.total
        keep_n = chunk // HOP if not last else max(1 if s == 0 else 0, (self.total - s) // HOP)
        seg = Segment(self.key, self.index, audio.copy(), (s - lo) // HOP, keep_n, last, s // HOP)
        self.index += 1
        self.start += chunk
        drop = max(0, self.start - c) - self.buf_start
        if drop > 0:
            self.buf = self.buf[drop:]
            self.buf_start += drop
        return seg

    def feed(self, block: np.ndarray) -> list[Segment]:
        self.buf = np.concatenate([self.buf, block.astype(np.float32, copy=False)])
        self.total += len(block)
        out = []
        while self.total >= self.start + self._next_chunk() + self.context + 1:
            out.append(self._emit(False))
        return out

    def finish(self) -> list[Segment]:
        out = []
        while self.start < self.total:
            out.append(self._emit(True))
        return out


def bucket_length(n: int, max_len: int) -> int:
    """The padded input length for a segment of n samples (n <= max_len)."""
    for sec in BUCKET_SECONDS:
        if sec * SAMPLE_RATE >= n:
            return min(sec * SAMPLE_RATE, max(max_len, n))
    return max(n, max_len)


def run_segments(model: FramewiseModel, segments: list[Segment], max_len: int) -> list[np.ndarray]:
    """The kept framewise outputs (keep_n, 527) of segments of one bucket, as one batch."""
    L = max(bucket_length(len(s.audio), max_len) for s in segments)
    batch = np.zeros((len(segments), L), dtype=np.float32)
    for i, s in enumerate(segments):
        batch[i, : len(s.audio)] = s.audio
    out = model(batch)
    return [out[i, s.keep_from : s.keep_from + s.keep_n] for i, s in enumerate(segments)]


class Accumulator:
    """What the rule needs from a recording's frames, kept small: the music probability of
    each scored frame and the per-class sum."""

    def __init__(self, music_idx: np.ndarray):
        self.music_idx = music_idx
        self.parts: dict[int, np.ndarray] = {}
        self.starts: dict[int, int] = {}
        self.class_sum = np.zeros(CLASSES, dtype=np.float64)
        self.last_index: int | None = None

    def add(self, seg: Segment, fw: np.ndarray) -> None:
        self.parts[seg.index] = fw[:, self.music_idx].max(axis=1) if len(fw) else np.zeros(0, np.float32)
        self.starts[seg.index] = seg.frame0
        self.class_sum += fw.sum(axis=0, dtype=np.float64)
        if seg.last:
            self.last_index = seg.index

    @property
    def complete(self) -> bool:
        return self.last_index is not None and len(self.parts) == self.last_index + 1

    @property
    def scored_frames(self) -> int:
        return sum(len(p) for p in self.parts.values())

    def music_frames(self, threshold: float) -> int:
        return sum(int((p >= threshold).sum()) for p in self.parts.values())

    def music_prob(self) -> np.ndarray:
        """Every frame's probability, once every chunk is scored."""
        return np.concatenate([self.parts[i] for i in range(len(self.parts))])

    def scored_prob(self) -> np.ndarray:
        """The frames up to the last scored one, -inf where a chunk was not scored."""
        end = max((self.starts[i] + len(p) for i, p in self.parts.items()), default=0)
        out = np.full(end, -np.inf, dtype=np.float32)
        for i, p in self.parts.items():
            out[self.starts[i]: self.starts[i] + len(p)] = p
        return out


class MusicDetector:
    """The rule and the model together: what the streaming scorer (`stream.score_files`) asks
    of each recording's frames, and the :class:`MusicResult` it makes of them."""

    def __init__(self, model: FramewiseModel, labels_csv: Path, threshold: float = 0.15,
                 min_music_seconds: float = 30.0, top_k: int = 3, min_music_fraction: float = 0.0,
                 chunk_seconds: float = CHUNK_SECONDS, context_seconds: float = 1.0,
                 first_chunks: tuple[float, ...] | list[float] = FIRST_CHUNKS):
        labels = read_labels(labels_csv)
        self.model = model
        self.names = [n for _, _, n in labels]
        self.music_idx = music_indices(labels)
        self.rule = Rule(threshold, min_music_seconds, min_music_fraction)
        self.top_k = top_k
        self.chunk_seconds = chunk_seconds
        self.context_seconds = context_seconds
        self.first_chunks = tuple(first_chunks)

    def segmenter(self, key: object) -> Segmenter:
        return Segmenter(key, self.chunk_seconds, self.context_seconds, self.first_chunks)

    def result(self, acc: Accumulator, decided: str = "full", total_frames: int | None = None) -> MusicResult:
        prob = acc.music_prob() if decided == "full" else acc.scored_prob()
        mean = acc.class_sum / max(1, acc.scored_frames)
        return self.rule.decide(prob, mean, self.names, self.model.checksum, self.top_k, decided, total_frames)

    def settled(self, acc: Accumulator) -> bool:
        """Whether the frames scored so far settle the decision: music once enough of them
        pass the threshold (more frames can only add music frames)."""
        return acc.music_frames(self.rule.threshold) >= self.rule.needed_frames

    def hopeless(self, acc: Accumulator, total_frames: int) -> bool:
        """Whether the frames scored so far settle the decision as not music for a recording of
        at most `total_frames` frames: too few music frames even if every frame left were one.
        Seconds rule only: with the fraction rule on, a clip is scored in full."""
        if self.rule.min_music_fraction > 0:
            return False
        left = max(0, total_frames - acc.scored_frames)
        return acc.music_frames(self.rule.threshold) + left < self.rule.needed_frames


def save_random_checkpoint(path: Path, labels_csv: Path, seed: int = 0) -> str:
    """A randomly initialised Cnn14_DecisionLevelMax checkpoint: for tests and the offline demo
    only. Its decisions mean nothing; returns its sha256."""
    import torch

    torch.manual_seed(seed)
    model = build_cnn14(labels_csv)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # Half precision halves the file; the weights are random either way.
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save({"model": state, "random_init": True}, tmp)
    tmp.replace(path)
    return checkpoint_sha256(path)
