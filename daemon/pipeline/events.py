"""Amazon's changes as events: one shape whatever the source (a polled order, a report row, a return),
each with a natural key so the same change seen twice (poll and notification, a replayed page, a
re-read report) is stored once.

The payload carries the Amazon side of the fact (field names of daemon.facts) and what the actions
need later (the order's lines, the return's items), as JSON."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping, Sequence

from adapters.amazon.models import AmazonOrder, AmazonRefund, BuyerCancelRow, OrderStatus, ReturnRow
from adapters.shopify.models import StorefrontCancellation, StorefrontRefund
from daemon.facts import FIELDS, REASON_CODES

RMA_STATUSES = set(FIELDS["rma_status"].values)
CANCELLED = "order_cancelled"
BUYER_REQUEST = "buyer_cancel_requested"
BUYER_REQUEST_DUE = "buyer_request_due"
RETURN = "return_reported"
CANCEL_REQUEST = "cancel_requested"
REFUND_REQUEST = "refund_requested"
# The tag a person puts on a Shopify order so that cancelling it there is not sent to Amazon.
DO_NOT_SEND_TAG = "do-not-send-to-amazon"
# Shopify's cancel reasons that say what one of Amazon's says; the others (DECLINED, FRAUD, STAFF, OTHER)
# have no Amazon counterpart and give no reason (''), as Amazon's own free-text reasons do. A rule may still
# choose an Amazon reason for them by storefront_cancel_reason.
AMAZON_REASON_OF_SHOPIFY = {"CUSTOMER": "BuyerCanceled", "INVENTORY": "NoInventory"}


@dataclass(frozen=True)
class NewEvent:
    kind: str
    natural_key: str
    amazon_order_id: str
    payload: dict[str, Any]


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def reason_code(order: AmazonOrder) -> str:
    """Amazon's reason when it is one of the codes rules know; a buyer's own cancellation is BuyerCanceled;
    anything else (free text such as 'Payment could not be verified') is no valid reason: ''."""
    if order.cancel_reason in REASON_CODES:
        return order.cancel_reason
    if (order.cancelled_by or order.cancellation_requester or "").upper() == "BUYER":
        return "BuyerCanceled"
    return ""


def order_fields(order: AmazonOrder) -> dict[str, Any]:
    """The Amazon side of a fact, and the lines the actions need."""
    lines = [{"order_item_id": line.order_item_id, "sku": line.sku, "quantity": line.quantity_ordered,
              "shipped": line.quantity_shipped, "cancelled": line.quantity_cancelled,
              "price": _money(line.line_price if line.line_price is not None else line.unit_price)}
             for line in order.lines]
    fields: dict[str, Any] = {
        "origin": "amazon",
        "amazon_status": order.status.value,
        "line_count": len(order.lines),
        "lines_cancelled": sum(1 for line in order.lines if line.quantity_ordered and line.quantity_cancelled >= line.quantity_ordered),
        "units_ordered": order.units_ordered,
        "units_cancelled": order.units_cancelled,
        "units_shipped": order.units_shipped,
        "lines": lines,
        "currency": order.currency,
    }
    if order.fulfillment:
        fields["fulfillment"] = order.fulfillment
    if order.order_total is not None:
        fields["order_total"] = _money(order.order_total)
    return fields


def grid_fields(order: AmazonOrder) -> dict[str, Any]:
    """The orders grid's columns for an order as Amazon shows it (daemon.store.orders.AMAZON_FIELDS)."""
    return {"status": order.status.value, "fulfillment": order.fulfillment, "order_total": order.order_total,
            "currency": order.currency, "item_count": order.units_ordered, "created_on_amazon": order.purchase_date,
            "cancelled_by_seller": cancelled_by_seller(order)}


def cancelled_by_seller(order: AmazonOrder) -> bool:
    """Whether Amazon's cancellation rate counts the order against the seller: some line of it is cancelled, by
    neither the buyer nor Amazon themselves, and not as the answer to the buyer's request on that line (a request
    answered with another reason, NoInventory say, counts). Lines are judged one by one, as Orders API 2026-01-01
    reports them. A canceller Amazon's description does not name counts. Orders API v0 says neither who cancelled
    nor why: there a cancellation the buyer asked for is taken as answered for the buyer, any other counts."""
    for line in order.lines:
        cancelled = line.quantity_cancelled > 0 or (order.status == OrderStatus.CANCELED and line.quantity_ordered > line.quantity_shipped)
        if not cancelled or (line.cancelled_by or order.cancelled_by or "").upper() in ("BUYER", "AMAZON"):
            continue
        if line.buyer_cancel_requested and answers_the_buyer(line.cancel_reason or order.cancel_reason):
            continue
        return True
    return False


