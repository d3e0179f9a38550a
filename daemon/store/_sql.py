"""Small SQL helpers the repository modules share."""
from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session


def insert_for(session: Session, table: Any) -> Any:
    """The dialect's INSERT, which has on_conflict_do_nothing / on_conflict_do_update on both databases."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(getattr(table, "__table__", table))


def inserted(session: Session, statement: Any) -> bool:
    """Run an INSERT … ON CONFLICT DO NOTHING; True when it inserted its row. Asks for the row back
    rather than trusting rowcount, which psycopg reports as -1 for such an insert."""
    table = statement.table
    key = list(table.primary_key.columns)[0]
    return session.execute(statement.returning(key)).first() is not None
