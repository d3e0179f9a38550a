"""Refunds Amazon made reach the storefront (DOMAIN: "the seller, in Seller Central ... notice it and mirror it
in the storefront"): the refunds poll reads Amazon's Finances API, and the storefront records what it does not
show yet. ordersync's own refunds come back the same way and need nothing: Amazon's and the storefront's
refunds are compared as totals."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from adapters.amazon.models import AmazonRefund, AmazonRefundItem, Parsed, RecordError
from daemon.pipeline.events import AmazonRefundSeen
from daemon.store import open_store

from .harness import ACCOUNT, all_decisions
from .test_pipeline import NOT_IN_SHOP, Harness, _refund, running

KETTLE = {"id": "114-0000021-0000021", "status": "Shipped", "storefront": {"fulfilled": True},
          "lines": [{"sku": "KETTLE-01", "quantity": 1, "price": "40.00", "shipped": 1}]}
TOASTER = {"id": "114-0000022-0000022", "status": "Shipped", "storefront": {"fulfilled": True},
           "lines": [{"sku": "TOAST-01", "quantity": 1, "price": "25.00", "shipped": 1}]}
RUG = {"id": "114-0000023-0000023", "status": "Shipped", "storefront": {"fulfilled": True},
       "lines": [{"sku": "RUG-01", "quantity": 1, "price": "60.00", "shipped": 1}]}
NOT_IN_SHOP_SHIPPED = {**NOT_IN_SHOP, "buyer_cancel": None, "status": "Shipped",
                       "lines": [{**NOT_IN_SHOP["lines"][0], "shipped": 1}]}


def refund_in_seller_central(harness: Harness, order: dict[str, Any], amount: str) -> None:
    item = harness.standins.amazon.orders[order["id"]]["lines"][0]["item_id"]
    harness.standins.amazon.refund_in_seller_central(order["id"], {item: amount})


def amazon_refund_decisions(harness: Harness, order: dict[str, Any]) -> list[Any]:
    return [d for d in all_decisions(harness.store) if d.record["amazon_order_id"] == order["id"]
            and d.record["event"] == "refund_requested" and d.record["fact"].get("origin") == "amazon"]


def storefront_refunds(harness: Harness, order: dict[str, Any]) -> list[Decimal]:
    return [Decimal(refund["amount"]) for refund in harness.standins.shop_order(order["id"])["refunds"]]


def test_refunds_made_in_seller_central_are_recorded_in_the_storefront_once_each(db_url: str, tmp_path: Path) -> None:
    with running([KETTLE, NOT_IN_SHOP_SHIPPED], db_url, tmp_path) as harness:
        harness.drive()
        refund_in_seller_central(harness, KETTLE, "15.00")
        refund_in_seller_central(harness, NOT_IN_SHOP_SHIPPED, "4.00")
        harness.drive()

        [decision] = amazon_refund_decisions(harness, KETTLE)
        assert decision.record["rule"] == "mirror-amazon-refund"
        fact = decision.record["fact"]
        # Amazon's Finances API gives amounts as JSON numbers (-15.0): compared as amounts, not as text
        assert [Decimal(fact[name]) for name in ("refund_amount", "amazon_refunded_total", "refund_missing_in_storefront")] == [
            Decimal("15.00")] * 3
        assert storefront_refunds(harness, KETTLE) == [Decimal("15.00")]
        assert f"ordersync decision {decision.decision_id}" in harness.standins.shop_order(KETTLE["id"])["refunds"][0]["note"]
        assert harness.store.get_order(ACCOUNT, KETTLE["id"]).amazon_refunded == Decimal("15.00")
        # An order with no storefront copy has nothing to record it on, and is not an error.
        [elsewhere] = amazon_refund_decisions(harness, NOT_IN_SHOP_SHIPPED)
        assert elsewhere.record["rule"] == "amazon-refund-of-order-not-in-storefront"
        assert harness.store.failed_orders(ACCOUNT) == []

        # Read again (each poll re-reads the last 48 hours), the refund is neither stored nor counted again.
        assert harness.pipeline.poll_amazon_refunds() == 0
        harness.drive()
        assert len(amazon_refund_decisions(harness, KETTLE)) == 1
        assert harness.store.get_order(ACCOUNT, KETTLE["id"]).amazon_refunded == Decimal("15.00")

        # A second refund on Amazon is recorded in full: the storefront showed the first one.
        refund_in_seller_central(harness, KETTLE, "5.50")
        harness.drive()
        second = [d for d in amazon_refund_decisions(harness, KETTLE) if d.decision_id != decision.decision_id]
        assert [(d.record["rule"], Decimal(d.record["fact"]["amazon_refunded_total"])) for d in second] == [
            ("mirror-amazon-refund", Decimal("20.50"))]
        assert storefront_refunds(harness, KETTLE) == [Decimal("15.00"), Decimal("5.50")]
        assert [m["field"] for m in harness.mutations(KETTLE["id"])].count("refundCreate") == 2


def test_the_echo_of_a_refund_sent_from_here_needs_nothing_in_the_storefront(db_url: str, tmp_path: Path) -> None:
    with running([TOASTER], db_url, tmp_path) as harness:
        harness.drive()
        _refund(harness, TOASTER["id"], "5.00", "operator")  # the storefront first, then Amazon's feed
        assert [round(r["principal"], 2) for r in harness.standins.amazon.orders[TOASTER["id"]]["refunds"]] == [5.0]
        harness.drive()  # the refunds poll reads the feed's refund back from Amazon

        [echo] = amazon_refund_decisions(harness, TOASTER)
        assert echo.record["rule"] == "amazon-refund-already-in-storefront"
        fact = echo.record["fact"]
        assert (Decimal(fact["refunded_total"]), Decimal(fact["refund_missing_in_storefront"])) == (Decimal(5), Decimal(0))
        assert storefront_refunds(harness, TOASTER) == [Decimal("5.00")]  # refunded once, not twice
        assert [m["field"] for m in harness.mutations(TOASTER["id"])].count("refundCreate") == 1


def test_only_what_the_storefront_does_not_show_of_an_amazon_refund_is_recorded(db_url: str, tmp_path: Path) -> None:
    with running([RUG], db_url, tmp_path) as harness:
        harness.drive()
        # A person recorded part of it in Shopify by hand, then refunded the whole order in Seller Central.
        harness.shopify.refund(harness.shopify.find_order(RUG["id"]), idempotency_key="by-hand", amount=Decimal("20.00"))
        refund_in_seller_central(harness, RUG, "60.00")
        harness.drive()

        [decision] = amazon_refund_decisions(harness, RUG)
        assert decision.record["rule"] == "mirror-amazon-refund"
        assert Decimal(decision.record["fact"]["refund_missing_in_storefront"]) == Decimal("40.00")
        assert storefront_refunds(harness, RUG) == [Decimal("20.00"), Decimal("40.00")]  # refunded in full, not 80.00


def amazon_refund(order_id: str, posted: str, *amounts: str) -> AmazonRefund:
    return AmazonRefund(order_id, posted, "USD", tuple(
        AmazonRefundItem(f"{index:014d}", f"SKU-{index}", f"{posted}-{index}", 1, Decimal(amount))
        for index, amount in enumerate(amounts)))


def test_each_refund_counts_once_towards_the_orders_amazon_total_however_often_it_is_read(db_url: str) -> None:
    """The store counts a refund into the order's total as it stores its event, once: a refund read again
    (the poll re-reads 48 hours), or twice in one answer, adds nothing; another order's refunds are its own."""
    first, second = amazon_refund("A-1", "2026-12-01T10:00:00Z", "10.00"), amazon_refund("A-1", "2026-12-01T11:00:00Z", "2.50", "0.50")
    other = amazon_refund("B-2", "2026-12-01T10:30:00Z", "7.00")
    with open_store(db_url, migrate=True) as store:
        stored = store.ingest_amazon_refunds(ACCOUNT, [AmazonRefundSeen(r) for r in (first, first, other)], ("amazon_refunds", "c1"))
        assert stored == [True, False, True]
        stored = store.ingest_amazon_refunds(ACCOUNT, [AmazonRefundSeen(r) for r in (first, second)], ("amazon_refunds", "c2"))
        assert stored == [False, True]
        assert store.amazon_refunded(ACCOUNT, ["A-1", "B-2", "C-3"]) == {"A-1": Decimal("13.00"), "B-2": Decimal("7.00")}
        totals = {e.natural_key: e.payload["amazon_refunded_total"] for e in store.undecided_events(ACCOUNT)}
        assert sorted(Decimal(t) for t in totals.values()) == [Decimal("7.00"), Decimal("10.00"), Decimal("13.00")]
        assert store.cursor(ACCOUNT, "amazon_refunds") == "c2"


