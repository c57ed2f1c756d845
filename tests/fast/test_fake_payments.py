"""FakePayments keeps Stripe's promises that the engine relies on, so a green fast tier means something."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from donation_processor.charge_outcome import FailureKind, PaymentFailed
from tests.support.fakes import FakePayments, sockets_disabled

KEY = "scheduled-donation:don-1:2026-03-01"
PARAMS = {
    "amount": 2500,
    "currency": "usd",
    "customer": "cus_1",
    "payment_method": "pm_card_visa",
    "metadata": {"scheduled_donation_id": "don-1", "period": "2026-03-01"},
}


@pytest.fixture(autouse=True)
def no_sockets() -> Iterator[None]:
    with sockets_disabled():
        yield


def test_a_key_sent_again_with_the_same_parameters_replays_the_answer_without_a_second_charge() -> None:
    # GIVEN a charge made under a key
    payments = FakePayments()
    first = payments.create_payment_intent(PARAMS, KEY)

    # WHEN the same request is sent again
    again = payments.create_payment_intent(PARAMS, KEY)

    # THEN Stripe replays its answer and took the money once
    assert (again.payment_intent_id, again.status, again.replayed) == (
        first.payment_intent_id,
        "succeeded",
        True,
    )
    assert len(payments.charges) == 1


def test_a_key_sent_again_with_other_parameters_is_refused_as_an_idempotency_error() -> None:
    # GIVEN a charge made under a key
    payments = FakePayments()
    payments.create_payment_intent(PARAMS, KEY)

    # WHEN the key is sent with another amount
    with pytest.raises(PaymentFailed) as refused:
        payments.create_payment_intent({**PARAMS, "amount": 3000}, KEY)

    # THEN Stripe refuses it as an invalid request, and nothing more is charged
    assert (refused.value.failure.error_type, refused.value.failure.kind) == (
        "idempotency_error",
        FailureKind.INVALID_REQUEST,
    )
    assert len(payments.charges) == 1


def test_a_decline_is_stored_under_its_key_and_a_new_key_reaches_the_card_again() -> None:
    # GIVEN a soft-declined card
    payments = FakePayments()
    payments.decline("pm_card_visa", "insufficient_funds")
    with pytest.raises(PaymentFailed) as declined:
        payments.create_payment_intent(PARAMS, KEY)
    pi = declined.value.failure.payment_intent_id
    assert pi is not None

    # WHEN the same key is sent again, and then a confirm with a new key and a working card
    with pytest.raises(PaymentFailed) as replayed:
        payments.create_payment_intent(PARAMS, KEY)
    paid = payments.confirm_payment_intent(pi, {"payment_method": "pm_card_new"}, f"{KEY}:attempt-2")

    # THEN the stored decline is replayed, and only the new attempt charged
    assert (replayed.value.failure.kind, replayed.value.failure.decline_code) == (
        FailureKind.SOFT_DECLINE,
        "insufficient_funds",
    )
    assert [request.replayed for request in payments.keyed_requests] == [False, True, False]
    assert paid.status == "succeeded"
    assert [charge.payment_method for charge in payments.charges] == ["pm_card_new"]


def test_a_lost_answer_leaves_the_charge_made_and_findable_by_its_metadata() -> None:
    # GIVEN Stripe will drop the connection after the next request ran
    payments = FakePayments()
    payments.lose_next_answers(1)

    # WHEN a charge is sent
    with pytest.raises(PaymentFailed) as lost:
        payments.create_payment_intent(PARAMS, KEY)

    # THEN the caller saw a transient failure, yet the money was taken and the search finds it
    assert (lost.value.failure.kind, lost.value.failure.availability) == (FailureKind.TRANSIENT, True)
    (charge,) = payments.charges
    found = payments.find_payment_intent("don-1", "2026-03-01")
    assert found is not None
    assert (found.payment_intent_id, found.status) == (charge.payment_intent_id, "succeeded")
