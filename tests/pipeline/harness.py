"""What the pipeline, crash and fault tests share: both stand-ins on loopback seeded from one linked
scenario, the pipeline wired in-process or `ordersync run` as a real subprocess, waiting for the store
to settle, what the scenario says must happen (independently of the pipeline's code), and what the
stand-ins' journals say did happen."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from lxml import etree

from adapters.amazon.client import AmazonAccount, AmazonClient
from adapters.amazon.http import DOCUMENTED_RATE_LIMITS
from adapters.shopify.client import ShopifyClient, ShopifyConfig
from adapters.sim import amazon as amazon_sim
from adapters.sim import shopify as shopify_sim
from adapters.sim.linked import SELLER, SHOP_TOKEN, linked
from daemon.pipeline.jobs import Observer
from daemon.store import Store
from daemon.store.models import ADJUSTMENT_FEED, BLOCKING_STATUSES, CANCEL_FEED, QUEUED_FOR_BATCH

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "sim-us"
SHOP_ORDER = "gid://shopify/Order/{}"
AMAZON_OPERATIONS = tuple(DOCUMENTED_RATE_LIMITS)  # every operation the client knows a limit for
FAST_AMAZON = {op: (200.0, 50.0) for op in AMAZON_OPERATIONS}
ROOMY_SHOP = {"maximum_available": 50000, "restore_rate": 50000}
SETTINGS = {"allow_zero_out_inventory": True}
RESTOCK_REASONS = {"BuyerCanceled", "ShippingAddressUndeliverable", "GeneralAdjustment", "PricingError"}
INITIAL_LEVEL = 20  # linked(): every SKU starts with 20 available at location 1


def unique_skus(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each order its own SKUs, so every inventory effect can be traced to exactly one order."""
    for number, order in enumerate(orders, start=1):
        for index, line in enumerate(order["lines"]):
            line["sku"] = f"{line['sku']}-{number:04d}{index}"
    return orders