def test_a_refund_of_many_items_has_a_natural_key_that_fits_its_column() -> None:
    many = amazon_refund("114-0000030-0000030", "2026-12-01T10:00:00Z", *["1.00"] * 40)
    key = AmazonRefundSeen(many).natural_key
    assert len(key) <= 300 and key == AmazonRefundSeen(many).natural_key  # the same refund read again: same key
    assert key != AmazonRefundSeen(amazon_refund("114-0000030-0000030", "2026-12-01T10:00:00Z", *["1.00"] * 39)).natural_key


def test_an_orders_earlier_refunds_on_amazon_count_so_a_new_one_is_recorded_in_full(db_url: str, tmp_path: Path) -> None:
    """40 days ago, before ordersync watched, Amazon refunded 20.00 and a person recorded it in Shopify by hand.
    A new 15.00 refund in Seller Central must be recorded in full: the first refund ordersync meets of an order
    brings the order's whole history on Amazon with it, so the totals compare like with like."""
    with running([RUG], db_url, tmp_path) as harness:
        harness.drive()
        item = harness.standins.amazon.orders[RUG["id"]]["lines"][0]["item_id"]
        harness.standins.amazon.refund_in_seller_central(RUG["id"], {item: "20.00"},
                                                         posted=datetime.now(timezone.utc) - timedelta(days=40))
        harness.shopify.refund(harness.shopify.find_order(RUG["id"]), idempotency_key="by-hand", amount=Decimal("20.00"))
        refund_in_seller_central(harness, RUG, "15.00")
        harness.drive()

        decided = {Decimal(d.record["fact"]["refund_amount"]): d for d in amazon_refund_decisions(harness, RUG)}
        assert decided[Decimal("20")].record["rule"] == "amazon-refund-already-in-storefront"
        assert decided[Decimal("15")].record["rule"] == "mirror-amazon-refund"
        assert Decimal(decided[Decimal("15")].record["fact"]["amazon_refunded_total"]) == Decimal("35.00")
        assert storefront_refunds(harness, RUG) == [Decimal("20.00"), Decimal("15.00")]


