"""The pipeline's jobs for one account, each safe to kill at any point and run again:

    poll (orders, order report, returns) ─► inbox, cursor advanced with the events (one transaction)
    decide ─► a run's decisions + their actions (outbox) + the events marked decided (one transaction), then the log
    dispatch ─► each due action through its adapter with its idempotency key ─► done / retry / error view
    send_batches ─► Amazon-bound actions as one feed per batch ─► check_feeds reconciles each message

Nothing is decided twice: a decision's id is derived from its event, and the store refuses a second
decision for an event. Nothing is done twice: each effect carries the action's idempotency key and
the adapters look before they act; a feed whose submission is in doubt is never sent again.
"""
from __future__ import annotations

import functools
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import structlog

from adapters.amazon.client import AmazonClient, order_unknown
from adapters.amazon.feeds import AdjustedItem, AdjustmentRequest, BuiltFeed, CancelItem, CancelRequest
from adapters.amazon.finances import of_marketplaces, posting_order
from adapters.amazon.models import AmazonOrder, AmazonRefund, OrderCursor, OrderStatus, Parsed, ReturnRow
from adapters.errors import AdapterError, AuthError, InvalidInput, PermanentError, TransientError
from adapters.shopify.client import OrderNotFound, ShopifyClient, ShopifyRejected
from adapters.shopify.models import StorefrontOrder, StorefrontRefund
from daemon.actions import ACTIONS, FAILED_CANCELLATION, FAILED_REFUND
from daemon.audit.log import DecisionLog
from daemon.audit.record import decision_record
from daemon.facts import FactError
from daemon.pipeline.cancellation_rate import CancellationRate
from daemon.pipeline.cancellation_rate import measure as measure_cancellation_rate
from daemon.pipeline.events import (BUYER_REQUEST, BUYER_REQUEST_DUE, CANCEL_REQUEST, REFUND_REQUEST, RETURN, AmazonRefundSeen,
                                    NewEvent, Refund,
                                    buyer_request_due_events, buyer_request_due_key, buyer_request_events, buyer_request_key,
                                    grid_fields, order_events, refund_of, return_events, storefront_cancellation_events,
                                    storefront_cancellation_key, storefront_refund_events, storefront_refund_key,
                                    units_given_up)
from daemon.pipeline.executors import EXECUTORS, AccountContext
from daemon.pipeline.fact_builder import build_fact
from daemon.rules.engine import Decision, DecisionError, EngineDisagreement, RulesEngine
from daemon.store import DecisionToRecord, Store
from daemon.store.batches import NotQueued
from daemon.store.outbox import CANCELLATION_REJECTED
from daemon.store.models import ADJUSTMENT_FEED, BATCH_CREATED, BATCH_SUBMITTED, CANCEL_FEED, QUEUED_FOR_BATCH, Action
from daemon.store.types import money_text

log = structlog.get_logger("ordersync.pipeline")
T = TypeVar("T")

# Decision ids are derived from the event, so a decision made again after a crash has the same id,
# and so do the idempotency keys of its actions.
DECISION_NAMESPACE = uuid.UUID("5b2f7c1e-0d3a-4c52-9b8e-6f1d2a7c9e41")
FIRST_POLL_LOOKBACK = timedelta(days=30)
REPORT_OVERLAP = timedelta(minutes=10)   # report rows land late; the natural keys absorb the overlap
MAX_ATTEMPTS = 8
# The returns report is chosen by the date a return was requested, not by when its status changed, so a
# return first seen Pending would never be seen Approved (and never become an RMA) once the window had moved
# past it. Each poll therefore reads the last RETURNS_REREAD again; a status already seen is stored once.
RETURNS_REREAD = timedelta(days=14)
STOREFRONT_CANCELLATIONS = "storefront_cancellations"
# Shopify's search lags its writes by a few seconds, so each storefront poll starts this much before the
# last one did; what it meets again is stored once.
STOREFRONT_OVERLAP = timedelta(minutes=10)
AMAZON_REFUNDS = "amazon_refunds"
# Amazon refuses a PostedBefore less than two minutes before the request; a minute more allows for our clock
# being ahead of Amazon's.
FINANCES_SETTLE = timedelta(minutes=3)
# "Orders from the last 48 hours might not be included in financial events" (the Finances API's description),
# so each poll reads the last 48 hours again; a refund already seen is stored and counted once.
FINANCES_REREAD = timedelta(hours=48)
# Amazon answers a window longer than 180 days with nothing at all (no error): after a longer stop, the poll
# starts where Amazon still answers, and says what it skipped.
FINANCES_WINDOW = timedelta(days=179)
FINANCES_SLICE = timedelta(hours=12)
BUYER_REQUEST_REMINDERS = "buyer_request_reminders"
# Amazon gives the seller 2 days to answer a buyer's request, then the buyer may go to Amazon: a request still
# open this long after it was made is decided again, with 12 hours left to act on what the rules say.
BUYER_REQUEST_REMINDER_AFTER = timedelta(hours=36)
# Each due request costs an Amazon read (the order now, at 0.5 a second): more are left for the next run.
REMINDERS_PER_RUN = 50
REMINDERS_SCANNED = 1000  # requests looked at per run from the low-water mark
# Each new storefront cancellation costs two Amazon reads (the order and its items, at 0.5 a second):
# more than this many in one poll are left for the next, so the job never runs for long.
STOREFRONT_PER_POLL = 50
STOREFRONT_REFUNDS = "storefront_refunds"
# A refund made in the Shopify admin is taken once it is this old, and Amazon's refunds of the order are read then:
# one recorded there by hand of a refund just made in Seller Central must find Amazon reporting it (its Finances
# API lists a refund some time after it is made), or Amazon would be asked to refund it again.
STOREFRONT_REFUND_SETTLE = timedelta(hours=1)
UNREADABLE_PER_POLL = 5    # orders with refunds Shopify gives unreadably, put aside in one poll before it gives up
PASSED_OVER_KEPT = 200     # such orders remembered in the cursor, the latest


_NAMESPACE_BYTES = DECISION_NAMESPACE.bytes


def decision_id_for(account: str, natural_key: str) -> str:
    """uuid.uuid5(DECISION_NAMESPACE, "account/natural_key") as text, made without the UUID object (a
    fifth of the cost): SHA-1 of namespace and name, version 5 and the RFC 4122 variant set in it."""
    digest = hashlib.sha1(_NAMESPACE_BYTES + f"{account}/{natural_key}".encode("utf-8")).digest()
    bits = (int.from_bytes(digest[:16], "big") & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x5000 << 64) | (0x8000 << 48)
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def refund_by_line(lines: Sequence[Mapping[str, Any]], amount: Decimal,
                   refunded: Mapping[str, Decimal] | None = None) -> list[tuple[str, Decimal]]:
    """An order-level refund as Amazon's adjustment feed takes it, per order item.

    Amazon refuses more on an item than was paid for it, less what it has refunded on it already, so a
    whole-order refund of a two-line order cannot go on the first line alone. The amount is shared in
    proportion to what each line has left (its price less `refunded` on it: the order's earlier refunds, as
    this function shared them), so refunds that add up to at most what was paid (the rules' check) never
    exceed a line. Shares are in the finest unit the amount and prices are written in (cents for 12.50, yen
    for 1000); what rounding leaves goes to the lines in order, as far as each one's room allows, and the rest
    (an over-refund the settings allow) to the last line, for Amazon to accept or refuse."""
    refunded = refunded or {}
    priced = [(str(line.get("order_item_id")), Decimal(str(line.get("price") or "0"))) for line in lines]
    room = [max(price - refunded.get(code, Decimal(0)), Decimal(0)) for code, price in priced]
    total = sum(room, Decimal(0))
    if not priced or total <= 0:
        return [(priced[-1][0] if priced else "0", amount)]
    unit = Decimal(1).scaleb(min(int(number.as_tuple().exponent) for number in (amount, *(p for _, p in priced))))
    shares = [(amount * left / total).quantize(unit, rounding=ROUND_DOWN) for left in room]
    rest = amount - sum(shares, Decimal(0))
    for index, left in enumerate(room):
        more = min(rest, max(left - shares[index], Decimal(0)))
        shares[index] += more
        rest -= more
    shares[-1] += rest
    return [(code, share) for (code, _), share in zip(priced, shares) if share > 0]


