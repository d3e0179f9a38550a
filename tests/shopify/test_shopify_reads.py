"""Finding the Shopify order for an Amazon order, and the statuses the rules read from it."""
from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from adapters.errors import InvalidInput, PermanentError
from adapters.shopify import DropshipStatus, OrderMatch, OrderNotFound, OrderStatus, ShippingStatus, ShopifyRejected
from adapters.shopify.client import marker_for
from adapters.shopify.models import FulfillmentOrder, dropship_status_for

from .conftest import HandClock


def test_find_by_source_identifier_gives_what_the_rules_read(client: Any) -> None:
    order = client.find_order("111-0000001-0000001")
    assert order.id == "gid://shopify/Order/1001" and order.name == "#1001"
    assert order.amazon_order_id == "111-0000001-0000001"
    assert (order.shipping_status, order.order_status, order.dropship_status) == (
        ShippingStatus.UNSHIPPED, OrderStatus.IN_PROCESS, DropshipStatus.NONE)
    assert order.financial_status == "PAID"
    assert order.paid_total == Decimal("51.50") and order.refunded_total == Decimal("0.00")
    assert [(l.sku, l.quantity, l.refundable_quantity, l.fulfilled_quantity) for l in order.line_items] == [
        ("MUG-RED", 3, 3, 0), ("MUG-BLUE", 1, 1, 0)]
    assert not order.cancelled
    fact = order.as_fact()
    assert fact["shipping_status"] == "Unshipped" and fact["order_status"] == "In Process" and fact["units_ordered"] == 4


def test_find_by_tag_when_the_import_wrote_a_tag(make_client: Any, sim: Any) -> None:
    client = make_client(sim, match=OrderMatch(by="tag", tag_prefix="amazon-"))
    # order 1008 has no source identifier, only the tag
    assert client.find_order("111-0000008-0000008").id == "gid://shopify/Order/1008"
    with pytest.raises(OrderNotFound):
        make_client(sim).find_order("111-0000008-0000008")


@pytest.mark.parametrize("amazon_id,shipping,status,dropship", [
    ("111-0000002-0000002", ShippingStatus.PARTIALLY_SHIPPED, OrderStatus.IN_PROCESS, DropshipStatus.NONE),
    ("111-0000003-0000003", ShippingStatus.SHIPPED, OrderStatus.COMPLETED, DropshipStatus.NONE),
    ("111-0000004-0000004", ShippingStatus.UNSHIPPED, OrderStatus.CANCELLED, DropshipStatus.NONE),
    ("111-0000005-0000005", ShippingStatus.UNSHIPPED, OrderStatus.IN_PROCESS, DropshipStatus.PENDING),
    ("111-0000006-0000006", ShippingStatus.UNSHIPPED, OrderStatus.IN_PROCESS, DropshipStatus.PROCESSED),
    ("111-0000007-0000007", ShippingStatus.UNSHIPPED, OrderStatus.ON_HOLD, DropshipStatus.NONE),
])
def test_statuses_of_the_shops_orders(client: Any, amazon_id: str, shipping: Any, status: Any, dropship: Any) -> None:
    order = client.find_order(amazon_id)
    assert (order.shipping_status, order.order_status, order.dropship_status) == (shipping, status, dropship)


def test_partially_fulfilled_line_counts(client: Any) -> None:
    line = client.find_order("111-0000002-0000002").line_items[0]
    assert (line.quantity, line.fulfilled_quantity, line.unfulfilled_quantity) == (3, 1, 2)


def _fo(service: str | None, request_status: str, status: str = "OPEN") -> FulfillmentOrder:
    return FulfillmentOrder("fo", status, request_status, "loc", "L", service, (), ())


@pytest.mark.parametrize("fos,expected", [
    ([], DropshipStatus.NONE),
    ([_fo(None, "UNSUBMITTED")], DropshipStatus.NONE),
    ([_fo("dropco", "UNSUBMITTED")], DropshipStatus.PENDING),
    ([_fo("dropco", "REJECTED")], DropshipStatus.PENDING),
    ([_fo("dropco", "SUBMITTED")], DropshipStatus.REQUESTED),
    ([_fo("dropco", "CANCELLATION_REQUESTED")], DropshipStatus.REQUESTED),
    ([_fo("dropco", "ACCEPTED")], DropshipStatus.PROCESSED),
    ([_fo("dropco", "UNSUBMITTED", status="CLOSED")], DropshipStatus.PROCESSED),
    ([_fo("dropco", "UNSUBMITTED"), _fo("dropco", "SUBMITTED")], DropshipStatus.REQUESTED),
    ([_fo(None, "UNSUBMITTED"), _fo("dropco", "ACCEPTED")], DropshipStatus.PROCESSED),
])
def test_dropship_status_mapping(fos: list[FulfillmentOrder], expected: DropshipStatus) -> None:
    assert dropship_status_for(tuple(fos)) is expected


