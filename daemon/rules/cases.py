"""Rule test cases: YAML files under rules/tests/ that say, for a given fact, which rule decides and what
it decides. Operations teams run them with `ordersync rules test` before a change goes live.

    defaults:                      # fields every case's fact starts from (optional)
      account: demo
    cases:
      - name: a buyer request on an unshipped order holds it
        fact: {event: buyer_cancel_requested, shipping_status: Unshipped, ...}
        expect:
          rule: hold-on-buyer-request         # null: no rule decides (no_action)
          actions: [hold_order, add_note]     # in order; {add_note: {text: ...}} also checks parameters
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.facts import FactError
from daemon.rules.engine import DecisionError, RulesEngine
from daemon.rules.evaluate import MISSING, trace_rule
from daemon.rules.model import Condition, Group
from daemon.rules.yamlsource import Node, Position, Problem, YamlFileError, read_yaml

CASE_KEYS = ("name", "fact", "expect")
EXPECT_KEYS = ("rule", "actions")


@dataclass
class Case:
    name: str
    position: Position
    fact: dict[str, Any]
    expect_rule: str | None
    expects_rule: bool
    expect_actions: list[tuple[str, dict[str, Any] | None]] | None


@dataclass
class CaseResult:
    case: Case
    passed: bool
    message: str = ""

    def __str__(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        detail = f": {self.message}" if self.message else ""
        return f"{status} {self.case.position.file}:{self.case.position.line} {self.case.name}{detail}"


def _merge(defaults: dict[str, Any], fact: dict[str, Any]) -> dict[str, Any]:
    merged = {**defaults, **fact}
    if isinstance(defaults.get("settings"), dict) and isinstance(fact.get("settings"), dict):
        merged["settings"] = {**defaults["settings"], **fact["settings"]}
    return merged


def _expected_actions(node: Node, problems: list[Problem]) -> list[tuple[str, dict[str, Any] | None]] | None:
    if not node.is_sequence:
        problems.append(Problem(node.position, "expect.actions is a list of action names (or {name: {param: value}})"))
        return None
    expected: list[tuple[str, dict[str, Any] | None]] = []
    for item in node.value:
        if isinstance(item.value, str):
            expected.append((item.value, None))
        elif item.is_mapping and len(item.value) == 1:
            name, _, params = next(item.items())
            value = params.plain_value()
            if value is not None and not isinstance(value, dict):
                problems.append(Problem(params.position, f"parameters of {name} are a mapping"))
                return None
            expected.append((name, value or {}))
        else:
            problems.append(Problem(item.position, "an expected action is a name or {name: {param: value}}"))
            return None
    return expected


def load_cases(path: Path) -> tuple[list[Case], list[Problem]]:
    problems: list[Problem] = []
    try:
        root = read_yaml(path)
    except YamlFileError as exc:
        return [], exc.problems
    start = Position(str(path), 1, 1)
    if root is None or not root.is_mapping or "cases" not in root.value or not root.value["cases"].is_sequence:
        return [], [Problem(root.position if root else start, "a test file has cases: (a list) and optionally defaults:")]
    for key, position, _ in root.items():
        if key not in ("defaults", "cases"):
            problems.append(Problem(position, f"unknown key {key!r} (a test file has defaults: and cases:)"))
    defaults: dict[str, Any] = {}
    if "defaults" in root.value:
        defaults = root.value["defaults"].plain_value() or {}
        if not isinstance(defaults, dict):
            problems.append(Problem(root.value["defaults"].position, "defaults: is a mapping of fact fields"))
            defaults = {}
    cases: list[Case] = []
    for node in root.value["cases"].value:
        if not node.is_mapping:
            problems.append(Problem(node.position, "a case is a mapping with name, fact and expect"))
            continue
        for key, position, _ in node.items():
            if key not in CASE_KEYS:
                problems.append(Problem(position, f"unknown case key {key!r} (a case has {', '.join(CASE_KEYS)})"))
        name = node.value.get("name")
        fact = node.value.get("fact")
        expect = node.value.get("expect")
        if name is None or not isinstance(name.value, str):
            problems.append(Problem(node.position, "every case needs a name: what it shows, in a sentence"))
            continue
        if fact is None or not fact.is_mapping:
            problems.append(Problem(node.position, f"case {name.value!r} needs fact: a mapping of fields"))
            continue
        if expect is None or not expect.is_mapping or not set(expect.value) & set(EXPECT_KEYS):
            problems.append(Problem(node.position, f"case {name.value!r} needs expect: with rule: and/or actions:"))
            continue
        for key, position, _ in expect.items():
            if key not in EXPECT_KEYS:
                problems.append(Problem(position, f"unknown expect key {key!r} (expect has rule: and actions:)"))
        rule = expect.value.get("rule")
        if rule is not None and rule.value is not None and not isinstance(rule.value, str):
            problems.append(Problem(rule.position, "expect.rule is a rule id, or null for no_action"))
            continue
        actions = None
        if "actions" in expect.value:
            actions = _expected_actions(expect.value["actions"], problems)
            if actions is None:
                continue
        cases.append(Case(name.value, name.position, _merge(defaults, fact.plain_value()),
                          rule.value if rule is not None else None, rule is not None, actions))
    return cases, problems


def _why_not(engine: RulesEngine, rule_id: str, fact_input: dict[str, Any], fired: str | None) -> str:
    """Why the expected rule did not decide: its failing conditions, or the earlier rule that won."""
    from daemon.facts import normalise

    fact = normalise(fact_input)
    ruleset = engine.ruleset_for(fact["event"])
    if ruleset is None:
        return f"no rule file decides {fact['event']} events"
    try:
        rule = ruleset.rule(rule_id)
    except KeyError:
        return f"{ruleset.source} has no rule {rule_id!r}"
    _, matched, conditions = trace_rule(rule, fact)
    if matched:
        return f"{rule_id} matches, but {fired} comes first in {ruleset.source}"
    failed = []

    def collect(entries: list) -> None:
        for test, actual, result, children in entries:
            if result:
                continue
            if isinstance(test, Group):
                failed.append(f"none of its {test.kind} group held" if test.kind == "any" else "a group failed")
            elif isinstance(test, Condition):
                shown = "absent" if actual is MISSING else repr(str(actual) if not isinstance(actual, (bool, int, str)) else actual)
                failed.append(f"{test.field} {test.op} {test.expected!r} was {shown}")

    collect(conditions)
    return f"{rule_id} did not match: " + "; ".join(failed)


def run_case(engine: RulesEngine, case: Case) -> CaseResult:
    try:
        decision = engine.decide(case.fact)
    except (FactError, DecisionError) as exc:
        return CaseResult(case, False, f"the fact is not valid: {exc}")
    problems: list[str] = []
    if case.expects_rule and decision.rule_id != case.expect_rule:
        problems.append(f"expected rule {case.expect_rule or 'none (no_action)'}, got {decision.rule_id or 'none (no_action)'}")
        if case.expect_rule:
            problems.append(_why_not(engine, case.expect_rule, case.fact, decision.rule_id))
    if case.expect_actions is not None:
        got = [action["type"] for action in decision.actions]
        wanted = [name for name, _ in case.expect_actions]
        if got != wanted:
            problems.append(f"expected actions {wanted}, got {got}")
        else:
            for (name, params), action in zip(case.expect_actions, decision.actions):
                for key, value in (params or {}).items():
                    if action.get(key) != value:
                        problems.append(f"expected {name}.{key} = {value!r}, got {action.get(key)!r}")
    return CaseResult(case, not problems, "; ".join(problems))


def case_files(folder: Path) -> list[Path]:
    tests = folder / "tests"
    return sorted(p for p in tests.glob("*.y*ml") if p.suffix in (".yaml", ".yml")) if tests.is_dir() else []
