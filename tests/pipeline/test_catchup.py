"""Catching the decision log up at start: decisions the store committed but the log never saw (a crash
between the two) are written once, however many decisions were logged just before them, and nothing
already logged is written again. On SQLite, and on PostgreSQL when ORDERSYNC_TEST_PG_URL is set."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from daemon.audit.chain import verify
from daemon.audit.log import DecisionLog
from daemon.pipeline.catchup import catch_up_decision_log
from daemon.pipeline.events import NewEvent
from daemon.store import DecisionToRecord, Store, open_store

ACCOUNT = "acme"
# More than the 5,000 lines an earlier version read back, all decided within a minute.
DECISIONS = 6_200
NOT_LOGGED = 7


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url, migrate=True)
    yield store
    store.close()


def record(n: int, at: datetime, account: str = ACCOUNT) -> dict:
    order = f"114-{n:07d}-0000001"
    return {"decision_id": f"d-{n:06d}", "account": account, "event": "order_cancelled", "amazon_order_id": order,
            "decided_at": at.isoformat(), "ruleset": "cancellation", "rules_sha256": "0" * 64, "rule": None,
            "actions": [], "fact": {"event": "order_cancelled"}}


def decide_all(store: Store) -> list[dict]:
    """DECISIONS decisions in runs of 500, as the pipeline records them; their records in store order."""
    events = [NewEvent("order_cancelled", f"order_cancelled:{n}", f"114-{n:07d}-0000001", {}) for n in range(DECISIONS)]
    for start in range(0, DECISIONS, 1000):
        store.ingest_many(ACCOUNT, events[start:start + 1000])
    undecided = store.undecided_events(ACCOUNT, DECISIONS)
    assert len(undecided) == DECISIONS
    at = datetime.now(timezone.utc)
    for start in range(0, DECISIONS, 500):
        store.record_decisions([DecisionToRecord(e.id, record(start + i, at), []) for i, e in enumerate(undecided[start:start + 500])])
    return [d.record for d in store.decisions_since(datetime(2000, 1, 1, tzinfo=timezone.utc), limit=DECISIONS + 1)]


def logged_ids(path: Path) -> list[str]:
    return [json.loads(line)["decision_id"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("page", [10_000, 1_000])
def test_a_crash_after_the_commit_leaves_only_the_unlogged_to_write_once(store: Store, tmp_path: Path, page: int) -> None:
    records = decide_all(store)
    path = tmp_path / "decisions.jsonl"
    with DecisionLog(path) as log:
        log.write_many([dict(r) for r in records[:-NOT_LOGGED]])  # the process died before logging the last run's end
    with DecisionLog(path) as log:  # the restart
        assert catch_up_decision_log(store, log, page=page) == NOT_LOGGED
    with DecisionLog(path) as log:  # a second restart finds nothing missing
        assert catch_up_decision_log(store, log, page=page) == 0
    ids = logged_ids(path)
    assert len(ids) == len(set(ids)) == DECISIONS
    assert ids[-NOT_LOGGED:] == [r["decision_id"] for r in records[-NOT_LOGGED:]]
    result = verify(path)
    assert result.ok, result.broken


def test_a_last_line_cut_short_by_the_crash_is_skipped_and_its_decision_written_whole(store: Store, tmp_path: Path) -> None:
    records = decide_all(store)
    path = tmp_path / "decisions.jsonl"
    with DecisionLog(path) as log:
        log.write_many([dict(r) for r in records[:-1]])
    with path.open("a") as handle:
        handle.write('{"account": "acme", "decision_id": "d-0')  # the last record, half written
    assert len(logged_ids_safe(path)) == DECISIONS - 1
    with DecisionLog(path) as log:
        assert catch_up_decision_log(store, log) == 1
    assert logged_ids_safe(path)[-1] == records[-1]["decision_id"]


def logged_ids_safe(path: Path) -> list[str]:
    ids = []
    for line in path.read_text().splitlines():
        try:
            ids.append(json.loads(line)["decision_id"])
        except ValueError:
            pass
    return ids


def decide_runs(store: Store, runs: list[tuple[str, list[datetime]]]) -> list[list[dict]]:
    """Each run (account, when each of its decisions was made) recorded in one transaction, in order."""
    recorded, n = [], 0
    for account, times in runs:
        events = [NewEvent("order_cancelled", f"order_cancelled:{n + i}", f"114-{n + i:07d}-0000001", {}) for i in range(len(times))]
        store.ingest_many(account, events)
        undecided = store.undecided_events(account, len(times))
        records = [record(n + i, at, account) for i, at in enumerate(times)]
        store.record_decisions([DecisionToRecord(e.id, r, []) for e, r in zip(undecided, records)])
        recorded.append(records)
        n += len(times)
    return recorded


def test_a_run_slower_than_the_window_is_not_written_again(store: Store, tmp_path: Path) -> None:
    # Shopify throttling: 500 events decided over 12 minutes, committed at the end, logged; then a quick
    # run, committed, and the process dies before logging it.
    now = datetime.now(timezone.utc)
    slow, quick = decide_runs(store, [(ACCOUNT, [now - timedelta(minutes=12) + i * timedelta(seconds=1.44) for i in range(500)]),
                                      (ACCOUNT, [now] * 10)])
    path = tmp_path / "decisions.jsonl"
    with DecisionLog(path) as log:
        log.write_many([dict(r) for r in slow])
    with DecisionLog(path) as log:
        assert catch_up_decision_log(store, log) == 10
    ids = logged_ids(path)
    assert len(ids) == len(set(ids)) == 510
    assert verify(path).ok


def test_each_accounts_missing_run_is_found_however_the_accounts_interleave(store: Store, tmp_path: Path) -> None:
    # Account "west" logged a run 10 minutes after "east" began one that took 12 minutes; east's run was
    # committed, then the process died before logging it.
    now = datetime.now(timezone.utc)
    east_before, west, east_last = decide_runs(store, [
        ("east", [now - timedelta(minutes=13)] * 3),
        ("west", [now - timedelta(minutes=2)] * 4),
        ("east", [now - timedelta(minutes=12) + i * timedelta(minutes=1) for i in range(12)]),
    ])
    path = tmp_path / "decisions.jsonl"
    with DecisionLog(path) as log:
        log.write_many([dict(r) for r in east_before + west])
    with DecisionLog(path) as log:
        assert catch_up_decision_log(store, log) == 12
        assert catch_up_decision_log(store, log) == 0
    ids = logged_ids(path)
    assert len(ids) == len(set(ids)) == 19 and ids[-12:] == [r["decision_id"] for r in east_last]
    assert verify(path).ok
