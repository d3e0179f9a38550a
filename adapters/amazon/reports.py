"""Reports: request, poll, download (gunzip when compressed) and parse the two reports the daemon reads:
the all-orders-by-last-update flat file (for buyer cancellation requests) and the returns report, XML or
TSV (for RMAs). `parse_returns_file` reads a returns file a person hands over, with the same parser.

Every bad row becomes a RecordError naming the file or report, the row and the field; the other rows are
still returned."""
from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

import structlog
from lxml import etree

from adapters.amazon.http import SpApiTransport, maybe_gunzip
from adapters.amazon.models import BuyerCancelRow, Parsed, RecordError, ReturnItem, ReturnRow
from adapters.errors import InvalidInput, TransientError

log = structlog.get_logger("ordersync.amazon.reports")

ORDERS_BY_LAST_UPDATE = "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL"
RETURNS_XML = "GET_XML_RETURNS_DATA_BY_RETURN_DATE"
RETURNS_TSV = "GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE"

BUYER_CANCEL_COLUMN = "is-buyer-requested-cancellation"
BUYER_REASON_COLUMN = "buyer-requested-cancel-reason"
MISSING_BUYER_COLUMNS_NOTICE = (
    "the order report has no 'is-buyer-requested-cancellation' column, so buyer cancellation requests "
    "cannot be read from it: the seller must turn on the 'Buyer requested cancel' columns in Seller Central "
    "(Orders > Order Reports > column settings). Polling the Orders API still sees the requests."
)

_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0", ""}


def _text(data: bytes | str) -> str:
    if isinstance(data, bytes):
        data = maybe_gunzip(data, None)
        for encoding in ("utf-8-sig", "cp1252"):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                continue
        return data.decode("latin-1")
    return data.lstrip("\ufeff")


def _bool(value: str | None, where: str, column: str, errors: list[RecordError]) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    errors.append(RecordError(where, f"field {column}: {value!r} is not true or false"))
    return None


