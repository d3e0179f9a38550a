"""Refunds Amazon made, read from Finances v0 listFinancialEvents and listFinancialEventsByOrderId: through
the stand-in (refunds by feed and in Seller Central, paging, the posted window, the two-minute rule, one
order's refunds, marketplaces, A-to-z guarantee claims, chargebacks and their reversals) and from answers with
bad events."""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest

from adapters.amazon import AdjustedItem, AdjustmentRequest, AmazonRefund, AmazonRefundItem
from adapters.amazon.finances import MARKETPLACE_NAMES, of_marketplaces, parse_refund_event
from adapters.amazon.models import REFUND_KINDS
from adapters.errors import InvalidInput
from adapters.sim.server import Response, SimServer

from .conftest import access_token

LAG = 600  # refund_posting_lag_seconds: events are posted ten minutes back, so they can be read at once
FINANCES = "/finances/v0/financialEvents"
BY_ORDER = "/finances/v0/orders/{orderId}/financialEvents"


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def recent_window() -> tuple[str, str]:
    """A day back to three minutes ago: within 180 days (else Amazon answers nothing) and past the two-minute rule."""
    now = utc_now()
    return iso(now - timedelta(days=1)), iso(now - timedelta(minutes=3))


@pytest.fixture
def lagged_sim(make_sim, scenario):
    scenario["refund_posting_lag_seconds"] = LAG
    return make_sim(scenario)


def finance_calls(sim, operation="listFinancialEvents"):
    return [e for e in sim.journal.entries() if e["operation"] == operation]


def test_a_seller_central_refund_and_a_feed_refund_are_both_read_with_items_amounts_and_times(lagged_sim, make_client, xsd_dir):
    client = make_client(lagged_sim)
    before_feed = utc_now()
    # 10.10 + 0.20 is 10.299999999999999 in floats: only exact decimals give 10.30.
    feed = client.build_adjustment_feed([AdjustmentRequest("113-0000004-0000004", (
        AdjustedItem("10000000000041", "CustomerReturn", (("Principal", Decimal("10.10")), ("Tax", Decimal("0.20"))), quantity=1),))])
    assert client.feed_outcome(client.submit_feed(feed), feed).results[1].success
    after_feed = utc_now()
    lagged_sim.refund_in_seller_central("113-0000005-0000005", posted=utc_now() - timedelta(minutes=30))
    lagged_sim.refund_in_seller_central("113-0000004-0000004", posted=utc_now() - timedelta(minutes=20))

    parsed = client.refunds(*recent_window())

    assert parsed.errors == []
    first, second, third = parsed.records
    # Sorted by posting time, not by when the stand-in was told: both Seller Central refunds come first.
    assert [(r.amazon_order_id, r.amount) for r in parsed.records] == [
        ("113-0000005-0000005", Decimal("40.00")),  # everything: 2 × 20.00
        ("113-0000004-0000004", Decimal("14.90")),  # what the feed left: 25.00 - 10.10
        ("113-0000004-0000004", Decimal("10.30")),  # principal and tax; the commission Amazon returns is not the buyer's
    ]
    assert all(r.currency == "USD" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r.posted) for r in parsed.records)
    assert iso(before_feed - timedelta(seconds=LAG + 1)) <= third.posted <= iso(after_feed - timedelta(seconds=LAG))
    (fed,) = third.items
    assert (fed.order_item_id, fed.sku, fed.quantity, fed.amount) == ("10000000000041", "MUG-BLUE", 1, Decimal("10.30"))
    assert isinstance(fed.amount, Decimal)
    (whole,) = first.items
    assert (whole.order_item_id, whole.sku, whole.quantity, whole.amount) == ("10000000000051", "BOTTLE-1L", 2, Decimal("40.00"))
    adjustment_ids = [item.adjustment_id for refund in parsed.records for item in refund.items]
    assert all(adjustment_ids) and len(set(adjustment_ids)) == 3
    assert third.key == f"{third.posted}|{fed.adjustment_id}"
    assert len({r.key for r in parsed.records}) == 3


def test_many_refunds_come_over_several_pages_each_once(make_sim, make_client, scenario):
    scenario["refund_posting_lag_seconds"] = LAG
    scenario["max_page_size"] = 2  # the client asks for 100; the stand-in gives fewer, as Amazon may
    sim = make_sim(scenario)
    for minute in range(5):
        sim.refund_in_seller_central("113-0000004-0000004", {"10000000000041": "1.00"}, posted=utc_now() - timedelta(minutes=10 + minute))
    after, before = recent_window()

    parsed = make_client(sim).refunds(after, before)

    assert parsed.errors == [] and len(parsed.records) == 5
    assert len({r.key for r in parsed.records}) == 5
    assert [r.posted for r in parsed.records] == sorted(r.posted for r in parsed.records)
    assert all(r.amount == Decimal("1.00") for r in parsed.records)
    calls = finance_calls(sim)
    assert len(calls) == 3
    assert all(c["status"] == 200 for c in calls)
    first = calls[0]["query"]
    assert first == {"PostedAfter": [after], "PostedBefore": [before], "MaxResultsPerPage": ["100"]}
    for call in calls[1:]:
        # The token only works with the arguments it came from, repeated as they were.
        assert {k: v for k, v in call["query"].items() if k != "NextToken"} == first and call["query"]["NextToken"]


