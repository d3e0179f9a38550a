"""`ordersync demo`: the whole loop on this machine, with no account.

Both stand-ins start on free loopback ports, seeded from one linked scenario (adapters/sim/linked.py);
a configuration pointing at them is written to a work folder; the daemon's `Service` runs in this
process with the pipeline plugin, so the jobs are exactly those of `ordersync run`, only on intervals
of a fraction of a second. Two requests are also made here by an "operator" (a cancellation and a
refund), and a person cancels one order in the Shopify admin, so the Amazon feed path shows too. When
the store says nothing is left to do, each order's story is printed, then a summary and the decision
log's verification.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

import yaml


DEFAULT_ORDERS = Path(__file__).resolve().parent.parent / "adapters" / "sim" / "scenarios" / "demo.yaml"
RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
ACCOUNT = "demo"

# The documented SP-API limits would make the reports alone take minutes (createReport: one a minute).
# The stand-in and the client are told the same faster limits, so the client's pacing is still exercised.
FAST_LIMITS = {"rate": 50.0, "burst": 100}

# Short intervals: the same jobs as production, just often. order_report and returns create a report each
# run, so they run less often than the cheap jobs.
JOBS = {"poll_orders": 0.5, "order_report": 1.0, "returns": 1.0, "storefront_cancellations": 1.0, "amazon_refunds": 1.0,
        "dispatch": 0.2, "send_batches": 0.5, "check_feeds": 0.3}

# An Amazon-side change made by one of our feeds reaches the store only at the next poll; the scenario is
# settled when nothing is left to do for longer than the slowest poll interval.
QUIET_SECONDS = 2.5

# Requests made here rather than on Amazon (daemon.pipeline.operator); filed when the order exists.
OPERATOR_CANCEL = {"order": "114-0000018-0000018", "reason_code": "NoInventory"}
OPERATOR_REFUND = {"order": "114-0000016-0000016", "amount": "12.50", "reason_code": "CustomerReturn"}
# An order a person cancels in the Shopify admin once the daemon watches the shop: the storefront poll tells Amazon.
ADMIN_CANCEL = {"order": "114-0000020-0000020", "reason": "CUSTOMER", "words": "Customer changed/cancelled order"}
# An order whose return a person refunds in Seller Central: the refunds poll records it in Shopify.
SELLER_CENTRAL_REFUND = {"order": "114-0000019-0000019", "amount": "35.00"}

OUTCOME = {"done": "done", "failed": "FAILED", "rejected": "rejected", "awaiting_approval": "approval",
           "pending": "pending", "claimed": "running", "queued_for_batch": "queued"}
OUTCOME_WORDS = {"done": "done", "FAILED": "failed", "rejected": "rejected by an operator", "approval": "queued for approval",
                 "pending": "still pending", "running": "still running", "queued": "waiting for a feed"}


class DemoError(Exception):
    """The demo could not run or did not settle; the message says why."""


@dataclass
class Settled:
    seconds: float
    settled: bool
    waiting_for: list[str] = field(default_factory=list)


def _secret_file(folder: Path, name: str, value: str) -> dict[str, str]:
    path = folder / name
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return {"file": str(path)}


def write_config(workdir: Path, amazon_url: str, shopify_url: str, amazon_account: dict[str, Any], shop_token: str) -> Path:
    """The configuration `ordersync run --config` would read; secrets go to files beside it, by reference."""
    secrets = workdir / "secrets"
    secrets.mkdir(mode=0o700, exist_ok=True)
    limits = {op: dict(FAST_LIMITS) for op in _operations()}
    config = {
        "accounts": [{
            "name": ACCOUNT,
            "amazon": {
                "endpoint": amazon_url, "token_url": amazon_url + "/auth/o2/token",
                "client_id": amazon_account["client_id"],
                "client_secret": _secret_file(secrets, "lwa_client_secret", amazon_account["client_secret"]),
                "refresh_token": _secret_file(secrets, "lwa_refresh_token", amazon_account["refresh_tokens"][0]),
                "marketplace_ids": [amazon_account["marketplace_id"]], "merchant_id": amazon_account["seller_id"],
                "rate_limits": limits,
            },
            "shopify": {"base_url": shopify_url, "access_token": _secret_file(secrets, "shopify_token", shop_token)},
            # Zero-out on: the operator's NoInventory cancellation shows it.
            "settings": {"allow_zero_out_inventory": True},
            "batch_size": 15,
        }],
        "store": {"url": f"sqlite:///{workdir / 'ordersync.db'}"},
        "rules": {"dir": str(RULES_DIR), "watch_seconds": 0},
        "decision_log": {"path": str(workdir / "decisions.jsonl")},
        "jobs": JOBS,
        "http": {"listen": "127.0.0.1:0"},
        "logging": {"format": "json", "level": "info"},
        "shutdown": {"drain_seconds": 5},
    }
    path = workdir / "ordersync.yaml"
    path.write_text("# Written by `ordersync demo` for the stand-ins it started (they are gone when it ends).\n"
                    + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _operations() -> list[str]:
    from adapters.amazon.http import DOCUMENTED_RATE_LIMITS
    return list(DOCUMENTED_RATE_LIMITS)


def scenarios(orders: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    from adapters.sim.linked import linked

    amazon, shopify = linked(orders)
    amazon["rate_limits"] = {op: dict(FAST_LIMITS) for op in _operations()}
    # A report or feed is done at its first check: the client waits 30 s between checks (poll_interval),
    # which is right for Amazon and too long for a demo.
    amazon["polls_to_finish"] = 0
    # Refunds are stamped as posted 5 minutes ago: Amazon lists none of the last two minutes, so the refunds poll
    # would otherwise see the demo's refunds only after it ended.
    amazon["refund_posting_lag_seconds"] = 300
    # Shopify Plus' bucket rather than the standard plan's, so a larger --orders file is not mostly throttle
    # waits; the client paces itself by the throttle status each answer reports, whatever the plan.
    shopify["throttle"] = {"maximum_available": 20000, "restore_rate": 1000}
    return amazon, shopify


def _prepare_workdir(keep: Path | None) -> Path:
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="ordersync-demo-"))
    keep = keep.resolve()
    if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        # A previous run's store would hold its events already: the new run would decide nothing.
        raise DemoError(f"--keep {keep}: must be an empty or new folder (it holds a previous run's store otherwise)")
    keep.mkdir(parents=True, exist_ok=True)
    return keep


def run_demo(orders_file: Path | None = None, keep: Path | None = None, timeout: float = 50.0,
             out: TextIO | None = None) -> int:
    """Run the demo and print its report; 0 when the scenario settled, 1 otherwise (message on `out`)."""
    import sys

    out = out or sys.stdout
    started = time.monotonic()
    try:
        orders = _load_orders(orders_file or DEFAULT_ORDERS)
        if not (RULES_DIR / "cancellation.yaml").is_file():
            raise DemoError(f"the rules folder {RULES_DIR} is missing: the demo runs from a checkout of ordersync "
                            "(pip install -e .)")
        workdir = _prepare_workdir(keep)
    except DemoError as exc:
        print(f"ordersync demo: {exc}", file=out)
        return 1
    try:
        return _run(orders, workdir, keep is not None, timeout, out, started)
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _load_orders(path: Path) -> list[dict[str, Any]]:
    from adapters.sim.linked import load

    try:
        orders = load(path)
    except FileNotFoundError:
        raise DemoError(f"{path}: no such orders file") from None
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError) as exc:
        raise DemoError(f"{path}: not a scenario of orders (adapters/sim/linked.py describes the format): {exc}") from None
    if not orders:
        raise DemoError(f"{path}: has no orders")
    return orders


def _run(orders: list[dict[str, Any]], workdir: Path, kept: bool, timeout: float, out: TextIO, started: float) -> int:
    from adapters.sim import amazon as amazon_sim, shopify as shopify_sim
    from daemon.config import ConfigError, load_config
    from daemon.logging import configure_logging
    from daemon.pipeline import amazon_client, install, shopify_client
    from daemon.service import Service, StartupError
    from daemon.store import open_store

    try:
        amazon_scenario, shopify_scenario = scenarios(orders)
        amazon_server = amazon_sim.create_server(scenario=amazon_scenario)
        shopify_server = shopify_sim.create_server(scenario=shopify_scenario)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"ordersync demo: the orders do not make a scenario: {exc}", file=out)
        return 1
    with amazon_server as az, shopify_server as sh:
        config_path = write_config(workdir, az.base_url, sh.base_url, amazon_scenario["account"],
                                   shopify_scenario["shop"]["access_token"])
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            print(f"ordersync demo: the generated configuration is refused (a defect): {exc}", file=out)
            return 1
        log_path = workdir / "daemon.log"
        print(f"ordersync demo: {len(orders)} orders on the Amazon stand-in ({az.base_url}) and their copies on the "
              f"Shopify stand-in ({sh.base_url})", file=out)
        print(f"running the daemon's jobs (as `ordersync run --config {config_path}`); its log: {log_path}", file=out)
        out.flush()
        with open(log_path, "a", encoding="utf-8") as log_stream:
            configure_logging(config.logging.format, config.logging.level, stream=log_stream)
            service = Service(config, plugins=[install], configure_logs=False)
            try:
                service.start()
            except StartupError as exc:
                print(f"ordersync demo: the daemon could not start: {exc}", file=out)
                return 1
            account = config.accounts[0]
            amazon, shopify = amazon_client(account), shopify_client(account)
            try:
                try:
                    for line in _operator_requests(service.repository, amazon, orders):
                        print(line, file=out)
                    print(_refund_in_seller_central(az, orders), file=out)
                    print(_cancel_in_shopify_admin(service.repository, sh, orders, timeout), file=out)
                    settled = wait_until_settled(service.repository, timeout, started)
                finally:
                    # Stopped before the report, so what is printed is what the daemon left, and the
                    # report's reads do not share the stand-ins' rate limits with running jobs.
                    service.stop()
                if service.unfinished_jobs:
                    print(f"ordersync demo: jobs still running at stop: {', '.join(service.unfinished_jobs)}", file=out)
                store = open_store(config.store.connect_url())
                try:
                    report = _report(store, shopify, orders)
                finally:
                    store.close()
            finally:
                amazon.close()
                shopify.close()
                # The log file closes next; later log lines (there should be none) go nowhere rather than fail.
                configure_logging(config.logging.format, "error", stream=io.StringIO())
    elapsed = time.monotonic() - started
    print(file=out)
    for line in report:
        print(line, file=out)
    print(file=out)
    code = _verify_log(workdir / "decisions.jsonl", kept, out)
    if not settled.settled:
        print(f"\nordersync demo: NOT settled after {settled.seconds:.1f} s (--timeout {timeout:g}); still waiting for: "
              f"{'; '.join(settled.waiting_for)}. The daemon's log says why: {log_path if kept else 'rerun with --keep DIR'}",
              file=out)
        return 1
    if code != 0:
        print("\nordersync demo: the decision log does not verify (a defect)", file=out)
        return 1
    print(f"\nsettled in {settled.seconds:.1f} s; the demo took {elapsed:.1f} s in all", file=out)
    if not kept:
        print("(the work folder was removed; `ordersync demo --keep DIR` keeps the store, the config, the log "
              "and the decision log)", file=out)
    return 0


def _operator_requests(store: Any, amazon: Any, orders: list[dict[str, Any]]) -> list[str]:
    """A person cancels an unshipped order here (no stock) and refunds part of a returned order."""
    from adapters.errors import AdapterError
    from daemon.pipeline.operator import request_cancellation, request_refund

    lines = []
    present = {o["id"] for o in orders}
    if not {OPERATOR_CANCEL["order"], OPERATOR_REFUND["order"]} <= present:
        return [f"operator: no requests (the orders {OPERATOR_CANCEL['order']} and {OPERATOR_REFUND['order']} "
                "they are made on are not in this scenario)"]
    try:
        request_cancellation(store, amazon, ACCOUNT, OPERATOR_CANCEL["order"], OPERATOR_CANCEL["reason_code"],
                             request_id="demo-cancel")
        lines.append(f"operator: cancel {OPERATOR_CANCEL['order']} here ({OPERATOR_CANCEL['reason_code']})")
        request_refund(store, amazon, ACCOUNT, OPERATOR_REFUND["order"], OPERATOR_REFUND["amount"],
                       OPERATOR_REFUND["reason_code"], request_id="demo-refund")
        lines.append(f"operator: refund {OPERATOR_REFUND['amount']} on {OPERATOR_REFUND['order']} "
                     f"({OPERATOR_REFUND['reason_code']})")
    except AdapterError as exc:
        # With --orders the operator's orders may not exist; the rest of the demo still shows the loop.
        lines.append(f"operator: request not filed: {exc}")
    return lines


def _refund_in_seller_central(amazon: Any, orders: list[dict[str, Any]]) -> str:
    """A person refunds SELLER_CENTRAL_REFUND's order in Seller Central, on its first line."""
    order_id, amount = SELLER_CENTRAL_REFUND["order"], SELLER_CENTRAL_REFUND["amount"]
    if order_id not in {o["id"] for o in orders}:
        return f"Seller Central: no refund (the order {order_id} is not in this scenario)"
    with amazon.lock:
        item = amazon.orders[order_id]["lines"][0]["item_id"]
    try:
        amazon.refund_in_seller_central(order_id, {item: amount})
    except ValueError as exc:
        return f"Seller Central: no refund ({exc})"
    return f"Seller Central: a person refunds {amount} on {order_id} there"


