"""AcoustID: the Chromaprint fingerprint of a recording (`fpcalc`, Debian's
libchromaprint-tools) looked up in AcoustID's database (https://acoustid.org/webservice).

A result at or above `min_score` sends the recording to review with the AcoustID track ids
and the MusicBrainz recordings (ids, titles, artists) as evidence; no such result clears
it. Errors (`{"status": "error", "error": {"code", "message"}}`, with the HTTP status of
acoustid-server's acoustid/api/errors.py: 400, and 5 -> 500, 13 -> 503, 14 -> 429,
18 -> 404, 19 -> 413) are read by kind:
- passing (5 internal, 13 unavailable, 14 too many requests), an unreadable answer, or no
  answer: retried with backoff, then a recorded reason (`copyright_audio_retry`): the
  recording stays out until a later run gets an answer;
- the key (4 invalid API key, 6, 17 unknown application, 12 not allowed): no later request
  can pass; `check_key` asks before the run looks anything up (the server reads `client`
  before any other parameter: api/v2/__init__.py `LookupHandlerParams.parse` calls
  `_parse_client` first), and a key refused during a run stops the asking for the rest of it;
- this recording's request (3 invalid fingerprint, 2 missing parameter, 8 invalid duration,
  19 request too large, and any other): asking again sends the same request, so a human
  decides (`copyright_audio_review`, with the code and message).
A recording `fpcalc` cannot read goes to a human too. The application key comes from a
secret and appears nowhere in the evidence. The free service is for non-commercial use: a
commercial release needs a commercial key (https://acoustid.org/commercial).
"""
from __future__ import annotations

import json
import subprocess
from typing import Any

from ..records import Record
from .audio_id import IdResult
from .service import ServiceClient, ServiceError, require_secret

# AcoustID's error codes (acoustid-server, api/errors.py)
ERRORS = {1: "unknown format", 2: "missing parameter", 3: "invalid fingerprint", 4: "invalid API key",
          5: "internal error", 6: "invalid user API key", 7: "invalid UUID", 8: "invalid duration",
          9: "invalid bitrate", 10: "invalid foreign ID", 11: "invalid max duration diff", 12: "not allowed",
          13: "service unavailable", 14: "too many requests", 15: "invalid MusicBrainz access token",
          16: "insecure request", 17: "unknown application", 18: "fingerprint not found", 19: "request too large"}
TRANSIENT = {5, 13, 14}
KEY_ERRORS = {4, 6, 12, 17}


def _read(resp) -> dict:
    try:
        doc = resp.json()
    except ValueError:
        raise ServiceError(f"the answer is not JSON (HTTP {resp.status_code}): {resp.text[:80]!r}") from None
    if not isinstance(doc, dict):
        raise ServiceError(f"the answer is not a JSON object: {str(doc)[:80]!r}")
    return doc


def _error(doc: dict) -> dict:
    return doc["error"] if doc.get("status") != "ok" and isinstance(doc.get("error"), dict) else {}


def _transient(doc: dict) -> bool:
    return _error(doc).get("code") in TRANSIENT


class FingerprintFailed(RuntimeError):
    pass


class KeyRefused(ValueError):
    """The service refuses the key: no lookup can pass until it is changed."""


