"""Exactly one decision per event, written with its actions in one transaction."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from daemon.pipeline.events import NewEvent
from daemon.store import DecisionToRecord, Recorded, Store, StoreError
from daemon.store.models import Action, Decision

ORDER = "111-0000001-0000001"
CANCEL = [{"type": "hold_order", "reason": "buyer"}, {"type": "cancel_order", "reason_code": "BuyerCanceled",
                                                     "restock": True, "notify_customer": False},
          {"type": "cancel_on_amazon", "reason_code": "BuyerCanceled"}]


def _event(store: Store) -> int:
    store.ingest("acme", "k1", "order_cancelled", {}, amazon_order_id=ORDER)
    return store.undecided_events()[0].id


def _count(store: Store, model) -> int:
    with store.transaction(write=False) as s:
        return s.execute(select(func.count()).select_from(model)).scalar_one()


def test_decision_actions_and_decided_mark_are_written(store: Store) -> None:
    event_id = _event(store)
    record = {"decision_id": "d1", "rule": "cancel-mirror", "ruleset": "cancellation", "rules_sha256": "f" * 64,
              "amazon_order_id": ORDER, "trace": [{"rule": "cancel-mirror", "matched": True}]}
    assert store.record_decision(event_id, record, CANCEL) == "d1"
    decision = store.decision_for_event(event_id)
    assert decision is not None and decision.rule == "cancel-mirror" and decision.record == record
    actions = store.actions_of("d1")
    assert [(a.idx, a.type, a.status, a.target, a.idempotency_key) for a in actions] == [
        (0, "hold_order", "pending", "storefront", "d1:0"),
        (1, "cancel_order", "pending", "storefront", "d1:1"),
        (2, "cancel_on_amazon", "queued_for_batch", "amazon", "d1:2")]
    assert actions[1].params == {"reason_code": "BuyerCanceled", "restock": True, "notify_customer": False}
    assert actions[0].id < actions[1].id < actions[2].id
    assert store.undecided_events() == [] and store.get_event(event_id).decided_at is not None


def test_a_decision_made_on_a_whole_second_is_found_from_that_second(store: Store, monkeypatch) -> None:
    """Times are compared in the database (as text on SQLite): a decision's time must be written in the
    form every other time is, or catching the log up from that moment misses it."""
    import daemon.store.decisions as decisions
    whole_second = datetime(2026, 12, 1, 21, 0, 0, tzinfo=timezone.utc)
    monkeypatch.setattr(decisions, "utcnow", lambda: whole_second)
    event_id = _event(store)
    store.record_decision(event_id, {"decision_id": "d1"}, CANCEL)
    assert [d.decision_id for d in store.decisions_since(whole_second)] == ["d1"]
    assert store.get_decision("d1").created_at == store.get_event(event_id).decided_at == whole_second
    assert {a.created_at for a in store.actions_of("d1")} == {whole_second}


def test_deciding_again_after_a_crash_is_a_no_op(store: Store) -> None:
    event_id = _event(store)
    first = store.record_decision(event_id, {"decision_id": "d1"}, CANCEL)
    # The pipeline died after commit and, restarted, decides the event again with a new id.
    again = store.record_decision(event_id, {"decision_id": "d2"}, CANCEL)
    assert again == first == "d1"
    assert _count(store, Decision) == 1 and _count(store, Action) == 3


def test_two_threads_deciding_one_event_make_one_decision(store: Store) -> None:
    event_id = _event(store)
    barrier = threading.Barrier(4)
    results: list[str] = []
    errors: list[BaseException] = []

    def decide(n: int) -> None:
        try:
            barrier.wait()
            results.append(store.record_decision(event_id, {"decision_id": f"d{n}"}, CANCEL))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=decide, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1 and len(results) == 4
    assert _count(store, Decision) == 1 and _count(store, Action) == 3


def test_queue_for_approval_holds_amazon_bound_actions(store: Store) -> None:
    event_id = _event(store)
    store.record_decision(event_id, {"decision_id": "d1"}, [
        {"type": "refund", "reason_code": "CustomerReturn"},
        {"type": "refund_on_amazon", "reason_code": "CustomerReturn"},
        {"type": "queue_for_approval"}])
    assert [(a.type, a.status) for a in store.actions_of("d1")] == [
        ("refund", "pending"), ("refund_on_amazon", "awaiting_approval"), ("queue_for_approval", "done")]


def test_an_unknown_action_writes_nothing(store: Store) -> None:
    event_id = _event(store)
    with pytest.raises(StoreError, match="unknown action type 'cancel_everything'"):
        store.record_decision(event_id, {"decision_id": "d1"}, [{"type": "hold_order"}, {"type": "cancel_everything"}])
    assert _count(store, Decision) == 0 and _count(store, Action) == 0
    assert len(store.undecided_events()) == 1


def test_a_failure_inside_the_transaction_leaves_the_event_undecided(store: Store) -> None:
    event_id = _event(store)
    with pytest.raises(Exception):
        store.record_decision(event_id, {"decision_id": "d1"}, [{"type": "add_note", "text": object()}])
    assert _count(store, Decision) == 0 and _count(store, Action) == 0
    assert [e.id for e in store.undecided_events()] == [event_id]


def test_no_action_decision_still_marks_the_event(store: Store) -> None:
    event_id = _event(store)
    store.record_decision(event_id, {"decision_id": "d1", "rule": None, "outcome": "no_action"}, [])
    assert store.undecided_events() == []
    assert store.counts().decisions_by_rule == {"": 1}


def _events(store: Store, count: int) -> list[int]:
    store.ingest_many("acme", [NewEvent("order_cancelled", f"k{n}", f"111-0000001-000000{n}", {}) for n in range(count)], None)
    return [event.id for event in store.undecided_events()]


def test_a_run_of_decisions_is_recorded_together_in_order(store: Store) -> None:
    first, second, third = _events(store, 3)
    store.record_decision(second, {"decision_id": "d-earlier"}, [])
    recorded = store.record_decisions([DecisionToRecord(first, {"decision_id": "d1"}, CANCEL[:2]),
                                       DecisionToRecord(second, {"decision_id": "d2"}, CANCEL),
                                       DecisionToRecord(third, {"decision_id": "d3"}, CANCEL[:1])])
    # The event decided before keeps its decision; the others get theirs.
    assert recorded == [Recorded("d1", True), Recorded("d-earlier", False), Recorded("d3", True)]
    assert _count(store, Decision) == 3 and store.undecided_events() == []
    actions = [a for d in ("d1", "d3") for a in store.actions_of(d)]
    assert [(a.decision_id, a.idx) for a in actions] == [("d1", 0), ("d1", 1), ("d3", 0)]
    assert [a.id for a in actions] == sorted(a.id for a in actions)  # id order is the order of effects


def test_a_run_with_a_bad_decision_records_none_of_it(store: Store) -> None:
    first, second = _events(store, 2)
    with pytest.raises(StoreError, match="no event 999"):
        store.record_decisions([DecisionToRecord(first, {"decision_id": "d1"}, CANCEL),
                                DecisionToRecord(second, {"decision_id": "d2"}, CANCEL),
                                DecisionToRecord(999, {"decision_id": "d3"}, [])])
    assert _count(store, Decision) == 0 and _count(store, Action) == 0
    assert len(store.undecided_events()) == 2
