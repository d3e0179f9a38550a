"""`ordersync approvals` as an operator uses it: the Amazon-bound actions held for approval listed from the
store the config names, approved into the next feed's queue or rejected with a reason, ids that were not
waiting named (exit 1) while the others still change, exit 2 when the config cannot be used."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from daemon.store import Store
from daemon.store.models import ADJUSTMENT_FEED
from tests.cli.conftest import ACCOUNT_NAME

REFUND = {"type": "refund_on_amazon", "reason_code": "CustomerReturn"}
CANCEL = {"type": "cancel_on_amazon", "reason_code": "BuyerCanceled"}
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
