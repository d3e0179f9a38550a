"""The inbox: each change stored once, with its cursor advance; undecided events; failures kept."""
from __future__ import annotations

import pytest

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
