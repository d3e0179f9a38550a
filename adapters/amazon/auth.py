"""Login with Amazon: trade the seller's refresh token for an access token, keep it until shortly
before it expires, and turn LWA's error codes into errors a person can act on. Secrets are held in
`Secret` wrappers so that no repr, log line or exception can print them."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import httpx
import structlog

from adapters.errors import AuthError, TransientError

log = structlog.get_logger("ordersync.amazon.auth")

# Amazon's own samples refresh 30-60 s early; a minute leaves room for a slow call after the check.
EXPIRY_MARGIN_SECONDS = 60.0

_LWA_MESSAGES = {
    "invalid_grant": "the refresh token was refused (revoked, expired, or issued to another app): "
    "the seller must authorise the app again",
    "invalid_client": "the LWA client id or client secret was refused: check the app credentials",
    "unauthorized_client": "this LWA client may not use the refresh-token grant",
    "access_denied": "access was denied by the seller or by Amazon",
    "invalid_request": "LWA said the token request is malformed",
    "invalid_scope": "LWA refused the requested scope",
}
_LWA_RETRYABLE = {"server_error", "temporarily_unavailable"}


class Secret:
    """A string that never shows itself; `.reveal()` is the one way out."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("an empty secret was given")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class LwaCredentials:
    client_id: str
    client_secret: Secret
    refresh_token: Secret

    @classmethod
    def of(cls, client_id: str, client_secret: str | Secret, refresh_token: str | Secret) -> "LwaCredentials":
        wrap = lambda value: value if isinstance(value, Secret) else Secret(value)  # noqa: E731
        return cls(client_id, wrap(client_secret), wrap(refresh_token))


class LwaTokenProvider:
    """Gives a valid access token for one seller account, fetching a new one only when needed."""

    def __init__(
        self,
        http: httpx.Client,
        token_url: str,
        credentials: LwaCredentials,
        account: str,
        clock: Callable[[], float] = time.monotonic,
        timeout: float | None = None,
    ) -> None:
        self._http = http
        # Per request, so a caller's own httpx.Client (without a timeout) still cannot hang a login.
        self._timeout = timeout if timeout is not None else 30.0
        self._token_url = token_url
        self._credentials = credentials
        self._account = account
        self._clock = clock
        self._token: Secret | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.fetches = 0

    def __repr__(self) -> str:
        return f"LwaTokenProvider(account={self._account!r}, token_url={self._token_url!r})"

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - EXPIRY_MARGIN_SECONDS:
                self._fetch()
            assert self._token is not None
            return self._token.reveal()

    def invalidate(self) -> None:
        """Forget the cached token (the API said 401/403), so the next call logs in again."""
        with self._lock:
            self._token = None

    def _grant(self) -> dict[str, str]:
        creds = self._credentials
        return {
            "grant_type": "refresh_token",
            "refresh_token": creds.refresh_token.reveal(),
            "client_id": creds.client_id,
            "client_secret": creds.client_secret.reveal(),
        }

    def _fetch(self) -> None:
        where = f"Amazon login (LWA) for account {self._account!r}"
        try:
            # The revealed form is built inside the call, never bound to a local of this frame: error
            # trackers and structlog's dict_tracebacks print the locals of every frame an error passes.
            response = self._http.post(
                self._token_url,
                data=self._grant(),
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"},
                timeout=self._timeout,
            )
        except httpx.TimeoutException:
            raise TransientError(f"{where}: timed out", code="timeout") from None
        except httpx.TransportError as exc:
            raise TransientError(f"{where}: {type(exc).__name__}", code="connection") from None
        self.fetches += 1
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            code = str(body.get("error") or "other") if isinstance(body, dict) else "other"
            # error_description is Amazon's text about our request; it never echoes the secret.
            detail = str(body.get("error_description") or "") if isinstance(body, dict) else ""
            explanation = _LWA_MESSAGES.get(code, f"LWA answered HTTP {response.status_code}")
            message = f"{where}: {code}: {explanation}" + (f" ({detail})" if detail else "")
            log.warning("lwa_token_refused", account=self._account, error=code, status=response.status_code)
            if code in _LWA_RETRYABLE or response.status_code >= 500:
                raise TransientError(message, code=code)
            raise AuthError(message, code=code)
        try:
            expires_in = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        self._token = Secret(str(body["access_token"]))
        self._expires_at = self._clock() + expires_in
        log.info("lwa_token_fetched", account=self._account, expires_in=expires_in)