def test_only_events_posted_in_the_window_are_returned(lagged_sim, make_client):
    before = utc_now() - timedelta(minutes=10)
    after = before - timedelta(hours=1)
    for moment in (after - timedelta(seconds=1), after, before - timedelta(seconds=1), before, before + timedelta(minutes=5)):
        lagged_sim.refund_in_seller_central("113-0000004-0000004", {"10000000000041": 1}, posted=moment)

    parsed = make_client(lagged_sim).refunds(iso(after), iso(before))

    # PostedAfter is "after (or on)", PostedBefore "before (but not on)".
    assert [r.posted for r in parsed.records] == [iso(after), iso(before - timedelta(seconds=1))]


def test_the_stand_in_refuses_a_posted_before_within_two_minutes_and_the_client_names_it(sim, client):
    now = utc_now()
    headers = {"x-amz-access-token": access_token(sim)}
    day_ago = iso(now - timedelta(days=1))

    def ask(**params):
        return httpx.get(sim.base_url + FINANCES, params=params, headers=headers)

    too_late = ask(PostedAfter=day_ago, PostedBefore=iso(now - timedelta(seconds=60)))
    assert too_late.status_code == 400
    (error,) = too_late.json()["errors"]
    assert error["code"] == "InvalidInput" and "PostedBefore" in error["details"] and "two minutes" in error["details"]
    assert ask(PostedAfter=day_ago, PostedBefore=iso(now - timedelta(minutes=3))).status_code == 200
    reversed_window = ask(PostedAfter=iso(now - timedelta(minutes=5)), PostedBefore=iso(now - timedelta(minutes=10)))
    assert reversed_window.status_code == 400 and "PostedAfter" in reversed_window.json()["errors"][0]["details"]
    alone = ask(PostedBefore=iso(now - timedelta(minutes=10)))
    assert alone.status_code == 400 and "PostedAfter is required" in alone.json()["errors"][0]["details"]
    assert ask(PostedAfter=day_ago, MaxResultsPerPage=101).status_code == 400

    with pytest.raises(InvalidInput, match=r"listFinancialEvents.*PostedBefore .* must be more than two minutes before"):
        client.refunds(day_ago, iso(now - timedelta(seconds=30)))


# -- answers with bad events, from a server that says what we tell it --------------------------------------
def money(amount, code="USD"):
    return {"CurrencyCode": code, "CurrencyAmount": amount}


def event(order_id, posted="2026-03-02T10:00:00.123Z", **item_changes):
    item = {"SellerSKU": "MUG-RED", "OrderItemId": "10000000000011", "OrderAdjustmentItemId": f"adj-{order_id}",
            "QuantityShipped": 1,
            "ItemChargeAdjustmentList": [{"ChargeType": "Principal", "ChargeAmount": money(-20)},
                                         {"ChargeType": "Tax", "ChargeAmount": money(-1.6)}],
            "PromotionAdjustmentList": [{"PromotionType": "PromotionMetaDataDefinitionValue", "PromotionAmount": money(5)}],
            "ItemFeeAdjustmentList": [{"FeeType": "Commission", "FeeAmount": money(3)}]}
    item.update(item_changes)
    return {"AmazonOrderId": order_id, "MarketplaceName": "Amazon.com", "PostedDate": posted, "ShipmentItemAdjustmentList": [item]}


def fake_amazon(pages, path=FINANCES):
    """A server whose listFinancialEvents (or the operation at `path`) answers the pages in turn: pages[0]
    first, then pages[n] for NextToken 'n'. `seen` gets each request's query, and its orderId if any."""
    server = SimServer()
    seen = []

    def answer(request):
        seen.append({**request.params, **{k: v[0] for k, v in request.query.items()}})
        return Response(200, pages[int(request.arg("NextToken") or 0)])

    server.add_route("POST", "/auth/o2/token", lambda r: Response(200, {"access_token": "Atza|x", "expires_in": 3600}))
    server.add_route("GET", path, answer)
    return server, seen


