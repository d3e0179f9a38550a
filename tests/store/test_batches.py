"""Amazon-bound actions go out one feed per batch and are reconciled message by message."""
from __future__ import annotations

import pytest

from daemon.store import Store, StoreError
from daemon.store.models import ADJUSTMENT_FEED, CANCEL_FEED
from tests.store.conftest import T0

CANCEL = {"type": "cancel_on_amazon", "reason_code": "NoInventory"}


def test_batch_lifecycle(store: Store, decided) -> None:
    for order in ("A", "B", "C"):
        decided([CANCEL], order=order)
    decided([{"type": "refund_on_amazon", "reason_code": "CustomerReturn"}], order="D")
    queued = store.queued_amazon_actions("acme", CANCEL_FEED, limit=15)
    assert [a.amazon_order_id for a in queued] == ["A", "B", "C"]
    assert [a.amazon_order_id for a in store.queued_amazon_actions("acme", ADJUSTMENT_FEED)] == ["D"]
    assert store.queued_amazon_actions("globex", CANCEL_FEED) == []

    batch = store.create_batch("acme", CANCEL_FEED, [a.id for a in queued])
    assert {n: a.amazon_order_id for n, a in batch.messages.items()} == {1: "A", 2: "B", 3: "C"}
    assert store.queued_amazon_actions("acme", CANCEL_FEED) == []
    # Created but not submitted counts as in flight: a crash between the two is picked up again.
    assert [b.id for b in store.batches_in_flight("acme")] == [batch.batch.id]

    store.record_batch_submitted(batch.batch.id, "FEED-1", "amzn1.tortuga.doc")
    [flight] = store.batches_in_flight()
    assert (flight.status, flight.feed_id, flight.document_id) == ("submitted", "FEED-1", "amzn1.tortuga.doc")

    assert store.record_batch_results(batch.batch.id, {1: (True, None, None)}) is False
    assert store.record_batch_results(batch.batch.id, {
        2: (False, "18028", "The order is already shipped"), 3: (True, "Warning", "ok")}) is True
    assert store.batches_in_flight() == []
    statuses = {a.amazon_order_id: store.get_action(a.id).status for a in queued}
    assert statuses == {"A": "done", "B": "failed", "C": "done"}
    [failed] = store.failed_orders("acme")
    assert failed.amazon_order_id == "B" and failed.sync_status == "Failed Cancellation"
    assert "FEED-1 message 2: 18028: The order is already shipped" in failed.last_error
    messages = store.batch_messages(batch.batch.id)
    assert [(m.message_id, m.ok, m.result_code) for m in messages] == [(1, True, None), (2, False, "18028"),
                                                                       (3, True, "Warning")]


def test_reconciling_twice_changes_nothing(store: Store, decided) -> None:
    decided([CANCEL], order="A")
    batch = store.create_batch("acme", CANCEL_FEED, [a.id for a in store.queued_amazon_actions("acme", CANCEL_FEED)])
    store.record_batch_submitted(batch.batch.id, "F")
    store.record_batch_results(batch.batch.id, {1: (True, None, None)})
    assert store.record_batch_results(batch.batch.id, {1: (False, "x", "late contradicting report")}) is True
    assert store.get_action(batch.messages[1].id).status == "done"
    with pytest.raises(StoreError, match="no message"):
        store.record_batch_results(batch.batch.id, {7: (True, None, None)})


def test_an_action_goes_into_one_batch_only(store: Store, decided) -> None:
    decided([CANCEL], order="A")
    ids = [a.id for a in store.queued_amazon_actions("acme", CANCEL_FEED)]
    store.create_batch("acme", CANCEL_FEED, ids)
    with pytest.raises(StoreError, match="only 0 of the 1 actions are queued"):
        store.create_batch("acme", CANCEL_FEED, ids)
    assert len(store.batches_in_flight()) == 1  # the refused batch was rolled back
    with pytest.raises(StoreError, match="unknown feed type"):
        store.queued_amazon_actions("acme", "POST_FLAT_FILE", 15)


def test_resolve_puts_a_failed_feed_message_back_in_the_queue(store: Store, decided) -> None:
    decided([CANCEL], order="A")
    batch = store.create_batch("acme", CANCEL_FEED, [a.id for a in store.queued_amazon_actions("acme", CANCEL_FEED)])
    store.record_batch_results(batch.batch.id, {1: (False, "5000", "throttled")})
    assert store.resolve("acme", "A") == 1
    assert store.failed_orders() == []
    [again] = store.queued_amazon_actions("acme", CANCEL_FEED)
    assert again.id == batch.messages[1].id and again.batch_id is None


def test_an_amazon_cancellation_waits_for_its_orders_storefront_cancel(store: Store, decided) -> None:
    """Sent before the storefront cancel ran, Amazon's cancellation would come back and be decided against
    a storefront order that is not cancelled yet (found by the demo)."""
    decided([{"type": "cancel_order", "reason_code": "NoInventory", "restock": False}, CANCEL], order="A")
    assert store.queued_amazon_actions("acme", CANCEL_FEED) == []
    [storefront_cancel] = store.claim_actions("w", now=T0)
    assert store.queued_amazon_actions("acme", CANCEL_FEED) == []  # claimed, not done yet
    store.complete_action(storefront_cancel.id, {}, worker="w")
    assert [a.type for a in store.queued_amazon_actions("acme", CANCEL_FEED)] == ["cancel_on_amazon"]
