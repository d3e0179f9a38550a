"""Rule files → checked RuleSets. Everything is validated before anything runs: every problem in a
file is reported with its file, line and column and what would be right, and a folder with any error
loads nothing (the running daemon keeps its last good rules)."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from daemon.actions import ACTIONS
from daemon.facts import BOOL, DECIMAL, ENUM, EVENTS, FIELDS, INT, NUMERIC_KINDS, TEXT, FieldSpec, suggest
from daemon.rules.model import (
    OPERATORS, ORDERING, ActionCall, Condition, FieldRef, Group, Rule, RuleSet, Template, Test,
)
from daemon.rules.yamlsource import Node, Position, Problem, YamlFileError, read_yaml_with_problems

RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# durable_rules hangs once 512 rules share a first test (research §1.8); stay well below it.
MAX_RULES = 400
FILE_KEYS = ("ruleset", "description", "events", "rules")
RULE_KEYS = ("id", "description", "when", "then")


class RulesError(Exception):
    """A rule folder or file that cannot be loaded; `problems` lists every error with its place."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class _Context:
    problems: list[Problem]

    def error(self, position: Position, message: str) -> None:
        self.problems.append(Problem(position, message))

    def warn(self, position: Position, message: str) -> None:
        self.problems.append(Problem(position, message, "warning"))


def _shown(node: Node) -> str:
    if node.value is None:
        return "null"
    if isinstance(node.value, bool):
        return str(node.value).lower()
    return repr(node.value)


# -- values -------------------------------------------------------------------------------------

def check_value(ctx: _Context, spec_kind: str, values: tuple[Any, ...], what: str, node: Node) -> Any:
    """The typed value of a scalar for a field or parameter of this kind, or None after an error."""
    value = node.value
    if node.trap:
        return None
    if value is None:
        hint = ""
        if "None" in values:
            hint = "; if you meant the status None, write None (YAML reads null, ~ and an empty value as nothing)"
        ctx.error(node.position, f"{what} has no value (null){hint}")
        return None
    if node.is_mapping or node.is_sequence:
        ctx.error(node.position, f"{what} takes a single value here, not a {'mapping' if node.is_mapping else 'list'}")
        return None
    if spec_kind == BOOL:
        if isinstance(value, bool):
            return value
        ctx.error(node.position, f"{what} is true or false, not {_shown(node)}")
        return None
    if spec_kind in NUMERIC_KINDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            quoted = " (write numbers without quotes)" if isinstance(value, str) else ""
            ctx.error(node.position, f"{what} is a number, not {_shown(node)}{quoted}")
            return None
        if spec_kind == INT:
            if isinstance(value, float) and not value.is_integer():
                ctx.error(node.position, f"{what} is a whole number, not {value}")
                return None
            return int(value)
        return Decimal(str(value)) if spec_kind == DECIMAL else float(value)
    if not isinstance(value, str):
        ctx.error(node.position, f"{what} is text, not {_shown(node)}; quote it ('{node.text}')")
        return None
    if spec_kind == ENUM and value not in values:
        allowed = ", ".join(repr(v) if v == "" else str(v) for v in values)
        ctx.error(node.position, f"{value!r} is not a value of {what}{suggest(value, values)} (allowed: {allowed})")
        return None
    return value


def _field_spec(ctx: _Context, name: str, position: Position) -> FieldSpec | None:
    spec = FIELDS.get(name)
    if spec is None:
        ctx.error(position, f"unknown field {name!r}{suggest(name, FIELDS)} (`ordersync rules fields` lists them)")
    return spec


