"""0003: the grid keeps what Amazon has refunded on each order (orders.amazon_refunded).

Refunds Amazon made are read from its Finances API one by one; whether the storefront records each is
decided on totals (daemon.facts refund_missing_in_storefront), so every refund event carries Amazon's total
for its order so far. The total is kept here, on the order's grid row, written in the transaction that
stores the refund's event: summing the events' payloads instead would read the whole inbox, which has no
index by order. It is also what a seller looks for in the grid: how much of the order Amazon gave back."""
from __future__ import annotations

from sqlalchemy import Column
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateColumn

from daemon.store.types import Money

NAME = "amazon refunded total on the grid"


def upgrade(conn: Connection) -> None:
    column = CreateColumn(Column("amazon_refunded", Money)).compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE orders ADD COLUMN {column}")
