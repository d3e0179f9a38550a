"""Polling orders through the stand-in, both API versions, and bad orders in a page."""
from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from adapters.amazon import OrderCursor, OrderStatus
from adapters.amazon.orders import parse_order_v0, parse_order_v2026
from adapters.errors import InvalidInput
from adapters.sim.server import Response, SimServer

from .conftest import SINCE


def by_id(page):
    return {order.amazon_order_id: order for order in page.orders}


@pytest.mark.parametrize("version", ["2026-01-01", "v0"])
def test_poll_normalises_every_status_fulfilment_and_buyer_request(sim, make_client, version):
    client = make_client(sim, orders_api_version=version)
    page = client.poll_orders(SINCE)
    orders = by_id(page)
    assert page.errors == []
    assert len(orders) == 10
    requested = orders["113-0000001-0000001"]
    assert requested.buyer_cancel_requested and requested.buyer_cancel_reason == "Found it cheaper somewhere else"
    assert requested.cancellation_requester == "BUYER"
    assert requested.status is OrderStatus.UNSHIPPED and requested.fulfillment == "FBM"
    assert requested.order_total == Decimal("12.50") and requested.lines[0].unit_price == Decimal("12.50")
    assert orders["113-0000005-0000005"].fulfillment == "FBA"
    assert orders["113-0000005-0000005"].lines[0].quantity_shipped == 1
    assert orders["113-0000006-0000006"].status is OrderStatus.CANCELED
    assert orders["113-0000006-0000006"].lines[0].quantity_cancelled == 1
    assert orders["113-0000007-0000007"].order_total is None  # Amazon sends no money while Pending
    assert orders["113-0000002-0000002"].order_total == Decimal("54.99")
    statuses = {o.status for o in orders.values()}
    expected = set(OrderStatus) - ({OrderStatus.INVOICE_UNCONFIRMED} if version == "2026-01-01" else set())
    assert statuses == expected


def test_v2026_reports_partial_cancellation_and_who_cancelled(client):
    orders = by_id(client.poll_orders(SINCE))
    partial = orders["113-0000003-0000003"]
    assert (partial.lines[0].quantity_ordered, partial.lines[0].quantity_cancelled) == (3, 1)
    assert partial.cancelled_by == "MERCHANT" and partial.cancel_reason == "NoInventory"
    assert orders["113-0000006-0000006"].cancelled_by == "AMAZON"


@pytest.mark.parametrize("version", ["2026-01-01", "v0"])
def test_cursor_is_amazons_high_water_mark_and_next_poll_sees_only_new_changes(sim, make_client, scenario, make_sim, version):
    scenario["max_page_size"] = 3  # force several pages
    sim = make_sim(scenario)
    client = make_client(sim, orders_api_version=version)
    first = client.poll_orders(OrderCursor(SINCE, version))
    assert len(first.orders) == 10
    pages = [e for e in sim.journal.entries() if e["operation"] in ("searchOrders", "getOrders")]
    assert len(pages) == 4
    assert first.next_cursor.high_water > SINCE
    assert client.poll_orders(first.next_cursor).orders == []
    httpx.post(sim.base_url + "/_sim/orders", json={"id": "113-0000002-0000002",
                                                    "buyer_cancel": {"reason": "Ordered by mistake"}}).raise_for_status()
    second = client.poll_orders(first.next_cursor)
    assert [o.amazon_order_id for o in second.orders] == ["113-0000002-0000002"]
    assert second.orders[0].buyer_cancel_requested and second.orders[0].buyer_cancel_reason == "Ordered by mistake"
    assert second.next_cursor.high_water >= first.next_cursor.high_water


def test_get_order_both_versions_agree(sim, make_client):
    new = make_client(sim).get_order("113-0000003-0000003")
    old = make_client(sim, orders_api_version="v0").get_order("113-0000003-0000003")
    assert (new.status, new.fulfillment, new.order_total, new.lines[0].sku) == (old.status, old.fulfillment, old.order_total, old.lines[0].sku)