def _cancel_in_shopify_admin(store: Any, shop: Any, orders: list[dict[str, Any]], timeout: float) -> str:
    """A person cancels ADMIN_CANCEL's order in the Shopify admin, once the storefront poll has started
    watching (a cancellation from before that is not ordersync's to send)."""
    from adapters.sim.shopify_store import gid

    if ADMIN_CANCEL["order"] not in {o["id"] for o in orders}:
        return f"Shopify admin: no cancellation (the order {ADMIN_CANCEL['order']} is not in this scenario)"
    deadline = time.monotonic() + timeout
    while store.cursor(ACCOUNT, "storefront_cancellations") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.05 - time.time() % 1)  # Shopify's times are whole seconds: one the watch's own could be before it
    with shop.lock:
        found = [o for o in shop.store.orders.values() if o.source_identifier == ADMIN_CANCEL["order"]]
    if not found:
        return f"Shopify admin: no cancellation (the order {ADMIN_CANCEL['order']} has no Shopify copy)"
    shop.cancel_in_admin(gid("Order", found[0].id), ADMIN_CANCEL["reason"], staff_note="customer phoned")
    return f"Shopify admin: a person cancels {ADMIN_CANCEL['order']} ({ADMIN_CANCEL['words']})"


def pending_work(store: Any) -> list[str]:
    """What is left to do, from the store; empty when the scenario is settled."""
    waiting = []
    missing = [kind for kind in ("orders", "order_report", "returns", "storefront_cancellations", "amazon_refunds")
               if store.cursor(ACCOUNT, kind) is None]
    if missing:
        waiting.append(f"a first poll of {', '.join(missing)}")
    counts = store.counts()
    undecided = counts.undecided_events - counts.failed_events
    if undecided:
        waiting.append(f"{undecided} undecided event(s)")
    busy = {s: counts.actions_by_status.get(s, 0) for s in ("pending", "claimed", "queued_for_batch")}
    if any(busy.values()):
        waiting.append("actions " + ", ".join(f"{n} {s}" for s, n in busy.items() if n))
    in_flight = store.batches_in_flight(ACCOUNT)
    if in_flight:
        waiting.append(f"{len(in_flight)} feed(s) in flight")
    return waiting


