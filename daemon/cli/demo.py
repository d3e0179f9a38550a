"""`ordersync demo`: both stand-ins, the daemon's jobs against them, and what happened to each order."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    from daemon.demo import DEFAULT_ORDERS

    parser = commands.add_parser(
        "demo", help="run the whole loop against local stand-ins of Amazon and Shopify (no account needed)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Start the Amazon and Shopify stand-ins on loopback, seeded with the same orders, run the "
                    "daemon's jobs (those of `ordersync run`) against them until nothing is left to do, and print "
                    "per order the event, the rule that decided, each action's outcome and the sync status; then a "
                    "summary and the decision log's verification. Two requests are made here by an operator too "
                    "(a cancellation and a refund), so the Amazon feed path shows.",
        epilog="exit codes:\n  0  the scenario settled and the decision log verifies\n"
               "  1  it did not settle within --timeout, or the demo could not run (the message says why)")
    parser.add_argument("--orders", type=Path, metavar="FILE", default=None,
                        help=f"the orders to seed, in the linked-scenario format of adapters/sim/linked.py "
                             f"(default {DEFAULT_ORDERS.relative_to(DEFAULT_ORDERS.parents[3])})")
    parser.add_argument("--keep", type=Path, metavar="DIR", default=None,
                        help="keep the config, store, decision log and daemon log in DIR (new or empty); "
                             "by default they go to a temporary folder that is removed")
    parser.add_argument("--timeout", type=float, metavar="S", default=50.0,
                        help="give up when the scenario has not settled after S seconds (default 50)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from daemon.demo import run_demo

    if args.timeout <= 0:
        print("ordersync demo: --timeout must be more than 0 seconds", file=sys.stderr)
        return 1
    code = run_demo(args.orders, args.keep, args.timeout)
    sys.stdout.flush()
    sys.stderr.flush()
    if _threads_left():
        # A job still running past the drain (reported above) would keep the interpreter alive at exit.
        os._exit(code)
    return code


def _threads_left() -> bool:
    import threading

    return any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate())
