"""Carry one period's charge intent to an outcome, and apply the outcome; the rules are charge_rules.py's.

Order of writes, so that any crash is finished by a later run without a second charge:
1. the intent, with the request's key and parameters, is written before the request is sent;
2. Stripe's answer is recorded on the intent, by a write conditional on this run's lease: only the
   writer whose write won counts the outcome, publishes the donor event and parks the dead letter;
3. only then does the schedule document move on (or stop, or wait for the dunning retry);
4. the intent is closed, in batches: an intent left open after step 2 is found and applied again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from donation_processor import donor_event_types as donor_events
from donation_processor.backoff import backoff_delay
from donation_processor.charge_intent import ChargeIntent, IntentStatus
from donation_processor.charge_outcome import FailureKind, PaymentFailed, StripeFailure
from donation_processor.charge_rules import (
    Answer,
    Charged,
    ChargePolicy,
    NeedsRecheck,
    NotFound,
    NotYet,
    Outcome,
    Retrieve,
    RetryOnSchedule,
    ScheduleState,
    Search,
    Send,
    StaysDue,
    Step,
    Stopped,
    StopReason,
    decide,
    plan,
)
from donation_processor.circuit_breaker import CircuitBreaker
from donation_processor.dead_letter_reasons import DeadLetterReason
from donation_processor.dead_letters import DeadLetterCourier, build_letter, plain_value
from donation_processor.exceptions import PaymentsUnavailableError
from donation_processor.observability import logger
from donation_processor.ports import (
    Claim,
    Document,
    DonationStorePort,
    DonorEventsPort,
    ParkedLetter,
    PaymentIntentResult,
    PaymentsPort,
    ScheduleWrite,
)
from donation_processor.schedule import following_run
from donation_processor.summary import RunSummary
from donation_processor.systemic_guard import SystemicGuard
from donation_processor.validation import ScheduleView, read_schedule

_MAX_STEPS = 4  # requests for one intent in one run: e.g. a lookup, then a new attempt
_CLOSE_BATCH = 50


@dataclass(frozen=True)
class RunContext:
    run_id: str
    claim: Claim
    stop: threading.Event  # set when no new charge may start (time budget, circuit, lock lost)
    summary: RunSummary
    lease_until: Callable[[], datetime]


@dataclass(frozen=True)
class InvalidWork:
    """A claimed document that must not be charged."""

    document: Document
    reason: str


@dataclass(frozen=True)
class IntentWork:
    """An intent to carry on: opened for a claimed schedule in this run, or found unresolved."""

    intent: ChargeIntent
    document: Document | None  # the schedule as read now; None when it was deleted
    claimed_schedule: bool  # this run claimed the schedule document (and must let it go)
    missed: tuple[str, ...] = ()  # periods this run recorded as missed before opening it (oldest first)


@dataclass(frozen=True)
class CatchUpLater:
    """A claimed schedule catching up under MISSED_PERIODS=all, charged too recently: let go for this run."""

    document: Document
    until: datetime


Work = InvalidWork | IntentWork | CatchUpLater


@dataclass(frozen=True)
class _HeldStop:
    """A stop for a rejected request, held until the systemic guard knows whether it was the donor's."""

    outcome: Stopped
    intent: ChargeIntent
    schedule: ScheduleView | None


class _CircuitOpen(Exception):
    """Stripe is unavailable: leave the intent as it is."""


