"""Contract tests against the official SP-API models, notification schemas and XSDs in ../shared/specs."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import httpx
import jsonschema
import pytest

from adapters.amazon import AdjustedItem, AdjustmentRequest, CancelItem, CancelRequest, parse_order_change
from adapters.amazon.http import DOCUMENTED_RATE_LIMITS

from .conftest import SINCE, access_token, model_for

SANDBOX_OPERATIONS = {
    "orders-v0": {"getOrders", "getOrder", "getOrderItems"},
    "orders-2026": {"searchOrders", "getOrder"},
    "feeds": None,  # every operation
    "reports": None,
    "finances": {"listFinancialEvents", "listFinancialEventsByOrderId"},  # the Finances operations the stand-in serves
}


def sandbox_cases(models):
    for name, model in models.items():
        for method, _, template, operation in model.routes:
            wanted = SANDBOX_OPERATIONS[name]
            if wanted is not None and operation["operationId"] not in wanted:
                continue
            for code, response in operation["responses"].items():
                for example in response.get("x-amzn-api-sandbox", {}).get("static", []):
                    yield name, method, template, operation, int(code), example["request"].get("parameters", {})


def test_every_static_sandbox_example_is_answered_with_a_body_that_fits_the_model(make_sim, scenario, models, specs_dir):
    sim = make_sim(scenario, sandbox_models=specs_dir / "spapi" / "models")
    token = access_token(sim)
    count = 0
    failures = []
    with httpx.Client(base_url=sim.base_url, headers={"x-amz-access-token": token}) as http:
        for name, method, template, operation, code, params in sandbox_cases(models):
            path, query, body = template, {}, None
            specs = {p["name"]: p for p in operation.get("parameters", [])}
            for key, spec in params.items():
                value = spec["value"]
                where = specs.get(key, {}).get("in", "query")
                if where == "path":
                    path = path.replace("{" + key + "}", str(value))
                elif where == "body":
                    body = value
                else:
                    query[key] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            if "{" in path:
                path = path.replace("{reportId}", "x").replace("{reportScheduleId}", "x")
            answer = http.request(method, path, params=query, json=body)
            count += 1
            label = f"{name} {operation['operationId']} example {code}"
            if answer.status_code != code:
                failures.append(f"{label}: status {answer.status_code}, expected {code}")
                continue
            payload = answer.json() if answer.content else None
            problems = models[name].response_errors(method, template, code, payload) if payload is not None else []
            failures += [f"{label}: {p}" for p in problems]
    assert count >= 40
    assert failures == []


def documented_limits(model):
    """operationId -> (rate, burst) from the usage-plan table in each operation's description."""
    found = {}
    for _, _, _, operation in model.routes:
        rows = re.findall(r"\|\s*([\d.]+)\s*\|\s*(\d+)\s*\|", operation.get("description", ""))
        if rows:
            found[operation["operationId"]] = (float(rows[0][0]), float(rows[0][1]))
    return found


def test_every_bucket_is_seeded_with_the_models_documented_rate_and_burst(models):
    in_models = {}
    for name, model in models.items():
        for operation, limit in documented_limits(model).items():
            in_models["getOrder2026" if (name, operation) == ("orders-2026", "getOrder") else operation] = limit
    assert len(in_models) > 20
    wrong = {op: (ours, in_models.get(op)) for op, ours in DOCUMENTED_RATE_LIMITS.items() if in_models.get(op) != ours}
    assert wrong == {}


def fetch(http, path, **params):
    answer = http.get(path, params=params)
    return answer.status_code, answer.json()


def every_list_has_events(body):
    """Whether a Finances answer has refund, guarantee claim and chargeback events, a reversal among the last."""
    events = body["payload"]["FinancialEvents"]
    lists = ("RefundEventList", "GuaranteeClaimEventList", "ChargebackEventList")
    charges = [charge["ChargeAmount"]["CurrencyAmount"] for event in events.get("ChargebackEventList", [])
               for item in event["ShipmentItemAdjustmentList"] for charge in item["ItemChargeAdjustmentList"]]
    return all(events.get(name) for name in lists) and any(amount > 0 for amount in charges)


