"""The tables of DESIGN.md §Store, as SQLModel classes.

These describe the schema the code expects *now*; the database gets there only through
`daemon/store/migrations` (a test holds the two to the same tables, columns and indexes)."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import JSON, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from daemon.store.types import Money, UTCDateTime

# -- vocabularies --------------------------------------------------------------------------------------
CURSOR_KINDS = ("orders", "order_report", "returns", "storefront_cancellations", "amazon_refunds", "buyer_request_reminders",
                "storefront_refunds")

# Sync status of an order (DOMAIN.md "Sync status"); the Failed ones put it in the error view.
ORDER_CREATED, SHIPPED = "Order Created", "Shipped"
FAILED_ORDER, FAILED_SHIPMENT = "Failed Order", "Failed Shipment"
FAILED_REFUND, FAILED_CANCELLATION = "Failed Refund", "Failed Cancellation"
FAILED_SYNC_STATUSES = (FAILED_ORDER, FAILED_SHIPMENT, FAILED_REFUND, FAILED_CANCELLATION)
SYNC_STATUSES = (ORDER_CREATED, SHIPPED, *FAILED_SYNC_STATUSES)

# States of an outbox action (docs/store.md draws the transitions).
PENDING, AWAITING_APPROVAL, QUEUED_FOR_BATCH = "pending", "awaiting_approval", "queued_for_batch"
CLAIMED, DONE, FAILED, REJECTED = "claimed", "done", "failed", "rejected"
ACTION_STATUSES = (PENDING, AWAITING_APPROVAL, QUEUED_FOR_BATCH, CLAIMED, DONE, FAILED, REJECTED)
# An action in one of these states keeps every later action of its order from being claimed.
BLOCKING_STATUSES = (PENDING, CLAIMED)
UNFINISHED_STATUSES = (PENDING, CLAIMED, QUEUED_FOR_BATCH, AWAITING_APPROVAL)

# Amazon batches.
BATCH_CREATED, BATCH_SUBMITTED, BATCH_DONE = "created", "submitted", "done"
CANCEL_FEED = "POST_ORDER_ACKNOWLEDGEMENT_DATA"
ADJUSTMENT_FEED = "POST_PAYMENT_ADJUSTMENT_DATA"
FEED_FOR_ACTION = {"cancel_on_amazon": CANCEL_FEED, "refund_on_amazon": ADJUSTMENT_FEED}

RMA_OPEN, RESOLUTION_REFUND = "Open", "Refund"


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"
    version: int = Field(primary_key=True, sa_type=Integer, sa_column_kwargs={"autoincrement": False})
    name: str = Field(sa_type=String(100))
    applied_at: datetime = Field(sa_type=UTCDateTime)


class Account(SQLModel, table=True):
    __tablename__ = "accounts"
    id: str = Field(primary_key=True, sa_type=String(100))
    created_at: datetime = Field(sa_type=UTCDateTime)


class Cursor(SQLModel, table=True):
    __tablename__ = "cursors"
    account: str = Field(primary_key=True, sa_type=String(100), foreign_key="accounts.id")
    kind: str = Field(primary_key=True, sa_type=String(40))
    value: str = Field(sa_type=Text)  # opaque to the store: a timestamp, a NextToken or a JSON document
    updated_at: datetime = Field(sa_type=UTCDateTime)


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("account", "amazon_order_id", name="uq_orders_account_amazon_order_id"),
        Index("ix_orders_account_sync_status", "account", "sync_status"),
        Index("ix_orders_account_created", "account", "created_on_amazon"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    account: str = Field(sa_type=String(100), foreign_key="accounts.id")
    amazon_order_id: str = Field(sa_type=String(50))
    storefront_order_id: Optional[str] = Field(default=None, sa_type=String(100))
    status: Optional[str] = Field(default=None, sa_type=String(40))        # Amazon order status
    sync_status: Optional[str] = Field(default=None, sa_type=String(40))   # Order Created, …, Failed Refund
    fulfillment: Optional[str] = Field(default=None, sa_type=String(3))    # FBA | FBM
    order_total: Optional[Decimal] = Field(default=None, sa_type=Money)
    amazon_refunded: Optional[Decimal] = Field(default=None, sa_type=Money)  # Amazon's refunds in all (Finances API)
    # Some of it cancelled by the seller, not at the buyer's request: Amazon's cancellation rate counts it.
    cancelled_by_seller: Optional[bool] = Field(default=None)
    currency: Optional[str] = Field(default=None, sa_type=String(3))
    item_count: Optional[int] = Field(default=None)
    created_on_amazon: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    archived: bool = Field(default=False)
    last_error: Optional[str] = Field(default=None, sa_type=Text)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class OrderLine(SQLModel, table=True):
    __tablename__ = "order_lines"
    __table_args__ = (UniqueConstraint("order_id", "amazon_order_item_id", name="uq_order_lines_item"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    amazon_order_item_id: str = Field(sa_type=String(50))
    sku: Optional[str] = Field(default=None, sa_type=String(100))
    quantity_ordered: int = 0
    quantity_shipped: int = 0
    quantity_cancelled: int = 0
    item_price: Optional[Decimal] = Field(default=None, sa_type=Money)


class Event(SQLModel, table=True):
    """The inbox: each change seen on Amazon, once (natural key)."""
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("account", "natural_key", name="uq_events_account_natural_key"),
        Index("ix_events_undecided", "decided_at", "id"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    account: str = Field(sa_type=String(100), foreign_key="accounts.id")
    natural_key: str = Field(sa_type=String(300))
    kind: str = Field(sa_type=String(40))
    amazon_order_id: Optional[str] = Field(default=None, sa_type=String(50))
    payload: dict[str, Any] = Field(sa_type=JSON)
    received_at: datetime = Field(sa_type=UTCDateTime)
    decided_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    error: Optional[str] = Field(default=None, sa_type=Text)
    failures: int = 0


class Decision(SQLModel, table=True):
    __tablename__ = "decisions"
    decision_id: str = Field(primary_key=True, sa_type=String(64))
    event_id: int = Field(foreign_key="events.id", unique=True)  # one decision per event, enforced here
    account: str = Field(sa_type=String(100), foreign_key="accounts.id")
    amazon_order_id: Optional[str] = Field(default=None, sa_type=String(50), index=True)
    ruleset: Optional[str] = Field(default=None, sa_type=String(100))
    rules_sha256: Optional[str] = Field(default=None, sa_type=String(64))
    rule: Optional[str] = Field(default=None, sa_type=String(200))
    record: dict[str, Any] = Field(sa_type=JSON)  # the audit record (daemon.audit.record), as logged
    created_at: datetime = Field(sa_type=UTCDateTime)


class AmazonBatch(SQLModel, table=True):
    __tablename__ = "amazon_batches"
    id: Optional[int] = Field(default=None, primary_key=True)
    account: str = Field(sa_type=String(100), foreign_key="accounts.id")
    feed_type: str = Field(sa_type=String(80))
    feed_id: Optional[str] = Field(default=None, sa_type=String(100))
    document_id: Optional[str] = Field(default=None, sa_type=String(200))
    status: str = Field(sa_type=String(20), index=True)  # created | submitted | done
    created_at: datetime = Field(sa_type=UTCDateTime)
    submitted_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    finished_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)


class Action(SQLModel, table=True):
    """The outbox. `id` order is decision order then index: the order actions of one order go out in."""
    __tablename__ = "actions"
    __table_args__ = (
        UniqueConstraint("decision_id", "idx", name="uq_actions_decision_idx"),
        Index("ix_actions_status_next_try", "status", "next_try_at"),
        Index("ix_actions_order", "account", "amazon_order_id", "id"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    decision_id: str = Field(sa_type=String(64), foreign_key="decisions.decision_id")
    idx: int
    account: str = Field(sa_type=String(100), foreign_key="accounts.id")
    amazon_order_id: Optional[str] = Field(default=None, sa_type=String(50))
    type: str = Field(sa_type=String(40))
    params: dict[str, Any] = Field(sa_type=JSON)
    target: str = Field(sa_type=String(20))
    # "{decision_id}:{idx}": unique because (decision_id, idx) is (migration 0002).
    idempotency_key: str = Field(sa_type=String(100))
    status: str = Field(sa_type=String(20))
    attempts: int = 0
    next_try_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    claimed_by: Optional[str] = Field(default=None, sa_type=String(200))
    claimed_until: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    last_error: Optional[str] = Field(default=None, sa_type=Text)
    result: Optional[dict[str, Any]] = Field(default=None, sa_type=JSON)
    batch_id: Optional[int] = Field(default=None, foreign_key="amazon_batches.id", index=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class BatchMessage(SQLModel, table=True):
    __tablename__ = "amazon_batch_messages"
    __table_args__ = (UniqueConstraint("batch_id", "message_id", name="uq_batch_messages_message"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    batch_id: int = Field(foreign_key="amazon_batches.id")
    message_id: int
    action_id: int = Field(foreign_key="actions.id", index=True)
    ok: Optional[bool] = None
    result_code: Optional[str] = Field(default=None, sa_type=String(100))
    result_description: Optional[str] = Field(default=None, sa_type=Text)


class Rma(SQLModel, table=True):
    __tablename__ = "rmas"
    __table_args__ = (UniqueConstraint("account", "amazon_rma_id", name="uq_rmas_account_amazon_rma_id"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    account: str = Field(sa_type=String(100), foreign_key="accounts.id")
    amazon_rma_id: str = Field(sa_type=String(100))
    amazon_order_id: str = Field(sa_type=String(50), index=True)
    status: str = Field(default=RMA_OPEN, sa_type=String(20))
    resolution: str = Field(default=RESOLUTION_REFUND, sa_type=String(20))
    note: Optional[str] = Field(default=None, sa_type=Text)  # the return label's tracking number
    decision_id: Optional[str] = Field(default=None, sa_type=String(64))
    created_at: datetime = Field(sa_type=UTCDateTime)


class RmaLine(SQLModel, table=True):
    __tablename__ = "rma_lines"
    id: Optional[int] = Field(default=None, primary_key=True)
    rma_id: int = Field(foreign_key="rmas.id", index=True)
    sku: str = Field(sa_type=String(100))
    quantity: int
    reason: Optional[str] = Field(default=None, sa_type=String(200))
    kit_parent_sku: Optional[str] = Field(default=None, sa_type=String(100))  # set on a kit's component


class Refund(SQLModel, table=True):
    """The refunds ledger: one row per order line per decision that refunded it."""
    __tablename__ = "refunds"
    __table_args__ = (UniqueConstraint("decision_id", "line_key", name="uq_refunds_decision_line"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    account: str = Field(sa_type=String(100), foreign_key="accounts.id")
    amazon_order_id: str = Field(sa_type=String(50), index=True)
    line_key: str = Field(sa_type=String(100))  # Amazon order item id (or SKU) of the refunded line
    principal: Decimal = Field(default=Decimal(0), sa_type=Money)
    tax: Decimal = Field(default=Decimal(0), sa_type=Money)
    shipping: Decimal = Field(default=Decimal(0), sa_type=Money)
    decision_id: str = Field(sa_type=String(64))
    created_at: datetime = Field(sa_type=UTCDateTime)
