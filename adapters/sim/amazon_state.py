"""The Amazon stand-in's memory: orders seeded from a scenario, and how they look through Orders v0,
Orders v2026-01-01, the order report, the returns reports and ORDER_CHANGE notifications."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.sax.saxutils import escape

from adapters.amazon.finances import MARKETPLACE_NAMES

STATUSES = ("Pending", "Unshipped", "PartiallyShipped", "Shipped", "Canceled", "Unfulfillable",
            "InvoiceUnconfirmed", "PendingAvailability")
TO_V2026 = {"PendingAvailability": "PENDING_AVAILABILITY", "Pending": "PENDING", "Unshipped": "UNSHIPPED",
            "PartiallyShipped": "PARTIALLY_SHIPPED", "Shipped": "SHIPPED", "InvoiceUnconfirmed": "SHIPPED",
            "Canceled": "CANCELLED", "Unfulfillable": "UNFULFILLABLE"}
FROM_V2026 = {value: key for key, value in TO_V2026.items() if key != "InvoiceUnconfirmed"}


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _money(value: Any, where: str) -> str:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{where}: {value!r} is not an amount") from None
    return f"{amount.quantize(Decimal('0.01'))}"


def normalise_order(raw: dict[str, Any], defaults: dict[str, Any], where: str, existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """A scenario order (or a change to one) → the stand-in's internal order; ValueError names the field."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: an order must be a mapping")
    order = dict(existing) if existing else {
        "marketplace": defaults.get("marketplace_id", "ATVPDKIKX0DER"),
        "currency": defaults.get("currency", "USD"),
        "status": "Unshipped",
        "fulfillment": "FBM",
        "lines": [],
        "refunds": [],
    }
    order_id = raw.get("id") or (existing or {}).get("id")
    if not order_id:
        raise ValueError(f"{where}: field id is missing")
    order["id"] = str(order_id)
    where = f"{where} (order {order_id})"
    if "marketplace_id" in raw:
        order["marketplace"] = raw["marketplace_id"]  # the name the account section uses; `marketplace` wins
    for key in ("status", "fulfillment", "marketplace", "currency", "cancelled_by", "cancel_reason"):
        if key in raw:
            order[key] = raw[key]
    if order["status"] not in STATUSES:
        raise ValueError(f"{where}: field status {order['status']!r} is not one of {', '.join(STATUSES)}")
    if order["fulfillment"] not in ("FBA", "FBM"):
        raise ValueError(f"{where}: field fulfillment {order['fulfillment']!r} must be FBA or FBM")
    for key in ("purchased", "updated"):
        if key in raw:
            try:
                order[key] = iso(parse_time(raw[key]))
            except ValueError:
                raise ValueError(f"{where}: field {key} {raw[key]!r} is not an ISO 8601 time") from None
    if "total" in raw:
        order["total"] = None if raw["total"] is None else _money(raw["total"], f"{where} field total")
    lines = {line["item_id"]: dict(line) for line in order["lines"]}
    order_request = raw.get("buyer_cancel")
    for index, line_raw in enumerate(raw.get("lines") or []):
        line_where = f"{where} line {index + 1}"
        item_id = str(line_raw.get("item_id") or "")
        if not item_id:
            raise ValueError(f"{line_where}: field item_id is missing")
        line = lines.get(item_id) or {"item_id": item_id, "shipped": 0, "cancelled": 0, "buyer_cancel": None,
                                      "asin": "B000000000", "title": None}
        for key in ("sku", "asin", "title", "cancelled_by", "cancel_reason", "buyer_cancel"):
            if key in line_raw:
                line[key] = line_raw[key]
        for key in ("quantity", "shipped", "cancelled"):
            if key in line_raw:
                value = line_raw[key]
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{line_where}: field {key} {value!r} must be a whole number ≥ 0")
                line[key] = value
        if "quantity" not in line:
            raise ValueError(f"{line_where}: field quantity is missing")
        if "unit_price" in line_raw:
            line["unit_price"] = _money(line_raw["unit_price"], f"{line_where} field unit_price")
        line.setdefault("unit_price", "0.00")
        if line["shipped"] + line["cancelled"] > line["quantity"]:
            raise ValueError(f"{line_where}: shipped + cancelled exceed quantity")
        lines[item_id] = line
    if order_request:
        for line in lines.values():
            if line["quantity"] > line["shipped"] + line["cancelled"]:
                line["buyer_cancel"] = order_request if isinstance(order_request, dict) else {"reason": str(order_request)}
    if not lines:
        raise ValueError(f"{where}: an order needs at least one line")
    order["lines"] = list(lines.values())
    stamp = now_utc()
    order.setdefault("purchased", iso(stamp - timedelta(hours=1)))
    order.setdefault("updated", iso(stamp))
    return order


