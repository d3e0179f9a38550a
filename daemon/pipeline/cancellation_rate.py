"""Amazon's cancellation rate, as ordersync can count it (DOMAIN 8: it must stay under 2.5%).

Amazon counts, over 7 days, the merchant-fulfilled orders the seller cancelled, per 100 of those orders; a
cancellation that answers the buyer's request on Amazon with the buyer's reason (BuyerCanceled) does not count,
nor one the buyer or Amazon made themselves. Here the 7 days are the orders created on Amazon in the last 7
days (the grid's created_on_amazon), and the cancelled ones are those Amazon shows cancelled by the seller
(events.cancelled_by_seller) and those ordersync is cancelling on Amazon right now, unless it answers a stored
buyer request with BuyerCanceled, or giving some units up on (a refund of units that could not be fulfilled, which
Amazon hears of as cancelled: it counts item cancellations too). It is an estimate: Amazon's own figure in Seller
Central (Account Health) is the one that counts.

A cancellation to be sent to Amazon, or a refund made here that gives units up, gets the rate in its fact, as it
is and as it would be, so a rule in rules/cancellation.yaml or rules/refund.yaml can stop it for a person before
it goes (approvals). A person approving held
cancellations gets the rate again, with all of them counted as it is now (rate_if_sent): each was held with the
rate as if it alone were sent, when it was held. `ordersync orders cancellation-rate` and the metric
ordersync_cancellation_rate_percent show it."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from daemon.pipeline.events import buyer_request_key, units_given_up
from daemon.store import Store
from daemon.store.models import Order

WINDOW = timedelta(days=7)
AMAZON_TARGET_PERCENT = 2.5


def percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


@dataclass
class CancellationRate:
    since: datetime
    orders: int           # FBM orders created on Amazon in the window (and any decided here the grid lacks)
    counted: set[str]     # of them, the ones cancelled by the seller (or being), not for the buyer
    _decided: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # order: (counts, new to the window)

    @property
    def percent(self) -> float:
        return percent(len(self.counted), self.orders)

    def fields_for(self, amazon_order_id: str, row: Order | None, fulfillment: str | None, reason_code: str,
                   buyer_requested: bool) -> dict[str, Any]:
        """The fact's fields of a cancellation of this order about to be sent to Amazon with `reason_code`."""
        counts, new_to_window = self.would_count(amazon_order_id, row, fulfillment, reason_code, buyer_requested)
        orders = self.orders + new_to_window
        self._decided[amazon_order_id] = (counts, new_to_window)
        return {"buyer_requested_cancel": buyer_requested, "cancellation_counts": counts,
                "cancellation_rate": self.percent, "cancellation_rate_if_cancelled": percent(len(self.counted) + counts, orders),
                "cancellation_rate_orders": orders}

    def would_count(self, amazon_order_id: str, row: Order | None, fulfillment: str | None, reason_code: str,
                    buyer_requested: bool) -> tuple[bool, bool]:
        """Whether a cancellation of this order sent to Amazon with `reason_code` counts, and whether it is one more
        order of the window. It counts unless Amazon ships the order (FBA), the order is older than the window, it
        is counted already, or it answers the buyer's request with the buyer's reason (BuyerCanceled). An order the
        grid has no creation day of counts as in the window, one more order of it: the estimate errs towards asking
        a person."""
        created = row.created_on_amazon if row is not None else None  # the store's times are aware (UTC)
        in_window = created is None or created >= self.since
        # The grid's fulfillment first: the week's orders (the rate's denominator) are counted by it.
        fbm = ((row.fulfillment if row is not None else None) or fulfillment) == "FBM"
        for_the_buyer = buyer_requested and reason_code == "BuyerCanceled"
        counts = fbm and in_window and not for_the_buyer and amazon_order_id not in self.counted
        return counts, counts and created is None

    def decided(self, amazon_order_id: str, action_types: Iterable[str]) -> None:
        """A cancellation decided in this run that is going to Amazon now (or a refund giving units up) counts for the
        next one decided."""
        types = set(action_types)
        counts, new_to_window = self._decided.pop(amazon_order_id, (False, False))
        if counts and types & {"cancel_on_amazon", "refund_on_amazon"} and "queue_for_approval" not in types:
            self.count(amazon_order_id, new_to_window)

    def count(self, amazon_order_id: str, new_to_window: bool) -> None:
        """The order's cancellation is going to Amazon: the rate counts it from now on."""
        self.counted.add(amazon_order_id)
        self.orders += new_to_window


