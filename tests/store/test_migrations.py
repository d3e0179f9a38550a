"""Migrations: from empty to current, re-run harmless, a newer database refused, schema = models."""
from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from daemon.cli.main import main
from daemon.store import SchemaOutOfDate, SchemaTooNew, open_store, upgrade
from daemon.store import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from daemon.store.migrations import head


def test_upgrade_from_empty_then_rerun_is_a_no_op(db_url: str) -> None:
    with open_store(db_url) as store:
        assert store.schema_version() == 0
        with pytest.raises(SchemaOutOfDate, match="ordersync db upgrade"):
            store.require_current_schema()
        assert upgrade(store) == list(range(1, head() + 1))
        store.ingest("acme", "k1", "order_cancelled", {"a": 1})
        assert upgrade(store) == []
        store.require_current_schema()
        # The data written before the second run is still there.
        assert [e.natural_key for e in store.undecided_events()] == ["k1"]


def test_a_database_newer_than_the_code_is_refused_and_untouched(db_url: str) -> None:
    with open_store(db_url, migrate=True) as store:
        with store.engine.begin() as conn:
            conn.execute(text("INSERT INTO schema_version (version, name, applied_at) "
                              "VALUES (:v, 'from the future', CURRENT_TIMESTAMP)"), {"v": head() + 1})
        with pytest.raises(SchemaTooNew, match=f"schema version {head() + 1}.*only up to {head()}"):
            upgrade(store)
        with pytest.raises(SchemaTooNew):
            store.require_current_schema()
        assert store.schema_version() == head() + 1


def test_migrated_schema_matches_the_models(store) -> None:
    """A model changed without a migration (or the reverse) fails here, not in production."""
    inspector = inspect(store.engine)
    expected = {table.name: table for table in SQLModel.metadata.sorted_tables}
    assert set(inspector.get_table_names()) == set(expected)
    for name, table in expected.items():
        columns = {c["name"]: c for c in inspector.get_columns(name)}
        assert set(columns) == {c.name for c in table.columns}, name
        for column in table.columns:
            if not column.primary_key:
                assert columns[column.name]["nullable"] == column.nullable, f"{name}.{column.name}"
        indexes = {i["name"] for i in inspector.get_indexes(name)}
        assert {i.name for i in table.indexes} <= indexes, name
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)}
        uniques |= {tuple(i["column_names"]) for i in inspector.get_indexes(name) if i["unique"]}
        modelled = {tuple(c.name for c in constraint.columns) for constraint in table.constraints
                    if constraint.__class__.__name__ == "UniqueConstraint"}
        modelled |= {tuple(c.name for c in index.columns) for index in table.indexes if index.unique}
        # Both ways: a uniqueness the models dropped must be gone from the database too (0002).
        assert uniques == modelled, name


def test_version_1_actions_keep_their_rows_and_links_through_0002(db_url: str, monkeypatch) -> None:
    """0002 rebuilds SQLite's actions table: every action, its id and the batch messages naming it stay;
    foreign keys are enforced again afterwards; (decision_id, idx) is still unique."""
    from daemon.store import migrations
    from daemon.store.models import CANCEL_FEED
    with open_store(db_url) as store:
        monkeypatch.setattr(migrations, "STEPS", migrations.STEPS[:1])
        assert upgrade(store) == [1]
        store.ingest("acme", "k1", "order_cancelled", {}, amazon_order_id="A")
        event = store.undecided_events("acme")[0]
        store.record_decision(event.id, {"decision_id": "d1", "amazon_order_id": "A"},
                              [{"type": "cancel_on_amazon", "reason_code": "NoInventory"}, {"type": "add_tag", "tag": "x"}])
        batch = store.create_batch("acme", CANCEL_FEED, [a.id for a in store.queued_amazon_actions("acme", CANCEL_FEED)])
        with store.engine.connect() as conn:
            before = conn.execute(text("SELECT * FROM actions ORDER BY id")).all()
        monkeypatch.undo()
        assert upgrade(store) == list(range(2, head() + 1))
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT * FROM actions ORDER BY id")).all() == before
        assert [m.action_id for m in store.batch_messages(batch.batch.id)] == [before[0].id]
        assert [a.idempotency_key for a in store.actions_of("d1")] == ["d1:0", "d1:1"]
        with pytest.raises(Exception, match="(?i)foreign key"):
            with store.engine.begin() as conn:
                conn.execute(text("UPDATE actions SET decision_id = 'nobody' WHERE id = :id"), {"id": before[0].id})
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            with store.engine.begin() as conn:
                conn.execute(text("UPDATE actions SET idx = 0 WHERE id = :id"), {"id": before[1].id})


