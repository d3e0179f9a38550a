"""Feeds: build the XML order feeds (cancel: POST_ORDER_ACKNOWLEDGEMENT_DATA; refund / partial cancel:
POST_PAYMENT_ADJUSTMENT_DATA), check them against Amazon's XSD before anything is sent, submit them
(createFeedDocument → PUT → createFeed), wait for a terminal status, and read the processing report
back into one result per MessageID, so each queued item learns its own fate."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

from lxml import etree

from adapters.amazon.http import SpApiTransport
from adapters.amazon.models import FeedOutcome, MessageResult, RecordError
from adapters.errors import InvalidInput, PermanentError

CANCEL_FEED = "POST_ORDER_ACKNOWLEDGEMENT_DATA"
ADJUSTMENT_FEED = "POST_PAYMENT_ADJUSTMENT_DATA"
XML_CONTENT_TYPE = "text/xml; charset=UTF-8"
# A report or feed result is Amazon's text, but nothing we parse may fetch a DTD or expand entities.
_SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True)

XSD_ENV = "ORDERSYNC_SPAPI_XSD_DIR"
_DEFAULT_XSD_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "spapi" / "xsd"


def default_xsd_dir() -> Path:
    return Path(os.environ[XSD_ENV]) if os.environ.get(XSD_ENV) else _DEFAULT_XSD_DIR


_LOCK = threading.Lock()  # a shared XMLSchema keeps one error_log


@lru_cache(maxsize=4)
def _schema(path: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(path))


class FeedValidator:
    """amzn-envelope.xsd, loaded once. A feed that does not validate is never sent."""

    def __init__(self, xsd_dir: str | Path | None = None) -> None:
        self.xsd_dir = Path(xsd_dir) if xsd_dir else default_xsd_dir()
        envelope = self.xsd_dir / "amzn-envelope.xsd"
        if not envelope.is_file():
            raise PermanentError(
                f"Amazon feed schemas not found: {envelope} is missing. Feeds are checked against "
                f"amzn-envelope.xsd before sending; set ${XSD_ENV} to the folder of the SP-API feed XSDs "
                f"(AmazonAccount.xsd_dir when the adapter is used on its own)."
            )
        try:
            self._schema = _schema(str(envelope))
        except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
            # lxml names the file that is missing or broken (amzn-envelope.xsd includes several).
            raise PermanentError(
                f"Amazon feed schemas in {self.xsd_dir} do not load: {exc}. Copy the whole XSD folder of the "
                f"SP-API feed schemas (release 4.1) there, or point ${XSD_ENV} at one."
            ) from None

    def errors(self, content: bytes) -> list[str]:
        """Readable schema errors, each naming the MessageID (and order) it sits in."""
        try:
            doc = etree.fromstring(content)
        except etree.XMLSyntaxError as exc:
            return [f"the feed is not well-formed XML: {exc}"]
        with _LOCK:
            if self._schema.validate(doc):
                return []
            schema_errors = list(self._schema.error_log)
        # Map each error's line back to the message that contains it.
        spans = []
        for message in doc.findall("Message"):
            spans.append((message.sourceline or 0, message.findtext("MessageID"), message.findtext(".//AmazonOrderID")))
        result = []
        for error in schema_errors:
            owner = next(((mid, oid) for line, mid, oid in reversed(spans) if line <= error.line), None)
            where = f"message {owner[0]} (order {owner[1]})" if owner else f"line {error.line}"
            result.append(f"{where}: {error.message}")
        return result

    def check(self, feed: "BuiltFeed") -> None:
        problems = self.errors(feed.content)
        if problems:
            raise InvalidInput(f"{feed.feed_type} feed does not validate against amzn-envelope.xsd: " + "; ".join(problems))


# -- what the daemon asks for ------------------------------------------------------------------------
@dataclass(frozen=True)
class CancelItem:
    order_item_code: str
    reason: str  # an OrderAcknowledgement CancelReason, e.g. BuyerCanceled, NoInventory
    merchant_order_item_id: str | None = None


@dataclass(frozen=True)
class CancelRequest:
    """Cancel these items of one order (all items for a full cancellation)."""

    amazon_order_id: str
    items: tuple[CancelItem, ...]
    message_id: int | None = None
    merchant_order_id: str | None = None


@dataclass(frozen=True)
class AdjustedItem:
    order_item_code: str
    reason: str  # an OrderAdjustment AdjustmentReason, e.g. CustomerReturn, NoInventory, CustomerCancel
    components: tuple[tuple[str, Decimal], ...] = ()  # (Principal|Shipping|Tax|…, amount)
    quantity_cancelled: int | None = None
    quantity: int | None = None
    merchant_adjustment_item_id: str | None = None


@dataclass(frozen=True)
class AdjustmentRequest:
    """A refund (or a partial cancellation, with quantity_cancelled) of items of one order."""

    amazon_order_id: str
    items: tuple[AdjustedItem, ...]
    currency: str = "USD"
    action_type: Literal["Refund", "Cancel"] | None = "Refund"
    message_id: int | None = None


@dataclass(frozen=True)
class BuiltFeed:
    feed_type: str
    content: bytes
    content_type: str
    # MessageID → the order it concerns, so results can be matched back to queued items.
    messages: dict[int, str] = field(default_factory=dict)


def _message_ids(requests: Sequence[Any]) -> list[int]:
    ids, taken = [], {r.message_id for r in requests if r.message_id is not None}
    if len(taken) != len([r for r in requests if r.message_id is not None]):
        raise InvalidInput("two items of one feed have the same message_id; each item needs its own MessageID")
    counter = 1
    for request in requests:
        if request.message_id is not None:
            if request.message_id <= 0:
                raise InvalidInput(f"order {request.amazon_order_id}: message_id must be a positive integer")
            ids.append(request.message_id)
            continue
        while counter in taken:
            counter += 1
        ids.append(counter)
        taken.add(counter)
    return ids


def _envelope(merchant_id: str, message_type: str) -> etree._Element:
    xsi = "http://www.w3.org/2001/XMLSchema-instance"
    root = etree.Element("AmazonEnvelope", nsmap={"xsi": xsi})
    root.set(f"{{{xsi}}}noNamespaceSchemaLocation", "amzn-envelope.xsd")
    header = etree.SubElement(root, "Header")
    etree.SubElement(header, "DocumentVersion").text = "1.01"
    etree.SubElement(header, "MerchantIdentifier").text = merchant_id
    etree.SubElement(root, "MessageType").text = message_type
    return root


def _sub(parent: etree._Element, tag: str, text: Any) -> etree._Element:
    element = etree.SubElement(parent, tag)
    element.text = str(text)
    return element


def _serialise(root: etree._Element) -> bytes:
    # Pretty-printed so schema errors carry a line that maps to one message.
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _build(merchant_id: str, feed_type: str, message_type: str, requests: Iterable[Any],
           fill: Callable[[etree._Element, Any], None]) -> BuiltFeed:
    """One Message per request, numbered by `_message_ids`; `fill` writes the request's body element."""
    requests = list(requests)
    if not requests:
        raise InvalidInput(f"a {feed_type} feed needs at least one order")
    root = _envelope(merchant_id, message_type)
    messages = {}
    for message_id, request in zip(_message_ids(requests), requests):
        message = etree.SubElement(root, "Message")
        _sub(message, "MessageID", message_id)
        fill(etree.SubElement(message, message_type), request)
        messages[message_id] = request.amazon_order_id
    return BuiltFeed(feed_type, _serialise(root), XML_CONTENT_TYPE, messages)