def derive_status(order: dict[str, Any]) -> str:
    """The status after a cancellation or adjustment, from the line quantities."""
    lines = order["lines"]
    live = [line for line in lines if line["quantity"] > line["cancelled"]]
    if not live:
        return "Canceled"
    shipped = sum(line["shipped"] for line in live)
    to_ship = sum(line["quantity"] - line["cancelled"] for line in live)
    if shipped == 0:
        return order["status"] if order["status"] in ("Pending", "PendingAvailability", "Unshipped") else "Unshipped"
    return "Shipped" if shipped >= to_ship else "PartiallyShipped"


def order_total(order: dict[str, Any]) -> str:
    if order.get("total") is not None:
        return order["total"]
    total = sum(Decimal(line["unit_price"]) * (line["quantity"] - line["cancelled"]) for line in order["lines"])
    return f"{total.quantize(Decimal('0.01'))}"


# -- Orders v2026-01-01 ------------------------------------------------------------------------------
def render_v2026(order: dict[str, Any], included: set[str]) -> dict[str, Any]:
    money = lambda amount: {"amount": amount, "currencyCode": order["currency"]}  # noqa: E731
    items = []
    for line in order["lines"]:
        item: dict[str, Any] = {
            "orderItemId": line["item_id"],
            "quantityOrdered": line["quantity"],
            "product": {"asin": line["asin"], "sellerSku": line.get("sku"),
                        "price": {"unitPrice": money(line["unit_price"])}},
        }
        if line.get("title"):
            item["product"]["title"] = line["title"]
        if line.get("sku") is None:
            del item["product"]["sellerSku"]
        if "FULFILLMENT" in included:
            item["fulfillment"] = {"quantityFulfilled": line["shipped"],
                                   "quantityUnfulfilled": line["quantity"] - line["shipped"] - line["cancelled"]}
        if "CANCELLATION" in included:
            cancellation: dict[str, Any] = {}
            if line.get("buyer_cancel"):
                cancellation["cancellationRequest"] = {"requester": "BUYER",
                                                       "cancelReason": line["buyer_cancel"].get("reason", "")}
            if line["cancelled"]:
                cancellation["cancellationExecution"] = {
                    "cancelledBy": line.get("cancelled_by") or order.get("cancelled_by") or "MERCHANT",
                    "cancelReason": line.get("cancel_reason") or order.get("cancel_reason") or ""}
            if cancellation:
                item["cancellation"] = cancellation
        items.append(item)
    rendered: dict[str, Any] = {
        "orderId": order["id"],
        "createdTime": order["purchased"],
        "lastUpdatedTime": order["updated"],
        "salesChannel": {"channelName": "AMAZON", "marketplaceId": order["marketplace"]},
        "fulfillment": {"fulfillmentStatus": TO_V2026[order["status"]],
                        "fulfilledBy": "AMAZON" if order["fulfillment"] == "FBA" else "MERCHANT"},
        "orderItems": items,
    }
    if "PROCEEDS" in included and order["status"] not in ("Pending", "PendingAvailability"):
        rendered["proceeds"] = {"grandTotal": money(order_total(order))}
    return rendered


# -- Orders v0 -----------------------------------------------------------------------------------------
def render_v0(order: dict[str, Any]) -> dict[str, Any]:
    shipped = sum(line["shipped"] for line in order["lines"])
    unshipped = sum(line["quantity"] - line["shipped"] - line["cancelled"] for line in order["lines"])
    rendered: dict[str, Any] = {
        "AmazonOrderId": order["id"],
        "PurchaseDate": order["purchased"],
        "LastUpdateDate": order["updated"],
        "OrderStatus": order["status"],
        "FulfillmentChannel": "AFN" if order["fulfillment"] == "FBA" else "MFN",
        "SalesChannel": "Amazon.com",
        "MarketplaceId": order["marketplace"],
        "OrderType": "StandardOrder",
        "NumberOfItemsShipped": shipped,
        "NumberOfItemsUnshipped": unshipped,
    }
    # Amazon leaves money out while an order is Pending.
    if order["status"] not in ("Pending", "PendingAvailability"):
        rendered["OrderTotal"] = {"CurrencyCode": order["currency"], "Amount": order_total(order)}
    return rendered


