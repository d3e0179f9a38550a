"""The fact: the one schema of what rules can read (field, type, allowed values).

The rule loader checks rule files against it, the engine checks every fact against it before a rule
sees it, `ordersync rules fields` prints it, and the README's table is generated from it. A fact is
flat: settings are dotted names (`settings.allow_over_refund`) so a rule names every field the same way.
"""
from __future__ import annotations

from collections import abc
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable, Mapping

# Kinds of value. Ordering comparisons (gt/gte/lt/lte) exist only for the numeric kinds.
ENUM, TEXT, INT, DECIMAL, NUMBER, BOOL = "enum", "text", "integer", "decimal", "number", "boolean"
NUMERIC_KINDS = frozenset({INT, DECIMAL, NUMBER})
# Within these bounds every amount is exact as a double too (15 significant digits), so durable_rules,
# which compares doubles, and the evaluator, which compares decimals, always agree.
MAX_DECIMAL_PLACES = 4
MAX_AMOUNT = 10**11

EVENTS = (
    "order_cancelled",         # Amazon says the order is cancelled (seller in Seller Central, buyer, or Amazon)
    "buyer_cancel_requested",  # the buyer asked to cancel; the seller must answer within 2 days
    "buyer_request_due",       # a buyer's request is 36 hours old: Amazon's and the storefront's state read again
    "cancel_requested",        # the seller cancelled in the storefront or in ordersync; Amazon must be told
    "return_reported",         # a row of Amazon's returns report (or a file a person handed over)
    "refund_requested",        # money is to go back (from Amazon, the storefront or an operator)
    "order_updated",           # anything else that changed on the order
    "cancellation_rejected",   # a person rejected a cancellation waiting in ordersync's approval queue
    "refund_rejected",         # a person rejected a refund on Amazon waiting in ordersync's approval queue
)

# Amazon's cancel reasons (OrderAcknowledgement.xsd) and adjustment reasons (OrderAdjustment.xsd).
CANCEL_REASONS = (
    "NoInventory", "ShippingAddressUndeliverable", "CustomerExchange", "BuyerCanceled", "GeneralAdjustment",
    "CarrierCreditDecision", "RiskAssessmentInformationNotValid", "CarrierCoverageFailure", "CustomerReturn",
    "MerchandiseNotReceived",
)
ADJUSTMENT_REASONS = (
    "NoInventory", "CustomerReturn", "GeneralAdjustment", "CouldNotShip", "DifferentItem", "Abandoned",
    "CustomerCancel", "PriceError", "ProductOutofStock", "CustomerAddressIncorrect", "Exchange", "Other",
    "CarrierCreditDecision", "RiskAssessmentInformationNotValid", "CarrierCoverageFailure", "TransactionRecord",
    "Undeliverable", "RefusedDelivery",
)
# PricingError is named by Seller Central's help (a reason that puts stock back) though not by the XSD.
REASON_CODES = tuple(dict.fromkeys(("",) + CANCEL_REASONS + ("PricingError",) + ADJUSTMENT_REASONS))


# amazon_cancellation's values (daemon.store.orders.Orders.amazon_cancellations gives every one but none).
AMAZON_CANCELLATIONS = ("none", "awaiting_approval", "on_its_way", "other_reason", "other_reason_on_its_way")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str
    description: str
    values: tuple[Any, ...] = ()   # allowed values, for ENUM
    default: Any = None            # filled in when a fact leaves the field out (settings only)
    personal: bool = False         # masked in the decision log
    derived_from: tuple[str, ...] = ()  # computed from these fields when the fact leaves it out

    @property
    def is_numeric(self) -> bool:
        return self.kind in NUMERIC_KINDS

    def describe_type(self) -> str:
        if self.kind == ENUM:
            return "one of " + ", ".join(repr(v) if v == "" else str(v) for v in self.values)
        return self.kind


def _settings(*specs: tuple[str, bool, str]) -> list[FieldSpec]:
    return [FieldSpec(f"settings.{name}", BOOL, text, default=default) for name, default, text in specs]


