"""`ordersync orders` as an operator uses it: the grid listed from the store the config names, each filter, the
Archive view, filter values refused with what they should be, and `orders import` fetching one order from the
Amazon stand-in over real HTTP into the grid and the inbox."""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
import structlog

from daemon.cli.main import main
from daemon.store import Store
from tests.cli.conftest import ACCOUNT_NAME
from tests.conftest import PROJECT_ROOT
from tests.pipeline.harness import ACCOUNT as SIM_ACCOUNT
from tests.pipeline.harness import SECRET_ENV, Standins, write_config

T0 = datetime(2025, 3, 4, 9, 12, tzinfo=timezone.utc)
HEADER = ["ACCOUNT", "AMAZON", "ORDER", "STOREFRONT", "ORDER", "STATUS", "SYNC", "STATUS", "ITEMS", "TOTAL", "CREATED",
          "TAG"]


def seed(store: Store) -> None:
    """Four orders of main-us, created an hour apart from T0 (the last newest), one failed, one archived."""
    rows = [("111-0000001-0000001", "Unshipped", "FBM", "9.50", 1, "#1001"),
            ("111-0000002-0000002", "Shipped", "FBA", "10.00", 2, None),
            ("111-0000003-0000003", "Unshipped", "FBM", "100.00", 3, "#1003"),
            ("111-0000004-0000004", "Canceled", "FBM", "42.5", 1, "#1004")]
    for hours, (order_id, status, fulfillment, total, items, storefront) in enumerate(rows):
        store.upsert_order(ACCOUNT_NAME, order_id, status=status, fulfillment=fulfillment, order_total=Decimal(total),
                           currency="USD", item_count=items, created_on_amazon=T0 + timedelta(hours=hours),
                           **({"storefront_order_id": storefront} if storefront else {}))
    store.mark_failed(ACCOUNT_NAME, "111-0000003-0000003", "Failed Cancellation", "order #1003 is already fulfilled")
    store.upsert_order(ACCOUNT_NAME, "111-0000005-0000005", status="Pending", created_on_amazon=T0 - timedelta(days=1))
    store.archive(ACCOUNT_NAME, "111-0000005-0000005")


def order_ids(ran) -> list[str]:
    assert ran.code == 0 and ran.err == "", ran
    return [row.split()[1] for row in ran.lines[1:-1]]


def test_the_grid_lists_every_order_synced_or_failed_newest_first(store: Store, config: Path, ordersync) -> None:
    seed(store)
    ran = ordersync("orders", "--config", config)
    assert ran.code == 0 and ran.err == ""
    header, *rows, last = ran.lines
    assert header.split() == HEADER
    assert last == "4 orders"
    assert re.fullmatch(r"main-us +111-0000004-0000004 +#1004 +Canceled +- +1 +42\.50 USD +2025-03-04 12:12 UTC +FBM",
                        rows[0])
    assert re.fullmatch(r"main-us +111-0000003-0000003 +#1003 +Unshipped +Failed Cancellation +3 +100\.00 USD "
                        r"+2025-03-04 11:12 UTC +FBM", rows[1])
    assert re.fullmatch(r"main-us +111-0000002-0000002 +- +Shipped +- +2 +10\.00 USD +2025-03-04 10:12 UTC +FBA", rows[2])
    assert rows[3].split()[1] == "111-0000001-0000001"

    # `list` is the default sub-command; the options may come before or after it
    assert ordersync("orders", "list", "--config", config, "--account", ACCOUNT_NAME).out == ran.out
    assert ordersync("orders", "--config", config, "list").out == ran.out

    [failed, *_] = json.loads(ordersync("orders", "--config", config, "--json", "--sync-status", "Failed Cancellation").out)
    assert failed == {"account": "main-us", "amazon_order_id": "111-0000003-0000003", "storefront_order_id": "#1003",
                      "status": "Unshipped", "sync_status": "Failed Cancellation", "item_count": 3, "total": "100.00",
                      "currency": "USD", "created_on_amazon": "2025-03-04T11:12:00+00:00", "fulfillment": "FBM",
                      "archived": False, "message": "order #1003 is already fulfilled"}


