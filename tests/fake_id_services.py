"""Local HTTP servers that answer as AcoustID's lookup API and ACRCloud's identify API do
(documented formats: status and error codes, rate limits, HTTP errors), and identify for
real: AcoustID by the submitted Chromaprint fingerprint against its references' (computed
with `fpcalc`), ACRCloud by looking the sample up in a landmark index of its references."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import tempfile
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

ACOUSTID_KEY = "acoustid-app-key-7f3a"
ACR_KEY = "acr-access-key-19c2"
ACR_SECRET = "acr-access-secret-5d8e"


def serve(handle):
    """A local server whose POSTs are answered by `handle(handler, body)`; returns it."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            handle(self, self.rfile.read(int(self.headers["Content-Length"])))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def reply(h: BaseHTTPRequestHandler, status: int, body, headers: dict | None = None) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(raw)))
    h.end_headers()
    h.wfile.write(raw)


def _multipart(h: BaseHTTPRequestHandler, body: bytes) -> dict:
    msg = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + h.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
    out = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        out[name] = part.get_payload(decode=True)
    return out


# acoustid-server (read at 376a823), acoustid/api/errors.py: each error's code, message and HTTP
# status (:39 WebServiceError.status = 400; :82 InternalError 500, :138 ServiceUnavailable 503,
# :146 TooManyRequests 429, :172 FingerprintNotFoundError 404, :180 RequestTooLargeError 413).
ACOUSTID_ERRORS = {
    2: (400, 'missing required parameter "{}"'), 3: (400, "invalid fingerprint"), 4: (400, "invalid API key"),
    5: (500, "internal error"), 8: (400, 'invalid duration "{}"'), 13: (503, "service unavailable"),
    14: (429, "rate limit ({}) exceeded, please slow down"), 18: (404, "fingerprint not found"),
    19: (413, "request too large"),
}


def acoustid_error(code: int, arg: str = "") -> tuple[int, dict]:
    """(HTTP status, body) of the real server's answer for error `code`."""
    status, message = ACOUSTID_ERRORS[code]
    return status, {"status": "error", "error": {"code": code, "message": message.format(arg)}}


def _fingerprint_decodes(fp: str) -> bool:
    """Whether a compressed Chromaprint fingerprint decodes (the server's `decode_fingerprint`):
    URL-safe base64 of an algorithm byte, a 3-byte length and the packed values."""
    import base64

    try:
        raw = base64.urlsafe_b64decode(fp + "=" * (-len(fp) % 4))
    except (ValueError, TypeError):
        return False
    return len(raw) >= 5 and int.from_bytes(raw[1:4], "big") > 0


class FakeAcoustId:
    """POST /v2/lookup (form-encoded): client, duration, fingerprint, meta, format. Answers as
    acoustid-server's acoustid/api/v2/__init__.py does: `LookupHandlerParams.parse` reads `client`
    first (:366; `_parse_client`, :129-136: 2 when missing, 4 when unknown), then the query
    (`_parse_query`, :340-358: 2 for a missing or non-integer duration or a missing fingerprint,
    3 for a fingerprint that does not decode); a body over `max_body` bytes is 19 (werkzeug's
    RequestEntityTooLarge, :284);
    each error with its HTTP status (`acoustid_error`)."""

    def __init__(self):
        self.references = {}  # fingerprint -> result dict
        self.script = []  # (HTTP status, body) answered first, in order
        self.requests = []
        self.max_body = 1 << 20
        outer = self

        def handle(self, body):
            if len(body) > outer.max_body:
                return reply(self, *acoustid_error(19))
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            outer.requests.append(form)
            if outer.script:
                return reply(self, *outer.script.pop(0))
            if not form.get("client"):
                return reply(self, *acoustid_error(2, "client"))
            if form.get("client") != ACOUSTID_KEY:
                return reply(self, *acoustid_error(4))
            if not form.get("duration", "").isdigit() or not int(form["duration"]):
                return reply(self, *acoustid_error(2, "duration"))
            if not form.get("fingerprint"):
                return reply(self, *acoustid_error(2, "fingerprint"))
            if not _fingerprint_decodes(form["fingerprint"]):
                return reply(self, *acoustid_error(3))
            hit = outer.references.get(form["fingerprint"])
            reply(self, 200, {"status": "ok", "results": [hit] if hit else []})

        self.server = serve(handle)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2/lookup"

    def add_reference(self, path: Path, recording_id: str, title: str, artist: str, score: float = 0.97) -> None:
        doc = json.loads(subprocess.run(["fpcalc", "-json", "-length", "120", str(path)], capture_output=True,
                                        text=True).stdout)
        self.references[doc["fingerprint"]] = {
            "id": "9ff43b6a-4f16-427c-93c2-92307ca505e0", "score": score,
            "recordings": [{"id": recording_id, "title": title, "duration": int(doc["duration"]),
                            "artists": [{"id": "a74b1b7f-71a5-4011-9441-d0b5e4122711", "name": artist}],
                            "releasegroups": [{"id": "b1392450-e666-3926-a536-22c65f834433", "type": "Album",
                                               "title": "Reference Album"}]}]}

    def close(self):
        self.server.shutdown()


