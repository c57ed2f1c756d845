"""MongoDB adapter: claim due scheduled donations with leases and write outcomes conditionally on the claim.

Only operations that both pymongo against a real server and mongomock honour are used (no bulk_write,
no aggregation-pipeline updates); the contract tests prove each one on both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from donation_processor.adapters.mongo_connection import to_mongo_datetime
from donation_processor.exceptions import StoreError
from donation_processor.ports import Claim, Document

SCHEDULED = "scheduled_donations"
DONATIONS = "donations"
DUE_INDEX = "due_by_status_and_next_run"
RECORD_INDEX = "one_record_per_period"
PENDING_LETTER_INDEX = "pending_dead_letters"
_CLAIM_FIELDS = {"claimedBy": "", "claimExpiresAt": ""}


def _query_ids(ids: Sequence[str]) -> list[Any]:
    """Ids arrive as text; a 24-hex id may be stored as an ObjectId or as a string, so ask for both."""
    values: list[Any] = []
    for value in ids:
        values.append(value)
        if ObjectId.is_valid(value):
            values.append(ObjectId(value))
    return values


class MongoDonationStore:
    def __init__(self, database: Database[Any]) -> None:
        self._scheduled = database[SCHEDULED]
        self._donations = database[DONATIONS]
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
        except PyMongoError as error:
            raise StoreError(f"creating indexes failed: {type(error).__name__}") from error
        self._indexes_ready = True

    @staticmethod
    def _claimable(now: datetime, fence: int) -> dict[str, Any]:
        moment = to_mongo_datetime(now)
        return {
            "status": "active",
            "nextRunAt": {"$lte": moment},
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
            query["_id"] = {"$in": _query_ids(only_ids)}
        try:
            cursor = self._scheduled.find(query, {"_id": 1}).sort("nextRunAt", ASCENDING).limit(limit)
            return [document["_id"] for document in cursor]
        except PyMongoError as error:
            raise StoreError(f"finding due donations failed: {type(error).__name__}") from error

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
                    },
                    # When this period was first tried: past Stripe's idempotency window, a retry must look
                    # the PaymentIntent up instead of trusting the key to replay.
                    "$min": {"periodFirstAttemptAt": to_mongo_datetime(now)},
                },
            )
            return list(
                self._scheduled.find(
                    {"_id": {"$in": list(ids)}, "claimedBy": claim.run_id, "claimFence": claim.fence}
                )
            )
        except PyMongoError as error:
            raise StoreError(f"claiming donations failed: {type(error).__name__}") from error

    def iter_due(
        self, now: datetime, only_ids: Sequence[str] | None, limit: int | None
    ) -> Iterator[Document]:
        query: dict[str, Any] = {"status": "active", "nextRunAt": {"$lte": to_mongo_datetime(now)}}
        if only_ids is not None:
            query["_id"] = {"$in": _query_ids(only_ids)}
        try:
            cursor = self._scheduled.find(query).sort("nextRunAt", ASCENDING).batch_size(100)
            if limit is not None:
                cursor = cursor.limit(limit)
            yield from cursor
        except PyMongoError as error:
            raise StoreError(f"reading due donations failed: {type(error).__name__}") from error

    def record_charge(self, record: Mapping[str, Any]) -> None:
        key = {"scheduledDonationId": record["scheduledDonationId"], "period": record["period"]}
        fields = _mongo_values({name: value for name, value in record.items() if name not in key})
        created_at = fields.pop("createdAt")
        if record["status"] != "succeeded":
            # Never downgrade a success: the filter skips it, and the upsert then hits the unique index.
            key = {**key, "status": {"$ne": "succeeded"}}
        try:
            self._donations.update_one(
                key,
                {"$set": fields, "$setOnInsert": {"createdAt": created_at}},
                upsert=True,
            )
        except DuplicateKeyError:
            return
        except PyMongoError as error:
            raise StoreError(f"recording the charge failed: {type(error).__name__}") from error

    def _update_claimed(self, donation_id: Any, claim: Claim, update: Mapping[str, Any]) -> bool:
        try:
            result = self._scheduled.update_one(
                {"_id": donation_id, "claimedBy": claim.run_id, "claimFence": claim.fence}, dict(update)
            )
        except PyMongoError as error:
            raise StoreError(f"updating the scheduled donation failed: {type(error).__name__}") from error
        return result.matched_count == 1

    def complete_period(
        self, donation_id: Any, claim: Claim, next_run_at: datetime, anchor_day: int, now: datetime
    ) -> bool:
        return self._update_claimed(
            donation_id,
            claim,
            {
                "$set": {
                    "nextRunAt": to_mongo_datetime(next_run_at),
                    "anchorDay": anchor_day,
                    "attempts": 0,
                    "lastChargedAt": to_mongo_datetime(now),
                },
                "$unset": {
                    **_CLAIM_FIELDS,
                    "periodStart": "",
                    "periodFirstAttemptAt": "",
                    "periodAttempts": "",
                    "paymentIntentId": "",
                    "lastError": "",
                },
            },
        )

    def schedule_retry(self, donation_id: Any, claim: Claim, changes: Mapping[str, Any]) -> bool:
        return self._update_claimed(
            donation_id, claim, {"$set": _mongo_values(changes), "$unset": dict(_CLAIM_FIELDS)}
        )

    def stop(
        self, donation_id: Any, claim: Claim, changes: Mapping[str, Any], letter: Mapping[str, Any]
    ) -> bool:
        return self._update_claimed(
            donation_id,
            claim,
            {
                "$set": {**_mongo_values(changes), "pendingDeadLetter": dict(letter)},
                "$unset": dict(_CLAIM_FIELDS),
            },
        )

    def release(self, donation_id: Any, claim: Claim, last_error: Mapping[str, Any] | None) -> bool:
        update: dict[str, Any] = {"$unset": dict(_CLAIM_FIELDS)}
        if last_error is not None:
            update["$set"] = {"lastError": _mongo_values(last_error)}
        return self._update_claimed(donation_id, claim, update)

    def count_overdue(self, due_before: datetime) -> int:
        try:
            return self._scheduled.count_documents(
                {"status": "active", "nextRunAt": {"$lt": to_mongo_datetime(due_before)}}
            )
        except PyMongoError as error:
            raise StoreError(f"counting overdue donations failed: {type(error).__name__}") from error

    def pending_dead_letters(self, limit: int) -> list[Document]:
        try:
            cursor = self._scheduled.find(
                {"pendingDeadLetter.deadLetterId": {"$exists": True}}, {"pendingDeadLetter": 1}
            ).limit(limit)
            return list(cursor)
        except PyMongoError as error:
            raise StoreError(f"reading parked dead letters failed: {type(error).__name__}") from error

    def clear_dead_letter(self, donation_id: Any, letter_id: str) -> None:
        try:
            self._scheduled.update_one(
                {"_id": donation_id, "pendingDeadLetter.deadLetterId": letter_id},
                {"$unset": {"pendingDeadLetter": ""}},
            )
        except PyMongoError as error:
            raise StoreError(f"clearing a dead letter failed: {type(error).__name__}") from error


def _mongo_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: to_mongo_datetime(value) if isinstance(value, datetime) else value
        for key, value in values.items()
    }
