"""The pipeline: from an Amazon change to its storefront effect, exactly once (see jobs.py).

`install(service)` is what `ordersync run` calls: it builds each account's clients from the
configuration, registers the jobs, the readiness check and the drain hook, and first catches the
decision log up with any decision a crash committed but did not log."""
from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any

from adapters.amazon.client import AmazonAccount, AmazonClient
from adapters.errors import PermanentError
from adapters.shopify.client import OrderMatch, ShopifyClient, ShopifyConfig
from daemon.config import AccountConfig
from daemon.pipeline.cancellation_rate import measure as measure_cancellation_rate
from daemon.pipeline.catchup import catch_up_decision_log
from daemon.pipeline.jobs import AccountPipeline, Dispatcher, Observer
from daemon.service.lifecycle import StartupError

if TYPE_CHECKING:
    from daemon.service import Service


def amazon_client(account: AccountConfig) -> AmazonClient:
    section = account.amazon
    return AmazonClient(AmazonAccount(
        name=account.name, endpoint=section.endpoint, client_id=section.client_id,
        client_secret=section.client_secret.reveal(), refresh_token=section.refresh_token.reveal(),
        marketplace_ids=tuple(section.marketplace_ids), merchant_id=section.merchant_id, token_url=section.token_url,
        orders_api_version=section.orders_api, rate_limits=dict(section.rate_limits)))


def shopify_client(account: AccountConfig) -> ShopifyClient:
    section = account.shopify
    return ShopifyClient(ShopifyConfig(shop=section.shop, api_version=section.api_version,
                                       match=OrderMatch(by=section.match_by, tag_prefix=section.tag_prefix)),
                         section.access_token.reveal())


class ServiceObserver(Observer):
    def __init__(self, service: "Service") -> None:
        self.service = service

    def ingested(self, account: str, kind: str) -> None:
        self.service.metrics.events_ingested.inc(account=account, kind=kind)

    def decided(self, ruleset: str | None, rule: str | None) -> None:
        self.service.metrics.decisions.inc(ruleset=ruleset or "none", rule=rule or "no_action")

    def acted(self, action_type: str, outcome: str) -> None:
        self.service.metrics.actions.inc(type=action_type, outcome=outcome)

    def polled(self, account: str) -> None:
        self.service.mark_polled(account)

    def amazon_paused(self, account: str, work: str, paused: bool) -> None:
        self.service.metrics.amazon_paused.set(1.0 if paused else 0.0, account=account, work=work)


def install(service: "Service") -> None:
    config, store = service.config, service.repository
    if store is None or service.engine is None:
        return
    if service.decision_log is not None:
        catch_up_decision_log(store, service.decision_log)
    observer = ServiceObserver(service)
    pipelines: list[AccountPipeline] = []
    for account in config.accounts:
        pipelines.append(AccountPipeline(
            name=account.name, settings=dict(account.settings), batch_size=account.batch_size, store=store,
            engine=service.engine, decision_log=service.decision_log, amazon=amazon_client(account),
            shopify=shopify_client(account), observer=observer))
    for pipeline in pipelines:
        try:
            # The feed schemas, loaded now: a missing folder stops start-up (exit 2) instead of every feed
            # failing later, and the first feed does not pay the second it takes to load them.
            pipeline.amazon.validator
        except PermanentError as exc:
            raise StartupError(f"account {pipeline.name}: {exc}") from None
    worker = f"{socket.gethostname()}:{os.getpid()}"
    dispatcher = Dispatcher(store, {p.name: p.context for p in pipelines}, worker, observer,
                            lease_seconds=config.dispatch.lease_seconds, claim=config.dispatch.claim)
    jobs = config.jobs
    for pipeline in pipelines:
        name = pipeline.name
        service.add_job(f"{name}:poll_orders", pipeline.poll_orders, jobs.poll_orders)
        service.add_job(f"{name}:order_report", pipeline.poll_order_report, jobs.order_report)
        service.add_job(f"{name}:returns", pipeline.poll_returns, jobs.returns)
        service.add_job(f"{name}:storefront_cancellations", pipeline.poll_storefront_cancellations, jobs.storefront_cancellations)
        service.add_job(f"{name}:amazon_refunds", pipeline.poll_amazon_refunds, jobs.amazon_refunds)
        service.add_job(f"{name}:storefront_refunds", pipeline.poll_storefront_refunds, jobs.storefront_refunds)
        service.add_job(f"{name}:buyer_request_reminders", pipeline.remind_buyer_requests, jobs.buyer_request_reminders)
        service.add_job(f"{name}:decide", pipeline.decide, jobs.dispatch)
        service.add_job(f"{name}:send_batches", pipeline.send_batches, jobs.send_batches)
        service.add_job(f"{name}:check_feeds", pipeline.check_feeds, jobs.check_feeds)
    service.add_job("dispatch", dispatcher.run, jobs.dispatch)
    service.add_job("metrics", _MetricsExport(service, pipelines), jobs.dispatch)
    service.add_shutdown_hook("release claimed actions", dispatcher.release)
    for pipeline in pipelines:
        service.add_shutdown_hook(f"close {pipeline.name} clients", _closer(pipeline))


CANCELLATION_RATE_EVERY = 60.0  # seconds between two counts of each account's cancellation rate


def _closer(pipeline: AccountPipeline) -> Any:
    def close() -> None:
        pipeline.amazon.close()
        pipeline.shopify.close()
    return close


class _MetricsExport:
    """Queue depth from the store, the seconds each API's rate limit made us wait, as the clients counted them
    (exported as a running total, so only what is new since the last run is added), and each account's
    cancellation rate, once a minute."""

    def __init__(self, service: "Service", pipelines: list[AccountPipeline]) -> None:
        self.service, self.pipelines = service, pipelines
        self.reported: dict[tuple[str, str], float] = {}
        self.rate_measured: float | None = None

    def __call__(self) -> None:
        metrics = self.service.metrics
        for state, depth in self.service.repository.counts().actions_by_status.items():
            metrics.queue_depth.set(depth, account="all", state=state)
        for pipeline in self.pipelines:
            waited = {"amazon": pipeline.amazon.transport.stats.waited_for_rate,
                      "shopify": pipeline.shopify.transport.stats.paced_seconds + pipeline.shopify.transport.stats.throttle_wait_seconds}
            for api, seconds in waited.items():
                new = seconds - self.reported.get((pipeline.name, api), 0.0)
                if new > 0:
                    metrics.throttle_wait.inc(new, api=api)
                    self.reported[(pipeline.name, api)] = seconds
        # Counting a week of orders per account is cheap but not free: once a minute is fresh enough for a rate.
        if self.rate_measured is None or time.monotonic() - self.rate_measured >= CANCELLATION_RATE_EVERY:
            self.rate_measured = time.monotonic()
            for pipeline in self.pipelines:
                rate = measure_cancellation_rate(pipeline.store, pipeline.name, pipeline.clock())
                metrics.cancellation_rate.set(rate.percent, account=pipeline.name)
