"""The Shopify storefront for one shop: find the order that mirrors an Amazon order, and carry out
the actions the rules decide (hold, release, note, tags, cancel, partial cancel, refund, inventory).

Every action reads the order first (by id, never through the lagging search index) and does nothing
when what it would do is already done, so a retried or replayed decision changes nothing the second
time; it returns an `ActionResult` saying whether it changed anything. The caller's idempotency key
is turned into a short marker (`ordersync:<digest>`) written where Shopify keeps something we can
read back: the hold handle, the refund note, the cancel staff note, the order note. In 2026-01 mode
the key also travels as @idempotent(key:) on refundCreate and inventoryAdjustQuantities.

Refusals are `PermanentError` (or `InvalidInput` for the caller's own mistakes) with a `code` the
dispatcher can switch on; see ERROR_CODES. Transport failures are `TransientError`.
"""
from __future__ import annotations

import hashlib
import heapq
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Collection, Iterable, Iterator, Literal, Mapping, Sequence
from urllib.parse import quote

import httpx

from adapters.errors import InvalidInput, PermanentError, TransientError
from adapters.shopify.cost import requested_cost
from adapters.shopify.models import (
    ActionResult,
    KitComponent,
    StorefrontCancellation,
    StorefrontOrder,
    StorefrontRefund,
    StorefrontRefundLine,
    order_from_graphql,
)
from adapters.shopify.operations import (
    MARKER_PREFIX,
    REFUND_LINES_READ,
    REFUNDED_ORDERS_MAX_COST,
    REFUNDS_READ,
    OperationSet,
    operations_for,
)
from adapters.shopify.transport import DEFAULT_BUCKET, ShopifyTransport

# The codes this client puts on the errors it raises itself (Shopify's own typed codes, e.g.
# INVALID_LOCATION or DUPLICATE_FULFILLMENT_HOLD_HANDLE, are passed through as they come).
ERROR_CODES = {
    "ORDER_NOT_FOUND": "no Shopify order mirrors this Amazon order id, or the order id does not exist",
    "AMBIGUOUS_MATCH": "more than one Shopify order carries this Amazon order id",
    "ALREADY_CANCELLED": "the order was cancelled by someone else (not by this decision)",
    "ALREADY_FULFILLED": "units the action needs unshipped have been fulfilled",
    "NOTHING_TO_HOLD": "no fulfilment order is open for a hold",
    "LINE_NOT_FOUND": "no line item with that SKU / id on the order",
    "QUANTITY_INVALID": "a quantity that is not a positive whole number",
    "REFUND_EXCEEDS_REFUNDABLE": "a refund larger than what was paid and not yet refunded, or more units than refundable",
    "NO_PAYMENT_TO_REFUND": "money was asked back but the order has no sale to refund against",
    "SKU_NOT_FOUND": "no inventory item with that SKU",
    "ITEM_NOT_STOCKED_AT_LOCATION": "the SKU is not stocked at that location (or the location does not exist)",
    "INVENTORY_CHANGED": "the available quantity is neither what the decision saw nor what it would set",
    "USER_ERROR": "Shopify refused the mutation (userErrors without a code)",
    "CANCEL_REFUSED": "Shopify refused orderCancel (its code is in the message)",
    "CANCEL_PENDING": "(transient) the cancel job had not finished when the client stopped waiting",
    "KIT_COMPONENT_WITHOUT_SKU": "a bundle's component variant has no SKU, so a returned bundle cannot be listed as its components",
    "KIT_TOO_LARGE": "a bundle has more components than the client reads (Shopify allows 30)",
    "MALFORMED_ANSWER": "Shopify's answer lacks a field the client needs, or has one it cannot read (e.g. an amount that is not a number)",
    "REFUNDS_TRUNCATED": "an order has more refunds, or a refund more lines, than the storefront refunds poll reads",
}

HoldReason = Literal["AWAITING_PAYMENT", "HIGH_RISK_OF_FRAUD", "INCORRECT_ADDRESS", "INVENTORY_OUT_OF_STOCK",
                     "UNKNOWN_DELIVERY_DATE", "ONLINE_STORE_POST_PURCHASE_CROSS_SELL", "AWAITING_RETURN_ITEMS", "OTHER"]
CancelReason = Literal["CUSTOMER", "DECLINED", "FRAUD", "INVENTORY", "STAFF", "OTHER"]
RestockType = Literal["RETURN", "CANCEL", "NO_RESTOCK"]
HOLDABLE = ("OPEN", "IN_PROGRESS", "SCHEDULED", "ON_HOLD")


class ShopifyRejected(PermanentError):
    """Shopify (or this client, before asking) refused an action; names the order and the field."""

    def __init__(self, message: str, *, code: str, order_id: str | None = None, field: str | None = None,
                 amazon_order_id: str | None = None) -> None:
        super().__init__(message, code=code)
        self.order_id = order_id
        self.field = field
        self.amazon_order_id = amazon_order_id


class OrderNotFound(ShopifyRejected):
    pass


@dataclass(frozen=True)
class OrderMatch:
    """How the import recorded the Amazon order id on the Shopify order.

    by="source_identifier": Order.sourceIdentifier equals the Amazon order id.
    by="tag": the order carries the tag tag_prefix + Amazon order id (e.g. "amazon-113-...")."""

    by: Literal["source_identifier", "tag"] = "source_identifier"
    tag_prefix: str = "amazon-"

    def search(self, amazon_order_id: str) -> str:
        if self.by == "tag":
            return _search_term("tag", self.tag_prefix + amazon_order_id)
        return _search_term("source_identifier", amazon_order_id)

    def amazon_order_id_of(self, node: Mapping[str, Any]) -> str | None:
        """The Amazon order id the import recorded on an order read by its Shopify id (None if none,
        or if several tags carry the prefix), so that errors and hold external ids can name it."""
        if self.by == "source_identifier":
            return node.get("sourceIdentifier") or None
        prefix = self.tag_prefix.lower()
        found = {t[len(prefix):] for t in node.get("tags") or () if t.lower().startswith(prefix) and len(t) > len(prefix)}
        return found.pop() if len(found) == 1 else None

    def matches(self, node: Mapping[str, Any], amazon_order_id: str) -> bool:
        """Search is fuzzy (an unknown field filters nothing), so every hit is checked exactly."""
        if self.by == "tag":
            return f"{self.tag_prefix}{amazon_order_id}".lower() in (t.lower() for t in node.get("tags") or ())
        return node.get("sourceIdentifier") == amazon_order_id


