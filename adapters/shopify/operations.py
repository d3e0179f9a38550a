"""Every GraphQL document the Shopify adapter can send, in one place.

The contract tests validate each one against the Admin API 2025-01 schema (the 2026-01 forms against
that schema plus the 2026-01 deltas), and the stand-in executes exactly these texts, so nothing the
client sends is untested. All operations take variables; nothing is ever interpolated into the text.

`first:` sizes are kept small on purpose: one request may not ask for more than 1000 cost points, and
a small requested cost means little waiting for the bucket.
"""
from __future__ import annotations

from dataclasses import dataclass

SUPPORTED_VERSIONS = ("2025-01", "2026-01")

# Refund notes, hold handles and the cancel staff note carry this prefix followed by a digest of the
# caller's idempotency key: the look-before-act checks search for it.
MARKER_PREFIX = "ordersync:"


def _versioned_mutation(operation: str, field: str, input_type: str, selection: str) -> tuple[str, str]:
    """(2025-01 text, 2026-01 text) of a mutation that takes one `input`: the 2026-01 form differs
    only by carrying the caller's key as @idempotent(key:) (FACTS.md §6)."""
    forms = []
    for variables, directive in (("", ""), (", $idempotencyKey: String!", " @idempotent(key: $idempotencyKey)")):
        forms.append(f"""
mutation {operation}($input: {input_type}!{variables}) {{
  {field}(input: $input){directive} {{{selection}  }}
}}
""")
    return forms[0], forms[1]

ORDER_FIELDS = """
fragment OrderFields on Order {
  id
  name
  sourceName
  sourceIdentifier
  tags
  note
  createdAt
  cancelledAt
  cancelReason
  cancellation { staffNote }
  closed
  currencyCode
  displayFinancialStatus
  displayFulfillmentStatus
  totalReceivedSet { shopMoney { amount currencyCode } }
  totalRefundedSet { shopMoney { amount currencyCode } }
  currentTotalPriceSet { shopMoney { amount currencyCode } }
  lineItems(first: $lineItemsFirst) {
    nodes {
      id
      sku
      name
      quantity
      currentQuantity
      refundableQuantity
      unfulfilledQuantity
      originalUnitPriceSet { shopMoney { amount currencyCode } }
      variant { id inventoryItem { id } }
    }
    pageInfo { hasNextPage }
  }
  fulfillmentOrders(first: $foFirst) {
    nodes {
      id
      status
      requestStatus
      assignedLocation { location { id name fulfillmentService { handle serviceName } } }
      fulfillmentHolds { id reason reasonNotes handle }
      lineItems(first: $foLineItemsFirst) {
        nodes { id totalQuantity remainingQuantity lineItem { id } }
      }
    }
  }
  transactions(first: 5) {
    id
    kind
    status
    gateway
    amountSet { shopMoney { amount currencyCode } }
  }
  refunds(first: 10) {
    id
    note
    createdAt
    totalRefundedSet { shopMoney { amount currencyCode } }
  }
}
"""

FIND_ORDERS = (
    """
query FindOrders($search: String!, $first: Int = 2, $lineItemsFirst: Int = 20, $foFirst: Int = 4, $foLineItemsFirst: Int = 10) {
  orders(first: $first, query: $search, sortKey: CREATED_AT, reverse: true) {
    nodes { ...OrderFields }
  }
}
"""
    + ORDER_FIELDS
)

# Orders cancelled in the storefront since a time (ordersync's storefront poll): only what tells who
# cancelled, why and which Amazon order it mirrors, so a page of 50 stays far below the cost limit; the
# decision reads the whole order again (FindOrders) as for any event.
# What both storefront polls read of an order: which Amazon order it mirrors (OrderMatch reads sourceIdentifier
# or tags), where the poll's cursor goes (updatedAt), and whether it is cancelled.
POLLED_ORDER = """
fragment PolledOrder on Order {
  id
  name
  sourceIdentifier
  tags
  updatedAt
  cancelledAt
}
"""

