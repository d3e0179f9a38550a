"""`ordersync approvals`: the Amazon-bound actions held for a person's approval, and approving or rejecting them."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable

from daemon.cli.common import Listing, listing_group, subcommand, when, with_store
from daemon.config import Config
from daemon.store import NotFound, Store
from daemon.store.models import AWAITING_APPROVAL, Action

if TYPE_CHECKING:
    from daemon.pipeline.cancellation_rate import RateIfSent

QUEUE = ("The approval queue: Amazon-bound actions (cancel_on_amazon, refund_on_amazon) of decisions whose rule "
         "also said queue_for_approval. Nothing goes to Amazon until a person approves them; approved actions go "
         "out with the next feed, rejected ones never do (they are kept, with the reason, as rejected).")
OVER_RATE = "--over-cancellation-rate"


def register(commands: argparse._SubParsersAction) -> None:
    sub = listing_group(
        commands, "approvals", help="list the Amazon-bound actions awaiting approval; approve or reject them",
        description=QUEUE,
        list_help="list the actions awaiting approval (the default)", list_handler=run_list)

    # The figures are daemon.pipeline.cancellation_rate's (AMAZON_TARGET_PERCENT, FEWEST_ORDERS_JUDGED), written out
    # here: the CLI loads the pipeline only for a command that needs it.
    approve = subcommand(
        sub, "approve", run_approve, "let the actions go out with the next Amazon feed",
        "Approve the actions with these ids (from `ordersync approvals`): they go out with the next Amazon feed. "
        "A cancellation (cancel_on_amazon, or a refund_on_amazon of units that could not be fulfilled, which Amazon "
        "hears of as cancelled) is held with the 7-day cancellation rate as if it alone were sent, maybe "
        "days ago, so first each account's rate is counted again, as it is now, with all its cancellations among the "
        "ids that the rate counts (FBM orders of the week not counted yet; not BuyerCanceled answering a buyer's "
        "request). If they would raise it to 2.5% or more (Amazon wants it under 2.5%), none of that account's "
        "cancellations the rate counts is approved, a message says the rate now and with them, and the exit code is "
        f"1: approve fewer, or give {OVER_RATE} to approve them all the same. Weeks of fewer than 100 FBM orders "
        "are not checked, as the shipped rules leave them alone. A cancellation that would be a second message to "
        "Amazon about its order (Amazon shows the order cancelled, ordersync's cancellation of it is going out or "
        "was sent, or several of one order are given together) is never approved: Amazon refuses it, and the order "
        "would show a Failed Cancellation; it is named, and the exit code is 1. The other ids (cancellations the "
        "rate does not count, other refunds, and the cancellations of accounts whose rate stays under) are approved "
        "as usual; for each account, the rate with its approved cancellations is printed. Ids that are not awaiting "
        "approval are named and left as they are; the others are approved all the same, and the exit code is 1.")
    approve.add_argument(OVER_RATE, action="store_true",
                         help="approve the cancellations even if they raise an account's 7-day cancellation rate to "
                              "Amazon's 2.5%% or more")
    reject = subcommand(
        sub, "reject", run_reject, "drop the actions; they never go to Amazon",
        "Reject the actions with these ids (from `ordersync approvals`): they never go to Amazon and are kept as "
        "rejected with the reason. A rejected cancellation or refund is also an event the running daemon decides by "
        "the rules: the shipped policy releases the holds the order's rejected cancellations placed, and notes the "
        "reason on the order (only notes it while another cancellation of the order goes on); a rejected refund puts "
        "the order in the error view, as the storefront shows the refund and Amazon never pays it. "
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
    held = _held_cancellations(store, args.ids)
    seconds = _second_messages(store, held)
    held = {account: [action for action in actions if action.id not in seconds] for account, actions in held.items()}
    rates = _rates_if_sent(store, held)
    refused = [] if args.over_cancellation_rate else sorted(account for account, rate in rates.items()
                                                             if rate.too_high)
    # Only the cancellations the rate counts are kept back: one it does not count (BuyerCanceled answering the buyer's
    # request, an FBA order's) changes nothing, and the buyer's has a 48-hour window.
    kept = {account: [action for action in held[account] if action.amazon_order_id in rates[account].counting]
            for account in refused}
    kept_ids = set(seconds) | {action.id for actions in kept.values() for action in actions}
    code = _decide(args, store, Store.approve, "approved", "queued for the next Amazon feed",
                   [action_id for action_id in args.ids if action_id not in kept_ids])
    for account, rate in rates.items():
        if account not in refused and held[account]:
            print(_rate_line(account, rate))
    for why in dict.fromkeys(seconds.values()):
        print(f"ordersync approvals approve: {why}", file=sys.stderr)
    for account in refused:
        print(_refusal(account, rates[account], kept[account]), file=sys.stderr)
    return 1 if refused or seconds else code


def _second_messages(store: Store, held: dict[str, list[Action]]) -> dict[int, str]:
    """The held cancellations that would be a second message to Amazon about their order (Amazon refuses it, and the
    order shows a Failed Cancellation though it is cancelled), each with why: one of an order ordersync's cancellation
    is going out for, or was sent for, and several of one order given together (a person picks one)."""
    why: dict[int, str] = {}
    for account, actions in held.items():
        cancellations: dict[str, list[Action]] = {}
        for action in actions:
            if action.type == "cancel_on_amazon":
                cancellations.setdefault(action.amazon_order_id or "", []).append(action)
        going = store.amazon_cancellations(account, cancellations)
        for order_id, same_order in cancellations.items():
            ids = ", ".join(str(action.id) for action in same_order)
            which = f"cancellation{'s' if len(same_order) > 1 else ''} {ids} would be"
            row = store.get_order(account, order_id)
            if row is not None and row.status == "Canceled":
                reason = (f"account {account}: Amazon shows order {order_id} cancelled already: {which} a message Amazon "
                          f"refuses, so not approved; reject (ordersync approvals reject {ids} --reason ...).")
            elif going.get(order_id) in ("on_its_way", "other_reason_on_its_way"):
                reason = (f"account {account}: order {order_id} has a cancellation going out to Amazon, or sent, already: "
                          f"{which} a second message, which Amazon refuses, so not approved; reject "
                          f"(ordersync approvals reject {ids} --reason ...).")
            elif len(same_order) > 1:
                reason = (f"account {account}: cancellations {ids} are of the same order {order_id}: Amazon would get a "
                          "message for each and refuse the second, so none is approved; approve one and reject the others.")
            else:
                continue
            why.update((action.id, reason) for action in same_order)
    return why


def _held_cancellations(store: Store, ids: Iterable[int]) -> dict[str, list[Action]]:
    """The cancellations among the ids that await approval, by account (the other ids are _decide's to report): each
    cancel_on_amazon, and each refund_on_amazon that gives units up, which Amazon hears of as cancelled."""
    held: dict[str, list[Action]] = {}
    for action_id in dict.fromkeys(ids):
        try:
            action = store.get_action(action_id)
        except NotFound:
            continue
        if action.status == AWAITING_APPROVAL and (
                action.type == "cancel_on_amazon" or (action.type == "refund_on_amazon" and _gives_units_up(store, action))):
            held.setdefault(action.account, []).append(action)
    return held


def _gives_units_up(store: Store, refund: Action) -> bool:
    """A refund of units that could not be fulfilled (DOMAIN 13), as its event says."""
    from daemon.pipeline.events import units_given_up

    decision = store.get_decision(refund.decision_id)
    return decision is not None and bool(units_given_up(store.get_event(decision.event_id).payload))


def _rates_if_sent(store: Store, held: dict[str, list[Action]]) -> dict[str, RateIfSent]:
    """Each account's cancellation rate now and with all its held cancellations among the ids sent too, measured
    before any is approved: each was held with the rate as if it alone were sent, maybe days ago."""
    from daemon.pipeline.cancellation_rate import HeldCancellation, rate_if_sent

    def as_held(action: Action) -> HeldCancellation:
        # Whether Amazon ships the order (FBA) is in the fact its decision was made with; the grid may not have the
        # order (a person's cancellation of one the order poll never read).
        decision = store.get_decision(action.decision_id)
        record = decision.record if decision is not None and isinstance(decision.record, dict) else {}
        fact = record.get("fact") if isinstance(record.get("fact"), dict) else {}
        fulfillment = fact.get("fulfillment")
        return HeldCancellation(action.amazon_order_id or "", str(action.params.get("reason_code") or ""),
                                fulfillment if isinstance(fulfillment, str) else None)

    now = datetime.now(timezone.utc)
    return {account: rate_if_sent(store, account, now, [as_held(action) for action in actions])
            for account, actions in held.items()}


def _rate_line(account: str, rate: RateIfSent) -> str:
    from daemon.pipeline.cancellation_rate import AMAZON_TARGET_PERCENT, FEWEST_ORDERS_JUDGED

    line = f"account {account}: 7-day cancellation rate {rate.now:.2f}% now, {rate.after:.2f}% with these approved"
    if rate.too_high:
        return f"{line} (Amazon wants it under {AMAZON_TARGET_PERCENT}%; approved with {OVER_RATE})"
    if rate.over_target:
        return f"{line} (not checked: {rate.orders} FBM orders this week, fewer than {FEWEST_ORDERS_JUDGED})"
    return line


def _refusal(account: str, rate: RateIfSent, kept: list[Action]) -> str:
    from daemon.pipeline.cancellation_rate import AMAZON_TARGET_PERCENT

    refunds = [action.id for action in kept if action.type == "refund_on_amazon"]
    cancellations = [action.id for action in kept if action.type != "refund_on_amazon"]
    which = " and ".join(part for part in (
        _numbered("cancellation", cancellations), _numbered("refund", refunds, " (of units that could not be fulfilled)"))
        if part)
    counting = len(rate.counting)
    counted = "it counts" if len(kept) == 1 else f"{counting} of them {'counts' if counting == 1 else 'count'}"
    advice = ["approve fewer"]
    if cancellations:
        advice.append("ask the buyers to request the cancellation on Amazon and, once a request arrives, cancel with "
                      "reason BuyerCanceled (`ordersync orders cancel ACCOUNT ORDER --reason BuyerCanceled`), which does "
                      "not count, and reject the held one")
    if refunds:
        advice.append("approve a refund once the week allows (Amazon expects its units shipped until it hears)")
    advice.append(f"give {OVER_RATE} to approve them all the same")
    return (f"ordersync approvals approve: account {account}: approving {which} would raise the 7-day cancellation "
            f"rate from {rate.now:.2f}% now to {rate.after:.2f}% ({counted}, among {rate.orders} FBM orders; Amazon "
            f"wants it under {AMAZON_TARGET_PERCENT}%), so none of them is approved. {_sentence('; or '.join(advice))}.")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _numbered(what: str, ids: list[int], of: str = "") -> str:
    if not ids:
        return ""
    return f"{what}{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}{of}"


@with_store("ordersync approvals reject")
def run_reject(args: argparse.Namespace, config: Config, store: Store) -> int:
    return _decide(args, store, lambda s, ids: s.reject(ids, args.reason), "rejected",
                   f"kept as rejected, never sent to Amazon (reason: {args.reason})", args.ids)


def _decide(args: argparse.Namespace, store: Store, change: Callable[[Store, list[int]], int], done: str,
            outcome: str, ids: Iterable[int]) -> int:
    changed: list[int] = []
    left: list[str] = []
    for action_id in dict.fromkeys(ids):
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
