"""Music detection with PANNs (Cnn14_DecisionLevelMax, framewise, 32 kHz mono).

A recording is music when at least ``min_music_seconds`` of its frames have a
music-related class probability (the highest over the AudioSet ontology's Music
subtree) of at least ``threshold`` -- Stable Audio Open's rule (0.15, 30 s).
"""
from __future__ import annotations

import csv
import hashlib
import logging
import shutil
import sys
from dataclasses import asdict, dataclass
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
        tmp = target.with_suffix(".tmp")
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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def pick_device(requested: str) -> str:
    import torch

    if requested == "cpu":
        return "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise MusicModelError("music.device is 'cuda' but no CUDA device is available")
        return "cuda"
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_cnn14(labels_csv: Path):
    ensure_panns_labels(labels_csv)
    from panns_inference.models import Cnn14_DecisionLevelMax

    return Cnn14_DecisionLevelMax(
        sample_rate=SAMPLE_RATE, window_size=1024, hop_size=HOP, mel_bins=64, fmin=50, fmax=14000,
        classes_num=CLASSES,
    )


class PannsModel:
    """PANNs Cnn14_DecisionLevelMax loaded from a checkpoint file (`{"model": state_dict}`)."""

    def __init__(self, checkpoint: Path, labels_csv: Path, device: str = "auto", checksum: str | None = None):
        import torch

        self.device = pick_device(device)
        self.checksum = checksum or checkpoint_sha256(checkpoint)
        model = build_cnn14(labels_csv)
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:
            raise MusicModelError(f"cannot read PANNs checkpoint {checkpoint}: {e}") from None
        state = state.get("model", state) if isinstance(state, dict) else state
        try:
            model.load_state_dict(state)
        except Exception as e:
            raise MusicModelError(f"{checkpoint} is not a Cnn14_DecisionLevelMax checkpoint: {e}") from None
        model.eval().to(self.device)
        self.half = self.device == "cuda"
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
        return out.float().cpu().numpy()


def framewise(model: FramewiseModel, audio: np.ndarray, chunk_seconds: float = CHUNK_SECONDS) -> np.ndarray:
    """Framewise probabilities (frames, 527) of mono 32 kHz audio, one frame per hop.

    Long audio is scored in chunks of whole frames; each chunk contributes exactly
    len(chunk) // HOP frames, so the total is len(audio) // HOP with no overlap or gap.
    """
    n_frames = max(1, len(audio) // HOP)
    chunk = max(HOP, int(chunk_seconds * SAMPLE_RATE) // HOP * HOP)
    outs = []
    for start in range(0, len(audio), chunk):
        piece = audio[start : start + chunk]
        keep = max(1, len(piece) // HOP) if start + chunk >= len(audio) else chunk // HOP
        if len(piece) < MIN_INPUT:
            piece = np.pad(piece, (0, MIN_INPUT - len(piece)))
        out = model(piece[None, :])[0]
        outs.append(out[:keep])
    fw = np.concatenate(outs, axis=0)[:n_frames]
    return fw


@dataclass
class MusicResult:
    is_music: bool
    music_seconds: float
    max_music_prob: float
    top_labels: list[str]
    seconds: float
    checkpoint_sha256: str
    threshold: float
    min_music_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def decide(
    fw: np.ndarray,
    music_idx: np.ndarray,
    label_names: list[str],
    threshold: float,
    min_music_seconds: float,
    checksum: str,
    top_k: int = 3,
) -> MusicResult:
    """Stable Audio Open's rule over framewise output (frames, 527)."""
    music_prob = fw[:, music_idx].max(axis=1)
    music_frames = int((music_prob >= threshold).sum())
    music_seconds = round(music_frames / FPS, 2)
    mean = fw.mean(axis=0)
    top = np.argsort(-mean, kind="stable")[:top_k]
    return MusicResult(
        is_music=music_seconds >= min_music_seconds,
        music_seconds=music_seconds,
        max_music_prob=round(float(music_prob.max()), 4),
        top_labels=[f"{label_names[i]}:{mean[i]:.3f}" for i in top],
        seconds=round(fw.shape[0] / FPS, 2),
        checkpoint_sha256=checksum,
        threshold=threshold,
        min_music_seconds=min_music_seconds,
    )


class MusicDetector:
    """Decoded audio in, :class:`MusicResult` out."""

    def __init__(self, model: FramewiseModel, labels_csv: Path, threshold: float, min_music_seconds: float,
                 top_k: int = 3):
        labels = read_labels(labels_csv)
        self.model = model
        self.names = [n for _, _, n in labels]
        self.music_idx = music_indices(labels)
        self.threshold = threshold
        self.min_music_seconds = min_music_seconds
        self.top_k = top_k

    def score(self, mono32k: np.ndarray) -> MusicResult:
        fw = framewise(self.model, mono32k)
        return decide(fw, self.music_idx, self.names, self.threshold, self.min_music_seconds,
                      self.model.checksum, self.top_k)


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
