"""Recording a decision: the decision, its actions (outbox) and the event marked decided, together."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Sequence

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from daemon.actions import ACTIONS, AMAZON_BOUND
from daemon.store.db import Database
from daemon.store.errors import NotFound, StoreError
from daemon.store.models import AWAITING_APPROVAL, DONE, PENDING, QUEUED_FOR_BATCH, Action, Decision, Event
from daemon.store.types import utcnow

APPROVAL = "queue_for_approval"

_events, _decisions, _actions = Event.__table__, Decision.__table__, Action.__table__
_EVENT_FOR_UPDATE = (select(_events.c.account, _events.c.amazon_order_id)
                     .where(_events.c.id == bindparam("event_id")).with_for_update())
_DECISION_OF_EVENT = select(_decisions.c.decision_id).where(_decisions.c.event_id == bindparam("event_id"))
_INSERT_DECISION = insert(_decisions)
_INSERT_ACTION = insert(_actions)
_MARK_DECIDED = (update(_events).where(_events.c.id == bindparam("event_id"))
                 .values(decided_at=bindparam("now"), error=None))


def idempotency_key(decision_id: str, index: int) -> str:
    """The key an adapter sends with the action's effect: the same on every retry of that action, and
    different for every action ever decided."""
    return f"{decision_id}:{index}"


def initial_status(action_type: str, types_in_decision: set[str]) -> str:
    if action_type == APPROVAL:
        return DONE  # its whole effect is the status of its siblings, applied right here
    if action_type in AMAZON_BOUND:
        return AWAITING_APPROVAL if APPROVAL in types_in_decision else QUEUED_FOR_BATCH
    return PENDING


class Decisions(Database):

    def record_decision(self, event_id: int, decision_record: Mapping[str, Any],
                        actions: Sequence[Mapping[str, Any]]) -> str:
        """Write the decision, its actions and the event's decided mark in one transaction; returns the
        decision id. If the event already has a decision, nothing is written and that decision's id is
        returned: a pipeline that crashed after commit and decides again cannot make a second one.

        `decision_record` is the audit record (daemon.audit.record.decision_record); `actions` are
        Decision.actions: dicts with "type" (an action of daemon.actions) and its parameters."""
        decision_id = decision_record.get("decision_id")
        if not decision_id:
            raise StoreError("the decision record has no decision_id")
        for action in actions:
            if action.get("type") not in ACTIONS:
                raise StoreError(f"decision {decision_id}: unknown action type {action.get('type')!r}")
        try:
            with self.transaction() as s:
                return self._record(s, event_id, str(decision_id), decision_record, actions)
        except IntegrityError:
            # Another process decided the same event between our check and our insert (its commit won).
            existing = self.decision_for_event(event_id)
            if existing is None:
                raise StoreError(f"decision {decision_id} could not be recorded for event {event_id}: its id is "
                                 "already used by another event's decision") from None
            return existing.decision_id

    def _record(self, s: Session, event_id: int, decision_id: str, record: Mapping[str, Any],
                actions: Sequence[Mapping[str, Any]]) -> str:
        # Core statements built once (below) on the session's connection: the ORM's unit of work and the
        # per-call building and compiling of statements were most of the time a decision took.
        connection = s.connection()
        # FOR UPDATE on PostgreSQL: a second decider of this event waits here, then sees the decision
        # (the next statement reads after the lock is granted, so it sees what the first one committed).
        event = connection.execute(_EVENT_FOR_UPDATE, {"event_id": event_id}).first()
        if event is None:
            raise NotFound(f"no event {event_id}")
        existing = connection.execute(_DECISION_OF_EVENT, {"event_id": event_id}).scalar()
        if existing is not None:
            return existing
        now = utcnow()
        order_id = record.get("amazon_order_id") or event.amazon_order_id
        connection.execute(_INSERT_DECISION, {
            "decision_id": decision_id, "event_id": event_id, "account": event.account, "amazon_order_id": order_id,
            "ruleset": record.get("ruleset"), "rules_sha256": record.get("rules_sha256"), "rule": record.get("rule"),
            "record": dict(record), "created_at": now})
        types = {str(action["type"]) for action in actions}
        rows = []
        for index, action in enumerate(actions):
            kind = str(action["type"])
            rows.append({
                "decision_id": decision_id, "idx": index, "account": event.account, "amazon_order_id": order_id,
                "type": kind, "params": {k: v for k, v in action.items() if k != "type"},
                "target": ACTIONS[kind].target, "idempotency_key": idempotency_key(decision_id, index),
                "status": initial_status(kind, types), "attempts": 0,
                "result": {"applied_by": "store"} if kind == APPROVAL else None,
                "created_at": now, "updated_at": now})
        if rows:
            # An executemany without RETURNING: both drivers (sqlite3, psycopg) run the INSERT once per row,
            # in the order given, so ids follow the index: id order is the order of effects.
            connection.execute(_INSERT_ACTION, rows)
        connection.execute(_MARK_DECIDED, {"event_id": event_id, "now": now})
        return decision_id

    def decisions_since(self, since: datetime, limit: int = 10_000) -> Sequence[Decision]:
        """Decisions made at or after `since`, in the order they were made (for catching the log up)."""
        with self.transaction(write=False) as s:
            return s.scalars(select(Decision).where(col(Decision.created_at) >= since)
                             .order_by(col(Decision.created_at), col(Decision.decision_id)).limit(limit)).all()

    def decision_for_event(self, event_id: int) -> Decision | None:
        with self.transaction(write=False) as s:
            return s.scalars(select(Decision).where(col(Decision.event_id) == event_id)).first()

    def get_decision(self, decision_id: str) -> Decision | None:
        with self.transaction(write=False) as s:
            return s.get(Decision, decision_id)

    def actions_of(self, decision_id: str) -> Sequence[Action]:
        with self.transaction(write=False) as s:
            return s.scalars(select(Action).where(col(Action.decision_id) == decision_id)
                             .order_by(col(Action.idx))).all()