def test_a_malformed_event_is_a_record_error_naming_the_field_and_the_good_ones_are_kept(make_client):
    good = event("111-0000001-0000001", posted="2026-03-02T10:00:00.999+01:00")
    earlier_id = event("110-0000001-0000001", posted="2026-03-02T09:00:00Z")
    text_amount = event("222-0000002-0000002", ItemChargeAdjustmentList=[{"ChargeType": "Principal", "ChargeAmount": money("-20.00")}])
    no_order = {k: v for k, v in event("x").items() if k != "AmazonOrderId"}
    bad_time = event("333-0000003-0000003", posted="yesterday")
    no_item_id = event("444-0000004-0000004", OrderItemId=None)
    two_currencies = event("555-0000005-0000005", PromotionAdjustmentList=[{"PromotionAmount": money(5, "EUR")}])
    blank_order = {**event("x"), "AmazonOrderId": "  "}
    pages = [
        {"payload": {"FinancialEvents": {}, "NextToken": "1"}},  # Amazon's pages may be empty
        {"payload": {"FinancialEvents": {
            "RefundEventList": [good, text_amount, no_order, "junk", bad_time, no_item_id, two_currencies, earlier_id,
                                blank_order],
            "ShipmentEventList": ["not read: only refunds are"]}}},
    ]
    server, seen = fake_amazon(pages)
    with server:
        parsed = make_client(server).refunds("2026-03-01T00:00:00Z", "2026-03-03T00:00:00Z")

    assert [(r.amazon_order_id, r.posted) for r in parsed.records] == [
        ("110-0000001-0000001", "2026-03-02T09:00:00Z"), ("111-0000001-0000001", "2026-03-02T09:00:00Z")]
    refund: AmazonRefund = parsed.records[1]
    assert refund.amount == Decimal("16.6") and refund.currency == "USD"  # 20 + 1.60 less the 5 promotion; not the fee
    assert refund.items[0].adjustment_id == "adj-111-0000001-0000001"
    errors = {e.where: e.message for e in parsed.errors}
    assert errors == {
        "refund event #2 on page 2 (order 222-0000002-0000002)":
            "field ShipmentItemAdjustmentList[0].ItemChargeAdjustmentList[0].ChargeAmount.CurrencyAmount: '-20.00' is not a number",
        "refund event #3 on page 2": "field AmazonOrderId: missing",
        "refund event #4 on page 2": "is a str, not an object",
        "refund event #5 on page 2 (order 333-0000003-0000003)": "field PostedDate: 'yesterday' is not an ISO 8601 time",
        "refund event #6 on page 2 (order 444-0000004-0000004)": "field ShipmentItemAdjustmentList[0].OrderItemId: missing",
        "refund event #7 on page 2 (order 555-0000005-0000005)":
            "field ShipmentItemAdjustmentList[0].PromotionAdjustmentList[0].PromotionAmount.CurrencyCode: 'EUR' differs from 'USD' "
            "elsewhere in the event",
        "refund event #9 on page 2": "field AmazonOrderId: '  ' is not an identifier",
    }
    # The order each bad event is about, for a caller that must look at that order; none when it names none usable.
    assert {e.where.split(" on ")[0]: e.order_id for e in parsed.errors} == {
        "refund event #2": "222-0000002-0000002", "refund event #3": None, "refund event #4": None,
        "refund event #5": "333-0000003-0000003", "refund event #6": "444-0000004-0000004",
        "refund event #7": "555-0000005-0000005", "refund event #9": None}
    assert str(parsed.errors[1]) == "refund event #3 on page 2: field AmazonOrderId: missing"
    assert refund.marketplace == "Amazon.com"
    assert seen[1] == {**seen[0], "NextToken": "1"}


@pytest.mark.parametrize(("body", "field"), [
    ({"payload": {"FinancialEvents": {"RefundEventList": {"AmazonOrderId": "1"}}}}, "payload.FinancialEvents.RefundEventList"),
    ({"payload": {"FinancialEvents": {"GuaranteeClaimEventList": "none"}}}, "payload.FinancialEvents.GuaranteeClaimEventList"),
    ({"payload": {"FinancialEvents": {"RefundEventList": [], "ChargebackEventList": {"AmazonOrderId": "1"}}}},
     "payload.FinancialEvents.ChargebackEventList"),
    ({"payload": {"FinancialEvents": []}}, "payload.FinancialEvents"),
    ({"payload": {"NextToken": 7}}, "payload.NextToken"),
    ({"errors": []}, "payload"),
])
def test_an_answer_not_in_the_documented_shape_raises_naming_the_field(make_client, body, field):
    server, _ = fake_amazon([body])
    with server, pytest.raises(InvalidInput, match=rf"listFinancialEvents page 1 of refunds .*{re.escape(field)}"):
        make_client(server).refunds("2026-03-01T00:00:00Z", "2026-03-03T00:00:00Z")