def refund_items(lines: Sequence[Mapping[str, Any]], refund: Refund,
                 refunded: Mapping[str, Decimal] | None = None) -> list[tuple[str, Decimal]]:
    """What a refund puts on each order item."""
    if isinstance(refund, Mapping):
        return list(refund.items())
    return refund_by_line(lines, refund, refunded)


def refunded_by_line(lines: Sequence[Mapping[str, Any]], earlier: Sequence[Refund]) -> dict[str, Decimal]:
    """What the order's earlier refunds put on each line, shared again in the order they were made."""
    refunded: dict[str, Decimal] = {}
    for refund in earlier:
        for code, part in refund_items(lines, refund, refunded):
            refunded[code] = refunded.get(code, Decimal(0)) + part
    return refunded


def _stamp(moment: datetime) -> str:
    """A time as the cursors and Shopify's search write it (a naive one is taken as UTC): text order is time order."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _requested_at(text: Any, received: datetime) -> datetime:
    """When the buyer asked: the time Amazon gave, when it is readable and not after the request reached us."""
    try:
        return min(_parse_stamp(str(text)), received) if text else received
    except ValueError:
        return received


def _parse_stamp(text: str) -> datetime:
    return _aware(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _earlier_refunds(refunds: Sequence[StorefrontRefund]) -> dict[str, tuple[StorefrontRefund, ...]]:
    """Each refund's order's refunds before it (Shopify lists an order's refunds together, oldest first)."""
    before: dict[str, list[StorefrontRefund]] = {}
    earlier: dict[str, tuple[StorefrontRefund, ...]] = {}
    for refund in refunds:
        seen = before.setdefault(refund.order_id, [])
        earlier[refund.id] = tuple(seen)
        seen.append(refund)
    return earlier


def _from_amazon(event: Any) -> bool:
    """A refund Amazon made (its Finances API), as opposed to one asked for here or made in the storefront."""
    return event.kind == REFUND_REQUEST and event.payload.get("origin") == "amazon"


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(600, 2 ** max(0, attempts)))


class AmazonPaused(Exception):
    """Amazon did not answer, or refused the app: a job asking order by order stops where it is."""


@dataclass(frozen=True)
class AmazonRefusal:
    """Amazon refused what was asked of one order (its answer unreadable, an id it rejects, an order it does not
    have): that order's business alone."""
    error: str
    unknown_order: bool = False


def _ask_amazon(call: Callable[[], T]) -> T | AmazonRefusal:
    """What Amazon answers about one order, or its refusal; AmazonPaused when Amazon does not answer, or refuses the
    app (a revoked authorisation, a missing role), which says nothing about the order."""
    try:
        return call()
    except (TransientError, AuthError) as exc:
        raise AmazonPaused(str(exc)) from exc
    except AdapterError as exc:
        return AmazonRefusal(str(exc), unknown_order=order_unknown(exc))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Observer:
    """What the jobs tell the service: metrics and readiness. The default tells nobody (tests, tools)."""

    def ingested(self, account: str, kind: str) -> None: ...
    def decided(self, ruleset: str | None, rule: str | None) -> None: ...
    def acted(self, action_type: str, outcome: str) -> None: ...
    def polled(self, account: str) -> None: ...
    # Whether a job's run stopped early, or held work back, because Amazon did not answer or refused the app (a
    # revoked authorisation, a role the app lacks): nothing is lost, but nothing moves until it answers again.
    def amazon_paused(self, account: str, work: str, paused: bool) -> None: ...


@dataclass
class _FeedRunCheck:
    """One send_batches run's checks of storefront refunds against Amazon (AccountPipeline._checked_against_amazon)."""
    held: dict[int, Action] = field(default_factory=dict)  # actions left queued for a later run, by id
    held_orders: set[str] = field(default_factory=set)     # their orders: later refunds of them wait too
    paused: str | None = None                              # Amazon did not answer, or refused the app, in this run
    amazon_refunded: dict[str, Decimal | AmazonRefusal] = field(default_factory=dict)  # by order, read in this run
    # By feed kind, the last queued action the run's listings have passed (batched, held or withheld): the next
    # listing starts after it, so held actions are not listed again and again (each listing is one page).
    passed: dict[str, int] = field(default_factory=dict)

    def hold(self, action: Action) -> None:
        self.held[action.id] = action
        if action.amazon_order_id:
            self.held_orders.add(action.amazon_order_id)


@dataclass(frozen=True)
class _NotSent:
    """Why a storefront refund does not go out (AccountPipeline._refunded_meanwhile), for store.withhold."""
    error: str                # the error view's text, and the action's last error
    result: dict[str, Any]    # the action's result: why, with the figures
    retry: bool               # resolving queues it again (failed), or not (withheld for good: rejected)


# A send_batches run that finds its listed actions taken by another process (store.NotQueued) this many times
# stops there; the next run goes on.
BATCH_RACES_PER_RUN = 5


# The jobs that stop where they are, or hold work back, while Amazon does not answer or refuses the app (or, for
# send_batches, a feed), and end ok (nothing is lost): Observer.amazon_paused tells of each run (metric
# ordersync_amazon_paused).
SEND_BATCHES = "send_batches"
PAUSABLE_JOBS = (BUYER_REQUEST_REMINDERS, STOREFRONT_CANCELLATIONS, STOREFRONT_REFUNDS, SEND_BATCHES)

_Job = TypeVar("_Job", bound=Callable[..., int])


def _tells_of_amazon_pauses(work: str) -> Callable[[_Job], _Job]:
    """A job method that tells the observer, as each run ends, whether Amazon paused it (AccountPipeline._paused),
    a run that raises too: what the last run met, never an older run's."""
    def wrap(job: _Job) -> _Job:
        @functools.wraps(job)
        def run(self: "AccountPipeline", *args: Any, **kwargs: Any) -> int:
            self._paused.discard(work)
            try:
                return job(self, *args, **kwargs)
            finally:
                self.observer.amazon_paused(self.name, work, work in self._paused)
        return run  # type: ignore[return-value]
    return wrap


