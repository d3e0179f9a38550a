"""Requests a person makes here rather than on Amazon: cancel an order, refund an amount. Each becomes an
event like any other (origin operator), so the rules decide it, it is logged, and its Amazon side goes
out in the next feed batch. Asking twice with the same request id stores one event."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Sequence

from adapters.amazon.client import AmazonClient
from adapters.amazon.models import AmazonOrder, AmazonOrderLine
from daemon.pipeline.events import CANCEL_REQUEST, REFUND_REQUEST, NewEvent, grid_fields, order_fields
from daemon.store import Store


class RequestRefused(ValueError):
    """A request this account cannot make of this order: the message says why and what to do."""


class OtherMarketplacesOrder(RequestRefused):
    """The order is of a marketplace the account does not sell in (accounts of one seller, each with its own)."""


def _this_accounts_order(amazon: AmazonClient, amazon_order_id: str) -> AmazonOrder:
    """The order from Amazon, if it is of one of the account's marketplaces: Amazon gives a seller's account every
    marketplace's orders, and a request made through another account would be sent, and counted in the
    cancellation rate, as that account's."""
    order = amazon.get_order(amazon_order_id)
    marketplaces = amazon.account.marketplace_ids
    if not order.of_marketplaces(marketplaces):
        raise OtherMarketplacesOrder(
            f"order {amazon_order_id} is of marketplace {order.marketplace_id}, not one of account "
            f"{amazon.account.name}'s ({', '.join(marketplaces)}): ask with the account that sells there, or in "
            "Seller Central")
    return order


def request_cancellation(store: Store, amazon: AmazonClient, account: str, amazon_order_id: str, reason_code: str, *,
                         do_not_send_to_amazon: bool = False, request_id: str | None = None) -> bool:
    """Store a cancel_requested event for the whole order; False when this request was stored already.
    OtherMarketplacesOrder for an order of a marketplace the account does not sell in."""
    order = _this_accounts_order(amazon, amazon_order_id)
    payload = {**order_fields(order), "origin": "operator", "reason_code": reason_code,
               "do_not_send_to_amazon": do_not_send_to_amazon,
               # Cancelling here is always of the whole order; the rules reject a partial one.
               "lines_cancelled": len(order.lines), "units_cancelled": order.units_ordered}
    key = f"{CANCEL_REQUEST}:{amazon_order_id}:{request_id or 'whole-order'}"
    return _store_request(store, account, order, NewEvent(CANCEL_REQUEST, key, amazon_order_id, payload))


class RefundLinesError(RequestRefused):
    """Lines to refund that the order does not have, or not that many of."""


@dataclass(frozen=True)
class RefundLine:
    """Units of one line of the order, by SKU, to refund at the price Amazon charged for them."""

    sku: str
    quantity: int


def request_refund(store: Store, amazon: AmazonClient, account: str, amazon_order_id: str, amount: Decimal | str | None,
                   reason_code: str, *, lines: Sequence[RefundLine] = (), unfulfilled: bool = False,
                   request_id: str | None = None) -> bool:
    """Store a refund_requested event: an amount for the whole order, or `lines` (DOMAIN 12: per line item),
    each refunded at its unit price on Amazon. `unfulfilled` says those units could not be fulfilled (DOMAIN
    13): Amazon is told the quantity cancelled, and the storefront cancels them rather than only paying back.
    Give the same request_id to make a retried request a no-op. RefundLinesError for lines the order does
    not have, or more units than it has to refund; OtherMarketplacesOrder for an order of a marketplace the account
    does not sell in."""
    order = _this_accounts_order(amazon, amazon_order_id)
    payload = {**order_fields(order), "origin": "operator", "reason_code": reason_code, "units_cancelled": 0}
    if lines:
        payload["refund_lines"] = _refund_lines(order, lines, unfulfilled)
        amount = sum((Decimal(line["amount"]) for line in payload["refund_lines"]), Decimal(0))
        if unfulfilled:
            payload["units_cancelled"] = sum(line.quantity for line in lines)
    elif amount is None:
        raise RefundLinesError("a refund needs an amount or lines")
    payload["refund_amount"] = str(Decimal(str(amount)))
    key = f"{REFUND_REQUEST}:{amazon_order_id}:{request_id or uuid.uuid4()}"
    return _store_request(store, account, order, NewEvent(REFUND_REQUEST, key, amazon_order_id, payload))


def _store_request(store: Store, account: str, order: AmazonOrder, request: NewEvent) -> bool:
    """The request, with the order's row in the grid as Amazon showed it where the grid has no Amazon side of it: an
    order the order poll never read (older than its look-back) is then shown, and counted in the cancellation rate
    as it is; the order poll's own reads, maybe newer than this one, stay. False: stored already."""
    return store.ingest_many(account, [request], orders={order.amazon_order_id: grid_fields(order)},
                             orders_unread_only=True)[0]


def _refund_lines(order: AmazonOrder, lines: Sequence[RefundLine], unfulfilled: bool) -> list[dict[str, Any]]:
    if len({line.sku for line in lines}) < len(lines):
        raise RefundLinesError("give each SKU once, with all its units (e.g. MUG-RED:2, not MUG-RED:1 twice)")
    refund_lines = []
    for wanted in lines:
        found = [line for line in order.lines if line.sku == wanted.sku]
        if len(found) != 1:
            skus = ", ".join(line.sku or line.order_item_id for line in order.lines)
            raise RefundLinesError(f"order {order.amazon_order_id} has {'no' if not found else len(found)} lines of SKU "
                                   f"{wanted.sku} (its lines: {skus})" + ("; refund an amount instead" if found else ""))
        line = found[0]
        unshipped = line.quantity_ordered - line.quantity_cancelled - line.quantity_shipped
        # Units still to ship are refunded only as units that could not be fulfilled: Amazon must then hear of
        # them as cancelled, or it would expect them shipped while the storefront no longer ships them.
        room, what = (unshipped, "unshipped") if unfulfilled else (line.quantity_shipped, "shipped")
        if not 1 <= wanted.quantity <= room:
            hint = "" if unfulfilled else " (units not shipped yet are refunded with --unfulfilled)"
            raise RefundLinesError(f"order {order.amazon_order_id} has {room} {what} unit(s) of {wanted.sku}, not "
                                   f"{wanted.quantity}{hint}")
        refund_lines.append({"order_item_id": line.order_item_id, "sku": line.sku, "quantity": wanted.quantity,
                             "amount": str(charged_for(line, wanted.quantity))})
    if unfulfilled and not order.units_shipped and sum(line.quantity for line in lines) >= order.units_ordered - order.units_cancelled:
        raise RefundLinesError(f"that is every unit of order {order.amazon_order_id} still to ship: cancel the order "
                               f"(ordersync orders cancel) rather than refund its units")
    return refund_lines


def charged_for(line: AmazonOrderLine, quantity: int) -> Decimal:
    """What Amazon charged for `quantity` units of the line: the line total's share when Amazon gave the total
    (the Orders API v0's ItemPrice; its unit price is that total divided and rounded), in the total's own unit
    (cents, yen), so that all of a line's units cost exactly its total."""
    if line.line_price is not None:
        total = line.line_price
        return (total * quantity / line.quantity_ordered).quantize(Decimal(1).scaleb(min(int(total.as_tuple().exponent), 0)))
    return (line.unit_price or Decimal(0)) * quantity
