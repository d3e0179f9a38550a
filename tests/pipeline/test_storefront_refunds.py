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
from lxml import etree
from sqlalchemy import update
from sqlmodel import col

from adapters.shopify.client import ShopifyRejected
from adapters.sim.server import Faults
from daemon.pipeline import jobs
from daemon.pipeline.operator import request_refund
from daemon.store.models import ADJUSTMENT_FEED, BATCH_CREATED, BATCH_SUBMITTED, Event

from .harness import ACCOUNT, PausesSeen, all_decisions, feed_messages
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


# -- Amazon read again when the feed goes out ---------------------------------------------------------------------
def storefront_refund_action(harness: Harness, order: dict[str, Any]) -> Any:
    """The refund_on_amazon action of the order's storefront refund decision, as it is now."""
    [decision] = [d for d in all_decisions(harness.store) if d.record["amazon_order_id"] == order["id"]
                  and d.record["event"] == "refund_requested" and d.record["fact"].get("origin") == "storefront"]
    [action] = [a for a in harness.store.actions_of(decision.decision_id) if a.type == "refund_on_amazon"]
    return action


class Outcomes(jobs.Observer):
    """What the pipeline told the service of its actions (the ordersync_actions_total metric's outcomes)."""

    def __init__(self) -> None:
        self.acts: list[tuple[str, str]] = []

    def acted(self, action_type: str, outcome: str) -> None:
        self.acts.append((action_type, outcome))

    def of(self, action_type: str) -> list[str]:
        return [outcome for kind, outcome in self.acts if kind == action_type]


def operator_refund(harness: Harness, order: dict[str, Any], amount: str) -> None:
    """`orders refund`: decided, and its storefront refund made, so that its refund on Amazon waits for the next feed
    (or for approval)."""
    assert request_refund(harness.store, harness.amazon, ACCOUNT, order["id"], amount, "GeneralAdjustment")
    harness.pipeline.decide()
    while harness.dispatcher.run():
        pass


def storefront_refunds_taken(harness: Harness, *refunds: tuple[dict[str, Any], str]) -> None:
    """Refunds a person makes in the Shopify admin now (order, amount), taken by the storefront refunds poll an hour
    on, and decided."""
    refunds_read_an_hour_later(harness, *refunds)
    harness.pipeline.decide()


def refunds_read_an_hour_later(harness: Harness, *refunds: tuple[dict[str, Any], str]) -> None:
    """Refunds a person makes in the Shopify admin now (order, amount), each taken by the storefront refunds poll an
    hour on (stored, not decided yet)."""
    next_second()
    for order, amount in refunds:
        refund_in_shopify_admin(harness, order, amount)
    an_hour_later(harness)
    assert harness.pipeline.poll_storefront_refunds() == len(refunds)
    back_to_now(harness)


def adjustment_feeds(harness: Harness) -> list[list[str]]:
    """The Amazon orders of each refund feed Amazon accepted, message by message, in the order sent."""
    with harness.standins.amazon.lock:
        feeds = [harness.standins.amazon.documents[f["input"]]["content"] for f in harness.standins.amazon.feeds.values()
                 if f["feedType"] == ADJUSTMENT_FEED]
    return [[el.text for el in etree.fromstring(content).iter() if etree.QName(el).localname == "AmazonOrderID"]
            for content in feeds]


def refunds_amazon_made(harness: Harness, order: dict[str, Any]) -> list[tuple[float, str]]:
    """What Amazon's stand-in counted against the order's items: (principal, reason) of each refund."""
    with harness.standins.amazon.lock:
        return [(r["principal"], r["reason"]) for r in harness.standins.amazon.orders[order["id"]]["refunds"]]