def test_cli_upgrade_reports_what_it_did(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--db", db_url]) == 0
    assert f"applied migration(s) 1" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", db_url]) == 0
    assert "is current, nothing to do" in capsys.readouterr().out
    assert main(["db", "status", "--db", db_url]) == 0


def test_cli_without_database_or_with_bad_one_exits_2(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.delenv("ORDERSYNC_DB", raising=False)
    assert main(["db", "upgrade"]) == 2
    assert "pass --db URL" in capsys.readouterr().err
    assert main(["db", "upgrade", "--db", "postgresql+psycopg://u:pw-xyz@127.0.0.1:1/x"]) == 2
    err = capsys.readouterr().err
    assert "cannot open the database" in err and "pw-xyz" not in err


def test_cli_help_describes_upgrade(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["db", "upgrade", "--help"])
    out = capsys.readouterr().out
    assert "--db URL" in out and "newer ordersync" in out


def test_version_2_grid_rows_keep_their_columns_and_start_with_no_amazon_refunds(db_url: str, monkeypatch) -> None:
    """0003 adds orders.amazon_refunded to a grid that has rows: they stay as they were, with nothing refunded
    by Amazon yet known, and the first refund read adds to nothing."""
    from decimal import Decimal

    from daemon.store import migrations
    with open_store(db_url) as store:
        monkeypatch.setattr(migrations, "STEPS", migrations.STEPS[:2])
        assert upgrade(store) == [1, 2]
        with store.engine.begin() as conn:
            conn.execute(text("INSERT INTO accounts (id, created_at) VALUES ('acme', '2025-01-01 00:00:00')"))
            conn.execute(text("INSERT INTO orders (account, amazon_order_id, status, order_total, archived, updated_at) "
                              "VALUES ('acme', 'A-1', 'Shipped', '25.00', false, '2025-01-01 00:00:00')"))
        monkeypatch.undo()
        assert upgrade(store) == list(range(3, head() + 1))
        assert store.amazon_refunded("acme", ["A-1", "A-2"]) == {}
        row = store.get_order("acme", "A-1")
        assert (row.status, row.order_total, row.amazon_refunded) == ("Shipped", Decimal("25.00"), None)
        from adapters.amazon.models import AmazonRefund, AmazonRefundItem
        from daemon.pipeline.events import AmazonRefundSeen
        refund = AmazonRefund("A-1", "2026-12-01T10:00:00Z", "USD", (AmazonRefundItem("1", "SKU", "adj-1", 1, Decimal("4.00")),))
        assert store.ingest_amazon_refunds("acme", [AmazonRefundSeen(refund)], ("amazon_refunds", "c")) == [True]
        row = store.get_order("acme", "A-1")
        assert (row.status, row.order_total, row.amazon_refunded) == ("Shipped", Decimal("25.00"), Decimal("4.00"))


def test_version_3_cancelled_rows_count_against_the_cancellation_rate_until_the_poll_says_who_cancelled(
        db_url: str, monkeypatch) -> None:
    """0004 adds orders.cancelled_by_seller: a cancelled row from before it does not say who cancelled (null), and
    the rate counts it (the estimate errs towards counting) until the order poll says it was not the seller."""
    from datetime import datetime, timedelta, timezone

    from daemon.store import migrations
    with open_store(db_url) as store:
        monkeypatch.setattr(migrations, "STEPS", migrations.STEPS[:3])
        assert upgrade(store) == [1, 2, 3]
        recent = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
        with store.engine.begin() as conn:
            conn.execute(text("INSERT INTO accounts (id, created_at) VALUES ('acme', '2025-01-01 00:00:00')"))
            conn.execute(text("INSERT INTO orders (account, amazon_order_id, status, fulfillment, created_on_amazon, archived, "
                              "updated_at) VALUES ('acme', 'A-1', 'Canceled', 'FBM', :at, false, '2025-01-01 00:00:00')"), {"at": recent})
        monkeypatch.undo()
        assert upgrade(store) == list(range(4, head() + 1))
        row = store.get_order("acme", "A-1")
        assert (row.status, row.fulfillment, row.cancelled_by_seller) == ("Canceled", "FBM", None)
        window = store.cancellation_window("acme", datetime.now(timezone.utc) - timedelta(days=7))
        assert (window.orders, window.cancelled) == (1, {"A-1"})
        store.upsert_order("acme", "A-1", cancelled_by_seller=False)  # the buyer cancelled it, the poll says
        assert store.cancellation_window("acme", datetime.now(timezone.utc) - timedelta(days=7)).cancelled == frozenset()


def test_version_4_stores_read_amazons_refunds_again_from_the_first_runs_start(db_url: str, monkeypatch) -> None:
    """0005 removes each account's Amazon refunds cursor, and only it: the poll's next run reads 30 days again and
    meets the claims and chargebacks it did not read before; the other polls go on from where they were."""
    from daemon.store import migrations
    with open_store(db_url) as store:
        monkeypatch.setattr(migrations, "STEPS", migrations.STEPS[:4])
        assert upgrade(store) == [1, 2, 3, 4]
        store.set_cursor("acme", "amazon_refunds", "2026-12-01T00:00:00Z")
        store.set_cursor("acme", "orders", '{"since": "x"}')
        monkeypatch.undo()
        assert upgrade(store) == list(range(5, head() + 1))
        assert store.cursor("acme", "amazon_refunds") is None
        assert store.cursor("acme", "orders") == '{"since": "x"}'