# -- refunds made in Seller Central ---------------------------------------------------------------------
def test_refund_in_seller_central_refuses_more_than_is_refundable_and_feeds_count_it(sim, client, xsd_dir):
    order_id, item = "113-0000004-0000004", "10000000000041"  # 2 × 12.50 paid
    sim.refund_in_seller_central(order_id, {item: 20})
    with pytest.raises(ValueError, match=r"item 10000000000041: a refund of 5.01 exceeds the 5.00 still refundable"):
        sim.refund_in_seller_central(order_id, {item: "5.01"})
    with pytest.raises(ValueError, match="has no such item"):
        sim.refund_in_seller_central(order_id, {"999": 1})
    assert len(sim.refund_events) == 1 and len(sim.orders[order_id]["refunds"]) == 1  # a refused refund leaves nothing

    over = httpx.post(sim.base_url + "/_sim/refunds", json={"order_id": order_id, "amounts": {item: 6}})
    assert over.status_code == 400 and "exceeds the 5.00 still refundable" in over.json()["error"]
    assert httpx.post(sim.base_url + "/_sim/refunds", json={"order_id": order_id, "posted": "soon"}).status_code == 400

    # A feed adjustment is checked against what Seller Central already gave back.
    feed = client.build_adjustment_feed([AdjustmentRequest(order_id, (AdjustedItem(item, "CustomerReturn", (("Principal", Decimal("6")),)),))])
    outcome = client.feed_outcome(client.submit_feed(feed), feed)
    assert not outcome.results[1].success and "exceeds" in outcome.results[1].description
    assert len(sim.refund_events) == 1  # a refused adjustment posts no refund

    rest = httpx.post(sim.base_url + "/_sim/refunds", json={"order_id": order_id, "posted": "2026-03-02T10:00:00Z"})
    assert rest.status_code == 200
    assert rest.json()["refund"]["posted"] == "2026-03-02T10:00:00.000Z" and rest.json()["refund"]["items"][0]["principal"] == "5.00"
    with pytest.raises(ValueError, match="nothing is left to refund"):
        sim.refund_in_seller_central(order_id)


# -- one order's refunds: listFinancialEventsByOrderId ------------------------------------------------------
def test_refunds_of_order_reads_every_refund_of_the_order_over_pages_however_old_and_no_other_orders(make_sim, make_client, scenario):
    scenario["max_page_size"] = 2  # the client asks for 100; the stand-in gives fewer, as Amazon may
    sim = make_sim(scenario)
    order_id, item = "113-0000004-0000004", "10000000000041"
    long_ago = utc_now() - timedelta(days=40)
    sim.refund_in_seller_central("113-0000005-0000005", {"10000000000051": "3.00"}, posted=utc_now() - timedelta(minutes=30))
    for minutes in (10, 20, 5):
        sim.refund_in_seller_central(order_id, {item: "2.00"}, posted=utc_now() - timedelta(minutes=minutes))
    sim.refund_in_seller_central(order_id, {item: "1.00"}, posted=long_ago)  # told last, posted first
    client = make_client(sim)

    parsed = client.refunds_of_order(order_id)

    assert parsed.errors == []
    assert [(r.amazon_order_id, r.amount) for r in parsed.records] == [
        (order_id, Decimal("1.00")), (order_id, Decimal("2.00")), (order_id, Decimal("2.00")), (order_id, Decimal("2.00"))]
    assert parsed.records[0].posted == iso(long_ago)  # far outside any recent window, still there
    assert [r.posted for r in parsed.records] == sorted(r.posted for r in parsed.records)
    assert all(r.marketplace == "Amazon.com" and r.currency == "USD" for r in parsed.records)
    assert len({r.key for r in parsed.records}) == 4
    calls = finance_calls(sim, "listFinancialEventsByOrderId")
    assert len(calls) == 2 and all(c["status"] == 200 for c in calls)
    assert all(c["path"] == f"/finances/v0/orders/{order_id}/financialEvents" for c in calls)
    assert calls[0]["query"] == {"MaxResultsPerPage": ["100"]}
    assert calls[1]["query"]["MaxResultsPerPage"] == ["100"] and calls[1]["query"]["NextToken"]
    # The stand-in answers oldest first, as the listing does.
    first_page = httpx.get(sim.base_url + BY_ORDER.format(orderId=order_id), headers={"x-amz-access-token": access_token(sim)})
    assert [e["PostedDate"][:19] for e in first_page.json()["payload"]["FinancialEvents"]["RefundEventList"]] == \
        [r.posted[:19] for r in parsed.records[:2]]
    # The window listing does not reach 40 days back; the by-order one is how an old refund is found.
    assert [r.posted for r in client.refunds(*recent_window()).records if r.amazon_order_id == order_id] == \
        [r.posted for r in parsed.records[1:]]


