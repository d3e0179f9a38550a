"""What `ordersync approvals approve` checks held cancellations by (daemon.pipeline.cancellation_rate.rate_if_sent):
approved together, they are counted against the rate as it is now, each as a cancellation about to be sent is in
its fact. The store fixtures are tests/cli's (those of tests/store)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from daemon.pipeline.cancellation_rate import HeldCancellation, RateIfSent, rate_if_sent
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

    held = [HeldCancellation("111-0000001-0000001", "NoInventory", None),  # counts, and is one more order of the week
            HeldCancellation("111-0000001-0000001", "GeneralAdjustment", None),  # the same order: counted once
            HeldCancellation("111-0000002-0000002", "NoInventory", None),  # Amazon ships it
            HeldCancellation("111-0000003-0000003", "NoInventory", None),  # older than the week
            HeldCancellation(week[2], "NoInventory", None),  # counted already: its cancellation is going out
            HeldCancellation(week[3], "NoInventory", None)]
    after = rate_if_sent(store, ACCOUNT, now, held)
    assert after == RateIfSent(3.0, 4.95, 101, ("111-0000001-0000001", week[3]))
    assert after.over_target and after.too_high

    # An order the grid does not have (a person's cancellation of one the order poll never read) counts as its
    # decision's fact says: one more FBM order of the week, or none for one Amazon ships.
    unread = rate_if_sent(store, ACCOUNT, now, [HeldCancellation("111-0000009-0000009", "NoInventory", "FBM"),
                                                HeldCancellation("111-0000008-0000008", "NoInventory", "FBA")])
    assert unread == RateIfSent(3.0, 3.96, 101, ("111-0000009-0000009",))
    # The grid's fulfillment, where it has one, is the one the week's orders are counted by.
    fba_in_grid = rate_if_sent(store, ACCOUNT, now, [HeldCancellation("111-0000002-0000002", "NoInventory", "FBM")])
    assert fba_in_grid == RateIfSent(3.0, 3.0, 100, ())

    # Cancellations the rate does not count leave it as it is, however high it is already.
    none_count = rate_if_sent(store, ACCOUNT, now, held[2:5])
    assert none_count == RateIfSent(3.0, 3.0, 100, ()) and not none_count.over_target
