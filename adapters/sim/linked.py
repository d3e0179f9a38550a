"""One scenario for both stand-ins: each order is described once, and becomes an Amazon order (in the
Amazon stand-in's scenario format) and its storefront copy (in the Shopify stand-in's), matched by the
Amazon order id as the Shopify order's source identifier and tag. The demo and the crash and fault
tests use it, so the two stand-ins always agree on what exists.

    orders:
      - id: 114-0000001-0000001
        status: Unshipped            # Amazon's order status
        fulfillment: FBM
        lines: [{sku: MUG-RED, quantity: 2, price: "12.50", shipped: 0, cancelled: 0}]
        # a line may be a kit (a fixed bundle in Shopify): its SKU's variant gets these components
        #   lines: [{sku: TEA-SET, quantity: 1, kit: [{sku: CUP, quantity: 2}, {sku: POT, quantity: 1}]}]
        cancel_reason: BuyerCanceled # with cancelled_by: MERCHANT | BUYER | AMAZON (Orders API 2026-01-01), for cancelled lines
        buyer_cancel: Ordered by mistake
        purchased: "2026-11-20T10:00:00Z"  # when the buyer bought it (default: in the last hours); updated stays recent
        storefront: {fulfilled: true, cancelled: false, dropship: None | Pending | Requested, on_hold: false, missing: false}
        return: {rma_id: R1, status: Approved}
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

SELLER = {"seller_id": "A1DEMOSELLER", "marketplace_id": "ATVPDKIKX0DER", "client_id": "amzn1.application-oa2-client.demo",
          "client_secret": "demo-client-secret", "refresh_tokens": ["Atzr|demo-refresh-token"]}
SHOP_TOKEN = "shpat_sim_local_token"
DROPSHIP_REQUEST = {"Pending": "UNSUBMITTED", "Requested": "SUBMITTED", "Processed": "ACCEPTED"}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def linked(orders: list[dict[str, Any]], now: datetime | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Amazon and the Shopify stand-in scenarios for these orders (purchased in the last hours)."""
    now = now or datetime.now(timezone.utc)
    amazon_orders, returns, shop_orders, skus = [], [], [], set()
    kits: dict[str, list[dict[str, Any]]] = {}
    for number, order in enumerate(orders, start=1):
        recent = now - timedelta(hours=2, minutes=number)
        purchased = datetime.fromisoformat(order["purchased"].replace("Z", "+00:00")) if order.get("purchased") else recent
        lines = []
        for index, line in enumerate(order["lines"], start=1):
            skus.add(line["sku"])
            if line.get("kit"):
                components = [{"sku": str(c["sku"]), "quantity": int(c.get("quantity", 1))} for c in line["kit"]]
                if kits.setdefault(line["sku"], components) != components:
                    raise ValueError(f"order {order['id']}: kit {line['sku']} has other components on another order")
                skus.update(c["sku"] for c in components)
            # 14 digits, as Amazon's: the feed schema (amzn-envelope.xsd) refuses any other item code.
            entry = {"item_id": f"{number:011d}{index:03d}", "sku": line["sku"], "asin": f"B0{line['sku'][:8]:<8}".replace(" ", "X"),
                     "quantity": line["quantity"], "unit_price": str(line.get("price", "10.00")),
                     "shipped": line.get("shipped", 0), "cancelled": line.get("cancelled", 0)}
            if entry["cancelled"]:
                entry["cancelled_by"] = order.get("cancelled_by", "MERCHANT")
                entry["cancel_reason"] = order.get("cancel_reason", "")
            if order.get("buyer_cancel") is not None:
                entry["buyer_cancel"] = {"reason": order["buyer_cancel"]}
            lines.append(entry)
        amazon_orders.append({"id": order["id"], "status": order.get("status", "Unshipped"),
                              "fulfillment": order.get("fulfillment", "FBM"), "purchased": _iso(purchased),
                              "updated": _iso(recent + timedelta(minutes=30)), "lines": lines})
        if order.get("return"):
            ret = order["return"]
            returns.append({"rma_id": ret["rma_id"], "order_id": order["id"], "status": ret.get("status", "Approved"),
                            "requested": _iso(now - timedelta(minutes=30)), "order_date": _iso(purchased),
                            "carrier": "UPS", "tracking": ret.get("tracking", f"1Z{number:016d}"),
                            "items": [{"sku": line["sku"], "quantity": line["quantity"], "reason": "CR-UNWANTED_ITEM"}
                                      for line in order["lines"]]})
        store = order.get("storefront", {})
        if store.get("missing"):
            continue
        shop: dict[str, Any] = {"id": 1000 + number, "name": f"#{1000 + number}", "source_identifier": order["id"],
                                "tags": ["amazon", f"amazon-{order['id']}"],
                                "lines": [{"sku": line["sku"], "quantity": line["quantity"], "price": str(line.get("price", "10.00")),
                                           "fulfilled": line["quantity"] if store.get("fulfilled") else line.get("shipped", 0)}
                                          for line in order["lines"]]}
        if store.get("cancelled"):
            shop["cancelled"], shop["cancel_reason"] = True, "CUSTOMER"
        dropship = store.get("dropship", "None")
        if dropship in DROPSHIP_REQUEST:
            shop["location"], shop["request_status"] = 2, DROPSHIP_REQUEST[dropship]
        if store.get("on_hold"):
            shop["on_hold"] = "held by a person"
        shop_orders.append(shop)
    amazon = {"account": SELLER, "currency": "USD", "settle_seconds": 0, "polls_to_finish": 1,
              "order_report_buyer_columns": True, "orders": amazon_orders, "returns": returns}
    shopify = {"shop": {"name": "ordersync-demo", "currency": "USD", "access_token": SHOP_TOKEN},
               "cancel_job_seconds": 0.2,
               "locations": [{"id": 1, "name": "Main warehouse"}, {"id": 2, "name": "DropCo", "fulfillment_service": "dropco"}],
               "inventory": [{"sku": sku, "item_id": 500 + i, "levels": {1: 20}, **({"components": kits[sku]} if sku in kits else {})}
                             for i, sku in enumerate(sorted(skus))],
               "orders": shop_orders}
    return amazon, shopify


