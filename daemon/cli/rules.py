"""`ordersync rules`: check, test and try the policy before it goes live."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO, Any, Iterable

from daemon.actions import ACTIONS
from daemon.facts import FIELDS, FactError
from daemon.rules.cases import case_files, load_cases, run_case
from daemon.rules.engine import DecisionError, EngineDisagreement, RulesEngine
from daemon.rules.loader import RulesError, load_folder
from daemon.rules.yamlsource import Problem

DEFAULT_RULES = Path("rules")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "rules", help="check, test and try the rule files",
        description="Check, test and try the rule files (rules/cancellation.yaml, rules/refund.yaml) before they go live.")
    sub = parser.add_subparsers(dest="rules_command", metavar="SUBCOMMAND", required=True)

    check = sub.add_parser("check", help="validate the rule files; exit 1 on any error",
                           description="Validate every rule file in DIR against the fact schema and the action registry. "
                                       "Prints each error and warning with file:line:column; exit 0 when there is no error, 1 otherwise.")
    check.add_argument("dir", nargs="?", type=Path, default=DEFAULT_RULES, help="the rules folder (default: rules)")
    check.set_defaults(handler=run_check)

    test = sub.add_parser("test", help="run the YAML test cases in DIR/tests; exit 1 on any failure",
                          description="Run the rule test cases in DIR/tests/*.yaml against the rules in DIR: one line per case, "
                                      "then 'N passed, N failed'. Exit 1 on any failure or invalid test file.")
    test.add_argument("dir", nargs="?", type=Path, default=DEFAULT_RULES, help="the rules folder (default: rules)")
    test.set_defaults(handler=run_test)

    evaluate = sub.add_parser(
        "eval", help="decide facts given as JSON lines",
        description="Read facts as JSON lines (one object per line) and write one decision per line: "
                    '{"decision_id", "ruleset", "rules_sha256", "rule", "actions", "trace" (with --explain)}. '
                    'A line that is not a valid fact gets {"error": ..., "line": N, "field": ...} and the rest go on. '
                    "`ordersync rules fields` lists what a fact may hold.")
    evaluate.add_argument("--rules", type=Path, default=DEFAULT_RULES, help="the rules folder (default: rules)")
    evaluate.add_argument("--input", default="-", help="a file of JSON lines, or - for standard input (default)")
    evaluate.add_argument("--explain", action="store_true", help="add the condition-by-condition trace of every rule tried")
    evaluate.add_argument("--format", choices=("json", "text"), default="json",
                          help="json: one JSON line per fact (default); text: a readable summary per fact")
    evaluate.add_argument("--decision-log", type=Path, metavar="FILE",
                          help="also append each decision's audit record (hash-chained, personal data masked) to FILE; "
                               "exit 2 if another process (a running daemon) is writing FILE")
    evaluate.set_defaults(handler=run_eval)

    fields = sub.add_parser("fields", help="list the fact fields rules can read",
                            description="List every fact field: its type and allowed values.")
    fields.add_argument("--markdown", action="store_true", help="as a Markdown table (the README's)")
    fields.set_defaults(handler=run_fields)

    actions = sub.add_parser("actions", help="list the actions rules can decide",
                             description="List every action: its parameters and what it does.")
    actions.add_argument("--markdown", action="store_true", help="as a Markdown table (the README's)")
    actions.set_defaults(handler=run_actions)


def _print_problems(problems: Iterable[Problem], stream: IO[str]) -> None:
    for problem in problems:
        print(problem, file=stream)


def run_check(args: argparse.Namespace) -> int:
    try:
        rulesets = load_folder(args.dir)
    except RulesError as exc:
        _print_problems(exc.problems, sys.stdout)
        print(f"{len(exc.problems)} error(s); the rules in {args.dir} would not load")
        return 1
    for ruleset in rulesets:
        _print_problems(ruleset.warnings, sys.stdout)
        print(f"{ruleset.source}: ruleset {ruleset.name}, {len(ruleset.rules)} rules, "
              f"events {', '.join(ruleset.events)}, sha256 {ruleset.sha256}")
    return 0


def _engine(folder: Path) -> RulesEngine | None:
    try:
        return RulesEngine(folder)
    except RulesError as exc:
        _print_problems(exc.problems, sys.stderr)
        print(f"the rules in {folder} do not load; run `ordersync rules check {folder}`", file=sys.stderr)
        return None


def run_test(args: argparse.Namespace) -> int:
    engine = _engine(args.dir)
    if engine is None:
        return 1
    files = case_files(args.dir)
    if not files:
        print(f"no test cases in {args.dir / 'tests'}; add YAML case files there (see rules/tests/)")
        return 1
    passed = failed = 0
    for path in files:
        cases, problems = load_cases(path)
        for problem in problems:
            print(f"FAIL {problem}")
        failed += len(problems)
        for case in cases:
            result = run_case(engine, case)
            print(result)
            passed, failed = passed + result.passed, failed + (not result.passed)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def _lines(source: str) -> Iterable[tuple[int, str]]:
    if source == "-":
        yield from enumerate(sys.stdin, start=1)
        return
    with open(source, encoding="utf-8") as handle:
        yield from enumerate(handle, start=1)


def _text(decision: dict[str, Any], fact: dict[str, Any]) -> str:
    order = fact.get("amazon_order_id", "(no order id)")
    head = f"{order:<22} {fact.get('event', '?'):<24}"
    if "error" in decision:
        return f"{head} ERROR {decision['error']}"
    if decision["rule"] is None:
        return f"{head} no_action (no rule of {decision['ruleset'] or 'any file'} matched)"
    actions = "; ".join(
        a["type"] + ("(" + ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in a.items() if k != "type") + ")" if len(a) > 1 else "")
        for a in decision["actions"]) or "nothing to do"
    return f"{head} {decision['rule']}\n{'':<48}→ {actions}"


def run_eval(args: argparse.Namespace) -> int:
    engine = _engine(args.rules)
    if engine is None:
        return 1
    log = None
    if args.decision_log:
        from daemon.audit.log import DecisionLog, DecisionLogInUse

        try:
            log = DecisionLog(args.decision_log)
        except DecisionLogInUse as exc:
            print(f"ordersync rules eval: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"ordersync rules eval: cannot open the decision log {args.decision_log}: {exc.strerror}", file=sys.stderr)
            return 2
    failures = 0
    try:
        for number, line in _lines(args.input):
            if not line.strip():
                continue
            fact: dict[str, Any] = {}
            try:
                fact = json.loads(line)
                decision = engine.decide(fact)
                output = decision.to_json(explain=args.explain)
                if log is not None:
                    log.write_decision(decision)
            except json.JSONDecodeError as exc:
                output = {"error": f"line {number} is not JSON: {exc.msg} at column {exc.colno}", "line": number}
            except FactError as exc:
                output = {"error": f"line {number}: {exc}", "line": number, "field": exc.field}
            except (DecisionError, EngineDisagreement) as exc:
                output = {"error": f"line {number}: {exc}", "line": number}
            failures += "error" in output
            if args.format == "json":
                print(json.dumps(output, ensure_ascii=False, default=str))
            else:
                print(_text(output, fact if isinstance(fact, dict) else {}))
    except OSError as exc:
        print(f"cannot read {args.input}: {exc.strerror}", file=sys.stderr)
        return 2
    finally:
        if log is not None:
            log.close()
    return 1 if failures else 0


def fields_markdown() -> str:
    rows = ["| field | type and values | what it is |", "|---|---|---|"]
    for spec in FIELDS.values():
        default = f" (default {str(spec.default).lower()})" if spec.default is not None else ""
        derived = f" Derived from {', '.join(spec.derived_from)} when left out." if spec.derived_from else ""
        personal = " Personal: masked in the decision log." if spec.personal else ""
        rows.append(f"| `{spec.name}` | {spec.describe_type()}{default} | {spec.description}.{derived}{personal} |")
    return "\n".join(rows)


def actions_markdown() -> str:
    rows = ["| action | parameters | carried out by | what it does |", "|---|---|---|---|"]
    for spec in ACTIONS.values():
        params = "; ".join(
            f"`{name}`{'' if p.required else ' (optional' + (f', default {str(p.default).lower()}' if p.default is not None else '') + ')'}: "
            f"{p.describe_type() if p.kind == 'enum' and len(p.values) < 12 else p.kind}"
            for name, p in spec.params.items()) or "none"
        rows.append(f"| `{spec.name}` | {params} | {spec.target} | {spec.description} |")
    return "\n".join(rows)


def _listing(args: argparse.Namespace, markdown: str, lines: Iterable[str]) -> int:
    print(markdown if args.markdown else "\n".join(lines))
    return 0


def run_fields(args: argparse.Namespace) -> int:
    return _listing(args, fields_markdown(), (f"{spec.name:<40} {spec.describe_type()}" for spec in FIELDS.values()))


def run_actions(args: argparse.Namespace) -> int:
    return _listing(args, actions_markdown(), (f"{spec.signature():<70} {spec.description}" for spec in ACTIONS.values()))
