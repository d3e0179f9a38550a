"""`ordersync orders`: the orders grid (every imported order, synced or failed, with its filters), the Archive
view, and importing one order from Amazon by its order id."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from adapters.amazon.models import OrderStatus
from adapters.errors import AdapterError
from daemon.cli.common import Listing, account_hint, listing_group, subcommand, when, with_store
from daemon.config import AccountConfig, Config
from daemon.facts import ADJUSTMENT_REASONS, CANCEL_REASONS
from daemon.store import Store
from daemon.store.models import SYNC_STATUSES, Order
from daemon.store.types import MONEY_PLACES, money_text, to_money

if TYPE_CHECKING:
    from daemon.pipeline.operator import RefundLine

GRID = ("The orders grid: every order imported from Amazon, whether its sync went well or failed, newest created "
        "on Amazon first, with its storefront order, Amazon's status, the sync status, item count, total, the date "
        "it was created on Amazon and its tag (FBA: Amazon ships; FBM: the merchant ships). Archived orders are "
        "only in the Archive view (--archived). The error view with resolve and archive is `ordersync errors`.")
AMAZON_STATUSES = tuple(status.value for status in OrderStatus)
FULFILLMENT = {"fba": "FBA", "fbm": "FBM"}
DEFAULT_LIMIT = 200


def register(commands: argparse._SubParsersAction) -> None:
    sub = listing_group(
        commands, "orders", help="list the orders grid (filters, Archive view); import an order or a returns file; cancel or refund here",
        description=GRID, list_help="list the orders grid (the default)", list_handler=run_list, options=_filters)
    imported = subcommand(
        sub, "import", run_import, "fetch one order from Amazon by its order id, into the grid and the inbox",
        "Fetch one order from Amazon with the account's credentials, as the daemon's order poll would see it: the "
        "order is added to (or updated in) the grid, and what changed on it (a cancellation, a buyer's request to "
        "cancel) is stored as new events, each once, for the running daemon to decide by the rules at its next "
        "run. Where the daemon's order poll stands is not moved. Exit 1 when Amazon does not know the order or "
        "cannot be reached; 2 when the configuration has no such account.")
    _order_arguments(imported)
    returns = subcommand(
        sub, "import-returns", run_import_returns, "store the returns in a returns report file a person downloaded",
        "Read a returns report downloaded from Seller Central (XML or tab-separated, gzipped or not) and store each "
        "return as an event of the account, as the daemon's returns poll stores the report it requests, for the "
        "running daemon to decide by the rules at its next run: an Approved return becomes an RMA, a return in "
        "another status is recorded and becomes one when a later report shows it Approved. A return already "
        "stored in the same status is not stored again, so a file handed over twice does nothing the second "
        "time. Rows that cannot be read are named (row, RMA id, field) on stderr and the others are stored. The "
        "returns poll's position is not moved. Exit 1 when the file cannot be read or a row was refused; 2 when "
        "the configuration has no such account.")
    returns.add_argument("account", metavar="ACCOUNT", help="the account's name, as in the configuration")
    returns.add_argument("file", metavar="FILE", type=Path, help="the returns report: .xml, .tsv or .txt, or one of them gzipped")
    cancel = subcommand(
        sub, "cancel", run_cancel, "ask for an order to be cancelled here: the rules decide, and tell Amazon",
        "A seller's cancellation made in ordersync rather than in Seller Central: the order is fetched from "
        "Amazon and a cancel_requested event (origin operator, the whole order, this reason) is stored for the "
        "running daemon to decide by the rules at its next run. The shipped policy cancels the storefront order "
        "first, then sends the cancellation to Amazon in the next feed batch (or holds it for approval when "
        "queue_refunds_and_cancellations is on; `ordersync approvals`); it refuses a shipped order, and "
        "--do-not-send-to-amazon unless allow_cancel_without_amazon is on. Asking again for the same (same reason, "
        "same --do-not-send-to-amazon, or the same --request-id) stores nothing new. Exit 1 when Amazon does not "
        "know the order or cannot be reached; 2 when the configuration has no such account, or the order is of a "
        "marketplace the account does not sell in (ask with the account that does).")
    _order_arguments(cancel)
    cancel.add_argument("--reason", required=True, type=_one_of("cancel reason", CANCEL_REASONS, "Amazon's cancel reasons"),
                        help=f"Amazon's cancel reason: {', '.join(CANCEL_REASONS)} (BuyerCanceled after a buyer's "
                             "request keeps it out of the cancellation rate)")
    cancel.add_argument("--do-not-send-to-amazon", action="store_true",
                        help="cancel in the storefront only (the rules allow it only with allow_cancel_without_amazon)")
    cancel.add_argument("--request-id", metavar="ID", default=None,
                        help="names this request, so that asking again is a no-op (default: the reason and "
                             "whether Amazon is told, so a corrected request is new)")
    refund = subcommand(
        sub, "refund", run_refund, "ask for an amount or some lines to be refunded here: the rules decide, in the storefront and on Amazon",
        "A refund made in ordersync: the order is fetched from Amazon and a refund_requested event (origin "
        "operator, this amount or these lines, and this adjustment reason) is stored for the running daemon to "
        "decide by the rules at its next run. --amount refunds an amount of the whole order (Amazon gets it shared "
        "among the order's items); --line SKU:QTY (repeatable, each SKU once) refunds shipped units at the price "
        "Amazon charged for them, on those items alone; with --unfulfilled they are units still to ship that could "
        "not be fulfilled: the storefront order gives them up (they will not ship), Amazon is told the quantity "
        "cancelled, and the reason must be NoInventory or CustomerCancel (every unit still to ship is a "
        "cancellation: `ordersync orders cancel`). The shipped policy refunds the storefront order and sends the adjustment to "
        "Amazon in the next feed batch (or holds it for approval when queue_refunds_and_cancellations is on), and "
        "refuses more than was paid less what was refunded unless allow_over_refund is on. The request id defaults "
        "to the amount or lines and the reason, so running the same command twice refunds once; give --request-id "
        "for a second refund of the same. Exit 1 when Amazon does not know the order or cannot be reached; 2 when "
        "the configuration has no such account, the order has no such line or not that many units, or it is of a "
        "marketplace the account does not sell in.")
    _order_arguments(refund)
    what = refund.add_mutually_exclusive_group(required=True)
    what.add_argument("--amount", type=_refund_amount, metavar="N",
                      help="the amount to refund, e.g. 12.50, in the order's currency")
    what.add_argument("--line", type=_refund_line, action="append", metavar="SKU:QTY", dest="lines",
                      help="units of one line to refund, e.g. MUG-RED:1 (repeat for more lines)")
    refund.add_argument("--unfulfilled", action="store_true",
                        help="with --line: the units could not be fulfilled (DOMAIN 13): cancelled out of the order, "
                             "and Amazon is told the quantity cancelled")
    refund.add_argument("--reason", required=True,
                        type=_one_of("adjustment reason", ADJUSTMENT_REASONS, "Amazon's adjustment reasons"),
                        help=f"Amazon's adjustment reason: {', '.join(ADJUSTMENT_REASONS)} (for units that could not "
                             "be fulfilled: NoInventory or CustomerCancel)")
    refund.add_argument("--request-id", metavar="ID", default=None,
                        help="names this request, so that asking again is a no-op (default: the amount and reason)")

    rate = subcommand(
        sub, "cancellation-rate", run_cancellation_rate, "each account's 7-day cancellation rate, as ordersync counts it",
        "Amazon's cancellation rate as ordersync counts it from the grid (Amazon wants it under 2.5%): "
        "of the FBM orders created on Amazon in the last 7 days, those the seller cancelled (Amazon shows them "
        "cancelled by the seller, or ordersync is cancelling them on Amazon now), per 100. A cancellation that "
        "answers the buyer's request on Amazon with reason BuyerCanceled does not count, nor one the buyer or "
        "Amazon made. It is an estimate; Amazon's own figure is in Seller Central's Account Health. The shipped "
        "policy holds a cancellation the rate would count for approval when it would take the rate over 2% in a "
        "week of 100 FBM orders or more (rules/cancellation.yaml). Exit 2 when the configuration or the store "
        "cannot be used.")
    rate.add_argument("--account", metavar="NAME", default=argparse.SUPPRESS, help="only this account (default: every account)")
    rate.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                      help="print a JSON array, one object per account, instead of the table")

def _order_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("account", metavar="ACCOUNT", help="the account's name, as in the configuration")
    parser.add_argument("order_id", metavar="AMAZON_ORDER_ID", help="Amazon's order id, e.g. 111-0000001-0000001")


def _filters(parser: argparse.ArgumentParser, default: Callable[[Any], Any]) -> None:
    parser.add_argument("--order", metavar="ID", default=default(None), help="only this Amazon order id")
    parser.add_argument("--status", metavar="S", type=_one_of("status", AMAZON_STATUSES, "Amazon's statuses"),
                        default=default(None), help=f"only orders in this Amazon status: {', '.join(AMAZON_STATUSES)}")
    parser.add_argument("--sync-status", metavar="S", type=_one_of("sync status", SYNC_STATUSES, "the sync statuses"),
                        default=default(None),
                        help=f"only orders with this sync status (quote it): {', '.join(SYNC_STATUSES)}")
    tag = parser.add_mutually_exclusive_group()
    for flag, value in FULFILLMENT.items():
        tag.add_argument(f"--{flag}", dest="fulfillment", action="store_const", const=value, default=default(None),
                         help=f"only {value} orders")
    parser.add_argument("--min-total", metavar="N", type=_amount, default=default(None),
                        help="only orders whose total is at least N, e.g. 10 or 9.50 (in the order's currency)")
    parser.add_argument("--max-total", metavar="N", type=_amount, default=default(None),
                        help="only orders whose total is at most N")
    parser.add_argument("--from", dest="created_from", metavar="DATE", type=_date, default=default(None),
                        help="only orders created on Amazon on or after this day (YYYY-MM-DD, UTC)")
    parser.add_argument("--to", dest="created_to", metavar="DATE", type=_date, default=default(None),
                        help="only orders created on Amazon on or before this day (YYYY-MM-DD, UTC; the whole day)")
    parser.add_argument("--archived", action="store_true", default=default(False),
                        help="the Archive view: only archived orders (`ordersync errors archive` archives)")
    parser.add_argument("--limit", metavar="N", type=_limit, default=default(DEFAULT_LIMIT),
                        help=f"show at most N orders, the newest (default {DEFAULT_LIMIT})")


def _one_of(what: str, values: tuple[str, ...], named: str) -> Callable[[str], str]:
    """A value of `values`, in any case, with '-' or '_' for a space (Failed-Order); else which are valid."""
    known = {value.lower().replace(" ", ""): value for value in values}

    def parse(text: str) -> str:
        value = known.get(text.lower().replace(" ", "").replace("-", "").replace("_", ""))
        if value is None:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}; {named}: {', '.join(values)}")
        return value
    return parse


def _amount(text: str) -> Decimal:
    try:
        amount: Decimal | None = to_money(text.strip())
    except ValueError:
        amount = None
    if amount is None or amount < 0 or amount.as_tuple().exponent < -MONEY_PLACES:
        raise argparse.ArgumentTypeError(f"expected an amount such as 10 or 9.50 (not negative, at most "
                                         f"{MONEY_PLACES} decimal places), not {text!r}")
    return amount


EARLIEST, LATEST = date(1995, 1, 1), date(9998, 12, 31)  # Amazon's first order; a day after which one more fits
MAX_LIMIT = 1_000_000


def _date(text: str) -> date:
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        day = None
    if day is None or not EARLIEST <= day <= LATEST:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD between {EARLIEST} and {LATEST}, e.g. 2025-03-01, "
                                         f"not {text!r}")
    return day


def _refund_line(text: str) -> "RefundLine":
    from daemon.pipeline.operator import RefundLine

    sku, _, quantity = text.rpartition(":")
    if not sku.strip() or not quantity.strip().isdigit() or int(quantity) < 1:
        raise argparse.ArgumentTypeError(f"expected SKU:QTY with a whole number of units, e.g. MUG-RED:1, not {text!r}")
    return RefundLine(sku.strip(), int(quantity))


def _refund_amount(text: str) -> Decimal:
    amount = _amount(text)
    if amount == 0:
        raise argparse.ArgumentTypeError("a refund of 0 refunds nothing; give the amount to refund, e.g. 12.50")
    return amount


def _limit(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"expected a whole number of orders from 1 to {MAX_LIMIT:,}, not {text!r}")
    return int(text)


def _amount_text(amount: Decimal | None) -> str | None:
    return None if amount is None else money_text(amount)


def _money(amount: Decimal | None, currency: str | None) -> str:
    text = _amount_text(amount)
    return "-" if text is None else f"{text} {currency}" if currency else text


def _json(order: Order) -> dict[str, Any]:
    return {"account": order.account, "amazon_order_id": order.amazon_order_id,
            "storefront_order_id": order.storefront_order_id, "status": order.status, "sync_status": order.sync_status,
            "item_count": order.item_count, "total": _amount_text(order.order_total), "currency": order.currency,
            "created_on_amazon": order.created_on_amazon.isoformat() if order.created_on_amazon else None,
            "fulfillment": order.fulfillment, "archived": order.archived, "message": order.last_error}


ORDERS_GRID: Listing[Order] = Listing(
    ("ACCOUNT", "AMAZON ORDER", "STOREFRONT ORDER", "STATUS", "SYNC STATUS", "ITEMS", "TOTAL", "CREATED", "TAG"),
    cells=lambda o: (o.account, o.amazon_order_id, o.storefront_order_id or "-", o.status or "-", o.sync_status or "-",
                     "-" if o.item_count is None else str(o.item_count), _money(o.order_total, o.currency),
                     when(o.created_on_amazon), o.fulfillment or "-"),
    as_json=_json, one="order", many="orders")
ARCHIVE_VIEW = dataclasses.replace(ORDERS_GRID, one="archived order", many="archived orders")


@with_store("ordersync orders")
def run_list(args: argparse.Namespace, config: Config, store: Store) -> int:
    problem = _bounds_problem(args)
    if problem:
        print(f"ordersync orders: {problem}", file=sys.stderr)
        return 2
    rows = store.orders(
        args.account, amazon_order_id=args.order, status=args.status, sync_status=args.sync_status,
        fulfillment=args.fulfillment, min_total=args.min_total, max_total=args.max_total,
        created_from=_midnight(args.created_from),
        created_to=_midnight(args.created_to + timedelta(days=1) if args.created_to else None),
        archived=args.archived, limit=args.limit + 1)  # one more says whether there are more
    note = f" (the newest {args.limit}; --limit N shows more)" if len(rows) > args.limit else ""
    rows = rows[:args.limit]
    return (ARCHIVE_VIEW if args.archived else ORDERS_GRID).print(args, config, rows, note)


@with_store("ordersync orders cancellation-rate")
def run_cancellation_rate(args: argparse.Namespace, config: Config, store: Store) -> int:
    import json

    from daemon.pipeline.cancellation_rate import AMAZON_TARGET_PERCENT, measure, summary

    account = getattr(args, "account", None)
    names = [a.name for a in config.accounts if account in (None, a.name)]
    if not names:
        print(f"ordersync orders cancellation-rate: no account {account!r}{account_hint(config, account)}", file=sys.stderr)
        return 2
    now = datetime.now(timezone.utc)
    rates = {name: measure(store, name, now) for name in names}
    if getattr(args, "json", False):
        print(json.dumps([{"account": name, **summary(rate)} for name, rate in rates.items()], indent=2))
        return 0
    print(f"{'account':<20} {'FBM orders, 7 days':>18} {'cancelled by the seller':>23} {'rate':>8}")
    for name, rate in rates.items():
        flag = "  not under Amazon's target" if rate.percent >= AMAZON_TARGET_PERCENT else ""
        print(f"{name:<20} {rate.orders:>18} {len(rate.counted):>23} {rate.percent:>7.2f}%{flag}")
        for order_id in sorted(rate.counted):
            print(f"  {order_id}")
    print(f"Orders created on Amazon since {min(r.since for r in rates.values()):%Y-%m-%d %H:%M} UTC; Amazon wants "
          f"the rate under {AMAZON_TARGET_PERCENT}%, and its own figure (Seller Central, Account Health) is the one that counts.")
    return 0


def _bounds_problem(args: argparse.Namespace) -> str:
    if args.min_total is not None and args.max_total is not None and args.min_total > args.max_total:
        return f"--min-total {args.min_total} is more than --max-total {args.max_total}: no total can be both"
    if args.created_from and args.created_to and args.created_from > args.created_to:
        return f"--from {args.created_from} is after --to {args.created_to}: no order can be created in between"
    return ""


def _midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(), tzinfo=timezone.utc)


def _amazon_account(config: Config, args: argparse.Namespace, prog: str) -> AccountConfig | None:
    """The account the command names, with the daemon's log set up for a command (None: said why on stderr)."""
    from daemon.logging import configure_logging

    # The Amazon client's own lines (a token fetched, each call) are not the command's answer: warnings only
    # (a throttled call waiting, a retry), on stderr.
    configure_logging(config.logging.format, "warning", stream=sys.stderr)
    account = next((a for a in config.accounts if a.name == args.account), None)
    if account is None:
        print(f"{prog}: cannot reach Amazon for account {args.account!r}{account_hint(config, args.account)}",
              file=sys.stderr)
    return account


