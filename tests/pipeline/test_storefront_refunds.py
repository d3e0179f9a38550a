"""Refunds a person makes in the Shopify admin reach Amazon (DOMAIN: "the seller, in ordersync / the storefront ...
send it to Amazon"), with the account's sync_storefront_refunds on: the storefront refunds poll takes each an hour
after it was made, with Amazon's refunds of the order read then, and the rules send Amazon what it has not refunded.
A Seller Central refund recorded in Shopify by hand is not sent again; ordersync's own refunds are never sent back."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.shopify.client import ShopifyRejected
from adapters.sim.server import Faults
from daemon.pipeline import jobs
from daemon.pipeline.operator import request_refund
from daemon.store.models import ADJUSTMENT_FEED

from .harness import ACCOUNT, all_decisions, feed_messages
from .test_amazon_refunds import KETTLE, RUG, TOASTER, refund_in_seller_central, storefront_refunds
from .test_pipeline import QUIET, Harness, running
from .test_storefront_cancellations import next_second


def refund_in_shopify_admin(harness: Harness, order: dict[str, Any], amount: str, **how: Any) -> str:
    return harness.standins.shopify.refund_in_admin(harness.standins.shop_order(order["id"])["id"], amount, **how)


def shopify_reads(harness: Harness, operation: str) -> int:
    return sum(1 for e in harness.standins.shopify.journal.entries() if e.get("operation") == operation)


def an_hour_later(harness: Harness) -> None:
    """The storefront refunds poll takes a refund once it is an hour old (the stand-ins keep real time)."""
    later = datetime.now(timezone.utc) + timedelta(hours=1, minutes=5)
    harness.pipeline.clock = lambda: later


def back_to_now(harness: Harness) -> None:
    harness.pipeline.clock = jobs.utcnow


def storefront_refund_decisions(harness: Harness) -> dict[str, Any]:
    return {d.record["amazon_order_id"]: d.record for d in all_decisions(harness.store)
            if d.record["event"] == "refund_requested" and d.record["fact"].get("origin") == "storefront"}


def refunded_on_amazon(harness: Harness, order: dict[str, Any]) -> list[Decimal]:
    """The refunds Amazon made on the order, each as the buyer's total, in the order it made them."""
    with harness.standins.amazon.lock:
        events = [e for e in harness.standins.amazon.refund_events if e["order_id"] == order["id"]]
    return [sum((Decimal(item["principal"]) + sum((Decimal(v) for v in (item.get("charges") or {}).values()), Decimal(0))
                 for item in e["items"]), Decimal(0)) for e in events]


def test_a_refund_made_in_the_shopify_admin_reaches_amazon_once_and_one_recorded_by_hand_does_not(
        db_url: str, tmp_path: Path) -> None:
    with running([KETTLE, TOASTER, RUG], db_url, tmp_path) as harness:
        harness.pipeline.settings["sync_storefront_refunds"] = True
        harness.drive()  # the first storefront refunds poll starts watching
        next_second()
        refund_in_shopify_admin(harness, KETTLE, "10.00", note="scratched, kept it")
        # Refunded in Seller Central, then recorded in Shopify by hand: Amazon must not refund it again.
        refund_in_seller_central(harness, TOASTER, "5.00")
        refund_in_shopify_admin(harness, TOASTER, "5.00")
        # A refund made with ordersync carries its marker: sent to Amazon by its own decision, never read back.
        assert request_refund(harness.store, harness.amazon, ACCOUNT, RUG["id"], "7.00", "GeneralAdjustment")
        harness.drive()
        assert storefront_refund_decisions(harness) == {}  # not an hour old yet
        assert refunded_on_amazon(harness, RUG) == [Decimal("7.00")]

        an_hour_later(harness)
        assert harness.pipeline.poll_storefront_refunds() == 2
        assert harness.pipeline.poll_storefront_refunds() == 0  # met again, stored once
        back_to_now(harness)
        harness.drive(polls=False)
        decided = storefront_refund_decisions(harness)
        assert set(decided) == {KETTLE["id"], TOASTER["id"]}
        kettle = decided[KETTLE["id"]]
        assert kettle["rule"] == "storefront-refund-to-amazon"
        assert Decimal(kettle["fact"]["refund_missing_on_amazon"]) == Decimal("10.00")
        assert kettle["fact"]["reason_code"] == "GeneralAdjustment"
        assert decided[TOASTER["id"]]["rule"] == "storefront-refund-already-on-amazon"
        assert refunded_on_amazon(harness, KETTLE) == [Decimal("10.00")]
        assert refunded_on_amazon(harness, TOASTER) == [Decimal("5.00")]  # Seller Central's alone
        assert feed_messages(harness.standins.amazon)[(TOASTER["id"], ADJUSTMENT_FEED)] == 0

        # Amazon's refund comes back through the refunds poll: the storefront shows it already.
        harness.drive()
        assert storefront_refunds(harness, KETTLE) == [Decimal("10.00")]
        assert storefront_refunds(harness, TOASTER) == [Decimal("5.00")]
        assert storefront_refunds(harness, RUG) == [Decimal("7.00")]
        an_hour_later(harness)
        assert harness.pipeline.poll_storefront_refunds() == 0
        assert refunded_on_amazon(harness, KETTLE) == [Decimal("10.00")]


