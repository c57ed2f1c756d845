"""The engine's view of the outside world: one small interface per system, with adapters beside them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from donation_processor.charge_intent import Attempt, ChargeIntent, NewIntent
    from donation_processor.charge_outcome import StripeFailure
    from donation_processor.charge_rules import Charged, Stopped

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

    # -- fencing (the run lock) ---------------------------------------------------------------------------

    def raise_fence(self, lease: LockLease, floor: int) -> LockLease:
        """Lift this lease's fence to floor + 1 unless it is above floor already; raise LockLostError."""


class ScheduleWrite(StrEnum):
    """What became of a write to a schedule document that the host may have edited meanwhile."""

    APPLIED = "applied"
    ALREADY = "already"  # an earlier write for the same period did it
    CHANGED = "changed"  # the host changed nextRunAt since it was read: read it again and recompute
    GONE = "gone"  # the document was deleted


@dataclass(frozen=True)
class ParkedLetter:
    """A dead letter kept in MongoDB until SQS has it: on a ledger entry, or on an invalid schedule."""

    owner: Any
    letter: Mapping[str, Any]
    in_ledger: bool


@dataclass(frozen=True)
class LedgerEntry:
    """One period of a donation as an operator reads it: its intent, Stripe's last error, a parked letter."""

    intent: ChargeIntent
    error_code: str | None = None
    decline_code: str | None = None
    parked_letter: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Bookkeeping:
    """The engine's own fields on a schedule document (README, data model), read leniently."""

    open_period: str | None = None
    next_attempt_at: datetime | None = None
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None
    last_charged_period: str | None = None
    stop_reason: str | None = None
    stopped_at: datetime | None = None
    invalid_reason: str | None = None
    parked_letter: Mapping[str, Any] | None = None


