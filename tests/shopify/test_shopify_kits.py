"""Kits: a fixed bundle is a Shopify variant whose productVariantComponents list other variants, each
with the units one bundle holds. `kit_components(sku)` reads them over real HTTP from the stand-in,
whose scenario declares them on an inventory entry (`components: [{sku, quantity}]`)."""
from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from adapters.errors import InvalidInput, TransientError
from adapters.shopify import ShopifyClient, ShopifyConfig, ShopifyRejected
from adapters.shopify.models import KitComponent
from adapters.shopify.operations import OPERATIONS
from adapters.sim.linked import linked
from adapters.sim.shopify import create_server
from adapters.sim.shopify_store import ScenarioError, search_terms

from .conftest import TOKEN, journal, post, sim_state
from .test_shopify_contract import assert_shape, official  # noqa: F401 (official is a fixture)

KITS = [
    {"sku": "TEA-SET", "item_id": 510, "name": "Tea set - Blue", "levels": {1: 2},
     "components": [{"sku": "MUG-RED", "quantity": 2}, {"sku": "MUG-BLUE", "quantity": 1}]},
    {"sku": "MUG 'n' LAMP", "item_id": 511, "components": [{"sku": "LAMP"}]},
    {"sku": "LID-SET", "item_id": 512, "name": "Lid set", "components": [{"sku": "MUG-RED", "quantity": 1}, {"name": "Teapot lid"}]},
]


@pytest.fixture
def kit_sim(shop: dict[str, Any], start_sim: Any) -> Any:
    shop["inventory"] += [dict(k) for k in KITS]
    return start_sim(shop)


@pytest.fixture
def kit_client(kit_sim: Any, make_client: Any) -> ShopifyClient:
    return make_client(kit_sim)


def test_a_bundle_gives_its_components_with_the_units_per_bundle(kit_client: ShopifyClient, kit_sim: Any) -> None:
    assert kit_client.kit_components("TEA-SET") == (KitComponent("MUG-RED", 2), KitComponent("MUG-BLUE", 1))
    # one query, paid for like every other: the bucket was asked for its estimate and charged what came back
    [request] = journal(kit_sim, kind="request")
    assert request["operation"] == "KitComponents" and request["requested"] == 208 and 0 < request["actual"] < 208


def test_a_quantity_left_out_of_the_scenario_is_one_and_a_sku_with_quotes_and_spaces_is_found(kit_client: ShopifyClient) -> None:
    assert kit_client.kit_components("MUG 'n' LAMP") == (KitComponent("LAMP", 1),)


@pytest.mark.parametrize("sku", ["MUG-RED", "NO-SUCH-SKU", "tea-set", "TEA"])
def test_a_plain_or_unknown_sku_has_no_components(kit_client: ShopifyClient, sku: str) -> None:
    # MUG-RED is a variant without components; the others are no variant's SKU (exactly)
    assert kit_client.kit_components(sku) == ()


def test_a_component_without_a_sku_names_the_bundle_and_what_to_fix(kit_client: ShopifyClient) -> None:
    with pytest.raises(ShopifyRejected) as caught:
        kit_client.kit_components("LID-SET")
    error = caught.value
    assert error.permanent and error.code == "KIT_COMPONENT_WITHOUT_SKU"
    message = str(error)
    assert "LID-SET" in message and "Lid set" in message and "Teapot lid" in message and "Give that variant a SKU in Shopify" in message


def test_a_bundle_with_more_components_than_read_is_refused_not_cut_short(shop: dict[str, Any], start_sim: Any,
                                                                          make_client: Any) -> None:
    shop["inventory"].append({"sku": "HUGE", "components": [{"sku": "MUG-RED"}] * 51})
    client = make_client(start_sim(shop))
    with pytest.raises(ShopifyRejected) as caught:
        client.kit_components("HUGE")
    assert caught.value.code == "KIT_TOO_LARGE" and "HUGE" in str(caught.value)


def test_a_blank_sku_is_refused_before_asking(kit_client: ShopifyClient, kit_sim: Any) -> None:
    with pytest.raises(InvalidInput):
        kit_client.kit_components("  ")
    assert journal(kit_sim, kind="request") == []


def test_a_server_error_is_transient(kit_sim: Any) -> None:
    httpx.post(kit_sim.base_url + "/_sim/faults", json={"error_rate": 1.0, "error_statuses": [503]}, timeout=5)
    client = ShopifyClient(ShopifyConfig(shop=kit_sim.base_url, max_attempts=2), TOKEN, sleep=lambda s: None)
    with pytest.raises(TransientError):
        client.kit_components("TEA-SET")
    client.close()


# -- the query and the stand-in's answer against the official schema ----------------------------------
def test_the_query_validates_and_the_stand_ins_answer_has_the_schema_shapes(official: Any, kit_sim: Any) -> None:
    from graphql import parse, validate

    document = OPERATIONS["2025-01"].kit_components
    assert document == OPERATIONS["2026-01"].kit_components
    assert validate(official, parse(document)) == []
    for sku in ("TEA-SET", "MUG-RED", "NO-SUCH-SKU", "LID-SET"):
        data = post(kit_sim, document, {"search": f"sku:'{sku}'"})["data"]
        assert assert_shape(official, document, data) >= 2, sku


