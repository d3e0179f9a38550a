"""Finances v0: the money Amazon gave back to buyers, read from listFinancialEvents for a posting window, or
from listFinancialEventsByOrderId for one order, so a refund done in Seller Central, or by our own adjustment
feed, can be seen as money that actually went back. Three lists of `FinancialEvents` carry such money, all of
the ShipmentEvent shape, and all three are read: `RefundEventList` (refunds), `GuaranteeClaimEventList`
(A-to-z Guarantee claims Amazon granted) and `ChargebackEventList` (chargebacks, and their reversals, whose
charge adjustments are positive: the money came back to the seller, so the buyer's side of it is negative).
Each becomes an AmazonRefund whose `kind` names its list; reading refunds alone would miss a claim or a
chargeback, and a refund made on top of one would give the buyer the money twice. Each refund keeps the
MarketplaceName Amazon wrote; `of_marketplaces` tells a caller whether it is one of the account's marketplaces.

Money here is `{CurrencyCode, CurrencyAmount}` with the amount a JSON number, not text as elsewhere in the
SP-API; it is read exactly, through its decimal text. A bad event (no order id, a time or amount that cannot
be read, …) becomes a RecordError naming its list, the event and the field; the others are still returned."""
from __future__ import annotations

from datetime import timezone
from decimal import Decimal
from typing import Any, Iterable
from urllib.parse import quote

from adapters.amazon.http import SpApiTransport
from adapters.amazon.models import AmazonRefund, AmazonRefundItem, Parsed, RecordError
from adapters.amazon.orders import _Fields
from adapters.errors import InvalidInput

OPERATION = "listFinancialEvents"
PATH = "/finances/v0/financialEvents"
BY_ORDER_OPERATION = "listFinancialEventsByOrderId"
BY_ORDER_PATH = "/finances/v0/orders/{orderId}/financialEvents"
PAGE_SIZE = "100"  # the documented maximum: fewer calls against a rate of one every two seconds

# The FinancialEvents lists read, as (list name, AmazonRefund.kind, what a RecordError calls one of its events),
# in the order that breaks ties when sorting.
EVENT_LISTS: tuple[tuple[str, str, str], ...] = (
    ("RefundEventList", "refund", "refund event"),
    ("GuaranteeClaimEventList", "guarantee_claim", "guarantee claim event"),
    ("ChargebackEventList", "chargeback", "chargeback event"),
)
_KIND_ORDER = {kind: rank for rank, (_, kind, _) in enumerate(EVENT_LISTS)}

# SP-API marketplace id -> the MarketplaceName Finances events carry. The ids are Amazon's published table
# (developer-docs.amazon.com/sp-api/docs/marketplace-ids); that table names countries, and Finances writes
# the storefront's name ("Amazon.com", "Amazon.co.uk"), which is what is kept here.
MARKETPLACE_NAMES: dict[str, str] = {
    # North America
    "ATVPDKIKX0DER": "Amazon.com",
    "A2EUQ1WTGCTBG2": "Amazon.ca",
    "A1AM78C64UM0Y8": "Amazon.com.mx",
    "A2Q3Y263D00KWC": "Amazon.com.br",
    # Europe
    "A28R8C7NBKEWEA": "Amazon.ie",
    "A1RKKUPIHCS9HS": "Amazon.es",
    "A1F83G8C2ARO7P": "Amazon.co.uk",
    "A13V1IB3VIYZZH": "Amazon.fr",
    "AMEN7PMS3EDWL": "Amazon.com.be",
    "A1805IZSGTT6HS": "Amazon.nl",
    "A1PA6795UKMFR9": "Amazon.de",
    "APJ6JRA9NG5V4": "Amazon.it",
    "A2NODRKZP88ZB9": "Amazon.se",
    "AE08WJ6YKNBMC": "Amazon.co.za",
    "A1C3SOZRARQ6R3": "Amazon.pl",
    "ARBP9OOSHTCHU": "Amazon.eg",
    "A33AVAJ2PDY3EV": "Amazon.com.tr",
    "A17E79C6D8DWNP": "Amazon.sa",
    "A2VIGQ35RCS4UG": "Amazon.ae",
    "A21TJRUUN4KGV": "Amazon.in",
    # Far East
    "A19VAU5U5O7RUS": "Amazon.sg",
    "A39IBJ37TRP1C6": "Amazon.com.au",
    "A1VC38T7YXB528": "Amazon.co.jp",
}
_KNOWN_NAMES = {name.casefold() for name in MARKETPLACE_NAMES.values()}