def test_a_storefront_refund_is_not_sent_once_amazon_refunded_the_order_meanwhile(db_url: str, tmp_path: Path) -> None:
    """The refund waits for approval; before it is approved, the buyer is refunded in Seller Central too. Amazon is read
    again when the feed goes out: its total grew by more than ordersync's own refunds explain, so the refund is not
    sent and the order is in the error view. RUG: ordersync's own refund of the order, decided after the storefront's
    and sent first, explains what Amazon shows more, and the storefront's refund goes."""
    with running([KETTLE, RUG], db_url, tmp_path) as harness:
        harness.pipeline.settings.update(sync_storefront_refunds=True, queue_refunds_and_cancellations=True)
        harness.pipeline.observer = observer = Outcomes()
        harness.drive()
        refunds_read_an_hour_later(harness, (KETTLE, "10.00"), (RUG, "6.00"))
        harness.drive(polls=False)
        assert {a.amazon_order_id for a in harness.store.awaiting_approval(ACCOUNT)} == {KETTLE["id"], RUG["id"]}

        assert request_refund(harness.store, harness.amazon, ACCOUNT, RUG["id"], "7.00", "GeneralAdjustment")
        harness.drive(polls=False)
        [ours] = [a for a in harness.store.awaiting_approval(ACCOUNT)
                  if a.amazon_order_id == RUG["id"] and a.id != storefront_refund_action(harness, RUG).id]
        harness.store.approve([ours.id])
        harness.drive(polls=False)
        assert refunded_on_amazon(harness, RUG) == [Decimal("7.00")]

        refund_in_seller_central(harness, KETTLE, "10.00")  # the buyer asked Amazon too
        harness.store.approve([storefront_refund_action(harness, KETTLE).id, storefront_refund_action(harness, RUG).id])
        harness.drive()

        assert feed_messages(harness.standins.amazon)[(KETTLE["id"], ADJUSTMENT_FEED)] == 0
        assert refunds_amazon_made(harness, KETTLE) == [(10.0, "SellerCentral")]  # the buyer got it once
        withheld = storefront_refund_action(harness, KETTLE)
        assert withheld.status == "rejected"
        # The row says why, with the figures; the observer counts it apart from failures.
        assert {k: v for k, v in withheld.result.items() if k != "checked_at"} == {
            "withheld": "refunded_meanwhile", "amazon_refunded_then": "0.00", "amazon_refunded_now": "10.00",
            "ordersync_refunds_counted": "0.00", "ordersync_refund_actions_counted": []}
        assert withheld.result["checked_at"].endswith("Z")
        assert observer.of("refund_on_amazon").count("withheld") == 1
        assert "failed" not in observer.of("refund_on_amazon")
        failed = {o.amazon_order_id: o for o in harness.store.failed_orders(ACCOUNT)}
        assert set(failed) == {KETTLE["id"]}
        assert failed[KETTLE["id"]].sync_status == "Failed Refund"
        assert failed[KETTLE["id"]].last_error == withheld.last_error
        assert (f"storefront_refund_refunded_meanwhile: Amazon refunded 10.00 on order {KETTLE['id']} since the "
                f"storefront refund of 10.00 was read, 10.00 more than ordersync's own refunds explain (Amazon showed "
                f"0.00 refunded then and shows 10.00 now; ordersync's own refunds that may have reached Amazon since: "
                f"0.00)") in failed[KETTLE["id"]].last_error
        assert "not sent to Amazon, so the buyer is not refunded twice" in failed[KETTLE["id"]].last_error
        assert ("refund there whatever of 10.00 the buyer is still owed, then resolve this (resolving does not send it)"
                in failed[KETTLE["id"]].last_error)
        # The storefront shows the Seller Central refund already: the books agree.
        assert storefront_refunds(harness, KETTLE) == [Decimal("10.00")]

        assert storefront_refund_action(harness, RUG).status == "done"
        assert sorted(refunded_on_amazon(harness, RUG)) == [Decimal("6.00"), Decimal("7.00")]

        # Resolving takes the order out of the error view and does not send the refund after all.
        assert harness.store.resolve(ACCOUNT, KETTLE["id"]) == 0
        harness.drive()
        assert harness.store.failed_orders(ACCOUNT) == []
        assert refunds_amazon_made(harness, KETTLE) == [(10.0, "SellerCentral")]


