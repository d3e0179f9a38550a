"""What several commands share: the --config option, the configuration it names, the store that
configuration points at, and the shape of a command group whose default sub-command lists."""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import textwrap
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generic, Sequence, TypeVar

from daemon.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from daemon.store import Store

CONFIG_ENV = "ORDERSYNC_CONFIG"
EXIT_CONFIG = 2  # the configuration or the store it names is unusable; as `ordersync run` and `ordersync db`

Handler = Callable[[argparse.Namespace], int]
StoreHandler = Callable[[argparse.Namespace, Config, "Store"], int]
Row = TypeVar("Row")


def config_argument(parser: argparse.ArgumentParser, *, either_side: bool = False) -> None:
    """--config FILE, default $ORDERSYNC_CONFIG. `either_side`: a command group and its sub-commands all
    take it, so it may stand before or after the sub-command's name; none of them sets a default (one
    would overwrite the other's value), and `config_path` falls back to the environment."""
    default = os.environ.get(CONFIG_ENV)
    parser.add_argument("--config", "-c", type=Path, metavar="FILE",
                        default=argparse.SUPPRESS if either_side else default,
                        required=not either_side and default is None,
                        help="the YAML configuration (deploy/ordersync.example.yaml documents every key); "
                             f"default: ${CONFIG_ENV}")


def config_path(args: argparse.Namespace) -> Path | None:
    from_env = os.environ.get(CONFIG_ENV)
    return getattr(args, "config", None) or (Path(from_env) if from_env else None)


def load(path: Path | None, prefix: str) -> Config | None:
    """The configuration, or None after one message on stderr (every problem in the file, secrets never shown)."""
    if path is None:
        print(f"{prefix}: no configuration given: pass --config FILE or set ${CONFIG_ENV}", file=sys.stderr)
        return None
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return None


def open_configured_store(args: argparse.Namespace, prog: str) -> tuple[Config, Store] | None:
    """The configuration named by --config and its store, at the schema this code needs; or None after one
    message on stderr saying what is wrong (the URL is shown without its password). Never creates a database:
    a SQLite file that is not there yet is reported, not made."""
    from daemon.service.store import describe_failure
    from daemon.store import StoreError, open_store

    config = load(config_path(args), prog)
    if config is None:
        return None
    url = config.store.url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        print(f"{prog}: store.url: no database at {url[len('sqlite:///'):]}; the daemon creates it when it first starts "
              f"with this configuration (`ordersync run --config {config.path}`)", file=sys.stderr)
        return None
    store = None
    try:
        store = open_store(config.store.connect_url())
        store.require_current_schema()
    except StoreError as exc:  # unreachable, or not migrated (`ordersync db upgrade`), or migrated by a newer ordersync
        if store is not None:
            store.close()
        print(f"{prog}: {describe_failure(exc, config.store)}", file=sys.stderr)
        return None
    return config, store


def account_hint(config: Config, account: str | None) -> str:
    """A note for an account the configuration does not have (a typo, or an account since removed)."""
    names = [a.name for a in config.accounts]
    if account is None or account in names:
        return ""
    return f" (the configuration has no account {account!r}; its accounts: {', '.join(names)})"


ListOptions = Callable[[argparse.ArgumentParser, Callable[[Any], Any]], None]


def listing_group(commands: argparse._SubParsersAction, name: str, *, help: str, description: str,
                  list_help: str, list_handler: Handler, options: ListOptions | None = None) -> argparse._SubParsersAction:
    """A command group whose sub-command `list` is also what the group does alone: `ordersync NAME
    --config FILE` is `ordersync NAME list --config FILE`. Returns the group's sub-commands, for the others.
    `options(parser, default)` adds the listing's own options to both parsers, each with `default(value)`."""
    description += " Without a sub-command: `list`. Exit 2 when the configuration or the store cannot be used."
    group = commands.add_parser(name, help=help, description=description)
    sub = group.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")
    listing = sub.add_parser("list", help=list_help, description=description)
    for parser in (group, listing):
        # The group's parser runs first and sets the defaults; the sub-command's must not overwrite them.
        def default(value: Any, parser: argparse.ArgumentParser = parser) -> Any:
            return value if parser is group else argparse.SUPPRESS

        config_argument(parser, either_side=True)
        parser.add_argument("--account", metavar="NAME", default=default(None),
                            help="only this account (default: every account)")
        parser.add_argument("--json", action="store_true", default=default(False),
                            help="print a JSON array, one object per row, instead of the table")
        if options is not None:
            options(parser, default)
        parser.set_defaults(handler=list_handler)
    return sub


class FlagKeepingHelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that a line never breaks at a hyphen: `--over-cancellation-rate` split as
    `--over-` and `cancellation-rate` is no flag a person can copy."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False)


def subcommand(sub: argparse._SubParsersAction, name: str, handler: Handler, help: str, description: str) -> argparse.ArgumentParser:
    command = sub.add_parser(name, help=help, description=description, formatter_class=FlagKeepingHelpFormatter)
    config_argument(command, either_side=True)
    command.set_defaults(handler=handler)
    return command


def with_store(prog: str) -> Callable[[StoreHandler], Handler]:
    """A handler `(args, config, store) -> exit code` as a command's handler: the store is opened from --config
    (exit 2 after one message when it cannot be) and closed afterwards; `prog` starts each message."""
    def wrap(handler: StoreHandler) -> Handler:
        @functools.wraps(handler)
        def run(args: argparse.Namespace) -> int:
            opened = open_configured_store(args, prog)
            if opened is None:
                return EXIT_CONFIG
            config, store = opened
            with store:
                return handler(args, config, store)
        return run
    return wrap


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "-"


@dataclass(frozen=True)
class Listing(Generic[Row]):
    """How `ordersync errors` / `ordersync approvals` print their rows: a table with a header and a last line
    counting them (`one` / `many`: "order needs attention" / "orders need attention"), or with --json an array."""
    header: tuple[str, ...]
    cells: Callable[[Row], Sequence[str]]
    as_json: Callable[[Row], dict[str, Any]]
    one: str
    many: str

    def print(self, args: argparse.Namespace, config: Config, rows: Sequence[Row], note: str = "") -> int:
        """`note` is added to the count line (not to the JSON)."""
        if args.json:
            print(json.dumps([self.as_json(row) for row in rows], indent=2, ensure_ascii=False))
            return 0
        if rows:
            table = [self.header, *(self.cells(row) for row in rows)]
            # Columns as wide as their widest cell; the last one (a message, parameters) is not padded.
            widths = [max(len(cells[i]) for cells in table) for i in range(len(self.header) - 1)]
            for cells in table:
                print("  ".join([*(cell.ljust(width) for cell, width in zip(cells, widths)), cells[-1]]).rstrip())
        count = len(rows)
        print(f"no {self.many}{account_hint(config, args.account)}" if count == 0
              else f"1 {self.one}{note}" if count == 1 else f"{count} {self.many}{note}")
        return 0
