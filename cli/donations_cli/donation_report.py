"""One scheduled donation as `donations show` reports it: plain JSON-able values, amounts in minor units.

Read through the store only. Shown: the host's fields (metadata only as present or not: it is the host's and
may hold personal data), the engine's bookkeeping, every ledger entry with its attempts, and the dead letters
parked in MongoDB (letters the job could not send to SQS yet). Letters already on the SQS queue are not
read: receiving a message hides it from its consumers; `donations redrive --id ID` lists them (a dry run
leaves them on the queue).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId

from donation_processor.adapters.donation_store import MongoDonationStore
from donation_processor.charge_intent import Attempt, ChargeIntent
from donation_processor.ports import Document, LedgerEntry
from donation_processor.schedule import as_utc
from donation_processor.validation import (
    HOST_OWNED_FIELDS,
    InvalidDonation,
    is_valid_id,
    read_schedule,
    validate,
)
from donations_cli.errors import NotFound, UsageError

QUEUE_NOT_READ = (
    "letters on the SQS queue are not read here (receiving a message hides it from its consumers); "
    "`donations redrive --id {id}` lists them, and a dry run leaves them on the queue"
)
# The dead letter's body (dead_letters.build_letter) as an operator reads it.
_LETTER_FIELDS = ("deadLetterId", "reason", "period", "code", "declineCode", "paymentIntentId", "failedAt")


@dataclass(frozen=True)
class Donation:
    """What MongoDB holds for one id: the schedule (None if deleted) and its ledger entries."""

    id: str  # canonical
    document: Document | None
    entries: list[LedgerEntry]


def checked_id(text: str) -> str:
    if not is_valid_id(text):
        raise UsageError(
            f"{text[:80]!r} is not a scheduled donation id (ObjectId hex or 1-64 of A-Z a-z 0-9 _ -)"
        )
    return text


def read_donation(store: MongoDonationStore, donation_id: str) -> Donation:
    """The donation, or NotFound when MongoDB holds neither its schedule nor any ledger entry."""
    document = store.find_schedule(donation_id)
    canonical = read_schedule(document).canonical_id if document is not None else donation_id
    entries = store.ledger_entries(canonical)
    if document is None and not entries:
        raise NotFound(f"no scheduled donation with id {donation_id!r}")
    return Donation(canonical, document, entries)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None


def money(amount: object, currency: object) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return iso(as_utc(value))
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)[:100]


def schedule_section(document: Document) -> dict[str, Any]:
    fields: dict[str, Any] = {
        name: _plain(document.get(name))
        for name in HOST_OWNED_FIELDS
        if name not in ("_id", "amount", "currency", "metadata")
    }
    fields["idType"] = "ObjectId" if isinstance(document.get("_id"), ObjectId) else "string"
    fields["amount"] = money(document.get("amount"), document.get("currency"))
    fields["metadata"] = "present (not shown)" if "metadata" in document else None
    try:
        validate(document)
        fields["invalidBecause"] = None
    except InvalidDonation as error:
        fields["invalidBecause"] = str(error)
    return fields


def engine_section(document: Document) -> dict[str, Any]:
    kept = MongoDonationStore.bookkeeping(document)
    return {
        "openPeriod": kept.open_period,
        "nextAttemptAt": iso(kept.next_attempt_at),
        "claimedBy": kept.claimed_by,
        "claimExpiresAt": iso(kept.claim_expires_at),
        "lastChargedPeriod": kept.last_charged_period,
        "stopReason": kept.stop_reason,
        "stoppedAt": iso(kept.stopped_at),
        "invalidReason": kept.invalid_reason,
    }


def attempt_section(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "key": attempt.key,
        "paymentMethodId": attempt.payment_method_id,
        "sentAt": iso(attempt.sent_at),
        "creates": attempt.creates,
        "outcome": None if attempt.outcome is None else str(attempt.outcome),
        "reason": attempt.reason,
    }


def lease_section(intent: ChargeIntent, now: datetime) -> dict[str, Any] | None:
    if intent.lease is None:
        return None
    expires = intent.lease_expires_at
    return {
        "runId": intent.lease.run_id,
        "fence": intent.lease.fence,
        "expiresAt": iso(expires),
        "live": expires is not None and expires > now,
    }


def intent_section(entry: LedgerEntry, now: datetime) -> dict[str, Any]:
    intent = entry.intent
    return {
        "period": intent.period,
        "status": str(intent.status),
        "open": intent.open,
        "amount": money(intent.amount, intent.currency),
        "dueAt": iso(intent.due_at),
        "nextAttemptAt": iso(intent.next_attempt_at) if intent.open else None,
        "dunningAttempts": intent.dunning_attempts,
        "idempotencyKey": intent.creation_key,
        "paymentIntentId": intent.payment_intent_id,
        "paymentMethodId": intent.payment_method_id or None,
        "stopReason": intent.stop_reason,
        "errorCode": entry.error_code,
        "declineCode": entry.decline_code,
        "lease": lease_section(intent, now),
        "legacyRecord": intent.legacy_record,
        "attempts": [attempt_section(attempt) for attempt in intent.attempts],
    }


def letter_section(letter: Mapping[str, Any], kept_on: str) -> dict[str, Any]:
    return {**{name: _plain(letter.get(name)) for name in _LETTER_FIELDS}, "keptOn": kept_on}


def parked_letters(donation: Donation) -> list[dict[str, Any]]:
    letters = []
    if donation.document is not None:
        on_schedule = MongoDonationStore.bookkeeping(donation.document).parked_letter
        if on_schedule is not None:
            letters.append(letter_section(on_schedule, "schedule document"))
    for entry in donation.entries:
        if entry.parked_letter is not None:
            letters.append(
                letter_section(entry.parked_letter, f"ledger entry of period {entry.intent.period}")
            )
    return letters


def donation_report(donation: Donation, now: datetime) -> dict[str, Any]:
    document = donation.document
    return {
        "id": donation.id,
        "now": iso(now),
        "schedule": schedule_section(document) if document is not None else None,
        "engine": engine_section(document) if document is not None else None,
        "intents": [intent_section(entry, now) for entry in donation.entries],
        "parkedLetters": parked_letters(donation),
        "queue": {"read": False, "why": QUEUE_NOT_READ.format(id=donation.id)},
    }
