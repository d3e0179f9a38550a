"""The store's typed API: one class, each method one transaction. The operations are grouped by job in
inbox, decisions, outbox, batches, orders, returns and metrics; this module puts them together."""
from __future__ import annotations

from daemon.store.batches import Batches
from daemon.store.decisions import Decisions
from daemon.store.inbox import Inbox
from daemon.store.metrics import Metrics
from daemon.store.orders import Orders
from daemon.store.outbox import Outbox
from daemon.store.returns import Returns


class Store(Inbox, Decisions, Outbox, Batches, Orders, Returns, Metrics):
    """What the pipeline, the CLI and the health checks use. Get one with daemon.store.open_store()."""

    def schema_version(self) -> int:
        from daemon.store.migrations import current_version
        return current_version(self)

    def require_current_schema(self) -> None:
        """Raise SchemaOutOfDate / SchemaTooNew unless the schema is what this code needs."""
        from daemon.store.migrations import require_current
        require_current(self)

    def ping(self) -> bool:
        """True when the database answers (for /readyz)."""
        from sqlalchemy import text
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False
