"""A STAND-IN music model for benchmarks that need decisions to follow the audio.

The real PANNs checkpoint cannot be fetched here, and randomly initialised weights call every
frame music (about 0.5 for every class, whatever the input), so a benchmark of *when scoring
can stop* would learn nothing from them. The stand-in is the real Cnn14_DecisionLevelMax
architecture (so the compute is the real one) with a RANDOM trunk and a music head fitted
by logistic regression on the trunk's frame features of labelled clips: music vs not music.
Its decisions follow the audio roughly; they are NOT PANNs' decisions and mean nothing about
any real recording. Every output that uses it says so and prints its sha256.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

SR = 32000


def _features(model, clips: list[np.ndarray]) -> list[np.ndarray]:
    """The 2048-d input of the classifier layer, per time step (about 3 per second)."""
    import torch

    got = []
    hook = model.fc_audioset.register_forward_hook(lambda m, inp, out: got.append(inp[0].detach().numpy()))
    try:
        with torch.inference_mode():
            for x in clips:
                model(torch.from_numpy(x[None].astype(np.float32)))
    finally:
        hook.remove()
    return [g[0] for g in got]


def build(path: Path, labels_csv: Path, music: list[np.ndarray], other: list[np.ndarray], seed: int = 0) -> dict:
    """Fit the head on 32 kHz mono clips and save the checkpoint; returns what was fitted."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from curation.music.detector import build_cnn14, music_indices, read_labels

    torch.manual_seed(seed)
    model = build_cnn14(labels_csv).eval()
    feats = _features(model, music + other)
    X = np.concatenate(feats)
    y = np.concatenate([np.full(len(f), 1 if i < len(music) else 0) for i, f in enumerate(feats)])
    scaler = StandardScaler().fit(X)
    clf = LogisticRegression(C=0.05, max_iter=2000).fit(scaler.transform(X), y)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    w = clf.coef_[0] / scale
    b = clf.intercept_[0] - float((clf.coef_[0] * scaler.mean_ / scale).sum())
    idx = music_indices(read_labels(labels_csv))
    with torch.no_grad():
        model.fc_audioset.weight.zero_()
        model.fc_audioset.bias.fill_(-8.0)  # other classes: never on
        model.fc_audioset.weight[idx] = torch.from_numpy(np.tile(w, (len(idx), 1)).astype(np.float32))
        model.fc_audioset.bias[idx] = float(b)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "random_init": True,
                "stand_in": "random trunk; music head fitted on labelled clips; NOT PANNs"}, path)
    return {"train_frames": int(len(y)), "train_accuracy": float(clf.score(scaler.transform(X), y)),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
