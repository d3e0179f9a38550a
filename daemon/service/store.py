"""How the service talks to the store at start-up and for readiness, whatever the store package becomes.

`PackageStore` drives the store package (`daemon.store.open_store(url, migrate=True)`, the same as
`ordersync db upgrade`) and hands the pipeline its repository. `DatabaseProbe` stands in where that
package is absent: it proves the database is reachable, which is all start-up and /readyz need, and
migrates nothing. Any other store plugs in through `Service(store_factory=...)`.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from daemon.config import StoreConfig


@runtime_checkable
class StoreHandle(Protocol):
    def upgrade(self) -> None:
        """Bring the schema up to date (`ordersync db upgrade`); raise when the database is unreachable."""

    def ping(self) -> None:
        """Raise when the database cannot be reached now (readiness)."""

    def close(self) -> None: ...

    @property
    def repository(self) -> Any:
        """The store the pipeline reads and writes (`daemon.store.Store`), or None for a probe."""


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
        _sqlite_folder(self.config)
        self.ping()

    def ping(self) -> None:
        from sqlalchemy import text

        with self._engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def close(self) -> None:
        self._engine.dispose()

    @property
    def repository(self) -> Any:
        return None


def _sqlite_folder(config: StoreConfig) -> None:
    """The default SQLite file lives in var/ beside the config; create that folder on first start."""
    if config.url.startswith("sqlite:///") and not config.url.endswith(":memory:"):
        Path(config.url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)


class PackageStore:
    """daemon.store: opened and migrated at start-up (`ordersync db upgrade` runs the same migrations)."""

    def __init__(self, config: StoreConfig, open_store: Callable[..., Any]) -> None:
        self.config = config
        self._open = open_store
        self._store: Any = None

    def upgrade(self) -> None:
        _sqlite_folder(self.config)
        self._store = self._open(self.config.connect_url(), migrate=True)

    def ping(self) -> None:
        if self._store is None:
            raise StoreUnavailable("not opened")
        if not self._store.ping():
            raise StoreUnavailable("the database does not answer")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    @property
    def repository(self) -> Any:
        return self._store


def default_store_factory(config: StoreConfig) -> StoreHandle:
    """The store package when it is installed, else `DatabaseProbe`."""
    try:
        module = importlib.import_module("daemon.store")
    except ModuleNotFoundError as exc:
        if exc.name != "daemon.store":
            raise
        return DatabaseProbe(config)
    opener = getattr(module, "open_store", None)
    return PackageStore(config, opener) if callable(opener) else DatabaseProbe(config)


def describe_failure(exc: BaseException, config: StoreConfig) -> str:
    """One line saying what failed, with the URL as written (no password) and not the driver's whole dump."""
    if isinstance(exc, StoreUnavailable) or any(c.__name__ == "StoreError" for c in type(exc).__mro__):
        text = str(exc)  # the store package's own message already names the URL (password hidden) and the fix
        if config.password is not None:
            text = text.replace(config.password.reveal(), "***")
        return f"store.url: {text}"
    reason = getattr(exc, "orig", None) or exc
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    if config.password is not None:
        text = text.replace(config.password.reveal(), "***")
    return f"the store at {config.url} cannot be reached: {text}"
