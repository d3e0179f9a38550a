"""The decision log is written after the store commits a decision, so a crash in between leaves a
decision the log has not seen. At start-up the log is caught up from the store, in decision order,
so it again holds every decision exactly once."""
from __future__ import annotations

import json
from collections import deque
from datetime import datetime, timedelta, timezone
from pathlib import Path

from daemon.audit.log import DecisionLog
from daemon.store import Store

TAIL_LINES = 5000
# Decisions are logged in the order they commit, a moment after; look back a little further than that.
LOOKBACK = timedelta(minutes=5)


def _tail(path: Path) -> tuple[set[str], datetime | None]:
    if not path.exists():
        return set(), None
    with path.open(encoding="utf-8", errors="replace") as handle:
        lines = deque(handle, maxlen=TAIL_LINES)
    ids: set[str] = set()
    last: datetime | None = None
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("decision_id"):
            ids.add(record["decision_id"])
            try:
                last = datetime.fromisoformat(record["decided_at"])
            except (KeyError, TypeError, ValueError):
                pass
    return ids, last


def catch_up_decision_log(store: Store, log: DecisionLog) -> int:
    """Write the store's decisions that the log is missing; returns how many."""
    logged, last = _tail(log.path)
    since = (last - LOOKBACK) if last else datetime(1970, 1, 1, tzinfo=timezone.utc)
    written = 0
    while True:
        batch = [d for d in store.decisions_since(since) if d.decision_id not in logged]
        for decision in batch:
            log.write(decision.record)
            logged.add(decision.decision_id)
            written += 1
        if len(batch) < 10_000:
            return written
        since = batch[-1].created_at
