"""One shop's connection to the Admin GraphQL API: POST /admin/api/{version}/graphql.json with
X-Shopify-Access-Token, paced by a client-side copy of Shopify's cost bucket.

Pacing: before sending, the transport estimates the operation's requested cost (`cost.py`) and waits
until its copy of the bucket holds that much; every answer's `extensions.cost.throttleStatus`
resets the copy to the server's figures, less the points of this transport's requests still in flight (the
account's jobs share it from several threads, and an answer may have been counted before another thread's
request was charged), so the copy follows the real bucket (which other apps on the same shop also drain). Every answer also carries Shopify's own `requestedQueryCost`; the
transport remembers it per operation and waits for the larger of that and its estimate next time, so
an estimate that runs low costs at most one THROTTLED answer per operation, not one per call.
If Shopify still answers THROTTLED, the transport waits
(requested - currentlyAvailable) / restoreRate, exactly what the bucket needs, and sends again.

Failures become `adapters.errors` classes: THROTTLED past the retry budget, 5xx, timeouts and dropped
connections are `TransientError`; 401/403 and ACCESS_DENIED are `AuthError`; a query Shopify refuses
as invalid or too expensive is `InvalidInput` (a bug on our side, retrying won't help).
The access token is kept in one private attribute; it never appears in a log line, an exception
message or a repr.
"""
from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import httpx
import structlog
from graphql import DocumentNode, parse

from adapters.errors import AdapterError, AuthError, InvalidInput, PermanentError, TransientError
from adapters.ratelimit import TokenBucket
from adapters.shopify.cost import requested_cost

log = structlog.get_logger("adapters.shopify")

# Until the first answer tells the real bucket, assume the smallest one Shopify has published
# (1000 points refilling at 50/s); the first throttleStatus replaces it.
DEFAULT_BUCKET = (1000.0, 50.0)


@dataclass
class TransportStats:
    """What pacing cost: for the throttle metrics and for tests that prove the bucket was respected."""

    requests: int = 0
    throttled: int = 0
    retries: int = 0
    paced_seconds: float = 0.0
    throttle_wait_seconds: float = 0.0


def base_url_for(shop: str) -> str:
    """'acme' or 'acme.myshopify.com' → https://acme.myshopify.com; a URL (e.g. a stand-in) is kept."""
    shop = shop.strip().rstrip("/")
    if not shop:
        raise ValueError("a Shopify shop domain or base URL is required")
    if "://" in shop:
        return shop
    return f"https://{shop if '.' in shop else shop + '.myshopify.com'}"


@functools.lru_cache(maxsize=64)
def _parsed(query: str) -> DocumentNode:
    return parse(query)


