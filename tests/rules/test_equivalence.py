"""durable_rules and the plain evaluator must pick the same rule for every fact: the evaluator's trace
explains durable_rules' decision only if they agree. Generated facts cover the whole schema, absent
fields included; generated rulesets cover every operator, groups and field-to-field comparisons."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.facts import normalise
from daemon.rules.durable import DurableRuleset
from daemon.rules.engine import RulesEngine
from daemon.rules.evaluate import Evaluator, evaluate

from .strategies import facts, rulesets


@pytest.fixture(scope="module")
def engine(rules_dir):
    engine = RulesEngine(rules_dir)
    yield engine
    engine.close()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=facts(events=("buyer_cancel_requested", "order_cancelled", "cancel_requested", "return_reported", "refund_requested")))
def test_shipped_rules_durable_and_evaluator_pick_the_same_rule(engine, data):
    fact = normalise(data)
    ruleset = engine.ruleset_for(fact["event"])
    durable = engine._loaded.compiled[ruleset.name]
    fast = Evaluator(ruleset).first_hit(fact)
    traced, trace = evaluate(ruleset, fact)
    assert durable.first_hit(fact) == (fast.id if fast else None) == (traced.id if traced else None)
    # The trace ends at the rule that fired, and every rule before it has a false condition.
    if traced is not None:
        assert trace[-1][0] is traced and trace[-1][1]
    assert all(not matched for _, matched, _ in trace[:-1 if traced else None])
    # What the audit record and --explain show is that same trace, condition by condition.
    explained = Evaluator(ruleset).explain(fact)
    assert [(e["rule"], e["matched"]) for e in explained] == [(rule.id, matched) for rule, matched, _ in trace]
    assert [_results(e["conditions"]) for e in explained] == [_results(conditions) for _, _, conditions in trace]


def _results(conditions) -> list:
    """Each condition's result, groups nested, from either form of the trace."""
    out = []
    for condition in conditions:
        if isinstance(condition, dict):
            group = condition.get("all", condition.get("any"))
            out.append(condition["result"] if group is None else (condition["result"], _results(group)))
        else:
            _, _, result, children = condition
            out.append((result, _results(children)) if children or not hasattr(condition[0], "field") else result)
    return out


@settings(max_examples=300, deadline=None)
@given(ruleset=rulesets(), samples=st.lists(facts(events=("order_cancelled", "refund_requested")), min_size=25, max_size=25))
def test_generated_rulesets_durable_and_evaluator_pick_the_same_rule(ruleset, samples):
    durable = DurableRuleset(ruleset)
    try:
        evaluator = Evaluator(ruleset)
        for data in samples:
            fact = normalise(data)
            picked = evaluator.first_hit(fact)
            assert durable.first_hit(fact) == (picked.id if picked else None), (durable.definition, fact)
    finally:
        durable.close()
