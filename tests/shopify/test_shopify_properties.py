"""Whatever sequence of partial cancels and refunds the rules ask for, the client either carries it
out or refuses it with a permanent, coded error; the shop never ends up refunding more than was paid,
and every unit cancelled is back in stock exactly once."""
from __future__ import annotations

import copy
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.errors import PermanentError
from adapters.shopify import LineSelection, ShopifyClient, ShopifyConfig
from adapters.sim.shopify import create_server

from .conftest import SHOP, TOKEN

ORDER = "gid://shopify/Order/1001"  # MUG-RED × 3 at 12.50, MUG-BLUE × 1 at 14.00, paid 51.50

step = st.one_of(
    st.tuples(st.just("cancel"), st.sampled_from(["MUG-RED", "MUG-BLUE", "NOPE"]), st.integers(-1, 4)),
    st.tuples(st.just("refund_amount"), st.decimals("0", "60", places=2)),
    st.tuples(st.just("refund_line"), st.sampled_from(["MUG-RED", "MUG-BLUE"]), st.integers(0, 4)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=5), replay=st.booleans())
def test_any_sequence_of_partial_cancels_and_refunds_keeps_the_books_straight(steps: list, replay: bool) -> None:
    with create_server(scenario=copy.deepcopy(SHOP)) as sim, \
            ShopifyClient(ShopifyConfig(shop=sim.base_url), TOKEN) as client:
        cancelled_units = {"MUG-RED": 0, "MUG-BLUE": 0}
        for index, action in enumerate(steps):
            key = f"decision-{index}"
            for attempt in range(2 if replay else 1):
                try:
                    if action[0] == "cancel":
                        result = client.cancel_lines(ORDER, [LineSelection(action[2], sku=action[1])], idempotency_key=key)
                        if result.changed:
                            cancelled_units[action[1]] += action[2]
                    elif action[0] == "refund_amount":
                        client.refund(ORDER, amount=action[1], idempotency_key=key)
                    else:
                        client.refund(ORDER, lines=[LineSelection(action[2], sku=action[1])], idempotency_key=key)
                except PermanentError as refused:
                    assert refused.code, refused
                    assert attempt == 0, f"the replay of a successful {action} was refused: {refused}"
                    break
        order = client.get_order(ORDER)
        assert Decimal("0") <= order.refunded_total <= order.paid_total
        for line in order.line_items:
            assert 0 <= line.current_quantity <= line.quantity
        state = sim.store
        assert state.levels[(501, 1)] == 10 + cancelled_units["MUG-RED"]
        assert state.levels[(502, 1)] == 3 + cancelled_units["MUG-BLUE"]