def _tsv(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    lines = [line for line in text.splitlines()]
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return [], []
    header = [column.strip() for column in lines[0].split("\t")]
    rows = [(number, line.split("\t")) for number, line in enumerate(lines[1:], start=2) if line.strip()]
    return header, rows


# -- the all-orders flat file ---------------------------------------------------------------------
def parse_order_report(data: bytes | str, source: str = "order report") -> Parsed[BuyerCancelRow]:
    """Rows of the all-orders-by-last-update flat file, one per order item, with the buyer-cancel columns.

    When the report lacks the buyer-cancel column the rows still come back (flag False) with one notice."""
    parsed: Parsed[BuyerCancelRow] = Parsed()
    header, rows = _tsv(_text(data))
    if not header:
        return parsed
    index = {name.lower(): position for position, name in enumerate(header)}
    if "amazon-order-id" not in index:
        raise InvalidInput(f"{source}: no 'amazon-order-id' column in the header; is this the all-orders flat file?")
    has_flag = BUYER_CANCEL_COLUMN in index
    if not has_flag:
        parsed.notices.append(MISSING_BUYER_COLUMNS_NOTICE)
    for number, cells in rows:
        order_id = cells[index["amazon-order-id"]].strip() if len(cells) > index["amazon-order-id"] else ""
        where = f"{source} row {number}" + (f" (order {order_id})" if order_id else "")
        if len(cells) < len(header):
            missing = header[len(cells):]
            parsed.errors.append(RecordError(where, f"missing column(s) {', '.join(missing)}: the row has {len(cells)} of {len(header)} fields"))
            continue
        if not order_id:
            parsed.errors.append(RecordError(where, "field amazon-order-id: empty"))
            continue

        def cell(name: str) -> str | None:
            position = index.get(name)
            value = cells[position].strip() if position is not None else None
            return value or None

        row_errors: list[RecordError] = []
        flag = _bool(cell(BUYER_CANCEL_COLUMN) or "", where, BUYER_CANCEL_COLUMN, row_errors) if has_flag else False
        quantity_text = cell("quantity")
        quantity = None
        if quantity_text is not None:
            if quantity_text.isdigit():
                quantity = int(quantity_text)
            else:
                row_errors.append(RecordError(where, f"field quantity: {quantity_text!r} is not a whole number"))
        if row_errors:
            parsed.errors.extend(row_errors)
            continue
        parsed.records.append(
            BuyerCancelRow(
                row=number,
                amazon_order_id=order_id,
                order_item_id=cell("order-item-id"),
                sku=cell("sku"),
                order_status=cell("order-status"),
                quantity=quantity,
                buyer_cancel_requested=bool(flag),
                buyer_cancel_reason=cell(BUYER_REASON_COLUMN) if flag else None,
                last_updated=cell("last-updated-date"),
                fulfillment_channel=cell("fulfillment-channel"),
            )
        )
    return parsed


# -- the returns report ---------------------------------------------------------------------------
_ALIASES = {
    "amazon_rma_id": "rma_id",
    "rma_id": "rma_id",
    "order_id": "order_id",
    "amazon_order_id": "order_id",
    "return_request_status": "status",
    "status": "status",
    "merchant_sku": "sku",
    "seller_sku": "sku",
    "sku": "sku",
    "return_quantity": "quantity",
    "quantity": "quantity",
    "return_reason": "reason",
    "return_reason_code": "reason",
    "tracking_id": "tracking",
    "tracking_number": "tracking",
    "return_carrier": "carrier",
    "label_type": "label_type",
    "label_cost": "label_cost",
    "currency_code": "currency",
    "currency": "currency",
    "label_to_be_paid_by": "label_paid_by",
    "a_to_z_claim": "a_to_z_claim",
    "is_prime": "is_prime",
    "asin": "asin",
    "item_name": "item_name",
    "in_policy": "in_policy",
    "resolution": "resolution",
    "return_request_date": "return_request_date",
    "order_date": "order_date",
    "merchant_rma_id": "merchant_rma_id",
    "seller_rma_id": "merchant_rma_id",
    "refunded_amount": "refund_amount",
    "refund_amount": "refund_amount",
    "order_item_id": "order_item_id",
    "order_item_code": "order_item_id",
}


def _key(name: str) -> str:
    return _ALIASES.get(re.sub(r"[\s\-]+", "_", name.strip().lower()), "")


def _decimal(value: str | None, where: str, field: str, errors: list[RecordError]) -> Decimal | None:
    if value is None or value.strip() == "":
        return None
    try:
        amount = Decimal(value.strip())
        if amount.is_finite():
            return amount
    except InvalidOperation:
        pass
    errors.append(RecordError(where, f"field {field}: {value!r} is not a number"))
    return None


def _item(fields: dict[str, str], where: str, errors: list[RecordError]) -> ReturnItem | None:
    quantity_text = (fields.get("quantity") or "").strip()
    if not quantity_text:
        errors.append(RecordError(where, "field return quantity: missing"))
        return None
    if not quantity_text.isdigit() or int(quantity_text) <= 0:
        errors.append(RecordError(where, f"field return quantity: {quantity_text!r} is not a positive whole number"))
        return None
    local: list[RecordError] = []
    item = ReturnItem(
        sku=fields.get("sku") or None,
        asin=fields.get("asin") or None,
        quantity=int(quantity_text),
        reason=fields.get("reason") or None,
        order_item_id=fields.get("order_item_id") or None,
        item_name=fields.get("item_name") or None,
        in_policy=_bool(fields.get("in_policy"), where, "in policy", local) if fields.get("in_policy") else None,
        resolution=fields.get("resolution") or None,
        refund_amount=_decimal(fields.get("refund_amount"), where, "refunded amount", local),
    )
    if local:
        errors.extend(local)
        return None
    return item


def _header(fields: dict[str, str], where: str, errors: list[RecordError]) -> ReturnRow | None:
    missing = [name for name, key in (("Amazon RMA ID", "rma_id"), ("Order ID", "order_id")) if not fields.get(key)]
    if missing:
        errors.append(RecordError(where, f"field(s) {', '.join(missing)}: missing"))
        return None
    local: list[RecordError] = []
    row = ReturnRow(
        rma_id=fields["rma_id"],
        amazon_order_id=fields["order_id"],
        status=fields.get("status") or None,
        items=(),
        tracking_number=fields.get("tracking") or None,
        carrier=fields.get("carrier") or None,
        label_type=fields.get("label_type") or None,
        label_cost=_decimal(fields.get("label_cost"), where, "label cost", local),
        label_paid_by=fields.get("label_paid_by") or None,
        currency=fields.get("currency") or None,
        return_request_date=fields.get("return_request_date") or None,
        order_date=fields.get("order_date") or None,
        merchant_rma_id=fields.get("merchant_rma_id") or None,
        a_to_z_claim=_bool(fields.get("a_to_z_claim"), where, "A-to-z claim", local) if fields.get("a_to_z_claim") else None,
        is_prime=_bool(fields.get("is_prime"), where, "is prime", local) if fields.get("is_prime") else None,
    )
    if local:
        errors.extend(local)
        return None
    return row


def _returns_tsv(text: str, source: str) -> Parsed[ReturnRow]:
    parsed: Parsed[ReturnRow] = Parsed()
    header, rows = _tsv(text)
    if not header:
        return parsed
    keys = [_key(name) for name in header]
    for required, label in (("rma_id", "Amazon RMA ID"), ("order_id", "Order ID"), ("quantity", "Return quantity")):
        if required not in keys:
            raise InvalidInput(f"{source}: no '{label}' column in the header; is this a returns report?")
    grouped: "OrderedDict[str, ReturnRow]" = OrderedDict()
    for number, cells in rows:
        fields = {key: cells[i].strip() for i, key in enumerate(keys) if key and i < len(cells)}
        where = f"{source} row {number}" + (f" (RMA {fields['rma_id']})" if fields.get("rma_id") else "")
        if len(cells) < len(header):
            parsed.errors.append(RecordError(where, f"missing column(s) {', '.join(header[len(cells):])}"))
            continue
        head = _header(fields, where, parsed.errors)
        item = _item(fields, where, parsed.errors) if head else None
        if head is None or item is None:
            continue
        existing = grouped.get(head.rma_id)
        if existing is None:
            grouped[head.rma_id] = replace(head, items=(item,), source_rows=(number,))
        else:
            grouped[head.rma_id] = replace(existing, items=existing.items + (item,), source_rows=existing.source_rows + (number,))
    parsed.records = list(grouped.values())
    return parsed


def _flat_fields(element: etree._Element) -> dict[str, str]:
    return {_key(child.tag): (child.text or "").strip() for child in element
            if isinstance(child.tag, str) and len(child) == 0 and _key(child.tag)}


def _returns_xml(text: str, source: str) -> Parsed[ReturnRow]:
    parsed: Parsed[ReturnRow] = Parsed()
    try:
        # No DTD fetching or entity expansion: a handed-over file is not to be trusted.
        root = etree.fromstring(text.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise InvalidInput(f"{source}: looks like XML but is not well-formed: {exc}") from None
    # A return is any element that directly holds an RMA id; its items are child elements holding a quantity.
    records = [el for el in root.iter() if isinstance(el.tag, str) and any(
        isinstance(c.tag, str) and _key(c.tag) == "rma_id" for c in el)]
    for number, element in enumerate(records, start=1):
        fields = _flat_fields(element)
        where = f"{source} return #{number}" + (f" (RMA {fields['rma_id']})" if fields.get("rma_id") else "")
        head = _header(fields, where, parsed.errors)
        if head is None:
            continue
        item_elements = [c for c in element if isinstance(c.tag, str) and len(c) and "quantity" in _flat_fields(c)]
        items = []
        sources = item_elements or ([element] if "quantity" in fields else [])
        if not sources:
            parsed.errors.append(RecordError(where, "no item with a return quantity"))
            continue
        bad = False
        for position, source_element in enumerate(sources, start=1):
            item_fields = {**fields, **_flat_fields(source_element)} if source_element is not element else fields
            item = _item(item_fields, f"{where} item {position}", parsed.errors)
            if item is None:
                bad = True
                continue
            items.append(item)
        if bad and not items:
            continue
        parsed.records.append(replace(head, items=tuple(items), source_rows=(number,)))
    return parsed


def parse_returns_report(data: bytes | str, source: str = "returns report", fmt: str | None = None) -> Parsed[ReturnRow]:
    """A returns report → RMA rows, one per RMA. `fmt` "XML" or "TSV" when the caller knows which it asked
    for; None detects it from the content (a file a person hands over)."""
    text = _text(data)
    stripped = text.lstrip()
    looks_xml = stripped.startswith("<")
    if fmt is not None and fmt.upper() == "XML" and not looks_xml:
        first = stripped[:40].splitlines()[0] if stripped else ""
        raise InvalidInput(f"{source}: an XML returns report was expected but this is not XML (it starts {first!r})")
    if looks_xml:
        return _returns_xml(stripped, source)
    return _returns_tsv(text, source)


def parse_returns_file(path: str | Path) -> Parsed[ReturnRow]:
    """A returns report a person downloaded from Seller Central (XML, TSV, or either gzipped)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"returns file {path}: cannot read it ({exc.strerror})") from None
    try:
        return parse_returns_report(data, source=f"returns file {path}")
    except (OSError, EOFError) as exc:
        raise InvalidInput(f"returns file {path}: cannot decompress it ({exc})") from None


class ReportsApi:
    def __init__(self, transport: SpApiTransport, marketplace_ids: list[str], *, poll_interval: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._t = transport
        self._marketplaces = marketplace_ids
        self._poll_interval = poll_interval
        self._sleep = sleep
        # The seller is told once that the buyer-cancel columns are off, not on every poll; if they are
        # turned on and later off again, that is news and is told again.
        self._told_columns_missing = False

    def request(self, report_type: str, start: str | None = None, end: str | None = None) -> str:
        body: dict[str, Any] = {"reportType": report_type, "marketplaceIds": self._marketplaces}
        if start:
            body["dataStartTime"] = start
        if end:
            body["dataEndTime"] = end
        answer = self._t.call("createReport", "POST", "/reports/2021-06-30/reports", json_body=body, context=report_type).body
        if not isinstance(answer, dict) or not answer.get("reportId"):
            raise InvalidInput(f"Amazon createReport {report_type}: the answer has no reportId")
        return str(answer["reportId"])

    def wait(self, report_id: str, timeout: float = 3600.0) -> dict[str, Any]:
        return self._t.wait_until_done("getReport", f"/reports/2021-06-30/reports/{report_id}", f"report {report_id}",
                                       timeout=timeout, interval=self._poll_interval)

    def download(self, report_document_id: str) -> bytes:
        return self._t.document("getReportDocument", f"/reports/2021-06-30/documents/{report_document_id}",
                                f"report document {report_document_id}")

    def fetch(self, report_type: str, start: str | None = None, end: str | None = None, timeout: float = 3600.0) -> bytes | None:
        """Request, wait and download; None when Amazon had no data (CANCELLED)."""
        report_id = self.request(report_type, start, end)
        report = self.wait(report_id, timeout)
        status = report["processingStatus"]
        if status == "CANCELLED":
            return None
        if status == "FATAL" or not report.get("reportDocumentId"):
            raise TransientError(f"Amazon report {report_id} ({report_type}) ended {status}; request it again later")
        return self.download(report["reportDocumentId"])

    def buyer_cancel_requests(self, since: str, timeout: float = 3600.0) -> Parsed[BuyerCancelRow]:
        data = self.fetch(ORDERS_BY_LAST_UPDATE, start=since, timeout=timeout)
        if not data:
            return Parsed()
        parsed = parse_order_report(data, source=f"{ORDERS_BY_LAST_UPDATE} since {since}")
        missing = MISSING_BUYER_COLUMNS_NOTICE in parsed.notices
        if missing and self._told_columns_missing:
            parsed.notices.remove(MISSING_BUYER_COLUMNS_NOTICE)
        elif missing:
            log.warning("order_report_buyer_columns_missing", notice=MISSING_BUYER_COLUMNS_NOTICE)
        self._told_columns_missing = missing
        return parsed

    def returns(self, since: str, fmt: str = "XML", timeout: float = 3600.0) -> Parsed[ReturnRow]:
        report_type = RETURNS_XML if fmt.upper() == "XML" else RETURNS_TSV
        data = self.fetch(report_type, start=since, timeout=timeout)
        return parse_returns_report(data, source=f"{report_type} since {since}", fmt=fmt) if data else Parsed()