SHIPPED_LATER = {"id": "114-0000024-0000024", "lines": [{"sku": "LAMP-24", "quantity": 1, "price": "30.00"}]}


def test_storefront_refunds_stay_off_amazon_unless_the_account_asks_and_an_unshipped_order_is_an_error(
        db_url: str, tmp_path: Path) -> None:
    with running([KETTLE, SHIPPED_LATER], db_url, tmp_path) as harness:
        harness.drive()
        next_second()
        refund_in_shopify_admin(harness, KETTLE, "10.00")
        an_hour_later(harness)
        # Off (the default): nothing is read, and the watch starts over at every run, so nothing made while it was
        # off is sent once it is turned on.
        asked = shopify_reads(harness, "RefundedOrders")
        assert harness.pipeline.poll_storefront_refunds() == 0
        assert shopify_reads(harness, "RefundedOrders") == asked
        back_to_now(harness)
        assert harness.pipeline.poll_storefront_refunds() == 0

        harness.pipeline.settings["sync_storefront_refunds"] = True
        next_second()
        refund_in_shopify_admin(harness, SHIPPED_LATER, "30.00")  # paid, not shipped on Amazon
        an_hour_later(harness)
        assert harness.pipeline.poll_storefront_refunds() == 1  # KETTLE's, made while off, is not taken
        back_to_now(harness)
        harness.drive(polls=False)
        assert set(storefront_refund_decisions(harness)) == {SHIPPED_LATER["id"]}
        assert storefront_refund_decisions(harness)[SHIPPED_LATER["id"]]["rule"] == "reject-storefront-refund-before-shipment"
        failed = {o.amazon_order_id: o for o in harness.store.failed_orders(ACCOUNT)}
        assert failed[SHIPPED_LATER["id"]].sync_status == "Failed Refund"
        assert "sends refunds only of orders Amazon shows shipped" in failed[SHIPPED_LATER["id"]].last_error
        assert refunded_on_amazon(harness, SHIPPED_LATER) == []
        assert refunded_on_amazon(harness, KETTLE) == []


