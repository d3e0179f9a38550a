"""durable_rules inside its envelope.

durable_rules 2.0.28 crashes past 1024 live sessions, segfaults deleting a session where no action
ran, races its own timer threads, compares a string and a number as text, swallows exceptions raised
in actions, and cannot replace a ruleset (research/DURABLE_RULES.md). So this module never creates a
`durable.engine.Host` (whose constructor starts the timer threads) and never registers a Python
action. It drives the C core directly, on one thread, with:

- events only, all in the one default session: nothing stays in working memory after a decision;
- a catch-all rule with the lowest priority, so every event is consumed and "no rule" is a result;
- the fired rule read from the activation the core returns (its name is the rule id), so actions
  only record and nothing can raise inside the engine;
- facts whose types were checked against the schema and rules whose values were checked at load,
  so a text-versus-number comparison can never be reached;
- every comparison with another field guarded by both fields' presence: the core otherwise compares
  with the referenced field's value from an earlier event (a defect found here, see _compile_condition);
- every rule guarded by the event field's presence: the session's state object is matched like an
  event, so a rule of absence tests alone fires on it (a defect found here, see compile_ruleset);
- reload as a fresh ruleset handle swapped in whole.
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import durable_rules_engine as _core

from daemon.facts import DECIMAL, FIELDS
from daemon.rules.model import Condition, FieldRef, Group, Rule, RuleSet, Test
# The store's encoder: compact JSON through orjson (a tenth of the standard library's cost per event), the standard
# library for what orjson refuses, a lone surrogate escaped.
from daemon.store.types import json_dumps

NO_ACTION = "__no_action"
_OPS = {"ne": "$neq", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}


class EngineError(RuntimeError):
    """durable_rules answered something the envelope does not expect; the fact is not decided."""


def _compile_test(test: Test, keys: dict[str, str]) -> dict[str, Any]:
    if isinstance(test, Group):
        parts = [_compile_test(item, keys) for item in test.items]
        if len(parts) == 1:
            return parts[0]
        return {"$and" if test.kind == "all" else "$or": parts}
    return _compile_condition(test, keys)


def _value(value: Any, keys: dict[str, str]) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return value


def _compile_condition(condition: Condition, keys: dict[str, str]) -> dict[str, Any]:
    name, op, expected = keys[condition.field], condition.op, condition.expected
    if op == "exists":
        return {"$ex" if expected else "$nex": {name: 1}}
    if isinstance(expected, FieldRef):
        # The core keeps a referenced field's value from an earlier event: once any event carried it, an
        # event without it matches `a == b` whatever a is (found by tests/rules/test_equivalence.py).
        # Requiring both fields to be present keeps the comparison to this event's own values.
        other = keys[expected.field]
        return {"$and": [{"$ex": {name: 1}}, {"$ex": {other: 1}}, {_OPS.get(op, "$eq"): {name: {"$m": other}}}]}
    if op == "eq":
        return {name: _value(expected, keys)}
    if op == "in":
        parts = [{name: _value(v, keys)} for v in expected]
        return parts[0] if len(parts) == 1 else {"$or": parts}
    if op == "not_in":
        parts = [{"$neq": {name: _value(v, keys)}} for v in expected]
        return parts[0] if len(parts) == 1 else {"$and": parts}
    return {_OPS[op]: {name: _value(expected, keys)}}


def referenced_fields_of(rule: Rule) -> set[str]:
    fields: set[str] = set()

    def walk(test: Test) -> None:
        if isinstance(test, Group):
            for item in test.items:
                walk(item)
        else:
            fields.add(test.field)
            if isinstance(test.expected, FieldRef):
                fields.add(test.expected.field)

    walk(rule.when)
    return fields


def referenced_fields(ruleset: RuleSet) -> list[str]:
    """The fields the engine must see, in a fixed order; the others are not posted (smaller JSON, faster)."""
    return sorted({"event"}.union(*(referenced_fields_of(rule) for rule in ruleset.rules)))


def engine_keys(ruleset: RuleSet) -> dict[str, str]:
    """Short names for the posted fields: the core parses every event's JSON, so fewer bytes decide faster.
    They also keep dotted settings names from meaning nested objects to durable_rules."""
    return {name: f"f{index}" for index, name in enumerate(referenced_fields(ruleset))}


def compile_ruleset(ruleset: RuleSet, keys: dict[str, str] | None = None) -> dict[str, Any]:
    """The durable_rules JSON ruleset: one rule per YAML rule, priority = position (first hit), plus the catch-all."""
    keys = keys or engine_keys(ruleset)
    compiled: dict[str, Any] = {}
    # The session's state object is itself a message the core matches rules against; a rule made only of
    # absence tests would fire on it. Every rule requires the event field, which the state never has.
    present = {"$ex": {keys["event"]: 1}}
    for index, rule in enumerate(ruleset.rules, start=1):
        pattern = {"$and": [present, _compile_test(rule.when, keys)]} if rule.when.items else present
        compiled[rule.id] = {"pri": index, "all": [{"m": pattern}]}
    compiled[NO_ACTION] = {"pri": len(ruleset.rules) + 1, "all": [{"m": present}]}
    return compiled


class DurableRuleset:
    """One compiled ruleset in the C core. Not thread-safe: the engine calls it from one thread at a time."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        keys = engine_keys(ruleset)
        self.definition = compile_ruleset(ruleset, keys)
        # Per event, only the fields of the rules that can fire for it are posted: a rule for another
        # event fails on its event test whatever else the fact holds, so its fields cannot change the pick.
        self._posted: dict[str, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]] = {}
        for event in ruleset.events:
            names = sorted({"event"} | {name for rule in ruleset.rules if rule.may_fire_for(event)
                                        for name in referenced_fields_of(rule)})
            self._posted[event] = (tuple((n, keys[n]) for n in names if FIELDS[n].kind != DECIMAL),
                                   tuple((n, keys[n]) for n in names if FIELDS[n].kind == DECIMAL))
        try:
            self._handle = _core.create_ruleset(ruleset.name, json.dumps(self.definition, ensure_ascii=False))
        except Exception as exc:  # the core's own error numbers mean nothing to an operator
            raise EngineError(f"durable_rules refused the compiled ruleset {ruleset.name!r} from {ruleset.source}: {exc}") from exc

    def payload(self, fact: dict[str, Any]) -> str:
        # No "sid": the core puts every event in session "0", the envelope's one session.
        plain, amounts = self._posted[fact["event"]]
        event = {key: fact[name] for name, key in plain if name in fact}
        for name, key in amounts:
            if name in fact:
                event[key] = float(fact[name])
        return json_dumps(event)

    def first_hit(self, fact: dict[str, Any]) -> str | None:
        """The id of the rule durable_rules fires for this fact, or None for the catch-all (no rule)."""
        status, state = _core.assert_event(self._handle, self.payload(fact))
        if status != 0:
            # 1: not handled, 2: already observed. The catch-all and consumed events make both impossible.
            raise EngineError(f"durable_rules did not take the event (status {status}) for ruleset {self.ruleset.name!r}")
        activation = _core.start_action_for_state(self._handle, state)
        if not activation:
            raise EngineError(f"durable_rules fired no rule for ruleset {self.ruleset.name!r}, not even the catch-all")
        if _core.complete_and_start_action(self._handle, state):
            raise EngineError(f"durable_rules queued a second activation for one event in ruleset {self.ruleset.name!r}")
        message = activation[1]
        # The activation is '{"<rule id>":{"m":{...}}}'; rule ids never contain a quote (loader.RULE_ID).
        rule_id = message[2:message.index('"', 2)]
        return None if rule_id == NO_ACTION else rule_id

    def close(self) -> None:
        if self._handle is not None:
            _core.delete_ruleset(self._handle)
            self._handle = None
