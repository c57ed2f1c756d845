"""MongoDonationStore contract: every promise the engine relies on, proven on mongomock and on a real server.

The real server runs only when MONGODB_TEST_URI is set (e.g. mongodb://localhost:27017); otherwise those
cases are skipped, never silently passed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import mongomock
import pymongo
import pytest
from bson import ObjectId
from pymongo import UpdateOne
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from donation_processor.adapters.donation_store import (
    DONATIONS,
    DUE_INDEX,
    RECORD_INDEX,
    SCHEDULED,
    MongoDonationStore,
)
from donation_processor.ports import Claim

pytestmark = pytest.mark.contract

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=15)
RUN_A = Claim("run-a", 5)
MONGODB_TEST_URI = os.environ.get("MONGODB_TEST_URI", "").strip()


@pytest.fixture(
    params=[
        "mongomock",
        pytest.param(
            "mongodb",
            marks=pytest.mark.skipif(
                not MONGODB_TEST_URI, reason="real MongoDB backend: set MONGODB_TEST_URI to run it"
            ),
        ),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def database(backend: str) -> Iterator[Database[Any]]:
    name = f"contract_{uuid.uuid4().hex[:16]}"
    if backend == "mongomock":
        yield mongomock.MongoClient()[name]
        return
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(MONGODB_TEST_URI, serverSelectionTimeoutMS=5000)
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


@pytest.fixture
def store(database: Database[Any]) -> MongoDonationStore:
    store = MongoDonationStore(database)
    store.ensure_indexes()
    return store


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _add(database: Database[Any], donation_id: Any, next_run_at: datetime, **fields: Any) -> Any:
    """Insert a scheduled donation the way the app's documents look (naive UTC datetimes)."""
    document = {"_id": donation_id, "status": "active", "nextRunAt": _naive(next_run_at), **fields}
    database[SCHEDULED].insert_one(document)
    return donation_id


def _get(database: Database[Any], donation_id: Any) -> dict[str, Any]:
    document = database[SCHEDULED].find_one({"_id": donation_id})
    assert document is not None
    return dict(document)


def _record(status: str, period: str = "2026-03-01", **fields: Any) -> dict[str, Any]:
    return {
        "scheduledDonationId": "don-1",
        "period": period,
        "status": status,
        "paymentIntentId": "pi_1",
        "amount": 2500,
        "currency": "usd",
        "attempts": 1,
        "createdAt": NOW,
        "updatedAt": NOW,
        **fields,
    }


def _claimed(database: Database[Any], donation_id: Any, claim: Claim = RUN_A, **fields: Any) -> Any:
    """A due donation currently claimed by `claim` with a live lease."""
    return _add(
        database,
        donation_id,
        NOW - timedelta(days=1),
        claimedBy=claim.run_id,
        claimFence=claim.fence,
        claimExpiresAt=_naive(NOW + LEASE),
        **fields,
    )


# --- indexes -------------------------------------------------------------------------------------------


def test_ensure_indexes_creates_the_due_index_and_the_unique_record_index(database: Database[Any]) -> None:
    # GIVEN an empty database
    store = MongoDonationStore(database)

    # WHEN the indexes are ensured
    store.ensure_indexes()

    # THEN the due index is (status, nextRunAt) and the record index is unique on (id, period)
    scheduled = database[SCHEDULED].index_information()
    donations = database[DONATIONS].index_information()
    assert list(scheduled[DUE_INDEX]["key"]) == [("status", 1), ("nextRunAt", 1)]
    assert RECORD_INDEX == "one_record_per_period"
    assert list(donations[RECORD_INDEX]["key"]) == [("scheduledDonationId", 1), ("period", 1)]
    assert donations[RECORD_INDEX].get("unique") is True