def test_each_filter_narrows_the_grid(store: Store, config: Path, ordersync) -> None:
    seed(store)

    def grid(*filters: object) -> list[str]:
        return [order[-1] for order in order_ids(ordersync("orders", "--config", config, *filters))]

    assert grid("--order", "111-0000002-0000002") == ["2"]
    assert grid("--status", "Unshipped") == ["3", "1"]
    assert grid("--status", "partially-shipped") == []  # any case, '-' for nothing
    assert grid("--sync-status", "failed-cancellation") == ["3"]
    assert grid("--fba") == ["2"] and grid("--fbm") == ["4", "3", "1"]
    # totals compare as amounts: 9.50 < 10.00 < 42.50 < 100.00 (as text, "9.50" would be the largest)
    assert grid("--min-total", "10") == ["4", "3", "2"]
    assert grid("--max-total", "10.00") == ["2", "1"]
    assert grid("--min-total", "9.99", "--max-total", "50") == ["4", "2"]
    # dates are UTC days, --to includes its whole day
    assert grid("--from", "2025-03-04", "--to", "2025-03-04") == ["4", "3", "2", "1"]
    assert grid("--to", "2025-03-03") == [] and grid("--from", "2025-03-05") == []
    assert grid("--fbm", "--status", "Unshipped", "--min-total", "50") == ["3"]

    limited = ordersync("orders", "--config", config, "--limit", "2")
    assert order_ids(limited) == ["111-0000004-0000004", "111-0000003-0000003"]
    assert limited.lines[-1] == "2 orders (the newest 2; --limit N shows more)"
    exactly = ordersync("orders", "--config", config, "--limit", str(len(grid())))  # all of them: nothing more to show
    assert exactly.lines[-1] == f"{len(grid())} orders"
    assert ordersync("orders", "--config", config, "--status", "Pending").lines == ["no orders"]


def test_the_archive_view_holds_the_archived_orders_only(store: Store, config: Path, ordersync) -> None:
    seed(store)
    ran = ordersync("orders", "--config", config, "--archived")
    assert order_ids(ran) == ["111-0000005-0000005"] and ran.lines[-1] == "1 archived order"
    assert "111-0000005-0000005" not in ordersync("orders", "--config", config).out
    store.archive(ACCOUNT_NAME, "111-0000005-0000005", archived=False)
    assert ordersync("orders", "--config", config, "--archived").lines == ["no archived orders"]
    ran = ordersync("orders", "--config", config, "--archived", "--account", "main-uk")
    assert ran.lines == ["no archived orders (the configuration has no account 'main-uk'; its accounts: main-us)"]


@pytest.mark.parametrize("flag, value, expected", [
    ("--status", "shipped-ish", "argument --status: 'shipped-ish' is not a status; Amazon's statuses: Pending, "
                                "Unshipped, PartiallyShipped, Shipped, Canceled, Unfulfillable, InvoiceUnconfirmed, "
                                "PendingAvailability"),
    ("--sync-status", "Synced", "argument --sync-status: 'Synced' is not a sync status; the sync statuses: Order "
                                "Created, Shipped, Failed Order, Failed Shipment, Failed Refund, Failed Cancellation"),
    ("--min-total", "ten", "argument --min-total: expected an amount such as 10 or 9.50 (not negative, at most 4 "
                           "decimal places), not 'ten'"),
    ("--max-total", "-1", "argument --max-total: expected an amount such as 10 or 9.50"),
    ("--max-total", "9.99999", "argument --max-total: expected an amount such as 10 or 9.50"),
    ("--min-total", "NaN", "argument --min-total: expected an amount"),
    ("--from", "2025-13-01", "argument --from: expected a date YYYY-MM-DD between 1995-01-01 and 9998-12-31, e.g. 2025-03-01, not '2025-13-01'"),
    ("--to", "yesterday", "argument --to: expected a date YYYY-MM-DD"),
    ("--limit", "0", "argument --limit: expected a whole number of orders from 1 to 1,000,000, not '0'"),
    ("--limit", "99999999999999999999", "argument --limit: expected a whole number of orders from 1 to 1,000,000"),
    ("--to", "9999-12-31", "argument --to: expected a date YYYY-MM-DD between 1995-01-01 and 9998-12-31"),
])
def test_a_filter_value_that_is_not_valid_says_what_is_expected_and_exits_2(
        config: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, expected: str) -> None:
    for sub in ((), ("list",)):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(["orders", *sub, "--config", str(config), flag, value])
        out, err = capsys.readouterr()
        assert (exited.value.code, out) == (2, "")
        assert expected in err, err