def test_copies_of_amazon_s_refunds_are_not_sent_with_ordersync_s_own_refund_on_its_way(db_url: str, tmp_path: Path) -> None:
    """A person's copy must not look new. KETTLE: ordersync's own refund waits for approval on Amazon (the storefront
    shows it, Amazon does not) when a Seller Central refund is copied by hand: Amazon's total is explained by the
    copy, so nothing is sent. TOASTER: a copy of ordersync's record of Amazon's refund (the totals agree) goes to
    the error view."""
    with running([KETTLE, TOASTER], db_url, tmp_path) as harness:
        harness.pipeline.settings.update(sync_storefront_refunds=True, queue_refunds_and_cancellations=True)
        harness.drive()
        assert request_refund(harness.store, harness.amazon, ACCOUNT, KETTLE["id"], "7.00", "GeneralAdjustment")
        harness.drive(polls=False)
        next_second()
        refund_in_seller_central(harness, KETTLE, "5.00")
        refund_in_shopify_admin(harness, KETTLE, "5.00")
        refund_in_seller_central(harness, TOASTER, "5.00")
        harness.drive()
        assert storefront_refunds(harness, TOASTER) == [Decimal("5.00")]
        refund_in_shopify_admin(harness, TOASTER, "5.00")

        an_hour_later(harness)
        assert harness.pipeline.poll_storefront_refunds() == 2
        back_to_now(harness)
        harness.drive(polls=False)
        decided = storefront_refund_decisions(harness)
        assert decided[KETTLE["id"]]["rule"] == "storefront-refund-already-on-amazon"
        assert Decimal(decided[KETTLE["id"]]["fact"]["refunds_on_their_way_to_amazon"]) == Decimal("7.00")
        assert decided[TOASTER["id"]]["rule"] == "storefront-refund-copies-ordersync-refund"
        assert "most likely a copy" in {o.amazon_order_id: o.last_error for o in harness.store.failed_orders(ACCOUNT)}[TOASTER["id"]]
        assert refunded_on_amazon(harness, KETTLE) == [Decimal("5.00")]  # Seller Central's; ordersync's 7.00 waits
        assert refunded_on_amazon(harness, TOASTER) == [Decimal("5.00")]


def test_two_refunds_of_one_order_within_the_hour_both_reach_amazon(db_url: str, tmp_path: Path) -> None:
    """The second is taken by a later poll, once the first's decision says what ordersync sends: Amazon not listing
    the first yet does not make the second look like a disagreement."""
    with running([KETTLE], db_url, tmp_path) as harness:
        harness.pipeline.settings["sync_storefront_refunds"] = True
        harness.drive()
        next_second()
        refund_in_shopify_admin(harness, KETTLE, "10.00")
        refund_in_shopify_admin(harness, KETTLE, "5.00")
        an_hour_later(harness)
        assert harness.pipeline.poll_storefront_refunds() == 1
        harness.pipeline.decide()  # the first: its refund on Amazon is queued for the next feed
        assert harness.pipeline.poll_storefront_refunds() == 1
        back_to_now(harness)
        harness.drive(polls=False)
        decisions = [d.record for d in all_decisions(harness.store) if d.record["event"] == "refund_requested"]
        assert [d["rule"] for d in decisions] == ["storefront-refund-to-amazon"] * 2
        assert Decimal(decisions[1]["fact"]["refunds_on_their_way_to_amazon"]) == Decimal("10.00")
        assert sorted(refunded_on_amazon(harness, KETTLE)) == [Decimal("5.00"), Decimal("10.00")]


def test_a_refund_amazon_s_side_of_which_cannot_be_read_goes_to_the_error_view_once(db_url: str, tmp_path: Path) -> None:
    with running([KETTLE, RUG], db_url, tmp_path) as harness:
        harness.pipeline.settings["sync_storefront_refunds"] = True
        harness.drive()
        next_second()
        refund_in_shopify_admin(harness, KETTLE, "10.00")
        refund_in_shopify_admin(harness, RUG, "6.00")
        harness.standins.amazon.faults = Faults(error_rate=1.0, error_statuses=[400],
                                                path_prefix=f"/orders/2026-01-01/orders/{KETTLE['id']}")
        an_hour_later(harness)
        assert harness.pipeline.poll_storefront_refunds() == 2
        harness.standins.amazon.faults = Faults()
        assert harness.pipeline.poll_storefront_refunds() == 0  # stored, so not met again as new
        back_to_now(harness)
        harness.drive(polls=False)
        decided = storefront_refund_decisions(harness)
        assert decided[KETTLE["id"]]["rule"] == "storefront-refund-not-checked"
        assert "Amazon did not give the order" in {o.amazon_order_id: o.last_error for o in harness.store.failed_orders(ACCOUNT)}[KETTLE["id"]]
        assert decided[RUG["id"]]["rule"] == "storefront-refund-to-amazon"
        assert refunded_on_amazon(harness, KETTLE) == []


