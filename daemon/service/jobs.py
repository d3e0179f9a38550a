"""The scheduler: APScheduler 3 BackgroundScheduler, with each job single-instance and coalesced,
one log line per run, run/lag/duration metrics, and a bounded drain on shutdown.

APScheduler's own shutdown(wait=True) waits for running jobs without a limit; the service must exit
within its stop timeout, so running jobs are tracked here and waited for with a deadline.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from daemon.service.metrics import ServiceMetrics

log = structlog.get_logger("ordersync.jobs")


class JobRunner:
    def __init__(self, metrics: ServiceMetrics, *, workers: int = 8) -> None:
        self.metrics = metrics
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=timezone.utc,
        )
        self.scheduler.add_listener(self._on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        self.accepting = threading.Event()
        self.accepting.set()
        self._running: dict[str, float] = {}  # job name -> monotonic start
        self._started_wall: dict[str, datetime] = {}
        self._idle = threading.Condition()
        self.names: list[str] = []

    def add_job(self, name: str, func: Callable[[], Any], seconds: float, *, first_run_in: float = 0.0) -> None:
        """Run `func()` every `seconds`, first after `first_run_in` seconds; one run at a time, missed
        runs coalesced into one. An exception is logged and counted, and the job runs again next time."""
        if name in self.names:
            raise ValueError(f"a job named {name!r} is registered already")
        self.names.append(name)
        self.scheduler.add_job(self._wrap(name, func), "interval", seconds=seconds, id=name, name=name,
                               next_run_time=datetime.now(timezone.utc) + timedelta(seconds=first_run_in))

    def _wrap(self, name: str, func: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            if not self.accepting.is_set():
                self.metrics.job_runs.inc(job=name, outcome="skipped")
                return
            with self._idle:
                self._running[name] = time.monotonic()
                self._started_wall[name] = datetime.now(timezone.utc)
            outcome, error = "ok", None
            try:
                func()
            except Exception as exc:
                outcome, error = "error", exc
            finally:
                with self._idle:
                    duration = time.monotonic() - self._running.pop(name)
                    self._idle.notify_all()
            self.metrics.job_runs.inc(job=name, outcome=outcome)
            self.metrics.job_duration.observe(duration, job=name)
            if error is None:
                log.info("job run", job=name, duration_s=round(duration, 3), outcome=outcome)
            else:
                log.error("job run", job=name, duration_s=round(duration, 3), outcome=outcome,
                          error=f"{type(error).__name__}: {error}", exc_info=error)
        return run

    def _on_event(self, event: JobEvent) -> None:
        name = event.job_id
        if event.code == EVENT_JOB_MISSED:
            self.metrics.job_runs.inc(job=name, outcome="missed")
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            # The previous run is still going: this one is dropped, which is what max_instances=1 is for.
            self.metrics.job_runs.inc(job=name, outcome="skipped")
            log.warning("job still running; this run skipped", job=name)
        elif isinstance(event, JobExecutionEvent):
            started = self._started_wall.pop(name, None)
            if started is not None and event.scheduled_run_time is not None:
                lag = (started - event.scheduled_run_time).total_seconds()
                self.metrics.job_lag.set(max(lag, 0.0), job=name)

    def start(self) -> None:
        self.scheduler.start()

    @property
    def running(self) -> list[str]:
        with self._idle:
            return sorted(self._running)

    def drain(self, timeout: float) -> list[str]:
        """Stop starting runs, wait up to `timeout` s for the running ones; the names still running after."""
        self.accepting.clear()
        if self.scheduler.running:
            # wait=False: APScheduler would wait without a bound; the wait below has one.
            self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._running and time.monotonic() < deadline:
                self._idle.wait(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
            return sorted(self._running)
