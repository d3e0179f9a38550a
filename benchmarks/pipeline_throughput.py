"""Pipeline throughput: Amazon changes through ingest → decide → outbox, on SQLite and on PostgreSQL.

The real code path of one account's jobs (daemon.pipeline.jobs.AccountPipeline), with only the network
taken away:
  - ingest: pages of 100 Amazon orders (generated from adapters.sim.linked's scenario kinds) and the
    returns report's rows of those returned go in as poll_orders and poll_returns put what Amazon
    answered (AccountPipeline.ingest_orders, ingest_returns): the orders' changes and returns become
    events (daemon.pipeline.events), stored with the cursor and, for orders, their rows in the grid;
  - decide + record: `AccountPipeline.decide(500)`, as the decide job runs it: undecided events out,
    the fact built from the payload and the storefront copy, the rules engine's decision, the audit
    record, decision + actions (outbox) + event marked decided in one transaction, the decision log
    line (hash chain, flushed), the JSON log line per decision (to /dev/null, as the service logs it).
    The storefront lookup is an in-memory stand-in for ShopifyClient.find_order (no HTTP), which is
    all of Shopify that decide uses.
Ingest and decide alternate (a few pages polled, then a decide run), like the scheduled jobs.
The store is opened as the daemon opens it, so on SQLite its WAL checkpoint thread runs alongside.

Prints per database: events/s of each stage and overall, peak RSS (VmHWM), RSS at 10k, 50k and 100k
events decided, and what is in the store at the end (every event decided once, the actions queued).
Orders are made page by page from a fixed pool of templates, so the benchmark's own input does not grow.

Run: .venv/bin/python benchmarks/pipeline_throughput.py [--events 100000] [--skip-pg] [--pg URL]
PostgreSQL: --pg, else ORDERSYNC_TEST_PG_URL, else postgresql+psycopg://postgres@127.0.0.1:5432/test;
the run uses a fresh schema that it drops afterwards, and is skipped with a message when unreachable.
Figures are printed, never asserted: the test suites hold behaviour, this holds speed.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.amazon.models import (AmazonOrder, AmazonOrderLine, OrderCursor, OrderStatus, ReturnItem,  # noqa: E402
                                    ReturnRow, rollup)
from adapters.shopify.client import OrderNotFound  # noqa: E402
from adapters.shopify.models import DropshipStatus, LineItem, ShippingStatus, StorefrontOrder, order_status_for  # noqa: E402
from adapters.shopify.models import OrderStatus as ShopStatus  # noqa: E402
from adapters.sim.linked import generated  # noqa: E402
from daemon.audit.log import DecisionLog  # noqa: E402
from daemon.logging import configure_logging  # noqa: E402
from daemon.pipeline.events import order_events, return_events  # noqa: E402
from daemon.pipeline.jobs import AccountPipeline  # noqa: E402
from daemon.rules.engine import RulesEngine  # noqa: E402
from daemon.store import StoreError, open_store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PAGE = 100            # orders per page, Amazon's maximum page size
PAGES_PER_POLL = 5    # pages ingested between two decide runs
DECIDE_LIMIT = 500    # AccountPipeline.decide's default
TEMPLATES = 2000      # distinct scenario orders, reused with fresh order ids
MILESTONES = (10_000, 50_000, 100_000)
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
SETTINGS = {"allow_zero_out_inventory": True, "queue_refunds_and_cancellations": False, "allow_over_refund": False}


def rss_mb() -> float:
    return _status_mb("VmRSS:")


def peak_rss_mb() -> float:
    return _status_mb("VmHWM:")


def _status_mb(field_name: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset VmHWM (Linux: write 5 to clear_refs) so each database's peak is its own. False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


# -- input: Amazon orders and their storefront copies, made from scenario templates -------------------
@dataclass(frozen=True)
class Template:
    order: AmazonOrder        # with a placeholder id
    storefront: StorefrontOrder | None
    rma: dict[str, Any] | None


def _template(scenario: dict[str, Any]) -> Template:
    lines = []
    for index, line in enumerate(scenario["lines"], start=1):
        cancelled = line.get("cancelled", 0)
        lines.append(AmazonOrderLine(
            order_item_id=f"{index:014d}", sku=line["sku"], quantity_ordered=line["quantity"],
            quantity_shipped=line.get("shipped", 0), quantity_cancelled=cancelled, unit_price=Decimal(line["price"]),
            buyer_cancel_requested=scenario.get("buyer_cancel") is not None, buyer_cancel_reason=scenario.get("buyer_cancel"),
            cancelled_by=scenario.get("cancelled_by", "SELLER") if cancelled else None,
            cancel_reason=scenario.get("cancel_reason", "") if cancelled else None))
    total = sum(Decimal(line["price"]) * line["quantity"] for line in scenario["lines"])
    order = rollup(AmazonOrder(
        amazon_order_id="", status=OrderStatus(scenario.get("status", "Unshipped")), fulfillment=scenario["fulfillment"],
        lines=tuple(lines), last_updated=NOW - timedelta(hours=1), purchase_date=NOW - timedelta(hours=3),
        order_total=total, currency="USD"))
    shop = scenario.get("storefront") or {}
    storefront = None
    if not shop.get("missing"):
        items = tuple(LineItem(
            id=f"gid://shopify/LineItem/{index}", sku=line["sku"], name=line["sku"], quantity=line["quantity"],
            current_quantity=line["quantity"], refundable_quantity=line["quantity"],
            unfulfilled_quantity=0 if shop.get("fulfilled") else line["quantity"] - line.get("shipped", 0),
            fulfilled_quantity=line["quantity"] if shop.get("fulfilled") else line.get("shipped", 0),
            unit_price=Decimal(line["price"]), inventory_item_id=None) for index, line in enumerate(scenario["lines"], 1))
        shipped = sum(i.fulfilled_quantity for i in items)
        shipping = (ShippingStatus.SHIPPED if shipped and shipped == sum(i.quantity for i in items)
                    else ShippingStatus.PARTIALLY_SHIPPED if shipped else ShippingStatus.UNSHIPPED)
        status = order_status_for(bool(shop.get("cancelled")), False, shipping, ())
        if shop.get("on_hold") and status is ShopStatus.IN_PROCESS:
            status = ShopStatus.ON_HOLD
        storefront = StorefrontOrder(
            id="", name="", amazon_order_id=None, source_identifier=None, tags=("amazon",), note=None,
            shipping_status=shipping, order_status=status,
            dropship_status=DropshipStatus(shop.get("dropship", "None")), financial_status="PAID",
            fulfillment_status="FULFILLED" if shipping is ShippingStatus.SHIPPED else "UNFULFILLED", currency="USD",
            paid_total=total, refunded_total=Decimal("0"), current_total=total, cancelled=bool(shop.get("cancelled")),
            cancelled_at=None, cancel_reason=None, cancel_staff_note=None, closed=False, line_items=items,
            fulfillment_orders=())
    return Template(order, storefront, scenario.get("return"))


def _order_id(number: int) -> str:
    return f"114-{number // 10_000_000:07d}-{number % 10_000_000:07d}"


def _template_of(order_id: str) -> int:
    return (int(order_id[4:11]) * 10_000_000 + int(order_id[12:])) % TEMPLATES


class Orders:
    """Pages of Amazon orders (numbered from 1, each a copy of template number % TEMPLATES) with the
    returns report's rows of those returned and, for the decide stage, the storefront copy of any of them."""

    def __init__(self, seed: int = 5) -> None:
        self.templates = [_template(s) for s in generated(TEMPLATES, seed)]
        # Events each template's order makes (its changes, and its return's): a page stops at the room left.
        self.events_of = [len(order_events(t.order)) + (len(return_events(self._return_row(t, 0, ""))) if t.rma else 0)
                          for t in self.templates]
        self.next_number = 1

    @staticmethod
    def _return_row(template: Template, number: int, order_id: str) -> ReturnRow:
        assert template.rma is not None
        return ReturnRow(rma_id=f"RMA{number:09d}", amazon_order_id=order_id, status=template.rma["status"],
                         items=tuple(ReturnItem(l.sku, None, l.quantity_ordered, "CR-UNWANTED_ITEM", l.order_item_id)
                                     for l in template.order.lines), tracking_number=f"1Z{number:016d}")

    def page(self, room: int) -> tuple[list[AmazonOrder], list[ReturnRow]]:
        """One page of up to PAGE orders making at most `room` events: the orders (as poll_orders gets them)
        and the returns report's rows of those returned (as poll_returns gets them)."""
        orders, returns = [], []
        for number in range(self.next_number, self.next_number + PAGE):
            template = self.templates[number % TEMPLATES]
            if self.events_of[number % TEMPLATES] > room:
                continue  # the last pages: an order that would go past the events asked for is left out
            room -= self.events_of[number % TEMPLATES]
            order_id = _order_id(number)
            orders.append(replace(template.order, amazon_order_id=order_id))
            if template.rma:
                returns.append(self._return_row(template, number, order_id))
        self.next_number += PAGE
        return orders, returns


