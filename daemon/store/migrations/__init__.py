"""Schema migrations: an ordered list of steps, each applied once, in its own transaction.

A step is a module `NNNN_name.py` with `NAME` and `upgrade(conn)`. The `schema_version` table holds one
row per applied step. Adding a step means adding a module and listing it in STEPS; a released step is
never edited. (Why not Alembic: see docs/store.md §Migrations.)"""
from __future__ import annotations

import importlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, text
from sqlalchemy.engine import Connection

from daemon.store.db import Database
from daemon.store.errors import SchemaOutOfDate, SchemaTooNew
from daemon.store.types import UTCDateTime, utcnow

STEPS = ("0001_initial", "0002_idempotency_key_index", "0003_amazon_refunded", "0004_cancelled_by_seller",
         "0005_reread_amazon_refunds")

# Any constant works; it only has to be the same for every ordersync process on the database.
_PG_LOCK_KEY = 0x6F726473  # "ords"

_meta = MetaData()
schema_version = Table(
    "schema_version", _meta,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(100), nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Connection], None]
    # A step that rebuilds a SQLite table (SQLite cannot drop a constraint) runs with foreign keys off,
    # which SQLite only allows outside a transaction, and checks them before it commits.
    rebuilds_tables: bool = False


def migrations() -> list[Migration]:
    steps = []
    for number, module_name in enumerate(STEPS, start=1):
        module = importlib.import_module(f"{__name__}.{module_name}")
        assert int(module_name[:4]) == number, f"migration {module_name} is out of sequence"
        steps.append(Migration(number, module.NAME, module.upgrade, getattr(module, "REBUILDS_TABLES", False)))
    return steps


def head() -> int:
    """The schema version this code needs."""
    return len(STEPS)


def _version(conn: Connection) -> int:
    if not conn.dialect.has_table(conn, "schema_version"):
        return 0
    return conn.execute(select(func.coalesce(func.max(schema_version.c.version), 0))).scalar_one()


def _too_new(db: Database, found: int) -> SchemaTooNew:
    return SchemaTooNew(
        f"the database {db.shown_url} has schema version {found}, but this ordersync knows only up to "
        f"{head()}: it was upgraded by a newer ordersync. Run that newer version (or restore a backup "
        f"taken before the upgrade); this one will not touch it.")


def current_version(db: Database) -> int:
    with db.engine.connect() as conn:
        return _version(conn)


def require_current(db: Database) -> None:
    """Raise unless the database is at exactly the version this code needs."""
    found = current_version(db)
    if found > head():
        raise _too_new(db, found)
    if found < head():
        raise SchemaOutOfDate(
            f"the database {db.shown_url} has schema version {found}, this ordersync needs {head()}; "
            f"run `ordersync db upgrade --db '{db.shown_url}'` (it keeps all data)")


@contextmanager
def _foreign_keys_off(conn: Connection, off: bool) -> Iterator[None]:
    if not off:
        yield
        return
    driver = conn.connection.driver_connection
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


def upgrade(db: Database) -> list[int]:
    """Apply the missing migrations, oldest first, each in one transaction; returns the versions applied
    (none when the database is up to date). Safe to run from several processes at once."""
    applied: list[int] = []
    for step in migrations():
        rebuilds_sqlite_tables = step.rebuilds_tables and not db.is_postgresql
        with db.engine.connect() as conn, _foreign_keys_off(conn, rebuilds_sqlite_tables):
            with conn.begin():
                if db.is_postgresql:
                    # Held until this transaction ends: concurrent upgraders take turns.
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                schema_version.create(conn, checkfirst=True)
                found = _version(conn)
                if found > head():
                    raise _too_new(db, found)
                if found >= step.version:
                    continue
                step.apply(conn)
                if rebuilds_sqlite_tables:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration {step.version:04d} would leave {len(broken)} rows whose foreign "
                                           f"key names no row (first: {tuple(broken[0])}); the database is unchanged")
                conn.execute(schema_version.insert().values(
                    version=step.version, name=step.name, applied_at=utcnow()))
                applied.append(step.version)
    if not applied:
        # Still refuse a newer database even when every step here was already applied.
        found = current_version(db)
        if found > head():
            raise _too_new(db, found)
    return applied
