"""The outbox: leases, retries, permanent failures, release on SIGTERM, per-order ordering, and two
claimers never getting the same action (SKIP LOCKED on PostgreSQL, BEGIN IMMEDIATE on SQLite)."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from daemon.store import Store, StoreError
from daemon.store.models import CANCEL_FEED
from tests.store.conftest import T0

NOTE = {"type": "add_note", "text": "hello"}
HOLD = {"type": "hold_order", "reason": "buyer_cancel_requested"}


def test_claim_hands_out_due_actions_with_a_lease(store: Store, decided) -> None:
    decided([NOTE], order="A")
    decided([NOTE], order="B")
    claimed = store.claim_actions("w1", limit=10, now=T0, lease_seconds=30)
    assert [(a.amazon_order_id, a.status, a.claimed_by, a.attempts) for a in claimed] == [
        ("A", "claimed", "w1", 1), ("B", "claimed", "w1", 1)]
    assert claimed[0].claimed_until == T0 + timedelta(seconds=30)
    assert store.claim_actions("w2", now=T0 + timedelta(seconds=29)) == []


def test_limit_and_oldest_first(store: Store, decided) -> None:
    for order in "ABC":
        decided([NOTE], order=order)
    assert [a.amazon_order_id for a in store.claim_actions("w", limit=2, now=T0)] == ["A", "B"]
    assert [a.amazon_order_id for a in store.claim_actions("w", limit=2, now=T0)] == ["C"]


def test_an_expired_lease_is_claimed_again_and_the_dead_worker_cannot_complete(store: Store, decided) -> None:
    decided([NOTE])
    [first] = store.claim_actions("dead", now=T0, lease_seconds=30)
    [again] = store.claim_actions("alive", now=T0 + timedelta(seconds=31), lease_seconds=30)
    assert again.id == first.id and again.claimed_by == "alive" and again.attempts == 2
    assert store.complete_action(first.id, {"late": True}, worker="dead") is False
    assert store.complete_action(again.id, {"note_id": "gid://1"}, worker="alive") is True
    done = store.get_action(first.id)
    assert (done.status, done.result, done.claimed_by) == ("done", {"note_id": "gid://1"}, None)
    assert store.complete_action(first.id, {}) is False  # already done: nothing changes


def test_retry_waits_until_next_try(store: Store, decided) -> None:
    decided([NOTE])
    [action] = store.claim_actions("w", now=T0)
    assert store.retry_action(action.id, "429 throttled", T0 + timedelta(seconds=60))
    assert store.claim_actions("w", now=T0 + timedelta(seconds=59)) == []
    [again] = store.claim_actions("w", now=T0 + timedelta(seconds=60))
    assert again.id == action.id and again.last_error == "429 throttled" and again.attempts == 2


def test_permanent_failure_puts_the_order_in_the_error_view(store: Store, decided) -> None:
    decided([{"type": "cancel_order", "reason_code": "NoInventory"}], order="111-9")
    [action] = store.claim_actions("w", now=T0)
    assert store.fail_action(action.id, "order is already fulfilled")
    failed = store.failed_orders("acme")
    assert [(o.amazon_order_id, o.sync_status, o.last_error) for o in failed] == [
        ("111-9", "Failed Cancellation", "order is already fulfilled")]
    assert store.get_action(action.id).status == "failed"
    assert store.claim_actions("w", now=T0 + timedelta(days=1)) == []


def test_a_failed_storefront_action_stops_its_decisions_amazon_side_and_nothing_else(store: Store, decided) -> None:
    refund = {"type": "refund", "reason_code": "CustomerReturn"}
    to_amazon = {"type": "refund_on_amazon", "reason_code": "CustomerReturn"}
    decided([refund, to_amazon], order="111-7")                                   # sent at once
    decided([refund, to_amazon, {"type": "queue_for_approval"}], order="111-6")   # waiting for a person
    decided([to_amazon], order="111-5")                                           # another decision: untouched
    claimed = store.claim_actions("w", now=T0)
    assert [a.type for a in claimed] == ["refund", "refund"]
    for action in claimed:
        assert store.fail_action(action.id, "Shopify refused the refund")
    amazon = {a.amazon_order_id: a for a in store.queued_amazon_actions("acme", "POST_PAYMENT_ADJUSTMENT_DATA")}
    assert set(amazon) == {"111-5"}  # neither of the two whose storefront refund failed goes to Amazon
    assert store.awaiting_approval("acme") == []
    order_7 = [a for a in store.actions_of(claimed[0].decision_id) if a.type == "refund_on_amazon"][0]
    assert order_7.status == "failed"
    assert order_7.last_error == "not sent to Amazon: refund before it failed (Shopify refused the refund)"
    # Resolving the order queues both again; the Amazon side waits behind the storefront's, as before.
    assert store.resolve("acme", "111-7") == 2
    assert "111-7" not in {a.amazon_order_id for a in store.queued_amazon_actions("acme", "POST_PAYMENT_ADJUSTMENT_DATA")}
    [again] = store.claim_actions("w", now=T0 + timedelta(days=1))
    assert store.complete_action(again.id)
    assert {a.amazon_order_id for a in store.queued_amazon_actions("acme", "POST_PAYMENT_ADJUSTMENT_DATA")} == {"111-5", "111-7"}
    # The one that waited for a person waits for a person again: resolving the order is no approval.
    assert store.resolve("acme", "111-6") == 2
    assert [a.amazon_order_id for a in store.awaiting_approval("acme")] == ["111-6"]


def test_only_a_refused_cancellation_or_refund_stops_the_amazon_side(store: Store, decided) -> None:
    cancel_here = [{"type": "cancel_order", "reason_code": "NoInventory"}, {"type": "zero_out_inventory"},
                   {"type": "cancel_on_amazon", "reason_code": "NoInventory"}]
    decided(cancel_here, order="111-4")
    decided(cancel_here, order="111-3")
    first = store.claim_actions("w", now=T0)
    assert [a.type for a in first] == ["cancel_order", "cancel_order"]
    assert store.complete_action(first[0].id)
    # Cancelled already, by a person in Shopify: the storefront is as Amazon's side expects it.
    assert store.fail_action(first[1].id, "already cancelled", stops_amazon_side=False)
    second = store.claim_actions("w", now=T0)
    assert [a.type for a in second] == ["zero_out_inventory", "zero_out_inventory"]
    for action in second:
        assert store.fail_action(action.id, "the SKU is not stocked there")  # stock is not what Amazon repeats
    assert {a.amazon_order_id for a in store.queued_amazon_actions("acme", "POST_ORDER_ACKNOWLEDGEMENT_DATA")} == {
        "111-4", "111-3"}


def test_fail_action_takes_an_explicit_sync_status_but_only_a_failure(store: Store, decided) -> None:
    decided([NOTE], order="111-8")
    [action] = store.claim_actions("w", now=T0)
    with pytest.raises(StoreError, match="not a failure"):
        store.fail_action(action.id, "x", "Shipped")
    assert store.fail_action(action.id, "storefront order not found", "Failed Order")
    assert store.failed_orders()[0].sync_status == "Failed Order"


def test_release_claims_gives_back_only_that_workers_actions(store: Store, decided) -> None:
    for order in "ABC":
        decided([NOTE], order=order)
    store.claim_actions("stopping", limit=2, now=T0, lease_seconds=600)
    store.claim_actions("other", limit=1, now=T0, lease_seconds=600)
    assert store.release_claims("stopping") == 2
    released = store.claim_actions("next", now=T0 + timedelta(seconds=1))
    assert [(a.amazon_order_id, a.attempts) for a in released] == [("A", 1), ("B", 1)]


def test_later_actions_of_an_order_wait_for_earlier_ones(store: Store, decided) -> None:
    """A hold/cancel reaches the storefront before anything else for that order."""
    decided([HOLD, {"type": "cancel_order", "reason_code": "BuyerCanceled"}], order="X")
    decided([NOTE], order="X")
    decided([NOTE], order="Y")
    first = store.claim_actions("w", limit=10, now=T0)
    assert [(a.amazon_order_id, a.type) for a in first] == [("X", "hold_order"), ("Y", "add_note")]
    # While the hold is out (claimed) or comes back for a retry (pending), nothing else of X goes.
    assert store.claim_actions("w2", limit=10, now=T0) == []
    store.retry_action(first[0].id, "timeout", T0 + timedelta(seconds=5))
    assert store.claim_actions("w2", limit=10, now=T0 + timedelta(seconds=1)) == []
    [hold] = store.claim_actions("w2", limit=10, now=T0 + timedelta(seconds=5))
    assert hold.type == "hold_order"
    store.complete_action(hold.id, {})
    assert [a.type for a in store.claim_actions("w2", limit=10, now=T0 + timedelta(seconds=6))] == ["cancel_order"]
    assert store.claim_actions("w2", limit=10, now=T0 + timedelta(seconds=6)) == []


def test_amazon_bound_actions_do_not_block_the_storefront(store: Store, decided) -> None:
    decided([{"type": "cancel_on_amazon", "reason_code": "NoInventory"}, NOTE], order="X")
    assert [a.type for a in store.claim_actions("w", now=T0)] == ["add_note"]


@pytest.mark.parametrize("workers", [4])
def test_concurrent_claimers_never_get_the_same_action(store: Store, decided, workers: int) -> None:
    total = 60
    for n in range(total):
        decided([NOTE], order=f"O{n}")
    got: dict[str, list[int]] = {f"w{i}": [] for i in range(workers)}
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)

    def work(name: str) -> None:
        try:
            barrier.wait()
            while True:
                batch = store.claim_actions(name, limit=3, now=T0, lease_seconds=600)
                if not batch:
                    return
                got[name].extend(a.id for a in batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    claimed = [action_id for ids in got.values() for action_id in ids]
    assert len(claimed) == total and len(set(claimed)) == total
    assert store.counts().actions_by_status["claimed"] == total


def test_approve_and_reject(store: Store, decided) -> None:
    decided([{"type": "refund_on_amazon", "reason_code": "CustomerReturn"}, {"type": "queue_for_approval"}], order="A")
    decided([{"type": "refund_on_amazon", "reason_code": "CustomerReturn"}, {"type": "queue_for_approval"}], order="B")
    waiting = store.awaiting_approval("acme")
    assert [a.amazon_order_id for a in waiting] == ["A", "B"]
    assert store.approve([waiting[0].id]) == 1
    assert store.reject([waiting[1].id], "refund already made by phone") == 1
    assert store.approve([waiting[1].id]) == 0  # a rejected action cannot be approved afterwards
    a, b = store.get_action(waiting[0].id), store.get_action(waiting[1].id)
    assert (a.status, b.status, b.last_error) == ("queued_for_batch", "rejected", "refund already made by phone")
    assert [x.id for x in store.queued_amazon_actions("acme", "POST_PAYMENT_ADJUSTMENT_DATA")] == [a.id]


def test_postgresql_skips_an_action_another_claimer_has_locked(store: Store, decided) -> None:
    """On PostgreSQL a claimer does not wait for rows another transaction holds: it takes the next."""
    if not store.is_postgresql:
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serialises claims (previous test)")
    from sqlalchemy import text
    decided([NOTE], order="A")
    decided([NOTE], order="B")
    with store.engine.connect() as other:
        with other.begin():
            other.execute(text("SELECT id FROM actions WHERE amazon_order_id = 'A' FOR UPDATE"))
            claimed = store.claim_actions("w", limit=10, now=T0)
            assert [a.amazon_order_id for a in claimed] == ["B"]
    assert [a.amazon_order_id for a in store.claim_actions("w", limit=10, now=T0)] == ["A"]


def test_orders_with_open_actions_are_those_still_waiting_or_being_carried_out(store: Store, decided) -> None:
    decided([HOLD, NOTE], order="A")
    decided([NOTE], order="B")
    decided([{"type": "cancel_on_amazon", "reason_code": "BuyerCanceled"}], order="C")  # queued for a feed
    assert store.orders_with_open_actions("acme") == {"A", "B"}
    assert store.orders_with_open_actions("globex") == set()
    assert store.orders_with_open_actions("acme", among=["A", "C", "Z"]) == {"A"}
    assert store.orders_with_open_actions("acme", among=[]) == set()
    for action in store.claim_actions("w", now=T0):
        store.complete_action(action.id, {}, worker="w")
    assert store.orders_with_open_actions("acme") == {"A"}  # its note is still to go
    [note] = store.claim_actions("w", now=T0)
    store.complete_action(note.id, {}, worker="w")
    assert store.orders_with_open_actions("acme") == set()


def test_amazon_cancellations_say_whether_an_order_is_being_cancelled_with_the_buyers_reason(store: Store, decided) -> None:
    """What a buyer's request is told of ordersync's own cancellation of its order (the fact's amazon_cancellation):
    with BuyerCanceled, waiting for a person or going out (done too: Amazon may not show it yet); with another reason,
    which Amazon's rate counts, the same two; a rejected one is no cancellation. What goes out wins over what waits."""
    buyers = {"type": "cancel_on_amazon", "reason_code": "BuyerCanceled"}
    decided([buyers, {"type": "queue_for_approval"}], order="A")
    decided([buyers], order="B")
    decided([{"type": "cancel_on_amazon", "reason_code": "NoInventory"}], order="C")
    decided([{"type": "cancel_on_amazon", "reason_code": "NoInventory"}], order="D")
    decided([buyers], order="D")
    decided([buyers], order="E")
    decided([buyers, {"type": "queue_for_approval"}], order="F")
    decided([{"type": "cancel_on_amazon", "reason_code": "NoInventory"}, {"type": "queue_for_approval"}], order="H")
    decided([{"type": "cancel_on_amazon", "reason_code": "NoInventory"}], order="I")
    decided([buyers, {"type": "queue_for_approval"}], order="I")
    [sent] = [a for a in store.queued_amazon_actions("acme", CANCEL_FEED) if a.amazon_order_id == "E"]
    batch = store.create_batch("acme", CANCEL_FEED, [sent.id])
    store.record_batch_results(batch.batch.id, {number: (True, None, None) for number in batch.messages})
    [rejected] = [a for a in store.awaiting_approval("acme") if a.amazon_order_id == "F"]
    store.reject([rejected.id])
    assert store.get_action(sent.id).status == "done"
    assert store.amazon_cancellations("acme", ["A", "B", "C", "D", "E", "F", "G", "H", "I"]) == {
        "A": "awaiting_approval", "B": "on_its_way", "C": "other_reason_on_its_way", "D": "on_its_way", "E": "on_its_way",
        "H": "other_reason", "I": "other_reason_on_its_way"}


def test_a_rejected_refund_becomes_an_event_with_what_it_gave_up(store: Store) -> None:
    """The rules say what a person must settle: the refund's amount, and the units it gave up in the storefront (a
    refund made here with --unfulfilled); a storefront refund's event counts Amazon's cancelled units of the order,
    which no refund gave up."""
    def held_refund(order: str, payload: dict) -> int:
        store.ingest("acme", f"refund_requested:{order}", "refund_requested", payload, amazon_order_id=order)
        [event] = [e for e in store.undecided_events("acme", limit=100) if e.amazon_order_id == order]
        actions = [{"type": "refund_on_amazon", "reason_code": "NoInventory"}, {"type": "queue_for_approval"}]
        decision_id = store.record_decision(event.id, {"decision_id": f"dec-{order}", "amazon_order_id": order,
                                                       "actions": actions}, actions)
        [waiting] = [a for a in store.awaiting_approval("acme") if a.decision_id == decision_id]
        return waiting.id

    made_here = held_refund("R1", {"origin": "operator", "units_cancelled": 1, "refund_amount": "9.00"})
    in_storefront = held_refund("R2", {"origin": "storefront", "units_cancelled": 1, "refund_amount": "5.00"})
    assert store.reject([made_here, in_storefront], "wrong order") == 2
    rejected = {e.amazon_order_id: e.payload for e in store.undecided_events("acme", limit=100) if e.kind == "refund_rejected"}
    assert rejected == {
        "R1": {"origin": "operator", "rejection_reason": "wrong order", "rejected_action_id": made_here,
               "refund_amount": "9.00", "units_cancelled": 1},
        "R2": {"origin": "operator", "rejection_reason": "wrong order", "rejected_action_id": in_storefront,
               "refund_amount": "5.00", "units_cancelled": 0}}
