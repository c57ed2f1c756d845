"""In-memory fakes of every port, for the fast tier: the engine and the processor run on them with no I/O.

FakeStore keeps the same documents, with the same field names, as the MongoDB adapter, and honours the
same conditions (claims with fences and expiry, `openPeriod`, one entry per (donation, period), one open
intent per donation, leases on intents), so `validation.validate` and `read_schedule` read them as they
read MongoDB's. FakePayments keeps Stripe's idempotency rules and a ledger of the money it took.
"""

from __future__ import annotations

import copy
import itertools
import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from donation_processor.adapters.ledger_documents import (
    INTENT_SCHEMA,
    LEGACY_IN_FLIGHT_FIELDS,
    attempt_document,
    entry_from,
    error_fields,
    intent_from,
    lease_document,
    missed_document,
    new_intent_document,
    query_ids,
    twin,
)
from donation_processor.charge_intent import Attempt, ChargeIntent, IntentStatus, NewIntent
from donation_processor.charge_outcome import FailureKind, PaymentFailed, StripeFailure, classify_card_error
from donation_processor.charge_rules import CONFIRMABLE, Charged, Stopped
from donation_processor.exceptions import DeadLetterSendError, LockContendedError, LockLostError
from donation_processor.ports import (
    Claim,
    Document,
    LockLease,
    ParkedLetter,
    PaymentIntentResult,
    ScheduleWrite,
)
from donation_processor.schedule import as_utc

_CLAIM_FIELDS = ("claimedBy", "claimExpiresAt")
_DONE_WITH_PERIOD = (*_CLAIM_FIELDS, "openPeriod", "nextAttemptAt", "lastError", *LEGACY_IN_FLIGHT_FIELDS)


# -- no sockets --------------------------------------------------------------------------------------------


class SocketUsedError(RuntimeError):
    """Something in the fast tier tried to open a socket."""


class _RefusedSocket(socket.socket):
    def __init__(self, *_args: object, **_kwargs: object) -> None:
        raise SocketUsedError("the fast tier runs without I/O: a socket was opened")


@contextmanager
def sockets_disabled() -> Iterator[None]:
    """`socket.socket` raises inside the block (a subclass, so isinstance checks still work)."""
    original = socket.socket
    socket.socket = _RefusedSocket  # type: ignore[misc]
    try:
        yield
    finally:
        socket.socket = original  # type: ignore[misc]


# -- matching documents as MongoDB does ------------------------------------------------------------------


