"""Feeds: built XML validates against amzn-envelope.xsd, goes through the stand-in, and each message learns its fate."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from adapters.amazon import AdjustedItem, AdjustmentRequest, CancelItem, CancelRequest, FeedValidator
from adapters.amazon.feeds import build_adjustment_feed, build_cancellation_feed, parse_processing_report
from adapters.errors import InvalidInput

from .conftest import SINCE


def test_built_feeds_validate_and_each_order_gets_its_own_message_id(xsd_dir):
    validator = FeedValidator(xsd_dir)
    cancel = build_cancellation_feed("A1EXAMPLESELLER", [
        CancelRequest("113-0000001-0000001", (CancelItem("10000000000011", "BuyerCanceled"),)),
        CancelRequest("113-0000002-0000002", (CancelItem("10000000000021", "NoInventory"), CancelItem("10000000000022", "NoInventory"))),
    ])
    refund = build_adjustment_feed("A1EXAMPLESELLER", [AdjustmentRequest("113-0000003-0000003", (
        AdjustedItem("10000000000031", "NoInventory", (("Principal", Decimal("8")), ("Tax", Decimal("0.64"))), quantity_cancelled=1),))])
    assert validator.errors(cancel.content) == [] and validator.errors(refund.content) == []
    assert cancel.messages == {1: "113-0000001-0000001", 2: "113-0000002-0000002"}
    assert b"<Amount currency=\"USD\">8.00</Amount>" in refund.content


def test_the_shipped_samples_validate_with_our_validator(xsd_dir, specs_dir):
    validator = FeedValidator(xsd_dir)
    samples = sorted((specs_dir / "spapi" / "samples").glob("*.xml"))
    assert len(samples) >= 2, "the specs ship a cancellation and a partial-refund sample"
    for sample in samples:
        assert validator.errors(sample.read_bytes()) == [], sample.name


def test_a_wrong_reason_code_fails_validation_naming_the_message_and_order(xsd_dir):
    feed = build_cancellation_feed("A1EXAMPLESELLER", [
        CancelRequest("113-0000001-0000001", (CancelItem("10000000000011", "BuyerCanceled"),)),
        CancelRequest("113-0000002-0000002", (CancelItem("10000000000021", "BUYER_CANCELLED"),)),
    ])
    with pytest.raises(InvalidInput) as caught:
        FeedValidator(xsd_dir).check(feed)
    message = str(caught.value)
    assert "message 2 (order 113-0000002-0000002)" in message and "BUYER_CANCELLED" in message
    assert "message 1 " not in message


def test_client_refuses_to_build_an_invalid_adjustment(client, xsd_dir):
    with pytest.raises(InvalidInput, match="PriceError2"):
        client.build_adjustment_feed([AdjustmentRequest("113-0000003-0000003", (AdjustedItem("10000000000031", "PriceError2", (("Principal", Decimal("1")),)),))])


def test_cancellation_feed_round_trip_applies_good_messages_and_reports_bad_ones(sim, client, xsd_dir):
    feed = client.build_cancellation_feed([
        CancelRequest("113-0000001-0000001", (CancelItem("10000000000011", "BuyerCanceled"),), message_id=7),
        CancelRequest("113-0000004-0000004", (CancelItem("10000000000041", "NoInventory"),), message_id=8),  # shipped
        CancelRequest("113-0000099-0000099", (CancelItem("10000000000999", "NoInventory"),), message_id=9),  # unknown
    ])
    feed_id = client.submit_feed(feed)
    outcome = client.feed_outcome(feed_id, feed)
    assert outcome.processing_status == "DONE"
    assert outcome.results[7].success
    assert not outcome.results[8].success and "shipped" in outcome.results[8].description
    assert not outcome.results[9].success and outcome.results[9].error_code == "18028"
    cancelled = client.get_order("113-0000001-0000001")
    assert cancelled.status.value == "Canceled" and cancelled.cancel_reason == "BuyerCanceled"
    assert client.get_order("113-0000004-0000004").status.value == "Shipped"
    upload = next(e for e in sim.journal.entries() if e["method"] == "PUT")
    assert upload["content_type"] == "text/xml; charset=UTF-8"
    assert client.poll_orders(SINCE).orders  # the change bumped the order's last-update time
    notes = httpx.get(sim.base_url + "/_sim/notifications").json()
    assert any(n["Payload"]["OrderChangeNotification"]["AmazonOrderId"] == "113-0000001-0000001" for n in notes)


def test_partial_cancel_and_over_refund_through_the_adjustment_feed(client, xsd_dir):
    feed = client.build_adjustment_feed([
        AdjustmentRequest("113-0000002-0000002", (AdjustedItem("10000000000021", "NoInventory", (("Principal", Decimal("15.00")),), quantity_cancelled=1),)),
        AdjustmentRequest("113-0000004-0000004", (AdjustedItem("10000000000041", "CustomerReturn", (("Principal", Decimal("99.00")),)),)),
    ])
    outcome = client.feed_outcome(client.submit_feed(feed), feed)
    assert outcome.results[1].success
    assert not outcome.results[2].success and "exceeds" in outcome.results[2].description
    line = client.get_order("113-0000002-0000002").lines[0]
    assert (line.quantity_ordered, line.quantity_cancelled) == (3, 1)


def test_upload_with_another_content_type_is_refused(sim, client):
    token = client.tokens.token()
    document = httpx.post(sim.base_url + "/feeds/2021-06-30/documents", json={"contentType": "text/xml; charset=UTF-8"},
                          headers={"x-amz-access-token": token}).json()
    answer = httpx.put(document["url"], content=b"<x/>", headers={"Content-Type": "text/xml"})
    assert answer.status_code == 403 and b"SignatureDoesNotMatch" in answer.content


def test_processing_report_with_a_bad_result_still_reports_the_others():
    report = b"""<?xml version="1.0"?><AmazonEnvelope><Header><DocumentVersion>1.02</DocumentVersion><MerchantIdentifier>M</MerchantIdentifier></Header>
    <MessageType>ProcessingReport</MessageType><Message><MessageID>1</MessageID><ProcessingReport><DocumentTransactionID>1</DocumentTransactionID>
    <StatusCode>Complete</StatusCode><Result><MessageID>x</MessageID><ResultCode>Error</ResultCode><ResultMessageCode>1</ResultMessageCode><ResultDescription>?</ResultDescription></Result>
    <Result><MessageID>2</MessageID><ResultCode>Error</ResultCode><ResultMessageCode>18028</ResultMessageCode><ResultDescription>not found</ResultDescription></Result>
    </ProcessingReport></Message></AmazonEnvelope>"""
    outcome = parse_processing_report(report, "F1", [1, 2, 3])
    assert outcome.results[1].success and outcome.results[3].success and not outcome.results[2].success
    assert len(outcome.errors) == 1 and "Result #1" in str(outcome.errors[0]) and "'x'" in str(outcome.errors[0])
    with pytest.raises(InvalidInput, match="feed F2 is not XML"):
        parse_processing_report(b"oops", "F2", [1])


def test_a_fatal_feed_leaves_unlisted_messages_unknown_not_successful():
    report = b"""<?xml version="1.0"?><AmazonEnvelope><Header><DocumentVersion>1.02</DocumentVersion><MerchantIdentifier>M</MerchantIdentifier></Header>
    <MessageType>ProcessingReport</MessageType><Message><MessageID>1</MessageID><ProcessingReport><DocumentTransactionID>1</DocumentTransactionID>
    <StatusCode>Processing</StatusCode><Result><MessageID>2</MessageID><ResultCode>Error</ResultCode><ResultMessageCode>18028</ResultMessageCode>
    <ResultDescription>not found</ResultDescription></Result></ProcessingReport></Message></AmazonEnvelope>"""
    outcome = parse_processing_report(report, "F3", [1, 2], processing_status="FATAL")
    assert outcome.results[2].error_code == "18028"
    assert not outcome.results[1].success and outcome.results[1].error_code == "FeedFatal"
    assert "may or may not" in outcome.results[1].description


def test_a_feed_cancelled_before_processing_tells_every_message(sim, client, xsd_dir):
    feed = client.build_cancellation_feed([CancelRequest("113-0000002-0000002", (CancelItem("10000000000021", "NoInventory"),)),
                                           CancelRequest("113-0000003-0000003", (CancelItem("10000000000031", "NoInventory"),))])
    feed_id = client.submit_feed(feed)
    httpx.delete(f"{sim.base_url}/feeds/2021-06-30/feeds/{feed_id}",
                 headers={"x-amz-access-token": client.tokens.token()}).raise_for_status()
    outcome = client.feed_outcome(feed_id, feed)
    assert outcome.processing_status == "CANCELLED"
    assert {m: (r.success, r.error_code) for m, r in outcome.results.items()} == {1: (False, "FeedCancelled"), 2: (False, "FeedCancelled")}
    assert client.get_order("113-0000002-0000002").status.value == "Unshipped"  # nothing was applied


def test_missing_xsd_folder_is_a_clear_error(tmp_path: Path):
    from adapters.errors import PermanentError
    with pytest.raises(PermanentError, match="amzn-envelope.xsd is missing"):
        FeedValidator(tmp_path)
