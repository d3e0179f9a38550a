"""The fact a rule reads: the event's Amazon side, the storefront order's state, the account's settings.

Only schema fields go into the fact (the payload carries more for the actions); everything is checked
again by daemon.facts.normalise when the engine decides."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from adapters.shopify.models import StorefrontOrder
from daemon.facts import FIELDS
from daemon.pipeline.events import CANCELLED

# From the storefront: its own statuses, what was shipped from it, and its money.
STOREFRONT_FIELDS = ("storefront_order_id", "shipping_status", "order_status", "dropship_status", "paid_total", "refunded_total",
                     "fulfillment_started")


def build_fact(kind: str, account: str, amazon_order_id: str | None, payload: Mapping[str, Any],
               storefront: StorefrontOrder | None, settings: Mapping[str, bool],
               now: datetime | None = None) -> dict[str, Any]:
    fact: dict[str, Any] = {"event": kind, "account": account}
    if amazon_order_id:
        fact["amazon_order_id"] = amazon_order_id
    fact.update({name: value for name, value in payload.items() if name in FIELDS and value is not None})
    if storefront is not None:
        side = storefront.as_fact()
        fact.update({name: side[name] for name in STOREFRONT_FIELDS if side.get(name) is not None})
        # Units the storefront shipped count as shipped even when Amazon has not heard yet.
        fact["units_shipped"] = max(int(fact.get("units_shipped", 0)), int(side.get("units_shipped") or 0))
        if "units_ordered" not in fact and side.get("units_ordered") is not None:
            fact["units_ordered"] = side["units_ordered"]
            fact["line_count"] = side["line_count"]
        if "order_total" not in fact and side.get("order_total") is not None:
            fact["order_total"] = side["order_total"]
        if kind == CANCELLED and int(fact.get("units_cancelled", 0)) < int(fact.get("units_ordered", 0)):
            # Only for a partial cancellation (the only one a rule asks it of), so no other fact grows.
            fact["cancelled_units_in_storefront"] = _holds_cancelled_units(payload.get("lines") or (), storefront)
    requested_at = payload.get("requested_at")
    if requested_at:
        try:
            since = datetime.fromisoformat(str(requested_at).replace("Z", "+00:00"))
            if since.tzinfo is None:
                since = since.replace(tzinfo=timezone.utc)
            fact["hours_since_request"] = max(0.0, round(((now or datetime.now(timezone.utc)) - since).total_seconds() / 3600, 2))
        except ValueError:
            pass  # an unreadable time leaves the field out; rules on it then do not hold
    fact["settings"] = dict(settings)
    return fact


def _holds_cancelled_units(amazon_lines: Sequence[Mapping[str, Any]], storefront: StorefrontOrder) -> bool:
    """Whether the storefront order still has, on some SKU, more units to ship than Amazon left open there
    (ordered, less shipped and cancelled): the units Amazon cancelled are then still on their way to shipping."""
    open_on_amazon: dict[str, int] = {}
    for line in amazon_lines:
        left = int(line.get("quantity") or 0) - int(line.get("shipped") or 0) - int(line.get("cancelled") or 0)
        open_on_amazon[str(line.get("sku"))] = open_on_amazon.get(str(line.get("sku")), 0) + max(left, 0)
    to_ship: dict[str, int] = {}
    for item in storefront.line_items:
        to_ship[str(item.sku)] = to_ship.get(str(item.sku), 0) + item.unfulfilled_quantity
    return any(to_ship.get(sku, 0) > left for sku, left in open_on_amazon.items())