def posting_order(refund: AmazonRefund) -> tuple[str, str, int]:
    """The order refunds are listed and counted in: by posting time, then order, then kind (refund, claim,
    chargeback), so a claim and a refund posted together come out in one order whatever page each was on."""
    return refund.posted, refund.amazon_order_id, _KIND_ORDER[refund.kind]


def of_marketplaces(refund: AmazonRefund, marketplace_ids: Iterable[str]) -> bool:
    """Whether a refund may belong to one of `marketplace_ids` (the account's): False only when its
    MarketplaceName is a known marketplace's name and that marketplace is not one of them.

    Finances events of a seller account come from every marketplace it sells in, and cannot be asked for
    one marketplace only, so a caller drops the other marketplaces' refunds with this. An event without a
    name, or with a name we do not know (a non-Amazon marketplace of multi-channel fulfilment, a storefront
    opened after this table was written, a spelling Amazon changed), is kept: we cannot tell whose it is,
    and dropping it would lose a refund that was really made, which is worse than looking at one too many."""
    name = (refund.marketplace or "").strip().casefold()
    if not name or name not in _KNOWN_NAMES:
        return True
    wanted = {MARKETPLACE_NAMES[i].casefold() for i in marketplace_ids if i in MARKETPLACE_NAMES}
    return name in wanted


class _EventFields(_Fields):
    """`_Fields` whose errors name the field path from the event down; the RecordError names the event."""

    def __init__(self, prefix: str = "") -> None:
        super().__init__("")
        self.prefix = prefix

    def fail(self, path: str, message: str) -> InvalidInput:
        return InvalidInput(f"field {self.prefix}{path}: {message}")

    def within(self, path: str) -> "_EventFields":
        return _EventFields(f"{self.prefix}{path}.")

    def objects(self, data: Any, path: str, required: bool = False) -> list[dict[str, Any]]:
        """A list of objects; an absent optional list is empty."""
        value = self.get(data, path, required=required)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"is a {type(value).__name__}, not a list")
        for index, entry in enumerate(value):
            if not isinstance(entry, dict):
                raise self.fail(f"{path}[{index}]", f"is a {type(entry).__name__}, not an object")
        return value


def _identifier(f: _EventFields, raw: dict[str, Any], path: str) -> str:
    value = f.get(raw, path)
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "":
        raise f.fail(path, "missing" if value in (None, "") else f"{value!r} is not an identifier")
    return str(value)


def _posted(f: _EventFields, raw: dict[str, Any]) -> str:
    """PostedDate as UTC text to the second, one format whatever Amazon sent, so it sorts and keys alike."""
    moment = f.time(raw, "PostedDate")
    if moment is None:
        raise f.fail("PostedDate", "missing")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # Finances dates are UTC; one without an offset is too
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _currency_amount(f: _EventFields, component: dict[str, Any], path: str) -> tuple[Decimal, str | None]:
    """A `Currency` object's amount, exactly, and its code."""
    value = f.get(component, f"{path}.CurrencyAmount", required=True)
    # A bool is an int to Python, and text would mean Amazon changed the shape: neither is read as money.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise f.fail(f"{path}.CurrencyAmount", f"{value!r} is not a number")
    amount = Decimal(str(value))  # str() gives the number's shortest text, so 0.1 stays 0.1, not its binary float
    if not amount.is_finite():
        raise f.fail(f"{path}.CurrencyAmount", f"{value!r} is not a number")
    code = f.get(component, f"{path}.CurrencyCode")
    return amount, (str(code) if code else None)


