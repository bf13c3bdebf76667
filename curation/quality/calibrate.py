"""`curate quality calibrate`: for each measure, the threshold that keeps every known-good file,
and what that threshold would catch of the known-bad ones."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

#: measure -> ([quality] key, the reason, which way is worse, the margin kept past the worst good file)
MEASURES = {
    "silent_share": ("silent_min_share", "audio_silent", "high", 0.001),
    "clipped_share": ("clipped_min_share", "audio_clipped", "high", 1e-6),
    "bandwidth_share": ("min_bandwidth_share", "audio_low_bandwidth", "low", 0.001),
    "dead_channel_dbfs": ("dead_channel_dbfs", "audio_dead_channel", "low", 0.5),
    "correlation": ("max_correlation", "audio_phase_inverted", "low", 0.01),  # the lower of whole band and bass
    "dc_offset": ("max_dc_offset", "audio_dc_offset", "high", 1e-4),
}


def _value(q: dict, name: str):
    if name == "dead_channel_dbfs":
        rms = q.get("channel_rms_dbfs") or []
        if len(rms) < 2:
            return None
        return min(-999.0 if v is None else float(v) for v in rms)
    if name == "correlation":
        vals = [float(v) for v in (q.get("channel_correlation"), q.get("low_correlation")) if v is not None]
        return min(vals) if vals else None
    v = q.get(name)
    return None if v is None else float(v)


@dataclass
class Calibration:
    rows: list[dict] = field(default_factory=list)  # per file: path, label, measures or error
    thresholds: dict = field(default_factory=dict)  # measure -> {key, threshold, caught, of, good_worst}


def calibrate(good: list[Path], bad: list[Path], out: Path) -> Calibration:
    from ..audio import AudioError
    from .measure import measure_file

    cal = Calibration()
    for label, files in (("good", good), ("bad", bad)):
        for f in files:
            row = {"file": str(f), "label": label, "error": ""}
            try:
                q = measure_file(f)
            except AudioError as e:
                row["error"] = f"{e.reason}: {e.detail}"[:200]
                q = {}
            for m in MEASURES:
                row[m] = _value(q, m) if q else None
            cal.rows.append(row)
    for m, (key, reason, worse, margin) in MEASURES.items():
        g = [r[m] for r in cal.rows if r["label"] == "good" and r[m] is not None]
        b = [r[m] for r in cal.rows if r["label"] == "bad" and r[m] is not None]
        if not g:
            continue
        if worse == "high":
            t = max(g) + margin
            caught = sum(1 for v in b if v >= t)
        else:
            t = min(g) - margin
            # as the stage compares: correlation at or below, the others below
            caught = sum(1 for v in b if (v <= t if m == "correlation" else v < t))
        cal.thresholds[m] = {"key": key, "reason": reason, "threshold": round(t, 6), "good_worst": max(g) if worse == "high" else min(g),
                             "caught": caught, "of": len(b)}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "files.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "label", *MEASURES, "error"])
        w.writeheader()
        w.writerows(cal.rows)
    (out / "calibration.json").write_text(json.dumps(cal.thresholds, indent=2, sort_keys=True))
    return cal
