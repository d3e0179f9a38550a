"""The durable_rules envelope: defects of the C core that the compiler keeps out of reach.
Each test fails on a naive compilation (see the comments in daemon/rules/durable.py)."""
from __future__ import annotations

from daemon.facts import normalise
from daemon.rules.durable import DurableRuleset
from daemon.rules.model import Condition, FieldRef, Group, Rule, RuleSet
from daemon.rules.yamlsource import Position

HERE = Position("test.yaml", 1, 1)


def _ruleset(*tests) -> RuleSet:
    rule = Rule("matches", "test", Group("all", tuple(tests), HERE), (), HERE)
    return RuleSet("envelope", ("order_cancelled",), (rule,), "test.yaml", "0" * 64)


def test_comparison_with_an_absent_field_does_not_reuse_an_earlier_events_value():
    engine = DurableRuleset(_ruleset(Condition("refund_amount", "eq", FieldRef("paid_total"), HERE)))
    try:
        assert engine.first_hit(normalise({"event": "order_cancelled", "refund_amount": "5", "paid_total": "5"})) == "matches"
        # paid_total absent now: the core alone would still compare with the 5 it saw before.
        assert engine.first_hit(normalise({"event": "order_cancelled", "refund_amount": "7"})) is None
        assert engine.first_hit(normalise({"event": "order_cancelled", "refund_amount": "5"})) is None
    finally:
        engine.close()


def test_a_rule_of_absence_tests_only_does_not_fire_on_the_session_state():
    engine = DurableRuleset(_ruleset(Condition("origin", "exists", False, HERE)))
    try:
        # The core alone fires this rule on its own state object and queues the event's activation behind it.
        assert engine.first_hit(normalise({"event": "order_cancelled", "origin": "amazon"})) is None
        assert engine.first_hit(normalise({"event": "order_cancelled"})) == "matches"
        assert engine.first_hit(normalise({"event": "order_cancelled"})) == "matches"
    finally:
        engine.close()


def test_the_same_event_posted_again_is_decided_again():
    """Events only, consumed at once: the same event posted again is a new event, never 'already observed'."""
    engine = DurableRuleset(_ruleset(Condition("reason_code", "eq", "BuyerCanceled", HERE)))
    try:
        fact = normalise({"event": "order_cancelled", "reason_code": "BuyerCanceled"})
        assert all(engine.first_hit(fact) == "matches" for _ in range(5000))
    finally:
        engine.close()
