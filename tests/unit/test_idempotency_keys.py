"""Stripe idempotency keys: derived from (id, period, attempt) only, so any run sends the same key."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from donation_processor.idempotency import KEY_PREFIX, attempt_key, payment_intent_key

DONATION_ID = "65f1c0ffee0000000000a001"
PERIOD = "2026-01-31"

ids = st.text(alphabet="abcdefABCDEF0123456789_-", min_size=1, max_size=64)
periods = st.dates().map(lambda day: day.isoformat())


def test_payment_intent_key_is_exactly_prefix_id_and_period() -> None:
    # GIVEN a donation id and a period
    # WHEN the PaymentIntent key is built
    key = payment_intent_key(DONATION_ID, PERIOD)

    # THEN it is built from those inputs alone (nothing else, such as a clock or a random part)
    assert key == f"{KEY_PREFIX}:{DONATION_ID}:{PERIOD}"


def test_an_attempt_key_is_exactly_the_creation_key_and_the_attempt() -> None:
    # GIVEN a period's creation key and its second attempt
    # WHEN the attempt key is built
    key = attempt_key(payment_intent_key(DONATION_ID, PERIOD), 2)

    # THEN it extends the creation key with the attempt number only
    assert key == f"{KEY_PREFIX}:{DONATION_ID}:{PERIOD}:attempt-2"


def test_keys_are_the_same_across_calls() -> None:
    # GIVEN the same inputs
    # WHEN the keys are built twice, as two separate runs would
    first = (payment_intent_key(DONATION_ID, PERIOD), attempt_key(payment_intent_key(DONATION_ID, PERIOD), 3))
    second = (
        payment_intent_key(DONATION_ID, PERIOD),
        attempt_key(payment_intent_key(DONATION_ID, PERIOD), 3),
    )

    # THEN they are identical
    assert first == second


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("a1", PERIOD), ("a2", PERIOD)),
        ((DONATION_ID, "2026-01-31"), (DONATION_ID, "2026-02-28")),
    ],
)
def test_payment_intent_keys_differ_for_different_ids_or_periods(
    left: tuple[str, str], right: tuple[str, str]
) -> None:
    # GIVEN two (id, period) pairs that differ in one part
    # WHEN their keys are built
    # THEN the keys differ
    assert payment_intent_key(*left) != payment_intent_key(*right)


def test_attempt_keys_differ_per_attempt_and_from_the_creation_key() -> None:
    # GIVEN one period's creation key and its confirm keys for attempts 2..6
    creation = payment_intent_key(DONATION_ID, PERIOD)

    # WHEN the confirm keys are built
    confirms = [attempt_key(creation, attempt) for attempt in range(2, 7)]

    # THEN all six keys are distinct
    assert len({creation, *confirms}) == 6


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_key_rejects_attempt_numbers_below_one(attempt: int) -> None:
    # GIVEN an attempt number that no attempt has
    # WHEN its key is asked for
    # THEN it is refused
    with pytest.raises(ValueError, match="attempts are numbered from 1"):
        attempt_key(payment_intent_key(DONATION_ID, PERIOD), attempt)


def test_attempt_one_is_the_creation_key_itself() -> None:
    # GIVEN a period's creation key
    creation = payment_intent_key(DONATION_ID, PERIOD)

    # WHEN the key of attempt 1 is built
    # THEN it is the creation key: the first request of a period creates its PaymentIntent
    assert attempt_key(creation, 1) == creation


def test_keys_for_a_64_character_id_fit_stripes_255_character_limit() -> None:
    # GIVEN the longest id validation accepts
    longest_id = "x" * 64

    # WHEN keys are built for it, up to a generous attempt number
    keys = [
        payment_intent_key(longest_id, PERIOD),
        attempt_key(payment_intent_key(longest_id, PERIOD), 10**6),
    ]

    # THEN each fits within Stripe's 255 characters
    assert all(len(key) <= 255 for key in keys)


@settings(max_examples=200, deadline=None)
@given(first=st.tuples(ids, periods), second=st.tuples(ids, periods))
def test_property_distinct_id_period_pairs_never_share_a_key(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    # GIVEN two (id, period) pairs of valid shapes
    # WHEN their keys are built
    same_key = payment_intent_key(*first) == payment_intent_key(*second)

    # THEN keys collide only when the pairs are equal
    assert same_key == (first == second)
