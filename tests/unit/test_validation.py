"""validate: only well-formed scheduled-donation documents are ever charged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st

from donation_processor.currencies import MAX_AMOUNT_MINOR_UNITS, STRIPE_CURRENCIES, broken_amount_rule
from donation_processor.schedule import Frequency
from donation_processor.validation import (
    ChargeableDonation,
    InvalidDonation,
    LegacyInFlight,
    document_id,
    read_schedule,
    validate,
)

OBJECT_ID = ObjectId("65f1c0ffee0000000000a001")
NEXT_RUN = datetime(2026, 1, 31, 9, 0)


def _document(**changes: Any) -> dict[str, Any]:
    """A good document as pymongo returns it; a change to the sentinel MISSING removes the field."""
    document: dict[str, Any] = {
        "_id": OBJECT_ID,
        "stripeCustomerId": "cus_Abc123",
        "stripePaymentMethodId": "pm_1Xyz_789",
        "amount": 2500,
        "currency": "usd",
        "frequency": "monthly",
        "nextRunAt": NEXT_RUN,
        "status": "active",
    }
    for name, value in changes.items():
        if value is MISSING:
            document.pop(name, None)
        else:
            document[name] = value
    return document


MISSING = object()


def test_a_good_document_becomes_a_chargeable_donation_with_aware_utc_dates() -> None:
    # GIVEN a well-formed document with a naive (UTC) nextRunAt
    document = _document()

    # WHEN it is validated
    donation = validate(document)

    # THEN every field is carried, dates are aware UTC, the id is its canonical text, nothing is in flight
    aware = NEXT_RUN.replace(tzinfo=UTC)
    assert donation == ChargeableDonation(
        id="65f1c0ffee0000000000a001",
        raw_id=OBJECT_ID,
        customer_id="cus_Abc123",
        payment_method_id="pm_1Xyz_789",
        amount=2500,
        currency="usd",
        frequency=Frequency.MONTHLY,
        next_run_at=aware,
        anchor_day=None,
    )
    assert donation.next_run_at.tzinfo is UTC
    assert donation.legacy is None


def test_a_document_an_earlier_version_left_in_dunning_is_read_as_legacy_in_flight() -> None:
    # GIVEN a document mid-dunning as versions before the charge intent left it: a later nextRunAt, the
    # period it retries, attempts, and its PaymentIntent
    document = _document(
        _id="legacy-id_1",
        nextRunAt=datetime(2026, 2, 3, tzinfo=UTC),
        periodStart=datetime(2026, 1, 31),
        anchorDay=31,
        attempts=2,
        periodAttempts=3,
        paymentIntentId="pi_123",
        frequency="quarterly",
    )

    # WHEN it is validated
    donation = validate(document)

    # THEN the period being retried, not the retry time, is what the engine adopts
    assert donation.id == "legacy-id_1"
    assert donation.next_run_at == datetime(2026, 2, 3, tzinfo=UTC)
    assert donation.anchor_day == 31
    assert donation.legacy == LegacyInFlight(
        period_start=datetime(2026, 1, 31, tzinfo=UTC),
        first_attempt_at=None,
        period_attempts=3,
        attempts=2,
        payment_intent_id="pi_123",
    )
    assert donation.frequency is Frequency.QUARTERLY


def test_a_non_utc_aware_next_run_is_converted_to_utc() -> None:
    # GIVEN nextRunAt at 01:00 in UTC+2
    document = _document(nextRunAt=datetime(2026, 3, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))))

    # WHEN it is validated
    donation = validate(document)

    # THEN the same instant is held in UTC
    assert donation.next_run_at == datetime(2026, 2, 28, 23, 0, tzinfo=UTC)
    assert donation.next_run_at.tzinfo is UTC


def test_a_cancelled_or_half_broken_schedule_reads_leniently_for_finishing_its_period() -> None:
    # GIVEN a cancelled document whose payment method and anchor are broken
    document = _document(status="cancelled", stripePaymentMethodId=7, anchorDay="15")

    # WHEN it is read to finish an in-flight period
    view = read_schedule(document)

    # THEN it is not active, and what is broken reads as absent instead of raising
    assert (view.active, view.payment_method_id, view.anchor_day) == (False, None, None)
    assert view.next_run_at == NEXT_RUN.replace(tzinfo=UTC)
    assert view.canonical_id == "65f1c0ffee0000000000a001"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"stripeCustomerId": MISSING}, "stripeCustomerId"),
        ({"stripeCustomerId": "abc"}, "stripeCustomerId"),
        ({"stripeCustomerId": "cus_"}, "stripeCustomerId"),
        ({"stripeCustomerId": {"$ne": None}}, "stripeCustomerId"),
        ({"stripePaymentMethodId": MISSING}, "stripePaymentMethodId"),
        ({"stripePaymentMethodId": "tok_visa"}, "stripePaymentMethodId"),
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": 12.5}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": "100"}, "amount"),
        ({"amount": 10**9}, "amount"),
        ({"amount": MAX_AMOUNT_MINOR_UNITS + 1}, "amount"),
        ({"amount": MISSING}, "amount"),
        ({"currency": "USD"}, "currency"),
        ({"currency": "xyz"}, "currency"),
        ({"currency": None}, "currency"),
        ({"frequency": "daily"}, "frequency"),
        ({"frequency": "MONTHLY"}, "frequency"),
        ({"frequency": MISSING}, "frequency"),
        ({"nextRunAt": MISSING}, "nextRunAt"),
        ({"nextRunAt": "2026-01-01"}, "nextRunAt"),
        ({"nextRunAt": 1767225600}, "nextRunAt"),
        ({"periodStart": "2026-01-01"}, "periodStart"),
        ({"_id": {"$gt": ""}}, "_id"),
        ({"_id": "a b"}, "_id"),
        ({"_id": None}, "_id"),
        ({"_id": MISSING}, "_id"),
        ({"_id": "x" * 65}, "_id"),
        ({"_id": 42}, "_id"),
        ({"attempts": -1}, "attempts"),
        ({"attempts": 1.0}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"anchorDay": 32}, "anchorDay"),
        ({"anchorDay": 0}, "anchorDay"),
        ({"anchorDay": "31"}, "anchorDay"),
        ({"paymentIntentId": "x"}, "paymentIntentId"),
        ({"paymentIntentId": 7}, "paymentIntentId"),
    ],
)
def test_each_broken_field_raises_invalid_donation_naming_it(changes: dict[str, Any], field: str) -> None:
    # GIVEN a good document with one broken field
    document = _document(**changes)

    # WHEN it is validated
    # THEN it is refused, naming the field
    with pytest.raises(InvalidDonation, match=field):
        validate(document)


@pytest.mark.parametrize(
    ("amount", "currency", "reason"),
    [
        (1, "usd", r"^amount must be at least 50 minor units for usd \(Stripe's minimum charge\)$"),
        (29, "gbp", r"^amount must be at least 30 minor units for gbp \(Stripe's minimum charge\)$"),
        (49, "jpy", r"^amount must be at least 50 minor units for jpy \(Stripe's minimum charge\)$"),
        (5124, "kwd", r"^amount must be a multiple of 10 for kwd \(three-decimal currency\)$"),
        (550, "isk", r"^amount must be a multiple of 100 for isk "),
    ],
)
def test_an_amount_stripe_would_refuse_is_invalid_before_any_request(
    amount: int, currency: str, reason: str
) -> None:
    # GIVEN a document whose amount breaks one of Stripe's rules for its currency
    document = _document(amount=amount, currency=currency)

    # WHEN it is validated
    # THEN it is refused, naming the field and the rule, before Stripe is ever asked
    with pytest.raises(InvalidDonation, match=reason):
        validate(document)


@pytest.mark.parametrize(
    ("amount", "currency"), [(50, "usd"), (30, "gbp"), (5120, "kwd"), (500, "isk"), (1, "vnd")]
)
def test_an_amount_at_stripes_bounds_is_valid(amount: int, currency: str) -> None:
    # GIVEN a document whose amount sits exactly on Stripe's rule for its currency
    document = _document(amount=amount, currency=currency)

    # WHEN it is validated
    donation = validate(document)

    # THEN it is accepted unchanged
    assert (donation.amount, donation.currency) == (amount, currency)


def test_the_largest_amount_stripe_accepts_is_valid() -> None:
    # GIVEN an amount of exactly eight digits
    document = _document(amount=MAX_AMOUNT_MINOR_UNITS)

    # WHEN it is validated
    donation = validate(document)

    # THEN it is accepted unchanged
    assert donation.amount == 99_999_999


def test_document_id_gives_the_text_of_an_object_id() -> None:
    # GIVEN a document keyed by an ObjectId
    # WHEN its id is read as text
    text = document_id({"_id": OBJECT_ID})

    # THEN it is the 24-hex string
    assert text == "65f1c0ffee0000000000a001"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"_id": "abc\n"}, "_id"),
        ({"stripeCustomerId": "cus_abc\n"}, "stripeCustomerId"),
        ({"stripePaymentMethodId": "pm_abc\n"}, "stripePaymentMethodId"),
    ],
)
def test_an_id_with_a_trailing_newline_is_refused(changes: dict[str, Any], field: str) -> None:
    # GIVEN a document whose id ends with a newline (it would reach logs, keys and Stripe)
    document = _document(**changes)

    # WHEN it is validated
    # THEN it is refused naming the field
    with pytest.raises(InvalidDonation, match=field):
        validate(document)


any_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(),
    st.text(max_size=30),
    st.datetimes(),
    st.datetimes(timezones=st.just(UTC)),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
)
plausible = {
    "_id": st.one_of(st.builds(ObjectId), st.from_regex(r"[A-Za-z0-9_\-]{1,64}", fullmatch=True)),
    "stripeCustomerId": st.from_regex(r"cus_[A-Za-z0-9]{1,20}", fullmatch=True),
    "stripePaymentMethodId": st.from_regex(r"(pm|card|src)_[A-Za-z0-9_]{1,20}", fullmatch=True),
    "amount": st.integers(min_value=-10, max_value=2 * MAX_AMOUNT_MINOR_UNITS),
    "currency": st.one_of(st.sampled_from(sorted(STRIPE_CURRENCIES)), st.text(max_size=4)),
    "frequency": st.one_of(st.sampled_from([f.value for f in Frequency]), st.text(max_size=8)),
    "nextRunAt": st.datetimes(),
    "periodStart": st.datetimes(timezones=st.just(UTC)),
    "attempts": st.integers(min_value=-2, max_value=30),
    "anchorDay": st.integers(min_value=-1, max_value=40),
    "paymentIntentId": st.from_regex(r"pi_[A-Za-z0-9]{1,10}", fullmatch=True),
}


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """Each field is absent, plausible, or of a random type."""
    document: dict[str, Any] = {}
    for name, good in plausible.items():
        choice = draw(st.sampled_from(["absent", "good", "good", "good", "random"]))
        if choice == "good":
            document[name] = draw(good)
        elif choice == "random":
            document[name] = draw(any_value)
    return document


@settings(max_examples=500, deadline=None)
@given(document=documents())
def test_property_validate_returns_a_chargeable_donation_or_raises_invalid_donation(
    document: dict[str, Any],
) -> None:
    # GIVEN any document with fields of random types
    # WHEN it is validated
    try:
        donation = validate(document)
    except InvalidDonation:
        return

    # THEN whatever passes is chargeable: positive int amount within Stripe's limit, known currency
    assert type(donation.amount) is int
    assert 0 < donation.amount <= MAX_AMOUNT_MINOR_UNITS
    assert donation.currency in STRIPE_CURRENCIES
    assert broken_amount_rule(donation.amount, donation.currency) is None
    assert donation.next_run_at.utcoffset() == timedelta(0)
    assert donation.anchor_day is None or 1 <= donation.anchor_day <= 31
