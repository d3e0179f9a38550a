"""ORDER_CHANGE notifications (SQS/EventBridge body) → the same AmazonOrder a poll would produce.

The notification lacks prices and the buyer's cancel reason, and an OrderItemLevel notification carries
one item only; `OrderChange.complete` says whether the lines are the whole order. The daemon can call
`AmazonClient.get_order` for the rest; polling stays the backstop because notifications can be lost."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from adapters.amazon.models import AmazonOrder, AmazonOrderLine, rollup
from adapters.amazon.orders import FULFILLED_BY_V0, V0_STATUS, OrderStatus, _flag, _item_list, order_head
from adapters.errors import InvalidInput


@dataclass(frozen=True)
class OrderChange:
    order: AmazonOrder
    change_type: str  # BuyerRequestedChange | DeliveryTipChange | OrderStatusChange
    change_reason: str | None
    notification_id: str | None
    seller_id: str | None
    complete: bool  # False for OrderItemLevel: only the changed item is listed


def parse_order_change(body: str | bytes | dict[str, Any]) -> OrderChange:
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"ORDER_CHANGE notification is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput("ORDER_CHANGE notification is not a JSON object")
    if body.get("NotificationType") not in (None, "ORDER_CHANGE"):
        raise InvalidInput(f"notification type {body.get('NotificationType')!r} is not ORDER_CHANGE")
    change = (body.get("Payload") or {}).get("OrderChangeNotification") if isinstance(body.get("Payload"), dict) else None
    notification_id = (body.get("NotificationMetadata") or {}).get("NotificationId") if isinstance(body.get("NotificationMetadata"), dict) else None
    which = f"ORDER_CHANGE notification {notification_id}" if notification_id else "ORDER_CHANGE notification"
    if not isinstance(change, dict):
        raise InvalidInput(f"{which}: field Payload.OrderChangeNotification missing")
    f, order_id, status, fulfillment = order_head(change, f"{which}, order", "AmazonOrderId", "Summary.OrderStatus",
                                                  V0_STATUS, "Summary.FulfillmentType", FULFILLED_BY_V0)
    items = _item_list(f, change, "Summary.OrderItems")
    lines = []
    for index, item in enumerate(items):
        path = f"Summary.OrderItems[{index}]"
        if not isinstance(item, dict) or not item.get("OrderItemId"):
            raise f.fail(f"{path}.OrderItemId", "missing")
        ordered = f.integer(item, "Quantity", required=True)
        shipped = f.integer(item, "QuantityShipped", default=0)
        lines.append(AmazonOrderLine(
            order_item_id=str(item["OrderItemId"]),
            sku=item.get("SellerSKU"),
            quantity_ordered=ordered,
            quantity_shipped=shipped,
            quantity_cancelled=max(0, ordered - shipped) if status is OrderStatus.CANCELED else 0,
            buyer_cancel_requested=_flag(item.get("IsBuyerRequestedCancel")),
        ))
    trigger = change.get("OrderChangeTrigger") or {}
    order = rollup(AmazonOrder(
        amazon_order_id=order_id,
        status=status,
        fulfillment=fulfillment,
        lines=tuple(lines),
        last_updated=f.time(trigger, "TimeOfOrderChange") or f.time(body, "EventTime"),
        purchase_date=f.time(change, "Summary.PurchaseDate"),
        marketplace_id=f.get(change, "Summary.MarketplaceId"),
        source="notification",
    ))
    return OrderChange(
        order=order,
        change_type=str(change.get("OrderChangeType") or ""),
        change_reason=trigger.get("ChangeReason") if isinstance(trigger, dict) else None,
        notification_id=notification_id,
        seller_id=change.get("SellerId"),
        complete=change.get("NotificationLevel") != "OrderItemLevel",
    )
