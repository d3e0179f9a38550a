"""0001: the first schema (DESIGN.md §Store).

Frozen: later schema changes are new migrations, never edits here, so a database created by any release
reaches the same schema. The tables are spelled out rather than taken from models.py for that reason."""
from __future__ import annotations

from sqlalchemy import (JSON, Boolean, Column, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint)
from sqlalchemy.engine import Connection

from daemon.store.types import Money, UTCDateTime

NAME = "initial"


def _tables(meta: MetaData) -> None:
    def pk() -> Column:
        return Column("id", Integer, primary_key=True, autoincrement=True)

    def account() -> Column:
        return Column("account", String(100), ForeignKey("accounts.id"), nullable=False)

    Table("accounts", meta,
          Column("id", String(100), primary_key=True),
          Column("created_at", UTCDateTime, nullable=False))
    Table("cursors", meta,
          Column("account", String(100), ForeignKey("accounts.id"), primary_key=True),
          Column("kind", String(40), primary_key=True),
          Column("value", Text, nullable=False),
          Column("updated_at", UTCDateTime, nullable=False))
    Table("orders", meta, pk(), account(),
          Column("amazon_order_id", String(50), nullable=False),
          Column("storefront_order_id", String(100)),
          Column("status", String(40)),
          Column("sync_status", String(40)),
          Column("fulfillment", String(3)),
          Column("order_total", Money),
          Column("currency", String(3)),
          Column("item_count", Integer),
          Column("created_on_amazon", UTCDateTime),
          Column("archived", Boolean, nullable=False),
          Column("last_error", Text),
          Column("updated_at", UTCDateTime, nullable=False),
          UniqueConstraint("account", "amazon_order_id", name="uq_orders_account_amazon_order_id"),
          Index("ix_orders_account_sync_status", "account", "sync_status"))
    Table("order_lines", meta, pk(),
          Column("order_id", Integer, ForeignKey("orders.id"), nullable=False, index=True),
          Column("amazon_order_item_id", String(50), nullable=False),
          Column("sku", String(100)),
          Column("quantity_ordered", Integer, nullable=False),
          Column("quantity_shipped", Integer, nullable=False),
          Column("quantity_cancelled", Integer, nullable=False),
          Column("item_price", Money),
          UniqueConstraint("order_id", "amazon_order_item_id", name="uq_order_lines_item"))
    Table("events", meta, pk(), account(),
          Column("natural_key", String(300), nullable=False),
          Column("kind", String(40), nullable=False),
          Column("amazon_order_id", String(50)),
          Column("payload", JSON, nullable=False),
          Column("received_at", UTCDateTime, nullable=False),
          Column("decided_at", UTCDateTime),
          Column("error", Text),
          Column("failures", Integer, nullable=False),
          UniqueConstraint("account", "natural_key", name="uq_events_account_natural_key"),
          Index("ix_events_undecided", "decided_at", "id"))
    Table("decisions", meta,
          Column("decision_id", String(64), primary_key=True),
          Column("event_id", Integer, ForeignKey("events.id"), nullable=False, unique=True),
          account(),
          Column("amazon_order_id", String(50), index=True),
          Column("ruleset", String(100)),
          Column("rules_sha256", String(64)),
          Column("rule", String(200)),
          Column("record", JSON, nullable=False),
          Column("created_at", UTCDateTime, nullable=False))
    Table("amazon_batches", meta, pk(), account(),
          Column("feed_type", String(80), nullable=False),
          Column("feed_id", String(100)),
          Column("document_id", String(200)),
          Column("status", String(20), nullable=False, index=True),
          Column("created_at", UTCDateTime, nullable=False),
          Column("submitted_at", UTCDateTime),
          Column("finished_at", UTCDateTime))
    Table("actions", meta, pk(),
          Column("decision_id", String(64), ForeignKey("decisions.decision_id"), nullable=False),
          Column("idx", Integer, nullable=False),
          account(),
          Column("amazon_order_id", String(50)),
          Column("type", String(40), nullable=False),
          Column("params", JSON, nullable=False),
          Column("target", String(20), nullable=False),
          Column("idempotency_key", String(100), nullable=False, unique=True),
          Column("status", String(20), nullable=False),
          Column("attempts", Integer, nullable=False),
          Column("next_try_at", UTCDateTime),
          Column("claimed_by", String(200)),
          Column("claimed_until", UTCDateTime),
          Column("last_error", Text),
          Column("result", JSON),
          Column("batch_id", Integer, ForeignKey("amazon_batches.id"), index=True),
          Column("created_at", UTCDateTime, nullable=False),
          Column("updated_at", UTCDateTime, nullable=False),
          UniqueConstraint("decision_id", "idx", name="uq_actions_decision_idx"),
          Index("ix_actions_status_next_try", "status", "next_try_at"),
          Index("ix_actions_order", "account", "amazon_order_id", "id"))
    Table("amazon_batch_messages", meta, pk(),
          Column("batch_id", Integer, ForeignKey("amazon_batches.id"), nullable=False),
          Column("message_id", Integer, nullable=False),
          Column("action_id", Integer, ForeignKey("actions.id"), nullable=False, index=True),
          Column("ok", Boolean),
          Column("result_code", String(100)),
          Column("result_description", Text),
          UniqueConstraint("batch_id", "message_id", name="uq_batch_messages_message"))
    Table("rmas", meta, pk(), account(),
          Column("amazon_rma_id", String(100), nullable=False),
          Column("amazon_order_id", String(50), nullable=False, index=True),
          Column("status", String(20), nullable=False),
          Column("resolution", String(20), nullable=False),
          Column("note", Text),
          Column("decision_id", String(64)),
          Column("created_at", UTCDateTime, nullable=False),
          UniqueConstraint("account", "amazon_rma_id", name="uq_rmas_account_amazon_rma_id"))
    Table("rma_lines", meta, pk(),
          Column("rma_id", Integer, ForeignKey("rmas.id"), nullable=False, index=True),
          Column("sku", String(100), nullable=False),
          Column("quantity", Integer, nullable=False),
          Column("reason", String(200)),
          Column("kit_parent_sku", String(100)))
    Table("refunds", meta, pk(), account(),
          Column("amazon_order_id", String(50), nullable=False, index=True),
          Column("line_key", String(100), nullable=False),
          Column("principal", Money, nullable=False),
          Column("tax", Money, nullable=False),
          Column("shipping", Money, nullable=False),
          Column("decision_id", String(64), nullable=False),
          Column("created_at", UTCDateTime, nullable=False),
          UniqueConstraint("decision_id", "line_key", name="uq_refunds_decision_line"))


def upgrade(conn: Connection) -> None:
    meta = MetaData()
    _tables(meta)
    meta.create_all(conn)
