"""The SP-API transport: one place that adds the access token, waits for the operation's rate-limit
token, sets timeouts, retries what can be retried and turns the rest into adapter errors.

Operation clients (orders, reports, feeds) build paths and parse bodies; they never see HTTP status
handling. The transport never logs headers or bodies, so the access token cannot leak."""
from __future__ import annotations

import gzip
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import httpx
import structlog

from adapters.amazon.auth import LwaTokenProvider
from adapters.errors import AdapterError, AuthError, InvalidInput, PermanentError, TransientError
from adapters.ratelimit import TokenBucket

log = structlog.get_logger("ordersync.amazon.http")

# Documented default (rate per second, burst) per operation, from the models' usage-plan tables.
# Orders has dynamic usage plans, so x-amzn-RateLimit-Limit overrides the rate when it is sent.
DOCUMENTED_RATE_LIMITS: dict[str, tuple[float, float]] = {
    "searchOrders": (0.0056, 20),
    "getOrder2026": (0.5, 30),
    "getOrders": (0.0167, 20),
    "getOrder": (0.5, 30),
    "getOrderItems": (0.5, 30),
    "createFeedDocument": (0.5, 15),
    "createFeed": (0.0083, 15),
    "getFeed": (2.0, 15),
    "getFeeds": (0.0222, 10),
    "cancelFeed": (2.0, 15),
    "getFeedDocument": (0.0222, 10),
    "createReport": (0.0167, 15),
    "getReport": (2.0, 15),
    "getReports": (0.0222, 10),
    "cancelReport": (0.0222, 10),
    "getReportDocument": (0.0167, 15),
    "listFinancialEvents": (0.5, 30),
    "listFinancialEventsByOrderId": (0.5, 30),
}

# Our clock starts a request when it leaves; Amazon's when it arrives. Network jitter can make two of our
# requests arrive closer together than we sent them, so we stay a little under the announced rate.
RATE_SAFETY = 0.9
BURST_RESERVE = 1

USER_AGENT = "ordersync/0.1.0 (Language=Python; Platform=Linux)"
TERMINAL = ("DONE", "CANCELLED", "FATAL")  # processingStatus of a feed or report that will not change again


def maybe_gunzip(data: bytes, algorithm: str | None) -> bytes:
    # Amazon says GZIP in compressionAlgorithm; a file a person hands over only has the magic bytes.
    if algorithm == "GZIP" or data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    return data


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up: attempts include the first one."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0


@dataclass
class SpApiResponse:
    status: int
    body: Any
    headers: Mapping[str, str]
    request_id: str | None = None


@dataclass
class CallStats:
    """What the transport did, for metrics and tests (calls sent, retries, seconds spent waiting)."""

    sent: int = 0
    retries: int = 0
    throttled: int = 0
    waited_for_rate: float = 0.0
    per_operation: dict[str, int] = field(default_factory=dict)


def _error_text(body: Any) -> tuple[str | None, str]:
    """The first SP-API error's code and a one-line message, from either error shape."""
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        if isinstance(first, dict):
            code = first.get("code")
            message = str(first.get("message") or "")
            if first.get("details"):
                message += f" ({first['details']})"
            return (str(code) if code is not None else None), message
    return None, ""


