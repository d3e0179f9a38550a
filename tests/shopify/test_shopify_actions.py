"""Actions against the stand-in: each does what a seller would see in Shopify, does nothing the
second time with the same key, and refuses bad input with an error the dispatcher can sort."""
from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import pytest

from adapters.errors import InvalidInput, PermanentError, TransientError
from adapters.shopify import LineSelection, ShopifyRejected
from adapters.shopify.operations import OPERATIONS

from .conftest import HandClock, journal, level, order_state, post

ORDER_1001 = "gid://shopify/Order/1001"


def mutations(sim: Any, field: str) -> list[dict[str, Any]]:
    return journal(sim, kind="mutation", field=field)


# -- hold / release ---------------------------------------------------------------------------------
def test_hold_puts_every_open_fulfilment_order_on_hold_once(client: Any, sim: Any) -> None:
    order = client.find_order("111-0000001-0000001")
    first = client.hold_order(order, idempotency_key="decision-1/hold", notes="Buyer asked to cancel")
    again = client.hold_order(order, idempotency_key="decision-1/hold", notes="Buyer asked to cancel")
    assert first.changed and not again.changed
    fos = order_state(sim, 1001)["fulfillmentOrders"]
    assert [fo["status"] for fo in fos] == ["ON_HOLD"]
    assert [(h["reason"], h["notes"]) for h in fos[0]["holds"]] == [("OTHER", "Buyer asked to cancel")]
    assert len(mutations(sim, "fulfillmentOrderHold")) == 1
    assert client.get_order(order).order_status == "On Hold"


def test_release_removes_only_ordersyncs_holds(client: Any, sim: Any) -> None:
    order = client.find_order("111-0000007-0000007")  # carries a merchant's hold already
    client.hold_order(order, idempotency_key="k-hold")
    released = client.release_hold(order, idempotency_key="k-release")
    again = client.release_hold(order, idempotency_key="k-release")
    assert released.changed and not again.changed
    holds = order_state(sim, 1007)["fulfillmentOrders"][0]["holds"]
    assert [h["notes"] for h in holds] == ["address check"]  # the person's hold stays


def test_release_of_the_holds_placed_by_given_keys_leaves_ordersyncs_other_holds(client: Any, sim: Any) -> None:
    # A rejected cancellation lifts its own decision's hold, not a buyer-request hold on the same order.
    client.hold_order(ORDER_1001, idempotency_key="cancellation/hold", notes="awaiting approval")
    client.hold_order(ORDER_1001, idempotency_key="buyer-request/hold", notes="buyer asked to cancel")
    released = client.release_hold(ORDER_1001, idempotency_key="k-release", placed_by=["cancellation/hold"])
    assert released.changed and len(released.detail["released"]) == 1
    holds = order_state(sim, 1001)["fulfillmentOrders"][0]["holds"]
    assert [h["notes"] for h in holds] == ["buyer asked to cancel"]
    assert client.get_order(ORDER_1001).order_status == "On Hold"
    assert not client.release_hold(ORDER_1001, idempotency_key="k-release", placed_by=["cancellation/hold"]).changed


def test_release_sets_the_order_back_in_process(client: Any, sim: Any) -> None:
    client.hold_order(ORDER_1001, idempotency_key="k-hold")
    client.release_hold(ORDER_1001, idempotency_key="k-release")
    assert client.get_order(ORDER_1001).order_status == "In Process"


def test_a_hold_on_an_order_given_by_its_shopify_id_still_carries_the_amazon_order_id(client: Any, sim: Any) -> None:
    client.hold_order(ORDER_1001, idempotency_key="k-hold")
    [hold] = order_state(sim, 1001)["fulfillmentOrders"][0]["holds"]
    assert hold["externalId"] == "111-0000001-0000001"
    with pytest.raises(ShopifyRejected) as caught:
        client.hold_order("gid://shopify/Order/1004", idempotency_key="k")
    assert "Amazon 111-0000004-0000004" in str(caught.value)


