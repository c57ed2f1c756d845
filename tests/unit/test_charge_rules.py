"""The charging rules, table-driven: what to send next (`plan`) and what Stripe's answer means (`decide`).

No server, no database: intents, answers and outcomes are plain values.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from donation_processor.charge_intent import Attempt, AttemptOutcome, ChargeIntent, IntentStatus
from donation_processor.charge_outcome import FailureKind, StripeFailure
from donation_processor.charge_rules import (
    Charged,
    ChargePolicy,
    NeedsRecheck,
    NotFound,
    NotYet,
    Retrieve,
    RetryOnSchedule,
    ScheduleState,
    Search,
    Send,
    StaysDue,
    Stopped,
    StopReason,
    decide,
    plan,
)
from donation_processor.idempotency import attempt_key, payment_intent_key
from donation_processor.ports import PaymentIntentResult

NOW = datetime(2026, 12, 1, 10, tzinfo=UTC)
POLICY = ChargePolicy(max_attempts=4, dunning_schedule_days=(1, 3, 7), retry_attempts=4)
KEY = payment_intent_key("don-1", "2026-12-01")
ACTIVE = ScheduleState(active=True, payment_method_id="pm_new")
PI = "pi_123"


def _intent(*attempts: Attempt, **changes: Any) -> ChargeIntent:
    intent = ChargeIntent(
        ref="ref-1",
        scheduled_donation_id="don-1",
        period="2026-12-01",
        due_at=NOW - timedelta(hours=1),
        seen_next_run_at=NOW - timedelta(hours=1),
        amount=2500,
        currency="usd",
        customer_id="cus_1",
        payment_method_id="pm_old",
        creation_key=KEY,
        status=IntentStatus.PENDING,
        attempts=attempts,
        next_attempt_number=len(attempts) + 1,
        dunning_attempts=0,
        next_attempt_at=NOW,
        created_at=NOW - timedelta(hours=1),
    )
    return replace(intent, **changes)


def _sent(
    number: int, *, ago: timedelta = timedelta(minutes=5), outcome: AttemptOutcome | None = None
) -> Attempt:
    return Attempt(
        number=number,
        key=attempt_key(KEY, number),
        payment_method_id="pm_old",
        sent_at=NOW - ago,
        creates=number == 1,
        outcome=outcome,
    )


def _failure(
    kind: FailureKind, code: str | None = None, decline: str | None = None, **extra: Any
) -> StripeFailure:
    error_type = extra.pop(
        "error_type",
        "card_error" if kind in (FailureKind.SOFT_DECLINE, FailureKind.HARD_DECLINE) else "api_error",
    )
    return StripeFailure(kind, error_type, code=code, decline_code=decline, payment_intent_id=PI, **extra)


def _result(status: str) -> PaymentIntentResult:
    return PaymentIntentResult(payment_intent_id=PI, status=status, amount=2500, currency="usd")


# -- plan: which request goes out next -------------------------------------------------------------------

PLANS = [
    # (what the intent holds, what the schedule says now, expected step)
    ("a fresh period sends its recorded creation", _intent(_sent(1)), ACTIVE, Send(_sent(1), new=False)),
    (
        "a lost answer inside the window re-sends the same key and parameters, even for a cancelled schedule",
        _intent(_sent(2, ago=timedelta(hours=22)), payment_intent_id=PI),
        ScheduleState(active=False, payment_method_id=None),
        Send(_sent(2, ago=timedelta(hours=22)), new=False),
    ),
    (
        "a lost creation past the window is searched for",
        _intent(_sent(1, ago=timedelta(hours=24))),
        ACTIVE,
        Search(),
    ),
    (
        "a lost confirm past the window retrieves the PaymentIntent",
        _intent(_sent(2, ago=timedelta(hours=24)), payment_intent_id=PI),
        ACTIVE,
        Retrieve(PI),
    ),
    (
        "a declined period waits for its dunning date",
        _intent(_sent(1, outcome=AttemptOutcome.DECLINED), next_attempt_at=NOW + timedelta(days=1)),
        ACTIVE,
        NotYet(NOW + timedelta(days=1)),
    ),
]


@pytest.mark.parametrize(("case", "intent", "schedule", "expected"), PLANS, ids=[case[0] for case in PLANS])
def test_plan_picks_the_next_request(
    case: str, intent: ChargeIntent, schedule: ScheduleState, expected: Any
) -> None:
    # GIVEN an intent and the schedule as it stands now
    # WHEN the next request is planned
    # THEN it is the one the rules name
    assert plan(intent, schedule, NOW, POLICY) == expected


def test_a_due_retry_is_a_new_attempt_with_a_new_key_and_the_schedules_current_card() -> None:
    # GIVEN a period whose attempt 2 was declined (its key used), due again, and a donor who changed cards
    intent = _intent(
        _sent(1, outcome=AttemptOutcome.DECLINED),
        _sent(2, outcome=AttemptOutcome.DECLINED),
        payment_intent_id=PI,
    )

    # WHEN the next request is planned
    step = plan(intent, ACTIVE, NOW, POLICY)

    # THEN attempt 3 confirms the PaymentIntent with a key never used and the new card, written first
    assert step == Send(Attempt(3, f"{KEY}:attempt-3", "pm_new", NOW, creates=False), new=True)


@pytest.mark.parametrize(
    "schedule",
    [
        None,
        ScheduleState(active=False, payment_method_id="pm_new"),
        ScheduleState(active=True, payment_method_id=None),
    ],
    ids=["deleted", "cancelled", "no usable card"],
)
def test_no_new_attempt_charges_a_schedule_the_host_stopped(schedule: ScheduleState | None) -> None:
    # GIVEN a declined period whose retry is due, and a schedule the host deleted or cancelled
    intent = _intent(_sent(1, outcome=AttemptOutcome.DECLINED), payment_intent_id=PI, dunning_attempts=1)

    # WHEN the next request is planned
    step = plan(intent, schedule, NOW, POLICY)

    # THEN the period is given up without a charge, a dead letter or a donor event
    assert step == Stopped(StopReason.SCHEDULE_INACTIVE, None, 1, PI, canceled=True, dead_letter=False)


# -- decide: what the answer means -------------------------------------------------------------------------

SENT = Send(_sent(1), new=False)
DECISIONS = [
    # (case, answer, step, intent, expected outcome)
    ("succeeded", _result("succeeded"), SENT, _intent(_sent(1)), Charged(PI, 2500, "usd")),
    (
        "processing",
        _result("processing"),
        SENT,
        _intent(_sent(1)),
        NeedsRecheck(NOW + timedelta(hours=1), PI, "payment processing"),
    ),
    (
        "soft decline with attempts left",
        _failure(FailureKind.SOFT_DECLINE, "card_declined", "insufficient_funds"),
        SENT,
        _intent(_sent(1)),
        RetryOnSchedule(
            NOW + timedelta(days=1),
            _failure(FailureKind.SOFT_DECLINE, "card_declined", "insufficient_funds"),
            1,
            PI,
        ),
    ),
    (
        "soft decline of the last attempt",
        _failure(FailureKind.SOFT_DECLINE, "card_declined", "insufficient_funds"),
        SENT,
        _intent(_sent(1), dunning_attempts=3),
        Stopped(
            StopReason.ATTEMPTS_EXHAUSTED,
            _failure(FailureKind.SOFT_DECLINE, "card_declined", "insufficient_funds"),
            4,
            PI,
        ),
    ),
    (
        "hard decline",
        _failure(FailureKind.HARD_DECLINE, "card_declined", "stolen_card"),
        SENT,
        _intent(_sent(1)),
        Stopped(
            StopReason.HARD_DECLINE, _failure(FailureKind.HARD_DECLINE, "card_declined", "stolen_card"), 1, PI
        ),
    ),
    (
        "transient",
        _failure(FailureKind.TRANSIENT, availability=True),
        SENT,
        _intent(_sent(1)),
        StaysDue(_failure(FailureKind.TRANSIENT, availability=True)),
    ),
    (
        "fatal",
        _failure(FailureKind.FATAL, http_status=401),
        SENT,
        _intent(_sent(1)),
        StaysDue(_failure(FailureKind.FATAL, http_status=401), halts_run=True),
    ),
    (
        "invalid request",
        _failure(FailureKind.INVALID_REQUEST, "parameter_unknown", error_type="invalid_request_error"),
        SENT,
        _intent(_sent(1)),
        Stopped(
            StopReason.STRIPE_REJECTED_REQUEST,
            _failure(FailureKind.INVALID_REQUEST, "parameter_unknown", error_type="invalid_request_error"),
            0,
            PI,
        ),
    ),
]


@pytest.mark.parametrize(
    ("case", "answer", "step", "intent", "expected"), DECISIONS, ids=[case[0] for case in DECISIONS]
)
def test_decide_maps_each_answer_to_one_outcome(
    case: str, answer: Any, step: Any, intent: ChargeIntent, expected: Any
) -> None:
    # GIVEN an answer from Stripe to a request
    # WHEN it is decided
    decision = decide(answer, step, intent, NOW, POLICY)

    # THEN it is exactly one outcome, and no further request
    assert decision.outcome == expected
    assert decision.step is None


def test_an_off_session_charge_that_needs_the_donor_is_a_hard_decline() -> None:
    # GIVEN a charge answered requires_action (3-D Secure for an off-session payment)
    decision = decide(_result("requires_action"), SENT, _intent(_sent(1)), NOW, POLICY)

    # THEN the donor must act: stopped as a hard decline, authentication_required
    assert isinstance(decision.outcome, Stopped)
    assert decision.outcome.reason is StopReason.HARD_DECLINE
    assert decision.outcome.failure is not None
    assert decision.outcome.failure.code == "authentication_required"


def test_a_canceled_payment_intent_ends_the_period_as_canceled() -> None:
    decision = decide(
        _result("canceled"),
        Retrieve(PI),
        _intent(_sent(2, ago=timedelta(days=2)), payment_intent_id=PI),
        NOW,
        POLICY,
    )
    assert isinstance(decision.outcome, Stopped)
    assert (decision.outcome.reason, decision.outcome.canceled) == (StopReason.STRIPE_REJECTED_REQUEST, True)


def test_an_answer_records_the_outcome_on_the_attempt_it_answers() -> None:
    # GIVEN a soft decline of attempt 1
    decision = decide(
        _failure(FailureKind.SOFT_DECLINE, "card_declined", "insufficient_funds"),
        SENT,
        _intent(_sent(1)),
        NOW,
        POLICY,
    )

    # THEN attempt 1 is marked declined with Stripe's reason, so it is never re-sent as unresolved
    assert decision.intent.attempts[-1].outcome is AttemptOutcome.DECLINED
    assert decision.intent.attempts[-1].reason == "insufficient_funds"
    assert decision.intent.unresolved_attempt is None


def test_an_idempotency_error_is_looked_up_never_stopped() -> None:
    # GIVEN a key Stripe saw before with other parameters (only an earlier version could have sent it)
    failure = _failure(FailureKind.INVALID_REQUEST, error_type="idempotency_error")

    # WHEN the answer is decided for a creation, and for a confirm of a known PaymentIntent
    creation = decide(failure, SENT, _intent(_sent(1)), NOW, POLICY)
    confirm = decide(failure, Send(_sent(2), new=False), _intent(_sent(2), payment_intent_id=PI), NOW, POLICY)

    # THEN the period's PaymentIntent is looked up first; nothing is stopped
    assert (creation.outcome, creation.step) == (None, Search())
    assert (confirm.outcome, confirm.step) == (None, Retrieve(PI))


def test_a_lookup_that_finds_the_payment_intent_unpaid_frees_the_next_attempt_without_counting_it() -> None:
    # GIVEN attempt 2 whose answer was lost more than a day ago, and Stripe showing the PaymentIntent unpaid
    intent = _intent(
        _sent(1, outcome=AttemptOutcome.DECLINED),
        _sent(2, ago=timedelta(days=2)),
        payment_intent_id=PI,
        dunning_attempts=1,
        next_attempt_at=NOW + timedelta(days=2),
    )

    # WHEN the lookup is decided
    decision = decide(_result("requires_payment_method"), Retrieve(PI), intent, NOW, POLICY)

    # THEN attempt 2 is closed as not charged, the dunning count is unchanged, and attempt 3 may go out now
    assert decision.outcome is None
    assert decision.intent.unresolved_attempt is None
    assert decision.intent.dunning_attempts == 1
    assert plan(decision.intent, ACTIVE, NOW, POLICY) == Send(
        Attempt(3, f"{KEY}:attempt-3", "pm_new", NOW, creates=False), new=True
    )


def test_a_search_that_finds_nothing_sends_the_lost_creation_again() -> None:
    # GIVEN a creation whose answer was lost past the window, and no PaymentIntent with the period's metadata
    intent = _intent(_sent(1, ago=timedelta(hours=25)))

    # WHEN the empty search is decided
    decision = decide(NotFound(), Search(), intent, NOW, POLICY)

    # THEN the same creation goes out again: nothing was ever charged for the period
    assert decision.step == Send(_sent(1, ago=timedelta(hours=25)), new=False)


@pytest.mark.parametrize(("declines", "days"), [(1, 1), (2, 3), (3, 7), (4, 7), (10, 7)])
def test_the_dunning_delay_after_decline_n_is_entry_n_and_the_last_entry_repeats(
    declines: int, days: int
) -> None:
    assert POLICY.next_attempt_at(NOW, declines) == NOW + timedelta(days=days)


def test_only_transient_failures_are_retried_inside_the_run_and_only_up_to_the_limit() -> None:
    transient = _failure(FailureKind.TRANSIENT)
    assert POLICY.retries_in_run(transient, 0)
    assert not POLICY.retries_in_run(transient, POLICY.retry_attempts)
    for kind in (
        FailureKind.SOFT_DECLINE,
        FailureKind.HARD_DECLINE,
        FailureKind.INVALID_REQUEST,
        FailureKind.FATAL,
    ):
        assert not POLICY.retries_in_run(_failure(kind), 0)
