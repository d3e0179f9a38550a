"""Orders as the seller sees them: the grid's rows, the error view, resolve and archive."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import islice
from typing import Any, Callable, Iterable, Mapping, Sequence

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from daemon.actions import AMAZON_BOUND
from daemon.store._sql import DriverStatement, ensure_account, insert_for, now_for
from daemon.store.db import Database
from daemon.store.decisions import APPROVAL
from daemon.store.errors import NotFound, StoreError
from daemon.store.models import (AWAITING_APPROVAL, CLAIMED, DONE, FAILED, FAILED_SYNC_STATUSES, ORDER_CREATED, PENDING,
                                 QUEUED_FOR_BATCH, Action, Decision, Event, Order, OrderLine)
from daemon.store.types import to_money, utcnow

ORDER_FIELDS = frozenset({"storefront_order_id", "status", "sync_status", "fulfillment", "order_total", "currency",
                          "item_count", "created_on_amazon", "cancelled_by_seller"})
# The columns Amazon's side of an order fills (daemon.pipeline.events.grid_fields); the others are ordersync's.
AMAZON_FIELDS = ("status", "fulfillment", "order_total", "currency", "item_count", "created_on_amazon", "cancelled_by_seller")
LINE_FIELDS = frozenset({"sku", "quantity_ordered", "quantity_shipped", "quantity_cancelled", "item_price"})


@dataclass(frozen=True)
class CancellationWindow:
    """What Amazon's cancellation rate is made of, as the grid knows it (Orders.cancellation_window)."""
    since: datetime
    orders: int                   # FBM orders created on Amazon since `since`
    cancelled: frozenset[str]     # of them, the ones Amazon shows cancelled by the seller
    being_cancelled: Mapping[str, str]  # of them, the ones ordersync is cancelling on Amazon, with the reason it gives
    # Of them, those ordersync is refunding on Amazon, each with its refund's event payload (one a refund): a refund
    # of units that could not be fulfilled tells Amazon they are cancelled (daemon.pipeline.cancellation_rate).
    being_refunded: Sequence[tuple[str, Mapping[str, Any]]] = ()


def _upsert(s: Session, account: str, amazon_order_id: str, values: Mapping[str, Any]) -> Order:
    ensure_account(s, account)
    now = utcnow()
    statement = insert_for(s, Order).values(account=account, amazon_order_id=amazon_order_id, archived=False,
                                            updated_at=now, **values)
    s.execute(statement.on_conflict_do_update(index_elements=["account", "amazon_order_id"],
                                              set_={**values, "updated_at": now}))
    return s.scalars(select(Order).where(col(Order.account) == account, col(Order.amazon_order_id) == amazon_order_id)
                     .execution_options(populate_existing=True)).one()


def _amazon_upsert(*, unread_only: bool) -> Callable[[Any], Any]:
    def build(insert: Any) -> Any:
        statement = insert(Order.__table__)
        return statement.on_conflict_do_update(
            index_elements=["account", "amazon_order_id"],
            set_={name: statement.excluded[name] for name in (*AMAZON_FIELDS, "updated_at")},
            # A row with no creation day has had no Amazon side written (a refund's row, or one made by hand).
            where=Order.__table__.c.created_on_amazon.is_(None) if unread_only else None)
    return build


_RECORD_AMAZON_ORDERS = DriverStatement.upsert(_amazon_upsert(unread_only=False))
_RECORD_UNREAD_AMAZON_ORDERS = DriverStatement.upsert(_amazon_upsert(unread_only=True))
_grid = Order.__table__.c
# By primary key, after a SELECT that finds the rows that change: an UPDATE that finds its row by
# (account, amazon_order_id) itself was planned as a scan of the whole grid per row by a PostgreSQL
# without fresh statistics of the grid (autovacuum off); by primary key it never is.
_LINK_STOREFRONT = DriverStatement(
    update(Order.__table__).where(_grid.id == bindparam("order_id"))
    .values(storefront_order_id=bindparam("link"), sync_status=func.coalesce(_grid.sync_status, bindparam("first_status")),
            updated_at=bindparam("now")))