def measure(store: Store, account: str, now: datetime) -> CancellationRate:
    window = store.cancellation_window(account, now - WINDOW)
    asked = store.stored_keys(account, (buyer_request_key(order_id) for order_id in window.being_cancelled))
    being = {order_id for order_id, reason in window.being_cancelled.items()
             if not (buyer_request_key(order_id) in asked and reason == "BuyerCanceled")}
    # Units a refund gives up (DOMAIN 13, `orders refund --unfulfilled`) reach Amazon as cancelled, with an adjustment
    # reason, never the buyer's BuyerCanceled: Amazon counts item cancellations as it counts orders'.
    giving_up = {order_id for order_id, payload in window.being_refunded if units_given_up(payload)}
    return CancellationRate(window.since, window.orders, set(window.cancelled) | being | giving_up)


def summary(rate: CancellationRate) -> Mapping[str, Any]:
    return {"since": rate.since.isoformat(), "orders": rate.orders, "cancelled": len(rate.counted),
            "percent": rate.percent, "amazon_target_percent": AMAZON_TARGET_PERCENT, "cancelled_orders": sorted(rate.counted)}


# Below this many FBM orders a week one cancellation moves the rate by a point or more, so a rate over the
# target says little: the shipped rule (cancel-over-cancellation-rate, cancellation_rate_orders gte 100) leaves
# those weeks alone, and so does approving held cancellations (RateIfSent.too_high).
FEWEST_ORDERS_JUDGED = 100


@dataclass(frozen=True)
class RateIfSent:
    """An account's rate as it is and as it would be with some held cancellations sent to Amazon too."""
    now: float
    after: float
    orders: int                 # the FBM orders `after` is counted over (an order the grid lacks is one more)
    counting: tuple[str, ...]   # the orders of the cancellations that the rate would count

    @property
    def over_target(self) -> bool:
        """Sending them would raise the rate to Amazon's target or more (Amazon wants it under). Cancellations the
        rate does not count leave it as it is, so they never are, however high it is already."""
        return self.after >= AMAZON_TARGET_PERCENT and self.after > self.now

    @property
    def too_high(self) -> bool:
        """Over the target in a week of enough orders for the rate to say something: what a person approving is
        stopped at."""
        return self.over_target and self.orders >= FEWEST_ORDERS_JUDGED


class HeldCancellation(NamedTuple):
    """A cancellation (or a refund giving units up) held for approval, as the rate counts it."""
    amazon_order_id: str
    reason_code: str
    fulfillment: str | None  # as its decision's fact had it, for an order the grid has no fulfillment of


def rate_if_sent(store: Store, account: str, now: datetime, cancellations: Sequence[HeldCancellation]) -> RateIfSent:
    """The account's rate now, and with these cancellations, held for approval, sent to Amazon too: each counted as a
    cancellation about to be sent is in its fact (CancellationRate.would_count), against the rate as it is now, not
    as it was when it was held. An order the grid lacks counts as one more order of the week, as in the fact."""
    rate = measure(store, account, now)
    before = rate.percent
    asked = store.stored_keys(account, (buyer_request_key(held.amazon_order_id) for held in cancellations))
    counting: list[str] = []
    for order_id, reason_code, fulfillment in cancellations:
        counts, new_to_window = rate.would_count(order_id, store.get_order(account, order_id), fulfillment, reason_code,
                                                 buyer_request_key(order_id) in asked)
        if counts:
            rate.count(order_id, new_to_window)  # a second cancellation of the same order does not count again
            counting.append(order_id)
    return RateIfSent(before, rate.percent, rate.orders, tuple(counting))
