"""`ordersync rules test`: the shipped cases pass, and a failing case says why."""
from __future__ import annotations

import shutil

from daemon.rules.cases import case_files, load_cases, run_case
from daemon.rules.engine import RulesEngine


def test_every_shipped_rule_has_a_case_and_every_case_passes(rules_dir):
    engine = RulesEngine(rules_dir)
    results, problems = [], []
    for path in case_files(rules_dir):
        cases, found = load_cases(path)
        problems += found
        results += [run_case(engine, case) for case in cases]
    assert problems == []
    assert [str(r) for r in results if not r.passed] == []
    covered = {r.case.expect_rule for r in results}
    every_rule = {rule.id for ruleset in engine.rulesets for rule in ruleset.rules}
    assert every_rule - covered == set()


def test_a_failing_case_names_the_rule_that_won_and_why_the_expected_one_did_not_match(rules_dir, tmp_path):
    folder = tmp_path / "rules"
    shutil.copytree(rules_dir, folder)
    (folder / "tests" / "extra.yaml").write_text(
        "cases:\n"
        "  - name: dropship Requested is held (wrong on purpose)\n"
        "    fact: {event: buyer_cancel_requested, shipping_status: Unshipped, order_status: In Process, dropship_status: Requested}\n"
        "    expect: {rule: hold-on-buyer-request, actions: [hold_order]}\n")
    engine = RulesEngine(folder)
    [case], problems = load_cases(folder / "tests" / "extra.yaml")
    result = run_case(engine, case)
    assert not result.passed
    assert "expected rule hold-on-buyer-request, got record-buyer-request-without-hold" in result.message
    assert "dropship_status in ('None', 'Pending') was 'Requested'" in result.message
    assert "expected actions ['hold_order'], got ['add_note', 'add_tag', 'notify']" in result.message
    assert str(result).startswith(f"FAIL {folder / 'tests' / 'extra.yaml'}:2 ")


def test_a_case_file_with_mistakes_reports_them(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("cases:\n  - name: x\n    fact: {event: order_cancelled}\n    expekt: {rule: r}\n")
    cases, problems = load_cases(path)
    assert cases == []
    assert any("unknown case key 'expekt'" in str(p) for p in problems)