def naive_utc(moment: datetime) -> datetime:
    """What MongoDB hands back: naive datetimes that are UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _at_or_before(value: object, moment: datetime) -> bool:
    """`{"$lte": moment}`: only a date matches a date."""
    return isinstance(value, datetime) and as_utc(value) <= as_utc(moment)


def _before(value: object, moment: datetime) -> bool:
    return isinstance(value, datetime) and as_utc(value) < as_utc(moment)


def _free_or_expired(value: object, now: datetime) -> bool:
    """`{"$or": [{field: None}, {field: {"$lte": now}}]}`."""
    return value is None or _at_or_before(value, now)


def _below(value: object, fence: int) -> bool:
    """`{"$or": [{field: None}, {field: {"$lt": fence}}]}`."""
    return value is None or (isinstance(value, int) and value < fence)


def _sort_by(documents: Iterable[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return sorted(documents, key=lambda document: as_utc(document[name]))


# -- intents as the adapter writes and reads them ----------------------------------------------------------


def _lease_is_free(document: Mapping[str, Any], now: datetime, fence: int) -> bool:
    lease = document.get("lease") or {}
    return _free_or_expired(lease.get("expiresAt"), now) and _below(lease.get("fence"), fence)


def _leased_to(document: Mapping[str, Any], claim: Claim) -> bool:
    lease = document.get("lease") or {}
    return (
        document.get("status") == str(IntentStatus.PENDING)
        and lease.get("runId") == claim.run_id
        and lease.get("fence") == claim.fence
    )


def _unset(document: dict[str, Any], names: Iterable[str]) -> None:
    for name in names:
        document.pop(name, None)


def _unset_lease_holder(document: dict[str, Any]) -> None:
    lease = document.get("lease")
    if isinstance(lease, dict):
        lease.pop("runId", None)
        lease.pop("expiresAt", None)


# -- the store --------------------------------------------------------------------------------------------


class FakeStore:
    """DonationStorePort in memory: `scheduled` and `donations` are the two collections, by `_id`."""

    def __init__(self) -> None:
        self.scheduled: dict[Any, dict[str, Any]] = {}
        self.donations: dict[Any, dict[str, Any]] = {}
        self._lock = threading.RLock()

    # -- what the host does, and what tests read -------------------------------------------------------

    def add_schedule(self, document: Mapping[str, Any]) -> Any:
        with self._lock:
            if document["_id"] in self.scheduled:
                raise ValueError("duplicate _id")
            self.scheduled[document["_id"]] = copy.deepcopy(dict(document))
            return document["_id"]

    def host_edit(self, donation_id: Any, **fields: Any) -> None:
        """The host platform's app changes its document with a plain `$set`."""
        with self._lock:
            self.scheduled[donation_id].update(copy.deepcopy(fields))

    def schedule(self, donation_id: Any) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.scheduled[donation_id])

    def intents_of(self, donation_id: Any) -> list[dict[str, Any]]:
        with self._lock:
            wanted = str(donation_id)
            return [
                copy.deepcopy(document)
                for document in self.donations.values()
                if str(document["scheduledDonationId"]) == wanted
            ]

    # -- schedules -------------------------------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """The indexes are the checks in `_refused`."""

    @staticmethod
    def _claimable(document: Mapping[str, Any], now: datetime, fence: int) -> bool:
        return (
            document.get("status") == "active"
            and _at_or_before(document.get("nextRunAt"), now)
            and document.get("openPeriod") is None
            and _free_or_expired(document.get("claimExpiresAt"), now)
            and _below(document.get("claimFence"), fence)
        )

    def _in_ids(self, only_ids: Sequence[str] | None) -> Callable[[Any], bool]:
        if only_ids is None:
            return lambda _raw: True
        wanted = query_ids(only_ids)
        return lambda raw: raw in wanted

    def find_due_ids(
        self, now: datetime, fence: int, limit: int, only_ids: Sequence[str] | None
    ) -> list[Any]:
        with self._lock:
            wanted = self._in_ids(only_ids)
            due = [
                document
                for document in self.scheduled.values()
                if wanted(document["_id"]) and self._claimable(document, now, fence)
            ]
            return [document["_id"] for document in _sort_by(due, "nextRunAt")[:limit]]

    def claim(self, ids: Sequence[Any], claim: Claim, now: datetime, lease_until: datetime) -> list[Document]:
        with self._lock:
            chosen = [self.scheduled[raw] for raw in self.scheduled if raw in ids]
            for document in chosen:
                if self._claimable(document, now, claim.fence):
                    document.update(
                        claimedBy=claim.run_id,
                        claimFence=claim.fence,
                        claimExpiresAt=naive_utc(lease_until),
                        lastClaimedAt=naive_utc(now),
                    )
            return [
                copy.deepcopy(document)
                for document in chosen
                if document.get("claimedBy") == claim.run_id and document.get("claimFence") == claim.fence
            ]

    def ids_with_twins(self, raw_ids: Sequence[Any]) -> set[str]:
        with self._lock:
            twins = [other for other in map(twin, raw_ids) if other is not None]
            return {str(raw) for raw in self.scheduled if raw in twins}

    def schedules_for(self, canonical_ids: Sequence[str]) -> dict[str, Document]:
        with self._lock:
            wanted = query_ids(canonical_ids)
            return {str(raw): copy.deepcopy(doc) for raw, doc in self.scheduled.items() if raw in wanted}

    def iter_due(
        self, now: datetime, only_ids: Sequence[str] | None, limit: int | None
    ) -> Iterator[Document]:
        with self._lock:
            wanted = self._in_ids(only_ids)
            due = [
                copy.deepcopy(document)
                for document in self.scheduled.values()
                if wanted(document["_id"])
                and document.get("status") == "active"
                and _at_or_before(document.get("nextRunAt"), now)
                and document.get("openPeriod") is None
            ]
        yield from _sort_by(due, "nextRunAt")[:limit]

    def advance_schedule(
        self,
        donation_id: Any,
        period: str,
        expected_next_run_at: datetime,
        next_run_at: datetime,
        anchor_day: int,
        now: datetime,
    ) -> ScheduleWrite:
        with self._lock:
            document = self.scheduled.get(donation_id)
            if document is None:
                return ScheduleWrite.GONE
            current = document.get("nextRunAt")
            unchanged = isinstance(current, datetime) and as_utc(current) == as_utc(expected_next_run_at)
            if unchanged and document.get("lastChargedPeriod") != period:
                document.update(
                    nextRunAt=naive_utc(next_run_at),
                    anchorDay=anchor_day,
                    lastChargedPeriod=period,
                    lastChargedAt=naive_utc(now),
                )
                _unset(document, _DONE_WITH_PERIOD)
                return ScheduleWrite.APPLIED
            if document.get("lastChargedPeriod") == period:
                return ScheduleWrite.ALREADY
            return ScheduleWrite.CHANGED

    def skip_paid_period(
        self, donation_id: Any, expected_next_run_at: datetime, next_run_at: datetime, anchor_day: int
    ) -> bool:
        with self._lock:
            document = self.scheduled.get(donation_id)
            if document is None:
                return False
            current = document.get("nextRunAt")
            if isinstance(current, datetime) and as_utc(current) == as_utc(expected_next_run_at):
                document.update(nextRunAt=naive_utc(next_run_at), anchorDay=anchor_day)
                _unset(document, _DONE_WITH_PERIOD)
                return True
            _unset(document, _CLAIM_FIELDS)
            return False

    def hold_schedule(self, donation_id: Any, period: str, next_attempt_at: datetime) -> None:
        with self._lock:
            document = self.scheduled.get(donation_id)
            if document is not None:
                document.update(openPeriod=period, nextAttemptAt=naive_utc(next_attempt_at))
                _unset(document, (*_CLAIM_FIELDS, *LEGACY_IN_FLIGHT_FIELDS))

    def release_schedule(self, donation_id: Any) -> None:
        with self._lock:
            document = self.scheduled.get(donation_id)
            if document is not None:
                _unset(document, (*_CLAIM_FIELDS, "openPeriod", "nextAttemptAt"))

    def stop_schedule(
        self, donation_id: Any, period: str, status: str, stop_reason: str, now: datetime
    ) -> bool:
        with self._lock:
            document = self.scheduled.get(donation_id)
            if document is None:
                return False
            stopped = document.get("status") == "active"
            if stopped:
                document.update(
                    status=status, stopReason=stop_reason, stoppedAt=naive_utc(now), stoppedPeriod=period
                )
            _unset(document, _DONE_WITH_PERIOD)  # a host's cancel keeps its status, but the period is done
            return stopped

    def _claimed_by(self, donation_id: Any, claim: Claim) -> dict[str, Any] | None:
        document = self.scheduled.get(donation_id)
        if document is None or document.get("claimedBy") != claim.run_id:
            return None
        return document if document.get("claimFence") == claim.fence else None

    def release(self, donation_id: Any, claim: Claim, last_error: Mapping[str, Any] | None) -> bool:
        with self._lock:
            document = self._claimed_by(donation_id, claim)
            if document is None:
                return False
            _unset(document, _CLAIM_FIELDS)  # the fence stays: this run cannot claim it again
            if last_error is not None:
                document["lastError"] = {
                    key: naive_utc(value) if isinstance(value, datetime) else value
                    for key, value in last_error.items()
                }
            return True

    def reject_invalid(
        self, donation_id: Any, claim: Claim, reason: str, letter: Mapping[str, Any], now: datetime
    ) -> bool:
        with self._lock:
            document = self._claimed_by(donation_id, claim)
            if document is None:
                return False
            document.update(
                status="invalid",
                invalidReason=reason,
                stopReason="invalid_document",
                stoppedAt=naive_utc(now),
                pendingDeadLetter=copy.deepcopy(dict(letter)),
            )
            _unset(document, _CLAIM_FIELDS)
            return True

    def count_unseen(self, known_statuses: Sequence[str]) -> tuple[int, int]:
        with self._lock:
            documents = list(self.scheduled.values())
        no_date = sum(
            1
            for document in documents
            if document.get("status") == "active" and not isinstance(document.get("nextRunAt"), datetime)
        )
        unknown = sum(1 for document in documents if document.get("status") not in known_statuses)
        return no_date, unknown

    def unseen(self, known_statuses: Sequence[str], limit: int) -> list[tuple[str, str]]:
        with self._lock:
            documents = list(self.scheduled.values())
        found = [
            (str(document["_id"]), "nextRunAt missing or not a date")
            for document in documents
            if document.get("status") == "active" and not isinstance(document.get("nextRunAt"), datetime)
        ]
        found += [
            (str(document["_id"]), f"unknown status {str(document.get('status'))[:40]!r}")
            for document in documents
            if document.get("status") not in known_statuses
        ]
        return found[:limit]

    def count_overdue(self, due_before: datetime) -> int:
        with self._lock:
            schedules = sum(
                1
                for document in self.scheduled.values()
                if document.get("status") == "active"
                and _before(document.get("nextRunAt"), due_before)
                and document.get("openPeriod") is None
            )
            intents = sum(
                1
                for document in self.donations.values()
                if _before(document.get("nextAttemptAt"), due_before)
            )
            return schedules + intents

    # -- charge intents --------------------------------------------------------------------------------

    def _refused(self, document: Mapping[str, Any]) -> bool:
        """The two unique indexes: one entry per (donation, period); one open intent per donation."""
        for other in self.donations.values():
            if other["_id"] == document["_id"]:
                continue
            same_period = (other.get("scheduledDonationId"), other.get("period")) == (
                document.get("scheduledDonationId"),
                document.get("period"),
            )
            both_open = (
                "openFor" in other and "openFor" in document and other["openFor"] == document["openFor"]
            )
            if same_period or both_open:
                return True
        return False

    def open_intents(
        self, intents: Sequence[NewIntent], claim: Claim, now: datetime, lease_until: datetime
    ) -> list[tuple[ChargeIntent, bool]]:
        with self._lock:
            opened: list[tuple[ChargeIntent, bool] | None] = []
            refused: list[tuple[int, NewIntent]] = []
            for intent in intents:  # insert_many, unordered: each document on its own
                document = new_intent_document(intent, claim, now, lease_until)
                if self._refused(document):
                    refused.append((len(opened), intent))
                    opened.append(None)
                else:
                    self.donations[document["_id"]] = document
                    opened.append((intent_from(document), True))
            existing = self._existing_for([intent for _, intent in refused])
            for position, intent in refused:
                found = existing.get(intent.scheduled_donation_id)
                if found is None:
                    raise AssertionError("a charge intent was refused as a duplicate but none was found")
                opened[position] = (found, False)
            return [entry for entry in opened if entry is not None]

    def _existing_for(self, intents: Sequence[NewIntent]) -> dict[str, ChargeIntent]:
        wanted = {intent.scheduled_donation_id: intent.period for intent in intents}
        periods = set(wanted.values())
        chosen: dict[str, ChargeIntent] = {}
        for document in self.donations.values():
            donation_id = document["scheduledDonationId"]
            if donation_id not in wanted:
                continue
            is_open = document.get("openFor") in wanted
            if not is_open and document.get("period") not in periods:
                continue
            if "openFor" in document or (
                document.get("period") == wanted.get(donation_id) and donation_id not in chosen
            ):
                chosen[donation_id] = entry_from(document)
        return chosen

    def adopt_legacy(
        self, intent: NewIntent, legacy_raw_id: Any, claim: Claim, now: datetime, lease_until: datetime
    ) -> ChargeIntent | None:
        with self._lock:
            record = next(
                (
                    document
                    for document in self.donations.values()
                    if document.get("scheduledDonationId") in (legacy_raw_id, intent.scheduled_donation_id)
                    and document.get("period") == intent.period
                    and document.get("schema") is None
                ),
                None,
            )
            if record is None:
                return None
            fields = new_intent_document(intent, claim, now, lease_until)
            fields.pop("_id")
            fields.pop("createdAt")
            if record.get("status") == str(IntentStatus.SUCCEEDED):
                for kept in ("status", "amount", "currency", "paymentIntentId"):
                    if kept in record:
                        fields[kept] = record[kept]
                fields["resolvedAt"] = naive_utc(now)
            adopted = {**record, **fields}
            if self._refused(adopted):
                return None  # DuplicateKeyError
            self.donations[record["_id"]] = adopted
            return intent_from(adopted)

    def claim_intents(
        self, now: datetime, claim: Claim, limit: int, lease_until: datetime, only_ids: Sequence[str] | None
    ) -> list[ChargeIntent]:
        with self._lock:
            due = [
                document
                for document in self.donations.values()
                if "openFor" in document
                and _at_or_before(document.get("nextAttemptAt"), now)
                and _lease_is_free(document, now, claim.fence)
                and (only_ids is None or document["scheduledDonationId"] in only_ids)
            ]
            leased = _sort_by(due, "nextAttemptAt")[:limit]
            for document in leased:
                document["lease"] = lease_document(claim, lease_until)
            return [intent_from(document) for document in leased]

    def _lease_one(
        self, ref: Any, matches: Callable[[dict[str, Any]], bool], update: Mapping[str, Any]
    ) -> ChargeIntent | None:
        document = self.donations.get(ref)
        if document is None or not matches(document):
            return None
        updated = {**copy.deepcopy(document), **copy.deepcopy(dict(update))}
        if self._refused(updated):
            return None  # another period of this donation is open: it goes first
        self.donations[ref] = updated
        return intent_from(updated)

    def take_intent(
        self, intent: ChargeIntent, claim: Claim, now: datetime, lease_until: datetime
    ) -> ChargeIntent | None:
        with self._lock:
            return self._lease_one(
                intent.ref,
                lambda document: "openFor" in document and _lease_is_free(document, now, claim.fence),
                {"lease": lease_document(claim, lease_until)},
            )

    def reopen_intent(
        self, intent: ChargeIntent, claim: Claim, now: datetime, lease_until: datetime
    ) -> ChargeIntent | None:
        moment = naive_utc(now)
        stopped = (str(IntentStatus.FAILED), str(IntentStatus.CANCELED))
        with self._lock:
            reopened = self._lease_one(
                intent.ref,
                lambda document: (
                    document.get("schema") == INTENT_SCHEMA
                    and document.get("openFor") is None
                    and document.get("status") in stopped
                ),
                {
                    "status": str(IntentStatus.PENDING),
                    "openFor": intent.scheduled_donation_id,
                    "attempts": 0,
                    "nextAttemptAt": moment,
                    "lease": lease_document(claim, lease_until),
                    "reopenedAt": moment,
                    "updatedAt": moment,
                },
            )
            if reopened is None:
                return None
            _unset(self.donations[intent.ref], ("resolvedAt", "stopReason"))
            return intent_from(self.donations[intent.ref])

    def _leased_document(self, intent: ChargeIntent, claim: Claim) -> dict[str, Any] | None:
        document = self.donations.get(intent.ref)
        return document if document is not None and _leased_to(document, claim) else None

    def start_attempt(self, intent: ChargeIntent, claim: Claim, attempt: Attempt) -> bool:
        with self._lock:
            document = self._leased_document(intent, claim)
            if document is None or document.get("nextAttemptNumber") != attempt.number:
                return False
            document.setdefault("attemptLog", []).append(attempt_document(attempt))
            document.update(nextAttemptNumber=attempt.number + 1, updatedAt=naive_utc(attempt.sent_at))
            if not attempt.creates:
                document["paymentIntentId"] = intent.payment_intent_id
            return True

    def record_success(self, intent: ChargeIntent, claim: Claim, charged: Charged, now: datetime) -> bool:
        with self._lock:
            document = self._leased_document(intent, claim)
            if document is None:
                return False
            moment = naive_utc(now)
            document.update(
                status=str(IntentStatus.SUCCEEDED),
                paymentIntentId=charged.payment_intent_id,
                amount=charged.amount,
                currency=charged.currency,
                attemptLog=[attempt_document(attempt) for attempt in intent.attempts],
                nextAttemptAt=moment,
                resolvedAt=moment,
                updatedAt=moment,
                runId=claim.run_id,
            )
            return True

    def record_pending(
        self,
        intent: ChargeIntent,
        claim: Claim,
        next_attempt_at: datetime,
        failure: StripeFailure | None,
        now: datetime,
    ) -> bool:
        with self._lock:
            document = self._leased_document(intent, claim)
            if document is None:
                return False
            document.update(
                attemptLog=[attempt_document(attempt) for attempt in intent.attempts],
                attempts=intent.dunning_attempts,
                nextAttemptAt=naive_utc(next_attempt_at),
                updatedAt=naive_utc(now),
                runId=claim.run_id,
            )
            if intent.payment_intent_id is not None:
                document["paymentIntentId"] = intent.payment_intent_id
            if failure is not None:
                document["error"] = error_fields(failure, now, claim.run_id)
            _unset_lease_holder(document)
            return True

    def record_stop(
        self,
        intent: ChargeIntent,
        claim: Claim,
        stopped: Stopped,
        letter: Mapping[str, Any] | None,
        now: datetime,
    ) -> bool:
        with self._lock:
            document = self._leased_document(intent, claim)
            if document is None:
                return False
            moment = naive_utc(now)
            detail = stopped.failure.reason if stopped.failure is not None else "none"
            document.update(
                status=str(IntentStatus.CANCELED if stopped.canceled else IntentStatus.FAILED),
                stopReason=f"{stopped.reason}:{detail}",
                attemptLog=[attempt_document(attempt) for attempt in intent.attempts],
                attempts=stopped.declines,
                nextAttemptAt=moment,
                resolvedAt=moment,
                updatedAt=moment,
                runId=claim.run_id,
            )
            if stopped.payment_intent_id is not None:
                document["paymentIntentId"] = stopped.payment_intent_id
            if stopped.failure is not None:
                document["error"] = error_fields(stopped.failure, now, claim.run_id)
            if letter is not None:
                document["pendingDeadLetter"] = copy.deepcopy(dict(letter))
            return True

    def close_intents(self, refs: Sequence[Any]) -> None:
        with self._lock:
            for ref in refs:
                document = self.donations.get(ref)
                if document is not None and document.get("status") != str(IntentStatus.PENDING):
                    _unset(document, ("openFor", "nextAttemptAt"))
                    _unset_lease_holder(document)

    # -- dead letters ----------------------------------------------------------------------------------

    def pending_dead_letters(self, limit: int) -> list[ParkedLetter]:
        with self._lock:
            parked = [
                ParkedLetter(
                    document["_id"], copy.deepcopy(document["pendingDeadLetter"]), in_ledger=in_ledger
                )
                for in_ledger, collection in ((True, self.donations), (False, self.scheduled))
                for document in collection.values()
                if "deadLetterId" in (document.get("pendingDeadLetter") or {})
            ]
            return parked[:limit]

    def clear_dead_letter(self, parked: ParkedLetter) -> None:
        with self._lock:
            collection = self.donations if parked.in_ledger else self.scheduled
            document = collection.get(parked.owner)
            letter = (document or {}).get("pendingDeadLetter") or {}
            if document is not None and letter.get("deadLetterId") == parked.letter["deadLetterId"]:
                del document["pendingDeadLetter"]

    # -- fencing (the run lock) ------------------------------------------------------------------------

    def highest_fence(self) -> int:
        """The largest numeric `claimFence` or `lease.fence`, as MongoDB's `$type: "number"` finds them."""
        with self._lock:
            fences = [document.get("claimFence") for document in self.scheduled.values()]
            fences += [
                document["lease"].get("fence")
                for document in self.donations.values()
                if isinstance(document.get("lease"), dict)
            ]
            numbers = (f for f in fences if isinstance(f, int | float) and not isinstance(f, bool))
            return max((int(fence) for fence in numbers), default=0)

    # -- missed periods --------------------------------------------------------------------------------

    def record_missed_periods(self, entries: Sequence[NewIntent], claim: Claim, now: datetime) -> list[bool]:
        with self._lock:
            written: list[bool] = []
            for entry in entries:  # insert_many, unordered: each document on its own
                document = missed_document(entry, claim, now)
                refused = self._refused(document)
                if not refused:
                    self.donations[document["_id"]] = document
                written.append(not refused)
            return written


