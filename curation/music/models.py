"""Fetching the PANNs checkpoint and the AudioSet class list, with checksums.

The checkpoint comes from the Zenodo record PANNs published; Zenodo's records API
gives each file's md5, which the download is checked against. The class list is
checked against the sha256 of the list published beside the PANNs code.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import requests

from ..atomic import atomic_path, atomic_write_text
from .detector import read_labels

ZENODO_API = "https://zenodo.org/api/records/3987831"
CHECKPOINT_NAME = "Cnn14_DecisionLevelMax_mAP=0.385.pth"
LABELS_URL = "http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/class_labels_indices.csv"
# sha256 of the class list as published beside the PANNs training code (527 classes).
PUBLISHED_LABELS_SHA256 = "cdd1049833c4b86127c2773ac0d14a2754b6a6d0d1798002ed5c66e699708429"
LABELS_NAME = "class_labels_indices.csv"


class FetchError(RuntimeError):
    pass


@dataclass
class Fetched:
    path: Path
    sha256: str
    md5: str


def _download(url: str, dest: Path, timeout: float, progress: Callable[[int, int], None] | None) -> Fetched:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    tmp = atomic_path(dest)
    try:
        with requests.get(url, stream=True, timeout=timeout) as resp:
            if resp.status_code != 200:
                raise FetchError(f"GET {url}: HTTP {resp.status_code}")
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            with open(tmp, "wb") as f:
                for block in resp.iter_content(1 << 20):
                    f.write(block)
                    sha.update(block)
                    md5.update(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
        return Fetched(tmp, sha.hexdigest(), md5.hexdigest())
    except requests.RequestException as e:
        tmp.unlink(missing_ok=True)
        raise FetchError(f"GET {url}: {type(e).__name__}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fetch_models(
    dest: Path,
    zenodo_api: str = ZENODO_API,
    labels_url: str = LABELS_URL,
    labels_sha256: str | None = None,
    timeout: float = 60.0,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Download checkpoint and class list into `dest`; write `dest/models.json` with checksums."""
    labels_sha256 = labels_sha256 or PUBLISHED_LABELS_SHA256
    dest.mkdir(parents=True, exist_ok=True)
    try:
        record = requests.get(zenodo_api, timeout=timeout)
        record.raise_for_status()
        files = record.json()["files"]
        entry = next(f for f in files if f.get("key") == CHECKPOINT_NAME)
        url = entry["links"]["self"]
        algo, _, expected = str(entry["checksum"]).partition(":")
    except (requests.RequestException, ValueError, KeyError, StopIteration, TypeError) as e:
        raise FetchError(f"cannot read the checkpoint's Zenodo record {zenodo_api}: {type(e).__name__} {e}") from None
    if algo != "md5" or len(expected) != 32:
        raise FetchError(f"unexpected checksum format in Zenodo record: {entry.get('checksum')!r}")

    ckpt = dest / CHECKPOINT_NAME
    got = _download(url, ckpt, timeout, progress)
    if got.md5 != expected:
        got.path.unlink(missing_ok=True)
        raise FetchError(f"{CHECKPOINT_NAME}: md5 {got.md5} does not match the published {expected}")
    got.path.replace(ckpt)

    labels = dest / LABELS_NAME
    lab = _download(labels_url, labels, timeout, None)
    if lab.sha256 != labels_sha256:
        lab.path.unlink(missing_ok=True)
        raise FetchError(f"{LABELS_NAME}: sha256 {lab.sha256} does not match the published {labels_sha256}")
    lab.path.replace(labels)
    read_labels(labels)

    info = {
        "checkpoint": {"file": CHECKPOINT_NAME, "url": url, "md5": got.md5, "sha256": got.sha256},
        "labels": {"file": LABELS_NAME, "url": labels_url, "sha256": lab.sha256},
    }
    atomic_write_text(dest / "models.json", json.dumps(info, indent=2, sort_keys=True))
    return info


def is_published_checkpoint(checkpoint: Path, sha256: str) -> bool:
    """True when `models.json` beside the checkpoint vouches for this exact file."""
    info_path = checkpoint.parent / "models.json"
    if not info_path.is_file():
        return False
    try:
        info = json.loads(info_path.read_text())
        return info["checkpoint"]["sha256"] == sha256 and info["checkpoint"]["file"] == checkpoint.name
    except (ValueError, KeyError, TypeError):
        return False


class _Skeleton(pickle.Unpickler):
    """Reads a torch checkpoint's pickle for its plain keys without torch: every class it
    names becomes a stub that builds nothing, and no tensor storage is read."""

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        return lambda *a, **k: None

    def persistent_load(self, pid):
        return None


def is_random_checkpoint(checkpoint: Path) -> bool:
    """Checkpoints made by `save_random_checkpoint` carry a marker. Read without importing
    torch (300 MB the flow's own process has no other use for), else with it."""
    try:
        with zipfile.ZipFile(checkpoint) as z:
            name = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            state = _Skeleton(io.BytesIO(z.read(name))).load()
        return bool(isinstance(state, dict) and state.get("random_init") is True)
    except Exception:
        pass
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return bool(isinstance(state, dict) and state.get("random_init"))
