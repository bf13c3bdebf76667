"""The record that flows through every stage, and the reason codes stages give it."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

SOURCES = ("freesound", "fma")
STATUSES = ("included", "excluded", "review")

# Stable reason codes. Each is a value of the manifest's `reason` column; the
# empty string means "included".
REASONS = {
    "malformed_record": "a metadata row or API result could not be read (see evidence)",
    "duplicate_conflict": "the same (source, id) was seen more than once with different metadata",
    "license_missing": "no license given",
    "license_unknown": "license not recognised with certainty",
    "license_not_allowed": "license is not CC0, CC BY or CC Sampling+",
    "genai_opt_out": "the uploader opted out of generative AI training (gen_ai_preference)",
    "genai_noncommercial_only": "uploader allows only noncommercial open-source models; release is commercial",
    "genai_closed_model": "uploader allows only open-source models; the release does not declare one",
    "genai_preference_unknown": "gen_ai_preference value not one of Freesound's four: fail closed",
    "genai_preference_missing": "no gen_ai_preference in the response and require_genai_preference is set",
    "license_changed": "the uploader changed the license to one not allowed (seen when the sound was fetched again)",
    "source_deleted": "the sound was deleted from the source (404 when fetched again)",
    "license_conflict": "the license title and the license URL name different licenses (or versions)",
    "url_unsafe": "the work's URL is not an http(s) link (javascript:, data:, ...): never published or shown as a link",
    "attribution_incomplete": "the license asks for attribution and no real URL (or license version) is known",
    "audio_missing": "no audio file for the record",
    "audio_unreadable": "the audio file could not be decoded",
    "audio_empty": "the audio file decodes to no samples",
    "audio_truncated": "the audio file stops decoding part way (truncated or corrupt): not scored on a part",
    "music_detection_failed": "the music classifier failed on this recording",
    "copyright_match_review": "possible copyright match: waiting for human review",
    "copyright_audio_review": "music: waiting for audio identification / human review",
    "copyright_audio_match": "the audio holds an excerpt of a reference recording: waiting for human review",
    "copyright_audio_retry": "music: the identification service gave no answer (error recorded); kept out, asked again next run",
    "copyright_rejected": "a reviewer rejected the recording",
    "takedown": "a takedown was requested (the release's takedown list): out of this and every later release",
}

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
        assert reason in REASONS, reason
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