def _refund_item(f: _EventFields, raw: dict[str, Any], currencies: dict[str, str]) -> AmazonRefundItem:
    """One ShipmentItemAdjustmentList entry; `currencies` collects each amount's code by its field path."""
    item_id = _identifier(f, raw, "OrderItemId")
    total = Decimal(0)
    for list_name, amount_name in (("ItemChargeAdjustmentList", "ChargeAmount"), ("PromotionAdjustmentList", "PromotionAmount")):
        for index, component in enumerate(f.objects(raw, list_name)):
            path = f"{list_name}[{index}]"
            amount, code = _currency_amount(f.within(path), component, amount_name)
            total += amount
            if code:
                currencies[f"{f.prefix}{path}.{amount_name}.CurrencyCode"] = code
    sku = f.get(raw, "SellerSKU")
    adjustment_id = f.get(raw, "OrderAdjustmentItemId")
    return AmazonRefundItem(
        order_item_id=item_id,
        sku=str(sku) if sku else None,
        adjustment_id=str(adjustment_id) if adjustment_id else None,
        quantity=f.integer(raw, "QuantityShipped", default=0),
        # The events carry what went back negative, so the buyer's side of it is positive; a chargeback
        # reversal carries positive adjustments (money back to the seller), so its buyer's side is negative.
        amount=-total,
    )


def _one_currency(currencies: dict[str, str]) -> str | None:
    codes = sorted(set(currencies.values()))
    if len(codes) > 1:
        # Summing dollars and euros would be wrong; a person must look at such an event.
        first = next(iter(currencies.values()))
        odd_path, odd = next((path, code) for path, code in currencies.items() if code != first)
        raise InvalidInput(f"field {odd_path}: {odd!r} differs from {first!r} elsewhere in the event")
    return codes[0] if codes else None


def parse_refund_event(raw: Any, *, kind: str = "refund") -> AmazonRefund:
    """One RefundEvent, GuaranteeClaimEvent or ChargebackEvent (the ShipmentEvent shape, `kind` says which
    list it came from, one of REFUND_KINDS: another is AmazonRefund's ValueError) → AmazonRefund; InvalidInput
    names the field path."""
    f = _EventFields()
    if not isinstance(raw, dict):
        raise InvalidInput(f"is a {type(raw).__name__}, not an object")
    order_id = _identifier(f, raw, "AmazonOrderId")
    posted = _posted(f, raw)
    items_raw = f.objects(raw, "ShipmentItemAdjustmentList", required=True)
    if not items_raw:
        # Without items the money cannot be put against any order line, and the event has no identity.
        raise f.fail("ShipmentItemAdjustmentList", "is empty")
    currencies: dict[str, str] = {}
    items = tuple(_refund_item(f.within(f"ShipmentItemAdjustmentList[{index}]"), item, currencies)
                  for index, item in enumerate(items_raw))
    marketplace = f.get(raw, "MarketplaceName")
    if not isinstance(marketplace, str) or not marketplace.strip():
        marketplace = None  # absent, empty or not text: the refund names no marketplace (of_marketplaces keeps it)
    return AmazonRefund(
        amazon_order_id=order_id,
        posted=posted,
        currency=_one_currency(currencies),
        items=items,
        marketplace=marketplace,
        kind=kind,
    )


def _raw_order_id(raw: Any) -> str | None:
    """The AmazonOrderId of an event that could not be read, when it has one that is an identifier."""
    value = raw.get("AmazonOrderId") if isinstance(raw, dict) else None
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "":
        return None
    return str(value)


def _event_ref(raw: Any, page: int, index: int, what: str = "refund event") -> str:
    """Where a bad event is: `what` names its list ("guarantee claim event"), `index` counts within that list."""
    order_id = _raw_order_id(raw)
    order = f" (order {order_id})" if order_id else ""
    return f"{what} #{index + 1} on page {page}{order}"


