"""An account that accepts buyers' cancellation requests without a person (settings.accept_buyer_requests; DOMAIN 1:
"let a person or a rule answer within the window") cancels an order that has not started to ship, in the storefront
and on Amazon, with the buyer's reason BuyerCanceled, which keeps it out of the cancellation rate (DOMAIN 8)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from lxml import etree

from daemon.pipeline.operator import request_cancellation
from daemon.store.models import CANCEL_FEED

from .harness import ACCOUNT, INITIAL_LEVEL, SETTINGS, all_decisions, feed_messages
from .test_pipeline import BUYER_REQUEST, CANCELLED_BY_BUYER, QUIET, Harness, running

ORDER = BUYER_REQUEST["id"]
ACCEPTING = {**SETTINGS, "accept_buyer_requests": True}
QUEUED = {**ACCEPTING, "queue_refunds_and_cancellations": True, "queue_auto_submit": False}


def cancel_reasons(harness: Harness) -> list[str]:
    """The CancelReason of every item of every cancellation feed message Amazon accepted."""
    with harness.standins.amazon.lock:
        contents = [harness.standins.amazon.documents[f["input"]]["content"] for f in harness.standins.amazon.feeds.values()]
    return [el.text for content in contents for el in etree.fromstring(content).iter() if etree.QName(el).localname == "CancelReason"]


def later(harness: Harness, hours: float) -> None:
    harness.pipeline.clock = lambda: datetime.now(timezone.utc) + timedelta(hours=hours)


def rules_of(harness: Harness, event: str) -> list[str]:
    return [d.record["rule"] for d in all_decisions(harness.store) if d.record["event"] == event]


def held_for_no_stock(harness: Harness) -> Any:
    """With the approval queue on, a person's cancellation of QUIET for no stock: held, the order on hold."""
    harness.pipeline.settings = dict(QUEUED)
    harness.drive()
    assert request_cancellation(harness.store, harness.amazon, ACCOUNT, QUIET["id"], "NoInventory")
    harness.drive(polls=False)
    [waiting] = harness.store.awaiting_approval(ACCOUNT)
    return waiting


def test_a_buyers_request_is_cancelled_in_both_places_with_the_buyers_reason(db_url: str, tmp_path: Path) -> None:
    with running([BUYER_REQUEST], db_url, tmp_path) as harness:
        harness.pipeline.settings = dict(ACCEPTING)
        harness.drive()
        harness.drive()  # Amazon's cancellation comes back with the order poll

        decision = harness.decision_of(ORDER, "buyer_cancel_requested")
        assert (decision.record["rule"], decision.record["fact"]["amazon_cancellation"]) == ("accept-buyer-request", "none")
        shop = harness.standins.shop_order(ORDER)
        assert shop["cancelledAt"] and shop["cancelReason"] == "CUSTOMER"
        assert harness.standins.levels()["LAMP-01"] == INITIAL_LEVEL + 1  # back on the shelf, once
        assert feed_messages(harness.standins.amazon) == {(ORDER, CANCEL_FEED): 1}
        assert cancel_reasons(harness) == ["BuyerCanceled"]
        assert harness.standins.amazon.orders[ORDER]["status"] == "Canceled"
        assert rules_of(harness, "order_cancelled") == ["already-cancelled-in-storefront"]  # the echo needs nothing
        # The buyer asked and the answer was the buyer's reason: Amazon's rate does not count it, nor does ordersync's.
        assert harness.store.get_order(ACCOUNT, ORDER).cancelled_by_seller is False
        assert harness.store.failed_orders(ACCOUNT) == []


def test_with_the_queue_on_the_accepted_cancellation_waits_for_approval_and_is_reminded_not_repeated(
        db_url: str, tmp_path: Path) -> None:
    with running([BUYER_REQUEST], db_url, tmp_path) as harness:
        harness.pipeline.settings = dict(QUEUED)
        harness.drive()
        assert harness.decision_of(ORDER, "buyer_cancel_requested").record["rule"] == "accept-buyer-request-after-approval"
        [waiting] = harness.store.awaiting_approval(ACCOUNT)
        assert waiting.type == "cancel_on_amazon" and waiting.params["reason_code"] == "BuyerCanceled"
        assert harness.shopify.get_order(harness.shopify.find_order(ORDER)).order_status == "On Hold"
        assert harness.standins.amazon.feeds == {}

        # Nobody approved it as the window closes: the operators are told to approve, and nothing is queued again.
        later(harness, 37)
        assert harness.pipeline.remind_buyer_requests() == 1
        harness.drive(polls=False)
        [due] = [d for d in all_decisions(harness.store) if d.record["event"] == "buyer_request_due"]
        assert (due.record["rule"], due.record["fact"]["amazon_cancellation"]) == (
            "buyer-request-cancellation-awaiting-approval", "awaiting_approval")
        assert [a.id for a in harness.store.awaiting_approval(ACCOUNT)] == [waiting.id]

        assert harness.store.approve([waiting.id]) == 1
        harness.pipeline.clock = lambda: datetime.now(timezone.utc)
        harness.drive()
        harness.drive()
        assert cancel_reasons(harness) == ["BuyerCanceled"]
        assert harness.standins.shop_order(ORDER)["cancelledAt"]  # Amazon's cancellation mirrored back
        assert harness.store.failed_orders(ACCOUNT) == []