def test_the_stand_ins_own_answers_fit_the_models(sim, models):
    with httpx.Client(base_url=sim.base_url, headers={"x-amz-access-token": access_token(sim)}) as http:
        checks = [
            ("GET", "/orders/2026-01-01/orders", fetch(http, "/orders/2026-01-01/orders", lastUpdatedAfter=SINCE,
                                                       marketplaceIds="ATVPDKIKX0DER", includedData="CANCELLATION,FULFILLMENT,PROCEEDS")),
            ("GET", "/orders/2026-01-01/orders/113-0000001-0000001",
             fetch(http, "/orders/2026-01-01/orders/113-0000001-0000001", includedData="CANCELLATION,FULFILLMENT")),
            ("GET", "/orders/2026-01-01/orders", fetch(http, "/orders/2026-01-01/orders", lastUpdatedAfter="yesterday")),
            ("GET", "/orders/2026-01-01/orders/nope", fetch(http, "/orders/2026-01-01/orders/nope")),
            ("GET", "/orders/v0/orders", fetch(http, "/orders/v0/orders", LastUpdatedAfter=SINCE, MarketplaceIds="ATVPDKIKX0DER")),
            ("GET", "/orders/v0/orders/113-0000001-0000001", fetch(http, "/orders/v0/orders/113-0000001-0000001")),
            ("GET", "/orders/v0/orders/113-0000001-0000001/orderItems", fetch(http, "/orders/v0/orders/113-0000001-0000001/orderItems")),
            ("GET", "/orders/v0/orders", fetch(http, "/orders/v0/orders", MarketplaceIds="ATVPDKIKX0DER")),
        ]
        created = http.post("/reports/2021-06-30/reports", json={"reportType": "GET_XML_RETURNS_DATA_BY_RETURN_DATE",
                                                                 "marketplaceIds": ["ATVPDKIKX0DER"], "dataStartTime": SINCE})
        checks.append(("POST", "/reports/2021-06-30/reports", (created.status_code, created.json())))
        report_id = created.json()["reportId"]
        for _ in range(2):
            checks.append(("GET", f"/reports/2021-06-30/reports/{report_id}", fetch(http, f"/reports/2021-06-30/reports/{report_id}")))
        document = checks[-1][2][1]["reportDocumentId"]
        checks.append(("GET", f"/reports/2021-06-30/documents/{document}", fetch(http, f"/reports/2021-06-30/documents/{document}")))
        feed_doc = http.post("/feeds/2021-06-30/documents", json={"contentType": "text/xml; charset=UTF-8"})
        checks.append(("POST", "/feeds/2021-06-30/documents", (feed_doc.status_code, feed_doc.json())))
        ten_minutes_ago = datetime.now(timezone.utc) - timedelta(minutes=10)
        sim.refund_in_seller_central("113-0000004-0000004", {"10000000000041": "7.25"}, posted=ten_minutes_ago)
        # One event of each list, a chargeback reversal (positive charges) among them, so every shape is checked.
        sim.guarantee_claim("113-0000004-0000004", {"10000000000041": "5.00"}, posted=ten_minutes_ago)
        sim.chargeback("113-0000004-0000004", {"10000000000041": "4.00"}, posted=ten_minutes_ago)
        sim.chargeback_reversal("113-0000004-0000004", {"10000000000041": "1.50"}, posted=ten_minutes_ago)
        # Not from SINCE: Amazon answers nothing for a window longer than 180 days.
        refunds = fetch(http, "/finances/v0/financialEvents", PostedAfter=(ten_minutes_ago - timedelta(days=1)).isoformat(),
                        MaxResultsPerPage=100, PostedBefore=(ten_minutes_ago + timedelta(minutes=1)).isoformat())
        assert every_list_has_events(refunds[1]), "an event of each list must be in the answer checked"
        checks.append(("GET", "/finances/v0/financialEvents", refunds))
        checks.append(("GET", "/finances/v0/financialEvents", fetch(http, "/finances/v0/financialEvents", PostedAfter=SINCE,
                                                                    PostedBefore=datetime.now(timezone.utc).isoformat())))  # too late
        by_order = "/finances/v0/orders/113-0000004-0000004/financialEvents"
        of_order = fetch(http, by_order, MaxResultsPerPage=100)
        assert every_list_has_events(of_order[1]), "an event of each list must be in the answer checked"
        checks.append(("GET", by_order, of_order))
        checks.append(("GET", "/finances/v0/orders/113-9999999-9999999/financialEvents",
                       fetch(http, "/finances/v0/orders/113-9999999-9999999/financialEvents")))  # unknown: no events
        checks.append(("GET", "/finances/v0/orders/BAD-ORDER/financialEvents", fetch(http, "/finances/v0/orders/BAD-ORDER/financialEvents")))
        checks.append(("GET", by_order, fetch(http, by_order, MaxResultsPerPage=0)))
    failures = []
    for method, path, (status, body) in checks:
        model = model_for(models, path)
        failures += [f"{method} {path} {status}: {p}" for p in model.response_errors(method, path, status, body)]
    assert [c[2][0] for c in checks][:8] == [200, 200, 400, 404, 200, 200, 200, 400]
    assert [c[2][0] for c in checks][-6:] == [200, 400, 200, 200, 400, 400]
    assert failures == []


