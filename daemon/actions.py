"""The registry of actions: the one list of what a rule can decide.

The rule loader checks `then:` against it, the dispatcher carries each action out through the adapter
it names, and `ordersync rules actions` and the README print it. Adding an action means adding it here
and giving its target adapter the method; nothing else lists actions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from daemon.facts import ADJUSTMENT_REASONS, BOOL, CANCEL_REASONS, DECIMAL, ENUM, REASON_CODES, TEXT

# Who carries an action out.
STOREFRONT, AMAZON, INVENTORY, OPERATOR, LEDGER = "storefront", "amazon", "inventory", "operator", "ledger"

# The sync status an order shows in the error view when an action fails for good.
FAILED_ORDER, FAILED_CANCELLATION, FAILED_REFUND = "Failed Order", "Failed Cancellation", "Failed Refund"


@dataclass(frozen=True)
class ParamSpec:
    kind: str                       # TEXT, BOOL, ENUM or DECIMAL (daemon.facts kinds)
    description: str
    required: bool = False
    default: Any = None
    values: tuple[Any, ...] = ()    # for ENUM

    def describe_type(self) -> str:
        if self.kind == ENUM:
            return "one of " + ", ".join(repr(v) if v == "" else str(v) for v in self.values)
        return self.kind


@dataclass(frozen=True)
class ActionSpec:
    name: str
    description: str
    target: str
    failure_status: str
    params: dict[str, ParamSpec] = field(default_factory=dict)

    def signature(self) -> str:
        if not self.params:
            return self.name
        parts = [f"{name}{'' if p.required else '?'}: {p.kind}" for name, p in self.params.items()]
        return f"{self.name} {{{', '.join(parts)}}}"


def _text(description: str, required: bool = True, default: str | None = None) -> ParamSpec:
    return ParamSpec(TEXT, description, required=required, default=default)


def _flag(description: str, default: bool = False) -> ParamSpec:
    return ParamSpec(BOOL, description, default=default)


def _reason(description: str, values: tuple[str, ...]) -> ParamSpec:
    return ParamSpec(ENUM, description, required=True, values=values)


ACTIONS: dict[str, ActionSpec] = {spec.name: spec for spec in [
    ActionSpec("hold_order", "Put the storefront order on hold so it cannot be handed to shipping.",
               STOREFRONT, FAILED_CANCELLATION,
               {"reason": _text("why it is held; shown on the hold", required=False, default="buyer_cancel_requested")}),
    ActionSpec("release_hold", "Release the holds ordersync placed, so the order can ship again (a rejected cancellation: only its own).",
               STOREFRONT, FAILED_ORDER),
    ActionSpec("add_note", "Add a note to the storefront order ({field} places a fact's value).",
               STOREFRONT, FAILED_ORDER, {"text": _text("the note")}),
    ActionSpec("add_tag", "Tag the storefront order.", STOREFRONT, FAILED_ORDER, {"tag": _text("the tag")}),
    ActionSpec("cancel_order", "Cancel the whole storefront order.", STOREFRONT, FAILED_CANCELLATION, {
        "reason_code": _reason("the cancel reason recorded with it", REASON_CODES),
        "restock": _flag("put the cancelled quantity back into inventory"),
        "notify_customer": _flag("have the storefront email the customer"),
    }),
    ActionSpec("cancel_on_amazon", "Cancel the order on Amazon (order acknowledgement feed, sent in a batch).",
               AMAZON, FAILED_CANCELLATION, {"reason_code": _reason("Amazon's cancel reason", CANCEL_REASONS)}),
    ActionSpec("reject", "Refuse the request: the order goes to the error view with this message; nothing else is done.",
               OPERATOR, FAILED_ORDER, {
                   "error": _text("a short code for the error view, e.g. partial_cancellation"),
                   "message": _text("what happened and what the person should do"),
               }),
    ActionSpec("restock", "Put the cancelled or returned quantity back into inventory, where the order was to ship from.",
               INVENTORY, FAILED_CANCELLATION),
    ActionSpec("zero_out_inventory", "Set the order's items' available inventory to zero where the order was to ship from.",
               INVENTORY, FAILED_CANCELLATION,
               {"all_bins": _flag("at every location, not only the order's")}),
    ActionSpec("create_rma", "Create an RMA for the return (kit parents become their components; resolution Refund; status Open).",
               LEDGER, FAILED_REFUND),
    ActionSpec("refund", "Refund `amount` (by default refund_amount) on the storefront order.", STOREFRONT, FAILED_REFUND, {
        "reason_code": ParamSpec(ENUM, "the adjustment reason, written in the refund's note (Amazon's Finances API "
                                       "does not say why it refunded)", values=ADJUSTMENT_REASONS),
        "amount": ParamSpec(DECIMAL, "how much, when not the whole refund_amount"),
    }),
    ActionSpec("refund_on_amazon", "Refund on Amazon (payment adjustment feed, sent in a batch).", AMAZON, FAILED_REFUND,
               {"reason_code": _reason("Amazon's adjustment reason", ADJUSTMENT_REASONS)}),
    ActionSpec("queue_for_approval", "Hold this decision's Amazon-bound actions in the queue until a person approves them.",
               OPERATOR, FAILED_ORDER),
    ActionSpec("notify", "Tell the operators (log line and notification hook).", OPERATOR, FAILED_ORDER,
               {"message": _text("the message")}),
]}

AMAZON_BOUND = frozenset(name for name, spec in ACTIONS.items() if spec.target == AMAZON)
# The storefront effects that Amazon's side of the same decision repeats: when Shopify refuses one for good,
# what follows it to Amazon must not go alone (a zeroed stock level or a note failing is no such reason).
AMAZON_FOLLOWS = frozenset({"cancel_order", "refund"})
