"""The pipeline in-process against both stand-ins on loopback: an Amazon change becomes one event, one
decision, and the storefront (or Amazon) effect the rules call for; what a user of the daemon would
see in the Shopify admin, in Seller Central, in the error view and in the decision log."""
from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
from lxml import etree
from sqlalchemy import text

from adapters.amazon.client import AmazonClient
from adapters.amazon.models import AmazonOrderLine
from adapters.shopify.client import marker_for
from adapters.sim.server import Faults
from adapters.errors import InvalidInput
from daemon.audit.chain import verify
from daemon.audit.log import DecisionLog
from daemon.pipeline import jobs
from daemon.pipeline.catchup import catch_up_decision_log
from daemon.pipeline.events import NewEvent, order_fields, refund_of
from daemon.pipeline.jobs import AccountPipeline, Dispatcher, decision_id_for, refund_by_line, refunded_by_line
from daemon.pipeline.operator import RefundLine, RefundLinesError, charged_for, request_cancellation, request_refund
from daemon.rules.engine import RulesEngine
from daemon.store import Store, open_store
from daemon.store.models import CANCEL_FEED

from .harness import (ACCOUNT, INITIAL_LEVEL, PROJECT_ROOT, SETTINGS, PausesSeen, Standins, all_decisions, amazon_client,
                      drive, feed_messages, shop_mutations, shopify_client)

MUG = {"sku": "MUG-RED", "quantity": 2, "price": "12.50"}
CANCELLED_BY_BUYER = {"id": "114-0000001-0000001", "status": "Canceled", "cancel_reason": "BuyerCanceled",
                      "cancelled_by": "BUYER", "lines": [{**MUG, "cancelled": 2}]}
BUYER_REQUEST = {"id": "114-0000002-0000002", "buyer_cancel": "Ordered by mistake",
                 "lines": [{"sku": "LAMP-01", "quantity": 1, "price": "30.00"}]}
PARTIAL = {"id": "114-0000003-0000003", "cancel_reason": "NoInventory",
           "lines": [{"sku": "BOWL-01", "quantity": 3, "price": "8.00", "cancelled": 1}]}
QUIET = {"id": "114-0000004-0000004", "lines": [{"sku": "PLATE-01", "quantity": 2, "price": "9.00"}]}
NOT_IN_SHOP = {"id": "114-0000005-0000005", "buyer_cancel": "Found it cheaper", "storefront": {"missing": True},
               "lines": [{"sku": "CUP-01", "quantity": 1, "price": "4.00"}]}
ORDERS = [CANCELLED_BY_BUYER, BUYER_REQUEST, PARTIAL, QUIET, NOT_IN_SHOP]


class Harness:
    def __init__(self, standins: Standins, store: Store, log_path: Path) -> None:
        self.standins, self.store, self.log_path = standins, store, log_path
        self.amazon, self.shopify = amazon_client(standins), shopify_client(standins)
        self.log = DecisionLog(log_path)
        self.pipeline = AccountPipeline(ACCOUNT, dict(SETTINGS), 15, store, RulesEngine(PROJECT_ROOT / "rules"), self.log,
                                        self.amazon, self.shopify)
        self.dispatcher = Dispatcher(store, {ACCOUNT: self.pipeline.context}, "test-worker")

    def drive(self, **kwargs: Any) -> None:
        drive(self.pipeline, self.dispatcher, **kwargs)

    def decision_of(self, amazon_order_id: str, kind: str) -> Any:
        found = [d for d in all_decisions(self.store)
                 if d.record["amazon_order_id"] == amazon_order_id and d.record["event"] == kind]
        assert len(found) == 1, f"{len(found)} decisions for {kind} of {amazon_order_id}"
        return found[0]

    def mutations(self, amazon_order_id: str) -> list[dict[str, Any]]:
        gid = self.standins.shop_order(amazon_order_id)["id"]
        return [m for m in shop_mutations(self.standins.shopify) if m.get("order") == gid]

    def close(self) -> None:
        self.amazon.close()
        self.shopify.close()
        self.log.close()
        self.store.close()


@contextmanager
def running(orders: list[dict[str, Any]], db_url: str, folder: Path) -> Iterator[Harness]:
    """Both stand-ins seeded with these orders (linked.py format), and the pipeline on a fresh store."""
    with Standins.start([dict(o, lines=[dict(l) for l in o["lines"]]) for o in orders]) as standins:
        h = Harness(standins, open_store(db_url, migrate=True), folder / "decisions.jsonl")
        try:
            yield h
        finally:
            h.close()


