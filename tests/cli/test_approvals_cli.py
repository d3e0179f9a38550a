"""`ordersync approvals` as an operator uses it: the Amazon-bound actions held for approval listed from the
store the config names, approved into the next feed's queue or rejected with a reason, ids that were not
waiting named (exit 1) while the others still change, exit 2 when the config cannot be used; held cancellations
approved together only while they keep Amazon's cancellation rate under 2.5% (DOMAIN 8)."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.pipeline.events import BUYER_REQUEST, buyer_request_key
from daemon.store import Store
from daemon.store.models import ADJUSTMENT_FEED
from tests.cli.conftest import ACCOUNT_NAME

REFUND = {"type": "refund_on_amazon", "reason_code": "CustomerReturn"}
CANCEL = {"type": "cancel_on_amazon", "reason_code": "BuyerCanceled"}
NO_STOCK = {"type": "cancel_on_amazon", "reason_code": "NoInventory"}  # the seller's: the rate counts it
HOLD = {"type": "queue_for_approval"}
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"


def held(store: Store, decided, order: str, action: dict) -> tuple[int, str]:
    """A decision whose Amazon-bound action waits for approval; (the action's id, the decision id)."""
    _, decision_id = decided([action, HOLD], order=order, account=ACCOUNT_NAME)
    [waiting] = [a for a in store.awaiting_approval() if a.decision_id == decision_id]
    return waiting.id, decision_id


def test_the_queue_lists_each_waiting_action_with_its_parameters(store: Store, decided, config: Path,
                                                                 ordersync) -> None:
    refund, refund_decision = held(store, decided, "111-0000001-0000001", REFUND)
    cancel, cancel_decision = held(store, decided, "111-0000002-0000002", CANCEL)
    decided([CANCEL], order="111-0000003-0000003", account=ACCOUNT_NAME)  # no approval needed: not listed

    ran = ordersync("approvals", "--config", config)
    assert ran.code == 0 and ran.err == ""
    header, *rows, last = ran.lines
    assert header.split() == ["ID", "ACCOUNT", "ORDER", "ACTION", "SINCE", "DECISION", "PARAMETERS"]
    assert re.fullmatch(rf"{refund} +main-us +111-0000001-0000001 +refund_on_amazon +{WHEN} +{refund_decision} +"
                        r"reason_code=CustomerReturn", rows[0])
    assert re.fullmatch(rf"{cancel} +main-us +111-0000002-0000002 +cancel_on_amazon +{WHEN} +{cancel_decision} +"
                        r"reason_code=BuyerCanceled", rows[1])
    assert len(rows) == 2 and last == "2 actions await approval"
    assert ordersync("approvals", "list", "--config", config, "--account", ACCOUNT_NAME).out == ran.out

    as_json = json.loads(ordersync("approvals", "--config", config, "--json").out)
    assert [(a["id"], a["account"], a["amazon_order_id"], a["type"], a["params"], a["decision_id"]) for a in as_json] == [
        (refund, "main-us", "111-0000001-0000001", "refund_on_amazon", {"reason_code": "CustomerReturn"}, refund_decision),
        (cancel, "main-us", "111-0000002-0000002", "cancel_on_amazon", {"reason_code": "BuyerCanceled"}, cancel_decision)]
    assert re.match(r"\d{4}-\d\d-\d\dT", as_json[0]["since"])

    assert ordersync("approvals", "--config", config, "--account", "main-uk").lines == [
        "no actions await approval (the configuration has no account 'main-uk'; its accounts: main-us)"]


def test_approve_queues_for_the_next_feed_and_reject_keeps_the_reason(store: Store, decided, config: Path,
                                                                       ordersync) -> None:
    first, _ = held(store, decided, "111-0000001-0000001", REFUND)
    second, _ = held(store, decided, "111-0000002-0000002", REFUND)
    third, _ = held(store, decided, "111-0000003-0000003", REFUND)

    ran = ordersync("approvals", "approve", "--config", config, first, third)
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines == [f"approved 2 actions ({first}, {third}): queued for the next Amazon feed"]
    assert store.get_action(first).status == store.get_action(third).status == "queued_for_batch"
    assert [a.id for a in store.queued_amazon_actions(ACCOUNT_NAME, ADJUSTMENT_FEED)] == [first, third]

    ran = ordersync("approvals", "reject", "--config", config, second, "--reason", "refunded by phone")
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines == [f"rejected 1 action ({second}): kept as rejected, never sent to Amazon "
                         "(reason: refunded by phone)"]
    rejected = store.get_action(second)
    assert (rejected.status, rejected.last_error) == ("rejected", "refunded by phone")
    assert ordersync("approvals", "--config", config).lines == ["no actions await approval"]


def test_ids_not_awaiting_approval_are_named_the_others_still_change_and_exit_1(store: Store, decided, config: Path,
                                                                                ordersync) -> None:
    waiting, _ = held(store, decided, "111-0000001-0000001", REFUND)
    approved, _ = held(store, decided, "111-0000002-0000002", REFUND)
    store.approve([approved])

    ran = ordersync("approvals", "reject", "--config", config, "--reason", "duplicate", approved, waiting, 9999)
    assert ran.code == 1
    assert ran.lines == [f"rejected 1 action ({waiting}): kept as rejected, never sent to Amazon (reason: duplicate)"]
    assert ran.err.strip() == (f"ordersync approvals reject: not awaiting approval, left as they are: "
                               f"{approved} (status queued_for_batch); 9999 (no such action)")
    assert store.get_action(waiting).status == "rejected"
    assert store.get_action(approved).status == "queued_for_batch"

    ran = ordersync("approvals", "approve", "--config", config, 9999)
    assert (ran.code, ran.lines) == (1, ["approved no action"])
    assert "9999 (no such action)" in ran.err


def test_reject_needs_a_reason(store: Store, decided, config: Path, ordersync,
                               capsys: pytest.CaptureFixture[str]) -> None:
    waiting, _ = held(store, decided, "111-0000001-0000001", REFUND)
    for reason in ((), ("--reason", "  ")):
        with pytest.raises(SystemExit) as exit_:
            ordersync("approvals", "reject", "--config", config, waiting, *reason)
        assert exit_.value.code == 2
        assert "--reason" in capsys.readouterr().err
    assert store.get_action(waiting).status == "awaiting_approval"


def test_a_config_that_cannot_be_used_is_one_message_and_exit_2(tmp_path: Path, ordersync) -> None:
    (tmp_path / "ordersync.yaml").write_text("accounts: []\nstore: {url: 'mysql://db/ordersync'}\n")
    for command in (("approvals",), ("approvals", "approve"), ("approvals", "reject", "--reason", "x")):
        ids = ("1",) if len(command) > 1 else ()
        ran = ordersync(*command, "--config", tmp_path / "ordersync.yaml", *ids)
        assert (ran.code, ran.out) == (2, "")
        assert ran.err.startswith(f"ordersync {' '.join(command[:2])}: ") and "problem(s) in the configuration" in ran.err
        assert "store.url" in ran.err and "Traceback" not in ran.err


# -- the cancellation rate, counted again with every held cancellation approved together ------------------
def fill_the_week(store: Store, orders: int, cancelled: int) -> list[str]:
    """The account's FBM orders created on Amazon two days ago, the first `cancelled` of them cancelled by the
    seller; the ids of the others, whose cancellations can be held."""
    created = datetime.now(timezone.utc) - timedelta(days=2)
    ids = [f"111-7{n:06d}-0000000" for n in range(orders)]
    for n, order_id in enumerate(ids):
        store.upsert_order(ACCOUNT_NAME, order_id, fulfillment="FBM", created_on_amazon=created,
                           status="Canceled" if n < cancelled else "Unshipped", cancelled_by_seller=n < cancelled)
    return ids[cancelled:]


def held_cancellations(store: Store, decided, orders: list[str], action: dict = NO_STOCK) -> list[int]:
    return [held(store, decided, order, action)[0] for order in orders]


def statuses(store: Store, ids: list[int]) -> list[str]:
    return [store.get_action(action_id).status for action_id in ids]


def test_held_cancellations_that_together_take_the_rate_to_2_5_are_not_approved_refunds_still_are(
        store: Store, decided, config: Path, ordersync) -> None:
    week = fill_the_week(store, orders=200, cancelled=3)  # 1.5%: each held alone would make it 2.0%
    cancellations = held_cancellations(store, decided, week[:3])
    refund, _ = held(store, decided, week[3], REFUND)
    decided([NO_STOCK, HOLD], order="111-0000009-0000009", account="main-uk")  # another account's

    ran = ordersync("approvals", "approve", "--config", config, *cancellations, refund)
    assert ran.code == 1
    assert ran.lines == [f"approved 1 action ({refund}): queued for the next Amazon feed"]
    ids = ", ".join(map(str, cancellations))
    assert ran.err.strip() == (
        f"ordersync approvals approve: account main-us: approving cancellations {ids} would raise the 7-day "
        "cancellation rate from 1.50% now to 3.00% (3 of them count, among 200 FBM orders; Amazon wants it under "
        "2.5%), so none of them is approved. Approve fewer; or ask the buyers to request the cancellation on Amazon "
        "and, once a request arrives, cancel with reason BuyerCanceled (`ordersync orders cancel ACCOUNT ORDER "
        "--reason BuyerCanceled`), which does not count, and reject the held one; or give --over-cancellation-rate "
        "to approve them all the same.")
    assert statuses(store, cancellations) == ["awaiting_approval"] * 3
    assert store.get_action(refund).status == "queued_for_batch"

    # The other account's cancellation goes with them; only main-us's are kept back.
    [other] = [a.id for a in store.awaiting_approval("main-uk")]
    ran = ordersync("approvals", "approve", "--config", config, cancellations[0], cancellations[1], other)
    assert ran.code == 1 and ran.lines[0] == f"approved 1 action ({other}): queued for the next Amazon feed"
    assert "account main-us: approving cancellations" in ran.err and "from 1.50% now to 2.50%" in ran.err
    assert ran.lines[1:] == ["account main-uk: 7-day cancellation rate 0.00% now, 0.00% with these approved"]
    assert statuses(store, cancellations) == ["awaiting_approval"] * 3


def test_a_cancellation_that_keeps_the_rate_under_is_approved_and_the_next_is_counted_against_it(
        store: Store, decided, config: Path, ordersync) -> None:
    week = fill_the_week(store, orders=200, cancelled=3)  # 1.5%
    first, second = held_cancellations(store, decided, week[:2])

    ran = ordersync("approvals", "approve", "--config", config, first)
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines == [f"approved 1 action ({first}): queued for the next Amazon feed",
                         "account main-us: 7-day cancellation rate 1.50% now, 2.00% with these approved"]
    assert store.get_action(first).status == "queued_for_batch"

    # Held with 2.0% in its message; with the first going out it would make 2.5%.
    ran = ordersync("approvals", "approve", "--config", config, second)
    assert (ran.code, ran.lines) == (1, ["approved no action"])
    assert (f"account main-us: approving cancellation {second} would raise the 7-day cancellation rate from 2.00% "
            "now to 2.50% (it counts, among 200 FBM orders;") in ran.err
    assert store.get_action(second).status == "awaiting_approval"


def test_over_cancellation_rate_approves_them_all_the_same(store: Store, decided, config: Path, ordersync) -> None:
    week = fill_the_week(store, orders=200, cancelled=3)
    cancellations = held_cancellations(store, decided, week[:3])

    ran = ordersync("approvals", "approve", "--config", config, "--over-cancellation-rate", *cancellations)
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines == [f"approved 3 actions ({', '.join(map(str, cancellations))}): queued for the next Amazon feed",
                         "account main-us: 7-day cancellation rate 1.50% now, 3.00% with these approved (Amazon wants "
                         "it under 2.5%; approved with --over-cancellation-rate)"]
    assert statuses(store, cancellations) == ["queued_for_batch"] * 3


def test_approve_s_help_tells_of_the_check_and_the_flag(ordersync, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ordersync("approvals", "approve", "--help")
    help_text = " ".join(capsys.readouterr().out.split())
    assert ("If they would raise it to 2.5% or more (Amazon wants it under 2.5%), none of that account's "
            "cancellations the rate counts is approved") in help_text
    assert "or give --over-cancellation-rate to approve them all the same" in help_text
    assert "Weeks of fewer than 100 FBM orders are not checked" in help_text


def test_buyer_canceled_answering_a_buyer_s_request_does_not_count(store: Store, decided, config: Path,
                                                                  ordersync) -> None:
    week = fill_the_week(store, orders=200, cancelled=4)  # 2.0%: Amazon's 2.5% is one counted cancellation away
    asked, not_asked = week[:2]
    store.ingest(ACCOUNT_NAME, buyer_request_key(asked), BUYER_REQUEST, {}, amazon_order_id=asked)
    for_the_buyer = held_cancellations(store, decided, [asked], CANCEL)
    unasked = held_cancellations(store, decided, [not_asked], CANCEL)

    # BuyerCanceled with no request from the buyer counts: 2.5%.
    ran = ordersync("approvals", "approve", "--config", config, *unasked)
    assert (ran.code, ran.lines) == (1, ["approved no action"]) and "from 2.00% now to 2.50%" in ran.err

    ran = ordersync("approvals", "approve", "--config", config, *for_the_buyer)
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines[1:] == ["account main-us: 7-day cancellation rate 2.00% now, 2.00% with these approved"]
    assert statuses(store, for_the_buyer + unasked) == ["queued_for_batch", "awaiting_approval"]


def test_a_week_of_fewer_than_100_fbm_orders_is_not_checked(store: Store, decided, config: Path, ordersync) -> None:
    week = fill_the_week(store, orders=40, cancelled=0)
    cancellations = held_cancellations(store, decided, week[:3])

    ran = ordersync("approvals", "approve", "--config", config, *cancellations)
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines[1:] == ["account main-us: 7-day cancellation rate 0.00% now, 7.50% with these approved (not "
                             "checked: 40 FBM orders this week, fewer than 100)"]
    assert statuses(store, cancellations) == ["queued_for_batch"] * 3


def held_refund_giving_units_up(store: Store, order: str) -> int:
    """`orders refund ... --line SKU:1 --unfulfilled --reason NoInventory`, held for approval: Amazon hears of the
    unit as cancelled (DOMAIN 13), which its rate counts."""
    payload = {"origin": "operator", "units_cancelled": 1, "reason_code": "NoInventory",
               "refund_lines": [{"order_item_id": "10000000000001", "sku": "SKU-1", "quantity": 1, "amount": "9.00"}]}
    store.ingest(ACCOUNT_NAME, f"refund_requested:{order}:1", "refund_requested", payload, amazon_order_id=order)
    [event] = [e for e in store.undecided_events(ACCOUNT_NAME, limit=1000) if e.amazon_order_id == order]
    actions = [{"type": "refund_on_amazon", "reason_code": "NoInventory"}, HOLD]
    decision_id = store.record_decision(event.id, {"decision_id": f"dec-refund-{order}", "amazon_order_id": order,
                                                   "rule": "unfulfilled-refund-over-cancellation-rate",
                                                   "ruleset": "refund", "actions": actions}, actions)
    [waiting] = [a for a in store.awaiting_approval() if a.decision_id == decision_id]
    return waiting.id


def test_a_held_refund_of_units_that_could_not_be_fulfilled_counts_as_a_cancellation(
        store: Store, decided, config: Path, ordersync) -> None:
    week = fill_the_week(store, orders=200, cancelled=4)  # 2.0%
    giving_up = held_refund_giving_units_up(store, week[0])

    ran = ordersync("approvals", "approve", "--config", config, giving_up)
    assert (ran.code, ran.lines) == (1, ["approved no action"])
    assert (f"approving refund {giving_up} (of units that could not be fulfilled) would raise the 7-day cancellation rate "
            "from 2.00% now to 2.50%") in ran.err
    assert "Approve fewer; or approve a refund once the week allows" in ran.err and "BuyerCanceled" not in ran.err
    assert store.get_action(giving_up).status == "awaiting_approval"

    ran = ordersync("approvals", "approve", "--config", config, "--over-cancellation-rate", giving_up)
    assert ran.code == 0 and store.get_action(giving_up).status == "queued_for_batch"


def test_a_cancellation_the_rate_does_not_count_is_approved_though_the_others_are_kept_back(
        store: Store, decided, config: Path, ordersync) -> None:
    """The buyer's request has a 48-hour window: its BuyerCanceled answer goes though the seller's own are refused."""
    week = fill_the_week(store, orders=200, cancelled=3)  # 1.5%
    counted = held_cancellations(store, decided, week[:3])
    asked = week[3]
    store.ingest(ACCOUNT_NAME, buyer_request_key(asked), BUYER_REQUEST, {}, amazon_order_id=asked)
    [for_the_buyer] = held_cancellations(store, decided, [asked], CANCEL)

    ran = ordersync("approvals", "approve", "--config", config, *counted, for_the_buyer)
    assert ran.code == 1
    assert ran.lines == [f"approved 1 action ({for_the_buyer}): queued for the next Amazon feed"]
    assert f"approving cancellations {', '.join(map(str, counted))} would raise" in ran.err
    assert statuses(store, counted) == ["awaiting_approval"] * 3


def test_a_cancellation_of_an_order_being_cancelled_already_or_two_of_one_order_are_not_approved(
        store: Store, decided, config: Path, ordersync) -> None:
    """Each would be a second message to Amazon about its order, which Amazon refuses (a Failed Cancellation for an
    order that is cancelled)."""
    week = fill_the_week(store, orders=1000, cancelled=0)
    decided([NO_STOCK], order=week[0], account=ACCOUNT_NAME)  # going out with the next feed
    [second] = held_cancellations(store, decided, [week[0]], CANCEL)
    twins = held_cancellations(store, decided, [week[1], week[1]])
    alone = held_cancellations(store, decided, [week[2]])
    [cancelled_meanwhile] = held_cancellations(store, decided, [week[3]])
    store.upsert_order(ACCOUNT_NAME, week[3], status="Canceled")  # the buyer cancelled on Amazon while it waited

    ran = ordersync("approvals", "approve", "--config", config, second, *twins, *alone, cancelled_meanwhile)
    assert ran.code == 1
    assert ran.lines[0] == f"approved 1 action ({alone[0]}): queued for the next Amazon feed"
    assert (f"Amazon shows order {week[3]} cancelled already: cancellation {cancelled_meanwhile} would be a message "
            "Amazon refuses, so not approved") in ran.err
    assert store.get_action(cancelled_meanwhile).status == "awaiting_approval"
    assert (f"order {week[0]} has a cancellation going out to Amazon, or sent, already: cancellation {second} would be "
            "a second message") in ran.err
    assert f"cancellations {twins[0]}, {twins[1]} are of the same order {week[1]}" in ran.err
    assert statuses(store, [second, *twins]) == ["awaiting_approval"] * 3


def test_a_held_cancellation_of_an_order_the_grid_lacks_counts_as_its_decision_saw_it(
        store: Store, config: Path, ordersync) -> None:
    """A person cancelled an order the order poll never read (older, or not polled yet): its decision's fact says it is
    FBM, so approving it counts, as one more order of the week."""
    fill_the_week(store, orders=199, cancelled=4)  # 2.01%; with this one, 5 of 200: 2.5%
    order = "111-0000077-0000077"
    store.ingest(ACCOUNT_NAME, f"cancel_requested:{order}", "cancel_requested", {}, amazon_order_id=order)
    [event] = [e for e in store.undecided_events(ACCOUNT_NAME, limit=1000) if e.amazon_order_id == order]
    actions = [NO_STOCK, HOLD]
    decision_id = store.record_decision(event.id, {"decision_id": f"dec-{order}", "amazon_order_id": order,
                                                   "fact": {"fulfillment": "FBM"}, "actions": actions}, actions)
    [waiting] = [a for a in store.awaiting_approval() if a.decision_id == decision_id]

    ran = ordersync("approvals", "approve", "--config", config, waiting.id)
    assert (ran.code, ran.lines) == (1, ["approved no action"])
    assert "from 2.01% now to 2.50% (it counts, among 200 FBM orders;" in ran.err