def _field_ref(ctx: _Context, node: Node, spec: FieldSpec, op: str) -> FieldRef | None:
    """`{field: other}`: the other field must be comparable with this one."""
    if set(node.value) != {"field"} or not isinstance(node.value["field"].value, str):
        ctx.error(node.position, f"a comparison with another field is written {{field: NAME}}; "
                                 f"{spec.name} {op} takes {spec.describe_type()}")
        return None
    target_node = node.value["field"]
    target = _field_spec(ctx, target_node.value, target_node.position)
    if target is None:
        return None
    comparable = (spec.is_numeric and target.is_numeric) or (spec.kind == target.kind and spec.values == target.values)
    if not comparable:
        ctx.error(target_node.position, f"{spec.name} ({spec.kind}) cannot be compared with {target.name} ({target.kind})")
        return None
    return FieldRef(target.name)


# -- conditions ---------------------------------------------------------------------------------

def _conditions(ctx: _Context, spec: FieldSpec, key_position: Position, node: Node) -> list[Condition]:
    if node.is_sequence:
        ctx.error(node.position, f"a list for {spec.name} needs an operator: write {{in: [...]}} or {{not_in: [...]}}")
        return []
    if not node.is_mapping:
        value = check_value(ctx, spec.kind, spec.values, spec.name, node)
        return [] if value is None else [Condition(spec.name, "eq", value, key_position)]
    if set(node.value) == {"field"}:
        ref = _field_ref(ctx, node, spec, "eq")
        return [] if ref is None else [Condition(spec.name, "eq", ref, key_position)]
    if not node.value:
        ctx.error(node.position, f"{spec.name} has an empty mapping; give a value or an operator ({', '.join(OPERATORS)})")
    found: list[Condition] = []
    for op, op_position, operand in node.items():
        if op not in OPERATORS:
            ctx.error(op_position, f"unknown operator {op!r}{suggest(op, OPERATORS)} (operators: {', '.join(OPERATORS)})")
            continue
        what = f"{spec.name} {op}"
        if op == "exists":
            flag = check_value(ctx, BOOL, (), what, operand)
            if flag is not None:
                found.append(Condition(spec.name, op, flag, op_position))
            continue
        if op in ORDERING and not spec.is_numeric:
            ctx.error(op_position, f"{op} compares numbers; {spec.name} is {spec.kind} (use eq, in or not_in)")
            continue
        if op in ("in", "not_in"):
            if not operand.is_sequence or not operand.value:
                ctx.error(operand.position, f"{what} takes a non-empty list, e.g. {op}: [A, B]")
                continue
            items = [check_value(ctx, spec.kind, spec.values, spec.name, item) for item in operand.value]
            if any(item is None for item in items):
                continue
            found.append(Condition(spec.name, op, tuple(dict.fromkeys(items)), op_position))
            continue
        if operand.is_mapping:
            ref = _field_ref(ctx, operand, spec, op)
            if ref is not None:
                found.append(Condition(spec.name, op, ref, op_position))
            continue
        value = check_value(ctx, spec.kind, spec.values, what, operand)
        if value is not None:
            found.append(Condition(spec.name, op, value, op_position))
    return found


def _group(ctx: _Context, kind: str, node: Node, events: tuple[str, ...]) -> Group:
    """A mapping is 'all of its entries'; `any:`/`all:` keys nest lists of such mappings."""
    items: list[Test] = []
    if not node.is_mapping:
        ctx.error(node.position, "conditions are a mapping of field: value (or any:/all: lists of such mappings)")
        return Group(kind, (), node.position)
    for key, key_position, child in node.items():
        if key in ("any", "all"):
            if not child.is_sequence or not child.value:
                ctx.error(child.position, f"{key}: takes a non-empty list of condition mappings")
                continue
            members = [_group(ctx, "all", member, events) for member in child.value]
            members = [m.items[0] if len(m.items) == 1 else m for m in members]
            items.append(Group(key, tuple(members), key_position))
            continue
        spec = _field_spec(ctx, key, key_position)
        if spec is None:
            continue
        conditions = _conditions(ctx, spec, key_position, child)
        for condition in conditions:
            if condition.field == "event":
                named = condition.expected if condition.op in ("in", "not_in") else (condition.expected,)
                for event in named:
                    if isinstance(event, str) and event not in events:
                        ctx.error(condition.position, f"event {event!r} is not among this file's events "
                                                      f"({', '.join(events)}); add it to events: or remove the condition")
        items.extend(conditions)
    return Group(kind, tuple(items), node.position)