FIELDS: dict[str, FieldSpec] = {spec.name: spec for spec in [
    FieldSpec("event", ENUM, "what happened", EVENTS),
    FieldSpec("origin", ENUM, "where it started", ("amazon", "storefront", "operator")),
    FieldSpec("account", TEXT, "the seller account's name in the configuration"),
    FieldSpec("amazon_order_id", TEXT, "Amazon's order id, e.g. 112-0000000-0000000"),
    FieldSpec("storefront_order_id", TEXT, "the storefront's id of the mirrored order"),
    FieldSpec("fulfillment", ENUM, "FBA: Amazon ships; FBM: the merchant ships", ("FBA", "FBM")),
    FieldSpec("amazon_status", ENUM, "the order's status on Amazon", (
        "Pending", "Unshipped", "PartiallyShipped", "Shipped", "Canceled", "Unfulfillable",
        "InvoiceUnconfirmed", "PendingAvailability")),
    FieldSpec("shipping_status", ENUM, "the storefront order's shipping status", ("Unshipped", "PartiallyShipped", "Shipped")),
    FieldSpec("order_status", ENUM, "the storefront order's status", ("In Process", "On Hold", "Cancelled", "Completed")),
    FieldSpec("dropship_status", ENUM, "the storefront order's dropship status", ("None", "Pending", "Requested", "Processed")),
    FieldSpec("cancel_scope", ENUM, "full, or partial when only some lines or units are cancelled",
              ("full", "partial"), derived_from=("line_count", "lines_cancelled", "units_ordered", "units_cancelled")),
    FieldSpec("reason_code", ENUM, "Amazon's cancel or adjustment reason; '' when none was given", REASON_CODES),
    FieldSpec("buyer_cancel_reason", TEXT, "the buyer's own words when asking to cancel", personal=True),
    FieldSpec("line_count", INT, "lines on the order"),
    FieldSpec("lines_cancelled", INT, "lines with every unit cancelled"),
    FieldSpec("units_ordered", INT, "units ordered over all lines"),
    FieldSpec("units_cancelled", INT, "units cancelled over all lines"),
    FieldSpec("units_shipped", INT, "units shipped over all lines"),
    FieldSpec("cancelled_units_in_storefront", BOOL, "on a partial Amazon cancellation: the storefront order still has, on "
              "some SKU, more units to ship than Amazon left open (false when the cancelled units were refunded as "
              "unfulfilled or edited out)"),
    FieldSpec("order_total", DECIMAL, "the order's total"),
    FieldSpec("paid_total", DECIMAL, "what the buyer paid"),
    FieldSpec("refunded_total", DECIMAL, "what has been refunded so far"),
    FieldSpec("refund_amount", DECIMAL, "the refund being decided"),
    FieldSpec("refundable_amount", DECIMAL, "paid_total less refunded_total",
              derived_from=("paid_total", "refunded_total")),
    FieldSpec("amazon_refunded_total", DECIMAL, "on a refund Amazon made: what Amazon had refunded on the order in all "
              "(claims and chargebacks included), this refund included; on one made in the storefront: what Amazon had "
              "refunded when it was read"),
    FieldSpec("amazon_refunded_now", DECIMAL, "on a refund Amazon made: what Amazon has refunded on the order in all as "
              "far as read when deciding (refunds, claims and chargebacks read after this one included, a chargeback "
              "reversed taken off)"),
    # The values are adapters.amazon.models.REFUND_KINDS (tests/pipeline/test_amazon_refunds.py holds them
    # equal): the fact schema names no adapter, so the rules can be checked without one.
    FieldSpec("amazon_refund_kind", ENUM, "on a refund Amazon made: the Finances list it came from: refund (a person in "
              "Seller Central, Amazon on its own, or ordersync's own coming back), guarantee_claim (an A-to-z Guarantee "
              "claim Amazon granted the buyer), chargeback (the buyer's bank took the payment back; a negative "
              "refund_amount is a chargeback reversed, the payment the seller's again)",
              ("refund", "guarantee_claim", "chargeback")),
    FieldSpec("refund_missing_in_storefront", DECIMAL, "on a refund Amazon made: the part of it the storefront order "
              "does not record yet (amazon_refunded_total, or amazon_refunded_now when that is less, less refunded_total, "
              "at most refund_amount, at least 0)",
              derived_from=("origin", "refund_amount", "amazon_refunded_total", "amazon_refunded_now", "refunded_total")),
    FieldSpec("storefront_refunded_before", DECIMAL, "on a refund made in the storefront: what the storefront order showed "
              "refunded before it"),
    FieldSpec("refunds_on_their_way_to_amazon", DECIMAL, "on a refund made in the storefront: ordersync's own refunds of "
              "the order (sent or going out) that Amazon had not listed when it was read"),
    FieldSpec("refund_missing_on_amazon", DECIMAL, "on a refund made in the storefront: storefront_refunded_before less "
              "refunds_on_their_way_to_amazon, plus refund_amount, less amazon_refunded_total; refund_amount when the two "
              "agreed before it (a new refund), 0 when Amazon shows it (a person's copy of a refund Amazon made), "
              "anything else when they do not agree",
              derived_from=("origin", "refund_amount", "amazon_refunded_total", "storefront_refunded_before",
                            "refunds_on_their_way_to_amazon")),
    FieldSpec("storefront_refund_problem", TEXT, "on a refund made in the storefront: why it could not be checked "
              "against Amazon (Amazon did not give the order or its refunds, another currency, ...)"),
    FieldSpec("copies_ordersync_refund", BOOL, "on a refund made in the storefront: ordersync recorded a refund of the same "
              "amount on the order before it (a person's copy of it, most likely)"),
    FieldSpec("amazon_refundable", DECIMAL, "on a refund made in the storefront: what Amazon has left to refund of the "
              "order's items' price (their price less amazon_refunded_total): ordersync sends a storefront refund as item price"),
    FieldSpec("rma_status", ENUM, "the return's status in Amazon's returns report",
              ("Approved", "Pending", "Rejected", "Closed", "Completed", "Cancelled", "Other")),
    FieldSpec("has_kit_items", BOOL, "a returned SKU is a kit (a fixed bundle in Shopify); set on returns"),
    FieldSpec("storefront_cancel_reason", ENUM, "Shopify's reason for a cancellation made in the storefront ('' if none)",
              ("", "CUSTOMER", "DECLINED", "FRAUD", "INVENTORY", "STAFF", "OTHER")),
    FieldSpec("fulfillment_started", BOOL, "the storefront has begun fulfilling the order: a fulfillment order in "
              "progress (being packed, or taken by a fulfillment service) or units shipped"),
    FieldSpec("lines_requested", INT, "on a buyer's request and its reminder: the order's lines the buyer asked to cancel "
              "(Amazon flags them line by line; line_count when the whole order)"),
    FieldSpec("amazon_cancellation", ENUM, "on a buyer's request (when the account accepts them), on its reminder, on a "
              "cancellation made here and on a rejected one: ordersync's own cancellation of the order on Amazon: none; "
              "with the buyer's reason BuyerCanceled, awaiting_approval (in the approval queue) or on_its_way (going "
              "out in a feed, or sent and Amazon not showing the order cancelled yet); with another reason (which "
              "Amazon's rate counts), other_reason (in the approval queue) or other_reason_on_its_way",
              AMAZON_CANCELLATIONS),
    FieldSpec("do_not_send_to_amazon", BOOL, "the person cancelling asked not to tell Amazon (in the storefront: the tag do-not-send-to-amazon)"),
    FieldSpec("hours_since_request", NUMBER, "hours since the buyer asked to cancel (Amazon's window is 48)"),
    FieldSpec("buyer_requested_cancel", BOOL, "on a cancellation made here or in the storefront, and on a refund made "
              "here that gives units up: the buyer asked Amazon to cancel the order"),
    FieldSpec("cancellation_counts", BOOL, "on a cancellation made here or in the storefront, and on a refund made "
              "here that gives units up (Amazon hears of them as cancelled): Amazon's cancellation rate would count it "
              "(an FBM order of the last 7 days not counted yet, and not the answer to the buyer's request with reason "
              "BuyerCanceled)"),
    FieldSpec("cancellation_rate", NUMBER, "on a cancellation made here or in the storefront, and on a refund made here "
              "that gives units up: the account's cancellation rate in percent, as ordersync counts it: FBM orders of "
              "the last 7 days the seller cancelled (or some units of), other than for the buyer's request with "
              "BuyerCanceled, per 100 FBM orders of those 7 days (Amazon wants it under 2.5)"),
    FieldSpec("cancellation_rate_if_cancelled", NUMBER, "the cancellation_rate with this order cancelled on Amazon too "
              "(or some of its units)"),
    FieldSpec("cancellation_rate_orders", INT, "the FBM orders of the last 7 days that cancellation_rate_if_cancelled is counted over"),
    FieldSpec("rejection_reason", TEXT, "why a person rejected the cancellation or refund (`ordersync approvals reject --reason`)"),
    *_settings(
        ("sync_cancellations", True, "mirror Amazon cancellations in the storefront"),
        ("sync_storefront_cancellations", True, "tell Amazon of orders cancelled in the storefront"),
        ("sync_amazon_refunds", True, "record in the storefront the refunds Amazon made (in Seller Central, or on its own)"),
        ("sync_storefront_refunds", False, "tell Amazon of refunds a person made in the storefront (off unless asked for: "
                                           "see docs/operations.md, Refunds made in the Shopify admin)"),
        ("accept_buyer_requests", False, "answer buyers' cancellation requests without a person: an unshipped FBM order "
                                         "not started to ship is cancelled in both places with reason BuyerCanceled (see "
                                         "docs/operations.md, Buyer cancellation requests)"),
        ("allow_zero_out_inventory", False, "a NoInventory cancellation may zero out the item's inventory"),
        ("zero_out_all_bins", False, "zero-out covers every location (bin), not only the order's"),
        ("allow_cancel_without_amazon", False, "'do not send to Amazon' is allowed"),
        ("allow_over_refund", False, "refunds may exceed what the buyer paid"),
        ("queue_refunds_and_cancellations", False, "Amazon-bound cancellations and refunds go to a queue"),
        ("queue_auto_submit", False, "the queue is sent on a schedule without a person approving each"),
    ),
]}

