"""`ordersync run` (the daemon) and `ordersync config check`."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from daemon.cli.common import config_argument, load
from daemon.config import Config, summary

EXIT_STARTUP = 2  # a configuration, store, rules or port problem found at start-up


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run", help="run the daemon",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the daemon: poll each account's Amazon orders, decide by the rules, carry the decisions "
                    "out on the storefront and Amazon, on the schedule in the config's jobs section.",
        epilog="""signals:
  SIGTERM, SIGINT  stop taking work, let running jobs finish (shutdown.drain_seconds), exit 0
  SIGHUP           reload the rules folder (a change to its files does too, every rules.watch_seconds);
                   a broken rule file is logged with file:line and the old rules keep running

http (http.listen, default 127.0.0.1:9464):
  /healthz  200 while the process serves
  /readyz   200 when the store is reachable, the rules are loaded and every account polled recently;
            503 otherwise, with the reasons as JSON
  /metrics  Prometheus text format

exit codes:
  0  stopped by a signal
  2  could not start: a config error, a missing secret, an unreachable store, rules that do not load,
     or a port in use (one message on stderr says which)""")
    config_argument(run)
    run.set_defaults(handler=run_daemon)

    config = commands.add_parser("config", help="check the configuration file",
                                 description="Work with the daemon's configuration file.")
    sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = sub.add_parser(
        "check", help="validate the config and print a summary; exit 2 on any problem",
        description="Validate the configuration as `ordersync run` would (keys, types, secrets present) and print "
                    "a summary. Secrets show only as env:NAME or file:PATH. Exit 0 when valid, 2 otherwise.")
    config_argument(check)
    check.set_defaults(handler=run_config_check)


def _load(path: Path) -> Config | None:
    return load(path, "ordersync: cannot start")


def run_config_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_STARTUP
    for line in summary(config):
        print(line)
    print("config OK")
    return 0


def default_plugins() -> list[Any]:
    """The pipeline, when its package is installed: `daemon.pipeline.install(service)`."""
    try:
        module = importlib.import_module("daemon.pipeline")
    except ModuleNotFoundError as exc:
        if exc.name != "daemon.pipeline":
            raise
        return []
    install = getattr(module, "install", None)
    return [install] if callable(install) else []


def run_daemon(args: argparse.Namespace) -> int:
    from daemon.service import Service, StartupError

    config = _load(args.config)
    if config is None:
        return EXIT_STARTUP
    service = Service(config, plugins=default_plugins())
    try:
        code = service.run()
    except StartupError as exc:
        print(f"ordersync: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    if service.unfinished_jobs:
        # Jobs past the drain time would keep the interpreter alive (executor threads are joined at
        # exit); the stop must be bounded, and their claims were released by the shutdown hooks.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