def _not_fetched(prog: str, args: argparse.Namespace, account: AccountConfig, exc: AdapterError) -> int:
    from adapters.amazon.client import order_unknown

    unknown = order_unknown(exc)
    print(f"{prog}: Amazon has no order {args.order_id} for account {account.name}; check the id ({exc})"
          if unknown else f"{prog}: could not fetch order {args.order_id} from Amazon: {exc}", file=sys.stderr)
    return 1


@with_store("ordersync orders import")
def run_import(args: argparse.Namespace, config: Config, store: Store) -> int:
    from daemon.pipeline import amazon_client  # the daemon's own factory (and the rules engine behind it)
    from daemon.pipeline.events import grid_fields, order_events

    prog = "ordersync orders import"
    account = _amazon_account(config, args, prog)
    if account is None:
        return 2
    with amazon_client(account) as amazon:
        try:
            order = amazon.get_order(args.order_id)
        except AdapterError as exc:
            return _not_fetched(prog, args, account, exc)
    events = order_events(order)
    stored = store.ingest_many(account.name, events, orders={order.amazon_order_id: grid_fields(order)})
    new = [event.kind for event, stored in zip(events, stored) if stored]
    units = f"{order.units_ordered} item{'' if order.units_ordered == 1 else 's'}"
    facts = ", ".join(filter(None, (order.status.value, order.fulfillment, units,
                                    order.order_total is not None and _money(order.order_total, order.currency))))
    if new:
        outcome = (f"{len(new)} new event{'' if len(new) == 1 else 's'} stored ({', '.join(new)}); the running daemon "
                   f"decides {'it' if len(new) == 1 else 'them'} by the rules at its next run")
    else:
        outcome = ("no new event: " + (f"{len(events)} already stored" if events
                                       else "Amazon shows no cancellation or buyer's request on it") +
                   "; nothing new for the rules to decide")
    print(f"{order.amazon_order_id} ({account.name}): imported from Amazon ({facts}); {outcome}")
    return 0