def _cancellation(ack: etree._Element, request: CancelRequest) -> None:
    _sub(ack, "AmazonOrderID", request.amazon_order_id)
    if request.merchant_order_id:
        _sub(ack, "MerchantOrderID", request.merchant_order_id)
    _sub(ack, "StatusCode", "Failure")
    for item in request.items:
        element = etree.SubElement(ack, "Item")
        _sub(element, "AmazonOrderItemCode", item.order_item_code)
        if item.merchant_order_item_id:
            _sub(element, "MerchantOrderItemID", item.merchant_order_item_id)
        _sub(element, "CancelReason", item.reason)


def build_cancellation_feed(merchant_id: str, requests: Iterable[CancelRequest]) -> BuiltFeed:
    """POST_ORDER_ACKNOWLEDGEMENT_DATA: StatusCode Failure with a CancelReason per item, one message per order."""
    return _build(merchant_id, CANCEL_FEED, "OrderAcknowledgement", requests, _cancellation)


def _amount(value: Decimal | str | int) -> str:
    # BaseCurrencyAmount wants exactly two fraction digits.
    return f"{Decimal(str(value)).quantize(Decimal('0.01'))}"


def _adjustment(adjustment: etree._Element, request: AdjustmentRequest) -> None:
    _sub(adjustment, "AmazonOrderID", request.amazon_order_id)
    if request.action_type:
        _sub(adjustment, "ActionType", request.action_type)
    for item in request.items:
        element = etree.SubElement(adjustment, "AdjustedItem")
        _sub(element, "AmazonOrderItemCode", item.order_item_code)
        if item.merchant_adjustment_item_id:
            _sub(element, "MerchantAdjustmentItemID", item.merchant_adjustment_item_id)
        _sub(element, "AdjustmentReason", item.reason)
        if item.components:
            prices = etree.SubElement(element, "ItemPriceAdjustments")
            for kind, amount in item.components:
                component = etree.SubElement(prices, "Component")
                _sub(component, "Type", kind)
                try:
                    _sub(component, "Amount", _amount(amount)).set("currency", request.currency)
                except ArithmeticError:
                    raise InvalidInput(
                        f"order {request.amazon_order_id}, item {item.order_item_code}: amount {amount!r} is not a number"
                    ) from None
        if item.quantity_cancelled is not None:
            _sub(element, "QuantityCancelled", item.quantity_cancelled)
        if item.quantity is not None:
            _sub(element, "Quantity", item.quantity)


