"""A buyer's cancellation request still open near the end of Amazon's 2-day window is decided again (DOMAIN 1:
"let a person or a rule answer within the window (2 days; after that the buyer can go to Amazon)"): the
reminders job makes a buyer_request_due event 36 hours after the request, with Amazon's state read then."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from adapters.sim.server import Faults
from daemon.pipeline.operator import request_cancellation

from .harness import ACCOUNT, all_decisions
from .test_pipeline import BUYER_REQUEST, Harness, running

ANSWERED = {"id": "114-0000031-0000031", "buyer_cancel": "Wrong size", "lines": [{"sku": "HAT-01", "quantity": 1, "price": "14.00"}]}
SHIPPED_MEANWHILE = {"id": "114-0000032-0000032", "buyer_cancel": "Too late", "lines": [{"sku": "BAG-01", "quantity": 1, "price": "30.00"}]}


def later(harness: Harness, hours: float) -> None:
    """The pipeline's clock `hours` ahead of the real one (the stand-ins keep real time)."""
    harness.pipeline.clock = lambda: datetime.now(timezone.utc) + timedelta(hours=hours)


def due_decisions(harness: Harness) -> dict[str, Any]:
    return {d.record["amazon_order_id"]: d for d in all_decisions(harness.store) if d.record["event"] == "buyer_request_due"}


def test_an_unanswered_buyer_request_is_reminded_once_as_the_window_closes(db_url: str, tmp_path: Path) -> None:
    with running([BUYER_REQUEST, ANSWERED, SHIPPED_MEANWHILE], db_url, tmp_path) as harness:
        harness.drive()  # the requests hold the orders
        assert harness.pipeline.remind_buyer_requests() == 0  # not due yet: nothing, and nothing skipped
        assert harness.store.cursor(ACCOUNT, "buyer_request_reminders") == "0"

        # One is answered on Amazon (the seller cancelled it as the buyer asked), one ships meanwhile.
        assert request_cancellation(harness.store, harness.amazon, ACCOUNT, ANSWERED["id"], "BuyerCanceled", request_id="answer")
        harness.drive(polls=False)
        harness.drive()  # Amazon's cancellation comes back with the order poll
        item = harness.standins.amazon.orders[SHIPPED_MEANWHILE["id"]]["lines"][0]["item_id"]
        harness.standins.amazon.upsert_orders([{"id": SHIPPED_MEANWHILE["id"], "status": "Shipped", "lines": [{"item_id": item, "shipped": 1}]}])
        harness.drive()

        later(harness, 37)
        assert harness.pipeline.remind_buyer_requests() == 2  # the answered one needs no event
        last_id = max(e.id for e in harness.store.events_of_kind(ACCOUNT, "buyer_cancel_requested", 0))
        assert harness.store.cursor(ACCOUNT, "buyer_request_reminders") == str(last_id)  # all three done
        harness.drive(polls=False)
        due = due_decisions(harness)
        assert set(due) == {BUYER_REQUEST["id"], SHIPPED_MEANWHILE["id"]}
        reminded = due[BUYER_REQUEST["id"]]
        assert reminded.record["rule"] == "remind-buyer-request-due"
        assert 36.9 <= reminded.record["fact"]["hours_since_request"] <= 39.5
        assert "still unanswered after 3" in harness.standins.shop_order(BUYER_REQUEST["id"])["note"]
        assert due[SHIPPED_MEANWHILE["id"]].record["rule"] == "buyer-request-overtaken-by-shipment"

        # Once per order: a later run finds nothing new.
        later(harness, 40)
        assert harness.pipeline.remind_buyer_requests() == 0
        harness.drive(polls=False)
        assert len(due_decisions(harness)) == 2


LATE = {"id": "114-0000033-0000033", "lines": [{"sku": "CUP-33", "quantity": 1, "price": "6.00"}]}
FRESH = {"id": "114-0000034-0000034", "lines": [{"sku": "CUP-34", "quantity": 1, "price": "6.00"}]}


