"""The fake store keeps the adapter's promises: each check runs on FakeStore and on MongoDonationStore over
mongomock (both in memory), so the fast tier cannot drift from what the engine meets in MongoDB."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import mongomock
import pytest
from bson import ObjectId
from pymongo.database import Database

from donation_processor.adapters.donation_store import SCHEDULED, MongoDonationStore
from donation_processor.charge_intent import Attempt, ChargeIntent, NewIntent
from donation_processor.charge_outcome import FailureKind, StripeFailure
from donation_processor.charge_rules import Charged, Stopped, StopReason
from donation_processor.idempotency import payment_intent_key
from donation_processor.ports import Claim, DonationStorePort, ScheduleWrite
from donation_processor.schedule import as_utc
from harness.local.seed import naive_utc, scheduled_donation
from tests.support.fakes import FakeStore, sockets_disabled

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DUE = NOW - timedelta(hours=3)
PERIOD = "2026-03-01"
NEXT_PERIOD = "2026-04-01"
LEASE = timedelta(minutes=15)
EXPIRED = NOW + LEASE + timedelta(minutes=1)
RUN_A = Claim("run-a", 5)
RUN_B = Claim("run-b", 6)
RUN_C = Claim("run-c", 7)
STOLEN = StripeFailure(
    FailureKind.HARD_DECLINE, "card_error", code="card_declined", decline_code="stolen_card"
)


class Backend(Protocol):
    store: DonationStorePort

    def add(self, donation_id: Any, **fields: Any) -> Any: ...

    def schedule(self, donation_id: Any) -> dict[str, Any] | None: ...

    def host_edit(self, donation_id: Any, **fields: Any) -> None: ...


class FakeBackend:
    def __init__(self) -> None:
        self.fake = FakeStore()
        self.store: DonationStorePort = self.fake

    def add(self, donation_id: Any, **fields: Any) -> Any:
        return self.fake.add_schedule(_donation(donation_id, **fields))

    def schedule(self, donation_id: Any) -> dict[str, Any] | None:
        return self.fake.schedule(donation_id) if donation_id in self.fake.scheduled else None

    def host_edit(self, donation_id: Any, **fields: Any) -> None:
        self.fake.host_edit(donation_id, **fields)


class MongomockBackend:
    def __init__(self) -> None:
        self.database: Database[Any] = mongomock.MongoClient()["parity"]
        self.store: DonationStorePort = MongoDonationStore(self.database)
        self.store.ensure_indexes()

    def add(self, donation_id: Any, **fields: Any) -> Any:
        self.database[SCHEDULED].insert_one(_donation(donation_id, **fields))
        return donation_id

    def schedule(self, donation_id: Any) -> dict[str, Any] | None:
        found = self.database[SCHEDULED].find_one({"_id": donation_id})
        return None if found is None else dict(found)

    def host_edit(self, donation_id: Any, **fields: Any) -> None:
        self.database[SCHEDULED].update_one({"_id": donation_id}, {"$set": fields})


def _donation(donation_id: Any, **fields: Any) -> dict[str, Any]:
    return scheduled_donation(customer_id="cus_parity", next_run_at=DUE, donation_id=donation_id, **fields)


@pytest.fixture(autouse=True)
def no_sockets() -> Iterator[None]:
    with sockets_disabled():
        yield


@pytest.fixture(params=["fake", "mongomock"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return FakeBackend() if request.param == "fake" else MongomockBackend()


def new_intent(donation_id: str, period: str = PERIOD) -> NewIntent:
    due = as_utc(datetime.fromisoformat(period)).replace(hour=9)
    key = payment_intent_key(donation_id, period)
    return NewIntent(
        scheduled_donation_id=donation_id,
        period=period,
        due_at=due,
        seen_next_run_at=due,
        amount=2500,
        currency="usd",
        customer_id="cus_parity",
        payment_method_id="pm_card_visa",
        creation_key=key,
        donor_id=None,
        attempts=(Attempt(1, key, "pm_card_visa", NOW, creates=True),),
    )


def open_one(backend: Backend, intent: NewIntent, claim: Claim = RUN_A) -> tuple[ChargeIntent, bool]:
    (opened,) = backend.store.open_intents([intent], claim, NOW, NOW + LEASE)
    return opened


def stop(backend: Backend, intent: ChargeIntent, claim: Claim = RUN_A) -> None:
    stopped = Stopped(StopReason.SCHEDULE_INACTIVE, None, 0, None, canceled=True, dead_letter=False)
    assert backend.store.record_stop(intent, claim, stopped, None, NOW)
    backend.store.close_intents([intent.ref])


# -- schedules ----------------------------------------------------------------------------------------------


def test_a_live_claim_keeps_a_donation_from_every_run_and_only_a_newer_fence_gets_it_once_expired(
    backend: Backend,
) -> None:
    # GIVEN a due donation claimed by run A
    backend.add("don-1")
    (claimed,) = backend.store.claim(["don-1"], RUN_A, NOW, NOW + LEASE)
    assert (claimed["claimedBy"], claimed["claimFence"]) == ("run-a", 5)

    # WHEN other runs look for due donations, before and after A's lease expires
    # THEN a live claim hides it from all; once expired, a newer fence finds it and an older one never does
    assert backend.store.find_due_ids(NOW, RUN_B.fence, 10, None) == []
    assert backend.store.find_due_ids(EXPIRED, RUN_B.fence, 10, None) == ["don-1"]
    assert backend.store.find_due_ids(EXPIRED, RUN_A.fence, 10, None) == []
    assert backend.store.claim(["don-1"], Claim("old", 4), EXPIRED, EXPIRED + LEASE) == []


def test_a_released_donation_stays_due_but_not_for_the_run_that_let_it_go(backend: Backend) -> None:
    # GIVEN a due donation claimed by run A
    backend.add("don-1")
    backend.store.claim(["don-1"], RUN_A, NOW, NOW + LEASE)

    # WHEN A lets it go untouched, and a run that never claimed it tries to
    released = backend.store.release("don-1", RUN_A, {"reason": "stopping", "at": NOW})
    by_stranger = backend.store.release("don-1", RUN_B, None)

    # THEN only A's release counts; A cannot claim it again, a newer run can
    assert (released, by_stranger) == (True, False)
    schedule = backend.schedule("don-1")
    assert schedule is not None
    assert "claimedBy" not in schedule
    assert schedule["lastError"]["reason"] == "stopping"
    assert backend.store.find_due_ids(NOW, RUN_A.fence, 10, None) == []
    assert backend.store.find_due_ids(NOW, RUN_B.fence, 10, None) == ["don-1"]


def test_a_donation_with_an_open_period_is_neither_due_nor_overdue_until_released(backend: Backend) -> None:
    # GIVEN a due donation whose period waits on a dunning retry
    backend.add("don-1")
    backend.store.hold_schedule("don-1", PERIOD, NOW + timedelta(days=1))

    # WHEN the job looks for work
    # THEN the schedule is neither claimable, streamed for a dry run, nor counted as overdue
    assert backend.store.find_due_ids(NOW, RUN_B.fence, 10, None) == []
    assert list(backend.store.iter_due(NOW, None, None)) == []
    assert backend.store.count_overdue(NOW) == 0

    # WHEN the period is let go
    backend.store.release_schedule("don-1")

    # THEN it is due again
    assert backend.store.find_due_ids(NOW, RUN_B.fence, 10, None) == ["don-1"]
    assert backend.store.count_overdue(NOW) == 1


def test_a_schedule_moves_past_a_period_once_and_reports_a_host_edit_or_a_deletion(backend: Backend) -> None:
    # GIVEN two due donations, one of which the host then moves
    backend.add("don-1")
    backend.add("don-2")
    backend.host_edit("don-2", nextRunAt=naive_utc(DUE - timedelta(days=1)))
    following = DUE + timedelta(days=31)

    # WHEN the engine moves each past the period, twice
    first = backend.store.advance_schedule("don-1", PERIOD, DUE, following, 1, NOW)
    again = backend.store.advance_schedule("don-1", PERIOD, DUE, following + timedelta(days=31), 1, NOW)
    edited = backend.store.advance_schedule("don-2", PERIOD, DUE, following, 1, NOW)
    gone = backend.store.advance_schedule("don-3", PERIOD, DUE, following, 1, NOW)

    # THEN the first write moved it once; the edited one must be read again; the deleted one is gone
    assert (first, again, edited, gone) == (
        ScheduleWrite.APPLIED,
        ScheduleWrite.ALREADY,
        ScheduleWrite.CHANGED,
        ScheduleWrite.GONE,
    )
    schedule = backend.schedule("don-1")
    assert schedule is not None
    assert (as_utc(schedule["nextRunAt"]), schedule["lastChargedPeriod"]) == (following, PERIOD)


def test_stopping_a_schedule_keeps_a_hosts_cancel_and_ends_the_period_either_way(backend: Backend) -> None:
    # GIVEN two donations with a period open, one of which the host cancelled
    for donation_id in ("don-1", "don-2"):
        backend.add(donation_id)
        backend.store.hold_schedule(donation_id, PERIOD, NOW)
    backend.host_edit("don-2", status="cancelled")

    # WHEN the engine stops both after a hard decline
    stopped = [
        backend.store.stop_schedule(d, PERIOD, "payment_failed", "hard_decline", NOW)
        for d in ("don-1", "don-2")
    ]

    # THEN only the active one takes the engine's status; both have their period closed
    assert stopped == [True, False]
    active, cancelled = backend.schedule("don-1"), backend.schedule("don-2")
    assert active is not None
    assert cancelled is not None
    assert (active["status"], cancelled["status"]) == ("payment_failed", "cancelled")
    assert "openPeriod" not in active
    assert "openPeriod" not in cancelled


def test_an_object_id_and_its_hex_string_are_reported_as_twins(backend: Backend) -> None:
    # GIVEN two documents whose ids read the same, and one whose id is its own
    same = ObjectId()
    backend.add(same)
    backend.add(str(same))
    backend.add("don-alone")

    # WHEN the engine asks which ids have twins
    # THEN the pair is reported (by its text form), the other is not
    assert backend.store.ids_with_twins([same, str(same), "don-alone"]) == {str(same)}


# -- charge intents -----------------------------------------------------------------------------------------


def test_a_donation_has_one_open_intent_and_a_period_one_entry(backend: Backend) -> None:
    # GIVEN a donation whose March period is open
    march, created = open_one(backend, new_intent("don-1"))
    assert created

    # WHEN April's intent is written while March is open
    blocker, created = open_one(backend, new_intent("don-1", NEXT_PERIOD), RUN_B)

    # THEN the open March intent is returned instead
    assert (created, blocker.ref, blocker.period) == (False, march.ref, PERIOD)

    # WHEN March is paid and closed, and March's intent is written again, then April's
    assert backend.store.record_success(march, RUN_A, Charged("pi_1", 2500, "usd"), NOW)
    backend.store.close_intents([march.ref])
    paid, march_again = open_one(backend, new_intent("don-1"), RUN_B)
    _, april_created = open_one(backend, new_intent("don-1", NEXT_PERIOD), RUN_B)

    # THEN March's one entry is returned, paid and closed; April opens
    assert (march_again, paid.ref, str(paid.status), paid.open) == (False, march.ref, "succeeded", False)
    assert april_created


def test_an_intent_leased_to_a_live_run_is_taken_by_no_other_and_its_stale_writes_are_refused(
    backend: Backend,
) -> None:
    # GIVEN an intent leased to run A
    intent, _ = open_one(backend, new_intent("don-1"))

    # WHEN run B tries to take it while A's lease lives, and again once it expired
    early = backend.store.take_intent(intent, RUN_B, NOW, NOW + LEASE)
    taken = backend.store.take_intent(intent, RUN_B, EXPIRED, EXPIRED + LEASE)

    # THEN B gets it only after expiry, and A's late writes are all refused
    assert early is None
    assert taken is not None
    assert taken.lease == RUN_B
    assert not backend.store.record_success(intent, RUN_A, Charged("pi_1", 2500, "usd"), EXPIRED)
    assert not backend.store.record_pending(intent, RUN_A, EXPIRED, None, EXPIRED)
    assert not backend.store.start_attempt(intent, RUN_A, replace(intent.attempts[0], number=2))

    # WHEN B leaves it pending for a retry tomorrow
    tomorrow = EXPIRED + timedelta(days=1)
    assert backend.store.record_pending(taken, RUN_B, tomorrow, None, EXPIRED)

    # THEN no run claims it before tomorrow; then a newer run does, and B's own fence never again
    assert backend.store.claim_intents(EXPIRED, RUN_C, 10, EXPIRED + LEASE, None) == []
    assert backend.store.claim_intents(tomorrow, RUN_B, 10, tomorrow + LEASE, None) == []
    (claimed,) = backend.store.claim_intents(tomorrow, RUN_C, 10, tomorrow + LEASE, None)
    assert (claimed.ref, claimed.lease) == (intent.ref, RUN_C)


def test_a_stopped_period_is_reopened_only_while_no_other_period_of_the_donation_is_open(
    backend: Backend,
) -> None:
    # GIVEN March stopped and closed, and April then opened
    march, _ = open_one(backend, new_intent("don-1"))
    stop(backend, march)
    april, created = open_one(backend, new_intent("don-1", NEXT_PERIOD))
    assert created

    # WHEN March is reopened while April is open, and again once April is stopped
    while_april_open = backend.store.reopen_intent(march, RUN_B, NOW, NOW + LEASE)
    stop(backend, april)
    reopened = backend.store.reopen_intent(march, RUN_B, NOW, NOW + LEASE)

    # THEN only the second reopening takes it: pending, open and leased to the reopening run
    assert while_april_open is None
    assert reopened is not None
    assert (str(reopened.status), reopened.open, reopened.lease, reopened.stop_reason) == (
        "pending",
        True,
        RUN_B,
        None,
    )


def test_dead_letters_parked_on_an_intent_and_on_a_schedule_wait_until_each_is_cleared(
    backend: Backend,
) -> None:
    # GIVEN an invalid schedule and a hard-declined intent, each with its dead letter parked
    backend.add("don-bad")
    backend.store.claim(["don-bad"], RUN_A, NOW, NOW + LEASE)
    assert backend.store.reject_invalid("don-bad", RUN_A, "amount", {"deadLetterId": "letter-schedule"}, NOW)
    intent, _ = open_one(backend, new_intent("don-1"))
    declined = Stopped(StopReason.HARD_DECLINE, STOLEN, 1, "pi_1")
    assert backend.store.record_stop(intent, RUN_A, declined, {"deadLetterId": "letter-intent"}, NOW)

    # WHEN the courier reads what is parked
    parked = backend.store.pending_dead_letters(10)

    # THEN both are there, the ledger's first
    assert [(letter.letter["deadLetterId"], letter.in_ledger) for letter in parked] == [
        ("letter-intent", True),
        ("letter-schedule", False),
    ]

    # WHEN one is cleared under another letter's id, then each under its own
    backend.store.clear_dead_letter(replace(parked[0], letter={"deadLetterId": "someone-else"}))
    assert len(backend.store.pending_dead_letters(10)) == 2
    for letter in parked:
        backend.store.clear_dead_letter(letter)

    # THEN nothing is parked any more
    assert backend.store.pending_dead_letters(10) == []


# -- missed periods -----------------------------------------------------------------------------------------


def test_a_missed_period_is_written_once_closed_and_never_reopened_or_counted_overdue(
    backend: Backend,
) -> None:
    # GIVEN February recorded as missed, and January already holding an open intent
    january, _ = open_one(backend, new_intent("don-1", "2026-01-01"))
    assert backend.store.record_missed_periods([new_intent("don-1", "2026-02-01")], RUN_A, NOW) == [True]

    # WHEN January, February and March are recorded as missed in one call
    written = backend.store.record_missed_periods(
        [new_intent("don-1", period) for period in ("2026-01-01", "2026-02-01", "2026-03-01")], RUN_B, NOW
    )

    # THEN only March is new: a period keeps the one entry it has
    assert written == [False, False, True]
    # AND a missed entry is closed: it takes no open slot, is not claimable, not overdue, and not reopened
    april, created = open_one(backend, new_intent("don-1", NEXT_PERIOD), RUN_B)
    assert (created, april.period) == (False, "2026-01-01")  # January is still the open one
    assert [
        intent.ref for intent in backend.store.claim_intents(EXPIRED, RUN_C, 10, EXPIRED + LEASE, None)
    ] == [january.ref]
    assert backend.store.count_overdue(EXPIRED + timedelta(days=400)) == 1  # January's open intent alone
    stop(backend, january, RUN_C)
    march, created = open_one(backend, new_intent("don-1", "2026-03-01"), RUN_C)
    assert (created, str(march.status), march.open) == (False, "missed", False)
    assert backend.store.reopen_intent(march, RUN_C, EXPIRED, EXPIRED + LEASE) is None