class ChargeProcessor:
    def __init__(
        self,
        store: DonationStorePort,
        payments: PaymentsPort,
        courier: DeadLetterCourier,
        breaker: CircuitBreaker,
        policy: ChargePolicy,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None] = time.sleep,
        events: DonorEventsPort | None = None,
        guard: SystemicGuard[_HeldStop] | None = None,
    ) -> None:
        self._events = events
        self._guard: SystemicGuard[_HeldStop] = guard if guard is not None else SystemicGuard(3)
        self._store = store
        self._payments = payments
        self._courier = courier
        self._breaker = breaker
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._to_close: list[Any] = []
        self._close_lock = threading.Lock()

    # -- entry --------------------------------------------------------------------------------------------

    def process(self, work: Work, ctx: RunContext) -> None:
        if isinstance(work, InvalidWork):
            self._reject_invalid(work, ctx)
            return
        if isinstance(work, CatchUpLater):
            self._catch_up_later(work, ctx)
            return
        if work.missed:
            self._report_missed(work, ctx)
        if ctx.stop.is_set():
            self._let_go(work, ctx)
            return
        if work.intent.status is IntentStatus.MISSED:
            self._skip_missed_period(work, ctx)
            return
        intent = self._lease(work, ctx)
        if intent is None:
            return
        schedule = read_schedule(work.document) if work.document is not None else None
        if intent.status is not IntentStatus.PENDING:
            # Resolved by an earlier run that stopped before the schedule moved on: apply it, count nothing.
            self._apply_resolved(intent, schedule)
            return
        self._resolve(intent, schedule, ctx)

    def finish(self, ctx: RunContext) -> None:
        """The run is over: stop what the systemic guard still holds (their rejections were their own),
        and close the intents applied in this run."""
        for held in self._guard.drain():
            self._stopped(held.outcome, held.intent, held.schedule, ctx)
        self.flush_closed()

    def flush_closed(self) -> None:
        with self._close_lock:
            refs, self._to_close = self._to_close, []
        self._store.close_intents(refs)

    # -- missed periods -----------------------------------------------------------------------------------

    def _report_missed(self, work: IntentWork, ctx: RunContext) -> None:
        """Count and announce the periods recorded as missed; only the run whose insert wrote them does."""
        ctx.summary.add(missed=len(work.missed))
        self._publish(
            donor_events.PERIODS_MISSED, work.intent, ctx, outcome="missed", missedPeriods=list(work.missed)
        )
        logger.info(
            "missed periods recorded; the latest is charged",
            donation_id=work.intent.scheduled_donation_id,
            period=work.intent.period,
            missed=len(work.missed),
        )

    def _catch_up_later(self, work: CatchUpLater, ctx: RunContext) -> None:
        raw_id = work.document.get("_id")
        self._store.release(raw_id, ctx.claim, None)
        ctx.summary.add(skipped=1)
        logger.info(
            "catching up: the next period waits for the minimum interval",
            donation_id=str(raw_id)[:256],
            until=work.until.isoformat(),
        )

    def _skip_missed_period(self, work: IntentWork, ctx: RunContext) -> None:
        """The host pointed the schedule at a period recorded as missed: move past it, charge nothing."""
        schedule = read_schedule(work.document) if work.document is not None else None
        following = _following(work.intent, schedule)
        moved = (
            schedule is not None
            and schedule.next_run_at is not None
            and following is not None
            and self._store.skip_paid_period(schedule.raw_id, schedule.next_run_at, *following)
        )
        if not moved:
            self._leave_schedule(work, ctx)
        ctx.summary.add(skipped=1)
        logger.warning(
            "schedule pointed at a missed period; moved on without a charge",
            donation_id=work.intent.scheduled_donation_id,
            period=work.intent.period,
        )

    # -- leasing ------------------------------------------------------------------------------------------

    def _lease(self, work: IntentWork, ctx: RunContext) -> ChargeIntent | None:
        """The intent, leased to this run; None when another run has it or the period needs nothing."""
        intent = work.intent
        if intent.lease == ctx.claim:
            return intent
        now = self._clock()
        schedule = read_schedule(work.document) if work.document is not None else None
        if intent.open:
            taken = self._store.take_intent(intent, ctx.claim, now, ctx.lease_until())
        elif intent.status is IntentStatus.SUCCEEDED:
            # The host moved nextRunAt back onto a period already paid: move it on again, charge nothing.
            self._skip_paid_period(intent, schedule)
            ctx.summary.add(skipped=1)
            return None
        elif schedule is not None and schedule.active:
            # A stopped period on a schedule made active again (by the host or `donations redrive`).
            taken = self._store.reopen_intent(intent, ctx.claim, now, ctx.lease_until())
        else:
            taken = None
        if taken is None:
            self._leave_schedule(work, ctx)
            ctx.summary.add(skipped=1)
            logger.info("period left as it is", donation_id=intent.scheduled_donation_id, open=intent.open)
        return taken

    def _leave_schedule(self, work: IntentWork, ctx: RunContext) -> None:
        """Let a claimed schedule go: marked as waiting for its open intent, or simply released."""
        if not work.claimed_schedule or work.document is None:
            return
        intent, raw_id = work.intent, work.document.get("_id")
        if intent.open:
            self._store.hold_schedule(raw_id, intent.period, intent.next_attempt_at)
        else:
            # Only an open intent clears the mark; a closed one that could not be reopened must not leave it.
            self._store.release(raw_id, ctx.claim, None)

    def _let_go(self, work: IntentWork, ctx: RunContext) -> None:
        """The run is stopping: an intent this run opened or leased stays pending for the next one."""
        intent = work.intent
        if intent.lease == ctx.claim and intent.status is IntentStatus.PENDING:
            self._store.record_pending(intent, ctx.claim, intent.next_attempt_at, None, self._clock())
        self._leave_schedule(work, ctx)
        ctx.summary.add(skipped=1)

    # -- resolving ----------------------------------------------------------------------------------------

    def _resolve(self, intent: ChargeIntent, schedule: ScheduleView | None, ctx: RunContext) -> None:
        state = None if schedule is None else ScheduleState(schedule.active, schedule.payment_method_id)
        next_step: Step | None = None
        outcome: Outcome | None = None
        for _ in range(_MAX_STEPS):
            now = self._clock()
            planned = next_step or plan(intent, state, now, self._policy)
            next_step = None
            if isinstance(planned, Stopped):
                outcome = planned
                break
            if isinstance(planned, NotYet):
                self._wait_for(intent, schedule, planned, ctx)
                return
            if isinstance(planned, Send) and planned.new:
                if not self._store.start_attempt(intent, ctx.claim, planned.attempt):
                    logger.warning("intent lost to a newer run", donation_id=intent.scheduled_donation_id)
                    return
                intent = replace(
                    intent,
                    attempts=(*intent.attempts, planned.attempt),
                    next_attempt_number=planned.attempt.number + 1,
                )
            try:
                answer = self._request_with_retries(planned, intent, ctx)
            except _CircuitOpen:
                if self._store.record_pending(intent, ctx.claim, intent.next_attempt_at, None, self._clock()):
                    self._hold(intent, schedule, intent.next_attempt_at)
                ctx.summary.add(skipped=1)
                logger.info("charge not attempted: circuit open", donation_id=intent.scheduled_donation_id)
                return
            decision = decide(answer, planned, intent, self._clock(), self._policy)
            intent = decision.intent
            for note in decision.notes:
                logger.info("charge intent", note=note, donation_id=intent.scheduled_donation_id)
            if decision.outcome is not None:
                outcome = decision.outcome
                break
            next_step = decision.step
        if outcome is None:
            outcome = NeedsRecheck(
                self._clock() + self._policy.recheck_after, intent.payment_intent_id, "no answer"
            )
        self._apply(outcome, intent, schedule, ctx)

    def _wait_for(
        self, intent: ChargeIntent, schedule: ScheduleView | None, not_yet: NotYet, ctx: RunContext
    ) -> None:
        if self._store.record_pending(intent, ctx.claim, not_yet.at, None, self._clock()):
            self._hold(intent, schedule, not_yet.at)
        ctx.summary.add(skipped=1)

    def _request_with_retries(self, step: Step, intent: ChargeIntent, ctx: RunContext) -> Answer:
        """Send the request; retry a transient failure with the same key and parameters.

        A failure of Stripe's availability while the breaker is open is the outage's, not this donation's:
        the request waits at the breaker (cool-down, probe) without spending its retry budget; the outage
        window bounds that wait. Other transient failures are retried up to the policy's budget.
        """
        last: StripeFailure | None = None
        retries = 0
        while True:
            if not self._breaker.wait_for_permission(ctx.stop):
                raise _CircuitOpen  # the outage outlasted its window, or the run is stopping
            if last is not None and ctx.stop.is_set():
                return last  # out of time: the intent stays due and the same request goes out next run
            try:
                answer = self._request(step, intent)
            except PaymentFailed as error:
                failure = error.failure
                if failure.kind is not FailureKind.TRANSIENT:
                    self._breaker.record_success()  # Stripe answered: it is available
                    return failure
                last = failure
                if failure.availability and self._breaker.record_availability_failure():
                    logger.error(
                        "circuit opened: Stripe unavailable", donation_id=intent.scheduled_donation_id
                    )
                logger.warning(
                    "transient Stripe failure",
                    donation_id=intent.scheduled_donation_id,
                    code=failure.code,
                    http_status=failure.http_status,
                    retry=retries,
                )
                if failure.availability and self._breaker.is_open:
                    continue
                if not self._policy.retries_in_run(failure, retries):
                    return failure
                retries += 1
                if retries == 1:
                    ctx.summary.add(retried=1)
                self._sleep(
                    backoff_delay(
                        retries, self._policy.backoff_base_seconds, self._policy.backoff_cap_seconds
                    )
                )
                continue
            self._breaker.record_success()
            return answer

    def _request(self, step: Step, intent: ChargeIntent) -> PaymentIntentResult | NotFound:
        if isinstance(step, Retrieve):
            return self._payments.retrieve_payment_intent(step.payment_intent_id)
        if isinstance(step, Search):
            found = self._payments.find_payment_intent(intent.scheduled_donation_id, intent.period)
            return NotFound() if found is None else found
        assert isinstance(step, Send)
        attempt = step.attempt
        if attempt.creates:
            params: dict[str, Any] = {
                "amount": intent.amount,
                "currency": intent.currency,
                "customer": intent.customer_id,
                "payment_method": attempt.payment_method_id,
                "confirm": True,
                "off_session": True,
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                "metadata": {"scheduled_donation_id": intent.scheduled_donation_id, "period": intent.period},
            }
            return self._payments.create_payment_intent(params, attempt.key)
        assert intent.payment_intent_id is not None
        return self._payments.confirm_payment_intent(
            intent.payment_intent_id,
            {"payment_method": attempt.payment_method_id, "off_session": True},
            attempt.key,
        )

    # -- applying outcomes ----------------------------------------------------------------------------------

    def _apply(
        self, outcome: Outcome, intent: ChargeIntent, schedule: ScheduleView | None, ctx: RunContext
    ) -> None:
        if isinstance(outcome, Stopped) and _systemic_candidate(outcome):
            self._judge_rejection(outcome, intent, schedule, ctx)
            return
        if not isinstance(outcome, StaysDue):
            # Stripe answered this donation with something else: the rejections held were each their own.
            for held in self._guard.answered():
                self._stopped(held.outcome, held.intent, held.schedule, ctx)
        self._apply_one(outcome, intent, schedule, ctx)

    def _judge_rejection(
        self, outcome: Stopped, intent: ChargeIntent, schedule: ScheduleView | None, ctx: RunContext
    ) -> None:
        assert outcome.failure is not None
        verdict = self._guard.rejected(
            outcome.failure.reason, intent.scheduled_donation_id, _HeldStop(outcome, intent, schedule)
        )
        for held in verdict.stop:
            self._stopped(held.outcome, held.intent, held.schedule, ctx)
        if verdict.systemic_code is not None and ctx.summary.systemic_code is None:
            ctx.summary.systemic_code = verdict.systemic_code
            ctx.stop.set()
            logger.error(
                "the same rejection for every donation: systemic fault; run halted, schedules untouched",
                code=verdict.systemic_code,
            )
        for held in verdict.let_go:
            # Untouched: pending and due as before, no stop, no letter, no donor event.
            if self._store.record_pending(
                held.intent, ctx.claim, held.intent.next_attempt_at, held.outcome.failure, self._clock()
            ):
                self._hold(held.intent, held.schedule, held.intent.next_attempt_at)
            ctx.summary.add(skipped=1)

    def _apply_one(
        self, outcome: Outcome, intent: ChargeIntent, schedule: ScheduleView | None, ctx: RunContext
    ) -> None:
        now = self._clock()
        log = {"donation_id": intent.scheduled_donation_id, "period": intent.period}
        if isinstance(outcome, Charged):
            if not self._store.record_success(intent, ctx.claim, outcome, now):
                logger.warning("charge already recorded by a newer run; not counted again", extra=log)
                return
            ctx.summary.add(succeeded=1)
            ctx.summary.add_amount(outcome.currency, outcome.amount)
            following = self._advance(intent, schedule)
            self._publish(
                donor_events.CHARGE_SUCCEEDED,
                intent,
                ctx,
                outcome="succeeded",
                paymentIntentId=outcome.payment_intent_id,
                attempts=intent.dunning_attempts + 1,
                # A cancelled or deleted schedule has no next charge to announce.
                nextRunAt=following.isoformat()
                if following is not None and schedule and schedule.active
                else None,
            )
            self._close(intent)
            logger.info("donation charged", payment_intent_id=outcome.payment_intent_id, extra=log)
            return
        if isinstance(outcome, NeedsRecheck):
            rechecked = replace(
                intent, payment_intent_id=outcome.payment_intent_id or intent.payment_intent_id
            )
            if self._store.record_pending(rechecked, ctx.claim, outcome.at, None, now):
                self._hold(intent, schedule, outcome.at)
                ctx.summary.add(skipped=1)
                logger.info(
                    "charge to be checked again", why=outcome.why, at=outcome.at.isoformat(), extra=log
                )
            return
        if isinstance(outcome, StaysDue):
            self._stays_due(outcome, intent, schedule, ctx)
            return
        if isinstance(outcome, RetryOnSchedule):
            self._retry_on_schedule(outcome, intent, schedule, ctx)
            return
        self._stopped(outcome, intent, schedule, ctx)

    def _stays_due(
        self, outcome: StaysDue, intent: ChargeIntent, schedule: ScheduleView | None, ctx: RunContext
    ) -> None:
        # Not the donor's failure: the intent stays due, and the same request goes out next time. A stale
        # run whose lease was taken over marks nothing: the newer run may already have moved the schedule.
        if self._store.record_pending(
            intent, ctx.claim, intent.next_attempt_at, outcome.failure, self._clock()
        ):
            self._hold(intent, schedule, intent.next_attempt_at)
        if outcome.halts_run:
            ctx.summary.add(skipped=1)
            reason = outcome.failure.reason if outcome.failure is not None else "unknown"
            raise PaymentsUnavailableError(f"Stripe refused the API key: {reason}")
        ctx.summary.add(failed=1)
        logger.warning(
            "charge failed transiently; stays due",
            donation_id=intent.scheduled_donation_id,
            reason=outcome.failure.reason if outcome.failure is not None else None,
        )

    def _retry_on_schedule(
        self, outcome: RetryOnSchedule, intent: ChargeIntent, schedule: ScheduleView | None, ctx: RunContext
    ) -> None:
        declined = replace(
            intent, dunning_attempts=outcome.declines, payment_intent_id=outcome.payment_intent_id
        )
        if not self._store.record_pending(declined, ctx.claim, outcome.at, outcome.failure, self._clock()):
            logger.warning(
                "decline already recorded by a newer run", donation_id=intent.scheduled_donation_id
            )
            return
        self._hold(intent, schedule, outcome.at)
        ctx.summary.add(failed=1)
        self._publish(
            donor_events.RETRY_SCHEDULED,
            declined,
            ctx,
            outcome=f"retry-{outcome.declines + 1}",
            paymentIntentId=outcome.payment_intent_id,
            reason=outcome.failure.reason,
            declineCode=outcome.failure.decline_code,
            attempts=outcome.declines,
            maxAttempts=self._policy.max_attempts,
            nextAttemptAt=outcome.at.isoformat(),
        )
        logger.info(
            "soft decline; retry scheduled",
            donation_id=intent.scheduled_donation_id,
            reason=outcome.failure.reason,
            retry_at=outcome.at.isoformat(),
            attempts=outcome.declines,
        )

    def _stopped(
        self, outcome: Stopped, intent: ChargeIntent, schedule: ScheduleView | None, ctx: RunContext
    ) -> None:
        now = self._clock()
        letter = None
        if outcome.dead_letter:
            last = intent.last_attempt
            letter = build_letter(
                reason=DeadLetterReason(outcome.reason),
                donation_id=intent.scheduled_donation_id,
                donor_id=intent.donor_id,
                customer_id=intent.customer_id,
                amount=intent.amount,
                currency=intent.currency,
                run_id=ctx.run_id,
                now=now,
                attempts=outcome.declines,
                period=intent.period,
                idempotency_key=last.key if last is not None else intent.creation_key,
                failure=outcome.failure,
                payment_intent_id=outcome.payment_intent_id,
            )
        if not self._store.record_stop(intent, ctx.claim, outcome, letter, now):
            logger.warning("stop already recorded by a newer run", donation_id=intent.scheduled_donation_id)
            return
        if outcome.reason is StopReason.SCHEDULE_INACTIVE:
            ctx.summary.add(skipped=1)
        else:
            ctx.summary.add(failed=1)
        if letter is not None:
            ctx.summary.add_dead_letter(DeadLetterReason(outcome.reason))
            delivered = self._courier.deliver(ParkedLetter(intent.ref, letter, in_ledger=True))
            ctx.summary.add(**({"dead_lettered": 1} if delivered else {"dead_letters_deferred": 1}))
        self._stop_schedule(intent, schedule, outcome)
        if outcome.dead_letter and outcome.reason is not StopReason.STRIPE_REJECTED_REQUEST:
            # A request Stripe rejected is for an operator; the donor is told nothing until one confirms.
            self._publish(
                donor_events.PAYMENT_METHOD_UPDATE_REQUIRED
                if outcome.reason is StopReason.HARD_DECLINE
                else donor_events.SCHEDULE_STOPPED,
                intent,
                ctx,
                outcome=str(outcome.reason),
                paymentIntentId=outcome.payment_intent_id,
                reason=str(outcome.reason),
                declineCode=outcome.failure.decline_code if outcome.failure else None,
                code=outcome.failure.code if outcome.failure else None,
                attempts=outcome.declines,
            )
        self._close(intent)
        logger.warning(
            "period stopped",
            donation_id=intent.scheduled_donation_id,
            period=intent.period,
            stop_reason=str(outcome.reason),
            reason=outcome.failure.reason if outcome.failure else None,
        )

    # -- the schedule document ----------------------------------------------------------------------------

    def _apply_resolved(self, intent: ChargeIntent, schedule: ScheduleView | None) -> None:
        if intent.status is IntentStatus.SUCCEEDED:
            self._advance(intent, schedule)
        elif schedule is not None:
            reason = intent.stop_reason or ""
            if intent.status is IntentStatus.CANCELED and reason.startswith(StopReason.SCHEDULE_INACTIVE):
                self._store.release_schedule(schedule.raw_id)
            else:
                status = (
                    "invalid" if reason.startswith(StopReason.STRIPE_REJECTED_REQUEST) else "payment_failed"
                )
                self._store.stop_schedule(schedule.raw_id, intent.period, status, reason, self._clock())
        self._close(intent)

    def _advance(self, intent: ChargeIntent, schedule: ScheduleView | None) -> datetime | None:
        """Move the schedule past the charged period, once; a host edit of nextRunAt is taken into account."""
        for _ in range(3):
            following = _following(intent, schedule)
            if schedule is None or schedule.next_run_at is None or following is None:
                return None  # deleted or unreadable: the ledger holds the charge, nothing to move
            written = self._store.advance_schedule(
                schedule.raw_id, intent.period, schedule.next_run_at, *following, self._clock()
            )
            if written is not ScheduleWrite.CHANGED:
                return following[0] if written is ScheduleWrite.APPLIED else None
            current = self._store.schedules_for([intent.scheduled_donation_id]).get(
                intent.scheduled_donation_id
            )
            schedule = read_schedule(current) if current is not None else None
        logger.warning(
            "schedule kept changing; left for the next run", donation_id=intent.scheduled_donation_id
        )
        return None

    def _skip_paid_period(self, intent: ChargeIntent, schedule: ScheduleView | None) -> None:
        following = _following(intent, schedule)
        if schedule is None or schedule.next_run_at is None or following is None:
            return
        if self._store.skip_paid_period(schedule.raw_id, schedule.next_run_at, *following):
            logger.warning(
                "schedule pointed at a period already paid; moved on without a charge",
                donation_id=intent.scheduled_donation_id,
                period=intent.period,
                next_run_at=following[0].isoformat(),
            )

    def _hold(self, intent: ChargeIntent, schedule: ScheduleView | None, at: datetime) -> None:
        if schedule is not None:
            self._store.hold_schedule(schedule.raw_id, intent.period, at)

    def _stop_schedule(self, intent: ChargeIntent, schedule: ScheduleView | None, outcome: Stopped) -> None:
        if schedule is None:
            return
        if outcome.reason is StopReason.SCHEDULE_INACTIVE:
            self._store.release_schedule(schedule.raw_id)  # the host's status stays as the host set it
            return
        detail = outcome.failure.reason if outcome.failure is not None else "none"
        self._store.stop_schedule(
            schedule.raw_id,
            intent.period,
            str(outcome.schedule_status),
            f"{outcome.reason}:{detail}",
            self._clock(),
        )

    def _close(self, intent: ChargeIntent) -> None:
        with self._close_lock:
            self._to_close.append(intent.ref)
            batch = self._to_close if len(self._to_close) >= _CLOSE_BATCH else []
            if batch:
                self._to_close = []
        if batch:
            self._store.close_intents(batch)

    # -- invalid documents, donor events ------------------------------------------------------------------

    def _reject_invalid(self, work: InvalidWork, ctx: RunContext) -> None:
        now = self._clock()
        document = work.document
        raw_id = document.get("_id")
        log_id = str(raw_id)[:256]
        letter = build_letter(
            reason=DeadLetterReason.INVALID_DOCUMENT,
            donation_id=log_id,
            donor_id=document.get("donorId"),
            customer_id=document.get("stripeCustomerId"),
            amount=document.get("amount"),
            currency=document.get("currency"),
            run_id=ctx.run_id,
            now=now,
            attempts=0,
            message=work.reason,
        )
        if self._store.reject_invalid(raw_id, ctx.claim, work.reason, letter, now):
            ctx.summary.add_dead_letter(DeadLetterReason.INVALID_DOCUMENT)
            if self._courier.deliver(ParkedLetter(raw_id, letter, in_ledger=False)):
                ctx.summary.add(dead_lettered=1)
            else:
                ctx.summary.add(dead_letters_deferred=1)
        else:
            logger.warning("claim lost before stopping; the newer run decides", donation_id=log_id)
        ctx.summary.add(invalid=1)
        logger.warning("invalid scheduled donation; not charged", donation_id=log_id, reason=work.reason)

    def _publish(self, detail_type: str, intent: ChargeIntent, ctx: RunContext, **fields: Any) -> None:
        """A donor-facing event: ids, amounts and reasons only. Its eventId is stable per outcome."""
        if self._events is None:
            return
        outcome = fields.pop("outcome")
        self._events.publish(
            detail_type,
            {
                "eventId": f"{intent.scheduled_donation_id}:{intent.period}:{outcome}",
                "scheduledDonationId": intent.scheduled_donation_id,
                "donorId": plain_value(intent.donor_id),
                "period": intent.period,
                "amount": intent.amount,
                "currency": intent.currency,
                "runId": ctx.run_id,
                "occurredAt": self._clock().isoformat(),
                **fields,
            },
        )


def _following(intent: ChargeIntent, schedule: ScheduleView | None) -> tuple[datetime, int] | None:
    """(nextRunAt, anchor day) after the intent's period, from the schedule as it stands now."""
    if schedule is None or schedule.next_run_at is None or schedule.frequency is None:
        return None
    return following_run(
        intent.due_at, intent.seen_next_run_at, schedule.next_run_at, schedule.frequency, schedule.anchor_day
    )


def _systemic_candidate(outcome: Stopped) -> bool:
    """A request Stripe itself rejected (an HTTP 4xx that is not a card error): possibly everyone's."""
    failure = outcome.failure
    return (
        outcome.reason is StopReason.STRIPE_REJECTED_REQUEST
        and failure is not None
        and failure.http_status is not None
    )