def _has_sound(wav: bytes) -> bool:
    """At least a second of sample with something in it (ACRCloud answers 2004 otherwise)."""
    import io

    import numpy as np
    import soundfile as sf

    try:
        x, sr = sf.read(io.BytesIO(wav), dtype="float32")
    except Exception:
        return False
    return len(x) >= sr and float(np.abs(x).max(initial=0.0)) > 1e-4


class FakeAcrCloud:
    """POST /v1/identify (multipart): sample, access_key, data_type, signature_version,
    signature, sample_bytes, timestamp. The signature is checked as ACRCloud does. Answers
    with the status codes ACRCloud's clients read (acrcloud/acrcloud_scan_files_python,
    acrcloud_scan_files_libary.py): 3001 for an unknown key, 3014 for a bad signature, 3003
    ("Limit exceeded, please upgrade your account") once `quota` identifications are spent,
    2004 ("Can't generate fingerprint") for a silent or too short sample, 1001 for no result,
    0 with `metadata.music`, or, for a project with custom buckets (`custom_bucket`), with
    `metadata.custom_files` (title, audio_id, acrid, bucket_id: `parse_data`)."""

    def __init__(self):
        from curation.copyright.fingerprint import FingerprintIndex

        self.dir = Path(tempfile.mkdtemp(prefix="fake-acr-"))
        self.index = FingerprintIndex(self.dir / "index")
        self.meta = {}
        self.script = []
        self.requests = []
        self.quota: int | None = None  # identifications left before 3003; None: no limit
        self.custom_bucket = False
        outer = self

        def handle(self, body):
            parts = _multipart(self, body)
            fields = {k: v.decode() for k, v in parts.items() if k != "sample"}
            outer.requests.append(fields)
            if outer.script:
                return reply(self, *outer.script.pop(0))
            if fields.get("access_key") != ACR_KEY:
                return reply(self, 200, {"status": {"msg": "Missing/Invalid Access Key", "code": 3001,
                                                     "version": "1.0"}})
            to_sign = "\n".join(["POST", self.path, fields["access_key"], fields.get("data_type", ""),
                                 fields.get("signature_version", ""), fields.get("timestamp", "")])
            good = base64.b64encode(hmac.new(ACR_SECRET.encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
            if fields.get("signature") != good:
                return reply(self, 200, {"status": {"msg": "Invalid Signature", "code": 3014, "version": "1.0"}})
            sample = parts.get("sample", b"")
            if str(len(sample)) != fields.get("sample_bytes"):
                return reply(self, 200, {"status": {"msg": "Invalid arguments", "code": 3006, "version": "1.0"}})
            if outer.quota is not None:
                if outer.quota <= 0:
                    return reply(self, 200, {"status": {"msg": "Limit exceeded, please upgrade your account",
                                                         "code": 3003, "version": "1.0"}})
                outer.quota -= 1
            if not _has_sound(sample):
                return reply(self, 200, {"status": {"msg": "Can't generate fingerprint", "code": 2004,
                                                     "version": "1.0"}})
            found = outer.lookup(sample)
            if not found:
                return reply(self, 200, {"status": {"msg": "No result", "code": 1001, "version": "1.0"}})
            m = outer.meta[found.reference]
            offset = int(max(0.0, -found.offset_seconds) * 1000)
            if outer.custom_bucket:
                items = {"custom_files": [{"title": m["title"], "audio_id": m["acrid"][:8], "acrid": m["acrid"],
                                           "bucket_id": "12345", "score": 100, "play_offset_ms": offset,
                                           "duration_ms": m["duration_ms"]}]}
            else:
                items = {"music": [{**m, "play_offset_ms": offset, "score": 100, "result_from": 3}]}
            reply(self, 200, {"status": {"msg": "Success", "code": 0, "version": "1.0"}, "result_type": 0,
                               "cost_time": 0.7, "metadata": {"timestamp_utc": "2026-11-23 10:00:00", **items}})

        self.server = serve(handle)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/identify"

    def lookup(self, sample: bytes):
        p = self.dir / "sample.wav"
        p.write_bytes(sample)
        matches = self.index.query(p)
        return matches[0] if matches else None

    def add_reference(self, path: Path, title: str, artist: str, isrc: "str | list[str]") -> None:
        name = Path(path).name
        self.index.add(path, name=name)
        self.meta[name] = {"title": title, "artists": [{"name": artist}], "album": {"name": "Reference Album"},
                           "external_ids": {"isrc": isrc}, "acrid": hashlib.md5(name.encode()).hexdigest(),
                           "duration_ms": 200000, "label": "Big Label"}

    def close(self):
        import shutil

        self.server.shutdown()
        self.index.close()
        shutil.rmtree(self.dir, ignore_errors=True)
