"""Loading validates everything before anything runs, and says where and what would be right."""
from __future__ import annotations

from pathlib import Path

import pytest

from daemon.rules.loader import RulesError, load_file, load_folder

HEADER = "ruleset: cancellation\nevents: [buyer_cancel_requested, order_cancelled]\nrules:\n"


def problems_of(tmp_path: Path, body: str, header: str = HEADER) -> list[str]:
    path = tmp_path / "cancellation.yaml"
    path.write_text(header + body)
    with pytest.raises(RulesError) as caught:
        load_file(path)
    return [str(p) for p in caught.value.problems]


def one_rule(when: str, then: str = "[]") -> str:
    return f"  - id: r\n    description: test\n    when: {when}\n    then: {then}\n"


def test_a_clean_file_loads_with_its_sha256(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(HEADER + one_rule("{event: order_cancelled, reason_code: BuyerCanceled}", "[restock]"))
    ruleset = load_file(path)
    assert [rule.id for rule in ruleset.rules] == ["r"]
    assert len(ruleset.sha256) == 64 and ruleset.warnings == ()


def test_unknown_field_names_file_line_column_and_the_likely_field(tmp_path):
    rule = one_rule("{event: order_cancelled, shiping_status: Unshipped}")
    [problem] = problems_of(tmp_path, rule)
    column = rule.splitlines()[2].index("shiping_status") + 1
    assert problem.startswith(f"{tmp_path / 'cancellation.yaml'}:6:{column}: error: unknown field 'shiping_status'")
    assert "did you mean 'shipping_status'" in problem


def test_unknown_action_and_parameter_are_named_with_suggestions(tmp_path):
    found = problems_of(tmp_path, one_rule("{event: order_cancelled}", "[hold_ordr, {add_note: {txt: hi}}]"))
    assert any("unknown action 'hold_ordr'; did you mean 'hold_order'" in p for p in found)
    assert any("add_note has no parameter 'txt'; did you mean 'text'" in p for p in found)
    assert any("add_note needs text" in p for p in found)


def test_wrong_types_and_values_outside_the_allowed_ones(tmp_path):
    found = problems_of(tmp_path, one_rule(
        "{event: order_cancelled, units_shipped: '3', reason_code: NoStock, has_kit_items: 1, settings.allow_over_refund: 'true'}"))
    assert any("units_shipped is a number, not '3' (write numbers without quotes)" in p for p in found)
    assert any("'NoStock' is not a value of reason_code" in p for p in found)
    assert any("has_kit_items is true or false, not 1" in p for p in found)
    assert any("settings.allow_over_refund is true or false, not 'true'" in p for p in found)


def test_ordering_operators_only_on_numbers_and_lists_need_an_operator(tmp_path):
    found = problems_of(tmp_path, one_rule("{event: order_cancelled, reason_code: {gt: 3}, order_status: [On Hold]}"))
    assert any("gt compares numbers; reason_code is enum" in p for p in found)
    assert any("a list for order_status needs an operator" in p for p in found)


def test_unquoted_yes_no_on_off_are_errors_even_where_a_boolean_fits(tmp_path):
    rule = one_rule("{event: order_cancelled, order_status: yes, has_kit_items: on}")
    found = problems_of(tmp_path, rule)
    column = rule.splitlines()[2].index("yes") + 1
    assert any(f":6:{column}: error: unquoted 'yes' is read by YAML as true" in p for p in found)
    assert any("unquoted 'on' is read by YAML as true: write true or false" in p for p in found)
    # The trap is reported once, not again as a wrong type.
    assert not any("order_status is text" in p for p in found)


def test_null_where_the_status_None_was_meant(tmp_path):
    [problem] = problems_of(tmp_path, one_rule("{event: buyer_cancel_requested, dropship_status: null}"))
    assert "dropship_status has no value (null); if you meant the status None, write None" in problem


def test_unquoted_None_is_the_dropship_status_None(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(HEADER + one_rule("{event: buyer_cancel_requested, dropship_status: None}"))
    assert load_file(path).rules[0].when.items[1].expected == "None"


def test_duplicate_rule_ids_and_duplicate_keys(tmp_path):
    found = problems_of(tmp_path, one_rule("{event: order_cancelled, event: buyer_cancel_requested}") + one_rule("{event: order_cancelled}"))
    assert any("key 'event' appears twice in one mapping" in p for p in found)
    assert any("rule id 'r' is used twice (first at line 4)" in p for p in found)


def test_an_event_the_file_does_not_decide_is_an_error(tmp_path):
    [problem] = problems_of(tmp_path, one_rule("{event: refund_requested}"))
    assert "event 'refund_requested' is not among this file's events" in problem


def test_a_file_that_is_not_yaml_points_at_the_line(tmp_path):
    [problem] = problems_of(tmp_path, "  - id: r\n    when: {event: order_cancelled\n    then: []\n")
    assert ":6:9: error: not valid YAML" in problem and "flow mapping that starts at line 5, column 11" in problem


def test_a_file_that_is_yaml_but_not_a_rule_file(tmp_path):
    [problem] = problems_of(tmp_path, "", header="just some words\n")
    assert "a rule file is a mapping with ruleset:, events: and rules:" in problem


def test_missing_description_when_and_then(tmp_path):
    found = problems_of(tmp_path, "  - id: r\n    when: {event: order_cancelled}\n  - id: s\n    description: d\n    then: []\n")
    assert any("rule 'r' needs a description" in p for p in found)
    assert any("rule 'r' needs then:" in p for p in found)
    assert any("rule 's' needs when:" in p for p in found)


def test_template_placeholders_must_be_fields(tmp_path):
    [problem] = problems_of(tmp_path, one_rule("{event: order_cancelled}", "[{add_note: {text: 'why: {buyer_reason}'}}]"))
    assert "add_note.text names {buyer_reason}, which is not a field; did you mean 'buyer_cancel_reason'" in problem


def test_field_references_must_be_comparable(tmp_path):
    [problem] = problems_of(tmp_path, one_rule("{event: order_cancelled, refund_amount: {gt: {field: reason_code}}}"))
    assert "refund_amount (decimal) cannot be compared with reason_code (enum)" in problem


def test_a_rule_shadowed_by_an_earlier_broader_rule_is_a_warning(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(HEADER + one_rule("{event: order_cancelled, units_shipped: {gt: 0}}")
                    + one_rule("{event: order_cancelled, units_shipped: {gte: 2}, reason_code: BuyerCanceled}").replace("id: r", "id: s"))
    [warning] = load_file(path).warnings
    assert "rule 's' can never fire: rule 'r' (line 4) comes first" in str(warning)


def test_a_narrower_earlier_rule_does_not_shadow(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(HEADER + one_rule("{event: order_cancelled, reason_code: BuyerCanceled}")
                    + one_rule("{event: order_cancelled}").replace("id: r", "id: s"))
    assert load_file(path).warnings == ()


def test_a_folder_with_one_bad_file_loads_nothing_and_one_event_has_one_file(tmp_path):
    (tmp_path / "a.yaml").write_text(HEADER + one_rule("{event: order_cancelled}"))
    (tmp_path / "b.yaml").write_text(HEADER.replace("cancellation", "other") + one_rule("{event: order_cancelled}"))
    with pytest.raises(RulesError) as caught:
        load_folder(tmp_path)
    assert any("is decided by" in str(p) and "one event, one rule file" in str(p) for p in caught.value.problems)


def test_the_shipped_rules_load_without_warnings(rules_dir):
    rulesets = load_folder(rules_dir)
    assert {r.name for r in rulesets} == {"cancellation", "refund"}
    assert [w for r in rulesets for w in r.warnings] == []
