"""Amazon-bound actions: queued, sent as one feed per batch, reconciled message by message."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping, Sequence

from sqlalchemy import exists, insert, or_, select, update
from sqlalchemy.orm import aliased
from sqlmodel import col

from daemon.actions import ACTIONS
from daemon.store.db import Database
from daemon.store.errors import NotFound, StoreError
from daemon.store.models import (ADJUSTMENT_FEED, AWAITING_APPROVAL, BATCH_CREATED, BATCH_DONE, BATCH_SUBMITTED,
                                 BLOCKING_STATUSES, CLAIMED, DONE, PENDING,
                                 FAILED, FEED_FOR_ACTION, QUEUED_FOR_BATCH, REJECTED, Action,
                                 AmazonBatch, BatchMessage, Decision, Event)
from daemon.store.orders import check_failure_status, mark_order_failed
from daemon.store.types import utcnow

# message id -> (ok, result code, description), as read from the feed's processing report
MessageResults = Mapping[int, tuple[bool, str | None, str | None]]


class NotQueued(StoreError):
    """create_batch: some of the actions are no longer waiting for a feed (another process put them in a batch,
    or withheld them, first). Nothing was recorded: list the queue again."""


@dataclass(frozen=True)
class Batch:
    batch: AmazonBatch
    messages: dict[int, Action]   # message id -> the action it carries


def _action_types(feed_type: str) -> list[str]:
    types = [kind for kind, feed in FEED_FOR_ACTION.items() if feed == feed_type]
    if not types:
        raise StoreError(f"unknown feed type {feed_type!r}; one of {', '.join(sorted(set(FEED_FOR_ACTION.values())))}")
    return types


def _amazon_refunds(query: Any, account: str, amazon_order_id: str | None, statuses: Sequence[str]) -> Any:
    """ordersync's refunds on Amazon of one order in these states, with their decisions, in the order decided."""
    return (query.join(Action, col(Action.decision_id) == col(Decision.decision_id))
            .where(col(Action.account) == account, col(Action.amazon_order_id) == amazon_order_id,
                   col(Action.type).in_(_action_types(ADJUSTMENT_FEED)), col(Action.status).in_(statuses))
            .order_by(col(Action.id)))


def _refund_amount(record: Mapping[str, Any]) -> Decimal:
    """The amount a refund on Amazon carried: its decision's refund_amount (what _feed sent)."""
    return Decimal(str((record.get("fact") or {}).get("refund_amount") or "0"))


