"""A loaded, checked rule file: the shape both the durable_rules compiler and the plain evaluator read."""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from daemon.rules.yamlsource import Position, Problem

OPERATORS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists")
ORDERING = frozenset({"gt", "gte", "lt", "lte"})


@dataclass(frozen=True)
class FieldRef:
    """A condition or parameter that takes another field's value: `{field: refundable_amount}`."""

    field: str

    def __str__(self) -> str:
        return f"field {self.field}"


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    expected: Any  # typed: Decimal/int/float/str/bool, a tuple for in/not_in, a FieldRef
    position: Position = field(compare=False)

    def __str__(self) -> str:
        return f"{self.field} {self.op} {self.expected!r}"


@dataclass(frozen=True)
class Group:
    kind: str  # "all" or "any"
    items: tuple["Condition | Group", ...]
    position: Position = field(compare=False)


Test = Union[Condition, Group]


@dataclass(frozen=True)
class Template:
    """Text with {field} placeholders, filled from the fact when the decision is made."""

    text: str
    fields: tuple[str, ...]

    @staticmethod
    def placeholders(text: str) -> list[str]:
        return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]

    def render(self, fact: Mapping[str, Any]) -> str:
        # A field the fact does not carry is shown as "(not given)" rather than failing the decision.
        return self.text.format_map({name: fact.get(name, "(not given)") for name in self.fields})


@dataclass(frozen=True)
class ActionCall:
    name: str
    params: dict[str, Any]  # literal, Template or FieldRef, defaults already filled in
    position: Position = field(compare=False)


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    when: Group
    then: tuple[ActionCall, ...]
    position: Position = field(compare=False)

    def may_fire_for(self, event: str) -> bool:
        """False only when a top-level test on `event` excludes it."""
        for test in self.when.items:
            if isinstance(test, Condition) and test.field == "event":
                if test.op == "eq" and test.expected != event or test.op == "in" and event not in test.expected \
                        or test.op == "ne" and test.expected == event or test.op == "not_in" and event in test.expected:
                    return False
        return True


@dataclass(frozen=True)
class RuleSet:
    name: str
    events: tuple[str, ...]
    rules: tuple[Rule, ...]
    source: str      # the file it was read from
    sha256: str      # of the file's bytes: the version every decision names
    warnings: tuple[Problem, ...] = ()

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)