# -- payments ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Charge:
    """One successful charge: the money Stripe took."""

    payment_intent_id: str
    amount: int
    currency: str
    customer: str
    payment_method: str
    metadata: Mapping[str, str]
    idempotency_key: str


@dataclass(frozen=True)
class KeyedRequest:
    """A create or confirm as Stripe received it, and what it answered."""

    operation: str
    key: str
    params: str  # canonical JSON: equal strings, equal parameters
    replayed: bool
    answer: str  # the PaymentIntent's status, or the failure's reason


@dataclass
class _PaymentIntent:
    id: str
    amount: int
    currency: str
    customer: str
    metadata: dict[str, str]
    payment_method: str | None
    status: str = "requires_confirmation"

    def result(self) -> PaymentIntentResult:
        return PaymentIntentResult(self.id, self.status, amount=self.amount, currency=self.currency)


@dataclass(frozen=True)
class _Stored:
    fingerprint: str
    result: PaymentIntentResult | None = None
    failure: StripeFailure | None = None


def _invalid_request(code: str, message: str, http_status: int = 400, pi: str | None = None) -> PaymentFailed:
    return PaymentFailed(
        StripeFailure(
            FailureKind.INVALID_REQUEST,
            "invalid_request_error",
            code=code,
            message=message,
            http_status=http_status,
            payment_intent_id=pi,
        )
    )


