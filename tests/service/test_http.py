"""/healthz, /readyz and /metrics over a real socket, and the metrics text against the exposition grammar."""
from __future__ import annotations

from typing import Any

import httpx
import pytest

from daemon.service.http import HttpServer
from daemon.service.metrics import ServiceMetrics
from tests.service.prom import parse


@pytest.fixture
def served() -> Any:
    state: dict[str, Any] = {"ok": False, "details": {"store": "the store at sqlite:///x cannot be reached"}}

    def readiness() -> tuple[bool, dict[str, Any]]:
        if "raise" in state:
            raise state["raise"]
        return state["ok"], state["details"]

    metrics = ServiceMetrics()
    server = HttpServer("127.0.0.1", 0, readiness, metrics.render).start()
    try:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            yield client, state, metrics
    finally:
        server.stop()


def test_healthz_answers_200(served: Any) -> None:
    client, _, _ = served
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.text == "ok\n"
    assert client.get("/nothing").status_code == 404


def test_readyz_follows_the_readiness_callable(served: Any) -> None:
    client, state, _ = served
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"ready": False, "store": "the store at sqlite:///x cannot be reached"}
    state["ok"], state["details"] = True, {"store": "ok", "polls": {"main-us": "ok, 3s ago"}}
    answer = client.get("/readyz")
    assert answer.status_code == 200 and answer.json()["polls"] == {"main-us": "ok, 3s ago"}


def test_readyz_is_503_when_the_check_itself_fails(served: Any) -> None:
    client, state, _ = served
    state["raise"] = RuntimeError("database driver fell over")
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["error"] == "readiness check failed: RuntimeError: database driver fell over"
    assert client.get("/healthz").status_code == 200  # the server survived


def test_metrics_parse_as_prometheus_text(served: Any) -> None:
    client, _, metrics = served
    metrics.events_ingested.inc(account="main-us", kind="order_cancelled")
    metrics.decisions.inc(ruleset="cancellation", rule='odd "rule"\nid\\x')
    metrics.actions.inc(type="hold_order", outcome="done")
    metrics.queue_depth.set(4, account="main-us", state="pending")
    metrics.throttle_wait.inc(1.25, api="amazon")
    metrics.job_runs.inc(job="poll_orders", outcome="ok")
    metrics.job_duration.observe(0.42, job="poll_orders")
    metrics.job_lag.set(0.003, job="poll_orders")
    metrics.rules_reloads.inc(result="error")
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse(answer.text)
    assert samples[("ordersync_events_ingested_total", frozenset({("account", "main-us"), ("kind", "order_cancelled")}))] == 1
    assert samples[("ordersync_decisions_total", frozenset({("ruleset", "cancellation"), ("rule", 'odd \\"rule\\"\\nid\\\\x')}))] == 1
    assert samples[("ordersync_throttle_wait_seconds_total", frozenset({("api", "amazon")}))] == 1.25
    assert samples[("ordersync_job_duration_seconds_bucket", frozenset({("job", "poll_orders"), ("le", "0.5")}))] == 1
    assert samples[("ordersync_job_duration_seconds_bucket", frozenset({("job", "poll_orders"), ("le", "0.25")}))] == 0
    assert samples[("ordersync_job_duration_seconds_count", frozenset({("job", "poll_orders")}))] == 1
    assert samples[("ordersync_queue_depth", frozenset({("account", "main-us"), ("state", "pending")}))] == 4


def test_the_grammar_check_rejects_broken_lines() -> None:
    with pytest.raises(AssertionError):
        parse('# TYPE a counter\na{x="unterminated} 1\n')
    with pytest.raises(AssertionError):
        parse("b 1\n")  # no TYPE


def test_wrong_labels_are_a_programming_error() -> None:
    metrics = ServiceMetrics()
    with pytest.raises(ValueError, match="takes labels account, kind"):
        metrics.events_ingested.inc(account="x")
