"""A token bucket: the one rate-limit model used by the clients (wait for a token) and by the
stand-ins (refuse past the limit). Amazon's per-operation rate and burst and Shopify's cost-based
leaky bucket are both this shape: a capacity that refills at a steady rate."""
from __future__ import annotations

import threading
import time
from typing import Callable


class TokenBucket:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError(f"a token bucket needs a positive rate and burst, not rate={rate} burst={burst}")
        self._rate = float(rate)
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def reconfigure(self, rate: float | None = None, burst: float | None = None, *, level: float | None = None) -> None:
        """Adopt a limit the server announced (e.g. x-amzn-RateLimit-Limit), in place (a thread waiting in take()
        waits on this bucket, not on one replaced under it); never raises the level, unless given the level the
        server reports (Shopify's throttleStatus)."""
        with self._lock:
            self._refill()
            if rate is not None and rate > 0:
                self._rate = float(rate)
            if burst is not None and burst > 0:
                self._burst = float(burst)
            self._tokens = min(self._tokens if level is None else max(0.0, float(level)), self._burst)

    def give(self, tokens: float) -> None:
        """Put back what a request that was never charged took."""
        with self._lock:
            self._refill()
            self._tokens = min(self._burst, self._tokens + tokens)

    def available(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens

    def try_take(self, cost: float = 1.0) -> bool:
        with self._lock:
            self._refill()
            if self._tokens >= cost:
                self._tokens -= cost
                return True
            return False

    def wait_time(self, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens are there (0 when they are there now)."""
        with self._lock:
            self._refill()
            missing = cost - self._tokens
            return 0.0 if missing <= 0 else missing / self._rate

    def take(self, cost: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> float:
        """Block until `cost` tokens are taken; returns the seconds waited (for the throttle-wait metric)."""
        waited = 0.0
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= cost:
                    self._tokens -= cost
                    return waited
                pause = (cost - self._tokens) / self._rate
            sleep(pause)
            waited += pause
