"""The charge intent: the engine's own durable record of one period's charge, written before Stripe is called.

Everything needed to finish the charge after a crash is on the intent (period, amount, currency, customer,
payment method, the keys used and what each sent), so it never has to be recomputed from the schedule
document, whose fields belong to the host platform and may change at any time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from donation_processor.ports import Claim


class IntentStatus(StrEnum):
    PENDING = "pending"  # not resolved yet: an attempt may be in flight, or a dunning retry is due later
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # stopped: a hard decline, attempts exhausted, or Stripe rejected the request
    CANCELED = (
        "canceled"  # the period was given up without a charge (the PaymentIntent or schedule was cancelled)
    )
    MISSED = "missed"  # a period the schedule fell behind on, not charged under MISSED_PERIODS=latest; closed


class AttemptOutcome(StrEnum):
    DECLINED = "declined"
    SUCCEEDED = "succeeded"
    PROCESSING = "processing"
    REJECTED = "rejected"  # Stripe refused the request itself (invalid request, unpayable PaymentIntent)


@dataclass(frozen=True)
class Attempt:
    """One request that may charge the donor, written on the intent before it is sent.

    Attempt 1 creates the period's PaymentIntent with the creation key; every later attempt confirms it
    with a key of its own. A key is re-sent only with the parameters recorded here.
    """

    number: int
    key: str
    payment_method_id: str
    sent_at: datetime
    creates: bool  # True: creates the PaymentIntent (with the intent's amount, currency and customer)
    outcome: AttemptOutcome | None = None  # None: the answer never arrived (it may or may not have run)
    reason: str | None = None

    def answered(self, outcome: AttemptOutcome, reason: str | None = None) -> Attempt:
        return replace(self, outcome=outcome, reason=reason)


@dataclass(frozen=True)
class ChargeIntent:
    """One (scheduled donation, period): frozen at creation, resolved exactly once."""

    ref: Any  # the ledger entry's own id, opaque to the engine
    scheduled_donation_id: str  # canonical text form
    period: str
    due_at: datetime  # when the period fell due
    seen_next_run_at: datetime  # the schedule's nextRunAt when the intent was opened (a host edit changes it)
    amount: int
    currency: str
    customer_id: str
    payment_method_id: str  # the method of the creation request
    creation_key: str
    status: IntentStatus
    attempts: tuple[Attempt, ...]
    next_attempt_number: int
    dunning_attempts: int  # declines counted against MAX_ATTEMPTS
    next_attempt_at: datetime
    created_at: datetime
    payment_intent_id: str | None = None
    open: bool = True  # until its outcome has been applied to the schedule document
    lease: Claim | None = None
    lease_expires_at: datetime | None = None
    donor_id: str | None = None
    stop_reason: str | None = None
    legacy_record: bool = False  # a `donations` record written by a version before the charge intent

    @property
    def last_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def unresolved_attempt(self) -> Attempt | None:
        """The last attempt if its answer never arrived."""
        last = self.last_attempt
        return last if last is not None and last.outcome is None else None


@dataclass(frozen=True)
class NewIntent:
    """What the engine writes down before the first Stripe request of a period."""

    scheduled_donation_id: str
    period: str
    due_at: datetime
    seen_next_run_at: datetime
    amount: int
    currency: str
    customer_id: str
    payment_method_id: str
    creation_key: str
    donor_id: str | None
    # Adopted from a document an earlier version of the job left in flight (see README, migration).
    payment_intent_id: str | None = None
    attempts: tuple[Attempt, ...] = ()
    next_attempt_number: int = 2
    dunning_attempts: int = 0