def test_the_fallback_schema_answers_the_query_too(shop: dict[str, Any], start_sim: Any, make_client: Any) -> None:
    shop["inventory"] += [dict(k) for k in KITS]
    client = make_client(start_sim(shop, schema_preference="minimal"))
    assert client.kit_components("TEA-SET") == (KitComponent("MUG-RED", 2), KitComponent("MUG-BLUE", 1))


# -- the stand-in's scenario ------------------------------------------------------------------------------
def test_the_state_shows_the_bundles(kit_sim: Any) -> None:
    bundles = {b["sku"]: b["components"] for b in sim_state(kit_sim)["bundles"]}
    assert bundles["TEA-SET"] == [{"sku": "MUG-RED", "name": "MUG-RED", "quantity": 2}, {"sku": "MUG-BLUE", "name": "MUG-BLUE", "quantity": 1}]
    assert bundles["LID-SET"][1] == {"sku": None, "name": "Teapot lid", "quantity": 1}


@pytest.mark.parametrize("components,message", [
    ([{"sku": "NOPE", "quantity": 1}], "inventory[3] (KIT).components[0]: unknown SKU NOPE"),
    ([{"sku": "MUG-RED", "quantity": 0}], "quantity must be at least 1"),
    ([{"quantity": 1}], "needs sku (or name"),
    ([{"sku": "KIT"}], "cannot be its own component"),
])
def test_a_broken_bundle_is_refused_naming_the_entry(shop: dict[str, Any], components: list[dict[str, Any]], message: str) -> None:
    shop["inventory"].append({"sku": "KIT", "components": components})
    with pytest.raises(ScenarioError, match=re.escape(message)):
        create_server(scenario=shop)


def test_search_terms_unquote_and_unescape() -> None:
    assert search_terms(r"sku:'MUG \'n\' LAMP' status:open sku:'back\\slash'") == [
        ("sku", "MUG 'n' LAMP"), ("status", "open"), ("sku", "back\\slash")]
    assert search_terms("""sku:"x y" name:#1001""") == [("sku", "x y"), ("name", "#1001")]


def test_a_linked_scenario_line_can_be_a_kit() -> None:
    orders = [{"id": "114-0000001-0000001", "lines": [{"sku": "TEA-SET", "quantity": 1, "kit": [{"sku": "CUP", "quantity": 2}, {"sku": "POT"}]},
                                                      {"sku": "SPOON", "quantity": 3}]},
              {"id": "114-0000002-0000002", "lines": [{"sku": "TEA-SET", "quantity": 2, "kit": [{"sku": "CUP", "quantity": 2}, {"sku": "POT"}]}]}]
    amazon, shopify = linked(orders)
    inventory = {entry["sku"]: entry for entry in shopify["inventory"]}
    assert set(inventory) == {"TEA-SET", "CUP", "POT", "SPOON"}  # the components are stocked variants of the shop
    assert inventory["TEA-SET"]["components"] == [{"sku": "CUP", "quantity": 2}, {"sku": "POT", "quantity": 1}]
    assert "components" not in inventory["SPOON"]
    # Amazon sells the kit as one item: its side does not know the components
    assert [line["sku"] for line in amazon["orders"][0]["lines"]] == ["TEA-SET", "SPOON"]
    with create_server(scenario=shopify) as sim:
        client = ShopifyClient(ShopifyConfig(shop=sim.base_url), shopify["shop"]["access_token"])
        assert client.kit_components("TEA-SET") == (KitComponent("CUP", 2), KitComponent("POT", 1))
        client.close()
    orders[1]["lines"][0]["kit"] = [{"sku": "CUP", "quantity": 3}]
    with pytest.raises(ValueError, match="kit TEA-SET has other components"):
        linked(orders)


def test_a_linked_scenario_without_kits_is_unchanged() -> None:
    orders = [{"id": "114-0000001-0000001", "lines": [{"sku": "MUG", "quantity": 1}, {"sku": "BOWL", "quantity": 2}]}]
    _, shopify = linked(orders)
    assert shopify["inventory"] == [{"sku": "BOWL", "item_id": 500, "levels": {1: 20}}, {"sku": "MUG", "item_id": 501, "levels": {1: 20}}]


def test_a_sku_on_several_variants_is_refused_rather_than_guessing_whether_it_is_a_bundle(
        shop: dict[str, Any], start_sim: Any, make_client: Any) -> None:
    # Shopify does not make SKUs unique: an old plain listing and the bundle may share one.
    shop["inventory"] += [{"sku": "TEA-SET", "item_id": 509, "levels": {1: 1}},
                          {"sku": "TEA-SET", "item_id": 510, "components": [{"sku": "MUG-RED", "quantity": 2}]}]
    client = make_client(start_sim(shop))
    with pytest.raises(ShopifyRejected, match="SKU TEA-SET belongs to several product variants") as refused:
        client.kit_components("TEA-SET")
    assert refused.value.code == "AMBIGUOUS_MATCH"
    assert "ProductVariant/509" in str(refused.value) and "ProductVariant/510" in str(refused.value)
