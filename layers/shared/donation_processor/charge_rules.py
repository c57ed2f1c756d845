"""The charging rules for one period, in one place: what to send next, and what Stripe's answer means.

Pure functions over typed values: no I/O, no clock of their own, no Stripe or MongoDB types. `plan` says
which request the intent needs next; `decide` maps Stripe's answer to one outcome, a row of the outcomes
table in docs/ARCHITECTURE.md. The processor applies outcomes; it does not decide them.

The retry policy, all of it:
- a transient failure (no answer, 5xx, 409/429, `Stripe-Should-Retry: true`) is retried inside the run
  with the same key and parameters, up to `retry_attempts` times (`retries_in_run`); after that the
  period stays due and the next run sends the same request again;
- a soft decline is retried on the dunning schedule (`dunning_schedule_days` after attempt n is entry n,
  the last entry repeating), each time as a new attempt with a new key and the schedule's payment method
  of that moment, until `max_attempts` declines stop the schedule;
- a hard decline, a rejected request or a cancelled PaymentIntent stops the schedule at once;
- `processing` and unclear idempotency answers are looked at again after `recheck_after`;
- an answer lost inside Stripe's idempotency window is recovered by re-sending the same key with the same
  parameters; outside it, by retrieving the PaymentIntent or searching its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from donation_processor.charge_intent import Attempt, AttemptOutcome, ChargeIntent
from donation_processor.charge_outcome import FailureKind, StripeFailure
from donation_processor.idempotency import attempt_key
from donation_processor.ports import PaymentIntentResult

# Stripe keeps idempotency keys for at least 24 hours; past this age a key may no longer replay.
IDEMPOTENCY_WINDOW = timedelta(hours=23)
RECHECK_AFTER = timedelta(hours=1)
CONFIRMABLE = frozenset({"requires_payment_method", "requires_confirmation", "requires_action"})


@dataclass(frozen=True)
class ChargePolicy:
    max_attempts: int
    dunning_schedule_days: tuple[int, ...]
    retry_attempts: int
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 20.0
    idempotency_window: timedelta = IDEMPOTENCY_WINDOW
    recheck_after: timedelta = RECHECK_AFTER

    def retries_in_run(self, failure: StripeFailure, retries_made: int) -> bool:
        return failure.kind is FailureKind.TRANSIENT and retries_made < self.retry_attempts

    def next_attempt_at(self, now: datetime, declines: int) -> datetime:
        """After decline n, wait dunning_schedule_days[n-1] days (the last entry repeats)."""
        index = min(max(declines, 1), len(self.dunning_schedule_days)) - 1
        return now + timedelta(days=self.dunning_schedule_days[index])

    def exhausted(self, declines: int) -> bool:
        return declines >= self.max_attempts


# -- what the schedule document says now (only what the rules need) ---------------------------------------


@dataclass(frozen=True)
class ScheduleState:
    active: bool
    payment_method_id: str | None


# -- steps: the next request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send an attempt: a new one (written on the intent first) or, with new=False, the recorded one again."""

    attempt: Attempt
    new: bool


@dataclass(frozen=True)
class Retrieve:
    payment_intent_id: str


@dataclass(frozen=True)
class Search:
    """Find the period's PaymentIntent by its metadata (past the idempotency window)."""


@dataclass(frozen=True)
class NotYet:
    """A dunning retry that is not due: nothing to send in this run."""

    at: datetime


Step = Send | Retrieve | Search | NotYet


# -- answers -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotFound:
    """A metadata search found no PaymentIntent for the period."""


Answer = PaymentIntentResult | StripeFailure | NotFound


# -- outcomes: one per row of the outcomes table ---------------------------------------------------------


class StopReason(StrEnum):
    HARD_DECLINE = "hard_decline"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    STRIPE_REJECTED_REQUEST = "stripe_rejected_request"
    SCHEDULE_INACTIVE = "schedule_inactive"  # cancelled or deleted by the host before a new attempt


class ScheduleStatus(StrEnum):
    ACTIVE = "active"
    PAYMENT_FAILED = "payment_failed"
    INVALID = "invalid"


@dataclass(frozen=True)
class Charged:
    payment_intent_id: str
    amount: int
    currency: str


@dataclass(frozen=True)
class NeedsRecheck:
    at: datetime
    payment_intent_id: str | None
    why: str


@dataclass(frozen=True)
class StaysDue:
    """Nothing known changed: the intent stays pending and due, the same request goes out next time."""

    failure: StripeFailure | None
    halts_run: bool = False  # Stripe refused our credentials: no charge in this run can succeed


