"""Rules throughput: generated facts through both shipped rulesets.

Prints, for 100k facts:
  - facts/s through durable_rules with the decision built (schema check, durable_rules picks the rule,
    the evaluator confirms it, actions rendered): `RulesEngine.decide`;
  - the same plus the audit record (condition-by-condition trace, masking) as the decision log writes it;
  - facts/s of the plain evaluator alone (first hit on already checked facts);
  - peak RSS;
then runs 1M facts through `decide` and prints RSS after the first 100k and at the end.

Run: .venv/bin/python benchmarks/rules_throughput.py [--facts 100000] [--long 1000000] [--rules rules]
Figures are printed, never asserted: the test suite holds behaviour, this holds speed.
"""
from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.audit.record import decision_record  # noqa: E402
from daemon.facts import EVENTS, FIELDS, normalise  # noqa: E402
from daemon.rules.engine import RulesEngine  # noqa: E402

DECIDED_EVENTS = [e for e in EVENTS if e != "order_updated"]


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    return _status_mb("VmHWM")


def generate(count: int, seed: int = 7) -> list[dict]:
    """Facts shaped like the daemon's: an event, the order's statuses and counts, money as text, settings."""
    rng = random.Random(seed)
    enum = {name: spec.values for name, spec in FIELDS.items() if spec.kind == "enum"}
    facts = []
    for index in range(count):
        ordered = rng.randint(1, 4)
        cancelled = rng.choice([0, ordered, ordered, rng.randint(0, ordered)])
        paid = Decimal(rng.randint(500, 20000)) / 100
        fact = {
            "event": rng.choice(DECIDED_EVENTS),
            "origin": rng.choice(enum["origin"]),
            "account": rng.choice(["acme", "globex"]),
            "amazon_order_id": f"112-{index:07d}-{rng.randint(0, 9999999):07d}",
            "fulfillment": rng.choice(["FBA", "FBM"]),
            "amazon_status": rng.choice(enum["amazon_status"]),
            "shipping_status": rng.choice(["Unshipped", "Unshipped", "PartiallyShipped", "Shipped"]),
            "order_status": rng.choice(enum["order_status"]),
            "dropship_status": rng.choice(enum["dropship_status"]),
            "reason_code": rng.choice(["BuyerCanceled", "NoInventory", "CustomerReturn", "CustomerExchange", "", "PricingError"]),
            "buyer_cancel_reason": rng.choice(["Ordered by mistake", "Found it cheaper", "Too slow"]),
            "line_count": 1 + ordered // 2,
            "lines_cancelled": (1 + ordered // 2) if cancelled == ordered else 0,
            "units_ordered": ordered,
            "units_cancelled": cancelled,
            "units_shipped": rng.choice([0, 0, 0, 1]),
            "paid_total": str(paid),
            "refunded_total": str(Decimal(rng.randint(0, 500)) / 100),
            "refund_amount": str(Decimal(rng.randint(100, 25000)) / 100),
            "rma_status": rng.choice(["Approved", "Pending", "Rejected"]),
            "has_kit_items": rng.random() < 0.1,
            "hours_since_request": round(rng.uniform(0, 60), 1),
            "settings": {"allow_zero_out_inventory": rng.random() < 0.5, "queue_refunds_and_cancellations": rng.random() < 0.3,
                         "allow_over_refund": rng.random() < 0.1},
        }
        facts.append(fact)
    return facts


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>10,.0f} facts/s  ({seconds * 1e6 / count:.1f} µs each)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=100_000)
    parser.add_argument("--long", type=int, default=1_000_000, help="facts in the memory run (0 skips it)")
    parser.add_argument("--rules", type=Path, default=Path(__file__).resolve().parent.parent / "rules")
    args = parser.parse_args()

    engine = RulesEngine(args.rules)
    facts = generate(args.facts)
    print(f"ordersync rules throughput: {args.facts:,} generated facts, rulesets "
          + ", ".join(f"{r.name} ({len(r.rules)} rules)" for r in engine.rulesets))
    gc.collect()

    start = time.perf_counter()
    rules_fired: dict[str | None, int] = {}
    for fact in facts:
        decision = engine.decide(fact)
        rules_fired[decision.rule_id] = rules_fired.get(decision.rule_id, 0) + 1
    decided = time.perf_counter() - start
    print(f"durable_rules, decision built (fact checked too) {rate(len(facts), decided)}")

    start = time.perf_counter()
    for fact in facts:
        decision_record(engine.decide(fact))
    recorded = time.perf_counter() - start
    print(f"  ... plus the audit record with its trace       {rate(len(facts), recorded)}")

    start = time.perf_counter()
    checked = [normalise(fact) for fact in facts]
    normalised = time.perf_counter() - start
    print(f"  of which the schema check           {rate(len(facts), normalised)}")
    start = time.perf_counter()
    for fact in checked:
        engine._decide_checked(fact)
    checked_decided = time.perf_counter() - start
    print(f"durable_rules, decision built, on facts already checked {rate(len(checked), checked_decided)}")
    evaluators = engine._loaded.evaluators
    by_event = {event: evaluators[r.name] for event, r in engine._loaded.by_event.items()}
    start = time.perf_counter()
    for fact in checked:
        by_event[fact["event"]].first_hit(fact)
    evaluated = time.perf_counter() - start
    print(f"plain evaluator (checked facts)       {rate(len(checked), evaluated)}")
    print(f"peak RSS                              {peak_rss_mb():>10.1f} MB")
    print(f"distinct rules fired                  {len(rules_fired):>10} (no rule: {rules_fired.get(None, 0):,})")

    if args.long:
        del checked, facts
        gc.collect()
        batch = generate(10_000, seed=11)
        after_first = None
        start = time.perf_counter()
        for index in range(args.long):
            engine.decide(batch[index % len(batch)])
            if index + 1 == 100_000:
                after_first = rss_mb()
        elapsed = time.perf_counter() - start
        end = rss_mb()
        print(f"{args.long:,} facts through decide         {rate(args.long, elapsed)}")
        print(f"RSS after 100k: {after_first:.1f} MB, after {args.long:,}: {end:.1f} MB, "
              f"growth {end - after_first:+.1f} MB")
    engine.close()


if __name__ == "__main__":
    main()