class SpApiTransport:
    def __init__(
        self,
        endpoint: str,
        tokens: LwaTokenProvider,
        account: str,
        http: httpx.Client,
        *,
        rate_limits: Mapping[str, tuple[float, float]] | None = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._endpoint = endpoint.rstrip("/")
        # Set per request, so a caller's own httpx.Client (without a timeout) cannot hang a call.
        self._timeout = timeout
        self._tokens = tokens
        self._account = account
        self._http = http
        self._limits = {**DOCUMENTED_RATE_LIMITS, **(rate_limits or {})}
        self._buckets: dict[str, TokenBucket] = {}
        self._retry = retry
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.stats = CallStats()

    def __repr__(self) -> str:
        return f"SpApiTransport(endpoint={self._endpoint!r}, account={self._account!r})"

    def bucket(self, operation: str) -> TokenBucket:
        if operation not in self._buckets:
            rate, burst = self._limits.get(operation, (0.5, 5))
            # One token of the burst kept in reserve: requests taken apart here can reach Amazon closer together
            # (a first one held up on the way, the next not), and Amazon counts them as they arrive.
            self._buckets[operation] = TokenBucket(rate * RATE_SAFETY, max(burst - BURST_RESERVE, 1))
        return self._buckets[operation]

    def _backoff(self, attempt: int) -> float:
        # Equal jitter: never less than half the exponential step, so many clients spread out
        # without any of them hammering straight back.
        step = min(self._retry.max_delay, self._retry.base_delay * (2 ** (attempt - 1)))
        return step / 2 + self._rng.uniform(0, step / 2)

    def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        context: str = "",
    ) -> SpApiResponse:
        """Send one SP-API operation; returns the 2xx answer or raises an AdapterError.

        `context` (e.g. "order 113-…") is put in every error message so a person knows what failed."""
        where = f"Amazon {operation} for account {self._account!r}" + (f", {context}" if context else "")
        bucket = self.bucket(operation)
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            waited = bucket.take(sleep=self._sleep)
            self.stats.waited_for_rate += waited
            started = time.monotonic()
            try:
                # The access token goes straight into the call, never into a local of this frame: error
                # trackers and structlog's dict_tracebacks print the locals of every frame an error passes.
                response = self._http.request(
                    method,
                    self._endpoint + path,
                    params={k: v for k, v in (params or {}).items() if v is not None},
                    json=json_body,
                    headers=self._headers(),
                    timeout=self._timeout,
                )
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                kind = "timed out" if isinstance(exc, httpx.TimeoutException) else f"connection failed ({type(exc).__name__})"
                error: AdapterError = TransientError(f"{where}: {kind}", code="timeout" if "timed" in kind else "connection")
                if attempt >= self._retry.max_attempts:
                    raise TransientError(f"{error.message}; gave up after {attempt} attempts", code=error.code) from None
                self._retry_sleep(operation, attempt, error.message)
                continue
            finally:
                self.stats.sent += 1
                self.stats.per_operation[operation] = self.stats.per_operation.get(operation, 0) + 1
            status = response.status_code
            body = self._decode(response)
            request_id = response.headers.get("x-amzn-RequestId")
            log.debug("spapi_call", account=self._account, operation=operation, status=status,
                      attempt=attempt, seconds=round(time.monotonic() - started, 3), request_id=request_id)
            self._adopt_rate_limit(bucket, response)
            if 200 <= status < 300:
                return SpApiResponse(status, body, response.headers, request_id)
            code, message = _error_text(body)
            detail = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
            if status in (401, 403) and not refreshed:
                # An expired or revoked access token looks like 401/403: log in once more, then believe it.
                refreshed = True
                self._tokens.invalidate()
                attempt -= 1
                continue
            if status in (401, 403):
                raise AuthError(f"{where}: access refused ({detail}); check the app's roles and the seller's authorisation", code=code)
            if status == 429 or status >= 500:
                if status == 429:
                    self.stats.throttled += 1
                if attempt >= self._retry.max_attempts:
                    raise TransientError(f"{where}: {detail}; gave up after {attempt} attempts", code=code or str(status))
                self._retry_sleep(operation, attempt, detail)
                continue
            if status == 400:
                raise InvalidInput(f"{where}: {detail}", code=code)
            raise PermanentError(f"{where}: {detail}", code=code or str(status))

    def _headers(self) -> dict[str, str]:
        return {"x-amz-access-token": self._tokens.token(), "user-agent": USER_AGENT, "accept": "application/json"}

    def _retry_sleep(self, operation: str, attempt: int, why: str) -> None:
        delay = self._backoff(attempt)
        self.stats.retries += 1
        log.info("spapi_retry", account=self._account, operation=operation, attempt=attempt, delay=round(delay, 3), why=why)
        self._sleep(delay)

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except (ValueError, json.JSONDecodeError):
            return {"errors": [{"code": "MalformedResponse", "message": "the answer was not JSON"}]} if response.status_code >= 300 else None

    @staticmethod
    def _adopt_rate_limit(bucket: TokenBucket, response: httpx.Response) -> None:
        announced = response.headers.get("x-amzn-RateLimit-Limit")
        if not announced:
            return
        try:
            rate = float(announced)
        except ValueError:
            return
        if rate > 0 and abs(rate * RATE_SAFETY - bucket.rate) > 1e-9:
            bucket.reconfigure(rate=rate * RATE_SAFETY)

    # -- documents and long-running jobs shared by Feeds and Reports --------------------------------
    def document(self, operation: str, path: str, what: str) -> bytes:
        """getFeedDocument / getReportDocument, then the download, gunzipped when compressed."""
        body = self.call(operation, "GET", path, context=what).body
        if not isinstance(body, dict) or not body.get("url"):
            raise InvalidInput(f"Amazon {operation} for {what}: the answer has no url")
        data = self.download(body["url"], what)
        try:
            return maybe_gunzip(data, body.get("compressionAlgorithm"))
        except (OSError, EOFError) as exc:
            raise InvalidInput(f"{what}: cannot gunzip ({exc})") from None

    def wait_until_done(self, operation: str, path: str, what: str, *, timeout: float, interval: float) -> dict[str, Any]:
        """getFeed / getReport until processingStatus is DONE, CANCELLED or FATAL."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.call(operation, "GET", path, context=what).body
            if not isinstance(body, dict) or "processingStatus" not in body:
                raise InvalidInput(f"Amazon {operation} for {what}: the answer has no processingStatus")
            if body["processingStatus"] in TERMINAL:
                return body
            if time.monotonic() >= deadline:
                raise TransientError(f"{what} still {body['processingStatus']} after {timeout:.0f} s; check again later")
            self._sleep(interval)

    # -- presigned document URLs: no SP-API auth, a plain GET or PUT --------------------------------
    def download(self, url: str, what: str) -> bytes:
        return self._presigned("GET", url, f"downloading {what}").content

    def upload(self, url: str, content: bytes, content_type: str, what: str) -> None:
        # The presigned URL is signed for this exact Content-Type; anything else is refused.
        self._presigned("PUT", url, f"uploading {what}", content=content, headers={"Content-Type": content_type})

    def _presigned(self, method: str, url: str, doing: str, **kwargs: Any) -> httpx.Response:
        """A call to a presigned URL, retried on 5xx and dropped connections. The URL itself is a
        credential for a few minutes, so it is never put into a message."""
        where = f"{doing} for account {self._account!r}"
        for attempt in range(1, self._retry.max_attempts + 1):
            try:
                response = self._http.request(method, url, timeout=self._timeout, **kwargs)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if attempt == self._retry.max_attempts:
                    raise TransientError(f"{where}: {type(exc).__name__}; gave up after {attempt} attempts") from None
                self._retry_sleep(method.lower(), attempt, type(exc).__name__)
                continue
            if 200 <= response.status_code < 300:
                return response
            if response.status_code >= 500 and attempt < self._retry.max_attempts:
                self._retry_sleep(method.lower(), attempt, f"HTTP {response.status_code}")
                continue
            error = TransientError if response.status_code >= 500 else PermanentError
            raise error(f"{where}: HTTP {response.status_code}")
        raise AssertionError("unreachable")
