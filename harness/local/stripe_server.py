"""A Stripe-compatible HTTP server for the tests, the demo and the benchmark.

The real ``stripe`` SDK talks to it unchanged (``base_addresses={"api": server.url}``), so the job's
Stripe adapter is exercised end to end: form-encoded params, bearer auth, ``Idempotency-Key`` headers,
Stripe's error bodies (which the SDK maps onto its own exception classes) and broken connections.

It keeps a ledger of successful charges so a test can assert "charged exactly once", and it can add
latency, rate limiting and faults, including the one that matters most for exactly-once payments:
the charge happens but the response never reaches the client (``Fault("drop_after")``).

Stdlib only. Run it standalone for ``sam local invoke`` with::

    python -m harness.local.stripe_server --port 12111 --latency-ms 40 --jitter-ms 20

Nothing here logs API keys, request bodies or customer data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import signal
import threading
import time
import uuid
import zlib
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, MappingProxyType
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlsplit

from harness.local.server_thread import ServingThread, TracksConnections

logger = logging.getLogger(__name__)

type JsonObject = dict[str, Any]
type Params = dict[str, Any]
type FaultKind = Literal[
    "http_500", "http_503", "http_400_parameter_unknown", "lock_timeout", "drop_before", "drop_after", "delay"
]
type PaymentMethodOutcome = Literal["succeeded", "authentication_required"] | tuple[str, str | None]

FAULT_KINDS: Final = frozenset(
    {
        "http_500",
        "http_503",
        "http_400_parameter_unknown",
        "lock_timeout",
        "drop_before",
        "drop_after",
        "delay",
    }
)
DEFAULT_REQUEST_LOG_SIZE: Final = 10_000
API_KEY_PREFIXES: Final = ("sk_test_", "rk_test_")
MAX_AMOUNT: Final = 99_999_999
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
MAX_METADATA_KEYS: Final = 50
MAX_METADATA_KEY_LENGTH: Final = 40
MAX_METADATA_VALUE_LENGTH: Final = 500
DEFAULT_PAGE_SIZE: Final = 10
MAX_PAGE_SIZE: Final = 100

# Kept separate from donation_processor.currencies on purpose: the fake must not agree with the code
# under test just because it imports the same list.
STRIPE_CURRENCIES: Final = frozenset(
    """
    aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp byn bzd cad cdf
    chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd gnf gtq gyd hkd hnl htg
    huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk
    mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub
    rwf sar sbd scr sek sgd shp sle sos srd std szl thb tjs tnd top try ttd twd tzs uah ugx usd uyu uzs vnd
    vuv wst xaf xcd xcg xof xpf yer zar zmw
    """.split()  # noqa: SIM905 - a 160-line list literal would bury the module
)

RATE_LIMIT_MESSAGE: Final = (
    "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests."
)
LOCK_TIMEOUT_MESSAGE: Final = (
    "This object cannot be accessed right now because another API request or Stripe process is currently "
    "accessing it. If you see this error intermittently, retry the request."
)
IDEMPOTENCY_MISMATCH_MESSAGE: Final = (
    "Keys for idempotent requests can only be used with the same parameters they were first used with. "
    "Try using a key other than '{key}' if you meant to execute a different request."
)
IDEMPOTENCY_IN_USE_MESSAGE: Final = (
    "There is currently another in-progress request using this Idempotent Key (that probably means you "
    "submitted twice, and the other request is still going through): {key}. Please try again later."
)
CONFIRMABLE_STATUSES: Final = ("requires_confirmation", "requires_action", "requires_payment_method")


# --------------------------------------------------------------------------------------------------
# Public value types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault, consumed by the first request matching ``method`` and ``path_prefix``.

    Kinds: ``http_500``/``http_503`` (api_error, nothing executed), ``http_400_parameter_unknown`` (the
    answer an API-version or account-configuration mismatch gives every request: invalid_request_error,
    code parameter_unknown, nothing executed or stored under the key), ``lock_timeout`` (429, nothing
    executed), ``drop_before`` (connection closed, nothing executed), ``drop_after`` (request executed
    and its idempotent result stored, then the connection is closed without a response) and ``delay``
    (sleep ``delay_ms`` first, then proceed normally).
    """

    kind: FaultKind
    path_prefix: str = "/v1/payment_intents"
    method: str = "POST"
    delay_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if self.delay_ms < 0:
            raise ValueError("delay_ms must not be negative")

    def matches(self, method: str, path: str) -> bool:
        return method == self.method.upper() and path.startswith(self.path_prefix)

    @property
    def executes_request(self) -> bool:
        return self.kind in ("drop_after", "delay")


@dataclass(frozen=True, slots=True)
class ChargeRecord:
    """A successful charge, as the ledger saw it. ``metadata`` is a read-only mapping."""

    payment_intent_id: str
    charge_id: str
    amount: int
    currency: str
    customer: str | None
    payment_method: str
    metadata: Mapping[str, str]
    idempotency_key: str | None
    created: int


@dataclass(frozen=True, slots=True)
class RequestLogEntry:
    """One served request. ``status`` is 0 when the connection was dropped without a response."""

    method: str
    path: str
    status: int
    timestamp: float


# --------------------------------------------------------------------------------------------------
# Errors in Stripe's wire format
# --------------------------------------------------------------------------------------------------


class _ApiError(Exception):
    """An error response. ``executed`` marks results Stripe would store for idempotent replay."""

    def __init__(
        self,
        status: int,
        error: JsonObject,
        *,
        executed: bool = False,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(error.get("message", ""))
        self.status = status
        self.error = error
        self.executed = executed
        self.headers = tuple(headers)


def _invalid_request(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> _ApiError:
    error: JsonObject = {"type": "invalid_request_error", "message": message}
    if param is not None:
        error["param"] = param
    if code is not None:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    return _ApiError(status, error)


def _missing_payment_method() -> _ApiError:
    return _invalid_request(
        "You cannot confirm this PaymentIntent because it's missing a payment method. Specify a payment "
        "method attached to the customer along with the customer ID.",
        code="payment_intent_unexpected_state",
    )


def _resource_missing(kind: str, object_id: str, *, param: str, status: int) -> _ApiError:
    return _invalid_request(
        f"No such {kind}: '{object_id}'", param=param, code="resource_missing", status=status
    )


# --------------------------------------------------------------------------------------------------
# Payment-method behaviour (Stripe's test PaymentMethod shortcuts)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Decline:
    code: str
    decline_code: str | None
    message: str
    param: str | None = None


type _Behaviour = Literal["succeeded", "authentication_required"] | _Decline

_DECLINE_MESSAGES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "generic_decline": "Your card was declined.",
        "insufficient_funds": "Your card has insufficient funds.",
        "lost_card": "Your card was declined.",
        "stolen_card": "Your card was declined.",
        "fraudulent": "Your card was declined.",
        "expired_card": "Your card has expired.",
        "processing_error": "An error occurred while processing your card. Try again in a little bit.",
        "incorrect_cvc": "Your card's security code is incorrect.",
        "authentication_required": "Your card was declined. This transaction requires authentication.",
    }
)