def render_v0_items(order: dict[str, Any]) -> list[dict[str, Any]]:
    items = []
    for line in order["lines"]:
        item: dict[str, Any] = {
            "ASIN": line["asin"],
            "OrderItemId": line["item_id"],
            "QuantityOrdered": line["quantity"],
            "QuantityShipped": line["shipped"],
        }
        if line.get("sku"):
            item["SellerSKU"] = line["sku"]
        if line.get("title"):
            item["Title"] = line["title"]
        if order["status"] not in ("Pending", "PendingAvailability"):
            amount = Decimal(line["unit_price"]) * line["quantity"]
            item["ItemPrice"] = {"CurrencyCode": order["currency"], "Amount": f"{amount.quantize(Decimal('0.01'))}"}
        request = line.get("buyer_cancel")
        # v0 sends the flag as the text "true"/"false", not a JSON boolean.
        item["BuyerRequestedCancel"] = {"IsBuyerRequestedCancel": "true" if request else "false",
                                        "BuyerCancelReason": (request or {}).get("reason", "")}
        items.append(item)
    return items


# -- ORDER_CHANGE -------------------------------------------------------------------------------------
def order_change_notification(order: dict[str, Any], seller_id: str, change_type: str, reason: str) -> dict[str, Any]:
    now = iso(now_utc())
    items = []
    for line in order["lines"]:
        item: dict[str, Any] = {
            "OrderItemId": line["item_id"],
            "SellerSKU": line.get("sku") or "",
            "SupplySourceId": None,
            "Quantity": line["quantity"],
            "QuantityShipped": line["shipped"],
            "OrderItemStatus": "Shipped" if line["shipped"] >= line["quantity"] - line["cancelled"] else "Unshipped",
        }
        if line.get("buyer_cancel"):
            item["IsBuyerRequestedCancel"] = True
        items.append(item)
    shipped = sum(line["shipped"] for line in order["lines"])
    return {
        "NotificationVersion": "1.0",
        "NotificationType": "ORDER_CHANGE",
        "PayloadVersion": "1.0",
        "EventTime": now,
        "Payload": {"OrderChangeNotification": {
            "NotificationLevel": "OrderLevel",
            "SellerId": seller_id,
            "AmazonOrderId": order["id"],
            "OrderChangeType": change_type,
            "OrderChangeTrigger": {"TimeOfOrderChange": order["updated"], "ChangeReason": reason},
            "Summary": {
                "MarketplaceId": order["marketplace"],
                "OrderStatus": order["status"],
                "PurchaseDate": order["purchased"],
                "DestinationPostalCode": None,
                "FulfillmentType": "AFN" if order["fulfillment"] == "FBA" else "MFN",
                "OrderType": "StandardOrder",
                "NumberOfItemsShipped": shipped,
                "NumberOfItemsUnshipped": sum(l["quantity"] - l["shipped"] - l["cancelled"] for l in order["lines"]),
                "OrderItems": items,
            },
        }},
        "NotificationMetadata": {"ApplicationId": "amzn1.sellerapps.app.ordersync-sim",
                                 "SubscriptionId": "sim-subscription", "PublishTime": now,
                                 "NotificationId": str(uuid.uuid4())},
    }


# -- reports ----------------------------------------------------------------------------------------------
ORDER_REPORT_COLUMNS = ["amazon-order-id", "merchant-order-id", "purchase-date", "last-updated-date", "order-status",
                        "fulfillment-channel", "sales-channel", "order-item-id", "sku", "asin", "item-status",
                        "quantity", "currency", "item-price"]
BUYER_COLUMNS = ["is-buyer-requested-cancellation", "buyer-requested-cancel-reason"]


