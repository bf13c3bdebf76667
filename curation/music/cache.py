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


def valid_entry(entry: object, audio_sha256: str | None) -> bool:
    if not isinstance(entry, dict):
        return False
    audio, music = entry.get("audio"), entry.get("music")
    if not isinstance(audio, dict) or not isinstance(music, dict):
        return False
    if audio_sha256 is not None and audio.get("sha256") != audio_sha256:
        return False
    return isinstance(music.get("is_music"), bool) and isinstance(music.get("music_seconds"), (int, float))


class MusicCache:
    def __init__(self, root: Path):
        self.root = storage.as_path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str, audio_sha256: str | None = None) -> dict | None:
        """The cached result, or None when there is none or it cannot be trusted (truncated,
        garbage, another recording's, a result without its decision): it is scored again."""
        p = self._path(key)
        try:
            entry = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        return entry if valid_entry(entry, audio_sha256) else None

    def put(self, key: str, value: dict) -> None:
        atomic_write_text(self._path(key), json.dumps(value, sort_keys=True))

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json")) if self.root.is_dir() else 0