# -- actions ------------------------------------------------------------------------------------

def _action(ctx: _Context, node: Node) -> ActionCall | None:
    if isinstance(node.value, str):
        name, params_node, name_position = node.value, None, node.position
    elif node.is_mapping and len(node.value) == 1:
        name, name_position, params_node = next(node.items())
    else:
        ctx.error(node.position, "an action is a name (restock) or a name with parameters (add_note: {text: ...})")
        return None
    spec = ACTIONS.get(name)
    if spec is None:
        ctx.error(name_position, f"unknown action {name!r}{suggest(name, ACTIONS)} (`ordersync rules actions` lists them)")
        return None
    given: dict[str, tuple[Position, Node]] = {}
    if params_node is not None and params_node.value is not None:
        if not params_node.is_mapping:
            ctx.error(params_node.position, f"{name} takes parameters as a mapping: {spec.signature()}")
            return None
        given = {key: (position, child) for key, position, child in params_node.items()}
    params: dict[str, Any] = {}
    for key, (position, child) in given.items():
        param = spec.params.get(key)
        if param is None:
            known = ", ".join(spec.params) or "none"
            ctx.error(position, f"{name} has no parameter {key!r}{suggest(key, spec.params)} (parameters: {known})")
            continue
        what = f"{name}.{key}"
        if child.is_mapping:
            target = FIELDS.get(child.value.get("field").value) if "field" in child.value else None
            # A field whose values only partly fit is allowed; the decision checks the value it carries
            # (a rule before it should reject the rest, as the shipped rules do for reason codes).
            fits = target is not None and target.kind == param.kind and (
                not param.values or bool(set(target.values) & set(param.values)))
            if set(child.value) == {"field"} and fits:
                params[key] = FieldRef(target.name)
            elif set(child.value) == {"field"} and target is not None:
                ctx.error(child.position, f"{what} takes {param.describe_type()}; field {target.name} is {target.describe_type()}")
            else:
                ctx.error(child.position, f"{what} takes a value or {{field: NAME}} (a fact field of the same type)")
            continue
        value = check_value(ctx, param.kind, param.values, what, child)
        if value is None:
            continue
        if param.kind == TEXT:
            placeholders = Template.placeholders(value) if "{" in value else []
            unknown = [p for p in placeholders if p not in FIELDS]
            for placeholder in unknown:
                ctx.error(child.position, f"{what} names {{{placeholder}}}, which is not a field{suggest(placeholder, FIELDS)}")
            if placeholders and not unknown:
                value = Template(value, tuple(placeholders))
        params[key] = value
    for key, param in spec.params.items():
        if key not in params and key not in given:
            if param.required:
                ctx.error(name_position, f"{name} needs {key} ({param.describe_type()}): {spec.signature()}")
            else:
                params[key] = param.default
    return ActionCall(name, params, name_position)


# -- shadowing ----------------------------------------------------------------------------------

def _implies(b: Condition, a: Condition) -> bool:
    """Whenever b holds, a holds (b and a test the same field)."""
    if a.op == "exists":
        return (b.op == "exists" and b.expected == a.expected) or (a.expected is True and b.op != "exists")
    if isinstance(a.expected, FieldRef) or isinstance(b.expected, FieldRef) or b.op == "exists":
        return a == b
    # The values b admits, when b names them.
    admitted = (b.expected,) if b.op == "eq" else b.expected if b.op == "in" else None
    if admitted is not None:
        return all(_holds(a.op, value, a.expected) for value in admitted)
    if b.op == "not_in" and a.op in ("not_in", "ne"):
        excluded = a.expected if a.op == "not_in" else (a.expected,)
        return set(excluded) <= set(b.expected)
    if b.op == "ne" and a.op in ("ne", "not_in"):
        return a.op == "ne" and a.expected == b.expected or a.op == "not_in" and set(a.expected) <= {b.expected}
    if b.op in ORDERING and a.op in ORDERING:
        lower = {"gt", "gte"}
        if (b.op in lower) != (a.op in lower):
            return False
        if b.expected == a.expected:
            return a.op == b.op or (a.op in ("gte", "lte"))
        return b.expected > a.expected if b.op in lower else b.expected < a.expected
    return False


