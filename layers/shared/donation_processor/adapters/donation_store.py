"""MongoDB adapter: schedules the host owns, charge intents the engine owns; every write conditional.

The only module that spells field names. Only operations that both pymongo against a real server and
mongomock honour are used (`insert_many` unordered, `update_one`, `update_many`, `find` with sort and
limit, `count_documents`, partial unique indexes; no `bulk_write`, no pipeline updates); the contract tests
prove each one on both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from donation_processor.adapters.ledger_documents import (
    INTENT_SCHEMA,
    LEGACY_IN_FLIGHT_FIELDS,
    attempt_document,
    bookkeeping_from,
    entry_from,
    error_fields,
    intent_from,
    lease_document,
    ledger_entry_from,
    missed_document,
    new_intent_document,
    query_ids,
    stop_reason,
    twin,
)
from donation_processor.adapters.mongo_connection import to_mongo_datetime
from donation_processor.charge_intent import Attempt, ChargeIntent, IntentStatus, NewIntent
from donation_processor.charge_outcome import StripeFailure
from donation_processor.charge_rules import Charged, Stopped
from donation_processor.exceptions import StoreError
from donation_processor.ports import (
    Bookkeeping,
    Claim,
    Document,
    LedgerEntry,
    ParkedLetter,
    ScheduleWrite,
)
from donation_processor.schedule import period_key

SCHEDULED = "scheduled_donations"
DONATIONS = "donations"
DUE_INDEX = "due_by_status_and_next_run"
RECORD_INDEX = "one_record_per_period"
OPEN_INTENT_INDEX = "one_open_intent_per_donation"
OPEN_DUE_INDEX = "open_intents_by_next_attempt"
PENDING_LETTER_INDEX = "pending_dead_letters"
_CLAIM_FIELDS = {"claimedBy": "", "claimExpiresAt": ""}
_DONE_WITH_PERIOD = {
    **_CLAIM_FIELDS,
    "openPeriod": "",
    "nextAttemptAt": "",
    "lastError": "",
    **dict.fromkeys(LEGACY_IN_FLIGHT_FIELDS, ""),
}


def _failed(action: str, error: PyMongoError) -> StoreError:
    return StoreError(f"{action} failed: {type(error).__name__}")


def _free_lease(now: datetime, fence: int) -> list[dict[str, Any]]:
    """No live run holds it, and no run at this fence or a newer one has had it."""
    moment = to_mongo_datetime(now)
    return [
        {"$or": [{"lease.expiresAt": None}, {"lease.expiresAt": {"$lte": moment}}]},
        {"$or": [{"lease.fence": None}, {"lease.fence": {"$lt": fence}}]},
    ]


def _leased_to(intent: ChargeIntent, claim: Claim) -> dict[str, Any]:
    return {
        "_id": intent.ref,
        "status": str(IntentStatus.PENDING),
        "lease.runId": claim.run_id,
        "lease.fence": claim.fence,
    }


class MongoDonationStore:
    def __init__(self, database: Database[Any]) -> None:
        self._scheduled: Collection[Any] = database[SCHEDULED]
        self._donations: Collection[Any] = database[DONATIONS]
        self._indexes_ready = False

    def ensure_indexes(self) -> None:
        if self._indexes_ready:
            return
        try:
            self._scheduled.create_index([("status", ASCENDING), ("nextRunAt", ASCENDING)], name=DUE_INDEX)
            self._scheduled.create_index(
                [("pendingDeadLetter.deadLetterId", ASCENDING)], name=PENDING_LETTER_INDEX, sparse=True
            )
            self._donations.create_index(
                [("scheduledDonationId", ASCENDING), ("period", ASCENDING)], name=RECORD_INDEX, unique=True
            )
            # A donation never has two periods in flight: a second open intent is refused by the database.
            # `openFor` (the donation's id) exists only while an intent is open; a sparse unique index
            # behaves the same on MongoDB and mongomock, where a partial one does not.
            self._donations.create_index(
                [("openFor", ASCENDING)], name=OPEN_INTENT_INDEX, unique=True, sparse=True
            )
            self._donations.create_index([("nextAttemptAt", ASCENDING)], name=OPEN_DUE_INDEX, sparse=True)
            self._donations.create_index(
                [("pendingDeadLetter.deadLetterId", ASCENDING)], name=PENDING_LETTER_INDEX, sparse=True
            )
        except PyMongoError as error:
            raise _failed("creating indexes", error) from error
        self._indexes_ready = True

    # -- schedules ---------------------------------------------------------------------------------------

    @staticmethod
    def _claimable(now: datetime, fence: int) -> dict[str, Any]:
        moment = to_mongo_datetime(now)
        return {
            "status": "active",
            "nextRunAt": {"$lte": moment},
            "openPeriod": None,  # a period in flight is resolved through its intent, not claimed again
            "$and": [
                {"$or": [{"claimExpiresAt": None}, {"claimExpiresAt": {"$lte": moment}}]},
                # A fence at or above ours means this run (or a newer one) already had it.
                {"$or": [{"claimFence": None}, {"claimFence": {"$lt": fence}}]},
            ],
        }

    def find_due_ids(
        self, now: datetime, fence: int, limit: int, only_ids: Sequence[str] | None
    ) -> list[Any]:
        query = self._claimable(now, fence)
        if only_ids is not None:
            query["_id"] = {"$in": query_ids(only_ids)}
        try:
            cursor = self._scheduled.find(query, {"_id": 1}).sort("nextRunAt", ASCENDING).limit(limit)
            return [document["_id"] for document in cursor]
        except PyMongoError as error:
            raise _failed("finding due donations", error) from error

    def claim(self, ids: Sequence[Any], claim: Claim, now: datetime, lease_until: datetime) -> list[Document]:
        if not ids:
            return []
        query = self._claimable(now, claim.fence)
        query["_id"] = {"$in": list(ids)}
        try:
            self._scheduled.update_many(
                query,
                {
                    "$set": {
                        "claimedBy": claim.run_id,
                        "claimFence": claim.fence,
                        "claimExpiresAt": to_mongo_datetime(lease_until),
                        "lastClaimedAt": to_mongo_datetime(now),
                    }
                },
            )
            return list(
                self._scheduled.find(
                    {"_id": {"$in": list(ids)}, "claimedBy": claim.run_id, "claimFence": claim.fence}
                )
            )
        except PyMongoError as error:
            raise _failed("claiming donations", error) from error

    def ids_with_twins(self, raw_ids: Sequence[Any]) -> set[str]:
        twins = [other for other in map(twin, raw_ids) if other is not None]
        if not twins:
            return set()
        try:
            return {
                str(document["_id"]) for document in self._scheduled.find({"_id": {"$in": twins}}, {"_id": 1})
            }
        except PyMongoError as error:
            raise _failed("looking for documents sharing an id", error) from error

    def schedules_for(self, canonical_ids: Sequence[str]) -> dict[str, Document]:
        if not canonical_ids:
            return {}
        try:
            return {
                str(document["_id"]): document
                for document in self._scheduled.find({"_id": {"$in": query_ids(canonical_ids)}})
            }
        except PyMongoError as error:
            raise _failed("reading schedules", error) from error

    def iter_due(
        self, now: datetime, only_ids: Sequence[str] | None, limit: int | None
    ) -> Iterator[Document]:
        query: dict[str, Any] = {
            "status": "active",
            "nextRunAt": {"$lte": to_mongo_datetime(now)},
            "openPeriod": None,
        }
        if only_ids is not None:
            query["_id"] = {"$in": query_ids(only_ids)}
        try:
            cursor = self._scheduled.find(query).sort("nextRunAt", ASCENDING).batch_size(100)
            if limit is not None:
                cursor = cursor.limit(limit)
            yield from cursor
        except PyMongoError as error:
            raise _failed("reading due donations", error) from error

    def _update_schedule(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> bool:
        try:
            result = self._scheduled.update_one(dict(query), dict(update))
        except PyMongoError as error:
            raise _failed("updating the scheduled donation", error) from error
        return result.matched_count == 1

    def advance_schedule(
        self,
        donation_id: Any,
        period: str,
        expected_next_run_at: datetime,
        next_run_at: datetime,
        anchor_day: int,
        now: datetime,
    ) -> ScheduleWrite:
        moved = self._update_schedule(
            {
                "_id": donation_id,
                "nextRunAt": to_mongo_datetime(expected_next_run_at),
                "lastChargedPeriod": {"$ne": period},
            },
            {
                "$set": {
                    "nextRunAt": to_mongo_datetime(next_run_at),
                    "anchorDay": anchor_day,
                    "lastChargedPeriod": period,
                    "lastChargedAt": to_mongo_datetime(now),
                },
                "$unset": _DONE_WITH_PERIOD,
            },
        )
        if moved:
            return ScheduleWrite.APPLIED
        try:
            current = self._scheduled.find_one({"_id": donation_id}, {"lastChargedPeriod": 1})
        except PyMongoError as error:
            raise _failed("reading the scheduled donation", error) from error
        if current is None:
            return ScheduleWrite.GONE
        if current.get("lastChargedPeriod") == period:
            return ScheduleWrite.ALREADY
        return ScheduleWrite.CHANGED

    def skip_paid_period(
        self, donation_id: Any, expected_next_run_at: datetime, next_run_at: datetime, anchor_day: int
    ) -> bool:
        moved = self._update_schedule(
            {"_id": donation_id, "nextRunAt": to_mongo_datetime(expected_next_run_at)},
            {
                "$set": {"nextRunAt": to_mongo_datetime(next_run_at), "anchorDay": anchor_day},
                "$unset": _DONE_WITH_PERIOD,
            },
        )
        if not moved:
            self._update_schedule({"_id": donation_id}, {"$unset": dict(_CLAIM_FIELDS)})
        return moved

    def hold_schedule(self, donation_id: Any, period: str, next_attempt_at: datetime) -> None:
        self._update_schedule(
            {"_id": donation_id},
            {
                "$set": {"openPeriod": period, "nextAttemptAt": to_mongo_datetime(next_attempt_at)},
                "$unset": {**_CLAIM_FIELDS, **dict.fromkeys(LEGACY_IN_FLIGHT_FIELDS, "")},
            },
        )

    def stop_schedule(
        self, donation_id: Any, period: str, status: str, stop_reason: str, now: datetime
    ) -> bool:
        stopped = self._update_schedule(
            {"_id": donation_id, "status": "active"},
            {
                "$set": {
                    "status": status,
                    "stopReason": stop_reason,
                    "stoppedAt": to_mongo_datetime(now),
                    "stoppedPeriod": period,
                },
                "$unset": _DONE_WITH_PERIOD,
            },
        )
        if not stopped:  # the host cancelled it meanwhile: its status stays the host's
            self._update_schedule({"_id": donation_id}, {"$unset": _DONE_WITH_PERIOD})
        return stopped

    def release_schedule(self, donation_id: Any) -> None:
        self._update_schedule(
            {"_id": donation_id}, {"$unset": {**_CLAIM_FIELDS, "openPeriod": "", "nextAttemptAt": ""}}
        )

    def release(self, donation_id: Any, claim: Claim, last_error: Mapping[str, Any] | None) -> bool:
        update: dict[str, Any] = {"$unset": dict(_CLAIM_FIELDS)}
        if last_error is not None:
            update["$set"] = {
                "lastError": {
                    key: to_mongo_datetime(value) if isinstance(value, datetime) else value
                    for key, value in last_error.items()
                }
            }
        return self._update_schedule(
            {"_id": donation_id, "claimedBy": claim.run_id, "claimFence": claim.fence}, update
        )

    def reject_invalid(
        self, donation_id: Any, claim: Claim, reason: str, letter: Mapping[str, Any], now: datetime
    ) -> bool:
        return self._update_schedule(
            {"_id": donation_id, "claimedBy": claim.run_id, "claimFence": claim.fence},
            {
                "$set": {
                    "status": "invalid",
                    "invalidReason": reason,
                    "stopReason": "invalid_document",
                    "stoppedAt": to_mongo_datetime(now),
                    "pendingDeadLetter": dict(letter),
                },
                "$unset": dict(_CLAIM_FIELDS),
            },
        )

    def count_overdue(self, due_before: datetime) -> int:
        moment = to_mongo_datetime(due_before)
        try:
            schedules = self._scheduled.count_documents(
                {"status": "active", "nextRunAt": {"$lt": moment}, "openPeriod": None}
            )
            intents = self._donations.count_documents({"nextAttemptAt": {"$lt": moment}})
        except PyMongoError as error:
            raise _failed("counting overdue donations", error) from error
        return schedules + intents

    # -- charge intents ----------------------------------------------------------------------------------

    def _insert_unordered(self, documents: Sequence[Mapping[str, Any]], action: str) -> set[int]:
        """Insert every document in one round trip; the positions a unique index refused (duplicates)."""
        try:
            self._donations.insert_many(list(documents), ordered=False)
        except BulkWriteError as error:
            write_errors = error.details.get("writeErrors", [])
            if any(entry.get("code") != 11000 for entry in write_errors):
                raise _failed(action, error) from error
            return {int(entry["index"]) for entry in write_errors}
        except PyMongoError as error:
            raise _failed(action, error) from error
        return set()

    def open_intents(
        self, intents: Sequence[NewIntent], claim: Claim, now: datetime, lease_until: datetime
    ) -> list[tuple[ChargeIntent, bool]]:
        if not intents:
            return []
        documents = [new_intent_document(intent, claim, now, lease_until) for intent in intents]
        refused = self._insert_unordered(documents, "writing charge intents")
        existing = self._existing_for([intents[index] for index in sorted(refused)])
        opened: list[tuple[ChargeIntent, bool]] = []
        for index, document in enumerate(documents):
            if index in refused:
                found = existing.get(intents[index].scheduled_donation_id)
                if found is None:
                    raise StoreError("a charge intent was refused as a duplicate but none was found")
                opened.append((found, False))
            else:
                opened.append((intent_from(document), True))
        return opened

    def _existing_for(self, intents: Sequence[NewIntent]) -> dict[str, ChargeIntent]:
        """The entry that blocked each refused intent: the donation's open intent, else the period's entry."""
        if not intents:
            return {}
        ids = [intent.scheduled_donation_id for intent in intents]
        wanted = {intent.scheduled_donation_id: intent.period for intent in intents}
        try:
            found = list(
                self._donations.find(
                    {
                        "scheduledDonationId": {"$in": ids},
                        "$or": [{"openFor": {"$in": ids}}, {"period": {"$in": list(set(wanted.values()))}}],
                    }
                )
            )
        except PyMongoError as error:
            raise _failed("reading charge intents", error) from error
        chosen: dict[str, ChargeIntent] = {}
        for document in found:
            donation_id = str(document["scheduledDonationId"])
            if "openFor" in document or (
                document.get("period") == wanted.get(donation_id) and donation_id not in chosen
            ):
                chosen[donation_id] = entry_from(document)
        return chosen

    def adopt_legacy(
        self, intent: NewIntent, legacy_raw_id: Any, claim: Claim, now: datetime, lease_until: datetime
    ) -> ChargeIntent | None:
        """Turn what an earlier version left for this period into an intent (see README, migration).

        Earlier versions wrote a `donations` record per period keyed by the raw id; a succeeded one means the
        period is paid (only the schedule is behind), a failed one is a period still in dunning. Returns
        None when there is no such record: the caller opens the intent as usual.
        """
        try:
            record = self._donations.find_one(
                {
                    "scheduledDonationId": {"$in": [legacy_raw_id, intent.scheduled_donation_id]},
                    "period": intent.period,
                    "schema": None,
                }
            )
            if record is None:
                return None
            fields = new_intent_document(intent, claim, now, lease_until)
            fields.pop("_id")
            fields["createdAt"] = record.get("createdAt") or fields["createdAt"]
            if record.get("status") == str(IntentStatus.SUCCEEDED):
                for kept in ("status", "amount", "currency", "paymentIntentId"):
                    if kept in record:
                        fields[kept] = record[kept]
                fields["resolvedAt"] = to_mongo_datetime(now)
            self._donations.update_one({"_id": record["_id"], "schema": None}, {"$set": fields})
            adopted = self._donations.find_one({"_id": record["_id"]})
        except DuplicateKeyError:
            return None
        except PyMongoError as error:
            raise _failed("adopting an earlier version's record", error) from error
        return None if adopted is None else intent_from(adopted)

    def claim_intents(
        self, now: datetime, claim: Claim, limit: int, lease_until: datetime, only_ids: Sequence[str] | None
    ) -> list[ChargeIntent]:
        query: dict[str, Any] = {
            "openFor": {"$exists": True},
            "nextAttemptAt": {"$lte": to_mongo_datetime(now)},
            "$and": _free_lease(now, claim.fence),
        }
        if only_ids is not None:
            query["scheduledDonationId"] = {"$in": list(only_ids)}
        try:
            ids = [
                document["_id"]
                for document in self._donations.find(query, {"_id": 1})
                .sort("nextAttemptAt", ASCENDING)
                .limit(limit)
            ]
            if not ids:
                return []
            self._donations.update_many(
                {**query, "_id": {"$in": ids}}, {"$set": {"lease": lease_document(claim, lease_until)}}
            )
            leased = self._donations.find(
                {"_id": {"$in": ids}, "lease.runId": claim.run_id, "lease.fence": claim.fence}
            )
            return [intent_from(document) for document in leased]
        except PyMongoError as error:
            raise _failed("claiming charge intents", error) from error

    def take_intent(
        self, intent: ChargeIntent, claim: Claim, now: datetime, lease_until: datetime
    ) -> ChargeIntent | None:
        query = {
            "_id": intent.ref,
            "openFor": {"$exists": True},
            "$and": _free_lease(now, claim.fence),
        }
        return self._lease_one(
            query, {"$set": {"lease": lease_document(claim, lease_until)}}, "leasing a charge intent"
        )

    def reopen_intent(
        self, intent: ChargeIntent, claim: Claim, now: datetime, lease_until: datetime
    ) -> ChargeIntent | None:
        moment = to_mongo_datetime(now)
        query = {
            "_id": intent.ref,
            "schema": INTENT_SCHEMA,
            "openFor": None,
            "status": {"$in": [str(IntentStatus.FAILED), str(IntentStatus.CANCELED)]},
        }
        update = {
            "$set": {
                "status": str(IntentStatus.PENDING),
                "openFor": intent.scheduled_donation_id,
                "attempts": 0,
                "nextAttemptAt": moment,
                "lease": lease_document(claim, lease_until),
                "reopenedAt": moment,
                "updatedAt": moment,
            },
            "$unset": {"resolvedAt": "", "stopReason": ""},
        }
        return self._lease_one(query, update, "reopening a charge intent")

    def _lease_one(
        self, query: Mapping[str, Any], update: Mapping[str, Any], action: str
    ) -> ChargeIntent | None:
        try:
            result = self._donations.update_one(dict(query), dict(update))
            if result.matched_count != 1:
                return None
            document = self._donations.find_one({"_id": query["_id"]})
        except DuplicateKeyError:
            return None  # another period of this donation is open: it goes first
        except PyMongoError as error:
            raise _failed(action, error) from error
        return None if document is None else intent_from(document)

    def _update_intent(self, query: Mapping[str, Any], update: Mapping[str, Any], action: str) -> bool:
        try:
            result = self._donations.update_one(dict(query), dict(update))
        except PyMongoError as error:
            raise _failed(action, error) from error
        return result.matched_count == 1

    def start_attempt(self, intent: ChargeIntent, claim: Claim, attempt: Attempt) -> bool:
        return self._update_intent(
            {**_leased_to(intent, claim), "nextAttemptNumber": attempt.number},
            {
                "$push": {"attemptLog": attempt_document(attempt)},
                "$set": {
                    "nextAttemptNumber": attempt.number + 1,
                    "updatedAt": to_mongo_datetime(attempt.sent_at),
                    **({} if attempt.creates else {"paymentIntentId": intent.payment_intent_id}),
                },
            },
            "writing an attempt",
        )

    def record_success(self, intent: ChargeIntent, claim: Claim, charged: Charged, now: datetime) -> bool:
        moment = to_mongo_datetime(now)
        return self._update_intent(
            _leased_to(intent, claim),
            {
                "$set": {
                    "status": str(IntentStatus.SUCCEEDED),
                    "paymentIntentId": charged.payment_intent_id,
                    "amount": charged.amount,
                    "currency": charged.currency,
                    "attemptLog": [attempt_document(attempt) for attempt in intent.attempts],
                    "nextAttemptAt": moment,  # found again if the schedule is not moved on in this run
                    "resolvedAt": moment,
                    "updatedAt": moment,
                    "runId": claim.run_id,
                }
            },
            "recording a charge",
        )

    def record_pending(
        self,
        intent: ChargeIntent,
        claim: Claim,
        next_attempt_at: datetime,
        failure: StripeFailure | None,
        now: datetime,
    ) -> bool:
        fields: dict[str, Any] = {
            "attemptLog": [attempt_document(attempt) for attempt in intent.attempts],
            "attempts": intent.dunning_attempts,
            "nextAttemptAt": to_mongo_datetime(next_attempt_at),
            "updatedAt": to_mongo_datetime(now),
            "runId": claim.run_id,
        }
        if intent.payment_intent_id is not None:
            fields["paymentIntentId"] = intent.payment_intent_id
        if failure is not None:
            fields["error"] = error_fields(failure, now, claim.run_id)
        return self._update_intent(
            _leased_to(intent, claim),
            {"$set": fields, "$unset": {"lease.runId": "", "lease.expiresAt": ""}},
            "recording a pending charge",
        )

    def record_stop(
        self,
        intent: ChargeIntent,
        claim: Claim,
        stopped: Stopped,
        letter: Mapping[str, Any] | None,
        now: datetime,
    ) -> bool:
        moment = to_mongo_datetime(now)
        fields: dict[str, Any] = {
            "status": str(IntentStatus.CANCELED if stopped.canceled else IntentStatus.FAILED),
            "stopReason": stop_reason(stopped),
            "attemptLog": [attempt_document(attempt) for attempt in intent.attempts],
            "attempts": stopped.declines,
            "nextAttemptAt": moment,
            "resolvedAt": moment,
            "updatedAt": moment,
            "runId": claim.run_id,
        }
        if stopped.payment_intent_id is not None:
            fields["paymentIntentId"] = stopped.payment_intent_id
        if stopped.failure is not None:
            fields["error"] = error_fields(stopped.failure, now, claim.run_id)
        if letter is not None:
            fields["pendingDeadLetter"] = dict(letter)
        return self._update_intent(_leased_to(intent, claim), {"$set": fields}, "recording a stopped charge")

    def close_intents(self, refs: Sequence[Any]) -> None:
        if not refs:
            return
        try:
            self._donations.update_many(
                {"_id": {"$in": list(refs)}, "status": {"$ne": str(IntentStatus.PENDING)}},
                {"$unset": {"openFor": "", "nextAttemptAt": "", "lease.runId": "", "lease.expiresAt": ""}},
            )
        except PyMongoError as error:
            raise _failed("closing charge intents", error) from error

    # -- dead letters ------------------------------------------------------------------------------------

    def pending_dead_letters(self, limit: int) -> list[ParkedLetter]:
        query = {"pendingDeadLetter.deadLetterId": {"$exists": True}}
        try:
            parked = [
                ParkedLetter(document["_id"], document["pendingDeadLetter"], in_ledger=True)
                for document in self._donations.find(query, {"pendingDeadLetter": 1}).limit(limit)
            ]
            room = limit - len(parked)
            if room > 0:
                parked.extend(
                    ParkedLetter(document["_id"], document["pendingDeadLetter"], in_ledger=False)
                    for document in self._scheduled.find(query, {"pendingDeadLetter": 1}).limit(room)
                )
        except PyMongoError as error:
            raise _failed("reading parked dead letters", error) from error
        return parked

    def clear_dead_letter(self, parked: ParkedLetter) -> None:
        collection = self._donations if parked.in_ledger else self._scheduled
        try:
            collection.update_one(
                {"_id": parked.owner, "pendingDeadLetter.deadLetterId": parked.letter["deadLetterId"]},
                {"$unset": {"pendingDeadLetter": ""}},
            )
        except PyMongoError as error:
            raise _failed("clearing a dead letter", error) from error

    # -- documents the due query cannot see ---------------------------------------------------------------

    @staticmethod
    def _unseen_queries(known_statuses: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        return (
            {"status": "active", "nextRunAt": {"$not": {"$type": "date"}}},
            {"status": {"$nin": list(known_statuses)}},
        )

    def count_unseen(self, known_statuses: Sequence[str]) -> tuple[int, int]:
        no_date, unknown = self._unseen_queries(known_statuses)
        try:
            return self._scheduled.count_documents(no_date), self._scheduled.count_documents(unknown)
        except PyMongoError as error:
            raise _failed("counting documents the due query cannot see", error) from error

    def unseen(self, known_statuses: Sequence[str], limit: int) -> list[tuple[str, str]]:
        no_date, unknown = self._unseen_queries(known_statuses)
        found: list[tuple[str, str]] = []
        try:
            for query, why in ((no_date, "nextRunAt missing or not a date"), (unknown, "unknown status")):
                for document in self._scheduled.find(query, {"_id": 1, "status": 1}).limit(
                    limit - len(found)
                ):
                    detail = why if query is no_date else f"{why} {str(document.get('status'))[:40]!r}"
                    found.append((str(document["_id"])[:256], detail))
                if len(found) >= limit:
                    break
        except PyMongoError as error:
            raise _failed("listing documents the due query cannot see", error) from error
        return found

    # -- fencing (the run lock) ---------------------------------------------------------------------------

    _fence_indexes_ready = False
    _HIGHEST_FIRST = -1  # pymongo.DESCENDING

    def ensure_fence_indexes(self) -> None:
        """Descending indexes on the fences, so highest_fence reads one entry of each."""
        if self._fence_indexes_ready:
            return
        try:
            self._scheduled.create_index([("claimFence", self._HIGHEST_FIRST)], name="claims_by_fence")
            self._donations.create_index([("lease.fence", self._HIGHEST_FIRST)], name="leases_by_fence")
        except PyMongoError as error:
            raise _failed("creating the fence indexes", error) from error
        self._fence_indexes_ready = True

    def highest_fence(self) -> int:
        self.ensure_fence_indexes()
        highest = 0
        try:
            for collection, path in ((self._scheduled, "claimFence"), (self._donations, "lease.fence")):
                # Numbers only: MongoDB sorts other types above them.
                for document in (
                    collection.find({path: {"$type": "number"}}, {path: 1})
                    .sort(path, self._HIGHEST_FIRST)
                    .limit(1)
                ):
                    value: Any = document
                    for part in path.split("."):
                        value = value[part]
                    highest = max(highest, int(value))
        except PyMongoError as error:
            raise _failed("reading the highest fence", error) from error
        return highest

    # -- missed periods ----------------------------------------------------------------------------------

    def record_missed_periods(self, entries: Sequence[NewIntent], claim: Claim, now: datetime) -> list[bool]:
        if not entries:
            return []
        documents = [missed_document(entry, claim, now) for entry in entries]
        refused = self._insert_unordered(documents, "recording missed periods")
        return [index not in refused for index in range(len(documents))]

    # -- operator actions (the CLI) -------------------------------------------------------------------------

    def find_schedule(self, donation_id: str) -> Document | None:
        """The schedule a dead letter names: by ObjectId when the id is 24 hex digits and such a document
        exists, else by the id as text."""
        found: Document | None = None
        try:
            if len(donation_id) == 24 and ObjectId.is_valid(donation_id):
                found = self._scheduled.find_one({"_id": ObjectId(donation_id)})
            if found is None:
                found = self._scheduled.find_one({"_id": donation_id})
        except PyMongoError as error:
            raise _failed("reading the scheduled donation", error) from error
        return found

    def period_entry(self, donation_id: str, period: str) -> ChargeIntent | None:
        """The ledger entry of (canonical id, period): its charge intent, else the record an earlier version
        wrote for the period (read as a closed entry, succeeded or failed, `legacy_record`), else None."""
        try:
            found = self._donations.find_one(
                {"scheduledDonationId": donation_id, "period": period, "schema": INTENT_SCHEMA}
            )
            if found is None:
                found = self._donations.find_one(
                    {
                        "scheduledDonationId": {"$in": query_ids([donation_id])},
                        "period": period,
                        "schema": None,
                    }
                )
        except PyMongoError as error:
            raise _failed("reading the period's charge intent", error) from error
        return None if found is None else entry_from(found)

    @staticmethod
    def schedule_status(document: Document) -> str | None:
        """The schedule's status as the host (or the engine, when it stopped it) set it."""
        value = document.get("status")
        return value if isinstance(value, str) else None

    @staticmethod
    def schedule_periods(document: Document) -> list[str]:
        """The periods the engine works on for this schedule: its open period, a period an earlier version
        left in flight on it, and the period its nextRunAt names."""
        periods: list[str] = []
        open_period = document.get("openPeriod")
        if isinstance(open_period, str):
            periods.append(open_period)
        for name in ("periodStart", "nextRunAt"):
            value = document.get(name)
            if isinstance(value, datetime):
                periods.append(period_key(value))
        return periods

    @staticmethod
    def stopped_period(document: Document) -> str | None:
        """The period whose stop stopped this schedule (None if the engine that stopped it did not say)."""
        value = document.get("stoppedPeriod")
        return value if isinstance(value, str) else None

    def redrive_intent(self, intent: ChargeIntent, now: datetime) -> bool:
        """Reopen a stopped period for the next run: failed or canceled -> pending, due now, a fresh dunning
        budget, no lease. Conditional on the entry as read (closed, same status, no attempt since); False if
        it changed meanwhile, or if another period of the donation is open.

        Its attempts and PaymentIntent stay on it: the next attempt is numbered past every key already sent
        for the period, and confirms the period's PaymentIntent (or creates it, if none was ever created)."""
        if intent.legacy_record or intent.status not in (IntentStatus.FAILED, IntentStatus.CANCELED):
            return False
        moment = to_mongo_datetime(now)
        query = {
            "_id": intent.ref,
            "schema": INTENT_SCHEMA,
            "status": str(intent.status),
            "openFor": None,
            "nextAttemptNumber": intent.next_attempt_number,
        }
        update = {
            "$set": {
                "status": str(IntentStatus.PENDING),
                "openFor": intent.scheduled_donation_id,
                "attempts": 0,
                "nextAttemptAt": moment,
                "reopenedAt": moment,
                "redrivenAt": moment,
                "updatedAt": moment,
            },
            "$unset": {
                "resolvedAt": "",
                "stopReason": "",
                "pendingDeadLetter": "",
                "lease.runId": "",
                "lease.expiresAt": "",
            },
        }
        try:
            result = self._donations.update_one(query, update)
        except DuplicateKeyError:
            return False  # another period of this donation is open
        except PyMongoError as error:
            raise _failed("reopening a charge intent", error) from error
        return result.matched_count == 1

    @staticmethod
    def _redrive_changes(
        document: Document, now: datetime, open_period: str | None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        moment = to_mongo_datetime(now)
        fields: dict[str, Any] = {"status": "active", "lastRedrivenAt": moment}
        cleared = [
            "stopReason",
            "stoppedAt",
            "stoppedPeriod",
            "invalidReason",
            "pendingDeadLetter",
            "lastError",
            *_CLAIM_FIELDS,
        ]
        if open_period is not None:
            # The period's intent was reopened first: the schedule is held for it, as in dunning.
            fields.update(openPeriod=open_period, nextAttemptAt=moment)
            cleared.extend(LEGACY_IN_FLIGHT_FIELDS)  # the intent holds the period now
        else:
            cleared.extend(("openPeriod", "nextAttemptAt"))
            if any(name in document for name in LEGACY_IN_FLIGHT_FIELDS if name != "attempts"):
                # A period an earlier version left in flight, which the engine adopts: it numbers its keys
                # past periodAttempts (which defaults to attempts), so pin that before the budget goes to 0.
                fields["periodAttempts"] = document.get("periodAttempts", document.get("attempts", 0))
                fields["attempts"] = 0
        return fields, dict.fromkeys(cleared, "")

    @classmethod
    def as_redriven(cls, document: Document, now: datetime, open_period: str | None = None) -> dict[str, Any]:
        """The schedule document as `redrive_schedule` would leave it, to validate before writing."""
        fields, cleared = cls._redrive_changes(document, now, open_period)
        after = {name: value for name, value in document.items() if name not in cleared}
        after.update(fields)
        return after

    def redrive_schedule(self, document: Document, now: datetime, open_period: str | None = None) -> bool:
        """Put a stopped schedule back to active, conditional on its status and stoppedAt as read.

        With open_period its period's intent was reopened first (`redrive_intent`) and the schedule is held
        for it; without, the engine opens (or adopts) the period when the schedule is due."""
        fields, cleared = self._redrive_changes(document, now, open_period)
        return self._update_schedule(
            {
                "_id": document["_id"],
                "status": document.get("status"),
                "stoppedAt": document.get("stoppedAt"),
            },
            {"$set": fields, "$unset": cleared, "$inc": {"redriveCount": 1}},
        )

    def operator_counts(self, now: datetime, overdue_before: datetime) -> dict[str, int]:
        """What `donations status` counts: schedules by state, and open charges (intents pending in dunning,
        awaiting a recheck, or in flight); dead letters parked on either."""
        moment = to_mongo_datetime(now)
        open_charge: dict[str, Any] = {"openFor": {"$exists": True}, "status": str(IntentStatus.PENDING)}
        parked = {"pendingDeadLetter.deadLetterId": {"$exists": True}}
        counted: dict[str, tuple[Collection[Any], dict[str, Any]]] = {
            "dueNow": (
                self._scheduled,
                {"status": "active", "nextRunAt": {"$lte": moment}, "openPeriod": None},
            ),
            "openCharges": (self._donations, open_charge),
            "openChargesDue": (self._donations, {**open_charge, "nextAttemptAt": {"$lte": moment}}),
            "pastDue": (self._donations, {**open_charge, "attempts": {"$gte": 1}}),
            "invalid": (self._scheduled, {"status": "invalid"}),
            "stopped": (self._scheduled, {"status": "payment_failed"}),
            "claimedNow": (self._scheduled, {"claimExpiresAt": {"$gt": moment}}),
            "active": (self._scheduled, {"status": "active"}),
        }
        try:
            counts = {name: where.count_documents(query) for name, (where, query) in counted.items()}
            counts["parkedDeadLetters"] = sum(
                where.count_documents(parked) for where in (self._scheduled, self._donations)
            )
        except PyMongoError as error:
            raise _failed("counting donations", error) from error
        counts["overdue"] = self.count_overdue(overdue_before)
        return counts

    def ledger_entries(self, donation_id: str) -> list[LedgerEntry]:
        """Every ledger entry of one scheduled donation (canonical id), oldest period first. Reads only."""
        try:
            found = self._donations.find({"scheduledDonationId": {"$in": query_ids([donation_id])}})
            return [ledger_entry_from(document) for document in found.sort("period", ASCENDING)]
        except PyMongoError as error:
            raise _failed("reading the donation's charge intents", error) from error

    def due_intents(self, now: datetime, limit: int) -> list[ChargeIntent]:
        """Open intents whose next attempt is due, leased or not, soonest first. Reads only."""
        query = {"openFor": {"$exists": True}, "nextAttemptAt": {"$lte": to_mongo_datetime(now)}}
        try:
            found = self._donations.find(query).sort("nextAttemptAt", ASCENDING).limit(limit)
            return [intent_from(document) for document in found]
        except PyMongoError as error:
            raise _failed("reading due charge intents", error) from error

    @staticmethod
    def bookkeeping(document: Document) -> Bookkeeping:
        """The engine's own fields on a schedule document."""
        return bookkeeping_from(document)

    def record_forced_redrive(self, entry: ChargeIntent, reason: str, now: datetime) -> bool:
        """Write on the period's ledger entry that an operator redrove its hard decline on the payment method
        it was declined on, and why (`forcedRedrive`: the latest such redrive). False if the entry is gone."""
        try:
            result = self._donations.update_one(
                {"_id": entry.ref},
                {"$set": {"forcedRedrive": {"reason": reason, "at": to_mongo_datetime(now)}}},
            )
        except PyMongoError as error:
            raise _failed("recording a forced redrive", error) from error
        return result.matched_count == 1