class FakePayments:
    """PaymentsPort in memory, with Stripe's idempotency: a key replays its stored answer, a key re-sent
    with other parameters is an `idempotency_error`; a decline is stored under its key like a success."""

    def __init__(self) -> None:
        self.charges: list[Charge] = []
        self.keyed_requests: list[KeyedRequest] = []
        self.lookups: list[tuple[str, str]] = []  # ("retrieve", pi) and ("search", "<donation>:<period>")
        self._intents: dict[str, _PaymentIntent] = {}
        self._keys: dict[str, _Stored] = {}
        self._declines: dict[str, str] = {}
        self._declines_left: dict[str, int] = {}
        self._answers_to_lose = 0
        self._before_next: list[tuple[str, Callable[[], None]]] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # -- scripting -------------------------------------------------------------------------------------

    def decline(self, payment_method: str, decline_code: str) -> None:
        """Charges on this method fail as a card_error: insufficient_funds is soft, stolen_card is hard."""
        self._declines[payment_method] = decline_code

    def decline_times(self, payment_method: str, decline_code: str, times: int) -> None:
        """Charges on this method are declined `times` times, then succeed (the donor topped the card up)."""
        self._declines[payment_method] = decline_code
        self._declines_left[payment_method] = times

    def lose_next_answers(self, count: int = 1) -> None:
        """The next `count` creates or confirms run at Stripe, and then the connection drops."""
        self._answers_to_lose += count

    def before_next(self, operation: str, action: Callable[[], None]) -> None:
        """Run `action` once when the next `operation` ("create", "confirm") is sent, before Stripe has it."""
        self._before_next.append((operation, action))

    def forget_idempotency_keys(self) -> None:
        """Stripe keeps keys for 24 hours at least, not for ever."""
        with self._lock:
            self._keys.clear()

    # -- the port --------------------------------------------------------------------------------------

    def create_payment_intent(self, params: Mapping[str, Any], idempotency_key: str) -> PaymentIntentResult:
        return self._keyed(
            "create", "", params, idempotency_key, lambda: self._create(params, idempotency_key)
        )

    def confirm_payment_intent(
        self, payment_intent_id: str, params: Mapping[str, Any], idempotency_key: str
    ) -> PaymentIntentResult:
        return self._keyed(
            "confirm",
            payment_intent_id,
            params,
            idempotency_key,
            lambda: self._confirm(payment_intent_id, params, idempotency_key),
        )

    def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntentResult:
        with self._lock:
            self.lookups.append(("retrieve", payment_intent_id))
            intent = self._intents.get(payment_intent_id)
            if intent is None:
                raise _invalid_request("resource_missing", "No such payment_intent", http_status=404)
            return intent.result()

    def find_payment_intent(self, scheduled_donation_id: str, period: str) -> PaymentIntentResult | None:
        with self._lock:
            self.lookups.append(("search", f"{scheduled_donation_id}:{period}"))
            wanted = {"scheduled_donation_id": scheduled_donation_id, "period": period}
            found = [
                intent.result()
                for intent in reversed(self._intents.values())
                if all(intent.metadata.get(name) == value for name, value in wanted.items())
            ]
        for status in ("succeeded", "processing"):
            for result in found:
                if result.status == status:
                    return result
        return next((result for result in found if result.status != "canceled"), None)

    # -- Stripe's side ---------------------------------------------------------------------------------

    def _keyed(
        self,
        operation: str,
        path_id: str,
        params: Mapping[str, Any],
        key: str,
        execute: Callable[[], PaymentIntentResult],
    ) -> PaymentIntentResult:
        self._run_hooks(operation)
        canonical = json.dumps(dict(params), sort_keys=True, default=str)
        fingerprint = f"{operation}:{path_id}:{canonical}"
        with self._lock:
            stored = self._keys.get(key)
            if stored is not None:
                return self._replay(operation, key, canonical, fingerprint, stored)
            try:
                result = execute()
            except PaymentFailed as error:
                if error.failure.kind is not FailureKind.INVALID_REQUEST:  # Stripe keeps no failed validation
                    self._keys[key] = _Stored(fingerprint, failure=error.failure)
                self.keyed_requests.append(
                    KeyedRequest(operation, key, canonical, False, error.failure.reason)
                )
                self._maybe_lose_answer()
                raise
            self._keys[key] = _Stored(fingerprint, result=result)
            self.keyed_requests.append(KeyedRequest(operation, key, canonical, False, result.status))
            self._maybe_lose_answer()
            return result

    def _replay(
        self, operation: str, key: str, canonical: str, fingerprint: str, stored: _Stored
    ) -> PaymentIntentResult:
        if stored.fingerprint != fingerprint:
            self.keyed_requests.append(KeyedRequest(operation, key, canonical, False, "idempotency_error"))
            raise PaymentFailed(
                StripeFailure(
                    FailureKind.INVALID_REQUEST,
                    "idempotency_error",
                    message="Keys for idempotent requests can only be used with the same parameters.",
                    http_status=400,
                )
            )
        self.keyed_requests.append(
            KeyedRequest(
                operation, key, canonical, True, stored.failure.reason if stored.failure else "replayed"
            )
        )
        if stored.failure is not None:
            raise PaymentFailed(stored.failure)
        assert stored.result is not None
        return replace(stored.result, replayed=True)

    def _run_hooks(self, operation: str) -> None:
        with self._lock:
            due = [action for name, action in self._before_next if name == operation]
            self._before_next = [(name, action) for name, action in self._before_next if name != operation]
        for action in due:
            action()  # outside the lock: the action may run a whole other engine

    def _maybe_lose_answer(self) -> None:
        if self._answers_to_lose <= 0:
            return
        self._answers_to_lose -= 1
        raise PaymentFailed(
            StripeFailure(
                FailureKind.TRANSIENT,
                "api_connection_error",
                message="the connection dropped before Stripe's answer arrived",
                availability=True,
            )
        )

    def _create(self, params: Mapping[str, Any], key: str) -> PaymentIntentResult:
        amount = params.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
            raise _invalid_request("parameter_invalid_integer", "amount must be a positive integer")
        intent = _PaymentIntent(
            id=f"pi_fake{next(self._ids):06d}",
            amount=amount,
            currency=str(params["currency"]),
            customer=str(params["customer"]),
            metadata={str(name): str(value) for name, value in dict(params.get("metadata") or {}).items()},
            payment_method=params.get("payment_method"),
        )
        self._intents[intent.id] = intent
        return self._attempt(intent, intent.payment_method, key)

    def _confirm(self, payment_intent_id: str, params: Mapping[str, Any], key: str) -> PaymentIntentResult:
        intent = self._intents.get(payment_intent_id)
        if intent is None:
            raise _invalid_request("resource_missing", "No such payment_intent", http_status=404)
        if intent.status not in CONFIRMABLE:
            raise _invalid_request(
                "payment_intent_unexpected_state",
                f"You cannot confirm this PaymentIntent because it has a status of {intent.status}.",
                pi=intent.id,
            )
        return self._attempt(intent, params.get("payment_method") or intent.payment_method, key)

    def _attempt(self, intent: _PaymentIntent, payment_method: str | None, key: str) -> PaymentIntentResult:
        if payment_method is None:
            raise _invalid_request("payment_intent_unexpected_state", "no payment method", pi=intent.id)
        intent.payment_method = payment_method
        decline_code = self._declines.get(payment_method)
        if decline_code is not None:
            left = self._declines_left.get(payment_method)
            if left is not None:
                self._declines_left[payment_method] = left - 1
                if left <= 1:
                    del self._declines[payment_method]
            intent.status = "requires_payment_method"
            raise PaymentFailed(
                StripeFailure(
                    classify_card_error("card_declined", decline_code),
                    "card_error",
                    code="card_declined",
                    decline_code=decline_code,
                    message="Your card was declined.",
                    http_status=402,
                    payment_intent_id=intent.id,
                )
            )
        intent.status = "succeeded"
        self.charges.append(
            Charge(
                payment_intent_id=intent.id,
                amount=intent.amount,
                currency=intent.currency,
                customer=intent.customer,
                payment_method=payment_method,
                metadata=dict(intent.metadata),
                idempotency_key=key,
            )
        )
        return intent.result()


