"""Pipeline, crash and fault tests: a fresh SQLite file always, and a fresh PostgreSQL schema per test
when ORDERSYNC_TEST_PG_URL is set (as tests/store does)."""
from __future__ import annotations

import os
import uuid
from typing import Any, Iterator
from urllib.parse import quote

import pytest
import structlog
from sqlalchemy import create_engine, text

PG_URL = os.environ.get("ORDERSYNC_TEST_PG_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def _pg_schema_url(schema: str) -> str:
    assert PG_URL
    separator = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[None]:
    # In-process runs log every request at debug; warnings and errors are enough in a test's output.
    # Filtered by a processor, not by wrapper_class: the decision log is a structlog logger too, and a
    # filtering wrapper class would silently drop its records (msg is info level).
    def drop_below_warning(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        if method in ("debug", "info", "msg"):
            raise structlog.DropEvent
        return event

    structlog.configure(processors=[drop_below_warning, structlog.dev.ConsoleRenderer(colors=False)])
    yield
    structlog.reset_defaults()


def make_db_url(backend: str, tmp_path: Any) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'ordersync.db'}"
        return
    schema = f"ordersync_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A URL to an empty database of each backend."""
    yield from make_db_url(request.param, tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Any) -> Iterator[str]:
    yield from make_db_url("sqlite", tmp_path)