SETTINGS = tuple(name for name in FIELDS if name.startswith("settings."))
PERSONAL_FIELDS = frozenset(name for name, spec in FIELDS.items() if spec.personal)


class FactError(ValueError):
    """A fact that does not fit the schema; `field` names the offending field."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def _derive_cancel_scope(fact: Mapping[str, Any]) -> str | None:
    lines, lines_cancelled = fact.get("line_count"), fact.get("lines_cancelled")
    units, units_cancelled = fact.get("units_ordered"), fact.get("units_cancelled")
    if lines is None and units is None:
        return None
    partial_lines = lines is not None and lines_cancelled is not None and lines_cancelled < lines
    partial_units = units is not None and units_cancelled is not None and units_cancelled < units
    return "partial" if (partial_lines or partial_units) else "full"


def _derive_refundable(fact: Mapping[str, Any]) -> Decimal | None:
    paid = fact.get("paid_total")
    if paid is None:
        return None
    return paid - fact.get("refunded_total", Decimal(0))


def _derive_refund_missing(fact: Mapping[str, Any]) -> Decimal | None:
    """Amazon's refunds are compared with the storefront's as totals, not one by one: the echo of a refund sent
    from here finds the storefront already showing it, and a refund made in Seller Central does not."""
    amazon = fact.get("amazon_refunded_total")
    amount = fact.get("refund_amount")
    if fact.get("origin") != "amazon" or amazon is None or amount is None:
        return None
    # Never more than Amazon shows now: a chargeback reversed since it was read gave nothing back in the end.
    now = fact.get("amazon_refunded_now")
    if now is not None and now < amazon:
        amazon = now
    return max(Decimal(0), min(amount, amazon - fact.get("refunded_total", Decimal(0))))


def _derive_refund_missing_on_amazon(fact: Mapping[str, Any]) -> Decimal | None:
    """The other way round, and not clipped: a refund a person made in the storefront is new when Amazon's total
    and the storefront's agreed before it (ordersync's own refunds Amazon has not listed yet aside), a copy of one
    Amazon made when Amazon's covers it, and anything else (a refund of Amazon's the storefront does not show) is
    a person's to sort out. Both totals are from the moment the refund was read, so they are compared as one."""
    amazon, amount = fact.get("amazon_refunded_total"), fact.get("refund_amount")
    before = fact.get("storefront_refunded_before")
    if fact.get("origin") != "storefront" or amazon is None or amount is None or before is None:
        return None
    return before - fact.get("refunds_on_their_way_to_amazon", Decimal(0)) + amount - amazon


