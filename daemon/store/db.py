"""Opening the store: one SQLAlchemy engine per database, set up so both databases keep the promises
the repository makes (docs/store.md §SQLite vs PostgreSQL)."""
from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlmodel import Session

from daemon.store.errors import StoreError
from daemon.store.types import json_dumps

if TYPE_CHECKING:
    from daemon.store.repo import Store

BUSY_TIMEOUT_MS = 30_000
# SQLite's WAL is copied back into the database file (a checkpoint) by a thread of our own rather than by
# the committing writer: the copy runs in SQLite's C code without the GIL, so on a second core it costs
# deciding nothing, where the writer's own checkpoints were an eighth of deciding an event
# (benchmarks/pipeline_throughput.py). Every CHECKPOINT_INTERVAL_S, passive (it never blocks a writer).
CHECKPOINT_INTERVAL_S = 0.2
# Should that thread fall behind, the writer checkpoints as SQLite's default would, at this many pages
# (4 KiB each): the WAL stays bounded.
WRITER_CHECKPOINT_PAGES = 10_000
PG_CONNECT_TIMEOUT_S = 5
URL_HINT = "give sqlite:///path/to/ordersync.db or postgresql+psycopg://user@host:5432/dbname"


def redact(url: str | URL) -> str:
    """The URL as it may be shown: password replaced by ***. Works on strings that do not parse."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _scrub(message: str, url: URL) -> str:
    """A driver message with the password cut out, in case the driver quotes the connection string."""
    if url.password:
        message = message.replace(str(url.password), "***")
    return message.strip().splitlines()[0] if message.strip() else message


class Database:
    """A connection to the ordersync database: the engine and the one way to run a transaction.
    `daemon.store.repo.Store` adds the operations; open_store() returns one of those."""

    def __init__(self, engine: Engine, url: URL) -> None:
        self.engine = engine
        self.url = url
        self.shown_url = redact(url)
        self.checkpointer = WalCheckpointer(url.database) if engine.dialect.name == "sqlite" and url.database else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Session]:
        """One transaction, committed when the block ends, rolled back on an exception.

        On SQLite a write transaction begins IMMEDIATE: it takes the write lock up front (waiting up to
        busy_timeout), so two writers never both read and then fail to upgrade their lock."""
        engine = self.engine.execution_options(ordersync_write=write)
        with Session(engine, expire_on_commit=False) as session:
            with session.begin():
                yield session

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.shown_url}>"


class WalCheckpointer:
    """A daemon thread with its own connection that checkpoints the SQLite file's WAL every
    CHECKPOINT_INTERVAL_S, passively: it copies what no reader still needs and never waits for a lock."""

    def __init__(self, database: str, interval: float = CHECKPOINT_INTERVAL_S) -> None:
        # mode=rw: never create the file (a store whose file was removed must not get an empty one back).
        self._uri = Path(database).expanduser().absolute().as_uri() + "?mode=rw"
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ordersync-wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while not self._stopped.wait(self._interval):
                try:
                    if connection is None:
                        connection = sqlite3.connect(self._uri, uri=True, isolation_level=None, check_same_thread=False)
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    # Busy, or the file is gone (a test's folder removed): the writers' own checkpoints
                    # still bound the WAL; try again next time.
                    if connection is not None:
                        connection.close()
                    connection = None
        finally:
            if connection is not None:
                connection.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)


# What SQLAlchemy's sqlite3 dialect takes after "?" in a URL; anything else it drops.
SQLITE_URL_OPTIONS = frozenset({"timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements", "uri"})


def _check_sqlite_options(given: str | URL, url: URL) -> None:
    """Refuse a SQLite URL whose '?' part is not options the driver takes: SQLAlchemy would cut the path
    there and open another file (sqlite:////data/a?b.db opens /data/a), without a word."""
    raw = given.split("://", 1)[-1].partition("?")[2] if isinstance(given, str) else ""
    parts = [part for part in raw.split("&") if part] if raw else [f"{key}=" for key in url.query]
    unknown = [part for part in parts if part.partition("=")[0] not in SQLITE_URL_OPTIONS or "=" not in part]
    if unknown:
        raise StoreError(f"{redact(url)}: '{'&'.join(unknown)}' after '?' is not an option of SQLite's driver, "
                         f"so this would open {url.database}; write a '?' in the file's name as %3F, or give one "
                         f"of {', '.join(sorted(SQLITE_URL_OPTIONS))}")


def _sqlite_engine(url: URL) -> Engine:
    database = url.database
    if not database or database == ":memory:":
        raise StoreError(f"{redact(url)}: an in-memory SQLite database loses every event at exit; "
                         "give a file, e.g. sqlite:////var/lib/ordersync/ordersync.db")
    folder = Path(database).expanduser().resolve().parent
    if not folder.is_dir():
        raise StoreError(f"{redact(url)}: folder {folder} does not exist; create it or give another path")
    # No pool_pre_ping: a SQLite file has no server to drop the connection, and the ping is a statement
    # per transaction.
    engine = create_engine(url, json_serializer=json_dumps)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        # Take transaction control from the sqlite3 module (it would BEGIN lazily and COMMIT before DDL).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # NORMAL in WAL mode: a killed process loses nothing committed; a power cut may lose the last
        # transactions, whole (never half of one). docs/store.md says why that is acceptable.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("ordersync_write", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _postgresql_engine(url: URL) -> Engine:
    connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    return create_engine(url, json_serializer=json_dumps, pool_pre_ping=True, connect_args=connect_args)


def open_store(url: str | URL, *, migrate: bool = False) -> "Store":
    """Open the database at `url` and check it answers. With migrate=True also bring its schema up to
    date (ordersync db upgrade); otherwise call Store.require_current_schema() before using it.

    Raises StoreError naming the URL (password hidden) and what to do, for a bad or unsupported URL and
    for a database that cannot be reached."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        raise StoreError(f"{redact(str(url))!r} is not a database URL; {URL_HINT}") from None
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            _check_sqlite_options(url, parsed)
            engine = _sqlite_engine(parsed)
        elif backend == "postgresql":
            if parsed.get_driver_name() not in ("psycopg", "psycopg2"):
                parsed = parsed.set(drivername="postgresql+psycopg")
            engine = _postgresql_engine(parsed)
        else:
            raise StoreError(f"{redact(parsed)}: unsupported database {backend!r}; {URL_HINT}")
    except (NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise StoreError(f"{redact(parsed)}: {_scrub(str(exc), parsed)}; {URL_HINT}") from None
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        engine.dispose()
        detail = _scrub(str(getattr(exc, "orig", None) or exc), parsed)
        raise StoreError(f"cannot open the database {redact(parsed)}: {detail}; check that it is running "
                         "and reachable and that the URL's host, port, user and database are right") from None
    # repo.py builds on this module, so it is imported here rather than at the top.
    from daemon.store.repo import Store
    store = Store(engine, parsed)
    if migrate:
        from daemon.store.migrations import upgrade
        upgrade(store)
    return store
