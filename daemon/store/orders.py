"""Orders as the seller sees them: the grid's rows, the error view, resolve and archive."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from sqlalchemy import select, update
from sqlmodel import Session, col

from daemon.actions import AMAZON_BOUND
from daemon.store._sql import insert_for
from daemon.store.db import Database
from daemon.store.errors import NotFound, StoreError
from daemon.store.inbox import ensure_account
from daemon.store.models import (FAILED, FAILED_SYNC_STATUSES, ORDER_CREATED, PENDING, QUEUED_FOR_BATCH, Action,
                                 Order, OrderLine)
from daemon.store.types import utcnow

ORDER_FIELDS = frozenset({"storefront_order_id", "status", "sync_status", "fulfillment", "order_total", "currency",
                          "item_count", "created_on_amazon"})
LINE_FIELDS = frozenset({"sku", "quantity_ordered", "quantity_shipped", "quantity_cancelled", "item_price"})


def _upsert(s: Session, account: str, amazon_order_id: str, values: Mapping[str, Any]) -> Order:
    ensure_account(s, account)
    now = utcnow()
    statement = insert_for(s, Order).values(account=account, amazon_order_id=amazon_order_id, archived=False,
                                            updated_at=now, **values)
    s.execute(statement.on_conflict_do_update(index_elements=["account", "amazon_order_id"],
                                              set_={**values, "updated_at": now}))
    return s.scalars(select(Order).where(col(Order.account) == account, col(Order.amazon_order_id) == amazon_order_id)
                     .execution_options(populate_existing=True)).one()


def mark_order_failed(s: Session, account: str, amazon_order_id: str, sync_status: str, error: str) -> None:
    _upsert(s, account, amazon_order_id, {"sync_status": sync_status, "last_error": error})


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

    def failed_orders(self, account: str | None = None) -> Sequence[Order]:
        """The error view: orders whose sync failed, not archived, most recently failed first."""
        query = select(Order).where(col(Order.sync_status).in_(FAILED_SYNC_STATUSES), col(Order.archived).is_(False))
        if account is not None:
            query = query.where(col(Order.account) == account)
        with self.transaction(write=False) as s:
            return s.scalars(query.order_by(col(Order.updated_at).desc(), col(Order.id).desc())).all()

    def archived_orders(self, account: str | None = None) -> Sequence[Order]:
        query = select(Order).where(col(Order.archived).is_(True))
        if account is not None:
            query = query.where(col(Order.account) == account)
        with self.transaction(write=False) as s:
            return s.scalars(query.order_by(col(Order.id))).all()

    def resolve(self, account: str, amazon_order_id: str) -> int:
        """Resolve (retry): the order's failed actions are queued again (Amazon-bound ones for the next
        batch) with a fresh count of attempts, and the order leaves the error view. Returns how many."""
        with self.transaction() as s:
            order = self._order_for_update(s, account, amazon_order_id)
            requeued = 0
            mine = (col(Action.account) == account, col(Action.amazon_order_id) == amazon_order_id,
                    col(Action.status) == FAILED)
            for kinds, status in ((col(Action.type).in_(AMAZON_BOUND), QUEUED_FOR_BATCH),
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
