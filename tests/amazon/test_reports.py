"""Order and returns reports: through the stand-in, from files, and with bad rows."""
from __future__ import annotations

import gzip
from decimal import Decimal

import httpx
import pytest

from adapters.amazon import parse_order_report, parse_returns_file, parse_returns_report
from adapters.errors import InvalidInput

from .conftest import SINCE


def test_order_report_reads_buyer_cancel_requests(client):
    parsed = client.buyer_cancel_requests(SINCE)
    assert parsed.errors == [] and parsed.notices == []
    requested = [r for r in parsed.records if r.buyer_cancel_requested]
    assert [(r.amazon_order_id, r.buyer_cancel_reason) for r in requested] == [("113-0000001-0000001", "Found it cheaper somewhere else")]


def test_order_report_without_the_buyer_columns_says_so_once(make_sim, make_client, scenario):
    scenario["order_report_buyer_columns"] = False
    sim = make_sim(scenario)
    client = make_client(sim)
    parsed = client.buyer_cancel_requests(SINCE)
    assert len(parsed.records) == 11 and not any(r.buyer_cancel_requested for r in parsed.records)
    assert len(parsed.notices) == 1 and "Seller Central" in parsed.notices[0]  # one notice, not one per row
    assert client.buyer_cancel_requests(SINCE).notices == []  # and not again on the next poll
    sim.order_report_buyer_columns = True  # the seller turns them on ...
    assert client.buyer_cancel_requests(SINCE).notices == []
    sim.order_report_buyer_columns = False  # ... and off again: that is news
    assert len(client.buyer_cancel_requests(SINCE).notices) == 1


def test_order_report_bad_rows_are_named_and_the_rest_kept():
    text = ("amazon-order-id\torder-item-id\tsku\tquantity\tis-buyer-requested-cancellation\tbuyer-requested-cancel-reason\n"
            "111-1111111-1111111\t1\tA\t1\ttrue\tchanged my mind\n"
            "222-2222222-2222222\t2\tB\n"
            "333-3333333-3333333\t3\tC\tmany\tfalse\t\n"
            "444-4444444-4444444\t4\tD\t1\tmaybe\t\n"
            "555-5555555-5555555\t5\tE\t2\tfalse\t\n")
    parsed = parse_order_report(text, source="orders.tsv")
    assert [r.amazon_order_id for r in parsed.records] == ["111-1111111-1111111", "555-5555555-5555555"]
    errors = [str(e) for e in parsed.errors]
    assert "orders.tsv row 3 (order 222-2222222-2222222): missing column(s) quantity" in errors[0]
    assert "row 4" in errors[1] and "quantity: 'many'" in errors[1]
    assert "row 5" in errors[2] and "'maybe' is not true or false" in errors[2]


@pytest.mark.parametrize("fmt", ["XML", "TSV"])
def test_returns_report_in_both_forms_becomes_rma_rows(client, fmt):
    parsed = client.returns(SINCE, fmt)
    assert parsed.errors == []
    (rma,) = parsed.records
    assert (rma.rma_id, rma.amazon_order_id, rma.status, rma.tracking_number) == ("DkXyZ123RMA", "113-0000004-0000004", "Approved", "1Z999AA10123456784")
    assert rma.label_cost == Decimal("5.99")
    assert [(i.sku, i.quantity, i.reason) for i in rma.items] == [("MUG-BLUE", 1, "CR-DAMAGED_BY_CARRIER")]


def test_no_returns_is_an_empty_answer_not_an_error(make_sim, make_client, scenario):
    scenario["returns"] = []
    assert make_client(make_sim(scenario)).returns(SINCE).records == []