@dataclass
class InMemoryShopify:
    """ShopifyClient.find_order and kit_components without HTTP: the storefront copy of an order, or OrderNotFound."""

    orders: Orders
    lookups: int = 0

    def find_order(self, amazon_order_id: str) -> StorefrontOrder:
        self.lookups += 1
        storefront = self.orders.templates[_template_of(amazon_order_id)].storefront
        if storefront is None:
            raise OrderNotFound(f"no storefront order for {amazon_order_id}", code="ORDER_NOT_FOUND", order_id=amazon_order_id)
        # A fresh object per lookup, as the client builds one from each answer.
        return replace(storefront, id=f"gid://shopify/Order/{amazon_order_id[4:11]}{amazon_order_id[12:]}",
                       amazon_order_id=amazon_order_id, source_identifier=amazon_order_id)

    def kit_components(self, sku: str) -> tuple[()]:
        """Deciding a return asks whether a SKU is a bundle; this shop has none."""
        self.lookups += 1
        return ()

    def close(self) -> None: ...


# -- one run ------------------------------------------------------------------------------------
@dataclass
class Result:
    events: int = 0
    ingest_s: float = 0.0
    decide_s: float = 0.0
    rss_at: dict[int, float] = field(default_factory=dict)
    rss_start: float = 0.0
    peak: float = 0.0
    counts: Any = None
    log_lines: int = 0
    analyzes: int = 0
    shop_reads: int = 0


