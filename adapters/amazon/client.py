"""`AmazonClient`: everything the daemon asks of one seller account, over one httpx connection pool."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

import httpx

from adapters.amazon.auth import LwaCredentials, LwaTokenProvider, Secret
from adapters.amazon.feeds import (
    AdjustmentRequest,
    BuiltFeed,
    CancelRequest,
    FeedsApi,
    FeedValidator,
    build_adjustment_feed,
    build_cancellation_feed,
)
from adapters.amazon.finances import FinancesApi
from adapters.amazon.http import RetryPolicy, SpApiTransport
from adapters.amazon.models import (
    AmazonOrder,
    AmazonRefund,
    BuyerCancelRow,
    FeedOutcome,
    OrderCursor,
    OrderPage,
    Parsed,
    ReturnRow,
)
from adapters.amazon.notifications import OrderChange, parse_order_change
from adapters.amazon.orders import OrdersApi
from adapters.amazon.reports import ReportsApi
from adapters.errors import AdapterError, AuthError, InvalidInput, PermanentError

LWA_TOKEN_URL = "https://api.amazon.com/auth/o2/token"


def order_unknown(exc: AdapterError) -> bool:
    """Whether get_order's error says Amazon has no such order for this seller (HTTP 404), as opposed to
    Amazon not answering or refusing the app (which say nothing about the order)."""
    return isinstance(exc, PermanentError) and not isinstance(exc, (AuthError, InvalidInput)) and exc.code in ("NotFound", "404")


@dataclass(frozen=True)
class AmazonAccount:
    """One seller account's settings. The caller reads the secrets from env or files and passes them in."""

    name: str
    endpoint: str  # e.g. https://sellingpartnerapi-na.amazon.com
    client_id: str
    client_secret: Secret
    refresh_token: Secret
    marketplace_ids: tuple[str, ...]
    merchant_id: str  # the seller id, MerchantIdentifier in feeds
    token_url: str = LWA_TOKEN_URL
    orders_api_version: Literal["2026-01-01", "v0"] = "2026-01-01"
    timeout: float = 30.0
    retry: RetryPolicy = RetryPolicy()
    rate_limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    poll_interval: float = 30.0  # seconds between getFeed / getReport checks
    xsd_dir: Path | None = None

    def __post_init__(self) -> None:
        for name in ("client_secret", "refresh_token"):
            value = getattr(self, name)
            if not isinstance(value, Secret):
                object.__setattr__(self, name, Secret(value))


class AmazonClient:
    def __init__(self, account: AmazonAccount, *, http: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.account = account
        self._own_http = http is None
        self._http = http or httpx.Client(timeout=httpx.Timeout(account.timeout))
        credentials = LwaCredentials(account.client_id, account.client_secret, account.refresh_token)
        self.tokens = LwaTokenProvider(self._http, account.token_url, credentials, account.name, timeout=account.timeout)
        self.transport = SpApiTransport(account.endpoint, self.tokens, account.name, self._http,
                                        rate_limits=account.rate_limits, retry=account.retry, sleep=sleep,
                                        timeout=account.timeout)
        marketplaces = list(account.marketplace_ids)
        self.orders = OrdersApi(self.transport, marketplaces, account.orders_api_version)
        self.reports = ReportsApi(self.transport, marketplaces, poll_interval=account.poll_interval, sleep=sleep)
        self._validator: FeedValidator | None = None
        self.feeds = FeedsApi(self.transport, marketplaces, None, poll_interval=account.poll_interval, sleep=sleep)
        self.finances = FinancesApi(self.transport)

    def __repr__(self) -> str:
        return f"AmazonClient(account={self.account.name!r}, endpoint={self.account.endpoint!r})"

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> "AmazonClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- orders ---------------------------------------------------------------------------------------
    def poll_orders(self, cursor: OrderCursor | str) -> OrderPage:
        return self.orders.poll(cursor)

    def get_order(self, order_id: str) -> AmazonOrder:
        return self.orders.get_order(order_id)

    def order_change(self, body: str | bytes | dict[str, Any]) -> OrderChange:
        return parse_order_change(body)

    # -- reports --------------------------------------------------------------------------------------
    def buyer_cancel_requests(self, since: str) -> Parsed[BuyerCancelRow]:
        return self.reports.buyer_cancel_requests(since)

    def returns(self, since: str, fmt: str = "XML") -> Parsed[ReturnRow]:
        return self.reports.returns(since, fmt)

    # -- finances -------------------------------------------------------------------------------------
    def refunds(self, posted_after: str, posted_before: str) -> Parsed[AmazonRefund]:
        return self.finances.refunds(posted_after, posted_before)

    def refunds_of_order(self, order_id: str) -> Parsed[AmazonRefund]:
        return self.finances.refunds_of_order(order_id)

    # -- feeds ----------------------------------------------------------------------------------------
    @property
    def validator(self) -> FeedValidator:
        if self._validator is None:
            self._validator = FeedValidator(self.account.xsd_dir)
            self.feeds._validator = self._validator
        return self._validator

    def build_cancellation_feed(self, requests: Iterable[CancelRequest]) -> BuiltFeed:
        feed = build_cancellation_feed(self.account.merchant_id, requests)
        self.validator.check(feed)
        return feed

    def build_adjustment_feed(self, requests: Iterable[AdjustmentRequest]) -> BuiltFeed:
        feed = build_adjustment_feed(self.account.merchant_id, requests)
        self.validator.check(feed)
        return feed

    def submit_feed(self, feed: BuiltFeed) -> str:
        self.validator  # noqa: B018 - loads the schema so submit checks the feed again before sending
        return self.feeds.submit(feed)

    def feed_outcome(self, feed_id: str, feed: BuiltFeed | Iterable[int], timeout: float = 3600.0) -> FeedOutcome:
        return self.feeds.outcome(feed_id, feed, timeout)