def test_shopifys_typed_refusal_names_the_order_the_fulfilment_order_and_the_field(client: Any, sim: Any) -> None:
    # ten holds by others: Shopify's per-app limit; the client cannot know, Shopify refuses
    fo = order_state(sim, 1001)["fulfillmentOrders"][0]["id"]
    for index in range(10):
        post(sim, OPERATIONS["2025-01"].hold_fulfillment_order, {"id": fo, "fulfillmentHold": {"reason": "OTHER", "handle": f"h{index}"}})
    with pytest.raises(ShopifyRejected) as caught:
        client.hold_order(ORDER_1001, idempotency_key="k-hold")
    assert caught.value.code == "FULFILLMENT_ORDER_HOLD_LIMIT_REACHED" and caught.value.permanent
    assert caught.value.order_id == ORDER_1001 and caught.value.field == "id"
    assert "#1001" in str(caught.value) and fo in str(caught.value)


def test_holding_a_fulfilled_or_cancelled_order_is_refused(client: Any) -> None:
    with pytest.raises(ShopifyRejected) as fulfilled:
        client.hold_order("gid://shopify/Order/1003", idempotency_key="k")
    with pytest.raises(ShopifyRejected) as cancelled:
        client.hold_order("gid://shopify/Order/1004", idempotency_key="k")
    assert (fulfilled.value.code, cancelled.value.code) == ("ALREADY_FULFILLED", "ALREADY_CANCELLED")
    assert "#1003" in str(fulfilled.value) and fulfilled.value.permanent


# -- note / tags --------------------------------------------------------------------------------------
def test_note_is_appended_not_overwritten_and_only_once(start_sim: Any, make_client: Any, shop: dict) -> None:
    shop["orders"][0]["note"] = "Gift wrap please"
    sim = start_sim(shop)
    client = make_client(sim)
    assert client.add_note(ORDER_1001, "Buyer asked to cancel: ordered by mistake", idempotency_key="d7").changed
    assert not client.add_note(ORDER_1001, "Buyer asked to cancel: ordered by mistake", idempotency_key="d7").changed
    note = order_state(sim, 1001)["note"]
    assert note.startswith("Gift wrap please\nBuyer asked to cancel: ordered by mistake [ordersync:")
    assert note.count("Buyer asked") == 1


def test_tags_are_added_once(client: Any, sim: Any) -> None:
    assert client.add_tags(ORDER_1001, ["cancel-requested", "amazon"], idempotency_key="t1").changed
    assert not client.add_tags(ORDER_1001, ["cancel-requested"], idempotency_key="t1").changed
    assert order_state(sim, 1001)["tags"] == ["amazon-111-0000001-0000001", "cancel-requested", "amazon"]
    assert len(mutations(sim, "tagsAdd")) == 1


# -- cancel ---------------------------------------------------------------------------------------------
def test_cancel_waits_for_the_job_and_confirms_cancelled_at(client: Any, sim: Any) -> None:
    result = client.cancel_order(ORDER_1001, idempotency_key="cancel-1", reason="CUSTOMER", restock=True,
                                 staff_note="Amazon: BuyerCanceled")
    assert result.changed and result.detail["cancelledAt"]
    state = order_state(sim, 1001)
    assert state["cancelledAt"] and state["cancelReason"] == "CUSTOMER"
    assert "Amazon: BuyerCanceled" in state["staffNote"]
    assert level(sim, "MUG-RED", 1) == 13 and level(sim, "MUG-BLUE", 1) == 4  # restocked
    # the client polled the job rather than trusting the accepted mutation
    assert journal(sim, kind="request", operation="JobStatus")
    assert journal(sim, kind="job", field="orderCancel")


def test_cancel_twice_with_the_same_key_changes_nothing(client: Any, sim: Any) -> None:
    client.cancel_order(ORDER_1001, idempotency_key="cancel-1")
    again = client.cancel_order(ORDER_1001, idempotency_key="cancel-1")
    assert not again.changed
    assert len(mutations(sim, "orderCancel")) == 1