def _decline(code: str, decline_code: str | None, *, param: str | None = None) -> _Decline:
    message = _DECLINE_MESSAGES.get(decline_code or code, "Your card was declined.")
    return _Decline(code, decline_code, message, param)


_OFF_SESSION_AUTHENTICATION_DECLINE: Final = _decline("authentication_required", "authentication_required")

_TEST_PAYMENT_METHODS: Final[Mapping[str, _Behaviour]] = MappingProxyType(
    {
        "pm_card_visa": "succeeded",
        "pm_card_visa_debit": "succeeded",
        "pm_card_mastercard": "succeeded",
        "pm_card_amex": "succeeded",
        "pm_card_discover": "succeeded",
        "pm_card_chargeDeclined": _decline("card_declined", "generic_decline"),
        "pm_card_chargeDeclinedInsufficientFunds": _decline("card_declined", "insufficient_funds"),
        "pm_card_chargeDeclinedLostCard": _decline("card_declined", "lost_card"),
        "pm_card_chargeDeclinedStolenCard": _decline("card_declined", "stolen_card"),
        "pm_card_chargeDeclinedFraudulent": _decline("card_declined", "fraudulent"),
        "pm_card_chargeDeclinedExpiredCard": _decline("expired_card", "expired_card", param="exp_month"),
        "pm_card_chargeDeclinedProcessingError": _decline("processing_error", "processing_error"),
        "pm_card_chargeDeclinedIncorrectCvc": _decline("incorrect_cvc", "incorrect_cvc", param="cvc"),
        "pm_card_authenticationRequired": "authentication_required",
        "pm_card_authenticationRequiredOnSetup": "authentication_required",
    }
)


def _behaviour_from_outcome(outcome: PaymentMethodOutcome) -> _Behaviour:
    if outcome == "succeeded" or outcome == "authentication_required":
        return outcome
    if isinstance(outcome, tuple) and len(outcome) == 2 and isinstance(outcome[0], str):
        return _decline(outcome[0], outcome[1])
    raise ValueError(f"unsupported payment method outcome {outcome!r}")


# --------------------------------------------------------------------------------------------------
# Form parsing and parameter validation
# --------------------------------------------------------------------------------------------------

_FORM_KEY: Final = re.compile(r"(?P<base>[^\[\]]+)(?P<rest>(?:\[[^\[\]]*\])*)")
_FORM_SEGMENT: Final = re.compile(r"\[([^\[\]]*)\]")


def parse_form(encoded: str) -> Params:
    """Decode Stripe's form encoding (``a[b]=c``, ``a[b][c]=d``, ``a[0]=x``, ``a[]=x``) into nested dicts.

    Arrays stay dicts keyed by index strings; ``_string_list`` turns them into lists where a list
    is expected, so a metadata key that happens to be "0" is not mistaken for an array.
    """
    root: Params = {}
    for raw_key, value in parse_qsl(encoded, keep_blank_values=True, strict_parsing=False):
        match = _FORM_KEY.fullmatch(raw_key)
        if match is None:
            raise _invalid_request(f"Invalid parameter name: {raw_key[:100]}")
        segments = [match["base"], *_FORM_SEGMENT.findall(match["rest"])]
        _assign(root, segments, value, raw_key)
    return root


def _assign(node: Params, segments: list[str], value: str, raw_key: str) -> None:
    for position, segment in enumerate(segments):
        # "a[]" appends, like Rack and Stripe do.
        key = segment if segment else str(len(node))
        if position == len(segments) - 1:
            if isinstance(node.get(key), dict):
                raise _invalid_request(f"Invalid parameter: {raw_key[:100]} mixes a value and an object")
            node[key] = value
            return
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise _invalid_request(f"Invalid parameter: {raw_key[:100]} mixes a value and an object")
        node = child


def _reject_unknown(params: Params, allowed: frozenset[str]) -> None:
    for name in params:
        if name not in allowed:
            raise _invalid_request(
                f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
            )


