"""What the store raises. Every message names the database by its URL with the password hidden."""
from __future__ import annotations


class StoreError(RuntimeError):
    """The store cannot do what was asked: bad URL, unreachable database, schema out of step, bad input."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer ordersync than this one; running on it could corrupt it."""


class SchemaOutOfDate(StoreError):
    """The database lacks migrations this code needs (`ordersync db upgrade`)."""


class NotFound(StoreError):
    """The event, action, order or batch named does not exist."""