def _holds(op: str, actual: Any, expected: Any) -> bool:
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if op == "in":
        return actual in expected
    if op == "not_in":
        return actual not in expected
    if op in ORDERING:
        try:
            return {"gt": actual > expected, "gte": actual >= expected,
                    "lt": actual < expected, "lte": actual <= expected}[op]
        except TypeError:
            return False
    return False


def _covers(earlier: Rule, later: Rule) -> bool:
    """Every condition of `earlier` is implied by one of `later`'s: `later` can never be the first hit."""
    mine = later.when.items
    for condition in earlier.when.items:
        if isinstance(condition, Group):
            if condition not in mine:
                return False
            continue
        if not any(isinstance(b, Condition) and b.field == condition.field and _implies(b, condition) for b in mine):
            return False
    return True


# -- files and folders --------------------------------------------------------------------------

def _rules(ctx: _Context, node: Node, events: tuple[str, ...]) -> list[Rule]:
    rules: list[Rule] = []
    seen: dict[str, Position] = {}
    for rule_node in node.value:
        if not rule_node.is_mapping:
            ctx.error(rule_node.position, "a rule is a mapping with id, description, when and then")
            continue
        for key, position, _ in rule_node.items():
            if key not in RULE_KEYS:
                ctx.error(position, f"unknown rule key {key!r}{suggest(key, RULE_KEYS)} (a rule has {', '.join(RULE_KEYS)})")
        fields = rule_node.value
        id_node = fields.get("id")
        if id_node is None or not isinstance(id_node.value, str) or not RULE_ID.match(id_node.value):
            ctx.error((id_node or rule_node).position,
                      "every rule needs an id of letters, digits, '-', '_' or '.', e.g. id: hold-on-buyer-request")
            continue
        rule_id = id_node.value
        if rule_id in seen:
            ctx.error(id_node.position, f"rule id {rule_id!r} is used twice (first at line {seen[rule_id].line}); ids name decisions in the audit log, so each must be unique")
        seen[rule_id] = id_node.position
        description = fields.get("description")
        if description is None or not isinstance(description.value, str) or not description.value.strip():
            ctx.error(id_node.position, f"rule {rule_id!r} needs a description: one sentence on why it exists, for auditors")
        when = fields.get("when")
        if when is None:
            ctx.error(id_node.position, f"rule {rule_id!r} needs when: (its conditions; when: {{}} matches every event of the file)")
            continue
        then = fields.get("then")
        if then is None or not then.is_sequence:
            ctx.error((then or id_node).position, f"rule {rule_id!r} needs then: a list of actions (then: [] decides to do nothing)")
            continue
        group = _group(ctx, "all", when, events) if when.value is not None else Group("all", (), when.position)
        actions = [_action(ctx, item) for item in then.value]
        rules.append(Rule(rule_id, description.value.strip() if description and isinstance(description.value, str) else "",
                          group, tuple(a for a in actions if a is not None), id_node.position))
    return rules


