"""The store (DESIGN.md §Store, docs/store.md): SQLite or PostgreSQL through SQLModel.

    store = open_store("sqlite:///var/lib/ordersync/ordersync.db", migrate=True)
    store.ingest(account, natural_key, kind, payload, cursor=("orders", "2025-01-01T00:00:00Z"))
"""
from daemon.store.batches import Batch
from daemon.store.db import open_store, redact
from daemon.store.decisions import DecisionToRecord, Recorded
from daemon.store.errors import NotFound, SchemaOutOfDate, SchemaTooNew, StoreError
from daemon.store.metrics import Counts
from daemon.store.migrations import upgrade
from daemon.store.repo import Store
from daemon.store.returns import RefundLineIn, RmaLineIn

__all__ = ["Batch", "Counts", "DecisionToRecord", "NotFound", "Recorded", "RefundLineIn", "RmaLineIn", "SchemaOutOfDate", "SchemaTooNew", "Store",
           "StoreError", "open_store", "redact", "upgrade"]