def _optional_string(params: Params, name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _invalid_request(f"Invalid string: {name}", param=name, code="parameter_invalid_string")
    return value


def _required_string(params: Params, name: str) -> str:
    value = _optional_string(params, name)
    if value is None:
        raise _invalid_request(f"Missing required param: {name}.", param=name, code="parameter_missing")
    return value


def _boolean(params: Params, name: str) -> bool:
    value = _optional_string(params, name)
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise _invalid_request(f"Invalid boolean: {value[:40]}", param=name, code="parameter_invalid_boolean")


def _off_session(params: Params) -> bool:
    # Stripe also takes "one_off" / "recurring" here; both mean the customer is not present.
    value = _optional_string(params, "off_session")
    if value in ("one_off", "recurring"):
        return True
    return _boolean(params, "off_session")


def _amount(params: Params) -> int:
    raw = _required_string(params, "amount")
    if not raw.isdecimal():
        raise _invalid_request(
            f"Invalid integer: {raw[:40]}", param="amount", code="parameter_invalid_integer"
        )
    amount = int(raw)
    if amount < 1:
        raise _invalid_request(
            "This value must be greater than or equal to 1.", param="amount", code="parameter_invalid_integer"
        )
    if amount > MAX_AMOUNT:
        raise _invalid_request(
            "Amount must be no more than 99999999.", param="amount", code="amount_too_large"
        )
    return amount


def _currency(params: Params) -> str:
    # Stripe accepts any case and answers in lower case.
    currency = _required_string(params, "currency").lower()
    if currency not in STRIPE_CURRENCIES:
        raise _invalid_request(
            f"Invalid currency: {currency[:10]}. Stripe currently supports these currencies: "
            + ", ".join(sorted(STRIPE_CURRENCIES)),
            param="currency",
        )
    return currency


def _page_size(params: Params) -> int:
    raw = _optional_string(params, "limit")
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isdecimal() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise _invalid_request(
            f"This value must be between 1 and {MAX_PAGE_SIZE}.",
            param="limit",
            code="parameter_invalid_integer",
        )
    return int(raw)


def _metadata(params: Params) -> dict[str, str]:
    raw = params.get("metadata")
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise _invalid_request("Invalid object", param="metadata", code="parameter_invalid_object")
    if len(raw) > MAX_METADATA_KEYS:
        raise _invalid_request(
            f"Metadata can have up to {MAX_METADATA_KEYS} keys.",
            param="metadata",
            code="parameter_invalid_object",
        )
    metadata: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise _invalid_request(
                "Invalid string", param=f"metadata[{key}]", code="parameter_invalid_string"
            )
        if len(key) > MAX_METADATA_KEY_LENGTH or len(value) > MAX_METADATA_VALUE_LENGTH:
            raise _invalid_request(
                "Metadata keys are limited to 40 characters and values to 500.",
                param=f"metadata[{key}]",
                code="parameter_invalid_string",
            )
        # An empty value means "unset" in Stripe, so it never shows up on the object.
        if value:
            metadata[key] = value
    return metadata


def _string_list(params: Params, name: str) -> list[str] | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not isinstance(raw, dict) or not all(key.isdecimal() for key in raw):
        raise _invalid_request("Invalid array", param=name, code="parameter_invalid_array")
    values = [raw[key] for key in sorted(raw, key=int)]
    if not all(isinstance(value, str) for value in values):
        raise _invalid_request("Invalid array", param=name, code="parameter_invalid_array")
    return values


def _automatic_payment_methods(params: Params) -> JsonObject | None:
    raw = params.get("automatic_payment_methods")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _invalid_request(
            "Invalid object", param="automatic_payment_methods", code="parameter_invalid_object"
        )
    settings: JsonObject = {"enabled": _boolean(raw, "enabled")}
    allow_redirects = _optional_string(raw, "allow_redirects")
    if allow_redirects is not None:
        settings["allow_redirects"] = allow_redirects
    return settings


# --------------------------------------------------------------------------------------------------
# Stripe search query syntax (the subset the job needs)
# --------------------------------------------------------------------------------------------------

_SEARCH_TERM: Final = re.compile(
    r"""\s*(?:metadata\[(?P<key_quote>['"])(?P<key>[^'"]+)(?P=key_quote)\]|(?P<field>[a-z_]+))"""
    r"""\s*:\s*(?P<value_quote>['"])(?P<value>[^'"]*)(?P=value_quote)\s*"""
)
_SEARCH_AND: Final = re.compile(r"AND\s+")
_SEARCHABLE_FIELDS: Final = frozenset({"status", "customer", "currency"})


@dataclass(frozen=True, slots=True)
class _SearchTerm:
    field: str
    value: str
    metadata_key: str | None = None


def parse_search_query(query: str) -> list[_SearchTerm]:
    """Parse ``metadata['k']:'v' AND status:'succeeded'`` (single or double quotes, AND only)."""
    terms: list[_SearchTerm] = []
    position = 0
    while True:
        match = _SEARCH_TERM.match(query, position)
        if match is None:
            raise _invalid_request(
                "The local Stripe server supports queries like metadata['key']:'value' joined with AND.",
                param="query",
            )
        terms.append(_search_term(match))
        position = match.end()
        if position == len(query):
            return terms
        conjunction = _SEARCH_AND.match(query, position)
        if conjunction is None:
            raise _invalid_request("Search clauses must be joined with AND.", param="query")
        position = conjunction.end()


def _search_term(match: re.Match[str]) -> _SearchTerm:
    if match["key"] is not None:
        return _SearchTerm("metadata", match["value"], match["key"])
    if match["field"] not in _SEARCHABLE_FIELDS:
        raise _invalid_request(f"Field '{match['field']}' is not searchable here.", param="query")
    return _SearchTerm(match["field"], match["value"])


# --------------------------------------------------------------------------------------------------
# The objects and the store (not thread-safe: FakeStripeState holds its lock around every call)
# --------------------------------------------------------------------------------------------------


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _now() -> int:
    return int(time.time())


@dataclass(slots=True)
class _Customer:
    id: str
    created: int
    metadata: dict[str, str]

    def to_json(self) -> JsonObject:
        # email/name/etc. are accepted but never stored: the fake holds no personal data.
        return {
            "id": self.id,
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": self.created,
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "email": None,
            "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None},
            "livemode": False,
            "metadata": dict(self.metadata),
            "name": None,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }


def _payment_method_json(payment_method: str, customer: str | None) -> JsonObject:
    return {
        "id": payment_method,
        "object": "payment_method",
        "customer": customer,
        "livemode": False,
        "metadata": {},
        "type": "card",
    }


@dataclass(slots=True)
class _PaymentIntent:
    """Slotted rather than a dict so a 100k-charge benchmark keeps the fake's memory modest."""

    id: str
    amount: int
    currency: str
    customer: str | None
    created: int
    metadata: dict[str, str]
    description: str | None
    payment_method: str | None
    payment_method_types: list[str]
    automatic_payment_methods: JsonObject | None
    status: str
    latest_charge: str | None = None
    last_payment_error: JsonObject | None = None
    next_action: JsonObject | None = None

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": 0,
            "amount_received": self.amount if self.status == "succeeded" else 0,
            "automatic_payment_methods": self.automatic_payment_methods,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic_async",
            "client_secret": f"{self.id}_secret_local",
            "confirmation_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "description": self.description,
            "last_payment_error": self.last_payment_error,
            "latest_charge": self.latest_charge,
            "livemode": False,
            "metadata": dict(self.metadata),
            "next_action": self.next_action,
            "payment_method": self.payment_method,
            "payment_method_types": list(self.payment_method_types),
            "status": self.status,
        }