def test_cancel_without_restock_or_refund_leaves_stock_and_money(client: Any, sim: Any) -> None:
    client.cancel_order(ORDER_1001, idempotency_key="c", restock=False, refund=False)
    assert level(sim, "MUG-RED", 1) == 10
    assert order_state(sim, 1001)["refunded"] == "0"


def test_cancel_with_refund_gives_the_money_back(client: Any, sim: Any) -> None:
    client.cancel_order(ORDER_1001, idempotency_key="c", refund=True)
    assert client.get_order(ORDER_1001).refunded_total == Decimal("51.50")


def test_cancel_in_2026_01_mode_uses_refund_method(sim: Any, make_client: Any) -> None:
    client = make_client(sim, api_version="2026-01")
    assert client.cancel_order(ORDER_1001, idempotency_key="c", refund=True).changed
    assert client.get_order(ORDER_1001).financial_status == "REFUNDED"


def test_cancelling_an_order_someone_else_cancelled_is_refused(client: Any, sim: Any) -> None:
    with pytest.raises(ShopifyRejected) as caught:
        client.cancel_order("gid://shopify/Order/1004", idempotency_key="c")
    assert caught.value.code == "ALREADY_CANCELLED" and caught.value.permanent
    assert "#1004" in str(caught.value)
    assert not mutations(sim, "orderCancel")


@pytest.mark.parametrize("number", [1002, 1003])
def test_cancelling_a_shipped_or_partly_shipped_order_is_refused(client: Any, sim: Any, number: int) -> None:
    with pytest.raises(ShopifyRejected) as caught:
        client.cancel_order(f"gid://shopify/Order/{number}", idempotency_key="c")
    assert caught.value.code == "ALREADY_FULFILLED"
    assert order_state(sim, number)["cancelledAt"] is None


def test_a_cancel_job_that_outlives_the_wait_is_transient_and_the_retry_confirms_it(start_sim: Any, make_client: Any, shop: dict) -> None:
    clock = HandClock()  # the job finishes only when this test moves the stand-in's clock
    sim = start_sim(shop, clock=clock)
    impatient = make_client(sim, cancel_timeout=0.1)
    with pytest.raises(TransientError) as caught:
        impatient.cancel_order(ORDER_1001, idempotency_key="slow")
    assert caught.value.code == "CANCEL_PENDING" and "#1001" in str(caught.value)
    # The dispatcher retries later with the same key while the job still runs: Shopify refuses a
    # second cancel, and the client waits for the first job and recognises its own cancellation.
    def finish_the_job_once_the_second_cancel_was_refused() -> None:
        deadline = time.monotonic() + 10
        while len(journal(sim, kind="request", operation="CancelOrder")) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        clock.advance(60)

    mover = threading.Thread(target=finish_the_job_once_the_second_cancel_was_refused, daemon=True)
    mover.start()
    patient = make_client(sim, cancel_timeout=10)
    assert patient.cancel_order(ORDER_1001, idempotency_key="slow").changed is False
    mover.join(timeout=10)
    assert len(journal(sim, kind="request", operation="CancelOrder")) == 2
    assert len(mutations(sim, "orderCancel")) == 1 and order_state(sim, 1001)["cancelledAt"]


def test_a_staff_note_too_long_for_shopify_is_cut_and_keeps_the_marker(client: Any, sim: Any) -> None:
    long_note = "Amazon cancellation: " + "x" * 400
    assert client.cancel_order(ORDER_1001, idempotency_key="long", staff_note=long_note).changed
    staff_note = order_state(sim, 1001)["staffNote"]
    assert len(staff_note) <= 255 and staff_note.startswith("Amazon cancellation: xxx") and "[ordersync:" in staff_note
    assert not client.cancel_order(ORDER_1001, idempotency_key="long", staff_note=long_note).changed


