"""Finding the Shopify order for an Amazon order, and the statuses the rules read from it."""
from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from adapters.errors import InvalidInput, PermanentError
from adapters.shopify import DropshipStatus, OrderMatch, OrderNotFound, OrderStatus, ShippingStatus, ShopifyRejected
from adapters.shopify.client import marker_for
from adapters.shopify.models import FulfillmentOrder, StorefrontRefundLine, dropship_status_for
from adapters.shopify.operations import REFUND_LINES_READ, REFUNDED_ORDERS_MAX_COST, REFUNDS_READ
from adapters.sim import shopify_store

from .conftest import HandClock, journal, level


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


# -- refunds recorded in the storefront (the storefront refunds poll) ---------------------------------------
def _stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _order(number: int) -> str:
    return f"gid://shopify/Order/{number}"


def test_refunded_orders_lists_each_refund_with_its_amount_lines_and_who_made_it(
        start_sim: Any, make_client: Any, shop: dict) -> None:
    shop["orders"].append({"id": 1009, "name": "#1009", "source_identifier": None,  # not an Amazon order's mirror
                           "lines": [{"sku": "MUG-RED", "quantity": 1, "price": "12.50"}]})
    clock = HandClock()
    sim = start_sim(shop, clock=clock)
    client = make_client(sim)
    since = _stamp(clock.now)
    clock.advance(60)
    t1 = clock.now
    by_amount = sim.refund_in_admin(_order(1001), "5.10", note="scratched, kept it")
    sim.refund_in_admin(_order(1009), "2.00")
    clock.advance(60)
    t2 = clock.now
    stocked = level(sim, "MUG-BLUE", 1)
    # Both fulfilled units come back: the whole order is refunded (REFUNDED, the other search).
    by_lines = sim.refund_in_admin(_order(1003), lines=[("MUG-BLUE", 2)], restock_type="RETURN")
    assert level(sim, "MUG-BLUE", 1) == stocked + 2
    clock.advance(60)
    t3 = clock.now
    ours = client.refund(_order(1002), idempotency_key="decision-7:0", amount="3.33", note="Amazon refunded the buyer").detail["refund"]
    clock.advance(30)

    found = list(client.refunded_orders(since))
    assert [(r.id, r.order_id, r.order_name, r.amazon_order_id, r.created_at, r.updated_at) for r in found] == [
        (by_amount, _order(1001), "#1001", "111-0000001-0000001", _stamp(t1), _stamp(t1)),
        (by_lines, _order(1003), "#1003", "111-0000003-0000003", _stamp(t2), _stamp(t2)),
        (ours, _order(1002), "#1002", "111-0000002-0000002", _stamp(t3), _stamp(t3))]
    assert [(str(r.amount), r.currency, r.note, r.lines, r.by_ordersync, r.order_cancelled) for r in found] == [
        ("5.10", "USD", "scratched, kept it", (), False, False),
        ("28.00", "USD", "", (StorefrontRefundLine("MUG-BLUE", 2, "RETURN"),), False, False),
        ("3.33", "USD", f"Amazon refunded the buyer [{marker_for('decision-7:0')}]", (), True, False)]
    assert all(isinstance(r.amount, Decimal) for r in found)
    # a page at a time gives the same refunds, in the same order; no request asks for more than the budget
    assert list(client.refunded_orders(since, page_size=1)) == found
    assert journal(sim, operation="RefundedOrders")
    assert all(e["requested"] <= REFUNDED_ORDERS_MAX_COST for e in journal(sim, operation="RefundedOrders"))
    assert [r.id for r in client.refunded_orders(_stamp(clock.now - 60))] == [ours]
    assert list(client.refunded_orders("2999-01-01T00:00:00Z")) == []
    with pytest.raises(InvalidInput, match="YYYY-MM-DDTHH:MM:SSZ") as caught:
        list(client.refunded_orders("yesterday"))
    assert caught.value.code == "BAD_SINCE"
    with pytest.raises(InvalidInput, match="page_size"):
        list(client.refunded_orders(since, page_size=0))


