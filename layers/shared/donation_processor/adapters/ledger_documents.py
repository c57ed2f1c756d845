"""The charge intent as a `donations` document, and the ids of `scheduled_donations`: one mapping, used by
the MongoDB adapter (and by the in-memory fake of the fast tier, so both write the same schema)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId

from donation_processor.adapters.mongo_connection import to_mongo_datetime
from donation_processor.charge_intent import Attempt, AttemptOutcome, ChargeIntent, IntentStatus, NewIntent
from donation_processor.charge_outcome import StripeFailure
from donation_processor.charge_rules import Stopped
from donation_processor.ports import Bookkeeping, Claim, LedgerEntry
from donation_processor.schedule import as_utc

INTENT_SCHEMA = 2
# What versions before the charge intent kept on the schedule document while a period was in flight.
LEGACY_IN_FLIGHT_FIELDS = (
    "periodStart",
    "periodFirstAttemptAt",
    "periodAttempts",
    "paymentIntentId",
    "attempts",
)


def query_ids(ids: Sequence[str]) -> list[Any]:
    """Ids arrive as text; a 24-hex id may be stored as an ObjectId or as a string, so ask for both."""
    values: list[Any] = []
    for value in ids:
        values.append(value)
        if len(value) == 24 and ObjectId.is_valid(value):
            values.append(ObjectId(value))
    return values


def twin(raw: Any) -> Any | None:
    """The other spelling of the same id: a 24-hex string for an ObjectId, and the reverse."""
    if isinstance(raw, ObjectId):
        return str(raw)
    if isinstance(raw, str) and len(raw) == 24 and ObjectId.is_valid(raw) and str(ObjectId(raw)) == raw:
        return ObjectId(raw)
    return None


def error_fields(failure: StripeFailure, now: datetime, run_id: str) -> dict[str, Any]:
    return {
        "type": failure.error_type,
        "code": failure.code,
        "declineCode": failure.decline_code,
        "message": failure.message,
        "at": to_mongo_datetime(now),
        "runId": run_id,
    }


def attempt_document(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "key": attempt.key,
        "paymentMethodId": attempt.payment_method_id,
        "sentAt": to_mongo_datetime(attempt.sent_at),
        "creates": attempt.creates,
        "outcome": None if attempt.outcome is None else str(attempt.outcome),
        "reason": attempt.reason,
    }


def attempt_from(document: Mapping[str, Any]) -> Attempt:
    outcome = document.get("outcome")
    return Attempt(
        number=int(document["number"]),
        key=str(document["key"]),
        payment_method_id=str(document["paymentMethodId"]),
        sent_at=as_utc(document["sentAt"]),
        creates=bool(document.get("creates")),
        outcome=None if outcome is None else AttemptOutcome(outcome),
        reason=document.get("reason"),
    )


def intent_from(document: Mapping[str, Any]) -> ChargeIntent:
    lease = document.get("lease") or {}
    run_id = lease.get("runId")
    expires = lease.get("expiresAt")
    return ChargeIntent(
        ref=document["_id"],
        scheduled_donation_id=str(document["scheduledDonationId"]),
        period=str(document["period"]),
        due_at=as_utc(document["dueAt"]),
        seen_next_run_at=as_utc(document.get("scheduleNextRunAt") or document["dueAt"]),
        amount=int(document["amount"]),
        currency=str(document["currency"]),
        customer_id=str(document["stripeCustomerId"]),
        payment_method_id=str(document["paymentMethodId"]),
        creation_key=str(document["idempotencyKey"]),
        status=IntentStatus(document["status"]),
        attempts=tuple(attempt_from(entry) for entry in document.get("attemptLog") or ()),
        next_attempt_number=int(document.get("nextAttemptNumber", 2)),
        dunning_attempts=int(document.get("attempts", 0)),
        next_attempt_at=as_utc(document.get("nextAttemptAt") or document["updatedAt"]),
        created_at=as_utc(document["createdAt"]),
        payment_intent_id=document.get("paymentIntentId"),
        open="openFor" in document,
        lease=Claim(run_id, int(lease["fence"])) if run_id is not None and "fence" in lease else None,
        lease_expires_at=as_utc(expires) if isinstance(expires, datetime) else None,
        donor_id=document.get("donorId"),
        stop_reason=document.get("stopReason"),
    )


def missed_document(entry: NewIntent, claim: Claim, now: datetime) -> dict[str, Any]:
    """A period given up under MISSED_PERIODS=latest: a closed entry (no `openFor`, no `nextAttemptAt`, no
    attempt), unique per (donation, period) like every entry, so a period is never both missed and charged."""
    moment = to_mongo_datetime(now)
    return {
        "_id": ObjectId(),
        "schema": INTENT_SCHEMA,
        "scheduledDonationId": entry.scheduled_donation_id,
        "period": entry.period,
        "status": str(IntentStatus.MISSED),
        "dueAt": to_mongo_datetime(entry.due_at),
        "scheduleNextRunAt": to_mongo_datetime(entry.seen_next_run_at),
        "amount": entry.amount,
        "currency": entry.currency,
        "stripeCustomerId": entry.customer_id,
        "paymentMethodId": entry.payment_method_id,
        "idempotencyKey": entry.creation_key,
        "attemptLog": [],
        "nextAttemptNumber": entry.next_attempt_number,
        "attempts": 0,
        "donorId": entry.donor_id,
        "runId": claim.run_id,
        "createdAt": moment,
        "resolvedAt": moment,
        "updatedAt": moment,
    }


def lease_document(claim: Claim, lease_until: datetime) -> dict[str, Any]:
    return {"runId": claim.run_id, "fence": claim.fence, "expiresAt": to_mongo_datetime(lease_until)}


def stop_reason(stopped: Stopped) -> str:
    """`<reason>:<Stripe's decline code, else its code, else the error type>`, as operators search for it."""
    detail = stopped.failure.reason if stopped.failure is not None else "none"
    return f"{stopped.reason}:{detail}"


def entry_from(document: Mapping[str, Any]) -> ChargeIntent:
    """An entry that blocked a new intent. A record from an earlier version (no schema) is read as a closed
    entry of its period, so a succeeded one is never charged again and a failed one can be reopened."""
    if document.get("schema") == INTENT_SCHEMA:
        return intent_from(document)
    created = document.get("createdAt") or document.get("updatedAt")
    moment = as_utc(created) if isinstance(created, datetime) else as_utc(datetime(2000, 1, 1))
    status = document.get("status")
    return ChargeIntent(
        ref=document["_id"],
        scheduled_donation_id=str(document["scheduledDonationId"]),
        period=str(document["period"]),
        due_at=moment,
        seen_next_run_at=moment,
        amount=int(document.get("amount") or 0),
        currency=str(document.get("currency") or ""),
        customer_id="",
        payment_method_id="",
        creation_key=str(document.get("idempotencyKey") or ""),
        status=IntentStatus.SUCCEEDED if status == str(IntentStatus.SUCCEEDED) else IntentStatus.FAILED,
        attempts=(),
        next_attempt_number=2,
        dunning_attempts=0,
        next_attempt_at=moment,
        created_at=moment,
        payment_intent_id=document.get("paymentIntentId"),
        open=False,
        legacy_record=True,
    )


def new_intent_document(
    intent: NewIntent, claim: Claim, now: datetime, lease_until: datetime
) -> dict[str, Any]:
    """A new charge intent as its `donations` document: pending, open, leased to the claiming run."""
    moment = to_mongo_datetime(now)
    document: dict[str, Any] = {
        "_id": ObjectId(),
        "schema": INTENT_SCHEMA,
        "scheduledDonationId": intent.scheduled_donation_id,
        "period": intent.period,
        "status": str(IntentStatus.PENDING),
        "openFor": intent.scheduled_donation_id,
        "dueAt": to_mongo_datetime(intent.due_at),
        "scheduleNextRunAt": to_mongo_datetime(intent.seen_next_run_at),
        "amount": intent.amount,
        "currency": intent.currency,
        "stripeCustomerId": intent.customer_id,
        "paymentMethodId": intent.payment_method_id,
        "idempotencyKey": intent.creation_key,
        "attemptLog": [attempt_document(attempt) for attempt in intent.attempts],
        "nextAttemptNumber": intent.next_attempt_number,
        "attempts": intent.dunning_attempts,
        "nextAttemptAt": moment,
        "lease": lease_document(claim, lease_until),
        "donorId": intent.donor_id,
        "runId": claim.run_id,
        "createdAt": moment,
        "updatedAt": moment,
    }
    if intent.payment_intent_id is not None:
        document["paymentIntentId"] = intent.payment_intent_id
    return document


def _text(value: object) -> str | None:
    return value[:300] if isinstance(value, str) and value else None


def _moment(value: object) -> datetime | None:
    return as_utc(value) if isinstance(value, datetime) else None


def _letter(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def ledger_entry_from(document: Mapping[str, Any]) -> LedgerEntry:
    """A ledger entry with what an operator reads beside the intent: Stripe's last error, a parked letter."""
    error = document.get("error")
    error = error if isinstance(error, Mapping) else {}
    return LedgerEntry(
        intent=entry_from(document),
        error_code=_text(error.get("code")),
        decline_code=_text(error.get("declineCode")),
        parked_letter=_letter(document.get("pendingDeadLetter")),
    )


def bookkeeping_from(document: Mapping[str, Any]) -> Bookkeeping:
    """The engine's fields on a schedule document; anything malformed reads as absent."""
    return Bookkeeping(
        open_period=_text(document.get("openPeriod")),
        next_attempt_at=_moment(document.get("nextAttemptAt")),
        claimed_by=_text(document.get("claimedBy")),
        claim_expires_at=_moment(document.get("claimExpiresAt")),
        last_charged_period=_text(document.get("lastChargedPeriod")),
        stop_reason=_text(document.get("stopReason")),
        stopped_at=_moment(document.get("stoppedAt")),
        invalid_reason=_text(document.get("invalidReason")),
        parked_letter=_letter(document.get("pendingDeadLetter")),
    )