# -- partial cancel ------------------------------------------------------------------------------------
def test_partial_cancel_removes_units_restocks_and_moves_no_money(client: Any, sim: Any) -> None:
    result = client.cancel_lines(ORDER_1001, [LineSelection(quantity=1, sku="MUG-RED")], idempotency_key="p1")
    again = client.cancel_lines(ORDER_1001, [LineSelection(quantity=1, sku="MUG-RED")], idempotency_key="p1")
    assert result.changed and not again.changed
    state = order_state(sim, 1001)
    assert [(l["sku"], l["current"], l["unfulfilled"]) for l in state["lines"]] == [("MUG-RED", 2, 2), ("MUG-BLUE", 1, 1)]
    assert state["refunded"] == "0" and state["refunds"][0]["lines"][0]["restockType"] == "CANCEL"
    assert level(sim, "MUG-RED", 1) == 11
    assert state["cancelledAt"] is None


def test_partial_cancel_of_shipped_units_is_refused(client: Any, sim: Any) -> None:
    with pytest.raises(ShopifyRejected) as caught:
        client.cancel_lines("gid://shopify/Order/1002", [LineSelection(quantity=3, sku="MUG-RED")], idempotency_key="p")
    assert caught.value.code == "ALREADY_FULFILLED" and caught.value.field == "lines[0].quantity"
    assert not mutations(sim, "refundCreate")


def test_partial_cancel_of_an_unknown_sku_names_the_line(client: Any) -> None:
    with pytest.raises(ShopifyRejected) as caught:
        client.cancel_lines(ORDER_1001, [LineSelection(quantity=1, sku="NOPE")], idempotency_key="p")
    assert caught.value.code == "LINE_NOT_FOUND" and "NOPE" in str(caught.value)


