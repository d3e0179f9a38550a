"""How the service talks to the store at start-up and for readiness, whatever the store package becomes.

The store package (`daemon.store`) plugs in by providing `open_store(config: StoreConfig) -> StoreHandle`.
Until it exists (or in a deployment without it) `DatabaseProbe` stands in: it proves the database is
reachable, which is all start-up and /readyz need from it, and migrates nothing.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

from daemon.config import StoreConfig


@runtime_checkable
class StoreHandle(Protocol):
    def upgrade(self) -> None:
        """Bring the schema up to date (`ordersync db upgrade`); raise when the database is unreachable."""

    def ping(self) -> None:
        """Raise when the database cannot be reached now (readiness)."""

    def close(self) -> None: ...


StoreFactory = Callable[[StoreConfig], StoreHandle]


class StoreUnavailable(Exception):
    """The database cannot be reached or migrated; the message says which and never holds a password."""


class DatabaseProbe:
    """A store with no schema of its own: connects with SQLAlchemy and runs SELECT 1."""

    def __init__(self, config: StoreConfig) -> None:
        from sqlalchemy import create_engine

        self.config = config
        args = {"connect_timeout": 5} if config.url.startswith("postgresql") else {}
        self._engine = create_engine(config.connect_url(), pool_pre_ping=True, connect_args=args)

    def upgrade(self) -> None:
        if self.config.url.startswith("sqlite:///") and not self.config.url.endswith(":memory:"):
            Path(self.config.url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.ping()

    def ping(self) -> None:
        from sqlalchemy import text

        with self._engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def close(self) -> None:
        self._engine.dispose()


def default_store_factory(config: StoreConfig) -> StoreHandle:
    """`daemon.store.open_store` when the store package provides it, else `DatabaseProbe`."""
    try:
        module = importlib.import_module("daemon.store")
    except ModuleNotFoundError as exc:
        if exc.name not in ("daemon.store",):
            raise
        return DatabaseProbe(config)
    opener = getattr(module, "open_store", None)
    return opener(config) if callable(opener) else DatabaseProbe(config)


def describe_failure(exc: BaseException, config: StoreConfig) -> str:
    """One line saying what failed, with the URL as written (no password) and not the driver's whole dump."""
    reason = getattr(exc, "orig", None) or exc
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    if config.password is not None:
        text = text.replace(config.password.reveal(), "***")
    return f"the store at {config.url} cannot be reached: {text}"
