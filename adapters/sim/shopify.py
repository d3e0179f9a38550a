"""Shopify Admin GraphQL stand-in: orders, fulfilment orders, refunds and inventory on loopback.

A real HTTP server (`SimServer`) that answers `POST /admin/api/{version}/graphql.json` by executing the
GraphQL with graphql-core against the Admin API 2025-01 schema (the official introspection from
../shared/specs where present, else the pruned copy shipped beside this module; 2026-01 adds
@idempotent and orderCancel(refundMethod:)). It charges Shopify's calculated query cost against a
leaky bucket and answers THROTTLED past it, runs orderCancel as a background job, honours
@idempotent keys, injects faults, and journals every request and every change it applied.

Endpoints besides the API: GET /_sim/journal, GET|POST /_sim/faults (base server), GET /_sim/state
(the whole shop as JSON), GET|POST /_sim/bucket (read or set the bucket level, to provoke THROTTLED).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from graphql import (
    GraphQLError,
    GraphQLString,
    get_operation_ast,
    execute_sync,
    parse,
    validate,
    value_from_ast,
)
from graphql.error import GraphQLSyntaxError

from adapters.ratelimit import TokenBucket
from adapters.shopify.cost import requested_cost
from adapters.sim.server import Request, Response, SimServer
from adapters.sim.shopify_schema import load_schema, schema_source
from adapters.sim.shopify_store import ShopStore, gid, parse_gid, search_terms

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
DEFAULT_SCENARIO = SCENARIO_DIR / "shopify_demo.yaml"
DEFAULT_TOKEN = "shpat_sim_local_token"
# Shopify's real answer to a bad token (HTTP 401).
UNAUTHORIZED_BODY = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
# @idempotent is documented for these fields only (FACTS.md §6).
IDEMPOTENT_FIELDS = {"refundCreate", "inventoryAdjustQuantities"}


def _version_schema_name(version: str) -> str | None:
    """2025-01 answers every version before 2025-07 (as Shopify serves the oldest supported one);
    2026-01 answers 2026-01 and later; the versions between are not modelled."""
    if len(version) != 7 or version[4] != "-":
        return None
    if version < "2025-07":
        return "2025-01"
    if version >= "2026-01":
        return "2026-01"
    return None


class ShopifySim(SimServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, scenario: dict[str, Any] | None = None,
                 specs_dir: Path | str | None = None, schema_preference: str = "auto",
                 clock: Callable[[], float] = time.time) -> None:
        """`clock` drives orderCancel jobs and timestamps; a test passes one it can move by hand so
        that "the job has not finished yet" does not depend on how fast the machine is."""
        super().__init__(host, port)
        scenario = scenario or {}
        shop = scenario.get("shop") or {}
        self.access_token = str(shop.get("access_token", DEFAULT_TOKEN))
        throttle = scenario.get("throttle") or {}
        self.maximum_available = float(throttle.get("maximum_available", 2000))
        self.restore_rate = float(throttle.get("restore_rate", 100))
        self.max_query_cost = int(throttle.get("max_query_cost", 1000))
        # Shopify's real figures differ from the documented estimate the client uses; a factor
        # above 1 charges more than the client expects, as the real shop may.
        self.cost_factor = float(throttle.get("cost_factor", 1.0))
        if self.cost_factor <= 0:
            raise ValueError(f"throttle.cost_factor must be above 0, not {self.cost_factor}")
        self.bucket = TokenBucket(self.restore_rate, self.maximum_available)
        self.store = ShopStore(clock)
        self.store.on_change = lambda **entry: self.journal.record(**entry)
        self.store.load(scenario)
        self.specs_dir = specs_dir
        self.schema_preference = schema_preference
        self._idempotency: dict[str, tuple[str, Any]] = {}
        # Building the official schema takes a moment; do it now rather than inside a client's timeout.
        load_schema("2025-01", specs_dir, prefer=schema_preference)
        self.add_route("POST", "/admin/api/{version}/graphql.json", self._graphql)
        self.add_route("GET", "/_sim/state", self._state)
        self.add_route("GET", "/_sim/bucket", lambda request: Response(body=self._throttle_status()))
        self.add_route("POST", "/_sim/bucket", self._set_bucket)

    # -- /_sim endpoints --------------------------------------------------------------------------
    def _state(self, request: Request) -> Response:
        with self.lock:
            self.store.advance()
            body = self.store.state()
            body["bucket"] = self._throttle_status()
            body["schema"] = schema_source(self.specs_dir) if self.schema_preference == "auto" else self.schema_preference
            return Response(body=body)

    def _set_bucket(self, request: Request) -> Response:
        body = request.json() or {}
        try:
            level = float(body["currentlyAvailable"])
        except (KeyError, TypeError, ValueError):
            return Response(400, {"error": "send {\"currentlyAvailable\": <points>}"})
        with self.lock:
            self.set_bucket_level(level)
            return Response(body=self._throttle_status())

    def set_bucket_level(self, level: float) -> None:
        """Empty (or part-fill) the bucket, as another app sharing the shop's bucket would."""
        with self.lock:
            self.bucket = TokenBucket(self.restore_rate, self.maximum_available)
            self.bucket.try_take(max(0.0, self.maximum_available - level))

    def cancel_in_admin(self, order_gid: str, reason: str, *, staff_note: str | None = None, tags: Iterable[str] = (),
                        refund: bool = False) -> None:
        """What a person does in the Shopify admin, not through the API (it costs no points and carries no
        ordersync marker): tag the order, then cancel it, restocking, and with `refund` refunding what was paid
        and not yet refunded (one refund, note "Order canceled"); done at once. ValueError if Shopify would
        refuse (already cancelled, fulfilled items)."""
        with self.lock:
            order = self._order(order_gid)
            order.tags.extend(tag for tag in tags if tag not in order.tags)
            answer = self.store.order_cancel({"orderId": order_gid, "reason": reason, "restock": True, "refund": refund,
                                              "staffNote": staff_note})
            if answer["orderCancelUserErrors"]:
                raise ValueError(f"{order_gid}: {answer['orderCancelUserErrors'][0]['message']}")
            self.store.jobs[order.cancel_job].due_at = self.store.clock()  # type: ignore[index]
            self.store.advance()

    def refund_in_admin(self, order_gid: str, amount: Decimal | str | None = None, *, lines: Iterable[tuple[str, int]] = (),
                        restock_type: str = "NO_RESTOCK", note: str | None = None) -> str:
        """What a person does in the Shopify admin, not through the API (no points, no ordersync marker): refund
        an amount, or some lines by SKU and quantity (the amount then being those units' price, as Shopify
        suggests it), or both; recorded at once through the store's refundCreate, with a successful REFUND
        transaction against the sale when money moves. RETURN and CANCEL restock at the line's location. Returns
        the refund's gid. ValueError where Shopify would refuse: more money than was paid and not yet refunded,
        an unknown SKU, more units than refundable, nothing to refund, no sale to refund against."""
        with self.lock:
            order = self._order(order_gid)
            items = []
            for sku, quantity in lines:
                line = next((l for l in order.lines if l.sku == sku), None)
                if line is None:
                    raise ValueError(f"{order_gid} has no line with SKU {sku} (lines: {', '.join(l.sku for l in order.lines)})")
                item: dict[str, Any] = {"lineItemId": gid("LineItem", line.id), "quantity": quantity, "restockType": restock_type}
                location = next((fo.location_id for fo in order.fos for fo_line in fo.lines if fo_line.line_id == line.id), None)
                if location is not None and restock_type in ("RETURN", "CANCEL"):
                    item["locationId"] = gid("Location", location)
                items.append(item)
            if amount is None:
                if not items:
                    raise ValueError(f"{order_gid}: a refund needs an amount or lines")
                suggested = self.store.suggested_refund(order, {"refundLineItems": items})
                amount = suggested["amountSet"]["shopMoney"]["amount"]
            try:
                money = Decimal(str(amount))
            except InvalidOperation:
                raise ValueError(f"{order_gid}: refund amount {amount!r} is not a number") from None
            refund_input: dict[str, Any] = {"orderId": order_gid, "note": note, "notify": False}
            if items:
                refund_input["refundLineItems"] = items
            if money != 0:
                sale = next((t for t in order.txns if t.kind in ("SALE", "CAPTURE") and t.status == "SUCCESS"), None)
                if sale is None:
                    raise ValueError(f"{order_gid}: no successful sale to refund {money} against")
                refund_input["transactions"] = [{"orderId": order_gid, "parentId": gid("OrderTransaction", sale.id),
                                                 "gateway": sale.gateway, "kind": "REFUND", "amount": str(money)}]
            answer = self.store.refund_create({"input": refund_input}, self.store.order_view)
            if answer["userErrors"]:
                raise ValueError(f"{order_gid}: " + "; ".join(e["message"] for e in answer["userErrors"]))
            return answer["refund"]["id"]

    def fulfil_in_admin(self, order_gid: str) -> None:
        """A person (or the warehouse) fulfils every unit of the order: its fulfilment orders close."""
        with self.lock:
            for fo in self._order(order_gid).fos:
                for line in fo.lines:
                    line.remaining = 0
                fo.status = "CLOSED"

    def _order(self, order_gid: str) -> Any:
        order = self.store.orders.get(parse_gid(order_gid, "Order") or -1)
        if order is None:
            raise ValueError(f"no order {order_gid}")
        return order

    def _throttle_status(self, available: float | None = None) -> dict[str, float]:
        level = self.bucket.available() if available is None else available
        return {"maximumAvailable": self.maximum_available, "currentlyAvailable": round(level, 3),
                "restoreRate": self.restore_rate}

    def error_response(self, request: Request) -> Response:
        with self.lock:
            status = self._rng.choice(self.faults.error_statuses)
        return Response(status, {"errors": "Internal Server Error" if status >= 500 else "Error"})

    # -- the API ----------------------------------------------------------------------------------
    def _graphql(self, request: Request) -> Response:
        if request.header("x-shopify-access-token") != self.access_token:
            self.journal.record(kind="request", status=401, error="bad or missing access token")
            return Response(401, UNAUTHORIZED_BODY)
        version = request.params["version"]
        schema_name = _version_schema_name(version)
        if schema_name is None:
            return Response(404, {"errors": f"Not Found: API version {version} is not served by this stand-in (2025-01 forms before 2025-07, 2026-01 forms from 2026-01)"})
        headers = {"X-Shopify-API-Version": version}
        try:
            body = request.json()
            query, variables, operation_name = body["query"], body.get("variables") or {}, body.get("operationName")
            if not isinstance(query, str) or not isinstance(variables, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return Response(400, {"errors": "Bad Request: the body must be JSON with a string 'query' and an object 'variables'"}, headers)
        schema = load_schema(schema_name, self.specs_dir, prefer=self.schema_preference)
        try:
            document = parse(query)
        except GraphQLSyntaxError as exc:
            return Response(200, {"errors": [exc.formatted]}, headers)
        errors = validate(schema, document)
        if errors:
            return Response(200, {"errors": [e.formatted for e in errors]}, headers)
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return Response(200, {"errors": [{"message": "Unknown or ambiguous operation name"}]}, headers)
        cost = math.ceil(requested_cost(document, variables, operation.name.value if operation.name else None) * self.cost_factor)
        name = operation.name.value if operation.name else None
        with self.lock:
            self.store.advance()
            before = self.bucket.available()
            if cost > self.max_query_cost:
                self.journal.record(kind="request", operation=name, requested=cost, available=round(before, 3), error="MAX_COST_EXCEEDED")
                return Response(200, {"errors": [{"message": f"Query cost is {cost}, which exceeds the single query max cost limit ({self.max_query_cost}).",
                                                  "extensions": {"code": "MAX_COST_EXCEEDED", "cost": cost, "maxCost": self.max_query_cost}}],
                                      "extensions": self._cost(cost, None, before)}, headers)
            if before < cost:
                self.journal.record(kind="request", operation=name, requested=cost, available=round(before, 3), error="THROTTLED")
                return Response(200, {"errors": [{"message": "Throttled", "extensions": {
                    "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                    # the level the refusal was decided on, so the client's wait and the journal agree
                    "extensions": self._cost(cost, None, before)}, headers)
            result = execute_sync(schema, document, root_value=self._root(), variable_values=variables,
                                  operation_name=operation_name)
            payload: dict[str, Any] = {}
            if result.errors:
                payload["errors"] = [e.formatted for e in result.errors]
            payload["data"] = result.data
            actual = cost if operation.operation.value == "mutation" else min(cost, _objects_in(result.data))
            # The bucket had to hold the requested cost; only the actual cost is kept (Shopify refunds the rest).
            self.bucket.try_take(actual)
            payload["extensions"] = self._cost(cost, actual)
            self.journal.record(kind="request", operation=name, type=operation.operation.value, requested=cost, actual=actual,
                                available=round(before, 3), error=_first_code(result.errors))
        return Response(200, payload, headers)

    def _cost(self, requested: int, actual: int | None, available: float | None = None) -> dict[str, Any]:
        return {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": self._throttle_status(available)}}

    def _root(self) -> dict[str, Any]:
        store = self.store

        def order(info: Any, id: str) -> dict[str, Any] | None:
            found = store.orders.get(parse_gid(id, "Order") or -1)
            return store.order_view(found) if found else None

        def orders(info: Any, first: int | None = None, query: str | None = None, reverse: bool = False,
                   sortKey: str | None = None, after: str | None = None, **_: Any) -> dict[str, Any]:
            _check_first(first)
            by_update = sortKey == "UPDATED_AT"
            found = sorted(store.find_orders(query or ""), reverse=reverse,
                           key=lambda o: (int(store.updated_at(o)) if by_update else o.created_at, o.id))
            if after is not None:
                # A cursor names the order the last page ended with (opaque to clients, as Shopify's are).
                ended_with = parse_gid(_decoded_cursor(after), "Order")
                at = next((i for i, o in enumerate(found) if o.id == ended_with), None)
                if at is None:
                    raise GraphQLError("Invalid cursor for current pagination sort.", extensions={"code": "BAD_REQUEST"})
                found = found[at + 1:]
            page = found[:first]
            return {"nodes": [store.order_view(o) for o in page],
                    "pageInfo": {"hasNextPage": len(found) > first,
                                 "endCursor": _cursor_for(gid("Order", page[-1].id)) if page else None}}

        def job(info: Any, id: str) -> dict[str, Any] | None:
            found = store.jobs.get(parse_gid(id, "Job") or -1)
            return {"id": gid("Job", found.id), "done": found.done, "query": None} if found else None

        def with_sku(query: str | None) -> list[int]:
            """Item (and variant) ids, filtered by a sku: term when the search has one."""
            skus = [value for key, value in search_terms(query) if key == "sku"]
            return [i for i, s in sorted(store.items.items()) if not skus or s == skus[-1]]

        def inventory_items(info: Any, first: int | None = None, query: str | None = None, **_: Any) -> dict[str, Any]:
            return {"nodes": [store.inventory_item_view(i) for i in with_sku(query)[: first or 50]]}

        def product_variants(info: Any, first: int | None = None, query: str | None = None, **_: Any) -> dict[str, Any]:
            _check_first(first)
            ids = with_sku(query)
            return {"nodes": [store.variant_view(i) for i in ids[:first]], "pageInfo": {"hasNextPage": len(ids) > (first or 0)}}

        def mutation(field_name: str, apply: Any) -> Any:
            def resolve(info: Any, **args: Any) -> Any:
                key = _idempotency_key(info)
                if key is None:
                    return apply(args)
                if field_name not in IDEMPOTENT_FIELDS:
                    raise GraphQLError(f"@idempotent is not supported on {field_name}", extensions={"code": "BAD_REQUEST"})
                if not key.strip():
                    raise GraphQLError("The idempotency key cannot be empty or whitespace", extensions={"code": "BAD_REQUEST"})
                fingerprint = hashlib.sha256(json.dumps([field_name, args], sort_keys=True, default=str).encode()).hexdigest()
                seen = self._idempotency.get(key)
                if seen is not None:
                    if seen[0] != fingerprint:
                        raise GraphQLError("The idempotency key was already used with different parameters",
                                           extensions={"code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"})
                    self.journal.record(kind="replay", field=field_name, idempotency_key=key)
                    return seen[1]
                result = apply(args)
                if not result.get("userErrors"):
                    self._idempotency[key] = (fingerprint, result)
                return result

            return resolve

        view = store.order_view
        return {
            "order": order,
            "orders": orders,
            "job": job,
            "inventoryItems": inventory_items,
            "productVariants": product_variants,
            "orderCancel": mutation("orderCancel", store.order_cancel),
            "refundCreate": mutation("refundCreate", lambda a: store.refund_create(a, view)),
            "fulfillmentOrderHold": mutation("fulfillmentOrderHold", store.fo_hold),
            "fulfillmentOrderReleaseHold": mutation("fulfillmentOrderReleaseHold", store.fo_release_hold),
            "tagsAdd": mutation("tagsAdd", lambda a: store.tags_add(a, view)),
            "orderUpdate": mutation("orderUpdate", lambda a: store.order_update(a, view)),
            "inventoryAdjustQuantities": mutation("inventoryAdjustQuantities", store.inventory_adjust),
        }


def _cursor_for(order_gid: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"last_id": order_gid}).encode()).decode()


def _decoded_cursor(cursor: str) -> str:
    try:
        return str(json.loads(base64.urlsafe_b64decode(cursor.encode())).get("last_id"))
    except (ValueError, AttributeError):
        return ""


def _check_first(first: int | None) -> None:
    if first is None or not 1 <= first <= 250:
        raise GraphQLError("you must provide `first` between 1 and 250")


def _idempotency_key(info: Any) -> str | None:
    for directive in info.field_nodes[0].directives or ():
        if directive.name.value == "idempotent":
            for argument in directive.arguments:
                if argument.name.value == "key":
                    return value_from_ast(argument.value, GraphQLString, info.variable_values)
    return None


def _objects_in(data: Any) -> int:
    """The actual cost of a query: one point per object it returned (at least 1)."""
    def count(value: Any) -> int:
        if isinstance(value, dict):
            return 1 + sum(count(v) for v in value.values())
        if isinstance(value, list):
            return sum(count(v) for v in value)
        return 0

    return max(1, count(data) - 1)


def _first_code(errors: list[GraphQLError] | None) -> str | None:
    for error in errors or ():
        return (error.extensions or {}).get("code") or "ERROR"
    return None


# -- construction and CLI ---------------------------------------------------------------------------
def load_scenario(path: Path | str | None) -> dict[str, Any]:
    path = Path(path) if path else DEFAULT_SCENARIO
    with open(path, encoding="utf-8") as handle:
        try:
            data = yaml.safe_load(handle) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a scenario is a mapping with shop, throttle, locations, inventory, orders")
    return data


def create_server(host: str = "127.0.0.1", port: int = 0, scenario: dict[str, Any] | Path | str | None = None,
                  **options: Any) -> ShopifySim:
    """A stand-in (not yet started). `scenario` is a dict, a YAML path, or None for the shipped demo shop."""
    data = scenario if isinstance(scenario, dict) else load_scenario(scenario)
    return ShopifySim(host, port, data, **options)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8082, help="port to listen on (default 8082; 0 picks a free one)")
    parser.add_argument("--scenario", metavar="FILE", help=f"YAML shop to seed (default {DEFAULT_SCENARIO.name})")


def run_cli(args: argparse.Namespace) -> int:
    try:
        server = create_server(args.host, args.port, args.scenario)
    except (OSError, ValueError) as exc:
        print(f"ordersync sim shopify: {exc}")
        return 2
    print(f"Shopify stand-in on {server.base_url}/admin/api/2025-01/graphql.json "
          f"(token: the scenario's shop.access_token; state: {server.base_url}/_sim/state). Ctrl-C stops it.", flush=True)
    return server.serve_until_stopped()


def main(argv: list[str] | None = None) -> int:
    """`python -m adapters.sim.shopify` works where the `ordersync` command is not installed."""
    parser = argparse.ArgumentParser(prog="python -m adapters.sim.shopify", description=(__doc__ or "").splitlines()[0])
    add_cli_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