@dataclass(frozen=True)
class RetryOnSchedule:
    at: datetime
    failure: StripeFailure
    declines: int
    payment_intent_id: str | None


@dataclass(frozen=True)
class Stopped:
    reason: StopReason
    failure: StripeFailure | None
    declines: int
    payment_intent_id: str | None
    canceled: bool = False  # the ledger entry ends `canceled` (no charge possible) instead of `failed`
    dead_letter: bool = True

    @property
    def schedule_status(self) -> ScheduleStatus:
        if self.reason is StopReason.STRIPE_REJECTED_REQUEST:
            return ScheduleStatus.INVALID
        return ScheduleStatus.PAYMENT_FAILED


Outcome = Charged | NeedsRecheck | StaysDue | RetryOnSchedule | Stopped


@dataclass(frozen=True)
class Decision:
    """An outcome, or a further step in the same run (a lookup after an unclear answer, or an attempt
    the lookup showed is needed now), and the intent's attempts as they now stand."""

    intent: ChargeIntent
    outcome: Outcome | None = None
    step: Step | None = None
    notes: tuple[str, ...] = field(default=())


def plan(
    intent: ChargeIntent, schedule: ScheduleState | None, now: datetime, policy: ChargePolicy
) -> Step | Stopped:
    """The next request for this intent, given the schedule document as it stands now (None: deleted).

    What is unresolved is always resolved, whatever the document says now. A new attempt charges the
    donor again, so it goes out only while the host still has the schedule active; otherwise the period
    is given up (`canceled`, no dead letter: the host stopped it, nobody has to act).
    """
    unresolved = intent.unresolved_attempt
    if unresolved is not None:
        if now - unresolved.sent_at < policy.idempotency_window:
            return Send(unresolved, new=False)  # same key, same parameters: Stripe replays or runs it once
        if intent.payment_intent_id is not None:
            return Retrieve(intent.payment_intent_id)
        return Search()
    if intent.next_attempt_at > now:
        return NotYet(intent.next_attempt_at)
    if schedule is None or not schedule.active or schedule.payment_method_id is None:
        return Stopped(
            StopReason.SCHEDULE_INACTIVE,
            None,
            intent.dunning_attempts,
            intent.payment_intent_id,
            canceled=True,
            dead_letter=False,
        )
    number = intent.next_attempt_number
    return Send(
        Attempt(
            number=number,
            key=attempt_key(intent.creation_key, number),
            payment_method_id=schedule.payment_method_id,
            sent_at=now,
            creates=intent.payment_intent_id is None,
        ),
        new=True,
    )


def decide(answer: Answer, step: Step, intent: ChargeIntent, now: datetime, policy: ChargePolicy) -> Decision:
    """Map Stripe's answer to the request `step` into an outcome (or the next step of this run)."""
    if isinstance(answer, NotFound):
        return _decide_not_found(intent, now, policy)
    if isinstance(answer, StripeFailure):
        return _decide_failure(answer, step, intent, now, policy)
    return _decide_result(answer, step, intent, now, policy)


def _with_answer(intent: ChargeIntent, outcome: AttemptOutcome, reason: str | None) -> ChargeIntent:
    last = intent.last_attempt
    if last is None or last.outcome is not None:
        return intent
    return _replace_last(intent, last.answered(outcome, reason))


def _replace_last(intent: ChargeIntent, attempt: Attempt) -> ChargeIntent:
    return replace(intent, attempts=(*intent.attempts[:-1], attempt))


def _decide_not_found(intent: ChargeIntent, now: datetime, policy: ChargePolicy) -> Decision:
    unresolved = intent.unresolved_attempt
    if unresolved is None or not unresolved.creates:
        return Decision(
            intent, outcome=NeedsRecheck(now + policy.recheck_after, None, "no PaymentIntent found")
        )
    # Nothing was ever created under the period's metadata: the lost creation never ran. Send it again.
    return Decision(intent, step=Send(unresolved, new=False), notes=("creation never ran; sent again",))


