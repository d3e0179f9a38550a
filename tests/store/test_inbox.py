"""The inbox: each change stored once, with its cursor advance; undecided events; failures kept."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from daemon.pipeline.events import NewEvent
from daemon.store import NotFound, Store, StoreError


def test_same_natural_key_is_stored_once_but_cursor_still_advances(store: Store) -> None:
    assert store.ingest("acme", "order:111:Canceled", "order_cancelled", {"v": 1}, cursor=("orders", "T1"))
    assert not store.ingest("acme", "order:111:Canceled", "order_cancelled", {"v": 2}, cursor=("orders", "T2"))
    events = store.undecided_events()
    assert len(events) == 1 and events[0].payload == {"v": 1}
    assert store.cursor("acme", "orders") == "T2"


def test_natural_keys_are_per_account(store: Store) -> None:
    assert store.ingest("acme", "k", "order_cancelled", {})
    assert store.ingest("globex", "k", "order_cancelled", {})
    assert len(store.undecided_events()) == 2


def test_cursor_does_not_advance_when_the_event_cannot_be_stored(store: Store) -> None:
    store.set_cursor("acme", "orders", "T1")
    with pytest.raises(Exception):
        store.ingest("acme", "k", "order_cancelled", {"bad": object()}, cursor=("orders", "T2"))
    assert store.cursor("acme", "orders") == "T1"
    assert store.undecided_events() == []


def test_unknown_cursor_kind_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown cursor kind 'order'.*orders, order_report, returns"):
        store.ingest("acme", "k", "order_cancelled", {}, cursor=("order", "T1"))


def test_cursors_are_per_account_and_kind(store: Store) -> None:
    store.set_cursor("acme", "orders", "A")
    store.set_cursor("acme", "returns", '{"report_id": "9"}')
    store.set_cursor("globex", "orders", "G")
    assert (store.cursor("acme", "orders"), store.cursor("acme", "returns"), store.cursor("globex", "orders"),
            store.cursor("globex", "returns")) == ("A", '{"report_id": "9"}', "G", None)


def test_undecided_events_oldest_first_by_account_with_limit(store: Store, decided) -> None:
    for n in range(5):
        store.ingest("acme" if n % 2 == 0 else "globex", f"k{n}", "order_cancelled", {"n": n})
    assert [e.payload["n"] for e in store.undecided_events()] == [0, 1, 2, 3, 4]
    assert [e.payload["n"] for e in store.undecided_events("acme", limit=2)] == [0, 2]
    first = store.undecided_events(limit=1)[0]
    store.record_decision(first.id, {"decision_id": "d-first"}, [])
    assert [e.payload["n"] for e in store.undecided_events()] == [1, 2, 3, 4]


def test_a_failed_event_is_kept_visible_and_retried(store: Store) -> None:
    store.ingest("acme", "k1", "order_cancelled", {})
    store.ingest("acme", "k2", "order_cancelled", {})
    bad = store.undecided_events()[0]
    store.record_failure(bad.id, "fact refused: order_total 'abc' is not a decimal")
    store.record_failure(bad.id, "fact refused again")
    failed = store.failed_events()
    assert [(e.id, e.error, e.failures) for e in failed] == [(bad.id, "fact refused again", 2)]
    assert [e.natural_key for e in store.undecided_events()] == ["k1", "k2"]
    assert [e.natural_key for e in store.undecided_events(include_failed=False)] == ["k2"]
    assert store.counts().failed_events == 1
    # Decided on a later pass: the error goes, the event leaves both lists.
    store.record_decision(bad.id, {"decision_id": "d1"}, [])
    assert store.failed_events() == [] and store.get_event(bad.id).error is None


def test_failure_of_an_unknown_event(store: Store) -> None:
    with pytest.raises(NotFound):
        store.record_failure(999, "x")


# -- ingest_many: a page of events with its cursor, one transaction --------------------------------
def _ev(key: str, n: int, order: str | None = "111-0000001-0000001"):
    from daemon.pipeline.events import NewEvent
    return NewEvent("order_cancelled", key, order, {"n": n})


def test_ingest_many_stores_a_page_once_in_order_with_its_cursor(store: Store) -> None:
    page = [_ev(f"k{n}", n, order=f"111-000000{n % 3}-0000001") for n in range(7)]
    assert store.ingest_many("acme", page, ("orders", "T1")) == [True] * 7
    events = store.undecided_events("acme")
    # Ids follow the page's order: events of one order are decided in the order they were seen.
    assert [e.payload["n"] for e in events] == list(range(7))
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert events[0].amazon_order_id == "111-0000000-0000001" and events[0].kind == "order_cancelled"
    assert store.cursor("acme", "orders") == "T1"


def test_ingest_many_skips_what_is_stored_and_repeats_in_the_page(store: Store) -> None:
    assert store.ingest("acme", "k1", "order_cancelled", {"n": 1})
    page = [_ev("k0", 0), _ev("k1", 99), _ev("k2", 2), _ev("k0", 98)]
    assert store.ingest_many("acme", page, ("orders", "T2")) == [True, False, True, False]
    assert [e.payload["n"] for e in store.undecided_events("acme")] == [1, 0, 2]
    # A replayed page stores nothing and still moves the cursor.
    assert store.ingest_many("acme", page, ("orders", "T3")) == [False] * 4
    assert store.cursor("acme", "orders") == "T3"
    assert len(store.undecided_events()) == 3


def test_ingest_many_of_an_empty_page_moves_the_cursor(store: Store) -> None:
    assert store.ingest_many("acme", [], ("returns", "R1")) == []
    assert store.cursor("acme", "returns") == "R1"


def test_ingest_many_is_all_or_nothing(store: Store) -> None:
    store.set_cursor("acme", "orders", "T1")
    from daemon.pipeline.events import NewEvent
    page = [_ev("k0", 0), NewEvent("order_cancelled", "k1", None, {"bad": object()})]
    with pytest.raises(Exception):
        store.ingest_many("acme", page, ("orders", "T2"))
    assert store.cursor("acme", "orders") == "T1"
    assert store.undecided_events() == []
    with pytest.raises(StoreError, match="unknown cursor kind"):
        store.ingest_many("acme", [_ev("k0", 0)], ("order", "T2"))
    assert store.undecided_events() == []


def test_a_payload_with_a_lone_surrogate_is_stored_and_reads_back_the_same(store: Store) -> None:
    """Amazon's JSON may carry a \\ud800 escape (half an emoji cut off); the string it decodes to has no
    UTF-8, and the database would refuse the whole page on every poll unless it is stored escaped."""
    reason = "Changed my mind \ud83d"
    store.ingest_many("acme", [NewEvent(kind="buyer_cancel_requested", natural_key="k1", amazon_order_id="111-1", payload={"reason": reason})], ("orders", "c1"))
    [event] = store.undecided_events("acme")
    assert event.payload == {"reason": reason} and store.cursor("acme", "orders") == "c1"


def test_ingest_many_brings_the_pages_orders_up_to_date_in_the_grid_and_keeps_ordersyncs_own_columns(store: Store) -> None:
    t0 = datetime(2025, 6, 1, 9, 30, tzinfo=timezone.utc)
    unshipped = {"status": "Unshipped", "fulfillment": "FBM", "order_total": Decimal("19.90"), "currency": "USD",
                 "item_count": 2, "created_on_amazon": t0}
    store.ingest_many("acme", [_ev("k0", 0, "111-1")], ("orders", "T1"), orders={"111-1": unshipped, "111-2": unshipped})
    store.link_storefront_orders("acme", {"111-1": "gid://shopify/Order/1001"})
    store.mark_failed("acme", "111-2", "Failed Cancellation", "order #1002 is already fulfilled")

    cancelled = {**unshipped, "status": "Canceled", "order_total": Decimal("0.00")}
    store.ingest_many("acme", [_ev("k1", 1, "111-1")], ("orders", "T2"), orders={"111-1": cancelled, "111-2": cancelled})
    first, second = store.get_order("acme", "111-1"), store.get_order("acme", "111-2")
    assert (first.status, first.order_total, first.item_count, first.created_on_amazon) == ("Canceled", Decimal("0.00"), 2, t0)
    assert (first.storefront_order_id, first.sync_status) == ("gid://shopify/Order/1001", "Order Created")
    assert (second.status, second.sync_status, second.last_error) == ("Canceled", "Failed Cancellation",
                                                                      "order #1002 is already fulfilled")


def test_orders_read_apart_from_the_order_poll_fill_the_grid_only_where_it_has_no_amazon_side(store: Store) -> None:
    """A person's request or a storefront poll reads the order on its own, maybe before the order poll read a newer
    version: its row fills the grid where Amazon's side is missing (no row, or a row with no creation day), and never
    puts an older status back."""
    t0 = datetime(2025, 6, 1, 9, 30, tzinfo=timezone.utc)
    unshipped = {"status": "Unshipped", "fulfillment": "FBM", "order_total": Decimal("19.90"), "currency": "USD",
                 "item_count": 2, "created_on_amazon": t0, "cancelled_by_seller": False}
    cancelled = {**unshipped, "status": "Canceled", "cancelled_by_seller": True}
    store.ingest_many("acme", [], ("orders", "T1"), orders={"111-1": cancelled})  # the order poll, newer
    store.upsert_order("acme", "111-3", storefront_order_id="gid://shopify/Order/3")  # no Amazon side yet
    store.ingest_many("acme", [_ev("k0", 0, "111-1")], orders={"111-1": unshipped, "111-2": unshipped, "111-3": unshipped},
                      orders_unread_only=True)
    rows = {order_id: store.get_order("acme", order_id) for order_id in ("111-1", "111-2", "111-3")}
    assert {order_id: (row.status, row.cancelled_by_seller, row.created_on_amazon) for order_id, row in rows.items()} == {
        "111-1": ("Canceled", True, t0), "111-2": ("Unshipped", False, t0), "111-3": ("Unshipped", False, t0)}
    assert rows["111-3"].storefront_order_id == "gid://shopify/Order/3"


def test_a_page_whose_grid_row_is_refused_stores_nothing_and_names_the_order(store: Store) -> None:
    with pytest.raises(StoreError, match="111-2.*order_total"):
        store.ingest_many("acme", [_ev("k0", 0, "111-1")], ("orders", "T1"),
                          orders={"111-1": {"status": "Unshipped"}, "111-2": {"status": "Unshipped", "order_total": 19.9}})
    assert store.undecided_events("acme") == [] and store.cursor("acme", "orders") is None
    assert store.get_order("acme", "111-1") is None