def test_a_request_read_from_the_order_report_first_is_held_then_accepted_when_due(db_url: str, tmp_path: Path) -> None:
    """The order report's row names no lines (Amazon's cancellation names each line's reason), so the request is
    held; the order poll's copy of the request is the same request and is not decided again; the reminders job
    reads the order from Amazon and the request is accepted then."""
    with running([BUYER_REQUEST], db_url, tmp_path) as harness:
        harness.pipeline.settings = dict(ACCEPTING)
        assert harness.pipeline.poll_order_report() == 1
        harness.pipeline.decide()
        harness.drive()
        assert rules_of(harness, "buyer_cancel_requested") == ["hold-on-buyer-request"]
        assert harness.shopify.get_order(harness.shopify.find_order(ORDER)).order_status == "On Hold"
        assert harness.standins.amazon.feeds == {}

        later(harness, 37)
        assert harness.pipeline.remind_buyer_requests() == 1
        harness.drive(polls=False)
        harness.pipeline.clock = lambda: datetime.now(timezone.utc)
        harness.drive()
        assert rules_of(harness, "buyer_request_due") == ["accept-buyer-request-when-due"]
        assert harness.standins.shop_order(ORDER)["cancelledAt"]
        assert cancel_reasons(harness) == ["BuyerCanceled"]
        assert harness.standins.amazon.orders[ORDER]["status"] == "Canceled"
        assert harness.store.failed_orders(ACCOUNT) == []


def test_a_request_on_an_order_ordersync_is_cancelling_for_another_reason_is_not_cancelled_again(
        db_url: str, tmp_path: Path) -> None:
    """A person cancelled the order here for no stock, waiting for approval; then the buyer asks. That cancellation
    would count against the rate, and a second one must not be queued: the request is recorded, and the reminder
    tells the operators to reject the waiting one and cancel with the buyer's reason instead of "approve it"."""
    with running([QUIET], db_url, tmp_path) as harness:
        waiting = held_for_no_stock(harness)
        harness.standins.amazon.upsert_orders([{"id": QUIET["id"], "buyer_cancel": {"reason": "Found it cheaper"}}])
        harness.drive()
        request = harness.decision_of(QUIET["id"], "buyer_cancel_requested")
        assert request.record["fact"]["amazon_cancellation"] == "other_reason"
        assert not request.record["rule"].startswith("accept-")
        assert [a.id for a in harness.store.awaiting_approval(ACCOUNT)] == [waiting.id]

        later(harness, 37)
        assert harness.pipeline.remind_buyer_requests() == 1
        harness.drive(polls=False)
        assert rules_of(harness, "buyer_request_due") == ["buyer-request-cancellation-with-another-reason"]
        assert [a.id for a in harness.store.awaiting_approval(ACCOUNT)] == [waiting.id]


def test_a_persons_cancellation_of_an_order_whose_request_was_accepted_sends_amazon_nothing_more(
        db_url: str, tmp_path: Path) -> None:
    """The accepted cancellation waits for approval; a person, not seeing it, cancels the order here too. Amazon
    would get two messages (the second refused: a Failed Cancellation for a cancelled order). It gets one."""
    with running([BUYER_REQUEST], db_url, tmp_path) as harness:
        harness.pipeline.settings = dict(QUEUED)
        harness.drive()
        [waiting] = harness.store.awaiting_approval(ACCOUNT)
        assert request_cancellation(harness.store, harness.amazon, ACCOUNT, ORDER, "NoInventory")
        harness.drive(polls=False)
        second = harness.decision_of(ORDER, "cancel_requested")
        assert (second.record["rule"], second.record["fact"]["amazon_cancellation"]) == (
            "cancel-already-on-its-way-to-amazon", "awaiting_approval")
        assert [a.id for a in harness.store.awaiting_approval(ACCOUNT)] == [waiting.id]

        assert harness.store.approve([waiting.id]) == 1
        harness.drive()
        harness.drive()
        assert feed_messages(harness.standins.amazon) == {(ORDER, CANCEL_FEED): 1}
        assert cancel_reasons(harness) == ["BuyerCanceled"]
        assert harness.store.failed_orders(ACCOUNT) == []


