"""Hypothesis strategies over the whole fact schema, and random rulesets over every operator."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

from daemon.facts import BOOL, DECIMAL, ENUM, FIELDS, INT, NUMBER, TEXT, FieldSpec
from daemon.rules.model import OPERATORS, ORDERING, Condition, FieldRef, Group, Rule, RuleSet
from daemon.rules.yamlsource import Position

HERE = Position("generated.yaml", 1, 1)
# Small domains, so that generated conditions and generated facts meet often.
AMOUNTS = [Decimal(v) for v in ("0", "0.01", "5", "9.99", "10", "10.00", "25.5", "100")]


def value_of(spec: FieldSpec) -> st.SearchStrategy:
    if spec.kind == ENUM:
        return st.sampled_from(spec.values)
    if spec.kind == TEXT:
        return st.sampled_from(["", "a", "112-0000000-0000001", "Ordered by mistake"])
    if spec.kind == INT:
        return st.integers(0, 4)
    if spec.kind == DECIMAL:
        return st.sampled_from(AMOUNTS)
    if spec.kind == NUMBER:
        return st.sampled_from([0.0, 0.5, 1.0, 24.0, 48.0, 72.5])
    assert spec.kind == BOOL
    return st.booleans()


@st.composite
def facts(draw, events: tuple[str, ...] | None = None) -> dict:
    """A fact over the whole schema: every field may be absent, and any allowed value may appear."""
    fact = {}
    for name, spec in FIELDS.items():
        if name == "event":
            fact[name] = draw(st.sampled_from(events or spec.values))
        elif draw(st.booleans()):
            fact[name] = draw(value_of(spec))
    return fact


def _comparable(spec: FieldSpec) -> list[str]:
    return [name for name, other in FIELDS.items() if name != spec.name and (
        (spec.is_numeric and other.is_numeric) or (spec.kind == other.kind and spec.values == other.values))]


@st.composite
def conditions(draw, depth: int = 0):
    if depth < 2 and draw(st.integers(0, 5)) == 0:
        items = tuple(draw(st.lists(conditions(depth + 1), min_size=1, max_size=3)))
        return Group(draw(st.sampled_from(["all", "any"])), items, HERE)
    name = draw(st.sampled_from([n for n in FIELDS if n != "event"]))
    spec = FIELDS[name]
    ops = [op for op in OPERATORS if op not in ORDERING or spec.is_numeric]
    op = draw(st.sampled_from(ops))
    if op == "exists":
        return Condition(name, op, draw(st.booleans()), HERE)
    if op in ("in", "not_in"):
        return Condition(name, op, tuple(dict.fromkeys(draw(st.lists(value_of(spec), min_size=1, max_size=3)))), HERE)
    peers = _comparable(spec)
    if peers and draw(st.integers(0, 3)) == 0:
        return Condition(name, op, FieldRef(draw(st.sampled_from(peers))), HERE)
    return Condition(name, op, draw(value_of(spec)), HERE)


@st.composite
def rulesets(draw) -> RuleSet:
    events = ("order_cancelled", "refund_requested")
    rules = []
    for index in range(draw(st.integers(1, 8))):
        items = list(draw(st.lists(conditions(), min_size=0, max_size=4)))
        if draw(st.booleans()):
            items.insert(0, Condition("event", "eq", draw(st.sampled_from(events)), HERE))
        rules.append(Rule(f"r{index}", "generated", Group("all", tuple(items), HERE), (), HERE))
    return RuleSet("generated", events, tuple(rules), "generated.yaml", "0" * 64)