def test_bounds_that_exclude_everything_are_refused(store: Store, config: Path, ordersync) -> None:
    ran = ordersync("orders", "--config", config, "--min-total", "20", "--max-total", "10")
    assert (ran.code, ran.out) == (2, "")
    assert ran.err.strip() == "ordersync orders: --min-total 20 is more than --max-total 10: no total can be both"
    ran = ordersync("orders", "--config", config, "--from", "2025-03-05", "--to", "2025-03-04")
    assert ran.code == 2 and "--from 2025-03-05 is after --to 2025-03-04" in ran.err
    assert "Traceback" not in ran.err


def test_a_config_or_store_that_cannot_be_used_is_one_message_and_exit_2(tmp_path: Path, monkeypatch, ordersync) -> None:
    monkeypatch.delenv("ORDERSYNC_CONFIG", raising=False)
    for args in (("orders",), ("orders", "import", "main-us", "111-0000001-0000001")):
        ran = ordersync(*args, "--config", tmp_path / "nowhere.yaml")
        assert (ran.code, ran.out) == (2, "") and "no such config file" in ran.err
        assert ran.err.startswith(f"ordersync {' '.join(args[:2]) if len(args) > 1 else 'orders'}: ")


# -- import one order from the Amazon stand-in --------------------------------------------------------
AMAZON_ORDERS = [
    {"id": "114-0000001-0000001", "status": "Unshipped", "fulfillment": "FBM", "buyer_cancel": "Ordered by mistake",
     "lines": [{"sku": "MUG-RED", "quantity": 2, "price": "12.50"}]},
    {"id": "114-0000002-0000002", "status": "Canceled", "fulfillment": "FBA", "cancel_reason": "BuyerCanceled",
     "cancelled_by": "BUYER", "lines": [{"sku": "TEA-SET", "quantity": 1, "price": "9.50", "cancelled": 1}]},
    {"id": "114-0000003-0000003", "status": "Shipped", "fulfillment": "FBM",
     "lines": [{"sku": "POT", "quantity": 3, "price": "4.00", "shipped": 3}]},
]


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """`orders import` sets up logging (warnings on stderr) as a command run does; undone after each test."""
    root = logging.getLogger()
    level = root.level
    yield
    structlog.reset_defaults()
    root.setLevel(level)
    for handler in [h for h in root.handlers if getattr(h, "_ordersync", False)]:
        root.removeHandler(handler)


@pytest.fixture
def standins() -> Iterator[Standins]:
    with Standins.start([dict(order) for order in AMAZON_ORDERS]) as running:
        yield running


