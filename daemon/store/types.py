"""Column types that behave the same on SQLite and PostgreSQL.

SQLite has no decimal and no time-zone type: SQLAlchemy would store Numeric as a float and drop the
offset of an aware datetime. Money is therefore text on SQLite (exact) and NUMERIC on PostgreSQL, and
times are stored as naive UTC everywhere and handed back aware."""
from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable

import orjson
from sqlalchemy import JSON, DateTime, Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

CENTS = Decimal("0.01")
MONEY_PLACES = 4          # daemon.facts.MAX_DECIMAL_PLACES: the most any amount in a fact carries
MONEY_DIGITS = 18


def money_text(amount: Decimal) -> str:
    """An amount as a person reads it: 42.50 rather than 42.5 or 42.5000 (PostgreSQL's NUMERIC(18,4)); 9.9999 as it is."""
    cents = amount.quantize(CENTS)
    return str(cents if amount == cents else amount.normalize())


def to_money(value: Any, name: str = "money") -> Decimal:
    """An exact amount: TypeError for a float (it has already lost the cents), ValueError for anything that
    is no amount or not a finite one; each message begins with `name`."""
    if isinstance(value, float):
        raise TypeError(f"{name} must be a Decimal, int or str, not the float {value!r}")
    try:
        amount = Decimal(value)
    except (ArithmeticError, TypeError, ValueError):
        raise ValueError(f"{name} must be an amount such as 9.50, not {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"{name} must be a finite amount, not {value!r}")
    return amount


class Money(TypeDecorator[Decimal]):
    """A Decimal amount; a float is refused, because it has already lost the cents."""

    impl = Numeric(MONEY_DIGITS, MONEY_PLACES)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(MONEY_DIGITS, MONEY_PLACES, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = to_money(value)
        return str(amount) if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime, stored as naive UTC; a naive one is refused (its zone would be a guess)."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give a time zone (datetime.now(timezone.utc))")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQL results on SQLite
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=timezone.utc)


def _json_default(value: Any) -> Any:
    # Decimals as strings so no amount is rounded through a float (as daemon.facts.jsonable does).
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def json_dumps(value: Any, default: Callable[[Any], Any] = _json_default) -> str:
    """Compact JSON for the store's JSON columns, as json.dumps(separators=(",", ":"), ensure_ascii=False)
    writes it (int keys as strings, datetimes in isoformat), through orjson. `default` turns what JSON has
    no type for into what it has (the log's renderer passes structlog's, which writes repr())."""
    try:
        return orjson.dumps(value, default=default, option=_ORJSON_OPTIONS).decode("utf-8")
    except TypeError:
        # Integers beyond 64 bits and lone surrogates, which orjson refuses; anything else not serialisable
        # fails here too.
        text = json.dumps(value, default=default, ensure_ascii=False, separators=(",", ":"))
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (a \ud800 escape in Amazon's JSON) has no UTF-8, and the database driver
            # would refuse the page it came in, again on every poll; escaped, it is JSON text that reads back
            # as the same string.
            text = json.dumps(value, default=default, ensure_ascii=True, separators=(",", ":"))
        return text


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


__all__ = ["JSON", "Money", "UTCDateTime", "json_dumps", "to_money", "utcnow"]
