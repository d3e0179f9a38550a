"""A buyer's cancellation request still open near the end of Amazon's 2-day window is decided again (DOMAIN 1:
"let a person or a rule answer within the window (2 days; after that the buyer can go to Amazon)"): the
reminders job makes a buyer_request_due event 36 hours after the request, with Amazon's state read then."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

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
