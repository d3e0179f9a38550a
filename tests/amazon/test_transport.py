"""Login, rate limits, retries and secrets, against the stand-in over real sockets."""
from __future__ import annotations

import httpx
import pytest
import structlog

from adapters.errors import AuthError, TransientError

from .conftest import CLIENT_SECRET, REFRESH_TOKEN, SINCE


def ops(sim, name):
    return [e for e in sim.journal.entries() if e["operation"] == name]


def test_access_token_is_cached_and_refreshed_once_after_it_stops_working(sim, client):
    client.get_order("113-0000001-0000001")
    client.get_order("113-0000002-0000002")
    assert client.tokens.fetches == 1
    httpx.post(sim.base_url + "/_sim/expire-tokens").raise_for_status()
    client.get_order("113-0000003-0000003")  # 403, then a new token, then 200
    assert client.tokens.fetches == 2
    assert [e["status"] for e in ops(sim, "getOrder2026")] == [200, 200, 403, 200]


def test_revoked_refresh_token_says_so_names_the_account_and_hides_the_secret(sim, make_client):
    client = make_client(sim, refresh_token="Atzr|revoked-refresh-token")
    with pytest.raises(AuthError) as caught:
        client.poll_orders(SINCE)
    message = str(caught.value)
    assert "test-seller" in message and "invalid_grant" in message and "authorise the app again" in message
    assert "Atzr|revoked" not in message and CLIENT_SECRET not in message
    bad_client = make_client(sim, client_secret="wrong-secret")
    with pytest.raises(AuthError, match="invalid_client"):
        bad_client.poll_orders(SINCE)


def test_secrets_never_appear_in_reprs_or_logs(sim, client, capsys):
    structlog.configure(processors=[structlog.processors.KeyValueRenderer()], logger_factory=structlog.PrintLoggerFactory())
    try:
        client.poll_orders(SINCE)
        httpx.post(sim.base_url + "/_sim/expire-tokens")
        client.get_order("113-0000001-0000001")
    finally:
        structlog.reset_defaults()
    printed = capsys.readouterr().out
    assert "lwa_token_fetched" in printed  # the log was captured, so the check below means something
    everything = printed + repr(client) + repr(client.account) + repr(client.tokens) + repr(sim.journal.entries())
    for secret in (CLIENT_SECRET, REFRESH_TOKEN):
        assert secret not in everything
    assert "Atza|sim-" not in everything  # nor the access token


def assert_within_bucket(times, rate, burst):
    """Replays the server's own bucket over the journal's arrival times: no request ever lacked a token."""
    tokens, last = burst, times[0]
    for moment in times:
        tokens = min(burst, tokens + (moment - last) * rate)
        last = moment
        assert tokens >= 1 - 1e-6, "a request arrived with no token left"
        tokens -= 1


def test_client_never_exceeds_the_documented_rate(make_sim, make_client, scenario):
    limits = {"getOrder2026": (20.0, 3.0)}  # the documented 0.5/s, burst 30, scaled so the test is fast
    scenario["rate_limits"]["getOrder2026"] = {"rate": 20.0, "burst": 3.0}
    sim = make_sim(scenario)
    client = make_client(sim, rate_limits={**dict(client_limits()), **limits})
    for _ in range(12):
        client.get_order("113-0000001-0000001")
    served = ops(sim, "getOrder2026")
    assert [e["status"] for e in served] == [200] * 12  # the stand-in refuses past its bucket, so no 429 is the proof
    assert client.transport.stats.waited_for_rate > 0  # the client did hold back
    assert_within_bucket([e["received"] for e in served], 20.0, 3.0)


def client_limits():
    from .conftest import FAST_LIMITS
    return FAST_LIMITS


def test_a_client_faster_than_the_server_is_throttled_then_retries_and_adopts_the_announced_rate(make_sim, make_client, scenario):
    scenario["rate_limits"]["getOrder2026"] = {"rate": 10.0, "burst": 2.0}
    sim = make_sim(scenario)
    client = make_client(sim, rate_limits={**client_limits(), "getOrder2026": (1000.0, 4.0)})
    for _ in range(6):
        client.get_order("113-0000001-0000001")
    statuses = [e["status"] for e in ops(sim, "getOrder2026")]
    assert 429 in statuses and statuses.count(200) == 6
    assert client.transport.bucket("getOrder2026").rate == pytest.approx(10.0 * 0.9)  # from x-amzn-RateLimit-Limit


def test_server_errors_and_dropped_connections_are_retried(sim, make_client):
    from adapters.amazon import RetryPolicy
    client = make_client(sim, retry=RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.02))
    httpx.post(sim.base_url + "/_sim/faults", json={"error_rate": 0.3, "drop_rate": 0.2, "seed": 7,
                                                     "path_prefix": "/orders/"}).raise_for_status()
    for order_id in ("113-0000001-0000001", "113-0000002-0000002", "113-0000003-0000003"):
        assert client.get_order(order_id).amazon_order_id == order_id
    assert client.transport.stats.retries > 0
    assert any(e.get("fault") == "error" for e in sim.journal.entries())


def test_retries_are_bounded_then_a_transient_error_names_the_call(sim, client):
    httpx.post(sim.base_url + "/_sim/faults", json={"error_rate": 1.0, "path_prefix": "/orders/"}).raise_for_status()
    with pytest.raises(TransientError, match=r"getOrder2026 .*test-seller.*order 113-0000001-0000001.*HTTP 50\d.*gave up after 4"):
        client.get_order("113-0000001-0000001")
    faults = [e for e in sim.journal.entries() if e.get("fault") == "error"]
    assert len(faults) == 4


def test_slow_answers_time_out_and_are_retried(sim, make_client):
    client = make_client(sim, timeout=0.2)
    client.get_order("113-0000001-0000001")  # log in before the server turns slow
    httpx.post(sim.base_url + "/_sim/faults", json={"slow_rate": 1.0, "slow_seconds": 0.5, "path_prefix": "/orders/"}).raise_for_status()
    with pytest.raises(TransientError, match="timed out"):
        client.get_order("113-0000001-0000001")