@dataclass
class AccountPipeline:
    name: str
    settings: dict[str, bool]
    batch_size: int
    store: Store
    engine: RulesEngine
    decision_log: DecisionLog | None
    amazon: AmazonClient
    shopify: ShopifyClient
    observer: Observer = field(default_factory=Observer)
    clock: Callable[[], datetime] = utcnow
    # Batches this process created and knows Amazon refused or never got: safe to send again.
    _retry_here: set[int] = field(default_factory=set)
    # Orders Amazon said it does not have (_amazon_order): the reminders job does not ask for them again.
    _not_amazons: set[str] = field(default_factory=set)
    # The jobs (PAUSABLE_JOBS) whose run going on now Amazon paused; each job runs once at a time.
    _paused: set[str] = field(default_factory=set)

    # -- ingest ---------------------------------------------------------------------------------
    def _ingest(self, events: Iterable[NewEvent], cursor: tuple[str, str] | None,
                grid: Mapping[str, Mapping[str, Any]] | None = None, *, grid_unread_only: bool = False) -> int:
        """Store each event once; the cursor moves with the page (or alone when there is no event), and
        the page's orders are brought up to date in the grid. One transaction for all of it: a crash loses
        it all, and the next poll reads the page again (one commit per page, rather than per event or per
        order, is most of ingest's cost)."""
        events = list(events)
        if not events and cursor is None:
            return 0
        return self._count_stored((event.kind for event in events),
                                  self.store.ingest_many(self.name, events, cursor, orders=grid,
                                                         orders_unread_only=grid_unread_only))

    def _count_stored(self, kinds: Iterable[str], stored: Iterable[bool]) -> int:
        """How many of the events (each of its kind) were stored, each one told to the observer."""
        count = 0
        for kind, new in zip(kinds, stored):
            if new:
                count += 1
                self.observer.ingested(self.name, kind)
        return count

    def poll_orders(self) -> int:
        saved = self.store.cursor(self.name, "orders")
        cursor = OrderCursor.from_json(json.loads(saved)) if saved else \
            OrderCursor(_stamp(self.clock() - FIRST_POLL_LOOKBACK), self.amazon_api_version)
        page = self.amazon.poll_orders(cursor)
        for error in page.errors:
            log.warning("amazon order skipped", account=self.name, error=str(error))
        stored = self.ingest_orders(page.orders, page.next_cursor)
        self.observer.polled(self.name)
        return stored

    def ingest_orders(self, orders: Sequence[AmazonOrder], next_cursor: OrderCursor) -> int:
        """A polled page: each order's changes as events and its row in the grid, with the cursor past it."""
        return self._ingest([event for order in orders for event in order_events(order)],
                            ("orders", json.dumps(next_cursor.to_json())),
                            grid={order.amazon_order_id: grid_fields(order) for order in orders})

    @property
    def amazon_api_version(self) -> str:
        return self.amazon.account.orders_api_version if hasattr(self.amazon, "account") else "2026-01-01"

    def _since(self, kind: str, reread: timedelta | None = None) -> tuple[str, str]:
        """Where a report poll starts (the saved cursor, or FIRST_POLL_LOOKBACK ago; with `reread`, no later
        than that long ago) and the cursor it leaves for the next poll."""
        saved = self.store.cursor(self.name, kind)
        now = self.clock()
        since = saved or _stamp(now - FIRST_POLL_LOOKBACK)
        if reread is not None:
            since = min(since, _stamp(now - reread))
        return since, _stamp(now - REPORT_OVERLAP)

    def poll_order_report(self) -> int:
        since, next_since = self._since("order_report")
        parsed = self.amazon.buyer_cancel_requests(since)
        for notice in parsed.notices:
            log.warning("amazon order report", account=self.name, notice=notice)
        for error in parsed.errors:
            log.warning("order report row skipped", account=self.name, error=str(error))
        return self._ingest((e for row in parsed.records for e in buyer_request_events(row)), ("order_report", next_since))

    def poll_returns(self) -> int:
        since, next_since = self._since("returns", reread=RETURNS_REREAD)
        parsed = self.amazon.returns(since)
        for error in parsed.errors:
            log.warning("returns report row skipped", account=self.name, error=str(error))
        return self.ingest_returns(parsed.records, next_since)

    def ingest_returns(self, rows: Sequence[ReturnRow], next_since: str) -> int:
        """The returns report's rows as events, with the report's cursor moved to `next_since`."""
        return self._ingest((event for row in rows for event in return_events(row)), ("returns", next_since))

    def poll_amazon_refunds(self) -> int:
        """Refunds Amazon made (its Finances API's refund events: a person in Seller Central, Amazon on its own,
        and ordersync's own refunds coming back), as refund_requested events of origin amazon. Each run reads
        the last FINANCES_REREAD again, in slices of FINANCES_SLICE, each stored with the cursor at its end:
        the listing holds every financial event (shipments and fees too), so a first run, or a large seller's
        48 hours, is many pages, and a slice that fails leaves the ones before it read."""
        since, next_since = self._since(AMAZON_REFUNDS, reread=FINANCES_REREAD)
        now = self.clock()
        earliest = _stamp(now - FINANCES_WINDOW)
        if since < earliest:
            log.warning("amazon refunds not read: older than Amazon lists in one window", account=self.name,
                        skipped_from=since, skipped_to=earliest)
            since = earliest
        start, until = _parse_stamp(since), now - FINANCES_SETTLE
        stored = 0
        while start < until:
            end = min(start + FINANCES_SLICE, until)
            cursor = _stamp(end) if end < until else min(next_since, _stamp(until))
            stored += self.ingest_amazon_refunds(self.amazon.refunds(_stamp(start), _stamp(end)), cursor)
            start = end
        return stored

    def ingest_amazon_refunds(self, parsed: Parsed[AmazonRefund], next_since: str) -> int:
        """A slice's refunds as events. Those of another marketplace (the listing is the seller's, across the
        region) are not this account's. An order none of whose refunds were counted yet has all its refunds
        read first (listFinancialEventsByOrderId), so its Amazon total includes what was refunded before
        ordersync watched, which the storefront may show. A refund event Amazon sent that cannot be read puts
        its order in the error view: its money would otherwise be missing from the order's total."""
        marketplaces = self.amazon.account.marketplace_ids
        refunds = [r for r in parsed.records if of_marketplaces(r, marketplaces)]
        errors = list(parsed.errors)
        counted = self.store.amazon_refunded(self.name, {r.amazon_order_id for r in refunds})
        for order_id in dict.fromkeys(r.amazon_order_id for r in refunds if r.amazon_order_id not in counted):
            history = self.amazon.refunds_of_order(order_id)
            refunds.extend(r for r in history.records if of_marketplaces(r, marketplaces))
            errors.extend(history.errors)
        for error in errors:
            log.warning("amazon refund not read", account=self.name, amazon_order_id=error.order_id, error=str(error))
            if error.order_id:
                self.store.mark_failed(self.name, error.order_id, FAILED_REFUND,
                                       f"amazon_refund_unreadable: Amazon's refund event could not be read ({error}). "
                                       f"Check the order's refunds in Seller Central and record any the storefront "
                                       f"does not show by hand, then resolve this.")
        refunds.sort(key=posting_order)  # each order's total grows in posting order
        seen = [AmazonRefundSeen(refund) for refund in refunds]
        return self._count_stored((REFUND_REQUEST for _ in seen),
                                  self.store.ingest_amazon_refunds(self.name, seen, (AMAZON_REFUNDS, next_since)))

    @_tells_of_amazon_pauses(BUYER_REQUEST_REMINDERS)
    def remind_buyer_requests(self) -> int:
        """Buyer requests BUYER_REQUEST_REMINDER_AFTER old, as buyer_request_due events carrying the order as
        Amazon shows it now (the storefront's is read when deciding), for the rules to say what is still to do;
        one event per order. One the grid shows cancelled on Amazon is answered and makes no event.

        The cursor is a low-water mark: every request up to it is done. Requests are not stored in the order
        they were made (the order report's rows come late, a backlog after a stop), so one not due yet is
        passed over, not waited for, and the mark stays before it. Amazon not answering, or refusing the app,
        stops the run there; a refusal of one order (its answer unreadable, a bad id) puts that order in the
        error view and the run goes on, so no order stops the others' reminders."""
        saved = self.store.cursor(self.name, BUYER_REQUEST_REMINDERS)
        mark = int(saved) if saved else 0
        due_before = self.clock() - BUYER_REQUEST_REMINDER_AFTER
        requests = self.store.events_of_kind(self.name, BUYER_REQUEST, mark, limit=REMINDERS_SCANNED)
        reminded = self.store.stored_keys(self.name, (buyer_request_due_key(r.amazon_order_id) for r in requests))
        events: list[NewEvent] = []
        waiting = False  # a request before this one is not due yet: the mark stays before it
        asked = 0
        for request in requests:
            order_id = request.amazon_order_id
            requested = _requested_at(request.payload.get("requested_at"), _aware(request.received_at))
            if requested > due_before:
                waiting = True
                continue
            key = buyer_request_due_key(order_id)
            if order_id and key not in reminded and order_id not in self._not_amazons \
                    and not self._cancelled_on_amazon(order_id):
                if asked == REMINDERS_PER_RUN:
                    break
                asked += 1
                try:
                    order = self._amazon_order(order_id, FAILED_CANCELLATION,
                                               "buyer_request_not_reminded: the buyer asked to cancel and Amazon's 2-day "
                                               "window is closing, but Amazon did not give the order ({error}). Answer the "
                                               "buyer in Seller Central.")
                except AmazonPaused as exc:
                    log.warning("buyer request reminders paused: Amazon did not answer or refused the app", account=self.name,
                                amazon_order_id=order_id, error=str(exc))
                    self._paused.add(BUYER_REQUEST_REMINDERS)
                    break
                if order is not None:
                    events.extend(buyer_request_due_events(order, request.payload, requested.isoformat()))
                    reminded.add(key)
            if not waiting:
                mark = request.id
        return self._ingest(events, (BUYER_REQUEST_REMINDERS, str(mark)))

    def _cancelled_on_amazon(self, amazon_order_id: str) -> bool:
        """What the grid last saw of the order on Amazon says it is cancelled."""
        row = self.store.get_order(self.name, amazon_order_id)
        return row is not None and row.status == OrderStatus.CANCELED.value

    def _amazon_order(self, amazon_order_id: str, failed_status: str, failure: str) -> AmazonOrder | None:
        """Amazon's order as it is now, for a job that asks order by order; None for an order to skip: one Amazon
        does not have, or one it refuses, which goes to the error view with `failure` ({error} is Amazon's
        message), so one order never stops the others (see _read_amazon_order)."""
        order = self._read_amazon_order(amazon_order_id)
        if isinstance(order, AmazonRefusal):
            log.warning("order in the error view: Amazon refused it", account=self.name,
                        amazon_order_id=amazon_order_id, error=order.error)
            self.store.mark_failed(self.name, amazon_order_id, failed_status, failure.replace("{error}", order.error))
            return None
        return order

    def _read_amazon_order(self, amazon_order_id: str) -> AmazonOrder | AmazonRefusal | None:
        """Amazon's order, or None for one Amazon does not have (another account's order sharing the shop, a
        mistyped id: logged, and not asked again by the reminders job of this process), or AmazonRefusal for one
        it refuses (its answer unreadable, an id it rejects). Amazon not answering, or refusing the app (a revoked
        authorisation), says nothing about the order: AmazonPaused, for the job to stop there and start from it
        next time."""
        order = _ask_amazon(lambda: self.amazon.get_order(amazon_order_id))
        if isinstance(order, AmazonRefusal) and order.unknown_order:
            log.warning("order skipped: Amazon does not know it", account=self.name,
                        amazon_order_id=amazon_order_id, error=order.error)
            self._not_amazons.add(amazon_order_id)
            return None
        return order

    @_tells_of_amazon_pauses(STOREFRONT_CANCELLATIONS)
    def poll_storefront_cancellations(self) -> int:
        """Orders a person cancelled in the storefront (not ordersync: its cancellations carry its marker), as
        cancel_requested events of origin storefront, each with Amazon's view of the order asked for then,
        for the rules to tell Amazon. The first poll only starts watching: a cancellation made before
        ordersync ran is not sent to Amazon. Amazon not answering stores what was read before it and starts the
        next poll there; an order Amazon refuses goes to the error view (_amazon_order)."""
        now = self.clock()
        cursor = self._storefront_cursor(STOREFRONT_CANCELLATIONS, now)
        if cursor is None:
            return 0
        watching_since = _parse_stamp(cursor["watching_since"])
        # Shopify's times are whole seconds: one in the second the watch began may have been before it.
        found = [c for c in self.shopify.cancelled_orders(cursor["since"])
                 if not c.by_ordersync and _parse_stamp(c.cancelled_at) > watching_since]
        new = self._not_stored(found, storefront_cancellation_key)
        events: list[NewEvent] = []
        read: list[AmazonOrder] = []
        next_since = _stamp(now - STOREFRONT_OVERLAP)
        for index, cancellation in enumerate(new):
            if index == STOREFRONT_PER_POLL:
                next_since = _stamp(_parse_stamp(cancellation.updated_at))
                break
            try:
                order = self._amazon_order(cancellation.amazon_order_id, FAILED_CANCELLATION,
                                           f"storefront_cancellation_not_sent: {cancellation.name} was cancelled in the "
                                           "storefront, but Amazon did not give the order ({error}), so Amazon was not "
                                           "told. Cancel it in Seller Central.")
            except AmazonPaused as exc:
                log.warning("storefront poll paused: Amazon did not answer or refused the app", account=self.name,
                            amazon_order_id=cancellation.amazon_order_id, error=str(exc))
                self._paused.add(STOREFRONT_CANCELLATIONS)
                next_since = _stamp(_parse_stamp(cancellation.updated_at))
                break
            if order is None or not self._of_this_account(order, "storefront cancellation"):
                continue
            read.append(order)
            events.extend(storefront_cancellation_events(cancellation, order))
        return self._store_storefront_poll(STOREFRONT_CANCELLATIONS, cursor, events, next_since, now, read)

    def _not_stored(self, found: Sequence[T], key: Callable[[T], str]) -> list[T]:
        """What a poll found that the account's events do not have yet (asking Amazon only for what is new)."""
        known = self.store.stored_keys(self.name, (key(item) for item in found))
        return [item for item in found if key(item) not in known]

    def _storefront_cursor(self, kind: str, now: datetime) -> dict[str, Any] | None:
        """Where a storefront poll reads Shopify from (`since`) and when ordersync began watching. The first poll
        only starts watching (None): what a person did in the storefront before ordersync ran is not sent to Amazon."""
        saved = self.store.cursor(self.name, kind)
        if saved is None:
            self._start_watching(kind, now)
            return None
        return json.loads(saved)

    def _start_watching(self, kind: str, now: datetime) -> None:
        self.store.set_cursor(self.name, kind, json.dumps({"since": _stamp(now), "watching_since": _stamp(now)}))

    def _store_storefront_poll(self, kind: str, cursor: dict[str, Any], events: list[NewEvent], next_since: str,
                               now: datetime, read: Sequence[AmazonOrder] = ()) -> int:
        """The poll's events with its cursor moved on to `next_since`, never past now nor back before where it began,
        and the grid's rows of the Amazon orders it read that the grid has no Amazon side of (an order older than the
        order poll's look-back is then counted in the cancellation rate as it is; the order poll's own reads, maybe
        newer than this one, are never overwritten)."""
        next_since = max(min(next_since, _stamp(now)), cursor["since"])
        return self._ingest(events, (kind, json.dumps({**cursor, "since": next_since})),
                            grid={order.amazon_order_id: grid_fields(order) for order in read}, grid_unread_only=True)

    @_tells_of_amazon_pauses(STOREFRONT_REFUNDS)
    def poll_storefront_refunds(self) -> int:
        """Refunds a person made in the storefront (not ordersync: its refunds carry its marker), as refund_requested
        events of origin storefront, each with Amazon's view of the order and Amazon's refunds of it read then and
        what the storefront showed refunded before it, for the rules to tell Amazon of a new refund and not of a
        copy of one Amazon made. Only for an account with sync_storefront_refunds on: otherwise nothing is read,
        and the watch starts when it is turned on. A refund is taken once it is STOREFRONT_REFUND_SETTLE old; a
        refund of an order cancelled in the storefront belongs to the cancellation (the storefront cancellations
        poll tells Amazon, which refunds the buyer itself). Amazon not answering stores what was read before it
        and starts the next poll there; an order Amazon refuses, or whose refunds it reports unreadably, goes to
        the error view."""
        now = self.clock()
        if not self.settings.get("sync_storefront_refunds", False):
            self._start_watching(STOREFRONT_REFUNDS, now)
            return 0
        cursor = self._storefront_cursor(STOREFRONT_REFUNDS, now)
        if cursor is None:
            return 0
        watching_since, settled = _parse_stamp(cursor["watching_since"]), now - STOREFRONT_REFUND_SETTLE
        # A refund younger than the settling time is on an order updated since: the next poll meets it again, and no
        # poll may start after it.
        not_after = _stamp(settled - STOREFRONT_OVERLAP)
        every = self._storefront_refunds(cursor)
        # Shopify's times are whole seconds: one in the second the watch began may have been before it.
        found = [r for r in every if not r.by_ordersync and not r.order_cancelled
                 and watching_since < _parse_stamp(r.created_at) <= settled]
        new = self._not_stored(found, storefront_refund_key)
        earlier = _earlier_refunds(every)
        events: list[NewEvent] = []
        next_since = not_after
        taken: set[str] = set()
        for index, refund in enumerate(new):
            if index == STOREFRONT_PER_POLL:
                next_since = min(_stamp(_parse_stamp(refund.updated_at)), next_since)
                break
            if refund.order_id in taken:
                # One refund of an order a poll: the next one is compared once this one's decision says what ordersync
                # sends Amazon of it (refunds_on_their_way_to_amazon).
                next_since = min(_stamp(_parse_stamp(refund.updated_at)), next_since)
                continue
            try:
                order, amazon_refunded, problem = self._amazon_side_of(refund)
            except AmazonPaused as exc:
                log.warning("storefront refunds poll paused: Amazon did not answer or refused the app", account=self.name,
                            amazon_order_id=refund.amazon_order_id, error=str(exc))
                self._paused.add(STOREFRONT_REFUNDS)
                next_since = min(_stamp(_parse_stamp(refund.updated_at)), next_since)
                break
            if order is None and problem is None:
                continue  # not this account's order
            taken.add(refund.order_id)
            ours = self.store.amazon_refunds_of_order(self.name, refund.amazon_order_id) if problem is None else ()
            events.extend(storefront_refund_events(refund, earlier[refund.id], order, amazon_refunded, ours, problem))
        return self._store_storefront_poll(STOREFRONT_REFUNDS, cursor, events, next_since, now)

    def _storefront_refunds(self, cursor: dict[str, Any]) -> list[StorefrontRefund]:
        """Shopify's refunds since the cursor. An order whose refunds Shopify gives in a form the poll cannot read
        (or more of them than it reads) goes to the error view, and is passed over from then on (kept in the
        cursor), so one order does not stop every later refund from reaching Amazon."""
        passed_over: list[str] = cursor.setdefault("passed_over", [])
        for _ in range(UNREADABLE_PER_POLL + 1):
            try:
                return list(self.shopify.refunded_orders(cursor["since"], passing_over=passed_over))
            except ShopifyRejected as exc:
                if exc.order_id is None or exc.code not in ("MALFORMED_ANSWER", "REFUNDS_TRUNCATED"):
                    raise
                log.error("storefront refunds of an order not read", account=self.name, storefront_order=exc.order_id,
                          amazon_order_id=exc.amazon_order_id, error=str(exc))
                if exc.amazon_order_id:
                    self.store.mark_failed(self.name, exc.amazon_order_id, FAILED_REFUND,
                                           f"storefront_refunds_unreadable: {exc}. Amazon was not told of this order's "
                                           "refunds made in the storefront, and will not be: check them in Seller Central.")
                passed_over.append(exc.order_id)
                del passed_over[:-PASSED_OVER_KEPT]
        # Those put aside so far stay put aside: the next poll goes on from them rather than meeting them again.
        self.store.set_cursor(self.name, STOREFRONT_REFUNDS, json.dumps(cursor))
        raise ShopifyRejected(f"more than {UNREADABLE_PER_POLL} orders' refunds could not be read in one storefront "
                              "refunds poll; see the error view", code="MALFORMED_ANSWER")

    def _amazon_side_of(self, refund: StorefrontRefund) -> tuple[AmazonOrder | None, Decimal | None, str | None]:
        """Amazon's order and what Amazon has refunded on it in all (its Finances API, this account's marketplaces),
        read now, or why they could not be: (order, total, None), (order or None, None, problem), or (None, None,
        None) for an order that is not this account's (Amazon does not know it, or it is another marketplace's,
        when accounts share a shop). AmazonPaused when Amazon does not answer or refuses the app."""
        amazon_order_id = refund.amazon_order_id
        order = self._read_amazon_order(amazon_order_id)
        if order is None:
            return None, None, None
        if isinstance(order, AmazonRefusal):
            return None, None, f"Amazon did not give the order ({order.error})"
        if not self._of_this_account(order, "storefront refund"):
            return None, None, None
        if order.currency and refund.currency != order.currency:
            return order, None, f"the refund is in {refund.currency} and Amazon's order in {order.currency}"
        refunded = self._amazon_refunded(amazon_order_id)
        if isinstance(refunded, AmazonRefusal):
            return order, None, refunded.error
        return order, refunded, None

    def _of_this_account(self, order: AmazonOrder, what: str) -> bool:
        """Whether the order is of one of the account's marketplaces: accounts of one seller sharing a shop each read
        the storefront's changes, and Amazon gives each of them every marketplace's orders (logged when not)."""
        if not order.of_marketplaces(self.amazon.account.marketplace_ids):
            log.info(f"{what} skipped: another marketplace's order", account=self.name,
                     amazon_order_id=order.amazon_order_id, marketplace=order.marketplace_id)
            return False
        return True

    def _amazon_refunded(self, amazon_order_id: str) -> Decimal | AmazonRefusal:
        """What Amazon has refunded on the order in all, read now: its Finances API's refunds, guarantee claims and
        chargebacks of the order (listFinancialEventsByOrderId, one read), those of this account's marketplaces.
        AmazonRefusal says why it could not be read (Amazon refused the order, or gave a refund of it that cannot be
        read: a total without it would be short). AmazonPaused when Amazon does not answer or refuses the app."""
        history = _ask_amazon(lambda: self.amazon.refunds_of_order(amazon_order_id))
        if isinstance(history, AmazonRefusal):
            return AmazonRefusal(f"Amazon did not give the order's refunds ({history.error})")
        if history.errors:
            return AmazonRefusal(f"Amazon gave a refund of the order that cannot be read ({history.errors[0]})")
        marketplaces = self.amazon.account.marketplace_ids
        return sum((r.amount for r in history.records if of_marketplaces(r, marketplaces)), Decimal(0))

    # -- decide ---------------------------------------------------------------------------------
    def decide(self, limit: int = 500) -> int:
        """Decide up to `limit` undecided events; returns how many were decided.

        The run's decisions are recorded in one transaction and then logged together: a crash before the
        commit loses the run, which is decided again with the same ids; a crash between the commit and
        the log is caught up from the store at start (daemon.pipeline.catchup)."""
        decided: list[tuple[DecisionToRecord, Decision]] = []
        # An order whose earlier actions are still going out is about to change on the storefront; its new
        # events wait for a later run (in order) rather than being decided against what is about to change,
        # e.g. Amazon's echo of a cancellation decided while the storefront cancel is still pending.
        events = self.store.undecided_events(self.name, limit, include_failed=False)
        waiting = self.store.orders_with_open_actions(self.name, among=(e.amazon_order_id for e in events if e.amazon_order_id))
        # What Shopify said in this run, asked once: every read spends the shop's cost bucket, which in
        # production bounds deciding (benchmarks/storefront_lookups.py). An order's later event in the run
        # comes only after a decision with no action (one with actions makes the order wait), so its
        # storefront copy is the one read for the first.
        read: dict[str | None, StorefrontOrder | None] = {}
        kits: dict[str, bool | None] = {}
        rate: CancellationRate | None = None  # measured once a run, for the cancellations to be sent to Amazon
        amazon_totals = self._amazon_totals_now(events)
        cancelling = self._amazon_cancellations(events)
        for event in events:
            if event.amazon_order_id in waiting:
                continue
            counts_as_cancellation = self._counts_as_cancellation(event)
            try:
                if event.amazon_order_id not in read:
                    read[event.amazon_order_id] = self._storefront_of(event.amazon_order_id)
                storefront = read[event.amazon_order_id]
                payload = self._with_kit_flag(event.kind, event.payload, kits)
                if event.amazon_order_id in amazon_totals and _from_amazon(event):
                    payload = {**payload, "amazon_refunded_now": str(amazon_totals[event.amazon_order_id])}
                if cancelling is not None and self._asks_amazon_cancellation(event):
                    payload = {**payload, "amazon_cancellation": cancelling.get(event.amazon_order_id, "none")}
                if counts_as_cancellation:
                    rate = rate or measure_cancellation_rate(self.store, self.name, self.clock())
                    payload = self._with_cancellation_rate(event.amazon_order_id, payload, rate)
            except TransientError as exc:
                log.info("decide paused: storefront unavailable", account=self.name, error=str(exc))
                break  # this event and the rest stay undecided; the next run tries again
            fact = build_fact(event.kind, self.name, event.amazon_order_id, payload, storefront, self.settings, self.clock())
            try:
                decision = self.engine.decide(fact, decision_id=decision_id_for(self.name, event.natural_key))
            except (FactError, DecisionError, EngineDisagreement) as exc:
                self.store.record_failure(event.id, str(exc))
                log.error("event not decided", account=self.name, event_id=event.id, kind=event.kind,
                          amazon_order_id=event.amazon_order_id, error=str(exc))
                continue
            decided.append((DecisionToRecord(event.id, decision_record(decision), decision.actions), decision))
            if counts_as_cancellation and rate is not None:
                rate.decided(event.amazon_order_id, (a["type"] for a in decision.actions))
            if decision.actions and event.amazon_order_id:
                waiting.add(event.amazon_order_id)
        # The grid shows each order's storefront copy.
        self.store.link_storefront_orders(self.name, {order_id: storefront.id for order_id, storefront in read.items()
                                                      if order_id and storefront is not None})
        if not decided:
            return 0
        recorded = self.store.record_decisions([item for item, _ in decided])
        # An event someone else decided meanwhile (another process on the same database) is theirs to log.
        decided = [pair for pair, result in zip(decided, recorded) if result.new]
        if self.decision_log is not None:
            self.decision_log.write_many([item.record for item, _ in decided])
        # Bound once per run: the module's logger is a lazy proxy that binds itself again on every call.
        run_log = log.bind(account=self.name)
        for item, decision in decided:
            self.observer.decided(item.record["ruleset"], item.record["rule"])
            run_log.info("decision", amazon_order_id=decision.fact.get("amazon_order_id"), kind=decision.fact["event"],
                         rule=item.record["rule"], actions=[a["type"] for a in decision.actions],
                         decision_id=decision.decision_id)
        return len(decided)

    def _amazon_totals_now(self, events: Sequence[Any]) -> dict[str, Decimal]:
        """What Amazon has refunded on the orders of the run's refunds Amazon made, in all, as far as read now
        (amazon_refunded_now): the storefront records no more than that, so a chargeback and its reversal read
        together do not put the chargeback's money into the storefront, which could not take it back."""
        orders = {e.amazon_order_id for e in events if e.amazon_order_id and _from_amazon(e)}
        return self.store.amazon_refunded(self.name, orders) if orders else {}

    @staticmethod
    def _counts_as_cancellation(event: Any) -> bool:
        """An event whose fact carries Amazon's cancellation rate: a cancellation to be sent to Amazon, or a refund made
        here that gives units up (DOMAIN 13), which Amazon hears of as cancelled."""
        if not event.amazon_order_id:
            return False
        return event.kind == CANCEL_REQUEST or (
            event.kind == REFUND_REQUEST and event.payload.get("origin") == "operator" and bool(units_given_up(event.payload)))

    def _asks_amazon_cancellation(self, event: Any) -> bool:
        """An event whose fact says whether ordersync is cancelling the order on Amazon already (amazon_cancellation):
        a buyer's request the rules may answer on their own (the account accepts requests), its reminder, a person's
        cancellation made here (a second one must not send Amazon another message), and a rejected cancellation
        (its order's hold is not released while another cancellation of it goes on)."""
        return bool(event.amazon_order_id) and (
            event.kind in (BUYER_REQUEST_DUE, CANCELLATION_REJECTED)
            or (event.kind == BUYER_REQUEST and bool(self.settings.get("accept_buyer_requests")))
            or (event.kind == CANCEL_REQUEST and event.payload.get("origin") == "operator"))

    def _amazon_cancellations(self, events: Sequence[Any]) -> dict[str, str] | None:
        """ordersync's cancellations on Amazon of the orders of the run's events that ask (one lookup)."""
        orders = {e.amazon_order_id for e in events if self._asks_amazon_cancellation(e)}
        return self.store.amazon_cancellations(self.name, orders) if orders else None

    def _with_cancellation_rate(self, amazon_order_id: str, payload: dict, rate: CancellationRate) -> dict:
        """A cancellation's payload with Amazon's cancellation rate as it is and as it would be with this order
        cancelled, whether it counts, and whether the buyer asked for it: daemon.pipeline.cancellation_rate."""
        buyer_requested = bool(self.store.stored_keys(self.name, [buyer_request_key(amazon_order_id)]))
        return {**payload, **rate.fields_for(amazon_order_id, self.store.get_order(self.name, amazon_order_id),
                                             payload.get("fulfillment"), str(payload.get("reason_code") or ""),
                                             buyer_requested)}

    def _storefront_of(self, amazon_order_id: str | None) -> StorefrontOrder | None:
        try:
            return self.shopify.find_order(amazon_order_id) if amazon_order_id else None
        except OrderNotFound:
            return None

    def _with_kit_flag(self, kind: str, payload: dict, known: dict[str, bool | None]) -> dict:
        """A return's payload with has_kit_items: whether a returned SKU is a bundle in Shopify (Amazon's
        report does not say). When Shopify cannot say for a SKU the field stays out, so no rule on it
        holds; create_rma asks again and puts the order in the error view with Shopify's answer. `known`
        keeps the answers of this decide run by SKU."""
        if kind != RETURN:
            return payload
        for sku in dict.fromkeys(item.get("sku") for item in payload.get("items") or []):
            if not sku:
                continue
            if sku not in known:
                known[sku] = self._is_kit(sku)
            if known[sku] is None:
                return payload
            if known[sku]:
                return {**payload, "has_kit_items": True}
        return {**payload, "has_kit_items": False}

    def _is_kit(self, sku: str) -> bool | None:
        """Whether the SKU is a fixed bundle; None when Shopify cannot say (the SKU is on several variants,
        the token lacks read_products). A bundle Shopify refuses to list (a component without a SKU) is
        still a kit. A transient failure is raised: it pauses deciding, as for the storefront lookup."""
        try:
            return bool(self.shopify.kit_components(sku))
        except PermanentError as exc:
            if isinstance(exc, ShopifyRejected) and exc.code.startswith("KIT_"):
                return True
            log.warning("kit lookup failed; the return is decided without has_kit_items", account=self.name,
                        sku=sku, error=str(exc))
            return None

    # -- Amazon feeds -----------------------------------------------------------------------------
    def _feed(self, kind: str, messages: dict[int, Action]):
        requests = []
        for message_id, action in messages.items():
            payload = self.context.event_payload(action)
            lines = payload.get("lines") or []
            reason = action.params["reason_code"]
            if kind == CANCEL_FEED:
                items = tuple(CancelItem(str(line["order_item_id"]), reason) for line in lines)
                requests.append(CancelRequest(action.amazon_order_id or "", items, message_id=message_id))
            else:
                amount = Decimal(str(self.context.decision(action).get("fact", {}).get("refund_amount") or "0"))
                refunded = refunded_by_line(lines, [refund_of(earlier, paid_back) for earlier, paid_back
                                                    in self.store.amazon_refunds_before(action)])
                # Units that could not be fulfilled (DOMAIN 13) are told to Amazon as the quantity cancelled.
                cancelled = units_given_up(payload)
                items = tuple(AdjustedItem(code, reason, (("Principal", part),), quantity_cancelled=cancelled.get(code))
                              for code, part in refund_items(lines, refund_of(payload, amount), refunded))
                requests.append(AdjustmentRequest(action.amazon_order_id or "", items, currency=payload.get("currency") or "USD",
                                                  message_id=message_id))
        build = self.amazon.build_cancellation_feed if kind == CANCEL_FEED else self.amazon.build_adjustment_feed
        return build(requests)

    @property
    def context(self) -> AccountContext:
        return AccountContext(self.name, self.shopify, self.store)

    @_tells_of_amazon_pauses(SEND_BATCHES)
    def send_batches(self) -> int:
        """Queued Amazon-bound actions out as feeds, at most `batch_size` messages each. A refund made in the storefront
        is first checked against Amazon's refunds of the order as they are now (_checked_against_amazon): one Amazon
        could not be asked about stays queued for a later run, and is left out of this run's listings. A feed is
        filled with the next queued actions in place of those held back or withheld (_next_feed): Amazon allows
        few createFeed calls (a burst of 15, then one every 2 minutes). When another process batched or withheld
        one of the listed actions first (store.NotQueued: nothing was recorded), the queue is listed again."""
        self._settle_batches_in_doubt()
        sent, races = 0, 0
        check = _FeedRunCheck()
        try:
            for kind in (CANCEL_FEED, ADJUSTMENT_FEED):
                while True:
                    mark = check.passed.get(kind)
                    actions = self._next_feed(kind, check)
                    if not actions:
                        break
                    # Load the feed schemas (most of a second in a fresh process) before the batch is recorded:
                    # a crash between recording a batch and Amazon's answer to createFeed leaves it in doubt.
                    self.amazon.validator
                    try:
                        batch = self.store.create_batch(self.name, kind, [a.id for a in actions])
                    except NotQueued as exc:
                        races += 1
                        log.warning("feed not made: another process batched or withheld some of its actions first; "
                                    "listing the queue again", account=self.name, feed_type=kind, error=str(exc))
                        if races >= BATCH_RACES_PER_RUN:
                            return sent
                        check.passed[kind] = mark  # the feed's other actions are listed again
                        continue
                    try:
                        sent += self._submit(batch.batch.id, kind, batch.messages)
                    except AdapterError as exc:
                        # Built but not accepted: every step before createFeed was answered, or createFeed was
                        # answered with an error; either way Amazon has no feed. Try the same batch next run.
                        log.warning("feed not sent", account=self.name, batch=batch.batch.id, error=str(exc))
                        self._paused.add(SEND_BATCHES)
                        self._retry_here.add(batch.batch.id)
                        return sent
            return sent
        finally:
            self._report_held(check)

    def _next_feed(self, kind: str, check: _FeedRunCheck) -> list[Action]:
        """The next feed's actions of this kind: the oldest queued, up to batch_size, that may go out now. Refunds are
        checked first (_checked_against_amazon); those held back or withheld are replaced by the next in the queue,
        listed page by page, until the feed is full or the queue has no more. Those held back earlier in the run
        are passed over."""
        chosen: list[Action] = []
        while len(chosen) < self.batch_size:
            need = self.batch_size - len(chosen)
            listed = self.store.queued_amazon_actions(self.name, kind, need, after=check.passed.get(kind))
            if not listed:
                break
            check.passed[kind] = listed[-1].id
            fresh = [a for a in listed if a.id not in check.held]
            chosen += self._checked_against_amazon(fresh, check) if kind == ADJUSTMENT_FEED else fresh
        return chosen

    def _report_held(self, check: _FeedRunCheck) -> None:
        """Storefront refunds a run held back (Amazon did not answer, or refused the app), and the later refunds of
        their orders, wait for a later run with no end set: each run that holds them says so, in the log (how many,
        their orders, since when the oldest has waited for a feed) and in the observer (outcome "held", once per
        action and run), so that one waiting for long is seen."""
        if not check.held:
            return
        for action in check.held.values():
            self.observer.acted(action.type, "held")
        oldest = min(_aware(a.updated_at) for a in check.held.values())
        log.warning("refunds held back: Amazon's refunds of their orders could not be read again before sending "
                    "storefront refunds; they stay queued for a later feed", account=self.name, held=len(check.held),
                    amazon_order_ids=sorted(check.held_orders), queued_since=_stamp(oldest),
                    waiting_hours=round((_aware(self.clock()) - oldest).total_seconds() / 3600, 1),
                    error=check.paused)

    def _checked_against_amazon(self, actions: Sequence[Action], check: _FeedRunCheck) -> list[Action]:
        """The refunds that may go out in this feed. A refund made in the storefront was compared with Amazon's refunds
        of the order when it was read, maybe days ago (it may have waited for approval): if Amazon has refunded more
        since (a person in Seller Central, an A-to-z claim, a chargeback) than ordersync's own refunds of the order
        explain, the buyer got the money meanwhile, and this one would refund them twice. It is withheld for good
        (rejected, observer outcome "withheld"), and the order goes to the error view saying so (store.withhold:
        resolving does not send it). One whose refunds Amazon gives unreadably (maybe once) is not sent either, but
        failed (outcome "failed"): resolving queues it again, to be checked with the next feed. When Amazon does not
        answer, or refuses the app, the refund stays queued for a later run, and so do the others of this run that
        need the check (Amazon is not asked again in this run) and the later refunds of their orders (an order's
        refunds go to Amazon in the order decided); _report_held says so. Other refunds (an operator's `orders
        refund` is an order to refund) are not checked, and go. One Finances read per order checked in a run."""
        passing: list[Action] = []
        for action in actions:
            if action.amazon_order_id in check.held_orders:
                check.hold(action)
                continue
            fact = self.context.decision(action).get("fact", {})
            if fact.get("origin") != "storefront":
                passing.append(action)
                continue
            if check.paused is not None:
                check.hold(action)
                continue
            order_id = action.amazon_order_id or ""
            if order_id not in check.amazon_refunded:
                try:
                    check.amazon_refunded[order_id] = self._amazon_refunded(order_id)
                except AmazonPaused as exc:
                    log.warning("storefront refunds held back: Amazon did not answer or refused the app, so Amazon's "
                                "refunds of the order could not be read again before sending; they go with a later feed",
                                account=self.name, amazon_order_id=order_id, error=str(exc))
                    self._paused.add(SEND_BATCHES)
                    check.paused = str(exc)
                    check.hold(action)
                    continue
            not_sent = self._refunded_meanwhile(action, fact, check.amazon_refunded[order_id])
            if not_sent is None:
                passing.append(action)
                continue
            if self.store.withhold(action.id, not_sent.error, FAILED_REFUND, not_sent.result, retry=not_sent.retry):
                self.observer.acted(action.type, "failed" if not_sent.retry else "withheld")
                log.error("storefront refund not sent to Amazon", account=self.name, amazon_order_id=order_id,
                          action_id=action.id, error=not_sent.error, retry_on_resolve=not_sent.retry)
        return passing

    def _refunded_meanwhile(self, action: Action, fact: Mapping[str, Any],
                            refunded: Decimal | AmazonRefusal) -> _NotSent | None:
        """Why this storefront refund must not go to Amazon, `refunded` being what Amazon has refunded on the order now;
        None when it may. Amazon's total when the refund was read (`then`) may have grown since by ordersync's own
        refunds of the order that Amazon had not listed then and that may have reached Amazon by now (done, or in a
        feed: store.amazon_refunds_sent). Those counted:
        - of those decided before this one, the ones the poll found Amazon had not listed (their action ids in the
          event's refunds_on_their_way_ids; their sum is refunds_on_their_way_to_amazon); one a person rejected, or
          that failed, or that still waits for approval or a feed, explains nothing, and neither does any other
          earlier one (Amazon's total then has it). A decision read before the ids were recorded counts none;
        - those decided after it, all: Amazon listed none of them then, and one may have gone out first while this one
          waited for approval.
        Anything more is someone else's refund of the order (Seller Central, an A-to-z claim, a chargeback): the refund
        is withheld for good. Amazon's refunds unreadable now: not sent, to be checked again once resolved."""
        amount, order_id = fact.get("refund_amount"), action.amazon_order_id
        checked_at = _stamp(self.clock())
        to_do = (f"Check the order in Seller Central; refund there whatever of {amount} the buyer is still owed, then "
                 f"resolve this (resolving does not send it).")
        if isinstance(refunded, AmazonRefusal):
            return _NotSent(
                f"storefront_refund_not_rechecked: {amount} was refunded on order {order_id} in the storefront, but "
                f"Amazon's refunds of the order could not be read again before sending it: {refunded.error}. Not sent "
                f"to Amazon yet, so the buyer is not refunded twice. Resolve this to have it checked against Amazon "
                f"again and sent with the next feed (it is not sent if Amazon refunded the order meanwhile).",
                {"withheld": "amazon_refunds_unreadable", "amazon_error": refunded.error,
                 "amazon_refunded_then": fact.get("amazon_refunded_total"), "checked_at": checked_at}, retry=True)
        if fact.get("amazon_refunded_total") is None:
            return _NotSent(
                f"storefront_refund_not_rechecked: {amount} was refunded on order {order_id} in the storefront, but "
                f"its decision does not say what Amazon had refunded when it was read, so what Amazon refunded since "
                f"cannot be told. Not sent to Amazon, so the buyer is not refunded twice. {to_do}",
                {"withheld": "amazon_refunded_then_unknown", "amazon_refunded_now": money_text(refunded),
                 "checked_at": checked_at}, retry=False)
        then = Decimal(str(fact["amazon_refunded_total"]))
        unlisted = set(self.context.event_payload(action).get("refunds_on_their_way_ids") or ())
        counted = [(action_id, paid) for action_id, paid in self.store.amazon_refunds_sent(self.name, order_id or "")
                   if action_id in unlisted or action_id > action.id]
        ours = sum((paid for _, paid in counted), Decimal(0))
        if refunded <= then + ours:
            return None
        return _NotSent(
            f"storefront_refund_refunded_meanwhile: Amazon refunded {money_text(refunded - then)} on order {order_id} "
            f"since the storefront refund of {amount} was read, {money_text(refunded - then - ours)} more than "
            f"ordersync's own refunds explain (Amazon showed {money_text(then)} refunded then and shows "
            f"{money_text(refunded)} now; ordersync's own refunds that may have reached Amazon since: "
            f"{money_text(ours)}): not sent to Amazon, so the buyer is not refunded twice. {to_do}",
            {"withheld": "refunded_meanwhile", "amazon_refunded_then": money_text(then), "amazon_refunded_now": money_text(refunded),
             "ordersync_refunds_counted": money_text(ours), "ordersync_refund_actions_counted": [i for i, _ in counted],
             "checked_at": checked_at}, retry=False)

    def _submit(self, batch_id: int, kind: str, messages: dict[int, Action]) -> bool:
        """Send one batch's feed; True once Amazon has it (recorded as submitted). A message that does not
        validate is refused on its own and the others still go; a feed Amazon refuses as built (400) is
        refused as a whole. AdapterError means not sent: the caller tries again later."""
        sending = messages
        try:
            built = self._valid_feed(batch_id, kind, messages)
            if built is None:
                return False
            feed, sending = built
            feed_id = self.amazon.submit_feed(feed)
        except InvalidInput as exc:
            # Amazon refused the messages that went out; those the schema refused keep the schema's reason.
            self._refused(batch_id, sending, exc)
            return False
        self.store.record_batch_submitted(batch_id, feed_id)
        log.info("feed sent", account=self.name, batch=batch_id, feed_id=feed_id, messages=len(sending))
        return True

    def _valid_feed(self, batch_id: int, kind: str,
                    messages: dict[int, Action]) -> tuple[BuiltFeed, dict[int, Action]] | None:
        """The feed of the messages that validate against the XSD, and those messages (None when none does).
        Each message that does not is refused with the schema's complaint, so one bad order never holds back
        the others."""
        try:
            return (self._feed(kind, messages), messages) if messages else None
        except InvalidInput:
            pass
        valid: dict[int, Action] = {}
        refused: dict[int, InvalidInput] = {}
        for number, action in messages.items():
            try:
                self._feed(kind, {number: action})
                valid[number] = action
            except InvalidInput as exc:
                refused[number] = exc
        if not refused:
            return self._feed(kind, messages)  # only the whole fails: InvalidInput, all refused by the caller
        for number, exc in refused.items():
            self._refused(batch_id, {number: messages[number]}, exc)
        return (self._feed(kind, valid), valid) if valid else None

    def _refused(self, batch_id: int, messages: dict[int, Action], exc: InvalidInput) -> None:
        """A feed refused as built (it does not validate, or Amazon answered 400) is refused again on every
        try: its actions go to the error view with the reason instead of being retried for ever."""
        log.error("feed refused", account=self.name, batch=batch_id, messages=sorted(messages), error=str(exc))
        self.store.record_batch_results(batch_id, {number: (False, "FeedRefused", str(exc)) for number in messages})

    def _settle_batches_in_doubt(self) -> None:
        """A batch created but never marked submitted: this process retries it; one left by a process
        that died may have reached Amazon, so it is never sent again: its actions go to the error view."""
        for batch in self.store.batches_in_flight(self.name):
            if batch.status != BATCH_CREATED:
                continue
            messages = self._unreconciled(batch.id)
            if batch.id in self._retry_here:
                try:
                    self._submit(batch.id, batch.feed_type, messages)
                except AdapterError as exc:
                    log.warning("feed not sent", account=self.name, batch=batch.id, error=str(exc))
                    self._paused.add(SEND_BATCHES)
                    continue
                self._retry_here.discard(batch.id)
                continue
            self.store.record_batch_results(batch.id, {
                number: (False, "SubmissionInDoubt", "ordersync stopped while sending this feed; Amazon may or may not "
                                                     "have it. Check the order in Seller Central, then resolve it here.")
                for number in messages})

    def _unreconciled(self, batch_id: int) -> dict[int, Action]:
        """The batch's messages still waiting for their result (not refused before sending, not reconciled)."""
        return {number: action for number, action in self.store.batch(batch_id).messages.items()
                if action.status == QUEUED_FOR_BATCH}

    def check_feeds(self) -> int:
        finished = 0
        for batch in self.store.batches_in_flight(self.name):
            if batch.status != BATCH_SUBMITTED or not batch.feed_id:
                continue
            messages = list(self._unreconciled(batch.id))
            try:
                outcome = self.amazon.feed_outcome(batch.feed_id, messages, timeout=0)
            except TransientError:
                continue  # still processing
            results = {number: (result.success, result.error_code or result.result_code, result.description)
                       for number, result in outcome.results.items() if number in messages}
            for number in messages:
                results.setdefault(number, (True, None, None))
            for number, (ok, _, _) in results.items():
                self.observer.acted("cancel_on_amazon" if batch.feed_type == CANCEL_FEED else "refund_on_amazon",
                                    "done" if ok else "failed")
            finished += self.store.record_batch_results(batch.id, results)
        return finished