def test_ensuring_indexes_twice_even_from_a_new_store_is_harmless(database: Database[Any]) -> None:
    # GIVEN indexes ensured once
    MongoDonationStore(database).ensure_indexes()
    before = (database[SCHEDULED].index_information(), database[DONATIONS].index_information())

    # WHEN they are ensured again by the same kind of store in a new container
    second = MongoDonationStore(database)
    second.ensure_indexes()
    second.ensure_indexes()

    # THEN nothing fails and the indexes are unchanged
    after = (database[SCHEDULED].index_information(), database[DONATIONS].index_information())
    assert after == before


# --- find_due_ids --------------------------------------------------------------------------------------


def test_find_due_ids_returns_only_active_due_donations_oldest_first(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN active donations due 2 days ago, 1 hour ago, exactly now and in an hour, and inactive due ones
    _add(database, "recent", NOW - timedelta(hours=1))
    _add(database, "oldest", NOW - timedelta(days=2))
    _add(database, "exactly-now", NOW)
    _add(database, "future", NOW + timedelta(hours=1))
    _add(database, "paused", NOW - timedelta(days=3), status="paused")
    _add(database, "stopped", NOW - timedelta(days=3), status="stopped")

    # WHEN the due ids are asked for
    ids = store.find_due_ids(NOW, fence=1, limit=100, only_ids=None)

    # THEN only active donations with nextRunAt <= now come back, oldest first
    assert ids == ["oldest", "recent", "exactly-now"]


def test_find_due_ids_honours_the_limit(database: Database[Any], store: MongoDonationStore) -> None:
    # GIVEN five due donations
    for hours in range(5, 0, -1):
        _add(database, f"due-{hours}", NOW - timedelta(hours=hours))

    # WHEN two are asked for
    ids = store.find_due_ids(NOW, fence=1, limit=2, only_ids=None)

    # THEN the two oldest come back
    assert ids == ["due-5", "due-4"]


def test_find_due_ids_with_only_ids_matches_object_id_and_string_ids_given_as_text(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN one donation keyed by an ObjectId, one by a 24-hex string, one legacy id, and one not asked for
    object_id = ObjectId("65f1c0ffee0000000000a001")
    _add(database, object_id, NOW - timedelta(hours=3))
    _add(database, "65f1c0ffee0000000000a002", NOW - timedelta(hours=2))
    _add(database, "legacy-7", NOW - timedelta(hours=1))
    _add(database, "not-asked", NOW - timedelta(days=1))

    # WHEN due ids are asked for with the three ids as text
    ids = store.find_due_ids(
        NOW, fence=1, limit=10, only_ids=["65f1c0ffee0000000000a001", "65f1c0ffee0000000000a002", "legacy-7"]
    )

    # THEN each is found with its stored type, and the other is left out
    assert ids == [object_id, "65f1c0ffee0000000000a002", "legacy-7"]


def test_find_due_ids_skips_live_leases_and_fences_at_or_above_ours(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN due donations: free, with a live lease, with an expired lease, and fenced at/above/below ours
    due = NOW - timedelta(days=1)
    _add(database, "free", due)
    _add(database, "live-lease", due, claimedBy="other", claimFence=1, claimExpiresAt=_naive(NOW + LEASE))
    _add(database, "expired-lease", due, claimedBy="other", claimFence=1, claimExpiresAt=_naive(NOW))
    _add(database, "same-fence", due, claimFence=5)
    _add(database, "higher-fence", due, claimFence=6)
    _add(database, "lower-fence", due, claimFence=4)

    # WHEN a run with fence 5 asks for due ids
    ids = store.find_due_ids(NOW, fence=5, limit=100, only_ids=None)

    # THEN only the free, the expired and the lower-fenced ones are claimable
    assert sorted(ids) == ["expired-lease", "free", "lower-fence"]


# --- claim -----------------------------------------------------------------------------------------------


def test_claim_takes_only_the_claimable_ones_and_returns_them_marked(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a due donation, a not-yet-due one and one leased by another run
    _add(database, "due", NOW - timedelta(days=1))
    _add(database, "future", NOW + timedelta(days=1))
    _add(
        database,
        "leased",
        NOW - timedelta(days=1),
        claimedBy="x",
        claimFence=1,
        claimExpiresAt=_naive(NOW + LEASE),
    )

    # WHEN run A claims all three
    documents = store.claim(["due", "future", "leased"], RUN_A, NOW, NOW + LEASE)

    # THEN only the due one is claimed, and it comes back with the claim fields set
    assert [document["_id"] for document in documents] == ["due"]
    claimed = documents[0]
    assert (claimed["claimedBy"], claimed["claimFence"]) == ("run-a", 5)
    assert claimed["claimExpiresAt"] == _naive(NOW + LEASE)
    assert "claimedBy" not in _get(database, "future")
    assert _get(database, "leased")["claimedBy"] == "x"


def test_claiming_nothing_returns_nothing(store: MongoDonationStore) -> None:
    # GIVEN no ids
    # WHEN they are claimed
    # THEN the answer is empty
    assert store.claim([], RUN_A, NOW, NOW + LEASE) == []


def test_a_higher_fence_gets_nothing_while_the_lease_lives_and_everything_once_it_expires(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN two due donations claimed by run A (fence 5) with a 15-minute lease
    _add(database, "d1", NOW - timedelta(days=1))
    _add(database, "d2", NOW - timedelta(days=1))
    assert len(store.claim(["d1", "d2"], RUN_A, NOW, NOW + LEASE)) == 2
    run_b = Claim("run-b", 6)

    # WHEN run B (fence 6) claims them before, then after, the lease expires
    early = store.claim(["d1", "d2"], run_b, NOW + LEASE - timedelta(seconds=1), NOW + 2 * LEASE)
    late = store.claim(["d1", "d2"], run_b, NOW + LEASE, NOW + 2 * LEASE)

    # THEN it gets nothing while A's lease lives, and both once it has expired
    assert early == []
    assert sorted(document["_id"] for document in late) == ["d1", "d2"]
    assert {(document["claimedBy"], document["claimFence"]) for document in late} == {("run-b", 6)}


def test_a_lower_fence_never_gets_a_donation_even_after_the_lease_expires(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a donation claimed by run A with fence 5
    _add(database, "d1", NOW - timedelta(days=1))
    store.claim(["d1"], RUN_A, NOW, NOW + LEASE)

    # WHEN a stale run with fence 4 claims it long after the lease expired
    stale = store.claim(["d1"], Claim("stale-run", 4), NOW + timedelta(days=1), NOW + timedelta(days=2))

    # THEN it gets nothing and the claim is still A's
    assert stale == []
    assert (_get(database, "d1")["claimedBy"], _get(database, "d1")["claimFence"]) == ("run-a", 5)


# --- record_charge -------------------------------------------------------------------------------------


def test_a_succeeded_record_replaces_a_failed_one_for_the_same_period(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a failed record for the period
    store.record_charge(_record("failed", error={"code": "card_declined"}))

    # WHEN a later attempt records success for the same (id, period)
    store.record_charge(_record("succeeded", attempts=2, createdAt=NOW + timedelta(days=3)))

    # THEN exactly one document remains, succeeded, keeping its first creation time
    records = list(database[DONATIONS].find({"scheduledDonationId": "don-1"}))
    assert len(records) == 1
    assert (records[0]["status"], records[0]["attempts"]) == ("succeeded", 2)
    assert records[0]["createdAt"] == _naive(NOW)


def test_a_failed_record_never_downgrades_a_succeeded_one(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a succeeded record for the period
    store.record_charge(_record("succeeded"))

    # WHEN a failed record for the same period arrives (a stale run)
    store.record_charge(_record("failed", attempts=9, error={"code": "card_declined"}))

    # THEN the one document is still the success, untouched by the failure
    records = list(database[DONATIONS].find({"scheduledDonationId": "don-1"}))
    assert len(records) == 1
    assert (records[0]["status"], records[0]["attempts"]) == ("succeeded", 1)
    assert "error" not in records[0]


def test_recording_success_twice_keeps_one_document(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a succeeded record
    store.record_charge(_record("succeeded", runId="run-a"))

    # WHEN the same success is recorded again (a replay)
    store.record_charge(_record("succeeded", runId="run-b"))

    # THEN there is still one document for the period
    assert database[DONATIONS].count_documents({"scheduledDonationId": "don-1", "period": "2026-03-01"}) == 1


def test_records_of_different_periods_are_separate_documents(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a succeeded record for March
    store.record_charge(_record("succeeded", period="2026-03-01"))

    # WHEN April's is recorded
    store.record_charge(_record("failed", period="2026-04-01"))

    # THEN both periods have their own document
    statuses = {record["period"]: record["status"] for record in database[DONATIONS].find()}
    assert statuses == {"2026-03-01": "succeeded", "2026-04-01": "failed"}


def test_the_unique_index_refuses_a_second_document_for_the_same_period(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN one record document for (don-1, 2026-03-01)
    database[DONATIONS].insert_one(
        {"scheduledDonationId": "don-1", "period": "2026-03-01", "status": "failed"}
    )

    # WHEN a second document with the same key is inserted directly
    # THEN the server refuses it
    with pytest.raises(DuplicateKeyError, match="E11000"):
        database[DONATIONS].insert_one(
            {"scheduledDonationId": "don-1", "period": "2026-03-01", "status": "succeeded"}
        )


# --- writes conditional on the claim ---------------------------------------------------------------------

WRONG_CLAIMS = [Claim("run-b", 5), Claim("run-a", 4), Claim("run-a", 6)]


def _writes(store: MongoDonationStore, donation_id: Any, claim: Claim) -> dict[str, bool]:
    return {
        "complete_period": store.complete_period(donation_id, claim, NOW + timedelta(days=30), 1, NOW),
        "schedule_retry": store.schedule_retry(donation_id, claim, {"nextRunAt": NOW + timedelta(days=1)}),
        "stop": store.stop(donation_id, claim, {"status": "stopped"}, {"deadLetterId": "dl-1"}),
        "release": store.release(donation_id, claim, {"code": "lock_timeout"}),
    }


@pytest.mark.parametrize("wrong", WRONG_CLAIMS, ids=["other-run", "lower-fence", "higher-fence"])
def test_writes_with_a_claim_that_does_not_match_return_false_and_change_nothing(
    database: Database[Any], store: MongoDonationStore, wrong: Claim
) -> None:
    # GIVEN a donation claimed by run A with fence 5
    _claimed(database, "d1", periodStart=_naive(NOW - timedelta(days=1)), paymentIntentId="pi_1")
    before = _get(database, "d1")

    # WHEN every conditional write is tried with a claim that differs in run or fence
    results = _writes(store, "d1", wrong)

    # THEN each reports failure and the document is exactly as it was
    assert results == dict.fromkeys(results, False)
    assert _get(database, "d1") == before


def test_writes_to_an_unclaimed_donation_return_false(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a due donation nobody claimed
    _add(database, "d1", NOW - timedelta(days=1))
    before = _get(database, "d1")

    # WHEN the conditional writes are tried
    results = _writes(store, "d1", RUN_A)

    # THEN none applies
    assert results == dict.fromkeys(results, False)
    assert _get(database, "d1") == before


def test_complete_period_moves_the_schedule_on_and_clears_the_period_state(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a claimed donation mid-period with a PaymentIntent and a last error
    _claimed(
        database,
        "d1",
        periodStart=_naive(NOW - timedelta(days=3)),
        paymentIntentId="pi_1",
        attempts=2,
        lastError={"code": "insufficient_funds"},
    )

    # WHEN run A completes the period
    done = store.complete_period("d1", RUN_A, datetime(2026, 3, 31, 9, 0, tzinfo=UTC), 31, NOW)

    # THEN the next period is set, attempts reset, and claim and period fields are gone
    assert done is True
    document = _get(database, "d1")
    assert document["nextRunAt"] == datetime(2026, 3, 31, 9, 0)
    assert (document["anchorDay"], document["attempts"]) == (31, 0)
    assert document["lastChargedAt"] == _naive(NOW)
    for gone in ("claimedBy", "claimExpiresAt", "periodStart", "paymentIntentId", "lastError"):
        assert gone not in document


def test_schedule_retry_sets_the_changes_and_releases_the_claim(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a claimed donation
    _claimed(database, "d1")

    # WHEN run A schedules a retry in three days
    done = store.schedule_retry("d1", RUN_A, {"nextRunAt": NOW + timedelta(days=3), "attempts": 1})

    # THEN the changes are written and the claim released
    assert done is True
    document = _get(database, "d1")
    assert (document["nextRunAt"], document["attempts"]) == (_naive(NOW + timedelta(days=3)), 1)
    assert "claimedBy" not in document
    assert "claimExpiresAt" not in document


def test_release_drops_the_lease_keeps_the_fence_so_the_same_run_cannot_reclaim(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a donation claimed by run A
    _add(database, "d1", NOW - timedelta(days=1))
    store.claim(["d1"], RUN_A, NOW, NOW + LEASE)

    # WHEN run A releases it with an error
    released = store.release("d1", RUN_A, {"code": "lock_timeout", "at": NOW})

    # THEN the lease is gone but the fence stays: A cannot take it again, a newer run can
    assert released is True
    document = _get(database, "d1")
    assert "claimedBy" not in document
    assert "claimExpiresAt" not in document
    assert document["claimFence"] == 5
    assert document["lastError"] == {"code": "lock_timeout", "at": _naive(NOW)}
    assert store.find_due_ids(NOW, fence=5, limit=10, only_ids=None) == []
    assert store.find_due_ids(NOW, fence=6, limit=10, only_ids=None) == ["d1"]


# --- dead letters ------------------------------------------------------------------------------------------


def test_stop_parks_a_dead_letter_that_can_be_found_and_cleared_by_its_id(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a claimed donation and one that was never stopped
    _claimed(database, "d1")
    _add(database, "other", NOW - timedelta(days=1))
    letter = {"deadLetterId": "dl-1", "reason": "hard_decline", "donationId": "d1"}

    # WHEN run A stops it with a dead letter
    stopped = store.stop("d1", RUN_A, {"status": "stopped", "stoppedAt": NOW}, letter)

    # THEN the schedule is stopped, unclaimed, and its letter is pending
    assert stopped is True
    document = _get(database, "d1")
    assert (document["status"], document["stoppedAt"]) == ("stopped", _naive(NOW))
    assert document["pendingDeadLetter"] == letter
    assert "claimedBy" not in document
    pending = store.pending_dead_letters(limit=10)
    assert [(item["_id"], item["pendingDeadLetter"]["deadLetterId"]) for item in pending] == [("d1", "dl-1")]


def test_clear_dead_letter_removes_only_the_letter_with_the_matching_id(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a stopped donation with parked letter dl-1
    _claimed(database, "d1")
    store.stop("d1", RUN_A, {"status": "stopped"}, {"deadLetterId": "dl-1"})

    # WHEN a different letter id is cleared, then the right one
    store.clear_dead_letter("d1", "dl-other")
    after_wrong = _get(database, "d1")
    store.clear_dead_letter("d1", "dl-1")
    after_right = _get(database, "d1")

    # THEN the wrong id leaves the letter parked, the right id removes it
    assert after_wrong["pendingDeadLetter"] == {"deadLetterId": "dl-1"}
    assert "pendingDeadLetter" not in after_right
    assert store.pending_dead_letters(limit=10) == []


# --- datetimes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query_now", [NOW, _naive(NOW), NOW.astimezone(timezone(timedelta(hours=-5)))])
def test_naive_stored_due_dates_compare_correctly_with_any_now(
    database: Database[Any], store: MongoDonationStore, query_now: datetime
) -> None:
    # GIVEN naive-UTC due dates, as pymongo stores and returns them: 1 ms ago and 1 s ahead
    _add(database, "due", NOW - timedelta(milliseconds=1))
    _add(database, "not-yet", NOW + timedelta(seconds=1))

    # WHEN due ids are asked for with an aware UTC, a naive UTC or an aware UTC-5 `now` of the same instant
    ids = store.find_due_ids(query_now, fence=1, limit=10, only_ids=None)

    # THEN the same instant gives the same answer
    assert ids == ["due"]


def test_aware_dates_written_through_the_store_are_stored_as_naive_utc_and_compare_correctly(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN two claimed donations
    _claimed(database, "aware-utc")
    _claimed(database, "aware-plus-2")

    # WHEN one period completes at an aware UTC moment and one at the same instant written in UTC+2
    next_run = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
    store.complete_period("aware-utc", RUN_A, next_run, 1, NOW)
    store.complete_period("aware-plus-2", RUN_A, next_run.astimezone(timezone(timedelta(hours=2))), 1, NOW)

    # THEN both are stored as the same naive UTC instant, due exactly from that instant on
    assert _get(database, "aware-utc")["nextRunAt"] == datetime(2026, 4, 1, 0, 0)
    assert _get(database, "aware-plus-2")["nextRunAt"] == datetime(2026, 4, 1, 0, 0)
    assert store.find_due_ids(next_run - timedelta(milliseconds=1), 9, 10, None) == []
    assert sorted(store.find_due_ids(next_run, 9, 10, None)) == ["aware-plus-2", "aware-utc"]


# --- iter_due (dry run) ---------------------------------------------------------------------------------


def test_iter_due_streams_due_documents_oldest_first_up_to_the_limit_without_claiming(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN three due donations, one leased by another run, and a future one
    _add(database, "newest", NOW - timedelta(hours=1))
    _add(database, "oldest", NOW - timedelta(hours=3))
    _add(database, "middle", NOW - timedelta(hours=2), claimedBy="x", claimExpiresAt=_naive(NOW + LEASE))
    _add(database, "future", NOW + timedelta(hours=1))

    # WHEN due documents are streamed with a limit of 2, and without a limit
    limited = [document["_id"] for document in store.iter_due(NOW, None, 2)]
    everything = list(store.iter_due(NOW, None, None))

    # THEN full documents come back oldest first (a dry run sees leased ones too), and nothing is claimed
    assert limited == ["oldest", "middle"]
    assert [document["_id"] for document in everything] == ["oldest", "middle", "newest"]
    assert everything[0]["status"] == "active"
    assert database[SCHEDULED].count_documents({"claimedBy": {"$exists": True}}) == 1


def test_iter_due_with_only_ids_streams_just_those(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an ObjectId-keyed and a string-keyed due donation
    object_id = ObjectId("65f1c0ffee0000000000b001")
    _add(database, object_id, NOW - timedelta(hours=2))
    _add(database, "legacy-1", NOW - timedelta(hours=1))

    # WHEN only the ObjectId one is asked for, as text
    documents = list(store.iter_due(NOW, ["65f1c0ffee0000000000b001"], None))

    # THEN only it comes back
    assert [document["_id"] for document in documents] == [object_id]


# --- known mongomock trap -----------------------------------------------------------------------------


def test_known_trap_bulk_write_with_update_one_fails_on_mongomock(
    database: Database[Any], backend: str
) -> None:
    # GIVEN the mongomock backend (a real server supports bulk_write; the store avoids it for mongomock)
    if backend != "mongomock":
        pytest.skip("documents a mongomock limitation; a real server supports bulk_write")
    database[SCHEDULED].insert_one({"_id": "d1", "attempts": 0})

    # WHEN bulk_write is called with an UpdateOne built by current pymongo
    # THEN mongomock 4.3 raises (pymongo passes a `sort` argument it does not know). When this test fails,
    # mongomock has been fixed and the store may use bulk_write again.
    with pytest.raises(TypeError, match="sort"):
        database[SCHEDULED].bulk_write([UpdateOne({"_id": "d1"}, {"$set": {"attempts": 1}})])
