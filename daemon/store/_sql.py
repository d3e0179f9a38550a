"""Small SQL helpers the repository modules share."""
from __future__ import annotations

import functools
import operator
from typing import Any, Callable

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from daemon.store.errors import StoreError
from daemon.store.models import Account
from daemon.store.types import utcnow


# A row's values, as the positional driver (sqlite3) takes them, in the compiled statement's order.
RowGetter = Callable[[dict[str, Any]], tuple[Any, ...]]


def _dialect_insert(dialect: str) -> Callable[[Any], Any]:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def insert_for(session: Session, table: Any) -> Any:
    """The dialect's INSERT, which has on_conflict_do_nothing / on_conflict_do_update on both databases."""
    return _dialect_insert(session.get_bind().dialect.name)(getattr(table, "__table__", table))


def inserted(session: Session, statement: Any) -> bool:
    """Run an INSERT … ON CONFLICT DO NOTHING; True when it inserted its row. Asks for the row back
    rather than trusting rowcount, which psycopg reports as -1 for such an insert."""
    table = statement.table
    key = list(table.primary_key.columns)[0]
    return session.execute(statement.returning(key)).first() is not None


class DriverStatement:
    """A Core INSERT or UPDATE compiled once per dialect and set of parameter names (the rows' keys), and
    run by the driver's executemany, with the rows' values already in the driver's form (see `converter`).

    For statements run with hundreds of rows per transaction (recording a decide run's decisions):
    SQLAlchemy's per-row work (parameters built and every value passed through its type's processor)
    took longer than the database's own."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._build: Callable[[Callable[[Any], Any]], Any] | None = None
        self._compiled: dict[tuple[str, ...], tuple[str, RowGetter | None]] = {}

    @classmethod
    def upsert(cls, build: Callable[[Callable[[Any], Any]], Any]) -> "DriverStatement":
        """A statement only the dialect's own INSERT expresses (ON CONFLICT): `build` is given that INSERT
        (as insert_for picks it) and makes the statement, once per dialect."""
        statement = cls(None)
        statement._build = build
        return statement

    def _for(self, dialect: Any, names: tuple[str, ...]) -> tuple[str, RowGetter | None]:
        key = (dialect.name, dialect.driver, dialect.paramstyle, *names)
        if key not in self._compiled:
            statement = self._build(_dialect_insert(dialect.name)) if self._build else self.statement
            # for_executemany: without it PostgreSQL's INSERT would end in RETURNING id, ids nobody reads.
            compiled = statement.compile(dialect=dialect, column_keys=list(names), for_executemany=True)
            # qmark/format drivers (sqlite3) take tuples in the compiled order, picked from each row by an
            # itemgetter (a third of the time a generator took); pyformat ones (psycopg) take the dicts.
            order = _tuple_getter(compiled.positiontup) if compiled.positional else None
            self._compiled[key] = (compiled.string, order)
        return self._compiled[key]

    def run(self, session: Session, rows: list[dict[str, Any]]) -> int:
        """Every row has the same keys: the columns an INSERT sets, the parameters an UPDATE names.
        Returns the rows the statement changed, summed over `rows` (as both drivers count them)."""
        connection = session.connection()
        sql, order = self._for(connection.dialect, tuple(rows[0]))
        parameters: list[Any] = rows if order is None else list(map(order, rows))
        return connection.exec_driver_sql(sql, parameters).rowcount

    @staticmethod
    def converter(session: Session, column: Any) -> Callable[[Any], Any]:
        """What the column's type does to a value before the driver gets it (a datetime to SQLite's text,
        a dict to JSON, ...): applied by the caller, once for a value every row shares."""
        return _bind_processor(session.connection().dialect, column)


def _tuple_getter(names: Any) -> RowGetter:
    names = tuple(names)
    if len(names) == 1:  # itemgetter of one name returns the value itself, not a 1-tuple
        only = names[0]
        return lambda row: (row[only],)
    return operator.itemgetter(*names)


@functools.lru_cache(maxsize=None)
def _bind_processor(dialect: Any, column: Any) -> Callable[[Any], Any]:
    # Made once per dialect and column: a TypeDecorator's processor is built anew on every call, which
    # cost more than the conversions it makes for a page.
    # The dialect's own implementation: the generic type would hand SQLite a datetime for sqlite3 to
    # format, which leaves out ".000000" on a whole second and so breaks the text order of times.
    processor = column.type.dialect_impl(dialect).bind_processor(dialect)
    return processor or _unchanged


def _unchanged(value: Any) -> Any:
    return value

def now_for(session: Session, column: Any) -> Any:
    """The time now, as the driver takes it for `column`."""
    return DriverStatement.converter(session, column)(utcnow())


_ENSURE_ACCOUNT = DriverStatement.upsert(lambda insert: insert(Account.__table__).on_conflict_do_nothing(index_elements=["id"]))


def ensure_account(session: Session, account: str) -> None:
    """The account's row, which everything of the account refers to; added the first time it is named."""
    if not account:
        raise StoreError("an account name is required")
    _ENSURE_ACCOUNT.run(session, [{"id": account, "created_at": now_for(session, Account.__table__.c.created_at)}])
