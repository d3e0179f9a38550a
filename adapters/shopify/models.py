"""The storefront order as the rules read it, normalised from Shopify's Order object.

Status mapping (documented in docs/shopify.md, tested in tests/shopify/test_shopify_reads.py):

shipping_status, from displayFulfillmentStatus:
  FULFILLED → Shipped; PARTIALLY_FULFILLED → PartiallyShipped; everything else (UNFULFILLED,
  ON_HOLD, OPEN, IN_PROGRESS, SCHEDULED, PENDING_FULFILLMENT, REQUEST_DECLINED, RESTOCKED) → Unshipped.
order_status: cancelledAt set → Cancelled; otherwise closed or Shipped → Completed; otherwise any
  fulfilment order ON_HOLD → On Hold; otherwise In Process.
dropship_status, from the fulfilment orders assigned to a fulfilment-service location (a 3PL or
  dropshipper; `assignedLocation.location.fulfillmentService` is set), the furthest along wins:
  none such → None; requestStatus UNSUBMITTED or REJECTED → Pending (not, or no longer, with the
  service); SUBMITTED, CANCELLATION_REQUESTED, CANCELLATION_REJECTED → Requested; ACCEPTED, CLOSED,
  CANCELLATION_ACCEPTED, or the fulfilment order itself CLOSED → Processed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Mapping


class ShippingStatus(StrEnum):
    UNSHIPPED = "Unshipped"
    PARTIALLY_SHIPPED = "PartiallyShipped"
    SHIPPED = "Shipped"


class OrderStatus(StrEnum):
    IN_PROCESS = "In Process"
    ON_HOLD = "On Hold"
    CANCELLED = "Cancelled"
    COMPLETED = "Completed"


class DropshipStatus(StrEnum):
    NONE = "None"
    PENDING = "Pending"
    REQUESTED = "Requested"
    PROCESSED = "Processed"


_DROPSHIP_BY_REQUEST = {
    "UNSUBMITTED": DropshipStatus.PENDING,
    "REJECTED": DropshipStatus.PENDING,
    "SUBMITTED": DropshipStatus.REQUESTED,
    "CANCELLATION_REQUESTED": DropshipStatus.REQUESTED,
    "CANCELLATION_REJECTED": DropshipStatus.REQUESTED,
    "ACCEPTED": DropshipStatus.PROCESSED,
    "CANCELLATION_ACCEPTED": DropshipStatus.PROCESSED,
    "CLOSED": DropshipStatus.PROCESSED,
}
# Fulfillment order statuses that mean someone has begun fulfilling it: IN_PROGRESS ("being processed": marked in
# progress, or accepted by a fulfillment service) and INCOMPLETE (some of it fulfilled, the rest can no longer be).
FULFILLMENT_STARTED = frozenset({"IN_PROGRESS", "INCOMPLETE"})
_DROPSHIP_RANK = [DropshipStatus.NONE, DropshipStatus.PENDING, DropshipStatus.REQUESTED, DropshipStatus.PROCESSED]


@dataclass(frozen=True)
class Hold:
    id: str
    reason: str
    notes: str | None
    handle: str | None


@dataclass(frozen=True)
class FulfillmentOrderLine:
    id: str
    line_item_id: str
    total_quantity: int
    remaining_quantity: int


@dataclass(frozen=True)
class FulfillmentOrder:
    id: str
    status: str  # Shopify FulfillmentOrderStatus: OPEN, IN_PROGRESS, ON_HOLD, CLOSED, CANCELLED, ...
    request_status: str  # FulfillmentOrderRequestStatus
    location_id: str | None
    location_name: str | None
    fulfillment_service: str | None  # the service's handle when a 3PL / dropshipper holds this FO
    holds: tuple[Hold, ...]
    lines: tuple[FulfillmentOrderLine, ...]


@dataclass(frozen=True)
class LineItem:
    id: str
    sku: str | None
    name: str
    quantity: int  # as ordered
    current_quantity: int  # after refunds and removals
    refundable_quantity: int
    unfulfilled_quantity: int
    fulfilled_quantity: int
    unit_price: Decimal
    inventory_item_id: str | None


@dataclass(frozen=True)
class Transaction:
    id: str
    kind: str
    status: str
    gateway: str
    amount: Decimal


@dataclass(frozen=True)
class RefundSummary:
    id: str
    note: str | None
    amount: Decimal


@dataclass(frozen=True)
class StorefrontOrder:
    id: str  # gid://shopify/Order/...
    name: str  # "#1001"
    amazon_order_id: str | None
    source_identifier: str | None
    tags: tuple[str, ...]
    note: str | None
    shipping_status: ShippingStatus
    order_status: OrderStatus
    dropship_status: DropshipStatus
    financial_status: str  # Shopify displayFinancialStatus: PAID, PARTIALLY_REFUNDED, REFUNDED, PENDING, ...
    fulfillment_status: str  # Shopify displayFulfillmentStatus
    currency: str
    paid_total: Decimal  # money received (totalReceivedSet)
    refunded_total: Decimal
    current_total: Decimal
    cancelled: bool
    cancelled_at: str | None
    cancel_reason: str | None
    cancel_staff_note: str | None
    closed: bool
    line_items: tuple[LineItem, ...]
    fulfillment_orders: tuple[FulfillmentOrder, ...]
    transactions: tuple[Transaction, ...] = field(default=())
    refunds: tuple[RefundSummary, ...] = field(default=())

    @property
    def refundable_amount(self) -> Decimal:
        return max(Decimal("0"), self.paid_total - self.refunded_total)

    @property
    def units_ordered(self) -> int:
        return sum(l.quantity for l in self.line_items)

    @property
    def units_shipped(self) -> int:
        return sum(l.fulfilled_quantity for l in self.line_items)

    def line(self, *, sku: str | None = None, line_item_id: str | None = None) -> LineItem | None:
        for item in self.line_items:
            if (line_item_id and item.id == line_item_id) or (sku and not line_item_id and item.sku == sku):
                return item
        return None

    def as_fact(self) -> dict[str, Any]:
        """The storefront part of a rules fact (DESIGN.md, 'The fact')."""
        return {
            "storefront_order_id": self.id,
            "shipping_status": str(self.shipping_status),
            "order_status": str(self.order_status),
            "dropship_status": str(self.dropship_status),
            "line_count": len(self.line_items),
            "units_ordered": self.units_ordered,
            "units_shipped": self.units_shipped,
            "order_total": self.current_total,
            "paid_total": self.paid_total,
            "refunded_total": self.refunded_total,
            "fulfillment_started": self.units_shipped > 0 or any(fo.status in FULFILLMENT_STARTED for fo in self.fulfillment_orders),
        }


@dataclass(frozen=True)
class StorefrontCancellation:
    """An order cancelled in the storefront, as the storefront poll sees it: which Amazon order it mirrors,
    when and why (Shopify's OrderCancelReason), and whether ordersync itself cancelled it (its staff note
    carries an ordersync marker: the mirror of an Amazon cancellation, or a cancellation made here)."""

    id: str
    name: str
    amazon_order_id: str
    cancelled_at: str
    updated_at: str
    reason: str
    tags: tuple[str, ...]
    by_ordersync: bool


@dataclass(frozen=True)
class StorefrontRefundLine:
    """A line of a storefront refund: the line item's SKU, how many units, and Shopify's
    RefundLineItemRestockType (NO_RESTOCK, CANCEL, RETURN, LEGACY_RESTOCK; '' if absent)."""

    sku: str | None
    quantity: int
    restock_type: str


@dataclass(frozen=True)
class StorefrontRefund:
    """A refund recorded on a Shopify order that mirrors an Amazon order, as the storefront refunds poll sees it."""

    id: str  # gid://shopify/Refund/...
    order_id: str  # gid://shopify/Order/...
    order_name: str  # "#1001"
    amazon_order_id: str
    created_at: str  # the refund's createdAt, YYYY-MM-DDTHH:MM:SSZ
    updated_at: str  # the order's updatedAt, YYYY-MM-DDTHH:MM:SSZ
    amount: Decimal  # totalRefundedSet.shopMoney.amount, exact; 0 for a refund that moved no money
    currency: str  # totalRefundedSet.shopMoney.currencyCode
    note: str  # '' when none
    lines: tuple[StorefrontRefundLine, ...]
    by_ordersync: bool  # the note carries an ordersync marker (refund and cancel_lines write one)
    order_cancelled: bool  # the order is cancelled (cancelledAt set): its refunds belong to the cancellation


@dataclass(frozen=True)
class KitComponent:
    """One component of a fixed bundle (a kit): `quantity` units of the variant `sku` per bundle."""

    sku: str
    quantity: int


@dataclass(frozen=True)
class ActionResult:
    """What an action did: `changed` is False when the look-before-act check found it already done."""

    action: str
    order_id: str | None
    changed: bool
    detail: Mapping[str, Any] = field(default_factory=dict)


# -- normalisation ------------------------------------------------------------------------------------
def _money(value: Any) -> Decimal:
    try:
        return Decimal(str(((value or {}).get("shopMoney") or {}).get("amount") or "0"))
    except InvalidOperation:
        return Decimal("0")


def shipping_status_for(display_fulfillment_status: str | None) -> ShippingStatus:
    if display_fulfillment_status == "FULFILLED":
        return ShippingStatus.SHIPPED
    if display_fulfillment_status == "PARTIALLY_FULFILLED":
        return ShippingStatus.PARTIALLY_SHIPPED
    return ShippingStatus.UNSHIPPED


def dropship_status_for(fulfillment_orders: tuple[FulfillmentOrder, ...]) -> DropshipStatus:
    best = DropshipStatus.NONE
    for fo in fulfillment_orders:
        if fo.fulfillment_service is None:
            continue
        status = DropshipStatus.PROCESSED if fo.status == "CLOSED" else _DROPSHIP_BY_REQUEST.get(fo.request_status, DropshipStatus.PENDING)
        if _DROPSHIP_RANK.index(status) > _DROPSHIP_RANK.index(best):
            best = status
    return best


def order_status_for(cancelled: bool, closed: bool, shipping: ShippingStatus, fulfillment_orders: tuple[FulfillmentOrder, ...]) -> OrderStatus:
    if cancelled:
        return OrderStatus.CANCELLED
    if closed or shipping is ShippingStatus.SHIPPED:
        return OrderStatus.COMPLETED
    if any(fo.status == "ON_HOLD" for fo in fulfillment_orders):
        return OrderStatus.ON_HOLD
    return OrderStatus.IN_PROCESS


def order_from_graphql(node: Mapping[str, Any], amazon_order_id: str | None = None) -> StorefrontOrder:
    """A StorefrontOrder from the `OrderFields` fragment's answer."""
    fos = tuple(
        FulfillmentOrder(
            id=fo["id"],
            status=fo["status"],
            request_status=fo["requestStatus"],
            location_id=((fo.get("assignedLocation") or {}).get("location") or {}).get("id"),
            location_name=((fo.get("assignedLocation") or {}).get("location") or {}).get("name"),
            fulfillment_service=((((fo.get("assignedLocation") or {}).get("location") or {}).get("fulfillmentService")) or {}).get("handle"),
            holds=tuple(Hold(h["id"], h["reason"], h.get("reasonNotes"), h.get("handle")) for h in fo.get("fulfillmentHolds") or ()),
            lines=tuple(
                FulfillmentOrderLine(l["id"], (l.get("lineItem") or {}).get("id", ""), int(l["totalQuantity"]), int(l["remainingQuantity"]))
                for l in ((fo.get("lineItems") or {}).get("nodes") or ())
            ),
        )
        for fo in ((node.get("fulfillmentOrders") or {}).get("nodes") or ())
    )
    fulfilled: dict[str, int] = {}
    for fo in fos:
        if fo.status == "CANCELLED":
            continue
        for line in fo.lines:
            fulfilled[line.line_item_id] = fulfilled.get(line.line_item_id, 0) + line.total_quantity - line.remaining_quantity
    lines = tuple(
        LineItem(
            id=l["id"],
            sku=l.get("sku"),
            name=l.get("name") or "",
            quantity=int(l["quantity"]),
            current_quantity=int(l["currentQuantity"]),
            refundable_quantity=int(l["refundableQuantity"]),
            unfulfilled_quantity=int(l["unfulfilledQuantity"]),
            fulfilled_quantity=fulfilled.get(l["id"], 0),
            unit_price=_money(l.get("originalUnitPriceSet")),
            inventory_item_id=((l.get("variant") or {}).get("inventoryItem") or {}).get("id"),
        )
        for l in ((node.get("lineItems") or {}).get("nodes") or ())
    )
    cancelled = node.get("cancelledAt") is not None
    shipping = shipping_status_for(node.get("displayFulfillmentStatus"))
    closed = bool(node.get("closed"))
    return StorefrontOrder(
        id=node["id"],
        name=node.get("name") or node["id"],
        amazon_order_id=amazon_order_id,
        source_identifier=node.get("sourceIdentifier"),
        tags=tuple(node.get("tags") or ()),
        note=node.get("note"),
        shipping_status=shipping,
        order_status=order_status_for(cancelled, closed, shipping, fos),
        dropship_status=dropship_status_for(fos),
        financial_status=node.get("displayFinancialStatus") or "",
        fulfillment_status=node.get("displayFulfillmentStatus") or "",
        currency=node.get("currencyCode") or "",
        paid_total=_money(node.get("totalReceivedSet")),
        refunded_total=_money(node.get("totalRefundedSet")),
        current_total=_money(node.get("currentTotalPriceSet")),
        cancelled=cancelled,
        cancelled_at=node.get("cancelledAt"),
        cancel_reason=node.get("cancelReason"),
        cancel_staff_note=(node.get("cancellation") or {}).get("staffNote"),
        closed=closed,
        line_items=lines,
        fulfillment_orders=fos,
        transactions=tuple(
            Transaction(t["id"], t["kind"], t["status"], t.get("gateway") or "", _money(t.get("amountSet")))
            for t in node.get("transactions") or ()
        ),
        refunds=tuple(RefundSummary(r["id"], r.get("note"), _money(r.get("totalRefundedSet"))) for r in node.get("refunds") or ()),
    )
