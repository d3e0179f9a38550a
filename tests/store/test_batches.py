"""Amazon-bound actions go out one feed per batch and are reconciled message by message."""
from __future__ import annotations

import pytest

from decimal import Decimal
from itertools import count

from daemon.store import Store, StoreError
from daemon.store.batches import NotQueued
from daemon.store.models import ADJUSTMENT_FEED, CANCEL_FEED
from tests.store.conftest import T0

CANCEL = {"type": "cancel_on_amazon", "reason_code": "NoInventory"}
REFUND = {"type": "refund_on_amazon", "reason_code": "GeneralAdjustment"}
_refunds = count(1)


def refund_decided(store: Store, amount: str, order: str = "R", approval: bool = False, account: str = "acme") -> int:
    """A decision to refund `amount` of the order on Amazon (its fact's refund_amount, what the feed sends); the
    refund_on_amazon action's id. With `approval`, it waits for a person."""
    n = next(_refunds)
    store.ingest(account, f"refund:{order}:{n}", "refund_requested", {"n": n}, amazon_order_id=order)
    [event] = [e for e in store.undecided_events(account, limit=1000) if e.natural_key == f"refund:{order}:{n}"]
    actions = [{"type": "queue_for_approval"}, REFUND] if approval else [REFUND]
    record = {"decision_id": f"refund-{order}-{n}", "amazon_order_id": order, "rule": "test-refund", "ruleset": "refund",
              "rules_sha256": "ab" * 32, "actions": actions, "fact": {"refund_amount": amount}}
    decision_id = store.record_decision(event.id, record, actions)
    [action] = [a for a in store.actions_of(decision_id) if a.type == "refund_on_amazon"]
    return action.id


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
    with pytest.raises(NotQueued, match="only 0 of the 1 actions are queued"):
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


def test_the_queue_is_listed_page_by_page(store: Store, decided) -> None:
    for order in ("A", "B", "C"):
        decided([CANCEL], order=order)
    first = store.queued_amazon_actions("acme", CANCEL_FEED, limit=2)
    assert [a.amazon_order_id for a in first] == ["A", "B"]
    assert [a.amazon_order_id for a in store.queued_amazon_actions("acme", CANCEL_FEED, 2, after=first[-1].id)] == ["C"]
    assert store.queued_amazon_actions("acme", CANCEL_FEED, 2, after=first[-1].id + 1) == []


def test_ordersync_s_refunds_of_an_order_that_may_have_reached_amazon_are_the_done_ones_and_those_in_a_feed(
        store: Store) -> None:
    """Store.amazon_refunds_sent, for send_batches' check of a storefront refund: what Amazon may have refunded by
    ordersync's doing. One queued for the next feed, or waiting for a person, has not reached Amazon; one rejected or
    failed never will."""
    done = refund_decided(store, "1.00")
    in_feed = refund_decided(store, "2.00")
    failed = refund_decided(store, "4.00")
    queued = refund_decided(store, "8.00")
    waiting = refund_decided(store, "16.00", approval=True)
    rejected = refund_decided(store, "32.00", approval=True)
    other = refund_decided(store, "64.00", order="OTHER")
    assert [a.id for a in store.queued_amazon_actions("acme", ADJUSTMENT_FEED)] == [done, in_feed, failed, queued, other]
    batch = store.create_batch("acme", ADJUSTMENT_FEED, [done, in_feed, failed])
    store.record_batch_submitted(batch.batch.id, "FEED-1")
    store.record_batch_results(batch.batch.id, {1: (True, None, None), 3: (False, "25", "refused")})
    assert store.reject([rejected]) == 1

    assert store.amazon_refunds_sent("acme", "R") == [(done, Decimal("1.00")), (in_feed, Decimal("2.00"))]
    # The storefront refunds poll's view: everything not refused, rejected or failed, with the actions' ids.
    assert store.amazon_refunds_of_order("acme", "R") == [(done, Decimal("1.00")), (in_feed, Decimal("2.00")),
                                                          (queued, Decimal("8.00")), (waiting, Decimal("16.00"))]
    assert store.amazon_refunds_sent("acme", "NONE") == []


def test_a_refund_withheld_for_good_is_rejected_with_why_and_resolving_does_not_send_it(store: Store) -> None:
    withheld, later = refund_decided(store, "5.00"), refund_decided(store, "3.00")
    why = {"withheld": "refunded_meanwhile", "amazon_refunded_then": "0", "amazon_refunded_now": "5.00",
           "ordersync_refunds_counted": "0", "checked_at": "2025-03-01T12:00:00Z"}
    assert store.withhold(withheld, "storefront_refund_refunded_meanwhile: ...", "Failed Refund", why) is True
    action = store.get_action(withheld)
    assert (action.status, action.last_error, action.result) == ("rejected", "storefront_refund_refunded_meanwhile: ...", why)
    [failed] = store.failed_orders("acme")
    assert (failed.amazon_order_id, failed.sync_status) == ("R", "Failed Refund")
    assert [a.id for a in store.queued_amazon_actions("acme", ADJUSTMENT_FEED)] == [later]
    with pytest.raises(NotQueued):  # another process withheld it first
        store.create_batch("acme", ADJUSTMENT_FEED, [withheld, later])
    assert store.batches_in_flight() == []

    assert store.resolve("acme", "R") == 0
    assert store.failed_orders("acme") == []
    assert store.get_action(withheld).status == "rejected"
    assert store.withhold(withheld, "again", "Failed Refund") is False  # no longer waiting for a feed


def test_a_refund_withheld_for_now_fails_and_resolving_queues_it_for_the_next_feed(store: Store) -> None:
    """An unreadable answer from Amazon may be a one-off: `ordersync errors resolve` queues the refund again, and
    send_batches checks it again. One that waited for approval waits for a person again (resolving is no approval)."""
    plain, approved = refund_decided(store, "5.00"), refund_decided(store, "6.00", order="S", approval=True)
    assert store.approve([approved]) == 1
    why = {"withheld": "amazon_refunds_unreadable", "amazon_error": "HTTP 400"}
    for action_id in (plain, approved):
        assert store.withhold(action_id, "storefront_refund_not_rechecked: ...", "Failed Refund", why, retry=True)
        assert (store.get_action(action_id).status, store.get_action(action_id).result) == ("failed", why)
    assert {o.amazon_order_id for o in store.failed_orders("acme")} == {"R", "S"}
    assert store.queued_amazon_actions("acme", ADJUSTMENT_FEED) == []

    assert store.resolve("acme", "R") == 1
    assert [a.id for a in store.queued_amazon_actions("acme", ADJUSTMENT_FEED)] == [plain]
    assert store.resolve("acme", "S") == 1
    assert store.get_action(approved).status == "awaiting_approval"


def test_only_an_action_waiting_for_a_feed_is_withheld(store: Store) -> None:
    in_feed = refund_decided(store, "5.00")
    store.create_batch("acme", ADJUSTMENT_FEED, [in_feed])  # another process batched it first
    assert store.withhold(in_feed, "x", "Failed Refund", retry=True) is False
    assert store.get_action(in_feed).status == "queued_for_batch" and store.failed_orders("acme") == []
    with pytest.raises(StoreError, match="not a failure"):
        store.withhold(refund_decided(store, "1.00"), "x", "Shipped")
