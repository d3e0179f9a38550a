"""The crash test (issue 5, Proof): `ordersync run` as a real subprocess against both stand-ins, killed
with SIGKILL at random moments several times and restarted each time. At the end every event is decided
exactly once (store and decision log), every storefront effect the scenario calls for is in the Shopify
stand-in's journal exactly once, and every Amazon feed message at most once (present unless its
submission was in doubt, which the pipeline fails rather than resends).

The kill moments are random; the seed is printed and can be fixed with ORDERSYNC_CRASH_SEED."""
from __future__ import annotations

import os
import random
import time
from pathlib import Path

from adapters.sim.linked import generated
from daemon.store import open_store

from .harness import (Daemon, Standins, amazon_client, check_end_state, expected_effects, expected_event_count,
                      bought_before_the_week, file_operator_requests, unique_skus, unsettled, wait_until, write_config)

ORDERS = 250
KILLS = 5
SETTLE_SECONDS = 200  # a killed worker's claimed actions wait out their 60 s lease


def test_sigkill_at_random_moments_loses_nothing_and_repeats_nothing(db_url: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("ORDERSYNC_CRASH_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    context = f"crash test, seed {seed} (ORDERSYNC_CRASH_SEED={seed} repeats the kill moments)"
    print(context)
    orders = bought_before_the_week(unique_skus(generated(ORDERS, seed=rng.randint(1, 10_000))))
    with Standins.start(orders) as standins:
        store = open_store(db_url, migrate=True)
        amazon = amazon_client(standins)
        try:
            operator = file_operator_requests(store, amazon, orders)
            expected = expected_effects(orders, operator)
            want_events = sum(len(e.events) for e in expected.values())
            config = write_config(tmp_path, standins, db_url)
            daemon = Daemon(config, tmp_path / "ordersync.log")

            kills_under_way = 0
            for _ in range(KILLS):
                daemon.start()
                time.sleep(rng.uniform(1.5, 5.0))
                assert daemon.alive(), f"{context}: ordersync run ended by itself:\n{daemon.tail()}"
                daemon.kill()
                kills_under_way += bool(unsettled(store)) or store.counts().undecided_events > 0 \
                    or sum(store.counts().events_by_kind.values()) < want_events
            daemon.start()

            def settled() -> bool:
                assert daemon.alive(), f"{context}: ordersync run ended by itself:\n{daemon.tail()}"
                return sum(store.counts().events_by_kind.values()) >= expected_event_count(standins, operator) \
                    and not unsettled(store)

            wait_until(settled, SETTLE_SECONDS, f"{context}: the store settles",
                       explain=lambda: f"still under way: {unsettled(store)}\n{daemon.tail(15)}")
            assert daemon.stop() == 0, daemon.tail()
            # a killed process proves little if there was nothing left to do when it died
            assert kills_under_way >= 3, f"{context}: only {kills_under_way} of {KILLS} kills came while work was under way"

            outcome = check_end_state(standins, store, tmp_path / "decisions.jsonl", operator, context)
            print(f"{context}: {outcome.decisions} decisions, {outcome.mutations} storefront mutations, "
                  f"{outcome.feed_messages} feed messages, {len(outcome.in_doubt)} in doubt {outcome.in_doubt}, "
                  f"{KILLS} kills ({kills_under_way} mid-work), {daemon.starts} starts")
        finally:
            amazon.close()
            store.close()