def build_adjustment_feed(merchant_id: str, requests: Iterable[AdjustmentRequest]) -> BuiltFeed:
    """POST_PAYMENT_ADJUSTMENT_DATA: refunds and partial cancellations, one message per order."""
    return _build(merchant_id, ADJUSTMENT_FEED, "OrderAdjustment", requests, _adjustment)


# -- the processing report ----------------------------------------------------------------------------
def parse_processing_report(data: bytes, feed_id: str, message_ids: Iterable[int], processing_status: str = "DONE") -> FeedOutcome:
    """One MessageResult per message we sent. Messages the report does not mention succeeded (Amazon
    lists only errors and warnings), unless the feed ended FATAL without a Complete report: then nobody
    knows, and each such message says so. A Result that cannot be read is a RecordError; the rest count."""
    try:
        root = etree.fromstring(data, _SAFE_XML)
    except etree.XMLSyntaxError as exc:
        raise InvalidInput(f"processing report of feed {feed_id} is not XML: {exc}") from None
    report = root if root.tag == "ProcessingReport" else root.find(".//ProcessingReport")
    if report is None:
        raise InvalidInput(f"processing report of feed {feed_id} has no ProcessingReport element")
    status_code = report.findtext("StatusCode")
    processed = report.findtext("ProcessingSummary/MessagesProcessed")
    errors: list[RecordError] = []
    found: dict[int, MessageResult] = {}
    for index, result in enumerate(report.findall("Result"), start=1):
        raw_id = (result.findtext("MessageID") or "").strip()
        if not raw_id.isdigit():
            errors.append(RecordError(f"feed {feed_id} report Result #{index}", f"MessageID {raw_id!r} is not a number"))
            continue
        message_id = int(raw_id)
        code = result.findtext("ResultCode")
        entry = MessageResult(
            message_id=message_id,
            success=code != "Error",
            result_code=code,
            error_code=result.findtext("ResultMessageCode"),
            description=result.findtext("ResultDescription"),
            amazon_order_id=result.findtext("AdditionalInfo/AmazonOrderID"),
            order_item_code=result.findtext("AdditionalInfo/AmazonOrderItemCode"),
        )
        previous = found.get(message_id)
        # A message can have several Results; one Error makes the message failed.
        if previous is None or (previous.success and not entry.success):
            found[message_id] = entry
    rejected = status_code == "Rejected"
    unknown = processing_status == "FATAL" and status_code != "Complete"
    results = {}
    for message_id in message_ids:
        if message_id in found:
            results[message_id] = found[message_id]
        elif rejected:
            results[message_id] = MessageResult(message_id, False, "Error", "Rejected", "the whole feed was rejected")
        elif unknown:
            results[message_id] = MessageResult(message_id, False, "Error", "FeedFatal",
                                                f"feed {feed_id} ended FATAL; this message may or may not have been applied")
        else:
            results[message_id] = MessageResult(message_id, True)
    return FeedOutcome(feed_id, processing_status, status_code, results,
                       int(processed) if processed and processed.isdigit() else None, errors)