class Autoanalyze:
    """What PostgreSQL's autovacuum does by default, for a server where it is off (SHOW autovacuum): ANALYZE
    the tables once a tenth of their rows are new, so the planner knows their size. Without it every
    query plans for tables of a few dozen rows, and indexed lookups of a batch's orders become scans of
    every action (0.6 s each, measured here). Done between stages, outside the timed ones, as autovacuum
    does it in a server process of its own."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.needed = False
        if store.is_postgresql:
            from sqlalchemy import text
            with store.engine.connect() as conn:
                self.needed = conn.execute(text("SHOW autovacuum")).scalar() == "off"
        self.last = 0
        self.runs = 0

    def maybe(self, rows: int) -> None:
        if self.needed and rows >= 50 + 1.1 * self.last:
            from sqlalchemy import text
            with self.store.engine.connect() as conn:
                conn.execute(text("ANALYZE events, decisions, actions, orders"))
                conn.commit()
            self.last, self.runs = rows, self.runs + 1


def run(url: str, events_wanted: int, engine: RulesEngine, folder: Path) -> Result:
    store = open_store(url, migrate=True)
    decision_log = DecisionLog(folder / "decisions.jsonl")
    orders = Orders()
    shop = InMemoryShopify(orders)
    pipeline = AccountPipeline(name="acme", settings=SETTINGS, batch_size=15, store=store, engine=engine,
                               decision_log=decision_log, amazon=None, shopify=shop,  # type: ignore[arg-type]
                               clock=lambda: NOW)
    result = Result()
    analyze = Autoanalyze(store)
    gc.collect()
    gc.freeze()  # as the service does once started (daemon.service.lifecycle)
    reset_peak_rss()
    result.rss_start = rss_mb()
    milestones = [m for m in MILESTONES if m <= events_wanted] + ([events_wanted] if events_wanted not in MILESTONES else [])
    ingested = decided = 0
    page_number = 0
    try:
        while decided < events_wanted:
            # Poll: a few pages, each stored with its cursor as poll_orders / poll_returns store them.
            start = time.perf_counter()
            for _ in range(PAGES_PER_POLL):
                if ingested >= events_wanted:
                    break
                page, rows = orders.page(events_wanted - ingested)
                if not page:
                    ingested = events_wanted  # no template's order fits the few events left
                    break
                page_number += 1
                high_water = (NOW + timedelta(seconds=page_number)).strftime("%Y-%m-%dT%H:%M:%SZ")
                ingested += pipeline.ingest_orders(page, OrderCursor(high_water))
                ingested += pipeline.ingest_returns(rows, high_water)
            result.ingest_s += time.perf_counter() - start
            # Decide: as the decide job runs, until nothing is left.
            start = time.perf_counter()
            while True:
                done = pipeline.decide(DECIDE_LIMIT)
                decided += done
                if done < DECIDE_LIMIT:
                    break
            result.decide_s += time.perf_counter() - start
            analyze.maybe(ingested)
            while milestones and decided >= milestones[0]:
                result.rss_at[milestones.pop(0)] = rss_mb()
            if not done and ingested >= events_wanted:
                break  # nothing more to decide (e.g. events refused by the schema)
        result.events = decided
        result.peak = peak_rss_mb()
        result.counts = store.counts()
        result.analyzes = analyze.runs
        result.shop_reads = shop.lookups
        with open(folder / "decisions.jsonl", "rb") as handle:
            result.log_lines = sum(1 for _ in handle)
    finally:
        decision_log.close()
        store.close()
    return result


def report(name: str, result: Result, reset_ok: bool) -> None:
    total = result.ingest_s + result.decide_s
    print(f"\n{name}: {result.events:,} events")
    print(f"  ingest (events, grid rows, cursor)  {_rate(result.events, result.ingest_s)}")
    print(f"  decide + record + logs              {_rate(result.events, result.decide_s)}")
    print(f"  overall                             {_rate(result.events, total)}")
    peak_note = "" if reset_ok else " (process peak: VmHWM could not be reset)"
    print(f"  peak RSS                            {result.peak:>10.1f} MB{peak_note}")
    marks = ", ".join(f"{n // 1000}k: {mb:.1f} MB" for n, mb in result.rss_at.items())
    last = list(result.rss_at.values())
    growth = f", growth {last[-1] - last[0]:+.1f} MB from the first mark" if len(last) > 1 else ""
    print(f"  RSS at start: {result.rss_start:.1f} MB; {marks}{growth}")
    c = result.counts
    if c is not None:
        decisions = sum(c.decisions_by_rule.values())
        actions = ", ".join(f"{k} {v:,}" for k, v in c.actions_by_status.items() if v)
        print(f"  store: events {sum(c.events_by_kind.values()):,} ({', '.join(f'{k} {v:,}' for k, v in sorted(c.events_by_kind.items()))}), "
              f"undecided {c.undecided_events:,}, failed {c.failed_events:,}, decisions {decisions:,}; actions: {actions}")
        print(f"  decision log lines: {result.log_lines:,}")
        # Against a real shop each read spends its cost bucket (benchmarks/storefront_lookups.py).
        print(f"  storefront reads (order lookups and kit lookups): {result.shop_reads:,}, "
              f"{result.shop_reads / max(1, result.events):.2f} per event")
    if result.analyzes:
        print(f"  autovacuum is off on this server: ANALYZE run {result.analyzes} times between stages, as it would")


def _rate(count: int, seconds: float) -> str:
    if not count or seconds <= 0:
        return "        n/a"
    return f"{count / seconds:>10,.0f} events/s  ({seconds:.1f} s, {seconds * 1e6 / count:.0f} µs each)"


def _pg_schema(admin_url: str) -> tuple[str, Callable[[], None]] | str:
    """A fresh schema on the server and a URL whose search_path is it, or why the server cannot be used."""
    from sqlalchemy import create_engine, text
    schema = f"ordersync_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # unreachable, bad URL, no rights: the SQLite figures still stand
        return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    separator = "&" if "?" in admin_url else "?"
    return f"{admin_url}{separator}options={quote(f'-csearch_path={schema}')}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--skip-pg", action="store_true", help="SQLite only")
    parser.add_argument("--pg", default=os.environ.get("ORDERSYNC_TEST_PG_URL") or DEFAULT_PG,
                        help="PostgreSQL URL (default: $ORDERSYNC_TEST_PG_URL or %(default)s)")
    parser.add_argument("--rules", type=Path, default=ROOT / "rules")
    args = parser.parse_args()

    # The service's own log set-up, one JSON line per decision, written to /dev/null: its cost counts.
    devnull = open(os.devnull, "w")
    configure_logging(format="json", level="info", stream=devnull)
    engine = RulesEngine(args.rules)
    reset_ok = reset_peak_rss()
    print(f"ordersync pipeline throughput: {args.events:,} events, pages of {PAGE} orders, "
          f"{PAGES_PER_POLL} pages per poll, decide({DECIDE_LIMIT}); rulesets "
          + ", ".join(r.name for r in engine.rulesets) + f"; python {sys.version.split()[0]}, {os.cpu_count()} CPUs")

    with tempfile.TemporaryDirectory(prefix="ordersync-bench-") as tmp:
        folder = Path(tmp) / "sqlite"
        folder.mkdir()
        result = run(f"sqlite:///{folder / 'ordersync.db'}", args.events, engine, folder)
        report("SQLite (WAL, synchronous=NORMAL, file in a tmp dir)", result, reset_ok)

        if args.skip_pg:
            print("\nPostgreSQL: skipped (--skip-pg)")
        else:
            schema = _pg_schema(args.pg)
            if isinstance(schema, str):
                print(f"\nPostgreSQL: skipped, cannot use {args.pg.split('@')[-1]}: {schema}")
            else:
                url, drop = schema
                folder = Path(tmp) / "pg"
                folder.mkdir()
                try:
                    try:
                        result = run(url, args.events, engine, folder)
                    except StoreError as exc:
                        print(f"\nPostgreSQL: skipped: {exc}")
                    else:
                        report(f"PostgreSQL ({args.pg.split('@')[-1]}, fresh schema)", result, reset_ok)
                finally:
                    drop()
    engine.close()


if __name__ == "__main__":
    main()
