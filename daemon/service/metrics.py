"""Counters, gauges and histograms rendered as Prometheus text exposition format 0.0.4.

A hundred lines of our own rather than prometheus_client: the daemon needs a handful of labelled
metrics in one process, and prometheus_client's global default registry (and its multiprocess mode)
would be one more thing for tests and reloads to reset. Every metric here lives in a `Registry`
object the service owns.
"""
from __future__ import annotations

import math
import threading
from typing import Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str]) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {', '.join(self.label_names) or '(none)'}, got {', '.join(labels) or '(none)'}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> Iterable[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets))
        self._values: dict[tuple[str, ...], tuple[list[int], float, int]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts, total, n = self._values.get(key) or ([0] * len(self.buckets), 0.0, 0)
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            self._values[key] = (counts, total + value, n + 1)

    def count(self, **labels: str) -> int:
        entry = self._values.get(self._key(labels))
        return entry[2] if entry else 0

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted((k, (list(c), s, n)) for k, (c, s, n) in self._values.items())
        for key, (counts, total, n) in items:
            for bound, count in zip(self.buckets, counts):
                le = 'le="' + _number(bound) + '"'
                yield f"{self.name}_bucket{_labels(self.label_names, key, le)} {count}"
            le = 'le="+Inf"'
            yield f"{self.name}_bucket{_labels(self.label_names, key, le)} {n}"
            yield f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}"
            yield f"{self.name}_count{_labels(self.label_names, key)} {n}"


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _add(self, metric: _Metric) -> _Metric:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is registered already")
            self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help, labels))  # type: ignore[return-value]

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help, labels))  # type: ignore[return-value]

    def histogram(self, name: str, help: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = DEFAULT_BUCKETS) -> Histogram:
        return self._add(Histogram(name, help, labels, buckets))  # type: ignore[return-value]

    def render(self) -> str:
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for metric in metrics:
            lines += metric.header()
            lines += metric.samples()
        return "\n".join(lines) + "\n"


class ServiceMetrics:
    """The metrics the daemon exports; the pipeline feeds most of them.

    | name | labels | fed by |
    |---|---|---|
    | ordersync_events_ingested_total | account, kind | ingest |
    | ordersync_decisions_total | ruleset, rule | decide (rule "no_action" when none fired) |
    | ordersync_actions_total | type, outcome | dispatch (outcome: done, retry, failed, skipped); feeds: a storefront refund withheld (withheld) or held back while Amazon cannot be asked (held, each run) |
    | ordersync_queue_depth | account, state | dispatch (actions by state) |
    | ordersync_throttle_wait_seconds_total | api | adapters' rate limiters (amazon, shopify) |
    | ordersync_job_runs_total | job, outcome | the service (ok, error, skipped, missed) |
    | ordersync_job_duration_seconds | job | the service |
    | ordersync_job_lag_seconds | job | the service: start of the last run minus its scheduled time |
    | ordersync_rules_reloads_total | result | the service (ok, error) |
    | ordersync_rules_loaded_timestamp_seconds | | the service: when the running rules were loaded |
    | ordersync_last_poll_timestamp_seconds | account | `Service.mark_polled` |
    | ordersync_cancellation_rate_percent | account | the metrics job, once a minute (daemon.pipeline.cancellation_rate) |
    | ordersync_amazon_paused | account, work | 1 when the job's last run stopped early, or held work back, because Amazon did not answer or refused the app (or, for send_batches, a feed), else 0 (work: buyer_request_reminders, storefront_cancellations, storefront_refunds, send_batches) |
    """

    def __init__(self, registry: Registry | None = None) -> None:
        r = self.registry = registry or Registry()
        self.events_ingested = r.counter("ordersync_events_ingested_total", "Events stored in the inbox.", ("account", "kind"))
        self.decisions = r.counter("ordersync_decisions_total", "Decisions made, by ruleset and the rule that fired.", ("ruleset", "rule"))
        self.actions = r.counter("ordersync_actions_total", "Actions carried out, by type and outcome.", ("type", "outcome"))
        self.queue_depth = r.gauge("ordersync_queue_depth", "Actions in the outbox, by account and state.", ("account", "state"))
        self.throttle_wait = r.counter("ordersync_throttle_wait_seconds_total", "Seconds spent waiting for an API's rate limit.", ("api",))
        self.job_runs = r.counter("ordersync_job_runs_total", "Scheduled job runs, by outcome.", ("job", "outcome"))
        self.job_duration = r.histogram("ordersync_job_duration_seconds", "How long job runs took.", ("job",))
        self.job_lag = r.gauge("ordersync_job_lag_seconds", "How late the last run of a job started after its scheduled time.", ("job",))
        self.rules_reloads = r.counter("ordersync_rules_reloads_total", "Rule reloads, by result.", ("result",))
        self.rules_loaded_at = r.gauge("ordersync_rules_loaded_timestamp_seconds", "When the running rules were loaded (Unix time).")
        self.last_poll = r.gauge("ordersync_last_poll_timestamp_seconds", "Last successful order poll per account (Unix time).", ("account",))
        self.amazon_paused = r.gauge("ordersync_amazon_paused", "1 when the job's last run stopped early, or held work "
                                     "back, because Amazon did not answer or refused the app (a revoked authorisation, "
                                     "a missing role); 0 when it did not.", ("account", "work"))
        self.cancellation_rate = r.gauge("ordersync_cancellation_rate_percent", "Amazon's 7-day cancellation rate as ordersync "
                                         "counts it: FBM orders the seller cancelled without a buyer's request, per 100.", ("account",))

    def render(self) -> str:
        return self.registry.render()