DERIVATIONS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "cancel_scope": _derive_cancel_scope,
    "refundable_amount": _derive_refundable,
    "refund_missing_in_storefront": _derive_refund_missing,
    "refund_missing_on_amazon": _derive_refund_missing_on_amazon,
}


def _coerce(spec: FieldSpec, value: Any) -> Any:
    """The typed value, or FactError saying what the field takes. Never guesses across kinds:
    durable_rules compares a string and a number as text, so a "25" must never reach it as a number's peer."""
    kind = spec.kind
    if value is None:
        raise FactError(spec.name, f"null is not allowed; leave the field out, or give {spec.describe_type()}")
    if kind == BOOL:
        if isinstance(value, bool):
            return value
        raise FactError(spec.name, f"{value!r} is not true or false")
    if kind == INT:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise FactError(spec.name, f"{value} is negative; counts start at 0")
            return value
        raise FactError(spec.name, f"{value!r} is not a whole number")
    if kind in (DECIMAL, NUMBER):
        if isinstance(value, bool):
            raise FactError(spec.name, f"{value!r} is not a number")
        if isinstance(value, (int, float, Decimal)) or (isinstance(value, str) and kind == DECIMAL):
            try:
                number = Decimal(str(value))
            except InvalidOperation:
                raise FactError(spec.name, f"{value!r} is not a number (write it like 12.50)") from None
            if not number.is_finite():
                raise FactError(spec.name, f"{value!r} is not a finite number")
            if kind == DECIMAL and (number.as_tuple().exponent < -MAX_DECIMAL_PLACES or abs(number) >= MAX_AMOUNT):
                raise FactError(spec.name, f"{value!r} is outside what an amount can be: at most "
                                           f"{MAX_DECIMAL_PLACES} decimal places and less than {MAX_AMOUNT:,}")
            return number if kind == DECIMAL else float(number)
        raise FactError(spec.name, f"{value!r} is not a number")
    if not isinstance(value, str):
        raise FactError(spec.name, f"{value!r} is not text; {spec.describe_type()}")
    if kind == ENUM and value not in spec.values:
        raise FactError(spec.name, f"{value!r} is not allowed; {spec.describe_type()}{suggest(value, spec.values)}")
    return value