def order_report_tsv(orders: list[dict[str, Any]], buyer_columns: bool) -> str:
    header = ORDER_REPORT_COLUMNS + (BUYER_COLUMNS if buyer_columns else [])
    rows = ["\t".join(header)]
    for order in orders:
        for line in order["lines"]:
            cells = [order["id"], "", order["purchased"], order["updated"], order["status"],
                     "Amazon" if order["fulfillment"] == "FBA" else "Merchant", "Amazon.com", line["item_id"],
                     line.get("sku") or "", line["asin"],
                     "Cancelled" if line["cancelled"] >= line["quantity"] else ("Shipped" if line["shipped"] else "Unshipped"),
                     str(line["quantity"]), order["currency"],
                     f"{(Decimal(line['unit_price']) * line['quantity']).quantize(Decimal('0.01'))}"]
            if buyer_columns:
                request = line.get("buyer_cancel")
                cells += ["true" if request else "false", (request or {}).get("reason", "").replace("\t", " ")]
            rows.append("\t".join(cells))
    return "\n".join(rows) + "\n"


RETURNS_COLUMNS = [("Order ID", "order_id"), ("Order date", "order_date"), ("Return request date", "requested"),
                   ("Return request status", "status"), ("Amazon RMA ID", "rma_id"), ("Merchant RMA ID", "merchant_rma_id"),
                   ("Label type", "label_type"), ("Label cost", "label_cost"), ("Currency code", "currency"),
                   ("Return carrier", "carrier"), ("Tracking ID", "tracking"), ("Label to be paid by", "label_paid_by"),
                   ("A-to-z claim", "a_to_z_claim"), ("Is prime", "is_prime"), ("ASIN", "asin"), ("Merchant SKU", "sku"),
                   ("Item Name", "title"), ("Return quantity", "quantity"), ("Return reason", "reason"),
                   ("In policy", "in_policy"), ("Return type", "return_type"), ("Resolution", "resolution")]
XML_TAGS = {"order_id": "order_id", "order_date": "order_date", "requested": "return_request_date",
            "status": "return_request_status", "rma_id": "amazon_rma_id", "merchant_rma_id": "seller_rma_id",
            "label_type": "label_type", "label_cost": "label_cost", "currency": "currency_code", "carrier": "return_carrier",
            "tracking": "tracking_id", "label_paid_by": "label_to_be_paid_by", "a_to_z_claim": "a_to_z_claim",
            "is_prime": "is_prime"}
XML_ITEM_TAGS = {"title": "item_name", "asin": "asin", "reason": "return_reason_code", "sku": "merchant_sku",
                 "in_policy": "in_policy", "quantity": "return_quantity", "resolution": "resolution"}


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "Y" if value else "N"
    return "" if value is None else str(value)


def returns_tsv(returns: list[dict[str, Any]]) -> str:
    rows = ["\t".join(name for name, _ in RETURNS_COLUMNS)]
    for rma in returns:
        for item in rma["items"]:
            merged = {**rma, **item}
            rows.append("\t".join(_cell(merged.get(key)) for _, key in RETURNS_COLUMNS))
    return "\n".join(rows) + "\n"


def returns_xml(returns: list[dict[str, Any]]) -> str:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>', "<AmazonRmaReport>"]
    for rma in returns:
        parts.append("  <return_details>")
        for key, tag in XML_TAGS.items():
            if rma.get(key) is not None:
                parts.append(f"    <{tag}>{escape(_cell(rma[key]))}</{tag}>")
        for item in rma["items"]:
            parts.append("    <item_details>")
            for key, tag in XML_ITEM_TAGS.items():
                if item.get(key) is not None:
                    parts.append(f"      <{tag}>{escape(_cell(item[key]))}</{tag}>")
            parts.append("    </item_details>")
        parts.append("  </return_details>")
    parts.append("</AmazonRmaReport>")
    return "\n".join(parts) + "\n"


# -- Finances v0 ------------------------------------------------------------------------------------------
# Amazon gives the seller back most of its commission when it refunds a buyer; 15 % is the common referral fee.
COMMISSION_RATE = Decimal("0.15")
CENT = Decimal("0.01")


