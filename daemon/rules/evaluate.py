"""The plain-Python evaluator: the same first-hit semantics as the durable_rules ruleset, plus the
condition-by-condition trace that the audit log and `rules eval --explain` show.

Semantics shared with the compiler (tests hold the two to the same answers): a field the fact does
not carry makes every test on it false except `exists: false`; a comparison with another field is
false when that field is absent; `in`/`not_in` are equality against each listed value.
"""
from __future__ import annotations

import operator
from decimal import Decimal
from typing import Any, Callable

from daemon.rules.model import Condition, FieldRef, Group, Rule, RuleSet, Test

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<absent>"})()

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le,
    "in": lambda actual, expected: actual in expected,
    "not_in": lambda actual, expected: actual not in expected,
}

# (rule, matched, [(test, actual, result, children)])
ConditionTrace = tuple[Test, Any, bool, list]
RuleTrace = tuple[Rule, bool, list[ConditionTrace]]


def _as_peers(left: Any, right: Any) -> tuple[Any, Any]:
    # Two numeric fields of different kinds compare as the engine compares them: as doubles.
    if isinstance(left, float) != isinstance(right, float) and isinstance(left, (Decimal, float, int)) \
            and isinstance(right, (Decimal, float, int)):
        return float(left), float(right)
    return left, right


def check_condition(condition: Condition, fact: dict[str, Any]) -> tuple[Any, bool]:
    actual = fact.get(condition.field, MISSING)
    if condition.op == "exists":
        return actual, (actual is not MISSING) == condition.expected
    if actual is MISSING:
        return actual, False
    expected = condition.expected
    if isinstance(expected, FieldRef):
        other = fact.get(expected.field, MISSING)
        if other is MISSING:
            return actual, False
        left, right = _as_peers(actual, other)
        return actual, _COMPARE[condition.op](left, right)
    return actual, _COMPARE[condition.op](actual, expected)


def _trace_test(test: Test, fact: dict[str, Any]) -> ConditionTrace:
    if isinstance(test, Condition):
        actual, result = check_condition(test, fact)
        return (test, actual, result, [])
    children = [_trace_test(item, fact) for item in test.items]
    results = [child[2] for child in children]
    return (test, None, all(results) if test.kind == "all" else any(results), children)


def trace_rule(rule: Rule, fact: dict[str, Any]) -> RuleTrace:
    """Every condition of the rule, each evaluated (no short-circuit), so a trace explains all of them."""
    children = [_trace_test(item, fact) for item in rule.when.items]
    return (rule, all(child[2] for child in children), children)


def evaluate(ruleset: RuleSet, fact: dict[str, Any]) -> tuple[Rule | None, list[RuleTrace]]:
    """First hit: the first rule whose conditions all hold, with the trace of it and every earlier rule."""
    trace: list[RuleTrace] = []
    for rule in ruleset.rules:
        entry = trace_rule(rule, fact)
        trace.append(entry)
        if entry[1]:
            return rule, trace
    return None, trace


# -- the fast path: the same tests as closures, short-circuited, for picking the rule ---------------

Predicate = Callable[[dict[str, Any]], bool]


def _compile_condition(condition: Condition) -> Predicate:
    name, op, expected = condition.field, condition.op, condition.expected
    if op == "exists":
        return (lambda fact: name in fact) if expected else (lambda fact: name not in fact)
    compare = _COMPARE[op]
    if isinstance(expected, FieldRef):
        other = expected.field

        def against_field(fact: dict[str, Any]) -> bool:
            actual, peer = fact.get(name, MISSING), fact.get(other, MISSING)
            if actual is MISSING or peer is MISSING:
                return False
            return compare(*_as_peers(actual, peer))
        return against_field
    if op == "eq":
        return lambda fact: fact.get(name, MISSING) == expected
    if op in ("in", "not_in"):
        members = frozenset(expected)
        if op == "in":
            return lambda fact: fact.get(name, MISSING) in members
        return lambda fact: (actual := fact.get(name, MISSING)) is not MISSING and actual not in members
    return lambda fact: (actual := fact.get(name, MISSING)) is not MISSING and compare(actual, expected)


def _compile_test(test: Test) -> Predicate:
    if isinstance(test, Condition):
        return _compile_condition(test)
    parts = tuple(_compile_test(item) for item in test.items)
    if test.kind == "all":
        return lambda fact: all(part(fact) for part in parts)
    return lambda fact: any(part(fact) for part in parts)