def suggest(word: str, candidates: Iterable[Any]) -> str:
    """'; did you mean X?' for the closest candidate, or ''."""
    import difflib

    texts = [str(c) for c in candidates]
    lowered = {t.lower(): t for t in texts}
    if isinstance(word, str) and word.lower() in lowered:
        return f"; did you mean {lowered[word.lower()]!r}?"
    close = difflib.get_close_matches(str(word), texts, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _amount(spec: FieldSpec, value: Any) -> Decimal:
    value_type = type(value)
    if value_type is str or value_type is int or value_type is Decimal:
        try:
            number = Decimal(value)
        except InvalidOperation:
            return _coerce(spec, value)
        if number.is_finite() and -MAX_AMOUNT < number < MAX_AMOUNT and number.as_tuple().exponent >= -MAX_DECIMAL_PLACES:
            return number
    return _coerce(spec, value)


# The common case of each kind is one type check inline in normalise (it runs for every fact);
# anything unusual goes through _coerce, which also words the error.
_CHECKS: dict[str, tuple[str, frozenset[Any], FieldSpec]] = {
    name: (spec.kind, frozenset(spec.values), spec) for name, spec in FIELDS.items()}
_SETTING_DEFAULTS = {name: FIELDS[name].default for name in SETTINGS}


def normalise(data: Mapping[str, Any]) -> dict[str, Any]:
    """A checked, typed, flat fact: unknown fields, wrong types and values outside the allowed ones raise
    FactError; settings left out take their defaults; derived fields left out are computed."""
    # collections.abc, not typing: isinstance against typing's alias costs a microsecond per call, per fact.
    if not isinstance(data, abc.Mapping):
        raise FactError(None, f"a fact is a JSON object of fields, not {type(data).__name__}")
    fact = dict(_SETTING_DEFAULTS)
    for name, value in data.items():
        if name == "settings" and isinstance(value, abc.Mapping):
            for setting, flag in value.items():
                key = f"settings.{setting}"
                if key not in _CHECKS:
                    raise FactError(key, f"unknown setting{suggest(setting, [s[9:] for s in SETTINGS])}; "
                                         f"settings are {', '.join(s[9:] for s in SETTINGS)}")
                fact[key] = flag if type(flag) is bool else _coerce(FIELDS[key], flag)
            continue
        check = _CHECKS.get(name)
        if check is None:
            raise FactError(name, f"unknown field{suggest(name, FIELDS)}; `ordersync rules fields` lists them")
        kind, allowed, spec = check
        value_type = type(value)
        if kind == ENUM:
            fact[name] = value if value_type is str and value in allowed else _coerce(spec, value)
        elif kind == TEXT:
            fact[name] = value if value_type is str else _coerce(spec, value)
        elif kind == INT:
            fact[name] = value if value_type is int and value >= 0 else _coerce(spec, value)
        elif kind == BOOL:
            fact[name] = value if value_type is bool else _coerce(spec, value)
        elif kind == DECIMAL:
            fact[name] = _amount(spec, value)
        else:
            fact[name] = _coerce(spec, value)
    if "event" not in data:
        raise FactError("event", f"every fact needs an event: {', '.join(EVENTS)}")
    for name, derive in DERIVATIONS.items():
        if name not in fact:
            value = derive(fact)
            if value is not None:
                fact[name] = value
    return fact


def jsonable(fact: Mapping[str, Any]) -> dict[str, Any]:
    """The fact as JSON can carry it: decimals as strings, so no money is rounded through a float."""
    return {name: (str(value) if isinstance(value, Decimal) else value) for name, value in fact.items()}