def bought_before_the_week(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Orders bought 10 days ago. The crash and fault tests check that every effect happens once, whatever the
    policy: a scenario of a few hundred orders, a quarter of them cancelled by the seller, is far over Amazon's
    cancellation rate, and whether a cancellation made here is held for approval would then depend on whether the
    week's orders were polled before it was decided. Orders older than the rate's week never count
    (tests/pipeline/test_cancellation_rate.py tests the rate)."""
    bought = (datetime.now(timezone.utc) - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for order in orders:
        order["purchased"] = bought
    return orders


# -- the stand-ins ----------------------------------------------------------------------------------
@dataclass
class Standins:
    orders: list[dict[str, Any]]
    amazon: Any
    shopify: Any

    @classmethod
    def start(cls, orders: list[dict[str, Any]], *, amazon_limits: dict[str, tuple[float, float]] = FAST_AMAZON,
              shop_throttle: dict[str, float] = ROOMY_SHOP) -> "Standins":
        amazon_scenario, shop_scenario = linked(orders)
        amazon_scenario["polls_to_finish"] = 0  # reports and feeds done at the first look: no 30 s waits
        # Refunds stamped as posted 5 minutes ago: the refunds poll stops 3 minutes before now (Amazon's rule).
        amazon_scenario["refund_posting_lag_seconds"] = 300
        amazon_scenario["rate_limits"] = {op: {"rate": r, "burst": b} for op, (r, b) in amazon_limits.items()}
        shop_scenario["throttle"] = dict(shop_throttle)
        amazon = amazon_sim.create_server(scenario=amazon_scenario).start()
        shopify = shopify_sim.create_server(scenario=shop_scenario).start()
        return cls(orders, amazon, shopify)

    def stop(self) -> None:
        self.amazon.stop()
        self.shopify.stop()

    def __enter__(self) -> "Standins":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def shop_order(self, amazon_order_id: str) -> dict[str, Any]:
        wanted = SHOP_ORDER.format(1000 + self.number(amazon_order_id))
        with self.shopify.lock:
            self.shopify.store.advance()
            state = self.shopify.store.state()
        return next(o for o in state["orders"] if o["id"] == wanted)

    def number(self, amazon_order_id: str) -> int:
        return next(n for n, o in enumerate(self.orders, start=1) if o["id"] == amazon_order_id)

    def levels(self) -> dict[str, int]:
        with self.shopify.lock:
            return {row["sku"]: row["available"] for row in self.shopify.store.state()["inventory"]
                    if row["locationId"] == "gid://shopify/Location/1"}


def amazon_client(standins: Standins, limits: dict[str, tuple[float, float]] = FAST_AMAZON) -> AmazonClient:
    az = standins.amazon
    return AmazonClient(AmazonAccount(
        name=ACCOUNT, endpoint=az.base_url, token_url=az.base_url + "/auth/o2/token", client_id=SELLER["client_id"],
        client_secret=SELLER["client_secret"], refresh_token=SELLER["refresh_tokens"][0],
        marketplace_ids=(SELLER["marketplace_id"],), merchant_id=SELLER["seller_id"], poll_interval=0.05,
        rate_limits=limits, timeout=5.0))


def shopify_client(standins: Standins) -> ShopifyClient:
    return ShopifyClient(ShopifyConfig(shop=standins.shopify.base_url), SHOP_TOKEN)


# -- ordersync run as a subprocess ------------------------------------------------------------------
SECRET_ENV = {"SIM_LWA_SECRET": SELLER["client_secret"], "SIM_REFRESH_TOKEN": SELLER["refresh_tokens"][0],
              "SIM_SHOP_TOKEN": SHOP_TOKEN}


def write_config(folder: Path, standins: Standins, store_url: str, *, amazon_limits: dict[str, tuple[float, float]] = FAST_AMAZON,
                 settings: dict[str, bool] = SETTINGS, batch_size: int = 4, interval: float = 0.3) -> Path:
    limits = "\n".join(f"        {op}: {{rate: {r}, burst: {b}}}" for op, (r, b) in amazon_limits.items())
    flags = "\n".join(f"      {k}: {'true' if v else 'false'}" for k, v in settings.items())
    text = textwrap.dedent(f"""\
        accounts:
          - name: {ACCOUNT}
            amazon:
              endpoint: {standins.amazon.base_url}
              token_url: {standins.amazon.base_url}/auth/o2/token
              client_id: {SELLER['client_id']}
              client_secret: {{env: SIM_LWA_SECRET}}
              refresh_token: {{env: SIM_REFRESH_TOKEN}}
              marketplace_ids: [{SELLER['marketplace_id']}]
              merchant_id: {SELLER['seller_id']}
              rate_limits:
        @LIMITS@
            shopify:
              base_url: {standins.shopify.base_url}
              access_token: {{env: SIM_SHOP_TOKEN}}
            settings:
        @FLAGS@
            batch_size: {batch_size}
        store:
          url: "{store_url}"
        rules:
          dir: {PROJECT_ROOT / 'rules'}
          watch_seconds: 0
        decision_log:
          path: {folder / 'decisions.jsonl'}
        jobs:
          poll_orders: {interval}
          order_report: {interval * 3}
          returns: {interval * 3}
          storefront_cancellations: {interval * 3}
          amazon_refunds: {interval * 3}
          storefront_refunds: {interval * 3}
          dispatch: {interval}
          send_batches: {interval}
          check_feeds: {interval}
        http:
          listen: 127.0.0.1:0
        logging:
          format: json
          level: info
        shutdown:
          drain_seconds: 5
        """).replace("@LIMITS@", textwrap.indent(limits, "  ")).replace("@FLAGS@", flags)
    path = folder / "ordersync.yaml"
    path.write_text(text)
    return path


class Daemon:
    """`ordersync run --config FILE`, its output appended to one log file across restarts."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        out = self.log.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "daemon.cli.main", "run", "--config", str(self.config)],
                                        cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                        env={**os.environ, **SECRET_ENV})
        out.close()
        self.starts += 1

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM, as an operator stops it; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"ordersync run did not stop within 30 s of SIGTERM:\n{self.tail()}")
        return self.process.returncode

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