@pytest.mark.parametrize("quantity", [0, -1, 1.5])
def test_partial_cancel_with_a_bad_quantity_is_invalid_input(client: Any, quantity: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        client.cancel_lines(ORDER_1001, [LineSelection(quantity=quantity, sku="MUG-RED")], idempotency_key="p")
    assert caught.value.code == "QUANTITY_INVALID"


# -- refund -----------------------------------------------------------------------------------------------
def test_refund_a_returned_line_uses_shopifys_suggested_amount(client: Any, sim: Any) -> None:
    result = client.refund("gid://shopify/Order/1003", lines=[LineSelection(1, sku="MUG-BLUE")], restock_type="RETURN",
                           idempotency_key="r1", note="Amazon return 1")
    assert result.changed and result.detail["amount"] == "14.00"
    order = client.get_order("gid://shopify/Order/1003")
    assert order.refunded_total == Decimal("14.00") and order.financial_status == "PARTIALLY_REFUNDED"
    assert level(sim, "MUG-BLUE", 1) == 4  # returned unit restocked
    assert not client.refund("gid://shopify/Order/1003", lines=[LineSelection(1, sku="MUG-BLUE")], restock_type="RETURN",
                             idempotency_key="r1").changed
    assert len(mutations(sim, "refundCreate")) == 1


def test_refund_an_amount(client: Any) -> None:
    client.refund(ORDER_1001, amount="5.25", idempotency_key="r2")
    order = client.get_order(ORDER_1001)
    assert order.refunded_total == Decimal("5.25") and order.refundable_amount == Decimal("46.25")


def test_refund_over_what_is_refundable_is_refused_before_asking_shopify(client: Any, sim: Any) -> None:
    client.refund(ORDER_1001, amount="50.00", idempotency_key="r1")
    with pytest.raises(ShopifyRejected) as caught:
        client.refund(ORDER_1001, amount="2.00", idempotency_key="r2")
    assert caught.value.code == "REFUND_EXCEEDS_REFUNDABLE" and caught.value.field == "amount"
    assert "1.50" in str(caught.value) and "#1001" in str(caught.value)
    assert len(mutations(sim, "refundCreate")) == 1


def test_shopify_itself_refuses_an_over_refund(sim: Any) -> None:
    # the stand-in enforces the rule too, so a client that skipped its check would still be stopped
    body = post(sim, OPERATIONS["2025-01"].create_refund, {"input": {"orderId": ORDER_1001, "transactions": [
        {"orderId": ORDER_1001, "kind": "REFUND", "gateway": "manual", "amount": "60.00"}]}})
    errors = body["data"]["refundCreate"]["userErrors"]
    assert errors and errors[0]["field"] == ["transactions", "0", "amount"]


def test_refunding_more_units_than_bought_is_refused(client: Any) -> None:
    with pytest.raises(ShopifyRejected) as caught:
        client.refund(ORDER_1001, lines=[LineSelection(4, sku="MUG-RED")], idempotency_key="r")
    assert caught.value.code == "REFUND_EXCEEDS_REFUNDABLE"


def test_refunding_money_on_an_unpaid_order_is_refused(client: Any) -> None:
    with pytest.raises(ShopifyRejected) as caught:
        client.refund("gid://shopify/Order/1008", amount="1.00", idempotency_key="r")
    assert caught.value.code == "REFUND_EXCEEDS_REFUNDABLE"


def test_refund_in_2026_01_mode_sends_the_key_and_shopify_replays_it(sim: Any, make_client: Any) -> None:
    client = make_client(sim, api_version="2026-01")
    assert client.refund(ORDER_1001, amount="3.00", idempotency_key="key-26").changed
    # the same mutation sent again with the same key (as after a crash between send and answer):
    # Shopify answers with the original result and moves no more money
    variables = {"input": {"orderId": ORDER_1001, "note": "x", "transactions": [
        {"orderId": ORDER_1001, "kind": "REFUND", "gateway": "manual", "amount": "3.00"}]}, "idempotencyKey": "key-replay"}
    first = client.transport.execute(OPERATIONS["2026-01"].create_refund, variables, operation_name="CreateRefund")
    second = client.transport.execute(OPERATIONS["2026-01"].create_refund, variables, operation_name="CreateRefund")
    assert first["refundCreate"]["refund"]["id"] == second["refundCreate"]["refund"]["id"]
    assert client.get_order(ORDER_1001).refunded_total == Decimal("6.00")
    variables["input"]["transactions"][0]["amount"] = "4.00"
    with pytest.raises(PermanentError) as caught:
        client.transport.execute(OPERATIONS["2026-01"].create_refund, variables, operation_name="CreateRefund")
    assert caught.value.code == "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"


# -- inventory ------------------------------------------------------------------------------------------
def test_adjust_inventory_references_the_decision(client: Any, sim: Any) -> None:
    result = client.adjust_inventory("MUG-RED", "gid://shopify/Location/1", -2, reason="correction",
                                     decision_id="dec-42", idempotency_key="a1", expected_available=10)
    assert result.changed and level(sim, "MUG-RED", 1) == 8
    assert mutations(sim, "inventoryAdjustQuantities")[0]["reference"] == "ordersync://decision/dec-42"
    again = client.adjust_inventory("MUG-RED", "gid://shopify/Location/1", -2, reason="correction",
                                    decision_id="dec-42", idempotency_key="a1", expected_available=10)
    assert not again.changed and level(sim, "MUG-RED", 1) == 8


def test_adjust_when_the_level_moved_underneath_is_refused(client: Any, sim: Any) -> None:
    with pytest.raises(ShopifyRejected) as caught:
        client.adjust_inventory("MUG-RED", "gid://shopify/Location/1", -2, reason="correction",
                                decision_id="d", idempotency_key="a", expected_available=7)
    assert caught.value.code == "INVENTORY_CHANGED" and level(sim, "MUG-RED", 1) == 10


def test_adjust_at_a_location_that_does_not_exist_is_permanent(client: Any) -> None:
    with pytest.raises(ShopifyRejected) as caught:
        client.adjust_inventory("MUG-RED", "gid://shopify/Location/99", 1, reason="correction", decision_id="d", idempotency_key="a")
    assert caught.value.code == "INVALID_LOCATION" and caught.value.permanent
    assert "changes.0.locationId" in caught.value.field


def test_adjust_with_a_reason_shopify_does_not_know_is_refused(client: Any) -> None:
    with pytest.raises(ShopifyRejected) as caught:
        client.adjust_inventory("MUG-RED", "gid://shopify/Location/1", 1, reason="oops", decision_id="d", idempotency_key="a")
    assert caught.value.code == "INVALID_REASON"


def test_zero_out_at_one_location(client: Any, sim: Any) -> None:
    assert client.zero_out_inventory("MUG-RED", location_id="gid://shopify/Location/3", decision_id="d", idempotency_key="z").changed
    assert (level(sim, "MUG-RED", 1), level(sim, "MUG-RED", 3)) == (10, 0)
    assert not client.zero_out_inventory("MUG-RED", location_id="gid://shopify/Location/3", decision_id="d", idempotency_key="z").changed


def test_zero_out_all_locations(client: Any, sim: Any) -> None:
    assert client.zero_out_inventory("MUG-RED", decision_id="d", idempotency_key="z").changed
    assert (level(sim, "MUG-RED", 1), level(sim, "MUG-RED", 3)) == (0, 0)
    assert len(mutations(sim, "inventoryAdjustQuantities")) == 1


def test_zero_out_where_the_sku_is_not_stocked_or_unknown(client: Any) -> None:
    with pytest.raises(ShopifyRejected) as not_stocked:
        client.zero_out_inventory("MUG-BLUE", location_id="gid://shopify/Location/3", decision_id="d", idempotency_key="z")
    with pytest.raises(ShopifyRejected) as unknown:
        client.zero_out_inventory("NO-SUCH-SKU", decision_id="d", idempotency_key="z")
    assert (not_stocked.value.code, unknown.value.code) == ("ITEM_NOT_STOCKED_AT_LOCATION", "SKU_NOT_FOUND")


ACTIONS_WITHOUT_A_KEY = {
    "hold_order": lambda c, key: c.hold_order(ORDER_1001, idempotency_key=key),
    "release_hold": lambda c, key: c.release_hold(ORDER_1001, idempotency_key=key),
    "add_note": lambda c, key: c.add_note(ORDER_1001, "n", idempotency_key=key),
    "add_tags": lambda c, key: c.add_tags(ORDER_1001, ["x"], idempotency_key=key),
    "cancel_order": lambda c, key: c.cancel_order(ORDER_1001, idempotency_key=key),
    "cancel_lines": lambda c, key: c.cancel_lines(ORDER_1001, [LineSelection(1, sku="MUG-RED")], idempotency_key=key),
    "refund": lambda c, key: c.refund(ORDER_1001, amount="1.00", idempotency_key=key),
    "adjust_inventory": lambda c, key: c.adjust_inventory("MUG-RED", "gid://shopify/Location/1", 1, reason="correction",
                                                          decision_id="d", idempotency_key=key),
    "zero_out_inventory": lambda c, key: c.zero_out_inventory("MUG-RED", decision_id="d", idempotency_key=key),
}


@pytest.mark.parametrize("action", sorted(ACTIONS_WITHOUT_A_KEY))
def test_every_action_needs_an_idempotency_key_before_it_sends_anything(client: Any, sim: Any, action: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ACTIONS_WITHOUT_A_KEY[action](client, "  ")
    assert caught.value.code == "IDEMPOTENCY_KEY_MISSING"
    assert journal(sim, kind="request") == []


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-1", "twelve"])
def test_a_refund_amount_that_is_not_a_sensible_number_is_invalid_input(client: Any, sim: Any, amount: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        client.refund(ORDER_1001, amount=amount, idempotency_key="r")
    assert caught.value.code == "AMOUNT_INVALID" and "#1001" in str(caught.value)
    assert not mutations(sim, "refundCreate")


def test_refunding_unshipped_units_without_restock_takes_them_out_of_fulfilment(client: Any, sim: Any) -> None:
    client.refund(ORDER_1001, lines=[LineSelection(2, sku="MUG-RED")], restock_type="NO_RESTOCK", idempotency_key="r")
    line = client.get_order(ORDER_1001).line(sku="MUG-RED")
    assert (line.current_quantity, line.unfulfilled_quantity) == (1, 1)
    assert level(sim, "MUG-RED", 1) == 10