CANCELLED_ORDERS = (
    """
query CancelledOrders($search: String!, $first: Int = 50, $after: String) {
  orders(first: $first, after: $after, query: $search, sortKey: UPDATED_AT) {
    nodes {
      ...PolledOrder
      cancelReason
      cancellation { staffNote }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""
    + POLLED_ORDER
)

# Refunds recorded on orders (ordersync's storefront refunds poll), searched one financial status at a time
# (client.refunded_orders says why). An order's `refunds` is a plain list, truncated to `first`: the client
# asks for one more refund than it reads, and each refund's lines say hasNextPage, so a list cut short is an
# error rather than a refund silently missed. With the defaults below one order costs 1 + 11 × 25 = 276
# points, so the client asks for as many orders at a time as fit REFUNDED_ORDERS_MAX_COST (two).
REFUNDS_READ = 10
REFUND_LINES_READ = 10
REFUNDED_ORDERS_MAX_COST = 600

REFUNDED_ORDERS = (
    """
query RefundedOrders($search: String!, $first: Int = 2, $after: String, $refundsFirst: Int = 11, $refundLinesFirst: Int = 10) {
  orders(first: $first, after: $after, query: $search, sortKey: UPDATED_AT) {
    nodes {
      ...PolledOrder
      refunds(first: $refundsFirst) {
        id
        createdAt
        note
        totalRefundedSet { shopMoney { amount currencyCode } }
        refundLineItems(first: $refundLinesFirst) {
          nodes { lineItem { sku } quantity restockType }
          pageInfo { hasNextPage }
        }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""
    + POLLED_ORDER
)

GET_ORDER = (
    """
query GetOrder($id: ID!, $lineItemsFirst: Int = 20, $foFirst: Int = 4, $foLineItemsFirst: Int = 10) {
  order(id: $id) { ...OrderFields }
}
"""
    + ORDER_FIELDS
)

JOB_STATUS = """
query JobStatus($id: ID!) {
  job(id: $id) { id done }
}
"""

CANCEL_ORDER_2025_01 = """
mutation CancelOrder($orderId: ID!, $reason: OrderCancelReason!, $refund: Boolean!, $restock: Boolean!,
                     $notifyCustomer: Boolean = false, $staffNote: String) {
  orderCancel(orderId: $orderId, reason: $reason, refund: $refund, restock: $restock,
              notifyCustomer: $notifyCustomer, staffNote: $staffNote) {
    job { id done }
    orderCancelUserErrors { code field message }
  }
}
"""

# 2025-07+: `refund` is deprecated in favour of refundMethod (FACTS.md §4).
CANCEL_ORDER_2026_01 = """
mutation CancelOrder($orderId: ID!, $reason: OrderCancelReason!, $restock: Boolean!,
                     $refundMethod: OrderCancelRefundMethodInput, $notifyCustomer: Boolean = false, $staffNote: String) {
  orderCancel(orderId: $orderId, reason: $reason, restock: $restock, refundMethod: $refundMethod,
              notifyCustomer: $notifyCustomer, staffNote: $staffNote) {
    job { id done }
    orderCancelUserErrors { code field message }
  }
}
"""

_REFUND_SELECTION = """
    refund {
      id
      note
      totalRefundedSet { shopMoney { amount currencyCode } }
      refundLineItems(first: 20) { nodes { lineItem { id sku } quantity restockType restocked location { id } } }
    }
    order { id displayFinancialStatus displayFulfillmentStatus }
    userErrors { field message }
"""

CREATE_REFUND_2025_01, CREATE_REFUND_2026_01 = _versioned_mutation(
    "CreateRefund", "refundCreate", "RefundInput", _REFUND_SELECTION)

SUGGEST_REFUND = """
query SuggestRefund($id: ID!, $refundLineItems: [RefundLineItemInput!], $refundShipping: Boolean) {
  order(id: $id) {
    suggestedRefund(refundLineItems: $refundLineItems, refundShipping: $refundShipping) {
      amountSet { shopMoney { amount currencyCode } }
      suggestedTransactions {
        kind
        gateway
        parentTransaction { id }
        amountSet { shopMoney { amount currencyCode } }
      }
    }
  }
}
"""

HOLD_FULFILLMENT_ORDER = """
mutation HoldFulfillmentOrder($id: ID!, $fulfillmentHold: FulfillmentOrderHoldInput!) {
  fulfillmentOrderHold(id: $id, fulfillmentHold: $fulfillmentHold) {
    fulfillmentHold { id handle reason reasonNotes }
    fulfillmentOrder { id status }
    userErrors { code field message }
  }
}
"""

RELEASE_FULFILLMENT_ORDER_HOLD = """
mutation ReleaseFulfillmentOrderHold($id: ID!, $holdIds: [ID!], $externalId: String) {
  fulfillmentOrderReleaseHold(id: $id, holdIds: $holdIds, externalId: $externalId) {
    fulfillmentOrder { id status fulfillmentHolds { id handle } }
    userErrors { code field message }
  }
}
"""

ADD_TAGS = """
mutation AddTags($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) {
    node { id ... on Order { tags } }
    userErrors { field message }
  }
}
"""

UPDATE_ORDER_NOTE = """
mutation UpdateOrderNote($input: OrderInput!) {
  orderUpdate(input: $input) {
    order { id note }
    userErrors { field message }
  }
}
"""

FIND_INVENTORY_ITEM = """
query FindInventoryItem($search: String!, $levelsFirst: Int = 20) {
  inventoryItems(first: 2, query: $search) {
    nodes {
      id
      sku
      inventoryLevels(first: $levelsFirst) {
        nodes { id location { id name } quantities(names: ["available"]) { name quantity } }
      }
    }
  }
}
"""

# A fixed bundle is a variant whose productVariantComponents list other variants with a quantity each.
# A bundle has at most 30 components (shopify.dev, "Add a variant fixed bundle"), so 50 reads all of
# them; hasNextPage would say if that ever changed. Shopify's sku: search is not exact and SKUs need not
# be unique, so two variants are read (as for inventory items): a second exact hit is an ambiguity.
KIT_COMPONENTS = """
query KitComponents($search: String!, $variantsFirst: Int = 2, $componentsFirst: Int = 50) {
  productVariants(first: $variantsFirst, query: $search) {
    nodes {
      id
      sku
      displayName
      productVariantComponents(first: $componentsFirst) {
        nodes { quantity productVariant { id sku displayName } }
        pageInfo { hasNextPage }
      }
    }
  }
}
"""

_ADJUST_SELECTION = """
    inventoryAdjustmentGroup {
      id
      reason
      referenceDocumentUri
      changes { name delta quantityAfterChange item { id } location { id } }
    }
    userErrors { code field message }
"""

ADJUST_INVENTORY_2025_01, ADJUST_INVENTORY_2026_01 = _versioned_mutation(
    "AdjustInventory", "inventoryAdjustQuantities", "InventoryAdjustQuantitiesInput", _ADJUST_SELECTION)


@dataclass(frozen=True)
class OperationSet:
    """The documents one API version speaks; `uses_idempotent_directive` says whether keys go on the wire."""

    version: str
    find_orders: str
    cancelled_orders: str
    refunded_orders: str
    get_order: str
    job_status: str
    cancel_order: str
    create_refund: str
    suggest_refund: str
    hold_fulfillment_order: str
    release_fulfillment_order_hold: str
    add_tags: str
    update_order_note: str
    find_inventory_item: str
    kit_components: str
    adjust_inventory: str
    uses_idempotent_directive: bool

    def all(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if isinstance(getattr(self, name), str) and name != "version"}


_COMMON = dict(
    find_orders=FIND_ORDERS,
    cancelled_orders=CANCELLED_ORDERS,
    refunded_orders=REFUNDED_ORDERS,
    get_order=GET_ORDER,
    job_status=JOB_STATUS,
    suggest_refund=SUGGEST_REFUND,
    hold_fulfillment_order=HOLD_FULFILLMENT_ORDER,
    release_fulfillment_order_hold=RELEASE_FULFILLMENT_ORDER_HOLD,
    add_tags=ADD_TAGS,
    update_order_note=UPDATE_ORDER_NOTE,
    find_inventory_item=FIND_INVENTORY_ITEM,
    kit_components=KIT_COMPONENTS,
)

OPERATIONS = {
    "2025-01": OperationSet(
        version="2025-01",
        cancel_order=CANCEL_ORDER_2025_01,
        create_refund=CREATE_REFUND_2025_01,
        adjust_inventory=ADJUST_INVENTORY_2025_01,
        uses_idempotent_directive=False,
        **_COMMON,
    ),
    "2026-01": OperationSet(
        version="2026-01",
        cancel_order=CANCEL_ORDER_2026_01,
        create_refund=CREATE_REFUND_2026_01,
        adjust_inventory=ADJUST_INVENTORY_2026_01,
        uses_idempotent_directive=True,
        **_COMMON,
    ),
}


def operations_for(version: str) -> OperationSet:
    """Versions before 2025-07 speak the 2025-01 forms, 2026-01 and later the 2026-01 forms (with
    @idempotent, which 2026-04 makes mandatory). 2025-07 and 2025-10 deprecate `refund` but have no
    @idempotent yet: refused rather than half-supported."""
    if not (len(version) == 7 and version[4] == "-" and version[:4].isdigit() and version[5:].isdigit()):
        raise ValueError(f"Shopify API version must look like YYYY-MM (e.g. 2025-01), not {version!r}")
    if version < "2025-07":
        return OPERATIONS["2025-01"]
    if version >= "2026-01":
        return OPERATIONS["2026-01"]
    raise ValueError(f"Shopify API version {version} is not supported: use 2025-01 (or 2025-04) or 2026-01 and later")