class DonationStorePort(Protocol):
    """MongoDB as the engine sees it: schedules the host owns, and the charge intents the engine owns.

    Only the adapter spells field names. Every write that matters is conditional: on this run's claim of
    a schedule document, on this run's lease of an intent, or on the state it expects to change.
    """

    def ensure_indexes(self) -> None:
        """Create the indexes the engine relies on."""

    # -- schedules ---------------------------------------------------------------------------------------

    def find_due_ids(
        self, now: datetime, fence: int, limit: int, only_ids: Sequence[str] | None
    ) -> list[Any]:
        """Ids of claimable due schedules with no open intent, oldest first."""

    def claim(self, ids: Sequence[Any], claim: Claim, now: datetime, lease_until: datetime) -> list[Document]:
        """Atomically claim what is still claimable among ids and return those documents."""

    def ids_with_twins(self, raw_ids: Sequence[Any]) -> set[str]:
        """Canonical ids among raw_ids that another document shares (an ObjectId and its hex string)."""

    def schedules_for(self, canonical_ids: Sequence[str]) -> dict[str, Document]:
        """The schedule documents of these canonical ids, as they are now (deleted ones are absent)."""

    def iter_due(
        self, now: datetime, only_ids: Sequence[str] | None, limit: int | None
    ) -> Iterator[Document]:
        """Stream due donations without claiming them (dry run)."""

    def advance_schedule(
        self,
        donation_id: Any,
        period: str,
        expected_next_run_at: datetime,
        next_run_at: datetime,
        anchor_day: int,
        now: datetime,
    ) -> ScheduleWrite:
        """Move the schedule past a charged period, once, unless the host changed nextRunAt meanwhile."""

    def skip_paid_period(
        self, donation_id: Any, expected_next_run_at: datetime, next_run_at: datetime, anchor_day: int
    ) -> bool:
        """The host put nextRunAt back on a period already paid: move it past again (unless nextRunAt
        changed since it was read) and drop any claim; nothing is charged."""

    def hold_schedule(self, donation_id: Any, period: str, next_attempt_at: datetime) -> None:
        """Mark the schedule as having an open intent (dunning, recheck) and drop any claim on it."""

    def release_schedule(self, donation_id: Any) -> None:
        """Drop any claim and open-period mark, leaving the host's fields as they are."""

    def stop_schedule(
        self, donation_id: Any, period: str, status: str, stop_reason: str, now: datetime
    ) -> bool:
        """Stop an active schedule after its period's intent was stopped; False if it was not active."""

    def release(self, donation_id: Any, claim: Claim, last_error: Mapping[str, Any] | None) -> bool:
        """Let a claimed schedule go untouched (still due), keeping this run from reclaiming it."""

    def reject_invalid(
        self, donation_id: Any, claim: Claim, reason: str, letter: Mapping[str, Any], now: datetime
    ) -> bool:
        """Mark a claimed document invalid and park its dead letter on it, in one write."""

    def count_overdue(self, due_before: datetime) -> int:
        """Active donations whose nextRunAt is before due_before (the job is falling behind)."""

    # -- charge intents ----------------------------------------------------------------------------------

    def open_intents(
        self, intents: Sequence[NewIntent], claim: Claim, now: datetime, lease_until: datetime
    ) -> list[tuple[ChargeIntent, bool]]:
        """Write each intent (leased to this run) before any Stripe call; where the donation already has
        an open intent, or the period already has an entry, return that one instead, with False. Same
        order as given."""

    def adopt_legacy(
        self, intent: NewIntent, legacy_raw_id: Any, claim: Claim, now: datetime, lease_until: datetime
    ) -> ChargeIntent | None:
        """Turn an earlier version's `donations` record of this period into its intent, if there is one."""

    def claim_intents(
        self, now: datetime, claim: Claim, limit: int, lease_until: datetime, only_ids: Sequence[str] | None
    ) -> list[ChargeIntent]:
        """Lease open intents that are due (or resolved but not yet applied) and not leased by a live run."""

    def take_intent(
        self, intent: ChargeIntent, claim: Claim, now: datetime, lease_until: datetime
    ) -> ChargeIntent | None:
        """Lease one open intent if no live run holds it."""

    def reopen_intent(
        self, intent: ChargeIntent, claim: Claim, now: datetime, lease_until: datetime
    ) -> ChargeIntent | None:
        """Open a stopped period again for a schedule the host or an operator made active again."""

    def start_attempt(self, intent: ChargeIntent, claim: Claim, attempt: Attempt) -> bool:
        """Write a new attempt (key and parameters) on the intent before it is sent; False if not ours."""

    def record_success(self, intent: ChargeIntent, claim: Claim, charged: Charged, now: datetime) -> bool:
        """pending -> succeeded; True only for the writer whose conditional write won."""

    def record_pending(
        self,
        intent: ChargeIntent,
        claim: Claim,
        next_attempt_at: datetime,
        failure: StripeFailure | None,
        now: datetime,
    ) -> bool:
        """Keep it pending (dunning, recheck or still due), with its attempts, and give up the lease."""

    def record_stop(
        self,
        intent: ChargeIntent,
        claim: Claim,
        stopped: Stopped,
        letter: Mapping[str, Any] | None,
        now: datetime,
    ) -> bool:
        """pending -> failed or canceled, parking its dead letter in the same write."""

    def close_intents(self, refs: Sequence[Any]) -> None:
        """Mark intents whose outcome reached the schedule document as closed."""

    # -- dead letters ------------------------------------------------------------------------------------

    def pending_dead_letters(self, limit: int) -> list[ParkedLetter]:
        """Dead letters that have not reached the queue yet."""

    def clear_dead_letter(self, parked: ParkedLetter) -> None:
        """Forget a parked dead letter once the queue has it."""

    # -- documents the due query cannot see -------------------------------------------------------------

    def count_unseen(self, known_statuses: Sequence[str]) -> tuple[int, int]:
        """(active documents without a date nextRunAt, documents whose status is not a known one)."""

    def unseen(self, known_statuses: Sequence[str], limit: int) -> list[tuple[str, str]]:
        """Up to `limit` such documents as (id, why), for operators."""

    # -- fencing (the run lock) ---------------------------------------------------------------------------

    def highest_fence(self) -> int:
        """The largest fence any run has stamped on a schedule or an intent; 0 when none has."""

    # -- missed periods ----------------------------------------------------------------------------------

    def record_missed_periods(self, entries: Sequence[NewIntent], claim: Claim, now: datetime) -> list[bool]:
        """Write each period as a closed `missed` entry, all in one unordered insert; a period that already
        has an entry keeps it. True where this call wrote the entry; same order as given."""


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
