"""The fact a rule reads, built from an event's payload and the storefront copy: the parts computed here."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from adapters.shopify.models import DropshipStatus, LineItem, OrderStatus, ShippingStatus, StorefrontOrder
from daemon.pipeline.fact_builder import build_fact


def _storefront(*lines: tuple[str, int, int, int]) -> StorefrontOrder:
    """Lines as (sku, quantity, current quantity, unfulfilled quantity)."""
    items = tuple(LineItem(id=f"gid://shopify/LineItem/{n}", sku=sku, name=sku, quantity=quantity, current_quantity=current,
                           refundable_quantity=current, unfulfilled_quantity=unfulfilled,
                           fulfilled_quantity=quantity - unfulfilled - (quantity - current), unit_price=Decimal("10.00"),
                           inventory_item_id=None)
                  for n, (sku, quantity, current, unfulfilled) in enumerate(lines, 1))
    return StorefrontOrder(id="gid://shopify/Order/1", name="#1", amazon_order_id=None, source_identifier=None, tags=(),
                           note=None, shipping_status=ShippingStatus.UNSHIPPED, order_status=OrderStatus.IN_PROCESS,
                           dropship_status=DropshipStatus.NONE, financial_status="PAID", fulfillment_status="UNFULFILLED",
                           currency="USD", paid_total=Decimal("30.00"), refunded_total=Decimal("0"),
                           current_total=Decimal("30.00"), cancelled=False, cancelled_at=None, cancel_reason=None,
                           cancel_staff_note=None, closed=False, line_items=items, fulfillment_orders=())


def _partial(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {"origin": "amazon", "reason_code": "NoInventory", "line_count": len(lines), "lines_cancelled": 0,
            "units_ordered": sum(l["quantity"] for l in lines), "units_cancelled": sum(l["cancelled"] for l in lines),
            "lines": lines}


def _fact(payload: dict[str, Any], storefront: StorefrontOrder, kind: str = "order_cancelled") -> dict[str, Any]:
    return build_fact(kind, "acme", "111-1", payload, storefront, {})


def test_units_refunded_as_unfulfilled_are_no_longer_in_the_storefront_when_amazon_cancels_them() -> None:
    payload = _partial([{"sku": "MUG", "quantity": 2, "shipped": 0, "cancelled": 1},
                        {"sku": "CAP", "quantity": 1, "shipped": 0, "cancelled": 0}])
    assert _fact(payload, _storefront(("MUG", 2, 1, 1), ("CAP", 1, 1, 1)))["cancelled_units_in_storefront"] is False
    # not refunded there: the cancelled mug is still to ship
    assert _fact(payload, _storefront(("MUG", 2, 2, 2), ("CAP", 1, 1, 1)))["cancelled_units_in_storefront"] is True


def test_a_refund_of_a_shipped_unit_does_not_hide_a_cancelled_unshipped_one() -> None:
    # Line of 2: one shipped and refunded as a return in Shopify (current 1), the other cancelled on Amazon. A
    # whole-order count (1 held, 1 open) would call it reflected; per SKU, Amazon left 0 to ship and Shopify has 1.
    payload = _partial([{"sku": "MUG", "quantity": 2, "shipped": 1, "cancelled": 1},
                        {"sku": "CAP", "quantity": 1, "shipped": 0, "cancelled": 0}])
    assert _fact(payload, _storefront(("MUG", 2, 1, 1), ("CAP", 1, 1, 1)))["cancelled_units_in_storefront"] is True


def test_only_a_partial_amazon_cancellation_carries_the_field() -> None:
    whole = _partial([{"sku": "MUG", "quantity": 2, "shipped": 0, "cancelled": 2}])
    storefront = _storefront(("MUG", 2, 2, 2))
    assert "cancelled_units_in_storefront" not in _fact(whole, storefront)
    partial = _partial([{"sku": "MUG", "quantity": 2, "shipped": 0, "cancelled": 1}])
    assert "cancelled_units_in_storefront" not in _fact(partial, storefront, kind="buyer_cancel_requested")
    assert "cancelled_units_in_storefront" not in _fact(partial, storefront, kind="return_reported")