@with_store("ordersync orders import-returns")
def run_import_returns(args: argparse.Namespace, config: Config, store: Store) -> int:
    from adapters.amazon import parse_returns_file
    from daemon.pipeline.events import return_events

    prog = "ordersync orders import-returns"
    if not any(a.name == args.account for a in config.accounts):
        print(f"{prog}: no account {args.account!r} to store the returns for{account_hint(config, args.account)}",
              file=sys.stderr)
        return 2
    try:
        parsed = parse_returns_file(args.file)
    except AdapterError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    for notice in parsed.notices:
        print(f"{prog}: {notice}", file=sys.stderr)
    for error in parsed.errors:
        print(f"{prog}: refused: {error}", file=sys.stderr)
    events = [event for row in parsed.records for event in return_events(row)]
    stored = store.ingest_many(args.account, events) if events else []
    new = Counter(event.payload["rma_status"] for event, is_new in zip(events, stored) if is_new)
    read = f"{len(parsed.records)} return{'' if len(parsed.records) == 1 else 's'} read from {args.file}"
    if new:
        statuses = ", ".join(f"{status} {count}" for status, count in sorted(new.items()))
        outcome = (f"{sum(new.values())} new ({statuses}), for the running daemon to decide by the rules at its next "
                   f"run; {len(events) - sum(new.values())} already stored")
    else:
        outcome = ("all already stored; nothing new for the rules to decide" if events
                   else "nothing to store (a returns report with no return in it; check it is the one you meant)")
    refused = f"; {len(parsed.errors)} row(s) refused (on stderr)" if parsed.errors else ""
    print(f"{args.account}: {read}: {outcome}{refused}")
    return 1 if parsed.errors else 0


