"""Orders: poll by last-update time and read single orders, through Orders v2026-01-01 (default) or
v0 (per-account option; v0 reads retire 2027-03-27). Both normalise into `AmazonOrder`.

A bad order (unknown status, an amount that is not a number, a missing field) becomes a RecordError
naming the order and field; the rest of the page is still delivered."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable, Literal

from adapters.amazon.http import SpApiTransport
from adapters.amazon.models import (
    AmazonOrder,
    AmazonOrderLine,
    OrderCursor,
    OrderPage,
    OrderStatus,
    RecordError,
    rollup,
)
from adapters.errors import InvalidInput

ApiVersion = Literal["2026-01-01", "v0"]

V2026_STATUS = {
    "PENDING_AVAILABILITY": OrderStatus.PENDING_AVAILABILITY,
    "PENDING": OrderStatus.PENDING,
    "UNSHIPPED": OrderStatus.UNSHIPPED,
    "PARTIALLY_SHIPPED": OrderStatus.PARTIALLY_SHIPPED,
    "SHIPPED": OrderStatus.SHIPPED,
    "CANCELLED": OrderStatus.CANCELED,
    "UNFULFILLABLE": OrderStatus.UNFULFILLABLE,
}
V0_STATUS = {status.value: status for status in OrderStatus}
FULFILLED_BY_V2026 = {"AMAZON": "FBA", "MERCHANT": "FBM"}
FULFILLED_BY_V0 = {"AFN": "FBA", "MFN": "FBM"}  # also ORDER_CHANGE's FulfillmentType
# What the poll asks for: cancellation (who asked, who executed, why), fulfilment (quantities) and
# proceeds (the order total). Nothing with personal data.
INCLUDED_DATA = "CANCELLATION,FULFILLMENT,PROCEEDS"


class _Fields:
    """Reads fields of one order and names the order and field path in every error."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, message: str) -> InvalidInput:
        return InvalidInput(f"{self.where}, field {path}: {message}")

    def get(self, data: Any, path: str, required: bool = False) -> Any:
        node = data
        for part in path.split("."):
            if not isinstance(node, dict):
                node = None
                break
            node = node.get(part)
        if node is None and required:
            raise self.fail(path, "missing")
        return node

    def choice(self, data: Any, path: str, known: dict[str, Any], required: bool = False) -> Any:
        """The mapped value of an enumerated field; None when absent and optional; unknown values fail."""
        value = self.get(data, path, required=required)
        if value is None or value == "":
            if required:
                raise self.fail(path, "missing")
            return None
        if str(value) not in known:
            raise self.fail(path, f"unknown value {value!r}; known: {', '.join(sorted(known))}")
        return known[str(value)]

    def money(self, data: Any, path: str) -> Decimal | None:
        value = self.get(data, path)
        if value is None or value == "":
            return None
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise self.fail(path, f"amount {value!r} is not a number") from None
        if not amount.is_finite():
            raise self.fail(path, f"amount {value!r} is not a number")
        return amount

    def integer(self, data: Any, path: str, default: int | None = None, required: bool = False) -> int:
        value = self.get(data, path, required=required)
        if value is None:
            if default is None:
                raise self.fail(path, "missing")
            return default
        if isinstance(value, bool):
            raise self.fail(path, f"{value!r} is not a whole number")
        try:
            number = int(str(value))
        except ValueError:
            raise self.fail(path, f"{value!r} is not a whole number") from None
        if number < 0:
            raise self.fail(path, f"{number} is negative")
        return number

    def time(self, data: Any, path: str, required: bool = False) -> datetime | None:
        value = self.get(data, path, required=required)
        if value is None:
            return None
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise self.fail(path, f"{value!r} is not an ISO 8601 time") from None


