"""`ordersync sim`: the local stand-ins for Amazon and Shopify (real HTTP servers on loopback)."""
from __future__ import annotations

import argparse
import importlib
import signal
import threading
from pathlib import Path
from types import ModuleType

STAND_INS = {
    "amazon": "adapters.sim.amazon",
    "shopify": "adapters.sim.shopify",
}
DEFAULT_PORTS = {"amazon": 8765, "shopify": 8082}


def _load(name: str) -> ModuleType:
    return importlib.import_module(STAND_INS[name])


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sim",
        help="run the local stand-ins for Amazon and Shopify",
        description="Run the local stand-ins for Amazon's Selling Partner API and Shopify's Admin API on loopback: "
                    "both together (no TARGET), or one of them. Each keeps a journal (GET /_sim/journal) and takes "
                    "faults (POST /_sim/faults); see docs/amazon.md and docs/shopify.md.")
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(f"--{name}-port", type=int, default=port, help=f"{name} stand-in port when both run (default {port})")
        parser.add_argument(f"--{name}-scenario", type=Path, metavar="FILE", help=f"{name} scenario when both run (default: the shipped one)")
    parser.add_argument("--host", default="127.0.0.1", help="address both listen on when both run (default 127.0.0.1)")
    targets = parser.add_subparsers(dest="target", metavar="TARGET")
    for name in STAND_INS:
        try:
            module = _load(name)
        except Exception as exc:  # a broken stand-in must not take the rest of the command line down with it
            target = targets.add_parser(name, help=f"(unavailable: {exc})")
            target.set_defaults(handler=lambda args, exc=exc, name=name: print(f"the {name} stand-in cannot start: {exc}") or 2)
            continue
        target = targets.add_parser(name, help=module.__doc__.strip().splitlines()[0] if module.__doc__ else name,
                                    description=module.__doc__)
        module.add_cli_arguments(target)
        target.set_defaults(handler=module.run_cli)
    parser.set_defaults(handler=run_both)


def run_both(args: argparse.Namespace) -> int:
    """Both stand-ins on two ports until Ctrl-C or SIGTERM: the test bed for the demo."""
    servers = []
    try:
        for name in STAND_INS:
            scenario = getattr(args, f"{name}_scenario")
            server = _load(name).create_server(args.host, getattr(args, f"{name}_port"), scenario)
            servers.append((name, server.start() or server))
    except (OSError, ValueError) as exc:
        print(f"ordersync sim: {exc}")
        for _, server in servers:
            server.stop()
        return 2
    for name, server in servers:
        print(f"{name} stand-in on {server.base_url} (journal: {server.base_url}/_sim/journal)", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    for _, server in servers:
        server.stop()
    return 0
