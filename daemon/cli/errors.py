"""`ordersync errors`: the error view (orders whose sync failed), and resolving or archiving its orders."""
from __future__ import annotations

import argparse
import sys

from daemon.cli.common import Listing, account_hint, listing_group, subcommand, when, with_store
from daemon.config import Config
from daemon.store import NotFound, Store
from daemon.store.models import FAILED_SYNC_STATUSES, Order

VIEW = ("The error view: orders whose sync failed for good (sync status Failed Order, Failed Shipment, Failed "
        "Refund or Failed Cancellation), with the storefront's or Amazon's message, newest first. Archived "
        "orders are not in it. Fix the cause, then `resolve` the order to try again, or `archive` it to drop it "
        "from the view.")


def register(commands: argparse._SubParsersAction) -> None:
    sub = listing_group(
        commands, "errors", help="list the orders whose sync failed; resolve (retry) or archive them",
        description=VIEW,
        list_help="list the error view (the default)", list_handler=run_list)

    resolve = subcommand(
        sub, "resolve", run_resolve, "queue the order's failed actions again and take it out of the error view",
        "Queue the order's failed actions again with a fresh count of attempts: storefront ones go out with the "
        "daemon's next dispatch run, Amazon-bound ones (cancel_on_amazon, refund_on_amazon) with the next feed. "
        "The order leaves the error view (its sync status goes back to Order Created when it has a storefront "
        "copy); if they fail again it comes back with the new message. Exit 1 when the account has no such order.")
    archive = subcommand(
        sub, "archive", run_archive, "hide the order from the error view (--undo brings it back)",
        "Archive the order: it no longer shows in the error view or the grid, and nothing is retried. "
        "--undo brings it back. Exit 1 when the account has no such order.")
    for command in (resolve, archive):
        command.add_argument("account", metavar="ACCOUNT", help="the account's name, as in the configuration")
        command.add_argument("order_id", metavar="ORDER_ID", help="the Amazon order id, e.g. 111-0000001-0000001")
    archive.add_argument("--undo", action="store_true", help="bring an archived order back")


ERROR_VIEW: Listing[Order] = Listing(
    ("ACCOUNT", "ORDER", "SYNC STATUS", "FAILED AT", "MESSAGE"),
    cells=lambda o: (o.account, o.amazon_order_id, o.sync_status or "", when(o.updated_at),
                     " ".join((o.last_error or "").split())),
    as_json=lambda o: {"account": o.account, "amazon_order_id": o.amazon_order_id,
                       "storefront_order_id": o.storefront_order_id, "sync_status": o.sync_status,
                       "failed_at": o.updated_at.isoformat(), "message": o.last_error},
    one="order needs attention", many="orders need attention")


@with_store("ordersync errors")
def run_list(args: argparse.Namespace, config: Config, store: Store) -> int:
    return ERROR_VIEW.print(args, config, store.failed_orders(args.account))


@with_store("ordersync errors resolve")
def run_resolve(args: argparse.Namespace, config: Config, store: Store) -> int:
    order = store.get_order(args.account, args.order_id)
    if order is None:
        return _no_such_order(config, args)
    requeued = store.resolve(args.account, args.order_id)
    was = "the order left the error view" if order.sync_status in FAILED_SYNC_STATUSES and not order.archived \
        else f"the order was not in the error view (sync status {order.sync_status or 'none'}" \
             f"{', archived' if order.archived else ''})"
    print(f"{args.order_id} ({args.account}): {requeued} failed action{'' if requeued == 1 else 's'} queued again "
          f"with a fresh count of attempts; {was}")
    return 0


@with_store("ordersync errors archive")
def run_archive(args: argparse.Namespace, config: Config, store: Store) -> int:
    try:
        store.archive(args.account, args.order_id, archived=not args.undo)
    except NotFound:
        return _no_such_order(config, args)
    if args.undo:
        print(f"{args.order_id} ({args.account}): back from the archive; it shows in the error view again if its "
              f"sync failed")
    else:
        print(f"{args.order_id} ({args.account}): archived; it no longer shows in the error view "
              f"(`ordersync errors archive --undo {args.account} {args.order_id}` brings it back)")
    return 0


def _no_such_order(config: Config, args: argparse.Namespace) -> int:
    print(f"ordersync errors {args.errors_command}: no order {args.order_id} in account {args.account}"
          f"{account_hint(config, args.account)}; nothing changed", file=sys.stderr)
    return 1
