"""Run a local stand-in for Amazon's Selling Partner API (LWA, Orders v2026/v0, Reports, Feeds, Finances v0
refund, guarantee claim and chargeback events).

A real HTTP server on loopback that speaks SP-API's paths, parameters, bodies and error shapes. It holds
orders in memory (seeded from a YAML/JSON scenario), enforces per-operation token buckets (429 past
them), applies cancellation and adjustment feeds to its orders and writes processing reports, posts a
Finances refund event for each refund (by feed or in "Seller Central"), generates order and returns
reports, produces ORDER_CHANGE notifications as JSON, injects faults on request, and journals every
request it served. See docs/amazon.md."""
from __future__ import annotations

import argparse
import gzip
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote

import yaml
from lxml import etree

from adapters.amazon.feeds import _schema
from adapters.amazon.http import DOCUMENTED_RATE_LIMITS
from adapters.ratelimit import TokenBucket
from adapters.sim import amazon_state as state
from adapters.sim.server import Request, Response, SimServer

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
DEFAULT_SCENARIO = SCENARIO_DIR / "amazon_example.yaml"
DEFAULT_XSD_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "spapi" / "xsd"

REPORT_TYPES = {
    "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL",
    "GET_XML_RETURNS_DATA_BY_RETURN_DATE",
    "GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE",
    "GET_MERCHANT_LISTINGS_ALL_DATA",
    "FEE_DISCOUNTS_REPORT",
    "GET_AFN_INVENTORY_DATA",
}
FEED_TYPES = {"POST_ORDER_ACKNOWLEDGEMENT_DATA", "POST_PAYMENT_ADJUSTMENT_DATA", "POST_PRODUCT_DATA"}
# Finances v0 only answers for times more than two minutes before the request (PostedBefore's rule).
FINANCES_SETTLING = timedelta(minutes=2)
# "If PostedAfter and PostedBefore are more than 180 days apart, the response is empty."
FINANCES_MAX_WINDOW = timedelta(days=180)
# A stored event's `kind` (absent: "refund") -> the FinancialEvents list it is answered in, and what an error
# calls one when it asks for more than is left.
REFUND_EVENT_LISTS = {"refund": "RefundEventList", "guarantee_claim": "GuaranteeClaimEventList",
                      "chargeback": "ChargebackEventList"}
REFUND_NOUNS = {"refund": "refund", "guarantee_claim": "guarantee claim", "chargeback": "chargeback"}
# listFinancialEventsByOrderId's model answers "Bad order ID provided." (400) for an id like "BAD-ORDER"; the
# stand-in does so for an unknown id not in Amazon's 3-7-7 form, and an empty list for an unknown 3-7-7 one.
ORDER_ID_FORM = re.compile(r"\d{3}-\d{7}-\d{7}")
SCHEDULE_PERIODS = {"PT5M", "PT15M", "PT30M", "PT1H", "PT2H", "PT4H", "PT8H", "PT12H", "P1D", "P2D", "P3D",
                    "PT84H", "P7D", "P14D", "P15D", "P18D", "P30D", "P1M"}


def _errors(code: str, message: str, details: str | None = None) -> dict[str, Any]:
    error = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"errors": [error]}


def bad_request(message: str, details: str | None = None) -> Response:
    return Response(400, _errors("InvalidInput", message, details))


def not_found(what: str) -> Response:
    return Response(404, _errors("NotFound", f"{what} not found"))


def load_scenario(path: str | Path) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"scenario {path}: cannot parse it: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"scenario {path}: the top level must be a mapping")
    return data


