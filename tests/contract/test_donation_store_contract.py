"""MongoDonationStore contract: every promise the engine relies on, proven on mongomock and on a real server.

The real server runs only when MONGODB_TEST_URI is set (e.g. mongodb://localhost:27017); otherwise those
cases are skipped, never silently passed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
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
    OPEN_INTENT_INDEX,
    RECORD_INDEX,
    SCHEDULED,
    MongoDonationStore,
)
from donation_processor.charge_intent import Attempt, AttemptOutcome, ChargeIntent, IntentStatus, NewIntent
from donation_processor.charge_outcome import FailureKind, StripeFailure
from donation_processor.charge_rules import Charged, Stopped, StopReason
from donation_processor.idempotency import attempt_key, payment_intent_key
from donation_processor.ports import Claim, ParkedLetter, ScheduleWrite
from donation_processor.schedule import period_key

pytestmark = pytest.mark.contract

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=15)
RUN_A = Claim("run-a", 5)
OLD_RUN = Claim("run-old", 4)
MONGODB_TEST_URI = os.environ.get("MONGODB_TEST_URI", "").strip()
MARCH = NOW  # the period "2026-03-01" falls due exactly now
FEBRUARY = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
DECLINED = StripeFailure(
    FailureKind.SOFT_DECLINE,
    "card_error",
    code="card_declined",
    decline_code="insufficient_funds",
    message="Your card has insufficient funds.",
    http_status=402,
)
STOLEN = StripeFailure(
    FailureKind.HARD_DECLINE, "card_error", code="card_declined", decline_code="stolen_card", http_status=402
)
# A writer that is not the lease holder: another run at the same fence, or the same run at another fence.
WRONG_CLAIMS = [Claim("run-b", 5), Claim("run-a", 4), Claim("run-a", 6)]
WRONG_CLAIM_IDS = ["other-run", "lower-fence", "higher-fence"]


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


def _new(donation_id: str = "d1", due_at: datetime = MARCH, amount: int = 2500) -> NewIntent:
    """A period's intent as the engine builds it (work_claims.new_intent): attempt 1 creates, with the key."""
    period = period_key(due_at)
    key = payment_intent_key(donation_id, period)
    return NewIntent(
        scheduled_donation_id=donation_id,
        period=period,
        due_at=due_at,
        seen_next_run_at=due_at,
        amount=amount,
        currency="usd",
        customer_id="cus_1",
        payment_method_id="pm_1",
        creation_key=key,
        donor_id="donor-1",
        attempts=(Attempt(1, key, "pm_1", NOW, creates=True),),
        next_attempt_number=2,
    )


def _open(
    store: MongoDonationStore,
    intent: NewIntent | None = None,
    claim: Claim = RUN_A,
    now: datetime = NOW,
    lease_until: datetime = NOW + LEASE,
) -> ChargeIntent:
    """Open one intent that must be new."""
    [(opened, created)] = store.open_intents([intent or _new()], claim, now, lease_until)
    assert created is True
    return opened


def _entry(database: Database[Any], ref: Any) -> dict[str, Any]:
    document = database[DONATIONS].find_one({"_id": ref})
    assert document is not None
    return dict(document)


def _answered(intent: ChargeIntent, outcome: AttemptOutcome) -> ChargeIntent:
    """The intent as the engine holds it once the last attempt's answer arrived."""
    *earlier, last = intent.attempts
    return replace(intent, attempts=(*earlier, last.answered(outcome)))


def _stopped(intent: ChargeIntent, failure: StripeFailure = STOLEN, canceled: bool = False) -> Stopped:
    return Stopped(
        StopReason.HARD_DECLINE,
        failure,
        declines=1,
        payment_intent_id=intent.payment_intent_id or "pi_1",
        canceled=canceled,
    )


def _resolved_and_closed(
    store: MongoDonationStore, intent: NewIntent, claim: Claim = RUN_A, now: datetime = NOW
) -> ChargeIntent:
    """An intent that failed and whose outcome reached the schedule: closed."""
    opened = _open(store, intent, claim, now=now)
    assert store.record_stop(opened, claim, _stopped(opened), None, NOW) is True
    store.close_intents([opened.ref])
    return opened