def answers_the_buyer(reason: str | None) -> bool:
    """Whether a cancellation's reason is the buyer's own (BuyerCanceled, or Amazon's text for it, "Buyer requested
    cancellation"), which keeps a cancellation the buyer asked for out of the rate. None: the answer does not say."""
    return reason is None or reason == "BuyerCanceled" or "buyer" in reason.lower()


def buyer_request_key(amazon_order_id: str) -> str:
    """A buyer's request is one per order, however often it is seen."""
    return f"{BUYER_REQUEST}:{amazon_order_id}"


def order_events(order: AmazonOrder) -> list[NewEvent]:
    """A polled or notified order: a cancellation (whole, or of some units) and/or a buyer's request."""
    events: list[NewEvent] = []
    fields = order_fields(order)
    if order.status == OrderStatus.CANCELED or order.units_cancelled > 0:
        units = order.units_ordered if order.status == OrderStatus.CANCELED and not order.units_cancelled else order.units_cancelled
        payload = {**fields, "reason_code": reason_code(order), "units_cancelled": units}
        if order.status == OrderStatus.CANCELED:
            payload["lines_cancelled"] = len(order.lines)
            payload["units_cancelled"] = order.units_ordered
        # Cancelling more units later is a new change; seeing the same cancellation again is not.
        events.append(NewEvent(CANCELLED, f"{CANCELLED}:{order.amazon_order_id}:{payload['units_cancelled']}",
                               order.amazon_order_id, payload))
    if order.buyer_cancel_requested and order.status != OrderStatus.CANCELED:
        payload = {**fields, "buyer_cancel_reason": order.buyer_cancel_reason or "", "lines_requested": lines_requested(order),
                   "requested_at": order.last_updated.isoformat() if order.last_updated else None}
        events.append(NewEvent(BUYER_REQUEST, buyer_request_key(order.amazon_order_id), order.amazon_order_id, payload))
    return events


def buyer_request_due_events(order: AmazonOrder, request_payload: Mapping[str, Any], requested_at: str) -> list[NewEvent]:
    """A buyer's request that is nearly out of Amazon's window, with the order as Amazon shows it now: one
    event per order, however often the buyer asked."""
    payload = {**order_fields(order), "buyer_cancel_reason": request_payload.get("buyer_cancel_reason") or "",
               "lines_requested": lines_requested(order), "requested_at": requested_at}
    return [NewEvent(BUYER_REQUEST_DUE, buyer_request_due_key(order.amazon_order_id), order.amazon_order_id, payload)]


def lines_requested(order: AmazonOrder) -> int:
    """The order's lines the buyer asked to cancel: Amazon flags them line by line, and only a request of every line
    can be answered by cancelling the order (only full cancellations sync, DOMAIN 2)."""
    return sum(1 for line in order.lines if line.buyer_cancel_requested)


def buyer_request_due_key(amazon_order_id: str | None) -> str:
    return f"{BUYER_REQUEST_DUE}:{amazon_order_id}"


def buyer_request_events(row: BuyerCancelRow) -> list[NewEvent]:
    """A row of the order report flagged is-buyer-requested-cancellation; same key as a polled request."""
    if not row.buyer_cancel_requested:
        return []
    payload: dict[str, Any] = {"origin": "amazon", "buyer_cancel_reason": row.buyer_cancel_reason or "",
                               "requested_at": row.last_updated}
    if row.fulfillment_channel in ("Amazon", "AFN"):
        payload["fulfillment"] = "FBA"
    elif row.fulfillment_channel in ("Merchant", "MFN"):
        payload["fulfillment"] = "FBM"
    return [NewEvent(BUYER_REQUEST, buyer_request_key(row.amazon_order_id), row.amazon_order_id, payload)]