_CUSTOMER_CREATE_PARAMS: Final = frozenset(
    {
        "address", "balance", "business_name", "cash_balance", "description", "email", "expand",
        "individual_name", "invoice_prefix", "invoice_settings", "metadata", "name", "next_invoice_sequence",
        "payment_method", "phone", "preferred_locales", "shipping", "source", "tax", "tax_exempt",
        "tax_id_data", "test_clock",
    }
)  # fmt: skip
_CONFIRM_PARAMS: Final = frozenset(
    {
        "capture_method", "confirmation_token", "error_on_requires_action", "expand", "mandate",
        "mandate_data", "off_session", "payment_method", "payment_method_data", "payment_method_options",
        "payment_method_types", "radar_options", "receipt_email", "return_url", "setup_future_usage",
        "shipping", "use_stripe_sdk",
    }
)  # fmt: skip
_PAYMENT_INTENT_CREATE_PARAMS: Final = _CONFIRM_PARAMS | frozenset(
    {
        "amount", "amount_details", "application_fee_amount", "automatic_payment_methods", "confirm",
        "confirmation_method", "currency", "customer", "description", "excluded_payment_method_types",
        "hooks", "metadata", "on_behalf_of", "payment_details", "payment_method_configuration",
        "statement_descriptor", "statement_descriptor_suffix", "transfer_data", "transfer_group",
    }
)  # fmt: skip
_RETRIEVE_PARAMS: Final = frozenset({"expand"})
_LIST_PARAMS: Final = frozenset({"created", "customer", "ending_before", "expand", "limit", "starting_after"})
_SEARCH_PARAMS: Final = frozenset({"expand", "limit", "page", "query"})


class _Store:
    """Customers, PaymentIntents, the charge ledger and registered payment methods."""

    def __init__(self) -> None:
        self.customers: dict[str, _Customer] = {}
        self.payment_intents: dict[str, _PaymentIntent] = {}
        self.payment_intent_order: list[str] = []
        self.by_customer: defaultdict[str, list[str]] = defaultdict(list)
        # Metadata never changes after creation here, so an index keeps searches O(matches) even
        # when the benchmark has created 100k PaymentIntents.
        self.by_metadata: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
        self.charges: list[ChargeRecord] = []
        self.behaviours: dict[str, _Behaviour] = {}

    # ---- customers ----

    def add_customer(self, metadata: dict[str, str]) -> _Customer:
        customer = _Customer(_new_id("cus"), _now(), metadata)
        self.customers[customer.id] = customer
        return customer

    def create_customer(self, params: Params) -> JsonObject:
        _reject_unknown(params, _CUSTOMER_CREATE_PARAMS)
        return self.add_customer(_metadata(params)).to_json()

    def retrieve_customer(self, customer_id: str, params: Params) -> JsonObject:
        _reject_unknown(params, _RETRIEVE_PARAMS)
        customer = self.customers.get(customer_id)
        if customer is None:
            raise _resource_missing("customer", customer_id, param="id", status=404)
        return customer.to_json()

    # ---- payment intents ----

    def create_payment_intent(self, params: Params, idempotency_key: str | None) -> JsonObject:
        _reject_unknown(params, _PAYMENT_INTENT_CREATE_PARAMS)
        amount, currency = _amount(params), _currency(params)
        customer = self._existing_customer(_optional_string(params, "customer"))
        payment_method = _optional_string(params, "payment_method")
        behaviour = self._behaviour(payment_method) if payment_method else None
        confirm, off_session = _boolean(params, "confirm"), _off_session(params)
        if confirm and payment_method is None:
            raise _missing_payment_method()
        if off_session and not confirm:
            raise _invalid_request(
                "off_session can only be used when confirm is true.",
                param="off_session",
                code="parameter_invalid",
            )
        automatic = _automatic_payment_methods(params)
        types = _string_list(params, "payment_method_types")
        if automatic is not None and automatic["enabled"] and types is not None:
            raise _invalid_request(
                "You may only specify one of these parameters: "
                "automatic_payment_methods, payment_method_types."
            )
        intent = _PaymentIntent(
            id=_new_id("pi"),
            amount=amount,
            currency=currency,
            customer=customer,
            created=_now(),
            metadata=_metadata(params),
            description=_optional_string(params, "description"),
            payment_method=payment_method,
            payment_method_types=types or ["card"],
            automatic_payment_methods=automatic,
            status="requires_confirmation" if payment_method else "requires_payment_method",
        )
        self._index(intent)
        if confirm:
            self._attempt(intent, payment_method, behaviour, off_session, idempotency_key)
        return intent.to_json()

    def confirm_payment_intent(
        self, intent_id: str, params: Params, idempotency_key: str | None
    ) -> JsonObject:
        _reject_unknown(params, _CONFIRM_PARAMS)
        intent = self._intent_or_404(intent_id)
        if intent.status not in CONFIRMABLE_STATUSES:
            # Never charge twice: a succeeded (or canceled) intent cannot be confirmed again.
            error = _invalid_request(
                f"You cannot confirm this PaymentIntent because it has a status of {intent.status}. Only a "
                "PaymentIntent with one of the following statuses may be confirmed: "
                + ", ".join(CONFIRMABLE_STATUSES)
                + ".",
                code="payment_intent_unexpected_state",
            )
            error.error["payment_intent"] = intent.to_json()
            raise error
        payment_method = _optional_string(params, "payment_method") or intent.payment_method
        behaviour = self._behaviour(payment_method) if payment_method else None
        self._attempt(intent, payment_method, behaviour, _off_session(params), idempotency_key)
        return intent.to_json()

    def retrieve_payment_intent(self, intent_id: str, params: Params) -> JsonObject:
        _reject_unknown(params, _RETRIEVE_PARAMS)
        return self._intent_or_404(intent_id).to_json()

    def list_payment_intents(self, params: Params, url: str) -> JsonObject:
        _reject_unknown(params, _LIST_PARAMS)
        customer = _optional_string(params, "customer")
        ids = self.by_customer.get(customer, []) if customer else self.payment_intent_order
        newest_first = ids[::-1]
        starting_after = _optional_string(params, "starting_after")
        if starting_after is not None:
            if starting_after not in self.payment_intents:
                raise _resource_missing("payment_intent", starting_after, param="starting_after", status=400)
            newest_first = newest_first[newest_first.index(starting_after) + 1 :]
        limit = _page_size(params)
        page = [self.payment_intents[intent_id].to_json() for intent_id in newest_first[:limit]]
        return {"object": "list", "data": page, "has_more": len(newest_first) > limit, "url": url}

    def search_payment_intents(self, params: Params, url: str) -> JsonObject:
        _reject_unknown(params, _SEARCH_PARAMS)
        terms = parse_search_query(_required_string(params, "query"))
        offset = self._page_offset(_optional_string(params, "page"))
        limit = _page_size(params)
        matches = [intent for intent in self._search_candidates(terms) if _matches_all(intent, terms)]
        page = matches[offset : offset + limit]
        has_more = len(matches) > offset + limit
        return {
            "object": "search_result",
            "data": [intent.to_json() for intent in page],
            "has_more": has_more,
            "next_page": str(offset + limit) if has_more else None,
            "url": url,
        }

    # ---- helpers ----

    def _existing_customer(self, customer_id: str | None) -> str | None:
        if customer_id is not None and customer_id not in self.customers:
            raise _resource_missing("customer", customer_id, param="customer", status=400)
        return customer_id

    def _behaviour(self, payment_method: str) -> _Behaviour:
        behaviour = self.behaviours.get(payment_method) or _TEST_PAYMENT_METHODS.get(payment_method)
        if behaviour is None:
            raise _resource_missing("PaymentMethod", payment_method, param="payment_method", status=400)
        return behaviour

    def _intent_or_404(self, intent_id: str) -> _PaymentIntent:
        intent = self.payment_intents.get(intent_id)
        if intent is None:
            raise _resource_missing("payment_intent", intent_id, param="intent", status=404)
        return intent

    def _index(self, intent: _PaymentIntent) -> None:
        self.payment_intents[intent.id] = intent
        self.payment_intent_order.append(intent.id)
        if intent.customer is not None:
            self.by_customer[intent.customer].append(intent.id)
        for item in intent.metadata.items():
            self.by_metadata[item].append(intent.id)

    def _search_candidates(self, terms: Iterable[_SearchTerm]) -> Iterable[_PaymentIntent]:
        ids = self.payment_intent_order
        for term in terms:
            if term.metadata_key is not None:
                ids = self.by_metadata.get((term.metadata_key, term.value), [])
                break
        return (self.payment_intents[intent_id] for intent_id in reversed(ids))

    @staticmethod
    def _page_offset(page: str | None) -> int:
        if page is None:
            return 0
        if not page.isdecimal():
            raise _invalid_request("Invalid page token.", param="page")
        return int(page)

    def _attempt(
        self,
        intent: _PaymentIntent,
        payment_method: str | None,
        behaviour: _Behaviour | None,
        off_session: bool,
        idempotency_key: str | None,
    ) -> None:
        """Run the payment method's behaviour; a decline raises the 402 card_error Stripe returns."""
        if payment_method is None or behaviour is None:
            raise _missing_payment_method()
        intent.payment_method = payment_method
        if behaviour == "succeeded":
            self._succeed(intent, payment_method, idempotency_key)
        elif behaviour == "authentication_required" and not off_session:
            # On session the customer could authenticate, so Stripe asks for 3DS instead of failing.
            intent.status = "requires_action"
            intent.next_action = {
                "type": "use_stripe_sdk",
                "use_stripe_sdk": {"type": "three_d_secure_redirect"},
            }
        elif behaviour == "authentication_required":
            self._fail(intent, payment_method, _OFF_SESSION_AUTHENTICATION_DECLINE, charge_id=None)
        else:
            self._fail(intent, payment_method, behaviour, charge_id=_new_id("ch"))

    def _succeed(self, intent: _PaymentIntent, payment_method: str, idempotency_key: str | None) -> None:
        intent.status = "succeeded"
        intent.latest_charge = _new_id("ch")
        intent.last_payment_error = None
        intent.next_action = None
        self.charges.append(
            ChargeRecord(
                payment_intent_id=intent.id,
                charge_id=intent.latest_charge,
                amount=intent.amount,
                currency=intent.currency,
                customer=intent.customer,
                payment_method=payment_method,
                metadata=MappingProxyType(dict(intent.metadata)),
                idempotency_key=idempotency_key,
                created=_now(),
            )
        )

    def _fail(
        self, intent: _PaymentIntent, payment_method: str, decline: _Decline, *, charge_id: str | None
    ) -> None:
        error: JsonObject = {
            "type": "card_error",
            "code": decline.code,
            "decline_code": decline.decline_code,
            "doc_url": f"https://stripe.com/docs/error-codes/{decline.code.replace('_', '-')}",
            "message": decline.message,
            "payment_method": _payment_method_json(payment_method, intent.customer),
        }
        if decline.param is not None:
            error["param"] = decline.param
        if charge_id is not None:
            error["charge"] = charge_id
            intent.latest_charge = charge_id
        # Like Stripe: the failed method is detached from the intent and reported in last_payment_error.
        intent.status = "requires_payment_method"
        intent.payment_method = None
        intent.next_action = None
        intent.last_payment_error = error
        raise _ApiError(402, {**error, "payment_intent": intent.to_json()}, executed=True)


