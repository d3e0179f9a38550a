"""`ordersync sim`: the local stand-ins for Amazon and Shopify (real HTTP servers on loopback)."""
from __future__ import annotations

import argparse
import importlib

STAND_INS = {
    "amazon": "adapters.sim.amazon",
    "shopify": "adapters.sim.shopify",
}


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sim",
        help="run the local stand-ins for Amazon and Shopify",
        description="Run a local stand-in for Amazon's Selling Partner API or Shopify's Admin API on loopback.",
    )
    targets = parser.add_subparsers(dest="target", metavar="TARGET")
    for name, module_name in STAND_INS.items():
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a broken stand-in must not take the rest of the command line down with it
            target = targets.add_parser(name, help=f"(unavailable: {exc})")
            target.set_defaults(handler=lambda args, exc=exc, name=name: print(f"the {name} stand-in cannot start: {exc}") or 2)
            continue
        target = targets.add_parser(name, help=module.__doc__.strip().splitlines()[0] if module.__doc__ else name)
        module.add_cli_arguments(target)
        target.set_defaults(handler=module.run_cli)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
