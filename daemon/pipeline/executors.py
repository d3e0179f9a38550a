"""How each action of the registry is carried out: one function per action, each through exactly one
adapter (or the store, for what stays here). Storefront calls carry the action's idempotency key, and
the Shopify client looks at the order before it acts, so a retried or replayed action changes nothing
the second time. Amazon-bound actions never come here: they go out in feeds (daemon/pipeline/batches.py)."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Mapping

import structlog

from adapters.errors import PermanentError
from adapters.shopify.client import LineSelection, OrderNotFound, ShopifyClient
from adapters.shopify.models import StorefrontOrder
from daemon.actions import ACTIONS, AMAZON_BOUND, FAILED_CANCELLATION, FAILED_ORDER, FAILED_REFUND
from daemon.pipeline.events import refund_of, units_given_up
from daemon.store import RefundLineIn, RmaLineIn, Store
from daemon.store.models import Action

log = structlog.get_logger("ordersync.actions")

# Amazon's reason → what Shopify's orderCancel can record.
SHOPIFY_CANCEL_REASONS = {"BuyerCanceled": "CUSTOMER", "NoInventory": "INVENTORY", "CustomerExchange": "CUSTOMER",
                          "RiskAssessmentInformationNotValid": "FRAUD"}
REJECT_STATUS = {"order_cancelled": FAILED_CANCELLATION, "cancel_requested": FAILED_CANCELLATION,
                 "buyer_cancel_requested": FAILED_CANCELLATION, "buyer_request_due": FAILED_CANCELLATION,
                 "refund_requested": FAILED_REFUND, "return_reported": FAILED_REFUND,
                 "cancellation_rejected": FAILED_CANCELLATION, "refund_rejected": FAILED_REFUND}


@dataclass
class AccountContext:
    """What an action of one account needs: its storefront client and the store."""

    account: str
    shopify: ShopifyClient
    store: Store

    def storefront_order(self, action: Action) -> StorefrontOrder:
        return self.shopify.find_order(action.amazon_order_id)

    def decision(self, action: Action) -> Mapping[str, Any]:
        decision = self.store.get_decision(action.decision_id)
        return decision.record if decision is not None else {}

    def event_payload(self, action: Action) -> Mapping[str, Any]:
        """What the change carried (the order's lines, the return's items), from the inbox."""
        decision = self.store.get_decision(action.decision_id)
        return self.store.get_event(decision.event_id).payload if decision is not None else {}


Executor = Callable[[AccountContext, Action], Mapping[str, Any]]


def _result(result: Any) -> dict[str, Any]:
    return {"changed": bool(getattr(result, "changed", True)), **dict(getattr(result, "detail", {}) or {})}


def _lines(ctx: AccountContext, action: Action) -> list[dict[str, Any]]:
    event = ctx.event_payload(action)
    return list(event.get("lines") or event.get("items") or [])


def hold_order(ctx: AccountContext, action: Action) -> Mapping[str, Any]:
    return _result(ctx.shopify.hold_order(ctx.storefront_order(action), idempotency_key=action.idempotency_key,
                                          reason="OTHER", notes=action.params.get("reason")))


def release_hold(ctx: AccountContext, action: Action) -> Mapping[str, Any]:
    # An event that names the holds to lift (a rejected cancellation names its own decision's hold) lifts only
    # those: another hold of ordersync's on the order (a buyer's request, a cancellation Amazon made that
    # cannot sync) stays until its own reason is settled.
    placed_by = ctx.event_payload(action).get("holds_to_release")
    return _result(ctx.shopify.release_hold(ctx.storefront_order(action), idempotency_key=action.idempotency_key,
                                            placed_by=placed_by))


def add_note(ctx: AccountContext, action: Action) -> Mapping[str, Any]:
    return _result(ctx.shopify.add_note(ctx.storefront_order(action), action.params["text"], idempotency_key=action.idempotency_key))


def add_tag(ctx: AccountContext, action: Action) -> Mapping[str, Any]:
    return _result(ctx.shopify.add_tags(ctx.storefront_order(action), [action.params["tag"]], idempotency_key=action.idempotency_key))


def cancel_order(ctx: AccountContext, action: Action) -> Mapping[str, Any]:
    reason = action.params.get("reason_code") or ""
    return _result(ctx.shopify.cancel_order(
        ctx.storefront_order(action), idempotency_key=action.idempotency_key,
        reason=SHOPIFY_CANCEL_REASONS.get(reason, "OTHER"), restock=bool(action.params.get("restock")),
        refund=False, notify_customer=bool(action.params.get("notify_customer")),
        staff_note=f"Amazon {reason or 'cancellation'} (ordersync decision {action.decision_id})"))


def _storefront_order_if_any(ctx: AccountContext, action: Action) -> StorefrontOrder | None:
    try:
        return ctx.storefront_order(action) if action.amazon_order_id else None
    except OrderNotFound:
        return None


def _order_location(ctx: AccountContext, order: StorefrontOrder | None, sku: str) -> str | None:
    """The location the order's units of this SKU were to ship from (its fulfilment order's), when that
    location stocks the SKU; else the first location that does (None: stocked nowhere)."""
    _, levels = ctx.shopify.inventory_levels(sku)
    if not levels:
        return None
    if order is not None:
        line_ids = {line.id for line in order.line_items if line.sku == sku}
        for fulfillment_order in order.fulfillment_orders:
            if fulfillment_order.location_id in levels and any(l.line_item_id in line_ids for l in fulfillment_order.lines):
                return fulfillment_order.location_id
    return sorted(levels)[0]


def restock(ctx: AccountContext, action: Action) -> Mapping[str, Any]:
    """The order's (or return's) quantities back where they were to ship from (see _order_location)."""
    done = []
    order = _storefront_order_if_any(ctx, action)  # once for all lines
    for line in _lines(ctx, action):
        sku, quantity = line.get("sku"), int(line.get("quantity") or 0)
        location = _order_location(ctx, order, sku) if sku and quantity else None
        if location is None:
            continue
        ctx.shopify.adjust_inventory(sku, location, quantity, reason="restock", decision_id=action.decision_id,
                                     idempotency_key=f"{action.idempotency_key}:{sku}")
        done.append({"sku": sku, "quantity": quantity, "location": location})
    return {"restocked": done}


def zero_out_inventory(ctx: AccountContext, action: Action) -> Mapping[str, Any]:
    done = []
    order = None if action.params.get("all_bins") else _storefront_order_if_any(ctx, action)  # once for all lines
    for line in _lines(ctx, action):
        sku = line.get("sku")
        if not sku:
            continue
        location = None if action.params.get("all_bins") else _order_location(ctx, order, sku)
        ctx.shopify.zero_out_inventory(sku, decision_id=action.decision_id, idempotency_key=f"{action.idempotency_key}:{sku}",
                                       location_id=location)
        done.append({"sku": sku, "location": location or "all"})
    return {"zeroed": done}


def create_rma(ctx: AccountContext, action: Action) -> Mapping[str, Any]:
    """The return's lines as an RMA; a kit (a Shopify bundle) is written as its components, each line
    `kit_parent_sku` = the kit (DOMAIN rule 10). Every SKU is looked up before anything is written, so a
    Shopify failure (retried by the dispatcher) leaves no RMA behind."""
    event = ctx.event_payload(action)
    items = list(event.get("items") or [])
    kits = {sku: ctx.shopify.kit_components(sku) for sku in dict.fromkeys(item.get("sku") for item in items) if sku}
    lines = []
    for item in items:
        sku, quantity, reason = item.get("sku") or "", int(item.get("quantity") or 0), item.get("reason")
        components = kits.get(sku)
        if components:
            lines.extend(RmaLineIn(c.sku, quantity * c.quantity, reason, kit_parent_sku=sku) for c in components)
        else:
            lines.append(RmaLineIn(sku, quantity, reason))
    rma, created = ctx.store.create_rma(ctx.account, event.get("rma_id") or action.decision_id, action.amazon_order_id or "",
                                        lines, tracking_number=event.get("tracking_number"), decision_id=action.decision_id)
    return {"rma_id": rma.id, "created": created, "kits": sorted(sku for sku, components in kits.items() if components),
            "lines": [{"sku": line.sku, "quantity": line.quantity, **({"kit": line.kit_parent_sku} if line.kit_parent_sku else {})}
                      for line in lines]}


# The storefront refund's note names what Amazon's Finances API listed the money as (it does not say why).
AMAZON_REFUND_KIND_NOTES = {"guarantee_claim": "A-to-z Guarantee claim", "chargeback": "chargeback"}


def refund(ctx: AccountContext, action: Action) -> Mapping[str, Any]:
    given = action.params.get("amount")
    amount = Decimal(str(given if given is not None else ctx.decision(action).get("fact", {}).get("refund_amount") or "0"))
    payload = ctx.event_payload(action)
    # Units refunded because they could not be fulfilled are cancelled out of the order too (they must not
    # ship); other units are paid back only, their restock being the return's business.
    restock = "CANCEL" if units_given_up(payload) else "NO_RESTOCK"
    order = ctx.storefront_order(action)
    currency = payload.get("currency")
    if currency and order.currency and currency != order.currency:
        # 30.00 CAD recorded as 30.00 USD would be wrong money; a person converts it.
        raise PermanentError(f"the refund is in {currency} and storefront order {order.name or order.id} is in "
                             f"{order.currency}; record it there by hand", code="CURRENCY_MISMATCH")
    what = action.params.get("reason_code") or AMAZON_REFUND_KIND_NOTES.get(payload.get("amazon_refund_kind"), "refund")
    result = ctx.shopify.refund(order, idempotency_key=action.idempotency_key, amount=amount,
                                lines=[LineSelection(int(line["quantity"]), sku=line["sku"])
                                       for line in payload.get("refund_lines") or ()],
                                restock_type=restock,
                                note=f"Amazon {what} (ordersync decision {action.decision_id})")
    refunded = refund_of(payload, amount)
    parts = refunded.items() if isinstance(refunded, Mapping) else [("order", amount)]
    ctx.store.record_refund(ctx.account, action.amazon_order_id or "", action.decision_id,
                            [RefundLineIn(line_key=code, principal=part) for code, part in parts])
    return _result(result)


def reject(ctx: AccountContext, action: Action) -> Mapping[str, Any]:
    event = ctx.decision(action).get("event")
    status = REJECT_STATUS.get(event, FAILED_ORDER)
    if action.amazon_order_id:
        ctx.store.mark_failed(ctx.account, action.amazon_order_id, status, f"{action.params['error']}: {action.params['message']}")
    return {"sync_status": status}


def notify(ctx: AccountContext, action: Action) -> Mapping[str, Any]:
    log.warning("notify", account=ctx.account, amazon_order_id=action.amazon_order_id, message=action.params["message"],
                decision_id=action.decision_id)
    return {"notified": True}


def noted(ctx: AccountContext, action: Action) -> Mapping[str, Any]:
    return {}


EXECUTORS: dict[str, Executor] = {
    "hold_order": hold_order, "release_hold": release_hold, "add_note": add_note, "add_tag": add_tag,
    "cancel_order": cancel_order, "restock": restock, "zero_out_inventory": zero_out_inventory,
    "create_rma": create_rma, "refund": refund, "reject": reject, "notify": notify, "queue_for_approval": noted,
}

# Every action of the registry is carried out here, or by the feed batches: nothing is left unhandled.
assert set(EXECUTORS) | AMAZON_BOUND == set(ACTIONS), set(ACTIONS) - set(EXECUTORS) - AMAZON_BOUND
