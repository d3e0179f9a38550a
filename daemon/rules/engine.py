"""The rules engine: a folder of rule files, one durable_rules ruleset per file, one decision per fact.

durable_rules picks the rule; the plain evaluator explains the pick condition by condition. The two
must agree, or the fact is not decided at all (EngineDisagreement) rather than decided on a guess.
Reload builds a complete new set of rulesets first and swaps it in whole; if any file fails, the old
rules keep deciding.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

from daemon.actions import ACTIONS
from daemon.facts import normalise
from daemon.rules.durable import DurableRuleset
from daemon.rules.evaluate import Evaluator, Mask
from daemon.rules.loader import load_folder
from daemon.rules.model import ActionCall, FieldRef, Rule, RuleSet, Template
from daemon.rules.yamlsource import Problem


# Seeded from os.urandom; Python reseeds it in a forked child, so two processes never share a sequence.
_random = random.Random()


def new_decision_id() -> str:
    """A random (version 4) UUID, made without uuid.uuid4's os.urandom call per id: decisions are made
    tens of thousands a second, and the id is an identifier, not a secret."""
    bits = (_random.getrandbits(128) & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class EngineDisagreement(RuntimeError):
    """durable_rules and the evaluator picked different rules: a defect, so the fact is not decided."""


class DecisionError(ValueError):
    """The rule that fired cannot be carried out for this fact (a parameter got a value its action refuses)."""


def render_params(call: ActionCall, fact: Mapping[str, Any], rule_id: str) -> dict[str, Any]:
    spec = ACTIONS[call.name]
    rendered: dict[str, Any] = {}
    for name, value in call.params.items():
        if value is None:
            continue  # an optional parameter the rule left out (refund's amount): the action's own default holds
        if isinstance(value, Template):
            value = value.render(fact)
        elif isinstance(value, FieldRef):
            value = fact.get(value.field)
            if value is None:
                # Left out, the parameter would fall back to the action's default (refund's whole refund_amount):
                # a different effect from the one the rule names.
                raise DecisionError(f"rule {rule_id!r} gives {call.name}.{name} the value of {call.params[name].field}, "
                                    f"which this fact does not have; add a condition on it to the rule")
            allowed = spec.params[name].values
            if allowed and value not in allowed:
                raise DecisionError(
                    f"rule {rule_id!r} gives {call.name}.{name} the value {value!r} of {call.params[name].field}, "
                    f"which {call.name} does not take ({spec.params[name].describe_type()}); add a rule before it "
                    f"that rejects such facts")
        rendered[name] = str(value) if isinstance(value, Decimal) else value
    return rendered


@dataclass
class Decision:
    decision_id: str
    decided_at: datetime
    fact: dict[str, Any]
    ruleset: RuleSet | None
    rule: Rule | None
    actions: list[dict[str, Any]] = field(default_factory=list)
    evaluator: Evaluator | None = field(default=None, repr=False)

    def explain(self, mask: Mask = lambda name, value: value, *, failures_only: bool = False) -> list[dict[str, Any]]:
        """The rule that fired and every earlier rule, condition by condition, as JSON (Evaluator.explain).
        Worked out when asked for (by the audit log or --explain) from the same fact, which nothing changes
        after normalise."""
        return self.evaluator.explain(self.fact, mask, failures_only=failures_only) if self.evaluator else []

    @property
    def rule_id(self) -> str | None:
        return self.rule.id if self.rule else None

    def render_actions(self, fact: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The actions with their {field} placeholders filled from `fact` (the audit passes a masked fact)."""
        if self.rule is None:
            return []
        return [{"type": call.name, **render_params(call, fact, self.rule.id)} for call in self.rule.then]

    def to_json(self, explain: bool = False, mask: Mask = lambda name, value: value) -> dict[str, Any]:
        record: dict[str, Any] = {
            "decision_id": self.decision_id,
            "ruleset": self.ruleset.name if self.ruleset else None,
            "rules_file": self.ruleset.source if self.ruleset else None,
            "rules_sha256": self.ruleset.sha256 if self.ruleset else None,
            "rule": self.rule_id,
            "actions": self.actions,
        }
        if explain:
            record["trace"] = self.explain(mask)
        return record


@dataclass
class _Loaded:
    rulesets: list[RuleSet]
    by_event: dict[str, RuleSet]
    compiled: dict[str, DurableRuleset]
    evaluators: dict[str, Evaluator]

    @property
    def warnings(self) -> list[Problem]:
        return [w for ruleset in self.rulesets for w in ruleset.warnings]

    def close(self) -> None:
        for compiled in self.compiled.values():
            compiled.close()


def _build(folder: Path) -> _Loaded:
    rulesets = load_folder(folder)
    compiled: dict[str, DurableRuleset] = {}
    try:
        for ruleset in rulesets:
            compiled[ruleset.name] = DurableRuleset(ruleset)
    except Exception:
        for done in compiled.values():
            done.close()
        raise
    by_event = {event: ruleset for ruleset in rulesets for event in ruleset.events}
    return _Loaded(rulesets, by_event, compiled, {r.name: Evaluator(r) for r in rulesets})


class RulesEngine:
    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        # One lock: durable_rules' C core is driven by one thread at a time (research §1.9).
        self._lock = threading.Lock()
        self._loaded = _build(self.folder)

    @property
    def rulesets(self) -> list[RuleSet]:
        return list(self._loaded.rulesets)

    @property
    def warnings(self) -> list[Problem]:
        return self._loaded.warnings

    def ruleset_for(self, event: str) -> RuleSet | None:
        return self._loaded.by_event.get(event)

    def reload(self) -> list[Problem]:
        """Load the folder again and swap it in whole; RulesError leaves the running rules as they were."""
        fresh = _build(self.folder)
        with self._lock:
            old, self._loaded = self._loaded, fresh
            old.close()
        return fresh.warnings

    def decide(self, data: Mapping[str, Any], *, decision_id: str | None = None, now: datetime | None = None) -> Decision:
        """Decide one fact. FactError when it does not fit the schema; nothing is decided then."""
        return self._decide_checked(normalise(data), decision_id, now)

    def _decide_checked(self, fact: dict[str, Any], decision_id: str | None = None,
                        now: datetime | None = None) -> Decision:
        """Decide a fact that `normalise` returned; nothing else may reach durable_rules."""
        decided_at = now or datetime.now(timezone.utc)
        decision_id = decision_id or new_decision_id()
        with self._lock:
            loaded = self._loaded
            ruleset = loaded.by_event.get(fact["event"])
            if ruleset is None:
                return Decision(decision_id, decided_at, fact, None, None)
            fired = loaded.compiled[ruleset.name].first_hit(fact)
        evaluator = loaded.evaluators[ruleset.name]
        rule = evaluator.first_hit(fact)
        if (rule.id if rule else None) != fired:
            raise EngineDisagreement(
                f"ruleset {ruleset.name!r} ({ruleset.sha256[:12]}): durable_rules fired {fired or 'no rule'}, "
                f"the evaluator {rule.id if rule else 'no rule'}, for the {fact['event']} event of order "
                f"{fact.get('amazon_order_id', '(no order id)')}; the event is left undecided")
        decision = Decision(decision_id, decided_at, fact, ruleset, rule, evaluator=evaluator)
        decision.actions = decision.render_actions(fact)
        return decision

    def close(self) -> None:
        with self._lock:
            self._loaded.close()