def wait_until_settled(store: Any, timeout: float, started: float, *, clock: Callable[[], float] = time.monotonic,
                       sleep: Callable[[float], None] = time.sleep) -> Settled:
    """Poll the store until nothing has been left to do for QUIET_SECONDS, or `timeout` since `started`."""
    quiet_since: float | None = None
    while True:
        waiting = pending_work(store)
        now = clock()
        if waiting:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= QUIET_SECONDS:
            return Settled(quiet_since - started, True)
        if now - started >= timeout:
            return Settled(now - started, False, waiting or [f"{QUIET_SECONDS:g} s with nothing to do"])
        sleep(0.1)


# -- the report -------------------------------------------------------------------------------------------

def _params(params: dict[str, Any]) -> str:
    shown = {k: v for k, v in params.items() if k != "type"}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def _action_line(action: Any, record_params: dict[str, Any] | None, batches: dict[int, Any]) -> list[str]:
    params = record_params if record_params is not None else action.params
    text = f"{action.type}({_params(params)})" if params else action.type
    if len(text) > 110:
        text = text[:107] + "..."
    outcome = OUTCOME.get(action.status, action.status)
    detail = None
    if action.status in ("failed", "rejected") and action.last_error:
        detail = action.last_error
    elif action.type == "reject" and action.status == "done" and action.result:
        detail = f"the order is in the error view ({action.result.get('sync_status')})"
    elif action.type == "create_rma" and action.status == "done" and action.result and action.result.get("lines"):
        detail = "RMA of " + ", ".join(f"{line['sku']} x{line['quantity']}" + (f" (kit {line['kit']})" if line.get("kit") else "")
                                       for line in action.result["lines"])
    if action.batch_id is not None and action.batch_id in batches:
        batch = batches[action.batch_id]
        feed = "cancellation feed" if batch.feed_type.endswith("ACKNOWLEDGEMENT_DATA") else "payment adjustment feed"
        sent = f"sent in {feed} {batch.feed_id}" if batch.feed_id else f"{feed} not sent"
        detail = f"{sent}; {'reconciled with its processing report' if action.status in ('done', 'failed') else 'in flight'}" \
            + (f": {detail}" if detail else "")
    lines = [f"    {'[' + outcome + ']':<12} {text}"]
    if detail:
        lines.append(f"    {'':<12}   {detail}")
    return lines


