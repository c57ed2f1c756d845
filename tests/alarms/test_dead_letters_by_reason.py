"""The engine counts its dead letters by reason (metric DeadLettersByReason, dimension `reason`), so the
alarms can tell the donors' letters (declines) from the operators' (bad data, rejected requests)."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from donation_processor.charge_outcome import FailureKind, PaymentFailed, StripeFailure
from donation_processor.config import load_settings
from donation_processor.dead_letter_reasons import DONOR_ACTIONABLE, OPERATOR_ACTIONABLE, DeadLetterReason
from donation_processor.engine import DonationEngine, EngineDependencies
from donation_processor.invocation import RunRequest
from donation_processor.metric_names import DEAD_LETTERS_BY_REASON
from donation_processor.observability import metrics, publish_run_metrics
from donation_processor.ports import PaymentIntentResult
from donation_processor.summary import RunSummary
from harness.local.seed import scheduled_donation
from tests.support.alarm_evaluator import read_emf
from tests.support.fakes import (
    FakeClock,
    FakeDeadLetters,
    FakeDonorEvents,
    FakeLock,
    FakePayments,
    FakeStore,
    sockets_disabled,
)

NOW = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
REJECTED_CUSTOMER = "cus_unknownToStripe"
ENVIRONMENT = {
    "STRIPE_SECRET_KEY": "sk_test_fast_tier",
    "LOCK_TABLE_NAME": "run-lock",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.invalid/dead-letters",
    "MAX_CONCURRENCY": "1",
    "MAX_ATTEMPTS": "1",
}


class OneCustomerRejected(FakePayments):
    """Stripe rejects the requests of one unknown customer (HTTP 400), as it would a deleted customer."""

    def create_payment_intent(self, params: Mapping[str, Any], idempotency_key: str) -> PaymentIntentResult:
        if params.get("customer") == REJECTED_CUSTOMER:
            raise PaymentFailed(
                StripeFailure(
                    FailureKind.INVALID_REQUEST,
                    "invalid_request_error",
                    code="resource_missing",
                    message="No such customer",
                    http_status=400,
                )
            )
        return super().create_payment_intent(params, idempotency_key)


@pytest.fixture(autouse=True)
def no_sockets() -> Iterator[None]:
    with sockets_disabled():
        yield


def _run(
    store: FakeStore, payments: FakePayments, queue: FakeDeadLetters
) -> tuple[RunSummary, dict[str, float]]:
    clock = FakeClock(NOW)
    engine = DonationEngine(
        load_settings(ENVIRONMENT),
        EngineDependencies(FakeLock(clock), store, payments, queue, donor_events=FakeDonorEvents()),
        clock=clock,
        sleep=lambda _seconds: None,
    )
    summary = engine.run(RunRequest(source="schedule"), lambda: 900_000)
    output = io.StringIO()
    with redirect_stdout(output):
        publish_run_metrics(summary)
        metrics.flush_metrics()
    by_reason = {
        dict(point.metric.dimensions)["reason"]: point.value
        for point in read_emf(output.getvalue(), NOW)
        if point.metric.name == DEAD_LETTERS_BY_REASON
    }
    return summary, by_reason


def _due(store: FakeStore, payment_method: str, customer: str = "cus_fast1", **fields: Any) -> None:
    store.add_schedule(
        scheduled_donation(
            customer_id=customer,
            next_run_at=NOW - timedelta(hours=1),
            payment_method_id=payment_method,
            **fields,
        )
    )


def test_each_dead_letter_is_counted_once_under_its_reason_with_the_service_dimension() -> None:
    # GIVEN due donations that end each way a letter can: a stolen card, a soft decline on the last allowed
    # attempt, a customer Stripe does not know, a document without a currency, and one that is charged
    store, payments, queue = FakeStore(), OneCustomerRejected(), FakeDeadLetters()
    payments.decline("pm_card_stolen", "stolen_card")
    payments.decline("pm_card_lowFunds", "insufficient_funds")
    _due(store, "pm_card_stolen")
    _due(store, "pm_card_lowFunds")
    _due(store, "pm_card_visa", customer=REJECTED_CUSTOMER)
    _due(store, "pm_card_visa", currency=None)
    _due(store, "pm_card_visa")

    # WHEN the job runs and its metrics are flushed
    summary, by_reason = _run(store, payments, queue)

    # THEN each letter is counted under its own reason, and the charged donation under none
    assert set(by_reason) == set(DeadLetterReason)
    assert by_reason == {
        "hard_decline": 1,
        "attempts_exhausted": 1,
        "stripe_rejected_request": 1,
        "invalid_document": 1,
    }
    assert sorted(letter["reason"] for letter in queue.letters) == sorted(by_reason)
    assert summary.dead_letters_by_reason == by_reason
    assert (summary.dead_lettered, summary.succeeded) == (4, 1)


def test_a_letter_parked_while_sqs_is_down_is_counted_by_the_run_that_stopped_the_donation_only() -> None:
    # GIVEN a stolen card due while SQS is unreachable
    store, payments, queue = FakeStore(), FakePayments(), FakeDeadLetters(unreachable=True)
    payments.decline("pm_card_stolen", "stolen_card")
    _due(store, "pm_card_stolen")

    # WHEN one run parks its letter, and the next one sends it once SQS is back
    parking, parked_reasons = _run(store, payments, queue)
    queue.unreachable = False
    sending, sent_reasons = _run(store, payments, queue)

    # THEN the reason is counted once, by the run that stopped the donation; the re-send is delivery only,
    # and both runs report every reason, zeros included
    assert parked_reasons == {reason: 1 if reason == "hard_decline" else 0 for reason in DeadLetterReason}
    assert parking.dead_letters_deferred == 1
    assert sent_reasons == dict.fromkeys(DeadLetterReason, 0)
    assert (sending.dead_lettered, [letter["reason"] for letter in queue.letters]) == (1, ["hard_decline"])


def test_every_dead_letter_reason_is_either_the_donors_or_an_operators_to_act_on() -> None:
    # GIVEN the reasons a letter can carry
    reasons = set(DeadLetterReason)
    # THEN each one has exactly one owner, which the alarms' severities follow (docs/ALARMS.md)
    assert reasons == DONOR_ACTIONABLE | OPERATOR_ACTIONABLE
    assert not DONOR_ACTIONABLE & OPERATOR_ACTIONABLE