def test_a_storefront_refund_waits_for_amazon_to_answer_before_it_is_sent(db_url: str, tmp_path: Path) -> None:
    """Amazon refuses the app (or does not answer) when the feed is due: the storefront refunds stay queued and go with
    a later feed once Amazon's refunds of their orders can be read again; an operator's refund goes meanwhile."""
    with running([KETTLE, TOASTER, RUG], db_url, tmp_path) as harness:
        harness.pipeline.settings["sync_storefront_refunds"] = True
        harness.drive()
        refunds_read_an_hour_later(harness, (KETTLE, "10.00"), (TOASTER, "5.00"))
        assert request_refund(harness.store, harness.amazon, ACCOUNT, RUG["id"], "7.00", "GeneralAdjustment")
        harness.pipeline.decide()
        while harness.dispatcher.run():  # the operator's refund in the storefront first
            pass
        assert len(harness.store.queued_amazon_actions(ACCOUNT, ADJUSTMENT_FEED)) == 3

        harness.standins.amazon.faults = Faults(error_rate=1.0, error_statuses=[403], path_prefix="/finances")
        harness.pipeline.observer = seen = PausesSeen()
        assert harness.pipeline.send_batches() == 1
        assert seen.runs == [(ACCOUNT, "send_batches", True)]  # for the operators' alert: the run ends ok
        messages = feed_messages(harness.standins.amazon)
        assert (messages[(RUG["id"], ADJUSTMENT_FEED)], messages[(KETTLE["id"], ADJUSTMENT_FEED)],
                messages[(TOASTER["id"], ADJUSTMENT_FEED)]) == (1, 0, 0)
        for order in (KETTLE, TOASTER):
            action = storefront_refund_action(harness, order)
            assert (action.status, action.batch_id) == ("queued_for_batch", None)
        assert harness.store.failed_orders(ACCOUNT) == []
        assert harness.pipeline.send_batches() == 0  # still not answering: still queued

        harness.standins.amazon.faults = Faults()
        assert harness.pipeline.send_batches() == 1
        harness.drive(polls=False)
        assert refunded_on_amazon(harness, KETTLE) == [Decimal("10.00")]
        assert refunded_on_amazon(harness, TOASTER) == [Decimal("5.00")]
        assert refunded_on_amazon(harness, RUG) == [Decimal("7.00")]
        assert harness.store.failed_orders(ACCOUNT) == []


def test_only_ordersync_s_own_refunds_that_went_out_explain_what_amazon_refunded_since(db_url: str, tmp_path: Path) -> None:
    """When the storefront refund was read, ordersync's own refund of the order (made with `orders refund`) waited for
    approval: Amazon had not listed it (refunds_on_their_way_to_amazon). TOASTER: it was approved and went out first,
    which is all Amazon refunded since, and the storefront refund goes too. KETTLE: a person rejected it, and the buyer
    was refunded in Seller Central: ordersync sent Amazon nothing that explains that refund, so the storefront's is
    not sent, though it is less than the refund that was on its way."""
    with running([KETTLE, TOASTER], db_url, tmp_path) as harness:
        harness.pipeline.settings.update(sync_storefront_refunds=True, queue_refunds_and_cancellations=True)
        harness.drive()
        for order in (KETTLE, TOASTER):
            assert request_refund(harness.store, harness.amazon, ACCOUNT, order["id"], "7.00", "GeneralAdjustment")
        harness.drive(polls=False)
        ours = {a.amazon_order_id: a.id for a in harness.store.awaiting_approval(ACCOUNT)}
        refunds_read_an_hour_later(harness, (KETTLE, "5.00"), (TOASTER, "5.00"))
        harness.drive(polls=False)
        decided = storefront_refund_decisions(harness)
        for order in (KETTLE, TOASTER):
            assert decided[order["id"]]["rule"] == "storefront-refund-to-amazon-after-approval"
            assert Decimal(decided[order["id"]]["fact"]["refunds_on_their_way_to_amazon"]) == Decimal("7.00")

        harness.store.approve([ours[TOASTER["id"]]])
        assert harness.store.reject([ours[KETTLE["id"]]]) == 1
        harness.drive(polls=False)
        assert refunded_on_amazon(harness, TOASTER) == [Decimal("7.00")]
        refund_in_seller_central(harness, KETTLE, "5.00")
        harness.store.approve([storefront_refund_action(harness, KETTLE).id, storefront_refund_action(harness, TOASTER).id])
        harness.drive()

        assert sorted(refunded_on_amazon(harness, TOASTER)) == [Decimal("5.00"), Decimal("7.00")]
        assert storefront_refund_action(harness, TOASTER).status == "done"
        assert refunds_amazon_made(harness, KETTLE) == [(5.0, "SellerCentral")]
        failed = {o.amazon_order_id: o for o in harness.store.failed_orders(ACCOUNT)}
        assert set(failed) == {KETTLE["id"]}
        assert (f"Amazon refunded 5.00 on order {KETTLE['id']} since the storefront refund of 5.00 was read, 5.00 more "
                f"than ordersync's own refunds explain (Amazon showed 0.00 refunded then and shows 5.00 now; ordersync's "
                f"own refunds that may have reached Amazon since: 0.00)") in failed[KETTLE["id"]].last_error


