"""The record that flows through every stage."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

SOURCES = ("freesound", "fma")
STATUSES = ("included", "excluded", "review")

# The reason codes, with their meanings, are declared by the stages that set them and assembled
# in `curation/stages.py` (REASONS).

_ID_RE = re.compile(r"^[0-9]{1,12}$")


def valid_id(value: object) -> bool:
    """Ids from both sources are positive integers; anything else is malformed."""
    return bool(_ID_RE.match(str(value)))


def record_key(source: str, rid: str) -> str:
    """The WebDataset key of a record: made only from the validated source and id."""
    if source not in SOURCES or not valid_id(rid):
        raise ValueError(f"not a valid record key: {source!r} {rid!r}")
    return f"{source}_{rid}"


@dataclass
class Record:
    """One distinct (source, id), with its metadata and the decisions made so far."""

    source: str
    id: str
    title: str = ""
    author: str = ""
    url: str = ""
    license_raw: str = ""
    license: str = ""
    gen_ai_preference: str = ""
    genai_present: bool | None = None  # Freesound: whether the response had the field at all
    license_url: str = ""  # the https deed URL of the exact license (version and port)
    tags: list[str] = field(default_factory=list)
    description: str = ""
    genres: list[str] = field(default_factory=list)
    audio_path: str = ""  # resolved by the audio stage, never taken from metadata
    download_url: str = ""  # Freesound live: preview or original
    seen: int = 1
    status: str = "pending"
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    def exclude(self, reason: str, **evidence: Any) -> None:
        self.status = "excluded"
        self.reason = reason
        self.evidence.update(evidence)

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Record":
        d = dict(d)
        for k in ("tags", "genres"):
            d[k] = list(d.get(k) or [])
        d["evidence"] = dict(d.get("evidence") or {})
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