def amount_of(value: Any, where: str) -> Decimal:
    """An amount given as a number or text (a scenario, a test, a feed), to the cent; ValueError names it."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: {value!r} is not an amount")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{where}: {value!r} is not an amount") from None
    if not amount.is_finite():
        raise ValueError(f"{where}: {value!r} is not an amount")
    return amount.quantize(CENT)


def refunded(order: dict[str, Any], item_id: str) -> Decimal:
    """Principal already refunded on a line, by feed or in Seller Central."""
    return sum((Decimal(str(r["principal"])) for r in order["refunds"] if r["item_id"] == item_id), Decimal(0)).quantize(CENT)


def refundable(order: dict[str, Any], line: dict[str, Any]) -> Decimal:
    """What the buyer paid for a line less what was already refunded on it."""
    return (Decimal(line["unit_price"]) * line["quantity"] - refunded(order, line["item_id"])).quantize(CENT)


def units_paid_for(line: dict[str, Any], principal: Decimal) -> int:
    """Whole units a principal refund covers, for QuantityShipped when the refund did not name a count."""
    unit = Decimal(line["unit_price"])
    return min(line["quantity"], int(principal // unit)) if unit > 0 else 0


def refund_item(line: dict[str, Any], adjustment_id: str, principal: Decimal, quantity: int,
                charges: dict[str, Decimal] | None = None) -> dict[str, Any]:
    """One item of a stand-in refund event: amounts given back to the buyer, positive, as text."""
    item: dict[str, Any] = {"item_id": line["item_id"], "sku": line.get("sku"), "adjustment_id": adjustment_id,
                            "quantity": quantity, "principal": f"{principal.quantize(CENT)}"}
    if charges:
        item["charges"] = {kind: f"{amount.quantize(CENT)}" for kind, amount in charges.items()}
    return item


def _currency(code: str, amount: Decimal) -> dict[str, Any]:
    # Finances v0 sends amounts as JSON numbers, unlike the rest of the SP-API; -0.0 would look odd.
    return {"CurrencyCode": code, "CurrencyAmount": float(amount) if amount else 0.0}


def render_refund_event(event: dict[str, Any]) -> dict[str, Any]:
    """A stand-in refund event as a Finances v0 RefundEvent, GuaranteeClaimEvent or ChargebackEvent (all the
    ShipmentEvent shape; the event's `kind` says which list it goes in): what the buyer got back is negative,
    the commission Amazon returns to the seller positive. An item marked `reversal` is money of a chargeback
    coming back to the seller, so its signs are the other way round: charges positive, and the commission
    charged again. MarketplaceName is the name of the order's marketplace (an event recorded without one is
    of the US marketplace); a marketplace id with no known name (e.g. a non-Amazon one) leaves it out, as the
    field is optional."""
    code = event.get("currency") or "USD"
    items = []
    for index, item in enumerate(event["items"]):
        where = f"{event.get('kind', 'refund')} event of order {event['order_id']} item {index + 1}"
        # Amounts are stored as given back, positive; the sign says which way the money went.
        sign = 1 if item.get("reversal") else -1
        principal = amount_of(item.get("principal", 0), f"{where} principal")
        charges = [{"ChargeType": "Principal", "ChargeAmount": _currency(code, sign * principal)}]
        for kind, value in (item.get("charges") or {}).items():
            charges.append({"ChargeType": kind, "ChargeAmount": _currency(code, sign * amount_of(value, f"{where} charge {kind}"))})
        commission = (principal * COMMISSION_RATE).quantize(CENT)
        rendered: dict[str, Any] = {
            "OrderItemId": item["item_id"],
            "OrderAdjustmentItemId": item["adjustment_id"],
            "QuantityShipped": int(item.get("quantity") or 0),
            "ItemChargeAdjustmentList": charges,
            "ItemFeeAdjustmentList": [{"FeeType": "Commission", "FeeAmount": _currency(code, -sign * commission)}],
        }
        if item.get("sku"):
            rendered = {"SellerSKU": item["sku"], **rendered}
        items.append(rendered)
    rendered_event: dict[str, Any] = {"AmazonOrderId": event["order_id"]}
    name = MARKETPLACE_NAMES.get(event.get("marketplace") or "ATVPDKIKX0DER")
    if name:
        rendered_event["MarketplaceName"] = name
    rendered_event.update({"PostedDate": iso(parse_time(event["posted"])), "ShipmentItemAdjustmentList": items})
    return rendered_event
