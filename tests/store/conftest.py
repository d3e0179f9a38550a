"""The store suite runs on a fresh SQLite file always, and on a fresh PostgreSQL schema per test when
ORDERSYNC_TEST_PG_URL is set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import pytest

from daemon.store import Store, open_store


T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url, migrate=True)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def decided(store: Store) -> Callable[..., tuple[int, str]]:
    """Ingest one event for an order and record a decision with these actions; returns (event id, decision id)."""
    counter = iter(range(1, 10**6))

    def make(actions: list[dict[str, Any]], order: str = "111-0000001-0000001", account: str = "acme",
             rule: str = "test-rule") -> tuple[int, str]:
        n = next(counter)
        store.ingest(account, f"{order}:{n}", "order_cancelled", {"n": n}, amazon_order_id=order)
        event = [e for e in store.undecided_events(account, limit=1000) if e.natural_key == f"{order}:{n}"][0]
        decision_id = f"dec-{order}-{n}"
        record = {"decision_id": decision_id, "amazon_order_id": order, "rule": rule, "ruleset": "cancellation",
                  "rules_sha256": "ab" * 32, "actions": actions}
        return event.id, store.record_decision(event.id, record, actions)

    return make