def test_unknown_order_is_a_permanent_error_naming_it(client):
    from adapters.errors import PermanentError
    with pytest.raises(PermanentError, match="113-9999999-9999999"):
        client.get_order("113-9999999-9999999")


GOOD = {"orderId": "111-1111111-1111111", "createdTime": "2026-03-01T00:00:00Z", "lastUpdatedTime": "2026-03-01T01:00:00Z",
        "salesChannel": {"channelName": "AMAZON"}, "fulfillment": {"fulfillmentStatus": "UNSHIPPED", "fulfilledBy": "MERCHANT"},
        "orderItems": [{"orderItemId": "1", "quantityOrdered": 1, "product": {"sellerSku": "A", "price": {"unitPrice": {"amount": "5.00", "currencyCode": "USD"}}}}]}


def test_bad_orders_in_a_page_are_named_and_the_rest_delivered(make_client):
    """A real server hands back a page with an unknown status, a non-numeric amount and a non-object."""
    bad_status = {**GOOD, "orderId": "222-2222222-2222222", "fulfillment": {"fulfillmentStatus": "LOST"}}
    bad_amount = {**GOOD, "orderId": "333-3333333-3333333",
                  "orderItems": [{**GOOD["orderItems"][0], "product": {"price": {"unitPrice": {"amount": "ten", "currencyCode": "USD"}}}}]}
    page = {"orders": [bad_status, GOOD, bad_amount, "junk"], "lastUpdatedBefore": "2026-03-02T00:00:00Z"}

    server = SimServer()
    server.add_route("POST", "/auth/o2/token", lambda r: Response(200, {"access_token": "Atza|x", "expires_in": 3600}))
    server.add_route("GET", "/orders/2026-01-01/orders", lambda r: Response(200, page))
    with server:
        client = make_client(server)
        result = client.poll_orders(SINCE)
    assert [o.amazon_order_id for o in result.orders] == ["111-1111111-1111111"]
    messages = [str(e) for e in result.errors]
    assert any("222-2222222-2222222" in m and "fulfillmentStatus" in m and "LOST" in m for m in messages)
    assert any("333-3333333-3333333" in m and "unitPrice" in m and "not a number" in m for m in messages)
    assert any("order #4" in m for m in messages)
    assert result.next_cursor.high_water == "2026-03-02T00:00:00Z"


def test_malformed_json_page_is_a_clear_error(make_client):
    server = SimServer()
    server.add_route("POST", "/auth/o2/token", lambda r: Response(200, {"access_token": "Atza|x", "expires_in": 3600}))
    server.add_route("GET", "/orders/2026-01-01/orders", lambda r: Response(200, b"{\"orders\": [", content_type="application/json"))
    with server:
        with pytest.raises(InvalidInput, match="searchOrders page 1.*not JSON"):
            make_client(server).poll_orders(SINCE)


def test_v0_flag_is_text_and_missing_quantity_names_the_field():
    order = {"AmazonOrderId": "444-4444444-4444444", "OrderStatus": "Unshipped", "LastUpdateDate": "2026-03-01T00:00:00Z",
             "PurchaseDate": "2026-03-01T00:00:00Z"}
    parsed = parse_order_v0(order, [{"OrderItemId": "9", "QuantityOrdered": 1,
                                     "BuyerRequestedCancel": {"IsBuyerRequestedCancel": "false", "BuyerCancelReason": "x"}}])
    assert parsed.buyer_cancel_requested is False  # the text "false" must not count as a request
    with pytest.raises(InvalidInput, match="444-4444444-4444444.*QuantityOrdered: missing"):
        parse_order_v0(order, [{"OrderItemId": "9"}])
    with pytest.raises(InvalidInput, match="OrderStatus: unknown value 'Lost'"):
        parse_order_v0({**order, "OrderStatus": "Lost"}, [])
    assert parse_order_v2026(GOOD).lines[0].line_price == Decimal("5.00")
