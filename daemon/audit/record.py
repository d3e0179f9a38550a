"""One self-contained record per decision (after OPA's decision log): what was known, which rule of which
file version decided and why, and what was decided, with personal data masked."""
from __future__ import annotations

from importlib import metadata
from typing import Any, Mapping

from daemon.facts import PERSONAL_FIELDS, jsonable
from daemon.rules.engine import Decision

MASK = "[masked]"
# 2 (2026-12): an earlier rule's trace entry lists only the conditions that failed, under "failed"
# (version 1 listed every condition of every rule tried, under "conditions").
# 3 (2026-12): the trace leaves out earlier rules of another event (their `event` condition failed, and only that).
RECORD_VERSION = 3


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


ENGINE = {"name": "durable_rules", "version": _version("durable_rules"), "ordersync": _version("ordersync")}


def mask_value(field: str, value: Any) -> Any:
    return MASK if field in PERSONAL_FIELDS else value


def masked_fact(fact: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The fact with personal fields replaced, and the paths that were replaced (OPA's `masked`)."""
    personal = sorted(PERSONAL_FIELDS.intersection(fact))
    shown = dict(fact)
    for name in personal:
        shown[name] = MASK
    return shown, [f"fact.{name}" for name in personal]


def decision_record(decision: Decision) -> dict[str, Any]:
    fact, masked = masked_fact(decision.fact)
    if masked:
        # Actions are rendered again from the masked fact, so a note quoting the buyer's words is masked too.
        actions = decision.render_actions(fact)
        for index, (shown, real) in enumerate(zip(actions, decision.actions)):
            masked.extend(f"actions[{index}].{name}" for name in shown if shown[name] != real[name])
    else:
        actions = [dict(action) for action in decision.actions]  # nothing personal to mask: rendered as decided
    rule = decision.rule
    ruleset = decision.ruleset
    return {
        "type": "decision",
        "record_version": RECORD_VERSION,
        "decision_id": decision.decision_id,
        "decided_at": decision.decided_at.isoformat(),
        "account": decision.fact.get("account", ""),
        "amazon_order_id": decision.fact.get("amazon_order_id"),
        "storefront_order_id": decision.fact.get("storefront_order_id"),
        "event": decision.fact["event"],
        "ruleset": ruleset.name if ruleset else None,
        "rules_file": ruleset.source if ruleset else None,
        "rules_sha256": ruleset.sha256 if ruleset else None,
        "rule": rule.id if rule else None,
        "rule_description": rule.description if rule else None,
        "outcome": "decided" if rule else "no_action",
        "trace": decision.explain(mask_value, failures_only=True),
        "fact": jsonable(fact),
        "masked": masked,
        "actions": actions,
        "engine": ENGINE,
    }
