"""The client never overdraws Shopify's cost bucket, waits exactly what the bucket needs after a
THROTTLED answer, and turns every failure into an error class the dispatcher can act on, without
ever showing the access token."""
from __future__ import annotations

import logging
import threading
from typing import Any

import httpx
import pytest

from adapters.errors import AuthError, InvalidInput, PermanentError, TransientError
from adapters.shopify import ShopifyClient, ShopifyConfig
from adapters.shopify.operations import OPERATIONS
from adapters.shopify.transport import ShopifyTransport, base_url_for

from .conftest import TOKEN, journal

SMALL_BUCKET = {"maximum_available": 300, "restore_rate": 600, "max_query_cost": 1000}


def no_sleep(seconds: float) -> None:
    pass


def test_a_paced_client_is_never_throttled_on_a_small_bucket(start_sim: Any, make_client: Any, shop: dict) -> None:
    shop["throttle"] = SMALL_BUCKET
    sim = start_sim(shop)
    client = make_client(sim)
    for index in range(8):
        # each add_tags reads the order (requested 265 of a 300-point bucket) and then writes (10)
        client.add_tags("gid://shopify/Order/1001", [f"t{index}"], idempotency_key=f"k{index}")
    requests = journal(sim, kind="request")
    assert len(requests) == 16
    assert [r for r in requests if r.get("error") == "THROTTLED"] == []
    # the proof the bucket bound: every request found at least its requested cost available,
    # and the client had to wait to make that true
    assert all(r["available"] >= r["requested"] for r in requests)
    assert client.transport.stats.paced_seconds > 0 and client.transport.stats.throttled == 0


def test_an_answer_counted_before_another_threads_request_does_not_give_that_request_s_points_back(
        start_sim: Any, shop: dict) -> None:
    """The account's jobs share one transport from several threads. Thread A takes its points and is on its way; B's
    answer, counted by Shopify before A's request arrived, reports a level without A's charge. Adopting it as it is
    gave A's points back to the local copy, and the next request could be THROTTLED (a fault test found two)."""
    shop["throttle"] = {"maximum_available": 1000, "restore_rate": 1}  # refills too slowly to matter here
    sim = start_sim(shop)
    a_on_its_way, a_may_go = threading.Event(), threading.Event()

    def hold_the_first_request(request: httpx.Request) -> None:
        if not a_on_its_way.is_set():
            a_on_its_way.set()
            a_may_go.wait(10)

    http = httpx.Client(timeout=10, event_hooks={"request": [hold_the_first_request]})
    transport = ShopifyTransport(sim.base_url, TOKEN, "2025-01", http=http, initial_bucket=(1000, 1))
    read = (OPERATIONS["2025-01"].get_order, {"id": "gid://shopify/Order/1001"})
    a = threading.Thread(target=transport.execute, args=read)
    a.start()
    try:
        assert a_on_its_way.wait(10)
        a_took = 1000 - transport.bucket.available()  # A's points, taken and not charged by the server yet
        transport.execute(*read)                     # B, answered while A is held
        server_level = sim.bucket.available()        # B charged, A not yet
        assert a_took > 0
        assert transport.bucket.available() <= server_level - a_took + 1
    finally:
        a_may_go.set()
        a.join(10)
        http.close()
    assert transport.stats.throttled == 0