def test_a_persons_cancellation_of_an_order_amazon_has_cancelled_sends_amazon_nothing(db_url: str, tmp_path: Path) -> None:
    with running([BUYER_REQUEST], db_url, tmp_path) as harness:
        harness.pipeline.settings = dict(ACCEPTING)
        harness.drive()
        harness.drive()
        assert harness.standins.amazon.orders[ORDER]["status"] == "Canceled"
        assert request_cancellation(harness.store, harness.amazon, ACCOUNT, ORDER, "NoInventory")
        harness.drive()
        assert harness.decision_of(ORDER, "cancel_requested").record["rule"] == "cancel-in-both-places-already"
        assert feed_messages(harness.standins.amazon) == {(ORDER, CANCEL_FEED): 1}  # the accepted request's, alone
        assert harness.store.failed_orders(ACCOUNT) == []


def test_a_persons_cancellation_of_an_order_amazon_cancelled_but_the_storefront_did_not_cancels_it_there_only(
        db_url: str, tmp_path: Path) -> None:
    """An account that does not mirror Amazon's cancellations: the person cancels the storefront copy from here, and
    Amazon, which shows the order cancelled, is not sent a message it would refuse."""
    with running([CANCELLED_BY_BUYER], db_url, tmp_path) as harness:
        harness.pipeline.settings = {**SETTINGS, "sync_cancellations": False}
        harness.drive()
        assert harness.standins.shop_order(CANCELLED_BY_BUYER["id"])["cancelledAt"] is None
        assert request_cancellation(harness.store, harness.amazon, ACCOUNT, CANCELLED_BY_BUYER["id"], "BuyerCanceled")
        harness.drive()
        assert harness.decision_of(CANCELLED_BY_BUYER["id"], "cancel_requested").record["rule"] == \
            "cancel-of-order-cancelled-on-amazon-with-restock"
        assert harness.standins.shop_order(CANCELLED_BY_BUYER["id"])["cancelledAt"]
        assert harness.standins.amazon.feeds == {}
        assert harness.store.failed_orders(ACCOUNT) == []


def test_a_second_cancellation_made_here_after_one_with_another_reason_went_out_sends_amazon_nothing_more(
        db_url: str, tmp_path: Path) -> None:
    with running([QUIET], db_url, tmp_path) as harness:
        harness.drive()
        assert request_cancellation(harness.store, harness.amazon, ACCOUNT, QUIET["id"], "NoInventory")
        harness.pipeline.decide()
        harness.dispatcher.run()  # the storefront is cancelled; Amazon's message is queued for the next feed
        # Another reason is a request of its own, as `orders cancel` stores it.
        assert request_cancellation(harness.store, harness.amazon, ACCOUNT, QUIET["id"], "GeneralAdjustment",
                                    request_id="GeneralAdjustment:with-amazon")
        harness.drive()
        second = [d.record for d in all_decisions(harness.store) if d.record["event"] == "cancel_requested"][-1]
        assert (second["rule"], second["fact"]["amazon_cancellation"]) == (
            "cancel-already-on-its-way-to-amazon", "other_reason_on_its_way")
        assert feed_messages(harness.standins.amazon) == {(QUIET["id"], CANCEL_FEED): 1}
        assert cancel_reasons(harness) == ["NoInventory"]
        assert harness.store.failed_orders(ACCOUNT) == []


def test_rejecting_a_held_cancellation_after_cancelling_again_for_the_buyer_keeps_the_order_held(
        db_url: str, tmp_path: Path) -> None:
    """The over-rate advice: cancel again with BuyerCanceled, then reject the held one. The rejection must not release
    the hold while the BuyerCanceled cancellation waits for approval (the order would ship)."""
    with running([QUIET], db_url, tmp_path) as harness:
        no_stock = held_for_no_stock(harness)
        assert request_cancellation(harness.store, harness.amazon, ACCOUNT, QUIET["id"], "BuyerCanceled",
                                    request_id="BuyerCanceled:with-amazon")
        harness.drive(polls=False)
        assert {a.params["reason_code"] for a in harness.store.awaiting_approval(ACCOUNT)} == {"NoInventory", "BuyerCanceled"}

        assert harness.store.reject([no_stock.id], "cancelled again for the buyer") == 1
        harness.drive(polls=False)
        rejected = harness.decision_of(QUIET["id"], "cancellation_rejected")
        assert (rejected.record["rule"], rejected.record["fact"]["amazon_cancellation"]) == (
            "rejected-cancellation-with-another-going-on", "awaiting_approval")
        assert harness.shopify.get_order(harness.shopify.find_order(QUIET["id"])).order_status == "On Hold"
        assert harness.store.failed_orders(ACCOUNT) == []

        # The buyer changes their mind: the second is rejected too, and every hold the two placed is lifted.
        [buyers] = harness.store.awaiting_approval(ACCOUNT)
        assert harness.store.reject([buyers.id], "buyer keeps the order") == 1
        harness.drive(polls=False)
        assert rules_of(harness, "cancellation_rejected") == ["rejected-cancellation-with-another-going-on",
                                                              "release-hold-after-rejected-cancellation"]
        assert harness.shopify.get_order(harness.shopify.find_order(QUIET["id"])).order_status == "In Process"