def order_head(raw: Any, where: str, id_path: str, status_path: str, statuses: dict[str, OrderStatus],
               fulfillment_path: str, fulfillments: dict[str, str]) -> tuple[_Fields, str, OrderStatus, Any]:
    """What every source has first: the order id, its status and FBA/FBM, each checked and named.
    `where` is the prefix of every error (e.g. "ORDER_CHANGE notification 5f…")."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: {type(raw).__name__}, not an object")
    order_id = _Fields("").get(raw, id_path)
    f = _Fields(f"{where} {order_id}" if order_id else f"{where} without {id_path}")
    f.get(raw, id_path, required=True)
    status = f.choice(raw, status_path, statuses, required=True)
    return f, str(order_id), status, f.choice(raw, fulfillment_path, fulfillments)


def _item_list(f: _Fields, raw: Any, path: str) -> list[Any]:
    items = f.get(raw, path, required=True)
    if not isinstance(items, list):
        raise f.fail(path, "is not a list")
    return items


def parse_order_v2026(raw: Any) -> AmazonOrder:
    """One Orders v2026-01-01 `Order` → AmazonOrder; raises InvalidInput naming order and field."""
    f, order_id, status, fulfillment = order_head(raw, "order", "orderId", "fulfillment.fulfillmentStatus", V2026_STATUS,
                                                  "fulfillment.fulfilledBy", FULFILLED_BY_V2026)
    items = _item_list(f, raw, "orderItems")
    lines = []
    for index, item in enumerate(items):
        path = f"orderItems[{index}]"
        if not isinstance(item, dict):
            raise f.fail(path, "is not an object")
        item_id = f.get(item, "orderItemId", required=False)
        if not item_id:
            raise f.fail(f"{path}.orderItemId", "missing")
        ordered = f.integer(item, "quantityOrdered", required=True)
        shipped = f.integer(item, "fulfillment.quantityFulfilled", default=0)
        unfulfilled = f.get(item, "fulfillment.quantityUnfulfilled")
        if unfulfilled is not None:
            cancelled = max(0, ordered - shipped - f.integer(item, "fulfillment.quantityUnfulfilled"))
        elif status is OrderStatus.CANCELED:
            cancelled = max(0, ordered - shipped)
        else:
            cancelled = 0
        unit = f.money(item, "product.price.unitPrice.amount")
        request = f.get(item, "cancellation.cancellationRequest") or {}
        execution = f.get(item, "cancellation.cancellationExecution") or {}
        lines.append(
            AmazonOrderLine(
                order_item_id=str(item_id),
                sku=f.get(item, "product.sellerSku"),
                asin=f.get(item, "product.asin"),
                quantity_ordered=ordered,
                quantity_shipped=shipped,
                quantity_cancelled=cancelled,
                unit_price=unit,
                line_price=unit * ordered if unit is not None else None,
                buyer_cancel_requested=str(request.get("requester", "")).upper() == "BUYER",
                buyer_cancel_reason=request.get("cancelReason"),
                cancelled_by=execution.get("cancelledBy"),
                cancel_reason=execution.get("cancelReason"),
            )
        )
    return rollup(
        AmazonOrder(
            amazon_order_id=order_id,
            status=status,
            fulfillment=fulfillment,  # type: ignore[arg-type]
            lines=tuple(lines),
            last_updated=f.time(raw, "lastUpdatedTime", required=True),
            purchase_date=f.time(raw, "createdTime"),
            marketplace_id=f.get(raw, "salesChannel.marketplaceId"),
            order_total=f.money(raw, "proceeds.grandTotal.amount"),
            currency=f.get(raw, "proceeds.grandTotal.currencyCode"),
            source="orders-v2026",
        )
    )


def _flag(value: Any) -> bool:
    # v0 sends the text "true"/"false"; tolerate a real boolean in case Amazon fixes it.
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def parse_order_v0(raw: Any, items: Iterable[Any]) -> AmazonOrder:
    """One Orders v0 `Order` and its `OrderItem`s → AmazonOrder; raises InvalidInput naming the field."""
    f, order_id, status, fulfillment = order_head(raw, "order", "AmazonOrderId", "OrderStatus", V0_STATUS,
                                                  "FulfillmentChannel", FULFILLED_BY_V0)
    lines = []
    for index, item in enumerate(items):
        path = f"OrderItems[{index}]"
        if not isinstance(item, dict):
            raise f.fail(path, "is not an object")
        item_id = item.get("OrderItemId")
        if not item_id:
            raise f.fail(f"{path}.OrderItemId", "missing")
        ordered = f.integer(item, "QuantityOrdered", required=True)
        shipped = f.integer(item, "QuantityShipped", default=0)
        line_price = f.money(item, "ItemPrice.Amount")
        request = item.get("BuyerRequestedCancel") or {}
        requested = _flag(request.get("IsBuyerRequestedCancel"))
        lines.append(
            AmazonOrderLine(
                order_item_id=str(item_id),
                sku=item.get("SellerSKU"),
                asin=item.get("ASIN"),
                quantity_ordered=ordered,
                quantity_shipped=shipped,
                # v0 has no cancelled quantity; only a cancelled order tells us the unshipped rest went.
                quantity_cancelled=max(0, ordered - shipped) if status is OrderStatus.CANCELED else 0,
                unit_price=(line_price / ordered).quantize(Decimal("0.01")) if line_price is not None and ordered else None,
                line_price=line_price,
                buyer_cancel_requested=requested,
                buyer_cancel_reason=(request.get("BuyerCancelReason") or None) if requested else None,
            )
        )
    return rollup(
        AmazonOrder(
            amazon_order_id=order_id,
            status=status,
            fulfillment=fulfillment,  # type: ignore[arg-type]
            lines=tuple(lines),
            last_updated=f.time(raw, "LastUpdateDate", required=True),
            purchase_date=f.time(raw, "PurchaseDate"),
            marketplace_id=raw.get("MarketplaceId"),
            order_total=f.money(raw, "OrderTotal.Amount"),
            currency=f.get(raw, "OrderTotal.CurrencyCode"),
            source="orders-v0",
        )
    )


def _order_ref(raw: Any, key: str, index: int) -> str:
    if isinstance(raw, dict) and raw.get(key):
        return f"order {raw[key]}"
    return f"order #{index + 1} of the page"


class OrdersApi:
    """Orders for one seller account, in the API version the account is configured for."""

    MAX_PAGES = 1000  # a runaway pagination loop must end; 100 000 orders per poll is far beyond a sweep

    def __init__(self, transport: SpApiTransport, marketplace_ids: list[str], version: ApiVersion = "2026-01-01") -> None:
        if version not in ("2026-01-01", "v0"):
            raise ValueError(f"orders API version must be '2026-01-01' or 'v0', not {version!r}")
        if not marketplace_ids:
            raise ValueError("at least one marketplace id is needed")
        self._t = transport
        self._marketplaces = ",".join(marketplace_ids)
        self.version: ApiVersion = version

    def poll(self, cursor: OrderCursor | str) -> OrderPage:
        """Every order updated since the cursor, all pages; the next cursor is Amazon's high-water mark.

        If a page fails the whole call raises and the caller keeps its old cursor: the orders already
        read will come again next time, which the inbox's unique key absorbs."""
        since = cursor.high_water if isinstance(cursor, OrderCursor) else cursor
        return self._poll_v2026(since) if self.version == "2026-01-01" else self._poll_v0(since)

    def get_order(self, order_id: str) -> AmazonOrder:
        if self.version == "2026-01-01":
            response = self._t.call("getOrder2026", "GET", f"/orders/2026-01-01/orders/{order_id}",
                                    params={"includedData": INCLUDED_DATA}, context=f"order {order_id}")
            body = response.body
            if not isinstance(body, dict) or not isinstance(body.get("order"), dict):
                raise InvalidInput(f"Amazon getOrder for order {order_id}: the answer has no 'order' object")
            return parse_order_v2026(body["order"])
        response = self._t.call("getOrder", "GET", f"/orders/v0/orders/{order_id}", context=f"order {order_id}")
        payload = response.body.get("payload") if isinstance(response.body, dict) else None
        if not isinstance(payload, dict):
            raise InvalidInput(f"Amazon getOrder (v0) for order {order_id}: the answer has no payload")
        return parse_order_v0(payload, self._order_items_v0(order_id))

    # -- the sweep ---------------------------------------------------------------------------------
    def _sweep(self, since: str, operation: str, path: str, params: dict[str, str], token_param: str,
               read_page: Callable[[Any], tuple[list[Any], str | None, str | None]],
               parse: Callable[[Any], AmazonOrder], id_key: str) -> OrderPage:
        """Every page of one search; `read_page` picks (orders, next token, high-water mark) out of a body."""
        orders: list[AmazonOrder] = []
        errors: list[RecordError] = []
        high_water: str | None = None
        for page in range(1, self.MAX_PAGES + 1):
            body = self._t.call(operation, "GET", path, params=params, context=f"page {page} since {since}").body
            try:
                raws, token, mark = read_page(body)
            except (AttributeError, TypeError, KeyError):
                raws = None
            if not isinstance(raws, list):
                raise InvalidInput(f"Amazon {operation} page {page} since {since}: the answer is not JSON with a list of orders")
            high_water = high_water or mark
            for index, raw in enumerate(raws):
                try:
                    orders.append(parse(raw))
                except InvalidInput as exc:
                    errors.append(RecordError(_order_ref(raw, id_key, index), exc.message))
            if not token:
                break
            # The token is only valid with the same filters, so they are repeated as they were.
            params = {**params, token_param: token}
        return OrderPage(orders, errors, OrderCursor(self._next_mark(high_water, orders, since), self.version))

    def _poll_v2026(self, since: str) -> OrderPage:
        params = {"lastUpdatedAfter": since, "marketplaceIds": self._marketplaces,
                  "includedData": INCLUDED_DATA, "maxResultsPerPage": "100"}

        def read_page(body: Any) -> tuple[Any, str | None, str | None]:
            return body.get("orders"), (body.get("pagination") or {}).get("nextToken"), body.get("lastUpdatedBefore")

        return self._sweep(since, "searchOrders", "/orders/2026-01-01/orders", params, "paginationToken",
                           read_page, parse_order_v2026, "orderId")

    def _poll_v0(self, since: str) -> OrderPage:
        params = {"MarketplaceIds": self._marketplaces, "LastUpdatedAfter": since, "MaxResultsPerPage": "100"}

        def read_page(body: Any) -> tuple[Any, str | None, str | None]:
            payload = body["payload"]
            return payload.get("Orders"), payload.get("NextToken"), payload.get("LastUpdatedBefore")

        def parse(raw: Any) -> AmazonOrder:
            order_id = raw.get("AmazonOrderId") if isinstance(raw, dict) else None
            if not order_id:
                raise InvalidInput("field AmazonOrderId: missing")
            return parse_order_v0(raw, self._order_items_v0(order_id))

        return self._sweep(since, "getOrders", "/orders/v0/orders", params, "NextToken", read_page, parse, "AmazonOrderId")

    def _order_items_v0(self, order_id: str) -> list[Any]:
        items: list[Any] = []
        params: dict[str, str] = {}
        for _ in range(self.MAX_PAGES):
            body = self._t.call("getOrderItems", "GET", f"/orders/v0/orders/{order_id}/orderItems",
                                params=params, context=f"order {order_id}").body
            payload = body.get("payload") if isinstance(body, dict) else None
            if not isinstance(payload, dict) or not isinstance(payload.get("OrderItems"), list):
                raise InvalidInput(f"order {order_id}: getOrderItems answer has no payload.OrderItems")
            items.extend(payload["OrderItems"])
            if not payload.get("NextToken"):
                break
            params = {"NextToken": payload["NextToken"]}
        return items

    @staticmethod
    def _next_mark(high_water: str | None, orders: list[AmazonOrder], since: str) -> str:
        if high_water:
            return high_water
        # Amazon did not echo a high-water mark: the newest update we saw is the safest next start.
        stamps = [o.last_updated for o in orders if o.last_updated is not None]
        if not stamps:
            return since
        return max(stamps).isoformat().replace("+00:00", "Z")