def load(path: Path | str) -> list[dict[str, Any]]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return list(data.get("orders") or [])


REASONS = ["BuyerCanceled", "NoInventory", "ShippingAddressUndeliverable", "GeneralAdjustment", "PricingError",
           "CustomerExchange", "MerchandiseNotReceived", ""]


def generated(count: int, seed: int = 1) -> list[dict[str, Any]]:
    """`count` orders of every kind the rules decide: buyer requests on orders in each state, full and
    partial cancellations with each reason, shipped orders cancelled, returns approved and not."""
    rng = random.Random(seed)
    orders = []
    for number in range(1, count + 1):
        order_id = f"114-{number:07d}-{rng.randint(0, 9999999):07d}"
        quantity = rng.randint(1, 3)
        lines = [{"sku": f"SKU-{rng.randint(1, 40):03d}", "quantity": quantity, "price": f"{rng.randint(5, 60)}.{rng.randint(0, 99):02d}"}]
        if rng.random() < 0.3:
            lines.append({"sku": f"SKU-{rng.randint(41, 80):03d}", "quantity": 1, "price": "9.99"})
        order: dict[str, Any] = {"id": order_id, "lines": lines, "fulfillment": rng.choice(["FBM", "FBM", "FBA"])}
        kind = rng.choice(["buyer", "buyer", "cancel", "cancel", "partial", "shipped_cancel", "return", "quiet"])
        store: dict[str, Any] = {}
        if kind == "buyer":
            order["buyer_cancel"] = rng.choice(["Ordered by mistake", "Found it cheaper", "Delivery too slow"])
            store["dropship"] = rng.choice(["None", "None", "Pending", "Requested"])
            store["on_hold"] = rng.random() < 0.15
            if rng.random() < 0.15:
                order["status"], store["fulfilled"] = "Shipped", True
                for line in lines:
                    line["shipped"] = line["quantity"]
        elif kind in ("cancel", "shipped_cancel"):
            order["status"] = "Canceled"
            order["cancel_reason"] = rng.choice(REASONS)
            order["cancelled_by"] = "MERCHANT"
            for line in lines:
                line["cancelled"] = line["quantity"]
            store["fulfilled"] = kind == "shipped_cancel"
        elif kind == "partial":
            order["cancel_reason"] = rng.choice(REASONS[:-1])
            lines[0]["cancelled"] = 1 if lines[0]["quantity"] > 1 or len(lines) > 1 else 0
            if not lines[0]["cancelled"]:
                lines.append({"sku": "SKU-099", "quantity": 1, "price": "5.00", "cancelled": 1})
        elif kind == "return":
            order["status"] = "Shipped"
            store["fulfilled"] = True
            for line in lines:
                line["shipped"] = line["quantity"]
            order["return"] = {"rma_id": f"RMA{number:07d}", "status": rng.choice(["Approved", "Approved", "Pending"])}
        order["storefront"] = store
        orders.append(order)
    return orders
