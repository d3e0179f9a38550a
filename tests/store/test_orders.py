"""The orders grid's store side: upsert, error view, resolve, archive; RMAs and the refunds ledger; counts."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from daemon.store import NotFound, RefundLineIn, RmaLineIn, Store, StoreError
from tests.store.conftest import T0


def test_upsert_changes_only_the_fields_given(store: Store) -> None:
    store.upsert_order("acme", "111-1", storefront_order_id="gid://shopify/Order/1", status="Unshipped",
                       fulfillment="FBM", order_total=Decimal("42.50"), item_count=2, created_on_amazon=T0,
                       lines=[{"amazon_order_item_id": "i1", "sku": "MUG", "quantity_ordered": 2}])
    store.upsert_order("acme", "111-1", status="Canceled",
                       lines=[{"amazon_order_item_id": "i1", "quantity_cancelled": 2}])
    order = store.get_order("acme", "111-1")
    assert order is not None
    assert (order.status, order.storefront_order_id, order.order_total, order.fulfillment) == (
        "Canceled", "gid://shopify/Order/1", Decimal("42.50"), "FBM")
    [line] = store.order_lines("acme", "111-1")
    assert (line.sku, line.quantity_ordered, line.quantity_cancelled) == ("MUG", 2, 2)
    with pytest.raises(StoreError, match="unknown order field.*totl"):
        store.upsert_order("acme", "111-1", totl=1)


def test_resolve_requeues_failed_actions_and_clears_the_error(store: Store, decided) -> None:
    store.upsert_order("acme", "111-2", storefront_order_id="gid://shopify/Order/2")
    decided([{"type": "refund", "reason_code": "CustomerReturn"}], order="111-2")
    [action] = store.claim_actions("w", now=T0)
    store.claim_actions("w", now=T0)
    store.fail_action(action.id, "refund exceeds what was paid")
    assert [o.sync_status for o in store.failed_orders()] == ["Failed Refund"]
    assert store.resolve("acme", "111-2") == 1
    assert store.failed_orders() == []
    order = store.get_order("acme", "111-2")
    assert order is not None and (order.sync_status, order.last_error) == ("Order Created", None)
    [again] = store.claim_actions("w", now=T0 + timedelta(seconds=1))
    assert again.id == action.id and again.attempts == 1
    with pytest.raises(NotFound):
        store.resolve("acme", "no-such-order")


def test_archive_hides_an_order_from_the_error_view(store: Store, decided) -> None:
    decided([{"type": "add_note", "text": "x"}], order="111-3")
    [action] = store.claim_actions("w", now=T0)
    store.fail_action(action.id, "storefront order deleted", "Failed Order")
    store.archive("acme", "111-3")
    assert store.failed_orders() == [] and [o.amazon_order_id for o in store.orders(archived=True)] == ["111-3"]
    store.archive("acme", "111-3", archived=False)
    assert [o.amazon_order_id for o in store.failed_orders()] == ["111-3"]


def grid(store: Store, **filters) -> list[str]:
    return [o.amazon_order_id for o in store.orders(**filters)]


def test_the_grid_lists_every_order_newest_created_first_and_filters_by_each_column(store: Store) -> None:
    rows = [  # id, account, status, sync status, fulfillment, created (hours after T0)
        ("111-a", "acme", "Unshipped", None, "FBM", 1), ("111-b", "acme", "Shipped", "Shipped", "FBA", 3),
        ("111-c", "acme", "Canceled", "Failed Cancellation", "FBM", 2), ("111-d", "other", "Unshipped", None, "FBM", 4)]
    for order_id, account, status, sync_status, fulfillment, hours in rows:
        store.upsert_order(account, order_id, status=status, fulfillment=fulfillment, order_total=Decimal("10.00"),
                           created_on_amazon=T0 + timedelta(hours=hours),
                           **({"sync_status": sync_status} if sync_status else {}))
    store.upsert_order("acme", "111-e", status="Pending")  # no created date yet: last
    assert grid(store) == ["111-d", "111-b", "111-c", "111-a", "111-e"]
    assert grid(store, account="acme") == ["111-b", "111-c", "111-a", "111-e"]
    assert grid(store, amazon_order_id="111-c") == ["111-c"]
    assert grid(store, status="Unshipped") == ["111-d", "111-a"]
    assert grid(store, sync_status="Failed Cancellation") == ["111-c"]  # failed orders are in the grid too
    assert grid(store, fulfillment="FBA") == ["111-b"]
    assert grid(store, created_from=T0 + timedelta(hours=2)) == ["111-d", "111-b", "111-c"]
    assert grid(store, created_to=T0 + timedelta(hours=2)) == ["111-a"]  # the upper bound is exclusive
    assert grid(store, account="acme", status="Unshipped", fulfillment="FBM") == ["111-a"]
    assert grid(store, limit=2) == ["111-d", "111-b"]
    with pytest.raises(StoreError, match="limit"):
        store.orders(limit=0)


def test_the_archive_view_holds_the_archived_orders_and_the_grid_does_not(store: Store) -> None:
    for n in (1, 2, 3):
        store.upsert_order("acme", f"111-{n}", created_on_amazon=T0 + timedelta(hours=n))
    store.archive("acme", "111-2")
    assert grid(store) == ["111-3", "111-1"]
    assert grid(store, archived=True) == ["111-2"]
    assert grid(store, archived=True, account="other") == []


def amounts(*texts: str) -> list[Decimal]:
    return [Decimal(t) for t in texts]


def test_totals_are_compared_as_amounts_not_as_text(store: Store) -> None:
    # As text "9.50" > "10.00" and "100.00" < "9.99"; SQLite keeps money as text.
    totals = ["9.50", "9.99", "10.00", "10.01", "100.00", "1000"]
    for n, total in enumerate(totals):
        store.upsert_order("acme", f"111-{total}", order_total=Decimal(total), created_on_amazon=T0 + timedelta(hours=n))
    store.upsert_order("acme", "111-no-total", created_on_amazon=T0 + timedelta(days=1))

    def totals_within(**bounds) -> list[Decimal]:
        return sorted(o.order_total for o in store.orders(**bounds))

    assert totals_within(min_total=Decimal("10")) == amounts("10.00", "10.01", "100.00", "1000")
    assert totals_within(max_total=Decimal("10.00")) == amounts("9.50", "9.99", "10.00")
    assert totals_within(min_total="9.99", max_total=100) == amounts("9.99", "10.00", "10.01", "100.00")
    assert totals_within(min_total=Decimal("10.005"), max_total=Decimal("10.01")) == amounts("10.01")
    # the limit counts orders in range, newest first, however many out of range are newer
    assert grid(store, max_total=Decimal("9.99"), limit=1) == ["111-9.99"]
    assert grid(store, min_total=0, limit=2) == ["111-1000", "111-100.00"]
    with pytest.raises(StoreError, match="float"):
        store.orders(min_total=9.5)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="max_total must be an amount"):
        store.orders(max_total="ten")


def test_rma_is_created_once_with_kit_components_and_tracking_note(store: Store) -> None:
    lines = [RmaLineIn("CUP", 2, "Defective", kit_parent_sku="TEA-SET"), RmaLineIn("POT", 1, "Defective", "TEA-SET")]
    rma, created = store.create_rma("acme", "RMA-9", "111-4", lines, tracking_number="1Z999")
    assert created and (rma.status, rma.resolution, rma.note) == ("Open", "Refund", "Return label tracking number: 1Z999")
    again, created_again = store.create_rma("acme", "RMA-9", "111-4", lines, tracking_number="1Z999")
    assert not created_again and again.id == rma.id
    assert [(l.sku, l.quantity, l.kit_parent_sku) for l in store.rma_lines(rma.id)] == [
        ("CUP", 2, "TEA-SET"), ("POT", 1, "TEA-SET")]
    assert [r.amazon_rma_id for r in store.rmas_of("acme", "111-4")] == ["RMA-9"]


def test_refund_ledger_is_exact_and_idempotent_per_decision(store: Store) -> None:
    lines = [RefundLineIn("i1", Decimal("19.99"), Decimal("1.60"), Decimal("4.99")),
             RefundLineIn("i2", Decimal("0.10"), Decimal("0.10"), Decimal("0.10"))]
    assert store.record_refund("acme", "111-5", "dec-1", lines) == 2
    assert store.record_refund("acme", "111-5", "dec-1", lines) == 0
    assert store.record_refund("acme", "111-5", "dec-2", [RefundLineIn("i1", Decimal("0.01"))]) == 1
    assert store.refunded_total("acme", "111-5") == Decimal("26.89")  # 26.58 + 0.30 + 0.01
    assert [r.principal for r in store.refunds_of("acme", "111-5")] == [Decimal("19.99"), Decimal("0.10"), Decimal("0.01")]


def test_counts_for_metrics(store: Store, decided) -> None:
    decided([{"type": "hold_order"}, {"type": "cancel_on_amazon", "reason_code": "NoInventory"}], rule="hold")
    decided([], rule="hold")
    store.ingest("acme", "k-x", "return_reported", {})
    [action] = store.claim_actions("w", now=T0)
    store.complete_action(action.id, {})
    counts = store.counts()
    assert counts.events_by_kind == {"order_cancelled": 2, "return_reported": 1}
    assert counts.undecided_events == 1
    assert counts.decisions_by_rule == {"hold": 2}
    assert counts.actions_by_status["done"] == 1 and counts.actions_by_status["queued_for_batch"] == 1
    assert counts.queue_depth == 1


def test_linking_the_storefront_order_shows_it_in_the_grid_and_keeps_a_failed_status(store: Store) -> None:
    store.upsert_order("acme", "111-1")
    store.upsert_order("acme", "111-2")
    store.mark_failed("acme", "111-2", "Failed Cancellation", "order #1002 is already fulfilled")
    links = {"111-1": "gid://shopify/Order/1001", "111-2": "gid://shopify/Order/1002", "111-unknown": "gid://shopify/Order/9"}
    assert store.link_storefront_orders("acme", links) == 2
    first, second = store.get_order("acme", "111-1"), store.get_order("acme", "111-2")
    assert (first.storefront_order_id, first.sync_status) == ("gid://shopify/Order/1001", "Order Created")
    assert (second.storefront_order_id, second.sync_status) == ("gid://shopify/Order/1002", "Failed Cancellation")
    assert store.get_order("acme", "111-unknown") is None  # not in the grid: not created by linking
    assert store.link_storefront_orders("acme", links) == 0  # nothing changes the second time
    assert store.link_storefront_orders("other", links) == 0  # another account's orders are not these