def test_refunds_of_another_marketplace_are_not_this_accounts(db_url: str, tmp_path: Path) -> None:
    """Finances lists the seller's refunds across the region: an Amazon.ca refund is not the US account's."""
    with running([KETTLE, TOASTER], db_url, tmp_path) as harness:
        harness.drive()
        with harness.standins.amazon.lock:
            harness.standins.amazon.orders[TOASTER["id"]]["marketplace"] = "A2EUQ1WTGCTBG2"  # Amazon.ca
        refund_in_seller_central(harness, TOASTER, "5.00")
        refund_in_seller_central(harness, KETTLE, "5.00")
        harness.drive()
        assert amazon_refund_decisions(harness, TOASTER) == [] and len(amazon_refund_decisions(harness, KETTLE)) == 1
        assert storefront_refunds(harness, TOASTER) == []


def test_a_refund_in_another_currency_than_the_storefront_order_goes_to_the_error_view(db_url: str, tmp_path: Path) -> None:
    with running([KETTLE], db_url, tmp_path) as harness:
        harness.drive()
        with harness.standins.amazon.lock:
            harness.standins.amazon.orders[KETTLE["id"]]["currency"] = "CAD"
        refund_in_seller_central(harness, KETTLE, "15.00")
        harness.drive()
        [decision] = amazon_refund_decisions(harness, KETTLE)
        assert decision.record["rule"] == "mirror-amazon-refund"
        [failed] = harness.store.failed_orders(ACCOUNT)
        assert failed.sync_status == "Failed Refund" and "the refund is in CAD" in failed.last_error
        assert storefront_refunds(harness, KETTLE) == []  # 15.00 CAD is not 15.00 USD


