"""Storefront lookups: how many events a store's rate limit lets the daemon decide per second.

Deciding an event reads the order's storefront copy first (ShopifyClient.find_order, one GraphQL query);
pipeline_throughput.py takes that read away to measure the pipeline itself. Against a real shop the read
is paced by Shopify's cost bucket: every query must find its *requested* cost available, and keeps its
*actual* cost (Shopify refunds the rest). Once the bucket has run low, lookups go at restore rate /
actual cost per second, whatever the machine.

This runs the real client over HTTP against the Shopify stand-in (adapters/sim/shopify.py), which
charges as Shopify does (requested cost from the query, actual cost from the objects returned) with a
bucket of the given size and restore rate, and prints:
  - the points one lookup requests and is charged;
  - lookups/s while the bucket is full (the burst), and once it has run low (the sustained rate), with
    what the bucket predicts for the sustained rate;
  - that no request was THROTTLED (the client paces itself; a refusal would mean it did not).

Defaults are Shopify's Standard plan (restore 100 points/s, bucket 2,000); Advanced restores 200/s,
Plus 1,000/s (shopify.dev/docs/api/usage/limits). Figures are printed, never asserted.

Run: .venv/bin/python benchmarks/storefront_lookups.py [--seconds 30] [--restore-rate 100] [--bucket 2000]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.errors import TransientError  # noqa: E402
from adapters.shopify import ShopifyClient, ShopifyConfig  # noqa: E402
from adapters.sim.linked import SHOP_TOKEN, linked  # noqa: E402
from adapters.sim.shopify import create_server  # noqa: E402
from daemon.logging import configure_logging  # noqa: E402

def scenario(orders: int, lines: int, restore_rate: float, bucket: float) -> dict[str, Any]:
    """A shop of `orders` Amazon orders of `lines` lines each, as the demo's stand-ins have them (linked.py)."""
    skus = [f"SKU-{n}" for n in range(lines)]
    _, shop = linked([{"id": _amazon_id(n), "lines": [{"sku": sku, "quantity": 1, "price": "10.00"} for sku in skus]}
                      for n in range(orders)])
    return {**shop, "throttle": {"maximum_available": bucket, "restore_rate": restore_rate, "max_query_cost": 1000}}


def _amazon_id(n: int) -> str:
    return f"114-{n:07d}-{n:07d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to look orders up (default %(default)s)")
    parser.add_argument("--restore-rate", type=float, default=100.0, help="points per second (Standard 100, Advanced 200, Plus 1000)")
    parser.add_argument("--bucket", type=float, default=2000.0, help="bucket size in points (default %(default)s)")
    parser.add_argument("--lines", type=int, default=2, help="line items per order (default %(default)s)")
    parser.add_argument("--orders", type=int, default=200, help="distinct orders looked up in turn (default %(default)s)")
    args = parser.parse_args()
    configure_logging(format="console", level="warning", stream=sys.stderr)  # the client's debug lines are not figures

    with create_server(scenario=scenario(args.orders, args.lines, args.restore_rate, args.bucket)) as server:
        with ShopifyClient(ShopifyConfig(shop=server.base_url), SHOP_TOKEN) as client:
            stats = client.transport.stats
            done: list[float] = []
            burst: int | None = None  # lookups made before the client first had to wait for the bucket
            start = time.monotonic()
            while time.monotonic() - start < args.seconds:
                waited = stats.paced_seconds
                try:
                    client.find_order(_amazon_id(len(done) % args.orders))
                except TransientError as exc:
                    sys.exit(f"storefront_lookups: {exc}; a bucket of {args.bucket:,.0f} points may be smaller than "
                             "one lookup's requested cost, which Shopify then never serves")
                if burst is None and stats.paced_seconds > waited:
                    burst = len(done)
                done.append(time.monotonic() - start)
            paced = stats.paced_seconds + stats.throttle_wait_seconds
        journal = [e for e in server.journal.entries() if e.get("kind") == "request" and e.get("operation") == "FindOrders"]

    served = [e for e in journal if not e.get("error")]
    if not served:
        sys.exit(f"storefront_lookups: no lookup was answered in {args.seconds:g} s; give more --seconds")
    throttled = sum(1 for e in journal if e.get("error") == "THROTTLED")
    requested = max(e["requested"] for e in served)
    actual = sum(e["actual"] for e in served) / len(served)
    if burst is None:
        burst = len(done)
    tail = done[burst:]
    sustained = (len(tail) - 1) / (tail[-1] - tail[0]) if tail[2:] else 0.0

    print(f"ordersync storefront lookups: ShopifyClient.find_order against the Shopify stand-in over HTTP, "
          f"{args.seconds:.0f} s, bucket {args.bucket:,.0f} points restoring {args.restore_rate:,.0f}/s, "
          f"orders of {args.lines} lines")
    print(f"  one lookup (FindOrders) requests {requested} points and is charged {actual:.0f}")
    rate = f" at {burst / done[burst - 1]:,.0f}/s" if burst else ""
    print(f"  lookups: {len(done):,}; before the first wait for the bucket: {burst:,}{rate}")
    predicted = f"the bucket predicts {args.restore_rate / actual:,.1f}/s: restore rate / points charged"
    if tail[2:]:
        print(f"  once it ran low: {sustained:,.1f}/s ({predicted})")
    else:
        print(f"  the bucket never ran low in {args.seconds:.0f} s: the client's own speed was the limit ({predicted})")
    print(f"  the client waited {paced:.1f} s for the bucket; THROTTLED answers: {throttled}")
    print(f"  so a store on this plan has about {args.restore_rate / actual:,.1f} events/s decided once a backlog "
          f"has drained the bucket: each event with a storefront order needs its lookup")


if __name__ == "__main__":
    main()