def _decide_result(
    result: PaymentIntentResult, step: Step, intent: ChargeIntent, now: datetime, policy: ChargePolicy
) -> Decision:
    pi = result.payment_intent_id
    if result.status == "succeeded":
        settled = _with_answer(intent, AttemptOutcome.SUCCEEDED, None)
        return Decision(
            settled,
            outcome=Charged(
                pi,
                result.amount if result.amount is not None else intent.amount,
                result.currency or intent.currency,
            ),
        )
    if result.status == "processing":
        return Decision(
            _with_answer(intent, AttemptOutcome.PROCESSING, None),
            outcome=NeedsRecheck(now + policy.recheck_after, pi, "payment processing"),
        )
    if result.status == "canceled":
        failure = StripeFailure(
            FailureKind.INVALID_REQUEST,
            "invalid_request_error",
            code="payment_intent_canceled",
            message="the period's PaymentIntent is canceled in Stripe",
            payment_intent_id=pi,
        )
        return Decision(
            _with_answer(intent, AttemptOutcome.REJECTED, failure.reason),
            outcome=Stopped(
                StopReason.STRIPE_REJECTED_REQUEST, failure, intent.dunning_attempts, pi, canceled=True
            ),
        )
    if result.status not in CONFIRMABLE:
        failure = StripeFailure(
            FailureKind.INVALID_REQUEST,
            "invalid_request_error",
            code=f"payment_intent_{result.status}",
            message=f"the period's PaymentIntent is {result.status} in Stripe",
            payment_intent_id=pi,
        )
        return Decision(
            _with_answer(intent, AttemptOutcome.REJECTED, failure.reason),
            outcome=Stopped(StopReason.STRIPE_REJECTED_REQUEST, failure, intent.dunning_attempts, pi),
        )
    if isinstance(step, Send):
        # A charge request answered without an error but not paid: an off-session charge the donor must
        # authenticate. The card networks' rules say: do not try it again without the donor.
        failure = StripeFailure(
            FailureKind.HARD_DECLINE,
            "card_error",
            code="authentication_required",
            message=f"PaymentIntent needs the donor: status {result.status}",
            payment_intent_id=pi,
        )
        return _declined(intent, failure, now, policy)
    # A lookup found the PaymentIntent unpaid after an answer we never saw (past the idempotency window,
    # or adopted from an earlier version): that request did not charge. Its decline, if any, is days old
    # or was already counted, so it is not counted again; a new attempt may go out now.
    looked_up = replace(
        _with_answer(intent, AttemptOutcome.DECLINED, "unanswered; found unpaid later"),
        payment_intent_id=pi,
        next_attempt_at=min(intent.next_attempt_at, now),
    )
    return Decision(looked_up, notes=("found unpaid; a new attempt may go out",))


def _decide_failure(
    failure: StripeFailure, step: Step, intent: ChargeIntent, now: datetime, policy: ChargePolicy
) -> Decision:
    if failure.kind is FailureKind.TRANSIENT:
        return Decision(intent, outcome=StaysDue(failure))
    if failure.kind is FailureKind.FATAL:
        return Decision(intent, outcome=StaysDue(failure, halts_run=True))
    if failure.error_type == "idempotency_error":
        # The key went out before with other parameters (only an earlier version of the job did that: the
        # intent re-sends what it recorded). Whatever that request did decides the period: look it up.
        if isinstance(step, Search | Retrieve):
            return Decision(
                intent, outcome=NeedsRecheck(now + policy.recheck_after, None, "idempotency_error")
            )
        if intent.payment_intent_id is not None:
            return Decision(intent, step=Retrieve(intent.payment_intent_id))
        return Decision(intent, step=Search())
    if failure.kind in (FailureKind.SOFT_DECLINE, FailureKind.HARD_DECLINE):
        return _declined(intent, failure, now, policy)
    rejected = _with_answer(intent, AttemptOutcome.REJECTED, failure.reason)
    pi = failure.payment_intent_id or intent.payment_intent_id
    return Decision(
        rejected,
        outcome=Stopped(StopReason.STRIPE_REJECTED_REQUEST, failure, intent.dunning_attempts, pi),
    )


def _declined(intent: ChargeIntent, failure: StripeFailure, now: datetime, policy: ChargePolicy) -> Decision:
    declines = intent.dunning_attempts + 1
    pi = failure.payment_intent_id or intent.payment_intent_id
    answered = _with_answer(intent, AttemptOutcome.DECLINED, failure.reason)
    if failure.kind is FailureKind.HARD_DECLINE:
        return Decision(answered, outcome=Stopped(StopReason.HARD_DECLINE, failure, declines, pi))
    if policy.exhausted(declines):
        return Decision(answered, outcome=Stopped(StopReason.ATTEMPTS_EXHAUSTED, failure, declines, pi))
    return Decision(
        answered, outcome=RetryOnSchedule(policy.next_attempt_at(now, declines), failure, declines, pi)
    )
