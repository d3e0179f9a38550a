"""0004: the grid says which orders the seller cancelled (orders.cancelled_by_seller), and finds an account's
orders by the day Amazon created them (ix_orders_account_created).

Amazon's cancellation rate is the seller's cancellations among the orders of the last 7 days
(daemon.pipeline.cancellation_rate). Who cancelled is in Amazon's answer when the order is polled and nowhere
later, so the poll keeps it on the order's row; the index lets each decision about a cancellation count the
week's orders without reading the account's whole grid. Rows from before this step are left unknown (null):
an order cancelled before it is not counted, which errs by at most a week of cancellations."""
from __future__ import annotations

from sqlalchemy import Boolean, Column
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateColumn

NAME = "cancelled by the seller, and orders by creation day"


def upgrade(conn: Connection) -> None:
    column = CreateColumn(Column("cancelled_by_seller", Boolean)).compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE orders ADD COLUMN {column}")
    conn.exec_driver_sql("CREATE INDEX ix_orders_account_created ON orders (account, created_on_amazon)")
