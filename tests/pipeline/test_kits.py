"""DOMAIN rule 10 through the pipeline: a kit (a Shopify fixed bundle) on an approved return becomes its
component items on the RMA, each carrying the kit's SKU, and never the kit itself; a plain line beside
it stays as Amazon reported it. Both stand-ins on loopback, the store on SQLite (and PostgreSQL when
ORDERSYNC_TEST_PG_URL is set)."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest

from adapters.errors import PermanentError, TransientError
from daemon.pipeline.executors import create_rma
from daemon.pipeline.jobs import utcnow

from .harness import ACCOUNT
from .test_pipeline import Harness, running

TEA_SET = [{"sku": "CUP-01", "quantity": 2}, {"sku": "POT-01", "quantity": 1}]
REASON = "CR-UNWANTED_ITEM"  # what linked() gives every returned item
KIT_AND_PLAIN = {"id": "114-0000001-0000001", "status": "Shipped", "storefront": {"fulfilled": True},
                 "lines": [{"sku": "TEA-SET-01", "quantity": 1, "price": "40.00", "shipped": 1, "kit": TEA_SET},
                           {"sku": "SPOON-01", "quantity": 2, "price": "3.00", "shipped": 2}],
                 "return": {"rma_id": "RMA-KIT-1", "status": "Approved", "tracking": "1ZKIT0001"}}
TWO_KITS = {"id": "114-0000002-0000002", "status": "Shipped", "storefront": {"fulfilled": True},
            "lines": [{"sku": "TEA-SET-01", "quantity": 2, "price": "40.00", "shipped": 2, "kit": TEA_SET}],
            "return": {"rma_id": "RMA-KIT-2", "status": "Approved"}}
ORDERS = [KIT_AND_PLAIN, TWO_KITS]


@pytest.fixture
def harness(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    with running(ORDERS, db_url, tmp_path) as h:
        yield h


def rma_lines(harness: Harness, amazon_order_id: str) -> list[tuple[str, int, str | None, str | None]]:
    [rma] = harness.store.rmas_of(ACCOUNT, amazon_order_id)
    return [(l.sku, l.quantity, l.reason, l.kit_parent_sku) for l in harness.store.rma_lines(rma.id)]


def kit_lookups(harness: Harness) -> list[dict[str, Any]]:
    return [e for e in harness.standins.shopify.journal.entries() if e.get("kind") == "request" and e.get("operation") == "KitComponents"]


def create_rma_action(harness: Harness, amazon_order_id: str) -> Any:
    decision = harness.decision_of(amazon_order_id, "return_reported")
    [action] = [a for a in harness.store.actions_of(decision.decision_id) if a.type == "create_rma"]
    return action


def test_a_returned_kit_becomes_its_components_on_the_rma_and_a_plain_line_stays(harness: Harness) -> None:
    harness.drive()
    decision = harness.decision_of(KIT_AND_PLAIN["id"], "return_reported")
    assert decision.record["rule"] == "create-rma-for-approved-kit-return"
    assert decision.record["fact"]["has_kit_items"] is True
    assert rma_lines(harness, KIT_AND_PLAIN["id"]) == [
        ("CUP-01", 2, REASON, "TEA-SET-01"),
        ("POT-01", 1, REASON, "TEA-SET-01"),
        ("SPOON-01", 2, REASON, None),
    ]
    [rma] = harness.store.rmas_of(ACCOUNT, KIT_AND_PLAIN["id"])
    assert (rma.amazon_rma_id, rma.status, rma.resolution) == ("RMA-KIT-1", "Open", "Refund")
    assert rma.note == "Return label tracking number: 1ZKIT0001"
    action = create_rma_action(harness, KIT_AND_PLAIN["id"])
    assert action.status == "done" and action.result["kits"] == ["TEA-SET-01"]


def test_each_component_quantity_is_the_kits_returned_quantity_times_its_units_per_kit(harness: Harness) -> None:
    harness.drive()
    assert rma_lines(harness, TWO_KITS["id"]) == [("CUP-01", 4, REASON, "TEA-SET-01"), ("POT-01", 2, REASON, "TEA-SET-01")]


def test_each_sku_is_looked_up_once_per_decide_run_and_per_rma_and_a_replay_writes_nothing_more(harness: Harness) -> None:
    harness.drive()
    # Deciding asks until it finds a kit, once per SKU in a run: both returns are decided in one run and
    # both start with TEA-SET-01. Carrying each RMA out asks for every SKU on it (RMA-KIT-1: TEA-SET-01 and
    # SPOON-01; RMA-KIT-2: TEA-SET-01).
    assert len(kit_lookups(harness)) == 1 + 3
    action = create_rma_action(harness, KIT_AND_PLAIN["id"])
    before = rma_lines(harness, KIT_AND_PLAIN["id"])
    # the action carried out again (as after a crash between the store's write and the action's completion)
    again = create_rma(harness.pipeline.context, action)
    assert again["created"] is False and rma_lines(harness, KIT_AND_PLAIN["id"]) == before


def test_a_shopify_failure_during_the_lookups_writes_no_rma_and_the_action_is_retried(harness: Harness,
                                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real = harness.shopify.kit_components
    asked: list[str] = []

    def flaky(sku: str) -> Any:
        asked.append(sku)
        if sku == "SPOON-01":  # after TEA-SET-01 answered: half the lookups done
            raise TransientError("Shopify answered 503", code="HTTP_503")
        return real(sku)

    monkeypatch.setattr(harness.shopify, "kit_components", flaky)
    pipeline = harness.pipeline
    while pipeline.poll_orders():
        pass
    pipeline.poll_returns()
    pipeline.decide()
    while harness.dispatcher.run():
        pass
    # deciding stopped at the kit; carrying the RMA out failed on the plain line, after the kit's lookup
    assert "SPOON-01" in asked and asked[asked.index("SPOON-01") - 1] == "TEA-SET-01"
    assert harness.store.rmas_of(ACCOUNT, KIT_AND_PLAIN["id"]) == []
    action = create_rma_action(harness, KIT_AND_PLAIN["id"])
    assert (action.status, action.attempts) == ("pending", 1) and "503" in (action.last_error or "")
    assert not harness.store.failed_orders(ACCOUNT)

    monkeypatch.setattr(harness.shopify, "kit_components", real)
    harness.dispatcher.clock = lambda: utcnow() + timedelta(minutes=5)  # past the retry's backoff
    harness.drive(polls=False)
    assert create_rma_action(harness, KIT_AND_PLAIN["id"]).status == "done"
    assert [line[0] for line in rma_lines(harness, KIT_AND_PLAIN["id"])] == ["CUP-01", "POT-01", "SPOON-01"]


def test_a_return_without_a_kit_is_decided_as_a_plain_return(db_url: str, tmp_path: Path) -> None:
    plain = {"id": "114-0000003-0000003", "status": "Shipped", "storefront": {"fulfilled": True},
             "lines": [{"sku": "SPOON-01", "quantity": 1, "price": "3.00", "shipped": 1}],
             "return": {"rma_id": "RMA-PLAIN-1", "status": "Approved"}}
    with running([plain], db_url, tmp_path) as h:
        h.drive()
        decision = h.decision_of(plain["id"], "return_reported")
        assert decision.record["rule"] == "create-rma-for-approved-return"
        assert decision.record["fact"]["has_kit_items"] is False
        assert rma_lines(h, plain["id"]) == [("SPOON-01", 1, REASON, None)]


def test_a_kit_component_without_a_sku_puts_the_order_in_the_error_view_saying_what_to_fix(harness: Harness) -> None:
    shop = harness.standins.shopify
    with shop.lock:  # someone cleared the teapot's SKU in Shopify
        pot = next(item for item, sku in shop.store.items.items() if sku == "POT-01")
        shop.store.items[pot] = None
    harness.drive()
    assert harness.store.rmas_of(ACCOUNT, KIT_AND_PLAIN["id"]) == []
    failed = {o.amazon_order_id: o for o in harness.store.failed_orders(ACCOUNT)}
    order = failed[KIT_AND_PLAIN["id"]]
    # still decided as a kit (Shopify says it is a bundle, only not of what)
    assert harness.decision_of(KIT_AND_PLAIN["id"], "return_reported").record["rule"] == "create-rma-for-approved-kit-return"
    assert order.sync_status == "Failed Refund"
    assert "TEA-SET-01" in (order.last_error or "") and "Give that variant a SKU in Shopify" in (order.last_error or "")


def test_a_kit_lookup_shopify_cannot_answer_does_not_stop_deciding_and_the_rma_fails_saying_why(harness: Harness) -> None:
    shop = harness.standins.shopify
    with shop.lock:  # an old plain listing carries the bundle's SKU too (Shopify allows it)
        shop.store.items[9999] = "TEA-SET-01"
    harness.drive()
    decision = harness.decision_of(KIT_AND_PLAIN["id"], "return_reported")
    # Shopify could not say whether it is a kit: decided without the field, as a plain return
    assert "has_kit_items" not in decision.record["fact"]
    assert decision.record["rule"] == "create-rma-for-approved-return"
    assert harness.store.rmas_of(ACCOUNT, KIT_AND_PLAIN["id"]) == []  # no RMA listing the bundle itself
    order = {o.amazon_order_id: o for o in harness.store.failed_orders(ACCOUNT)}[KIT_AND_PLAIN["id"]]
    assert order.sync_status == "Failed Refund" and "SKU TEA-SET-01 belongs to several product variants" in (order.last_error or "")
    # the account's other events were decided as usual
    assert harness.decision_of(TWO_KITS["id"], "return_reported").record["rule"] == "create-rma-for-approved-return"


def test_a_kit_lookup_refused_for_good_leaves_the_rest_of_the_run_decided(db_url: str, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cancelled = {"id": "114-0000009-0000009", "status": "Canceled", "cancel_reason": "BuyerCanceled", "cancelled_by": "BUYER",
                 "lines": [{"sku": "MUG-RED", "quantity": 1, "price": "5.00", "cancelled": 1}]}
    with running([KIT_AND_PLAIN, cancelled], db_url, tmp_path) as h:
        def denied(sku: str) -> Any:  # the app's token lacks read_products
            raise PermanentError("Shopify KitComponents: Access denied for productVariants field.", code="ACCESS_DENIED")
        monkeypatch.setattr(h.shopify, "kit_components", denied)
        h.drive()
        assert h.decision_of(cancelled["id"], "order_cancelled").record["rule"] == "mirror-cancellation-with-restock"
        assert "has_kit_items" not in h.decision_of(KIT_AND_PLAIN["id"], "return_reported").record["fact"]
        order = {o.amazon_order_id: o for o in h.store.failed_orders(ACCOUNT)}[KIT_AND_PLAIN["id"]]
        assert "Access denied for productVariants" in (order.last_error or "")