def _read_page(body: Any, where: str) -> tuple[dict[str, list[Any]], str | None]:
    """The events of each list in EVENT_LISTS, by list name, and the next token of one answer; InvalidInput
    names what is not as documented."""
    payload = body.get("payload") if isinstance(body, dict) else None
    if not isinstance(payload, dict):
        raise InvalidInput(f"{where}: the answer has no payload object")
    events = payload.get("FinancialEvents")
    if events is None:
        events = {}  # optional in the model: a page without events
    if not isinstance(events, dict):
        raise InvalidInput(f"{where}: field payload.FinancialEvents is a {type(events).__name__}, not an object")
    lists = {}
    for name, _, _ in EVENT_LISTS:
        found = events.get(name)
        if found is None:
            found = []  # Amazon may leave out an empty list
        if not isinstance(found, list):
            raise InvalidInput(f"{where}: field payload.FinancialEvents.{name} is a {type(found).__name__}, not a list")
        lists[name] = found
    token = payload.get("NextToken")
    if token is not None and not isinstance(token, str):
        raise InvalidInput(f"{where}: field payload.NextToken is a {type(token).__name__}, not text")
    return lists, token or None  # "present and not empty" means another page


class FinancesApi:
    """Finances v0 for one seller account: refunds, guarantee claims and chargebacks posted in a time window,
    or every one of one order."""

    MAX_PAGES = 1000  # a runaway pagination loop must end; 100 000 refunds in one window is far beyond a poll

    def __init__(self, transport: SpApiTransport) -> None:
        self._t = transport

    def refunds(self, posted_after: str, posted_before: str) -> Parsed[AmazonRefund]:
        """Every refund, guarantee claim and chargeback event posted in [posted_after, posted_before), sorted
        by (posted, order id), then kind in the order of REFUND_KINDS.

        Amazon refuses a posted_before less than two minutes before the request (InvalidInput naming
        PostedBefore), and posts events late (up to 48 hours, it says): a caller polls windows that end in
        the past and overlap, and de-duplicates by `AmazonRefund.key`. If a page fails the whole call
        raises, so no window is half read."""
        window = f"refunds posted from {posted_after} to before {posted_before}"
        params = {"PostedAfter": posted_after, "PostedBefore": posted_before, "MaxResultsPerPage": PAGE_SIZE}
        return self._read_refunds(OPERATION, PATH, params, window)

    def refunds_of_order(self, order_id: str) -> Parsed[AmazonRefund]:
        """Every refund, guarantee claim and chargeback event of one order, whenever it was posted, sorted as
        `refunds` sorts: listFinancialEventsByOrderId. Amazon says events of the last 48 hours might not be in
        it yet. Like `refunds`, a bad event is a RecordError and a failed page makes the whole call raise."""
        if not isinstance(order_id, str) or not order_id.strip():
            raise InvalidInput(f"Amazon {BY_ORDER_OPERATION}: {order_id!r} is not an order id")
        path = BY_ORDER_PATH.replace("{orderId}", quote(order_id, safe=""))
        return self._read_refunds(BY_ORDER_OPERATION, path, {"MaxResultsPerPage": PAGE_SIZE}, f"refunds of order {order_id}")

    def _read_refunds(self, operation: str, path: str, params: dict[str, str], what: str) -> Parsed[AmazonRefund]:
        """Every page of one Finances listing (NextToken followed), the events of its EVENT_LISTS parsed and sorted."""
        parsed: Parsed[AmazonRefund] = Parsed()
        for page in range(1, self.MAX_PAGES + 1):
            context = f"page {page} of {what}"
            body = self._t.call(operation, "GET", path, params=params, context=context).body
            lists, token = _read_page(body, f"Amazon {operation} {context}")
            for name, kind, label in EVENT_LISTS:
                self._parse_list(parsed, lists[name], kind, label, page)
            if not token:
                break
            # The token is only valid with the same arguments, so they are repeated as they were.
            params = {**params, "NextToken": token}
        else:
            # Returning what was read would look like a complete listing and lose the rest for good.
            raise InvalidInput(f"Amazon {operation} for {what}: still a NextToken after {self.MAX_PAGES} pages")
        parsed.records.sort(key=posting_order)
        return parsed

    @staticmethod
    def _parse_list(parsed: Parsed[AmazonRefund], events: list[Any], kind: str, label: str, page: int) -> None:
        """One list's events into `parsed`: records, or RecordErrors naming the list, the event and the field."""
        for index, raw in enumerate(events):
            try:
                parsed.records.append(parse_refund_event(raw, kind=kind))
            except InvalidInput as exc:
                parsed.errors.append(RecordError(_event_ref(raw, page, index, label), exc.message, _raw_order_id(raw)))
