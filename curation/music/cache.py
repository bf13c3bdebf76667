"""Music results keyed by what decides them: the audio's content hash, the checkpoint's
hash and the rule's parameters. A rerun, or a run over a grown corpus sharing the cache
folder, scores only what is new."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .. import storage
from ..atomic import atomic_write_text
from .detector import Rule


def cache_key(audio_sha256: str, checkpoint_sha256: str, rule: Rule, chunk_seconds: float,
              context_seconds: float, top_k: int) -> str:
    params = [audio_sha256, checkpoint_sha256, rule.threshold, rule.min_music_seconds, rule.min_music_fraction,
              chunk_seconds, context_seconds, top_k]
    return hashlib.sha256(json.dumps(params).encode()).hexdigest()


class MusicCache:
    def __init__(self, root: Path):
        self.root = storage.as_path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        p = self._path(key)
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: dict) -> None:
        atomic_write_text(self._path(key), json.dumps(value, sort_keys=True))

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json")) if self.root.is_dir() else 0