def _matches_all(intent: _PaymentIntent, terms: Iterable[_SearchTerm]) -> bool:
    for term in terms:
        if term.metadata_key is not None:
            actual: str | None = intent.metadata.get(term.metadata_key)
        else:
            actual = getattr(intent, term.field)
        if actual != term.value:
            return False
    return True


# --------------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    path: str
    params: Params
    path_id: str | None
    idempotency_key: str | None


type _Endpoint = Callable[[_Store, _Call], JsonObject]


def _path_id(call: _Call) -> str:
    assert call.path_id is not None  # guaranteed by the route pattern
    return call.path_id


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    endpoint: _Endpoint


# Order matters: /search must win over /{id}.
_ROUTES: Final[tuple[_Route, ...]] = (
    _Route("POST", re.compile(r"/v1/customers"), lambda store, call: store.create_customer(call.params)),
    _Route(
        "GET",
        re.compile(r"/v1/customers/(?P<id>[^/]+)"),
        lambda store, call: store.retrieve_customer(_path_id(call), call.params),
    ),
    _Route(
        "POST",
        re.compile(r"/v1/payment_intents"),
        lambda store, call: store.create_payment_intent(call.params, call.idempotency_key),
    ),
    _Route(
        "GET",
        re.compile(r"/v1/payment_intents"),
        lambda store, call: store.list_payment_intents(call.params, call.path),
    ),
    _Route(
        "GET",
        re.compile(r"/v1/payment_intents/search"),
        lambda store, call: store.search_payment_intents(call.params, call.path),
    ),
    _Route(
        "GET",
        re.compile(r"/v1/payment_intents/(?P<id>[^/]+)"),
        lambda store, call: store.retrieve_payment_intent(_path_id(call), call.params),
    ),
    _Route(
        "POST",
        re.compile(r"/v1/payment_intents/(?P<id>[^/]+)/confirm"),
        lambda store, call: store.confirm_payment_intent(_path_id(call), call.params, call.idempotency_key),
    ),
)


