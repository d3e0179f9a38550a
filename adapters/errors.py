"""The errors every adapter raises, so the dispatcher can tell 'try again later' from 'a person must look'.

Messages name the account, order, row or field and say what to do; they never contain a secret."""
from __future__ import annotations


class AdapterError(Exception):
    """Base of adapter failures. `permanent` tells the dispatcher whether a retry can help."""

    permanent: bool = True

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_after = retry_after


class TransientError(AdapterError):
    """Throttled, timed out, 5xx, connection dropped: the same call may succeed later."""

    permanent = False


class PermanentError(AdapterError):
    """Not found, already shipped, refund over what is refundable, bad credentials: retrying won't help."""

    permanent = True


class AuthError(PermanentError):
    """Credentials were refused (e.g. a revoked refresh token); names the account, never the secret."""


class InvalidInput(PermanentError):
    """A report row, API answer or file that does not have the shape it must have; names the place."""