class Evaluator:
    """A ruleset compiled to closures: `first_hit` picks the rule, `explain` says why, as JSON."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self._rules = tuple((rule, tuple(_compile_test(item) for item in rule.when.items)) for rule in ruleset.rules)
        # Each condition's field, operator and expected value as the trace shows them, made once here:
        # building them again for every decision was most of what a decision record cost.
        self._explained = tuple((rule, tuple(_explainer(item) for item in rule.when.items)) for rule in ruleset.rules)
        # By event, the rules its top-level `event` condition keeps from deciding it: the record's trace leaves them
        # out, as they could never have decided. In a file of several events they were most of every record's trace
        # (an order_cancelled decision listed every buyer request rule).
        self._other_events = {event: frozenset(rule.id for rule in ruleset.rules if not rule.may_fire_for(event))
                              for event in ruleset.events}

    def first_hit(self, fact: dict[str, Any]) -> Rule | None:
        for rule, tests in self._rules:
            for test in tests:
                if not test(fact):
                    break
            else:
                return rule
        return None

    def explain(self, fact: dict[str, Any], mask: Mask = lambda name, value: value, *,
                failures_only: bool = False) -> list[dict[str, Any]]:
        """The trace as JSON: the rule that fired and every earlier rule, each condition with field,
        operator, expected, actual (masked) and result; the same rules and results as `evaluate`.

        With failures_only (the decision record's trace, after OPA's `explain=fails`), an earlier rule
        lists under "failed" only the conditions that did not hold (a group with the members that made it
        fail), which is why it did not decide, and an earlier rule of another event (by its `event`
        condition) is left out; the rule that fired still lists every condition. What held is in the
        record's fact; the full trace is `rules eval --explain`."""
        explained = []
        others = self._other_events.get(fact.get("event"), frozenset()) if failures_only else frozenset()
        for rule, explainers in self._explained:
            if rule.id in others:
                continue
            if failures_only:
                failed = [shown for shown in (explainer(fact, mask, True) for explainer in explainers) if shown is not None]
                if failed:
                    explained.append({"rule": rule.id, "matched": False, "failed": failed})
                    continue
            conditions = [explainer(fact, mask, False) for explainer in explainers]
            matched = all(condition["result"] for condition in conditions)
            explained.append({"rule": rule.id, "matched": matched, "conditions": conditions})
            if matched:
                break
        return explained


Mask = Callable[[str, Any], Any]
# (fact, mask, failures_only) -> the test as JSON; with failures_only, None when it holds.
Explainer = Callable[[dict[str, Any], Mask, bool], "dict[str, Any] | None"]


def _explainer(test: Test) -> Explainer:
    if isinstance(test, Group):
        kind, parts = test.kind, tuple(_explainer(item) for item in test.items)
        combine = all if kind == "all" else any

        def explain_group(fact: dict[str, Any], mask: Mask, failures_only: bool) -> dict[str, Any] | None:
            if failures_only:
                failed = [shown for shown in (part(fact, mask, True) for part in parts) if shown is not None]
                # An `all` fails by any member, shown alone; an `any` fails only when every member does.
                if not failed or (kind == "any" and len(failed) < len(parts)):
                    return None
                return {kind: failed, "result": False}
            children = [part(fact, mask, False) for part in parts]
            return {kind: children, "result": combine(child["result"] for child in children)}  # type: ignore[index]
        return explain_group
    condition = test
    name = condition.field
    static = {"field": name, "op": condition.op, "expected": _jsonable(condition.expected)}
    other = condition.expected.field if isinstance(condition.expected, FieldRef) else None
    # The result is the compiled test's, the one first_hit ran to pick the rule, so a record's trace cannot
    # tell a different story from its decision (tests/rules/test_equivalence.py holds the compiled tests to
    # check_condition); a little cheaper too (a record's trace: 23.4 -> 22.1 µs).
    holds = _compile_condition(condition)

    def explain_condition(fact: dict[str, Any], mask: Mask, failures_only: bool) -> dict[str, Any] | None:
        result = holds(fact)
        if result and failures_only:
            return None
        actual = fact.get(name, MISSING)
        shown = dict(static)
        if other is not None:
            peer = fact.get(other, MISSING)
            shown["expected_value"] = None if peer is MISSING else _jsonable(mask(other, peer))
        if actual is MISSING:
            shown["actual"] = None
            shown["absent"] = True
        else:
            shown["actual"] = _jsonable(mask(condition.field, actual))
        shown["result"] = result
        return shown
    return explain_condition


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, FieldRef):
        return {"field": value.field}
    return value
