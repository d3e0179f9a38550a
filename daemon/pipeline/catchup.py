"""The decision log is written after the store commits a decision, so a crash in between leaves a
decision the log has not seen. At start-up the log is caught up from the store, in decision order,
so it again holds every decision exactly once.

Which decisions can be missing: an account's decide runs follow one another, each logged before the
next begins, so only the account's last run can be committed and not logged, and every decision of it
was made after the last one the log holds for that account. Per account, then, the log is read back
from its end over WINDOW before its last decision, and the store's decisions made since then that the
log does not hold are written. WINDOW only absorbs a clock set back; however long a run takes (slow
storefront lookups) or however many lines the window holds, nothing logged is written again."""
from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from daemon.audit.log import DecisionLog
from daemon.store import Store

WINDOW = timedelta(minutes=5)
PAGE = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


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


def _decided_at(record: dict[str, Any]) -> datetime | None:
    try:
        at = datetime.fromisoformat(record["decided_at"])
    except (KeyError, TypeError, ValueError):
        return None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def logged_recently(path: Path, accounts: set[str]) -> tuple[dict[str, datetime], set[str]]:
    """Per account, since when its decisions may be missing from the log (WINDOW before the last one it
    holds), and the ids the log holds from then on. Read from the end; it stops once every account of
    `accounts` has been seen and the lines are older than all their windows."""
    since: dict[str, datetime] = {}
    ids: set[str] = set()
    if not path.exists():
        return since, ids
    with path.open("rb") as handle:
        for line in _lines_backwards(handle):
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by the crash; its decision is written again, whole
            if not isinstance(record, dict) or not record.get("decision_id"):
                continue
            account, at = record.get("account") or "", _decided_at(record)
            if at is not None and account not in since:
                since[account] = at - WINDOW
            if at is None or account not in since or at >= since[account]:
                ids.add(record["decision_id"])
            elif accounts <= since.keys() and at < min(since[a] for a in accounts):
                break
    return since, ids


def catch_up_decision_log(store: Store, log: DecisionLog, page: int = PAGE) -> int:
    """Write the store's decisions that the log is missing; returns how many."""
    accounts = set(store.accounts())
    since, logged = logged_recently(log.path, accounts)
    written = 0
    for account in sorted(accounts):
        start = since.get(account, _EPOCH)
        # Recorded (created_at) is never before decided, so this reads every decision made since `start`.
        at, after = start, None
        while True:
            decisions = store.decisions_since(at, limit=page, after=after, account=account)
            for decision in decisions:
                decided = _decided_at(decision.record)
                if decision.decision_id in logged or (decided is not None and decided < start):
                    continue  # logged: in the log's window, or made before it (then logged by the argument above)
                log.write(decision.record)
                logged.add(decision.decision_id)
                written += 1
            if len(decisions) < page:
                break
            at, after = decisions[-1].created_at, decisions[-1].decision_id
    return written
