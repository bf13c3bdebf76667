"""Data the package ships: the AudioSet class list (see AUDIOSET.md) and the Music subtree's ids."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
# The 527 AudioSet classes in the order of PANNs' outputs (AudioSet, Google: CC BY 4.0).
AUDIOSET_LABELS_CSV = HERE / "class_labels_indices.csv"


def audioset_labels_csv() -> Path:
    """The shipped AudioSet class list: the default wherever a class list is needed."""
    return AUDIOSET_LABELS_CSV