class ShopifyTransport:
    def __init__(
        self,
        shop: str,
        access_token: str,
        api_version: str = "2025-01",
        *,
        timeout: float = 10.0,
        max_attempts: int = 4,
        max_throttle_retries: int = 8,
        max_throttle_wait: float = 30.0,
        backoff: float = 0.5,
        initial_bucket: tuple[float, float] = DEFAULT_BUCKET,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not access_token:
            raise ValueError("a Shopify access token is required")
        self.base_url = base_url_for(shop)
        self.shop = shop
        self.api_version = api_version
        self.endpoint = f"{self.base_url}/admin/api/{api_version}/graphql.json"
        self.__token = access_token
        self._http = http or httpx.Client(timeout=timeout)
        self._owns_http = http is None
        self._max_attempts = max(1, max_attempts)
        self._max_throttle_retries = max_throttle_retries
        self._max_throttle_wait = max_throttle_wait
        self._backoff = backoff
        self._sleep = sleep
        maximum, rate = initial_bucket
        self.bucket = TokenBucket(rate, maximum)
        # Points taken for requests sent and not answered yet, by any thread: an answer's throttleStatus may not
        # have them charged yet, so adopting it leaves them out.
        self._in_flight = 0.0
        self._in_flight_lock = threading.Lock()
        self.stats = TransportStats()
        # (operation name, our estimate) -> the requestedQueryCost Shopify reported for it.
        self._reported_cost: dict[tuple[str, int], int] = {}

    def __repr__(self) -> str:
        return f"ShopifyTransport(endpoint={self.endpoint!r})"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    # -- pacing ---------------------------------------------------------------------------------
    def _adopt(self, status: Mapping[str, Any] | None) -> None:
        """Make the local bucket a copy of the server's (size, refill rate and current level)."""
        try:
            maximum = float(status["maximumAvailable"])  # type: ignore[index]
            current = float(status["currentlyAvailable"])  # type: ignore[index]
            rate = float(status["restoreRate"])  # type: ignore[index]
        except (TypeError, KeyError, ValueError):
            return
        if maximum <= 0 or rate <= 0:
            return
        with self._in_flight_lock:
            in_flight = self._in_flight
        self.bucket.reconfigure(rate, maximum, level=current - in_flight)

    def _flying(self, points: float) -> None:
        with self._in_flight_lock:
            self._in_flight = max(0.0, self._in_flight + points)

    def _give_back(self, points: float) -> None:
        """A request that never reached the GraphQL layer (5xx, timeout, dropped) cost nothing there."""
        self.bucket.give(points)

    # -- the call -------------------------------------------------------------------------------
    def execute(self, query: str, variables: Mapping[str, Any] | None = None, *, operation_name: str | None = None) -> dict[str, Any]:
        """The `data` of a successful answer; raises an AdapterError subclass otherwise."""
        variables = dict(variables or {})
        document = _parsed(query)
        name = operation_name or "graphql"
        local = requested_cost(document, variables, operation_name)
        estimate = max(local, self._reported_cost.get((name, local), 0))
        attempts = 0
        throttles = 0
        while True:
            needed = min(estimate, self.bucket.burst)
            pause = self.bucket.wait_time(needed)
            if pause > self._max_throttle_wait:
                # Blocking a dispatcher thread for minutes helps nobody: hand the wait back to it.
                raise TransientError(f"Shopify {name} on {self.shop}: the cost bucket needs {pause:.1f}s to hold {needed} points",
                                     code="THROTTLED", retry_after=pause)
            self.stats.paced_seconds += self.bucket.take(needed, sleep=self._sleep)
            self.stats.requests += 1
            self._flying(needed)
            try:
                response = self._http.post(
                    self.endpoint,
                    json={"query": query, "variables": variables, "operationName": operation_name},
                    headers={"X-Shopify-Access-Token": self.__token, "Content-Type": "application/json", "Accept": "application/json"},
                )
            except httpx.TimeoutException:
                self._give_back(needed)
                attempts = self._retry_or_raise(attempts, name, "TIMEOUT", f"Shopify {name} timed out ({self.shop})")
                continue
            except httpx.TransportError as exc:
                self._give_back(needed)
                attempts = self._retry_or_raise(attempts, name, "CONNECTION", f"Shopify {name}: connection failed ({self.shop}: {type(exc).__name__})")
                continue
            finally:
                # Answered (or not at all): the server's figures from now on count this request, or never will.
                self._flying(-needed)
            status = response.status_code
            if status in (401, 403):
                what = "the access token was refused" if status == 401 else "the access token lacks a scope this call needs"
                raise AuthError(f"Shopify {name} on {self.shop}: HTTP {status}, {what}", code=f"HTTP_{status}")
            if status == 429 or status >= 500:
                self._give_back(needed)
                retry_after = _float(response.headers.get("Retry-After"))
                attempts = self._retry_or_raise(attempts, name, f"HTTP_{status}", f"Shopify {name} on {self.shop}: HTTP {status}", retry_after)
                continue
            if status >= 400:
                meaning = {402: "the shop is frozen (unpaid)", 404: "unknown shop or API version", 423: "the shop is locked"}.get(status, "refused")
                raise PermanentError(f"Shopify {name} on {self.shop}: HTTP {status}, {meaning}", code=f"HTTP_{status}")
            try:
                body = response.json()
            except ValueError:
                attempts = self._retry_or_raise(attempts, name, "BAD_RESPONSE", f"Shopify {name} on {self.shop}: the answer was not JSON")
                continue
            cost = ((body.get("extensions") or {}).get("cost") or {}) if isinstance(body, dict) else {}
            self._adopt(cost.get("throttleStatus"))
            reported = _float(cost.get("requestedQueryCost"))
            if reported is not None and reported > 0:
                self._reported_cost[(name, local)] = int(reported + 0.999)
                # Shopify's own figure wins over our estimate from now on.
                estimate = max(local, self._reported_cost[(name, local)])
            errors = body.get("errors") if isinstance(body, dict) else None
            if errors:
                code = _error_code(errors)
                if code == "THROTTLED":
                    throttles += 1
                    self.stats.throttled += 1
                    wait = self._throttle_wait(cost, estimate)
                    log.info("shopify.throttled", operation=name, shop=self.shop, wait_seconds=round(wait, 3))
                    if throttles > self._max_throttle_retries or wait > self._max_throttle_wait:
                        raise TransientError(f"Shopify {name} on {self.shop}: still throttled after {throttles} tries", code="THROTTLED", retry_after=wait)
                    self.stats.throttle_wait_seconds += wait
                    self._sleep(wait)
                    continue
                raise self._error_for(code, errors, name)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, dict):
                raise TransientError(f"Shopify {name} on {self.shop}: the answer had no data", code="BAD_RESPONSE")
            log.debug("shopify.request", operation=name, shop=self.shop, requested=cost.get("requestedQueryCost"),
                      actual=cost.get("actualQueryCost"), available=(cost.get("throttleStatus") or {}).get("currentlyAvailable"))
            return data

    def _throttle_wait(self, cost: Mapping[str, Any], estimate: int) -> float:
        """(requested - currentlyAvailable) / restoreRate: the time the bucket needs, no more.
        The local copy was just reset to the same figures and refills while we sleep, so the
        next take() finds the points there and does not wait a second time."""
        status = cost.get("throttleStatus") or {}
        requested = _float(cost.get("requestedQueryCost")) or float(estimate)
        available = _float(status.get("currentlyAvailable"))
        rate = _float(status.get("restoreRate")) or self.bucket.rate
        if available is None:
            return requested / rate
        return max(0.0, (requested - available) / rate)

    def _retry_or_raise(self, attempts: int, name: str, code: str, message: str, retry_after: float | None = None) -> int:
        attempts += 1
        if attempts >= self._max_attempts:
            raise TransientError(f"{message}; gave up after {attempts} attempts", code=code, retry_after=retry_after)
        self.stats.retries += 1
        pause = retry_after if retry_after is not None else self._backoff * (2 ** (attempts - 1))
        log.info("shopify.retry", operation=name, shop=self.shop, code=code, attempt=attempts, pause_seconds=pause)
        self._sleep(pause)
        return attempts

    def _error_for(self, code: str | None, errors: list[Any], name: str) -> AdapterError:
        first = errors[0] if isinstance(errors, list) and errors else errors
        message = first.get("message") if isinstance(first, dict) else str(first)
        text = f"Shopify {name} on {self.shop}: {message}"
        if code in ("ACCESS_DENIED", "UNAUTHORIZED"):
            return AuthError(text, code=code)
        if code in ("INTERNAL_SERVER_ERROR", "IDEMPOTENCY_CONCURRENT_REQUEST", "SERVICE_UNAVAILABLE"):
            return TransientError(text, code=code)
        if code in ("IDEMPOTENCY_KEY_PARAMETER_MISMATCH", "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"):
            return PermanentError(text, code=code)
        return InvalidInput(text, code=code or "GRAPHQL_ERROR")


def _error_code(errors: Any) -> str | None:
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, dict):
                code = (error.get("extensions") or {}).get("code")
                if code:
                    return str(code)
    return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
