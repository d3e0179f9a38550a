"""The Shopify stand-in's in-memory shop: orders, line items, fulfilment orders and their holds,
transactions, refunds, inventory levels at locations, and orderCancel jobs.

It holds Shopify's rules that the adapter depends on (what a refund with restockType CANCEL does to
the order and its fulfilment orders, that orderCancel is only accepted and finishes later, that a
refund cannot exceed what was received) and answers in the payload shapes of the Admin API. The
HTTP and GraphQL side lives in `shopify.py`; callers hold the server lock around every method.
"""
from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

GID_RE = re.compile(r"^gid://shopify/(\w+)/(\d+)$")
# One term of Shopify's search syntax: field:value, the value bare or quoted (with \ escapes inside).
SEARCH_TERM_RE = re.compile(r"""(\w+):('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)""")

# Shopify's documented inventory adjustment reasons (inventoryAdjustQuantities input.reason).
ADJUST_REASONS = {
    "correction", "cycle_count_available", "damaged", "movement_created", "movement_updated",
    "movement_received", "movement_canceled", "other", "promotion", "quality_control", "received",
    "reservation_created", "reservation_deleted", "reservation_updated", "restock", "safety_stock", "shrinkage",
}
HOLDABLE = {"OPEN", "IN_PROGRESS", "SCHEDULED", "ON_HOLD"}
# The values the orders search documents for financial_status: (displayFinancialStatus, lower case).
FINANCIAL_STATUSES = {"paid", "pending", "authorized", "partially_paid", "partially_refunded", "refunded", "voided", "expired"}
MAX_HOLDS_PER_FO = 10


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def parse_gid(value: Any, kind: str) -> int | None:
    match = GID_RE.match(str(value or ""))
    return int(match.group(2)) if match and match.group(1) == kind else None


def search_terms(search: str | None) -> list[tuple[str, str]]:
    """(field, value) of each term of a Shopify search string, quoted values unquoted and unescaped."""
    terms = []
    for key, raw in SEARCH_TERM_RE.findall(search or ""):
        if len(raw) >= 2 and raw[0] in "'\"" and raw[-1] == raw[0]:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        terms.append((key, raw))
    return terms


def money(amount: Decimal, currency: str) -> dict[str, Any]:
    return {"shopMoney": {"amount": f"{amount.quantize(Decimal('0.01'))}", "currencyCode": currency}}


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_error(field_path: list[Any] | None, message: str, code: str | None = None, typed: bool = True) -> dict[str, Any]:
    error: dict[str, Any] = {"field": [str(p) for p in field_path] if field_path else None, "message": message}
    if typed:
        error["code"] = code
    return error


@dataclass
class Location:
    id: int
    name: str
    fulfillment_service: str | None = None


@dataclass
class Line:
    id: int
    sku: str
    name: str
    quantity: int
    price: Decimal
    inventory_item_id: int | None
    removed: int = 0  # refunded or cancelled units: quantity - removed is what the order still holds


@dataclass
class FOLine:
    id: int
    line_id: int
    total: int
    remaining: int


@dataclass
class Hold:
    id: int
    reason: str
    notes: str | None
    handle: str | None
    external_id: str | None


@dataclass
class FulfillmentOrder:
    id: int
    location_id: int
    status: str
    request_status: str
    lines: list[FOLine]
    holds: list[Hold] = field(default_factory=list)


@dataclass
class Txn:
    id: int
    kind: str
    status: str
    gateway: str
    amount: Decimal
    parent_id: int | None = None


@dataclass
class RefundLine:
    line_id: int
    quantity: int
    restock_type: str
    location_id: int | None
    restocked: bool


@dataclass
class Refund:
    id: int
    note: str | None
    created_at: float
    lines: list[RefundLine]
    txns: list[Txn]


@dataclass
class Order:
    id: int
    name: str
    source_name: str
    source_identifier: str | None
    tags: list[str]
    note: str | None
    created_at: float
    currency: str
    lines: list[Line]
    fos: list[FulfillmentOrder]
    txns: list[Txn]
    refunds: list[Refund] = field(default_factory=list)
    cancelled_at: float | None = None
    cancel_reason: str | None = None
    staff_note: str | None = None
    closed: bool = False
    cancel_job: int | None = None


@dataclass
class Job:
    id: int
    order_id: int
    due_at: float
    params: dict[str, Any]
    done: bool = False


class ScenarioError(ValueError):
    """A scenario file that does not describe a shop; the message names the entry."""


class ShopStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.currency = "USD"
        self.locations: dict[int, Location] = {}
        self.items: dict[int, str | None] = {}  # inventory item id -> sku; the variant has the same number
        self.item_names: dict[int, str] = {}  # the variant's displayName
        # A fixed bundle's variant -> its components: (component id, component's item id, quantity).
        self.components: dict[int, list[tuple[int, int, int]]] = {}
        self.levels: dict[tuple[int, int], int] = {}  # (item, location) -> available
        self.orders: dict[int, Order] = {}
        self.jobs: dict[int, Job] = {}
        self.cancel_job_seconds = 0.2
        self._next = 100000
        # Called with (kind, details) for every change applied, so the server can journal it.
        self.on_change: Callable[..., None] = lambda **entry: None

    def new_id(self) -> int:
        self._next += 1
        return self._next

    # -- seeding --------------------------------------------------------------------------------
    def load(self, scenario: dict[str, Any]) -> None:
        shop = scenario.get("shop") or {}
        self.currency = str(shop.get("currency", "USD"))
        self.cancel_job_seconds = float(scenario.get("cancel_job_seconds", self.cancel_job_seconds))
        for index, entry in enumerate(scenario.get("locations") or []):
            try:
                location = Location(int(entry["id"]), str(entry["name"]), entry.get("fulfillment_service"))
            except (KeyError, TypeError, ValueError) as exc:
                raise ScenarioError(f"locations[{index}]: needs id (number) and name ({exc})") from None
            self.locations[location.id] = location
        if not self.locations:
            raise ScenarioError("a scenario needs at least one entry under locations")
        sku_items: dict[str, int] = {}
        inventory = scenario.get("inventory") or []
        for index, entry in enumerate(inventory):
            sku = str(entry.get("sku") or "")
            if not sku:
                raise ScenarioError(f"inventory[{index}]: needs a sku")
            item_id = int(entry.get("item_id") or self.new_id())
            self.items[item_id] = sku
            self.item_names[item_id] = str(entry.get("name", sku))
            sku_items[sku] = item_id
            for location_id, available in (entry.get("levels") or {}).items():
                if int(location_id) not in self.locations:
                    raise ScenarioError(f"inventory[{index}] ({sku}): unknown location {location_id}")
                self.levels[(item_id, int(location_id))] = int(available)
        for index, entry in enumerate(inventory):
            if entry.get("components"):
                self._load_components(f"inventory[{index}] ({entry['sku']})", sku_items[str(entry["sku"])], entry["components"], sku_items)
        for index, entry in enumerate(scenario.get("orders") or []):
            self._load_order(index, entry, sku_items)

    def _load_components(self, where: str, bundle: int, entries: Any, sku_items: dict[str, int]) -> None:
        """A fixed bundle: each component names a SKU listed under inventory, or only a name for a
        component variant that has no SKU (which Shopify allows, and a return of the bundle cannot use)."""
        parts = []
        for index, raw in enumerate(entries if isinstance(entries, list) else [entries]):
            at = f"{where}.components[{index}]"
            try:
                quantity = int(raw.get("quantity", 1))
            except (AttributeError, TypeError, ValueError):
                raise ScenarioError(f"{at}: needs sku (or name) and a quantity") from None
            if quantity < 1:
                raise ScenarioError(f"{at}: quantity must be at least 1, not {quantity}")
            if raw.get("sku"):
                item_id = sku_items.get(str(raw["sku"]))
                if item_id is None:
                    raise ScenarioError(f"{at}: unknown SKU {raw['sku']} (list it under inventory)")
            elif raw.get("name"):
                item_id = self.new_id()
                self.items[item_id], self.item_names[item_id] = None, str(raw["name"])
            else:
                raise ScenarioError(f"{at}: needs sku (or name, for a component variant without a SKU)")
            if item_id == bundle:
                raise ScenarioError(f"{at}: a bundle cannot be its own component")
            parts.append((self.new_id(), item_id, quantity))
        self.components[bundle] = parts

    def _load_order(self, index: int, entry: dict[str, Any], sku_items: dict[str, int]) -> None:
        where = f"orders[{index}]"
        try:
            order_id = int(entry["id"])
        except (KeyError, TypeError, ValueError):
            raise ScenarioError(f"{where}: needs a numeric id") from None
        default_location = int(entry.get("location", next(iter(self.locations))))
        lines: list[Line] = []
        by_location: dict[int, list[FOLine]] = {}
        for line_index, raw in enumerate(entry.get("lines") or []):
            try:
                sku = str(raw["sku"])
                quantity = int(raw["quantity"])
                price = Decimal(str(raw.get("price", "10.00")))
                fulfilled = int(raw.get("fulfilled", 0))
            except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
                raise ScenarioError(f"{where}.lines[{line_index}]: needs sku, quantity, price ({exc})") from None
            if not 0 <= fulfilled <= quantity:
                raise ScenarioError(f"{where}.lines[{line_index}]: fulfilled must be between 0 and quantity")
            location_id = int(raw.get("location", default_location))
            if location_id not in self.locations:
                raise ScenarioError(f"{where}.lines[{line_index}]: unknown location {location_id}")
            line = Line(self.new_id(), sku, str(raw.get("name", sku)), quantity, price, sku_items.get(sku))
            lines.append(line)
            by_location.setdefault(location_id, []).append(FOLine(self.new_id(), line.id, quantity, quantity - fulfilled))
        if not lines:
            raise ScenarioError(f"{where}: needs at least one line")
        fos = []
        for location_id, fo_lines in by_location.items():
            remaining = sum(l.remaining for l in fo_lines)
            total = sum(l.total for l in fo_lines)
            status = "CLOSED" if remaining == 0 else ("IN_PROGRESS" if remaining < total else "OPEN")
            is_service = self.locations[location_id].fulfillment_service is not None
            request_status = str(entry.get("request_status", "UNSUBMITTED")) if is_service else "UNSUBMITTED"
            if status == "CLOSED" and is_service and request_status == "UNSUBMITTED":
                request_status = "CLOSED"
            fo = FulfillmentOrder(self.new_id(), location_id, status, request_status, fo_lines)
            if entry.get("on_hold") and status in HOLDABLE:
                fo.holds.append(Hold(self.new_id(), "OTHER", str(entry.get("on_hold")), "merchant", None))
                fo.status = "ON_HOLD"
            fos.append(fo)
        total_price = sum((l.price * l.quantity for l in lines), Decimal("0"))
        txns = []
        if entry.get("paid", True):
            txns.append(Txn(self.new_id(), "SALE", "SUCCESS", str(entry.get("gateway", "manual")), total_price))
        order = Order(
            id=order_id,
            name=str(entry.get("name", f"#{order_id}")),
            source_name=str(entry.get("source_name", "amazon")),
            source_identifier=entry.get("source_identifier"),
            tags=[str(t) for t in entry.get("tags") or []],
            note=entry.get("note"),
            created_at=float(entry.get("created_at", self.clock())),
            currency=self.currency,
            lines=lines,
            fos=fos,
            txns=txns,
        )
        if entry.get("cancelled"):
            self._apply_cancel(order, {"reason": str(entry.get("cancel_reason", "CUSTOMER")), "restock": False, "refund": False})
        self.orders[order.id] = order

    # -- derived figures ------------------------------------------------------------------------
    def fulfilled(self, order: Order, line: Line) -> int:
        return sum(l.total - l.remaining for fo in order.fos if fo.status != "CANCELLED" for l in fo.lines if l.line_id == line.id)

    def unfulfilled(self, order: Order, line: Line) -> int:
        return sum(l.remaining for fo in order.fos if fo.status != "CANCELLED" for l in fo.lines if l.line_id == line.id)

    def received(self, order: Order) -> Decimal:
        return sum((t.amount for t in order.txns if t.kind in ("SALE", "CAPTURE") and t.status == "SUCCESS"), Decimal("0"))

    def refunded(self, order: Order) -> Decimal:
        return sum((t.amount for r in order.refunds for t in r.txns if t.status == "SUCCESS"), Decimal("0"))

    def financial_status(self, order: Order) -> str:
        received, refunded = self.received(order), self.refunded(order)
        if received == 0:
            return "VOIDED" if order.cancelled_at else "PENDING"
        if refunded == 0:
            return "PAID"
        return "REFUNDED" if refunded >= received else "PARTIALLY_REFUNDED"

    def fulfillment_status(self, order: Order) -> str:
        fulfilled = sum(self.fulfilled(order, l) for l in order.lines)
        remaining = sum(self.unfulfilled(order, l) for l in order.lines)
        if fulfilled == 0:
            return "ON_HOLD" if any(fo.status == "ON_HOLD" for fo in order.fos) else "UNFULFILLED"
        return "FULFILLED" if remaining == 0 else "PARTIALLY_FULFILLED"

    def updated_at(self, order: Order) -> float:
        """Order.updatedAt: the latest of the times the stand-in keeps (created, cancelled, refunded); it
        keeps none for notes, tags and holds, which the storefront poll does not look at."""
        return max([order.created_at, order.cancelled_at or 0.0, *(r.created_at for r in order.refunds)])

    def find_orders(self, search: str) -> list[Order]:
        """Shopify search syntax, the parts the adapter uses: source_identifier:, tag:, name:, status:,
        financial_status: (one of Shopify's documented values: paid, pending, authorized, partially_paid,
        partially_refunded, refunded, voided, expired), updated_at: with a comparison (>=, >, <=, <, or none
        for equal) to a time. Terms are ANDed; OR, NOT and parentheses are not understood.
        Like Shopify, a field it does not know filters nothing, so callers must check what they got."""
        found = list(self.orders.values())
        for key, value in search_terms(search):
            if key == "updated_at":
                found = self._updated(found, value)
                continue
            if key == "source_identifier":
                found = [o for o in found if (o.source_identifier or "") == value]
            elif key == "tag":
                found = [o for o in found if value.lower() in (t.lower() for t in o.tags)]
            elif key == "name":
                found = [o for o in found if o.name.lstrip("#") == value.lstrip("#")]
            elif key == "financial_status":
                if value.lower() in FINANCIAL_STATUSES:
                    found = [o for o in found if self.financial_status(o) == value.upper()]
            elif key == "status":
                if value == "cancelled":
                    found = [o for o in found if o.cancelled_at]
                elif value == "open":
                    found = [o for o in found if not o.closed]
                elif value == "closed":
                    found = [o for o in found if o.closed]
        return found

    def _updated(self, orders: list[Order], value: str) -> list[Order]:
        comparison = re.match(r"(>=|<=|>|<)?'?(.*?)'?$", value)
        operator, text = comparison.group(1) or "=", comparison.group(2)  # type: ignore[union-attr]
        try:
            at = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return orders  # as Shopify: a term it cannot read filters nothing
        bound = (at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)).timestamp()
        test = {">=": float.__ge__, ">": float.__gt__, "<=": float.__le__, "<": float.__lt__, "=": float.__eq__}[operator]
        # Compared in whole seconds, as updatedAt is shown.
        return [o for o in orders if test(float(int(self.updated_at(o))), bound)]

    # -- jobs -----------------------------------------------------------------------------------
    def advance(self) -> None:
        """Finish every orderCancel job whose time has come (Shopify runs them in the background)."""
        now = self.clock()
        for job in self.jobs.values():
            if not job.done and job.due_at <= now:
                order = self.orders[job.order_id]
                self._apply_cancel(order, job.params)
                order.cancel_job = None
                job.done = True
                self.on_change(kind="job", job=gid("Job", job.id), field="orderCancel", order=gid("Order", order.id),
                               summary={"cancelledAt": iso(order.cancelled_at or now), "reason": order.cancel_reason})

    def _apply_cancel(self, order: Order, params: dict[str, Any]) -> None:
        for fo in order.fos:
            if fo.status in ("CLOSED", "CANCELLED"):
                continue
            for fo_line in fo.lines:
                line = next(l for l in order.lines if l.id == fo_line.line_id)
                units = fo_line.remaining
                line.removed += units
                if params.get("restock") and units and line.inventory_item_id is not None:
                    key = (line.inventory_item_id, fo.location_id)
                    if key in self.levels:
                        self.levels[key] += units
                fo_line.total -= units
                fo_line.remaining = 0
            fo.status = "CANCELLED" if all(l.total == 0 for l in fo.lines) else "CLOSED"
            fo.holds.clear()
            if fo.request_status in ("SUBMITTED", "ACCEPTED"):
                fo.request_status = "CANCELLATION_ACCEPTED"
        outstanding = self.received(order) - self.refunded(order)
        if params.get("refund") and outstanding > 0:
            sale = next((t for t in order.txns if t.kind in ("SALE", "CAPTURE")), None)
            order.refunds.append(Refund(self.new_id(), "Order canceled", self.clock(), [], [
                Txn(self.new_id(), "REFUND", "SUCCESS", sale.gateway if sale else "manual", outstanding, sale.id if sale else None)
            ]))
        order.cancelled_at = self.clock()
        order.cancel_reason = params.get("reason")
        order.staff_note = params.get("staffNote")
        order.closed = True

    # -- mutations (payload dicts; `view` turns store objects into GraphQL values) ----------------
    def order_cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        order_id = parse_gid(args.get("orderId"), "Order")
        order = self.orders.get(order_id) if order_id else None
        errors = []
        if order is None:
            errors.append(user_error(["orderId"], "Order does not exist", "NOT_FOUND"))
        elif order.cancelled_at or order.cancel_job:
            errors.append(user_error(["orderId"], "Cannot cancel an order that has already been canceled", "INVALID"))
        elif any(self.fulfilled(order, l) for l in order.lines):
            errors.append(user_error(["orderId"], "Cannot cancel an order with fulfilled items", "INVALID"))
        elif args.get("staffNote") and len(args["staffNote"]) > 255:
            errors.append(user_error(["staffNote"], "Staff note is too long (maximum is 255 characters)", "INVALID"))
        if errors:
            return {"job": None, "orderCancelUserErrors": errors, "userErrors": [dict(e, code=None) for e in errors]}
        assert order is not None
        refund_method = args.get("refundMethod") or {}
        refund = bool(args.get("refund")) or bool(refund_method.get("originalPaymentMethodsRefund"))
        job = Job(self.new_id(), order.id, self.clock() + self.cancel_job_seconds, {
            "reason": args["reason"], "restock": bool(args["restock"]), "refund": refund,
            "staffNote": args.get("staffNote"), "notifyCustomer": bool(args.get("notifyCustomer")),
        })
        self.jobs[job.id] = job
        order.cancel_job = job.id
        self.on_change(kind="mutation", field="orderCancel", order=gid("Order", order.id), job=gid("Job", job.id),
                       summary={k: v for k, v in job.params.items() if k != "staffNote"})
        return {"job": {"id": gid("Job", job.id), "done": False}, "orderCancelUserErrors": [], "userErrors": []}

    def refund_create(self, args: dict[str, Any], view: Callable[[Order], dict]) -> dict[str, Any]:
        data = args.get("input") or {}
        order_id = parse_gid(data.get("orderId"), "Order")
        order = self.orders.get(order_id) if order_id else None
        if order is None:
            return {"refund": None, "order": None, "userErrors": [user_error(["orderId"], "Order does not exist", typed=False)]}
        errors = []
        planned: list[tuple[Line, int, str, int | None]] = []
        for index, raw in enumerate(data.get("refundLineItems") or []):
            at = ["refundLineItems", str(index)]
            line_id = parse_gid(raw.get("lineItemId"), "LineItem")
            line = next((l for l in order.lines if l.id == line_id), None)
            quantity = int(raw.get("quantity") or 0)
            restock_type = raw.get("restockType") or "NO_RESTOCK"
            location_id = parse_gid(raw.get("locationId"), "Location") if raw.get("locationId") else None
            if line is None:
                errors.append(user_error(at + ["lineItemId"], "Line item does not exist on this order", typed=False))
                continue
            if quantity <= 0:
                errors.append(user_error(at + ["quantity"], "Quantity must be greater than 0", typed=False))
            elif quantity > line.quantity - line.removed:
                errors.append(user_error(at + ["quantity"], f"Quantity cannot refund more items than were purchased ({line.quantity - line.removed} refundable)", typed=False))
            elif restock_type == "CANCEL" and quantity > self.unfulfilled(order, line):
                errors.append(user_error(at + ["restockType"], "Cannot cancel items that have been fulfilled", typed=False))
            if restock_type == "LEGACY_RESTOCK":
                errors.append(user_error(at + ["restockType"], "LEGACY_RESTOCK is not allowed for new refunds", typed=False))
            if raw.get("locationId") and location_id not in self.locations:
                errors.append(user_error(at + ["locationId"], "Location does not exist", typed=False))
            planned.append((line, quantity, restock_type, location_id))
        txns: list[Txn] = []
        outstanding = self.received(order) - self.refunded(order)
        for index, raw in enumerate(data.get("transactions") or []):
            at = ["transactions", str(index)]
            try:
                amount = Decimal(str(raw.get("amount")))
            except InvalidOperation:
                errors.append(user_error(at + ["amount"], "Amount is not a number", typed=False))
                continue
            if raw.get("kind") != "REFUND":
                errors.append(user_error(at + ["kind"], "Transaction kind must be REFUND", typed=False))
            parent_id = parse_gid(raw.get("parentId"), "OrderTransaction") if raw.get("parentId") else None
            if raw.get("parentId") and not any(t.id == parent_id for t in order.txns):
                errors.append(user_error(at + ["parentId"], "Parent transaction does not exist on this order", typed=False))
            if amount <= 0:
                errors.append(user_error(at + ["amount"], "Amount must be greater than 0", typed=False))
            elif amount > outstanding:
                errors.append(user_error(at + ["amount"], f"Amount {amount} exceeds the refundable amount {outstanding}", typed=False))
            outstanding -= max(amount, Decimal("0"))
            txns.append(Txn(self.new_id(), "REFUND", "SUCCESS", str(raw.get("gateway") or "manual"), amount, parent_id))
        if not planned and not txns and not data.get("shipping"):
            errors.append(user_error(None, "A refund needs line items, transactions or shipping", typed=False))
        if errors:
            return {"refund": None, "order": view(order), "userErrors": errors}
        refund_lines = []
        for line, quantity, restock_type, location_id in planned:
            line.removed += quantity
            fo_location = None
            if restock_type == "CANCEL":
                fo_location = self._remove_unfulfilled(order, line, quantity, location_id)
            elif restock_type == "NO_RESTOCK":
                # refunded units that were never shipped must not be shipped afterwards either
                self._remove_unfulfilled(order, line, min(quantity, self.unfulfilled(order, line)), location_id)
            where = location_id or fo_location
            restocked = False
            if restock_type in ("CANCEL", "RETURN") and where and line.inventory_item_id is not None:
                key = (line.inventory_item_id, where)
                if key in self.levels:
                    self.levels[key] += quantity
                    restocked = True
            refund_lines.append(RefundLine(line.id, quantity, restock_type, where, restocked))
        refund = Refund(self.new_id(), data.get("note"), self.clock(), refund_lines, txns)
        order.refunds.append(refund)
        self.on_change(kind="mutation", field="refundCreate", order=gid("Order", order.id), refund=gid("Refund", refund.id),
                       summary={"lines": [{"lineItem": gid("LineItem", r.line_id), "quantity": r.quantity, "restockType": r.restock_type}
                                          for r in refund_lines],
                                "amount": str(sum((t.amount for t in txns), Decimal("0"))), "note": refund.note})
        return {"refund": self.refund_view(order, refund), "order": view(order), "userErrors": []}

    def _remove_unfulfilled(self, order: Order, line: Line, quantity: int, prefer_location: int | None) -> int | None:
        fos = sorted((fo for fo in order.fos if fo.status in HOLDABLE), key=lambda fo: fo.location_id != prefer_location)
        location = None
        for fo in fos:
            for fo_line in fo.lines:
                if fo_line.line_id == line.id and fo_line.remaining and quantity:
                    take = min(quantity, fo_line.remaining)
                    fo_line.remaining -= take
                    fo_line.total -= take
                    quantity -= take
                    location = location or fo.location_id
            if all(l.remaining == 0 for l in fo.lines):
                fo.status = "CLOSED"
                fo.holds.clear()
        return location

    def refund_view(self, order: Order, refund: Refund) -> dict[str, Any]:
        lines = {l.id: l for l in order.lines}
        return {
            "__typename": "Refund",
            "id": gid("Refund", refund.id),
            "note": refund.note,
            "createdAt": iso(refund.created_at),
            "totalRefundedSet": money(sum((t.amount for t in refund.txns), Decimal("0")), order.currency),
            "refundLineItems": lambda info, first=None, **_: {"nodes": [
                {"lineItem": {"id": gid("LineItem", r.line_id), "sku": lines[r.line_id].sku}, "quantity": r.quantity,
                 "restockType": r.restock_type, "restocked": r.restocked,
                 "location": {"id": gid("Location", r.location_id)} if r.location_id else None}
                for r in refund.lines][: first or None],
                "pageInfo": {"hasNextPage": bool(first) and len(refund.lines) > first}},
        }

    def suggested_refund(self, order: Order, args: dict[str, Any]) -> dict[str, Any]:
        amount = Decimal("0")
        for raw in args.get("refundLineItems") or []:
            line = next((l for l in order.lines if l.id == parse_gid(raw.get("lineItemId"), "LineItem")), None)
            if line is not None:
                amount += line.price * min(int(raw.get("quantity") or 0), line.quantity - line.removed)
        amount = min(amount, self.received(order) - self.refunded(order))
        sale = next((t for t in order.txns if t.kind in ("SALE", "CAPTURE") and t.status == "SUCCESS"), None)
        suggested = []
        if amount > 0 and sale is not None:
            suggested.append({"kind": "SUGGESTED_REFUND", "gateway": sale.gateway,
                              "parentTransaction": {"id": gid("OrderTransaction", sale.id)},
                              "amountSet": money(amount, order.currency)})
        return {"amountSet": money(amount, order.currency), "suggestedTransactions": suggested}

    def find_fo(self, value: Any) -> tuple[Order, FulfillmentOrder] | tuple[None, None]:
        fo_id = parse_gid(value, "FulfillmentOrder")
        for order in self.orders.values():
            for fo in order.fos:
                if fo.id == fo_id:
                    return order, fo
        return None, None

    def fo_hold(self, args: dict[str, Any]) -> dict[str, Any]:
        order, fo = self.find_fo(args.get("id"))
        hold_input = args.get("fulfillmentHold") or {}
        empty = {"fulfillmentHold": None, "fulfillmentOrder": None, "remainingFulfillmentOrder": None}
        if fo is None or order is None:
            return {**empty, "userErrors": [user_error(["id"], "Fulfillment order does not exist.", "FULFILLMENT_ORDER_NOT_FOUND")]}
        handle = hold_input.get("handle")
        errors = []
        if fo.status not in HOLDABLE:
            errors.append(user_error(["id"], f"The fulfillment order's status ({fo.status}) does not allow holds.", None))
        if handle and len(handle) > 64:
            errors.append(user_error(["fulfillmentHold", "handle"], "Handle is too long (maximum is 64 characters)", None))
        if handle and any(h.handle == handle for h in fo.holds):
            errors.append(user_error(["fulfillmentHold", "handle"], "The handle provided for the fulfillment hold is already in use by this app for another hold on this fulfillment order.", "DUPLICATE_FULFILLMENT_HOLD_HANDLE"))
        if len(fo.holds) >= MAX_HOLDS_PER_FO:
            errors.append(user_error(["id"], "The maximum number of fulfillment holds for this fulfillment order has been reached for this app.", "FULFILLMENT_ORDER_HOLD_LIMIT_REACHED"))
        if hold_input.get("fulfillmentOrderLineItems"):
            errors.append(user_error(["fulfillmentHold", "fulfillmentOrderLineItems"], "The stand-in does not split fulfillment orders; hold the whole fulfillment order.", "FULFILLMENT_ORDER_NOT_SPLITTABLE"))
        if errors:
            return {**empty, "userErrors": errors}
        hold = Hold(self.new_id(), hold_input["reason"], hold_input.get("reasonNotes"), handle, hold_input.get("externalId"))
        fo.holds.append(hold)
        fo.status = "ON_HOLD"
        self.on_change(kind="mutation", field="fulfillmentOrderHold", order=gid("Order", order.id),
                       fulfillmentOrder=gid("FulfillmentOrder", fo.id), summary={"handle": handle, "reason": hold.reason})
        return {"fulfillmentHold": self.hold_view(hold), "fulfillmentOrder": self.fo_view(order, fo),
                "remainingFulfillmentOrder": None, "userErrors": []}

    def fo_release_hold(self, args: dict[str, Any]) -> dict[str, Any]:
        order, fo = self.find_fo(args.get("id"))
        if fo is None or order is None:
            return {"fulfillmentOrder": None, "userErrors": [user_error(["id"], "Fulfillment order does not exist.", "FULFILLMENT_ORDER_NOT_FOUND")]}
        hold_ids = args.get("holdIds")
        if hold_ids is not None:
            wanted = {parse_gid(h, "FulfillmentHold") for h in hold_ids}
            known = {h.id for h in fo.holds}
            if not wanted <= known:
                return {"fulfillmentOrder": None, "userErrors": [user_error(["holdIds"], "One or more hold ids do not belong to this fulfillment order.", None)]}
            fo.holds = [h for h in fo.holds if h.id not in wanted]
        else:
            fo.holds = []
        if not fo.holds and fo.status == "ON_HOLD":
            fo.status = "IN_PROGRESS" if any(l.remaining < l.total for l in fo.lines) else "OPEN"
        self.on_change(kind="mutation", field="fulfillmentOrderReleaseHold", order=gid("Order", order.id),
                       fulfillmentOrder=gid("FulfillmentOrder", fo.id), summary={"holdIds": hold_ids, "status": fo.status})
        return {"fulfillmentOrder": self.fo_view(order, fo), "userErrors": []}

    def tags_add(self, args: dict[str, Any], view: Callable[[Order], dict]) -> dict[str, Any]:
        order = self.orders.get(parse_gid(args.get("id"), "Order") or -1)
        if order is None:
            return {"node": None, "userErrors": [user_error(["id"], "Order does not exist", typed=False)]}
        tags = args.get("tags") or []
        if isinstance(tags, str):
            tags = tags.split(",")
        added = [t.strip() for t in tags if t.strip() and t.strip() not in order.tags]
        order.tags.extend(added)
        self.on_change(kind="mutation", field="tagsAdd", order=gid("Order", order.id), summary={"added": added})
        return {"node": view(order), "userErrors": []}

    def order_update(self, args: dict[str, Any], view: Callable[[Order], dict]) -> dict[str, Any]:
        data = args.get("input") or {}
        order = self.orders.get(parse_gid(data.get("id"), "Order") or -1)
        if order is None:
            return {"order": None, "userErrors": [user_error(["id"], "Order does not exist", typed=False)]}
        if "note" in data:
            order.note = data["note"]
        if "tags" in data and data["tags"] is not None:
            order.tags = list(dict.fromkeys(data["tags"]))
        self.on_change(kind="mutation", field="orderUpdate", order=gid("Order", order.id),
                       summary={k: v for k, v in data.items() if k in ("note", "tags")})
        return {"order": view(order), "userErrors": []}

    def inventory_adjust(self, args: dict[str, Any]) -> dict[str, Any]:
        data = args.get("input") or {}
        errors = []
        if data.get("reason") not in ADJUST_REASONS:
            errors.append(user_error(["input", "reason"], f"The specified reason is invalid. Valid values: {', '.join(sorted(ADJUST_REASONS))}.", "INVALID_REASON"))
        if data.get("name") != "available":
            errors.append(user_error(["input", "name"], "The stand-in adjusts only the 'available' quantity.", "INVALID_QUANTITY_NAME"))
        uri = data.get("referenceDocumentUri")
        if uri is not None and not re.match(r"^[a-z][a-z0-9+.-]*://\S+$", uri):
            errors.append(user_error(["input", "referenceDocumentUri"], "The reference document URI is not a valid URI.", "INVALID_REFERENCE_DOCUMENT"))
        changes = []
        for index, raw in enumerate(data.get("changes") or []):
            at = ["input", "changes", str(index)]
            item_id = parse_gid(raw.get("inventoryItemId"), "InventoryItem")
            location_id = parse_gid(raw.get("locationId"), "Location")
            if item_id not in self.items:
                errors.append(user_error(at + ["inventoryItemId"], "The specified inventory item could not be found.", "INVALID_INVENTORY_ITEM"))
            elif location_id not in self.locations:
                errors.append(user_error(at + ["locationId"], "The specified location could not be found.", "INVALID_LOCATION"))
            elif (item_id, location_id) not in self.levels:
                errors.append(user_error(at + ["locationId"], "The specified inventory item is not stocked at the location.", "ITEM_NOT_STOCKED_AT_LOCATION"))
            else:
                changes.append((item_id, location_id, int(raw["delta"])))
        if errors:
            return {"inventoryAdjustmentGroup": None, "userErrors": errors}
        applied = []
        for item_id, location_id, delta in changes:
            self.levels[(item_id, location_id)] += delta
            applied.append({"name": "available", "delta": delta, "quantityAfterChange": self.levels[(item_id, location_id)],
                            "item": {"id": gid("InventoryItem", item_id)}, "location": {"id": gid("Location", location_id)}})
        group_id = self.new_id()
        self.on_change(kind="mutation", field="inventoryAdjustQuantities", reference=uri,
                       summary={"reason": data["reason"], "changes": [{"sku": self.items[i], "location": gid("Location", l), "delta": d}
                                                                      for i, l, d in changes]})
        return {"inventoryAdjustmentGroup": {"id": gid("InventoryAdjustmentGroup", group_id), "createdAt": iso(self.clock()),
                                             "reason": data["reason"], "referenceDocumentUri": uri, "changes": applied},
                "userErrors": []}

    # -- views ----------------------------------------------------------------------------------
    def hold_view(self, hold: Hold) -> dict[str, Any]:
        return {"__typename": "FulfillmentHold", "id": gid("FulfillmentHold", hold.id), "reason": hold.reason,
                "reasonNotes": hold.notes, "handle": hold.handle}

    def location_view(self, location: Location) -> dict[str, Any]:
        service = location.fulfillment_service
        return {"__typename": "Location", "id": gid("Location", location.id), "name": location.name,
                "fulfillmentService": {"handle": service, "serviceName": service.title()} if service else None}

    def fo_view(self, order: Order, fo: FulfillmentOrder) -> dict[str, Any]:
        return {
            "__typename": "FulfillmentOrder",
            "id": gid("FulfillmentOrder", fo.id),
            "status": fo.status,
            "requestStatus": fo.request_status,
            "assignedLocation": {"location": self.location_view(self.locations[fo.location_id]), "name": self.locations[fo.location_id].name},
            "fulfillmentHolds": [self.hold_view(h) for h in fo.holds],
            "lineItems": lambda info, first=None, **_: {"nodes": [
                {"id": gid("FulfillmentOrderLineItem", l.id), "totalQuantity": l.total, "remainingQuantity": l.remaining,
                 "lineItem": {"id": gid("LineItem", l.line_id)}} for l in fo.lines][: first or None]},
        }

    def order_view(self, order: Order) -> dict[str, Any]:
        currency = order.currency

        def line_view(line: Line) -> dict[str, Any]:
            return {
                "id": gid("LineItem", line.id), "sku": line.sku, "name": line.name, "quantity": line.quantity,
                "currentQuantity": line.quantity - line.removed, "refundableQuantity": line.quantity - line.removed,
                "unfulfilledQuantity": self.unfulfilled(order, line),
                "originalUnitPriceSet": money(line.price, currency),
                "variant": {"id": gid("ProductVariant", line.inventory_item_id), "inventoryItem": {"id": gid("InventoryItem", line.inventory_item_id)}}
                if line.inventory_item_id else None,
            }

        current_total = sum((l.price * (l.quantity - l.removed) for l in order.lines), Decimal("0"))
        return {
            "__typename": "Order",
            "id": gid("Order", order.id),
            "name": order.name,
            "sourceName": order.source_name,
            "sourceIdentifier": order.source_identifier,
            "tags": list(order.tags),
            "note": order.note,
            "createdAt": iso(order.created_at),
            "updatedAt": iso(self.updated_at(order)),
            "cancelledAt": iso(order.cancelled_at) if order.cancelled_at else None,
            "cancelReason": order.cancel_reason,
            "cancellation": {"staffNote": order.staff_note} if order.cancelled_at else None,
            "closed": order.closed,
            "currencyCode": currency,
            "displayFinancialStatus": self.financial_status(order),
            "displayFulfillmentStatus": self.fulfillment_status(order),
            "totalReceivedSet": money(self.received(order), currency),
            "totalRefundedSet": money(self.refunded(order), currency),
            "currentTotalPriceSet": money(current_total, currency),
            "lineItems": lambda info, first=None, **_: {
                "nodes": [line_view(l) for l in order.lines][: first or None],
                "pageInfo": {"hasNextPage": bool(first) and len(order.lines) > first},
            },
            "fulfillmentOrders": lambda info, first=None, **_: {"nodes": [self.fo_view(order, fo) for fo in order.fos][: first or None]},
            "transactions": lambda info, first=None, **_: [
                {"id": gid("OrderTransaction", t.id), "kind": t.kind, "status": t.status, "gateway": t.gateway,
                 "amountSet": money(t.amount, currency)} for t in order.txns][: first or None],
            "refunds": lambda info, first=None, **_: [self.refund_view(order, r) for r in order.refunds][: first or None],
            "suggestedRefund": lambda info, **args: self.suggested_refund(order, args),
        }

    def inventory_item_view(self, item_id: int) -> dict[str, Any]:
        def levels(info: Any, first: int | None = None, **_: Any) -> dict[str, Any]:
            nodes = [
                {"id": gid("InventoryLevel", item_id * 1000 + location_id), "location": self.location_view(self.locations[location_id]),
                 "quantities": lambda info, names, a=available: [{"name": n, "quantity": a if n == "available" else 0} for n in names]}
                for (level_item, location_id), available in sorted(self.levels.items()) if level_item == item_id
            ]
            return {"nodes": nodes[: first or None]}

        return {"id": gid("InventoryItem", item_id), "sku": self.items[item_id], "inventoryLevels": levels}

    def variant_view(self, item_id: int) -> dict[str, Any]:
        """The ProductVariant of an inventory item (the stand-in numbers both alike), with its bundle components."""
        def components(info: Any, first: int | None = None, **_: Any) -> dict[str, Any]:
            parts = self.components.get(item_id, [])
            shown = parts[: first or None]
            return {"nodes": [{"id": gid("ProductVariantComponent", part_id), "quantity": quantity, "productVariant": self.variant_view(part)}
                              for part_id, part, quantity in shown],
                    "pageInfo": {"hasNextPage": len(shown) < len(parts)}}

        return {"__typename": "ProductVariant", "id": gid("ProductVariant", item_id), "sku": self.items[item_id],
                "displayName": self.item_names.get(item_id, ""), "productVariantComponents": components}

    def state(self) -> dict[str, Any]:
        """The whole shop as plain JSON, for GET /_sim/state and for tests that look behind the API."""
        return {
            "locations": [{"id": gid("Location", l.id), "name": l.name, "fulfillmentService": l.fulfillment_service} for l in self.locations.values()],
            "inventory": [{"sku": self.items[i], "inventoryItemId": gid("InventoryItem", i), "locationId": gid("Location", l), "available": a}
                          for (i, l), a in sorted(self.levels.items())],
            "bundles": [{"sku": self.items[b], "components": [{"sku": self.items[p], "name": self.item_names.get(p), "quantity": q}
                                                              for _, p, q in parts]} for b, parts in sorted(self.components.items())],
            "orders": [self._order_state(o) for o in self.orders.values()],
            "jobs": [{"id": gid("Job", j.id), "order": gid("Order", j.order_id), "done": j.done} for j in self.jobs.values()],
        }

    def _order_state(self, order: Order) -> dict[str, Any]:
        return {
            "id": gid("Order", order.id), "name": order.name, "sourceIdentifier": order.source_identifier, "tags": order.tags,
            "note": order.note, "cancelledAt": iso(order.cancelled_at) if order.cancelled_at else None,
            "cancelReason": order.cancel_reason, "staffNote": order.staff_note, "closed": order.closed,
            "financialStatus": self.financial_status(order), "fulfillmentStatus": self.fulfillment_status(order),
            "received": str(self.received(order)), "refunded": str(self.refunded(order)),
            "lines": [{"id": gid("LineItem", l.id), "sku": l.sku, "quantity": l.quantity, "current": l.quantity - l.removed,
                       "fulfilled": self.fulfilled(order, l), "unfulfilled": self.unfulfilled(order, l)} for l in order.lines],
            "fulfillmentOrders": [{"id": gid("FulfillmentOrder", fo.id), "location": gid("Location", fo.location_id), "status": fo.status,
                                   "requestStatus": fo.request_status,
                                   "holds": [{"id": gid("FulfillmentHold", h.id), "handle": h.handle, "reason": h.reason, "notes": h.notes,
                                              "externalId": h.external_id}
                                             for h in fo.holds]} for fo in order.fos],
            "refunds": [{"id": gid("Refund", r.id), "note": r.note, "amount": str(sum((t.amount for t in r.txns), Decimal("0"))),
                         "lines": [{"lineItem": gid("LineItem", x.line_id), "quantity": x.quantity, "restockType": x.restock_type}
                                   for x in r.lines]} for r in order.refunds],
        }
