"""The engine's view of the outside world: one small interface per system, with adapters beside them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

Document = Mapping[str, Any]


@dataclass(frozen=True)
class LockLease:
    """Proof of holding the job lock: the owner and the fencing token of this acquisition."""

    owner: str
    fence: int
    expires_at_ms: int


@dataclass(frozen=True)
class Claim:
    """Who claimed a scheduled donation; every write that matters is conditional on it."""

    run_id: str
    fence: int


@dataclass(frozen=True)
class PaymentIntentResult:
    """What Stripe answered for a PaymentIntent that did not raise."""

    payment_intent_id: str
    status: str
    replayed: bool = False
    amount: int | None = None  # what Stripe charged, which the record trusts over the current document
    currency: str | None = None


class RunLockPort(Protocol):
    def acquire(self, owner: str) -> LockLease:
        """Take the lock or raise LockContendedError / LockUnavailableError."""

    def renew(self, lease: LockLease) -> LockLease:
        """Extend the lease or raise LockLostError."""

    def release(self, lease: LockLease, last_run: Mapping[str, Any] | None = None) -> None:
        """Give the lock up if this lease still owns it, keeping the run's summary for operators."""


class DonationStorePort(Protocol):
    def ensure_indexes(self) -> None:
        """Create the indexes the engine relies on."""

    def find_due_ids(
        self, now: datetime, fence: int, limit: int, only_ids: Sequence[str] | None
    ) -> list[Any]:
        """Ids of claimable due donations, oldest first."""

    def claim(self, ids: Sequence[Any], claim: Claim, now: datetime, lease_until: datetime) -> list[Document]:
        """Atomically claim what is still claimable among ids and return those documents."""

    def iter_due(
        self, now: datetime, only_ids: Sequence[str] | None, limit: int | None
    ) -> Iterator[Document]:
        """Stream due donations without claiming them (dry run)."""

    def record_charge(self, record: Mapping[str, Any]) -> None:
        """Upsert the period's record in `donations`; a succeeded record is never downgraded."""

    def complete_period(
        self, donation_id: Any, claim: Claim, next_run_at: datetime, anchor_day: int, now: datetime
    ) -> bool:
        """Move the schedule to its next period and release the claim; False if the claim was lost."""

    def schedule_retry(self, donation_id: Any, claim: Claim, changes: Mapping[str, Any]) -> bool:
        """Keep the donation active with a later nextRunAt and release the claim."""

    def stop(
        self, donation_id: Any, claim: Claim, changes: Mapping[str, Any], letter: Mapping[str, Any]
    ) -> bool:
        """Stop charging it and park a dead letter on it, in one atomic write."""

    def release(self, donation_id: Any, claim: Claim, last_error: Mapping[str, Any] | None) -> bool:
        """Let it go untouched (still due), keeping this run from reclaiming it."""

    def count_overdue(self, due_before: datetime) -> int:
        """Active donations whose nextRunAt is before due_before (the job is falling behind)."""

    def pending_dead_letters(self, limit: int) -> list[Document]:
        """Donations whose dead letter has not reached the queue yet."""

    def clear_dead_letter(self, donation_id: Any, letter_id: str) -> None:
        """Forget a parked dead letter once the queue has it."""


class PaymentsPort(Protocol):
    def create_payment_intent(self, params: Mapping[str, Any], idempotency_key: str) -> PaymentIntentResult:
        """Create and confirm; raise PaymentFailed with a classified StripeFailure."""

    def confirm_payment_intent(
        self, payment_intent_id: str, params: Mapping[str, Any], idempotency_key: str
    ) -> PaymentIntentResult:
        """Confirm an existing PaymentIntent again (a later dunning attempt)."""

    def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntentResult:
        """Read a PaymentIntent's current status."""

    def find_payment_intent(self, scheduled_donation_id: str, period: str) -> PaymentIntentResult | None:
        """The period's PaymentIntent found by its metadata, if one was ever created."""


class PacingPort(Protocol):
    """The shared Stripe rate limiter, as the engine sees it when sizing its concurrency."""

    @property
    def rate(self) -> float:
        """Requests per second in force now (below the configured rate while Stripe pushes back)."""

    def waited_by_current_thread(self) -> float:
        """Seconds the calling thread has spent waiting for a slot so far."""


class DeadLetterPort(Protocol):
    def send(self, letter: Mapping[str, Any]) -> None:
        """Deliver one dead letter or raise DeadLetterSendError."""


class PauseSwitchPort(Protocol):
    def is_paused(self) -> bool:
        """True when an operator paused charging; raise PauseSwitchUnavailableError if it cannot be read."""


class DonorEventsPort(Protocol):
    def publish(self, detail_type: str, detail: Mapping[str, Any]) -> None:
        """Queue one donor-facing event; delivery happens in batches."""

    def flush(self) -> int:
        """Deliver what is queued; returns how many events could not be delivered."""
