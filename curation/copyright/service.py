"""What every identification service client needs: secrets from the environment or a
Prefect Secret block, requests spaced to the service's rate limit, 429 (with Retry-After),
5xx and dropped connections retried with backoff, and secrets redacted from any text that
leaves the client."""
from __future__ import annotations

import time

import requests

from ..secrets import read_secret


class ServiceError(RuntimeError):
    """The service could not answer; `retry` says whether asking later may help."""

    def __init__(self, message: str, retry: bool = True, code=None):
        super().__init__(message)
        self.retry = retry
        self.code = code


def require_secret(env: str, block: str = "", what: str = "secret") -> str:
    value = read_secret(env, block)
    if not value:
        raise ValueError(f"no {what}: set the environment variable {env}" + (f" or the Secret block {block}" if block
                                                                            else ""))
    return value


class ServiceClient:
    def __init__(self, min_interval_s: float, timeout_s: float, max_retries: int, backoff_s: float,
                 secrets: tuple[str, ...] = (), sleep=None, clock=None):
        self.min_interval_s = min_interval_s
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.secrets = tuple(s for s in secrets if s)
        self.session = requests.Session()
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic
        self._last = None

    def redact(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        return text

    def _wait_turn(self) -> None:
        if self._last is not None:
            gap = self.min_interval_s - (self.clock() - self._last)
            if gap > 0:
                self.sleep(gap)
        self._last = self.clock()

    def post(self, url: str, make_request, read_4xx: bool = False) -> requests.Response:
        """POST with `make_request()` -> dict of requests.post keyword arguments (called again
        for each attempt: files are reopened, signatures renewed). Returns a response below
        400 (below 500 with `read_4xx`, for services that explain their errors in the body);
        raises ServiceError for other 4xx at once and for 429/5xx/timeouts once the retries
        are spent."""
        attempt = 0
        while True:
            self._wait_turn()
            try:
                resp = self.session.post(url, timeout=self.timeout_s, **make_request())
            except (requests.Timeout, requests.ConnectionError) as e:
                resp, problem = None, type(e).__name__
            else:
                problem = f"HTTP {resp.status_code}"
                if resp.status_code < 400 or (read_4xx and resp.status_code < 500 and resp.status_code != 429):
                    return resp
                if resp.status_code != 429 and resp.status_code < 500:
                    raise ServiceError(self.redact(f"the service answered {problem}: {resp.text[:200]}"),
                                       retry=False, code=resp.status_code)
            attempt += 1
            if attempt > self.max_retries:
                raise ServiceError(f"{problem} after {attempt} attempts", retry=True,
                                   code=resp.status_code if resp is not None else None)
            wait = self._backoff_s(attempt - 1)
            if resp is not None and resp.status_code == 429:
                try:
                    wait = float(resp.headers.get("Retry-After", wait))
                except ValueError:
                    pass
            self.sleep(wait)

    def post_json(self, url: str, make_request, read, transient, read_4xx: bool = False):
        """`read(response)` (raises ServiceError when it cannot) after `post`; an answer that
        `transient(doc)` calls a passing state (a service's own rate-limit or busy codes) is
        asked again with backoff, up to max_retries times, and then returned as it is."""
        attempt = 0
        while True:
            doc = read(self.post(url, make_request, read_4xx=read_4xx))
            if not transient(doc) or attempt >= self.max_retries:
                return doc
            self.sleep(self._backoff_s(attempt))
            attempt += 1

    def _backoff_s(self, attempt: int) -> float:
        return self.backoff_s * 2 ** attempt