def file_buyer_request(harness: Harness, order_id: str, hours_ago: float) -> None:
    """A buyer request as the order report stores it: it may reach ordersync long after the buyer asked."""
    asked = datetime.now(timezone.utc) - timedelta(hours=hours_ago)
    assert harness.store.ingest(ACCOUNT, f"buyer_cancel_requested:{order_id}", "buyer_cancel_requested",
                                {"origin": "amazon", "buyer_cancel_reason": "Changed my mind", "requested_at": asked.isoformat()},
                                amazon_order_id=order_id)


def test_a_request_stored_late_is_reminded_on_time_past_one_not_due_and_one_amazon_does_not_know(
        db_url: str, tmp_path: Path) -> None:
    """Requests are not stored in the order they were made: one not due yet is passed over, not waited for, and
    an order Amazon does not give stops nobody else's reminder. The cursor stays before what is not done."""
    with running([FRESH, LATE], db_url, tmp_path) as harness:
        harness.drive()
        file_buyer_request(harness, FRESH["id"], hours_ago=1)
        file_buyer_request(harness, "114-9999999-9999999", hours_ago=40)  # not this seller's: Amazon answers 404
        file_buyer_request(harness, LATE["id"], hours_ago=40)  # from a late report: 40 hours old when stored
        harness.drive(polls=False)  # both held
        first_id = min(e.id for e in harness.store.events_of_kind(ACCOUNT, "buyer_cancel_requested", 0))

        assert harness.pipeline.remind_buyer_requests() == 1
        harness.drive(polls=False)
        assert set(due_decisions(harness)) == {LATE["id"]}
        assert due_decisions(harness)[LATE["id"]].record["rule"] == "remind-buyer-request-due"
        assert int(harness.store.cursor(ACCOUNT, "buyer_request_reminders")) < first_id + 1  # FRESH is not done

        later(harness, 37)  # now FRESH is due; LATE is not asked of Amazon again
        asked_before = sum(1 for e in harness.standins.amazon.journal.entries() if e["operation"] == "getOrder2026")
        assert harness.pipeline.remind_buyer_requests() == 1
        assert sum(1 for e in harness.standins.amazon.journal.entries() if e["operation"] == "getOrder2026") == asked_before + 1
        harness.drive(polls=False)
        assert set(due_decisions(harness)) == {LATE["id"], FRESH["id"]}
        last_id = max(e.id for e in harness.store.events_of_kind(ACCOUNT, "buyer_cancel_requested", 0))
        assert harness.store.cursor(ACCOUNT, "buyer_request_reminders") == str(last_id)  # every request done


REFUSED = {"id": "114-0000035-0000035", "lines": [{"sku": "CUP-35", "quantity": 1, "price": "6.00"}]}


def test_an_order_amazon_refuses_goes_to_the_error_view_and_the_others_are_reminded(db_url: str, tmp_path: Path) -> None:
    with running([REFUSED, LATE], db_url, tmp_path) as harness:
        harness.drive()
        file_buyer_request(harness, REFUSED["id"], hours_ago=40)
        file_buyer_request(harness, LATE["id"], hours_ago=40)
        harness.drive(polls=False)
        harness.standins.amazon.faults = Faults(error_rate=1.0, error_statuses=[400],
                                                path_prefix=f"/orders/2026-01-01/orders/{REFUSED['id']}")

        assert harness.pipeline.remind_buyer_requests() == 1
        last_id = max(e.id for e in harness.store.events_of_kind(ACCOUNT, "buyer_cancel_requested", 0))
        assert harness.store.cursor(ACCOUNT, "buyer_request_reminders") == str(last_id)
        harness.drive(polls=False)
        assert set(due_decisions(harness)) == {LATE["id"]}
        failed = {o.amazon_order_id: o for o in harness.store.failed_orders(ACCOUNT)}
        assert set(failed) == {REFUSED["id"]}
        assert failed[REFUSED["id"]].sync_status == "Failed Cancellation"
        assert "Answer the buyer in Seller Central" in failed[REFUSED["id"]].last_error
