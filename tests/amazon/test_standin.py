"""The stand-in on its own: `ordersync sim amazon --port P --scenario FILE`, its /_sim endpoints, its
scenario errors, and its journal of faults."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import httpx
import pytest

from tests.conftest import PROJECT_ROOT

from .conftest import CLIENT_ID, CLIENT_SECRET, MARKETPLACE, REFRESH_TOKEN, SINCE, access_token

SCENARIO = {
    "account": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_tokens": [REFRESH_TOKEN]},
    "orders": [{"id": "114-0000001-0000001", "status": "Unshipped", "updated": "2026-03-01T00:00:00Z",
                "lines": [{"item_id": "20000000000011", "sku": "JSON-SKU", "quantity": 2, "unit_price": "3.50"}]}],
}


def run_sim(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "daemon.cli.main", "sim", "amazon", *args], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_ordersync_sim_amazon_runs_alone_from_a_json_scenario_and_stops_on_sigterm(tmp_path):
    scenario = tmp_path / "shop.json"
    scenario.write_text(json.dumps(SCENARIO))
    process = run_sim("--port", "0", "--scenario", str(scenario))
    try:
        line = process.stdout.readline()
        match = re.match(r"Amazon SP-API stand-in on (http://\S+)", line)
        assert match, f"the stand-in did not announce itself: {line!r}"
        base = match[1]
        with httpx.Client(base_url=base, timeout=5) as http:
            token = http.post("/auth/o2/token", data={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN,
                                                      "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).json()["access_token"]
            search = {"lastUpdatedAfter": SINCE, "marketplaceIds": MARKETPLACE}
            orders = http.get("/orders/2026-01-01/orders", params=search, headers={"x-amz-access-token": token}).json()["orders"]
            assert [o["orderId"] for o in orders] == ["114-0000001-0000001"]
            # A buyer asks to cancel: the next search sees the request.
            http.post("/_sim/orders", json={"id": "114-0000001-0000001", "buyer_cancel": {"reason": "Too slow"}}).raise_for_status()
            orders = http.get("/orders/2026-01-01/orders", headers={"x-amz-access-token": token},
                              params={**search, "includedData": "CANCELLATION"}).json()["orders"]
            assert orders[0]["orderItems"][0]["cancellation"]["cancellationRequest"] == {"requester": "BUYER", "cancelReason": "Too slow"}
            # Faults set over HTTP apply to the next SP-API call.
            http.post("/_sim/faults", json={"error_rate": 1.0, "error_statuses": [503]}).raise_for_status()
            assert http.get("/orders/2026-01-01/orders", params=search, headers={"x-amz-access-token": token}).status_code == 503
            journal = http.get("/_sim/journal").json()
        assert [(e["path"], e["status"]) for e in journal] == [
            ("/auth/o2/token", 200), ("/orders/2026-01-01/orders", 200), ("/_sim/orders", 200),
            ("/orders/2026-01-01/orders", 200), ("/_sim/faults", 200), ("/orders/2026-01-01/orders", 503)]
        assert journal[-1]["fault"] == "error"
        assert CLIENT_SECRET not in json.dumps(journal) and REFRESH_TOKEN not in json.dumps(journal)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_bad_scenario_names_the_file_order_and_field(tmp_path):
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("orders:\n  - {id: 114-0000002-0000002, status: Lost, lines: [{item_id: '1', quantity: 1}]}\n")
    process = run_sim("--port", "0", "--scenario", str(scenario))
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 2
    assert str(scenario) in output and "114-0000002-0000002" in output and "field status 'Lost'" in output


def test_the_stand_in_refuses_past_its_bucket_and_announces_its_rate(make_sim, scenario):
    scenario["rate_limits"]["getOrder2026"] = {"rate": 0.5, "burst": 2}
    sim = make_sim(scenario)
    headers = {"x-amz-access-token": access_token(sim)}
    answers = [httpx.get(f"{sim.base_url}/orders/2026-01-01/orders/113-0000001-0000001", headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["x-amzn-RateLimit-Limit"] == "0.5"
    assert answers[2].json()["errors"][0]["code"] == "QuotaExceeded"
    assert httpx.get(f"{sim.base_url}/orders/2026-01-01/orders/113-0000001-0000001").status_code == 403  # no token


def test_dropped_and_slow_requests_are_journaled_too(sim):
    headers = {"x-amz-access-token": access_token(sim)}
    httpx.post(sim.base_url + "/_sim/faults", json={"drop_rate": 1.0}).raise_for_status()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{sim.base_url}/orders/2026-01-01/orders/113-0000001-0000001", headers=headers)
    httpx.post(sim.base_url + "/_sim/faults", json={"slow_rate": 1.0, "slow_seconds": 0.05}).raise_for_status()
    assert httpx.get(f"{sim.base_url}/orders/2026-01-01/orders/113-0000001-0000001", headers=headers).status_code == 200
    faults = [(e["path"], e["fault"]) for e in httpx.get(sim.base_url + "/_sim/journal").json() if e["fault"]]
    assert faults == [("/orders/2026-01-01/orders/113-0000001-0000001", "drop"),
                      ("/orders/2026-01-01/orders/113-0000001-0000001", "slow")]


def test_sim_refunds_files_a_guarantee_claim_a_chargeback_and_a_reversal_by_kind(sim):
    order_id, item = "113-0000004-0000004", "10000000000041"  # 2 × 12.50 paid

    def post(**body):
        return httpx.post(sim.base_url + "/_sim/refunds", json={"order_id": order_id, **body})

    claim = post(kind="guarantee_claim", amounts={item: 10})
    assert claim.status_code == 200 and claim.json()["refund"]["kind"] == "guarantee_claim"
    assert post(kind="chargeback", amounts={item: 6}).json()["refund"]["kind"] == "chargeback"
    over = post(kind="guarantee_claim", amounts={item: "9.01"})
    assert over.status_code == 400 and "a guarantee claim of 9.01 exceeds the 9.00 still refundable" in over.json()["error"]
    assert "amounts must map" in post(kind="chargeback_reversal").json()["error"]
    reversal = post(kind="chargeback_reversal", amounts={item: 2}, posted="2026-03-02T10:00:00Z")
    assert reversal.status_code == 200 and reversal.json()["refund"]["items"][0]["reversal"] is True
    assert reversal.json()["refund"]["posted"] == "2026-03-02T10:00:00.000Z"
    unknown = post(kind="claim")
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "kind 'claim' is not one of refund, guarantee_claim, chargeback, chargeback_reversal"
    assert post(amounts={item: "11.00"}).json()["refund"].get("kind") is None  # no kind: a Seller Central refund, as before
    assert [(e.get("kind"), e["items"][0]["principal"]) for e in httpx.get(sim.base_url + "/_sim/refunds").json()] == [
        ("guarantee_claim", "10.00"), ("chargeback", "6.00"), ("chargeback", "2.00"), (None, "11.00")]
    assert post(amounts={item: "0.01"}).status_code == 400  # 10 + 6 - 2 + 11: all 25.00 given back