# -- the clock, the lock, dead letters, donor events ------------------------------------------------------


@dataclass
class FakeClock:
    """The one clock every fake and the engine read; tests move it to expire leases and reach retries."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class FakeLock:
    """RunLockPort in memory: a lease on a clock, and a fence that grows with every acquisition."""

    def __init__(self, clock: Callable[[], datetime], lease_seconds: int = 120) -> None:
        self._clock = clock
        self._lease_ms = lease_seconds * 1000
        self._owner: str | None = None
        self._fence = 0
        self._expires_ms = 0
        self.last_run: Mapping[str, Any] | None = None
        self._lock = threading.Lock()

    def _now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)

    def acquire(self, owner: str) -> LockLease:
        with self._lock:
            now = self._now_ms()
            if self._owner is not None and self._expires_ms >= now:
                raise LockContendedError("another run holds the lock")
            self._owner, self._fence, self._expires_ms = (
                owner,
                max(now, self._fence + 1),
                now + self._lease_ms,
            )
            return LockLease(owner, self._fence, self._expires_ms)

    def renew(self, lease: LockLease) -> LockLease:
        with self._lock:
            if (self._owner, self._fence) != (lease.owner, lease.fence):
                raise LockLostError("the lock was taken over by another run")
            self._expires_ms = self._now_ms() + self._lease_ms
            return replace(lease, expires_at_ms=self._expires_ms)

    def raise_fence(self, lease: LockLease, floor: int) -> LockLease:
        """As the DynamoDB lock: no write when the fence is above floor already, else lift it to floor + 1
        while this lease still holds the lock."""
        if lease.fence > floor:
            return lease
        with self._lock:
            if (self._owner, self._fence) != (lease.owner, lease.fence):
                raise LockLostError("the lock was lost before its fence was raised")
            self._fence = floor + 1
            return replace(lease, fence=self._fence)

    def release(self, lease: LockLease, last_run: Mapping[str, Any] | None = None) -> None:
        with self._lock:
            if (self._owner, self._fence) != (lease.owner, lease.fence):
                return  # taken over: the newer run's lease stands
            self._owner, self._expires_ms = None, 0
            if last_run is not None:
                self.last_run = dict(last_run)


@dataclass
class FakeDeadLetters:
    """DeadLetterPort in memory; `unreachable` makes every send fail as SQS being down would."""

    letters: list[dict[str, Any]] = field(default_factory=list)
    unreachable: bool = False

    def send(self, letter: Mapping[str, Any]) -> None:
        if self.unreachable:
            raise DeadLetterSendError("dead-letter queue unreachable")
        self.letters.append(copy.deepcopy(dict(letter)))


@dataclass
class FakeDonorEvents:
    """DonorEventsPort in memory: what was published, and what a flush delivered."""

    queued: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    delivered: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def publish(self, detail_type: str, detail: Mapping[str, Any]) -> None:
        with self._lock:
            self.queued.append((detail_type, copy.deepcopy(dict(detail))))

    def flush(self) -> int:
        with self._lock:
            self.delivered.extend(self.queued)
            self.queued = []
        return 0

    def of_type(self, detail_type: str) -> list[dict[str, Any]]:
        return [detail for kind, detail in self.delivered if kind == detail_type]
