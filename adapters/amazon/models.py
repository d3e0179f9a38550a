"""The normalised shapes the adapter hands to the daemon, whatever the source (Orders v2026, Orders v0,
an ORDER_CHANGE notification, a report, a file). Money is Decimal: the APIs send it as text and a float
would round a refund."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Generic, Literal, Sequence, TypeVar


class OrderStatus(str, Enum):
    PENDING = "Pending"
    UNSHIPPED = "Unshipped"
    PARTIALLY_SHIPPED = "PartiallyShipped"
    SHIPPED = "Shipped"
    CANCELED = "Canceled"
    UNFULFILLABLE = "Unfulfillable"
    INVOICE_UNCONFIRMED = "InvoiceUnconfirmed"
    PENDING_AVAILABILITY = "PendingAvailability"


Fulfillment = Literal["FBA", "FBM"]
Source = Literal["orders-v2026", "orders-v0", "notification", "report"]


@dataclass(frozen=True)
class AmazonOrderLine:
    order_item_id: str
    sku: str | None
    quantity_ordered: int
    quantity_shipped: int = 0
    quantity_cancelled: int = 0
    # v0 ItemPrice is the line total; v2026 gives the unit price. We keep both, derived where needed.
    unit_price: Decimal | None = None
    line_price: Decimal | None = None
    asin: str | None = None
    buyer_cancel_requested: bool = False
    buyer_cancel_reason: str | None = None
    cancelled_by: str | None = None
    cancel_reason: str | None = None


@dataclass(frozen=True)
class AmazonOrder:
    amazon_order_id: str
    status: OrderStatus
    fulfillment: Fulfillment | None
    lines: tuple[AmazonOrderLine, ...]
    last_updated: datetime | None
    purchase_date: datetime | None = None
    marketplace_id: str | None = None
    order_total: Decimal | None = None
    currency: str | None = None
    # Order-level roll-ups of the line flags, because rules read them per order.
    buyer_cancel_requested: bool = False
    buyer_cancel_reason: str | None = None
    cancellation_requester: str | None = None
    cancelled_by: str | None = None
    cancel_reason: str | None = None
    source: Source = "orders-v2026"

    @property
    def units_ordered(self) -> int:
        return sum(line.quantity_ordered for line in self.lines)

    @property
    def units_shipped(self) -> int:
        return sum(line.quantity_shipped for line in self.lines)

    @property
    def units_cancelled(self) -> int:
        return sum(line.quantity_cancelled for line in self.lines)

    def of_marketplaces(self, marketplace_ids: Sequence[str]) -> bool:
        """Whether the order may be of one of these marketplaces (an account's): Amazon gives a seller's account every
        marketplace's orders. An order that names none, or an account that lists none, may be."""
        return not (self.marketplace_id and marketplace_ids and self.marketplace_id not in marketplace_ids)


def rollup(order: AmazonOrder) -> AmazonOrder:
    """Fill the order-level buyer-request and cancellation fields from the lines (first one wins)."""
    from dataclasses import replace

    requested = [line for line in order.lines if line.buyer_cancel_requested]
    cancelled = [line for line in order.lines if line.cancelled_by or line.cancel_reason]
    return replace(
        order,
        buyer_cancel_requested=order.buyer_cancel_requested or bool(requested),
        buyer_cancel_reason=order.buyer_cancel_reason
        or next((line.buyer_cancel_reason for line in requested if line.buyer_cancel_reason), None),
        cancellation_requester=order.cancellation_requester or ("BUYER" if requested else None),
        cancelled_by=order.cancelled_by or next((line.cancelled_by for line in cancelled if line.cancelled_by), None),
        cancel_reason=order.cancel_reason or next((line.cancel_reason for line in cancelled if line.cancel_reason), None),
    )


@dataclass(frozen=True)
class RecordError:
    """One bad order, row, message or field; the rest of the batch is still delivered."""

    where: str
    message: str
    order_id: str | None = None  # the Amazon order the bad record is about, when it names one that can be read

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


T = TypeVar("T")


@dataclass
class Parsed(Generic[T]):
    """Good records, per-record errors, and notices a person should read once (e.g. a missing column)."""

    records: list[T] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OrderCursor:
    """Where the next poll starts. `high_water` is Amazon's own lastUpdatedBefore from the last complete
    sweep, never our clock, so orders updated during the sweep are not skipped."""

    high_water: str
    api_version: str = "2026-01-01"

    def to_json(self) -> dict[str, str]:
        return {"high_water": self.high_water, "api_version": self.api_version}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> "OrderCursor":
        return cls(high_water=data["high_water"], api_version=data.get("api_version", "2026-01-01"))


@dataclass
class OrderPage:
    orders: list[AmazonOrder]
    errors: list[RecordError]
    next_cursor: OrderCursor


@dataclass(frozen=True)
class BuyerCancelRow:
    """A row of the all-orders-by-last-update flat file, for the buyer-cancel-request columns."""

    row: int
    amazon_order_id: str
    order_item_id: str | None
    sku: str | None
    order_status: str | None
    quantity: int | None
    buyer_cancel_requested: bool
    buyer_cancel_reason: str | None
    last_updated: str | None
    fulfillment_channel: str | None


@dataclass(frozen=True)
class ReturnItem:
    sku: str | None
    asin: str | None
    quantity: int
    reason: str | None
    order_item_id: str | None = None
    item_name: str | None = None
    in_policy: bool | None = None
    resolution: str | None = None
    refund_amount: Decimal | None = None


@dataclass(frozen=True)
class ReturnRow:
    """One RMA from Amazon's returns report (XML or TSV; a TSV RMA spans one row per item)."""

    rma_id: str
    amazon_order_id: str
    status: str | None
    items: tuple[ReturnItem, ...]
    tracking_number: str | None = None
    carrier: str | None = None
    label_type: str | None = None
    label_cost: Decimal | None = None
    label_paid_by: str | None = None
    currency: str | None = None
    return_request_date: str | None = None
    order_date: str | None = None
    merchant_rma_id: str | None = None
    a_to_z_claim: bool | None = None
    is_prime: bool | None = None
    source_rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class MessageResult:
    """The fate of one feed message (one queued cancellation or refund)."""

    message_id: int
    success: bool
    result_code: str | None = None  # Error | Warning
    error_code: str | None = None
    description: str | None = None
    amazon_order_id: str | None = None
    order_item_code: str | None = None


@dataclass
class FeedOutcome:
    feed_id: str
    processing_status: str  # DONE | CANCELLED | FATAL
    status_code: str | None  # the processing report's Complete | Processing | Rejected
    results: dict[int, MessageResult]
    messages_processed: int | None = None
    errors: list[RecordError] = field(default_factory=list)


@dataclass(frozen=True)
class AmazonRefundItem:
    """One item of a refund event (a ShipmentItemAdjustmentList entry of the Finances API)."""

    order_item_id: str  # OrderItemId
    sku: str | None  # SellerSKU
    adjustment_id: str | None  # OrderAdjustmentItemId
    quantity: int  # QuantityShipped of the adjustment item (0 when absent)
    # What the buyer got back for this item, positive: refund events carry charge adjustments negative, so
    # this is minus their sum (charges and promotions). Fees are between Amazon and the seller, not the buyer's.
    # Negative when the money came back to the seller (a chargeback reversal).
    amount: Decimal


# The Finances v0 lists that carry money going back to a buyer, as `AmazonRefund.kind`: RefundEventList (a
# refund by the seller, in Seller Central or by feed), GuaranteeClaimEventList (an A-to-z Guarantee claim Amazon
# granted) and ChargebackEventList (a chargeback by the buyer's bank, or its reversal).
REFUND_KINDS = ("refund", "guarantee_claim", "chargeback")


@dataclass(frozen=True)
class AmazonRefund:
    """One event of the Finances API in which money of an order went back to its buyer: a RefundEvent, a
    GuaranteeClaimEvent or a ChargebackEvent (all of the ShipmentEvent shape), which `kind` tells apart."""

    amazon_order_id: str
    posted: str  # PostedDate as ISO 8601 text in UTC ending in 'Z', whole seconds
    currency: str | None  # CurrencyCode of the amounts
    items: tuple[AmazonRefundItem, ...]
    # MarketplaceName as Amazon wrote it (e.g. "Amazon.com"), None when the event has none: a name, not a
    # marketplace id; `finances.of_marketplaces` tells whether it is one of the account's marketplaces.
    marketplace: str | None = None
    kind: str = "refund"  # one of REFUND_KINDS: the list the event came from

    def __post_init__(self) -> None:
        if self.kind not in REFUND_KINDS:
            raise ValueError(f"AmazonRefund kind {self.kind!r} is not one of {', '.join(REFUND_KINDS)}")

    @property
    def amount(self) -> Decimal:
        """What the buyer got back, the items' sum. Negative for a chargeback reversal: the money of an
        earlier chargeback came back to the seller, so it no longer counts as given back."""
        return sum((item.amount for item in self.items), Decimal(0))

    @property
    def key(self) -> str:
        """Identity for de-duplication: windows that overlap, or a poll repeated after a failure, read the
        same event again. Adjustment ids are Amazon's own and unique; an item without one falls back to its
        order item id, which the posting time keeps apart from other refunds of the same line.

        A guarantee claim or chargeback has its kind in front: a claim and a refund of the same item posted
        in the same second are two sums of money, and without adjustment ids they would share a key, so one
        would be dropped as a repeat of the other. A refund's key has no prefix, as before kinds existed,
        because keys already stored must keep naming the same refunds."""
        ids = sorted(item.adjustment_id or item.order_item_id for item in self.items)
        key = f"{self.posted}|" + "+".join(ids)
        return key if self.kind == "refund" else f"{self.kind}|{key}"