def chromaprint(path, fpcalc: str = "fpcalc", max_seconds: int = 120, timeout_s: float = 120.0) -> tuple[int, str]:
    """(duration in whole seconds, compressed fingerprint) of the file's first `max_seconds`
    (AcoustID's own clients fingerprint the first two minutes)."""
    from ..audio import AudioError, local_audio

    try:
        path = local_audio(path)
    except AudioError as e:
        raise FingerprintFailed(f"{e.reason}: {e.detail}") from None
    try:
        proc = subprocess.run([fpcalc, "-json", "-length", str(max_seconds), str(path)], capture_output=True,
                              text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FingerprintFailed(f"fpcalc could not run: {type(e).__name__}: {e}") from None
    try:
        # fpcalc may still print a fingerprint, then complain about the end of a file
        doc = json.loads(proc.stdout)
        return int(round(float(doc["duration"]))), str(doc["fingerprint"])
    except (ValueError, KeyError, TypeError):
        raise FingerprintFailed(f"fpcalc gave no fingerprint (exit {proc.returncode}): "
                                f"{proc.stderr.strip()[-200:]}") from None


class AcoustIdBackend:
    name = "acoustid"

    def __init__(self, cfg, key: str | None = None, sleep=None, clock=None):
        self.cfg = cfg
        self.key = key if key is not None else require_secret(cfg.key_env, cfg.key_secret_block,
                                                           "AcoustID application key (copyright.acoustid)")
        self.client = ServiceClient(cfg.min_interval_s, cfg.timeout_s, cfg.max_retries, cfg.backoff_s,
                                    secrets=(self.key,), sleep=sleep, clock=clock)

    def lookup(self, duration: int, fingerprint: str) -> dict:
        data = {"client": self.key, "duration": str(duration), "fingerprint": fingerprint,
                "meta": "recordings releasegroups", "format": "json"}
        # AcoustID explains its errors in JSON (with HTTP 400): read them, not the status
        doc = self.client.post_json(self.cfg.endpoint, lambda: {"data": data}, _read, _transient, read_4xx=True)
        if doc.get("status") == "ok":
            return doc
        code = _error(doc).get("code")
        message = self.client.redact(str(_error(doc).get("message") or ERRORS.get(code, "unknown error")))[:200]
        raise ServiceError(f"AcoustID error {code}: {message}", retry=code in TRANSIENT or not isinstance(code, int),
                           code=code)

    def check_key(self) -> None:
        """Ask the service whether it takes the key, looking nothing up: a request with the key
        and no fingerprint is answered 2 (missing parameter) for a good key and 4 for a bad one.
        Raises KeyRefused for a refused key; a service that cannot answer now raises ServiceError
        (the lookups will record it)."""
        doc = self.client.post_json(self.cfg.endpoint, lambda: {"data": {"client": self.key, "format": "json"}},
                                    _read, _transient, read_4xx=True)
        code = _error(doc).get("code")
        if code in KEY_ERRORS:
            message = self.client.redact(str(_error(doc).get("message") or ERRORS.get(code, "")))[:200]
            raise KeyRefused(f"AcoustID refused the application key (error {code}: {message}); set "
                             f"{self.cfg.key_env} to a valid key (https://acoustid.org/new-application)")

    def identify(self, record: Record) -> IdResult:
        ev: dict[str, Any] = {"backend": self.name, "endpoint": self.cfg.endpoint, "min_score": self.cfg.min_score}
        try:
            duration, fp = chromaprint(record.audio_path, self.cfg.fpcalc, self.cfg.max_seconds)
        except FingerprintFailed as e:  # cannot tell: a human decides
            return IdResult("review", "copyright_audio_review", {**ev, "error": str(e)[:300]})
        ev["duration_s"] = duration
        try:
            doc = self.lookup(duration, fp)
        except ServiceError as e:
            error = self.client.redact(str(e))[:300]
            if e.code in KEY_ERRORS:  # no later request can pass: stop asking for the rest of the run
                return IdResult("review", "copyright_audio_retry", {**ev, "error": error, "code": e.code,
                                                                     "retry": True, "stop_run": error})
            if not e.retry:  # this recording's request is refused as it is: asking again cannot help
                return IdResult("review", "copyright_audio_review", {**ev, "error": error, "code": e.code,
                                                                      "retry": False})
            return IdResult("review", "copyright_audio_retry", {**ev, "error": error, "code": e.code, "retry": True})
        except Exception as e:
            return IdResult("review", "copyright_audio_retry", {**ev, "retry": True,
                                                                 "error": self.client.redact(f"{type(e).__name__}: {e}")[:300]})
        results = doc.get("results")
        if not isinstance(results, list):
            return IdResult("review", "copyright_audio_retry", {**ev, "retry": True, "error": "no 'results' list"})
        scored = []
        for r in results:
            try:
                scored.append((float(r.get("score")), r))
            except (TypeError, ValueError, AttributeError):
                return IdResult("review", "copyright_audio_retry",
                                {**ev, "retry": True, "error": f"unreadable result {str(r)[:80]!r}"})
        ev["best_score"] = max((s for s, _ in scored), default=0.0)
        hits = [(s, r) for s, r in scored if s >= self.cfg.min_score]
        if not hits:
            return IdResult("clear", "", {**ev, "matches": []})
        ev["matches"] = [{
            "acoustid": str(r.get("id", "")), "score": s,
            "recordings": [{"musicbrainz_recording_id": str(rec.get("id", "")), "title": rec.get("title"),
                            "artists": [a.get("name") for a in rec.get("artists") or [] if isinstance(a, dict)],
                            "musicbrainz_artist_ids": [a.get("id") for a in rec.get("artists") or []
                                                       if isinstance(a, dict)],
                            "releasegroups": [g.get("title") for g in rec.get("releasegroups") or []
                                              if isinstance(g, dict)][:3]}
                           for rec in (r.get("recordings") or [])[:5] if isinstance(rec, dict)],
        } for s, r in sorted(hits, key=lambda t: -t[0])[:5]]
        return IdResult("review", "copyright_audio_match", ev)