def test_refunds_of_an_unknown_order_are_none_and_a_malformed_id_is_invalid_input(sim, client):
    sim.refund_in_seller_central("113-0000004-0000004", {"10000000000041": 1}, posted=utc_now() - timedelta(minutes=10))

    nothing = client.refunds_of_order("113-9999999-9999999")

    assert (nothing.records, nothing.errors) == ([], [])
    with pytest.raises(InvalidInput, match=r"listFinancialEventsByOrderId.*refunds of order BAD-ORDER.*Bad order ID provided"):
        client.refunds_of_order("BAD-ORDER")
    with pytest.raises(InvalidInput, match="is not an order id"):
        client.refunds_of_order(" ")
    assert [c["status"] for c in finance_calls(sim, "listFinancialEventsByOrderId")] == [200, 400]  # the blank id sent nothing


def test_refunds_of_order_reads_pages_and_bad_events_as_refunds_does(make_client):
    order_id = "111-0000001-0000001"
    later = event(order_id, posted="2026-03-03T10:00:00Z")
    earlier = {**event(order_id, posted="2026-03-01T10:00:00Z"), "MarketplaceName": "Amazon.co.uk"}
    bad = event(order_id, posted="soon")
    pages = [{"payload": {"FinancialEvents": {"RefundEventList": [later]}, "NextToken": "1"}},
             {"payload": {"FinancialEvents": {"RefundEventList": [bad, earlier]}}}]
    server, seen = fake_amazon(pages, BY_ORDER)
    with server:
        parsed = make_client(server).refunds_of_order(order_id)

    assert [(r.posted, r.marketplace) for r in parsed.records] == [
        ("2026-03-01T10:00:00Z", "Amazon.co.uk"), ("2026-03-03T10:00:00Z", "Amazon.com")]
    (error,) = parsed.errors
    assert (error.where, error.message, error.order_id) == (
        f"refund event #1 on page 2 (order {order_id})", "field PostedDate: 'soon' is not an ISO 8601 time", order_id)
    assert seen == [{"orderId": order_id, "MaxResultsPerPage": "100"},
                    {"orderId": order_id, "MaxResultsPerPage": "100", "NextToken": "1"}]

    server, _ = fake_amazon([{"payload": {"FinancialEvents": []}}], BY_ORDER)
    with server, pytest.raises(InvalidInput, match=rf"listFinancialEventsByOrderId page 1 of refunds of order {order_id}: "
                                                   r"field payload.FinancialEvents is a list"):
        make_client(server).refunds_of_order(order_id)


# -- marketplaces -----------------------------------------------------------------------------------------
def test_marketplace_name_is_read_as_amazon_wrote_it_and_absent_or_empty_is_none():
    assert parse_refund_event(event("1")).marketplace == "Amazon.com"
    assert parse_refund_event({**event("1"), "MarketplaceName": "amazon.DE"}).marketplace == "amazon.DE"
    assert parse_refund_event({k: v for k, v in event("1").items() if k != "MarketplaceName"}).marketplace is None
    assert parse_refund_event({**event("1"), "MarketplaceName": ""}).marketplace is None
    assert parse_refund_event({**event("1"), "MarketplaceName": "  "}).marketplace is None
    assert parse_refund_event({**event("1"), "MarketplaceName": 5}).marketplace is None  # not text: no name, not an error


def test_of_marketplaces_drops_only_a_known_other_marketplace():
    refund = parse_refund_event(event("1"))  # Amazon.com
    us, uk, de = "ATVPDKIKX0DER", "A1F83G8C2ARO7P", "A1PA6795UKMFR9"

    assert of_marketplaces(refund, [us])
    assert of_marketplaces(refund, (uk, us))
    assert of_marketplaces(replace(refund, marketplace="AMAZON.COM"), [us])  # names compared without case
    assert of_marketplaces(replace(refund, marketplace="Amazon.co.uk"), iter([de, uk]))  # any iterable
    assert not of_marketplaces(refund, [uk])
    assert not of_marketplaces(replace(refund, marketplace="Amazon.de"), [us, uk])
    assert not of_marketplaces(refund, [])
    # Whose it is cannot be told: kept, so no refund that was made is lost.
    assert of_marketplaces(replace(refund, marketplace="Non-Amazon US"), [uk])
    assert of_marketplaces(replace(refund, marketplace=None), [uk])
    assert len(MARKETPLACE_NAMES) == 23 and len(set(MARKETPLACE_NAMES.values())) == 23
    assert (MARKETPLACE_NAMES[us], MARKETPLACE_NAMES[uk], MARKETPLACE_NAMES[de]) == ("Amazon.com", "Amazon.co.uk", "Amazon.de")


