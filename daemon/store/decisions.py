"""Recording a decision: the decision, its actions (outbox) and the event marked decided, together."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, NamedTuple, Sequence

from sqlalchemy import bindparam, insert, null, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from daemon.actions import ACTIONS, AMAZON_BOUND
from daemon.store._sql import DriverStatement
from daemon.store.db import Database
from daemon.store.errors import NotFound, StoreError
from daemon.store.models import AWAITING_APPROVAL, DONE, PENDING, QUEUED_FOR_BATCH, Action, Decision, Event
from daemon.store.types import utcnow

APPROVAL = "queue_for_approval"

_events, _decisions, _actions = Event.__table__, Decision.__table__, Action.__table__
_EVENTS_FOR_UPDATE = (select(_events.c.id, _events.c.account, _events.c.amazon_order_id)
                      .where(_events.c.id.in_(bindparam("event_ids", expanding=True))).with_for_update())
_DECISIONS_OF_EVENTS = (select(_decisions.c.event_id, _decisions.c.decision_id)
                        .where(_decisions.c.event_id.in_(bindparam("event_ids", expanding=True))))
_INSERT_DECISION = DriverStatement(insert(_decisions))
_INSERT_ACTION = DriverStatement(insert(_actions))
_MARK_DECIDED = DriverStatement(update(_events).where(_events.c.id == bindparam("event_id"))
                                .values(decided_at=bindparam("now"), error=null()))


@dataclass(frozen=True)
class DecisionToRecord:
    """One event's decision as the pipeline hands it over: `record` is the audit record
    (daemon.audit.record.decision_record), `actions` are Decision.actions: dicts with "type" (an action
    of daemon.actions) and its parameters."""

    event_id: int
    record: Mapping[str, Any]
    actions: Sequence[Mapping[str, Any]]

    @property
    def decision_id(self) -> str:
        decision_id = self.record.get("decision_id")
        if not decision_id:
            raise StoreError(f"event {self.event_id}: the decision record has no decision_id")
        return str(decision_id)


class Recorded(NamedTuple):
    """The decision on record for an event, and whether this call recorded it (False: it was there)."""

    decision_id: str
    new: bool


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
        returned: a pipeline that crashed after commit and decides again cannot make a second one."""
        return self.record_decisions([DecisionToRecord(event_id, decision_record, actions)])[0].decision_id

    def record_decisions(self, decisions: Sequence[DecisionToRecord]) -> list[Recorded]:
        """Record several events' decisions as record_decision does, all in one transaction (all or none);
        returns, per item, the decision now on record for its event and whether it is this item's.

        One transaction for a decide run's decisions, rather than one each, is most of what recording
        costs. A crash before the commit loses the whole run, which is decided again with the same ids."""
        for item in decisions:
            for action in item.actions:
                if action.get("type") not in ACTIONS:
                    raise StoreError(f"decision {item.decision_id}: unknown action type {action.get('type')!r}")
        if not decisions:
            return []
        try:
            with self.transaction() as s:
                return self._record(s, decisions)
        except IntegrityError:
            if len(decisions) > 1:
                # Another process decided one of these between our check and our insert (its commit won):
                # one at a time, each then sees what is already there.
                return [self.record_decisions([item])[0] for item in decisions]
            existing = self.decision_for_event(decisions[0].event_id)
            if existing is None:
                raise StoreError(f"decision {decisions[0].decision_id} could not be recorded for event "
                                 f"{decisions[0].event_id}: its id is already used by another event's decision") from None
            return [Recorded(existing.decision_id, False)]

    def _record(self, s: Session, decisions: Sequence[DecisionToRecord]) -> list[Recorded]:
        # Statements compiled once (above) and run by the driver, with values converted here: the ORM's
        # unit of work, then SQLAlchemy's per-row parameter processing, were most of what recording cost.
        connection = s.connection()
        event_ids = [item.event_id for item in decisions]
        # FOR UPDATE on PostgreSQL: a second decider of these events waits here, then sees the decisions
        # (the next statement reads after the lock is granted, so it sees what the first one committed).
        events = {row.id: row for row in connection.execute(_EVENTS_FOR_UPDATE, {"event_ids": event_ids})}
        existing = {row.event_id: row.decision_id for row in connection.execute(_DECISIONS_OF_EVENTS, {"event_ids": event_ids})}
        now = DriverStatement.converter(s, _decisions.c.created_at)(utcnow())
        record_json = DriverStatement.converter(s, _decisions.c.record)
        params_json = DriverStatement.converter(s, _actions.c.params)
        result_json = DriverStatement.converter(s, _actions.c.result)
        decision_rows: list[dict[str, Any]] = []
        action_rows: list[dict[str, Any]] = []
        decided: list[dict[str, Any]] = []
        recorded: list[Recorded] = []
        for item in decisions:
            event = events.get(item.event_id)
            if event is None:
                raise NotFound(f"no event {item.event_id}")
            if item.event_id in existing:
                recorded.append(Recorded(existing[item.event_id], False))
                continue
            decision_id, record = item.decision_id, item.record
            existing[item.event_id] = decision_id  # the same event twice in one call: the first decides
            order_id = record.get("amazon_order_id") or event.amazon_order_id
            decision_rows.append({
                "decision_id": decision_id, "event_id": item.event_id, "account": event.account,
                "amazon_order_id": order_id, "ruleset": record.get("ruleset"), "rules_sha256": record.get("rules_sha256"),
                "rule": record.get("rule"), "record": record_json(dict(record)), "created_at": now})
            types = {str(action["type"]) for action in item.actions}
            for index, action in enumerate(item.actions):
                kind = str(action["type"])
                action_rows.append({
                    "decision_id": decision_id, "idx": index, "account": event.account, "amazon_order_id": order_id,
                    "type": kind, "params": params_json({k: v for k, v in action.items() if k != "type"}),
                    "target": ACTIONS[kind].target, "idempotency_key": idempotency_key(decision_id, index),
                    "status": initial_status(kind, types), "attempts": 0,
                    "result": result_json({"applied_by": "store"} if kind == APPROVAL else None),
                    "created_at": now, "updated_at": now})
            decided.append({"event_id": item.event_id, "now": now})
            recorded.append(Recorded(decision_id, True))
        if decision_rows:
            _INSERT_DECISION.run(s, decision_rows)
        if action_rows:
            # An executemany without RETURNING: both drivers (sqlite3, psycopg) run the INSERT once per row,
            # in the order given, so ids follow the order of decisions and of actions within each: id
            # order is the order of effects.
            _INSERT_ACTION.run(s, action_rows)
        if decided:
            _MARK_DECIDED.run(s, decided)
        return recorded

    def decisions_since(self, since: datetime, limit: int = 10_000, after: str | None = None, *,
                        account: str | None = None) -> Sequence[Decision]:
        """Decisions recorded at or after `since` (of one account, if given), in the order they were recorded
        (for catching the log up); with `after` (a decision id recorded at `since`), the next page: those
        recorded at `since` up to that id are left out."""
        query = select(Decision).where(col(Decision.created_at) >= since)
        if account is not None:
            query = query.where(col(Decision.account) == account)
        if after is not None:
            query = query.where(or_(col(Decision.created_at) > since, col(Decision.decision_id) > after))
        with self.transaction(write=False) as s:
            return s.scalars(query.order_by(col(Decision.created_at), col(Decision.decision_id)).limit(limit)).all()

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