class FeedsApi:
    def __init__(self, transport: SpApiTransport, marketplace_ids: list[str], validator: FeedValidator | None = None,
                 *, poll_interval: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self._t = transport
        self._marketplaces = marketplace_ids
        self._validator = validator
        self._poll_interval = poll_interval
        self._sleep = sleep

    def submit(self, feed: BuiltFeed) -> str:
        """Validate, upload and create the feed; returns Amazon's feed id."""
        (self._validator or FeedValidator()).check(feed)
        created = self._t.call("createFeedDocument", "POST", "/feeds/2021-06-30/documents",
                               json_body={"contentType": feed.content_type}, context=f"{feed.feed_type} document").body
        if not isinstance(created, dict) or not created.get("feedDocumentId") or not created.get("url"):
            raise InvalidInput("Amazon createFeedDocument: the answer has no feedDocumentId and url")
        self._t.upload(created["url"], feed.content, feed.content_type, f"{feed.feed_type} document {created['feedDocumentId']}")
        body = {"feedType": feed.feed_type, "marketplaceIds": self._marketplaces,
                "inputFeedDocumentId": created["feedDocumentId"]}
        answer = self._t.call("createFeed", "POST", "/feeds/2021-06-30/feeds", json_body=body, context=feed.feed_type).body
        if not isinstance(answer, dict) or not answer.get("feedId"):
            raise InvalidInput("Amazon createFeed: the answer has no feedId")
        return str(answer["feedId"])

    def wait(self, feed_id: str, timeout: float = 3600.0) -> dict[str, Any]:
        return self._t.wait_until_done("getFeed", f"/feeds/2021-06-30/feeds/{feed_id}", f"feed {feed_id}",
                                       timeout=timeout, interval=self._poll_interval)

    def outcome(self, feed_id: str, feed: BuiltFeed | Iterable[int], timeout: float = 3600.0) -> FeedOutcome:
        """Wait for the feed to finish and say, per MessageID, what happened."""
        message_ids = list(feed.messages) if isinstance(feed, BuiltFeed) else list(feed)
        info = self.wait(feed_id, timeout)
        status = info["processingStatus"]
        document_id = info.get("resultFeedDocumentId")
        if status == "CANCELLED" or not document_id:
            # CANCELLED: nothing applied. FATAL without a report: unknown, so each message says so and the
            # daemon must look at the order before trying again.
            code = "FeedCancelled" if status == "CANCELLED" else "FeedFatalNoReport"
            results = {m: MessageResult(m, False, "Error", code, f"feed {feed_id} ended {status} with no processing report")
                       for m in message_ids}
            return FeedOutcome(feed_id, status, None, results)
        data = self._t.document("getFeedDocument", f"/feeds/2021-06-30/documents/{document_id}",
                                f"processing report of feed {feed_id}")
        return parse_processing_report(data, feed_id, message_ids, status)