def _storefront(shopify: Any, amazon_order_id: str) -> str:
    from adapters.errors import AdapterError
    from adapters.shopify.client import OrderNotFound

    try:
        order = shopify.find_order(amazon_order_id)
    except OrderNotFound:
        return "no storefront copy"
    except AdapterError as exc:
        return f"storefront not read: {exc}"
    held = any(fo.status == "ON_HOLD" for fo in order.fulfillment_orders)
    state = [str(order.order_status)]
    if held and order.order_status != "On Hold":
        state.append("on hold")
    if order.cancelled and order.cancel_reason:
        state[0] += f" ({order.cancel_reason})"
    if order.refunded_total:
        state.append(f"refunded {order.refunded_total} {order.currency}")
    ours = [t for t in order.tags if not t.startswith("amazon")]
    if ours:
        state.append("tags " + ",".join(ours))
    return f"Shopify {order.name}: " + ", ".join(state)


def _batches(store: Any) -> dict[int, Any]:
    from sqlmodel import select

    from daemon.store.models import AmazonBatch

    with store.transaction(write=False) as s:
        return {b.id: b for b in s.scalars(select(AmazonBatch)).all()}


def _report(store: Any, shopify: Any, orders: list[dict[str, Any]]) -> list[str]:
    from datetime import datetime, timezone

    from daemon.store.models import ORDER_CREATED

    decisions = store.decisions_since(datetime(2000, 1, 1, tzinfo=timezone.utc))
    batches = _batches(store)
    by_order: dict[str, list[Any]] = {}
    for decision in decisions:
        by_order.setdefault(decision.amazon_order_id or "", []).append(decision)
    outcomes: Counter[str] = Counter()
    lines: list[str] = []
    known = [o["id"] for o in orders]
    for order_id in known + sorted(set(by_order) - set(known)):
        row = store.get_order(ACCOUNT, order_id)
        amazon_status = f"{row.status} {row.fulfillment or ''}".strip() if row else "not seen"
        sync = row.sync_status if row and row.sync_status not in (None, ORDER_CREATED) else "in sync"
        if row and row.last_error and row.sync_status:
            sync += f": {row.last_error}"
        lines.append(f"{order_id}   Amazon: {amazon_status}   {_storefront(shopify, order_id)}")
        lines.append(f"  sync status: {sync}")
        if order_id not in by_order:
            lines.append("  no event: nothing to decide")
        for decision in by_order.get(order_id, []):
            record = decision.record
            origin = (record.get("fact") or {}).get("origin", "amazon")
            reason = (record.get("fact") or {}).get("reason_code")
            what = f"{record['event']} from {origin}" + (f" ({reason})" if reason else "")
            lines.append(f"  {what} -> rule {decision.rule or 'none holds: no_action'}")
            recorded = [dict(a) for a in record.get("actions") or []]
            for index, action in enumerate(store.actions_of(decision.decision_id)):
                params = recorded[index] if index < len(recorded) else None
                if params is not None:
                    params = {k: v for k, v in params.items() if k != "type"}
                lines.extend(_action_line(action, params, batches))
                outcomes[OUTCOME.get(action.status, action.status)] += 1
            if not recorded:
                lines.append(f"    {'':<12} (no actions)")
        for event in store.failed_events(ACCOUNT, 1000):
            if event.amazon_order_id == order_id:
                lines.append(f"  {event.kind}: NOT decided: {event.error}")
        lines.append("")
    counts = store.counts()
    lines.append("Summary")
    rules = sorted(counts.decisions_by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
    lines.append(f"  decisions: {sum(counts.decisions_by_rule.values())}, by rule:")
    for rule, n in rules:
        lines.append(f"    {n:>3}  {rule or 'no_action'}")
    lines.append("  actions: " + (", ".join(f"{n} {OUTCOME_WORDS.get(what, what)}" for what, n in outcomes.most_common()) or "none"))
    feeds = Counter("cancellation" if b.feed_type.endswith("ACKNOWLEDGEMENT_DATA") else "payment adjustment"
                    for b in batches.values() if b.feed_id)
    lines.append(f"  Amazon feeds sent: {sum(feeds.values())}" + (
        " (" + ", ".join(f"{n} {kind}" for kind, n in sorted(feeds.items())) + ")" if feeds else ""))
    failed = store.failed_orders(ACCOUNT)
    shown = ", ".join(f"{o.amazon_order_id} ({o.sync_status})" for o in failed[:8])
    more = f" and {len(failed) - 8} more" if len(failed) > 8 else ""
    lines.append(f"  error view: {len(failed)} order(s)" + (f": {shown}{more}" if failed else ""))
    if counts.failed_events:
        lines.append(f"  events that could not be decided: {counts.failed_events}")
    return lines


def _verify_log(path: Path, kept: bool, out: TextIO) -> int:
    from daemon.cli.audit import run_verify

    print(f"decision log: {path}" + ("" if kept else " (removed when the demo ends)"), file=out)
    print(f"$ ordersync audit verify {path}", file=out)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = run_verify(argparse.Namespace(file=path))
    for line in buffer.getvalue().splitlines():
        print(f"  {line}", file=out)
    return code
