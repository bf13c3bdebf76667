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
              context_seconds: float, top_k: int, first_chunks: tuple | list = ()) -> str:
    """The key of a scored result. Whether scoring stopped early is not in it: an entry says
    how it was decided, and a run that measures in full takes only entries scored in full
    (an early-stopped or unscored-short entry is scored again and replaced)."""
    params = [audio_sha256, checkpoint_sha256, rule.threshold, rule.min_music_seconds, rule.min_music_fraction,
              chunk_seconds, context_seconds, top_k]
    if first_chunks:
        params.append([float(x) for x in first_chunks])
    if rule.short_frames():  # the cut has a chunk end min_music_seconds before a header's end
        params.append("cut: end - min_music_seconds")
    return hashlib.sha256(json.dumps(params).encode()).hexdigest()


def source_key(audio_sha256: str) -> str:
    """The key of a file checked but not scored (its source decides): its decode and length."""
    return hashlib.sha256(json.dumps([audio_sha256, "checked, not scored", 1]).encode()).hexdigest()


def error_key(audio_sha256: str) -> str:
    """The key of a file that does not decode (zero samples, not audio, cut short): the same
    bytes give the same error to the same decoders, so a rerun neither decodes it again nor
    loads the model for it."""
    return hashlib.sha256(json.dumps([audio_sha256, "does not decode", 1]).encode()).hexdigest()


#: Where a cached decode error named the file (the decoders do): the file of the run reading it.
PATH_TOKEN = "\x00file\x00"

#: The decode errors that the file's content decides (not audio_missing: a file can come back).
CONTENT_ERRORS = ("audio_empty", "audio_unreadable", "audio_truncated")


def valid_error(entry: object, audio_sha256: str | None) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("audio"), dict):
        return False
    err = entry.get("error")
    if not isinstance(err, dict) or err.get("reason") not in CONTENT_ERRORS or not isinstance(err.get("detail"), str):
        return False
    return audio_sha256 is None or entry["audio"].get("sha256") == audio_sha256


def serves(entry: dict, measure: str) -> bool:
    """Whether a (valid) cached entry answers a run that measures `measure`: a "full" run
    takes only a result whose every frame was scored."""
    return measure != "full" or entry["music"].get("decided", "full") == "full"


def valid_entry(entry: object, audio_sha256: str | None) -> bool:
    if not isinstance(entry, dict):
        return False
    audio, music = entry.get("audio"), entry.get("music")
    if not isinstance(audio, dict) or not isinstance(music, dict):
        return False
    if audio_sha256 is not None and audio.get("sha256") != audio_sha256:
        return False
    if music.get("decided", "full") not in ("full", "early", "short", "source"):
        return False
    if music.get("decided") == "source":
        return music.get("is_music") is True
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

    def get_error(self, key: str, audio_sha256: str) -> dict | None:
        """The cached decode error of these bytes (`error_key`), or None."""
        try:
            entry = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        return entry if valid_error(entry, audio_sha256) else None

    def put(self, key: str, value: dict) -> None:
        atomic_write_text(self._path(key), json.dumps(value, sort_keys=True))

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json")) if self.root.is_dir() else 0
