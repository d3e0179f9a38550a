"""A running Amazon stand-in per test, clients wired to it, and the SP-API models for contract checks."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import jsonschema
import pytest
import yaml

from adapters.amazon import AmazonAccount, AmazonClient, RetryPolicy
from adapters.sim.amazon import DEFAULT_SCENARIO, AmazonSim, create_server

MARKETPLACE = "ATVPDKIKX0DER"
CLIENT_ID = "amzn1.application-oa2-client.demo"
CLIENT_SECRET = "demo-client-secret"
REFRESH_TOKEN = "Atzr|demo-refresh-token"
SINCE = "2026-01-01T00:00:00Z"

# Generous limits for tests that are not about rate limits; the documented ones (getOrders 1/min after
# a burst of 20) would make a feed round trip take minutes.
FAST_LIMITS = {op: (200.0, 50.0) for op in (
    "searchOrders", "getOrder2026", "getOrders", "getOrder", "getOrderItems", "createFeedDocument", "createFeed",
    "getFeed", "getFeeds", "cancelFeed", "getFeedDocument", "createReport", "getReport", "getReports",
    "cancelReport", "getReportDocument", "getReportSchedules", "createReportSchedule", "getReportSchedule",
    "cancelReportSchedule", "listFinancialEvents", "listFinancialEventsByOrderId")}


@pytest.fixture
def scenario() -> dict[str, Any]:
    data = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    data["rate_limits"] = {op: {"rate": r, "burst": b} for op, (r, b) in FAST_LIMITS.items()}
    return copy.deepcopy(data)


@pytest.fixture
def make_sim() -> Iterator[Callable[..., AmazonSim]]:
    started: list[AmazonSim] = []

    def make(scenario: dict[str, Any] | None = None, **kwargs: Any) -> AmazonSim:
        sim = create_server(scenario=scenario if scenario is not None else str(DEFAULT_SCENARIO), **kwargs)
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim: Callable[..., AmazonSim], scenario: dict[str, Any]) -> AmazonSim:
    return make_sim(scenario)


def account_for(sim: AmazonSim, **overrides: Any) -> AmazonAccount:
    settings: dict[str, Any] = dict(
        name="test-seller", endpoint=sim.base_url, token_url=sim.base_url + "/auth/o2/token",
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN,
        marketplace_ids=(MARKETPLACE,), merchant_id="A1EXAMPLESELLER", timeout=5.0,
        retry=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05),
        rate_limits=FAST_LIMITS, poll_interval=0.0,
    )
    settings.update(overrides)
    return AmazonAccount(**settings)


@pytest.fixture
def make_client() -> Iterator[Callable[..., AmazonClient]]:
    clients: list[AmazonClient] = []

    def make(sim: AmazonSim, **overrides: Any) -> AmazonClient:
        client = AmazonClient(account_for(sim, **overrides))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., AmazonClient], sim: AmazonSim) -> AmazonClient:
    return make_client(sim)


def access_token(sim: AmazonSim) -> str:
    answer = httpx.post(sim.base_url + "/auth/o2/token", data={
        "grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN,
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    return answer.json()["access_token"]


# -- the SP-API models ----------------------------------------------------------------------------------
MODEL_FILES = {
    "orders-v0": "orders-api-model/ordersV0.json",
    "orders-2026": "orders-api-model/orders_2026-01-01.json",
    "feeds": "feeds-api-model/feeds_2021-06-30.json",
    "reports": "reports-api-model/reports_2021-06-30.json",
    "finances": "finances-api-model/financesV0.json",
}


class Model:
    """One Swagger 2.0 model: find an operation by method and path, check a request or response against it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spec = json.loads(path.read_text())
        self.routes = []
        for template, operations in self.spec["paths"].items():
            import re
            regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")
            for method, operation in operations.items():
                if isinstance(operation, dict) and "operationId" in operation:
                    self.routes.append((method.upper(), regex, template, operation))

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for verb, regex, template, operation in self.routes:
            if verb == method.upper() and regex.match(path):
                return template, operation
        return None

    def schema_errors(self, schema: dict[str, Any], instance: Any) -> list[str]:
        validator = jsonschema.Draft4Validator({**schema, "definitions": self.spec["definitions"]})
        return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(instance)]

    def response_errors(self, method: str, path: str, status: int, body: Any) -> list[str]:
        found = self.operation(method, path)
        assert found, f"{method} {path} is not in {self.path.name}"
        response = found[1]["responses"].get(str(status))
        if response is None:
            return [f"status {status} is not a documented response of {found[1]['operationId']}"]
        if "schema" not in response:
            return []
        return self.schema_errors(response["schema"], body)

    def request_errors(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> list[str]:
        found = self.operation(method, path)
        if found is None:
            return [f"{method} {path} is not an operation of {self.path.name}"]
        operation = found[1]
        problems = []
        params = {p["name"]: p for p in operation.get("parameters", [])}
        for name, values in query.items():
            spec = params.get(name)
            if spec is None or spec["in"] != "query":
                problems.append(f"query parameter {name} is not in the model")
                continue
            value = values[0]
            if spec["type"] == "array":
                items = value.split(",")
                if "maxItems" in spec and len(items) > spec["maxItems"]:
                    problems.append(f"{name}: more than {spec['maxItems']} values")
                allowed = spec["items"].get("enum")
                problems += [f"{name}: {item!r} not in {allowed}" for item in items if allowed and item not in allowed]
            elif spec["type"] == "integer":
                if not value.isdigit():
                    problems.append(f"{name}: {value!r} is not an integer")
                elif "maximum" in spec and int(value) > spec["maximum"]:
                    problems.append(f"{name}: {value} above {spec['maximum']}")
            elif spec.get("enum") and value not in spec["enum"]:
                problems.append(f"{name}: {value!r} not in {spec['enum']}")
        for name, spec in params.items():
            if spec["in"] == "query" and spec.get("required") and name not in query:
                problems.append(f"required query parameter {name} missing")
            if spec["in"] == "body":
                if body is None and spec.get("required"):
                    problems.append("required body missing")
                elif body is not None:
                    problems += self.schema_errors(spec["schema"], body)
        return problems


@pytest.fixture(scope="session")
def models(specs_dir: Path) -> dict[str, Model]:
    base = specs_dir / "spapi" / "models"
    missing = [name for name, rel in MODEL_FILES.items() if not (base / rel).is_file()]
    if missing:
        pytest.skip(f"SP-API models missing under {base}: {missing}")
    return {name: Model(base / rel) for name, rel in MODEL_FILES.items()}


@pytest.fixture(scope="session")
def xsd_dir(specs_dir: Path) -> Path:
    path = specs_dir / "spapi" / "xsd"
    if not (path / "amzn-envelope.xsd").is_file():
        pytest.skip(f"feed XSDs not found at {path}")
    return path


def model_for(models: dict[str, Model], path: str) -> Model | None:
    if path.startswith("/orders/v0"):
        return models["orders-v0"]
    if path.startswith("/orders/2026-01-01"):
        return models["orders-2026"]
    if path.startswith("/feeds/"):
        return models["feeds"]
    if path.startswith("/reports/"):
        return models["reports"]
    if path.startswith("/finances/v0/"):
        return models["finances"]
    return None
