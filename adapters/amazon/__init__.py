"""Amazon Selling Partner API adapter: LWA login, Orders (v2026-01-01 and v0), Reports, Feeds, Finances
(refund events) and ORDER_CHANGE notifications, normalised into `AmazonOrder`, `ReturnRow`, `AmazonRefund`
and per-message feed results.

Construct one `AmazonClient(AmazonAccount(...))` per seller account; see docs/amazon.md."""
from adapters.amazon.auth import Secret
from adapters.amazon.client import AmazonAccount, AmazonClient
from adapters.amazon.feeds import AdjustedItem, AdjustmentRequest, BuiltFeed, CancelItem, CancelRequest, FeedValidator
from adapters.amazon.http import RetryPolicy
from adapters.amazon.models import (
    AmazonOrder,
    AmazonOrderLine,
    AmazonRefund,
    AmazonRefundItem,
    BuyerCancelRow,
    FeedOutcome,
    MessageResult,
    OrderCursor,
    OrderPage,
    OrderStatus,
    Parsed,
    RecordError,
    ReturnItem,
    ReturnRow,
)
from adapters.amazon.notifications import OrderChange, parse_order_change
from adapters.amazon.reports import parse_order_report, parse_returns_file, parse_returns_report

__all__ = [
    "AdjustedItem", "AdjustmentRequest", "AmazonAccount", "AmazonClient", "AmazonOrder", "AmazonOrderLine",
    "AmazonRefund", "AmazonRefundItem", "BuiltFeed", "BuyerCancelRow", "CancelItem", "CancelRequest", "FeedOutcome",
    "FeedValidator", "MessageResult", "OrderChange", "OrderCursor", "OrderPage", "OrderStatus", "Parsed", "RecordError",
    "RetryPolicy", "ReturnItem", "ReturnRow", "Secret", "parse_order_change", "parse_order_report", "parse_returns_file",
    "parse_returns_report",
]
