"""`ordersync` command line: one module per command group, each with `register(subparsers)`."""
from __future__ import annotations

import argparse
import sys

from daemon.cli import approvals, audit, db, demo, errors, orders, rules, run, sim

COMMAND_GROUPS = (rules, audit, sim, run, orders, errors, approvals, db, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ordersync",
        description=(
            "Keeps Amazon orders and their storefront copy in agreement through cancellations, "
            "buyer cancellation requests, returns and refunds, by YAML rules that operations teams edit."
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `ordersync rules eval ... | head` closes the pipe early; that is not an error.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
