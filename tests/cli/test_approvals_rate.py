"""What `ordersync approvals approve` checks held cancellations by (daemon.pipeline.cancellation_rate.rate_if_sent):
approved together, they are counted against the rate as it is now, each as a cancellation about to be sent is in
its fact. The store fixtures are tests/cli's (those of tests/store)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from daemon.pipeline.cancellation_rate import RateIfSent, rate_if_sent
from daemon.store import Store

ACCOUNT = "acme"


def test_each_held_cancellation_counts_as_it_would_if_sent_now(store: Store, decided) -> None:
    now = datetime.now(timezone.utc)
    week = [f"111-7{n:06d}-0000000" for n in range(100)]
    for n, order_id in enumerate(week):
        store.upsert_order(ACCOUNT, order_id, fulfillment="FBM", created_on_amazon=now - timedelta(days=2),
                           status="Canceled" if n < 2 else "Unshipped", cancelled_by_seller=n < 2)
    store.upsert_order(ACCOUNT, "111-0000001-0000001", fulfillment="FBM")  # the grid has no creation day of it
    store.upsert_order(ACCOUNT, "111-0000002-0000002", fulfillment="FBA", created_on_amazon=now - timedelta(days=2))
    store.upsert_order(ACCOUNT, "111-0000003-0000003", fulfillment="FBM", created_on_amazon=now - timedelta(days=8))
    decided([{"type": "cancel_on_amazon", "reason_code": "NoInventory"}], order=week[2], account=ACCOUNT)  # going out
    assert rate_if_sent(store, ACCOUNT, now, []) == RateIfSent(3.0, 3.0, 100, ())

    held = [("111-0000001-0000001", "NoInventory"),  # counts, and is one more order of the week
            ("111-0000001-0000001", "GeneralAdjustment"),  # the same order: counted once
            ("111-0000002-0000002", "NoInventory"),  # Amazon ships it
            ("111-0000003-0000003", "NoInventory"),  # older than the week
            (week[2], "NoInventory"),  # counted already: its cancellation is going out
            (week[3], "NoInventory")]
    after = rate_if_sent(store, ACCOUNT, now, held)
    assert after == RateIfSent(3.0, 4.95, 101, ("111-0000001-0000001", week[3]))
    assert after.over_target and after.too_high

    # Cancellations the rate does not count leave it as it is, however high it is already.
    none_count = rate_if_sent(store, ACCOUNT, now, held[2:5])
    assert none_count == RateIfSent(3.0, 3.0, 100, ()) and not none_count.over_target
