"""Pipeline, crash and fault tests: a fresh SQLite file always, and a fresh PostgreSQL schema per test
when ORDERSYNC_TEST_PG_URL is set (as tests/store does)."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
import structlog

from tests.conftest import make_db_url


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


@pytest.fixture
def sqlite_url(tmp_path: Any) -> Iterator[str]:
    yield from make_db_url("sqlite", tmp_path)