def test_a_refund_of_an_order_in_another_marketplace_carries_that_marketplaces_name(make_sim, make_client, scenario):
    scenario["refund_posting_lag_seconds"] = LAG
    line = {"item_id": "20000000000011", "sku": "MUG-UK", "quantity": 1, "shipped": 1, "unit_price": "9.00"}
    scenario["orders"] += [
        {"id": "202-0000001-0000001", "status": "Shipped", "marketplace_id": "A1F83G8C2ARO7P", "currency": "GBP", "lines": [line]},
        {"id": "302-0000001-0000001", "status": "Shipped", "marketplace": "A1PA6795UKMFR9", "currency": "EUR",
         "lines": [{**line, "item_id": "30000000000011"}]},
    ]
    sim = make_sim(scenario)
    for order_id, minutes in (("202-0000001-0000001", 30), ("302-0000001-0000001", 20), ("113-0000004-0000004", 10)):
        sim.refund_in_seller_central(order_id, posted=utc_now() - timedelta(minutes=minutes))
    client = make_client(sim)

    parsed = client.refunds(*recent_window())

    assert [(r.amazon_order_id, r.marketplace, r.currency) for r in parsed.records] == [
        ("202-0000001-0000001", "Amazon.co.uk", "GBP"), ("302-0000001-0000001", "Amazon.de", "EUR"),
        ("113-0000004-0000004", "Amazon.com", "USD")]
    ours = client.account.marketplace_ids
    assert [r.amazon_order_id for r in parsed.records if of_marketplaces(r, ours)] == ["113-0000004-0000004"]
    (uk,) = client.refunds_of_order("202-0000001-0000001").records
    assert uk.marketplace == "Amazon.co.uk"
    assert sim.snapshot_refund_events()[0]["marketplace"] == "A1F83G8C2ARO7P"


# -- A-to-z guarantee claims and chargebacks: GuaranteeClaimEventList and ChargebackEventList ------------------
def reversal(order_id, posted="2026-03-02T10:00:00Z", **item_changes):
    """A chargeback reversal: the money comes back to the seller, so the charge adjustments are positive."""
    raw = event(order_id, posted=posted, **item_changes)
    item = raw["ShipmentItemAdjustmentList"][0]
    item["ItemChargeAdjustmentList"] = [{"ChargeType": "Principal", "ChargeAmount": money(20)}]
    item["PromotionAdjustmentList"] = []
    item["ItemFeeAdjustmentList"] = [{"FeeType": "Commission", "FeeAmount": money(-3)}]
    return raw


def test_refund_guarantee_claim_and_chargeback_lists_are_all_read_with_their_kinds_and_sorted(make_client):
    order_id = "111-0000001-0000001"
    at_ten = "2026-03-02T10:00:00Z"
    # Without adjustment ids, a refund, a claim and a chargeback of one item in one second differ only by kind.
    refund, claim, chargeback = (event(order_id, posted=at_ten, OrderAdjustmentItemId=None) for _ in range(3))
    earlier_claim = event("222-0000002-0000002", posted="2026-03-02T09:00:00Z")
    reversed_later = reversal(order_id, posted="2026-03-02T11:00:00Z", OrderAdjustmentItemId="adj-back")
    pages = [  # the chargeback comes a page before the refund it ties with, yet sorts after it
        {"payload": {"FinancialEvents": {"ChargebackEventList": [reversed_later, chargeback]}, "NextToken": "1"}},
        {"payload": {"FinancialEvents": {"RefundEventList": [refund], "GuaranteeClaimEventList": [claim, earlier_claim],
                                         "ChargebackEventList": None}}},
    ]
    server, _ = fake_amazon(pages)
    with server:
        parsed = make_client(server).refunds("2026-03-01T00:00:00Z", "2026-03-03T00:00:00Z")

    assert parsed.errors == []
    assert [(r.amazon_order_id, r.posted, r.kind, r.amount) for r in parsed.records] == [
        ("222-0000002-0000002", "2026-03-02T09:00:00Z", "guarantee_claim", Decimal("16.6")),
        (order_id, at_ten, "refund", Decimal("16.6")),
        (order_id, at_ten, "guarantee_claim", Decimal("16.6")),
        (order_id, at_ten, "chargeback", Decimal("16.6")),
        (order_id, "2026-03-02T11:00:00Z", "chargeback", Decimal("-20")),  # back to the seller: not given back
    ]
    assert [r.key for r in parsed.records[1:]] == [
        f"{at_ten}|10000000000011", f"guarantee_claim|{at_ten}|10000000000011", f"chargeback|{at_ten}|10000000000011",
        "chargeback|2026-03-02T11:00:00Z|adj-back"]


