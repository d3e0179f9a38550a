"""The Service in-process: how the pipeline plugs in (jobs, readiness, shutdown hooks) and the bounded drain."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.config import load_config
from daemon.service import Service, StartupError
from tests.service.conftest import ACCOUNT, SECRET_VALUES, write


def wait_until(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def service_for(workdir: Path, extra: str = "", account: bool = False, **kwargs: Any) -> Service:
    text = (ACCOUNT if account else "") + 'http: {listen: "127.0.0.1:0"}\nrules: {watch_seconds: 0}\n' + extra
    return Service(load_config(write(workdir, text), environ=SECRET_VALUES), configure_logs=False, **kwargs)


def test_jobs_log_one_line_per_run_and_feed_metrics(workdir: Path) -> None:
    calls: list[str] = []

    def pipeline(service: Service) -> None:
        service.add_job("poll_orders", lambda: calls.append("poll"), 0.1)
        service.add_job("dispatch", lambda: 1 / 0, 0.1)

    service = service_for(workdir, plugins=[pipeline])
    with capture_logs() as logs:
        service.start()
        try:
            wait_until(lambda: len(calls) >= 2 and service.metrics.job_runs.value(job="dispatch", outcome="error") >= 1)
        finally:
            service.stop()
    runs = [e for e in logs if e["event"] == "job run"]
    ok = next(e for e in runs if e["job"] == "poll_orders")
    assert ok["outcome"] == "ok" and ok["log_level"] == "info" and ok["duration_s"] >= 0
    failed = next(e for e in runs if e["job"] == "dispatch")
    assert failed["outcome"] == "error" and failed["error"] == "ZeroDivisionError: division by zero"
    assert service.metrics.job_runs.value(job="poll_orders", outcome="ok") >= 2
    assert service.metrics.job_duration.count(job="poll_orders") >= 2
    assert "ordersync_job_lag_seconds{job=\"poll_orders\"}" in service.metrics.render()


def test_stop_waits_for_running_jobs_then_releases(workdir: Path) -> None:
    started, finished, order = threading.Event(), threading.Event(), []

    def slow() -> None:
        started.set()
        time.sleep(0.5)
        finished.set()
        order.append("job finished")

    def pipeline(service: Service) -> None:
        service.add_job("dispatch", slow, 60)
        service.add_shutdown_hook("release claims", lambda: order.append("claims released"))

    service = service_for(workdir, plugins=[pipeline])
    service.start()
    assert started.wait(5)
    assert service.stop() == 0
    assert finished.is_set() and order == ["job finished", "claims released"]
    assert service.unfinished_jobs == []


def test_drain_is_bounded(workdir: Path) -> None:
    started, release = threading.Event(), threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(30)

    hooks: list[str] = []

    def pipeline(service: Service) -> None:
        service.add_job("check_feeds", stuck, 60)
        service.add_shutdown_hook("release claims", lambda: hooks.append("released"))

    service = service_for(workdir, "shutdown: {drain_seconds: 0.5}\n", plugins=[pipeline])
    service.start()
    assert started.wait(5)
    begun = time.monotonic()
    with capture_logs() as logs:
        assert service.stop() == 0
    assert time.monotonic() - begun < 2
    assert service.unfinished_jobs == ["check_feeds"] and hooks == ["released"]
    assert any(e["event"].startswith("jobs still running after the drain time") and e["jobs"] == ["check_feeds"] for e in logs)
    release.set()


def test_readiness_follows_polls_and_pipeline_checks(workdir: Path) -> None:
    healthy = {"ok": True}

    def pipeline(service: Service) -> None:
        service.add_readiness_check("outbox", lambda: (healthy["ok"], "ok" if healthy["ok"] else "dispatcher stuck"))

    text = ACCOUNT + "http: {listen: '127.0.0.1:0', ready_poll_age: 60}\nrules: {watch_seconds: 0}\n"
    service = Service(load_config(write(workdir, text), environ=SECRET_VALUES), configure_logs=False, plugins=[pipeline])
    service.start()
    try:
        ok, details = service.readiness()
        assert not ok and details["polls"] == {"main-us": "no successful poll yet"}
        service.mark_polled("main-us")
        ok, details = service.readiness()
        assert ok and details["store"] == "ok" and set(details["rules"]) == {"cancellation", "refund"}
        service.mark_polled("main-us", at=time.time() - 61)
        ok, details = service.readiness()
        assert not ok and "limit 60s" in details["polls"]["main-us"]
        service.mark_polled("main-us")
        healthy["ok"] = False
        ok, details = service.readiness()
        assert not ok and details["outbox"] == "dispatcher stuck"
        assert service.repository is not None  # the store package, opened and migrated
    finally:
        service.stop()
    assert service.readiness()[0] is False  # stopping: a load balancer takes it out


def test_a_failing_store_is_a_startup_error_and_nothing_is_left_running(workdir: Path) -> None:
    class Down:
        def __init__(self, config: Any) -> None:
            pass

        def upgrade(self) -> None:
            raise ConnectionRefusedError("connection refused")

        def ping(self) -> None:
            raise ConnectionRefusedError("connection refused")

        def close(self) -> None:
            pass

        repository = None

    service = service_for(workdir, store_factory=Down)
    with pytest.raises(StartupError, match="cannot be reached: connection refused"):
        service.start()
    assert service.http is None and not service.jobs.scheduler.running