class AmazonSim(SimServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, scenario: dict[str, Any] | None = None,
                 *, sandbox_models: Path | None = None, xsd_dir: Path | None = None) -> None:
        super().__init__(host, port)
        scenario = scenario or {}
        account = scenario.get("account") or {}
        self.seller_id = account.get("seller_id", "A1EXAMPLESELLER")
        self.marketplace_id = account.get("marketplace_id", "ATVPDKIKX0DER")
        self.client_id = account.get("client_id", "amzn1.application-oa2-client.sim")
        self.client_secret = account.get("client_secret", "sim-client-secret")
        self.refresh_tokens = set(account.get("refresh_tokens") or ["Atzr|sim-refresh-token"])
        self.revoked_refresh_tokens = set(account.get("revoked_refresh_tokens") or [])
        self.token_ttl = float(account.get("token_ttl", 3600))
        # Scenario keys (besides account, currency, rate_limits, orders, returns; docs/amazon.md lists them):
        # settle_seconds: how far in the past the echoed high-water mark is (Amazon's is about 120; default 0).
        # max_page_size: the most orders or refund events per page, whatever the client asks (default 100).
        # polls_to_finish: getFeed/getReport answer IN_PROGRESS this many times before they finish (default 1).
        # order_report_buyer_columns: whether the order report has the buyer-cancel columns (default true).
        # refund_posting_lag_seconds: refund events are stamped as posted this long before the refund was made
        #   (default 0), so tests and the demo can read them at once despite Finances' two-minute rule.
        self.settle_seconds = float(scenario.get("settle_seconds", 0))
        self.max_page_size = int(scenario.get("max_page_size", 100))
        self.polls_to_finish = int(scenario.get("polls_to_finish", 1))
        self.order_report_buyer_columns = bool(scenario.get("order_report_buyer_columns", True))
        self.refund_posting_lag = float(scenario.get("refund_posting_lag_seconds", 0))
        self.access_tokens: dict[str, float] = {}
        self._limits = dict(DOCUMENTED_RATE_LIMITS)
        for operation, value in (scenario.get("rate_limits") or {}).items():
            rate, burst = (value["rate"], value["burst"]) if isinstance(value, dict) else value
            self._limits[operation] = (float(rate), float(burst))
        self._buckets: dict[str, TokenBucket] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        defaults = {"marketplace_id": self.marketplace_id, "currency": scenario.get("currency", "USD")}
        self._defaults = defaults
        for index, raw in enumerate(scenario.get("orders") or []):
            order = state.normalise_order(raw, defaults, f"scenario order #{index + 1}")
            self.orders[order["id"]] = order
        self.returns: list[dict[str, Any]] = [self._normalise_return(r, i) for i, r in enumerate(scenario.get("returns") or [])]
        self.notifications: list[dict[str, Any]] = []
        # Finances refund events: {order_id, marketplace (the order's marketplace id), posted (ISO text), currency,
        # kind ("guarantee_claim" or "chargeback"; absent for a refund), items: [{item_id, sku, adjustment_id,
        # quantity, principal, charges: {ChargeType: amount}?, reversal: true?}]}, amounts given back to the
        # buyer, positive; on an item of a chargeback reversal, the amounts that came back to the seller.
        self.refund_events: list[dict[str, Any]] = []
        self.documents: dict[str, dict[str, Any]] = {}  # feed inputs, feed results and report documents
        self.feeds: dict[str, dict[str, Any]] = {}
        self.reports: dict[str, dict[str, Any]] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.pagination: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(100001)
        self._last_mark = state.now_utc() - timedelta(days=3650)
        self._xsd = None
        xsd_path = (xsd_dir or DEFAULT_XSD_DIR) / "amzn-envelope.xsd"
        if xsd_path.is_file():
            self._xsd = _schema(str(xsd_path))  # loading the XSD set takes about a second; share it
        self._sandbox = _SandboxExamples(sandbox_models) if sandbox_models else None
        self._add_routes()

    # -- plumbing ---------------------------------------------------------------------------------------
    def _add_routes(self) -> None:
        self.add_route("POST", "/auth/o2/token", self._lwa_token)
        op = self._operation
        op("GET", "/orders/2026-01-01/orders", "searchOrders", self._search_orders)
        op("GET", "/orders/2026-01-01/orders/{orderId}", "getOrder2026", self._get_order_2026)
        op("GET", "/orders/v0/orders", "getOrders", self._get_orders_v0)
        op("GET", "/orders/v0/orders/{orderId}", "getOrder", self._get_order_v0)
        op("GET", "/orders/v0/orders/{orderId}/orderItems", "getOrderItems", self._get_order_items_v0)
        op("POST", "/feeds/2021-06-30/documents", "createFeedDocument", self._create_feed_document)
        op("GET", "/feeds/2021-06-30/documents/{feedDocumentId}", "getFeedDocument", self._get_feed_document)
        op("POST", "/feeds/2021-06-30/feeds", "createFeed", self._create_feed)
        op("GET", "/feeds/2021-06-30/feeds", "getFeeds", self._get_feeds)
        op("GET", "/feeds/2021-06-30/feeds/{feedId}", "getFeed", self._get_feed)
        op("DELETE", "/feeds/2021-06-30/feeds/{feedId}", "cancelFeed", self._cancel_feed)
        op("POST", "/reports/2021-06-30/reports", "createReport", self._create_report)
        op("GET", "/reports/2021-06-30/reports", "getReports", self._get_reports)
        op("GET", "/reports/2021-06-30/reports/{reportId}", "getReport", self._get_report)
        op("DELETE", "/reports/2021-06-30/reports/{reportId}", "cancelReport", self._cancel_report)
        op("GET", "/reports/2021-06-30/documents/{reportDocumentId}", "getReportDocument", self._get_report_document)
        op("GET", "/reports/2021-06-30/schedules", "getReportSchedules", self._get_schedules)
        op("POST", "/reports/2021-06-30/schedules", "createReportSchedule", self._create_schedule)
        op("GET", "/reports/2021-06-30/schedules/{reportScheduleId}", "getReportSchedule", self._get_schedule)
        op("DELETE", "/reports/2021-06-30/schedules/{reportScheduleId}", "cancelReportSchedule", self._cancel_schedule)
        op("GET", "/finances/v0/financialEvents", "listFinancialEvents", self._list_financial_events)
        op("GET", "/finances/v0/orders/{orderId}/financialEvents", "listFinancialEventsByOrderId",
           self._list_financial_events_by_order)
        # Presigned-URL stand-ins: no SP-API token, like S3.
        self.add_route("PUT", "/_docs/{documentId}", self._upload_document)
        self.add_route("GET", "/_docs/{documentId}", self._download_document)
        self.add_route("GET", "/_sim/orders", lambda r: Response(body=self.snapshot_orders()))
        self.add_route("POST", "/_sim/orders", self._sim_orders)
        self.add_route("POST", "/_sim/returns", self._sim_returns)
        self.add_route("GET", "/_sim/refunds", lambda r: Response(body=self.snapshot_refund_events()))
        self.add_route("POST", "/_sim/refunds", self._sim_refunds)
        self.add_route("GET", "/_sim/notifications", lambda r: Response(body=self.notifications_since(r)))
        self.add_route("POST", "/_sim/expire-tokens", self._expire_tokens)
        self.add_route("GET", "/_sim/rate-limits", lambda r: Response(body={k: {"rate": v[0], "burst": v[1]} for k, v in self._limits.items()}))

    def _operation(self, method: str, pattern: str, operation: str, handler: Callable[[Request], Response]) -> None:
        def serve(request: Request) -> Response:
            request.operation = operation  # type: ignore[attr-defined]
            if not self._token_ok(request):
                return Response(403, _errors("Unauthorized", "Access to requested resource is denied.",
                                             "The access token you provided is revoked, malformed or invalid."))
            bucket = self.bucket(operation)
            if not bucket.try_take():
                return Response(429, _errors("QuotaExceeded", "You exceeded your quota for the requested resource."))
            if self._sandbox is not None:
                replay = self._sandbox.match(operation, request)
                if replay is not None:
                    response = replay
                else:
                    response = handler(request)
            else:
                response = handler(request)
            if response.status < 300 or response.status in (400, 404):
                response.headers.setdefault("x-amzn-RateLimit-Limit", f"{bucket.rate:g}")
            return response

        self.add_route(method, pattern, serve)

    def bucket(self, operation: str) -> TokenBucket:
        with self.lock:
            if operation not in self._buckets:
                rate, burst = self._limits.get(operation, (1.0, 5.0))
                self._buckets[operation] = TokenBucket(rate, burst)
            return self._buckets[operation]

    def dispatch(self, request: Request) -> Response:
        started = time.time()
        response = super().dispatch(request)
        response.headers.setdefault("x-amzn-RequestId", str(uuid.uuid4()))
        self._journal(request, response, started)
        return response

    def fault_for(self, request: Request) -> str | None:
        fault = super().fault_for(request)
        request.fault = fault  # type: ignore[attr-defined]
        if fault == "drop":
            # Dropped before an answer, so dispatch never sees it; the journal still must.
            self._journal(request, Response(0), time.time(), fault="drop")
        return fault

    def error_response(self, request: Request) -> Response:
        response = super().error_response(request)
        response.body = _errors("InternalFailure", "We encountered an internal error. Please try again.")
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        self._journal(request, response, time.time(), fault="error")
        return response

    def _journal(self, request: Request, response: Response, started: float, fault: str | None = None) -> None:
        body: Any = None
        if request.body and request.path != "/auth/o2/token":
            try:
                body = json.loads(request.body)
            except ValueError:
                body = {"bytes": len(request.body), "content_type": request.header("content-type")}
        elif request.path == "/auth/o2/token":
            # Never journal secrets: only which grant was asked for.
            form = parse_qs(request.body.decode("utf-8", "replace"))
            body = {"grant_type": (form.get("grant_type") or [None])[0]}
        self.journal.record(
            received=started, method=request.method, path=request.path, query=request.query,
            operation=getattr(request, "operation", None), status=response.status, body=body,
            content_type=request.header("content-type"), fault=fault or getattr(request, "fault", None),
        )

    def _stamp(self) -> str:
        """A last-update time strictly after every high-water mark already handed out."""
        with self.lock:
            moment = max(state.now_utc(), self._last_mark + timedelta(milliseconds=1))
            self._last_mark = moment
            return state.iso(moment)

    def _next_id(self) -> str:
        return str(next(self._ids))

    # -- LWA ----------------------------------------------------------------------------------------------
    def _lwa_token(self, request: Request) -> Response:
        content_type = request.header("content-type", "") or ""
        if "json" in content_type:
            form = request.json() or {}
        else:
            form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type")
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return Response(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
        if grant == "refresh_token":
            token = form.get("refresh_token")
            if token in self.revoked_refresh_tokens or token not in self.refresh_tokens:
                return Response(400, {"error": "invalid_grant",
                                      "error_description": "The request has an invalid grant parameter : refresh_token"})
        elif grant == "client_credentials":
            if not form.get("scope"):
                return Response(400, {"error": "invalid_scope", "error_description": "scope is required"})
        else:
            return Response(400, {"error": "unsupported_grant_type" if grant else "invalid_request",
                                  "error_description": f"grant_type {grant!r} is not supported"})
        access = "Atza|sim-" + secrets.token_urlsafe(24)
        with self.lock:
            self.access_tokens[access] = time.monotonic() + self.token_ttl
        return Response(200, {"access_token": access, "token_type": "bearer", "expires_in": int(self.token_ttl)})

    def _token_ok(self, request: Request) -> bool:
        token = request.header("x-amz-access-token")
        with self.lock:
            expires = self.access_tokens.get(token or "")
        return expires is not None and time.monotonic() < expires

    def _expire_tokens(self, request: Request) -> Response:
        with self.lock:
            count = len(self.access_tokens)
            self.access_tokens.clear()
        return Response(body={"expired": count})

    # -- orders -------------------------------------------------------------------------------------------
    def _time_arg(self, request: Request, name: str) -> Any:
        value = request.arg(name)
        if value is None:
            return None
        try:
            return state.parse_time(value)
        except ValueError:
            raise _Bad(f"{name} {value!r} is not an ISO 8601 date-time") from None

    def _list_arg(self, request: Request, name: str) -> list[str]:
        value = request.arg(name)
        return [part for part in value.split(",") if part] if value else []

    def _select(self, request: Request, created: tuple[str, str], updated: tuple[str, str]) -> tuple[list[dict[str, Any]], str, str]:
        created_after = self._time_arg(request, created[0])
        updated_after = self._time_arg(request, updated[0])
        if (created_after is None) == (updated_after is None):
            raise _Bad(f"exactly one of {created[0]} and {updated[0]} is required")
        now = state.now_utc() - timedelta(seconds=self.settle_seconds)
        before_name = created[1] if created_after else updated[1]
        before = self._time_arg(request, before_name) or now
        if before > now + timedelta(seconds=1):
            raise _Bad(f"{before_name} must be at least {self.settle_seconds:g} seconds before now")
        after = created_after or updated_after
        field = "purchased" if created_after else "updated"
        with self.lock:
            self._last_mark = max(self._last_mark, before)
            chosen = [o for o in self.orders.values() if after < state.parse_time(o[field]) <= before]
        chosen.sort(key=lambda o: (o[field], o["id"]))
        return chosen, ("createdBefore" if created_after else "lastUpdatedBefore"), state.iso(before)

    def _paginate(self, request: Request, token_name: str, fixed: dict[str, Any], select: Callable[[], tuple[list[Any], str, str]], size: int) -> tuple[list[Any], str | None, str, str]:
        token = request.arg(token_name)
        if token:
            with self.lock:
                saved = self.pagination.get(token)
            if saved is None:
                raise _Bad(f"{token_name} is not valid (unknown or expired)")
            if saved["fixed"] != fixed:
                raise _Bad(f"the filters changed between pages; repeat the same parameters with {token_name}")
            items, mark_name, mark, offset = saved["items"], saved["mark_name"], saved["mark"], saved["offset"]
        else:
            items, mark_name, mark = select()
            offset = 0
        page = items[offset:offset + size]
        next_token = None
        if offset + size < len(items):
            next_token = secrets.token_urlsafe(18)
            with self.lock:
                self.pagination[next_token] = {"fixed": fixed, "items": items, "mark_name": mark_name,
                                               "mark": mark, "offset": offset + size}
        return page, next_token, mark_name, mark

    def _page_size(self, request: Request, name: str) -> int:
        raw = request.arg(name)
        if raw is None:
            return min(100, self.max_page_size)
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise _Bad(f"{name} must be a whole number from 1 to 100")
        return min(int(raw), self.max_page_size)

    def _search_orders(self, request: Request) -> Response:
        try:
            included = set(self._list_arg(request, "includedData"))
            size = self._page_size(request, "maxResultsPerPage")
            marketplaces = self._list_arg(request, "marketplaceIds")
            if len(marketplaces) > 50:
                raise _Bad("marketplaceIds takes at most 50 values")
            fixed = {k: v for k, v in request.query.items() if k not in ("paginationToken", "maxResultsPerPage", "includedData")}
            statuses = {state.FROM_V2026.get(s, s) for s in self._list_arg(request, "fulfillmentStatuses")}

            def select() -> tuple[list[Any], str, str]:
                chosen, mark_name, mark = self._select(request, ("createdAfter", "createdBefore"), ("lastUpdatedAfter", "lastUpdatedBefore"))
                chosen = [o for o in chosen if (not marketplaces or o["marketplace"] in marketplaces)
                          and (not statuses or o["status"] in statuses)]
                return [o["id"] for o in chosen], mark_name, mark

            ids, token, mark_name, mark = self._paginate(request, "paginationToken", fixed, select, size)
        except _Bad as exc:
            return bad_request("Invalid Input", str(exc))
        with self.lock:
            orders = [state.render_v2026(self.orders[i], included) for i in ids if i in self.orders]
        body: dict[str, Any] = {"orders": orders, mark_name: mark}
        if token:
            body["pagination"] = {"nextToken": token}
        return Response(200, body)

    def _get_order_2026(self, request: Request) -> Response:
        included = set(self._list_arg(request, "includedData"))
        with self.lock:
            order = self.orders.get(request.params["orderId"])
            if order is None:
                return not_found(f"order {request.params['orderId']}")
            return Response(200, {"order": state.render_v2026(order, included)})

    def _get_orders_v0(self, request: Request) -> Response:
        try:
            if not request.arg("NextToken") and not self._list_arg(request, "MarketplaceIds"):
                raise _Bad("MarketplaceIds is required")
            size = self._page_size(request, "MaxResultsPerPage")
            marketplaces = self._list_arg(request, "MarketplaceIds")
            statuses = set(self._list_arg(request, "OrderStatuses"))
            fixed = {k: v for k, v in request.query.items() if k not in ("NextToken", "MaxResultsPerPage")}
            if request.arg("NextToken"):
                fixed = None  # v0: NextToken alone is enough; filters sent with it are ignored
                with self.lock:
                    saved = self.pagination.get(request.arg("NextToken") or "")
                if saved is not None:
                    fixed = saved["fixed"]

            def select() -> tuple[list[Any], str, str]:
                chosen, mark_name, mark = self._select(request, ("CreatedAfter", "CreatedBefore"), ("LastUpdatedAfter", "LastUpdatedBefore"))
                chosen = [o for o in chosen if (not marketplaces or o["marketplace"] in marketplaces)
                          and (not statuses or o["status"] in statuses)]
                name = "CreatedBefore" if mark_name == "createdBefore" else "LastUpdatedBefore"
                return [o["id"] for o in chosen], name, mark

            ids, token, mark_name, mark = self._paginate(request, "NextToken", fixed, select, size)
        except _Bad as exc:
            return bad_request("Invalid Input", str(exc))
        with self.lock:
            orders = [state.render_v0(self.orders[i]) for i in ids if i in self.orders]
        payload: dict[str, Any] = {"Orders": orders, mark_name: mark}
        if token:
            payload["NextToken"] = token
        return Response(200, {"payload": payload})

    def _get_order_v0(self, request: Request) -> Response:
        with self.lock:
            order = self.orders.get(request.params["orderId"])
            if order is None:
                return not_found(f"order {request.params['orderId']}")
            return Response(200, {"payload": state.render_v0(order)})

    def _get_order_items_v0(self, request: Request) -> Response:
        with self.lock:
            order = self.orders.get(request.params["orderId"])
            if order is None:
                return not_found(f"order {request.params['orderId']}")
            items = state.render_v0_items(order)
        size = self.max_page_size
        start = 0
        token = request.arg("NextToken")
        if token:
            if not token.startswith(order["id"] + ":") or not token.split(":")[-1].isdigit():
                return bad_request("Invalid Input", "NextToken is not valid")
            start = int(token.split(":")[-1])
        payload: dict[str, Any] = {"AmazonOrderId": order["id"], "OrderItems": items[start:start + size]}
        if start + size < len(items):
            payload["NextToken"] = f"{order['id']}:{start + size}"
        return Response(200, {"payload": payload})

    # -- finances --------------------------------------------------------------------------------------------
    def _posted_window(self, request: Request) -> tuple[datetime | None, datetime]:
        """PostedAfter and PostedBefore, checked by the model's rules; _Bad names the one that breaks them."""
        latest = state.now_utc() - FINANCES_SETTLING
        after = self._time_arg(request, "PostedAfter")
        before = self._time_arg(request, "PostedBefore")
        if before is not None and after is None:
            raise _Bad("PostedAfter is required when PostedBefore is given")
        if before is None:
            before = latest
        elif before >= latest:
            raise _Bad(f"PostedBefore {request.arg('PostedBefore')} must be more than two minutes before the time "
                       f"of the request ({state.iso(latest + FINANCES_SETTLING)})")
        if after is not None and after >= before:
            bound = "PostedBefore" if request.arg("PostedBefore") else "two minutes before the time of the request"
            raise _Bad(f"PostedAfter {request.arg('PostedAfter')} must be earlier than {bound}")
        return after, before

    def _list_financial_events(self, request: Request) -> Response:
        """listFinancialEvents with refund, guarantee claim and chargeback events only (the other lists are
        left out), oldest first."""
        try:
            size = self._page_size(request, "MaxResultsPerPage")
            after, before = self._posted_window(request)
            fixed = {k: v for k, v in request.query.items() if k != "NextToken"}

            def select() -> tuple[list[Any], str, str]:
                if after is not None and before - after > FINANCES_MAX_WINDOW:
                    return [], "", ""
                with self.lock:
                    chosen = [e for e in self.refund_events
                              if (after is None or after <= state.parse_time(e["posted"])) and state.parse_time(e["posted"]) < before]
                chosen.sort(key=lambda e: (state.parse_time(e["posted"]), e["order_id"]))
                return chosen, "", ""

            events, token, _, _ = self._paginate(request, "NextToken", fixed, select, size)
        except _Bad as exc:
            return bad_request("Invalid Input", str(exc))
        return self._refund_events_page(events, token)

    def _list_financial_events_by_order(self, request: Request) -> Response:
        """listFinancialEventsByOrderId with refund, guarantee claim and chargeback events only: every one of
        the order, whenever it was posted, oldest first; an unknown order has none (a malformed id is a 400, as
        the model's example)."""
        order_id = unquote(request.params["orderId"])
        try:
            size = self._page_size(request, "MaxResultsPerPage")
            with self.lock:
                known = order_id in self.orders
            if not known and not ORDER_ID_FORM.fullmatch(order_id):
                return bad_request("Bad order ID provided.", f"{order_id!r} is not an Amazon order id (3-7-7 digits)")
            # The order is part of the arguments a NextToken must be repeated with.
            fixed = {"orderId": order_id, **{k: v for k, v in request.query.items() if k != "NextToken"}}

            def select() -> tuple[list[Any], str, str]:
                with self.lock:
                    chosen = [e for e in self.refund_events if e["order_id"] == order_id]
                chosen.sort(key=lambda e: state.parse_time(e["posted"]))
                return chosen, "", ""

            events, token, _, _ = self._paginate(request, "NextToken", fixed, select, size)
        except _Bad as exc:
            return bad_request("Invalid Input", str(exc))
        return self._refund_events_page(events, token)

    @staticmethod
    def _refund_events_page(events: list[dict[str, Any]], token: str | None) -> Response:
        """One page of events, each in the list of its kind. All three lists are always there, empty or not, as
        Amazon sends its lists; the other lists of FinancialEvents are left out, as the stand-in has none."""
        lists: dict[str, list[dict[str, Any]]] = {name: [] for name in REFUND_EVENT_LISTS.values()}
        for event in events:
            lists[REFUND_EVENT_LISTS[event.get("kind", "refund")]].append(state.render_refund_event(event))
        payload: dict[str, Any] = {"FinancialEvents": lists}
        if token:
            payload["NextToken"] = token
        return Response(200, {"payload": payload})

    def post_refund_event(self, order: dict[str, Any], items: list[dict[str, Any]], posted: datetime | None = None,
                          kind: str = "refund") -> dict[str, Any]:
        """Record the Finances event of one refund, guarantee claim or chargeback (`kind`, a key of
        REFUND_EVENT_LISTS; items from `state.refund_item`). Stamped `refund_posting_lag` seconds in the past
        unless `posted` says when. Only a claim or chargeback records its kind: a stored refund looks as it
        always did."""
        if kind not in REFUND_EVENT_LISTS:
            raise ValueError(f"kind {kind!r} is not one of {', '.join(REFUND_EVENT_LISTS)}")
        moment = posted or state.now_utc() - timedelta(seconds=self.refund_posting_lag)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)  # the stand-in's times are UTC, not the host's zone
        event = {"order_id": order["id"], "marketplace": order["marketplace"], "posted": state.iso(moment),
                 "currency": order["currency"], "items": items}
        if kind != "refund":
            event["kind"] = kind
        with self.lock:
            self.refund_events.append(event)
        return event

    def refund_in_seller_central(self, order_id: str, amounts: dict[str, Any] | None = None, *,
                                 posted: datetime | None = None) -> dict[str, Any]:
        """Refund as a person in Seller Central would, with no feed: `amounts` of principal by order item id
        (default: every line's full price still refundable). Like a feed adjustment it may not give an item
        more than was paid less what was already refunded (ValueError), it counts against later feed
        adjustments, and it is posted as a refund event (at `posted`, or now less the posting lag)."""
        return self._give_back(order_id, amounts, posted, "refund", "SellerCentral")

    def guarantee_claim(self, order_id: str, amounts: dict[str, Any] | None = None, *,
                        posted: datetime | None = None) -> dict[str, Any]:
        """An A-to-z Guarantee claim Amazon granted the buyer: as `refund_in_seller_central` (same amounts,
        same limit, counted against later refunds and feed adjustments with reason GuaranteeClaim), but
        posted in GuaranteeClaimEventList."""
        return self._give_back(order_id, amounts, posted, "guarantee_claim", "GuaranteeClaim")

    def chargeback(self, order_id: str, amounts: dict[str, Any] | None = None, *,
                   posted: datetime | None = None) -> dict[str, Any]:
        """A chargeback by the buyer's bank: as `refund_in_seller_central` (same amounts, same limit, counted
        against later refunds and feed adjustments with reason Chargeback), but posted in ChargebackEventList."""
        return self._give_back(order_id, amounts, posted, "chargeback", "Chargeback")

    def chargeback_reversal(self, order_id: str, amounts: dict[str, Any], *,
                            posted: datetime | None = None) -> dict[str, Any]:
        """Money of earlier chargebacks comes back to the seller (the bank decided for the seller): `amounts`
        of principal by order item id, each at most what is still charged back on the item (ValueError). The
        principal no longer counts as refunded, so it may be refunded again, and the event is posted in
        ChargebackEventList with its items marked `reversal`: its charges positive, the buyer's side negative."""
        with self.lock:
            order, lines = self._order_and_lines(order_id)
            wanted = self._requested_amounts(order, lines, amounts)
            for item_id, amount in wanted.items():
                left = self._charged_back(order, item_id)
                if amount > left:
                    raise ValueError(f"order {order_id}, item {item_id}: a chargeback reversal of {amount} exceeds "
                                     f"the {left} charged back")
            return self._post_given_back(order, lines, wanted, posted, "chargeback", "ChargebackReversal", reversal=True)

    def _give_back(self, order_id: str, amounts: dict[str, Any] | None, posted: datetime | None, kind: str,
                   reason: str) -> dict[str, Any]:
        """Money an item's buyer gets back outside our feeds (a refund, claim or chargeback, `kind`), counted
        in the order's refunds under `reason` so that no later one gives back more than was paid."""
        with self.lock:
            order, lines = self._order_and_lines(order_id)
            if amounts is None:
                wanted = {item_id: state.refundable(order, line) for item_id, line in lines.items()}
                wanted = {item_id: amount for item_id, amount in wanted.items() if amount > 0}
                if not wanted:
                    raise ValueError(f"order {order_id}: nothing is left to refund")
            else:
                wanted = self._seller_central_amounts(order, lines, amounts, REFUND_NOUNS[kind])
            return self._post_given_back(order, lines, wanted, posted, kind, reason)

    def _post_given_back(self, order: dict[str, Any], lines: dict[str, dict[str, Any]], wanted: dict[str, Decimal],
                         posted: datetime | None, kind: str, reason: str, reversal: bool = False) -> dict[str, Any]:
        """Count `wanted` in the order's refunds (a reversal un-counts it) and post its event; the caller holds
        the lock and has checked every amount, so nothing is recorded for a refused request."""
        items = []
        for item_id, amount in wanted.items():
            principal = -amount if reversal else amount
            order["refunds"].append({"item_id": item_id, "principal": float(principal), "reason": reason})
            item = state.refund_item(lines[item_id], self._next_id(), amount, state.units_paid_for(lines[item_id], amount))
            if reversal:
                item["reversal"] = True
            items.append(item)
        event = self.post_refund_event(order, items, posted, kind)
        return json.loads(json.dumps(event))

    def _order_and_lines(self, order_id: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        order = self.orders.get(order_id)
        if order is None:
            raise ValueError(f"order {order_id} is not known")
        return order, {line["item_id"]: line for line in order["lines"]}

    @staticmethod
    def _charged_back(order: dict[str, Any], item_id: str) -> Decimal:
        """Principal charged back on an item and not reversed since."""
        return sum((Decimal(str(r["principal"])) for r in order["refunds"]
                    if r["item_id"] == item_id and r["reason"] in ("Chargeback", "ChargebackReversal")), Decimal(0)).quantize(state.CENT)

    @staticmethod
    def _requested_amounts(order: dict[str, Any], lines: dict[str, dict[str, Any]], amounts: Any) -> dict[str, Decimal]:
        """`amounts` by order item id, each an item of the order and more than zero; ValueError names the one that is not."""
        if not isinstance(amounts, dict) or not amounts:
            raise ValueError(f"order {order['id']}: amounts must map order item ids to amounts")
        wanted = {}
        for item_id, value in amounts.items():
            where = f"order {order['id']}, item {item_id}"
            if item_id not in lines:
                raise ValueError(f"{where}: the order has no such item (it has {', '.join(lines)})")
            amount = state.amount_of(value, f"{where}: amount")
            if amount <= 0:
                raise ValueError(f"{where}: amount {value!r} must be more than zero")
            wanted[str(item_id)] = amount
        return wanted

    @classmethod
    def _seller_central_amounts(cls, order: dict[str, Any], lines: dict[str, dict[str, Any]], amounts: Any,
                                noun: str = "refund") -> dict[str, Decimal]:
        """`_requested_amounts`, none more than is still refundable on its item; ValueError calls it a `noun`."""
        wanted = cls._requested_amounts(order, lines, amounts)
        for item_id, amount in wanted.items():
            left = state.refundable(order, lines[item_id])
            if amount > left:
                raise ValueError(f"order {order['id']}, item {item_id}: a {noun} of {amount} exceeds the {left} still "
                                 f"refundable (paid {Decimal(lines[item_id]['unit_price']) * lines[item_id]['quantity']:.2f}, "
                                 f"refunded {state.refunded(order, item_id)})")
        return wanted

    # -- documents (presigned URLs) ------------------------------------------------------------------------
    def _document_url(self, document_id: str) -> str:
        return f"{self.base_url}/_docs/{document_id}"

    def _upload_document(self, request: Request) -> Response:
        with self.lock:
            document = self.documents.get(request.params["documentId"])
            if document is None or document["kind"] != "feed-input":
                return Response(403, "<Error><Code>AccessDenied</Code></Error>", content_type="application/xml")
            if request.header("content-type") != document["content_type"]:
                # Like S3: the URL is signed for one Content-Type.
                return Response(403, "<Error><Code>SignatureDoesNotMatch</Code><Message>Content-Type differs from "
                                     "the one the upload URL was created for</Message></Error>", content_type="application/xml")
            document["content"] = request.body
        return Response(200, b"")

    def _download_document(self, request: Request) -> Response:
        with self.lock:
            document = self.documents.get(request.params["documentId"])
        if document is None or document.get("content") is None:
            return Response(404, "<Error><Code>NoSuchKey</Code></Error>", content_type="application/xml")
        return Response(200, document["content"], content_type=document.get("content_type") or "application/octet-stream")

    def _new_document(self, kind: str, content: bytes | None, content_type: str, compress: bool = False) -> str:
        document_id = f"amzn1.tortuga.4.na.{uuid.uuid4()}"
        document: dict[str, Any] = {"kind": kind, "content_type": content_type, "content": content}
        if compress and content is not None:
            document["content"] = gzip.compress(content)
            document["compression"] = "GZIP"
        with self.lock:
            self.documents[document_id] = document
        return document_id

    def _document_answer(self, request: Request, id_name: str, kinds: tuple[str, ...]) -> Response:
        document_id = request.params[id_name]
        with self.lock:
            document = self.documents.get(document_id)
        if document is None or document["kind"] not in kinds:
            return bad_request("Invalid input", f"{id_name} {document_id} is not a known document")
        body = {id_name: document_id, "url": self._document_url(document_id)}
        if document.get("compression"):
            body["compressionAlgorithm"] = document["compression"]
        return Response(200, body)

    # -- feeds ------------------------------------------------------------------------------------------
    def _create_feed_document(self, request: Request) -> Response:
        body = _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("contentType"), str) or not body["contentType"]:
            return bad_request("Invalid input", "contentType is required")
        document_id = self._new_document("feed-input", None, body["contentType"])
        return Response(201, {"feedDocumentId": document_id, "url": self._document_url(document_id)})

    def _get_feed_document(self, request: Request) -> Response:
        return self._document_answer(request, "feedDocumentId", ("feed-result", "feed-input"))

    def _create_feed(self, request: Request) -> Response:
        body = _json(request)
        if not isinstance(body, dict):
            return bad_request("Invalid input", "the body must be a JSON object")
        problems = []
        if body.get("feedType") not in FEED_TYPES:
            problems.append(f"feedType {body.get('feedType')!r} is not supported")
        marketplaces = body.get("marketplaceIds")
        if not isinstance(marketplaces, list) or not 1 <= len(marketplaces) <= 25:
            problems.append("marketplaceIds must list 1 to 25 marketplaces")
        with self.lock:
            document = self.documents.get(str(body.get("inputFeedDocumentId")))
        if document is None or document["kind"] != "feed-input":
            problems.append(f"inputFeedDocumentId {body.get('inputFeedDocumentId')!r} is not a feed document")
        elif document.get("content") is None:
            problems.append("the feed document was created but nothing was uploaded to its URL")
        if problems:
            return bad_request("Invalid input", "; ".join(problems))
        feed_id = self._next_id()
        with self.lock:
            self.feeds[feed_id] = {"feedId": feed_id, "feedType": body["feedType"], "marketplaceIds": marketplaces,
                                   "createdTime": state.iso(state.now_utc()), "processingStatus": "IN_QUEUE",
                                   "input": body["inputFeedDocumentId"], "polls_left": self.polls_to_finish}
        return Response(202, {"feedId": feed_id})

    @staticmethod
    def _public_feed(feed: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in feed.items() if k not in ("input", "polls_left")}

    def _get_feed(self, request: Request) -> Response:
        with self.lock:
            feed = self.feeds.get(request.params["feedId"])
            if feed is None:
                return bad_request("Invalid input", f"feedId {request.params['feedId']} is not known")
            self._advance_feed(feed)
            return Response(200, self._public_feed(feed))

    def _get_feeds(self, request: Request) -> Response:
        return self._listing(request, "feedTypes", "feeds", self.feeds, "feedType", self._public_feed)

    def _cancel_feed(self, request: Request) -> Response:
        with self.lock:
            feed = self.feeds.get(request.params["feedId"])
            if feed is None:
                return bad_request("Invalid input", f"feedId {request.params['feedId']} is not known")
            if feed["processingStatus"] != "IN_QUEUE":
                return bad_request("Invalid input", "only a feed that is IN_QUEUE can be cancelled")
            feed["processingStatus"] = "CANCELLED"
        return Response(200, None)

    def _advance_feed(self, feed: dict[str, Any]) -> None:
        if feed["processingStatus"] in ("DONE", "CANCELLED", "FATAL"):
            return
        if feed["polls_left"] > 0:
            feed["polls_left"] -= 1
            feed["processingStatus"] = "IN_PROGRESS"
            feed.setdefault("processingStartTime", state.iso(state.now_utc()))
            return
        content = self.documents[feed["input"]]["content"] or b""
        status, report = _FeedProcessor(self).process(feed["feedType"], content)
        feed["processingStatus"] = status
        feed.setdefault("processingStartTime", state.iso(state.now_utc()))
        feed["processingEndTime"] = state.iso(state.now_utc())
        feed["resultFeedDocumentId"] = self._new_document("feed-result", report, "text/xml; charset=UTF-8", compress=True)

    # -- reports ----------------------------------------------------------------------------------------
    def _create_report(self, request: Request) -> Response:
        body = _json(request)
        if not isinstance(body, dict):
            return bad_request("Invalid input", "the body must be a JSON object")
        if body.get("reportType") not in REPORT_TYPES:
            return bad_request("Invalid input", f"reportType {body.get('reportType')!r} is not supported")
        marketplaces = body.get("marketplaceIds")
        if not isinstance(marketplaces, list) or not 1 <= len(marketplaces) <= 25:
            return bad_request("Invalid input", "marketplaceIds must list 1 to 25 marketplaces")
        try:
            start = state.parse_time(body["dataStartTime"]) if body.get("dataStartTime") else None
            end = state.parse_time(body["dataEndTime"]) if body.get("dataEndTime") else None
        except ValueError:
            return bad_request("Invalid input", "dataStartTime/dataEndTime must be ISO 8601 date-times")
        report_id = self._next_id()
        now = state.iso(state.now_utc())
        with self.lock:
            self.reports[report_id] = {"reportId": report_id, "reportType": body["reportType"], "marketplaceIds": marketplaces,
                                       "dataStartTime": state.iso(start) if start else now, "dataEndTime": state.iso(end) if end else now,
                                       "createdTime": now, "processingStatus": "IN_QUEUE", "polls_left": self.polls_to_finish}
        return Response(202, {"reportId": report_id})

    @staticmethod
    def _public_report(report: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in report.items() if k != "polls_left"}

    def _get_report(self, request: Request) -> Response:
        with self.lock:
            report = self.reports.get(request.params["reportId"])
            if report is None:
                return bad_request("Invalid input", f"reportId {request.params['reportId']} is not known")
            self._advance_report(report)
            return Response(200, self._public_report(report))

    def _get_reports(self, request: Request) -> Response:
        return self._listing(request, "reportTypes", "reports", self.reports, "reportType", self._public_report)

    def _listing(self, request: Request, types_name: str, key: str, jobs: dict[str, dict[str, Any]], type_field: str,
                 public: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
        """getFeeds / getReports: filter by type (required unless paging) and processing status."""
        types = self._list_arg(request, types_name)
        statuses = self._list_arg(request, "processingStatuses")
        if not types and not request.arg("nextToken"):
            return bad_request("Invalid input", f"{types_name} is required")
        if any(s not in ("IN_QUEUE", "IN_PROGRESS", "DONE", "CANCELLED", "FATAL") for s in statuses):
            return bad_request("Invalid input", "processingStatuses has an unknown value")
        with self.lock:
            found = [public(job) for job in jobs.values()
                     if job[type_field] in types and (not statuses or job["processingStatus"] in statuses)]
        return Response(200, {key: found})

    def _cancel_report(self, request: Request) -> Response:
        with self.lock:
            report = self.reports.get(request.params.get("reportId", ""))
            if report is None or report["processingStatus"] != "IN_QUEUE":
                return bad_request("Invalid input", "only a known report that is IN_QUEUE can be cancelled")
            report["processingStatus"] = "CANCELLED"
        return Response(200, None)

    def _get_report_document(self, request: Request) -> Response:
        return self._document_answer(request, "reportDocumentId", ("report",))

    def _advance_report(self, report: dict[str, Any]) -> None:
        if report["processingStatus"] in ("DONE", "CANCELLED", "FATAL"):
            return
        if report["polls_left"] > 0:
            report["polls_left"] -= 1
            report["processingStatus"] = "IN_PROGRESS"
            report["processingStartTime"] = state.iso(state.now_utc())
            return
        start, end = state.parse_time(report["dataStartTime"]), state.parse_time(report["dataEndTime"])
        kind = report["reportType"]
        content: str | None
        compress = False
        if kind == "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL":
            chosen = sorted((o for o in self.orders.values() if start <= state.parse_time(o["updated"]) <= end),
                            key=lambda o: o["updated"])
            content = state.order_report_tsv(chosen, self.order_report_buyer_columns)
        elif kind in ("GET_XML_RETURNS_DATA_BY_RETURN_DATE", "GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE"):
            chosen = [r for r in self.returns if start <= state.parse_time(r["requested"]) <= end]
            # Amazon answers CANCELLED when a report has no data.
            content = None if not chosen else (state.returns_xml(chosen) if "XML" in kind else state.returns_tsv(chosen))
            compress = True
        else:
            content = ""
        report["processingEndTime"] = state.iso(state.now_utc())
        if content is None:
            report["processingStatus"] = "CANCELLED"
            return
        report["processingStatus"] = "DONE"
        report["reportDocumentId"] = self._new_document("report", content.encode("utf-8"),
                                                        "text/plain; charset=UTF-8", compress=compress)

    def _get_schedules(self, request: Request) -> Response:
        types = self._list_arg(request, "reportTypes")
        if not types or any(t not in REPORT_TYPES and not t.startswith("GET_") for t in types):
            return bad_request("Invalid input", "reportTypes has an unknown value")
        with self.lock:
            return Response(200, {"reportSchedules": [s for s in self.schedules.values() if s["reportType"] in types]})

    def _create_schedule(self, request: Request) -> Response:
        body = _json(request)
        if not isinstance(body, dict) or body.get("reportType") not in REPORT_TYPES or body.get("period") not in SCHEDULE_PERIODS \
                or not isinstance(body.get("marketplaceIds"), list) or not body["marketplaceIds"]:
            return bad_request("Invalid input", "reportType, period and marketplaceIds are required and must be known values")
        schedule_id = self._next_id()
        with self.lock:
            for key, existing in list(self.schedules.items()):
                if existing["reportType"] == body["reportType"] and existing["marketplaceIds"] == body["marketplaceIds"]:
                    del self.schedules[key]  # a new schedule replaces one with the same type and marketplaces
            self.schedules[schedule_id] = {"reportScheduleId": schedule_id, "reportType": body["reportType"],
                                           "marketplaceIds": body["marketplaceIds"], "period": body["period"]}
        return Response(201, {"reportScheduleId": schedule_id})

    def _get_schedule(self, request: Request) -> Response:
        with self.lock:
            schedule = self.schedules.get(request.params["reportScheduleId"])
        if schedule is None:
            return bad_request("Invalid input", "reportScheduleId is not known")
        return Response(200, schedule)

    def _cancel_schedule(self, request: Request) -> Response:
        with self.lock:
            if self.schedules.pop(request.params.get("reportScheduleId", ""), None) is None:
                return bad_request("Invalid input", "reportScheduleId is not known")
        return Response(200, None)

    # -- /_sim -------------------------------------------------------------------------------------------
    def snapshot_orders(self) -> list[dict[str, Any]]:
        with self.lock:
            return json.loads(json.dumps(list(self.orders.values())))

    def notifications_since(self, request: Request) -> list[dict[str, Any]]:
        after = int(request.arg("after", "0") or 0)
        with self.lock:
            return self.notifications[after:]

    def upsert_orders(self, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add or change orders as if Amazon did it (a buyer asks to cancel, Amazon ships, …)."""
        results = []
        with self.lock:
            prepared = []
            for index, change in enumerate(changes):
                existing = self.orders.get(str(change.get("id"))) if isinstance(change, dict) else None
                order = state.normalise_order(change, self._defaults, f"order change #{index + 1}", existing)
                prepared.append((existing, change, order))
            for existing, change, order in prepared:
                order["updated"] = self._stamp()
                self.orders[order["id"]] = order
                asked = bool(change.get("buyer_cancel")) or any(l.get("buyer_cancel") for l in change.get("lines") or [])
                kind = "BuyerRequestedChange" if asked else "OrderStatusChange"
                reason = "Buyer Requested Cancel" if asked else ("Order created" if existing is None else "Order updated")
                self.notifications.append(state.order_change_notification(order, self.seller_id, kind, reason))
                results.append(order)
        return json.loads(json.dumps(results))

    def _sim_orders(self, request: Request) -> Response:
        body = _json(request)
        changes = body.get("orders") if isinstance(body, dict) and "orders" in body else [body] if isinstance(body, dict) else body
        if not isinstance(changes, list):
            return Response(400, {"error": "send an order object, a list of them, or {\"orders\": [...]}"})
        try:
            return Response(200, {"orders": self.upsert_orders(changes)})
        except (ValueError, TypeError, AttributeError) as exc:
            return Response(400, {"error": str(exc)})

    def _normalise_return(self, raw: dict[str, Any], index: int) -> dict[str, Any]:
        where = f"return #{index + 1}"
        if not isinstance(raw, dict) or not raw.get("rma_id") or not raw.get("order_id"):
            raise ValueError(f"{where}: fields rma_id and order_id are required")
        items = raw.get("items") or []
        if not items:
            raise ValueError(f"{where} (RMA {raw['rma_id']}): at least one item is required")
        result = {"status": "Approved", "currency": "USD", "label_type": "AmazonPrePaidLabel",
                  "label_paid_by": "Customer", "a_to_z_claim": False, "is_prime": False, **raw}
        for key in ("requested", "order_date"):
            value = raw.get(key) or (state.now_utc() if key == "requested" else None)
            if value is not None:
                # YAML turns unquoted times into datetimes; the report wants ISO text either way.
                result[key] = state.iso(value) if not isinstance(value, str) else state.iso(state.parse_time(value))
        result["items"] = [{"resolution": "StandardRefund", "in_policy": True, "return_type": "C-Returns", **item} for item in items]
        return result

    def _sim_returns(self, request: Request) -> Response:
        body = _json(request)
        items = body.get("returns") if isinstance(body, dict) and "returns" in body else [body]
        try:
            with self.lock:
                added = [self._normalise_return(r, len(self.returns) + i) for i, r in enumerate(items)]
                self.returns.extend(added)
        except (ValueError, TypeError) as exc:
            return Response(400, {"error": str(exc)})
        return Response(200, {"returns": added})

    def snapshot_refund_events(self) -> list[dict[str, Any]]:
        with self.lock:
            return json.loads(json.dumps(self.refund_events))

    def _sim_refunds(self, request: Request) -> Response:
        """Money given back outside our feeds: {"order_id", "amounts": {order item id: amount}?, "posted": ISO?,
        "kind"?}, answered with {"refund": the stored event}. `kind` says which: "refund" (the default, a refund
        made in Seller Central: `refund_in_seller_central`), "guarantee_claim" (an A-to-z claim Amazon granted:
        `guarantee_claim`), "chargeback" (`chargeback`) or "chargeback_reversal" (money of a chargeback back to
        the seller, amounts required: `chargeback_reversal`), so a test or demo can file each over HTTP."""
        body = _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("order_id"), str):
            return Response(400, {"error": 'send {"order_id": "...", "amounts": {"order item id": amount} (optional), '
                                           '"posted": "ISO 8601 time" (optional), "kind": "refund" (optional: or '
                                           '"guarantee_claim", "chargeback", "chargeback_reversal")}'})
        actions = {"refund": self.refund_in_seller_central, "guarantee_claim": self.guarantee_claim,
                   "chargeback": self.chargeback, "chargeback_reversal": self.chargeback_reversal}
        kind = body.get("kind", "refund")
        if not isinstance(kind, str) or kind not in actions:
            return Response(400, {"error": f"kind {kind!r} is not one of {', '.join(actions)}"})
        posted = None
        if body.get("posted") is not None:
            try:
                posted = state.parse_time(body["posted"])
            except ValueError:
                return Response(400, {"error": f"posted {body['posted']!r} is not an ISO 8601 time"})
        try:
            event = actions[kind](body["order_id"], body.get("amounts"), posted=posted)
        except (ValueError, TypeError) as exc:
            return Response(400, {"error": str(exc)})
        return Response(200, {"refund": event})


_XSD_LOCK = threading.Lock()


class _Bad(Exception):
    pass


def _json(request: Request) -> Any:
    try:
        return request.json()
    except ValueError:
        return None


class _FeedProcessor:
    """Applies an order feed to the stand-in's orders and writes Amazon's processing report."""

    def __init__(self, sim: AmazonSim) -> None:
        self.sim = sim
        self.results: list[tuple[int, str, str, str, str | None]] = []

    def error(self, message_id: int, code: str, description: str, order_id: str | None = None) -> None:
        self.results.append((message_id, "Error", code, description, order_id))

    def process(self, feed_type: str, content: bytes) -> tuple[str, bytes]:
        try:
            root = etree.fromstring(content, etree.XMLParser(resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError as exc:
            self.error(0, "5001", f"XML Parsing Fatal Error: {exc}")
            return "DONE", self.report(0, 0, rejected=True)
        bad_messages: dict[int, str] = {}
        messages = root.findall("Message")
        with _XSD_LOCK:
            valid = self.sim._xsd is None or self.sim._xsd.validate(root)
            schema_errors = [] if valid else list(self.sim._xsd.error_log)
        if not valid:
            spans = [(m.sourceline or 0, m.findtext("MessageID")) for m in messages]
            for error in schema_errors:
                owner = next((mid for line, mid in reversed(spans) if line <= error.line), None)
                key = int(owner) if owner and owner.isdigit() else 0
                bad_messages.setdefault(key, f"XML Parsing Error at Line {error.line}: {error.message}")
            if 0 in bad_messages:
                self.error(0, "5000", bad_messages[0])
                return "DONE", self.report(len(messages), 0, rejected=True)
        expected = {"POST_ORDER_ACKNOWLEDGEMENT_DATA": "OrderAcknowledgement", "POST_PAYMENT_ADJUSTMENT_DATA": "OrderAdjustment"}
        if root.findtext("MessageType") != expected.get(feed_type):
            self.error(0, "5000", f"MessageType {root.findtext('MessageType')!r} does not belong in a {feed_type} feed")
            return "DONE", self.report(len(messages), 0, rejected=True)
        ok = 0
        for message in messages:
            raw_id = message.findtext("MessageID") or "0"
            message_id = int(raw_id) if raw_id.isdigit() else 0
            if message_id in bad_messages:
                self.error(message_id, "5000", bad_messages[message_id], message.findtext(".//AmazonOrderID"))
                continue
            with self.sim.lock:
                done = self.cancel(message_id, message.find("OrderAcknowledgement")) if feed_type == "POST_ORDER_ACKNOWLEDGEMENT_DATA" \
                    else self.adjust(message_id, message.find("OrderAdjustment"))
            ok += 1 if done else 0
        return "DONE", self.report(len(messages), ok)

    def _order(self, message_id: int, element: etree._Element) -> dict[str, Any] | None:
        order_id = element.findtext("AmazonOrderID")
        order = self.sim.orders.get(order_id or "")
        if order is None:
            self.error(message_id, "18028", f"The order ID {order_id} could not be found for this merchant.", order_id)
        return order

    def _changed(self, order: dict[str, Any], reason: str) -> None:
        order["status"] = state.derive_status(order)
        order["updated"] = self.sim._stamp()
        self.sim.notifications.append(state.order_change_notification(order, self.sim.seller_id, "OrderStatusChange", reason))

    def cancel(self, message_id: int, ack: etree._Element) -> bool:
        order = self._order(message_id, ack)
        if order is None:
            return False
        if ack.findtext("StatusCode") == "Success":
            return True
        lines = {line["item_id"]: line for line in order["lines"]}
        items = ack.findall("Item")
        targets = []
        for item in items or []:
            code = item.findtext("AmazonOrderItemCode")
            if code not in lines:
                self.error(message_id, "18029", f"Order item {code} is not part of order {order['id']}.", order["id"])
                return False
            targets.append((lines[code], item.findtext("CancelReason")))
        if not items:
            targets = [(line, None) for line in order["lines"]]
        if order["status"] == "Canceled":
            self.error(message_id, "18104", f"Order {order['id']} is already cancelled.", order["id"])
            return False
        if any(line["shipped"] for line, _ in targets) or order["status"] in ("Shipped", "InvoiceUnconfirmed"):
            self.error(message_id, "18100", f"Order {order['id']} has shipped items and cannot be cancelled.", order["id"])
            return False
        for line, reason in targets:
            line["cancelled"] = line["quantity"] - line["shipped"]
            line["cancelled_by"] = "MERCHANT"
            line["cancel_reason"] = reason or "GeneralAdjustment"
        self._changed(order, "Seller cancelled")
        return True

    def adjust(self, message_id: int, adjustment: etree._Element) -> bool:
        order = self._order(message_id, adjustment)
        if order is None:
            return False
        lines = {line["item_id"]: line for line in order["lines"]}
        planned = []
        for item in adjustment.findall("AdjustedItem"):
            code = item.findtext("AmazonOrderItemCode")
            line = lines.get(code or "")
            if line is None:
                self.error(message_id, "18029", f"Order item {code} is not part of order {order['id']}.", order["id"])
                return False
            principal = sum(float(c.findtext("Amount") or 0) for c in item.findall("ItemPriceAdjustments/Component")
                            if c.findtext("Type") == "Principal")
            components: dict[str, Decimal] = {}
            for component in item.findall("ItemPriceAdjustments/Component"):
                kind = component.findtext("Type")
                if not kind:
                    continue  # the XSD requires a Type; without the XSD loaded such a component is not money we can name
                components[kind] = components.get(kind, Decimal(0)) + state.amount_of(component.findtext("Amount") or 0,
                                                                                      f"item {code} {kind}")
            already = sum(r["principal"] for r in order["refunds"] if r["item_id"] == code)
            paid = float(line["unit_price"]) * line["quantity"]
            if already + principal > paid + 0.005:
                self.error(message_id, "18200", f"Refund of {principal:.2f} on item {code} exceeds the {paid - already:.2f} "
                                                f"still refundable.", order["id"])
                return False
            cancelled = int(item.findtext("QuantityCancelled") or 0)
            if cancelled > line["quantity"] - line["shipped"] - line["cancelled"]:
                self.error(message_id, "18201", f"QuantityCancelled {cancelled} on item {code} is more than the unshipped "
                                                f"quantity.", order["id"])
                return False
            counted = item.findtext("Quantity") or item.findtext("QuantityCancelled")
            planned.append((line, principal, cancelled, item.findtext("AdjustmentReason"), components, counted))
        refund_items, moved = [], False
        for line, principal, cancelled, reason, components, counted in planned:
            order["refunds"].append({"item_id": line["item_id"], "principal": principal, "reason": reason})
            if cancelled:
                line["cancelled"] += cancelled
                line["cancelled_by"] = "MERCHANT"
                line["cancel_reason"] = reason
            # Every other component (Tax, Shipping, …) is posted as money given back too; the stand-in does not
            # model the few (a restocking fee) that Amazon keeps from the buyer instead.
            money = components.pop("Principal", Decimal(0))
            moved = moved or bool(money) or any(components.values())
            units = int(counted) if counted and counted.isdigit() else state.units_paid_for(line, money)
            refund_items.append(state.refund_item(line, self.sim._next_id(), money, units, components))
        self._changed(order, "Seller adjusted the order")
        if moved:
            # One refund event per adjustment message, as Amazon posts it; a cancellation that moved no money posts none.
            self.sim.post_refund_event(order, refund_items)
        return True

    def report(self, processed: int, successful: int, rejected: bool = False) -> bytes:
        errors = sum(1 for r in self.results if r[1] == "Error")
        root = etree.Element("AmazonEnvelope")
        header = etree.SubElement(root, "Header")
        etree.SubElement(header, "DocumentVersion").text = "1.02"
        etree.SubElement(header, "MerchantIdentifier").text = self.sim.seller_id
        etree.SubElement(root, "MessageType").text = "ProcessingReport"
        message = etree.SubElement(root, "Message")
        etree.SubElement(message, "MessageID").text = "1"
        report = etree.SubElement(message, "ProcessingReport")
        etree.SubElement(report, "DocumentTransactionID").text = self.sim._next_id()
        etree.SubElement(report, "StatusCode").text = "Rejected" if rejected else "Complete"
        summary = etree.SubElement(report, "ProcessingSummary")
        for tag, value in (("MessagesProcessed", processed), ("MessagesSuccessful", successful),
                           ("MessagesWithError", errors), ("MessagesWithWarning", 0)):
            etree.SubElement(summary, tag).text = str(value)
        for message_id, kind, code, description, order_id in self.results:
            result = etree.SubElement(report, "Result")
            etree.SubElement(result, "MessageID").text = str(message_id)
            etree.SubElement(result, "ResultCode").text = kind
            etree.SubElement(result, "ResultMessageCode").text = code
            etree.SubElement(result, "ResultDescription").text = description
            if order_id:
                info = etree.SubElement(result, "AdditionalInfo")
                etree.SubElement(info, "AmazonOrderID").text = order_id
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


class _SandboxExamples:
    """Amazon's sandbox host: requests that match a model's x-amzn-api-sandbox static example literally get
    the stored answer. Used only when a models folder is given (contract tests, `--sandbox-models`)."""

    OPERATIONS = {("orders_2026-01-01.json", "getOrder"): "getOrder2026"}

    def __init__(self, models_dir: Path) -> None:
        self.examples: dict[str, list[tuple[dict[str, Any], int, Any]]] = {}
        for path in sorted(Path(models_dir).glob("*/*.json")):
            model = json.loads(path.read_text(encoding="utf-8"))
            for route, operations in model.get("paths", {}).items():
                for method, spec in operations.items():
                    if not isinstance(spec, dict) or "operationId" not in spec:
                        continue
                    name = self.OPERATIONS.get((path.name, spec["operationId"]), spec["operationId"])
                    for code, response in spec.get("responses", {}).items():
                        for example in response.get("x-amzn-api-sandbox", {}).get("static", []):
                            params = example.get("request", {}).get("parameters", {})
                            self.examples.setdefault(name, []).append((params, int(code), example.get("response")))
        for entries in self.examples.values():
            entries.sort(key=lambda entry: -len(entry[0]))

    @staticmethod
    def _same(expected: Any, actual: str | None) -> bool:
        if actual is None:
            return False
        if isinstance(expected, list):
            return [str(v) for v in expected] == actual.split(",")
        return str(expected) == actual

    def match(self, operation: str, request: Request) -> Response | None:
        body = None
        for params, code, response in self.examples.get(operation, []):
            ok = True
            for name, spec in params.items():
                value = spec.get("value")
                if name in request.params:
                    ok = self._same(value, request.params[name])
                elif name in ("body", "payload"):
                    if body is None:
                        body = _json(request)
                    ok = body == value
                else:
                    ok = self._same(value, request.arg(name))
                if not ok:
                    break
            if ok:
                return Response(code, response)
        return None


def create_server(host: str = "127.0.0.1", port: int = 0, scenario: str | Path | dict[str, Any] | None = None, *,
                  sandbox_models: Path | None = None, xsd_dir: Path | None = None) -> AmazonSim:
    """A stand-in, not yet started (use it as a context manager or call start())."""
    data = scenario if isinstance(scenario, dict) else load_scenario(scenario) if scenario else None
    try:
        return AmazonSim(host, port, data, sandbox_models=sandbox_models, xsd_dir=xsd_dir)
    except (ValueError, TypeError, AttributeError) as exc:
        # The scenario's own words ("scenario order #3 (order 113-…): field status …") plus which file.
        where = f"scenario {scenario}" if isinstance(scenario, (str, Path)) else "scenario"
        raise ValueError(f"{where}: {exc}") from None


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0 picks a free one)")
    parser.add_argument("--scenario", metavar="FILE", type=Path, default=DEFAULT_SCENARIO,
                        help=f"YAML/JSON scenario to seed orders and returns (default {DEFAULT_SCENARIO.name})")
    parser.add_argument("--sandbox-models", metavar="DIR", type=Path, default=None,
                        help="also answer the SP-API models' static sandbox examples (folder of *-api-model/*.json)")


def run_cli(args: argparse.Namespace) -> int:
    try:
        sim = create_server(args.host, args.port, args.scenario, sandbox_models=getattr(args, "sandbox_models", None))
    except (OSError, ValueError) as exc:
        print(f"ordersync sim amazon: {exc}", flush=True)
        return 2
    # Flushed: whoever started us (a test, a demo script) reads the URL from a pipe, where print is buffered.
    print(f"Amazon SP-API stand-in on {sim.base_url}  (LWA token URL {sim.base_url}/auth/o2/token)", flush=True)
    print(f"  {len(sim.orders)} orders, {len(sim.returns)} returns; journal: GET {sim.base_url}/_sim/journal; Ctrl-C stops",
          flush=True)
    return sim.serve_until_stopped()


def main(argv: list[str] | None = None) -> int:
    """`python -m adapters.sim.amazon` works where the `ordersync` command is not installed."""
    parser = argparse.ArgumentParser(prog="python -m adapters.sim.amazon", description=(__doc__ or "").splitlines()[0])
    add_cli_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