# -- settling ----------------------------------------------------------------------------------------
def wait_until(predicate: Callable[[], Any], timeout: float, what: str, *, every: float = 0.25,
               explain: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s. {explain()}")
        time.sleep(every)


def unsettled(store: Store) -> dict[str, int]:
    """What is still under way: undecided events, actions pending, claimed or waiting for the next feed,
    feeds in flight."""
    counts = store.counts()
    left = {"undecided events": counts.undecided_events,
            **{f"{s} actions": counts.actions_by_status.get(s, 0) for s in (*BLOCKING_STATUSES, QUEUED_FOR_BATCH)},
            "feeds in flight": len(store.batches_in_flight())}
    return {k: v for k, v in left.items() if v}


def all_decisions(store: Store) -> list[Any]:
    return list(store.decisions_since(datetime(1970, 1, 1, tzinfo=timezone.utc)))


# -- what must happen ---------------------------------------------------------------------------------
@dataclass
class Expected:
    """Per order, the storefront and Amazon effects the shipped rules call for, from the scenario alone."""

    hold: bool = False
    note: bool = False
    tag: bool = False
    cancel: bool | None = None       # None: no cancellation; else the restock flag
    zero_out: bool = False
    refund: bool = False
    cancel_feed: bool = False
    refund_feed: bool = False
    failed: str | None = None        # sync status in the error view
    rma: bool = False
    events: set[str] = field(default_factory=set)


def expected_effects(orders: Iterable[dict[str, Any]], operator: dict[str, tuple[str, str]]) -> dict[str, Expected]:
    """`operator`: order id -> ("cancel", reason) or ("refund", amount), filed on quiet, unshipped orders.
    With the settings of SETTINGS (zero-out allowed at the first location, cancellations synced)."""
    expected: dict[str, Expected] = {}
    for order in orders:
        e = expected[order["id"]] = Expected()
        store = order.get("storefront") or {}
        fulfilled = bool(store.get("fulfilled"))
        cancelled = sum(line.get("cancelled", 0) for line in order["lines"])
        status = order.get("status", "Unshipped")
        if order.get("buyer_cancel") is not None and status != "Canceled":
            e.events.add("buyer_cancel_requested")
            e.note = True
            if not fulfilled and store.get("dropship", "None") in ("None", "Pending") and not store.get("on_hold"):
                e.hold = True
            else:
                e.tag = True
        if status == "Canceled" or cancelled:
            e.events.add("order_cancelled")
            reason = order.get("cancel_reason", "")
            if status != "Canceled" or fulfilled or not reason:
                e.failed = "Failed Cancellation"   # partial, shipped, or no reason: rejected
                # ... and, unless shipped, held so that what Amazon cancelled does not ship
                e.hold = e.hold or not fulfilled
            elif reason == "NoInventory":
                e.cancel, e.zero_out = False, True
            else:
                e.cancel = reason in RESTOCK_REASONS
        if order.get("return"):
            e.events.add("return_reported")
            e.rma = order["return"].get("status", "Approved") == "Approved"
        if order["id"] in operator:
            kind, value = operator[order["id"]]
            if kind == "cancel":
                e.events.add("cancel_requested")
                e.cancel_feed = True
                if value == "NoInventory":
                    e.cancel, e.zero_out = False, True
                else:
                    e.cancel = value in RESTOCK_REASONS - {"PricingError"}
            else:
                e.events.add("refund_requested")
                e.refund = e.refund_feed = True
    return expected


def expected_level(order: dict[str, Any], e: Expected, line: dict[str, Any]) -> int:
    if e.zero_out:
        return 0
    if e.cancel:
        return INITIAL_LEVEL + line["quantity"]
    return INITIAL_LEVEL


# -- what did happen ----------------------------------------------------------------------------------
def shop_mutations(shopify: Any) -> list[dict[str, Any]]:
    return [e for e in shopify.journal.entries() if e.get("kind") == "mutation"]


def feed_messages(amazon: Any) -> Counter[tuple[str, str]]:
    """(Amazon order id, feed type) of every message of every feed Amazon accepted (createFeed)."""
    seen: Counter[tuple[str, str]] = Counter()
    with amazon.lock:
        feeds = [(f["feedType"], amazon.documents[f["input"]]["content"]) for f in amazon.feeds.values()]
    for feed_type, content in feeds:
        root = etree.fromstring(content)
        for message in root.findall("Message"):
            for order_id in {el.text for el in message.iter() if etree.QName(el).localname == "AmazonOrderID"}:
                seen[(order_id, feed_type)] += 1
    return seen


FEEDS = {"cancel_feed": CANCEL_FEED, "refund_feed": ADJUSTMENT_FEED}


def drive(pipeline: Any, dispatcher: Any, *, polls: bool = True, timeout: float = 60) -> None:
    """Run the jobs in-process, in the daemon's order, until nothing is under way."""
    deadline = time.monotonic() + timeout
    if polls:
        while pipeline.poll_orders():
            pass
        pipeline.poll_order_report()
        pipeline.poll_returns()
        pipeline.poll_storefront_cancellations()
        pipeline.poll_amazon_refunds()
        pipeline.poll_storefront_refunds()
    while True:
        pipeline.decide()
        while dispatcher.run():
            pass
        pipeline.send_batches()
        pipeline.check_feeds()
        left = unsettled(pipeline.store)
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled within {timeout} s: {left}")
        time.sleep(0.05)


# -- the operator's requests, and the end-state checks the crash and fault tests share ---------------------
def quiet_orders(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Orders with no Amazon change at all, unshipped, in the shop: where operator requests go."""
    return [o for o in orders if o.get("buyer_cancel") is None and not o.get("return") and o.get("status", "Unshipped") == "Unshipped"
            and not any(line.get("cancelled") for line in o["lines"]) and not (o.get("storefront") or {}).get("fulfilled")]


def file_operator_requests(store: Store, amazon: AmazonClient, orders: list[dict[str, Any]], count: int = 8) -> dict[str, tuple[str, str]]:
    """Half cancellations (each kind of reason), half refunds; returns what was filed per order."""
    from daemon.pipeline.operator import request_cancellation, request_refund

    filed: dict[str, tuple[str, str]] = {}
    reasons = ["BuyerCanceled", "NoInventory", "CustomerExchange"]
    for index, order in enumerate(quiet_orders(orders)[:count]):
        if index % 2 == 0:
            reason = reasons[(index // 2) % len(reasons)]
            assert request_cancellation(store, amazon, ACCOUNT, order["id"], reason, request_id=f"op-{index}")
            filed[order["id"]] = ("cancel", reason)
        else:
            assert request_refund(store, amazon, ACCOUNT, order["id"], "5.00", "CustomerReturn", request_id=f"op-{index}")
            filed[order["id"]] = ("refund", "5.00")
    assert len(filed) == count, f"only {len(filed)} quiet orders for {count} operator requests"
    return filed


IN_DOUBT = "SubmissionInDoubt"


def cancelled_on_amazon(standins: Standins, operator: dict[str, tuple[str, str]]) -> list[str]:
    """Orders the operator asked to cancel whose cancellation feed Amazon has applied."""
    with standins.amazon.lock:
        return [oid for oid, (kind, _) in operator.items() if kind == "cancel" and standins.amazon.orders[oid]["status"] == "Canceled"]


def refunded_on_amazon(standins: Standins, operator: dict[str, tuple[str, str]]) -> list[str]:
    """Orders the operator asked to refund whose adjustment feed Amazon has applied."""
    with standins.amazon.lock:
        return [oid for oid, (kind, _) in operator.items() if kind == "refund" and standins.amazon.orders[oid]["refunds"]]


def expected_event_count(standins: Standins, operator: dict[str, tuple[str, str]]) -> int:
    expected = expected_effects(standins.orders, operator)
    return (sum(len(e.events) for e in expected.values()) + len(cancelled_on_amazon(standins, operator))
            + len(refunded_on_amazon(standins, operator)))


@dataclass
class Outcome:
    in_doubt: list[str]          # actions failed as SubmissionInDoubt (never resent)
    decisions: int
    mutations: int
    feed_messages: int


def check_end_state(standins: Standins, store: Store, log_path: Path, operator: dict[str, tuple[str, str]],
                    context: str = "") -> Outcome:
    """Every expected event decided exactly once and logged once; every expected storefront and Amazon
    effect present exactly once (Amazon messages in doubt may be absent, never doubled)."""
    from daemon.audit.chain import verify

    import json as _json

    orders = {o["id"]: o for o in standins.orders}
    expected = expected_effects(standins.orders, operator)
    problems: list[str] = []

    # events and decisions
    counts = store.counts()
    assert counts.undecided_events == 0 and counts.failed_events == 0, f"{context}: {counts}"
    decisions = all_decisions(store)
    seen_events: Counter[tuple[str, str]] = Counter()
    for decision in decisions:
        event = store.get_event(decision.event_id)
        seen_events[(event.kind, event.amazon_order_id)] += 1
    want_events = Counter((kind, oid) for oid, e in expected.items() for kind in e.events)
    # an operator's cancellation that reached Amazon comes back as Amazon's own cancellation of the order
    want_events.update(("order_cancelled", oid) for oid in cancelled_on_amazon(standins, operator))
    # and an operator's refund that reached Amazon comes back as Amazon's refund (which needs nothing: the
    # storefront shows it, as refundCreate once below says)
    want_events.update(("refund_requested", oid) for oid in refunded_on_amazon(standins, operator))
    assert seen_events == want_events, (f"{context}: events decided differ from the scenario: missing "
                                        f"{sorted(want_events - seen_events)[:5]}, extra {sorted(seen_events - want_events)[:5]}")
    assert len({d.event_id for d in decisions}) == len(decisions), f"{context}: an event has two decisions"

    # the decision log
    verification = verify(log_path)
    assert verification.ok, f"{context}: decision log broken: {verification.broken}"
    logged = Counter(_json.loads(line)["decision_id"] for line in log_path.read_text().splitlines() if line.strip())
    doubled = {k: n for k, n in logged.items() if n > 1}
    assert not doubled, f"{context}: decisions logged more than once: {doubled}"
    assert set(logged) == {d.decision_id for d in decisions}, (
        f"{context}: log and store differ: {len(set(logged) - {d.decision_id for d in decisions})} only logged, "
        f"{len({d.decision_id for d in decisions} - set(logged))} never logged")

    # storefront effects, from the Shopify stand-in's journal
    by_order: dict[str, Counter[str]] = {}
    cancels: dict[str, list[bool]] = {}
    adjustments: Counter[tuple[str, str]] = Counter()
    gid_to_order = {SHOP_ORDER.format(1000 + n): o["id"] for n, o in enumerate(standins.orders, start=1)}
    mutations = shop_mutations(standins.shopify)
    for m in mutations:
        if m["field"] == "inventoryAdjustQuantities":
            for change in m["summary"]["changes"]:
                adjustments[(m["reference"], change["sku"])] += 1
            continue
        oid = gid_to_order[m["order"]]
        by_order.setdefault(oid, Counter())[m["field"]] += 1
        if m["field"] == "orderCancel":
            cancels.setdefault(oid, []).append(m["summary"]["restock"])
    doubled_adjustments = {k: n for k, n in adjustments.items() if n > 1}
    if doubled_adjustments:
        problems.append(f"inventory changed more than once for one action: {doubled_adjustments}")
    levels = standins.levels()
    for oid, e in expected.items():
        got = by_order.get(oid, Counter())
        want = Counter({"fulfillmentOrderHold": int(e.hold), "orderUpdate": int(e.note), "tagsAdd": int(e.tag),
                        "orderCancel": int(e.cancel is not None), "refundCreate": int(e.refund)})
        if +got != +want:
            problems.append(f"{oid}: storefront mutations {dict(+got)}, expected {dict(+want)}")
        if e.cancel is not None and cancels.get(oid) and cancels[oid][0] != e.cancel:
            problems.append(f"{oid}: cancelled with restock={cancels[oid][0]}, expected {e.cancel}")
        for line in orders[oid]["lines"]:
            if levels.get(line["sku"]) != expected_level(orders[oid], e, line):
                problems.append(f"{oid}: {line['sku']} available {levels.get(line['sku'])}, expected {expected_level(orders[oid], e, line)}")

    # Amazon feed messages, from the documents of the feeds the Amazon stand-in accepted
    sent = feed_messages(standins.amazon)
    in_doubt: list[str] = []
    amazon_actions = {}
    for decision in decisions:
        for action in store.actions_of(decision.decision_id):
            if action.type in ("cancel_on_amazon", "refund_on_amazon"):
                amazon_actions[(action.amazon_order_id, action.type)] = action
    for (oid, feed_type), n in sent.items():
        if n > 1:
            problems.append(f"{oid}: {n} messages in {feed_type} feeds, sent more than once")
    for oid, e in expected.items():
        for flag, action_type, feed_type in (("cancel_feed", "cancel_on_amazon", CANCEL_FEED),
                                             ("refund_feed", "refund_on_amazon", ADJUSTMENT_FEED)):
            n = sent.get((oid, feed_type), 0)
            if not getattr(e, flag):
                if n:
                    problems.append(f"{oid}: unexpected {feed_type} message")
                continue
            action = amazon_actions.get((oid, action_type))
            if action is None:
                problems.append(f"{oid}: no {action_type} action")
                continue
            doubt = action.status == "failed" and IN_DOUBT in (action.last_error or "")
            if doubt:
                in_doubt.append(f"{oid} {action_type}")
            elif n != 1 or action.status != "done":
                problems.append(f"{oid}: {action_type} {action.status} ({action.last_error}), {n} feed message(s)")

    # the error view
    failed = {o.amazon_order_id: o.sync_status for o in store.failed_orders(ACCOUNT)}
    doubted = {entry.split()[0] for entry in in_doubt}
    for oid, e in expected.items():
        if oid in doubted:
            continue
        if failed.get(oid) != e.failed:
            problems.append(f"{oid}: error view says {failed.get(oid)!r}, expected {e.failed!r}")
    rmas = sum(len(store.rmas_of(ACCOUNT, oid)) for oid in expected)
    if rmas != sum(e.rma for e in expected.values()):
        problems.append(f"{rmas} RMAs, expected {sum(e.rma for e in expected.values())}")

    assert not problems, f"{context}: {len(problems)} problem(s):\n" + "\n".join(problems[:30])
    return Outcome(in_doubt, len(decisions), len(mutations), sum(sent.values()))


class PausesSeen(Observer):
    """What each job run told the service of Amazon pausing its work (ordersync_amazon_paused), as (account, work,
    paused)."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str, bool]] = []

    def amazon_paused(self, account: str, work: str, paused: bool) -> None:
        self.runs.append((account, work, paused))
