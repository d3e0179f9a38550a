"""The inbox: events in (once per natural key, with the cursor advance), undecided events out."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Mapping, Protocol, Sequence

from sqlalchemy import bindparam, insert, select, update
from sqlmodel import Session, col

from daemon.store._sql import DriverStatement, ensure_account, insert_for, inserted, now_for
from daemon.store.db import Database
from daemon.store.errors import NotFound, StoreError
from daemon.store.models import CURSOR_KINDS, Account, Cursor, Event
from daemon.store.orders import amazon_refunded_totals, record_amazon_orders, record_amazon_refunded
from daemon.store.types import utcnow


class IncomingEvent(Protocol):
    """What ingest_many stores of an event (daemon.pipeline.events.NewEvent has these)."""
    natural_key: str
    kind: str
    payload: Mapping[str, Any]
    amazon_order_id: str | None


def _cursor_upsert(insert: Any) -> Any:
    statement = insert(Cursor.__table__)
    return statement.on_conflict_do_update(index_elements=["account", "kind"], set_={
        "value": statement.excluded.value, "updated_at": statement.excluded.updated_at})


# Compiled once, as ensure_account's: built and compiled afresh, the two took a third of storing a page.
_SET_CURSOR = DriverStatement.upsert(_cursor_upsert)


class RefundSeen(Protocol):
    """A refund Amazon made, before it is an event: the event it becomes depends on what Amazon had refunded
    on the order before it (daemon.pipeline.events.AmazonRefundSeen)."""
    natural_key: str
    amazon_order_id: str
    amount: Decimal

    def event(self, refunded_in_all: Decimal) -> IncomingEvent: ...


class StoredEvent(Protocol):
    """An event as the inbox hands it out (a row with Event's columns)."""
    id: int
    account: str
    natural_key: str
    kind: str
    amazon_order_id: str | None
    payload: dict[str, Any]
    received_at: datetime
    decided_at: datetime | None
    error: str | None
    failures: int


_event = Event.__table__.c
_EVENTS = select(Event.__table__)
_STORED_KEYS = select(_event.natural_key).where(_event.account == bindparam("account"),
                                                 _event.natural_key.in_(bindparam("keys", expanding=True)))
_INSERT_EVENT = DriverStatement(insert(Event.__table__))
# Natural keys looked up per statement: well under SQLite's bound on a statement's parameters (32,766).
KEYS_PER_LOOKUP = 1000


class Inbox(Database):

    def accounts(self) -> list[str]:
        """Every account the store has seen, by name."""
        with self.transaction(write=False) as s:
            return sorted(s.scalars(select(Account.id)).all())

    def ingest(self, account: str, natural_key: str, kind: str, payload: Mapping[str, Any],
               cursor: tuple[str, str] | None = None, *, amazon_order_id: str | None = None,
               received_at: datetime | None = None) -> bool:
        """Store one event and advance the cursor, in one transaction. Returns False when an event with
        this natural key is already stored (nothing inserted); the cursor is advanced either way, so a
        replayed page still moves the poll forward."""
        if cursor is not None:
            _check_cursor_kind(cursor[0])
        with self.transaction() as s:
            ensure_account(s, account)
            new = inserted(s,
                insert_for(s, Event).values(
                    account=account, natural_key=natural_key, kind=kind, amazon_order_id=amazon_order_id,
                    payload=dict(payload), received_at=received_at or utcnow(), failures=0)
                .on_conflict_do_nothing(index_elements=["account", "natural_key"]))
            if cursor is not None:
                _set_cursor(s, account, cursor[0], cursor[1])
        return new

    def ingest_many(self, account: str, events: Iterable[IncomingEvent], cursor: tuple[str, str] | None = None, *,
                    orders: Mapping[str, Mapping[str, Any]] | None = None, orders_unread_only: bool = False,
                    received_at: datetime | None = None) -> list[bool]:
        """Store a page of events and advance the cursor, all in one transaction: what `ingest` does
        for one event, for many at the cost of one commit. Returns, per event in the order given, True
        when it was stored, False when its natural key was already stored (or came earlier in this
        page). The cursor is advanced either way, also for an empty page. Ids follow the order given
        (the rows go in as listed: one INSERT per row by sqlite3's executemany, multi-row INSERTs on
        PostgreSQL, which numbers rows as listed), so events of one order are decided in the order they
        were seen. `orders` are the grid's rows of the orders the page holds, as Amazon shows them
        ({amazon order id: daemon.store.orders.AMAZON_FIELDS}), written in the same transaction; with
        orders_unread_only, only where the grid has no Amazon side of the order yet (a read that may be older than
        the order poll's)."""
        events = list(events)
        if cursor is not None:
            _check_cursor_kind(cursor[0])
        now = received_at or utcnow()
        rows = [_event_row(account, e, now) for e in events]
        stored: set[str] = set()
        with self.transaction() as s:
            ensure_account(s, account)
            record_amazon_orders(s, account, orders or {}, unread_only=orders_unread_only)
            if rows:
                stored.update(insert_new_events(s, account, rows))
            if cursor is not None:
                _set_cursor(s, account, cursor[0], cursor[1])
        return _stored_flags(events, stored)

    def ingest_amazon_refunds(self, account: str, refunds: Sequence[RefundSeen], cursor: tuple[str, str]) -> list[bool]:
        """Store the refunds Amazon made (oldest first) as events, each carrying what Amazon has refunded on its
        order in all once it is counted, with the orders' totals on the grid and the cursor, in one
        transaction: a refund seen again is neither stored nor counted again, and a crash loses both together.
        Returns, per refund as given, whether it was stored."""
        _check_cursor_kind(cursor[0])
        with self.transaction() as s:
            ensure_account(s, account)
            # Two processes reading the same refunds must count each once: on PostgreSQL the account's row is
            # locked until this commits (an order's own row may not exist yet, so it cannot be what is locked);
            # SQLite's write lock, held since BEGIN IMMEDIATE, does the same there.
            s.execute(select(Account.id).where(col(Account.id) == account).with_for_update())
            totals = amazon_refunded_totals(s, account, list({r.amazon_order_id for r in refunds}))
            known = _stored_keys(s, account, [r.natural_key for r in refunds])
            events, changed = [], {}
            for refund in refunds:
                if refund.natural_key in known:
                    continue
                known.add(refund.natural_key)
                total = changed[refund.amazon_order_id] = totals.get(refund.amazon_order_id, Decimal(0)) + refund.amount
                totals[refund.amazon_order_id] = total
                events.append(refund.event(total))
            stored: set[str] = set()
            if events:
                now = utcnow()
                stored = insert_new_events(s, account, [_event_row(account, e, now) for e in events])
                record_amazon_refunded(s, account, changed)
            _set_cursor(s, account, cursor[0], cursor[1])
        return _stored_flags(refunds, stored)

    def set_cursor(self, account: str, kind: str, value: str) -> None:
        """Advance a cursor with no event (an empty page)."""
        _check_cursor_kind(kind)
        with self.transaction() as s:
            ensure_account(s, account)
            _set_cursor(s, account, kind, value)

    def cursor(self, account: str, kind: str) -> str | None:
        with self.transaction(write=False) as s:
            row = s.get(Cursor, (account, kind))
            return row.value if row else None

    def stored_keys(self, account: str, keys: Iterable[str]) -> set[str]:
        """Which of these natural keys the account's events have already: a source that must ask another
        API before it can make an event (the storefront poll asks Amazon) asks only for what is new."""
        with self.transaction(write=False) as s:
            return _stored_keys(s, account, list(keys))

    def get_event(self, event_id: int) -> Event:
        with self.transaction(write=False) as s:
            event = s.get(Event, event_id)
            if event is None:
                raise NotFound(f"no event {event_id}")
            return event

    def undecided_events(self, account: str | None = None, limit: int = 100, *,
                         include_failed: bool = True) -> Sequence[StoredEvent]:
        """Events with no decision yet, oldest first. Events that failed to be decided are included
        (they are retried) unless include_failed is off."""
        query = _EVENTS.where(_event.decided_at.is_(None))
        if not include_failed:
            query = query.where(_event.error.is_(None))
        return self._events(query, account, limit)

    def events_of_kind(self, account: str, kind: str, after_id: int, limit: int = 100) -> Sequence[StoredEvent]:
        """The account's events of one kind stored after the event `after_id`, oldest first, decided or not:
        for a job that looks at past events again (the buyer request reminders). Read along the primary key
        from `after_id` (the account is checked on the rows found): filtered by account in SQL, SQLite walked
        the account's natural-key index instead, every event of the account, whatever `after_id` was."""
        found: list[StoredEvent] = []
        with self.transaction(write=False) as s:
            while len(found) < limit:
                rows = s.connection().execute(_EVENTS.where(_event.kind == kind, _event.id > after_id)
                                              .order_by(_event.id).limit(limit)).all()
                found.extend(row for row in rows if row.account == account)
                if len(rows) < limit:
                    break
                after_id = rows[-1].id
        return found[:limit]

    def failed_events(self, account: str | None = None, limit: int = 100) -> Sequence[StoredEvent]:
        """Events that could not be decided (record_failure) and still have no decision."""
        return self._events(_EVENTS.where(_event.decided_at.is_(None), _event.error.is_not(None)), account, limit)

    def _events(self, query: Any, account: str | None, limit: int) -> Sequence[StoredEvent]:
        # Rows, not ORM objects: loading 500 Event instances for a decide run took twice as long as reading
        # the same rows, and nothing changes them through the session.
        if account is not None:
            query = query.where(_event.account == account)
        with self.transaction(write=False) as s:
            return s.connection().execute(query.order_by(_event.id).limit(limit)).all()

    def record_failure(self, event_id: int, error: str) -> None:
        """Keep an event that could not be decided (e.g. a fact the schema refuses) visible with its
        error; it stays undecided, so a later pass (after a rules or code fix) decides it."""
        with self.transaction() as s:
            changed = s.execute(
                update(Event).where(col(Event.id) == event_id, col(Event.decided_at).is_(None))
                .values(error=error, failures=col(Event.failures) + 1)).rowcount
            if not changed and s.get(Event, event_id) is None:
                raise NotFound(f"no event {event_id}")


def _event_row(account: str, event: IncomingEvent, received_at: datetime) -> dict[str, Any]:
    return {"account": account, "natural_key": event.natural_key, "kind": event.kind,
            "amazon_order_id": event.amazon_order_id, "payload": dict(event.payload), "received_at": received_at,
            "failures": 0}


def _stored_flags(items: Sequence[Any], stored: set[str]) -> list[bool]:
    """Per item as given (each with a natural_key), whether it was stored: a repeat later in the list was not."""
    flags = []
    for item in items:
        flags.append(item.natural_key in stored)
        stored.discard(item.natural_key)
    return flags


def insert_new_events(s: Session, account: str, rows: list[dict[str, Any]]) -> set[str]:
    """Insert the rows whose natural key is not stored yet (nor earlier in `rows`); returns their keys."""
    if s.get_bind().dialect.name != "sqlite":
        # ON CONFLICT DO NOTHING skips duplicates (already stored, or twice in this page), including one
        # another process commits meanwhile; RETURNING names the rows inserted (rowcount is no use:
        # psycopg reports -1).
        statement = (insert_for(s, Event).on_conflict_do_nothing(index_elements=["account", "natural_key"])
                     .returning(_event.natural_key))
        return set(s.connection().execute(statement, rows).scalars())
    # SQLite: the write lock is held since BEGIN IMMEDIATE, so a key not stored now cannot be stored by
    # anyone else before this commits. The keys are looked up first and the new rows inserted by the
    # driver's executemany: SQLAlchemy's multi-row INSERT with RETURNING was a third of ingesting an event.
    known = _stored_keys(s, account, [row["natural_key"] for row in rows])
    payload_json = DriverStatement.converter(s, _event.payload)
    received_at = DriverStatement.converter(s, _event.received_at)(rows[0]["received_at"])  # one for the page
    fresh: list[dict[str, Any]] = []
    for row in rows:
        if row["natural_key"] not in known:
            known.add(row["natural_key"])
            fresh.append({**row, "payload": payload_json(row["payload"]), "received_at": received_at})
    if fresh:
        _INSERT_EVENT.run(s, fresh)
    return {row["natural_key"] for row in fresh}


def _stored_keys(s: Session, account: str, keys: list[str]) -> set[str]:
    known: set[str] = set()
    for start in range(0, len(keys), KEYS_PER_LOOKUP):
        known.update(s.connection().execute(_STORED_KEYS, {"account": account, "keys": keys[start:start + KEYS_PER_LOOKUP]})
                     .scalars())
    return known


def _check_cursor_kind(kind: str) -> None:
    if kind not in CURSOR_KINDS:
        raise StoreError(f"unknown cursor kind {kind!r}; one of {', '.join(CURSOR_KINDS)}")


def _set_cursor(s: Session, account: str, kind: str, value: str) -> None:
    if not isinstance(value, str):
        raise StoreError(f"cursor value must be text (serialise JSON first), got {type(value).__name__}")
    _SET_CURSOR.run(s, [{"account": account, "kind": kind, "value": value,
                         "updated_at": now_for(s, Cursor.__table__.c.updated_at)}])