def test_a_storefront_refund_whose_amazon_refunds_cannot_be_read_again_fails_and_resolving_checks_it_again(
        db_url: str, tmp_path: Path) -> None:
    """Amazon gives the order's refunds unreadably when the feed is due, maybe once: the refund is not sent, and it is
    a failure (not withheld for good), which `ordersync errors resolve` queues again; the next feed checks it again."""
    with running([KETTLE], db_url, tmp_path) as harness:
        harness.pipeline.settings["sync_storefront_refunds"] = True
        harness.pipeline.observer = observer = Outcomes()
        harness.drive()
        refunds_read_an_hour_later(harness, (KETTLE, "10.00"))
        harness.pipeline.decide()
        harness.standins.amazon.faults = Faults(error_rate=1.0, error_statuses=[400],
                                                path_prefix=f"/finances/v0/orders/{KETTLE['id']}")
        assert harness.pipeline.send_batches() == 0
        harness.standins.amazon.faults = Faults()
        harness.drive(polls=False)
        assert refunded_on_amazon(harness, KETTLE) == []
        action = storefront_refund_action(harness, KETTLE)
        assert action.status == "failed"
        assert action.result["withheld"] == "amazon_refunds_unreadable"
        assert "HTTP 400" in action.result["amazon_error"]
        assert observer.of("refund_on_amazon") == ["failed"]
        [failed] = harness.store.failed_orders(ACCOUNT)
        assert (failed.amazon_order_id, failed.sync_status) == (KETTLE["id"], "Failed Refund")
        assert "Amazon's refunds of the order could not be read again before sending it: Amazon did not give the " \
               "order's refunds" in failed.last_error
        assert "Resolve this to have it checked against Amazon again" in failed.last_error

        assert harness.store.resolve(ACCOUNT, KETTLE["id"]) == 1
        assert storefront_refund_action(harness, KETTLE).status == "queued_for_batch"
        assert harness.pipeline.send_batches() == 1  # checked again: Amazon answers, nothing refunded meanwhile
        harness.drive(polls=False)
        assert refunded_on_amazon(harness, KETTLE) == [Decimal("10.00")]
        assert storefront_refund_action(harness, KETTLE).status == "done"
        assert harness.store.failed_orders(ACCOUNT) == []