def record_amazon_orders(s: Session, account: str, orders: Mapping[str, Mapping[str, Any]], *,
                         unread_only: bool = False) -> None:
    """The grid's rows of these orders as Amazon shows them ({amazon order id: AMAZON_FIELDS}), added or
    brought up to date in one statement run; ordersync's own columns (the storefront link, the sync status,
    archived) are left as they are. With unread_only, a row that has Amazon's side already (its creation day) is
    left as it is: a read that may be older than the order poll's never undoes it. The caller has ensured the
    account."""
    if not orders:
        return
    total, created, flag = (DriverStatement.converter(s, column) for column in
                            (_grid.order_total, _grid.created_on_amazon, _grid.archived))
    now, not_archived = now_for(s, _grid.updated_at), flag(False)
    rows = []
    for amazon_order_id, fields in orders.items():
        unknown = set(fields) - set(AMAZON_FIELDS)
        if unknown:
            raise StoreError(f"order {amazon_order_id}: unknown field(s) {', '.join(sorted(unknown))}; "
                             f"Amazon's are {', '.join(AMAZON_FIELDS)}")
        values = {name: fields.get(name) for name in AMAZON_FIELDS}
        values["order_total"] = total(_amount(f"order {amazon_order_id}: order_total", values["order_total"]))
        values["created_on_amazon"] = created(values["created_on_amazon"])
        if values["cancelled_by_seller"] is not None:
            values["cancelled_by_seller"] = flag(values["cancelled_by_seller"])
        rows.append({"account": account, "amazon_order_id": amazon_order_id, **values, "archived": not_archived,
                     "updated_at": now})
    (_RECORD_UNREAD_AMAZON_ORDERS if unread_only else _RECORD_AMAZON_ORDERS).run(s, rows)


_AMAZON_REFUNDED = select(_grid.amazon_order_id, _grid.amazon_refunded).where(
    _grid.account == bindparam("account"), _grid.amazon_order_id.in_(bindparam("ids", expanding=True)),
    _grid.amazon_refunded.is_not(None))
IDS_PER_LOOKUP = 1000  # well under SQLite's bound on a statement's parameters