def test_a_bad_guarantee_claim_or_chargeback_event_is_a_record_error_naming_its_list(make_client):
    order_id = "111-0000001-0000001"
    pages = [{"payload": {"FinancialEvents": {
        "RefundEventList": [event(order_id, posted="soon")],
        "GuaranteeClaimEventList": [event(order_id), event(order_id, OrderItemId=None)],
        "ChargebackEventList": [{k: v for k, v in event(order_id).items() if k != "AmazonOrderId"}, reversal(order_id)],
    }}}]
    server, _ = fake_amazon(pages, BY_ORDER)
    with server:
        parsed = make_client(server).refunds_of_order(order_id)

    assert [(r.kind, r.amount) for r in parsed.records] == [("guarantee_claim", Decimal("16.6")), ("chargeback", Decimal("-20"))]
    assert [(e.where, e.message, e.order_id) for e in parsed.errors] == [
        (f"refund event #1 on page 1 (order {order_id})", "field PostedDate: 'soon' is not an ISO 8601 time", order_id),
        (f"guarantee claim event #2 on page 1 (order {order_id})", "field ShipmentItemAdjustmentList[0].OrderItemId: missing",
         order_id),
        ("chargeback event #1 on page 1", "field AmazonOrderId: missing", None),
    ]


def test_a_refunds_key_is_unchanged_and_a_claims_or_chargebacks_has_its_kind_in_front():
    raw = event("111-0000001-0000001", posted="2026-03-02T10:00:00.123Z")
    # Natural keys already stored name refunds by this exact text: it must never change.
    assert parse_refund_event(raw).key == "2026-03-02T10:00:00Z|adj-111-0000001-0000001"
    assert parse_refund_event(raw).kind == "refund"
    assert parse_refund_event(raw, kind="guarantee_claim").key == "guarantee_claim|2026-03-02T10:00:00Z|adj-111-0000001-0000001"
    assert parse_refund_event(raw, kind="chargeback").key == "chargeback|2026-03-02T10:00:00Z|adj-111-0000001-0000001"
    assert REFUND_KINDS == ("refund", "guarantee_claim", "chargeback")
    item = AmazonRefundItem("10000000000011", None, None, 1, Decimal("-2"))
    # Built as before kinds existed, positionally, it is a refund; a negative amount is allowed (a reversal).
    built = AmazonRefund("111-0000001-0000001", "2026-03-02T10:00:00Z", "USD", (item,), "Amazon.com")
    assert (built.kind, built.amount, built.key) == ("refund", Decimal("-2"), "2026-03-02T10:00:00Z|10000000000011")
    with pytest.raises(ValueError, match="'claim' is not one of refund, guarantee_claim, chargeback"):
        replace(built, kind="claim")
    with pytest.raises(ValueError, match="'claim' is not one of"):
        parse_refund_event(raw, kind="claim")


def test_a_guarantee_claim_and_a_chargeback_are_read_from_both_listings_with_their_kinds(lagged_sim, make_client):
    lagged_sim.refund_in_seller_central("113-0000004-0000004", {"10000000000041": "3.00"}, posted=utc_now() - timedelta(minutes=30))
    claim = lagged_sim.guarantee_claim("113-0000004-0000004", {"10000000000041": "7.50"}, posted=utc_now() - timedelta(minutes=20))
    lagged_sim.chargeback("113-0000005-0000005", posted=utc_now() - timedelta(minutes=10))  # all of it: 2 × 20.00
    client = make_client(lagged_sim)

    parsed = client.refunds(*recent_window())

    assert parsed.errors == []
    assert [(r.amazon_order_id, r.kind, r.amount) for r in parsed.records] == [
        ("113-0000004-0000004", "refund", Decimal("3.00")),
        ("113-0000004-0000004", "guarantee_claim", Decimal("7.50")),
        ("113-0000005-0000005", "chargeback", Decimal("40.00")),
    ]
    assert parsed.records[1].items[0].adjustment_id == claim["items"][0]["adjustment_id"] and claim["kind"] == "guarantee_claim"
    assert parsed.records[1].key.startswith("guarantee_claim|") and parsed.records[2].key.startswith("chargeback|")
    assert [(r.kind, r.amount) for r in client.refunds_of_order("113-0000004-0000004").records] == [
        ("refund", Decimal("3.00")), ("guarantee_claim", Decimal("7.50"))]
    assert [(r.kind, r.amount) for r in client.refunds_of_order("113-0000005-0000005").records] == [("chargeback", Decimal("40.00"))]
    # Each in its own list, as Amazon answers; a refund is stored as it always was, with no kind.
    events = httpx.get(lagged_sim.base_url + FINANCES, params=dict(zip(("PostedAfter", "PostedBefore"), recent_window())),
                       headers={"x-amz-access-token": access_token(lagged_sim)}).json()["payload"]["FinancialEvents"]
    assert {name: [e["AmazonOrderId"] for e in found] for name, found in events.items()} == {
        "RefundEventList": ["113-0000004-0000004"], "GuaranteeClaimEventList": ["113-0000004-0000004"],
        "ChargebackEventList": ["113-0000005-0000005"]}
    assert [e.get("kind") for e in lagged_sim.snapshot_refund_events()] == [None, "guarantee_claim", "chargeback"]