def test_the_stand_in_answers_throttled_past_the_bucket(start_sim: Any, shop: dict) -> None:
    # the counterpart of the test above: unpaced reads overdraw the same 300-point bucket (refilling
    # too slowly to matter here) and Shopify's THROTTLED answer comes back, HTTP 200 with no data
    shop["throttle"] = {"maximum_available": 300, "restore_rate": 1}
    sim = start_sim(shop)
    body = {"query": OPERATIONS["2025-01"].get_order, "variables": {"id": "gid://shopify/Order/1001"}}
    responses = [httpx.post(f"{sim.base_url}/admin/api/2025-01/graphql.json", json=body,
                            headers={"X-Shopify-Access-Token": TOKEN}, timeout=5) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    last = responses[-1].json()
    assert last["errors"][0]["extensions"]["code"] == "THROTTLED" and "data" not in last
    assert last["extensions"]["cost"]["actualQueryCost"] is None
    assert last["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] < last["extensions"]["cost"]["requestedQueryCost"]


def test_a_throttled_call_is_retried_after_the_time_the_bucket_needs(start_sim: Any, make_client: Any, shop: dict) -> None:
    shop["throttle"] = SMALL_BUCKET
    sim = start_sim(shop)
    client = make_client(sim)
    # another app on the same shop has just drained the bucket; our client does not know
    httpx.post(sim.base_url + "/_sim/bucket", json={"currentlyAvailable": 0}, timeout=5)
    order = client.get_order("gid://shopify/Order/1001")
    assert order.name == "#1001"
    throttled, retried = journal(sim, kind="request")
    assert throttled["error"] == "THROTTLED" and retried.get("error") is None
    assert retried["available"] >= retried["requested"]
    # the journal's `available` is the level the stand-in refused on and reported, so the figures
    # agree exactly however slow the machine is
    expected_wait = (throttled["requested"] - throttled["available"]) / SMALL_BUCKET["restore_rate"]
    assert client.transport.stats.throttled == 1
    assert client.transport.stats.throttle_wait_seconds == pytest.approx(expected_wait, rel=1e-9)


def test_throttled_past_the_retry_budget_is_transient_with_the_wait_it_needs(start_sim: Any, make_client: Any, shop: dict) -> None:
    # a slow refill: the bucket still needs seconds when the request arrives, however long that took
    shop["throttle"] = {"maximum_available": 300, "restore_rate": 50}
    sim = start_sim(shop)
    sim.set_bucket_level(0)
    client = make_client(sim, max_throttle_retries=0)
    with pytest.raises(TransientError) as caught:
        client.get_order("gid://shopify/Order/1001")
    assert caught.value.code == "THROTTLED" and not caught.value.permanent
    [throttled] = journal(sim, error="THROTTLED")
    needed = (throttled["requested"] - throttled["available"]) / 50
    assert caught.value.retry_after == pytest.approx(needed, rel=1e-9) and needed > 1
    assert client.transport.stats.throttle_wait_seconds == 0  # it handed the wait back instead of sleeping


def test_an_estimate_that_runs_low_costs_one_throttled_answer_per_operation(start_sim: Any, make_client: Any, shop: dict) -> None:
    # Shopify's real figures differ from the documented estimate: here it charges a tenth more than
    # the client expects. The client learns each operation's figure from the answers and paces by it.
    shop["throttle"] = {**SMALL_BUCKET, "cost_factor": 1.1}
    sim = start_sim(shop)
    client = make_client(sim)
    for index in range(8):
        client.add_tags("gid://shopify/Order/1001", [f"t{index}"], idempotency_key=f"k{index}")
    requests = journal(sim, kind="request")
    throttled = [r["operation"] for r in requests if r.get("error") == "THROTTLED"]
    assert len(throttled) == len(set(throttled)) <= 2, throttled
    assert len([r for r in requests if r.get("error") is None]) == 16


def test_a_bucket_that_needs_too_long_hands_the_wait_back_to_the_caller(start_sim: Any, shop: dict) -> None:
    shop["throttle"] = {"maximum_available": 300, "restore_rate": 0.01}
    sim = start_sim(shop)
    sim.set_bucket_level(0)
    client = ShopifyClient(ShopifyConfig(shop=sim.base_url, max_throttle_wait=5), TOKEN, sleep=no_sleep)
    for _ in range(2):  # the second call does not even send: the client's copy of the bucket knows
        with pytest.raises(TransientError) as caught:
            client.get_order("gid://shopify/Order/1001")
        assert caught.value.code == "THROTTLED" and caught.value.retry_after > 5
    assert len(journal(sim, kind="request")) == 1


def test_server_errors_are_retried_then_transient(sim: Any) -> None:
    httpx.post(sim.base_url + "/_sim/faults", json={"error_rate": 1.0, "error_statuses": [503]}, timeout=5)
    client = ShopifyClient(ShopifyConfig(shop=sim.base_url, max_attempts=3), TOKEN, sleep=no_sleep)
    with pytest.raises(TransientError) as caught:
        client.get_order("gid://shopify/Order/1001")
    assert caught.value.code == "HTTP_503" and client.transport.stats.retries == 2


def test_occasional_server_errors_are_ridden_out(sim: Any) -> None:
    httpx.post(sim.base_url + "/_sim/faults", json={"error_rate": 0.5, "seed": 7}, timeout=5)
    client = ShopifyClient(ShopifyConfig(shop=sim.base_url, max_attempts=10), TOKEN, sleep=no_sleep)
    for _ in range(5):
        assert client.get_order("gid://shopify/Order/1001").name == "#1001"
    assert client.transport.stats.retries > 0


def test_dropped_connections_are_transient(sim: Any) -> None:
    httpx.post(sim.base_url + "/_sim/faults", json={"drop_rate": 1.0}, timeout=5)
    client = ShopifyClient(ShopifyConfig(shop=sim.base_url, max_attempts=2), TOKEN, sleep=no_sleep)
    with pytest.raises(TransientError) as caught:
        client.get_order("gid://shopify/Order/1001")
    assert caught.value.code == "CONNECTION"


def test_a_slow_shop_times_out_as_transient(sim: Any) -> None:
    httpx.post(sim.base_url + "/_sim/faults", json={"slow_rate": 1.0, "slow_seconds": 0.5}, timeout=5)
    client = ShopifyClient(ShopifyConfig(shop=sim.base_url, max_attempts=1, timeout=0.1), TOKEN, sleep=no_sleep)
    with pytest.raises(TransientError) as caught:
        client.get_order("gid://shopify/Order/1001")
    assert caught.value.code == "TIMEOUT"


def test_a_refused_token_is_an_auth_error_that_never_shows_the_token(sim: Any, caplog: Any, capsys: Any) -> None:
    secret = "shpat_wrong_but_secret_987654321"
    client = ShopifyClient(ShopifyConfig(shop=sim.base_url), secret, sleep=no_sleep)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthError) as caught:
        client.find_order("111-0000001-0000001")
    assert caught.value.code == "HTTP_401" and caught.value.permanent
    shown = " ".join([str(caught.value), repr(caught.value), repr(client), repr(client.transport), repr(client.config),
                      caplog.text, *capsys.readouterr()])
    assert secret not in shown
    assert secret not in str(httpx.get(sim.base_url + "/_sim/journal").json())


def test_the_token_is_not_in_the_logs_of_a_working_client(client: Any, caplog: Any, capsys: Any) -> None:
    caplog.set_level(logging.DEBUG)
    client.find_order("111-0000001-0000001")
    out = capsys.readouterr()
    assert TOKEN not in caplog.text + out.out + out.err + repr(client) + repr(vars(client.config))


def test_an_unserved_api_version_is_permanent(sim: Any) -> None:
    transport = ShopifyTransport(sim.base_url, TOKEN, "2025-10", sleep=no_sleep)
    with pytest.raises(PermanentError) as caught:
        transport.execute(OPERATIONS["2025-01"].job_status, {"id": "gid://shopify/Job/1"}, operation_name="JobStatus")
    assert caught.value.code == "HTTP_404"


def test_a_query_over_the_cost_cap_is_our_bug_not_a_retry(sim: Any) -> None:
    transport = ShopifyTransport(sim.base_url, TOKEN, sleep=no_sleep)
    with pytest.raises(InvalidInput) as caught:
        transport.execute(OPERATIONS["2025-01"].find_orders, {"search": "tag:x", "first": 10}, operation_name="FindOrders")
    assert caught.value.code == "MAX_COST_EXCEEDED"


def test_an_invalid_query_is_invalid_input_naming_the_field(sim: Any) -> None:
    transport = ShopifyTransport(sim.base_url, TOKEN, sleep=no_sleep)
    with pytest.raises(InvalidInput) as caught:
        transport.execute("query Bad { shop { nosuchfield } }", operation_name="Bad")
    assert caught.value.code == "GRAPHQL_ERROR" and "nosuchfield" in str(caught.value)


@pytest.mark.parametrize("shop,url", [
    ("acme", "https://acme.myshopify.com"),
    ("acme.myshopify.com", "https://acme.myshopify.com"),
    ("http://127.0.0.1:8082/", "http://127.0.0.1:8082"),
])
def test_shop_domains_become_base_urls(shop: str, url: str) -> None:
    assert base_url_for(shop) == url


def test_the_api_version_decides_the_operation_forms() -> None:
    from adapters.shopify.operations import operations_for

    assert operations_for("2024-10").version == "2025-01"
    assert operations_for("2026-04").uses_idempotent_directive
    with pytest.raises(ValueError):
        operations_for("2025-10")
    with pytest.raises(ValueError):
        operations_for("latest")
