"""`ordersync audit`: prove the decision log is whole."""
from __future__ import annotations

import argparse
from pathlib import Path

from daemon.audit.chain import verify


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("audit", help="verify the decision log",
                                 description="Work with the decision log (one hash-chained JSON record per decision).")
    sub = parser.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    check = sub.add_parser(
        "verify", help="check that no record was removed or changed; exit 1 at the first broken one",
        description="Check every record's hash and its link to the previous record of its account. Prints the first "
                    "broken or missing record and exits 1; otherwise prints each account's head (last seq and hash), "
                    "which an auditor can compare with a copy kept elsewhere to detect a cut tail, and exits 0.")
    check.add_argument("file", type=Path, help="the decision log (JSON lines)")
    check.set_defaults(handler=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        print(f"{args.file}: no such decision log")
        return 2
    result = verify(args.file)
    if result.broken is not None:
        print(f"{args.file}: {result.broken}")
        print(f"{result.records} record(s) verified before it")
        return 1
    print(f"{args.file}: {result.records} record(s) verified, no record removed or changed")
    for account, head in sorted(result.heads.items()):
        print(f"  account {account or '(default)'}: {head.seq} record(s), head {head.hash}")
    return 0