class Batches(Database):

    def queued_amazon_actions(self, account: str, feed_kind: str, limit: int = 15,
                              after: int | None = None) -> Sequence[Action]:
        """Actions waiting for the next feed of this type (models.CANCEL_FEED or ADJUSTMENT_FEED), oldest
        first: approved (or never needing approval), in no batch yet, and with no earlier action of their
        order pending or claimed. `after`: only those with a greater id (the next page of a listing)."""
        # As for claims (outbox._claimable): nothing of an order goes to Amazon while an earlier action of that
        # order (e.g. the storefront cancel) is still waiting or being carried out. Otherwise Amazon's
        # cancellation can come back by poll and be decided on a storefront that is not cancelled yet.
        earlier = aliased(Action)
        blocked = exists().where(earlier.account == Action.account, earlier.amazon_order_id == Action.amazon_order_id,
                                 earlier.id < Action.id, col(earlier.status).in_(BLOCKING_STATUSES))
        query = (select(Action).where(col(Action.account) == account, col(Action.status) == QUEUED_FOR_BATCH,
                                      col(Action.batch_id).is_(None), col(Action.type).in_(_action_types(feed_kind)),
                                      ~blocked, *(() if after is None else (col(Action.id) > after,)))
                 .order_by(col(Action.id)).limit(limit))
        with self.transaction(write=False) as s:
            return s.scalars(query).all()

    def amazon_refunds_before(self, action: Action) -> list[tuple[Mapping[str, Any], Decimal]]:
        """The refunds on Amazon of this action's order that were sent, or are queued to be, before it (in
        order), each as its event's payload (a refund of lines names them there) and its amount: what Amazon
        has refunded, or will have, on the order's items by the time this one arrives. One refused or never
        approved is not counted."""
        query = (_amazon_refunds(select(Decision.record, Event.payload), action.account, action.amazon_order_id,
                                 (DONE, QUEUED_FOR_BATCH))
                 .join(Event, col(Event.id) == col(Decision.event_id)).where(col(Action.id) < action.id))
        with self.transaction(write=False) as s:
            return [(payload or {}, _refund_amount(record)) for record, payload in s.execute(query)]

    def amazon_refunds_of_order(self, account: str, amazon_order_id: str) -> list[tuple[int, Decimal]]:
        """ordersync's refunds on Amazon of this order that are sent, going out, or waiting for a person (not
        refused, rejected or failed), each as its action's id and amount, in the order they were decided: what
        Amazon has refunded, or will have, by ordersync's doing."""
        query = _amazon_refunds(select(Action.id, Decision.record), account, amazon_order_id,
                                (DONE, QUEUED_FOR_BATCH, AWAITING_APPROVAL, PENDING, CLAIMED))
        with self.transaction(write=False) as s:
            return [(action_id, _refund_amount(record)) for action_id, record in s.execute(query)]

    def amazon_refunds_sent(self, account: str, amazon_order_id: str) -> list[tuple[int, Decimal]]:
        """ordersync's refunds on Amazon of this order that Amazon may have made by now, each as its action's id and
        amount, in the order decided: done (the feed's processing report accepted it), or in a feed sent or being
        sent (in a batch, its result not read yet). One waiting for a feed or for a person has not reached Amazon,
        and one refused, rejected or failed is not counted (nor, so, one failed because ordersync stopped while
        sending it: what Amazon shows of that one is a person's to check)."""
        query = (_amazon_refunds(select(Action.id, Decision.record), account, amazon_order_id, (DONE, QUEUED_FOR_BATCH))
                 .where(or_(col(Action.status) == DONE, col(Action.batch_id).is_not(None))))
        with self.transaction(write=False) as s:
            return [(action_id, _refund_amount(record)) for action_id, record in s.execute(query)]

    def withhold(self, action_id: int, error: str, sync_status: str, result: Mapping[str, Any] | None = None, *,
                 retry: bool = False, now: datetime | None = None) -> bool:
        """An action waiting for the next feed that must not go out (send_batches found that Amazon refunded the
        order meanwhile, or could not tell): its order goes in the error view with this sync status and `error`,
        and the action keeps `error` as its last error and `result` (why, with the figures) as its result. For
        good (retry False): rejected, so resolving the order takes it out of the view and does not queue the
        action again, and a person who refunded in Seller Central, or found nothing owed, resolves it. For now
        (retry True, the reason may pass): failed, so resolving queues it again (store.resolve), to be checked
        again with the next feed. False, changing nothing, when the action is no longer waiting for a feed
        (another process put it in a batch, or withheld it, first)."""
        check_failure_status(sync_status)
        now = now or utcnow()
        with self.transaction() as s:
            action = s.scalars(select(Action).where(col(Action.id) == action_id, col(Action.status) == QUEUED_FOR_BATCH,
                                                    col(Action.batch_id).is_(None)).with_for_update()).first()
            if action is None:
                return False
            s.execute(update(Action).where(col(Action.id) == action_id)
                      .values(status=FAILED if retry else REJECTED, last_error=error,
                              result=dict(result) if result is not None else None, updated_at=now))
            if action.amazon_order_id:
                mark_order_failed(s, action.account, action.amazon_order_id, sync_status, error)
            return True

    def create_batch(self, account: str, feed_kind: str, action_ids: Sequence[int],
                     now: datetime | None = None) -> Batch:
        """Put these queued actions into a new batch, message ids 1…n in the order given. Call before
        submitting the feed, so a crash after submitting still knows what the feed carried. Raises
        NotQueued (a StoreError), recording nothing, if any of them is not queued for this feed (another process
        batched or withheld it first)."""
        if not action_ids:
            raise StoreError("a batch needs at least one action")
        types = _action_types(feed_kind)
        now = now or utcnow()
        with self.transaction() as s:
            batch = AmazonBatch(account=account, feed_type=feed_kind, status=BATCH_CREATED, created_at=now)
            s.add(batch)
            s.flush()
            taken = s.execute(update(Action).where(
                col(Action.id).in_(list(action_ids)), col(Action.account) == account,
                col(Action.status) == QUEUED_FOR_BATCH, col(Action.batch_id).is_(None), col(Action.type).in_(types))
                .values(batch_id=batch.id, updated_at=now)).rowcount
            if taken != len(set(action_ids)):
                raise NotQueued(f"only {taken} of the {len(set(action_ids))} actions are queued for a "
                                f"{feed_kind} feed of account {account}; list them again with queued_amazon_actions")
            for message_id, action_id in enumerate(action_ids, start=1):
                s.execute(insert(BatchMessage).values(batch_id=batch.id, message_id=message_id, action_id=action_id))
            actions = {a.id: a for a in s.scalars(select(Action).where(col(Action.batch_id) == batch.id)
                                                  .execution_options(populate_existing=True))}
            return Batch(batch, {number: actions[action_id] for number, action_id in enumerate(action_ids, start=1)})

    def record_batch_submitted(self, batch_id: int, feed_id: str, document_id: str | None = None,
                               now: datetime | None = None) -> None:
        with self.transaction() as s:
            changed = s.execute(update(AmazonBatch).where(col(AmazonBatch.id) == batch_id).values(
                feed_id=feed_id, document_id=document_id, status=BATCH_SUBMITTED, submitted_at=now or utcnow())).rowcount
            if not changed:
                raise NotFound(f"no batch {batch_id}")

    def record_batch_results(self, batch_id: int, results: MessageResults, now: datetime | None = None) -> bool:
        """Reconcile the processing report: each message's action becomes done, or failed with its order
        in the error view (the action's failure status, Amazon's description). Messages already
        reconciled are left alone, so a repeated call changes nothing. Returns True once every message
        of the batch has its result (the batch is then done)."""
        now = now or utcnow()
        with self.transaction() as s:
            batch = s.scalars(select(AmazonBatch).where(col(AmazonBatch.id) == batch_id).with_for_update()).first()
            if batch is None:
                raise NotFound(f"no batch {batch_id}")
            messages = {m.message_id: m for m in s.scalars(select(BatchMessage).where(col(BatchMessage.batch_id) == batch_id))}
            unknown = sorted(set(results) - set(messages))
            if unknown:
                raise StoreError(f"batch {batch_id} has no message(s) {unknown}; it has 1…{len(messages)}")
            for message_id, (ok, code, description) in results.items():
                message = messages[message_id]
                if message.ok is not None:
                    continue
                message.ok, message.result_code, message.result_description = bool(ok), code, description
                action = s.get(Action, message.action_id)
                assert action is not None
                outcome = {"feed_id": batch.feed_id, "batch_id": batch_id, "message_id": message_id, "code": code}
                if ok:
                    action.status, action.result, action.last_error = DONE, outcome, None
                else:
                    where = (f"Amazon feed {batch.feed_id} message {message_id}" if batch.feed_id
                             else f"feed message {message_id} (not sent to Amazon)")
                    error = f"{where}: {code or 'Error'}: {description or ''}".rstrip(": ")
                    action.status, action.result, action.last_error = FAILED, outcome, error
                    if action.amazon_order_id:
                        mark_order_failed(s, action.account, action.amazon_order_id,
                                          ACTIONS[action.type].failure_status, error)
                action.updated_at = now
            finished = all(m.ok is not None for m in messages.values())
            if finished:
                batch.status, batch.finished_at = BATCH_DONE, now
            return finished

    def batches_in_flight(self, account: str | None = None) -> Sequence[AmazonBatch]:
        """Batches created but not yet submitted (a crash came between) or submitted without results."""
        query = select(AmazonBatch).where(col(AmazonBatch.status).in_((BATCH_CREATED, BATCH_SUBMITTED)))
        if account is not None:
            query = query.where(col(AmazonBatch.account) == account)
        with self.transaction(write=False) as s:
            return s.scalars(query.order_by(col(AmazonBatch.id))).all()

    def batch(self, batch_id: int) -> Batch:
        with self.transaction(write=False) as s:
            batch = s.get(AmazonBatch, batch_id)
            if batch is None:
                raise NotFound(f"no batch {batch_id}")
            rows = s.execute(select(BatchMessage.message_id, Action).join(Action, col(Action.id) == col(BatchMessage.action_id))
                             .where(col(BatchMessage.batch_id) == batch_id).order_by(col(BatchMessage.message_id))).all()
            return Batch(batch, {message_id: action for message_id, action in rows})

    def batch_messages(self, batch_id: int) -> Sequence[BatchMessage]:
        with self.transaction(write=False) as s:
            return s.scalars(select(BatchMessage).where(col(BatchMessage.batch_id) == batch_id)
                             .order_by(col(BatchMessage.message_id))).all()