@dataclass(frozen=True)
class ShopifyConfig:
    shop: str  # "acme.myshopify.com", "acme", or a base URL such as a stand-in's http://127.0.0.1:8082
    api_version: str = "2025-01"  # "2026-01" selects refundMethod and @idempotent forms
    match: OrderMatch = field(default_factory=OrderMatch)
    timeout: float = 10.0
    max_attempts: int = 4
    max_throttle_retries: int = 8
    max_throttle_wait: float = 30.0  # longer waits come back as TransientError(THROTTLED, retry_after=...)
    cancel_poll_interval: float = 0.2
    cancel_timeout: float = 30.0
    initial_bucket: tuple[float, float] = DEFAULT_BUCKET


@dataclass(frozen=True)
class LineSelection:
    """A line of the order, by SKU or by line item id, and how many units."""

    quantity: int
    sku: str | None = None
    line_item_id: str | None = None


def marker_for(idempotency_key: str) -> str:
    if not idempotency_key or not idempotency_key.strip():
        raise InvalidInput("an idempotency key is required (derive it from the decision)", code="IDEMPOTENCY_KEY_MISSING")
    return MARKER_PREFIX + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:20]


class ShopifyClient:
    def __init__(self, config: ShopifyConfig, access_token: str, *, http: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.ops: OperationSet = operations_for(config.api_version)
        self.transport = ShopifyTransport(
            config.shop, access_token, config.api_version, timeout=config.timeout, max_attempts=config.max_attempts,
            max_throttle_retries=config.max_throttle_retries, max_throttle_wait=config.max_throttle_wait, initial_bucket=config.initial_bucket, http=http, sleep=sleep,
        )
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"ShopifyClient(shop={self.config.shop!r}, api_version={self.config.api_version!r})"

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "ShopifyClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------------
    def find_order(self, amazon_order_id: str) -> StorefrontOrder:
        """The Shopify order that mirrors `amazon_order_id`; OrderNotFound or AMBIGUOUS_MATCH otherwise."""
        amazon_order_id = (amazon_order_id or "").strip()
        if not amazon_order_id:
            raise InvalidInput("find_order needs an Amazon order id", code="AMAZON_ORDER_ID_MISSING")
        data = self.transport.execute(self.ops.find_orders, {"search": self.config.match.search(amazon_order_id)},
                                      operation_name="FindOrders")
        nodes = [n for n in ((data.get("orders") or {}).get("nodes") or []) if self.config.match.matches(n, amazon_order_id)]
        how = f"tag {self.config.match.tag_prefix}<id>" if self.config.match.by == "tag" else "source identifier"
        if not nodes:
            raise OrderNotFound(f"no Shopify order on {self.config.shop} mirrors Amazon order {amazon_order_id} (matched by {how}); "
                                "a just-imported order can take a few seconds to appear in search", code="ORDER_NOT_FOUND")
        if len(nodes) > 1:
            names = ", ".join(n.get("name") or n["id"] for n in nodes)
            raise ShopifyRejected(f"Amazon order {amazon_order_id} matches several Shopify orders on {self.config.shop} ({names}); "
                                  "a person must pick one", code="AMBIGUOUS_MATCH")
        return order_from_graphql(nodes[0], amazon_order_id)

    def cancelled_orders(self, since: str, *, page_size: int = 50) -> Iterator[StorefrontCancellation]:
        """Orders that mirror an Amazon order and are cancelled, updated at or after `since`
        (YYYY-MM-DDTHH:MM:SSZ), oldest update first, a page of `page_size` asked for at a time as the
        caller goes on. Shopify's search lags its writes by a few seconds: a caller that remembers where it
        got to starts its next call a little earlier, and meets some orders again."""
        if not _SEARCH_TIME.fullmatch(since or ""):
            raise InvalidInput(f"cancelled_orders needs a time as YYYY-MM-DDTHH:MM:SSZ, not {since!r}", code="BAD_SINCE")
        variables: dict[str, Any] = {"search": f"status:cancelled updated_at:>={since}", "first": page_size, "after": None}
        while True:
            data = self.transport.execute(self.ops.cancelled_orders, variables, operation_name="CancelledOrders")
            orders = data.get("orders") or {}
            for node in orders.get("nodes") or []:
                amazon_order_id = self.config.match.amazon_order_id_of(node)
                if not amazon_order_id or not node.get("cancelledAt"):
                    continue  # not an Amazon order's mirror (or the search was fuzzy): not ours to tell Amazon of
                yield StorefrontCancellation(
                    id=node["id"], name=node.get("name") or "", amazon_order_id=amazon_order_id,
                    cancelled_at=node["cancelledAt"], updated_at=node.get("updatedAt") or node["cancelledAt"],
                    reason=node.get("cancelReason") or "", tags=tuple(node.get("tags") or ()),
                    by_ordersync=MARKER_PREFIX in ((node.get("cancellation") or {}).get("staffNote") or ""))
            page = orders.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                return
            variables["after"] = page["endCursor"]

    def refunded_orders(self, since: str, *, page_size: int = 50, passing_over: Collection[str] = ()) -> Iterator[StorefrontRefund]:
        """Every refund of the orders that mirror an Amazon order, are refunded in part or in whole, and were updated at or
        after `since` (YYYY-MM-DDTHH:MM:SSZ); orders oldest update first, each order's refunds oldest first; a page of
        `page_size` orders asked for at a time as the caller goes on, but never more than keep one request within
        REFUNDED_ORDERS_MAX_COST points (two orders with the operation's sizes: each order brings up to 11 refunds
        of 10 lines).

        Two searches, `financial_status:partially_refunded updated_at:>=<since>` and `financial_status:refunded
        updated_at:>=<since>`, are paged side by side and merged by the order's updatedAt. Shopify's search grammar
        has OR and parentheses, but its documentation does not say how OR binds against the implied AND of the
        updated_at term, and Shopify ignores a term it cannot apply rather than refusing the search: a misread OR
        would list too much or too little without a word. Two plain searches of the documented form cannot be
        misread. An order that moves from partially refunded to refunded while the pages are read is met in both;
        each refund is yielded once per call (by refund id).

        What Shopify's financial status does not show is not found: a refund that moved no money (only lines, as
        cancel_lines makes) leaves a paid order PAID. updatedAt moves with any change to the order (a note, a tag, a
        fulfilment), so later calls meet an order's earlier refunds again: the caller keeps the refund ids it has
        handled. Shopify's search lags its writes by a few seconds: a caller that remembers where it got to starts
        its next call a little earlier. Without the read_all_orders scope Shopify searches only the last 60 days of
        orders (by creation), so a late refund of an older order is not seen.

        An order whose answer cannot be read (no id or updatedAt; a refund without id or createdAt; an amount that
        is not a number; a line without a whole quantity) is ShopifyRejected MALFORMED_ANSWER, and an order with more
        than REFUNDS_READ refunds or a refund with more than REFUND_LINES_READ lines is REFUNDS_TRUNCATED, each
        naming the order and the field (and its Amazon order id), raised before any refund of that order is yielded:
        a refund is not left out unsaid. The orders in `passing_over` (Shopify order ids: ones the caller has put
        before a person) are not read, so one such order does not stop the caller for good."""
        if not _SEARCH_TIME.fullmatch(since or ""):
            raise InvalidInput(f"refunded_orders needs a time as YYYY-MM-DDTHH:MM:SSZ, not {since!r}", code="BAD_SINCE")
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise InvalidInput(f"refunded_orders needs a page_size of 1 or more, not {page_size!r}", code="PAGE_SIZE_INVALID")
        sizes = {"refundsFirst": REFUNDS_READ + 1, "refundLinesFirst": REFUND_LINES_READ}
        first = min(page_size, _orders_per_request(self.ops.refunded_orders, sizes, REFUNDED_ORDERS_MAX_COST))
        streams = [self._refunded_order_nodes(f"financial_status:{status} updated_at:>={since}", first, sizes)
                   for status in ("partially_refunded", "refunded")]
        yielded: set[str] = set()
        for updated_at, order_id, amazon_order_id, node in heapq.merge(*streams, key=lambda found: found[:2]):
            if order_id in passing_over:
                continue
            for refund in self._refunds_of(node, order_id, amazon_order_id, updated_at):
                if refund.id not in yielded:
                    yielded.add(refund.id)
                    yield refund

    def _refunded_order_nodes(self, search: str, first: int, sizes: Mapping[str, int]
                              ) -> Iterator[tuple[str, str, str, Mapping[str, Any]]]:
        """(updatedAt, order id, Amazon order id, node) of each Amazon order's mirror the search finds, page by page."""
        variables: dict[str, Any] = {"search": search, "first": first, "after": None, **sizes}
        while True:
            data = self.transport.execute(self.ops.refunded_orders, variables, operation_name="RefundedOrders")
            orders = data.get("orders") or {}
            for index, node in enumerate(orders.get("nodes") or []):
                if not isinstance(node, Mapping):
                    raise ShopifyRejected(f"Shopify's answer to RefundedOrders on {self.config.shop} ({search}) has an order that "
                                          f"is not an object: {node!r}", code="MALFORMED_ANSWER", field=f"orders.nodes[{index}]")
                amazon_order_id = self.config.match.amazon_order_id_of(node)
                if not amazon_order_id:
                    continue  # not an Amazon order's mirror: not ours to tell Amazon of
                order_id = node.get("id")
                if not isinstance(order_id, str) or not order_id:
                    raise _unreadable(self.config.shop, node, None, amazon_order_id, "id", f"{order_id!r} is not an order id")
                updated_at = _utc_stamp(node.get("updatedAt"))
                if updated_at is None:
                    raise _unreadable(self.config.shop, node, order_id, amazon_order_id, "updatedAt", f"{node.get('updatedAt')!r} is not a time")
                yield updated_at, order_id, amazon_order_id, node
            page = orders.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                return
            variables["after"] = page["endCursor"]

    def _refunds_of(self, node: Mapping[str, Any], order_id: str, amazon_order_id: str, updated_at: str) -> list[StorefrontRefund]:
        """The order's refunds, oldest first (Shopify's order within one second); every field checked first."""
        def unreadable(field: str, what: str) -> ShopifyRejected:
            return _unreadable(self.config.shop, node, order_id, amazon_order_id, field, what)

        raw_refunds = node.get("refunds")
        if not isinstance(raw_refunds, list):
            raise unreadable("refunds", f"{raw_refunds!r} is not a list of refunds")
        label = _order_label(self.config.shop, node, order_id, amazon_order_id)
        if len(raw_refunds) > REFUNDS_READ:
            raise ShopifyRejected(f"{label} has more than {REFUNDS_READ} refunds, the most the storefront refunds poll reads of "
                                  "one order; it stops at this order rather than leave a refund out. Tell Amazon of this "
                                  "order's refunds by hand, and raise REFUNDS_READ", code="REFUNDS_TRUNCATED",
                                  order_id=order_id, field="refunds", amazon_order_id=amazon_order_id)
        order_cancelled = node.get("cancelledAt") is not None
        refunds = []
        for index, raw in enumerate(raw_refunds):
            at = f"refunds[{index}]"
            if not isinstance(raw, Mapping):
                raise unreadable(at, f"{raw!r} is not a refund")
            refund_id = raw.get("id")
            if not isinstance(refund_id, str) or not refund_id:
                raise unreadable(f"{at}.id", f"{refund_id!r} is not a refund id")
            created_at = _utc_stamp(raw.get("createdAt"))
            if created_at is None:
                raise unreadable(f"{at}.createdAt", f"{raw.get('createdAt')!r} is not a time")
            money = _dig(raw, "totalRefundedSet", "shopMoney")
            amount = _exact_amount(_dig(money, "amount"))
            if amount is None:
                raise unreadable(f"{at}.totalRefundedSet.shopMoney.amount", f"{_dig(money, 'amount')!r} is not an amount")
            currency = _dig(money, "currencyCode")
            if not isinstance(currency, str) or not currency:
                raise unreadable(f"{at}.totalRefundedSet.shopMoney.currencyCode", f"{currency!r} is not a currency code")
            if _dig(raw, "refundLineItems", "pageInfo", "hasNextPage"):
                raise ShopifyRejected(f"{label}: refund {refund_id} has more than {REFUND_LINES_READ} lines, the most the "
                                      "storefront refunds poll reads of one refund; it stops at this order rather than "
                                      "leave a line out. Tell Amazon of this refund by hand, and raise REFUND_LINES_READ",
                                      code="REFUNDS_TRUNCATED", order_id=order_id, field=f"{at}.refundLineItems",
                                      amazon_order_id=amazon_order_id)
            raw_lines = _dig(raw, "refundLineItems", "nodes")
            if not isinstance(raw_lines, list):
                raise unreadable(f"{at}.refundLineItems.nodes", f"{raw_lines!r} is not a list of lines")
            lines = []
            for line_index, line in enumerate(raw_lines):
                where = f"{at}.refundLineItems.nodes[{line_index}]"
                quantity = _dig(line, "quantity")
                if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0:
                    raise unreadable(f"{where}.quantity", f"{quantity!r} is not a number of units")
                sku = _dig(line, "lineItem", "sku")
                restock_type = _dig(line, "restockType")
                lines.append(StorefrontRefundLine(sku if isinstance(sku, str) else None, quantity,
                                                  restock_type if isinstance(restock_type, str) else ""))
            note = raw.get("note") if isinstance(raw.get("note"), str) else ""
            refunds.append(StorefrontRefund(
                id=refund_id, order_id=order_id, order_name=str(node.get("name") or ""), amazon_order_id=amazon_order_id,
                created_at=created_at, updated_at=updated_at, amount=amount, currency=currency, note=note,
                lines=tuple(lines), by_ordersync=MARKER_PREFIX in note, order_cancelled=order_cancelled))
        # In one second, by the refund's number: Shopify numbers refunds as it makes them.
        refunds.sort(key=lambda refund: (refund.created_at, _gid_number(refund.id)))
        return refunds

    def get_order(self, order: StorefrontOrder | str) -> StorefrontOrder:
        order_id, amazon_id = (order.id, order.amazon_order_id) if isinstance(order, StorefrontOrder) else (order, None)
        data = self.transport.execute(self.ops.get_order, {"id": order_id}, operation_name="GetOrder")
        node = data.get("order")
        if node is None:
            raise OrderNotFound(f"Shopify order {order_id} does not exist on {self.config.shop}", code="ORDER_NOT_FOUND")
        return order_from_graphql(node, amazon_id or self.config.match.amazon_order_id_of(node))

    # -- hold / release ---------------------------------------------------------------------------
    def hold_order(self, order: StorefrontOrder | str, *, idempotency_key: str, reason: HoldReason = "OTHER",
                   notes: str | None = None, notify_merchant: bool = False) -> ActionResult:
        """fulfillmentOrderHold on every open fulfilment order; the hold's handle is the key's marker."""
        handle = marker_for(idempotency_key)
        current = self.get_order(order)
        label = _label(current)
        if current.cancelled:
            raise ShopifyRejected(f"cannot hold {label}: it is cancelled", code="ALREADY_CANCELLED", order_id=current.id)
        open_fos = [fo for fo in current.fulfillment_orders if fo.status in HOLDABLE]
        if not open_fos:
            code = "ALREADY_FULFILLED" if current.units_shipped else "NOTHING_TO_HOLD"
            raise ShopifyRejected(f"cannot hold {label}: no fulfilment order is open "
                                  f"({', '.join(fo.status for fo in current.fulfillment_orders) or 'none'})", code=code, order_id=current.id)
        held = []
        for fo in open_fos:
            if any(h.handle == handle for h in fo.holds):
                continue
            hold_input: dict[str, Any] = {"reason": reason, "handle": handle, "notifyMerchant": notify_merchant}
            if notes:
                hold_input["reasonNotes"] = notes
            if current.amazon_order_id:
                hold_input["externalId"] = current.amazon_order_id
            data = self.transport.execute(self.ops.hold_fulfillment_order, {"id": fo.id, "fulfillmentHold": hold_input},
                                          operation_name="HoldFulfillmentOrder")
            payload = data.get("fulfillmentOrderHold") or {}
            _raise_user_errors(payload.get("userErrors"), "fulfillmentOrderHold", current, fo.id)
            held.append(fo.id)
        return ActionResult("hold_order", current.id, bool(held), {"held": held, "handle": handle})

    def release_hold(self, order: StorefrontOrder | str, *, idempotency_key: str,
                     placed_by: Iterable[str] | None = None) -> ActionResult:
        """Release the holds ordersync placed (any `ordersync:` handle), or with `placed_by` only those placed
        by hold_order calls with these idempotency keys; holds placed by people or other apps stay. The key
        is accepted for symmetry: releasing twice finds nothing the second time."""
        marker_for(idempotency_key)
        wanted = None if placed_by is None else {marker_for(key) for key in placed_by}
        current = self.get_order(order)
        released = []
        for fo in current.fulfillment_orders:
            ours = [h.id for h in fo.holds if (h.handle or "").startswith(MARKER_PREFIX)
                    and (wanted is None or h.handle in wanted)]
            if not ours:
                continue
            data = self.transport.execute(self.ops.release_fulfillment_order_hold, {"id": fo.id, "holdIds": ours},
                                          operation_name="ReleaseFulfillmentOrderHold")
            payload = data.get("fulfillmentOrderReleaseHold") or {}
            _raise_user_errors(payload.get("userErrors"), "fulfillmentOrderReleaseHold", current, fo.id)
            released.extend(ours)
        return ActionResult("release_hold", current.id, bool(released), {"released": released})

    # -- note / tags ------------------------------------------------------------------------------
    def add_note(self, order: StorefrontOrder | str, text: str, *, idempotency_key: str) -> ActionResult:
        """Append a line to the order note (orderUpdate replaces the whole note, so read-modify-write)."""
        marker = marker_for(idempotency_key)
        if not text or not text.strip():
            raise InvalidInput("add_note needs text", code="NOTE_EMPTY")
        current = self.get_order(order)
        if marker in (current.note or ""):
            return ActionResult("add_note", current.id, False, {"reason": "note already added"})
        line = f"{text.strip()} [{marker}]"
        note = f"{current.note}\n{line}" if current.note else line
        data = self.transport.execute(self.ops.update_order_note, {"input": {"id": current.id, "note": note}},
                                      operation_name="UpdateOrderNote")
        _raise_user_errors((data.get("orderUpdate") or {}).get("userErrors"), "orderUpdate", current)
        return ActionResult("add_note", current.id, True, {"note": line})

    def add_tags(self, order: StorefrontOrder | str, tags: Iterable[str], *, idempotency_key: str) -> ActionResult:
        marker_for(idempotency_key)
        wanted = [t.strip() for t in tags if t and t.strip()]
        if not wanted or any("," in t for t in wanted):
            raise InvalidInput(f"add_tags needs tags without commas, not {wanted!r}", code="TAG_INVALID")
        current = self.get_order(order)
        have = {t.lower() for t in current.tags}
        missing = [t for t in dict.fromkeys(wanted) if t.lower() not in have]
        if not missing:
            return ActionResult("add_tags", current.id, False, {"reason": "tags already present"})
        data = self.transport.execute(self.ops.add_tags, {"id": current.id, "tags": missing}, operation_name="AddTags")
        _raise_user_errors((data.get("tagsAdd") or {}).get("userErrors"), "tagsAdd", current)
        return ActionResult("add_tags", current.id, True, {"added": missing})

    # -- cancel -----------------------------------------------------------------------------------
    def cancel_order(self, order: StorefrontOrder | str, *, idempotency_key: str, reason: CancelReason = "CUSTOMER",
                     restock: bool = True, refund: bool = False, notify_customer: bool = False,
                     staff_note: str | None = None) -> ActionResult:
        """orderCancel for the whole order; waits for the job and confirms cancelledAt.

        refund=False suits Amazon-paid orders imported with a manual gateway: the money moved on
        Amazon. The staff note carries the key's marker, which is how a replay recognises its own
        cancellation (changed=False) and tells it from someone else's (ALREADY_CANCELLED)."""
        marker = marker_for(idempotency_key)
        current = self.get_order(order)
        label = _label(current)
        if current.cancelled:
            if marker in (current.cancel_staff_note or ""):
                return ActionResult("cancel_order", current.id, False, {"reason": "already cancelled by this decision",
                                                                        "cancelledAt": current.cancelled_at})
            raise ShopifyRejected(f"cannot cancel {label}: it was already cancelled at {current.cancelled_at} "
                                  f"(reason {current.cancel_reason})", code="ALREADY_CANCELLED", order_id=current.id)
        if current.units_shipped:
            raise ShopifyRejected(f"cannot cancel {label}: {current.units_shipped} of {current.units_ordered} units are "
                                  f"already fulfilled ({current.fulfillment_status})", code="ALREADY_FULFILLED", order_id=current.id)
        note = f"{(staff_note or '').strip()} [{marker}]".strip()
        if len(note) > 255:
            note = (staff_note or "").strip()[: 255 - len(marker) - 4] + f"… [{marker}]"
        variables: dict[str, Any] = {"orderId": current.id, "reason": reason, "restock": restock,
                                     "notifyCustomer": notify_customer, "staffNote": note}
        if self.ops.version >= "2026-01":
            variables["refundMethod"] = {"originalPaymentMethodsRefund": True} if refund else None
        else:
            variables["refund"] = refund
        data = self.transport.execute(self.ops.cancel_order, variables, operation_name="CancelOrder")
        payload = data.get("orderCancel") or {}
        errors = payload.get("orderCancelUserErrors") or []
        if errors:
            # An earlier run's job may still be running: then Shopify refuses, and the order turns
            # up cancelled with our marker shortly; anything else is a real refusal.
            confirmed = self._wait_for_cancel(current.id, marker, wait=any(e.get("code") == "INVALID" for e in errors))
            if confirmed is not None:
                return ActionResult("cancel_order", current.id, False, {"reason": "already cancelled by this decision",
                                                                        "cancelledAt": confirmed.cancelled_at})
            first = errors[0]
            code = "ORDER_NOT_FOUND" if first.get("code") == "NOT_FOUND" else "CANCEL_REFUSED"
            raise ShopifyRejected(f"Shopify refused to cancel {label}: {_describe(first)}", code=code, order_id=current.id,
                                  field=".".join(first.get("field") or []) or None)
        job = payload.get("job") or {}
        if not self._poll_job(job.get("id"), job.get("done")):
            raise TransientError(f"the cancellation of {label} was accepted but its job {job.get('id')} had not finished after "
                                 f"{self.config.cancel_timeout}s; retrying will confirm it", code="CANCEL_PENDING")
        final = self.get_order(current.id)
        if not final.cancelled:
            raise TransientError(f"the cancel job for {label} finished but the order shows no cancelledAt yet", code="CANCEL_PENDING")
        return ActionResult("cancel_order", current.id, True, {"job": job.get("id"), "cancelledAt": final.cancelled_at,
                                                               "restock": restock, "refund": refund})

    def _poll_job(self, job_id: str | None, done: bool | None) -> bool:
        if done:
            return True
        if not job_id:
            return False
        deadline = time.monotonic() + self.config.cancel_timeout
        while time.monotonic() < deadline:
            self._sleep(self.config.cancel_poll_interval)
            data = self.transport.execute(self.ops.job_status, {"id": job_id}, operation_name="JobStatus")
            if (data.get("job") or {}).get("done"):
                return True
        return False

    def _wait_for_cancel(self, order_id: str, marker: str, *, wait: bool) -> StorefrontOrder | None:
        deadline = time.monotonic() + (self.config.cancel_timeout if wait else 0)
        while True:
            current = self.get_order(order_id)
            if current.cancelled:
                return current if marker in (current.cancel_staff_note or "") else None
            if time.monotonic() >= deadline:
                return None
            self._sleep(self.config.cancel_poll_interval)

    def cancel_lines(self, order: StorefrontOrder | str, lines: Sequence[LineSelection], *, idempotency_key: str,
                     note: str | None = None, notify_customer: bool = False) -> ActionResult:
        """Partial cancellation: refundCreate with restockType CANCEL for unfulfilled units and no
        transactions, so no money moves (right for Amazon-settled orders; refund separately if not)."""
        marker = marker_for(idempotency_key)
        current = self.get_order(order)
        label = _label(current)
        if _refund_done(current, marker):
            return ActionResult("cancel_lines", current.id, False, {"reason": "already cancelled by this decision"})
        if current.cancelled:
            raise ShopifyRejected(f"cannot cancel lines of {label}: the order is cancelled", code="ALREADY_CANCELLED", order_id=current.id)
        if not lines:
            raise InvalidInput(f"cancel_lines on {label} needs at least one line", code="QUANTITY_INVALID")
        items = []
        for index, selection in enumerate(lines):
            line = _resolve_line(current, selection, index)
            if selection.quantity > line.unfulfilled_quantity:
                code = "ALREADY_FULFILLED" if line.fulfilled_quantity else "REFUND_EXCEEDS_REFUNDABLE"
                raise ShopifyRejected(f"cannot cancel {selection.quantity} × {line.sku or line.id} on {label}: only "
                                      f"{line.unfulfilled_quantity} unfulfilled ({line.fulfilled_quantity} fulfilled)",
                                      code=code, order_id=current.id, field=f"lines[{index}].quantity")
            item: dict[str, Any] = {"lineItemId": line.id, "quantity": selection.quantity, "restockType": "CANCEL"}
            location = _location_of_unfulfilled(current, line.id)
            if location:
                item["locationId"] = location
            items.append(item)
        refund_input = {"orderId": current.id, "note": _tagged(note or "Partial cancellation", marker),
                        "notify": notify_customer, "refundLineItems": items}
        payload = self._create_refund(refund_input, idempotency_key, current)
        return ActionResult("cancel_lines", current.id, True, {"refund": (payload.get("refund") or {}).get("id"),
                                                               "lines": [{"lineItemId": i["lineItemId"], "quantity": i["quantity"]} for i in items]})

    # -- refund -----------------------------------------------------------------------------------
    def refund(self, order: StorefrontOrder | str, *, idempotency_key: str, lines: Sequence[LineSelection] = (),
               amount: Decimal | str | None = None, restock_type: RestockType = "NO_RESTOCK", note: str | None = None,
               notify_customer: bool = False) -> ActionResult:
        """refundCreate for lines and/or an amount. With lines and no amount, the amount is Shopify's
        suggestedRefund for those lines. A refund over what is refundable is refused before asking."""
        marker = marker_for(idempotency_key)
        current = self.get_order(order)
        label = _label(current)
        if _refund_done(current, marker):
            return ActionResult("refund", current.id, False, {"reason": "already refunded by this decision"})
        if amount is not None:
            try:
                amount = Decimal(str(amount))
            except InvalidOperation:
                raise InvalidInput(f"refund on {label}: amount {amount!r} is not a number", code="AMOUNT_INVALID") from None
            if not amount.is_finite():  # NaN would make every comparison below raise
                raise InvalidInput(f"refund on {label}: amount {amount} is not a finite number", code="AMOUNT_INVALID")
            if amount < 0:
                raise InvalidInput(f"refund on {label}: amount {amount} is negative", code="AMOUNT_INVALID")
        items = []
        for index, selection in enumerate(lines):
            line = _resolve_line(current, selection, index)
            if selection.quantity > line.refundable_quantity:
                raise ShopifyRejected(f"cannot refund {selection.quantity} × {line.sku or line.id} on {label}: only "
                                      f"{line.refundable_quantity} refundable", code="REFUND_EXCEEDS_REFUNDABLE",
                                      order_id=current.id, field=f"lines[{index}].quantity")
            item: dict[str, Any] = {"lineItemId": line.id, "quantity": selection.quantity, "restockType": restock_type}
            location = _location_of_unfulfilled(current, line.id) if restock_type == "CANCEL" else _location_of_line(current, line.id)
            if location and restock_type != "NO_RESTOCK":
                item["locationId"] = location
            items.append(item)
        sale = next((t for t in current.transactions if t.kind in ("SALE", "CAPTURE") and t.status == "SUCCESS"), None)
        parent_id, gateway = (sale.id, sale.gateway) if sale else (None, None)
        if amount is None and items:
            suggested = self.transport.execute(self.ops.suggest_refund, {"id": current.id, "refundLineItems": [
                {"lineItemId": i["lineItemId"], "quantity": i["quantity"]} for i in items]}, operation_name="SuggestRefund")
            suggestion = ((suggested.get("order") or {}).get("suggestedRefund") or {})
            amount = Decimal(str(((suggestion.get("amountSet") or {}).get("shopMoney") or {}).get("amount") or "0"))
            for txn in suggestion.get("suggestedTransactions") or []:
                parent_id = (txn.get("parentTransaction") or {}).get("id") or parent_id
                gateway = txn.get("gateway") or gateway
                break
        amount = amount or Decimal("0")
        if amount == 0 and not items:
            raise InvalidInput(f"refund on {label} needs lines or an amount above zero", code="AMOUNT_INVALID")
        if amount > current.refundable_amount:
            raise ShopifyRejected(f"cannot refund {amount} {current.currency} on {label}: only {current.refundable_amount} is refundable "
                                  f"(paid {current.paid_total}, refunded {current.refunded_total})",
                                  code="REFUND_EXCEEDS_REFUNDABLE", order_id=current.id, field="amount")
        refund_input: dict[str, Any] = {"orderId": current.id, "note": _tagged(note or "Refund", marker), "notify": notify_customer}
        if items:
            refund_input["refundLineItems"] = items
        if amount > 0:
            if parent_id is None:
                raise ShopifyRejected(f"cannot refund money on {label}: it has no successful sale to refund against",
                                      code="NO_PAYMENT_TO_REFUND", order_id=current.id, field="amount")
            refund_input["transactions"] = [{"orderId": current.id, "parentId": parent_id, "gateway": gateway,
                                             "kind": "REFUND", "amount": str(amount)}]
        payload = self._create_refund(refund_input, idempotency_key, current)
        return ActionResult("refund", current.id, True, {"refund": (payload.get("refund") or {}).get("id"), "amount": str(amount),
                                                         "lines": [{"lineItemId": i["lineItemId"], "quantity": i["quantity"]} for i in items]})

    def _create_refund(self, refund_input: dict[str, Any], idempotency_key: str, current: StorefrontOrder) -> dict[str, Any]:
        variables: dict[str, Any] = {"input": refund_input}
        if self.ops.uses_idempotent_directive:
            variables["idempotencyKey"] = idempotency_key
        data = self.transport.execute(self.ops.create_refund, variables, operation_name="CreateRefund")
        payload = data.get("refundCreate") or {}
        _raise_user_errors(payload.get("userErrors"), "refundCreate", current, default_code="USER_ERROR")
        return payload

    # -- kits -------------------------------------------------------------------------------------
    def kit_components(self, sku: str) -> tuple[KitComponent, ...]:
        """The components of the fixed bundle (kit) whose variant has this SKU, each with its units per
        bundle; () when that variant is not a bundle or no variant has the SKU (the search's hit must
        carry exactly this SKU). A component without a SKU is a ShopifyRejected naming the bundle."""
        data = self.transport.execute(self.ops.kit_components, {"search": _sku_search(sku)}, operation_name="KitComponents")
        variants = [n for n in ((data.get("productVariants") or {}).get("nodes") or []) if n.get("sku") == sku]
        if not variants:
            return ()
        if len(variants) > 1:
            # Which of them was returned decides whether the RMA lists the bundle or its components.
            raise ShopifyRejected(f"SKU {sku} belongs to several product variants on {self.config.shop} "
                                  f"({', '.join(str(v.get('id')) for v in variants)}); give each its own SKU in Shopify, "
                                  "then retry", code="AMBIGUOUS_MATCH", field="sku")
        variant = variants[0]
        name = variant.get("displayName")
        bundle = f"Shopify bundle {sku} ({', '.join(filter(None, (name if name != sku else None, variant.get('id'))))}) on {self.config.shop}"
        connection = variant.get("productVariantComponents") or {}
        if (connection.get("pageInfo") or {}).get("hasNextPage"):
            raise ShopifyRejected(f"{bundle} has more components than the {len(connection.get('nodes') or [])} ordersync reads "
                                  "(Shopify allows 30); a returned bundle would be listed incompletely", code="KIT_TOO_LARGE", field="sku")
        components = []
        for node in connection.get("nodes") or []:
            part = node.get("productVariant") or {}
            if not (part.get("sku") or "").strip():
                raise ShopifyRejected(
                    f"{bundle} has a component without a SKU: {part.get('displayName') or part.get('id')}. Give that variant a "
                    "SKU in Shopify (Products, the component's variant, Inventory, SKU), then retry: a returned bundle is "
                    "recorded as its components, by SKU", code="KIT_COMPONENT_WITHOUT_SKU", field="sku")
            components.append(KitComponent(part["sku"], int(node["quantity"])))
        return tuple(components)

    # -- inventory --------------------------------------------------------------------------------
    def inventory_levels(self, sku: str) -> tuple[str, dict[str, int]]:
        """(inventory item id, {location id: available}) for a SKU."""
        data = self.transport.execute(self.ops.find_inventory_item, {"search": _sku_search(sku)}, operation_name="FindInventoryItem")
        items = [n for n in ((data.get("inventoryItems") or {}).get("nodes") or []) if n.get("sku") == sku]
        if not items:
            raise ShopifyRejected(f"no inventory item with SKU {sku} on {self.config.shop}", code="SKU_NOT_FOUND", field="sku")
        if len(items) > 1:
            raise ShopifyRejected(f"SKU {sku} belongs to several inventory items on {self.config.shop}", code="AMBIGUOUS_MATCH", field="sku")
        levels = {}
        for level in (items[0].get("inventoryLevels") or {}).get("nodes") or []:
            available = next((q["quantity"] for q in level.get("quantities") or [] if q.get("name") == "available"), 0)
            levels[level["location"]["id"]] = int(available)
        return items[0]["id"], levels

    def adjust_inventory(self, sku: str, location_id: str, delta: int, *, reason: str, decision_id: str, idempotency_key: str,
                         expected_available: int | None = None) -> ActionResult:
        """inventoryAdjustQuantities on `available`, referencing the decision (ordersync://decision/<id>).

        Shopify 2025-01 keeps no readable record of past adjustments, so a replay is recognised only
        when the caller passes the level its decision saw (`expected_available`): if the level already
        equals expected + delta, nothing is done. In 2026-01 mode @idempotent(key:) also guards it."""
        marker_for(idempotency_key)
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise InvalidInput(f"adjust_inventory {sku}: delta must be a whole number, not {delta!r}", code="QUANTITY_INVALID")
        if delta == 0:
            return ActionResult("adjust_inventory", None, False, {"reason": "delta is zero"})
        item_id, levels = self.inventory_levels(sku)
        if expected_available is not None and location_id in levels:
            now = levels[location_id]
            if now == expected_available + delta:
                return ActionResult("adjust_inventory", None, False, {"reason": "already adjusted", "available": now})
            if now != expected_available:
                raise ShopifyRejected(f"SKU {sku} at {location_id}: available is {now}, neither the {expected_available} the decision "
                                      f"saw nor {expected_available + delta}; a person should look", code="INVENTORY_CHANGED", field="expected_available")
        after = self._adjust(sku, item_id, {location_id: delta}, reason, decision_id, idempotency_key)
        return ActionResult("adjust_inventory", None, True, {"sku": sku, "changes": after})

    def zero_out_inventory(self, sku: str, *, decision_id: str, idempotency_key: str, location_id: str | None = None,
                           reason: str = "correction") -> ActionResult:
        """Set `available` to 0 at one location, or at every location stocking the SKU ("all bins")."""
        marker_for(idempotency_key)
        item_id, levels = self.inventory_levels(sku)
        if location_id is not None and location_id not in levels:
            raise ShopifyRejected(f"SKU {sku} is not stocked at location {location_id} (stocked at: {', '.join(levels) or 'nowhere'})",
                                  code="ITEM_NOT_STOCKED_AT_LOCATION", field="location_id")
        targets = {loc: -available for loc, available in levels.items() if available != 0 and location_id in (None, loc)}
        if not targets:
            return ActionResult("zero_out_inventory", None, False, {"reason": "already zero", "sku": sku})
        after = self._adjust(sku, item_id, targets, reason, decision_id, idempotency_key)
        return ActionResult("zero_out_inventory", None, True, {"sku": sku, "changes": after})

    def _adjust(self, sku: str, item_id: str, deltas: Mapping[str, int], reason: str, decision_id: str, idempotency_key: str) -> list[dict[str, Any]]:
        if not decision_id:
            raise InvalidInput(f"inventory change for {sku} needs the decision id it carries out", code="DECISION_ID_MISSING")
        variables: dict[str, Any] = {"input": {
            "reason": reason, "name": "available", "referenceDocumentUri": f"ordersync://decision/{quote(decision_id, safe='')}",
            "changes": [{"inventoryItemId": item_id, "locationId": loc, "delta": d} for loc, d in deltas.items()],
        }}
        if self.ops.uses_idempotent_directive:
            variables["idempotencyKey"] = idempotency_key
        data = self.transport.execute(self.ops.adjust_inventory, variables, operation_name="AdjustInventory")
        payload = data.get("inventoryAdjustQuantities") or {}
        errors = payload.get("userErrors") or []
        if errors:
            first = errors[0]
            raise ShopifyRejected(f"Shopify refused to adjust SKU {sku}: {_describe(first)}", code=first.get("code") or "USER_ERROR",
                                  field=".".join(first.get("field") or []) or None)
        return [{"locationId": c["location"]["id"], "delta": c["delta"], "available": c["quantityAfterChange"]}
                for c in ((payload.get("inventoryAdjustmentGroup") or {}).get("changes") or [])]


# -- helpers ------------------------------------------------------------------------------------------
def _search_term(name: str, value: str) -> str:
    """One term of Shopify's search syntax, the value quoted so that spaces and quotes stay in it."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"{name}:'{escaped}'"


_SEARCH_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _utc_stamp(value: Any) -> str | None:
    """A Shopify DateTime (ISO 8601 with a zone) as YYYY-MM-DDTHH:MM:SSZ in UTC; None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None:
        return None
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _exact_amount(value: Any) -> Decimal | None:
    """Shopify's Decimal scalar (a string) as an exact, finite, non-negative Decimal; None if it is not one."""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def _dig(value: Any, *keys: str) -> Any:
    """value[k1][k2]..., None where a step is missing or not an object."""
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _order_label(shop: str, node: Mapping[str, Any], order_id: str | None, amazon_order_id: str) -> str:
    name = node.get("name")
    return f"Shopify order {name or order_id or '(no id)'} ({order_id or 'no id'}, Amazon {amazon_order_id}) on {shop}"


def _gid_number(gid: str) -> int:
    tail = gid.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _unreadable(shop: str, node: Mapping[str, Any], order_id: str | None, amazon_order_id: str, field: str, what: str) -> ShopifyRejected:
    return ShopifyRejected(f"{_order_label(shop, node, order_id, amazon_order_id)}: the storefront refunds poll cannot read "
                           f"{field}: {what}", code="MALFORMED_ANSWER", order_id=order_id, field=field,
                           amazon_order_id=amazon_order_id)


def _orders_per_request(document: str, variables: Mapping[str, Any], budget: int) -> int:
    """How many orders one request of `document` may ask for (`first`) with its requested cost within `budget`."""
    one = requested_cost(document, {**variables, "first": 1})
    each = requested_cost(document, {**variables, "first": 2}) - one
    return 250 if each <= 0 else max(1, (budget - one) // each + 1)


def _sku_search(sku: str) -> str:
    if not sku or not sku.strip():
        raise InvalidInput("a SKU is required", code="SKU_NOT_FOUND")
    return _search_term("sku", sku)


def _label(order: StorefrontOrder) -> str:
    amazon = f", Amazon {order.amazon_order_id}" if order.amazon_order_id else ""
    return f"Shopify order {order.name} ({order.id}{amazon})"


def _describe(error: Mapping[str, Any]) -> str:
    where = ".".join(error.get("field") or [])
    code = f" [{error['code']}]" if error.get("code") else ""
    return f"{'field ' + where + ': ' if where else ''}{error.get('message')}{code}"


def _raise_user_errors(errors: Any, mutation: str, order: StorefrontOrder, target: str | None = None,
                       default_code: str = "USER_ERROR") -> None:
    if not errors:
        return
    first = errors[0]
    on = f" ({target})" if target else ""
    raise ShopifyRejected(f"Shopify refused {mutation} on {_label(order)}{on}: " + "; ".join(_describe(e) for e in errors),
                          code=first.get("code") or default_code, order_id=order.id, field=".".join(first.get("field") or []) or None)


def _tagged(text: str, marker: str) -> str:
    return f"{text.strip()} [{marker}]"


def _refund_done(order: StorefrontOrder, marker: str) -> bool:
    return any(marker in (r.note or "") for r in order.refunds)


def _resolve_line(order: StorefrontOrder, selection: LineSelection, index: int):
    if not isinstance(selection.quantity, int) or isinstance(selection.quantity, bool) or selection.quantity <= 0:
        raise InvalidInput(f"{_label(order)}: lines[{index}].quantity must be a positive whole number, not {selection.quantity!r}",
                           code="QUANTITY_INVALID")
    if selection.sku and not selection.line_item_id and sum(1 for l in order.line_items if l.sku == selection.sku) > 1:
        raise ShopifyRejected(f"{_label(order)} has several lines with SKU {selection.sku}; name the line item id",
                              code="AMBIGUOUS_MATCH", order_id=order.id, field=f"lines[{index}].sku")
    line = order.line(sku=selection.sku, line_item_id=selection.line_item_id)
    if line is None:
        wanted = selection.line_item_id or selection.sku
        raise ShopifyRejected(f"{_label(order)} has no line {wanted} (lines: {', '.join(l.sku or l.id for l in order.line_items)})",
                              code="LINE_NOT_FOUND", order_id=order.id, field=f"lines[{index}]")
    return line


def _location_of_unfulfilled(order: StorefrontOrder, line_item_id: str) -> str | None:
    for fo in order.fulfillment_orders:
        if fo.status in HOLDABLE and any(l.line_item_id == line_item_id and l.remaining_quantity for l in fo.lines):
            return fo.location_id
    return None


def _location_of_line(order: StorefrontOrder, line_item_id: str) -> str | None:
    for fo in order.fulfillment_orders:
        if any(l.line_item_id == line_item_id for l in fo.lines):
            return fo.location_id
    return None
