"""The fault test (issue 5, Proof): the stand-ins fail 20 % of calls with 5xx and hold the daemon to tight
rate limits (small Amazon buckets, a small Shopify cost bucket); `ordersync run` still settles with
nothing lost and nothing done twice, and never goes past a limit: the Amazon stand-in's journal shows no
429 and no request beyond its bucket (the server's bucket replayed over the journal's arrival times, as
tests/amazon/test_transport.py does), the Shopify stand-in's no THROTTLED and every request finding its
requested cost available (as tests/shopify/test_shopify_transport.py does)."""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import httpx

from adapters.sim.linked import generated
from daemon.store import open_store

from .harness import (FAST_AMAZON, Daemon, Standins, amazon_client, check_end_state, expected_event_count,
                      bought_before_the_week, file_operator_requests, unique_skus, unsettled, wait_until, write_config)

ORDERS = 80
FAULTS = {"error_rate": 0.2, "error_statuses": [500, 503]}
# Buckets the daemon's job intervals (0.3 s) would overrun without pacing: reports are asked for every
# 0.9 s, feeds checked every 0.3 s.
TIGHT_AMAZON = {**FAST_AMAZON, "searchOrders": (2.0, 2.0), "createReport": (1.0, 2.0), "getReport": (2.0, 2.0),
                "getReportDocument": (2.0, 2.0), "createFeedDocument": (1.0, 1.0), "createFeed": (1.0, 1.0),
                "getFeed": (2.0, 2.0), "getFeedDocument": (2.0, 2.0), "listFinancialEvents": (2.0, 3.0)}
SMALL_SHOP = {"maximum_available": 1000, "restore_rate": 300}


def within_bucket(times: list[float], rate: float, burst: float) -> str | None:
    """Replays the server's bucket over the arrival times: None, or the first request that had no token."""
    tokens, last = burst, times[0] if times else 0.0
    for index, moment in enumerate(times):
        tokens = min(burst, tokens + (moment - last) * rate)
        last = moment
        if tokens < 1 - 1e-6:
            return f"request {index + 1} at +{moment - times[0]:.3f}s found {tokens:.3f} tokens"
        tokens -= 1
    return None


def test_faults_and_tight_limits_lose_nothing_and_exceed_no_limit(db_url: str, tmp_path: Path) -> None:
    orders = bought_before_the_week(unique_skus(generated(ORDERS, seed=5)))
    with Standins.start(orders, amazon_limits=TIGHT_AMAZON, shop_throttle=SMALL_SHOP) as standins:
        store = open_store(db_url, migrate=True)
        amazon = amazon_client(standins, TIGHT_AMAZON)
        try:
            operator = file_operator_requests(store, amazon, orders, count=6)
            started = time.time()
            for sim in (standins.amazon, standins.shopify):
                httpx.post(sim.base_url + "/_sim/faults", json={**FAULTS, "seed": 11}, timeout=5).raise_for_status()
            daemon = Daemon(write_config(tmp_path, standins, db_url, amazon_limits=TIGHT_AMAZON), tmp_path / "ordersync.log")
            daemon.start()

            def settled() -> bool:
                assert daemon.alive(), f"ordersync run ended by itself:\n{daemon.tail()}"
                return sum(store.counts().events_by_kind.values()) >= expected_event_count(standins, operator) \
                    and not unsettled(store)

            wait_until(settled, 150, "the store settles under faults",
                       explain=lambda: f"still under way: {unsettled(store)}\n{daemon.tail(15)}")
            assert daemon.stop() == 0, daemon.tail()

            outcome = check_end_state(standins, store, tmp_path / "decisions.jsonl", operator, "fault test")
            assert outcome.in_doubt == []  # nothing was killed, so no submission can be in doubt

            # the faults were really there, on both sides
            amazon_journal = [e for e in standins.amazon.journal.entries() if e["received"] >= started]
            shop_journal = standins.shopify.journal.entries()
            injected = sum(1 for e in amazon_journal if e.get("fault") == "error")
            assert injected >= 0.1 * len(amazon_journal) and injected >= 10, (injected, len(amazon_journal))
            shop_requests = [e for e in shop_journal if e.get("kind") == "request"]
            # the Shopify stand-in does not journal the 5xx it injects; the daemon's log shows it retried them
            shop_retries = daemon.log.read_text().count('"shopify.retry"')
            assert shop_retries >= 10, shop_retries

            # Amazon: no 429, and no operation ever served past its bucket
            assert [e for e in amazon_journal if e["status"] == 429] == []
            served: dict[str, list[float]] = defaultdict(list)
            for entry in amazon_journal:
                if entry.get("operation") and entry.get("fault") is None and entry["status"] != 403:
                    served[entry["operation"]].append(entry["received"])
            over = {op: problem for op, times in served.items() if (problem := within_bucket(times, *TIGHT_AMAZON[op]))}
            assert over == {}, over
            # ... and the limits were tight enough to matter: some operation asked for more than its burst
            # and was spread over at least the time its rate demands
            binding = [op for op, times in served.items() if op in ("createReport", "getReport", "getFeed", "searchOrders")
                       and len(times) > 3 * TIGHT_AMAZON[op][1]
                       and times[-1] - times[0] >= 0.9 * (len(times) - TIGHT_AMAZON[op][1]) / TIGHT_AMAZON[op][0]]
            assert binding, {op: len(times) for op, times in served.items()}

            # Shopify: never THROTTLED, every request found its cost available, and the bucket was drawn down
            assert [r for r in shop_requests if r.get("error") == "THROTTLED"] == []
            assert all(r["available"] >= r["requested"] for r in shop_requests if "requested" in r)
            assert sum(r.get("actual") or 0 for r in shop_requests) > SMALL_SHOP["maximum_available"]
            print(f"fault test: {outcome.decisions} decisions, {outcome.mutations} storefront mutations, "
                  f"{outcome.feed_messages} feed messages; Amazon {len(amazon_journal)} requests, {injected} failed on purpose; "
                  f"Shopify {len(shop_requests)} answered requests, {shop_retries} retried after a 5xx; {time.time() - started:.0f} s")
        finally:
            amazon.close()
            store.close()