@pytest.mark.parametrize("then", ["rejected", "still awaiting approval"])
def test_only_the_refunds_of_ordersync_s_amazon_had_not_listed_explain_what_it_refunded_since(
        db_url: str, tmp_path: Path, then: str) -> None:
    """ordersync refunded 5.00 (done: Amazon lists it) and 7.00 (waiting for approval: the storefront shows it, Amazon
    does not) when a person refunds 4.00 in the Shopify admin: Amazon's 5.00 then is explained by the 7.00 being on its
    way, and the poll records which refund that is (refunds_on_their_way_ids). The 7.00 is rejected, or still waits,
    and the buyer also gets 4.00 in Seller Central. When the storefront refund is approved, only the 7.00 could
    explain what Amazon refunded since, and it never went out: the refund is withheld. Counting the latest of
    ordersync's earlier refunds that fit under the 7.00 (the 5.00, which Amazon's 5.00 then already had) would have
    refunded the buyer's 4.00 twice."""
    with running([KETTLE], db_url, tmp_path) as harness:
        harness.pipeline.settings.update(sync_storefront_refunds=True, queue_refunds_and_cancellations=True)
        harness.drive()
        operator_refund(harness, KETTLE, "5.00")
        [first] = harness.store.awaiting_approval(ACCOUNT)
        harness.store.approve([first.id])
        harness.drive(polls=False)
        assert refunded_on_amazon(harness, KETTLE) == [Decimal("5.00")]
        operator_refund(harness, KETTLE, "7.00")
        [second] = harness.store.awaiting_approval(ACCOUNT)
        storefront_refunds_taken(harness, (KETTLE, "4.00"))
        decision = storefront_refund_decisions(harness)[KETTLE["id"]]
        assert decision["rule"] == "storefront-refund-to-amazon-after-approval"
        assert (Decimal(decision["fact"]["amazon_refunded_total"]),
                Decimal(decision["fact"]["refunds_on_their_way_to_amazon"])) == (Decimal("5.00"), Decimal("7.00"))
        [event] = [d for d in all_decisions(harness.store) if d.decision_id == decision["decision_id"]]
        assert harness.store.get_event(event.event_id).payload["refunds_on_their_way_ids"] == [second.id]

        if then == "rejected":
            assert harness.store.reject([second.id]) == 1
        refund_in_seller_central(harness, KETTLE, "4.00")
        harness.store.approve([storefront_refund_action(harness, KETTLE).id])
        harness.drive()

        assert refunded_on_amazon(harness, KETTLE) == [Decimal("5.00"), Decimal("4.00")]  # the 4.00 once
        withheld = storefront_refund_action(harness, KETTLE)
        assert withheld.status == "rejected"
        assert [Decimal(withheld.result[figure]) for figure in ("amazon_refunded_then", "amazon_refunded_now",
                                                                  "ordersync_refunds_counted")] == [5, 9, 0]
        [failed] = harness.store.failed_orders(ACCOUNT)
        assert f"Amazon refunded 4.00 on order {KETTLE['id']} since the storefront refund of 4.00 was read" in failed.last_error


def test_a_storefront_refund_decided_before_the_ids_were_recorded_counts_none_of_ordersync_s_earlier_refunds(
        db_url: str, tmp_path: Path) -> None:
    """Its event does not say which of ordersync's refunds Amazon had not listed when it was read: one of them that went
    out since cannot be told from one Amazon had already, so none is counted, and a refund that only it would explain
    is withheld rather than sent (the same order with the ids recorded goes: test_only_ordersync_s_own_refunds_...)."""
    with running([TOASTER], db_url, tmp_path) as harness:
        harness.pipeline.settings.update(sync_storefront_refunds=True, queue_refunds_and_cancellations=True)
        harness.drive()
        operator_refund(harness, TOASTER, "7.00")
        [ours] = harness.store.awaiting_approval(ACCOUNT)
        storefront_refunds_taken(harness, (TOASTER, "5.00"))
        decision = storefront_refund_decisions(harness)[TOASTER["id"]]
        [event_id] = [d.event_id for d in all_decisions(harness.store) if d.decision_id == decision["decision_id"]]
        payload = dict(harness.store.get_event(event_id).payload)
        assert payload.pop("refunds_on_their_way_ids") == [ours.id]
        with harness.store.transaction() as s:  # as the poll stored it before the ids were recorded
            s.execute(update(Event).where(col(Event.id) == event_id).values(payload=payload))
        harness.store.approve([ours.id])
        harness.drive(polls=False)
        harness.store.approve([storefront_refund_action(harness, TOASTER).id])
        harness.drive(polls=False)
        assert refunded_on_amazon(harness, TOASTER) == [Decimal("7.00")]
        assert storefront_refund_action(harness, TOASTER).status == "rejected"


