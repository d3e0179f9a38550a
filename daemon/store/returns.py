"""RMAs created from Amazon's returns report, and the ledger of money refunded per order line."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

from sqlalchemy import insert, select
from sqlmodel import col

from daemon.store._sql import ensure_account, insert_for, inserted
from daemon.store.db import Database
from daemon.store.models import Refund, Rma, RmaLine
from daemon.store.types import utcnow


@dataclass(frozen=True)
class RmaLineIn:
    sku: str
    quantity: int
    reason: str | None = None
    kit_parent_sku: str | None = None  # the kit this component was returned as (DOMAIN rule 10)


@dataclass(frozen=True)
class RefundLineIn:
    line_key: str                       # the Amazon order item id (or SKU) refunded
    principal: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)
    shipping: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return Decimal(self.principal) + Decimal(self.tax) + Decimal(self.shipping)


class Returns(Database):

    def create_rma(self, account: str, amazon_rma_id: str, amazon_order_id: str, lines: Sequence[RmaLineIn], *,
                   tracking_number: str | None = None, decision_id: str | None = None) -> tuple[Rma, bool]:
        """Create the RMA (status Open, resolution Refund, the label's tracking number as its note) once
        per Amazon RMA id; returns it and whether it was created now. Kits are expanded by the caller."""
        with self.transaction() as s:
            ensure_account(s, account)
            note = f"Return label tracking number: {tracking_number}" if tracking_number else None
            created = inserted(s, insert_for(s, Rma).values(
                account=account, amazon_rma_id=amazon_rma_id, amazon_order_id=amazon_order_id, status="Open",
                resolution="Refund", note=note, decision_id=decision_id, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["account", "amazon_rma_id"]))
            rma = s.scalars(select(Rma).where(col(Rma.account) == account, col(Rma.amazon_rma_id) == amazon_rma_id)).one()
            if created:
                for line in lines:
                    s.execute(insert(RmaLine).values(rma_id=rma.id, sku=line.sku, quantity=line.quantity,
                                                     reason=line.reason, kit_parent_sku=line.kit_parent_sku))
            return rma, created

    def rma_lines(self, rma_id: int) -> Sequence[RmaLine]:
        with self.transaction(write=False) as s:
            return s.scalars(select(RmaLine).where(col(RmaLine.rma_id) == rma_id).order_by(col(RmaLine.id))).all()

    def rmas_of(self, account: str, amazon_order_id: str) -> Sequence[Rma]:
        with self.transaction(write=False) as s:
            return s.scalars(select(Rma).where(col(Rma.account) == account, col(Rma.amazon_order_id) == amazon_order_id)
                             .order_by(col(Rma.id))).all()

    def record_refund(self, account: str, amazon_order_id: str, decision_id: str, lines: Sequence[RefundLineIn]) -> int:
        """Add a decision's refund to the ledger, one row per line; recording the same decision's line
        again adds nothing. Returns the rows added."""
        added = 0
        with self.transaction() as s:
            ensure_account(s, account)
            for line in lines:
                added += inserted(s, insert_for(s, Refund).values(
                    account=account, amazon_order_id=amazon_order_id, line_key=line.line_key,
                    principal=line.principal, tax=line.tax, shipping=line.shipping, decision_id=decision_id,
                    created_at=utcnow()).on_conflict_do_nothing(index_elements=["decision_id", "line_key"]))
        return added

    def refunds_of(self, account: str, amazon_order_id: str) -> Sequence[Refund]:
        with self.transaction(write=False) as s:
            return s.scalars(select(Refund).where(col(Refund.account) == account,
                                                  col(Refund.amazon_order_id) == amazon_order_id)
                             .order_by(col(Refund.id))).all()

    def refunded_total(self, account: str, amazon_order_id: str) -> Decimal:
        """Principal + tax + shipping refunded so far (summed here, exactly, not by the database:
        SQLite would sum through floats)."""
        return sum((Decimal(r.principal) + Decimal(r.tax) + Decimal(r.shipping)
                    for r in self.refunds_of(account, amazon_order_id)), Decimal(0))
