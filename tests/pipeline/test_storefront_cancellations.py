"""Orders a person cancels in the Shopify admin reach Amazon (DOMAIN: "the seller, in ordersync / the
storefront ... send it to Amazon"): the storefront poll finds them, the rules choose, the feed carries
them; ordersync's own cancellations (its mirrors of Amazon's) are never sent back."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from adapters.sim.server import Faults
from daemon.store.models import CANCEL_FEED

from .harness import ACCOUNT, PausesSeen, all_decisions, feed_messages
from .test_pipeline import CANCELLED_BY_BUYER, BUYER_REQUEST, Harness, running

KEEPS = {"id": "114-0000011-0000011", "lines": [{"sku": "VASE-01", "quantity": 1, "price": "22.00"}]}
OUT_OF_STOCK = {"id": "114-0000012-0000012", "lines": [{"sku": "BOWL-09", "quantity": 2, "price": "7.00"},
                                                        {"sku": "CUP-09", "quantity": 1, "price": "3.00"}]}
STAFF_ERROR = {"id": "114-0000013-0000013", "lines": [{"sku": "JUG-01", "quantity": 1, "price": "18.00"}]}
KEPT_FROM_AMAZON = {"id": "114-0000014-0000014", "lines": [{"sku": "TRAY-01", "quantity": 1, "price": "15.00"}]}
BEFORE_WATCHING = {"id": "114-0000015-0000015", "lines": [{"sku": "FORK-01", "quantity": 4, "price": "2.00"}]}
ORDERS = [CANCELLED_BY_BUYER, BUYER_REQUEST, KEEPS, OUT_OF_STOCK, STAFF_ERROR, KEPT_FROM_AMAZON, BEFORE_WATCHING]

def cancel_in_shopify_admin(harness: Harness, order: dict[str, Any], reason: str, *, tag: str | None = None) -> None:
    harness.standins.shopify.cancel_in_admin(harness.standins.shop_order(order["id"])["id"], reason, staff_note="done by hand",
                                             tags=[tag] if tag else [])
    assert harness.standins.shop_order(order["id"])["cancelledAt"]


def next_second() -> None:
    """Shopify gives times in whole seconds; what is cancelled in the second the watch began counts as before it."""
    time.sleep(1.05 - time.time() % 1)


def cancel_requests(harness: Harness) -> dict[str, Any]:
    return {d.record["amazon_order_id"]: d for d in all_decisions(harness.store) if d.record["event"] == "cancel_requested"}


def test_orders_cancelled_in_the_shopify_admin_are_cancelled_on_amazon_once_with_the_matching_reason(
        db_url: str, tmp_path: Path) -> None:
    with running(ORDERS, db_url, tmp_path) as harness:
        cancel_in_shopify_admin(harness, BEFORE_WATCHING, "CUSTOMER")  # before ordersync watched: not its business
        harness.drive()  # Amazon's own cancellation of CANCELLED_BY_BUYER is mirrored, with ordersync's marker
        assert harness.decision_of(CANCELLED_BY_BUYER["id"], "order_cancelled").record["rule"] == "mirror-cancellation-with-restock"
        next_second()
        cancel_in_shopify_admin(harness, OUT_OF_STOCK, "INVENTORY")
        cancel_in_shopify_admin(harness, BUYER_REQUEST, "CUSTOMER")  # the buyer asked, and the seller agreed in Shopify
        harness.drive()

        decided = cancel_requests(harness)
        assert set(decided) == {OUT_OF_STOCK["id"], BUYER_REQUEST["id"]}  # not the mirror, not the one before watching
        assert decided[OUT_OF_STOCK["id"]].record["rule"] == "storefront-cancellation-to-amazon"
        fact = decided[OUT_OF_STOCK["id"]].record["fact"]
        assert (fact["origin"], fact["storefront_cancel_reason"], fact["reason_code"]) == ("storefront", "INVENTORY", "NoInventory")
        assert feed_messages(harness.standins.amazon) == {(OUT_OF_STOCK["id"], CANCEL_FEED): 1, (BUYER_REQUEST["id"], CANCEL_FEED): 1}
        amazon = harness.standins.amazon.orders
        assert amazon[OUT_OF_STOCK["id"]]["status"] == "Canceled"
        assert {line["cancel_reason"] for line in amazon[OUT_OF_STOCK["id"]]["lines"]} == {"NoInventory"}  # every line
        assert {line["cancel_reason"] for line in amazon[BUYER_REQUEST["id"]]["lines"]} == {"BuyerCanceled"}
        assert amazon[BEFORE_WATCHING["id"]]["status"] == "Unshipped"
        # ordersync touched nothing in the shop for them: the person's cancellation is the only change
        assert [m["field"] for m in harness.mutations(OUT_OF_STOCK["id"])] == ["orderCancel"]

        # Amazon's echo (the order now Canceled) is seen by the order poll and needs nothing; the storefront
        # poll meets the same cancellations again and stores nothing new.
        harness.drive()
        assert harness.decision_of(OUT_OF_STOCK["id"], "order_cancelled").record["rule"] == "already-cancelled-in-storefront"
        assert harness.pipeline.poll_storefront_cancellations() == 0
        assert set(cancel_requests(harness)) == {OUT_OF_STOCK["id"], BUYER_REQUEST["id"]}
        assert feed_messages(harness.standins.amazon) == {(OUT_OF_STOCK["id"], CANCEL_FEED): 1, (BUYER_REQUEST["id"], CANCEL_FEED): 1}
        assert [m["field"] for m in harness.mutations(OUT_OF_STOCK["id"])] == ["orderCancel"]


def test_a_storefront_cancellation_amazon_cannot_be_told_of_is_in_the_error_view_saying_why(db_url: str, tmp_path: Path) -> None:
    with running(ORDERS, db_url, tmp_path) as harness:
        harness.pipeline.settings = {**harness.pipeline.settings, "allow_cancel_without_amazon": True}
        harness.drive()
        next_second()
        cancel_in_shopify_admin(harness, STAFF_ERROR, "STAFF")  # Shopify's "staff error" is none of Amazon's reasons
        cancel_in_shopify_admin(harness, KEPT_FROM_AMAZON, "CUSTOMER", tag="do-not-send-to-amazon")
        harness.drive()

        decided = cancel_requests(harness)
        assert decided[STAFF_ERROR["id"]].record["rule"] == "reject-storefront-cancellation-without-amazon-reason"
        failed = {order.amazon_order_id: order for order in harness.store.failed_orders(ACCOUNT)}
        assert failed[STAFF_ERROR["id"]].sync_status == "Failed Cancellation"
        assert "Shopify's reason STAFF" in failed[STAFF_ERROR["id"]].last_error
        assert "Cancel it in Seller Central" in failed[STAFF_ERROR["id"]].last_error
        # The tag keeps Amazon out of it where the account allows that: decided, and nothing to resolve.
        assert decided[KEPT_FROM_AMAZON["id"]].record["rule"] == "storefront-cancellation-kept-from-amazon"
        assert KEPT_FROM_AMAZON["id"] not in failed
        assert harness.standins.amazon.feeds == {}  # Amazon heard of neither
        assert harness.standins.amazon.orders[STAFF_ERROR["id"]]["status"] == "Unshipped"


def test_the_first_storefront_poll_only_starts_watching_and_the_cursor_moves_on(db_url: str, tmp_path: Path) -> None:
    with running([KEEPS], db_url, tmp_path) as harness:
        pipeline = harness.pipeline
        assert pipeline.poll_storefront_cancellations() == 0
        first = json.loads(harness.store.cursor(ACCOUNT, "storefront_cancellations"))
        assert first["since"] == first["watching_since"]
        next_second()
        cancel_in_shopify_admin(harness, KEEPS, "CUSTOMER")
        assert pipeline.poll_storefront_cancellations() == 1
        assert pipeline.poll_storefront_cancellations() == 0  # met again within the overlap, stored once
        moved = json.loads(harness.store.cursor(ACCOUNT, "storefront_cancellations"))
        assert moved["watching_since"] == first["watching_since"]


def test_an_order_amazon_does_not_know_is_skipped_and_an_amazon_refusal_pauses_the_poll(db_url: str, tmp_path: Path) -> None:
    with running([KEEPS, STAFF_ERROR], db_url, tmp_path) as harness:
        pipeline, shop = harness.pipeline, harness.standins.shopify
        assert pipeline.poll_storefront_cancellations() == 0
        started = json.loads(harness.store.cursor(ACCOUNT, "storefront_cancellations"))["since"]
        next_second()
        # A Shopify order whose Amazon id this seller account does not have (another account's, sharing the shop).
        with shop.lock:
            stranger = next(o for o in shop.store.orders.values() if o.source_identifier == STAFF_ERROR["id"])
            stranger.source_identifier = "114-9999999-9999999"
        shop.cancel_in_admin(f"gid://shopify/Order/{stranger.id}", "CUSTOMER")
        cancel_in_shopify_admin(harness, KEEPS, "CUSTOMER")

        # Amazon refuses the app (a revoked authorisation) at a poll an hour later: nothing is lost, the next
        # poll starts at the cancellation rather than 10 minutes before its own time.
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        pipeline.clock = lambda: later
        harness.standins.amazon.faults = Faults(error_rate=1.0, error_statuses=[403], path_prefix="/orders")
        pipeline.observer = seen = PausesSeen()
        assert pipeline.poll_storefront_cancellations() == 0
        assert seen.runs == [(ACCOUNT, "storefront_cancellations", True)]  # for the operators' alert: the run ends ok
        assert json.loads(harness.store.cursor(ACCOUNT, "storefront_cancellations"))["since"] <= \
            max(c.updated_at for c in harness.shopify.cancelled_orders(started))
        harness.standins.amazon.faults = Faults()
        assert pipeline.poll_storefront_cancellations() == 1  # KEEPS; the stranger is skipped with a warning
        assert seen.runs[-1] == (ACCOUNT, "storefront_cancellations", False)
        assert [e.amazon_order_id for e in harness.store.undecided_events(ACCOUNT)] == [KEEPS["id"]]
        assert json.loads(harness.store.cursor(ACCOUNT, "storefront_cancellations"))["since"] == \
            (later - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_order_amazon_refuses_goes_to_the_error_view_and_the_poll_goes_on(db_url: str, tmp_path: Path) -> None:
    """One order whose answer Amazon refuses (HTTP 400) says nothing about the others: before, the poll paused
    at it for good and no later storefront cancellation ever reached Amazon."""
    with running([KEEPS, STAFF_ERROR, OUT_OF_STOCK], db_url, tmp_path) as harness:
        pipeline = harness.pipeline
        assert pipeline.poll_storefront_cancellations() == 0
        next_second()
        for order in (STAFF_ERROR, KEEPS, OUT_OF_STOCK):
            cancel_in_shopify_admin(harness, order, "CUSTOMER")
        harness.standins.amazon.faults = Faults(error_rate=1.0, error_statuses=[400],
                                                path_prefix=f"/orders/2026-01-01/orders/{STAFF_ERROR['id']}")
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        pipeline.clock = lambda: later

        assert pipeline.poll_storefront_cancellations() == 2
        assert {e.amazon_order_id for e in harness.store.undecided_events(ACCOUNT)} == {KEEPS["id"], OUT_OF_STOCK["id"]}
        assert json.loads(harness.store.cursor(ACCOUNT, "storefront_cancellations"))["since"] == \
            (later - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
        failed = {o.amazon_order_id: o for o in harness.store.failed_orders(ACCOUNT)}
        assert set(failed) == {STAFF_ERROR["id"]}
        assert failed[STAFF_ERROR["id"]].sync_status == "Failed Cancellation"
        assert "storefront_cancellation_not_sent" in failed[STAFF_ERROR["id"]].last_error
        assert "Cancel it in Seller Central" in failed[STAFF_ERROR["id"]].last_error


def test_an_order_the_order_poll_never_read_is_put_in_the_grid_as_amazon_shows_it(db_url: str, tmp_path: Path) -> None:
    """An order older than the order poll's look-back, cancelled in the storefront: the grid gets its row as the poll
    read it from Amazon, so the cancellation rate counts it as it is (its creation day, FBM), and the grid shows it."""
    with running([KEEPS], db_url, tmp_path) as harness:
        assert harness.pipeline.poll_storefront_cancellations() == 0  # starts watching; the order poll never ran
        assert harness.store.get_order(ACCOUNT, KEEPS["id"]) is None
        next_second()
        cancel_in_shopify_admin(harness, KEEPS, "CUSTOMER")
        assert harness.pipeline.poll_storefront_cancellations() == 1
        row = harness.store.get_order(ACCOUNT, KEEPS["id"])
        assert row is not None and (row.fulfillment, row.status) == ("FBM", "Unshipped") and row.created_on_amazon


def test_another_marketplaces_order_cancelled_in_a_shared_shop_is_left_to_its_own_account(db_url: str, tmp_path: Path) -> None:
    """Accounts of one seller sharing a shop each read the storefront's cancellations, and Amazon gives each every
    marketplace's orders: one account telling Amazon of another's order would make two messages, and count it in the
    wrong rate."""
    with running([KEEPS], db_url, tmp_path) as harness:
        assert harness.pipeline.poll_storefront_cancellations() == 0
        with harness.standins.amazon.lock:
            harness.standins.amazon.orders[KEEPS["id"]]["marketplace"] = "A2EUQ1WTGCTBG2"  # Amazon.ca
        next_second()
        cancel_in_shopify_admin(harness, KEEPS, "CUSTOMER")
        assert harness.pipeline.poll_storefront_cancellations() == 0
        assert harness.store.get_order(ACCOUNT, KEEPS["id"]) is None