class _CallLog:
    """Wraps a collection and records which of its methods the store calls."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def logged(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attribute(*args, **kwargs)

        return logged


# --- indexes -------------------------------------------------------------------------------------------


def test_ensure_indexes_creates_the_due_the_one_record_per_period_and_the_one_open_intent_indexes(
    database: Database[Any],
) -> None:
    # GIVEN an empty database
    store = MongoDonationStore(database)

    # WHEN the indexes are ensured
    store.ensure_indexes()

    # THEN the due index is (status, nextRunAt), the record index is unique on (id, period), and the open
    # intent index is unique and sparse on openFor
    scheduled = database[SCHEDULED].index_information()
    donations = database[DONATIONS].index_information()
    assert list(scheduled[DUE_INDEX]["key"]) == [("status", 1), ("nextRunAt", 1)]
    assert (RECORD_INDEX, OPEN_INTENT_INDEX) == ("one_record_per_period", "one_open_intent_per_donation")
    assert list(donations[RECORD_INDEX]["key"]) == [("scheduledDonationId", 1), ("period", 1)]
    assert donations[RECORD_INDEX].get("unique") is True
    assert list(donations[OPEN_INTENT_INDEX]["key"]) == [("openFor", 1)]
    assert donations[OPEN_INTENT_INDEX].get("unique") is True
    assert donations[OPEN_INTENT_INDEX].get("sparse") is True


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


def test_indexes_are_created_twice_over_closed_intents_of_one_donation_and_still_refuse_two_open_ones(
    database: Database[Any],
) -> None:
    # GIVEN a ledger, written before any index existed, holding two closed intents of the same donation
    unindexed = MongoDonationStore(database)
    _resolved_and_closed(unindexed, _new("d1", FEBRUARY))
    _resolved_and_closed(unindexed, _new("d1", MARCH))
    assert database[DONATIONS].count_documents({"scheduledDonationId": "d1", "openFor": {"$exists": 1}}) == 0

    # WHEN the indexes are ensured by one store, then again by a new one
    MongoDonationStore(database).ensure_indexes()
    first = database[DONATIONS].index_information()
    second = MongoDonationStore(database)
    second.ensure_indexes()

    # THEN both succeed, the indexes are the same, and the open intent index still refuses a second open one
    assert database[DONATIONS].index_information() == first
    assert OPEN_INTENT_INDEX in first
    april = _open(second, _new("d1", APRIL))
    [(blocker, created)] = second.open_intents(
        [_new("d1", datetime(2026, 5, 1, tzinfo=UTC))], RUN_A, NOW, NOW
    )
    assert (blocker.ref, created) == (april.ref, False)
    assert database[DONATIONS].count_documents({"scheduledDonationId": "d1"}) == 3


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


def test_the_open_intent_index_refuses_a_second_open_entry_but_allows_any_number_of_closed_ones(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an open entry of don-1 and two closed ones (no openFor)
    database[DONATIONS].insert_one(
        {"scheduledDonationId": "don-1", "period": "2026-03-01", "openFor": "don-1"}
    )
    database[DONATIONS].insert_one({"scheduledDonationId": "don-1", "period": "2026-01-01"})
    database[DONATIONS].insert_one({"scheduledDonationId": "don-1", "period": "2026-02-01"})

    # WHEN a second open entry of don-1 is inserted directly
    # THEN the server refuses it, while the closed ones were accepted
    with pytest.raises(DuplicateKeyError, match="E11000"):
        database[DONATIONS].insert_one(
            {"scheduledDonationId": "don-1", "period": "2026-04-01", "openFor": "don-1"}
        )
    assert database[DONATIONS].count_documents({"scheduledDonationId": "don-1"}) == 3


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
    # GIVEN a due donation, a not-yet-due one, one leased by another run and one with an open period
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
    _add(database, "held", NOW - timedelta(days=1), openPeriod="2026-02-28")

    # WHEN run A claims all four
    documents = store.claim(["due", "future", "leased", "held"], RUN_A, NOW, NOW + LEASE)

    # THEN only the due one is claimed, and it comes back with the claim fields set
    assert [document["_id"] for document in documents] == ["due"]
    claimed = documents[0]
    assert (claimed["claimedBy"], claimed["claimFence"]) == ("run-a", 5)
    assert claimed["claimExpiresAt"] == _naive(NOW + LEASE)
    assert "claimedBy" not in _get(database, "future")
    assert "claimedBy" not in _get(database, "held")
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


# --- ids_with_twins / schedules_for ------------------------------------------------------------------------


def test_ids_with_twins_finds_an_object_id_and_its_hex_string_from_either_side(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a schedule keyed by an ObjectId and another keyed by the same id as a 24-hex string, plus an
    # ObjectId-keyed and a 24-hex-string-keyed schedule, each without a twin
    twin = ObjectId("65f1c0ffee0000000000d001")
    alone = ObjectId("65f1c0ffee0000000000d002")
    _add(database, twin, NOW)
    _add(database, str(twin), NOW)
    _add(database, alone, NOW)
    _add(database, "65f1c0ffee0000000000d003", NOW)

    # WHEN twins are looked for among the raw ids, from the ObjectId side and from the string side
    from_object_id = store.ids_with_twins([twin, alone])
    from_string = store.ids_with_twins([str(twin), "65f1c0ffee0000000000d003"])

    # THEN the shared canonical id is found both ways, and the lone ones are not reported
    assert from_object_id == {"65f1c0ffee0000000000d001"}
    assert from_string == {"65f1c0ffee0000000000d001"}


def test_ids_with_twins_reports_no_twin_for_non_hex_or_twelve_character_string_ids(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a 12-character string id next to the ObjectId built from those 12 bytes, a 24-character
    # non-hex id, and a plain legacy id
    twelve = "abcdefghijkl"
    from_bytes = ObjectId(twelve.encode())
    _add(database, twelve, NOW)
    _add(database, from_bytes, NOW)
    _add(database, "zzzzzzzzzzzzzzzzzzzzzzzz", NOW)
    _add(database, "legacy-7", NOW)

    # WHEN twins are looked for among all of them
    twins = store.ids_with_twins([twelve, from_bytes, "zzzzzzzzzzzzzzzzzzzzzzzz", "legacy-7", None])

    # THEN none is reported: none of them is another's hex spelling
    assert twins == set()


def test_schedules_for_reads_object_id_and_string_keyed_schedules_by_their_canonical_text_id(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an ObjectId-keyed schedule and a legacy string-keyed one
    object_id = ObjectId("65f1c0ffee0000000000e001")
    _add(database, object_id, NOW, amount=2500)
    _add(database, "legacy-1", NOW, amount=1000)

    # WHEN both, and one that was deleted, are read by canonical id
    found = store.schedules_for(["65f1c0ffee0000000000e001", "legacy-1", "deleted-1"])

    # THEN the two come back under their text ids with their stored _id, and the deleted one is absent
    assert set(found) == {"65f1c0ffee0000000000e001", "legacy-1"}
    assert found["65f1c0ffee0000000000e001"]["_id"] == object_id
    assert found["legacy-1"]["amount"] == 1000
    assert store.schedules_for([]) == {}


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


# --- advance_schedule ------------------------------------------------------------------------------------


def test_advance_schedule_moves_the_schedule_on_once_and_clears_claim_period_and_legacy_fields(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a claimed schedule holding an open period, a last error, the fields an earlier version kept
    # while a period was in flight, and the host's own fields
    _claimed(
        database,
        "d1",
        openPeriod="2026-02-28",
        nextAttemptAt=_naive(NOW + timedelta(days=3)),
        lastError={"code": "insufficient_funds"},
        periodStart=_naive(NOW - timedelta(days=1)),
        periodFirstAttemptAt=_naive(NOW - timedelta(days=1)),
        periodAttempts=2,
        paymentIntentId="pi_1",
        attempts=2,
        amount=2500,
        frequency="monthly",
    )
    next_run = datetime(2026, 3, 31, 9, 0, tzinfo=UTC)

    # WHEN the schedule is advanced past 2026-02-28, read at its current nextRunAt
    written = store.advance_schedule("d1", "2026-02-28", NOW - timedelta(days=1), next_run, 31, NOW)

    # THEN it is applied: next run, anchor and last charged period set, every in-flight field removed
    assert written is ScheduleWrite.APPLIED
    document = _get(database, "d1")
    assert document["nextRunAt"] == datetime(2026, 3, 31, 9, 0)
    assert (document["anchorDay"], document["lastChargedPeriod"]) == (31, "2026-02-28")
    assert document["lastChargedAt"] == _naive(NOW)
    assert (document["amount"], document["frequency"], document["claimFence"]) == (2500, "monthly", 5)
    removed = (
        "claimedBy",
        "claimExpiresAt",
        "openPeriod",
        "nextAttemptAt",
        "lastError",
        "periodStart",
        "periodFirstAttemptAt",
        "periodAttempts",
        "paymentIntentId",
        "attempts",
    )
    assert [field for field in removed if field in document] == []


def test_advancing_the_same_period_again_returns_already_and_moves_nothing(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a schedule advanced past 2026-02-28
    _add(database, "d1", NOW - timedelta(days=1))
    first = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    assert store.advance_schedule("d1", "2026-02-28", NOW - timedelta(days=1), first, 28, NOW) == "applied"
    before = _get(database, "d1")

    # WHEN the same period is advanced again, from the old and from the new nextRunAt
    from_old = store.advance_schedule(
        "d1", "2026-02-28", NOW - timedelta(days=1), first + timedelta(days=31), 28, NOW + LEASE
    )
    from_new = store.advance_schedule("d1", "2026-02-28", first, first + timedelta(days=31), 28, NOW + LEASE)

    # THEN both say it was already done, and the schedule is untouched
    assert (from_old, from_new) == (ScheduleWrite.ALREADY, ScheduleWrite.ALREADY)
    assert _get(database, "d1") == before


def test_advance_schedule_returns_changed_and_writes_nothing_when_the_host_moved_next_run_at(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a schedule read at nextRunAt yesterday, whose nextRunAt the host has since moved to tomorrow
    _claimed(database, "d1", openPeriod="2026-02-28")
    database[SCHEDULED].update_one({"_id": "d1"}, {"$set": {"nextRunAt": _naive(NOW + timedelta(days=1))}})
    before = _get(database, "d1")

    # WHEN it is advanced from what was read
    written = store.advance_schedule(
        "d1", "2026-02-28", NOW - timedelta(days=1), NOW + timedelta(days=30), 28, NOW
    )

    # THEN the write is refused as changed, and the document is exactly as the host left it
    assert written is ScheduleWrite.CHANGED
    assert _get(database, "d1") == before


def test_advance_schedule_of_a_deleted_document_returns_gone(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a schedule the host deleted
    _add(database, "d1", NOW - timedelta(days=1))
    database[SCHEDULED].delete_one({"_id": "d1"})

    # WHEN it is advanced
    written = store.advance_schedule(
        "d1", "2026-02-28", NOW - timedelta(days=1), NOW + timedelta(days=30), 28, NOW
    )

    # THEN it is gone and nothing was created
    assert written is ScheduleWrite.GONE
    assert database[SCHEDULED].count_documents({}) == 0


# --- hold / release / stop the schedule ----------------------------------------------------------------


def test_hold_schedule_marks_the_open_period_drops_the_claim_and_hides_it_until_released(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a due schedule claimed by run A, still carrying an earlier version's in-flight fields
    _claimed(database, "d1", periodStart=_naive(NOW - timedelta(days=1)), paymentIntentId="pi_1", attempts=1)
    retry_at = NOW + timedelta(days=3)

    # WHEN its period is held (an intent stays open) until a retry in three days
    store.hold_schedule("d1", "2026-02-28", retry_at)

    # THEN the open period and its next attempt are on the document, the claim and legacy fields are gone,
    # and neither a newer run's find/claim nor a dry run sees it, even once the lease would have expired
    held = _get(database, "d1")
    assert (held["openPeriod"], held["nextAttemptAt"]) == ("2026-02-28", _naive(retry_at))
    dropped = ("claimedBy", "claimExpiresAt", "periodStart", "paymentIntentId", "attempts")
    assert [field for field in dropped if field in held] == []
    later = NOW + timedelta(days=1)
    assert store.find_due_ids(later, fence=6, limit=10, only_ids=None) == []
    assert store.claim(["d1"], Claim("run-b", 6), later, later + LEASE) == []
    assert list(store.iter_due(later, None, None)) == []

    # WHEN the period is released
    store.release_schedule("d1")

    # THEN the open period mark is gone and the schedule is due again for a newer run
    released = _get(database, "d1")
    assert "openPeriod" not in released
    assert "nextAttemptAt" not in released
    assert store.find_due_ids(later, fence=6, limit=10, only_ids=None) == ["d1"]
    assert [document["_id"] for document in store.iter_due(later, None, None)] == ["d1"]


def test_release_schedule_leaves_the_hosts_fields_as_they_are(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a claimed schedule with an open period, cancelled by the host meanwhile
    _claimed(database, "d1", status="cancelled", openPeriod="2026-02-28", amount=2500)

    # WHEN it is released
    store.release_schedule("d1")

    # THEN only the claim and the open period are gone
    document = _get(database, "d1")
    assert (document["status"], document["amount"], document["claimFence"]) == ("cancelled", 2500, 5)
    assert [field for field in ("claimedBy", "claimExpiresAt", "openPeriod") if field in document] == []


def test_stop_schedule_stops_an_active_schedule_and_clears_its_period_state(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an active claimed schedule holding an open period
    _claimed(database, "d1", openPeriod="2026-02-28", nextAttemptAt=_naive(NOW), lastError={"code": "x"})

    # WHEN its period's intent was stopped and the schedule is stopped
    stopped = store.stop_schedule("d1", "2026-02-28", "payment_failed", "hard_decline:stolen_card", NOW)

    # THEN it is stopped with the reason and period, and no claim or period state is left
    assert stopped is True
    document = _get(database, "d1")
    assert (document["status"], document["stopReason"]) == ("payment_failed", "hard_decline:stolen_card")
    assert (document["stoppedAt"], document["stoppedPeriod"]) == (_naive(NOW), "2026-02-28")
    remaining = ("claimedBy", "claimExpiresAt", "openPeriod", "nextAttemptAt", "lastError")
    assert [field for field in remaining if field in document] == []


def test_stop_schedule_keeps_the_hosts_status_of_a_cancelled_schedule_but_drops_its_claim_and_period(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a claimed schedule with an open period that the host cancelled meanwhile
    _claimed(database, "d1", status="cancelled", openPeriod="2026-02-28")

    # WHEN the engine tries to stop it
    stopped = store.stop_schedule("d1", "2026-02-28", "payment_failed", "hard_decline:stolen_card", NOW)

    # THEN it reports False, the status stays the host's, and the claim and open period are gone
    assert stopped is False
    document = _get(database, "d1")
    assert document["status"] == "cancelled"
    assert [field for field in ("stopReason", "stoppedAt", "stoppedPeriod") if field in document] == []
    assert [field for field in ("claimedBy", "claimExpiresAt", "openPeriod") if field in document] == []


# --- writes conditional on the schedule claim ------------------------------------------------------------


def _claim_writes(store: MongoDonationStore, donation_id: Any, claim: Claim) -> dict[str, bool]:
    return {
        "release": store.release(donation_id, claim, {"code": "lock_timeout"}),
        "reject_invalid": store.reject_invalid(
            donation_id, claim, "amount is missing", {"deadLetterId": "dl-1"}, NOW
        ),
    }


@pytest.mark.parametrize("wrong", WRONG_CLAIMS, ids=WRONG_CLAIM_IDS)
def test_writes_with_a_claim_that_does_not_match_return_false_and_change_nothing(
    database: Database[Any], store: MongoDonationStore, wrong: Claim
) -> None:
    # GIVEN a donation claimed by run A with fence 5
    _claimed(database, "d1")
    before = _get(database, "d1")

    # WHEN every write conditional on the claim is tried with a claim that differs in run or fence
    results = _claim_writes(store, "d1", wrong)

    # THEN each reports failure and the document is exactly as it was
    assert results == {"release": False, "reject_invalid": False}
    assert _get(database, "d1") == before


def test_writes_to_an_unclaimed_donation_return_false(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a due donation nobody claimed
    _add(database, "d1", NOW - timedelta(days=1))
    before = _get(database, "d1")

    # WHEN the conditional writes are tried
    results = _claim_writes(store, "d1", RUN_A)

    # THEN none applies
    assert results == {"release": False, "reject_invalid": False}
    assert _get(database, "d1") == before


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


def test_reject_invalid_marks_the_claimed_schedule_invalid_and_parks_its_letter_on_it(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a schedule claimed by run A
    _claimed(database, "d1")
    letter = {"deadLetterId": "dl-1", "reason": "invalid_document", "donationId": "d1"}

    # WHEN run A rejects it as invalid
    rejected = store.reject_invalid("d1", RUN_A, "amount is missing", letter, NOW)

    # THEN it is invalid, unclaimed, and its letter is parked on the schedule
    assert rejected is True
    document = _get(database, "d1")
    assert (document["status"], document["invalidReason"]) == ("invalid", "amount is missing")
    assert (document["stopReason"], document["stoppedAt"]) == ("invalid_document", _naive(NOW))
    assert document["pendingDeadLetter"] == letter
    assert "claimedBy" not in document
    assert "claimExpiresAt" not in document
    assert store.pending_dead_letters(limit=10) == [ParkedLetter("d1", letter, in_ledger=False)]
    assert store.find_due_ids(NOW, fence=6, limit=10, only_ids=None) == []


# --- count_overdue ---------------------------------------------------------------------------------------


def test_count_overdue_counts_due_unheld_active_schedules_and_open_intents_due_before_the_cutoff(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN, before the cutoff: an active schedule, a held one, a paused one, an open intent and a closed
    # intent; after it: an active schedule and an open intent retried later
    cutoff = NOW - timedelta(hours=1)
    _add(database, "overdue", NOW - timedelta(days=1))
    _add(database, "held", NOW - timedelta(days=1), openPeriod="2026-02-28")
    _add(database, "paused", NOW - timedelta(days=1), status="paused")
    _add(database, "on-time", NOW)
    _open(store, _new("open-overdue"), now=NOW - timedelta(days=1))
    _resolved_and_closed(store, _new("closed"), now=NOW - timedelta(days=1))
    later = _open(store, _new("retried-later"), now=NOW - timedelta(days=1))
    assert store.record_pending(later, RUN_A, NOW + timedelta(days=3), DECLINED, NOW) is True

    # WHEN overdue work is counted
    overdue = store.count_overdue(cutoff)

    # THEN only the overdue active schedule and the overdue open intent count
    assert overdue == 2


# --- open_intents ----------------------------------------------------------------------------------------


def test_open_intents_writes_pending_intents_leased_to_the_claim_in_one_insert(
    database: Database[Any], store: MongoDonationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two new periods' intents and the ledger collection watched
    calls = _CallLog(database[DONATIONS])
    monkeypatch.setattr(store, "_donations", calls)
    intents = [_new("d1"), _new("d2", amount=1000)]

    # WHEN run A opens them
    opened = store.open_intents(intents, RUN_A, NOW, NOW + LEASE)

    # THEN both are new, pending, open, leased to run A, carrying what they were built with, in one insert
    assert calls.calls == ["insert_many"]
    assert [created for _, created in opened] == [True, True]
    first, second = (intent for intent, _ in opened)
    assert (first.scheduled_donation_id, second.scheduled_donation_id) == ("d1", "d2")
    assert (first.status, first.open, first.lease, first.lease_expires_at) == (
        IntentStatus.PENDING,
        True,
        RUN_A,
        NOW + LEASE,
    )
    assert (first.period, first.due_at, first.amount, first.currency) == ("2026-03-01", MARCH, 2500, "usd")
    assert (first.creation_key, first.attempts, first.next_attempt_number) == (
        "scheduled-donation:d1:2026-03-01",
        intents[0].attempts,
        2,
    )
    assert (first.next_attempt_at, first.created_at, first.donor_id) == (NOW, NOW, "donor-1")
    assert second.amount == 1000
    stored = _entry(database, first.ref)
    assert (stored["schema"], stored["status"], stored["openFor"]) == (2, "pending", "d1")
    assert stored["lease"] == {"runId": "run-a", "fence": 5, "expiresAt": _naive(NOW + LEASE)}
    assert stored["attemptLog"][0]["creates"] is True
    assert database[DONATIONS].count_documents({}) == 2


def test_opening_nothing_writes_nothing(database: Database[Any], store: MongoDonationStore) -> None:
    # GIVEN no intents
    # WHEN they are opened
    opened = store.open_intents([], RUN_A, NOW, NOW + LEASE)

    # THEN the answer is empty and the ledger is empty
    assert opened == []
    assert database[DONATIONS].count_documents({}) == 0


def test_opening_the_same_period_again_returns_the_existing_intent_unchanged(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an intent for (d1, 2026-03-01) opened by an old run
    existing = _open(store, _new("d1"), claim=OLD_RUN)
    before = _entry(database, existing.ref)

    # WHEN run A opens the same period (with another amount)
    [(found, created)] = store.open_intents([_new("d1", amount=9999)], RUN_A, NOW + LEASE, NOW + 2 * LEASE)

    # THEN the existing one comes back, not created, and nothing was changed or added
    assert created is False
    assert (found.ref, found.amount, found.lease) == (existing.ref, 2500, OLD_RUN)
    assert _entry(database, existing.ref) == before
    assert database[DONATIONS].count_documents({}) == 1


def test_opening_another_period_while_one_is_open_returns_the_open_intent(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an open intent for (d1, 2026-03-01)
    march = _open(store, _new("d1", MARCH), claim=OLD_RUN)

    # WHEN an intent for (d1, 2026-04-01) is opened
    [(found, created)] = store.open_intents([_new("d1", APRIL)], RUN_A, NOW, NOW + LEASE)

    # THEN the database refuses a second open intent: March's comes back, and April has no entry
    assert created is False
    assert (found.ref, found.period, found.open) == (march.ref, "2026-03-01", True)
    assert database[DONATIONS].count_documents({"scheduledDonationId": "d1"}) == 1


def test_opening_a_period_whose_intent_is_closed_returns_that_closed_intent(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a closed failed intent for (d1, 2026-03-01)
    closed = _resolved_and_closed(store, _new("d1"))

    # WHEN the same period is opened again
    [(found, created)] = store.open_intents([_new("d1")], Claim("run-b", 6), NOW, NOW + LEASE)

    # THEN the closed entry comes back as it is, and is not reopened
    assert created is False
    assert (found.ref, found.status, found.open) == (closed.ref, IntentStatus.FAILED, False)
    assert "openFor" not in _entry(database, closed.ref)


def test_open_intents_answers_in_input_order_with_new_and_refused_mixed(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN d2 with an open March intent and d4 with an open February intent
    d2 = _open(store, _new("d2", MARCH), claim=OLD_RUN)
    d4 = _open(store, _new("d4", FEBRUARY), claim=OLD_RUN)

    # WHEN March intents for d1, d2, d3, d4 and d5 are opened in one call
    opened = store.open_intents(
        [_new(donation) for donation in ("d1", "d2", "d3", "d4", "d5")], RUN_A, NOW, NOW
    )

    # THEN each answer sits at its intent's position: new ones for d1, d3, d5, the blockers for d2 and d4
    summary = [(intent.scheduled_donation_id, intent.period, created) for intent, created in opened]
    assert summary == [
        ("d1", "2026-03-01", True),
        ("d2", "2026-03-01", False),
        ("d3", "2026-03-01", True),
        ("d4", "2026-02-01", False),
        ("d5", "2026-03-01", True),
    ]
    assert (opened[1][0].ref, opened[3][0].ref) == (d2.ref, d4.ref)
    assert database[DONATIONS].count_documents({}) == 5


def test_opening_a_period_an_earlier_version_recorded_returns_that_record_as_a_closed_legacy_entry(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a record an earlier version wrote for (legacy-7, 2026-03-01): no schema, succeeded
    database[DONATIONS].insert_one(
        {
            "scheduledDonationId": "legacy-7",
            "period": "2026-03-01",
            "status": "succeeded",
            "paymentIntentId": "pi_legacy",
            "amount": 2400,
            "currency": "usd",
            "createdAt": _naive(NOW - timedelta(hours=1)),
            "updatedAt": _naive(NOW - timedelta(hours=1)),
        }
    )

    # WHEN the period's intent is opened
    [(found, created)] = store.open_intents([_new("legacy-7")], RUN_A, NOW, NOW + LEASE)

    # THEN the record comes back as a closed succeeded legacy entry, never to be charged again
    assert created is False
    assert (found.legacy_record, found.open, found.status) == (True, False, IntentStatus.SUCCEEDED)
    assert (found.payment_intent_id, found.amount) == ("pi_legacy", 2400)
    assert database[DONATIONS].count_documents({}) == 1


# --- claim_intents ---------------------------------------------------------------------------------------


def test_claim_intents_leases_only_due_open_intents_that_no_live_or_newer_run_holds(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN intents opened an hour ago: one whose old lease expired, one with a live lease, one whose
    # expired lease is at our own fence, one retried tomorrow, and a closed one
    earlier = NOW - timedelta(hours=1)
    free = _open(store, _new("free"), claim=OLD_RUN, now=earlier, lease_until=NOW)
    _open(store, _new("live"), claim=OLD_RUN, now=earlier, lease_until=NOW + LEASE)
    _open(store, _new("same-fence"), claim=Claim("run-x", 5), now=earlier, lease_until=NOW)
    tomorrow = _open(store, _new("tomorrow"), claim=OLD_RUN, now=earlier, lease_until=NOW)
    assert store.record_pending(tomorrow, OLD_RUN, NOW + timedelta(days=1), DECLINED, earlier) is True
    _resolved_and_closed(store, _new("closed"), claim=OLD_RUN)

    # WHEN run A (fence 5) claims intents
    claimed = store.claim_intents(NOW, RUN_A, 10, NOW + LEASE, None)

    # THEN only the free one is leased to it, in the database as in the answer
    assert [intent.ref for intent in claimed] == [free.ref]
    assert (claimed[0].lease, claimed[0].lease_expires_at) == (RUN_A, NOW + LEASE)
    assert _entry(database, free.ref)["lease"] == {
        "runId": "run-a",
        "fence": 5,
        "expiresAt": _naive(NOW + LEASE),
    }
    assert database[DONATIONS].count_documents({"lease.runId": "run-a"}) == 1


def test_a_second_claim_at_the_same_fence_gets_nothing_even_after_the_lease_expires(
    store: MongoDonationStore,
) -> None:
    # GIVEN an open intent claimed by run A (fence 5)
    _open(store, _new("d1"), claim=OLD_RUN, lease_until=NOW)
    assert len(store.claim_intents(NOW, RUN_A, 10, NOW + LEASE, None)) == 1

    # WHEN another claim at fence 5 comes while the lease lives, then after it expired
    during = store.claim_intents(NOW, Claim("run-a2", 5), 10, NOW + LEASE, None)
    after = store.claim_intents(NOW + 2 * LEASE, Claim("run-a2", 5), 10, NOW + 3 * LEASE, None)

    # THEN it gets nothing either time, while a newer fence gets it once the lease has expired
    assert (during, after) == ([], [])
    newer = store.claim_intents(NOW + 2 * LEASE, Claim("run-b", 6), 10, NOW + 3 * LEASE, None)
    assert [intent.lease for intent in newer] == [Claim("run-b", 6)]


def test_an_expired_lease_of_a_lower_fence_is_taken_over_but_a_live_one_is_not(
    store: MongoDonationStore,
) -> None:
    # GIVEN an open intent leased by an old run (fence 4) for fifteen minutes
    opened = _open(store, _new("d1"), claim=OLD_RUN)

    # WHEN run A (fence 5) claims it before, then after, the lease expires
    early = store.claim_intents(NOW + LEASE - timedelta(seconds=1), RUN_A, 10, NOW + 2 * LEASE, None)
    late = store.claim_intents(NOW + LEASE, RUN_A, 10, NOW + 2 * LEASE, None)

    # THEN it waits for the live lease, then takes the intent over
    assert early == []
    assert [(intent.ref, intent.lease) for intent in late] == [(opened.ref, RUN_A)]


def test_claim_intents_with_only_ids_leases_just_those_donations(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN free open intents for d1, d2 and d3
    for donation in ("d1", "d2", "d3"):
        _open(store, _new(donation), claim=OLD_RUN, lease_until=NOW)

    # WHEN run A claims only d1 and d3
    claimed = store.claim_intents(NOW, RUN_A, 10, NOW + LEASE, ["d1", "d3"])

    # THEN only those are leased to it
    assert sorted(intent.scheduled_donation_id for intent in claimed) == ["d1", "d3"]
    untouched = database[DONATIONS].find_one({"scheduledDonationId": "d2"})
    assert untouched is not None
    assert untouched["lease"]["runId"] == "run-old"


def test_claim_intents_takes_the_longest_waiting_intents_up_to_the_limit(store: MongoDonationStore) -> None:
    # GIVEN free open intents due three, one and two hours ago
    for donation, hours in (("three", 3), ("one", 1), ("two", 2)):
        _open(store, _new(donation), claim=OLD_RUN, now=NOW - timedelta(hours=hours), lease_until=NOW)

    # WHEN run A claims two
    claimed = store.claim_intents(NOW, RUN_A, 2, NOW + LEASE, None)

    # THEN the two that waited longest are leased
    assert sorted(intent.scheduled_donation_id for intent in claimed) == ["three", "two"]


def test_claim_intents_finds_a_resolved_intent_until_it_is_closed(store: MongoDonationStore) -> None:
    # GIVEN an intent that succeeded in an old run whose lease has expired, before it was closed
    opened = _open(store, _new("d1"), claim=OLD_RUN, lease_until=NOW)
    charged = Charged("pi_1", 2500, "usd")
    assert store.record_success(_answered(opened, AttemptOutcome.SUCCEEDED), OLD_RUN, charged, NOW) is True

    # WHEN run A claims intents, and a newer run claims again once it is closed
    claimed = store.claim_intents(NOW, RUN_A, 10, NOW + LEASE, None)
    store.close_intents([opened.ref])
    after_close = store.claim_intents(NOW + 2 * LEASE, Claim("run-b", 6), 10, NOW + 3 * LEASE, None)

    # THEN the resolved intent is found so its outcome can reach the schedule, and not once closed
    assert [(intent.ref, intent.status) for intent in claimed] == [(opened.ref, IntentStatus.SUCCEEDED)]
    assert after_close == []


# --- take_intent / reopen_intent --------------------------------------------------------------------------


def test_take_intent_leases_a_free_open_intent(database: Database[Any], store: MongoDonationStore) -> None:
    # GIVEN an open intent whose old lease has expired
    opened = _open(store, _new("d1"), claim=OLD_RUN, lease_until=NOW)

    # WHEN run A takes it
    taken = store.take_intent(opened, RUN_A, NOW, NOW + LEASE)

    # THEN it is leased to run A
    assert taken is not None
    assert (taken.ref, taken.lease, taken.lease_expires_at) == (opened.ref, RUN_A, NOW + LEASE)
    assert _entry(database, opened.ref)["lease"]["runId"] == "run-a"


def test_take_intent_refuses_a_live_lease_a_fence_not_below_ours_and_a_closed_intent(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an intent leased live by an old run, one last held at our own fence, and a closed one
    live = _open(store, _new("live"), claim=OLD_RUN)
    same_fence = _open(store, _new("same-fence"), claim=Claim("run-x", 5), lease_until=NOW)
    closed = _resolved_and_closed(store, _new("closed"), claim=OLD_RUN)
    before = list(database[DONATIONS].find())

    # WHEN run A tries to take each
    taken = [store.take_intent(intent, RUN_A, NOW, NOW + LEASE) for intent in (live, same_fence, closed)]

    # THEN none is taken and nothing changed
    assert taken == [None, None, None]
    assert list(database[DONATIONS].find()) == before


def test_reopen_intent_opens_a_closed_failed_intent_again_leased_to_the_run(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a closed failed intent (the schedule was made active again)
    closed = _resolved_and_closed(store, _new("d1"), claim=OLD_RUN)

    # WHEN run A reopens it
    reopened = store.reopen_intent(closed, RUN_A, NOW + LEASE, NOW + 2 * LEASE)

    # THEN it is pending, open, leased to run A, due now, with its decline count and stop reason reset
    assert reopened is not None
    assert (reopened.ref, reopened.status, reopened.open) == (closed.ref, IntentStatus.PENDING, True)
    assert (reopened.lease, reopened.next_attempt_at, reopened.dunning_attempts) == (RUN_A, NOW + LEASE, 0)
    assert reopened.stop_reason is None
    stored = _entry(database, closed.ref)
    assert stored["openFor"] == "d1"
    assert "resolvedAt" not in stored


def test_reopen_intent_also_reopens_a_closed_canceled_intent(store: MongoDonationStore) -> None:
    # GIVEN a closed canceled intent
    opened = _open(store, _new("d1"), claim=OLD_RUN)
    assert store.record_stop(opened, OLD_RUN, _stopped(opened, canceled=True), None, NOW) is True
    store.close_intents([opened.ref])

    # WHEN run A reopens it
    reopened = store.reopen_intent(opened, RUN_A, NOW, NOW + LEASE)

    # THEN it is pending and open again
    assert reopened is not None
    assert (reopened.status, reopened.open) == (IntentStatus.PENDING, True)


def test_reopen_intent_refuses_open_intents_a_succeeded_one_and_an_earlier_versions_record(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an open pending intent, a failed one not closed yet, a closed succeeded one, and a failed
    # record of an earlier version
    pending = _open(store, _new("pending"), claim=OLD_RUN)
    stopped = _open(store, _new("stopped"), claim=OLD_RUN)
    assert store.record_stop(stopped, OLD_RUN, _stopped(stopped), None, NOW) is True
    succeeded = _open(store, _new("succeeded"), claim=OLD_RUN)
    charged = Charged("pi_1", 2500, "usd")
    assert store.record_success(_answered(succeeded, AttemptOutcome.SUCCEEDED), OLD_RUN, charged, NOW)
    store.close_intents([succeeded.ref])
    database[DONATIONS].insert_one(
        {
            "scheduledDonationId": "legacy-7",
            "period": "2026-03-01",
            "status": "failed",
            "createdAt": _naive(NOW),
            "updatedAt": _naive(NOW),
        }
    )
    [(legacy, _)] = store.open_intents([_new("legacy-7")], RUN_A, NOW, NOW + LEASE)
    assert legacy.legacy_record is True
    before = list(database[DONATIONS].find())

    # WHEN run A tries to reopen each
    reopened = [
        store.reopen_intent(intent, RUN_A, NOW, NOW + LEASE)
        for intent in (pending, stopped, succeeded, legacy)
    ]

    # THEN none is reopened and nothing changed
    assert reopened == [None, None, None, None]
    assert list(database[DONATIONS].find()) == before


def test_reopen_intent_is_refused_while_another_intent_of_the_donation_is_open(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN d1's closed failed February intent and its open March intent
    february = _resolved_and_closed(store, _new("d1", FEBRUARY), claim=OLD_RUN)
    march = _open(store, _new("d1", MARCH), claim=OLD_RUN)
    before = _entry(database, february.ref)

    # WHEN run A reopens February
    reopened = store.reopen_intent(february, RUN_A, NOW, NOW + LEASE)

    # THEN it is refused: the open one goes first, and February stays as it was
    assert reopened is None
    assert _entry(database, february.ref) == before
    assert _entry(database, march.ref)["openFor"] == "d1"


# --- start_attempt -----------------------------------------------------------------------------------------


def _second_attempt(intent: ChargeIntent, sent_at: datetime = NOW) -> Attempt:
    return Attempt(2, attempt_key(intent.creation_key, 2), "pm_2", sent_at, creates=False)


def test_start_attempt_writes_the_attempt_for_the_lease_holder_once(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an intent run A opened, whose first attempt was declined (the PaymentIntent exists)
    opened = replace(_answered(_open(store), AttemptOutcome.DECLINED), payment_intent_id="pi_1")
    attempt = _second_attempt(opened, NOW + timedelta(days=3))

    # WHEN run A writes attempt 2, then writes attempt 2 again
    first = store.start_attempt(opened, RUN_A, attempt)
    again = store.start_attempt(opened, RUN_A, attempt)

    # THEN the first is written before it is sent (number, key, method, time), the second is refused
    assert (first, again) == (True, False)
    stored = _entry(database, opened.ref)
    assert stored["nextAttemptNumber"] == 3
    assert len(stored["attemptLog"]) == 2
    written = stored["attemptLog"][1]
    assert (written["number"], written["key"], written["paymentMethodId"]) == (
        2,
        "scheduled-donation:d1:2026-03-01:attempt-2",
        "pm_2",
    )
    assert (written["sentAt"], written["creates"], written["outcome"]) == (
        _naive(NOW + timedelta(days=3)),
        False,
        None,
    )
    assert stored["paymentIntentId"] == "pi_1"


@pytest.mark.parametrize("wrong", WRONG_CLAIMS, ids=WRONG_CLAIM_IDS)
def test_start_attempt_by_anyone_but_the_lease_holder_is_refused(
    database: Database[Any], store: MongoDonationStore, wrong: Claim
) -> None:
    # GIVEN an intent leased to run A
    opened = _open(store)
    before = _entry(database, opened.ref)

    # WHEN another writer starts attempt 2
    started = store.start_attempt(opened, wrong, _second_attempt(opened))

    # THEN it is refused and nothing changed
    assert started is False
    assert _entry(database, opened.ref) == before


def test_start_attempt_with_a_number_other_than_the_next_is_refused(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an intent leased to run A whose next attempt is 2
    opened = _open(store)
    before = _entry(database, opened.ref)
    key = opened.creation_key

    # WHEN attempt 3, or attempt 1 again, is started
    skipped = store.start_attempt(opened, RUN_A, Attempt(3, attempt_key(key, 3), "pm_1", NOW, creates=False))
    repeated = store.start_attempt(opened, RUN_A, Attempt(1, key, "pm_1", NOW, creates=True))

    # THEN both are refused and nothing changed
    assert (skipped, repeated) == (False, False)
    assert _entry(database, opened.ref) == before


# --- record_success / record_pending / record_stop ---------------------------------------------------------

RECORDS: dict[str, Callable[[MongoDonationStore, ChargeIntent, Claim], bool]] = {
    "success": lambda store, intent, claim: store.record_success(
        intent, claim, Charged("pi_1", 2500, "usd"), NOW
    ),
    "pending": lambda store, intent, claim: store.record_pending(
        intent, claim, NOW + timedelta(days=3), DECLINED, NOW
    ),
    "stop": lambda store, intent, claim: store.record_stop(
        intent, claim, _stopped(intent), {"deadLetterId": "dl-1"}, NOW
    ),
}


@pytest.mark.parametrize("record", list(RECORDS), ids=list(RECORDS))
@pytest.mark.parametrize("wrong", WRONG_CLAIMS, ids=WRONG_CLAIM_IDS)
def test_a_record_by_anyone_but_the_lease_holder_returns_false_and_changes_nothing(
    database: Database[Any], store: MongoDonationStore, wrong: Claim, record: str
) -> None:
    # GIVEN a pending intent leased to run A (fence 5)
    opened = _answered(_open(store), AttemptOutcome.DECLINED)
    before = _entry(database, opened.ref)

    # WHEN a writer with another run id or another fence records an outcome
    written = RECORDS[record](store, opened, wrong)

    # THEN it loses and the intent is exactly as it was
    assert written is False
    assert _entry(database, opened.ref) == before


@pytest.mark.parametrize("record", list(RECORDS), ids=list(RECORDS))
def test_a_record_on_an_intent_that_is_no_longer_pending_returns_false_and_changes_nothing(
    database: Database[Any], store: MongoDonationStore, record: str
) -> None:
    # GIVEN an intent run A resolved as succeeded (its lease still run A's)
    opened = _answered(_open(store), AttemptOutcome.SUCCEEDED)
    assert store.record_success(opened, RUN_A, Charged("pi_1", 2500, "usd"), NOW) is True
    before = _entry(database, opened.ref)

    # WHEN run A records an outcome again
    written = RECORDS[record](store, opened, RUN_A)

    # THEN it is refused: an intent is resolved exactly once
    assert written is False
    assert _entry(database, opened.ref) == before


def test_record_success_resolves_the_intent_and_keeps_it_open_until_the_schedule_moves_on(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an intent leased to run A whose attempt 1 succeeded
    opened = _answered(_open(store, now=NOW - timedelta(hours=1)), AttemptOutcome.SUCCEEDED)

    # WHEN run A records the charge
    written = store.record_success(opened, RUN_A, Charged("pi_1", 2400, "eur"), NOW)

    # THEN it is succeeded with Stripe's amount, its answered attempt, still open and found again from now
    assert written is True
    stored = _entry(database, opened.ref)
    assert (stored["status"], stored["paymentIntentId"], stored["amount"], stored["currency"]) == (
        "succeeded",
        "pi_1",
        2400,
        "eur",
    )
    assert stored["attemptLog"][0]["outcome"] == "succeeded"
    assert (stored["openFor"], stored["nextAttemptAt"], stored["resolvedAt"]) == (
        "d1",
        _naive(NOW),
        _naive(NOW),
    )


def test_record_pending_keeps_it_pending_and_gives_up_the_lease_but_not_the_fence(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an intent leased to run A whose attempt 1 was declined, with the PaymentIntent known
    opened = replace(
        _answered(_open(store), AttemptOutcome.DECLINED), payment_intent_id="pi_1", dunning_attempts=1
    )
    retry_at = NOW + timedelta(days=3)

    # WHEN run A keeps it pending until a dunning retry in three days
    written = store.record_pending(opened, RUN_A, retry_at, DECLINED, NOW)

    # THEN it is pending, open, due at the retry, with the decline; the lease is given up but the fence kept
    assert written is True
    stored = _entry(database, opened.ref)
    assert (stored["status"], stored["openFor"], stored["nextAttemptAt"]) == (
        "pending",
        "d1",
        _naive(retry_at),
    )
    assert (stored["attempts"], stored["paymentIntentId"]) == (1, "pi_1")
    assert stored["attemptLog"][0]["outcome"] == "declined"
    assert (stored["error"]["declineCode"], stored["error"]["runId"]) == ("insufficient_funds", "run-a")
    assert stored["lease"] == {"fence": 5}
    # AND run A cannot claim it again; a newer run can once the retry is due
    assert store.claim_intents(retry_at, RUN_A, 10, retry_at + LEASE, None) == []
    assert store.claim_intents(retry_at - timedelta(seconds=1), Claim("run-b", 6), 10, retry_at, None) == []
    assert len(store.claim_intents(retry_at, Claim("run-b", 6), 10, retry_at + LEASE, None)) == 1


def test_record_stop_fails_the_intent_and_parks_its_dead_letter_on_the_ledger_entry(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an intent leased to run A whose attempt 1 met a hard decline
    opened = _answered(_open(store), AttemptOutcome.DECLINED)
    letter = {"deadLetterId": "dl-1", "reason": "hard_decline", "donationId": "d1"}

    # WHEN run A stops it with a dead letter
    written = store.record_stop(opened, RUN_A, _stopped(opened), letter, NOW)

    # THEN it is failed with the reason and decline, still open, and its letter is parked on it
    assert written is True
    stored = _entry(database, opened.ref)
    assert (stored["status"], stored["stopReason"], stored["attempts"]) == (
        "failed",
        "hard_decline:stolen_card",
        1,
    )
    assert (stored["paymentIntentId"], stored["openFor"]) == ("pi_1", "d1")
    assert stored["pendingDeadLetter"] == letter
    assert store.pending_dead_letters(limit=10) == [ParkedLetter(opened.ref, letter, in_ledger=True)]


def test_record_stop_of_a_canceled_period_ends_it_canceled(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an intent leased to run A
    opened = _open(store)

    # WHEN run A stops it as canceled, without a dead letter
    written = store.record_stop(opened, RUN_A, _stopped(opened, canceled=True), None, NOW)

    # THEN it is canceled and no letter is parked
    assert written is True
    stored = _entry(database, opened.ref)
    assert stored["status"] == "canceled"
    assert "pendingDeadLetter" not in stored


# --- close_intents ---------------------------------------------------------------------------------------


def test_close_intents_closes_resolved_intents_only(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a succeeded, a failed and a still pending intent, all open
    succeeded = _open(store, _new("succeeded"))
    assert store.record_success(succeeded, RUN_A, Charged("pi_1", 2500, "usd"), NOW) is True
    failed = _open(store, _new("failed"))
    assert store.record_stop(failed, RUN_A, _stopped(failed), None, NOW) is True
    pending = _open(store, _new("pending"))

    # WHEN all three are closed
    store.close_intents([succeeded.ref, failed.ref, pending.ref])
    store.close_intents([])

    # THEN the resolved ones lose openFor and nextAttemptAt; the pending one stays open and due
    for ref in (succeeded.ref, failed.ref):
        stored = _entry(database, ref)
        assert [field for field in ("openFor", "nextAttemptAt") if field in stored] == []
        assert "runId" not in stored["lease"]
    still = _entry(database, pending.ref)
    assert (still["openFor"], still["nextAttemptAt"]) == ("pending", _naive(NOW))
    assert still["lease"]["runId"] == "run-a"


# --- adopt_legacy ------------------------------------------------------------------------------------------

LEGACY_ID = ObjectId("65f1c0ffee0000000000c001")


def _legacy_record(database: Database[Any], status: str, period: str = "2026-03-01") -> Any:
    """A `donations` record as a version before the charge intent wrote it: no schema, keyed by the raw id."""
    return (
        database[DONATIONS]
        .insert_one(
            {
                "scheduledDonationId": LEGACY_ID,
                "period": period,
                "status": status,
                "paymentIntentId": "pi_legacy",
                "amount": 2400,
                "currency": "usd",
                "attempts": 1,
                "runId": "old-version-run",
                "createdAt": _naive(NOW - timedelta(hours=2)),
                "updatedAt": _naive(NOW - timedelta(hours=2)),
            }
        )
        .inserted_id
    )


def test_adopt_legacy_turns_a_succeeded_record_into_a_succeeded_intent_in_place(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an earlier version's succeeded record of the period, keyed by the raw ObjectId
    record_id = _legacy_record(database, "succeeded")

    # WHEN the period's intent (canonical text id, another amount) adopts it
    adopted = store.adopt_legacy(_new(str(LEGACY_ID), amount=2500), LEGACY_ID, RUN_A, NOW, NOW + LEASE)

    # THEN the same document is now a schema-2 intent under the text id, still succeeded with what was charged
    assert adopted is not None
    assert (adopted.ref, adopted.scheduled_donation_id) == (record_id, "65f1c0ffee0000000000c001")
    assert (adopted.status, adopted.payment_intent_id, adopted.amount) == (
        IntentStatus.SUCCEEDED,
        "pi_legacy",
        2400,
    )
    assert (adopted.open, adopted.lease, adopted.legacy_record) == (True, RUN_A, False)
    stored = _entry(database, record_id)
    assert (stored["schema"], stored["scheduledDonationId"]) == (2, "65f1c0ffee0000000000c001")
    assert stored["createdAt"] == _naive(NOW - timedelta(hours=2))
    assert database[DONATIONS].count_documents({}) == 1


def test_adopt_legacy_turns_a_failed_record_into_a_pending_intent_in_place(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an earlier version's failed record of the period (still in dunning), keyed by the raw ObjectId
    record_id = _legacy_record(database, "failed")
    intent = _new(str(LEGACY_ID), amount=2500)

    # WHEN the period's intent adopts it
    adopted = store.adopt_legacy(intent, LEGACY_ID, RUN_A, NOW, NOW + LEASE)

    # THEN the same document is now a pending schema-2 intent leased to run A, with the intent's terms
    assert adopted is not None
    assert (adopted.ref, adopted.scheduled_donation_id) == (record_id, "65f1c0ffee0000000000c001")
    assert (adopted.status, adopted.open, adopted.lease) == (IntentStatus.PENDING, True, RUN_A)
    assert (adopted.amount, adopted.creation_key, adopted.attempts) == (
        2500,
        intent.creation_key,
        intent.attempts,
    )
    stored = _entry(database, record_id)
    assert (stored["schema"], stored["status"], stored["openFor"]) == (
        2,
        "pending",
        "65f1c0ffee0000000000c001",
    )
    assert database[DONATIONS].count_documents({}) == 1


def test_adopt_legacy_without_an_earlier_record_of_the_period_returns_none_and_writes_nothing(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an earlier version's record of another period only
    _legacy_record(database, "failed", period="2026-02-01")
    before = list(database[DONATIONS].find())

    # WHEN the March intent asks to adopt
    adopted = store.adopt_legacy(_new(str(LEGACY_ID)), LEGACY_ID, RUN_A, NOW, NOW + LEASE)

    # THEN there is nothing to adopt and nothing was written
    assert adopted is None
    assert list(database[DONATIONS].find()) == before


def test_adopt_legacy_leaves_an_intent_of_the_current_schema_alone(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a schema-2 intent already open for the period
    opened = _open(store, _new(str(LEGACY_ID)), claim=OLD_RUN)
    before = _entry(database, opened.ref)

    # WHEN the period's intent asks to adopt an earlier version's record
    adopted = store.adopt_legacy(_new(str(LEGACY_ID)), LEGACY_ID, RUN_A, NOW, NOW + LEASE)

    # THEN there is none to adopt, and the intent is untouched
    assert adopted is None
    assert _entry(database, opened.ref) == before


def test_adopt_legacy_is_refused_while_another_period_of_the_donation_is_open(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN an earlier version's failed March record and an open April intent of the same donation
    record_id = _legacy_record(database, "failed")
    _open(store, _new(str(LEGACY_ID), APRIL), claim=OLD_RUN)
    before = _entry(database, record_id)

    # WHEN the March intent adopts the record
    adopted = store.adopt_legacy(_new(str(LEGACY_ID)), LEGACY_ID, RUN_A, NOW, NOW + LEASE)

    # THEN the database refuses a second open intent: nothing is adopted and the record is unchanged
    assert adopted is None
    assert _entry(database, record_id) == before


# --- dead letters ------------------------------------------------------------------------------------------


def test_pending_dead_letters_come_from_ledger_entries_and_invalid_schedules(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a stopped intent with a letter, an invalid schedule with a letter, and a stopped intent without
    opened = _open(store, _new("d1"))
    ledger_letter = {"deadLetterId": "dl-ledger", "donationId": "d1"}
    assert store.record_stop(opened, RUN_A, _stopped(opened), ledger_letter, NOW) is True
    quiet = _open(store, _new("d3"))
    assert store.record_stop(quiet, RUN_A, _stopped(quiet), None, NOW) is True
    _claimed(database, "d2")
    schedule_letter = {"deadLetterId": "dl-schedule", "donationId": "d2"}
    assert store.reject_invalid("d2", RUN_A, "amount is missing", schedule_letter, NOW) is True

    # WHEN pending letters are read, all of them and one only
    everything = store.pending_dead_letters(limit=10)
    one = store.pending_dead_letters(limit=1)

    # THEN both come back with where they are parked; the limit holds
    assert everything == [
        ParkedLetter(opened.ref, ledger_letter, in_ledger=True),
        ParkedLetter("d2", schedule_letter, in_ledger=False),
    ]
    assert len(one) == 1


def test_clear_dead_letter_clears_only_the_matching_letter_in_its_own_collection(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a ledger entry and a schedule that share an _id, each with parked letter dl-1
    database[DONATIONS].insert_one({"_id": "shared", "pendingDeadLetter": {"deadLetterId": "dl-1"}})
    database[SCHEDULED].insert_one(
        {"_id": "shared", "status": "invalid", "pendingDeadLetter": {"deadLetterId": "dl-1"}}
    )

    # WHEN a different letter id is cleared on the ledger entry, then the right one
    store.clear_dead_letter(ParkedLetter("shared", {"deadLetterId": "dl-other"}, in_ledger=True))
    after_wrong = _entry(database, "shared")
    store.clear_dead_letter(ParkedLetter("shared", {"deadLetterId": "dl-1"}, in_ledger=True))

    # THEN the wrong id left it parked, the right id removed it from the ledger only
    assert after_wrong["pendingDeadLetter"] == {"deadLetterId": "dl-1"}
    assert "pendingDeadLetter" not in _entry(database, "shared")
    assert _get(database, "shared")["pendingDeadLetter"] == {"deadLetterId": "dl-1"}
    assert store.pending_dead_letters(limit=10) == [
        ParkedLetter("shared", {"deadLetterId": "dl-1"}, in_ledger=False)
    ]

    # WHEN the schedule's letter is cleared
    store.clear_dead_letter(ParkedLetter("shared", {"deadLetterId": "dl-1"}, in_ledger=False))

    # THEN nothing is pending any more
    assert "pendingDeadLetter" not in _get(database, "shared")
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
    # GIVEN two due schedules
    _add(database, "aware-utc", NOW - timedelta(days=1))
    _add(database, "aware-plus-2", NOW - timedelta(days=1))

    # WHEN one is advanced to an aware UTC moment and one to the same instant written in UTC+2
    next_run = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
    plus_2 = timezone(timedelta(hours=2))
    store.advance_schedule("aware-utc", "2026-02-28", NOW - timedelta(days=1), next_run, 1, NOW)
    store.advance_schedule(
        "aware-plus-2",
        "2026-02-28",
        (NOW - timedelta(days=1)).astimezone(plus_2),
        next_run.astimezone(plus_2),
        1,
        NOW,
    )

    # THEN both are stored as the same naive UTC instant, due exactly from that instant on
    assert _get(database, "aware-utc")["nextRunAt"] == datetime(2026, 4, 1, 0, 0)
    assert _get(database, "aware-plus-2")["nextRunAt"] == datetime(2026, 4, 1, 0, 0)
    assert store.find_due_ids(next_run - timedelta(milliseconds=1), 9, 10, None) == []
    assert sorted(store.find_due_ids(next_run, 9, 10, None)) == ["aware-plus-2", "aware-utc"]


def test_intent_dates_are_stored_as_naive_utc_and_read_back_as_aware_utc(
    database: Database[Any], store: MongoDonationStore
) -> None:
    # GIVEN a run whose clock reads in UTC-5
    minus_5 = timezone(timedelta(hours=-5))

    # WHEN it opens an intent
    opened = _open(store, now=NOW.astimezone(minus_5), lease_until=(NOW + LEASE).astimezone(minus_5))

    # THEN the database holds naive UTC, the intent reads aware UTC, and it is due from that instant on
    stored = _entry(database, opened.ref)
    assert (stored["nextAttemptAt"], stored["createdAt"], stored["dueAt"]) == (_naive(NOW),) * 3
    assert stored["lease"]["expiresAt"] == _naive(NOW + LEASE)
    assert (opened.next_attempt_at.tzinfo, opened.due_at.tzinfo) == (UTC, UTC)
    [read] = store.claim_intents(NOW + LEASE, Claim("run-b", 6), 10, NOW + 2 * LEASE, None)
    assert (read.next_attempt_at, read.created_at, read.lease_expires_at) == (NOW, NOW, NOW + 2 * LEASE)


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


# --- missed periods --------------------------------------------------------------------------------------


def test_record_missed_periods_writes_closed_entries_in_one_unordered_insert_and_keeps_existing_ones(
    database: Database[Any], store: MongoDonationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN d1 with an open February intent
    _open(store, _new("d1", FEBRUARY))
    log = _CallLog(database[DONATIONS])
    monkeypatch.setattr(store, "_donations", log)

    # WHEN February, March and April of d1 are recorded as missed in one call
    written = store.record_missed_periods([_new("d1", due) for due in (FEBRUARY, MARCH, APRIL)], RUN_A, NOW)

    # THEN one insert wrote March and April, February kept its intent, answers in input order
    assert log.calls == ["insert_many"]
    assert written == [False, True, True]
    entries = {entry["period"]: entry for entry in database[DONATIONS].find({"scheduledDonationId": "d1"})}
    assert {period: entry["status"] for period, entry in entries.items()} == {
        "2026-02-01": "pending",
        "2026-03-01": "missed",
        "2026-04-01": "missed",
    }
    # AND a missed entry is closed and never attempted: no open slot, no due date, no lease, no attempt
    march = entries["2026-03-01"]
    assert not {"openFor", "nextAttemptAt", "lease"} & set(march)
    assert (march["attemptLog"], march["attempts"], march["runId"]) == ([], 0, RUN_A.run_id)
    assert march["dueAt"] == _naive(MARCH)
    monkeypatch.undo()
    entry = store.period_entry("d1", "2026-03-01")
    assert entry is not None
    assert (entry.status, entry.open) == (IntentStatus.MISSED, False)
