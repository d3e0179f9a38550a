"""The decision log is written after the store commits a decision, so a crash in between leaves a
decision the log has not seen. At start-up the log is caught up from the store, in decision order,
so it again holds every decision exactly once."""
from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Iterator

from daemon.audit.log import DecisionLog
from daemon.store import Store

# Decisions are logged in the order they commit, a moment after; a decide run (up to 500 events, each
# with a storefront lookup) takes seconds to tens of seconds. Decisions made this long before the last
# logged one are taken as logged.
LOOKBACK = timedelta(minutes=5)
# Accounts decide concurrently, so the log is only roughly in time order: its lines are read back this
# far before the window, so that every decision of the window that was logged is known.
SLACK = LOOKBACK
PAGE = 10_000


def _lines_backwards(handle: BinaryIO, block: int = 1 << 16) -> Iterator[bytes]:
    handle.seek(0, os.SEEK_END)
    position, rest = handle.tell(), b""
    while position > 0:
        size = min(block, position)
        position -= size
        handle.seek(position)
        lines = (handle.read(size) + rest).split(b"\n")
        rest = lines[0]
        yield from (line for line in reversed(lines[1:]) if line.strip())
    if rest.strip():
        yield rest


def _decided_at(record: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(record["decided_at"])
    except (KeyError, TypeError, ValueError):
        return None


def logged_recently(path: Path) -> tuple[set[str], datetime | None]:
    """The ids of the decisions logged in the window before the last one (read from the end, however many
    lines that is), and when the last was decided (None for an empty or missing log)."""
    ids: set[str] = set()
    last: datetime | None = None
    if not path.exists():
        return ids, last
    with path.open("rb") as handle:
        for line in _lines_backwards(handle):
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by the crash; its decision is written again, whole
            if not isinstance(record, dict) or not record.get("decision_id"):
                continue
            at = _decided_at(record)
            if at is not None:
                if last is None:
                    last = at
                elif at < last - LOOKBACK - SLACK:
                    break
            ids.add(record["decision_id"])
    return ids, last


def catch_up_decision_log(store: Store, log: DecisionLog, page: int = PAGE) -> int:
    """Write the store's decisions that the log is missing; returns how many."""
    logged, last = logged_recently(log.path)
    since = (last - LOOKBACK) if last else datetime(1970, 1, 1, tzinfo=timezone.utc)
    after: str | None = None
    written = 0
    while True:
        decisions = store.decisions_since(since, limit=page, after=after)
        for decision in decisions:
            if decision.decision_id not in logged:
                log.write(decision.record)
                logged.add(decision.decision_id)
                written += 1
        if len(decisions) < page:
            return written
        since, after = decisions[-1].created_at, decisions[-1].decision_id
