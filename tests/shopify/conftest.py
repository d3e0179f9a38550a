"""Fixtures for the Shopify adapter tests: a small shop in the stand-in (real HTTP on loopback) and a
client talking to it over real sockets. Buckets and job delays are small so the folder runs fast."""
from __future__ import annotations

import copy
import time
from contextlib import ExitStack
from typing import Any, Callable, Iterator

import httpx
import pytest

from adapters.shopify import ShopifyClient, ShopifyConfig
from adapters.sim.shopify import ShopifySim, create_server

TOKEN = "shpat_test_0123456789abcdef"

SHOP: dict[str, Any] = {
    "shop": {"currency": "USD", "access_token": TOKEN},
    "throttle": {"maximum_available": 2000, "restore_rate": 1000, "max_query_cost": 1000},
    "cancel_job_seconds": 0.05,
    "locations": [
        {"id": 1, "name": "Main warehouse"},
        {"id": 2, "name": "DropCo", "fulfillment_service": "dropco"},
        {"id": 3, "name": "Overflow"},
    ],
    "inventory": [
        {"sku": "MUG-RED", "item_id": 501, "levels": {1: 10, 3: 4}},
        {"sku": "MUG-BLUE", "item_id": 502, "levels": {1: 3}},
        {"sku": "LAMP", "item_id": 504, "levels": {2: 5}},
    ],
    "orders": [
        {"id": 1001, "name": "#1001", "source_identifier": "111-0000001-0000001", "tags": ["amazon-111-0000001-0000001"],
         "lines": [{"sku": "MUG-RED", "quantity": 3, "price": "12.50"}, {"sku": "MUG-BLUE", "quantity": 1, "price": "14.00"}]},
        {"id": 1002, "name": "#1002", "source_identifier": "111-0000002-0000002", "tags": ["amazon-111-0000002-0000002"],
         "lines": [{"sku": "MUG-RED", "quantity": 3, "price": "10.00", "fulfilled": 1}]},
        {"id": 1003, "name": "#1003", "source_identifier": "111-0000003-0000003", "tags": ["amazon-111-0000003-0000003"],
         "lines": [{"sku": "MUG-BLUE", "quantity": 2, "price": "14.00", "fulfilled": 2}]},
        {"id": 1004, "name": "#1004", "source_identifier": "111-0000004-0000004", "tags": ["amazon-111-0000004-0000004"],
         "cancelled": True, "cancel_reason": "CUSTOMER", "lines": [{"sku": "MUG-BLUE", "quantity": 1, "price": "14.00"}]},
        {"id": 1005, "name": "#1005", "source_identifier": "111-0000005-0000005", "tags": ["amazon-111-0000005-0000005"],
         "location": 2, "request_status": "UNSUBMITTED", "lines": [{"sku": "LAMP", "quantity": 1, "price": "45.00"}]},
        {"id": 1006, "name": "#1006", "source_identifier": "111-0000006-0000006", "tags": ["amazon-111-0000006-0000006"],
         "location": 2, "request_status": "ACCEPTED", "lines": [{"sku": "LAMP", "quantity": 1, "price": "45.00"}]},
        {"id": 1007, "name": "#1007", "source_identifier": "111-0000007-0000007", "tags": ["amazon-111-0000007-0000007"],
         "on_hold": "address check", "lines": [{"sku": "MUG-RED", "quantity": 1, "price": "12.50"}]},
        {"id": 1008, "name": "#1008", "source_identifier": None, "tags": ["amazon-111-0000008-0000008"], "paid": False,
         "lines": [{"sku": "MUG-RED", "quantity": 1, "price": "12.50"}]},
    ],
}


@pytest.fixture
def shop() -> dict[str, Any]:
    """A fresh copy of the test shop; a test may edit it before starting a stand-in with it."""
    return copy.deepcopy(SHOP)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    """Stand-ins and clients a test starts are stopped and closed when it ends, whatever happened."""
    with ExitStack() as opened:
        yield opened


@pytest.fixture
def start_sim(stack: ExitStack) -> Callable[..., ShopifySim]:
    def start(scenario: dict[str, Any] | None = None, **options: Any) -> ShopifySim:
        server = create_server(scenario=scenario if scenario is not None else copy.deepcopy(SHOP), **options)
        return stack.enter_context(server)

    return start


@pytest.fixture
def sim(start_sim: Callable[..., ShopifySim]) -> ShopifySim:
    return start_sim()


@pytest.fixture
def make_client(stack: ExitStack) -> Callable[..., ShopifyClient]:
    def make(server: ShopifySim, token: str = TOKEN, **config: Any) -> ShopifyClient:
        options = {"cancel_poll_interval": 0.02, "cancel_timeout": 5.0, **config}
        return stack.enter_context(ShopifyClient(ShopifyConfig(shop=server.base_url, **options), token))

    return make


@pytest.fixture
def client(sim: ShopifySim, make_client: Callable[..., ShopifyClient]) -> ShopifyClient:
    return make_client(sim)


class HandClock:
    """The stand-in's clock, moved only by the test: an orderCancel job finishes when the test says,
    not when a loaded machine happens to get round to it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def post(server: ShopifySim, document: str, variables: dict[str, Any], version: str = "2025-01") -> dict[str, Any]:
    """Send one GraphQL document as a raw HTTP client would; the answer must carry no top-level errors."""
    response = httpx.post(f"{server.base_url}/admin/api/{version}/graphql.json", json={"query": document, "variables": variables},
                          headers={"X-Shopify-Access-Token": TOKEN}, timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body, body.get("errors")
    return body


def sim_state(server: ShopifySim) -> dict[str, Any]:
    """The stand-in's whole shop, read over HTTP like a person debugging would."""
    return httpx.get(server.base_url + "/_sim/state", timeout=5).json()


def order_state(server: ShopifySim, number: int) -> dict[str, Any]:
    return next(o for o in sim_state(server)["orders"] if o["id"] == f"gid://shopify/Order/{number}")


def journal(server: ShopifySim, **match: Any) -> list[dict[str, Any]]:
    entries = httpx.get(server.base_url + "/_sim/journal", timeout=5).json()
    return [e for e in entries if all(e.get(k) == v for k, v in match.items())]


def level(server: ShopifySim, sku: str, location: int) -> int:
    return next(i["available"] for i in sim_state(server)["inventory"]
                if i["sku"] == sku and i["locationId"] == f"gid://shopify/Location/{location}")