def test_a_refund_event_amazon_sent_that_cannot_be_read_puts_its_order_in_the_error_view(db_url: str, tmp_path: Path) -> None:
    with running([KETTLE], db_url, tmp_path) as harness:
        harness.drive()
        unreadable = RecordError("refund event #1 on page 1", "field ShipmentItemAdjustmentList[0].OrderItemId: missing",
                                 order_id=KETTLE["id"])
        assert harness.pipeline.ingest_amazon_refunds(Parsed(errors=[unreadable]), "2026-12-01T00:00:00Z") == 0
        [failed] = harness.store.failed_orders(ACCOUNT)
        assert (failed.amazon_order_id, failed.sync_status) == (KETTLE["id"], "Failed Refund")
        assert "OrderItemId: missing" in failed.last_error and "record any the storefront does not show" in failed.last_error


def test_the_first_refunds_poll_reads_its_30_days_in_slices_that_leave_no_gap(db_url: str, tmp_path: Path) -> None:
    with running([KETTLE], db_url, tmp_path) as harness:
        harness.drive()
        windows = listing_windows(harness)
        assert len(windows) >= 60  # 30 days and more, 12 hours at a time
        assert all(after < before for after, before in windows)
        assert all(windows[i][1] == windows[i + 1][0] for i in range(len(windows) - 1))  # each starts where the last ended
        now = datetime.now(timezone.utc)
        assert timedelta(days=30) <= now - windows[0][0] < timedelta(days=31)
        assert timedelta(minutes=2) < now - windows[-1][1] < timedelta(minutes=4)
        # the next run starts from the cursor: the last 48 hours again
        harness.pipeline.poll_amazon_refunds()
        again = listing_windows(harness)[len(windows)][0]
        assert timedelta(hours=47) < datetime.now(timezone.utc) - again <= timedelta(hours=48, minutes=1)


def listing_windows(harness: Harness) -> list[tuple[datetime, datetime]]:
    """The windows the refunds poll asked Amazon for, in order (first pages only)."""
    def arg(entry: dict[str, Any], name: str) -> datetime:
        value = entry["query"][name]
        text = value[0] if isinstance(value, list) else value
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return [(arg(e, "PostedAfter"), arg(e, "PostedBefore")) for e in harness.standins.amazon.journal.entries()
            if e["operation"] == "listFinancialEvents" and "NextToken" not in e["query"]]


def test_an_a_to_z_claim_is_recorded_in_the_storefront_and_counts_against_a_later_refund(db_url: str, tmp_path: Path) -> None:
    """Amazon lists an A-to-z Guarantee claim it granted apart from refunds (GuaranteeClaimEventList): the buyer
    got the money back all the same, so the storefront records it, and a refund the operator asks for later may
    not pay it again (DOMAIN 12)."""
    with running([KETTLE], db_url, tmp_path) as harness:
        harness.drive()
        item = harness.standins.amazon.orders[KETTLE["id"]]["lines"][0]["item_id"]
        harness.standins.amazon.guarantee_claim(KETTLE["id"], {item: "30.00"})
        harness.drive()

        [decision] = amazon_refund_decisions(harness, KETTLE)
        assert (decision.record["rule"], decision.record["fact"]["amazon_refund_kind"]) == ("mirror-amazon-refund", "guarantee_claim")
        assert storefront_refunds(harness, KETTLE) == [Decimal("30.00")]
        assert harness.standins.shop_order(KETTLE["id"])["refunds"][0]["note"].startswith("Amazon A-to-z Guarantee claim")
        assert harness.store.get_order(ACCOUNT, KETTLE["id"]).amazon_refunded == Decimal("30.00")

        _refund(harness, KETTLE["id"], "20.00", "after-the-claim")  # 10.00 is all the buyer has left to get back
        [operators] = [d for d in all_decisions(harness.store) if d.record["amazon_order_id"] == KETTLE["id"]
                       and d.record["fact"].get("origin") == "operator"]
        assert operators.record["rule"] == "refuse-over-refund"
        assert storefront_refunds(harness, KETTLE) == [Decimal("30.00")]
        assert [r["reason"] for r in harness.standins.amazon.orders[KETTLE["id"]]["refunds"]] == ["GuaranteeClaim"]


