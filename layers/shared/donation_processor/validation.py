"""Check a scheduled-donation document before anything is charged; bad documents are never charged."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from donation_processor.currencies import MAX_AMOUNT_MINOR_UNITS, STRIPE_CURRENCIES, broken_amount_rule
from donation_processor.schedule import Frequency, as_utc

_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_CUSTOMER = re.compile(r"cus_[A-Za-z0-9]{1,250}")
_PAYMENT_METHOD = re.compile(r"(pm|card|src)_[A-Za-z0-9_]{1,250}")
_PAYMENT_INTENT = re.compile(r"pi_[A-Za-z0-9_]{1,250}")
# The fields of a scheduled donation that belong to the host platform (README, data model); the engine
# never writes them except `nextRunAt` (moving a charged schedule on) and `status` (stopping one). The host
# may edit the editable ones at any time, also while a period is in flight.
HOST_OWNED_FIELDS = (
    "_id",
    "stripeCustomerId",
    "amount",
    "currency",
    "stripePaymentMethodId",
    "frequency",
    "nextRunAt",
    "status",
    "metadata",
    "donorId",
)
# The statuses the job knows. Only `active` is charged; `invalid` and `payment_failed` are the engine's
# stops; the others are the host's. Any other value (`Active`, a typo, null) is counted as unseen each run.
KNOWN_STATUSES = (
    "active",
    "paused",
    "cancelled",
    "canceled",
    "completed",
    "ended",
    "invalid",
    "payment_failed",
)
EDITABLE_FIELDS = (
    "amount",
    "currency",
    "stripePaymentMethodId",
    "frequency",
    "nextRunAt",
    "status",
    "metadata",
)
# Dates outside these bounds are data errors, and near year 9999 the schedule arithmetic would overflow.
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LegacyInFlight:
    """A period an earlier version of the job left in flight on the schedule document itself.

    Versions before the charge intent kept the period being charged on the schedule (`periodStart`,
    `paymentIntentId`, `periodAttempts`, `periodFirstAttemptAt`); the engine adopts it into an intent once.
    """

    period_start: datetime
    first_attempt_at: datetime | None
    period_attempts: int
    attempts: int
    payment_intent_id: str | None


@dataclass(frozen=True)
class ChargeableDonation:
    """A scheduled donation that passed validation: everything needed to open a period's charge intent."""

    id: str  # canonical: the one text form used in keys, Stripe metadata and the ledger
    raw_id: Any
    customer_id: str
    payment_method_id: str
    amount: int
    currency: str
    frequency: Frequency
    next_run_at: datetime
    anchor_day: int | None
    donor_id: str | None = None
    legacy: LegacyInFlight | None = None
    last_charged_at: datetime | None = None  # the engine's own field: when a period was last charged


@dataclass(frozen=True)
class ScheduleView:
    """A schedule document as it stands, read leniently: cancelled, edited or half-broken ones too."""

    raw_id: Any
    canonical_id: str
    active: bool
    payment_method_id: str | None
    next_run_at: datetime | None
    frequency: Frequency | None
    anchor_day: int | None


class InvalidDonation(ValueError):
    """The document cannot be charged; str() is the reason, safe to log (no personal data)."""


def is_valid_id(text: str) -> bool:
    """Whether text is an id the engine accepts (an ObjectId's 24 hex digits are one such)."""
    return bool(_ID.fullmatch(text))


def document_id(document: Mapping[str, Any]) -> str:
    """The id as text for keys and logs, or an InvalidDonation when it is not a plain id."""
    raw = document.get("_id")
    text = str(raw) if raw is not None else ""
    if type(raw).__name__ not in ("ObjectId", "str") or not _ID.fullmatch(text):
        raise InvalidDonation("_id must be an ObjectId or a string of letters, digits, '_' or '-'")
    return text


def _datetime_field(document: Mapping[str, Any], field: str) -> datetime | None:
    value = document.get(field)
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidDonation(f"{field} must be a UTC date-time")
    try:
        moment = as_utc(value)
    except (OverflowError, ValueError):
        raise InvalidDonation(f"{field} is out of range") from None
    if not _EARLIEST <= moment < _LATEST:
        raise InvalidDonation(f"{field} must be between 2000 and 2200")
    return moment


def _engine_date(document: Mapping[str, Any], field: str) -> datetime | None:
    """A date the engine wrote; read leniently, as nothing to charge depends on it alone."""
    try:
        return _datetime_field(document, field)
    except InvalidDonation:
        return None


def _attempts(document: Mapping[str, Any]) -> int:
    attempts = document.get("attempts", 0)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
        raise InvalidDonation("attempts must be a non-negative integer")
    return attempts


