"""Requests a person makes here rather than on Amazon: cancel an order, refund an amount. Each becomes an
event like any other (origin operator), so the rules decide it, it is logged, and its Amazon side goes
out in the next feed batch. Asking twice with the same request id stores one event."""
from __future__ import annotations

import uuid
from decimal import Decimal

from adapters.amazon.client import AmazonClient
from daemon.pipeline.events import CANCEL_REQUEST, order_fields
from daemon.store import Store


def request_cancellation(store: Store, amazon: AmazonClient, account: str, amazon_order_id: str, reason_code: str, *,
                         do_not_send_to_amazon: bool = False, request_id: str | None = None) -> bool:
    """Store a cancel_requested event for the whole order; False when this request was stored already."""
    order = amazon.get_order(amazon_order_id)
    payload = {**order_fields(order), "origin": "operator", "reason_code": reason_code,
               "do_not_send_to_amazon": do_not_send_to_amazon,
               # Cancelling here is always of the whole order; the rules reject a partial one.
               "lines_cancelled": len(order.lines), "units_cancelled": order.units_ordered}
    key = f"{CANCEL_REQUEST}:{amazon_order_id}:{request_id or 'whole-order'}"
    return store.ingest(account, key, CANCEL_REQUEST, payload, amazon_order_id=amazon_order_id)


def request_refund(store: Store, amazon: AmazonClient, account: str, amazon_order_id: str, amount: Decimal | str,
                   reason_code: str, *, request_id: str | None = None) -> bool:
    """Store a refund_requested event; give the same request_id to make a retried request a no-op."""
    order = amazon.get_order(amazon_order_id)
    payload = {**order_fields(order), "origin": "operator", "reason_code": reason_code, "refund_amount": str(Decimal(str(amount))),
               "units_cancelled": 0}
    key = f"refund_requested:{amazon_order_id}:{request_id or uuid.uuid4()}"
    return store.ingest(account, key, "refund_requested", payload, amazon_order_id=amazon_order_id)
