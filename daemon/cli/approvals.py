"""`ordersync approvals`: the Amazon-bound actions held for a person's approval, and approving or rejecting them."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from daemon.cli.common import Listing, listing_group, subcommand, when, with_store
from daemon.config import Config
from daemon.store import NotFound, Store
from daemon.store.models import Action

QUEUE = ("The approval queue: Amazon-bound actions (cancel_on_amazon, refund_on_amazon) of decisions whose rule "
         "also said queue_for_approval. Nothing goes to Amazon until a person approves them; approved actions go "
         "out with the next feed, rejected ones never do (they are kept, with the reason, as rejected).")


def register(commands: argparse._SubParsersAction) -> None:
    sub = listing_group(
        commands, "approvals", help="list the Amazon-bound actions awaiting approval; approve or reject them",
        description=QUEUE,
        list_help="list the actions awaiting approval (the default)", list_handler=run_list)

    approve = subcommand(
        sub, "approve", run_approve, "let the actions go out with the next Amazon feed",
        "Approve the actions with these ids (from `ordersync approvals`): they go out with the next Amazon feed. "
        "Ids that are not awaiting approval are named and left as they are; the others are approved all the "
        "same, and the exit code is 1.")
    reject = subcommand(
        sub, "reject", run_reject, "drop the actions; they never go to Amazon",
        "Reject the actions with these ids (from `ordersync approvals`): they never go to Amazon and are kept as "
        "rejected with the reason. A rejected cancellation is also an event the running daemon decides by the "
        "rules (the shipped policy releases the hold placed while it waited, and notes the reason on the order). "
        "Ids that are not awaiting approval are named and left as they are; the others are rejected all the "
        "same, and the exit code is 1.")
    for command in (approve, reject):
        command.add_argument("ids", metavar="ID", type=int, nargs="+", help="an action id, as listed")
    reject.add_argument("--reason", required=True, type=_reason, metavar="TEXT",
                        help="why (kept with each rejected action)")


def _reason(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("give a reason, e.g. --reason 'buyer called, keeps the order'")
    return text.strip()


def _parameters(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in params.items())


APPROVAL_QUEUE: Listing[Action] = Listing(
    ("ID", "ACCOUNT", "ORDER", "ACTION", "SINCE", "DECISION", "PARAMETERS"),
    cells=lambda a: (str(a.id), a.account, a.amazon_order_id or "-", a.type, when(a.created_at), a.decision_id,
                     _parameters(a.params)),
    as_json=lambda a: {"id": a.id, "account": a.account, "amazon_order_id": a.amazon_order_id, "type": a.type,
                       "params": a.params, "since": a.created_at.isoformat(), "decision_id": a.decision_id},
    one="action awaits approval", many="actions await approval")


@with_store("ordersync approvals")
def run_list(args: argparse.Namespace, config: Config, store: Store) -> int:
    return APPROVAL_QUEUE.print(args, config, store.awaiting_approval(args.account))


@with_store("ordersync approvals approve")
def run_approve(args: argparse.Namespace, config: Config, store: Store) -> int:
    return _decide(args, store, Store.approve, "approved", "queued for the next Amazon feed")


@with_store("ordersync approvals reject")
def run_reject(args: argparse.Namespace, config: Config, store: Store) -> int:
    return _decide(args, store, lambda s, ids: s.reject(ids, args.reason), "rejected",
                   f"kept as rejected, never sent to Amazon (reason: {args.reason})")


def _decide(args: argparse.Namespace, store: Store, change: Callable[[Store, list[int]], int], done: str,
            outcome: str) -> int:
    changed: list[int] = []
    left: list[str] = []
    for action_id in dict.fromkeys(args.ids):
        # One id at a time: each change is its own transaction, and which ids were not waiting is exact.
        if change(store, [action_id]):
            changed.append(action_id)
        else:
            left.append(_why_not(store, action_id))
    if changed:
        print(f"{done} {len(changed)} action{'' if len(changed) == 1 else 's'} ({', '.join(map(str, changed))}): {outcome}")
    else:
        print(f"{done} no action")
    if left:
        print(f"ordersync approvals {args.approvals_command}: not awaiting approval, left as they are: {'; '.join(left)}",
              file=sys.stderr)
        return 1
    return 0


def _why_not(store: Store, action_id: int) -> str:
    try:
        action = store.get_action(action_id)
    except NotFound:
        return f"{action_id} (no such action)"
    return f"{action_id} (status {action.status})"