def _route(method: str, path: str) -> tuple[_Endpoint, str | None]:
    for route in _ROUTES:
        match = route.pattern.fullmatch(path)
        if match is not None and route.method == method:
            return route.endpoint, match.groupdict().get("id")
    raise _invalid_request(
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at "
        "https://support.stripe.com/.",
        status=404,
    )


# --------------------------------------------------------------------------------------------------
# Responses, idempotency and the token bucket
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Request:
    """What the HTTP layer hands to the state: raw pieces, parsed only once the request is admitted."""

    method: str
    path: str
    query: str
    body: bytes
    authorization: str | None
    idempotency_key: str | None
    stripe_version: str | None


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False


def _json_bytes(payload: JsonObject) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _response(status: int, payload: JsonObject, headers: Iterable[tuple[str, str]] = ()) -> _Response:
    return _Response(status, _json_bytes(payload), tuple(headers))


def _error_response(error: _ApiError) -> _Response:
    return _response(error.status, {"error": error.error}, error.headers)


_DROPPED: Final = _Response(0, b"", drop=True)


def _fault_response(fault: Fault) -> _Response:
    """The response for a fault that stops the request before anything executes."""
    retry = (("Stripe-Should-Retry", "true"),)
    if fault.kind == "http_500":
        return _response(500, {"error": {"type": "api_error", "message": "An unknown error occurred"}}, retry)
    if fault.kind == "http_503":
        message = "Stripe is temporarily unavailable. Please try again later."
        return _response(503, {"error": {"type": "api_error", "message": message}}, retry)
    if fault.kind == "http_400_parameter_unknown":
        error = {
            "type": "invalid_request_error",
            "code": "parameter_unknown",
            "param": "automatic_payment_methods",
            "message": "Received unknown parameter: automatic_payment_methods",
        }
        return _response(400, {"error": error})
    if fault.kind == "lock_timeout":
        error = {"type": "invalid_request_error", "code": "lock_timeout", "message": LOCK_TIMEOUT_MESSAGE}
        return _response(429, {"error": error}, retry)
    return _DROPPED


@dataclass(frozen=True, slots=True)
class _StoredResult:
    status: int
    compressed_body: bytes  # zlib: a 100k-key benchmark should not hold 100k full JSON bodies
    request_id: str


@dataclass(slots=True)
class _IdempotencyEntry:
    fingerprint: bytes
    result: _StoredResult | None = None  # None while the first request is still in flight


def _fingerprint(method: str, path: str, params: Params) -> bytes:
    canonical = json.dumps([method, path, params], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).digest()


class _TokenBucket:
    """``rate`` requests per second with one second of burst, like Stripe's per-account limiter."""

    def __init__(self, rate: float, now: float) -> None:
        if rate <= 0:
            raise ValueError("rate_limit_rps must be positive (or None to disable)")
        self.rate = rate
        self._capacity = max(rate, 1.0)
        self._tokens = self._capacity
        self._updated = now

    def try_take(self, now: float) -> bool:
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@dataclass(slots=True)
class _Admission:
    """The outcome of the admission step, decided under the lock and acted on outside it."""

    sleep_seconds: float
    response: _Response | None = None
    endpoint: _Endpoint | None = None
    call: _Call | None = None
    fault: Fault | None = None
    reservation: tuple[str, str] | None = None


def _mask(api_key: str) -> str:
    return f"{api_key[:8]}{'*' * 8}{api_key[-4:]}" if len(api_key) > 16 else "*" * len(api_key)