LAMP = {"id": "114-0000026-0000026", "status": "Shipped", "storefront": {"fulfilled": True},
        "lines": [{"sku": "LAMP-01", "quantity": 1, "price": "30.00", "shipped": 1}]}
VASE = {"id": "114-0000027-0000027", "status": "Shipped", "storefront": {"fulfilled": True},
        "lines": [{"sku": "VASE-01", "quantity": 1, "price": "20.00", "shipped": 1}]}


def test_refunds_withheld_are_replaced_in_their_feed_by_the_next_ones(db_url: str, tmp_path: Path) -> None:
    """Amazon allows few createFeed calls (a burst of 15, then one every 2 minutes): a feed is filled with the next
    queued refunds in place of those withheld, and a listing withheld in full does not end the run. Queued, oldest
    first: KETTLE's and TOASTER's storefront refunds (withheld), RUG's operator refund, VASE's storefront refund
    (withheld), LAMP's operator refund; two a feed: one feed, RUG's and LAMP's."""
    with running([KETTLE, TOASTER, RUG, VASE, LAMP], db_url, tmp_path) as harness:
        harness.pipeline.settings["sync_storefront_refunds"] = True
        harness.pipeline.batch_size = 2
        harness.drive()
        storefront_refunds_taken(harness, (KETTLE, "10.00"), (TOASTER, "5.00"))
        operator_refund(harness, RUG, "7.00")
        storefront_refunds_taken(harness, (VASE, "3.00"))
        operator_refund(harness, LAMP, "6.00")
        queued = harness.store.queued_amazon_actions(ACCOUNT, ADJUSTMENT_FEED)
        assert [a.amazon_order_id for a in queued] == [KETTLE["id"], TOASTER["id"], RUG["id"], VASE["id"], LAMP["id"]]
        for order, amount in ((KETTLE, "10.00"), (TOASTER, "5.00"), (VASE, "3.00")):
            refund_in_seller_central(harness, order, amount)

        assert harness.pipeline.send_batches() == 1
        assert adjustment_feeds(harness) == [[RUG["id"], LAMP["id"]]]
        for order in (KETTLE, TOASTER, VASE):
            assert storefront_refund_action(harness, order).status == "rejected"
        assert harness.store.queued_amazon_actions(ACCOUNT, ADJUSTMENT_FEED) == []