def return_events(row: ReturnRow) -> list[NewEvent]:
    """An RMA of the returns report; a change of its status is a new event."""
    status = row.status if row.status in RMA_STATUSES else "Other"
    items = [{"sku": item.sku, "quantity": item.quantity, "reason": item.reason, "order_item_id": item.order_item_id}
             for item in row.items]
    payload = {"origin": "amazon", "rma_status": status, "rma_id": row.rma_id, "items": items,
               "tracking_number": row.tracking_number, "report_status": row.status}
    return [NewEvent(RETURN, f"{RETURN}:{row.rma_id}:{status}", row.amazon_order_id, payload)]


@dataclass(frozen=True)
class AmazonRefundSeen:
    """A refund Amazon made (read from its Finances API), before it is an event: the event carries what Amazon
    has refunded on the order in all, which the store counts as it stores the refund
    (daemon.store.inbox.Inbox.ingest_amazon_refunds)."""

    refund: AmazonRefund

    @property
    def natural_key(self) -> str:
        # Amazon's refund events have no id of their own: their posting time and adjustment items name them. A
        # refund of many items would outgrow the column (300 characters), so a long name is kept as its hash.
        key = self.refund.key
        if len(key) > 150:
            key = f"{self.refund.posted}|sha256:{hashlib.sha256(key.encode()).hexdigest()}"
        return f"{REFUND_REQUEST}:{self.refund.amazon_order_id}:amazon:{key}"

    @property
    def amazon_order_id(self) -> str:
        return self.refund.amazon_order_id

    @property
    def amount(self) -> Decimal:
        return self.refund.amount

    def event(self, refunded_in_all: Decimal) -> NewEvent:
        refund = self.refund
        payload = {"origin": "amazon", "refund_amount": str(refund.amount), "amazon_refunded_total": str(refunded_in_all),
                   "amazon_refund_kind": refund.kind, "currency": refund.currency, "posted_at": refund.posted,
                   "amazon_refund_items": [{"order_item_id": item.order_item_id, "sku": item.sku,
                                            "quantity": item.quantity, "amount": str(item.amount)} for item in refund.items]}
        return NewEvent(REFUND_REQUEST, self.natural_key, refund.amazon_order_id, payload)


# A refund on Amazon: an amount for the whole order (shared by jobs.refund_by_line), or amounts per order item
# (a refund of lines, made as asked).
Refund = Decimal | Mapping[str, Decimal]


def refund_of(payload: Mapping[str, Any], amount: Decimal) -> Refund:
    """The refund an event asks for: its lines' amounts by order item when it names lines, else `amount`."""
    lines = payload.get("refund_lines")
    if not lines:
        return amount
    return {str(line["order_item_id"]): Decimal(str(line["amount"])) for line in lines}


def units_given_up(payload: Mapping[str, Any]) -> dict[str, int]:
    """For a refund of units that could not be fulfilled (DOMAIN 13), the units of each order item it gives up:
    they will not ship, and Amazon hears of them as cancelled. Empty for any other refund."""
    if not int(payload.get("units_cancelled") or 0):
        return {}
    return {str(line["order_item_id"]): int(line["quantity"]) for line in payload.get("refund_lines") or ()}


def storefront_cancellation_events(cancellation: StorefrontCancellation, order: AmazonOrder) -> list[NewEvent]:
    """An order a person cancelled in the storefront, with Amazon's view of it: Amazon must be told (a
    cancel_requested event of origin storefront), of the whole order, as Shopify cancels whole orders. One
    event per storefront order: seeing the cancellation again is not a new one."""
    payload = {**order_fields(order), "origin": "storefront",
               "reason_code": AMAZON_REASON_OF_SHOPIFY.get(cancellation.reason, ""),
               "storefront_cancel_reason": cancellation.reason if cancellation.reason in _SHOPIFY_REASONS else "OTHER",
               "do_not_send_to_amazon": DO_NOT_SEND_TAG in (tag.lower() for tag in cancellation.tags),
               "lines_cancelled": len(order.lines), "units_cancelled": order.units_ordered,
               "storefront_cancelled_at": cancellation.cancelled_at}
    return [NewEvent(CANCEL_REQUEST, storefront_cancellation_key(cancellation), order.amazon_order_id, payload)]


def storefront_cancellation_key(cancellation: StorefrontCancellation) -> str:
    return f"{CANCEL_REQUEST}:{cancellation.amazon_order_id}:storefront:{cancellation.id}"