def test_a_chargeback_is_recorded_and_its_reversal_goes_to_the_error_view(db_url: str, tmp_path: Path) -> None:
    """A chargeback (ChargebackEventList) is money the buyer got back; reversed, the payment is the seller's again,
    which Shopify cannot show (a refund cannot be taken back), so a person corrects the books."""
    with running([TOASTER], db_url, tmp_path) as harness:
        harness.drive()
        item = harness.standins.amazon.orders[TOASTER["id"]]["lines"][0]["item_id"]
        harness.standins.amazon.chargeback(TOASTER["id"], {item: "25.00"})
        harness.drive()
        assert storefront_refunds(harness, TOASTER) == [Decimal("25.00")]
        assert harness.standins.shop_order(TOASTER["id"])["refunds"][0]["note"].startswith("Amazon chargeback")
        assert harness.store.failed_orders(ACCOUNT) == []

        harness.standins.amazon.chargeback_reversal(TOASTER["id"], {item: "25.00"})
        harness.drive()
        reversal = [d for d in amazon_refund_decisions(harness, TOASTER) if Decimal(d.record["fact"]["refund_amount"]) < 0]
        assert [d.record["rule"] for d in reversal] == ["amazon-refund-taken-back"]
        assert harness.store.get_order(ACCOUNT, TOASTER["id"]).amazon_refunded == Decimal("0.00")
        [failed] = harness.store.failed_orders(ACCOUNT)
        assert failed.sync_status == "Failed Refund" and "amazon_refund_taken_back" in failed.last_error
        assert storefront_refunds(harness, TOASTER) == [Decimal("25.00")]  # nothing refunded again, nothing undone


def test_the_fact_schema_knows_every_kind_of_amazon_refund_the_adapter_reads() -> None:
    from adapters.amazon.models import REFUND_KINDS
    from daemon.facts import FIELDS
    assert FIELDS["amazon_refund_kind"].values == REFUND_KINDS


def test_a_chargeback_reversed_before_ordersync_read_it_never_reaches_the_storefront(db_url: str, tmp_path: Path) -> None:
    """A chargeback and its reversal read in one run (an order's history, a first run, a stop): each is decided
    against what Amazon shows refunded now, nothing, so the storefront records neither (it could not take the
    chargeback back), and nothing needs a person."""
    with running([TOASTER], db_url, tmp_path) as harness:
        harness.drive()
        item = harness.standins.amazon.orders[TOASTER["id"]]["lines"][0]["item_id"]
        now = datetime.now(timezone.utc)
        harness.standins.amazon.chargeback(TOASTER["id"], {item: "25.00"}, posted=now - timedelta(hours=5))
        harness.standins.amazon.chargeback_reversal(TOASTER["id"], {item: "25.00"}, posted=now - timedelta(minutes=30))
        harness.drive()

        decided = sorted((Decimal(d.record["fact"]["refund_amount"]), d.record["rule"]) for d in amazon_refund_decisions(harness, TOASTER))
        assert decided == [(Decimal("-25.00"), "amazon-refund-of-nothing"), (Decimal("25.00"), "amazon-refund-already-in-storefront")]
        assert storefront_refunds(harness, TOASTER) == []
        assert harness.store.failed_orders(ACCOUNT) == []