def test_a_guarantee_claim_and_a_chargeback_count_against_later_refunds_and_feeds(sim, client, xsd_dir):
    order_id, item = "113-0000004-0000004", "10000000000041"  # 2 × 12.50 paid
    sim.guarantee_claim(order_id, {item: 15})
    with pytest.raises(ValueError, match=r"item 10000000000041: a refund of 10.01 exceeds the 10.00 still refundable "
                                         r"\(paid 25.00, refunded 15.00\)"):
        sim.refund_in_seller_central(order_id, {item: "10.01"})
    with pytest.raises(ValueError, match=r"a guarantee claim of 10.01 exceeds the 10.00 still refundable"):
        sim.guarantee_claim(order_id, {item: "10.01"})
    sim.chargeback(order_id, {item: 4})
    with pytest.raises(ValueError, match=r"a chargeback of 6.01 exceeds the 6.00 still refundable"):
        sim.chargeback(order_id, {item: "6.01"})
    assert [r["reason"] for r in sim.orders[order_id]["refunds"]] == ["GuaranteeClaim", "Chargeback"]

    # A feed adjustment is checked against what the claim and the chargeback already gave back.
    feed = client.build_adjustment_feed([AdjustmentRequest(order_id, (AdjustedItem(item, "CustomerReturn", (("Principal", Decimal("7")),)),))])
    outcome = client.feed_outcome(client.submit_feed(feed), feed)
    assert not outcome.results[1].success and "exceeds the 6.00 still refundable" in outcome.results[1].description
    assert len(sim.refund_events) == 2  # the refused adjustment and refunds posted nothing

    assert sim.chargeback(order_id)["items"][0]["principal"] == "6.00"  # by default, all that is left
    with pytest.raises(ValueError, match="nothing is left to refund"):
        sim.guarantee_claim(order_id)


def test_a_chargeback_reversal_makes_the_money_refundable_again_and_reads_back_negative(lagged_sim, make_client):
    order_id, item = "113-0000004-0000004", "10000000000041"  # 2 × 12.50 paid
    lagged_sim.chargeback(order_id, {item: 10}, posted=utc_now() - timedelta(minutes=40))
    with pytest.raises(ValueError, match=r"item 10000000000041: a chargeback reversal of 10.01 exceeds the 10.00 charged back"):
        lagged_sim.chargeback_reversal(order_id, {item: "10.01"})
    with pytest.raises(ValueError, match=r"a chargeback reversal of 1.00 exceeds the 0.00 charged back"):
        lagged_sim.chargeback_reversal("113-0000005-0000005", {"10000000000051": 1})  # nothing charged back there
    with pytest.raises(ValueError, match="amounts must map order item ids to amounts"):
        lagged_sim.chargeback_reversal(order_id, None)
    with pytest.raises(ValueError, match=r"a refund of 15.01 exceeds the 15.00 still refundable"):
        lagged_sim.refund_in_seller_central(order_id, {item: "15.01"})

    back = lagged_sim.chargeback_reversal(order_id, {item: 4}, posted=utc_now() - timedelta(minutes=30))
    assert back["kind"] == "chargeback" and back["items"][0]["reversal"] is True and back["items"][0]["principal"] == "4.00"
    with pytest.raises(ValueError, match=r"a chargeback reversal of 6.01 exceeds the 6.00 charged back"):
        lagged_sim.chargeback_reversal(order_id, {item: "6.01"})
    lagged_sim.refund_in_seller_central(order_id, posted=utc_now() - timedelta(minutes=20))  # the 15 left and the 4 back
    client = make_client(lagged_sim)

    parsed = client.refunds_of_order(order_id)

    assert [(r.kind, r.amount) for r in parsed.records] == [
        ("chargeback", Decimal("10.00")), ("chargeback", Decimal("-4.00")), ("refund", Decimal("19.00"))]
    assert sum(r.amount for r in parsed.records) == Decimal("25.00")  # what the buyer got back, all told: what was paid
    assert [(r.kind, r.amount) for r in client.refunds(*recent_window()).records] == [(r.kind, r.amount) for r in parsed.records]
    (rendered,) = httpx.get(lagged_sim.base_url + BY_ORDER.format(orderId=order_id), headers={"x-amz-access-token": access_token(lagged_sim)}
                            ).json()["payload"]["FinancialEvents"]["ChargebackEventList"][1]["ShipmentItemAdjustmentList"]
    # Money back to the seller: the charge positive, and the commission Amazon had returned taken again.
    assert rendered["ItemChargeAdjustmentList"][0]["ChargeAmount"]["CurrencyAmount"] == 4.0
    assert rendered["ItemFeeAdjustmentList"][0]["FeeAmount"]["CurrencyAmount"] == -0.6
