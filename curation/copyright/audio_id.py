"""Audio identification backends for recordings detected as music.

- `review`: every such recording waits for a human.
- `fingerprint`: a local landmark index of reference recordings (`curation.copyright.fingerprint`).
- `http`: a commercial identification service behind a configurable HTTP adapter.

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
        import time

        import requests

        self.cfg = cfg
        self.token = token if token is not None else self._token()
        self.session = requests.Session()
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic
        self._last = None

    def _token(self) -> str:
        import os

        tok = os.environ.get(self.cfg.token_env, "")
        if not tok and self.cfg.token_secret_block:
            from prefect.blocks.system import Secret

            tok = str(Secret.load(self.cfg.token_secret_block).get())
        if not tok:
            raise ValueError(f"no token for the identification service: set {self.cfg.token_env} "
                             "or copyright.http.token_secret_block")
        return tok

    def _redact(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text

    def _wait_turn(self) -> None:
        if self._last is not None:
            gap = self.cfg.min_interval_s - (self.clock() - self._last)
            if gap > 0:
                self.sleep(gap)
        self._last = self.clock()

    def _post(self, record: Record):
        import requests

        c = self.cfg
        fields = {k: str(v).format(source=record.source, id=record.id, url=record.url) for k, v in c.fields.items()}
        headers = {c.auth_header: f"{c.auth_prefix}{self.token}"}
        attempt = 0
        while True:
            self._wait_turn()
            try:
                with open(record.audio_path, "rb") as f:
                    resp = self.session.post(c.endpoint, data=fields, headers=headers, timeout=c.timeout_s,
                                             files={c.file_field: (f"{record.source}_{record.id}", f)})
            except (requests.Timeout, requests.ConnectionError) as e:
                resp, problem = None, type(e).__name__
            else:
                problem = f"HTTP {resp.status_code}"
                if resp.status_code < 400:
                    return resp
                if resp.status_code != 429 and resp.status_code < 500:
                    raise RuntimeError(f"identification service answered {problem}")
            attempt += 1
            if attempt > c.max_retries:
                raise RuntimeError(f"identification service: {problem} after {attempt} attempts")
            wait = c.backoff_s * 2 ** (attempt - 1)
            if resp is not None and resp.status_code == 429:
                try:
                    wait = float(resp.headers.get("Retry-After", wait))
                except ValueError:
                    pass
            self.sleep(wait)

    def identify(self, record: Record) -> IdResult:
        ev: dict[str, Any] = {"backend": self.name, "endpoint": self.cfg.endpoint}
        try:
            doc = self._post(record).json()
        except Exception as e:  # cannot tell: a human decides
            return IdResult("review", "copyright_audio_review",
                            {**ev, "error": self._redact(f"{type(e).__name__}: {e}")[:300]})
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
        return FingerprintBackend(copyright_cfg.fingerprint_index, copyright_cfg.fingerprint_min_score)
    if name == "http":
        return HttpBackend(copyright_cfg.http)
    raise ValueError(f"unknown audio identification backend {name!r}")