def test_every_request_the_adapter_sends_fits_the_models(sim, make_client, models, xsd_dir, scenario, make_sim):
    scenario["max_page_size"] = 4  # so pagination tokens are sent too
    sim = make_sim(scenario)
    for version in ("2026-01-01", "v0"):
        client = make_client(sim, orders_api_version=version)
        client.poll_orders(SINCE)
        client.get_order("113-0000002-0000002")
    client.buyer_cancel_requests(SINCE)
    client.returns(SINCE, "TSV")
    feed = client.build_cancellation_feed([CancelRequest("113-0000002-0000002", (CancelItem("10000000000021", "NoInventory"),))])
    client.feed_outcome(client.submit_feed(feed), feed)
    refund = client.build_adjustment_feed([AdjustmentRequest("113-0000004-0000004", (AdjustedItem("10000000000041", "CustomerReturn", (("Principal", 5),)),))])
    client.feed_outcome(client.submit_feed(refund), refund)
    for minutes in range(6):  # more refund events than a page holds, so NextToken is sent too
        sim.refund_in_seller_central("113-0000004-0000004", {"10000000000041": 1}, posted=datetime.now(timezone.utc) - timedelta(minutes=10 + minutes))
    now = datetime.now(timezone.utc)
    assert len(client.refunds((now - timedelta(days=1)).isoformat(), (now - timedelta(minutes=5)).isoformat()).records) == 6
    assert len(client.refunds_of_order("113-0000004-0000004").records) == 7  # the feed's refund too
    sent = [e for e in sim.journal.entries() if e["operation"]]
    assert {e["operation"] for e in sent} >= {"searchOrders", "getOrder2026", "getOrders", "getOrder", "getOrderItems", "createReport",
                                              "getReport", "getReportDocument", "createFeedDocument", "createFeed", "getFeed", "getFeedDocument",
                                              "listFinancialEvents", "listFinancialEventsByOrderId"}
    assert any("paginationToken" in e["query"] for e in sent) and any("NextToken" in e["query"] for e in sent)
    assert any("NextToken" in e["query"] for e in sent if e["operation"] == "listFinancialEvents")
    assert any("NextToken" in e["query"] for e in sent if e["operation"] == "listFinancialEventsByOrderId")
    # Every operation sent has its documented bucket (an unlisted one would get a made-up 0.5/s, burst 5).
    assert {e["operation"] for e in sent} - DOCUMENTED_RATE_LIMITS.keys() == set()
    failures = []
    for entry in sent:
        model = model_for(models, entry["path"])
        failures += [f"{entry['operation']}: {p}" for p in model.request_errors(entry["method"], entry["path"], entry["query"], entry["body"])]
    assert failures == []


def order_change_schema(specs_dir):
    path = specs_dir / "spapi" / "schemas" / "notifications" / "OrderChangeNotification.json"
    if not path.is_file():
        pytest.skip(f"ORDER_CHANGE schema not found at {path}")
    return json.loads(path.read_text())


def test_every_order_change_example_validates_and_parses(specs_dir):
    schema = order_change_schema(specs_dir)
    assert schema["examples"]
    for example in schema["examples"]:
        jsonschema.Draft7Validator(schema).validate(example)
        change = parse_order_change(json.dumps(example))
        assert change.order.amazon_order_id == example["Payload"]["OrderChangeNotification"]["AmazonOrderId"]
        assert change.order.buyer_cancel_requested is True  # a JSON boolean here, unlike v0's "true"
        assert change.order.status.value == "Unshipped" and change.order.fulfillment == "FBM"
        assert change.change_type == "BuyerRequestedChange"


def test_stand_in_notifications_validate_and_match_what_polling_sees(sim, client, specs_dir):
    schema = order_change_schema(specs_dir)
    httpx.post(sim.base_url + "/_sim/orders", json={"id": "113-0000002-0000002", "buyer_cancel": {"reason": "Late"}}).raise_for_status()
    (note,) = httpx.get(sim.base_url + "/_sim/notifications").json()
    jsonschema.Draft7Validator(schema).validate(note)
    pushed = parse_order_change(note).order
    polled = client.get_order("113-0000002-0000002")
    assert (pushed.status, pushed.fulfillment, pushed.buyer_cancel_requested, pushed.last_updated) == \
           (polled.status, polled.fulfillment, polled.buyer_cancel_requested, polled.last_updated)
    assert [(l.order_item_id, l.quantity_ordered, l.buyer_cancel_requested) for l in pushed.lines] == \
           [(l.order_item_id, l.quantity_ordered, l.buyer_cancel_requested) for l in polled.lines]


def test_bad_notifications_are_clear_errors():
    from adapters.errors import InvalidInput
    with pytest.raises(InvalidInput, match="not JSON"):
        parse_order_change("{oops")
    with pytest.raises(InvalidInput, match="order 1, field Summary.OrderStatus: unknown value 'Teleported'"):
        parse_order_change({"Payload": {"OrderChangeNotification": {"AmazonOrderId": "1", "Summary": {"OrderStatus": "Teleported", "OrderItems": []}}}})
