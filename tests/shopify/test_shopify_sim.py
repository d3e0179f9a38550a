"""The stand-in on its own: scenarios, the /_sim endpoints, Shopify's behaviours the client relies on
(asynchronous orderCancel, 401 body), and running it from the command line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.shopify import ShopifyClient, ShopifyConfig
from adapters.shopify.operations import OPERATIONS
from adapters.sim.shopify import DEFAULT_SCENARIO, create_server, load_scenario
from adapters.sim.shopify_store import ScenarioError

from .conftest import TOKEN, HandClock, journal, order_state, post, sim_state

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_demo_scenario_has_the_orders_the_docs_promise(start_sim: Any) -> None:
    sim = start_sim(load_scenario(DEFAULT_SCENARIO))
    token = load_scenario(DEFAULT_SCENARIO)["shop"]["access_token"]
    with ShopifyClient(ShopifyConfig(shop=sim.base_url), token) as client:
        seen = {o.name: (str(o.shipping_status), str(o.order_status), str(o.dropship_status))
                for o in (client.find_order(f"113-000000{n}-000000{n}") for n in range(1, 8))}
    assert seen == {
        "#1001": ("Unshipped", "In Process", "None"),
        "#1002": ("PartiallyShipped", "In Process", "None"),
        "#1003": ("Shipped", "Completed", "None"),
        "#1004": ("Unshipped", "Cancelled", "None"),
        "#1005": ("Unshipped", "In Process", "Pending"),
        "#1006": ("Unshipped", "In Process", "Requested"),
        "#1007": ("Unshipped", "On Hold", "None"),
    }


def test_order_cancel_is_only_accepted_at_first_and_done_when_the_job_is(start_sim: Any, shop: dict) -> None:
    shop["cancel_job_seconds"] = 0.3
    clock = HandClock()
    sim = start_sim(shop, clock=clock)
    body = post(sim, OPERATIONS["2025-01"].cancel_order,
                {"orderId": "gid://shopify/Order/1001", "reason": "CUSTOMER", "refund": False, "restock": True})
    job = body["data"]["orderCancel"]["job"]
    assert job["done"] is False
    assert post(sim, OPERATIONS["2025-01"].job_status, {"id": job["id"]})["data"]["job"]["done"] is False
    assert order_state(sim, 1001)["cancelledAt"] is None
    clock.advance(0.3)
    assert post(sim, OPERATIONS["2025-01"].job_status, {"id": job["id"]})["data"]["job"]["done"] is True
    assert order_state(sim, 1001)["cancelledAt"] is not None
    assert [e["field"] for e in journal(sim, kind="job")] == ["orderCancel"]


def test_state_shows_the_shop_and_journal_shows_each_change(sim: Any, client: Any) -> None:
    client.add_tags("gid://shopify/Order/1001", ["seen"], idempotency_key="k")
    state = sim_state(sim)
    assert {"locations", "inventory", "orders", "jobs", "bucket", "schema"} <= set(state)
    assert [e["summary"] for e in journal(sim, kind="mutation")] == [{"added": ["seen"]}]
    assert TOKEN not in httpx.get(sim.base_url + "/_sim/journal").text


def test_bucket_endpoint_reads_and_sets_the_level(sim: Any) -> None:
    assert httpx.get(sim.base_url + "/_sim/bucket").json()["maximumAvailable"] == 2000
    assert httpx.post(sim.base_url + "/_sim/bucket", json={"currentlyAvailable": 5}).json()["currentlyAvailable"] < 100
    assert httpx.post(sim.base_url + "/_sim/bucket", json={"level": 5}).status_code == 400


def test_a_wrong_token_gets_shopifys_401(sim: Any) -> None:
    response = httpx.post(sim.base_url + "/admin/api/2025-01/graphql.json", json={"query": "{ shop { id } }"},
                          headers={"X-Shopify-Access-Token": "nope"})
    assert response.status_code == 401 and "Invalid API key or access token" in response.json()["errors"]


def test_a_body_that_is_not_graphql_json_is_a_400(sim: Any) -> None:
    response = httpx.post(sim.base_url + "/admin/api/2025-01/graphql.json", content=b"query",
                          headers={"X-Shopify-Access-Token": TOKEN})
    assert response.status_code == 400


@pytest.mark.parametrize("broken,message", [
    ({"locations": []}, "at least one entry under locations"),
    ({"orders": [{"id": 1, "lines": [{"sku": "X", "quantity": 1, "location": 9}]}]}, "orders[0].lines[0]: unknown location 9"),
    ({"orders": [{"id": 1, "lines": [{"sku": "X", "quantity": 1, "fulfilled": 2}]}]}, "fulfilled must be between"),
    ({"orders": [{"id": "abc", "lines": []}]}, "orders[0]: needs a numeric id"),
    ({"inventory": [{"sku": "X", "levels": {7: 1}}]}, "inventory[0] (X): unknown location 7"),
])
def test_a_broken_scenario_is_refused_naming_the_entry(broken: dict, message: str) -> None:
    scenario = {"locations": [{"id": 1, "name": "Main"}], **broken}
    with pytest.raises(ScenarioError) as caught:
        create_server(scenario=scenario)
    assert message in str(caught.value)


def test_a_scenario_file_that_is_not_yaml_is_refused_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "shop.yaml"
    broken.write_text("orders: [ {id: 1\n", "utf-8")
    with pytest.raises(ValueError, match="shop.yaml: not valid YAML"):
        create_server(scenario=broken)


def test_without_the_specs_folder_the_stand_in_uses_its_shipped_schema(start_sim: Any, tmp_path: Path) -> None:
    sim = start_sim(specs_dir=tmp_path)
    assert sim_state(sim)["schema"].endswith("shopify_schema_2025-01.graphql")
    with ShopifyClient(ShopifyConfig(shop=sim.base_url), TOKEN) as client:
        assert client.find_order("111-0000001-0000001").name == "#1001"
        assert client.refund("gid://shopify/Order/1001", amount="1.00", idempotency_key="r").changed


def test_it_runs_from_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "adapters.sim.shopify", "--port", "0", "--scenario", str(DEFAULT_SCENARIO)],
                               cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert "Shopify stand-in on http://127.0.0.1:" in line, line
        base = line.split(" on ")[1].split("/admin")[0]
        assert len(httpx.get(base + "/_sim/state", timeout=5).json()["orders"]) == 7
    finally:
        process.terminate()
        returncode = process.wait(timeout=10)
    assert returncode == 0, "SIGTERM should end the stand-in cleanly"


def test_the_command_line_refuses_a_missing_scenario_file(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "adapters.sim.shopify", "--port", "0", "--scenario", str(tmp_path / "none.yaml")],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "none.yaml" in result.stdout


def test_a_refund_in_the_admin_is_recorded_at_once_without_a_marker_and_refused_where_shopify_would(sim: Any) -> None:
    order = "gid://shopify/Order/1001"  # 3 × MUG-RED at 12.50, 1 × MUG-BLUE at 14.00, paid 51.50
    for amount, how, message in [
        ("60.00", {}, "exceeds the refundable amount"),
        (None, {"lines": [("MUG-GREEN", 1)]}, "no line with SKU MUG-GREEN"),
        (None, {"lines": [("MUG-RED", 4)]}, "more items than were purchased"),
        (None, {}, "needs an amount or lines"),
        ("ten", {}, "not a number"),
    ]:
        with pytest.raises(ValueError, match=message):
            sim.refund_in_admin(order, amount, **how)
    with pytest.raises(ValueError, match="no successful sale"):
        sim.refund_in_admin("gid://shopify/Order/1008", "1.00")  # never paid
    assert order_state(sim, 1001)["refunds"] == [] and order_state(sim, 1001)["financialStatus"] == "PAID"

    # Lines without an amount: those units' price, as Shopify suggests it.
    refund = sim.refund_in_admin(order, lines=[("MUG-RED", 2)], restock_type="CANCEL")
    state = order_state(sim, 1001)
    assert state["refunds"] == [{"id": refund, "note": None, "amount": "25.00", "lines": [
        {"lineItem": state["lines"][0]["id"], "quantity": 2, "restockType": "CANCEL"}]}]
    assert (state["refunded"], state["financialStatus"], state["lines"][0]["current"]) == ("25.00", "PARTIALLY_REFUNDED", 1)
    sim.refund_in_admin(order, "26.50")
    assert order_state(sim, 1001)["financialStatus"] == "REFUNDED"
    assert [e["field"] for e in journal(sim, kind="mutation")] == ["refundCreate", "refundCreate"]
    assert journal(sim, kind="request") == []  # the admin is not the API: no request, no points


def test_the_order_search_filters_by_financial_status_and_ignores_a_value_it_does_not_know(sim: Any) -> None:
    sim.refund_in_admin("gid://shopify/Order/1001", "1.00")
    sim.cancel_in_admin("gid://shopify/Order/1007", "CUSTOMER", refund=True)
    ids = lambda search: sorted(o.id for o in sim.store.find_orders(search))  # noqa: E731
    assert ids("financial_status:partially_refunded") == [1001]
    assert ids("financial_status:refunded") == [1007]
    assert ids("financial_status:pending") == [1008]
    assert ids("financial_status:refunded status:cancelled") == [1007]
    assert ids("financial_status:kinda_paid") == ids("")  # as Shopify: a term it cannot apply filters nothing