def test_while_amazon_does_not_answer_no_storefront_refund_goes_nor_a_later_refund_of_its_order(
        db_url: str, tmp_path: Path) -> None:
    """Amazon refuses the app for KETTLE's refunds: KETTLE's storefront refund is held back, and so are TOASTER's, though
    Amazon would answer for it (Amazon is not asked again in the run), and ordersync's own later refund of KETTLE (an
    order's refunds go in the order decided). RUG's operator refund goes. Each run that holds them says so (outcome
    "held"). Once Amazon answers, they go in the order decided."""
    with running([KETTLE, TOASTER, RUG], db_url, tmp_path) as harness:
        harness.pipeline.settings["sync_storefront_refunds"] = True
        harness.pipeline.observer = observer = Outcomes()
        harness.drive()
        storefront_refunds_taken(harness, (KETTLE, "10.00"), (TOASTER, "5.00"))
        operator_refund(harness, KETTLE, "3.00")
        operator_refund(harness, RUG, "7.00")
        kettle_first = storefront_refund_action(harness, KETTLE)

        harness.standins.amazon.faults = Faults(error_rate=1.0, error_statuses=[403],
                                                path_prefix=f"/finances/v0/orders/{KETTLE['id']}")
        assert harness.pipeline.send_batches() == 1
        assert adjustment_feeds(harness) == [[RUG["id"]]]
        queued = harness.store.queued_amazon_actions(ACCOUNT, ADJUSTMENT_FEED)
        assert [a.amazon_order_id for a in queued] == [KETTLE["id"], TOASTER["id"], KETTLE["id"]]
        assert observer.of("refund_on_amazon") == ["held"] * 3
        assert harness.store.failed_orders(ACCOUNT) == []

        harness.standins.amazon.faults = Faults()
        assert harness.pipeline.send_batches() == 1
        assert adjustment_feeds(harness)[1] == [KETTLE["id"], TOASTER["id"], KETTLE["id"]]
        harness.drive(polls=False)
        assert storefront_refund_action(harness, KETTLE).id == kettle_first.id
        assert refunded_on_amazon(harness, KETTLE) == [Decimal("10.00"), Decimal("3.00")]
        assert refunded_on_amazon(harness, TOASTER) == [Decimal("5.00")]


def test_a_feed_whose_refunds_another_process_took_first_is_listed_again(db_url: str, tmp_path: Path,
                                                                           monkeypatch: Any) -> None:
    """Two replicas: the other puts RUG's refund in its batch between this one's listing and its batch (create_batch
    refuses, recording nothing). This run lists the queue again and sends TOASTER's, rather than stopping."""
    with running([TOASTER, RUG], db_url, tmp_path) as harness:
        harness.drive()
        operator_refund(harness, RUG, "7.00")
        operator_refund(harness, TOASTER, "5.00")
        [rug, toaster] = harness.store.queued_amazon_actions(ACCOUNT, ADJUSTMENT_FEED)
        create_batch = harness.store.create_batch
        calls: list[list[int]] = []

        def another_process_first(account: str, kind: str, action_ids: Any, now: Any = None) -> Any:
            if not calls:
                create_batch(account, kind, [rug.id])  # the other replica's batch
            calls.append(list(action_ids))
            return create_batch(account, kind, action_ids)

        monkeypatch.setattr(harness.store, "create_batch", another_process_first)
        assert harness.pipeline.send_batches() == 1
        assert calls == [[rug.id, toaster.id], [toaster.id]]
        assert adjustment_feeds(harness) == [[TOASTER["id"]]]
        batches = harness.store.batches_in_flight(ACCOUNT)
        assert [(b.status, [a.id for a in harness.store.batch(b.id).messages.values()]) for b in batches] == [
            (BATCH_CREATED, [rug.id]), (BATCH_SUBMITTED, [toaster.id])]  # nothing of the refused batch is left


def test_amazon_refusing_the_finances_reads_pauses_the_poll_and_shows_in_the_metrics(db_url: str, tmp_path: Path) -> None:
    """A role the app lacks (Finance and Accounting): the poll stops at the refund, loses nothing, ends ok, and the job
    tells the service it was paused (ordersync_amazon_paused) until a run reads Amazon again."""
    with running([KETTLE], db_url, tmp_path) as harness:
        harness.pipeline.settings["sync_storefront_refunds"] = True
        harness.drive()
        next_second()
        refund_in_shopify_admin(harness, KETTLE, "10.00")
        an_hour_later(harness)
        harness.standins.amazon.faults = Faults(error_rate=1.0, error_statuses=[403], path_prefix="/finances")
        harness.pipeline.observer = seen = PausesSeen()
        assert harness.pipeline.poll_storefront_refunds() == 0
        assert seen.runs == [(ACCOUNT, "storefront_refunds", True)]
        harness.standins.amazon.faults = Faults()
        assert harness.pipeline.poll_storefront_refunds() == 1  # the refund it stopped at
        assert seen.runs[-1] == (ACCOUNT, "storefront_refunds", False)
