"""Amazon's cancellation rate, as ordersync can count it (DOMAIN 8: it must stay under 2.5%).

Amazon counts, over 7 days, the merchant-fulfilled orders the seller cancelled, per 100 of those orders; a
cancellation the buyer asked for on Amazon does not count, nor one the buyer or Amazon made themselves. Here
the 7 days are the orders created on Amazon in the last 7 days (the grid's created_on_amazon), and the
cancelled ones are those Amazon shows cancelled by the seller (events.cancelled_by_seller) and those ordersync
is cancelling on Amazon right now, unless the buyer asked (a buyer request is stored for the order). It is an
estimate: Amazon's own figure in Seller Central (Account Health) is the one that counts.

A cancellation to be sent to Amazon gets the rate in its fact, as it is and as it would be, so a rule in
rules/cancellation.yaml can stop it for a person before it goes (approvals); `ordersync orders
cancellation-rate` and the metric ordersync_cancellation_rate_percent show it."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from daemon.pipeline.events import buyer_request_key
from daemon.store import Store
from daemon.store.models import Order

WINDOW = timedelta(days=7)
AMAZON_TARGET_PERCENT = 2.5


def percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


@dataclass
class CancellationRate:
    since: datetime
    orders: int           # FBM orders created on Amazon in the window
    counted: set[str]     # of them, the ones cancelled by the seller (or being), no buyer request
    _would_count: dict[str, bool] = field(default_factory=dict)

    @property
    def percent(self) -> float:
        return percent(len(self.counted), self.orders)

    def fields_for(self, amazon_order_id: str, row: Order | None, fulfillment: str | None,
                   buyer_requested: bool) -> dict[str, Any]:
        """The fact's fields of a cancellation of this order about to be sent to Amazon. An order ordersync does
        not know the creation day of counts as in the window: the estimate errs towards asking a person."""
        created = row.created_on_amazon if row is not None else None  # the store's times are aware (UTC)
        in_window = created is None or created >= self.since
        fbm = (fulfillment or (row.fulfillment if row is not None else None)) == "FBM"
        counts = fbm and in_window and not buyer_requested and amazon_order_id not in self.counted
        # Already among the window's orders unless the grid lacks its row or its day.
        orders = self.orders + (1 if counts and created is None else 0)
        self._would_count[amazon_order_id] = counts
        return {"buyer_requested_cancel": buyer_requested, "cancellation_rate": self.percent,
                "cancellation_rate_if_cancelled": percent(len(self.counted) + counts, orders),
                "cancellation_rate_orders": self.orders}

    def decided(self, amazon_order_id: str, action_types: Iterable[str]) -> None:
        """A cancellation decided in this run that is going to Amazon now counts for the next one decided."""
        types = set(action_types)
        if self._would_count.pop(amazon_order_id, False) and "cancel_on_amazon" in types \
                and "queue_for_approval" not in types:
            self.counted.add(amazon_order_id)


def measure(store: Store, account: str, now: datetime) -> CancellationRate:
    window = store.cancellation_window(account, now - WINDOW)
    asked = store.stored_keys(account, (buyer_request_key(order_id) for order_id in window.being_cancelled))
    being = {order_id for order_id in window.being_cancelled if buyer_request_key(order_id) not in asked}
    return CancellationRate(window.since, window.orders, set(window.cancelled) | being)


def summary(rate: CancellationRate) -> Mapping[str, Any]:
    return {"since": rate.since.isoformat(), "orders": rate.orders, "cancelled": len(rate.counted),
            "percent": rate.percent, "amazon_target_percent": AMAZON_TARGET_PERCENT, "cancelled_orders": sorted(rate.counted)}