def storefront_refund_events(refund: StorefrontRefund, earlier: Sequence[StorefrontRefund], order: AmazonOrder | None,
                             amazon_refunded: Decimal | None, ours: Sequence[tuple[int, Decimal]] = (),
                             problem: str | None = None) -> list[NewEvent]:
    """A refund a person made in the storefront: a refund_requested event of origin storefront, for the rules to tell
    a new refund from a person's copy of one Amazon made, and from what cannot be told. It carries Amazon's view
    of the order, what Amazon had refunded on it when the refund was read, what the storefront showed refunded
    before it (`earlier`: the order's refunds before this one, from the same answer) and which of ordersync's own
    refunds of the order (`ours`, sent or going out, in the order decided, each as its action's id and amount)
    Amazon had not listed yet: their sum (refunds_on_their_way_to_amazon, a fact field) and their action ids
    (refunds_on_their_way_ids, for send_batches to tell, when the refund goes out, which of ordersync's refunds
    Amazon has made since it was read: jobs.AccountPipeline._refunded_meanwhile). `problem` says why Amazon's side
    could not be read: the rules put the refund in the error view, and it is stored all the same, so it is never
    met again as new.

    It goes to Amazon as an amount of the whole order, shared among the order's items (jobs.refund_by_line), so it
    may be at most what Amazon has left of the items' price. A refund that took returned units back (restock
    RETURN) is CustomerReturn, any other GeneralAdjustment; a rule may send another reason."""
    returned = any(line.restock_type == "RETURN" for line in refund.lines)
    before = sum((r.amount for r in earlier), Decimal(0))
    payload: dict[str, Any] = {**(order_fields(order) if order is not None else {}), "origin": "storefront",
                               "refund_amount": str(refund.amount), "reason_code": "CustomerReturn" if returned else "GeneralAdjustment",
                               "currency": (order.currency if order is not None else None) or refund.currency,
                               "storefront_refunded_before": str(before),
                               "copies_ordersync_refund": any(r.by_ordersync and r.amount == refund.amount for r in earlier),
                               "storefront_refund_id": refund.id, "storefront_refunded_at": refund.created_at}
    if order is not None and amazon_refunded is not None and problem is None:
        amounts = [amount for _, amount in ours]
        unlisted = _unlisted(before, amounts, amazon_refunded, refund.amount)
        if unlisted is None:
            problem = (f"Amazon's refunds ({amazon_refunded}) fit the storefront's ({before} before this one) more than one "
                       f"way with ordersync's own refunds of the order ({', '.join(str(a) for a in amounts)}) sent or going out")
        else:
            payload["refunds_on_their_way_to_amazon"] = str(unlisted)
            # The tail of `ours` that sum is (the shortest, should refunds of 0 make it fit more than one).
            start = max(index for index in range(len(ours) + 1) if sum(amounts[index:], Decimal(0)) == unlisted)
            payload["refunds_on_their_way_ids"] = [action_id for action_id, _ in ours[start:]]
        # The lines' prices refund_by_line shares a refund against, as Amazon refuses more on an item than it has left.
        items_price = sum((Decimal(line["price"]) for line in payload["lines"] if line["price"]), Decimal(0))
        payload.update(amazon_refunded_total=str(amazon_refunded), amazon_refundable=str(items_price - amazon_refunded))
    if problem is not None:
        payload["storefront_refund_problem"] = problem
    return [NewEvent(REFUND_REQUEST, storefront_refund_key(refund), refund.amazon_order_id, payload)]


def _unlisted(before: Decimal, ours: Sequence[Decimal], amazon: Decimal, amount: Decimal) -> Decimal | None:
    """How much of ordersync's own refunds Amazon had not listed, as Amazon's total tells: Amazon lists refunds in
    about the order they were sent, so what it has not listed is the last few of `ours`. Each such tail taken off
    the storefront's total before this refund is what Amazon shows when the two agree (this refund new), or shows
    less this refund (this refund a copy of one Amazon made). One tail that fits: it. None fits: 0, and the rules
    find that they disagree. More than one way: None, for a person to sort out."""
    tails = {sum(ours[index:], Decimal(0)) for index in range(len(ours) + 1)}
    fits = {tail for tail in tails if amazon in (before - tail, before - tail + amount)}
    if len(fits) > 1:
        return None
    return fits.pop() if fits else Decimal(0)


def storefront_refund_key(refund: StorefrontRefund) -> str:
    return f"{REFUND_REQUEST}:{refund.amazon_order_id}:storefront:{refund.id}"


_SHOPIFY_REASONS = set(FIELDS["storefront_cancel_reason"].values) - {""}
