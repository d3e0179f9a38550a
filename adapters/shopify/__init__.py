"""Shopify Admin GraphQL adapter: `ShopifyClient(ShopifyConfig(shop=...), access_token)`.

See docs/shopify.md. The stand-in that speaks the same API on loopback is `adapters.sim.shopify`."""
from adapters.shopify.client import (
    ERROR_CODES,
    LineSelection,
    OrderMatch,
    OrderNotFound,
    ShopifyClient,
    ShopifyConfig,
    ShopifyRejected,
)
from adapters.shopify.models import (
    ActionResult,
    DropshipStatus,
    OrderStatus,
    ShippingStatus,
    StorefrontOrder,
)

__all__ = [
    "ERROR_CODES", "ActionResult", "DropshipStatus", "LineSelection", "OrderMatch", "OrderNotFound", "OrderStatus",
    "ShippingStatus", "ShopifyClient", "ShopifyConfig", "ShopifyRejected", "StorefrontOrder",
]