def load_file(path: Path | str, text: str | None = None) -> RuleSet:
    """One rule file, checked; RulesError with every problem (warnings ride along on the RuleSet)."""
    path = Path(path)
    raw = text.encode("utf-8") if text is not None else None
    try:
        if raw is None:
            raw = path.read_bytes()
        root, yaml_problems = read_yaml_with_problems(path, raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RulesError([Problem(Position(str(path), 1, 1), f"not UTF-8 text ({exc.reason}); save the file as UTF-8")]) from None
    except OSError as exc:
        raise RulesError([Problem(Position(str(path), 1, 1), f"cannot read the file: {exc.strerror}")]) from None
    except YamlFileError as exc:
        raise RulesError(exc.problems) from None
    ctx = _Context(list(yaml_problems))
    start = Position(str(path), 1, 1)
    if root is None or not root.is_mapping:
        raise RulesError([Problem(root.position if root else start,
                                  "a rule file is a mapping with ruleset:, events: and rules: (see rules/cancellation.yaml)")])
    for key, position, _ in root.items():
        if key not in FILE_KEYS:
            ctx.error(position, f"unknown key {key!r}{suggest(key, FILE_KEYS)} (a rule file has {', '.join(FILE_KEYS)})")
    fields = root.value
    name_node = fields.get("ruleset")
    name = name_node.value if name_node is not None else None
    if not isinstance(name, str) or not RULE_ID.match(name):
        ctx.error((name_node or root).position, "ruleset: needs a name of letters, digits, '-' or '_', e.g. ruleset: cancellation")
        name = path.stem
    events: tuple[str, ...] = ()
    events_node = fields.get("events")
    if events_node is None or not events_node.is_sequence or not events_node.value:
        ctx.error((events_node or root).position, f"events: lists the events this file decides, from: {', '.join(EVENTS)}")
    else:
        checked = [check_value(ctx, ENUM, EVENTS, "events", item) for item in events_node.value]
        events = tuple(e for e in checked if e is not None)
    rules_node = fields.get("rules")
    rules: list[Rule] = []
    if rules_node is None or not rules_node.is_sequence:
        ctx.error((rules_node or root).position, "rules: is a list of rules (id, description, when, then)")
    else:
        if len(rules_node.value) > MAX_RULES:
            ctx.error(rules_node.position, f"{len(rules_node.value)} rules in one file; the engine allows {MAX_RULES}: split the file")
        rules = _rules(ctx, rules_node, events)
    errors = [p for p in ctx.problems if p.severity == "error"]
    if errors:
        raise RulesError(sorted(errors, key=lambda p: (p.position.line, p.position.column)))
    warnings: list[Problem] = []
    for index, later in enumerate(rules):
        for earlier in rules[:index]:
            if _covers(earlier, later):
                warnings.append(Problem(later.position, f"rule {later.id!r} can never fire: rule {earlier.id!r} "
                                                        f"(line {earlier.position.line}) comes first and matches every fact it matches",
                                        "warning"))
                break
    return RuleSet(name, events, tuple(rules), str(path), hashlib.sha256(raw).hexdigest(), tuple(warnings))


def rule_files(folder: Path | str) -> list[Path]:
    return sorted(p for p in Path(folder).glob("*.y*ml") if p.suffix in (".yaml", ".yml") and p.is_file())


def load_folder(folder: Path | str) -> list[RuleSet]:
    """Every rule file in the folder (not its tests/ or examples/), or RulesError with every problem in any."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RulesError([Problem(Position(str(folder), 1, 1), "no such rules folder; point --rules at the folder holding cancellation.yaml and refund.yaml")])
    files = rule_files(folder)
    if not files:
        raise RulesError([Problem(Position(str(folder), 1, 1), "no rule files (*.yaml) in this folder")])
    problems: list[Problem] = []
    rulesets: list[RuleSet] = []
    for path in files:
        try:
            rulesets.append(load_file(path))
        except RulesError as exc:
            problems.extend(exc.problems)
    deciders: dict[str, RuleSet] = {}
    names: dict[str, RuleSet] = {}
    for ruleset in rulesets:
        if ruleset.name in names:
            problems.append(Problem(Position(ruleset.source, 1, 1), f"ruleset name {ruleset.name!r} is also used by {names[ruleset.name].source}"))
        names[ruleset.name] = ruleset
        for event in ruleset.events:
            if event in deciders:
                problems.append(Problem(Position(ruleset.source, 1, 1),
                                        f"event {event!r} is decided by {deciders[event].source} already; one event, one rule file"))
            deciders[event] = ruleset
    if problems:
        raise RulesError(problems)
    return rulesets