def amazon_refunded_totals(s: Session, account: str, amazon_order_ids: list[str]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for start in range(0, len(amazon_order_ids), IDS_PER_LOOKUP):
        rows = s.execute(_AMAZON_REFUNDED, {"account": account, "ids": amazon_order_ids[start:start + IDS_PER_LOOKUP]})
        totals.update({row.amazon_order_id: row.amazon_refunded for row in rows})
    return totals


def record_amazon_refunded(s: Session, account: str, totals: Mapping[str, Decimal]) -> None:
    """Each order's total of Amazon's refunds on its grid row; an order not in the grid yet gets its row (a
    refund of an order from before ordersync first polled), its other columns left for the order poll."""
    if not totals:
        return
    now = utcnow()
    for amazon_order_id, total in totals.items():
        statement = insert_for(s, Order).values(account=account, amazon_order_id=amazon_order_id, archived=False,
                                                amazon_refunded=total, updated_at=now)
        s.execute(statement.on_conflict_do_update(index_elements=["account", "amazon_order_id"],
                                                  set_={"amazon_refunded": total, "updated_at": now}))


def check_failure_status(sync_status: str) -> None:
    """StoreError unless `sync_status` is one the error view shows (Failed Cancellation, Failed Refund, ...)."""
    if sync_status not in FAILED_SYNC_STATUSES:
        raise StoreError(f"sync status {sync_status!r} is not a failure; one of {', '.join(FAILED_SYNC_STATUSES)}")


def mark_order_failed(s: Session, account: str, amazon_order_id: str, sync_status: str, error: str) -> None:
    _upsert(s, account, amazon_order_id, {"sync_status": sync_status, "last_error": error})


def _amount(name: str, value: Decimal | int | str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return to_money(value, name)
    except (TypeError, ValueError) as exc:
        raise StoreError(str(exc)) from None


class Orders(Database):

    def upsert_order(self, account: str, amazon_order_id: str, *,
                     lines: Sequence[Mapping[str, Any]] | None = None, **fields: Any) -> Order:
        """Create or update an order; only the fields given change. `lines` are dicts with
        amazon_order_item_id and any of sku, quantity_ordered/shipped/cancelled, item_price."""
        unknown = set(fields) - ORDER_FIELDS
        if unknown:
            raise StoreError(f"unknown order field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(ORDER_FIELDS))}")
        with self.transaction() as s:
            order = _upsert(s, account, amazon_order_id, fields)
            keys = ["order_id", "amazon_order_item_id"]
            for line in lines or ():
                values = {k: v for k, v in line.items() if k in LINE_FIELDS}
                statement = insert_for(s, OrderLine).values(
                    order_id=order.id, amazon_order_item_id=line["amazon_order_item_id"],
                    **{"quantity_ordered": 0, "quantity_shipped": 0, "quantity_cancelled": 0, **values})
                s.execute(statement.on_conflict_do_update(index_elements=keys, set_=values) if values
                          else statement.on_conflict_do_nothing(index_elements=keys))
            return order

    def link_storefront_orders(self, account: str, links: Mapping[str, str]) -> int:
        """Record which storefront order mirrors each Amazon order ({amazon order id: storefront order id},
        as deciding found them); an order with no sync status yet becomes Order Created, a failed one keeps
        its status. Orders not in the grid are left alone; only rows that change are written."""
        if not links:
            return 0
        with self.transaction() as s:
            rows = s.connection().execute(select(_grid.id, _grid.amazon_order_id, _grid.storefront_order_id, _grid.sync_status)
                                          .where(_grid.account == account, _grid.amazon_order_id.in_(list(links))))
            # Only a row that changes is written: one not linked yet, linked to another copy, or with no sync status.
            changes = [{"order_id": row.id, "link": links[row.amazon_order_id]} for row in rows
                       if row.storefront_order_id != links[row.amazon_order_id] or row.sync_status is None]
            if changes:
                now = now_for(s, _grid.updated_at)
                _LINK_STOREFRONT.run(s, [{**change, "first_status": ORDER_CREATED, "now": now} for change in changes])
        return len(changes)

    def amazon_refunded(self, account: str, amazon_order_ids: Iterable[str]) -> dict[str, Decimal]:
        """What Amazon has refunded on each of these orders in all, as far as its refunds were read
        (orders none of whose refunds were read are left out)."""
        with self.transaction(write=False) as s:
            return amazon_refunded_totals(s, account, list(amazon_order_ids))

    def mark_failed(self, account: str, amazon_order_id: str, sync_status: str, error: str) -> None:
        """Put the order into the error view with this sync status and message (a rule's reject)."""
        with self.transaction() as s:
            mark_order_failed(s, account, amazon_order_id, sync_status, error)

    def get_order(self, account: str, amazon_order_id: str) -> Order | None:
        with self.transaction(write=False) as s:
            return s.scalars(select(Order).where(col(Order.account) == account,
                                                 col(Order.amazon_order_id) == amazon_order_id)).first()

    def order_lines(self, account: str, amazon_order_id: str) -> Sequence[OrderLine]:
        with self.transaction(write=False) as s:
            return s.scalars(select(OrderLine).join(Order, col(Order.id) == col(OrderLine.order_id))
                             .where(col(Order.account) == account, col(Order.amazon_order_id) == amazon_order_id)
                             .order_by(col(OrderLine.id))).all()

    def cancellation_window(self, account: str, since: datetime) -> CancellationWindow:
        """The account's FBM orders created on Amazon since `since`: how many, which of them Amazon shows cancelled
        by the seller (a cancelled row from before the grid knew who cancelled counts too: the estimate errs towards
        counting), and which ordersync is cancelling on Amazon (a cancel_on_amazon going out or done, Amazon not
        showing the order cancelled yet), with the reason it gives. Whether the buyer asked is the caller's to say."""
        in_window = and_(_grid.account == account, _grid.fulfillment == "FBM", _grid.created_on_amazon >= since)
        by_seller = or_(_grid.cancelled_by_seller.is_(True), and_(_grid.cancelled_by_seller.is_(None), _grid.status == "Canceled"))
        with self.transaction(write=False) as s:
            orders = s.execute(select(func.count()).select_from(Order.__table__).where(in_window)).scalar_one()
            cancelled = frozenset(s.execute(select(_grid.amazon_order_id).where(in_window, by_seller)).scalars())
            # From the week's orders Amazon does not show cancelled, each an index probe of its actions: the actions
            # by status would be every cancellation ever done.
            sending = s.execute(
                select(_grid.amazon_order_id, col(Action.params)).select_from(Order.__table__).join(
                    Action, and_(col(Action.account) == _grid.account, col(Action.amazon_order_id) == _grid.amazon_order_id))
                .where(in_window, func.coalesce(_grid.status, "") != "Canceled", col(Action.type) == "cancel_on_amazon",
                       col(Action.status).in_((PENDING, CLAIMED, QUEUED_FOR_BATCH, DONE)))
                .order_by(col(Action.id))).all()
            being = {order_id: str((params or {}).get("reason_code") or "") for order_id, params in sending
                     if order_id not in cancelled}
            refunding = s.execute(
                select(_grid.amazon_order_id, col(Event.payload)).select_from(Order.__table__).join(
                    Action, and_(col(Action.account) == _grid.account, col(Action.amazon_order_id) == _grid.amazon_order_id))
                .join(Decision, col(Decision.decision_id) == col(Action.decision_id))
                .join(Event, col(Event.id) == col(Decision.event_id))
                .where(in_window, col(Action.type) == "refund_on_amazon",
                       col(Action.status).in_((PENDING, CLAIMED, QUEUED_FOR_BATCH, DONE)))
                .order_by(col(Action.id))).all()
            refunded = [(order_id, payload or {}) for order_id, payload in refunding if order_id not in cancelled]
            return CancellationWindow(since, orders, cancelled, being, refunded)

    def amazon_cancellations(self, account: str, amazon_order_ids: Iterable[str]) -> dict[str, str]:
        """ordersync's cancellations on Amazon of these orders, as the fact's amazon_cancellation names them: one with
        the buyer's reason (BuyerCanceled) going out or done is "on_its_way", one waiting for a person
        "awaiting_approval"; one with another reason (which does not answer the buyer's request as Amazon's rate
        wants) is "other_reason_on_its_way" going out or done, "other_reason" waiting for a person. What is going
        to Amazon already wins over what waits, an order's BuyerCanceled over another reason; orders with none are
        left out."""
        rank = ("on_its_way", "other_reason_on_its_way", "awaiting_approval", "other_reason")
        ids = sorted(set(amazon_order_ids))
        found: dict[str, str] = {}
        with self.transaction(write=False) as s:
            for start in range(0, len(ids), IDS_PER_LOOKUP):
                rows = s.execute(select(col(Action.amazon_order_id), col(Action.status), col(Action.params)).where(
                    col(Action.account) == account, col(Action.amazon_order_id).in_(ids[start:start + IDS_PER_LOOKUP]),
                    col(Action.type) == "cancel_on_amazon",
                    col(Action.status).in_((AWAITING_APPROVAL, PENDING, CLAIMED, QUEUED_FOR_BATCH, DONE))))
                for order_id, status, params in rows:
                    waiting = status == AWAITING_APPROVAL
                    if (params or {}).get("reason_code") == "BuyerCanceled":
                        state = "awaiting_approval" if waiting else "on_its_way"
                    else:
                        state = "other_reason" if waiting else "other_reason_on_its_way"
                    if order_id not in found or rank.index(state) < rank.index(found[order_id]):
                        found[order_id] = state
        return found

    def failed_orders(self, account: str | None = None) -> Sequence[Order]:
        """The error view: orders whose sync failed, not archived, most recently failed first."""
        query = select(Order).where(col(Order.sync_status).in_(FAILED_SYNC_STATUSES), col(Order.archived).is_(False))
        if account is not None:
            query = query.where(col(Order.account) == account)
        with self.transaction(write=False) as s:
            return s.scalars(query.order_by(col(Order.updated_at).desc(), col(Order.id).desc())).all()

    def orders(self, account: str | None = None, *, amazon_order_id: str | None = None, status: str | None = None,
               sync_status: str | None = None, fulfillment: str | None = None, min_total: Decimal | int | str | None = None,
               max_total: Decimal | int | str | None = None, created_from: datetime | None = None,
               created_to: datetime | None = None, archived: bool = False, limit: int = 200) -> Sequence[Order]:
        """The grid: every imported order, synced or failed, newest created on Amazon first (orders without a
        created date last), at most `limit`. Each filter given must hold: equal to the value given (status is
        Amazon's, sync_status one of models.SYNC_STATUSES, fulfillment FBA or FBM), min_total <= total <=
        max_total, created_from <= created on Amazon < created_to. archived=True is the Archive view (only
        archived orders); otherwise archived orders are left out."""
        if limit < 1:
            raise StoreError(f"limit must be at least 1, not {limit}")
        low, high = _amount("min_total", min_total), _amount("max_total", max_total)
        query = select(Order).where(col(Order.archived).is_(archived))
        for column, value in ((Order.account, account), (Order.amazon_order_id, amazon_order_id), (Order.status, status),
                              (Order.sync_status, sync_status), (Order.fulfillment, fulfillment)):
            if value is not None:
                query = query.where(col(column) == value)
        if created_from is not None:
            query = query.where(col(Order.created_on_amazon) >= created_from)
        if created_to is not None:
            query = query.where(col(Order.created_on_amazon) < created_to)
        query = query.order_by(col(Order.created_on_amazon).desc().nulls_last(), col(Order.id).desc())
        with self.transaction(write=False) as s:
            if low is None and high is None:
                return s.scalars(query.limit(limit)).all()
            total = col(Order.order_total)
            if s.get_bind().dialect.name != "sqlite":  # NUMERIC: the database compares exactly
                query = query.where(*([total >= low] if low is not None else []), *([total <= high] if high is not None else []))
                return s.scalars(query.limit(limit)).all()
            # SQLite keeps money as text, which compares "9.50" > "10.00", and a CAST to REAL is a float: the
            # totals are compared as Decimals here, over the rows the other filters let through, read as a
            # stream until `limit` are in range (one query; memory stays bounded).
            rows = s.scalars(query.where(total.is_not(None)).execution_options(yield_per=500))
            return list(islice((o for o in rows if (low is None or o.order_total >= low)
                                and (high is None or o.order_total <= high)), limit))

    def resolve(self, account: str, amazon_order_id: str) -> int:
        """Resolve (retry): the order's failed actions are queued again (Amazon-bound ones for the next
        batch) with a fresh count of attempts, and the order leaves the error view. Returns how many."""
        with self.transaction() as s:
            order = self._order_for_update(s, account, amazon_order_id)
            requeued = 0
            mine = (col(Action.account) == account, col(Action.amazon_order_id) == amazon_order_id,
                    col(Action.status) == FAILED)
            # An Amazon-bound action that never reached a batch (stopped by its storefront action's failure)
            # waits for a person again where its decision asked for approval; resolving is no approval.
            approval = aliased(Action)
            asked = exists().where(approval.decision_id == Action.decision_id, approval.type == APPROVAL)
            amazon = col(Action.type).in_(AMAZON_BOUND)
            for kinds, status in ((and_(amazon, col(Action.batch_id).is_(None), asked), AWAITING_APPROVAL),
                                  (amazon, QUEUED_FOR_BATCH),
                                  (col(Action.type).not_in(AMAZON_BOUND), PENDING)):
                requeued += s.execute(update(Action).where(*mine, kinds).values(
                    status=status, attempts=0, next_try_at=None, batch_id=None, updated_at=utcnow())).rowcount
            s.execute(update(Order).where(col(Order.id) == order.id).values(
                sync_status=ORDER_CREATED if order.storefront_order_id else None, last_error=None,
                updated_at=utcnow()))
            return requeued

    def archive(self, account: str, amazon_order_id: str, archived: bool = True) -> None:
        """Hide the order from the grid and the error view (archived=False brings it back)."""
        with self.transaction() as s:
            order = self._order_for_update(s, account, amazon_order_id)
            s.execute(update(Order).where(col(Order.id) == order.id).values(archived=archived, updated_at=utcnow()))

    @staticmethod
    def _order_for_update(s: Session, account: str, amazon_order_id: str) -> Order:
        order = s.scalars(select(Order).where(col(Order.account) == account,
                                              col(Order.amazon_order_id) == amazon_order_id).with_for_update()).first()
        if order is None:
            raise NotFound(f"no order {amazon_order_id} in account {account}")
        return order
