"""Charge one claimed scheduled donation for its current period, exactly once, and record the outcome.

Each step can be finished by a later run after a crash: the PaymentIntent is created under a key derived
from (donation, period), so a repeat replays instead of charging; the record is an upsert under a unique
index; the schedule moves on only with a write conditional on this run's claim.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from donation_processor import donor_event_types as donor_events
from donation_processor.backoff import backoff_delay
from donation_processor.charge_outcome import FailureKind, PaymentFailed, StripeFailure
from donation_processor.circuit_breaker import CircuitBreaker
from donation_processor.dead_letters import DeadLetterCourier, build_letter, plain_value
from donation_processor.dunning import attempts_exhausted, next_attempt_at
from donation_processor.exceptions import PaymentsUnavailableError
from donation_processor.idempotency import confirm_key, payment_intent_key
from donation_processor.observability import logger
from donation_processor.ports import (
    Claim,
    DonationStorePort,
    DonorEventsPort,
    PaymentIntentResult,
    PaymentsPort,
)
from donation_processor.schedule import next_run_at, period_key
from donation_processor.summary import RunSummary
from donation_processor.validation import ChargeableDonation, InvalidDonation, validate

PROCESSING_RECHECK = timedelta(hours=1)
# Stripe keeps idempotency keys for at least 24 hours; past this age a key may no longer replay.
IDEMPOTENCY_WINDOW = timedelta(hours=23)
_CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")


@dataclass(frozen=True)
class ChargePolicy:
    max_attempts: int
    dunning_schedule_days: tuple[int, ...]
    retry_attempts: int
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 20.0


@dataclass(frozen=True)
class RunContext:
    run_id: str
    claim: Claim
    stop: threading.Event  # set when no new charge may start (time budget, circuit, lock lost)
    summary: RunSummary


class _CircuitOpen(Exception):
    """Stripe is unavailable: give the donation back untouched."""


def _error_fields(failure: StripeFailure, now: datetime, run_id: str) -> dict[str, Any]:
    return {
        "type": failure.error_type,
        "code": failure.code,
        "declineCode": failure.decline_code,
        "message": failure.message,
        "at": now,
        "runId": run_id,
    }


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
    ) -> None:
        self._events = events
        self._store = store
        self._payments = payments
        self._courier = courier
        self._breaker = breaker
        self._policy = policy
        self._clock = clock
        self._sleep = sleep

    def _publish(
        self,
        detail_type: str,
        document: Mapping[str, Any],
        donation: ChargeableDonation,
        period: str,
        ctx: RunContext,
        **fields: Any,
    ) -> None:
        """A donor-facing event: ids, amounts and reasons only. Its eventId is stable per outcome."""
        if self._events is None:
            return
        outcome = fields.pop("outcome")
        self._events.publish(
            detail_type,
            {
                "eventId": f"{donation.id}:{period}:{outcome}",
                "scheduledDonationId": donation.id,
                "donorId": plain_value(document.get("donorId")),
                "period": period,
                "amount": donation.amount,
                "currency": donation.currency,
                "runId": ctx.run_id,
                "occurredAt": self._clock().isoformat(),
                **fields,
            },
        )

    def process(self, document: Mapping[str, Any], ctx: RunContext) -> None:
        raw_id = document.get("_id")
        log_id = str(raw_id)[:256]
        if ctx.stop.is_set():
            self._store.release(raw_id, ctx.claim, None)
            ctx.summary.add(skipped=1)
            return
        try:
            donation = validate(document)
        except InvalidDonation as error:
            self._reject_invalid(raw_id, log_id, document, str(error), ctx)
            return
        period = period_key(donation.period_start)
        attempt = donation.attempts + 1
        try:
            result, key = self._charge_with_retries(donation, period, attempt, ctx)
        except _CircuitOpen:
            self._store.release(raw_id, ctx.claim, None)
            ctx.summary.add(skipped=1)
            logger.info("charge not attempted: circuit open", donation_id=log_id)
            return
        except PaymentFailed as error:
            self._handle_failure(raw_id, document, donation, period, attempt, error.failure, ctx)
            return
        self._handle_result(raw_id, document, donation, period, attempt, key, result, ctx)

    # -- charging -----------------------------------------------------------------------------------------

    def _attempt(
        self, donation: ChargeableDonation, period: str, attempt: int
    ) -> tuple[PaymentIntentResult, str]:
        intent = self._existing_intent(donation, period)
        if intent is None:
            key = payment_intent_key(donation.id, period)
            params = {
                "amount": donation.amount,
                "currency": donation.currency,
                "customer": donation.customer_id,
                "payment_method": donation.payment_method_id,
                "confirm": True,
                "off_session": True,
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                "metadata": {"scheduled_donation_id": donation.id, "period": period},
            }
            try:
                return self._payments.create_payment_intent(params, key), key
            except PaymentFailed as error:
                # The key was used before with other parameters (the donor changed the amount or card after
                # an unanswered attempt): the earlier PaymentIntent, if any, decides this period.
                if error.failure.error_type != "idempotency_error":
                    raise
                intent = self._reconcile(donation, period, "idempotency key reused with new parameters")
                if intent is None:
                    raise
        if intent.status in ("succeeded", "processing"):
            return intent, payment_intent_key(donation.id, period)
        if intent.status not in _CONFIRMABLE:
            raise PaymentFailed(
                StripeFailure(
                    FailureKind.INVALID_REQUEST,
                    "invalid_request_error",
                    code=f"payment_intent_{intent.status}",
                    message=f"the period's PaymentIntent is {intent.status} in Stripe",
                    payment_intent_id=intent.payment_intent_id,
                )
            )
        # A later attempt: the period keeps its one PaymentIntent, so it can never be paid twice.
        key = confirm_key(donation.id, period, max(donation.period_attempts + 1, 2))
        params = {"payment_method": donation.payment_method_id, "off_session": True}
        return self._payments.confirm_payment_intent(intent.payment_intent_id, params, key), key

    def _existing_intent(self, donation: ChargeableDonation, period: str) -> PaymentIntentResult | None:
        """The period's PaymentIntent if one may exist: by the id we stored, or (once the creation key may
        have expired) by its metadata. None means it is safe to create one under the period's key."""
        if donation.payment_intent_id is not None:
            return self._payments.retrieve_payment_intent(donation.payment_intent_id)
        first = donation.first_attempt_at
        if first is not None and self._clock() - first >= IDEMPOTENCY_WINDOW:
            return self._reconcile(donation, period, "period first tried beyond the idempotency window")
        return None

    def _reconcile(self, donation: ChargeableDonation, period: str, why: str) -> PaymentIntentResult | None:
        """Find the period's PaymentIntent by its metadata instead of trusting the creation key to replay."""
        found = self._payments.find_payment_intent(donation.id, period)
        logger.warning(
            "reconciled by metadata search",
            why=why,
            donation_id=donation.id,
            period=period,
            found=found.payment_intent_id if found else None,
        )
        return found

    def _charge_with_retries(
        self, donation: ChargeableDonation, period: str, attempt: int, ctx: RunContext
    ) -> tuple[PaymentIntentResult, str]:
        last: StripeFailure | None = None
        for retry in range(self._policy.retry_attempts + 1):
            if retry:
                if retry == 1:
                    ctx.summary.add(retried=1)
                self._sleep(
                    backoff_delay(retry, self._policy.backoff_base_seconds, self._policy.backoff_cap_seconds)
                )
            if self._breaker.is_open:
                raise _CircuitOpen
            if retry and ctx.stop.is_set():
                break  # out of time: the donation stays due and the same key goes out next run
            try:
                outcome = self._attempt(donation, period, attempt)
            except PaymentFailed as error:
                failure = error.failure
                if failure.kind is not FailureKind.TRANSIENT:
                    self._breaker.record_success()  # Stripe answered: it is available
                    raise
                last = failure
                if failure.availability and self._breaker.record_availability_failure():
                    logger.error("circuit opened: Stripe unavailable", donation_id=donation.id)
                logger.warning(
                    "transient Stripe failure",
                    donation_id=donation.id,
                    code=failure.code,
                    http_status=failure.http_status,
                    retry=retry,
                )
                continue
            self._breaker.record_success()
            return outcome
        if self._breaker.is_open or last is None:
            raise _CircuitOpen
        raise PaymentFailed(last)

    # -- outcomes -----------------------------------------------------------------------------------------

    def _handle_result(
        self,
        raw_id: Any,
        document: Mapping[str, Any],
        donation: ChargeableDonation,
        period: str,
        attempt: int,
        key: str,
        result: PaymentIntentResult,
        ctx: RunContext,
    ) -> None:
        now = self._clock()
        if result.status == "succeeded":
            self._store.record_charge(
                {
                    "scheduledDonationId": raw_id,
                    "period": period,
                    "status": "succeeded",
                    "paymentIntentId": result.payment_intent_id,
                    "amount": result.amount if result.amount is not None else donation.amount,
                    "currency": result.currency or donation.currency,
                    "idempotencyKey": key,
                    "attempts": attempt,
                    "runId": ctx.run_id,
                    "createdAt": now,
                    "updatedAt": now,
                }
            )
            following = next_run_at(donation.period_start, donation.frequency, donation.anchor_day)
            if not self._store.complete_period(raw_id, ctx.claim, following, donation.anchor_day, now):
                logger.warning(
                    "claim lost after a recorded charge; the newer run advances it", donation_id=donation.id
                )
            self._publish(
                donor_events.CHARGE_SUCCEEDED,
                document,
                donation,
                period,
                ctx,
                outcome="succeeded",
                paymentIntentId=result.payment_intent_id,
                attempts=attempt,
                nextRunAt=following.isoformat(),
            )
            ctx.summary.add(succeeded=1)
            ctx.summary.add_amount(
                result.currency or donation.currency,
                result.amount if result.amount is not None else donation.amount,
            )
            logger.info(
                "donation charged",
                donation_id=donation.id,
                period=period,
                payment_intent_id=result.payment_intent_id,
                replayed=result.replayed,
            )
            return
        if result.status == "processing":
            self._store.schedule_retry(
                raw_id,
                ctx.claim,
                {
                    "nextRunAt": now + PROCESSING_RECHECK,
                    "periodStart": donation.period_start,
                    "paymentIntentId": result.payment_intent_id,
                },
            )
            ctx.summary.add(skipped=1)
            logger.info("payment processing; will check again", donation_id=donation.id, period=period)
            return
        # requires_action and friends: an off-session charge the donor must authenticate.
        failure = StripeFailure(
            FailureKind.HARD_DECLINE,
            "card_error",
            code="authentication_required",
            message=f"PaymentIntent needs the donor: status {result.status}",
            payment_intent_id=result.payment_intent_id,
        )
        self._handle_failure(raw_id, document, donation, period, attempt, failure, ctx)

    def _handle_failure(
        self,
        raw_id: Any,
        document: Mapping[str, Any],
        donation: ChargeableDonation,
        period: str,
        attempt: int,
        failure: StripeFailure,
        ctx: RunContext,
    ) -> None:
        now = self._clock()
        error = _error_fields(failure, now, ctx.run_id)
        log = {
            "donation_id": donation.id,
            "period": period,
            "reason": failure.reason,
            "kind": str(failure.kind),
        }
        if failure.kind is FailureKind.TRANSIENT:
            # Not the donor's failure: the donation stays due, and the same key is sent next time.
            self._store.release(raw_id, ctx.claim, error)
            ctx.summary.add(failed=1)
            logger.warning("charge failed transiently; stays due", extra=log)
            return
        if failure.kind is FailureKind.FATAL:
            self._store.release(raw_id, ctx.claim, error)
            ctx.summary.add(skipped=1)
            raise PaymentsUnavailableError(f"Stripe refused the API key: {failure.reason}")
        key = (
            payment_intent_key(donation.id, period)
            if donation.payment_intent_id is None
            else confirm_key(donation.id, period, max(donation.period_attempts + 1, 2))
        )
        intent_id = failure.payment_intent_id or donation.payment_intent_id
        self._store.record_charge(
            {
                "scheduledDonationId": raw_id,
                "period": period,
                "status": "failed",
                "paymentIntentId": intent_id,
                "amount": donation.amount,
                "currency": donation.currency,
                "idempotencyKey": key,
                "attempts": attempt,
                "runId": ctx.run_id,
                "error": error,
                "createdAt": now,
                "updatedAt": now,
            }
        )
        ctx.summary.add(failed=1)
        if failure.kind is FailureKind.SOFT_DECLINE and not attempts_exhausted(
            attempt, self._policy.max_attempts
        ):
            retry_at = next_attempt_at(now, attempt, self._policy.dunning_schedule_days)
            self._store.schedule_retry(
                raw_id,
                ctx.claim,
                {
                    "nextRunAt": retry_at,
                    "attempts": attempt,
                    "periodAttempts": donation.period_attempts + 1,
                    "periodStart": donation.period_start,
                    "paymentIntentId": intent_id,
                    "lastError": error,
                },
            )
            self._publish(
                donor_events.RETRY_SCHEDULED,
                document,
                donation,
                period,
                ctx,
                outcome=f"retry-{attempt + 1}",
                paymentIntentId=intent_id,
                reason=failure.reason,
                declineCode=failure.decline_code,
                attempts=attempt,
                maxAttempts=self._policy.max_attempts,
                nextAttemptAt=retry_at.isoformat(),
            )
            logger.info(
                "soft decline; retry scheduled", retry_at=retry_at.isoformat(), attempt=attempt, extra=log
            )
            return
        if failure.kind is FailureKind.SOFT_DECLINE:
            reason, status = "attempts_exhausted", "payment_failed"
        elif failure.kind is FailureKind.HARD_DECLINE:
            reason, status = "hard_decline", "payment_failed"
        else:
            reason, status = "stripe_rejected_request", "invalid"
        letter = build_letter(
            reason=reason,
            document=document,
            donation_id=donation.id,
            run_id=ctx.run_id,
            now=now,
            attempts=attempt,
            period=period,
            idempotency_key=key,
            failure=failure,
        )
        changes = {
            "status": status,
            "stopReason": f"{reason}:{failure.reason}",
            "stoppedAt": now,
            "attempts": attempt,
            "periodAttempts": donation.period_attempts + 1,
            "periodStart": donation.period_start,
            "paymentIntentId": intent_id,
            "lastError": error,
        }
        if self._stop_and_dead_letter(raw_id, changes, letter, ctx):
            self._publish(
                donor_events.PAYMENT_METHOD_UPDATE_REQUIRED
                if failure.kind is FailureKind.HARD_DECLINE
                else donor_events.SCHEDULE_STOPPED,
                document,
                donation,
                period,
                ctx,
                outcome=reason,
                paymentIntentId=intent_id,
                reason=reason,
                declineCode=failure.decline_code,
                code=failure.code,
                attempts=attempt,
            )
        logger.warning("schedule stopped and dead-lettered", stop_reason=reason, extra=log)

    def _reject_invalid(
        self, raw_id: Any, log_id: str, document: Mapping[str, Any], reason: str, ctx: RunContext
    ) -> None:
        now = self._clock()
        attempts = document.get("attempts")
        letter = build_letter(
            reason="invalid_document",
            document=document,
            donation_id=log_id,
            run_id=ctx.run_id,
            now=now,
            attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0,
            message=reason,
        )
        changes = {
            "status": "invalid",
            "invalidReason": reason,
            "stopReason": "invalid_document",
            "stoppedAt": now,
        }
        self._stop_and_dead_letter(raw_id, changes, letter, ctx)
        ctx.summary.add(invalid=1)
        logger.warning("invalid scheduled donation; not charged", donation_id=log_id, reason=reason)

    def _stop_and_dead_letter(
        self, raw_id: Any, changes: Mapping[str, Any], letter: Mapping[str, Any], ctx: RunContext
    ) -> bool:
        if not self._store.stop(raw_id, ctx.claim, changes, letter):
            logger.warning("claim lost before stopping; the newer run decides", donation_id=str(raw_id)[:256])
            return False
        if self._courier.deliver(raw_id, letter):
            ctx.summary.add(dead_lettered=1)
        else:
            ctx.summary.add(dead_letters_deferred=1)
        return True
