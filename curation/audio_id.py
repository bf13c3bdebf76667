"""Audio identification backends for recordings detected as music.

- `review`: every such recording waits for a human.
- `fingerprint`: a local landmark index of reference recordings (`curation.fingerprint`).
- `http`: a commercial identification service behind a configurable HTTP adapter.

Each returns `clear` or `review` with its evidence; a backend that cannot decide sends the
recording to review (fail closed).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .records import Record


@dataclass
class IdResult:
    status: str  # "clear" | "review"
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


class AudioIdBackend(Protocol):
    name: str

    def identify(self, record: Record) -> IdResult: ...


class ReviewBackend:
    """Every recording detected as music waits for a human."""

    name = "review"

    def identify(self, record: Record) -> IdResult:
        return IdResult("review", "copyright_audio_review", {"backend": self.name})


class FingerprintBackend:
    """A local landmark index of reference recordings: a recording that holds an excerpt of
    one goes to review with the reference and the time offset; one that holds none is clear."""

    name = "fingerprint"

    def __init__(self, index_dir, min_score: int = 15):
        from .fingerprint import FingerprintIndex

        self.index = FingerprintIndex(index_dir, read_only=True)
        self.min_score = min_score
        self.references = self.index.count()

    def identify(self, record: Record) -> IdResult:
        from dataclasses import asdict

        ev: dict[str, Any] = {"backend": self.name, "references": self.references}
        try:
            matches = self.index.query(record.audio_path, min_score=self.min_score)
        except Exception as e:  # cannot tell: a human decides
            return IdResult("review", "copyright_audio_review", {**ev, "error": f"{type(e).__name__}: {e}"[:300]})
        if matches:
            return IdResult("review", "copyright_audio_match", {**ev, "matches": [asdict(m) for m in matches[:5]]})
        return IdResult("clear", "", {**ev, "matches": []})


def make_backend(copyright_cfg) -> AudioIdBackend:
    name = copyright_cfg if isinstance(copyright_cfg, str) else copyright_cfg.audio_backend
    if name == "review":
        return ReviewBackend()
    if name == "fingerprint":
        return FingerprintBackend(copyright_cfg.fingerprint_index, copyright_cfg.fingerprint_min_score)
    raise ValueError(f"unknown audio identification backend {name!r}")