def test_refunded_orders_gives_an_orders_refunds_oldest_first_and_each_once(
        start_sim: Any, make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = HandClock()
    sim = start_sim(clock=clock)
    client = make_client(sim)
    since = _stamp(clock.now)
    clock.advance(10)
    first = sim.refund_in_admin(_order(1001), "5.00")
    clock.advance(10)
    other = sim.refund_in_admin(_order(1002), "1.00")
    clock.advance(10)
    rest = sim.refund_in_admin(_order(1001), "46.50")  # the rest: 1001 is now REFUNDED, updated last
    expected = [other, first, rest]
    assert [r.id for r in client.refunded_orders(since)] == expected

    # Shopify does not promise the order of Order.refunds: newest first must still come out oldest first.
    shown = sim.store.order_view

    def newest_first(order: Any) -> dict[str, Any]:
        view = shown(order)
        refunds = view["refunds"]
        view["refunds"] = lambda info, **args: list(reversed(refunds(info, **args)))
        return view

    monkeypatch.setattr(sim.store, "order_view", newest_first)
    assert [r.id for r in client.refunded_orders(since)] == expected
    # An order met by both searches (it moved from partially refunded to refunded while the pages were read)
    # gives each refund once: here the stand-in's financial_status term filters nothing, so both searches
    # meet every order, and the paid orders without refunds give nothing.
    monkeypatch.setattr(shopify_store, "FINANCIAL_STATUSES", set())
    assert [r.id for r in client.refunded_orders(since, page_size=1)] == expected


def test_refunds_of_a_cancelled_order_say_the_order_is_cancelled(sim: Any, client: Any) -> None:
    sim.cancel_in_admin(_order(1001), "CUSTOMER", refund=True)  # a person cancels and refunds in the admin
    before = sim.refund_in_admin(_order(1007), "2.00")  # a person refunds, then cancels without refunding more
    sim.cancel_in_admin(_order(1007), "INVENTORY")
    # ordersync's own cancellation with a refund: the marker is on the staff note, not on the refund's note
    client.cancel_order(_order(1005), idempotency_key="decision-9:0", refund=True)
    found = {r.order_name: r for r in client.refunded_orders("2000-01-01T00:00:00Z")}
    assert set(found) == {"#1001", "#1007", "#1005"}  # 1004 was cancelled unrefunded: still PAID, not listed
    assert [(str(found[n].amount), found[n].by_ordersync, found[n].order_cancelled) for n in ("#1001", "#1007", "#1005")] == [
        ("51.50", False, True), ("2.00", False, True), ("45.00", False, True)]
    assert found["#1007"].id == before and found["#1001"].note == "Order canceled"


@pytest.mark.parametrize("view,key,value,field", [
    ("refund", "createdAt", None, "refunds[0].createdAt"),
    ("refund", "createdAt", "last Tuesday", "refunds[0].createdAt"),
    ("refund", "totalRefundedSet", {"shopMoney": {"amount": "12,50", "currencyCode": "USD"}}, "refunds[0].totalRefundedSet.shopMoney.amount"),
    ("refund", "totalRefundedSet", {"shopMoney": {"amount": "NaN", "currencyCode": "USD"}}, "refunds[0].totalRefundedSet.shopMoney.amount"),
    ("order", "updatedAt", "soon", "updatedAt"),
])
def test_refunded_orders_names_the_order_and_field_of_an_answer_it_cannot_read(
        sim: Any, client: Any, monkeypatch: pytest.MonkeyPatch, view: str, key: str, value: Any, field: str) -> None:
    sim.refund_in_admin(_order(1001), "5.00")
    name = "refund_view" if view == "refund" else "order_view"
    shown = getattr(sim.store, name)
    monkeypatch.setattr(sim.store, name, lambda *args: {**shown(*args), key: value})
    with pytest.raises(ShopifyRejected) as caught:
        list(client.refunded_orders("2000-01-01T00:00:00Z"))
    assert (caught.value.code, caught.value.order_id, caught.value.field) == ("MALFORMED_ANSWER", _order(1001), field)
    assert caught.value.permanent
    assert all(part in str(caught.value) for part in ("#1001", "111-0000001-0000001", field))


def test_refunded_orders_stops_at_an_order_with_more_refunds_than_it_reads(sim: Any, client: Any) -> None:
    for _ in range(REFUNDS_READ):
        sim.refund_in_admin(_order(1001), "0.10")
    assert len(list(client.refunded_orders("2000-01-01T00:00:00Z"))) == REFUNDS_READ
    sim.refund_in_admin(_order(1001), "0.10")
    with pytest.raises(ShopifyRejected) as caught:
        list(client.refunded_orders("2000-01-01T00:00:00Z"))
    assert (caught.value.code, caught.value.order_id, caught.value.field) == ("REFUNDS_TRUNCATED", _order(1001), "refunds")
    assert "#1001" in str(caught.value)


def test_refunded_orders_stops_at_a_refund_with_more_lines_than_it_reads(start_sim: Any, make_client: Any, shop: dict) -> None:
    for number in (1010, 1011):
        shop["orders"].append({"id": number, "name": f"#{number}", "source_identifier": f"111-0000000-000{number}",
                               "lines": [{"sku": f"PART-{i}", "quantity": 1, "price": "1.00"} for i in range(REFUND_LINES_READ + 1)]})
    sim = start_sim(shop)
    client = make_client(sim)
    sim.refund_in_admin(_order(1010), lines=[(f"PART-{i}", 1) for i in range(REFUND_LINES_READ)])
    (refund,) = client.refunded_orders("2000-01-01T00:00:00Z")
    assert len(refund.lines) == REFUND_LINES_READ and refund.amount == Decimal("10.00")
    sim.refund_in_admin(_order(1011), lines=[(f"PART-{i}", 1) for i in range(REFUND_LINES_READ + 1)])
    with pytest.raises(ShopifyRejected) as caught:
        list(client.refunded_orders("2000-01-01T00:00:00Z"))
    assert (caught.value.code, caught.value.order_id, caught.value.field) == (
        "REFUNDS_TRUNCATED", _order(1011), "refunds[0].refundLineItems")
