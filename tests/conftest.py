"""Fixtures every test folder may use."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SPECS_DIR = PROJECT_ROOT.parent / "shared" / "specs"
RULES_DIR = PROJECT_ROOT / "rules"


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    """The official API descriptions beside the project (../shared/specs); tests skip where absent."""
    if not SPECS_DIR.is_dir():
        pytest.skip(f"official API descriptions not found at {SPECS_DIR}; contract test skipped")
    return SPECS_DIR


@pytest.fixture(scope="session")
def rules_dir() -> Path:
    return RULES_DIR


# Store, pipeline, crash and fault tests run on a fresh SQLite file always, and on a fresh PostgreSQL
# schema per test when ORDERSYNC_TEST_PG_URL is set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test).
PG_URL = os.environ.get("ORDERSYNC_TEST_PG_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def _pg_schema_url(schema: str) -> str:
    assert PG_URL
    separator = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"


def make_db_url(backend: str, tmp_path: Any) -> Iterator[str]:
    """A URL to an empty database of this backend, dropped afterwards."""
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
