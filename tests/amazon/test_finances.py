"""Refunds Amazon made, read from Finances v0 listFinancialEvents: through the stand-in (refunds by feed and
in Seller Central, paging, the posted window, the two-minute rule) and from answers with bad events."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest

from adapters.amazon import AdjustedItem, AdjustmentRequest, AmazonRefund
from adapters.errors import InvalidInput
from adapters.sim.server import Response, SimServer

from .conftest import access_token

LAG = 600  # refund_posting_lag_seconds: events are posted ten minutes back, so they can be read at once
FINANCES = "/finances/v0/financialEvents"


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


def finance_calls(sim):
    return [e for e in sim.journal.entries() if e["operation"] == "listFinancialEvents"]


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


def fake_amazon(pages):
    """A server whose listFinancialEvents answers the pages in turn: pages[0] first, then pages[n] for NextToken 'n'."""
    server = SimServer()
    seen = []

    def answer(request):
        seen.append({k: v[0] for k, v in request.query.items()})
        return Response(200, pages[int(request.arg("NextToken") or 0)])

    server.add_route("POST", "/auth/o2/token", lambda r: Response(200, {"access_token": "Atza|x", "expires_in": 3600}))
    server.add_route("GET", FINANCES, answer)
    return server, seen


def test_a_malformed_event_is_a_record_error_naming_the_field_and_the_good_ones_are_kept(make_client):
    good = event("111-0000001-0000001", posted="2026-03-02T10:00:00.999+01:00")
    earlier_id = event("110-0000001-0000001", posted="2026-03-02T09:00:00Z")
    text_amount = event("222-0000002-0000002", ItemChargeAdjustmentList=[{"ChargeType": "Principal", "ChargeAmount": money("-20.00")}])
    no_order = {k: v for k, v in event("x").items() if k != "AmazonOrderId"}
    bad_time = event("333-0000003-0000003", posted="yesterday")
    no_item_id = event("444-0000004-0000004", OrderItemId=None)
    two_currencies = event("555-0000005-0000005", PromotionAdjustmentList=[{"PromotionAmount": money(5, "EUR")}])
    pages = [
        {"payload": {"FinancialEvents": {}, "NextToken": "1"}},  # Amazon's pages may be empty
        {"payload": {"FinancialEvents": {
            "RefundEventList": [good, text_amount, no_order, "junk", bad_time, no_item_id, two_currencies, earlier_id],
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
    }
    assert seen[1] == {**seen[0], "NextToken": "1"}


@pytest.mark.parametrize(("body", "field"), [
    ({"payload": {"FinancialEvents": {"RefundEventList": {"AmazonOrderId": "1"}}}}, "payload.FinancialEvents.RefundEventList"),
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