def _authentication_error(authorization: str | None) -> _ApiError | None:
    scheme, _, api_key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not api_key.strip():
        return _ApiError(
            401,
            {
                "type": "invalid_request_error",
                "message": "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            },
        )
    if not api_key.startswith(API_KEY_PREFIXES):
        return _ApiError(
            401, {"type": "invalid_request_error", "message": f"Invalid API Key provided: {_mask(api_key)}"}
        )
    return None


# --------------------------------------------------------------------------------------------------
# The state: one lock, never held while sleeping
# --------------------------------------------------------------------------------------------------


class FakeStripeState:
    """Everything the fake Stripe knows, plus the knobs tests turn. Thread-safe."""

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        rate_limit_rps: float | None = None,
        request_log_size: int = DEFAULT_REQUEST_LOG_SIZE,
    ) -> None:
        self._lock = threading.Lock()
        self._initial_load = (latency_ms, jitter_ms, rate_limit_rps)
        self._random = random.Random()
        self._request_log: deque[RequestLogEntry] = deque(maxlen=request_log_size)
        # Everything below is (re)initialised by _clear(), which reset() shares.
        self._store = _Store()
        self._idempotency: dict[tuple[str, str], _IdempotencyEntry] = {}
        self._faults: deque[Fault] = deque()
        self._fault_rates: list[tuple[Fault, float]] = []
        self._fault_random = random.Random()
        self._latency: tuple[float, float] = (0.0, 0.0)
        self._bucket: _TokenBucket | None = None
        self._request_count = 0
        self._rate_limited_count = 0
        self._replayed_count = 0
        self._clear()

    # ---- seeding and configuration ----

    def create_customer(self, *, metadata: Mapping[str, str] | None = None) -> str:
        """Create a customer directly (no HTTP) and return its ``cus_`` id."""
        with self._lock:
            return self._store.add_customer(dict(metadata or {})).id

    def set_payment_method_behaviour(self, payment_method: str, outcome: PaymentMethodOutcome) -> None:
        """Register a ``pm_…`` id as "succeeded", "authentication_required" or a (code, decline_code)."""
        if not payment_method.startswith("pm_"):
            raise ValueError("payment method ids start with 'pm_'")
        behaviour = _behaviour_from_outcome(outcome)
        with self._lock:
            self._store.behaviours[payment_method] = behaviour

    def set_latency(self, latency_ms: float, jitter_ms: float = 0.0) -> None:
        """Every request sleeps ``latency_ms`` ± uniform ``jitter_ms`` (never below zero)."""
        if latency_ms < 0 or jitter_ms < 0:
            raise ValueError("latency and jitter must not be negative")
        with self._lock:
            self._latency = (latency_ms / 1000, jitter_ms / 1000)

    def set_rate_limit(self, rps: float | None) -> None:
        """Answer 429 rate_limit beyond ``rps`` requests per second (burst of one second); None disables."""
        bucket = None if rps is None else _TokenBucket(rps, time.monotonic())
        with self._lock:
            self._bucket = bucket

    def inject_faults(self, *faults: Fault) -> None:
        """Queue faults; each is consumed, in order, by the next request it matches."""
        with self._lock:
            self._faults.extend(faults)

    def set_fault_rate(
        self,
        kind: FaultKind,
        probability: float,
        seed: int | None = None,
        *,
        path_prefix: str = "/v1/payment_intents",
        method: str = "POST",
        delay_ms: float = 0.0,
    ) -> None:
        """Hit matching requests with ``kind`` at random (soak tests). Probability 0 removes the rate."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        fault = Fault(kind, path_prefix=path_prefix, method=method, delay_ms=delay_ms)
        with self._lock:
            if seed is not None:
                self._fault_random = random.Random(seed)
            self._fault_rates = [(known, p) for known, p in self._fault_rates if known != fault]
            if probability > 0:
                self._fault_rates.append((fault, probability))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._fault_rates.clear()

    def forget_idempotency_keys(self) -> None:
        """Drop every stored idempotent result (Stripe forgets keys after 24 hours)."""
        with self._lock:
            # In-flight requests keep their reservation so they still finish consistently.
            self._idempotency = {
                key: entry for key, entry in self._idempotency.items() if entry.result is None
            }

    def reset(self) -> None:
        """Back to a freshly started server: no data, counters, faults or keys; initial latency/limit."""
        with self._lock:
            self._clear()

    # ---- assertions ----

    def charges(self) -> list[ChargeRecord]:
        with self._lock:
            return list(self._store.charges)

    def charge_counts_by(
        self, metadata_keys: Sequence[str] = ("scheduled_donation_id", "period")
    ) -> dict[tuple[str | None, ...], int]:
        """Count successful charges grouped by the given metadata values (missing keys count as None)."""
        counts: dict[tuple[str | None, ...], int] = defaultdict(int)
        for charge in self.charges():
            counts[tuple(charge.metadata.get(key) for key in metadata_keys)] += 1
        return dict(counts)

    def payment_intent(self, intent_id: str) -> JsonObject | None:
        with self._lock:
            intent = self._store.payment_intents.get(intent_id)
            return None if intent is None else intent.to_json()

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._request_count

    @property
    def rate_limited_count(self) -> int:
        with self._lock:
            return self._rate_limited_count

    @property
    def replayed_count(self) -> int:
        with self._lock:
            return self._replayed_count

    @property
    def requests_log(self) -> tuple[RequestLogEntry, ...]:
        """The most recent requests (bounded, so memory stays flat in long benchmarks)."""
        with self._lock:
            return tuple(self._request_log)

    @property
    def pending_faults(self) -> tuple[Fault, ...]:
        with self._lock:
            return tuple(self._faults)

    # ---- request processing (called by the HTTP handler threads) ----

    def process(self, request: _Request) -> _Response:
        admission = self._admit(request)
        if admission.sleep_seconds > 0:
            time.sleep(admission.sleep_seconds)  # outside the lock, always
        response = admission.response or self._execute(admission)
        if admission.fault is not None and admission.fault.kind == "drop_after":
            # Whatever happened is done (a charge, a stored result); the client just never hears of it.
            response = _DROPPED
        self._record(request, response)
        return response

    def _admit(self, request: _Request) -> _Admission:
        with self._lock:
            self._request_count += 1
            admission = _Admission(sleep_seconds=self._latency_sample())
            try:
                self._check_access(request)
                endpoint, path_id = _route(request.method, request.path)
                params = parse_form(request.body.decode() if request.method == "POST" else request.query)
            except _ApiError as error:
                admission.response = _error_response(error)
                return admission
            except UnicodeDecodeError:
                admission.response = _error_response(_invalid_request("Request body must be UTF-8."))
                return admission
            idempotency_key = request.idempotency_key if request.method == "POST" else None
            admission.call = _Call(request.path, params, path_id, idempotency_key)
            admission.endpoint = endpoint
            admission.fault = self._take_fault(request.method, request.path)
            if admission.fault is not None:
                logger.debug(
                    "injecting fault %s on %s %s", admission.fault.kind, request.method, request.path
                )
                admission.sleep_seconds += admission.fault.delay_ms / 1000
                if not admission.fault.executes_request:
                    admission.response = _fault_response(admission.fault)
                    return admission
            if idempotency_key is not None and request.authorization is not None:
                self._claim_idempotency_key(admission, request, params)
            return admission

    def _check_access(self, request: _Request) -> None:
        auth_error = _authentication_error(request.authorization)
        if auth_error is not None:
            raise auth_error
        # Rejected before doing any work, so nothing is executed or stored, just as Stripe does.
        if self._bucket is not None and not self._bucket.try_take(time.monotonic()):
            self._rate_limited_count += 1
            raise _ApiError(
                429, {"type": "invalid_request_error", "code": "rate_limit", "message": RATE_LIMIT_MESSAGE}
            )
        key = request.idempotency_key
        if key is not None and len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            raise _invalid_request(
                f"Idempotency keys can be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters long.",
                code="idempotency_key_too_long",
            )

    def _claim_idempotency_key(self, admission: _Admission, request: _Request, params: Params) -> None:
        """Replay, reject, or reserve the key for this request (Stripe's idempotency semantics)."""
        assert request.idempotency_key is not None
        assert request.authorization is not None
        # Keys are scoped to the API key, as Stripe scopes them to the account.
        slot = (request.authorization, request.idempotency_key)
        fingerprint = _fingerprint(request.method, request.path, params)
        entry = self._idempotency.get(slot)
        if entry is None:
            self._idempotency[slot] = _IdempotencyEntry(fingerprint)
            admission.reservation = slot
        elif entry.fingerprint != fingerprint:
            message = IDEMPOTENCY_MISMATCH_MESSAGE.format(key=request.idempotency_key)
            admission.response = _error_response(
                _ApiError(400, {"type": "idempotency_error", "message": message})
            )
        elif entry.result is None:
            message = IDEMPOTENCY_IN_USE_MESSAGE.format(key=request.idempotency_key)
            error = {"type": "invalid_request_error", "code": "idempotency_key_in_use", "message": message}
            admission.response = _error_response(_ApiError(409, error))
        else:
            self._replayed_count += 1
            admission.response = _Response(
                entry.result.status,
                zlib.decompress(entry.result.compressed_body),
                (
                    ("Idempotent-Replayed", "true"),
                    ("Original-Request", entry.result.request_id),
                    ("Request-Id", _new_id("req")),
                ),
            )

    def _execute(self, admission: _Admission) -> _Response:
        assert admission.endpoint is not None
        assert admission.call is not None
        request_id = _new_id("req")
        headers = (("Request-Id", request_id),)
        with self._lock:
            try:
                response = _response(200, admission.endpoint(self._store, admission.call), headers)
                executed = True
            except _ApiError as error:
                response = _response(error.status, {"error": error.error}, (*error.headers, *headers))
                executed = error.executed
            self._settle_reservation(admission.reservation, response, executed, request_id)
        return response

    def _settle_reservation(
        self, slot: tuple[str, str] | None, response: _Response, executed: bool, request_id: str
    ) -> None:
        if slot is None:
            return
        entry = self._idempotency.get(slot)
        if entry is None:
            return
        if executed:
            entry.result = _StoredResult(response.status, zlib.compress(response.body, 1), request_id)
        else:
            # Stripe saves no result for requests that failed validation, so the key can be retried.
            del self._idempotency[slot]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for index, fault in enumerate(self._faults):
            if fault.matches(method, path):
                del self._faults[index]
                return fault
        for fault, probability in self._fault_rates:
            if fault.matches(method, path) and self._fault_random.random() < probability:
                return fault
        return None

    def _latency_sample(self) -> float:
        latency, jitter = self._latency
        if jitter == 0:
            return latency
        return max(0.0, latency + self._random.uniform(-jitter, jitter))

    def _record(self, request: _Request, response: _Response) -> None:
        entry = RequestLogEntry(
            request.method, request.path, 0 if response.drop else response.status, time.time()
        )
        with self._lock:
            self._request_log.append(entry)

    def _clear(self) -> None:
        """Reset everything; the caller holds the lock (or is the constructor)."""
        latency_ms, jitter_ms, rate_limit_rps = self._initial_load
        if latency_ms < 0 or jitter_ms < 0:
            raise ValueError("latency and jitter must not be negative")
        self._store = _Store()
        self._idempotency = {}
        self._faults = deque()
        self._fault_rates = []
        self._fault_random = random.Random()
        self._latency = (latency_ms / 1000, jitter_ms / 1000)
        self._bucket = None if rate_limit_rps is None else _TokenBucket(rate_limit_rps, time.monotonic())
        self._request_count = 0
        self._rate_limited_count = 0
        self._replayed_count = 0
        self._request_log.clear()


# Both names were used for this object in the design notes.
StripeLedger = FakeStripeState


# --------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------


class _StripeRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the benchmark reuses ~100 pooled connections
    server_version = "stripe-local/1.0"
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid the 40 ms delayed-ACK stall
    timeout = 60  # idle keep-alive connections are closed after this many seconds
    server: _StripeHTTPServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        request = self._read_request()
        if request is None:
            return
        response = self.server.state.process(request)
        if response.drop:
            self.close_connection = True
            return
        self._write(request, response)

    def _read_request(self) -> _Request | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.send_error(400, "Bad Content-Length")
            return None
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        return _Request(
            method=self.command,
            path=split.path,
            query=split.query,
            body=body,
            authorization=self.headers.get("Authorization"),
            idempotency_key=self.headers.get("Idempotency-Key"),
            stripe_version=self.headers.get("Stripe-Version"),
        )

    def _write(self, request: _Request, response: _Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        if request.idempotency_key is not None and request.method == "POST":
            self.send_header("Idempotency-Key", request.idempotency_key)
        if request.stripe_version is not None:
            self.send_header("Stripe-Version", request.stripe_version)
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The default logs the full request line; the query string can carry search values.
        logger.debug("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http: %s", format % args)


class _StripeHTTPServer(TracksConnections, ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive handler threads can outlive stop(); joining them would hang the caller.
    block_on_close = False
    request_queue_size = 1024  # the benchmark opens ~100 connections at once
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: FakeStripeState) -> None:
        self.state = state
        super().__init__(address, _StripeRequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response (timeouts, drop tests, stop()) are routine here.
        logger.debug("connection error", exc_info=True)


class RunningStripeServer(ServingThread):
    """A started server: ``url``, ``state``, ``stop()``; also a context manager."""

    def __init__(self, server: _StripeHTTPServer, host: str) -> None:
        super().__init__(server, name="stripe-local")
        self._stripe_server = server
        # A wildcard bind is still reached through loopback by local clients.
        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else f"[{host}]" if ":" in host else host
        self.url = f"http://{url_host}:{self.port}"

    @property
    def state(self) -> FakeStripeState:
        return self._stripe_server.state


def start_stripe_server(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    latency_ms: float = 0,
    jitter_ms: float = 0,
    rate_limit_rps: float | None = None,
) -> RunningStripeServer:
    """Start the fake Stripe on a daemon thread; ``port=0`` picks a free port."""
    state = FakeStripeState(latency_ms=latency_ms, jitter_ms=jitter_ms, rate_limit_rps=rate_limit_rps)
    running = RunningStripeServer(_StripeHTTPServer((host, port), state), host)
    logger.info("local Stripe listening on %s", running.url)
    return running


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m harness.local.stripe_server",
        description="Stripe-compatible local server. Point the SDK at it with base_addresses={'api': URL}.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="bind address; use 0.0.0.0 so `sam local` containers can reach it"
    )
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit-rps", type=float, default=None)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    server = start_stripe_server(
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        rate_limit_rps=args.rate_limit_rps,
    )

    # `docker stop` / `sam local` send SIGTERM; treat it like Ctrl-C so the server shuts down cleanly.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.wait()
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        server.stop()
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