TSV = ("Order ID\tAmazon RMA ID\tReturn request status\tTracking ID\tMerchant SKU\tReturn quantity\tReturn reason\tLabel cost\n"
       "111-1111111-1111111\tRMA1\tApproved\t1Z1\tA\t1\tDEFECTIVE\t4.50\n"
       "111-1111111-1111111\tRMA1\tApproved\t1Z1\tB\t2\tDEFECTIVE\t4.50\n"
       "222-2222222-2222222\tRMA2\tApproved\t1Z2\tC\tlots\tNO_REASON\t1.00\n"
       "333-3333333-3333333\tRMA3\tPending\n"
       "444-4444444-4444444\tRMA4\tApproved\t1Z4\tD\t1\tSWITCHEROO\tfree\n"
       "555-5555555-5555555\tRMA5\tApproved\t1Z5\tE\t1\tDEFECTIVE\t0\n")


def test_a_returns_file_a_person_hands_over_gzipped_or_not(tmp_path):
    plain = tmp_path / "returns.tsv"
    plain.write_text(TSV)
    packed = tmp_path / "returns.tsv.gz"
    packed.write_bytes(gzip.compress(TSV.encode()))
    for path in (plain, packed):
        parsed = parse_returns_file(path)
        assert [(r.rma_id, len(r.items)) for r in parsed.records] == [("RMA1", 2), ("RMA5", 1)]
        errors = [str(e) for e in parsed.errors]
        assert len(errors) == 3 and all(str(path) in e for e in errors)
        assert "row 4 (RMA RMA2)" in errors[0] and "'lots'" in errors[0]
        assert "row 5 (RMA RMA3)" in errors[1] and "missing column" in errors[1]
        assert "row 6 (RMA RMA4)" in errors[2] and "label cost: 'free' is not a number" in errors[2]


def test_xml_returns_report_that_is_not_xml_and_missing_files(tmp_path):
    with pytest.raises(InvalidInput, match="returns report: looks like XML but is not well-formed"):
        parse_returns_report("<return_details><amazon_rma_id>R</amazon_rma_id>")
    with pytest.raises(InvalidInput, match="cannot read it"):
        parse_returns_file(tmp_path / "nope.xml")
    with pytest.raises(InvalidInput, match="no 'Amazon RMA ID' column"):
        parse_returns_report("Order ID\tSomething\n1\t2\n")
    # An XML report that arrives as something else (an error page, a flat file) says so.
    with pytest.raises(InvalidInput, match="GET_XML_RETURNS_DATA_BY_RETURN_DATE: an XML returns report was expected but this is not XML"):
        parse_returns_report(b"Service Unavailable\n", source="GET_XML_RETURNS_DATA_BY_RETURN_DATE", fmt="XML")


def test_xml_return_with_a_bad_item_is_named(tmp_path):
    xml = """<?xml version="1.0"?><AmazonRmaReport>
      <return_details><order_id>1</order_id><amazon_rma_id>R1</amazon_rma_id><tracking_id>T</tracking_id>
        <item_details><merchant_sku>A</merchant_sku><return_quantity>1</return_quantity></item_details></return_details>
      <return_details><order_id>2</order_id><amazon_rma_id>R2</amazon_rma_id>
        <item_details><merchant_sku>B</merchant_sku><return_quantity>-1</return_quantity></item_details></return_details>
    </AmazonRmaReport>"""
    path = tmp_path / "returns.xml"
    path.write_text(xml)
    parsed = parse_returns_file(path)
    assert [r.rma_id for r in parsed.records] == ["R1"]
    assert "return #2 (RMA R2) item 1" in str(parsed.errors[0]) and "'-1'" in str(parsed.errors[0])


def test_returns_added_at_run_time_show_up(sim, client):
    httpx.post(sim.base_url + "/_sim/returns", json={"rma_id": "NEWRMA", "order_id": "113-0000005-0000005",
                                                     "items": [{"sku": "BOTTLE-1L", "quantity": 1, "reason": "UNWANTED"}]}).raise_for_status()
    assert {r.rma_id for r in client.returns(SINCE, "TSV").records} == {"DkXyZ123RMA", "NEWRMA"}