@pytest.fixture
def sim_config(tmp_path: Path, db_url: str, store: Store, standins: Standins, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config whose account sim-us talks to the Amazon stand-in, and whose store is the test's."""
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    return write_config(tmp_path, standins, db_url)


def test_import_fetches_the_order_into_the_grid_and_its_changes_into_the_inbox(
        store: Store, sim_config: Path, ordersync) -> None:
    ran = ordersync("orders", "import", "--config", sim_config, SIM_ACCOUNT, "114-0000001-0000001")
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines == ["114-0000001-0000001 (sim-us): imported from Amazon (Unshipped, FBM, 2 items, 25.00 USD); "
                         "1 new event stored (buyer_cancel_requested); the running daemon decides it by the rules at "
                         "its next run"]
    order = store.get_order(SIM_ACCOUNT, "114-0000001-0000001")
    assert order is not None
    assert (order.status, order.fulfillment, order.item_count, order.order_total, order.currency) == (
        "Unshipped", "FBM", 2, Decimal("25.00"), "USD")
    assert order.created_on_amazon is not None
    [event] = store.undecided_events(SIM_ACCOUNT)
    assert (event.kind, event.amazon_order_id, event.payload["buyer_cancel_reason"]) == (
        "buyer_cancel_requested", "114-0000001-0000001", "Ordered by mistake")
    assert store.cursor(SIM_ACCOUNT, "orders") is None  # the daemon's poll still starts where it would have

    # the same change is stored once
    again = ordersync("orders", "import", "--config", sim_config, SIM_ACCOUNT, "114-0000001-0000001")
    assert again.code == 0
    assert again.lines[0].endswith("no new event: 1 already stored; nothing new for the rules to decide")
    assert len(store.undecided_events(SIM_ACCOUNT)) == 1

    # a cancelled order: its cancellation; a shipped one: in the grid, nothing to decide (options before `import`)
    cancelled = ordersync("orders", "--config", sim_config, "import", SIM_ACCOUNT, "114-0000002-0000002")
    assert cancelled.code == 0 and "(Canceled, FBA, 1 item," in cancelled.out
    assert "1 new event stored (order_cancelled)" in cancelled.out
    shipped = ordersync("orders", "import", "--config", sim_config, SIM_ACCOUNT, "114-0000003-0000003")
    assert shipped.code == 0
    assert shipped.lines == ["114-0000003-0000003 (sim-us): imported from Amazon (Shipped, FBM, 3 items, 12.00 USD); no "
                             "new event: Amazon shows no cancellation or buyer's request on it; nothing new for the rules "
                             "to decide"]
    listed = ordersync("orders", "--config", sim_config)
    assert sorted(order_ids(listed)) == [o["id"] for o in AMAZON_ORDERS]


def test_import_of_an_order_amazon_does_not_know_exits_1(store: Store, sim_config: Path, ordersync) -> None:
    ran = ordersync("orders", "import", "--config", sim_config, SIM_ACCOUNT, "114-9999999-9999999")
    assert (ran.code, ran.out) == (1, "")
    assert ran.err.startswith("ordersync orders import: Amazon has no order 114-9999999-9999999 for account sim-us; "
                              "check the id (")
    assert "Traceback" not in ran.err
    assert store.get_order(SIM_ACCOUNT, "114-9999999-9999999") is None and store.undecided_events(SIM_ACCOUNT) == []


def test_import_for_an_account_the_config_does_not_have_exits_2(store: Store, sim_config: Path, ordersync) -> None:
    ran = ordersync("orders", "import", "--config", sim_config, "main-uk", "114-0000001-0000001")
    assert (ran.code, ran.out) == (2, "")
    assert ran.err.strip() == ("ordersync orders import: cannot reach Amazon for account 'main-uk' (the configuration "
                               "has no account 'main-uk'; its accounts: sim-us)")


# -- a cancellation or refund asked for here ---------------------------------------------------------
def _decided(event: Any, storefront: Any = None) -> Any:
    """What the shipped rules decide for a stored event, as the daemon's decide job would (no storefront copy)."""
    from daemon.pipeline.fact_builder import build_fact
    from daemon.rules.engine import RulesEngine

    engine = RulesEngine(PROJECT_ROOT / "rules")
    try:
        fact = build_fact(event.kind, SIM_ACCOUNT, event.amazon_order_id, event.payload, storefront,
                          {"allow_cancel_without_amazon": False}, datetime.now(timezone.utc))
        return engine.decide(fact)
    finally:
        engine.close()


def test_cancel_stores_the_operators_request_once_for_the_rules_to_decide(store: Store, sim_config: Path, ordersync) -> None:
    ran = ordersync("orders", "cancel", "--config", sim_config, SIM_ACCOUNT, "114-0000001-0000001", "--reason", "noinventory")
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines == ["114-0000001-0000001 (sim-us): cancellation (NoInventory) requested; the running daemon decides "
                         "it by the rules at its next run (`ordersync orders --order 114-0000001-0000001` shows where it "
                         "stands)"]
    [event] = store.undecided_events(SIM_ACCOUNT)
    assert (event.kind, event.payload["origin"], event.payload["reason_code"], event.payload["do_not_send_to_amazon"]) == (
        "cancel_requested", "operator", "NoInventory", False)
    assert event.payload["units_cancelled"] == event.payload["units_ordered"] == 2  # always the whole order
    decision = _decided(event)
    assert decision.rule_id == "cancel-on-amazon"  # zero-out is off by default
    assert "cancel_on_amazon" in [a["type"] for a in decision.actions]

    again = ordersync("orders", "cancel", "--config", sim_config, SIM_ACCOUNT, "114-0000001-0000001", "--reason", "NoInventory")
    assert again.code == 0
    assert again.lines == ["114-0000001-0000001 (sim-us): this cancellation (NoInventory) was requested already; nothing "
                           "new for the rules to decide; to ask again for the same, give --request-id"]
    assert len(store.undecided_events(SIM_ACCOUNT)) == 1
    # a corrected request (the rules refused the first as asked) is a request of its own
    local = ordersync("orders", "cancel", "--config", sim_config, SIM_ACCOUNT, "114-0000001-0000001", "--reason",
                      "NoInventory", "--do-not-send-to-amazon")
    assert local.code == 0 and "cancellation (NoInventory, not to be sent to Amazon) requested;" in local.out
    assert [e.payload["do_not_send_to_amazon"] for e in store.undecided_events(SIM_ACCOUNT)] == [False, True]


def test_refund_stores_one_request_per_amount_and_reason_unless_named(store: Store, sim_config: Path, ordersync) -> None:
    args = ("orders", "refund", "--config", sim_config, SIM_ACCOUNT, "114-0000003-0000003", "--amount", "4.00",
            "--reason", "CustomerReturn")
    ran = ordersync(*args)
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines[0].startswith("114-0000003-0000003 (sim-us): refund of 4.00 (CustomerReturn) requested;")
    [event] = store.undecided_events(SIM_ACCOUNT)
    assert (event.kind, event.payload["origin"], event.payload["refund_amount"]) == ("refund_requested", "operator", "4.00")
    assert _decided(event).rule_id is not None  # a fact the rules take

    # the same command again (a retried shell) refunds once; a second refund of the same amount is named
    again = ordersync(*args)
    assert again.lines == ["114-0000003-0000003 (sim-us): this refund of 4.00 (CustomerReturn) was requested already; "
                           "nothing new for the rules to decide; a second refund of the same needs --request-id"]
    second = ordersync(*args, "--request-id", "goodwill-2")
    assert second.code == 0 and "requested; the running daemon decides it" in second.out
    assert [e.kind for e in store.undecided_events(SIM_ACCOUNT)] == ["refund_requested", "refund_requested"]


def test_refund_of_lines_stores_each_lines_units_at_amazons_price(store: Store, sim_config: Path, ordersync) -> None:
    ran = ordersync("orders", "refund", "--config", sim_config, SIM_ACCOUNT, "114-0000001-0000001", "--line", "MUG-RED:1",
                    "--unfulfilled", "--reason", "NoInventory")
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines[0].startswith("114-0000001-0000001 (sim-us): refund of MUG-RED x1 (unfulfilled) (NoInventory) requested;")
    [event] = store.undecided_events(SIM_ACCOUNT)
    payload = event.payload
    assert (payload["refund_amount"], payload["units_cancelled"]) == ("12.50", 1)
    assert [(line["sku"], line["quantity"], line["amount"]) for line in payload["refund_lines"]] == [("MUG-RED", 1, "12.50")]
    assert _decided(event).rule_id is not None  # a fact the rules take
    # the order has no such line, or not that many units to give up: refused with the order's lines, nothing stored
    for lines, complaint in ((["LAMP:1"], "has no lines of SKU LAMP (its lines: MUG-RED)"),
                             (["MUG-RED:3"], "has 2 unshipped unit(s) of MUG-RED, not 3"),
                             (["MUG-RED:1", "MUG-RED:1"], "give each SKU once"),
                             (["MUG-RED:2"], "every unit of order 114-0000001-0000001 still to ship: cancel the order")):
        refused = ordersync("orders", "refund", "--config", sim_config, SIM_ACCOUNT, "114-0000001-0000001",
                            *[arg for line in lines for arg in ("--line", line)], "--unfulfilled", "--reason", "NoInventory")
        assert refused.code == 2 and complaint in refused.err, refused.err
    # units still to ship are refunded only as unfulfilled: Amazon must hear of them as cancelled
    unshipped = ordersync("orders", "refund", "--config", sim_config, SIM_ACCOUNT, "114-0000001-0000001", "--line",
                          "MUG-RED:1", "--reason", "CustomerReturn")
    assert unshipped.code == 2 and "has 0 shipped unit(s) of MUG-RED, not 1 (units not shipped yet" in unshipped.err
    shipped = ordersync("orders", "refund", "--config", sim_config, SIM_ACCOUNT, "114-0000003-0000003", "--line", "POT:1",
                        "--unfulfilled", "--reason", "NoInventory")
    assert shipped.code == 2 and "has 0 unshipped unit(s) of POT" in shipped.err
    assert len(store.undecided_events(SIM_ACCOUNT)) == 1
    alone = ordersync("orders", "refund", "--config", sim_config, SIM_ACCOUNT, "114-0000001-0000001", "--amount", "2",
                      "--unfulfilled", "--reason", "NoInventory")
    assert alone.code == 2 and "give them with --line SKU:QTY" in alone.err


@pytest.mark.parametrize("args, complaint", [
    (("refund", "114-0000001-0000001", "--amount", "3", "--line", "MUG-RED:1", "--reason", "Other"),
     "not allowed with argument --amount"),
    (("refund", "114-0000001-0000001", "--line", "MUG-RED", "--reason", "Other"), "expected SKU:QTY"),
    (("cancel", "114-0000001-0000001", "--reason", "CustomerCancel"), "'CustomerCancel' is not a cancel reason; Amazon's cancel reasons: NoInventory,"),
    (("refund", "114-0000001-0000001", "--amount", "0", "--reason", "Other"), "a refund of 0 refunds nothing"),
    (("refund", "114-0000001-0000001", "--amount", "-3", "--reason", "Other"), "expected an amount such as 10 or 9.50"),
    (("refund", "114-0000001-0000001", "--amount", "3", "--reason", "Oops"), "'Oops' is not a adjustment reason"),
])
def test_a_bad_request_is_refused_before_amazon_is_asked(store: Store, sim_config: Path, ordersync, capsys, args,
                                                         complaint) -> None:
    command, rest = args[0], args[1:]
    with pytest.raises(SystemExit) as exit_:
        ordersync("orders", command, "--config", sim_config, SIM_ACCOUNT, *rest)
    assert exit_.value.code == 2
    assert complaint in capsys.readouterr().err
    assert store.undecided_events(SIM_ACCOUNT) == []


def test_cancel_of_an_order_amazon_does_not_know_exits_1_and_stores_nothing(store: Store, sim_config: Path, ordersync) -> None:
    ran = ordersync("orders", "cancel", "--config", sim_config, SIM_ACCOUNT, "114-9999999-9999999", "--reason", "NoInventory")
    assert (ran.code, ran.out) == (1, "")
    assert ran.err.startswith("ordersync orders cancel: Amazon has no order 114-9999999-9999999 for account sim-us; check the id (")
    assert store.undecided_events(SIM_ACCOUNT) == []
    unknown = ordersync("orders", "refund", "--config", sim_config, "main-uk", "114-0000001-0000001", "--amount", "1",
                        "--reason", "Other")
    assert unknown.code == 2 and "cannot reach Amazon for account 'main-uk'" in unknown.err


# -- a returns report a person downloaded -----------------------------------------------------------------
RETURNS_TSV = ("Order ID\tAmazon RMA ID\tReturn request status\tTracking ID\tMerchant SKU\tReturn quantity\tReturn reason\n"
               "111-1111111-1111111\tRMA1\tApproved\t1Z1\tMUG-RED\t1\tDEFECTIVE\n"
               "111-1111111-1111111\tRMA1\tApproved\t1Z1\tCAP-GREY\t2\tDEFECTIVE\n"
               "222-2222222-2222222\tRMA2\tApproved\t1Z2\tPOT\tlots\tNO_REASON\n"
               "333-3333333-3333333\tRMA3\tPending\t1Z3\tTEA\t1\tUNWANTED_ITEM\n")


def test_import_returns_stores_each_return_once_and_names_the_rows_it_refuses(
        store: Store, config: Path, ordersync, tmp_path: Path) -> None:
    report = tmp_path / "returns.tsv"
    report.write_text(RETURNS_TSV)
    ran = ordersync("orders", "import-returns", "--config", config, ACCOUNT_NAME, report)
    assert ran.code == 1  # a row was refused; the others are stored all the same
    assert ran.lines == [f"main-us: 2 returns read from {report}: 2 new (Approved 1, Pending 1), for the running daemon "
                         "to decide by the rules at its next run; 0 already stored; 1 row(s) refused (on stderr)"]
    assert (f"ordersync orders import-returns: refused: returns file {report} row 4 (RMA RMA2): field return quantity: "
            "'lots' is not a positive whole number") in ran.err
    events = {e.payload["rma_id"]: e for e in store.undecided_events(ACCOUNT_NAME)}
    assert sorted(events) == ["RMA1", "RMA3"]
    assert [(i["sku"], i["quantity"]) for i in events["RMA1"].payload["items"]] == [("MUG-RED", 1), ("CAP-GREY", 2)]
    assert events["RMA1"].amazon_order_id == "111-1111111-1111111" and events["RMA3"].kind == "return_reported"
    assert store.cursor(ACCOUNT_NAME, "returns") is None  # the daemon's returns poll starts where it would have

    # handed over again: nothing new; once approved, the Pending return is new again
    again = ordersync("orders", "import-returns", "--config", config, ACCOUNT_NAME, report)
    assert again.lines[0].endswith("all already stored; nothing new for the rules to decide; 1 row(s) refused (on stderr)")
    report.write_text(RETURNS_TSV.replace("RMA3\tPending", "RMA3\tApproved").replace("RMA2\tApproved\t1Z2\tPOT\tlots", "RMA2\tApproved\t1Z2\tPOT\t1"))
    approved = ordersync("orders", "import-returns", "--config", config, ACCOUNT_NAME, report)
    assert approved.code == 0 and approved.err == ""
    assert approved.lines == [f"main-us: 3 returns read from {report}: 2 new (Approved 2), for the running daemon to "
                              "decide by the rules at its next run; 1 already stored"]
    assert len(store.undecided_events(ACCOUNT_NAME)) == 4


def test_import_returns_of_a_file_that_cannot_be_read_or_for_an_unknown_account(
        store: Store, config: Path, ordersync, tmp_path: Path) -> None:
    missing = ordersync("orders", "import-returns", "--config", config, ACCOUNT_NAME, tmp_path / "nope.xml")
    assert (missing.code, missing.out) == (1, "")
    assert missing.err.startswith(f"ordersync orders import-returns: returns file {tmp_path / 'nope.xml'}: cannot read it")
    garbage = tmp_path / "page.html"
    garbage.write_text("<html><body>Sign in</body>")
    refused = ordersync("orders", "import-returns", "--config", config, ACCOUNT_NAME, garbage)
    assert refused.code == 1 and "Traceback" not in refused.err and refused.err.startswith("ordersync orders import-returns: ")
    unknown = ordersync("orders", "import-returns", "--config", config, "main-uk", garbage)
    assert unknown.code == 2 and "no account 'main-uk'" in unknown.err
    assert store.undecided_events(ACCOUNT_NAME) == []


def test_cancellation_rate_shows_the_weeks_seller_cancellations_per_hundred_fbm_orders(store: Store, config: Path, ordersync) -> None:
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    for n in range(40):
        store.upsert_order(ACCOUNT_NAME, f"111-9{n:06d}-0000000", fulfillment="FBM", created_on_amazon=yesterday,
                           status="Canceled" if n < 1 else "Shipped", cancelled_by_seller=n < 1)
    store.upsert_order(ACCOUNT_NAME, "111-8000000-0000000", fulfillment="FBA", created_on_amazon=yesterday,
                       status="Canceled", cancelled_by_seller=True)  # Amazon ships it: not in the rate
    ran = ordersync("orders", "cancellation-rate", "--config", config)
    assert ran.code == 0 and ran.err == "", ran
    assert re.fullmatch(r"main-us +40 +1 +2\.50%  not under Amazon's target", ran.lines[1])
    assert ran.lines[2].strip() == "111-9000000-0000000"
    assert "Amazon wants the rate under 2.5%" in ran.lines[-1]
    as_json = json.loads(ordersync("orders", "cancellation-rate", "--config", config, "--json", "--account", ACCOUNT_NAME).out)
    assert [(a["account"], a["orders"], a["cancelled"], a["percent"]) for a in as_json] == [(ACCOUNT_NAME, 40, 1, 2.5)]
    wrong = ordersync("orders", "cancellation-rate", "--config", config, "--account", "nobody")
    assert wrong.code == 2 and "no account 'nobody'" in wrong.err


def test_a_request_for_another_marketplaces_order_is_refused_and_stores_nothing(
        store: Store, sim_config: Path, standins: Standins, ordersync) -> None:
    """Amazon gives a seller's account every marketplace's orders: a cancellation or refund asked through the wrong
    account would go out, and be counted in the cancellation rate, as that account's."""
    with standins.amazon.lock:
        standins.amazon.orders["114-0000001-0000001"]["marketplace"] = "A2EUQ1WTGCTBG2"  # Amazon.ca
    for command in (("cancel", "--reason", "NoInventory"), ("refund", "--amount", "1", "--reason", "Other")):
        ran = ordersync("orders", command[0], "--config", sim_config, SIM_ACCOUNT, "114-0000001-0000001", *command[1:])
        assert (ran.code, ran.out) == (2, "")
        assert ran.err.startswith(f"ordersync orders {command[0]}: order 114-0000001-0000001 is of marketplace "
                                  f"A2EUQ1WTGCTBG2, not one of account {SIM_ACCOUNT}'s (")
    assert store.undecided_events(SIM_ACCOUNT) == [] and store.get_order(SIM_ACCOUNT, "114-0000001-0000001") is None