@pytest.fixture
def harness(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    with running(ORDERS, db_url, tmp_path) as h:
        yield h


def test_an_amazon_buyer_cancellation_cancels_the_shopify_order_and_restocks_it(harness: Harness) -> None:
    harness.drive()
    decision = harness.decision_of(CANCELLED_BY_BUYER["id"], "order_cancelled")
    assert decision.record["rule"] == "mirror-cancellation-with-restock"
    shop = harness.standins.shop_order(CANCELLED_BY_BUYER["id"])
    assert shop["cancelledAt"] and shop["cancelReason"] == "CUSTOMER"
    assert shop["lines"][0]["current"] == 0  # nothing left to ship
    # the two units went back on the shelf, exactly once
    assert harness.standins.levels()["MUG-RED"] == INITIAL_LEVEL + 2
    [cancel] = [m for m in harness.mutations(CANCELLED_BY_BUYER["id"]) if m["field"] == "orderCancel"]
    assert cancel["summary"]["restock"] is True and cancel["summary"]["reason"] == "CUSTOMER"
    assert decision.decision_id in shop["staffNote"]  # the shop says which decision cancelled it
    # the grid shows which storefront order mirrors it
    order = harness.store.get_order(ACCOUNT, CANCELLED_BY_BUYER["id"])
    assert (order.storefront_order_id, order.sync_status) == (shop["id"], "Order Created")


def test_a_buyer_request_holds_the_order_then_notes_it_in_that_order(harness: Harness) -> None:
    harness.drive()
    decision = harness.decision_of(BUYER_REQUEST["id"], "buyer_cancel_requested")
    assert decision.record["rule"] == "hold-on-buyer-request"
    shop = harness.standins.shop_order(BUYER_REQUEST["id"])
    assert [fo["status"] for fo in shop["fulfillmentOrders"]] == ["ON_HOLD"]  # it cannot be handed to shipping
    assert "Buyer asked to cancel: Ordered by mistake" in shop["note"]
    fields = [m["field"] for m in harness.mutations(BUYER_REQUEST["id"])]
    assert fields == ["fulfillmentOrderHold", "orderUpdate"]  # the hold reached the shop before the note
    actions = harness.store.actions_of(decision.decision_id)
    assert [(a.type, a.status) for a in actions] == [("hold_order", "done"), ("add_note", "done"), ("notify", "done")]


def test_a_replayed_page_and_a_change_seen_by_poll_and_report_are_stored_once(harness: Harness) -> None:
    pipeline = harness.pipeline
    assert pipeline.poll_orders() > 0
    events_after_poll = harness.store.counts().events_by_kind
    # the order report shows the same buyer request the poll saw
    assert pipeline.poll_order_report() == 0
    # the same page again: the cursor is set back to where it began, as after a crash before it was saved
    with harness.store.transaction() as session:
        session.execute(text("DELETE FROM cursors WHERE kind = 'orders'"))
    assert pipeline.poll_orders() == 0
    assert harness.store.counts().events_by_kind == events_after_poll
    assert events_after_poll["buyer_cancel_requested"] == 2  # BUYER_REQUEST and NOT_IN_SHOP, once each
    harness.drive(polls=False)
    harness.decision_of(BUYER_REQUEST["id"], "buyer_cancel_requested")
    holds = [m for m in harness.mutations(BUYER_REQUEST["id"]) if m["field"] == "fulfillmentOrderHold"]
    assert len(holds) == 1


def test_a_rejected_partial_cancellation_shows_in_the_error_view_and_the_order_is_held(harness: Harness) -> None:
    harness.drive()
    failed = {o.amazon_order_id: o for o in harness.store.failed_orders(ACCOUNT)}
    order = failed[PARTIAL["id"]]
    assert order.sync_status == "Failed Cancellation"
    assert "Only full cancellations sync: 1 of 3 units" in (order.last_error or "")
    assert "on hold so they do not ship" in (order.last_error or "")
    assert harness.decision_of(PARTIAL["id"], "order_cancelled").record["rule"] == "hold-partial-amazon-cancellation"
    # Not cancelled (Shopify cannot cancel part of an order), but held: the unit Amazon cancelled never ships.
    assert [m["field"] for m in harness.mutations(PARTIAL["id"])] == ["fulfillmentOrderHold"]
    assert harness.standins.shop_order(PARTIAL["id"])["cancelledAt"] is None


def test_a_seller_central_cancellation_seen_through_orders_api_v0_is_held_not_left_to_ship(db_url: str, tmp_path: Path) -> None:
    # v0 reports that an order was cancelled, never why: the cancellation cannot sync (no valid reason), and
    # the storefront order is held so that an order Amazon cancelled is never handed to shipping.
    order = {"id": "114-0000006-0000006", "status": "Canceled", "cancel_reason": "NoInventory", "cancelled_by": "MERCHANT",
             "lines": [{"sku": "FORK-01", "quantity": 1, "price": "3.00", "cancelled": 1}]}
    with running([order], db_url, tmp_path) as harness:
        harness.amazon.close()
        harness.amazon = harness.pipeline.amazon = AmazonClient(replace(harness.amazon.account, orders_api_version="v0"))
        harness.drive()
        decision = harness.decision_of(order["id"], "order_cancelled")
        assert decision.record["rule"] == "hold-amazon-cancellation-without-reason"
        assert [m["field"] for m in harness.mutations(order["id"])] == ["fulfillmentOrderHold"]
        assert harness.standins.shop_order(order["id"])["cancelledAt"] is None
        [failed] = harness.store.failed_orders(ACCOUNT)
        assert failed.sync_status == "Failed Cancellation"
        assert "the Orders API v0 gives none" in (failed.last_error or "")
        assert "on hold so it does not ship: cancel it there, choosing whether to restock" in (failed.last_error or "")


TWO_LINES = [{"sku": "MUG-RED", "quantity": 2, "price": "12.50"}, {"sku": "CAP-GREY", "quantity": 1, "price": "9.99"}]


def _refund(harness: Harness, order_id: str, amount: str, request_id: str) -> None:
    """An operator's refund of the order, decided and carried out, Amazon's side included."""
    assert request_refund(harness.store, harness.amazon, ACCOUNT, order_id, amount, "CustomerReturn", request_id=request_id)
    harness.drive(polls=False)


def test_an_operators_whole_order_refund_of_a_two_line_order_reaches_amazon_shared_by_line(db_url: str, tmp_path: Path) -> None:
    # Amazon refuses more on an item than was paid for it: 34.99 on the first line alone (25.00) was refused.
    order = {"id": "114-0000007-0000007", "lines": TWO_LINES}
    with running([order], db_url, tmp_path) as harness:
        harness.drive()
        _refund(harness, order["id"], "34.99", "all")
        decision = harness.decision_of(order["id"], "refund_requested")
        actions = {a.type: a for a in harness.store.actions_of(decision.decision_id)}
        assert actions["refund_on_amazon"].status == "done", actions["refund_on_amazon"].last_error
        refunds = harness.standins.amazon.orders[order["id"]]["refunds"]
        assert sorted(round(r["principal"], 2) for r in refunds) == [9.99, 25.00]
        assert harness.store.failed_orders(ACCOUNT) == []


def test_a_refund_rejected_in_the_approval_queue_puts_the_order_in_the_error_view(db_url: str, tmp_path: Path) -> None:
    """The storefront recorded the refund when it was decided; Amazon never pays it: a person must settle the two."""
    order = {"id": "114-0000008-0000008", "lines": TWO_LINES}
    with running([order], db_url, tmp_path) as harness:
        harness.pipeline.settings = {**SETTINGS, "queue_refunds_and_cancellations": True, "queue_auto_submit": False}
        harness.drive()
        _refund(harness, order["id"], "12.50", "one-mug")
        [waiting] = harness.store.awaiting_approval(ACCOUNT)
        assert waiting.type == "refund_on_amazon"
        assert harness.store.reject([waiting.id], "wrong order") == 1
        harness.drive(polls=False)
        rejected = harness.decision_of(order["id"], "refund_rejected")
        assert rejected.record["rule"] == "rejected-refund-recorded-in-storefront"
        [failed] = harness.store.failed_orders(ACCOUNT)
        assert failed.sync_status == "Failed Refund"
        assert failed.last_error.startswith("amazon_not_told: The refund of 12.50 on order 114-0000008-0000008 is in the "
                                            "storefront, and its refund on Amazon was rejected")
        assert harness.standins.amazon.feeds == {}


def test_two_refunds_of_a_two_line_order_that_add_up_to_what_was_paid_both_reach_amazon(db_url: str, tmp_path: Path) -> None:
    # The second is shared by what each line has left after the first, so no item goes over its price.
    order = {"id": "114-0000009-0000009", "lines": TWO_LINES}
    with running([order], db_url, tmp_path) as harness:
        harness.drive()
        _refund(harness, order["id"], "5", "first")
        _refund(harness, order["id"], "29.99", "second")
        sent = [a for d in all_decisions(harness.store) if d.record["event"] == "refund_requested"
                for a in harness.store.actions_of(d.decision_id) if a.type == "refund_on_amazon"]
        assert [a.status for a in sent] == ["done", "done"], [a.last_error for a in sent]
        by_item: dict[str, float] = {}
        for refund in harness.standins.amazon.orders[order["id"]]["refunds"]:
            by_item[refund["item_id"]] = by_item.get(refund["item_id"], 0) + refund["principal"]
        assert sorted(round(v, 2) for v in by_item.values()) == [9.99, 25.00]


def test_units_refunded_as_unfulfilled_leave_the_order_on_both_sides_and_amazons_echo_needs_nothing(
        db_url: str, tmp_path: Path) -> None:
    # DOMAIN 12 and 13: a refund of one line's units that could not be fulfilled, with the quantity cancelled.
    order = {"id": "114-0000010-0000010", "lines": TWO_LINES}
    with running([order], db_url, tmp_path) as harness:
        harness.drive()
        with pytest.raises(RefundLinesError, match="1 unshipped unit"):
            request_refund(harness.store, harness.amazon, ACCOUNT, order["id"], None, "NoInventory",
                           lines=[RefundLine("CAP-GREY", 2)], unfulfilled=True)
        assert request_refund(harness.store, harness.amazon, ACCOUNT, order["id"], None, "NoInventory",
                              lines=[RefundLine("MUG-RED", 1)], unfulfilled=True, request_id="mug")
        harness.drive(polls=False)
        decision = harness.decision_of(order["id"], "refund_requested")
        assert decision.record["fact"]["refund_amount"] == "12.50" and decision.record["fact"]["units_cancelled"] == 1
        assert {a.type: a.status for a in harness.store.actions_of(decision.decision_id)} == {
            "refund": "done", "refund_on_amazon": "done"}
        amazon = harness.standins.amazon.orders[order["id"]]
        mug, cap = amazon["lines"]
        assert [(r["item_id"], round(r["principal"], 2), r["reason"]) for r in amazon["refunds"]] == [
            (mug["item_id"], 12.5, "NoInventory")]                       # on the mug alone, not shared with the cap
        assert (mug["cancelled"], cap["cancelled"]) == (1, 0)             # the quantity cancelled reached Amazon
        shop = harness.standins.shop_order(order["id"])
        assert [(line["sku"], line["current"]) for line in shop["lines"]] == [("MUG-RED", 1), ("CAP-GREY", 1)]
        assert shop["refunds"][0]["amount"] == "12.50"
        assert shop["refunds"][0]["lines"][0]["restockType"] == "CANCEL"  # the unit will not ship

        # Amazon now shows one unit cancelled: its echo is a partial cancellation the storefront already reflects.
        harness.drive()
        echo = harness.decision_of(order["id"], "order_cancelled")
        assert echo.record["rule"] == "partial-cancellation-already-in-storefront"
        assert [m["field"] for m in harness.mutations(order["id"])] == ["refundCreate"]  # no hold, nothing else
        assert harness.store.failed_orders(ACCOUNT) == []


def test_a_refund_is_shared_by_the_lines_prices_in_the_amounts_own_unit() -> None:
    lines = [{"order_item_id": "1", "price": "25.00"}, {"order_item_id": "2", "price": "9.99"}]
    assert refund_by_line(lines, Decimal("34.99")) == [("1", Decimal("25.00")), ("2", Decimal("9.99"))]
    assert refund_by_line(lines, Decimal("5")) == [("1", Decimal("3.58")), ("2", Decimal("1.42"))]  # cents, summing to 5
    assert refund_by_line(lines, Decimal("0.01")) == [("1", Decimal("0.01"))]
    yen = [{"order_item_id": "1", "price": "1000"}, {"order_item_id": "2", "price": "500"}]
    assert refund_by_line(yen, Decimal("700")) == [("1", Decimal("467")), ("2", Decimal("233"))]
    assert refund_by_line([], Decimal("3")) == [("0", Decimal("3"))]


@pytest.mark.parametrize("prices, refunds", [
    (("25.00", "9.99"), ("5", "29.99")),                 # rounding's cent would have gone to the first line twice
    (("10.00", "10.00", "10.00"), ("10", "20")),
    (("10.00", "10.00", "10.00"), ("0.01",) * 7 + ("29.93",)),
    (("1000", "500", "1"), ("700", "801")),              # yen
])
def test_refunds_that_add_up_to_what_was_paid_never_put_more_on_a_line_than_its_price(prices, refunds) -> None:
    lines = [{"order_item_id": str(n), "price": price} for n, price in enumerate(prices, 1)]
    on_line: dict[str, Decimal] = {}
    for number, amount in enumerate(refunds):
        parts = refund_by_line(lines, Decimal(amount), refunded_by_line(lines, [Decimal(a) for a in refunds[:number]]))
        assert sum(part for _, part in parts) == Decimal(amount)
        for code, part in parts:
            on_line[code] = on_line.get(code, Decimal(0)) + part
    assert all(on_line.get(str(n), 0) <= Decimal(price) for n, price in enumerate(prices, 1)), on_line
    assert sum(on_line.values()) == sum(Decimal(price) for price in prices)


@pytest.mark.parametrize("unit, total, ordered, quantity, expected", [
    ("3.33", "10.00", 3, 1, "3.33"),   # the Orders API v0 gives the total; its unit price is rounded
    ("3.33", "10.00", 3, 3, "10.00"),  # all of a line's units cost exactly its total, not 9.99
    ("333.33", "1000", 3, 1, "333"),   # yen have no cents
    ("12.50", None, 2, 1, "12.50"),    # only a unit price given
])
def test_a_refund_of_units_costs_what_amazon_charged_for_them(unit, total, ordered, quantity, expected) -> None:
    line = AmazonOrderLine(order_item_id="1", sku="MUG", quantity_ordered=ordered, unit_price=Decimal(unit),
                           line_price=Decimal(total) if total else None)
    assert charged_for(line, quantity) == Decimal(expected)


def test_a_refund_of_lines_counts_on_its_own_lines_when_a_later_refund_is_shared() -> None:
    lines = [{"order_item_id": "1", "price": "25.00"}, {"order_item_id": "2", "price": "9.99"}]
    earlier = [refund_of({"refund_lines": [{"order_item_id": "1", "amount": "12.50"}]}, Decimal("12.50"))]
    assert refunded_by_line(lines, earlier) == {"1": Decimal("12.50")}
    # What is left, 12.50 and 9.99, is exactly what a refund of the rest puts on each line.
    assert refund_by_line(lines, Decimal("22.49"), refunded_by_line(lines, earlier)) == [
        ("1", Decimal("12.50")), ("2", Decimal("9.99"))]
    assert refund_of({}, Decimal("5")) == Decimal("5")


def test_a_return_first_seen_pending_becomes_an_rma_once_amazon_approves_it(db_url: str, tmp_path: Path) -> None:
    # The returns report is chosen by the date the return was requested (30 minutes ago here), not by when
    # its status changed: a poll that only read from its last cursor would never see the approval.
    order = {"id": "114-0000008-0000008", "status": "Shipped", "storefront": {"fulfilled": True},
             "lines": [{"sku": "MUG-BLUE", "quantity": 1, "price": "12.50", "shipped": 1}],
             "return": {"rma_id": "RMA0000008", "status": "Pending"}}
    with running([order], db_url, tmp_path) as harness:
        harness.drive()
        assert harness.decision_of(order["id"], "return_reported").record["rule"] == "skip-return-not-approved"
        assert harness.store.rmas_of(ACCOUNT, order["id"]) == []
        with harness.standins.amazon.lock:
            [amazon_return] = [r for r in harness.standins.amazon.returns if r["rma_id"] == "RMA0000008"]
            amazon_return["status"] = "Approved"
        harness.drive()
        [rma] = harness.store.rmas_of(ACCOUNT, order["id"])
        assert rma.amazon_rma_id == "RMA0000008"
        kinds = [d.record["rule"] for d in all_decisions(harness.store) if d.record["event"] == "return_reported"]
        assert kinds == ["skip-return-not-approved", "create-rma-for-approved-return"]
        harness.drive()  # read again: the same status is stored once, decided once
        assert len(harness.store.rmas_of(ACCOUNT, order["id"])) == 1
        assert len([d for d in all_decisions(harness.store) if d.record["event"] == "return_reported"]) == 2


def test_a_cancellation_rejected_in_the_approval_queue_releases_the_hold_and_the_order_ships(harness: Harness) -> None:
    # With the queue on, a cancellation made here holds the order until a person decides. Rejected, it must
    # not leave the order held for ever: the rejection is an event, and the rules release the hold.
    harness.pipeline.settings = {**SETTINGS, "queue_refunds_and_cancellations": True, "queue_auto_submit": False}
    harness.drive()
    assert request_cancellation(harness.store, harness.amazon, ACCOUNT, QUIET["id"], "NoInventory")
    harness.drive(polls=False)
    queued = harness.decision_of(QUIET["id"], "cancel_requested")
    assert queued.record["rule"] == "cancel-on-amazon-after-approval"
    [waiting] = harness.store.awaiting_approval(ACCOUNT)
    assert [m["field"] for m in harness.mutations(QUIET["id"])] == ["fulfillmentOrderHold"]

    assert harness.store.reject([waiting.id], "buyer called, keeps the order") == 1
    assert harness.store.reject([waiting.id], "again") == 0  # rejected once, one event
    harness.drive(polls=False)
    released = harness.decision_of(QUIET["id"], "cancellation_rejected")
    assert released.record["rule"] == "release-hold-after-rejected-cancellation"
    assert [m["field"] for m in harness.mutations(QUIET["id"])] == ["fulfillmentOrderHold", "fulfillmentOrderReleaseHold",
                                                                   "orderUpdate"]
    shop = harness.standins.shop_order(QUIET["id"])
    assert shop["cancelledAt"] is None and "buyer called, keeps the order" in (shop.get("note") or "")
    assert harness.shopify.get_order(harness.shopify.find_order(QUIET["id"])).order_status == "In Process"
    assert harness.store.get_action(waiting.id).status == "rejected"
    assert harness.standins.amazon.feeds == {}  # Amazon never heard of it


def test_seventeen_cancellations_go_to_amazon_as_feeds_of_at_most_fifteen_each_with_their_ids(
        db_url: str, tmp_path: Path) -> None:
    # DOMAIN 15: many requests in one document, a batch capped at 15, and each batch's feed id reported.
    orders = [{"id": f"114-0000{n:03d}-0000{n:03d}", "lines": [{"sku": f"SKU-{n:03d}", "quantity": 1, "price": "5.00"}]}
              for n in range(100, 117)]
    with running(orders, db_url, tmp_path) as harness:
        harness.drive()
        for order in orders:
            assert request_cancellation(harness.store, harness.amazon, ACCOUNT, order["id"], "BuyerCanceled")
        harness.drive(polls=False)
        with harness.standins.amazon.lock:
            feeds = {f["feedId"]: etree.fromstring(harness.standins.amazon.documents[f["input"]]["content"])
                     for f in harness.standins.amazon.feeds.values()}
        assert sorted(len(root.findall("Message")) for root in feeds.values()) == [2, 15]
        results = [a.result for d in all_decisions(harness.store) if d.record["event"] == "cancel_requested"
                   for a in harness.store.actions_of(d.decision_id) if a.type == "cancel_on_amazon"]
        assert len(results) == 17 and all(r["feed_id"] in feeds and r["batch_id"] for r in results)
        assert {r["feed_id"] for r in results} == set(feeds)


def test_a_rejected_cancellation_lifts_only_its_own_hold(harness: Harness) -> None:
    # Another hold of ordersync's on the same order (here a buyer-request hold's key) stays: its reason
    # is not settled by the rejection.
    harness.pipeline.settings = {**SETTINGS, "queue_refunds_and_cancellations": True, "queue_auto_submit": False}
    harness.drive()
    assert request_cancellation(harness.store, harness.amazon, ACCOUNT, QUIET["id"], "NoInventory")
    harness.drive(polls=False)
    harness.shopify.hold_order(harness.shopify.find_order(QUIET["id"]), idempotency_key="another-decision:0",
                               notes="buyer asked to cancel")
    [waiting] = harness.store.awaiting_approval(ACCOUNT)
    harness.store.reject([waiting.id], "wrong order")
    harness.drive(polls=False)
    assert harness.decision_of(QUIET["id"], "cancellation_rejected").record["rule"] == "release-hold-after-rejected-cancellation"
    order = harness.shopify.get_order(harness.shopify.find_order(QUIET["id"]))
    assert order.order_status == "On Hold"
    assert [h.handle for fo in order.fulfillment_orders for h in fo.holds] == [marker_for("another-decision:0")]


def test_an_operator_cancellation_goes_out_as_one_feed_and_is_reconciled(harness: Harness) -> None:
    harness.drive()
    assert request_cancellation(harness.store, harness.amazon, ACCOUNT, QUIET["id"], "NoInventory", request_id="op-1")
    assert not request_cancellation(harness.store, harness.amazon, ACCOUNT, QUIET["id"], "NoInventory", request_id="op-1")
    harness.drive(polls=False)
    decision = harness.decision_of(QUIET["id"], "cancel_requested")
    assert decision.record["rule"] == "cancel-on-amazon-zero-out-on-no-stock"
    actions = {a.type: a for a in harness.store.actions_of(decision.decision_id)}
    assert {t: a.status for t, a in actions.items()} == {"cancel_order": "done", "zero_out_inventory": "done",
                                                         "cancel_on_amazon": "done"}
    assert feed_messages(harness.standins.amazon) == {(QUIET["id"], CANCEL_FEED): 1}
    [feed] = harness.standins.amazon.feeds.values()
    result = actions["cancel_on_amazon"].result
    assert result["feed_id"] == feed["feedId"] and result["message_id"] == 1
    assert harness.standins.amazon.orders[QUIET["id"]]["status"] == "Canceled"  # Amazon applied it
    assert harness.standins.shop_order(QUIET["id"])["cancelledAt"]
    assert harness.standins.levels()["PLATE-01"] == 0
    # more runs of the feed jobs send nothing more
    harness.pipeline.send_batches()
    harness.pipeline.check_feeds()
    assert len(harness.standins.amazon.feeds) == 1


def test_a_cancellation_shopify_refuses_because_the_order_shipped_meanwhile_is_not_sent_to_amazon(harness: Harness) -> None:
    # DOMAIN 3: a cancellation does not apply to a shipped order. Decided while the order was unshipped, it
    # reaches Shopify after the warehouse fulfilled it: Shopify refuses, and Amazon must not cancel an order
    # that is on its way to the buyer.
    harness.drive()
    assert request_cancellation(harness.store, harness.amazon, ACCOUNT, QUIET["id"], "BuyerCanceled")
    harness.pipeline.decide()
    harness.standins.shopify.fulfil_in_admin(harness.standins.shop_order(QUIET["id"])["id"])
    harness.drive(polls=False)
    decision = harness.decision_of(QUIET["id"], "cancel_requested")
    actions = {a.type: a for a in harness.store.actions_of(decision.decision_id)}
    assert {t: a.status for t, a in actions.items()} == {"cancel_order": "failed", "cancel_on_amazon": "failed"}
    assert "already fulfilled" in actions["cancel_order"].last_error
    assert actions["cancel_on_amazon"].last_error.startswith("not sent to Amazon: cancel_order before it failed")
    assert harness.standins.amazon.feeds == {} and harness.standins.amazon.orders[QUIET["id"]]["status"] == "Unshipped"
    [failed] = [o for o in harness.store.failed_orders(ACCOUNT) if o.amazon_order_id == QUIET["id"]]
    assert failed.sync_status == "Failed Cancellation" and "already fulfilled" in failed.last_error

    # Resolved, both go again in order, and Shopify's refusal still keeps Amazon out of it.
    assert harness.store.resolve(ACCOUNT, QUIET["id"]) == 2
    harness.drive(polls=False)
    assert {a.type: a.status for a in harness.store.actions_of(decision.decision_id)} == {
        "cancel_order": "failed", "cancel_on_amazon": "failed"}
    assert harness.standins.amazon.feeds == {}


def _queue_a_good_and_a_bad_cancellation(harness: Harness) -> None:
    """QUIET's operator cancellation, and one for BUYER_REQUEST whose feed message the schema refuses."""
    harness.drive()
    assert request_cancellation(harness.store, harness.amazon, ACCOUNT, QUIET["id"], "NoInventory")
    # A cancellation whose item code the feed schema refuses (Amazon's are 14 digits), as a request would
    # store it if Amazon ever answered with such a code.
    order = harness.amazon.get_order(BUYER_REQUEST["id"])
    fields = order_fields(order)
    payload = {**fields, "lines": [{**line, "order_item_id": "ITEM-1"} for line in fields["lines"]], "origin": "operator",
               "reason_code": "BuyerCanceled", "do_not_send_to_amazon": False, "lines_cancelled": len(order.lines),
               "units_cancelled": order.units_ordered}
    assert harness.store.ingest(ACCOUNT, f"cancel_requested:{BUYER_REQUEST['id']}:bad-item", "cancel_requested", payload,
                                amazon_order_id=BUYER_REQUEST["id"])


def test_a_feed_message_that_does_not_validate_is_refused_alone_and_the_others_go_out(harness: Harness) -> None:
    _queue_a_good_and_a_bad_cancellation(harness)
    harness.drive(polls=False)

    [feed] = harness.standins.amazon.feeds.values()
    assert feed_messages(harness.standins.amazon) == {(QUIET["id"], CANCEL_FEED): 1}  # the good one went out
    assert harness.standins.amazon.orders[QUIET["id"]]["status"] == "Canceled"
    bad = {a.type: a for a in harness.store.actions_of(harness.decision_of(BUYER_REQUEST["id"], "cancel_requested").decision_id)}
    assert bad["cancel_on_amazon"].status == "failed" and bad["cancel_on_amazon"].result["code"] == "FeedRefused"
    failed = {o.amazon_order_id: o for o in harness.store.failed_orders(ACCOUNT)}
    assert failed[BUYER_REQUEST["id"]].sync_status == "Failed Cancellation"
    message = failed[BUYER_REQUEST["id"]].last_error
    assert message.startswith("feed message 2 (not sent to Amazon): FeedRefused: ") and "amzn-envelope.xsd" in message
    assert f"order {BUYER_REQUEST['id']}" in message and "ITEM-1" in message
    assert QUIET["id"] not in failed
    good = {a.type: a for a in harness.store.actions_of(harness.decision_of(QUIET["id"], "cancel_requested").decision_id)}
    assert good["cancel_on_amazon"].status == "done" and good["cancel_on_amazon"].result["feed_id"] == feed["feedId"]
    assert good["cancel_on_amazon"].result["batch_id"] == bad["cancel_on_amazon"].result["batch_id"]  # one batch


def test_when_amazon_refuses_the_feed_of_the_valid_messages_the_refused_one_keeps_the_schemas_reason(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    _queue_a_good_and_a_bad_cancellation(harness)

    def refuse(feed: Any) -> str:  # what the client raises when createFeed answers 400
        raise InvalidInput("Amazon createFeed: HTTP 400, the feed was refused as built", code="HTTP_400")

    monkeypatch.setattr(harness.amazon, "submit_feed", refuse)
    harness.drive(polls=False)
    failed = {o.amazon_order_id: o.last_error for o in harness.store.failed_orders(ACCOUNT)}
    assert "amzn-envelope.xsd" in failed[BUYER_REQUEST["id"]] and "HTTP 400" not in failed[BUYER_REQUEST["id"]]
    assert "HTTP 400" in failed[QUIET["id"]]


def test_the_dispatcher_claims_as_many_actions_and_for_as_long_as_configured(harness: Harness,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = harness.pipeline
    while pipeline.poll_orders():
        pass
    pipeline.decide()
    now = jobs.utcnow()
    dispatcher = Dispatcher(harness.store, {ACCOUNT: pipeline.context}, "replica-2", lease_seconds=300, claim=2,
                            clock=lambda: now)
    leases = []
    monkeypatch.setattr(dispatcher, "_carry_out", lambda action: leases.append(harness.store.get_action(action.id)))
    assert dispatcher.run() == 2
    until = (now + timedelta(seconds=300)).replace(tzinfo=None)
    assert [(a.claimed_by, a.claimed_until.replace(tzinfo=None)) for a in leases] == [("replica-2", until)] * 2


def test_a_dispatch_run_stops_before_its_claims_run_out_and_the_next_run_takes_the_rest(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = harness.pipeline
    while pipeline.poll_orders():
        pass
    pipeline.decide()
    clock = [jobs.utcnow()]
    dispatcher = Dispatcher(harness.store, {ACCOUNT: pipeline.context}, "replica-1", lease_seconds=60, claim=3,
                            clock=lambda: clock[0])
    carried: list[int] = []

    def slow(action: Any) -> None:  # each action takes 40 s (a Shopify cancel job waited on)
        carried.append(action.id)
        clock[0] += timedelta(seconds=40)
        harness.store.complete_action(action.id, {}, worker="replica-1")
    monkeypatch.setattr(dispatcher, "_carry_out", slow)
    assert dispatcher.run() == 3
    assert len(carried) == 1  # 20 s of the 60 s lease left: not enough to start another
    with harness.store.transaction() as session:  # left for the next run, still claimed
        left = sorted(session.execute(text("SELECT id FROM actions WHERE status = 'claimed'")).scalars())
    assert len(left) == 2 and carried[0] not in left
    clock[0] += timedelta(seconds=30)  # their lease ran out: due again
    second_claim = clock[0]
    assert dispatcher.run() == 3
    assert len(carried) == 2 and len(set(carried)) == 2  # one more carried out, none twice
    renewed = (second_claim + timedelta(seconds=60)).replace(tzinfo=None)
    for action in map(harness.store.get_action, left):  # the two left over were claimed again, with a new lease
        if action.id in carried:
            assert action.status == "done"
        else:
            assert (action.status, action.claimed_until.replace(tzinfo=None)) == ("claimed", renewed)


def test_zero_out_empties_the_bin_the_order_was_to_ship_from_not_every_bin(db_url: str, tmp_path: Path) -> None:
    dropshipped = {"id": "114-0000006-0000006", "lines": [{"sku": "VASE-01", "quantity": 1, "price": "20.00"}],
                   "storefront": {"dropship": "Pending"}}  # its fulfilment order is at location 2 (DropCo)
    with running([dropshipped], db_url, tmp_path) as h:
        shop = h.standins.shopify
        with shop.lock:  # both locations stock the vase
            item = next(i for i, sku in shop.store.items.items() if sku == "VASE-01")
            shop.store.levels[(item, 2)] = 7
        h.drive()
        assert request_cancellation(h.store, h.amazon, ACCOUNT, dropshipped["id"], "NoInventory")
        h.drive(polls=False)
        decision = h.decision_of(dropshipped["id"], "cancel_requested")
        [zero_out] = [a for a in h.store.actions_of(decision.decision_id) if a.type == "zero_out_inventory"]
        assert zero_out.status == "done" and zero_out.result["zeroed"] == [{"sku": "VASE-01", "location": "gid://shopify/Location/2"}]
        with shop.lock:
            assert (shop.store.levels[(item, 1)], shop.store.levels[(item, 2)]) == (INITIAL_LEVEL, 0)


def test_a_request_for_an_order_the_shop_does_not_have_is_a_failed_order_saying_so(harness: Harness) -> None:
    harness.drive()
    failed = {o.amazon_order_id: o for o in harness.store.failed_orders(ACCOUNT)}
    order = failed[NOT_IN_SHOP["id"]]
    assert order.sync_status == "Failed Order"
    message = order.last_error or ""
    assert NOT_IN_SHOP["id"] in message and "no shopify order" in message.lower(), message


def test_the_decision_log_verifies_and_holds_one_record_per_decision(harness: Harness) -> None:
    harness.drive()
    request_cancellation(harness.store, harness.amazon, ACCOUNT, QUIET["id"], "BuyerCanceled")
    harness.drive(polls=False)
    decisions = all_decisions(harness.store)
    assert len(decisions) == 5  # four Amazon changes (QUIET has none) and the operator's request
    events = {e for d in decisions for e in [d.event_id]}
    assert len(events) == len(decisions)
    for d in decisions:  # the id is derived from the event, so a decision made again has the same id
        event = harness.store.get_event(d.event_id)
        assert d.decision_id == decision_id_for(ACCOUNT, event.natural_key)
    harness.log.close()
    result = verify(harness.log_path)
    assert result.ok, result.broken
    logged = [json.loads(line)["decision_id"] for line in harness.log_path.read_text().splitlines()]
    assert sorted(logged) == sorted(d.decision_id for d in decisions)


def test_an_event_waits_while_its_orders_earlier_actions_are_still_going_out(harness: Harness) -> None:
    """Amazon's echo of a cancellation decided while the storefront cancel is still pending would see the
    order not yet cancelled and cancel it again (found by the demo)."""
    pipeline = harness.pipeline
    pipeline.poll_orders()
    pipeline.decide()  # the buyer request: hold, note, notify now pending
    harness.store.ingest(ACCOUNT, "later-change", "order_cancelled",
                         {"origin": "amazon", "reason_code": "BuyerCanceled", "line_count": 1, "lines_cancelled": 1,
                          "units_ordered": 1, "units_cancelled": 1}, amazon_order_id=BUYER_REQUEST["id"])
    pipeline.decide()
    assert [d for d in all_decisions(harness.store)
            if d.record["amazon_order_id"] == BUYER_REQUEST["id"] and d.record["event"] == "order_cancelled"] == []
    harness.drive()  # the hold and the note reach the storefront; then the cancellation is decided on what is there
    decision = harness.decision_of(BUYER_REQUEST["id"], "order_cancelled")
    assert decision.record["fact"]["order_status"] == "On Hold"
    assert decision.record["rule"] == "mirror-cancellation-with-restock"


def test_decisions_committed_but_not_logged_are_caught_up_once_at_start(harness: Harness) -> None:
    """A decide run commits its decisions, then logs them: a crash in between leaves decisions the log has
    not seen. At start the log is caught up from the store, each missing record once, the chain unbroken."""
    pipeline = harness.pipeline
    pipeline.poll_orders()
    pipeline.decision_log = None  # the process dies after the commit, before the log is written
    assert pipeline.decide() == 4
    pipeline.decision_log = harness.log
    request_cancellation(harness.store, harness.amazon, ACCOUNT, QUIET["id"], "BuyerCanceled")
    assert pipeline.decide() == 1  # a later run, logged as usual, before the restart catches up
    assert catch_up_decision_log(harness.store, harness.log) == 4
    assert catch_up_decision_log(harness.store, harness.log) == 0  # a second start finds nothing missing
    harness.log.close()
    result = verify(harness.log_path)
    assert result.ok, result.broken
    logged = [json.loads(line)["decision_id"] for line in harness.log_path.read_text().splitlines()]
    assert sorted(logged) == sorted(d.decision_id for d in all_decisions(harness.store)) and len(logged) == 5


def test_an_orders_events_in_one_decide_run_read_its_storefront_copy_once(harness: Harness) -> None:
    """Every read spends the shop's cost bucket, which bounds deciding in production: an order's second
    event in a run (after a decision with nothing to do) is decided on the copy read for its first."""
    pipeline = harness.pipeline
    pipeline.settings["sync_cancellations"] = False  # Amazon's cancellations are left alone: no action
    while pipeline.poll_orders():
        pass
    [first] = [e for e in harness.store.undecided_events(ACCOUNT, 100)
               if (e.amazon_order_id, e.kind) == (CANCELLED_BY_BUYER["id"], "order_cancelled")]
    # Amazon reports the same cancellation again with a later update time: a second event of the order.
    harness.store.ingest_many(ACCOUNT, [NewEvent(kind=first.kind, natural_key=first.natural_key + ":later",
                                                 amazon_order_id=first.amazon_order_id, payload=first.payload)])
    events = harness.store.undecided_events(ACCOUNT, 100)
    reads_before = len(find_orders_requests(harness))
    assert pipeline.decide() == len(events)
    assert len(find_orders_requests(harness)) - reads_before == len({e.amazon_order_id for e in events})
    decisions = [d for d in all_decisions(harness.store) if d.record["amazon_order_id"] == CANCELLED_BY_BUYER["id"]]
    assert [d.record["rule"] for d in decisions] == ["leave-amazon-cancellation-unsynced"] * 2
    assert decisions[0].record["storefront_order_id"] == decisions[1].record["storefront_order_id"] is not None


def find_orders_requests(harness: Harness) -> list[dict[str, Any]]:
    return [e for e in harness.standins.shopify.journal.entries()
            if e.get("kind") == "request" and e.get("operation") == "FindOrders"]


@pytest.mark.parametrize("account, natural_key", [
    ("acme", "order_cancelled:114-0000001-0001234:3"), ("", ""), ("boutique-é", "return_reported:RMA-漢字:😀")])
def test_a_decision_id_is_the_uuid5_of_its_event_as_it_always_was(account: str, natural_key: str) -> None:
    # Ids recorded (and idempotency keys sent to Shopify) before the id was made without uuid.uuid5 must be
    # made again the same for the same event.
    from daemon.pipeline.jobs import DECISION_NAMESPACE
    assert decision_id_for(account, natural_key) == str(uuid.uuid5(DECISION_NAMESPACE, f"{account}/{natural_key}"))


def test_a_feed_amazon_refuses_to_take_pauses_the_job_for_the_operators_alert(harness: Harness) -> None:
    """createFeed refused (a revoked authorisation, a missing role): nothing goes out, nothing is lost, the run ends ok,
    and the job tells the service it was paused (ordersync_amazon_paused), until a run sends it."""
    harness.drive()
    assert request_cancellation(harness.store, harness.amazon, ACCOUNT, QUIET["id"], "NoInventory")
    harness.pipeline.decide()
    while harness.dispatcher.run():
        pass
    harness.standins.amazon.faults = Faults(error_rate=1.0, error_statuses=[403], path_prefix="/feeds")
    harness.pipeline.observer = seen = PausesSeen()
    assert harness.pipeline.send_batches() == 0
    assert harness.pipeline.send_batches() == 0  # the batch made in the first run, tried again
    assert seen.runs == [(ACCOUNT, "send_batches", True)] * 2
    harness.standins.amazon.faults = Faults()
    # A run that fails for another reason tells what it met, not the paused runs' 1 (the alert would blame Amazon).
    def store_gone() -> None:
        raise RuntimeError("the store is gone")

    settle, harness.pipeline._settle_batches_in_doubt = harness.pipeline._settle_batches_in_doubt, store_gone
    with pytest.raises(RuntimeError):
        harness.pipeline.send_batches()
    assert seen.runs[-1] == (ACCOUNT, "send_batches", False)
    harness.pipeline._settle_batches_in_doubt = settle
    assert harness.pipeline.send_batches() == 0  # the batch in doubt of this process goes out as it settles
    assert seen.runs[-1] == (ACCOUNT, "send_batches", False)
    assert feed_messages(harness.standins.amazon) == {(QUIET["id"], CANCEL_FEED): 1}