def _legacy(document: Mapping[str, Any], next_run: datetime) -> LegacyInFlight | None:
    attempts = _attempts(document)
    if not any(
        field in document
        for field in ("periodStart", "periodFirstAttemptAt", "periodAttempts", "paymentIntentId")
    ):
        return None
    period_start = _datetime_field(document, "periodStart") or next_run
    first_attempt_at = _datetime_field(document, "periodFirstAttemptAt")
    period_attempts = document.get("periodAttempts", attempts)
    if (
        isinstance(period_attempts, bool)
        or not isinstance(period_attempts, int)
        or period_attempts < attempts
    ):
        raise InvalidDonation("periodAttempts must be an integer no smaller than attempts")
    payment_intent_id = document.get("paymentIntentId")
    if payment_intent_id is not None and not (
        isinstance(payment_intent_id, str) and _PAYMENT_INTENT.fullmatch(payment_intent_id)
    ):
        raise InvalidDonation("paymentIntentId must be a Stripe PaymentIntent id (pi_…)")
    return LegacyInFlight(period_start, first_attempt_at, period_attempts, attempts, payment_intent_id)


def _anchor_day(document: Mapping[str, Any]) -> int | None:
    if "anchorDay" not in document:
        return None
    anchor_day = document.get("anchorDay")
    if isinstance(anchor_day, bool) or not isinstance(anchor_day, int) or not 1 <= anchor_day <= 31:
        raise InvalidDonation("anchorDay must be a day of the month (1-31)")
    return anchor_day


def validate(document: Mapping[str, Any]) -> ChargeableDonation:
    """Return the chargeable view of a document or raise InvalidDonation naming the bad field."""
    donation_id = document_id(document)
    customer = document.get("stripeCustomerId")
    if not isinstance(customer, str) or not _CUSTOMER.fullmatch(customer):
        raise InvalidDonation("stripeCustomerId must be a Stripe customer id (cus_…)")
    payment_method = document.get("stripePaymentMethodId")
    if not isinstance(payment_method, str) or not _PAYMENT_METHOD.fullmatch(payment_method):
        raise InvalidDonation("stripePaymentMethodId must be a Stripe payment method id (pm_…)")
    amount = document.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidDonation("amount must be a positive integer in minor units")
    if amount > MAX_AMOUNT_MINOR_UNITS:
        raise InvalidDonation(f"amount must be at most {MAX_AMOUNT_MINOR_UNITS} minor units")
    currency = document.get("currency")
    if not isinstance(currency, str) or currency not in STRIPE_CURRENCIES:
        raise InvalidDonation("currency must be a lower-case ISO 4217 code that Stripe supports")
    broken_rule = broken_amount_rule(amount, currency)
    if broken_rule is not None:
        raise InvalidDonation(broken_rule)
    frequency = document.get("frequency")
    if not isinstance(frequency, str) or frequency not in Frequency.__members__.values():
        raise InvalidDonation("frequency must be one of weekly, monthly, quarterly, yearly")
    next_run = _datetime_field(document, "nextRunAt")
    if next_run is None:
        raise InvalidDonation("nextRunAt is required (a UTC date-time)")
    donor = document.get("donorId")
    return ChargeableDonation(
        id=donation_id,
        raw_id=document.get("_id"),
        customer_id=customer,
        payment_method_id=payment_method,
        amount=amount,
        currency=currency,
        frequency=Frequency(frequency),
        next_run_at=next_run,
        anchor_day=_anchor_day(document),
        donor_id=donor[:64] if isinstance(donor, str) else None,
        legacy=_legacy(document, next_run),
        last_charged_at=_engine_date(document, "lastChargedAt"),
    )


def read_schedule(document: Mapping[str, Any]) -> ScheduleView:
    """What the engine needs of a schedule to finish a period: anything malformed reads as absent."""
    raw = document.get("_id")
    payment_method = document.get("stripePaymentMethodId")
    frequency = document.get("frequency")
    anchor = document.get("anchorDay")
    try:
        next_run = _datetime_field(document, "nextRunAt")
    except InvalidDonation:
        next_run = None
    return ScheduleView(
        raw_id=raw,
        canonical_id=str(raw),
        active=document.get("status") == "active",
        payment_method_id=payment_method
        if isinstance(payment_method, str) and _PAYMENT_METHOD.fullmatch(payment_method)
        else None,
        next_run_at=next_run,
        frequency=Frequency(frequency)
        if isinstance(frequency, str) and frequency in Frequency.__members__.values()
        else None,
        anchor_day=anchor
        if isinstance(anchor, int) and not isinstance(anchor, bool) and 1 <= anchor <= 31
        else None,
    )
