"""`ordersync demo` as a new user runs it: a subprocess, both stand-ins on loopback, the daemon's jobs,
and the printed story of each order. The assertions are on what that user reads (and, with --keep, on
the store and decision log left behind)."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from adapters.sim.linked import SELLER, SHOP_TOKEN
from daemon.store import open_store

ORDERSYNC = [sys.executable, "-m", "daemon.cli.main"]
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEMO_ORDERS = PROJECT_ROOT / "adapters" / "sim" / "scenarios" / "demo.yaml"
ORDER_LINE = re.compile(r"^(\d{3}-\d{7}-\d{7})   Amazon: ")


@dataclass
class Run:
    code: int
    out: str
    seconds: float
    keep: Path | None

    def order(self, amazon_order_id: str) -> str:
        """The block printed for one order (its first line to the blank line after it)."""
        blocks = {}
        current: list[str] | None = None
        for line in self.out.splitlines():
            match = ORDER_LINE.match(line)
            if match:
                current = blocks.setdefault(match.group(1), [])
            elif not line.strip():
                current = None
            if current is not None:
                current.append(line)
        assert amazon_order_id in blocks, f"order {amazon_order_id} not listed:\n{self.out}"
        return "\n".join(blocks[amazon_order_id])

    def summary(self) -> str:
        return self.out[self.out.index("\nSummary\n"):]


def run_demo(*args: str, timeout: float = 90) -> Run:
    started = time.monotonic()
    proc = subprocess.run([*ORDERSYNC, "demo", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
    keep = Path(args[args.index("--keep") + 1]) if "--keep" in args else None
    return Run(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started, keep)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Run:
    run = run_demo("--keep", str(tmp_path_factory.mktemp("demo") / "work"))
    assert run.code == 0, run.out
    return run


def test_settles_within_a_minute_and_lists_every_order(demo: Run) -> None:
    assert demo.seconds < 60, f"the demo took {demo.seconds:.1f} s"
    assert re.search(r"settled in \d+\.\d s", demo.out)
    for order in yaml.safe_load(DEMO_ORDERS.read_text())["orders"]:
        demo.order(order["id"])
    assert "Summary" in demo.out


def test_buyer_request_on_an_unshipped_order_holds_it_in_shopify(demo: Run) -> None:
    block = demo.order("114-0000001-0000001")
    assert "Shopify #1001: On Hold" in block
    assert "buyer_cancel_requested from amazon -> rule hold-on-buyer-request" in block
    assert re.search(r"\[done\]\s+hold_order\(", block)
    # The buyer's own words are personal: the report, like the decision log, shows them masked.
    assert "Ordered by mistake" not in demo.out and "[masked]" in block


def test_buyer_request_on_a_dropship_requested_order_is_recorded_not_held(demo: Run) -> None:
    block = demo.order("114-0000003-0000003")
    assert "-> rule record-buyer-request-without-hold" in block
    assert "hold_order" not in block
    assert "Shopify #1003: In Process, tags buyer-cancel-requested" in block


def test_partial_cancellations_are_rejected_into_the_error_view_and_held(demo: Run) -> None:
    for order_id in ("114-0000013-0000013", "114-0000014-0000014"):
        block = demo.order(order_id)
        assert "order_cancelled from amazon" in block and "-> rule hold-partial-amazon-cancellation" in block
        assert "sync status: Failed Cancellation: partial_cancellation: Only full cancellations sync" in block
        assert "cancel_order" not in block
        assert re.search(r"\[done\]\s+hold_order\(reason=amazon_partial_cancellation\)", block)
        assert "On Hold" in block.splitlines()[0]  # not cancelled, but what Amazon cancelled does not ship
    # Amazon's own cancellation, with a free-text reason: not mirrored, held, in the error view.
    block = demo.order("114-0000012-0000012")
    assert "-> rule hold-amazon-cancellation-without-reason" in block and "On Hold" in block.splitlines()[0]
    assert "sync status: Failed Cancellation: missing_reason: Amazon cancelled order 114-0000012-0000012" in block
    error_view = next(line for line in demo.summary().splitlines() if "error view:" in line)
    assert "114-0000013-0000013 (Failed Cancellation)" in error_view
    assert "114-0000014-0000014 (Failed Cancellation)" in error_view
    assert demo.keep is not None
    store = open_store(f"sqlite:///{demo.keep / 'ordersync.db'}")
    try:
        failed = {o.amazon_order_id: o.sync_status for o in store.failed_orders("demo")}
    finally:
        store.close()
    assert failed == {"114-0000012-0000012": "Failed Cancellation", "114-0000013-0000013": "Failed Cancellation",
                      "114-0000014-0000014": "Failed Cancellation", "114-0000015-0000015": "Failed Cancellation"}
    assert "error view: 4 order(s)" in error_view


def test_a_buyer_cancelled_order_is_cancelled_in_shopify_with_restock(demo: Run) -> None:
    block = demo.order("114-0000006-0000006")
    assert "Amazon: Canceled" in block and "Shopify #1006: Cancelled" in block
    assert "order_cancelled from amazon (BuyerCanceled) -> rule mirror-cancellation-with-restock" in block
    assert re.search(r"\[done\]\s+cancel_order\(reason_code=BuyerCanceled, restock=True", block)
    assert "sync status: in sync" in block


def test_an_approved_return_becomes_an_rma_and_a_pending_one_does_not(demo: Run) -> None:
    assert "-> rule create-rma-for-approved-return" in demo.order("114-0000016-0000016")
    assert re.search(r"\[done\]\s+create_rma", demo.order("114-0000016-0000016"))
    assert "-> rule skip-return-not-approved" in demo.order("114-0000017-0000017")
    assert demo.keep is not None
    store = open_store(f"sqlite:///{demo.keep / 'ordersync.db'}")
    try:
        assert [r.amazon_rma_id for r in store.rmas_of("demo", "114-0000016-0000016")] == ["RMA-DEMO-1"]
        assert store.rmas_of("demo", "114-0000017-0000017") == []
    finally:
        store.close()


def test_the_operator_cancellation_goes_to_amazon_as_a_feed_and_comes_back_reconciled(demo: Run) -> None:
    assert "operator: cancel 114-0000018-0000018 here (NoInventory)" in demo.out
    block = demo.order("114-0000018-0000018")
    assert "Amazon: Canceled" in block and "Shopify #1018: Cancelled" in block
    assert "cancel_requested from operator (NoInventory) -> rule cancel-on-amazon-zero-out-on-no-stock" in block
    assert re.search(r"\[done\]\s+cancel_order\(reason_code=NoInventory", block)
    assert re.search(r"\[done\]\s+zero_out_inventory", block)
    assert re.search(r"\[done\]\s+cancel_on_amazon\(reason_code=NoInventory\)\n\s+sent in cancellation feed \d+; "
                     r"reconciled with its processing report", block)
    # Amazon's own cancellation, seen at the next poll, finds the storefront order cancelled already: the
    # storefront cancel went out before the feed, so nothing fails and the order stays out of the error view.
    assert "order_cancelled from amazon (NoInventory) -> rule already-cancelled-in-storefront" in block
    assert "FAILED" not in block and "sync status: in sync" in block


def test_the_operator_refund_is_made_in_shopify_and_sent_to_amazon(demo: Run) -> None:
    block = demo.order("114-0000016-0000016")
    assert "refund_requested from operator (CustomerReturn) -> rule operator-refund" in block
    assert re.search(r"\[done\]\s+refund\(reason_code=CustomerReturn\)", block)
    assert re.search(r"\[done\]\s+refund_on_amazon\(reason_code=CustomerReturn\)\n\s+sent in payment adjustment feed \d+; "
                     r"reconciled", block)
    assert "refunded 12.50 USD" in block.splitlines()[0]
    # The two cancellations (the operator's, the Shopify admin's) go in one feed or two, as the batch job meets them.
    assert re.search(r"Amazon feeds sent: [23] \([12] cancellation, 1 payment adjustment\)", demo.summary())


def test_an_order_cancelled_in_the_shopify_admin_is_cancelled_on_amazon_and_not_echoed_back(demo: Run) -> None:
    assert "Shopify admin: a person cancels 114-0000020-0000020 (Customer changed/cancelled order)" in demo.out
    block = demo.order("114-0000020-0000020")
    assert "Amazon: Canceled" in block and "Shopify #1020: Cancelled (CUSTOMER)" in block
    assert "cancel_requested from storefront (BuyerCanceled) -> rule storefront-cancellation-to-amazon" in block
    assert re.search(r"\[done\]\s+cancel_on_amazon\(reason_code=BuyerCanceled\)\n\s+sent in cancellation feed \d+; "
                     r"reconciled with its processing report", block)
    assert "order_cancelled from amazon (BuyerCanceled) -> rule already-cancelled-in-storefront" in block
    assert "cancel_order" not in block and "FAILED" not in block
    # ordersync's own Shopify cancellations (its mirrors of Amazon's) were never sent back to Amazon
    assert demo.out.count("cancel_requested from storefront") == 1


def test_a_returned_kit_becomes_an_rma_of_its_components(demo: Run) -> None:
    block = demo.order("114-0000019-0000019")
    assert "return_reported from amazon -> rule create-rma-for-approved-kit-return" in block
    assert re.search(r"\[done\]\s+create_rma\n\s+RMA of CUP x2 \(kit TEA-SET\), TEAPOT x1 \(kit TEA-SET\)\n", block), block


def test_a_refund_made_in_seller_central_is_recorded_in_shopify_and_the_echo_of_ours_needs_nothing(demo: Run) -> None:
    assert "Seller Central: a person refunds 35.00 on 114-0000019-0000019 there" in demo.out
    block = demo.order("114-0000019-0000019")
    assert "refund_requested from amazon -> rule mirror-amazon-refund" in block
    assert re.search(r"\[done\]\s+refund\(amount=35\.0+\)", block), block
    assert "refunded 35.00 USD" in block.splitlines()[0]
    # The operator's refund on 114-0000016-0000016 comes back from Amazon's Finances API too: Shopify shows it
    # already, so it is not refunded there a second time.
    echo = demo.order("114-0000016-0000016")
    assert "refund_requested from amazon -> rule amazon-refund-already-in-storefront" in echo
    assert "refunded 12.50 USD" in echo.splitlines()[0]


def test_summary_counts_and_the_decision_log_verifies(demo: Run) -> None:
    summary = demo.summary()
    decisions = int(re.search(r"decisions: (\d+), by rule:", summary).group(1))
    # 20 orders' events, the operator refund, Amazon's cancellations of the operator's order and of the one
    # cancelled in the Shopify admin, and Amazon's refunds: the Seller Central one and the operator refund's echo
    assert decisions == 25
    assert re.search(r"actions: \d+ done\n", summary), summary  # nothing failed, waiting or queued
    assert f"{decisions} record(s) verified, no record removed or changed" in demo.out
    assert demo.keep is not None
    log = demo.keep / "decisions.jsonl"
    verify = subprocess.run([*ORDERSYNC, "audit", "verify", str(log)], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout
    assert f"account demo: {decisions} record(s)" in verify.stdout
    assert len(log.read_text().splitlines()) == decisions  # each event decided once, logged once


def test_no_secret_is_printed_or_written_outside_the_secret_files(demo: Run) -> None:
    secrets = [SELLER["client_secret"], *SELLER["refresh_tokens"], SHOP_TOKEN]
    assert demo.keep is not None
    for where, text in [("output", demo.out), *((p.name, p.read_text()) for p in demo.keep.iterdir() if p.is_file()
                                                 and p.suffix != ".db")]:
        for secret in secrets:
            assert secret not in text, f"a secret is in the {where}"
    config = (demo.keep / "ordersync.yaml").read_text()
    assert "file:" in config  # referenced, as the configuration requires


def test_the_kept_config_is_one_ordersync_run_accepts(demo: Run) -> None:
    assert demo.keep is not None
    check = subprocess.run([*ORDERSYNC, "config", "check", "--config", str(demo.keep / "ordersync.yaml")],
                           cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "config OK" in check.stdout


def test_a_scenario_that_cannot_settle_in_time_exits_1_saying_what_is_left(tmp_path: Path) -> None:
    run = run_demo("--timeout", "0.5")
    assert run.code == 1
    assert "NOT settled" in run.out and "still waiting for:" in run.out
    assert "rerun with --keep DIR" in run.out


def test_own_orders_file(tmp_path: Path) -> None:
    orders = tmp_path / "orders.yaml"
    orders.write_text(yaml.safe_dump({"orders": [
        {"id": "114-1000001-0000001", "lines": [{"sku": "MUG-RED", "quantity": 1, "price": "12.50"}], "buyer_cancel": "No"},
        {"id": "114-1000002-0000002", "status": "Canceled", "cancel_reason": "PricingError",
         "lines": [{"sku": "PEN-BLK", "quantity": 2, "price": "1.20", "cancelled": 2}]},
    ]}))
    run = run_demo("--orders", str(orders))
    assert run.code == 0, run.out
    assert "-> rule hold-on-buyer-request" in run.order("114-1000001-0000001")
    assert "-> rule mirror-cancellation-with-restock" in run.order("114-1000002-0000002")
    assert "operator: no requests" in run.out
    assert "114-0000001-0000001" not in run.out


@pytest.mark.parametrize("args, message", [
    (["--orders", "/nonexistent/orders.yaml"], "/nonexistent/orders.yaml: no such orders file"),
    (["--timeout", "0"], "--timeout must be more than 0 seconds"),
])
def test_unusable_arguments_exit_1_with_the_reason(args: list[str], message: str) -> None:
    run = run_demo(*args)
    assert run.code == 1
    assert message in run.out
    assert "Traceback" not in run.out


def test_a_keep_folder_with_a_previous_run_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ordersync.db").write_text("")
    run = run_demo("--keep", str(tmp_path))
    assert run.code == 1
    assert "must be an empty or new folder" in run.out
