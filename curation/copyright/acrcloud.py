"""ACRCloud: the identify API (https://docs.acrcloud.com/reference/identification-api), with
its HMAC-SHA1 signature, asked about a short sample cut from the recording's loudest music.

The sample is `sample_seconds` of 16 kHz mono 16-bit WAV, taken where the music stage found
music (`music_spans` in its evidence) and, within that, where the audio is loudest; a
recording without spans is sampled at its loudest. Answers, by `status.code` (the codes and
their handling as ACRCloud's own file scanner reads them: acrcloud/acrcloud_scan_files_python,
acrcloud_scan_files_libary.py `recognize_file`, which stops scanning on 3001 and 3003, and
`parse_data`, which reads `metadata.music` and `metadata.custom_files`):
- 0: a match: review, with title, artists, every ISRC (`external_ids.isrc` is a string or a
  list), album, ACRCloud id, score and the play offset as evidence; a match in the project's
  own buckets comes as `metadata.custom_files` (title, audio_id, acrid, bucket_id) and is read
  the same way;
- 1001: no result: clear;
- 3015 (QPS limit): retried with backoff, then as below;
- 3003 ("limit exceeded, please upgrade your account": the project's quota), 3001 (missing or
  invalid access key), 3014 (invalid signature: the secret): no later request can pass, so the
  asking stops for the rest of the run; every recording not asked stays `copyright_audio_retry`
  and the run summary says why;
- 2004 (unable to generate a fingerprint: silent or too short a sample): asking again sends the
  same sample, so a human decides (`copyright_audio_review`, with the code);
- anything else, or an unreadable answer: a recorded reason (`copyright_audio_retry`, with
  the code and message) and the recording stays out until a later run gets an answer. Never
  a silent pass.
The access key and secret come from secrets and appear nowhere in the evidence.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import time
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ..records import Record
from .audio_id import IdResult
from .service import ServiceClient, ServiceError, require_secret

SAMPLE_RATE = 16000
NO_RESULT = 1001
NO_FINGERPRINT = 2004
RATE_LIMITED = {3015}
STOP_CODES = {3001: "the access key is refused", 3003: "the project's recognition quota is spent",
              3014: "the signature is refused (check the access secret)"}
CODES = {0: "success", 1001: "no result", 2000: "recording error", 2001: "init error", 2002: "metadata parse error",
         2004: "unable to generate fingerprint", 2005: "timeout", 3000: "HTTP error",
         3001: "missing or invalid access key", 3002: "HTTP content error", 3003: "limit exceeded",
         3006: "invalid arguments", 3014: "invalid signature", 3015: "QPS limit exceeded"}


def _read(resp) -> dict:
    try:
        doc = resp.json()
        int(doc["status"]["code"])
    except (ValueError, KeyError, TypeError):
        raise ServiceError(f"unreadable answer (HTTP {resp.status_code}): {resp.text[:80]!r}") from None
    return doc


def sign(access_key: str, access_secret: str, timestamp: str, uri: str = "/v1/identify",
         data_type: str = "audio", signature_version: str = "1") -> str:
    string_to_sign = "\n".join(["POST", uri, access_key, data_type, signature_version, timestamp])
    digest = hmac.new(access_secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def loudest_window(audio: np.ndarray, sr: int, seconds: float, spans: list | None = None) -> tuple[int, int]:
    """(start, end) samples of the `seconds` window with the most energy, counting only
    what lies inside `spans` ([start, end] seconds) when there are any."""
    n = len(audio)
    w = int(seconds * sr)
    if n <= w:
        return 0, n
    hop = sr // 10
    frames = n // hop
    energy = np.square(audio[: frames * hop].reshape(frames, hop)).sum(axis=1)
    if spans:
        mask = np.zeros(frames, bool)
        for a, b in spans:
            mask[int(a * 10) : int(np.ceil(b * 10))] = True
        if mask.any():
            energy = energy * mask
    wf = w // hop
    csum = np.concatenate([[0.0], np.cumsum(energy)])
    sums = csum[wf:] - csum[:-wf]
    start = int(np.argmax(sums)) * hop
    return start, start + w


def cut_sample(path, seconds: float, spans: list | None) -> tuple[bytes, float, float]:
    """WAV bytes of the sample, its start and its length in seconds."""
    import soundfile as sf

    from ..audio import load_mono

    audio = load_mono(path, SAMPLE_RATE)
    if len(audio) == 0:
        raise ValueError("the recording decodes to no samples")
    a, b = loudest_window(audio, SAMPLE_RATE, seconds, spans)
    buf = io.BytesIO()
    sf.write(buf, audio[a:b], SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue(), round(a / SAMPLE_RATE, 2), round((b - a) / SAMPLE_RATE, 2)


class AcrCloudBackend:
    name = "acrcloud"

    def __init__(self, cfg, access_key: str | None = None, access_secret: str | None = None, sleep=None, clock=None,
                 now=None):
        self.cfg = cfg
        self.access_key = access_key if access_key is not None else require_secret(
            cfg.access_key_env, cfg.access_key_secret_block, "ACRCloud access key (copyright.acrcloud)")
        self.access_secret = access_secret if access_secret is not None else require_secret(
            cfg.access_secret_env, cfg.access_secret_secret_block, "ACRCloud access secret (copyright.acrcloud)")
        self.client = ServiceClient(cfg.min_interval_s, cfg.timeout_s, cfg.max_retries, cfg.backoff_s,
                                    secrets=(self.access_key, self.access_secret), sleep=sleep, clock=clock)
        self.now = now or time.time
        self.uri = urlparse(cfg.endpoint).path or "/v1/identify"

    def _request(self, sample: bytes):
        def make():
            ts = str(int(self.now()))
            return {"data": {"access_key": self.access_key, "sample_bytes": str(len(sample)), "timestamp": ts,
                             "signature": sign(self.access_key, self.access_secret, ts, self.uri),
                             "data_type": "audio", "signature_version": "1"},
                    "files": {"sample": ("sample.wav", sample, "audio/wav")}}
        return make

    def ask(self, sample: bytes) -> dict:
        """The answer's JSON, after retrying rate-limit codes; raises ServiceError."""
        return self.client.post_json(self.cfg.endpoint, self._request(sample), _read,
                                     lambda doc: int(doc["status"]["code"]) in RATE_LIMITED)

    def identify(self, record: Record) -> IdResult:
        ev: dict[str, Any] = {"backend": self.name, "endpoint": self.cfg.endpoint}
        spans = (record.evidence.get("music") or {}).get("music_spans") or []
        try:
            sample, start, length = cut_sample(record.audio_path, self.cfg.sample_seconds, spans)
        except Exception as e:  # cannot tell: a human decides
            return IdResult("review", "copyright_audio_review", {**ev, "error": f"{type(e).__name__}: {e}"[:300]})
        ev["sample"] = {"start_s": start, "seconds": length, "from_music_spans": bool(spans)}
        try:
            doc = self.ask(sample)
        except ServiceError as e:
            return IdResult("review", "copyright_audio_retry",
                            {**ev, "retry": True, "code": e.code, "error": self.client.redact(str(e))[:300]})
        status = doc["status"]
        code = int(status["code"])
        msg = self.client.redact(str(status.get("msg", "")))[:200]
        ev["status"] = {"code": code, "msg": msg}
        if code == NO_RESULT:
            return IdResult("clear", "", {**ev, "matches": []})
        if code in STOP_CODES:
            error = f"ACRCloud {code}: {msg or CODES.get(code, '')}: {STOP_CODES[code]}"
            return IdResult("review", "copyright_audio_retry", {**ev, "retry": True, "error": error,
                                                                 "stop_run": error})
        if code == NO_FINGERPRINT:  # the same sample would fail again: a human decides
            return IdResult("review", "copyright_audio_review",
                            {**ev, "retry": False, "error": f"ACRCloud {code}: {msg or CODES[code]} (silent or too "
                                                             f"short a sample)"})
        if code != 0:
            return IdResult("review", "copyright_audio_retry",
                            {**ev, "retry": True, "error": f"ACRCloud {code}: {msg or CODES.get(code, 'unknown code')}"})
        metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        music = metadata.get("music") if isinstance(metadata.get("music"), list) else []
        custom = metadata.get("custom_files") if isinstance(metadata.get("custom_files"), list) else []
        if not music and not custom:
            return IdResult("review", "copyright_audio_retry",
                            {**ev, "retry": True, "error": "status 0 without metadata.music or metadata.custom_files"})
        ev["matches"] = [_match(m, "music") for m in music[:5] if isinstance(m, dict)] + \
            [_match(m, "custom_files") for m in custom[:5] if isinstance(m, dict)]
        return IdResult("review", "copyright_audio_match", ev)


def _isrcs(m: dict) -> list[str]:
    ids = m.get("external_ids")
    value = ids.get("isrc") if isinstance(ids, dict) else None
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if isinstance(v, (str, int)) and str(v)]


def _match(m: dict, where: str) -> dict:
    """One match as evidence; `where` is `music` (ACRCloud's catalogue) or `custom_files` (a
    bucket of the project's own)."""
    out = {"source": where, "title": m.get("title"),
           "artists": [a.get("name") for a in m.get("artists") or [] if isinstance(a, dict)],
           "album": (m.get("album") or {}).get("name") if isinstance(m.get("album"), dict) else None,
           "isrcs": _isrcs(m), "acrid": m.get("acrid"), "score": m.get("score"),
           "play_offset_ms": m.get("play_offset_ms")}
    out["isrc"] = ", ".join(out["isrcs"]) or None
    if where == "custom_files":
        out.update(audio_id=m.get("audio_id"), bucket_id=m.get("bucket_id"))
    return out
