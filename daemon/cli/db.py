"""`ordersync db`: bring the store's schema up to date, or say where it stands."""
from __future__ import annotations

import argparse
import os
import sys

from daemon.store import StoreError, open_store
from daemon.store.migrations import head, upgrade

DB_ENV = "ORDERSYNC_DB"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "db", help="migrate the store (SQLite or PostgreSQL)",
        description="Work with the store's schema. Schema changes are migrations applied in order, each in one "
                    "transaction; data is kept. `ordersync run` applies them at start too.")
    sub = parser.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    for name, handler, help_text, description in (
        ("upgrade", run_upgrade, "apply the migrations the database is missing",
         "Apply every migration the database lacks, oldest first, each in its own transaction; running it again "
         "does nothing. A database already upgraded by a newer ordersync is refused and left untouched. "
         "Exit 0 when the schema is current, 2 when the database cannot be opened or is newer than this code."),
        ("status", run_status, "print the database's schema version and the one this code needs",
         "Print the schema version of the database and the version this ordersync needs; exit 1 when they "
         "differ, 2 when the database cannot be opened."),
    ):
        command = sub.add_parser(name, help=help_text, description=description)
        command.add_argument("--db", metavar="URL", default=os.environ.get(DB_ENV),
                             help="the store: sqlite:///path/to/ordersync.db or "
                                  f"postgresql+psycopg://user@host:5432/dbname (default ${DB_ENV}). "
                                  "Give a PostgreSQL password through PGPASSWORD or ~/.pgpass, not in the URL.")
        command.set_defaults(handler=handler)


def _open(args: argparse.Namespace):  # -> Store
    if not args.db:
        raise StoreError(f"no database given: pass --db URL or set ${DB_ENV}")
    return open_store(args.db)


def run_upgrade(args: argparse.Namespace) -> int:
    try:
        with _open(args) as store:
            applied = upgrade(store)
            if applied:
                print(f"{store.shown_url}: applied migration(s) {', '.join(map(str, applied))}; "
                      f"schema version is now {head()}")
            else:
                print(f"{store.shown_url}: schema version {head()} is current, nothing to do")
    except StoreError as exc:
        print(f"ordersync db upgrade: {exc}", file=sys.stderr)
        return 2
    return 0


def run_status(args: argparse.Namespace) -> int:
    try:
        with _open(args) as store:
            found = store.schema_version()
    except StoreError as exc:
        print(f"ordersync db status: {exc}", file=sys.stderr)
        return 2
    state = "current" if found == head() else ("newer than this ordersync" if found > head() else "needs `ordersync db upgrade`")
    print(f"{store.shown_url}: schema version {found}, this ordersync needs {head()} ({state})")
    return 0 if found == head() else 1
