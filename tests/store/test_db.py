"""Opening the store: bad input gets a clear message naming the URL, never its password."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import text

from daemon.store import Store, StoreError, open_store
from tests.store.conftest import T0


def test_unreachable_postgresql_names_url_without_password() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("postgresql+psycopg://ordersync:hunter2-secret@127.0.0.1:1/orders")
    message = str(caught.value)
    assert "hunter2-secret" not in message
    assert "postgresql+psycopg://ordersync:***@127.0.0.1:1/orders" in message
    assert "reachable" in message


@pytest.mark.parametrize("url, expected", [
    ("not a url at all", "is not a database URL"),
    ("mysql://root:topsecret@localhost/db", "unsupported database 'mysql'"),
    ("sqlite://", "in-memory SQLite"),
    ("sqlite:////no/such/folder/ordersync.db", "folder /no/such/folder does not exist"),
    # SQLAlchemy reads what follows '?' as options and would open /tmp/orders without a word.
    ("sqlite:////tmp/orders?2025.db", r"'2025.db' after '\?' is not an option .* would open /tmp/orders; .* %3F"),
    ("sqlite:////tmp/orders?shop=eu.db", r"'shop=eu.db' after '\?'"),
])
def test_bad_urls_are_refused_clearly(url: str, expected: str) -> None:
    with pytest.raises(StoreError, match=expected) as caught:
        open_store(url)
    assert "topsecret" not in str(caught.value)


def test_sqlite_runs_in_wal_with_foreign_keys_and_busy_timeout(tmp_path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'o.db'}") as store:
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def test_sqlite_writes_reach_the_database_file_itself_soon_without_the_writer_checkpointing(tmp_path) -> None:
    """The WAL is copied back into the database file by the store's own checkpoint thread, not by the
    committing writer (whose threshold is far above what is written here): a copy of the .db file alone,
    as a backup that forgets the -wal file takes, holds what was committed a moment ago."""
    import shutil
    import sqlite3
    import time

    path = tmp_path / "o.db"
    with open_store(f"sqlite:///{path}", migrate=True) as store:
        store.ingest("acme", "k1", "order_cancelled", {"n": 1})
        deadline = time.monotonic() + 10
        while True:
            shutil.copyfile(path, tmp_path / "copy.db")
            with sqlite3.connect(tmp_path / "copy.db") as copy:
                if copy.execute("SELECT count(*) FROM sqlite_master WHERE name = 'events'").fetchone()[0] and \
                        copy.execute("SELECT count(*) FROM events").fetchone()[0] == 1:
                    break
            assert time.monotonic() < deadline, "the database file never received the committed event"
            time.sleep(0.05)
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() > 1000
        checkpointer = store.checkpointer
    assert checkpointer is not None and not checkpointer.running  # closing the store stops it


def test_money_round_trips_exactly(store: Store) -> None:
    amount = Decimal("123456789012.3456")
    store.upsert_order("acme", "111-1", order_total=amount, lines=[
        {"amazon_order_item_id": "i1", "sku": "S", "quantity_ordered": 3, "item_price": Decimal("0.10")}])
    order = store.get_order("acme", "111-1")
    assert order is not None and order.order_total == amount and isinstance(order.order_total, Decimal)
    # 0.1 three times is 0.3 exactly here, not 0.30000000000000004.
    assert store.order_lines("acme", "111-1")[0].item_price * 3 == Decimal("0.30")


def test_a_float_amount_is_refused(store: Store) -> None:
    with pytest.raises(Exception, match="not the float"):
        store.upsert_order("acme", "111-2", order_total=19.99)
    assert store.get_order("acme", "111-2") is None


def test_times_come_back_aware_and_naive_ones_are_refused(store: Store) -> None:
    store.upsert_order("acme", "111-3", created_on_amazon=T0)
    order = store.get_order("acme", "111-3")
    assert order is not None and order.created_on_amazon == T0 and order.created_on_amazon.tzinfo is not None
    with pytest.raises(Exception, match="naive datetime"):
        store.upsert_order("acme", "111-4", created_on_amazon=datetime(2025, 1, 1))


def test_ping(store: Store) -> None:
    assert store.ping()


def test_a_question_mark_in_a_sqlite_files_name_is_written_percent_encoded_and_opens_that_file(tmp_path) -> None:
    with open_store(f"sqlite:///{tmp_path}/orders%3F2025.db?timeout=5", migrate=True) as store:
        store.set_cursor("acme", "orders", "T1")
    assert (tmp_path / "orders?2025.db").exists() and not (tmp_path / "orders").exists()
