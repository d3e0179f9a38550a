"""Contract: every document the adapter can send validates against the official Admin API schema, and
the stand-in's answers have the shapes that schema gives them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    InlineFragmentNode,
    get_operation_ast,
    parse,
    validate,
)

from adapters.shopify.operations import OPERATIONS
from adapters.sim.shopify_schema import (
    MINIMAL_SDL_PATH,
    generate_minimal_sdl,
    load_official_schema,
    load_schema,
    with_2026_01_forms,
)

from .conftest import TOKEN, post


@pytest.fixture(scope="module")
def official(specs_dir: Path) -> GraphQLSchema:
    path = specs_dir / "shopify" / "admin_schema_2025-01.json.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found; Shopify contract tests skipped")
    return load_official_schema(path)


@pytest.fixture(scope="module")
def official_2026(official: GraphQLSchema) -> GraphQLSchema:
    return with_2026_01_forms(official)


ALL_2025 = sorted(OPERATIONS["2025-01"].all().items())
ALL_2026 = sorted(OPERATIONS["2026-01"].all().items())


@pytest.mark.parametrize("name,document", ALL_2025, ids=[n for n, _ in ALL_2025])
def test_every_2025_01_operation_validates_against_the_official_schema(official: GraphQLSchema, name: str, document: str) -> None:
    errors = validate(official, parse(document))
    assert errors == [], f"{name}: {[e.message for e in errors]}"


@pytest.mark.parametrize("name,document", ALL_2026, ids=[n for n, _ in ALL_2026])
def test_every_2026_01_operation_validates_against_2025_01_plus_the_2026_01_deltas(official_2026: GraphQLSchema, name: str, document: str) -> None:
    errors = validate(official_2026, parse(document))
    assert errors == [], f"{name}: {[e.message for e in errors]}"


def test_the_2026_01_forms_really_differ_where_the_changelog_says(official: GraphQLSchema) -> None:
    # If these validated against plain 2025-01 the version switch would be decoration.
    for name in ("cancel_order", "create_refund", "adjust_inventory"):
        assert validate(official, parse(getattr(OPERATIONS["2026-01"], name))), name


def test_the_shipped_fallback_schema_is_the_official_one_cut_down(official: GraphQLSchema) -> None:
    regenerated = generate_minimal_sdl(official, OPERATIONS["2025-01"].all().values())
    assert MINIMAL_SDL_PATH.read_text("utf-8") == regenerated, "run: python -m adapters.sim.shopify_schema"
    minimal = load_schema("2025-01", prefer="minimal")
    for name, document in ALL_2025:
        assert validate(minimal, parse(document)) == [], name


# -- answers have the schema's shapes ----------------------------------------------------------------
def assert_shape(schema: GraphQLSchema, document: str, data: Any, operation_name: str | None = None) -> int:
    """Walk the answer along the query: every value has its field's type (non-null, lists, enum
    values, scalar kinds). Returns how many values were checked, so a vacuous walk is visible."""
    ast = parse(document)
    operation = get_operation_ast(ast, operation_name)
    fragments = {d.name.value: d for d in ast.definitions if d.kind == "fragment_definition"}
    root = schema.mutation_type if operation.operation.value == "mutation" else schema.query_type
    checked = 0

    def fields(selection_set: Any, type_name: str) -> list[FieldNode]:
        out: list[FieldNode] = []
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                out.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if selection.type_condition is None or selection.type_condition.name.value == type_name:
                    out.extend(fields(selection.selection_set, type_name))
            elif isinstance(selection, FragmentSpreadNode):
                out.extend(fields(fragments[selection.name.value].selection_set, type_name))
        return out

    def check(value: Any, graphql_type: Any, node: FieldNode, path: str) -> None:
        nonlocal checked
        checked += 1
        if isinstance(graphql_type, GraphQLNonNull):
            assert value is not None, f"{path}: null for non-null {graphql_type}"
            return check(value, graphql_type.of_type, node, path)
        if value is None:
            return
        if isinstance(graphql_type, GraphQLList):
            assert isinstance(value, list), f"{path}: expected a list"
            for index, item in enumerate(value):
                check(item, graphql_type.of_type, node, f"{path}[{index}]")
            return
        if isinstance(graphql_type, GraphQLEnumType):
            assert value in graphql_type.values, f"{path}: {value!r} is not a {graphql_type.name}"
            return
        if isinstance(graphql_type, GraphQLScalarType):
            expected = {"Int": int, "Float": (int, float), "Boolean": bool, "String": str, "ID": str}.get(graphql_type.name, (str, int, float, bool))
            assert isinstance(value, expected), f"{path}: {value!r} is not a {graphql_type.name}"
            return
        assert isinstance(value, dict), f"{path}: expected an object"
        type_name = value.get("__typename") or graphql_type.name
        concrete = schema.get_type(type_name) if not isinstance(graphql_type, GraphQLObjectType) else graphql_type
        for child in fields(node.selection_set, concrete.name):
            key = child.alias.value if child.alias else child.name.value
            assert key in value, f"{path}.{key}: missing"
            check(value[key], concrete.fields[child.name.value].type, child, f"{path}.{key}")

    for top in fields(operation.selection_set, root.name):
        key = top.alias.value if top.alias else top.name.value
        check(data[key], root.fields[top.name.value].type, top, key)
    return checked


def test_stand_in_answers_to_every_operation_have_the_schema_shapes(official: GraphQLSchema, sim: Any) -> None:
    ops = OPERATIONS["2025-01"]
    found = post(sim, ops.find_orders, {"search": "source_identifier:'111-0000002-0000002'"})
    assert assert_shape(official, ops.find_orders, found["data"]) > 50
    order = found["data"]["orders"]["nodes"][0]
    fo = order["fulfillmentOrders"]["nodes"][0]
    line = order["lineItems"]["nodes"][0]
    calls = [
        (ops.get_order, {"id": order["id"]}),
        (ops.suggest_refund, {"id": order["id"], "refundLineItems": [{"lineItemId": line["id"], "quantity": 1}]}),
        (ops.find_inventory_item, {"search": "sku:'MUG-RED'"}),
        (ops.hold_fulfillment_order, {"id": fo["id"], "fulfillmentHold": {"reason": "OTHER", "handle": "h1"}}),
        (ops.release_fulfillment_order_hold, {"id": fo["id"]}),
        (ops.add_tags, {"id": order["id"], "tags": ["x"]}),
        (ops.update_order_note, {"input": {"id": order["id"], "note": "n"}}),
        (ops.create_refund, {"input": {"orderId": order["id"], "refundLineItems": [
            {"lineItemId": line["id"], "quantity": 1, "restockType": "CANCEL", "locationId": "gid://shopify/Location/1"}],
            "transactions": [{"orderId": order["id"], "kind": "REFUND", "gateway": "manual", "amount": "5.00",
                              "parentId": order["transactions"][0]["id"]}]}}),
        (ops.adjust_inventory, {"input": {"reason": "correction", "name": "available", "referenceDocumentUri": "ordersync://decision/1",
                                          "changes": [{"inventoryItemId": "gid://shopify/InventoryItem/501",
                                                       "locationId": "gid://shopify/Location/1", "delta": -1}]}}),
        (ops.cancel_order, {"orderId": "gid://shopify/Order/1001", "reason": "CUSTOMER", "refund": False, "restock": True}),
    ]
    for document, variables in calls:
        body = post(sim, document, variables)
        assert assert_shape(official, document, body["data"]) > 3, document.split("(")[0]
    job = body["data"]["orderCancel"]["job"]
    job_body = post(sim, ops.job_status, {"id": job["id"]})
    assert assert_shape(official, ops.job_status, job_body["data"]) >= 3
    # every answer carries the cost extension the client paces itself by
    assert set(job_body["extensions"]["cost"]["throttleStatus"]) == {"maximumAvailable", "currentlyAvailable", "restoreRate"}


def test_stand_in_answers_to_the_storefront_polls_have_the_schema_shapes(official: GraphQLSchema, sim: Any) -> None:
    # The polls' answers carry refunds with lines, and a cancellation, for the walk to check.
    sim.refund_in_admin("gid://shopify/Order/1002", lines=[("MUG-RED", 1)], restock_type="RETURN", note="cracked")
    sim.cancel_in_admin("gid://shopify/Order/1001", "CUSTOMER", staff_note="phoned", refund=True)
    ops = OPERATIONS["2025-01"]
    for document, search, least in [
        (ops.refunded_orders, "financial_status:partially_refunded updated_at:>=2000-01-01T00:00:00Z", 20),
        (ops.refunded_orders, "financial_status:refunded updated_at:>=2000-01-01T00:00:00Z", 15),
        (ops.cancelled_orders, "status:cancelled updated_at:>=2000-01-01T00:00:00Z", 10),
    ]:
        data = post(sim, document, {"search": search})["data"]
        assert data["orders"]["nodes"], search
        assert assert_shape(official, document, data) > least, search


def test_stand_in_refusals_have_the_schema_shapes_too(official: GraphQLSchema, sim: Any) -> None:
    # The client reads codes and fields from these; an enum value the schema lacks would reach a
    # real client as a GraphQL error instead of a userError.
    ops = OPERATIONS["2025-01"]
    closed_fo = post(sim, ops.get_order, {"id": "gid://shopify/Order/1003"})["data"]["order"]["fulfillmentOrders"]["nodes"][0]["id"]
    refusals = [
        (ops.cancel_order, {"orderId": "gid://shopify/Order/1004", "reason": "CUSTOMER", "refund": False, "restock": True}, "orderCancel", "orderCancelUserErrors"),
        (ops.cancel_order, {"orderId": "gid://shopify/Order/999", "reason": "CUSTOMER", "refund": False, "restock": True}, "orderCancel", "orderCancelUserErrors"),
        (ops.hold_fulfillment_order, {"id": "gid://shopify/FulfillmentOrder/9", "fulfillmentHold": {"reason": "OTHER"}}, "fulfillmentOrderHold", "userErrors"),
        (ops.hold_fulfillment_order, {"id": closed_fo, "fulfillmentHold": {"reason": "OTHER"}}, "fulfillmentOrderHold", "userErrors"),
        (ops.release_fulfillment_order_hold, {"id": "gid://shopify/FulfillmentOrder/9"}, "fulfillmentOrderReleaseHold", "userErrors"),
        (ops.add_tags, {"id": "gid://shopify/Order/999", "tags": ["x"]}, "tagsAdd", "userErrors"),
        (ops.update_order_note, {"input": {"id": "gid://shopify/Order/999", "note": "n"}}, "orderUpdate", "userErrors"),
        (ops.create_refund, {"input": {"orderId": "gid://shopify/Order/1001", "transactions": [
            {"orderId": "gid://shopify/Order/1001", "kind": "REFUND", "gateway": "manual", "amount": "60.00"}]}}, "refundCreate", "userErrors"),
        (ops.adjust_inventory, {"input": {"reason": "oops", "name": "available", "changes": [
            {"inventoryItemId": "gid://shopify/InventoryItem/9", "locationId": "gid://shopify/Location/1", "delta": 1},
            {"inventoryItemId": "gid://shopify/InventoryItem/501", "locationId": "gid://shopify/Location/99", "delta": 1},
            {"inventoryItemId": "gid://shopify/InventoryItem/502", "locationId": "gid://shopify/Location/3", "delta": 1}]}},
         "inventoryAdjustQuantities", "userErrors"),
    ]
    for document, variables, field, errors_field in refusals:
        data = post(sim, document, variables)["data"]
        assert data[field][errors_field], f"{field} {variables}: expected a refusal"
        assert assert_shape(official, document, data) > 3, field
    codes = [e["code"] for e in data["inventoryAdjustQuantities"]["userErrors"]]
    assert codes == ["INVALID_REASON", "INVALID_INVENTORY_ITEM", "INVALID_LOCATION", "ITEM_NOT_STOCKED_AT_LOCATION"]
    for document, variables, root in [(ops.get_order, {"id": "gid://shopify/Order/999"}, "order"),
                                      (ops.job_status, {"id": "gid://shopify/Job/999"}, "job")]:
        data = post(sim, document, variables)["data"]
        assert data[root] is None and assert_shape(official, document, data) >= 1


def test_the_client_sends_no_document_the_contract_tests_do_not_validate() -> None:
    # Every call to the transport must pass one of the OperationSet's documents (the ones validated
    # above); a query text written inline in the client would escape the contract.
    import ast

    import adapters.shopify.client as client_module
    from adapters.shopify.operations import OperationSet

    known = set(OperationSet.__dataclass_fields__) - {"version", "uses_idempotent_directive"}
    tree = ast.parse(Path(client_module.__file__).read_text("utf-8"))
    sent = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "execute":
            document = node.args[0] if node.args else None
            assert (isinstance(document, ast.Attribute) and isinstance(document.value, ast.Attribute)
                    and document.value.attr == "ops" and document.attr in known), \
                f"client.py line {node.lineno} sends {ast.unparse(document) if document else 'nothing'}, not self.ops.<operation>"
            sent.append(document.attr)
    assert set(sent) == known, f"operations never sent by the client: {sorted(known - set(sent))}"


def test_the_shape_checker_catches_a_wrong_answer(official: GraphQLSchema) -> None:
    document = OPERATIONS["2025-01"].job_status
    with pytest.raises(AssertionError, match="non-null"):
        assert_shape(official, document, {"job": {"id": "gid://shopify/Job/1", "done": None}})
    with pytest.raises(AssertionError, match="not a Boolean"):
        assert_shape(official, document, {"job": {"id": "gid://shopify/Job/1", "done": "yes"}})


def test_the_fallback_schema_gives_the_same_answers_as_the_official_one(official: GraphQLSchema, start_sim: Any) -> None:
    official_sim = start_sim(schema_preference="official")
    minimal_sim = start_sim(schema_preference="minimal")
    variables = {"search": "tag:'amazon-111-0000001-0000001'"}
    a = post(official_sim, OPERATIONS["2025-01"].find_orders, variables)["data"]
    b = post(minimal_sim, OPERATIONS["2025-01"].find_orders, variables)["data"]
    for answer in (a, b):
        for order in answer["orders"]["nodes"]:
            order.pop("createdAt")
    assert a == b and a["orders"]["nodes"], "the two schemas answered differently"


def test_the_2026_01_endpoint_accepts_refund_method_and_the_2025_01_endpoint_refuses_it(sim: Any) -> None:
    body = post(sim, OPERATIONS["2026-01"].cancel_order, {"orderId": "gid://shopify/Order/1001", "reason": "CUSTOMER",
                                                          "restock": True, "refundMethod": {"originalPaymentMethodsRefund": False}},
                version="2026-01")
    assert body["data"]["orderCancel"]["orderCancelUserErrors"] == []
    # the 2025-01 endpoint does not know refundMethod: a validation error, as Shopify would answer
    response = httpx.post(f"{sim.base_url}/admin/api/2025-01/graphql.json", headers={"X-Shopify-Access-Token": TOKEN},
                          json={"query": OPERATIONS["2026-01"].cancel_order, "variables": {}}, timeout=5)
    assert response.status_code == 200 and "refundMethod" in str(response.json()["errors"])