def test_a_poll_that_stops_early_does_not_step_over_a_refund_not_an_hour_old(db_url: str, tmp_path: Path,
                                                                          monkeypatch: Any) -> None:
    monkeypatch.setattr(jobs, "STOREFRONT_PER_POLL", 1)
    with running([KETTLE, TOASTER, RUG], db_url, tmp_path) as harness:
        harness.pipeline.settings["sync_storefront_refunds"] = True
        harness.drive()
        next_second()
        refund_in_shopify_admin(harness, KETTLE, "1.00")
        refund_in_shopify_admin(harness, RUG, "2.00")
        first = datetime.now(timezone.utc).replace(microsecond=0)
        next_second()
        next_second()
        refund_in_shopify_admin(harness, TOASTER, "3.00")  # not an hour old at the next poll
        next_second()
        refund_in_shopify_admin(harness, RUG, "4.00")      # RUG updated last
        at = first + timedelta(hours=1, seconds=1)
        harness.pipeline.clock = lambda: at
        assert harness.pipeline.poll_storefront_refunds() == 1  # KETTLE's; it stops at RUG's first
        an_hour_later(harness)
        while harness.pipeline.poll_storefront_refunds():
            pass
        back_to_now(harness)
        harness.drive(polls=False)
        assert set(storefront_refund_decisions(harness)) == {KETTLE["id"], TOASTER["id"], RUG["id"]}
        assert refunded_on_amazon(harness, TOASTER) == [Decimal("3.00")]


def test_a_refund_of_an_order_cancelled_in_the_admin_is_the_cancellation_s(db_url: str, tmp_path: Path) -> None:
    """Cancelling in the Shopify admin can refund the buyer there; Amazon hears of the cancellation (the storefront
    cancellations poll) and refunds the buyer itself, so the refund is not sent as well."""
    with running([QUIET], db_url, tmp_path) as harness:
        harness.pipeline.settings["sync_storefront_refunds"] = True
        harness.drive()
        next_second()
        gid = harness.standins.shop_order(QUIET["id"])["id"]
        harness.standins.shopify.refund_in_admin(gid, "5.00")
        harness.standins.shopify.cancel_in_admin(gid, "CUSTOMER")
        an_hour_later(harness)
        assert harness.pipeline.poll_storefront_refunds() == 0


def test_orders_whose_refunds_cannot_all_be_read_go_to_the_error_view_and_the_others_go_on(
        db_url: str, tmp_path: Path, monkeypatch: Any) -> None:
    """The poll reads at most 10 refunds of an order (Shopify's cost limit): one with more is put before a person
    rather than read in part, and passed over from then on; before, it stopped every later refund. More such
    orders than a poll puts aside stop that poll, and the next goes on from the ones put aside."""
    monkeypatch.setattr(jobs, "UNREADABLE_PER_POLL", 1)
    with running([KETTLE, TOASTER, RUG], db_url, tmp_path) as harness:
        harness.pipeline.settings["sync_storefront_refunds"] = True
        harness.drive()
        next_second()
        for _ in range(11):
            refund_in_shopify_admin(harness, KETTLE, "1.00")
            refund_in_shopify_admin(harness, TOASTER, "1.00")
        refund_in_shopify_admin(harness, RUG, "6.00")
        an_hour_later(harness)
        with pytest.raises(ShopifyRejected, match="could not be read"):
            harness.pipeline.poll_storefront_refunds()
        assert harness.pipeline.poll_storefront_refunds() == 1
        assert harness.pipeline.poll_storefront_refunds() == 0
        failed = {o.amazon_order_id: o for o in harness.store.failed_orders(ACCOUNT)}
        assert set(failed) == {KETTLE["id"], TOASTER["id"]}
        assert failed[KETTLE["id"]].sync_status == "Failed Refund"
        assert "storefront_refunds_unreadable" in failed[KETTLE["id"]].last_error
        back_to_now(harness)
        harness.drive(polls=False)
        assert set(storefront_refund_decisions(harness)) == {RUG["id"]}
        assert refunded_on_amazon(harness, RUG) == [Decimal("6.00")]
