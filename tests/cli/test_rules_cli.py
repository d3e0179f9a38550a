"""The command line as an operations team uses it: check, test, eval, verify, --help."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from daemon.cli.rules import actions_markdown, fields_markdown
from tests.conftest import PROJECT_ROOT


def ordersync(*args: str, stdin: str | None = None, cwd=PROJECT_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon.cli.main", *args], input=stdin, capture_output=True,
                          text=True, cwd=cwd, timeout=60)


def test_rules_check_passes_the_shipped_rules_and_names_their_versions():
    result = ordersync("rules", "check", "rules")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rules/cancellation.yaml: ruleset cancellation" in result.stdout and "sha256 " in result.stdout


def test_rules_check_fails_with_file_line_and_column(tmp_path):
    (tmp_path / "c.yaml").write_text("ruleset: c\nevents: [order_cancelled]\nrules:\n"
                                     "  - id: r\n    description: d\n    when: {event: order_cancelled, reson_code: BuyerCanceled}\n    then: []\n")
    result = ordersync("rules", "check", str(tmp_path))
    assert result.returncode == 1
    assert f"{tmp_path / 'c.yaml'}:6:36: error: unknown field 'reson_code'; did you mean 'reason_code'?" in result.stdout


def test_rules_test_runs_every_case_and_sums_up():
    result = ordersync("rules", "test", "rules")
    assert result.returncode == 0, result.stdout
    last = result.stdout.strip().splitlines()[-1]
    passed = int(last.split()[0])
    assert last == f"{passed} passed, 0 failed" and passed >= 60


def test_rules_test_exits_1_on_a_failing_case(rules_dir, tmp_path):
    folder = tmp_path / "rules"
    shutil.copytree(rules_dir, folder)
    (folder / "tests" / "wrong.yaml").write_text(
        "cases:\n  - name: wrong on purpose\n    fact: {event: order_cancelled, reason_code: BuyerCanceled}\n"
        "    expect: {rule: mirror-cancellation}\n")
    result = ordersync("rules", "test", str(folder))
    assert result.returncode == 1
    assert "FAIL" in result.stdout and result.stdout.strip().endswith("passed, 1 failed")


def test_rules_eval_decides_good_lines_and_names_the_bad_ones():
    lines = "\n".join([
        json.dumps({"event": "order_cancelled", "reason_code": "BuyerCanceled"}),
        "{not json",
        json.dumps({"event": "order_cancelled", "units_ordered": -1}),
        json.dumps({"event": "return_reported", "rma_status": "Approved"}),
    ])
    result = ordersync("rules", "eval", "--rules", "rules", stdin=lines)
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1
    assert outputs[0]["rule"] == "mirror-cancellation-with-restock"
    assert set(outputs[0]) == {"decision_id", "ruleset", "rules_file", "rules_sha256", "rule", "actions"}
    assert outputs[1] == {"error": "line 2 is not JSON: Expecting property name enclosed in double quotes at column 2", "line": 2}
    assert outputs[2]["field"] == "units_ordered" and "line 3: units_ordered: -1 is negative" in outputs[2]["error"]
    assert outputs[3]["rule"] == "create-rma-for-approved-return" and outputs[3]["actions"] == [{"type": "create_rma"}]


def test_rules_eval_explain_and_decision_log_then_audit_verify(tmp_path):
    log = tmp_path / "decisions.jsonl"
    result = ordersync("rules", "eval", "--explain", "--input", "rules/examples/facts.jsonl", "--decision-log", str(log))
    assert result.returncode == 0, result.stderr
    decisions = [json.loads(line) for line in result.stdout.splitlines()]
    assert all("trace" in d for d in decisions) and len(decisions) == len(log.read_text().splitlines())
    verified = ordersync("audit", "verify", str(log))
    assert verified.returncode == 0 and "no record removed or changed" in verified.stdout
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:3] + lines[4:]))
    broken = ordersync("audit", "verify", str(log))
    assert broken.returncode == 1 and "line 4: record 4 of account 'demo' is missing" in broken.stdout


def test_rules_eval_refuses_a_decision_log_the_daemon_is_writing(tmp_path):
    from daemon.audit.log import DecisionLog

    log = tmp_path / "decisions.jsonl"
    with DecisionLog(log):  # as a running daemon holds its log
        result = ordersync("rules", "eval", "--input", "rules/examples/facts.jsonl", "--decision-log", str(log))
    assert result.returncode == 2 and result.stdout == ""
    assert f"the decision log {log} is being written by another process" in result.stderr
    assert log.read_text() == ""


@pytest.mark.parametrize("command", [[], ["rules"], ["rules", "check"], ["rules", "test"], ["rules", "eval"],
                                     ["rules", "fields"], ["rules", "actions"], ["audit", "verify"],
                                     ["orders", "import"], ["orders", "import-returns"], ["orders", "cancel"],
                                     ["orders", "refund"]])
def test_every_command_explains_itself(command):
    result = ordersync(*command, "--help")
    assert result.returncode == 0 and "usage: ordersync" in result.stdout


def test_the_readme_tables_are_the_schema_and_the_registry():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert fields_markdown() in readme, "README's fact table is stale: paste `ordersync rules fields --markdown`"
    assert actions_markdown() in readme, "README's action table is stale: paste `ordersync rules actions --markdown`"
