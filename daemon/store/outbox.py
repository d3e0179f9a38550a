"""The outbox: claiming due actions under a lease, and recording how each ended."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from daemon.actions import ACTIONS, AMAZON_BOUND, AMAZON_FOLLOWS
from daemon.store.db import Database
from daemon.store.errors import NotFound
from daemon.store.inbox import insert_new_events
from daemon.store.models import (ADJUSTMENT_FEED, AWAITING_APPROVAL, BLOCKING_STATUSES, CANCEL_FEED, CLAIMED, DONE,
                                 FAILED, FEED_FOR_ACTION, PENDING, QUEUED_FOR_BATCH, REJECTED, Action, Decision, Event)
from daemon.store.orders import check_failure_status, mark_order_failed
from daemon.store.types import utcnow

CANCELLATION_REJECTED = "cancellation_rejected"  # daemon.facts.EVENTS
REFUND_REJECTED = "refund_rejected"  # daemon.facts.EVENTS
# What a rejected refund's event carries of the refund's own (for the rules' message).
_REFUND_FIELDS = ("refund_amount", "currency")
HOLD_ORDER = "hold_order"  # daemon.actions.ACTIONS

_earlier = aliased(Action)


def _claimable(now: datetime) -> Any:
    due = and_(col(Action.status) == PENDING,
               or_(col(Action.next_try_at).is_(None), col(Action.next_try_at) <= now))
    lease_expired = and_(col(Action.status) == CLAIMED, col(Action.claimed_until) < now)
    # A cancelled order is never handed to shipping afterwards: nothing of an order goes out while an
    # earlier action of the same order is still waiting or being carried out.
    blocked = exists().where(
        _earlier.account == Action.account,
        _earlier.amazon_order_id == Action.amazon_order_id,
        _earlier.id < Action.id,
        col(_earlier.status).in_(BLOCKING_STATUSES))
    return and_(or_(due, lease_expired), ~blocked)


class Outbox(Database):

    def claim_actions(self, worker: str, limit: int = 10, now: datetime | None = None,
                      lease_seconds: float = 60.0) -> Sequence[Action]:
        """Hand up to `limit` due actions to `worker`, oldest first, each leased until now+lease_seconds.
        A pending action is due when its next_try_at has come; a claimed one whose lease ran out (its
        worker died) is due again. Concurrent claimers never get the same action: PostgreSQL skips rows
        another claimer has locked, SQLite runs claims one at a time (BEGIN IMMEDIATE)."""
        now = now or utcnow()
        until = now + timedelta(seconds=lease_seconds)
        query = (select(Action).where(_claimable(now)).order_by(col(Action.id)).limit(limit)
                 .with_for_update(skip_locked=True, of=Action))
        with self.transaction() as s:
            rows = s.scalars(query).all()
            if not rows:
                return []
            ids = [row.id for row in rows]
            s.execute(update(Action).where(col(Action.id).in_(ids)).values(
                status=CLAIMED, claimed_by=worker, claimed_until=until,
                attempts=col(Action.attempts) + 1, updated_at=now))
            return s.scalars(select(Action).where(col(Action.id).in_(ids)).order_by(col(Action.id))
                             .execution_options(populate_existing=True)).all()

    def orders_with_open_actions(self, account: str, among: Iterable[str] | None = None) -> set[str]:
        """Orders of the account with an action still waiting or being carried out: their storefront state
        is about to change, so a new event of theirs is better decided after it has. `among` limits the
        question to those orders (the decide job asks about the orders of the events it is deciding)."""
        if among is None:
            query = (select(Action.amazon_order_id).distinct()
                     .where(col(Action.account) == account, col(Action.status).in_(BLOCKING_STATUSES),
                            col(Action.amazon_order_id).is_not(None)))
            with self.transaction(write=False) as s:
                return set(s.scalars(query).all())
        orders = sorted(set(among))
        if not orders:
            return set()
        # By order only, statuses sorted out here: a status condition tempts PostgreSQL without fresh
        # statistics into scanning every open action (0.7 s a run, measured) instead of these orders' few.
        query = select(Action.amazon_order_id, Action.status).where(
            col(Action.account) == account, col(Action.amazon_order_id).in_(orders))
        with self.transaction(write=False) as s:
            return {order for order, status in s.execute(query) if status in BLOCKING_STATUSES}

    def complete_action(self, action_id: int, result: Mapping[str, Any] | None = None, *,
                        worker: str | None = None) -> bool:
        """Mark a claimed action done. Returns False (and changes nothing) when it is no longer claimed
        (by `worker`, if given): its lease ran out and someone else has it, or it already ended."""
        return self._finish(action_id, worker, status=DONE, result=dict(result) if result else None,
                            last_error=None)

    def retry_action(self, action_id: int, error: str, next_try_at: datetime, *,
                     worker: str | None = None) -> bool:
        """A transient failure: back to pending, not before next_try_at."""
        return self._finish(action_id, worker, status=PENDING, last_error=error, next_try_at=next_try_at)

    def fail_action(self, action_id: int, error: str, sync_status: str | None = None, *,
                    worker: str | None = None, stops_amazon_side: bool = True) -> bool:
        """A permanent failure: the action stops, and its order goes into the error view with this sync
        status (default: the action's own, e.g. Failed Cancellation) and the error message.

        When the action is a storefront effect that Amazon's side repeats (actions.AMAZON_FOLLOWS) and
        `stops_amazon_side`, the decision's Amazon-bound actions after it that have not gone out stop too: a
        cancellation Shopify refused because the order was fulfilled meanwhile must not cancel on Amazon an
        order that is shipping, nor a refund Shopify refused go out on Amazon alone. The caller passes False
        when the refusal leaves the storefront as Amazon's side expects it (the order cancelled already).
        `ordersync errors resolve` queues them all again, in order."""
        if sync_status is not None:
            check_failure_status(sync_status)
        with self.transaction() as s:
            action = _get(s, action_id)
            if not _owned(action, worker):
                return False
            _set(s, action_id, status=FAILED, last_error=error)
            if stops_amazon_side and action.type in AMAZON_FOLLOWS:
                s.execute(update(Action).where(
                    col(Action.decision_id) == action.decision_id, col(Action.idx) > action.idx,
                    col(Action.type).in_(AMAZON_BOUND), col(Action.status).in_((QUEUED_FOR_BATCH, AWAITING_APPROVAL)),
                    col(Action.batch_id).is_(None),
                ).values(status=FAILED, updated_at=utcnow(),
                         last_error=f"not sent to Amazon: {action.type} before it failed ({error})"))
            if action.amazon_order_id:
                mark_order_failed(s, action.account, action.amazon_order_id,
                                  sync_status or ACTIONS[action.type].failure_status, error)
            return True

    def release_claims(self, worker: str) -> int:
        """Give back every action `worker` holds (SIGTERM): pending again at once, the claim not counted
        as an attempt. Returns how many."""
        with self.transaction() as s:
            return s.execute(update(Action).where(col(Action.status) == CLAIMED, col(Action.claimed_by) == worker)
                             .values(status=PENDING, claimed_by=None, claimed_until=None,
                                     attempts=col(Action.attempts) - 1, updated_at=utcnow())).rowcount

    def get_action(self, action_id: int) -> Action:
        with self.transaction(write=False) as s:
            return _get(s, action_id)

    def awaiting_approval(self, account: str | None = None) -> Sequence[Action]:
        query = select(Action).where(col(Action.status) == AWAITING_APPROVAL)
        if account is not None:
            query = query.where(col(Action.account) == account)
        with self.transaction(write=False) as s:
            return s.scalars(query.order_by(col(Action.id))).all()

    def approve(self, action_ids: Iterable[int]) -> int:
        """Let queued Amazon-bound actions go out with the next batch. Returns how many were waiting."""
        ids = list(action_ids)
        with self.transaction() as s:
            return s.execute(update(Action).where(col(Action.id).in_(ids), col(Action.status) == AWAITING_APPROVAL)
                             .values(status=QUEUED_FOR_BATCH, last_error=None, updated_at=utcnow())).rowcount

    def reject(self, action_ids: Iterable[int], reason: str = "rejected by an operator") -> int:
        """Drop queued Amazon-bound actions; they are kept, with the reason, as rejected. Returns how many
        were waiting.

        A rejected cancellation also becomes a cancellation_rejected event, in the same transaction, for the
        rules to decide what follows: the decision that queued it put the order on hold so that it could not
        ship meanwhile, and nobody would otherwise release it (the shipped policy does). A rejected refund becomes
        a refund_rejected event: the storefront shows the refund (recorded when it was decided, or made there by a
        person) and Amazon never pays it (the shipped policy puts the order in the error view)."""
        ids = list(action_ids)
        with self.transaction() as s:
            waiting = s.scalars(select(Action).where(col(Action.id).in_(ids), col(Action.status) == AWAITING_APPROVAL)
                                .with_for_update()).all()
            if not waiting:
                return 0
            now = utcnow()
            s.execute(update(Action).where(col(Action.id).in_([a.id for a in waiting]))
                      .values(status=REJECTED, last_error=reason, updated_at=now))
            for action in waiting:
                if FEED_FOR_ACTION.get(action.type) == CANCEL_FEED:
                    # The holds placed by the order's decisions whose cancellation is rejected, this one's and any
                    # rejected before it while another went on (its hold stayed then): those the rejection settles.
                    # The rules release them only when no cancellation of the order goes on any more.
                    rejected = select(Action.decision_id).where(
                        col(Action.account) == action.account, col(Action.amazon_order_id) == action.amazon_order_id,
                        col(Action.type) == action.type, col(Action.status) == REJECTED)
                    holds = s.scalars(select(Action.idempotency_key).where(
                        or_(col(Action.decision_id) == action.decision_id, col(Action.decision_id).in_(rejected)),
                        col(Action.type) == HOLD_ORDER).order_by(col(Action.id))).all()
                    _rejection_event(s, action, CANCELLATION_REJECTED, reason, now, holds_to_release=list(holds))
                elif FEED_FOR_ACTION.get(action.type) == ADJUSTMENT_FEED:
                    refunded = s.scalars(select(Event.payload).join(Decision, col(Decision.event_id) == col(Event.id))
                                         .where(col(Decision.decision_id) == action.decision_id)).first() or {}
                    _rejection_event(s, action, REFUND_REJECTED, reason, now,
                                     **{name: refunded[name] for name in _REFUND_FIELDS if name in refunded},
                                     # Units a refund made here gave up; a storefront refund's event has Amazon's
                                     # cancelled units of the order there, which no refund gave up.
                                     units_cancelled=refunded.get("units_cancelled", 0) if refunded.get("origin") == "operator" else 0)
            return len(waiting)

    def _finish(self, action_id: int, worker: str | None, **values: Any) -> bool:
        with self.transaction() as s:
            action = _get(s, action_id)
            if not _owned(action, worker):
                return False
            _set(s, action_id, **values)
            return True


def _rejection_event(s: Session, action: Action, kind: str, reason: str, now: datetime, **payload: Any) -> None:
    """The event a person's rejection of a held action is, for the rules to decide what follows."""
    insert_new_events(s, action.account, [{
        "account": action.account, "natural_key": f"{kind}:{action.id}", "kind": kind,
        "amazon_order_id": action.amazon_order_id,
        "payload": {"origin": "operator", "rejection_reason": reason, "rejected_action_id": action.id, **payload},
        "received_at": now, "failures": 0}])


def _get(s: Session, action_id: int) -> Action:
    action = s.scalars(select(Action).where(col(Action.id) == action_id).with_for_update()).first()
    if action is None:
        raise NotFound(f"no action {action_id}")
    return action


def _owned(action: Action, worker: str | None) -> bool:
    return action.status == CLAIMED and (worker is None or action.claimed_by == worker)


def _set(s: Session, action_id: int, **values: Any) -> None:
    s.execute(update(Action).where(col(Action.id) == action_id)
              .values(claimed_by=None, claimed_until=None, updated_at=utcnow(), **values))