def test_an_unknown_amazon_order_is_a_permanent_not_found_naming_it(client: Any) -> None:
    with pytest.raises(OrderNotFound) as caught:
        client.find_order("999-9999999-9999999")
    assert caught.value.permanent and caught.value.code == "ORDER_NOT_FOUND"
    assert "999-9999999-9999999" in str(caught.value)


def test_an_unknown_shopify_order_id_is_not_found(client: Any) -> None:
    with pytest.raises(OrderNotFound, match="gid://shopify/Order/424242"):
        client.get_order("gid://shopify/Order/424242")


def test_two_orders_claiming_one_amazon_order_is_ambiguous(start_sim: Any, make_client: Any, shop: dict) -> None:
    shop["orders"].append({"id": 2001, "name": "#2001", "source_identifier": "111-0000001-0000001",
                           "lines": [{"sku": "MUG-RED", "quantity": 1}]})
    client = make_client(start_sim(shop))
    with pytest.raises(ShopifyRejected) as caught:
        client.find_order("111-0000001-0000001")
    assert caught.value.code == "AMBIGUOUS_MATCH" and "#1001" in str(caught.value) and "#2001" in str(caught.value)


def test_a_search_hit_that_does_not_really_match_is_not_taken(make_client: Any, sim: Any) -> None:
    # Shopify's search ignores a filter it does not understand and returns everything; a hit is
    # only taken when its source identifier really is the Amazon order id.
    class LooseSearch(OrderMatch):
        def search(self, amazon_order_id: str) -> str:
            return f"amazon_id:'{amazon_order_id}'"

    client = make_client(sim, match=LooseSearch())
    with pytest.raises(OrderNotFound):
        client.find_order("111-0000999-0000999")


def test_an_empty_amazon_order_id_is_the_callers_mistake(client: Any) -> None:
    with pytest.raises(InvalidInput):
        client.find_order("  ")
    assert issubclass(InvalidInput, PermanentError)


# -- orders cancelled in the storefront (the storefront poll) ---------------------------------------------
def _cancelled_by_a_person(sim: Any, number: int, reason: str, note: str = "customer phoned") -> None:
    sim.cancel_in_admin(f"gid://shopify/Order/{number}", reason, staff_note=note)


def test_cancelled_orders_lists_the_amazon_orders_cancelled_since_a_time_and_says_who_cancelled(
        start_sim: Any, make_client: Any) -> None:
    clock = HandClock()
    sim = start_sim(clock=clock)
    client = make_client(sim)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now))
    clock.advance(60)
    _cancelled_by_a_person(sim, 1001, "INVENTORY")
    _cancelled_by_a_person(sim, 1008, "OTHER")  # carries only a tag, and this client matches by source identifier
    clock.advance(60)
    # As ShopifyClient.cancel_order writes it when ordersync mirrors an Amazon cancellation.
    _cancelled_by_a_person(sim, 1007, "CUSTOMER", f"Amazon cancelled [{marker_for('decision-1:0')}]")
    clock.advance(30)

    found = list(client.cancelled_orders(since))
    # 1004 was cancelled when the shop was loaded, at `since`; updated at or after it counts.
    assert [(c.amazon_order_id, c.reason, c.by_ordersync) for c in found] == [
        ("111-0000004-0000004", "CUSTOMER", False), ("111-0000001-0000001", "INVENTORY", False),
        ("111-0000007-0000007", "CUSTOMER", True)]
    assert found[1].id == "gid://shopify/Order/1001" and found[1].updated_at >= found[1].cancelled_at > since
    assert "amazon-111-0000001-0000001" in found[1].tags
    # a page at a time gives the same orders, in the same order
    assert list(client.cancelled_orders(since, page_size=1)) == found
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now - 60))
    assert [c.amazon_order_id for c in client.cancelled_orders(later)] == ["111-0000007-0000007"]
    assert list(client.cancelled_orders("2999-01-01T00:00:00Z")) == []
    with pytest.raises(InvalidInput, match="YYYY-MM-DDTHH:MM:SSZ"):
        list(client.cancelled_orders("yesterday"))
