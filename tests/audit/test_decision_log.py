"""The decision log: one self-contained record per decision, personal data masked, and proof that no
record was removed or changed."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.audit.chain import Chain, canonical, record_hash, verify
from daemon.audit.log import DecisionLog, DecisionLogInUse
from daemon.rules.engine import RulesEngine

BUYER_WORDS = "Please cancel, my address is 12 Elm Street"


@pytest.fixture(scope="module")
def engine(rules_dir):
    return RulesEngine(rules_dir)


def _decide(engine, account: str, order: str):
    return engine.decide({"event": "buyer_cancel_requested", "account": account, "amazon_order_id": order,
                          "shipping_status": "Unshipped", "order_status": "In Process", "dropship_status": "None",
                          "buyer_cancel_reason": BUYER_WORDS})


@pytest.fixture
def log_path(tmp_path, engine):
    path = tmp_path / "decisions.jsonl"
    with DecisionLog(path) as log:
        for index in range(6):
            log.write_decision(_decide(engine, "acme" if index % 2 else "globex", f"112-{index}"))
    return path


def test_a_record_holds_what_was_known_which_rule_of_which_version_and_what_was_decided(log_path, rules_dir):
    record = json.loads(log_path.read_text().splitlines()[0])
    assert record["type"] == "decision" and record["event"] == "buyer_cancel_requested"
    assert record["account"] == "globex" and record["amazon_order_id"] == "112-0"
    assert record["ruleset"] == "cancellation" and record["rule"] == "hold-on-buyer-request"
    assert record["rules_sha256"] == __import__("hashlib").sha256((rules_dir / "cancellation.yaml").read_bytes()).hexdigest()
    assert record["trace"][-1]["rule"] == "hold-on-buyer-request" and record["trace"][-1]["matched"]
    # Before it, only rules of the same event, each with why it did not decide.
    assert [e["rule"] for e in record["trace"][:-1]] == ["accept-buyer-request-after-approval", "accept-buyer-request"]
    assert [a["type"] for a in record["actions"]] == ["hold_order", "add_note", "notify"]
    assert record["fact"]["shipping_status"] == "Unshipped"
    assert record["engine"]["name"] == "durable_rules"
    assert record["seq"] == 1 and len(record["hash"]) == 64


def test_personal_data_is_masked_in_the_fact_the_trace_and_the_actions(log_path):
    text = log_path.read_text()
    assert "Elm Street" not in text
    record = json.loads(text.splitlines()[0])
    assert record["fact"]["buyer_cancel_reason"] == "[masked]"
    assert record["actions"][1]["text"] == "Buyer asked to cancel: [masked]"
    assert record["masked"] == ["fact.buyer_cancel_reason", "actions[1].text"]


def test_an_intact_log_verifies_with_each_accounts_head(log_path):
    result = verify(log_path)
    assert result.ok and result.records == 6
    assert {account: head.seq for account, head in result.heads.items()} == {"globex": 3, "acme": 3}


def test_a_removed_record_is_reported_with_its_account_and_place(log_path):
    lines = log_path.read_text().splitlines(keepends=True)
    del lines[2]  # globex's second record
    log_path.write_text("".join(lines))
    result = verify(log_path)
    assert not result.ok and result.broken.line == 4 and result.broken.account == "globex"
    assert "record 2 of account 'globex' is missing: the next record found is seq 3" in str(result.broken)


def test_an_edited_record_is_reported(log_path):
    lines = log_path.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace('"rule":"hold-on-buyer-request"', '"rule":"mirror-cancellation"')
    log_path.write_text("".join(lines))
    result = verify(log_path)
    assert not result.ok and result.broken.line == 4
    assert "was changed after it was written" in str(result.broken)


def test_a_record_cut_short_by_a_crash_is_dropped_on_reopen_and_the_chain_goes_on(log_path, engine):
    text = log_path.read_text()
    log_path.write_text(text + text.splitlines()[0][:40])  # a crash in the middle of writing a record
    with DecisionLog(log_path) as log:
        assert log.recovered_bytes == 40
        record = log.write_decision(_decide(engine, "acme", "112-9"))
    assert record["seq"] == 4
    result = verify(log_path)
    assert result.ok and result.records == 7


def test_the_daemons_log_level_never_drops_a_decision_record(tmp_path, engine):
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    try:
        with DecisionLog(tmp_path / "decisions.jsonl") as log:
            log.write_decision(_decide(engine, "acme", "112-1"))
        assert verify(tmp_path / "decisions.jsonl").records == 1
    finally:
        structlog.reset_defaults()


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                     max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(["account", "actions", "h", "has", "hash", "hash_", "hasi", "masked", "prev",
                                               "seq", "trace", "zz", "Ä", "é"]) | st.text(max_size=6), _json, max_size=10))
def test_a_linked_line_is_the_canonical_json_of_its_record(fields):
    """The line is encoded once, with a placeholder for the hash; it must be byte for byte what verify hashes."""
    chain = Chain()
    for record in ({**fields, "account": "acme"}, {**fields, "account": "acme", "n": 2}):
        line = chain.link(record)
        assert line == canonical(record)
        assert record["hash"] == record_hash(json.loads(line))


def test_a_log_written_before_the_faster_encoding_still_verifies_and_an_edit_to_it_is_still_found(tmp_path):
    """Records written until 2026-12 were hashed over the standard library's encoding, which writes some
    floats differently (1.5e-07 where the log now writes 1.5e-7): they verify as they are."""
    legacy = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str).encode
    import hashlib
    path = tmp_path / "old.jsonl"
    lines, previous = [], "0" * 64
    for seq, ratio in enumerate((1.5e-07, 2.5e-05), start=1):
        record = {"account": "acme", "decision_id": f"d{seq}", "ratio": ratio, "seq": seq, "prev_hash": previous}
        record["hash"] = previous = hashlib.sha256(legacy(record).encode("utf-8")).hexdigest()
        assert legacy(record) != canonical(record)  # the two forms differ for this record
        lines.append(legacy(record))
    path.write_text("\n".join(lines) + "\n")
    assert verify(path).ok and verify(path).records == 2

    path.write_text(path.read_text().replace('"ratio":2.5e-05', '"ratio":2.6e-05'))
    result = verify(path)
    assert not result.ok and result.broken.line == 2 and "was changed after it was written" in result.broken.message


@pytest.mark.parametrize("fields", [
    {"v": {"big": 2 ** 70, "m": {10: "a", 9: "b"}}},        # beyond orjson, with keys that are numbers
    {"m": {1: "a", "1": "b"}},                              # two keys that JSON names alike
    {"reason": "Changed my mind \ud83d", "note": "café"},  # a lone surrogate beside other non-ASCII text
    {"ratio": float("nan"), "limit": float("inf")},
], ids=["big-int-number-keys", "keys-named-alike", "lone-surrogate", "nan-inf"])
def test_every_line_the_log_writes_verifies(tmp_path, fields):
    with DecisionLog(tmp_path / "decisions.jsonl") as log:
        log.write({"account": "acme", "decision_id": "d1", **fields})
        log.write({"account": "acme", "decision_id": "d2"})
    result = verify(tmp_path / "decisions.jsonl")
    assert result.ok and result.records == 2, result.broken


def test_a_second_writer_of_the_same_log_is_refused_until_the_first_is_gone(log_path, engine):
    # Two writers would each go on from the heads they read: records with the same seq, a broken chain.
    with DecisionLog(log_path) as first:
        with pytest.raises(DecisionLogInUse, match=f"the decision log {log_path} is being written by another process"):
            DecisionLog(log_path)
        first.write_decision(_decide(engine, "acme", "112-6"))
    with DecisionLog(log_path) as again:
        again.write_decision(_decide(engine, "acme", "112-7"))
    result = verify(log_path)
    assert result.ok and result.records == 8 and result.heads["acme"].seq == 5


def test_a_killed_writers_log_is_taken_over_by_the_next_process(log_path, engine, tmp_path):
    # The lock belongs to the process: SIGKILL releases it, so a restarted daemon is never locked out.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom daemon.audit.log import DecisionLog\n"
                               f"log = DecisionLog({str(log_path)!r})\nprint('holding', flush=True)\ntime.sleep(60)"],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(DecisionLogInUse):
            DecisionLog(log_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with DecisionLog(log_path) as log:
        log.write_decision(_decide(engine, "globex", "112-8"))
    assert verify(log_path).ok
