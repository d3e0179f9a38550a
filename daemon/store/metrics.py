"""Counts for /metrics: cheap GROUP BY queries, one read transaction."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlmodel import col

from daemon.store.db import Database
from daemon.store.models import ACTION_STATUSES, UNFINISHED_STATUSES, Action, Decision, Event


@dataclass(frozen=True)
class Counts:
    events_by_kind: dict[str, int] = field(default_factory=dict)
    undecided_events: int = 0
    failed_events: int = 0                                          # undecided, with an error
    decisions_by_rule: dict[str, int] = field(default_factory=dict)  # "" for no_action
    actions_by_status: dict[str, int] = field(default_factory=dict)  # every status, zeros included
    queue_depth: int = 0                                            # actions not finished yet


class Metrics(Database):

    def counts(self) -> Counts:
        with self.transaction(write=False) as s:
            events = dict(s.execute(select(Event.kind, func.count()).group_by(Event.kind)).all())
            undecided = s.execute(select(func.count()).where(col(Event.decided_at).is_(None))).scalar_one()
            failed = s.execute(select(func.count()).where(col(Event.decided_at).is_(None),
                                                          col(Event.error).is_not(None))).scalar_one()
            rules = {rule or "": n for rule, n in
                     s.execute(select(Decision.rule, func.count()).group_by(Decision.rule)).all()}
            statuses = dict.fromkeys(ACTION_STATUSES, 0)
            statuses.update(s.execute(select(Action.status, func.count()).group_by(Action.status)).all())
        return Counts(events, undecided, failed, rules, statuses,
                      sum(statuses[status] for status in UNFINISHED_STATUSES))
