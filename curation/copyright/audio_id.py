"""Audio identification backends for recordings detected as music.

- `review`: every such recording waits for a human.
- `fingerprint`: a local landmark index of reference recordings (`curation.copyright.fingerprint`).
- `http`: a commercial identification service behind a configurable HTTP adapter.
- `acoustid`: Chromaprint fingerprints looked up in AcoustID (`curation.copyright.acoustid`).
- `acrcloud`: ACRCloud's identify API on a sample of the loudest music (`curation.copyright.acrcloud`).

Each returns `clear` or `review` with its evidence; a backend that cannot decide sends the
recording to review (fail closed).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..records import Record


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

    def __init__(self, index_dir, max_false_match: float | None = None):
        from .fingerprint import MAX_FALSE_MATCH, FingerprintIndex

        self.index = FingerprintIndex(index_dir, read_only=True)
        self.max_false_match = MAX_FALSE_MATCH if max_false_match is None else max_false_match
        self.references = self.index.count()

    def identify(self, record: Record) -> IdResult:
        from dataclasses import asdict

        ev: dict[str, Any] = {"backend": self.name, "references": self.references,
                              "max_false_match": self.max_false_match}
        spans = (record.evidence.get("music") or {}).get("music_spans") or []
        try:
            matches, queried = self._query(record.audio_path, spans)
        except Exception as e:  # cannot tell: a human decides
            return IdResult("review", "copyright_audio_review", {**ev, "error": f"{type(e).__name__}: {e}"[:300]})
        ev["queried"] = queried
        if matches:
            return IdResult("review", "copyright_audio_match", {**ev, "matches": [asdict(m) for m in matches[:5]]})
        return IdResult("clear", "", {**ev, "matches": []})

    def _query(self, path, spans: list) -> tuple[list, dict]:
        """The index asked about where the music stage heard music (each span with
        SPAN_MARGIN_S either side, overlaps merged), or about the whole recording when it
        found none; each window is one more chance of a false match, so each is asked at
        `max_false_match / windows` and the estimate reported times the windows."""
        from dataclasses import replace

        from .fingerprint import SR, load_audio

        audio = load_audio(path)
        seconds = len(audio) / SR
        windows = merge_spans(spans, SPAN_MARGIN_S, seconds)
        whole = not windows or sum(b - a for a, b in windows) >= 0.9 * seconds
        if whole:
            windows = [[0.0, round(seconds, 2)]]
        best: dict[str, Any] = {}
        k = len(windows)
        for a, b in windows:
            part = audio if whole else audio[int(a * SR) : int(b * SR)]
            for m in self.index.query_audio(part, max_false_match=self.max_false_match / k):
                m = replace(m, offset_seconds=round(m.offset_seconds + a, 2),
                            candidate_start=round(m.candidate_start + a, 2),
                            false_match_probability=float(f"{min(1.0, m.false_match_probability * k):.3g}"))
                if m.reference not in best or m.false_match_probability < best[m.reference].false_match_probability:
                    best[m.reference] = m
        out = sorted(best.values(), key=lambda m: (m.false_match_probability, -m.score, m.reference))
        return out, {"windows": windows, "seconds": round(sum(b - a for a, b in windows), 2), "of": round(seconds, 2)}


SPAN_MARGIN_S = 2.0


def merge_spans(spans: list, margin: float, seconds: float) -> list[list[float]]:
    """[start, end] windows: each span widened by `margin` either side, clipped to the
    recording, overlapping ones merged, in time order."""
    out: list[list[float]] = []
    for a, b in sorted((max(0.0, float(a) - margin), min(seconds, float(b) + margin)) for a, b in spans
                       if float(b) > float(a)):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [[round(a, 2), round(b, 2)] for a, b in out]


def _dig(doc: Any, path: str) -> Any:
    for part in path.split(".") if path else []:
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


class HttpBackend:
    """A commercial identification service: the audio is uploaded (multipart) with token
    auth, requests are spaced by `min_interval_s`, 429 (Retry-After) and 5xx are retried
    with backoff, and the JSON answer is read through configured paths. Whatever cannot be
    read sends the recording to review; the token appears in no evidence or error."""

    name = "http"

    def __init__(self, cfg, token: str | None = None, sleep=None, clock=None):
        from .service import ServiceClient, require_secret

        self.cfg = cfg
        self.token = token if token is not None else require_secret(
            cfg.token_env, cfg.token_secret_block, "token for the identification service (copyright.http)")
        self.client = ServiceClient(cfg.min_interval_s, cfg.timeout_s, cfg.max_retries, cfg.backoff_s,
                                    secrets=(self.token,), sleep=sleep, clock=clock)

    def _post(self, record: Record):
        c = self.cfg
        fields = {k: str(v).format(source=record.source, id=record.id, url=record.url) for k, v in c.fields.items()}
        headers = {c.auth_header: f"{c.auth_prefix}{self.token}"}

        def request():
            from ..audio import local_audio

            with open(local_audio(record.audio_path), "rb") as f:
                audio = f.read()
            return {"data": fields, "headers": headers, "files": {c.file_field: (f"{record.source}_{record.id}", audio)}}

        return self.client.post(c.endpoint, request)

    def identify(self, record: Record) -> IdResult:
        ev: dict[str, Any] = {"backend": self.name, "endpoint": self.cfg.endpoint}
        try:
            doc = self._post(record).json()
        except Exception as e:  # cannot tell: a human decides
            return IdResult("review", "copyright_audio_review",
                            {**ev, "error": self.client.redact(f"{type(e).__name__}: {e}")[:300]})
        ev["response"] = {name: _dig(doc, path) for name, path in sorted(self.cfg.evidence_paths.items())}
        matched = _dig(doc, self.cfg.match_path)
        if matched is None:
            return IdResult("review", "copyright_audio_review",
                            {**ev, "error": f"no '{self.cfg.match_path}' in the answer"})
        if matched is True or (isinstance(matched, (list, dict)) and len(matched) > 0):
            return IdResult("review", "copyright_audio_match", {**ev, "matched": True})
        if matched is False or matched == [] or matched == {}:
            return IdResult("clear", "", {**ev, "matched": False})
        return IdResult("review", "copyright_audio_review", {**ev, "error": f"unexpected match value {matched!r:.60}"})


def make_backend(copyright_cfg) -> AudioIdBackend:
    name = copyright_cfg if isinstance(copyright_cfg, str) else copyright_cfg.audio_backend
    if name == "review":
        return ReviewBackend()
    if name == "fingerprint":
        return FingerprintBackend(copyright_cfg.fingerprint_index, copyright_cfg.fingerprint_max_false_match)
    if name == "http":
        return HttpBackend(copyright_cfg.http)
    if name == "acoustid":
        from ..config import AcoustIdConfig
        from .acoustid import AcoustIdBackend

        return AcoustIdBackend(copyright_cfg.acoustid or AcoustIdConfig())
    if name == "acrcloud":
        from .acrcloud import AcrCloudBackend

        return AcrCloudBackend(copyright_cfg.acrcloud)
    raise ValueError(f"unknown audio identification backend {name!r}")


class RunStop:
    """A backend's answer that no later request can pass this run (a spent quota, a refused key
    or signature), kept in `OUT/work/copyright/stopped.json` so that every partition's task, in
    any worker, stops asking once one has heard it. The flow clears it when a run's copyright
    stage starts; the recordings not asked stay `copyright_audio_retry` (asked again next run)."""

    def __init__(self, work_dir):
        self.path = work_dir / "copyright" / "stopped.json"
        self._known: dict | None = None

    def read(self) -> dict | None:
        if self._known is not None:
            return self._known
        import json

        from .. import storage

        p = storage.as_path(self.path)
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        self._known = doc if isinstance(doc, dict) and doc.get("message") else None
        return self._known

    def set(self, backend: str, message: str) -> None:
        import json
        import time

        from ..atomic import atomic_write_text

        self._known = {"backend": backend, "message": message,
                       "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write_text(self.path, json.dumps(self._known))

    def clear(self) -> None:
        from .. import storage

        self._known = None
        p = storage.as_path(self.path)
        try:
            p.unlink()
        except (FileNotFoundError, OSError):
            pass


def stop_note(stop: dict) -> str:
    return (f"{stop['backend']}: {stop['message']}; no recording was asked after that this run: they stay "
            f"copyright_audio_retry and are asked again by the next run")