@with_store("ordersync orders cancel")
def run_cancel(args: argparse.Namespace, config: Config, store: Store) -> int:
    from daemon.pipeline.operator import request_cancellation

    what = f"cancellation ({args.reason}{', not to be sent to Amazon' if args.do_not_send_to_amazon else ''})"
    # The same request twice is one; a corrected one (another reason, or with Amazon told after all, as the
    # rules' refusal of the first may ask) is a request of its own.
    request_id = args.request_id or f"{args.reason}:{'storefront-only' if args.do_not_send_to_amazon else 'with-amazon'}"
    return _request(args, config, "ordersync orders cancel", what, lambda amazon, account: request_cancellation(
        store, amazon, account, args.order_id, args.reason, do_not_send_to_amazon=args.do_not_send_to_amazon,
        request_id=request_id), "" if args.request_id else "; to ask again for the same, give --request-id")


@with_store("ordersync orders refund")
def run_refund(args: argparse.Namespace, config: Config, store: Store) -> int:
    from daemon.pipeline.operator import request_refund

    prog = "ordersync orders refund"
    if args.unfulfilled and not args.lines:
        print(f"{prog}: --unfulfilled says which units could not be fulfilled: give them with --line SKU:QTY", file=sys.stderr)
        return 2
    lines = args.lines or []
    asked = (" + ".join(f"{line.sku} x{line.quantity}" for line in lines) + (" (unfulfilled)" if args.unfulfilled else "")
             if lines else _amount_text(args.amount))
    # The same command run twice (a retried shell, a double click) must not refund twice.
    request_id = args.request_id or f"{asked}:{args.reason}"
    return _request(args, config, prog, f"refund of {asked} ({args.reason})",
                    lambda amazon, account: request_refund(store, amazon, account, args.order_id, args.amount, args.reason,
                                                           lines=lines, unfulfilled=args.unfulfilled, request_id=request_id),
                    "" if args.request_id else "; a second refund of the same needs --request-id")


def _request(args: argparse.Namespace, config: Config, prog: str, what: str,
             store_request: Callable[[Any, str], bool], hint: str = "") -> int:
    """A request made here (operator.py stores it after fetching the order from Amazon), and what came of it: exit 2
    for one the account cannot make of the order (lines it does not have, another marketplace's order)."""
    from daemon.pipeline import amazon_client
    from daemon.pipeline.operator import RequestRefused

    account = _amazon_account(config, args, prog)
    if account is None:
        return 2
    with amazon_client(account) as amazon:
        try:
            stored = store_request(amazon, account.name)
        except AdapterError as exc:
            return _not_fetched(prog, args, account, exc)
        except RequestRefused as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return 2
    if stored:
        print(f"{args.order_id} ({account.name}): {what} requested; the running daemon decides it by the rules at its "
              f"next run (`ordersync orders --order {args.order_id}` shows where it stands)")
    else:
        print(f"{args.order_id} ({account.name}): this {what} was requested already; nothing new for the rules to "
              f"decide{hint}")
    return 0