@dataclass
class Dispatcher:
    """Claims due actions of every account and carries each out through its executor."""

    store: Store
    contexts: dict[str, AccountContext]
    worker: str
    observer: Observer = field(default_factory=Observer)
    clock: Callable[[], datetime] = utcnow
    # A claimed action whose lease ran out may be taken by another process (a second replica). A run
    # stops starting actions once less than LEASE_MARGIN of the lease is left (one action, e.g. a Shopify
    # cancel job's wait, must still fit); the rest are claimed again by the next run, here or elsewhere.
    lease_seconds: float = 60.0
    claim: int = 50

    LEASE_MARGIN = 0.5

    def run(self, limit: int | None = None) -> int:
        actions = self.store.claim_actions(self.worker, limit or self.claim, now=self.clock(), lease_seconds=self.lease_seconds)
        for done, action in enumerate(actions):
            if self._lease_left(action) < self.lease_seconds * self.LEASE_MARGIN:
                log.info("dispatch run stopped before its claims run out", worker=self.worker, carried_out=done,
                         left_for_the_next_run=len(actions) - done)
                break
            self._carry_out(action)
        return len(actions)

    def _lease_left(self, action: Action) -> float:
        if action.claimed_until is None:  # not claimed by a lease (never so for what claim_actions returns)
            return self.lease_seconds
        return (action.claimed_until - self.clock()).total_seconds()

    def _carry_out(self, action: Action) -> None:
        context = self.contexts.get(action.account)
        executor = EXECUTORS.get(action.type)
        if context is None or executor is None:
            self.store.fail_action(action.id, f"no account {action.account!r} or executor for {action.type}", worker=self.worker)
            return
        try:
            result = executor(context, action)
        except TransientError as exc:
            if action.attempts >= MAX_ATTEMPTS:
                self._fail(action, f"gave up after {action.attempts} attempts: {exc}")
                return
            self.store.retry_action(action.id, str(exc), self.clock() + backoff(action.attempts), worker=self.worker)
            self.observer.acted(action.type, "retry")
            return
        except AdapterError as exc:
            # Cancelled already (by a person in Shopify): the storefront is as Amazon's side expects it.
            self._fail(action, str(exc), stops_amazon_side=exc.code != "ALREADY_CANCELLED")
            return
        self.store.complete_action(action.id, dict(result), worker=self.worker)
        self.observer.acted(action.type, "done")

    def _fail(self, action: Action, error: str, *, stops_amazon_side: bool = True) -> None:
        self.store.fail_action(action.id, error, ACTIONS[action.type].failure_status, worker=self.worker,
                               stops_amazon_side=stops_amazon_side)
        self.observer.acted(action.type, "failed")
        log.error("action failed", account=action.account, amazon_order_id=action.amazon_order_id,
                  action=action.type, error=error)

    def release(self) -> int:
        return self.store.release_claims(self.worker)

