"""Calibrating the music threshold the way Stable Audio Open set 0.15: score recordings known
to be music and known not to be, and find the highest threshold at which no known-music
recording is missed; report the false-positive rate on non-music there."""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes, atomic_write_text
from .detector import FPS, MusicDetector
from .stream import score_files

AUDIO_EXTS = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3", ".m4a", ".opus"}
GRID = [round(x, 2) for x in np.arange(0.01, 1.0, 0.01)]


def list_audio(source: Path) -> list[Path]:
    """Audio files under a folder (recursively), or the paths listed in a text file."""
    source = Path(source)
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTS)
    if source.is_file():
        lines = [ln.strip() for ln in source.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        return [(source.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines]
    raise FileNotFoundError(f"no such folder or list: {source}")


def critical_threshold(music_prob: np.ndarray, min_music_seconds: float, min_music_fraction: float) -> float:
    """The highest threshold at which the rule still calls this recording music (-inf: never)."""
    frames = len(music_prob)
    top = np.sort(music_prob)[::-1]
    k = math.ceil(min_music_seconds * FPS - 1e-9)
    best = -math.inf
    if frames >= k and k > 0:
        best = float(top[k - 1])
    if min_music_fraction > 0 and frames / FPS < min_music_seconds and frames:
        kf = max(1, math.ceil(min_music_fraction * frames - 1e-9))
        best = max(best, float(top[kf - 1]))
    return best


@dataclass
class Calibration:
    threshold: float | None  # None: some known music can never be detected by the rule
    false_positive_rate: float | None
    missed_always: list[str]
    rows: list[dict]
    grid: list[dict]

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "false_positive_rate": self.false_positive_rate,
                "missed_always": self.missed_always, "grid": self.grid}


def calibrate(detector: MusicDetector, music: list[Path], non_music: list[Path], out_dir: Path,
              batch_size: int = 8, workers: int = 2) -> Calibration:
    rule = detector.rule
    jobs = [(("music", str(p)), str(p)) for p in music] + [(("non_music", str(p)), str(p)) for p in non_music]
    rows = []
    for s in score_files(detector, jobs, batch_size, workers, keep_frames=True):
        label, path = s.key
        row = {"file": path, "label": label, "error": "", "critical_threshold": None, "seconds": None,
               "music_prob": s.music_prob}
        if s.error is not None:
            row["error"] = f"{s.error.reason}: {s.error.detail}"
        else:
            row["critical_threshold"] = critical_threshold(s.music_prob, rule.min_music_seconds,
                                                           rule.min_music_fraction)
            row["seconds"] = s.result.seconds
        rows.append(row)
    rows.sort(key=lambda r: (r["label"], r["file"]))
    ok = [r for r in rows if not r["error"]]
    pos = [r for r in ok if r["label"] == "music"]
    neg = [r for r in ok if r["label"] == "non_music"]
    missed_always = [r["file"] for r in pos if r["critical_threshold"] == -math.inf]
    thr = None
    if pos and not missed_always:
        thr = min(r["critical_threshold"] for r in pos)

    def fpr(t: float) -> float | None:
        return sum(r["critical_threshold"] >= t for r in neg) / len(neg) if neg else None

    def recall(t: float) -> float | None:
        return sum(r["critical_threshold"] >= t for r in pos) / len(pos) if pos else None

    grid = [{"threshold": t, "recall": recall(t), "false_positive_rate": fpr(t)} for t in GRID]
    cal = Calibration(round(thr, 4) if thr is not None else None, fpr(thr) if thr is not None else None,
                      missed_always, rows, grid)
    write_report(cal, detector, out_dir)
    return cal


def write_report(cal: Calibration, detector: MusicDetector, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rule = detector.rule
    at = cal.threshold if cal.threshold is not None else rule.threshold
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "label", "seconds", "critical_threshold", f"music_seconds_at_{at:g}", "error"])
    secs: dict[str, list[float]] = {"music": [], "non_music": []}
    for r in cal.rows:
        ms = None
        if r["music_prob"] is not None:
            ms = round(float((r["music_prob"] >= at).sum()) / FPS, 2)
            secs[r["label"]].append(ms)
        crit = r["critical_threshold"]
        w.writerow([r["file"], r["label"], r["seconds"], "" if crit is None else
                    ("never" if crit == -math.inf else f"{crit:.4f}"), ms, r["error"]])
    atomic_write_text(out_dir / "recordings.csv", buf.getvalue())
    summary = {
        **cal.to_dict(),
        "rule": {"min_music_seconds": rule.min_music_seconds, "min_music_fraction": rule.min_music_fraction,
                 "configured_threshold": rule.threshold},
        "counts": {"music": sum(r["label"] == "music" for r in cal.rows),
                   "non_music": sum(r["label"] == "non_music" for r in cal.rows),
                   "errors": sum(bool(r["error"]) for r in cal.rows)},
        "model_checksum": detector.model.checksum,
    }
    atomic_write_text(out_dir / "calibration.json", json.dumps(summary, indent=2, sort_keys=True))

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    top = max([1.0] + secs["music"] + secs["non_music"])
    bins = np.linspace(0, top, 31)
    ax.hist([secs["music"], secs["non_music"]], bins=bins, label=["known music", "known non-music"],
            color=["#d95f02", "#1b9e77"])
    ax.axvline(rule.min_music_seconds, color="k", linestyle="--", label=f"min_music_seconds = {rule.min_music_seconds:g}")
    ax.set_xlabel(f"seconds of frames with music probability >= {at:.3f}")
    ax.set_ylabel("recordings")
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_title("Music seconds per recording" + (" (threshold from calibration)" if cal.threshold else ""))
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    atomic_write_bytes(out_dir / "music_seconds_hist.png", png.getvalue())
