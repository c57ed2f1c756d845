"""The whole engine, run after run, on in-memory fakes of every port: no server, no socket, no sleeping.

Each test judges by the money first (FakePayments' ledger of charges and the keyed requests Stripe saw),
then by what the store holds: the host's schedule document and the engine's charge intent.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from donation_processor import donor_event_types as donor_events
from donation_processor.config import load_settings
from donation_processor.engine import DonationEngine, EngineDependencies
from donation_processor.idempotency import attempt_key, payment_intent_key
from donation_processor.invocation import RunRequest
from donation_processor.schedule import as_utc
from donation_processor.summary import RunSummary
from harness.local.seed import scheduled_donation
from tests.support.fakes import (
    FakeClock,
    FakeDeadLetters,
    FakeDonorEvents,
    FakeLock,
    FakePayments,
    FakeStore,
    SocketUsedError,
    sockets_disabled,
)

NOW = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
DUE = NOW - timedelta(hours=1)
PERIOD = "2026-03-01"
CARD = "pm_card_visa"
LOW_FUNDS_CARD = "pm_card_lowFunds"
NEW_CARD = "pm_card_new"
PAST_EVERY_LEASE = timedelta(minutes=16)  # the lock's (2 min) and the claims' (15 min)
ENVIRONMENT = {
    "STRIPE_SECRET_KEY": "sk_test_fast_tier",
    "LOCK_TABLE_NAME": "run-lock",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.invalid/dead-letters",
    "MAX_CONCURRENCY": "4",
}


@dataclass
class World:
    """Every port as an in-memory fake, and one clock they all read (cosmicpython's bootstrap_test_app)."""

    clock: FakeClock = field(default_factory=lambda: FakeClock(NOW))
    store: FakeStore = field(default_factory=FakeStore)
    payments: FakePayments = field(default_factory=FakePayments)
    dead_letters: FakeDeadLetters = field(default_factory=FakeDeadLetters)
    donor_events: FakeDonorEvents = field(default_factory=FakeDonorEvents)
    lock: FakeLock = field(init=False)

    def __post_init__(self) -> None:
        self.lock = FakeLock(self.clock)

    def engine(self, **environment: str) -> DonationEngine:
        dependencies = EngineDependencies(
            lock=self.lock,
            store=self.store,
            payments=self.payments,
            dead_letters=self.dead_letters,
            donor_events=self.donor_events,
        )
        settings = load_settings({**ENVIRONMENT, **environment})
        return DonationEngine(settings, dependencies, clock=self.clock, sleep=lambda _seconds: None)

    def run(self, **environment: str) -> RunSummary:
        return self.engine(**environment).run(RunRequest(source="schedule"), lambda: 900_000)

    def given_due(self, payment_method: str = CARD, **fields: Any) -> Any:
        """A monthly donation of 25.00 USD that fell due an hour ago."""
        return self.store.add_schedule(
            scheduled_donation(
                customer_id="cus_fast1", next_run_at=DUE, payment_method_id=payment_method, **fields
            )
        )

    def the_intent(self, donation_id: Any) -> dict[str, Any]:
        (intent,) = self.store.intents_of(donation_id)
        return intent


@pytest.fixture(autouse=True)
def no_sockets() -> Iterator[None]:
    with sockets_disabled():
        yield


@pytest.fixture
def world() -> World:
    return World()


def next_run(document: dict[str, Any]) -> datetime:
    return as_utc(document["nextRunAt"])


def periods_charged(payments: FakePayments) -> list[str]:
    return [charge.metadata["period"] for charge in payments.charges]


def test_the_fast_tier_cannot_open_a_socket() -> None:
    # GIVEN the guard every test here runs under
    # WHEN anything opens a connection
    # THEN it is refused before a socket exists
    with pytest.raises(SocketUsedError):
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)


def test_a_due_donation_is_charged_once_and_the_schedule_moves_one_month(world: World) -> None:
    # GIVEN one monthly donation due an hour ago
    donation_id = world.given_due()

    # WHEN the job runs, and runs again at once
    first = world.run()
    second = world.run()

    # THEN Stripe took 25.00 once, under the period's key, and the ledger entry holds that PaymentIntent
    (charge,) = world.payments.charges
    assert (charge.amount, charge.currency, charge.payment_method) == (2500, "usd", CARD)
    assert charge.idempotency_key == payment_intent_key(str(donation_id), PERIOD)
    assert charge.metadata == {"scheduled_donation_id": str(donation_id), "period": PERIOD}
    assert (first.status, first.due, first.succeeded, first.amount_by_currency) == (
        "completed",
        1,
        1,
        {"usd": 2500},
    )
    assert (second.status, second.due, second.succeeded) == ("completed", 0, 0)
    intent = world.the_intent(donation_id)
    assert (intent["status"], intent["paymentIntentId"]) == ("succeeded", charge.payment_intent_id)
    assert "openFor" not in intent
    # and the schedule moved one month, with nothing of the run left on it
    schedule = world.store.schedule(donation_id)
    assert next_run(schedule) == DUE.replace(month=4)
    assert schedule["lastChargedPeriod"] == PERIOD
    assert not {"claimedBy", "openPeriod", "nextAttemptAt"} & schedule.keys()
    assert [event["period"] for event in world.donor_events.of_type(donor_events.CHARGE_SUCCEEDED)] == [
        PERIOD
    ]
    assert (world.lock.last_run or {}).get("status") == "completed"


def test_a_soft_decline_waits_on_the_dunning_schedule_and_a_new_card_is_charged_on_the_next_attempt_with_a_new_key(  # noqa: E501
    world: World,
) -> None:
    # GIVEN a donation whose card is declined for insufficient funds
    world.payments.decline(LOW_FUNDS_CARD, "insufficient_funds")
    donation_id = world.given_due(payment_method=LOW_FUNDS_CARD)

    # WHEN the job runs, and again an hour later
    declined = world.run()
    world.clock.advance(hours=1)
    too_early = world.run()

    # THEN nothing was charged; the period waits one day (the dunning schedule's first entry)
    assert world.payments.charges == []
    assert (declined.failed, too_early.due) == (1, 0)
    schedule = world.store.schedule(donation_id)
    assert (schedule["status"], schedule["openPeriod"]) == ("active", PERIOD)
    assert as_utc(schedule["nextAttemptAt"]) == NOW + timedelta(days=1)
    intent = world.the_intent(donation_id)
    assert (intent["status"], intent["attempts"]) == ("pending", 1)

    # WHEN the donor gives the host a new card, and the retry falls due
    world.store.host_edit(donation_id, stripePaymentMethodId=NEW_CARD)
    world.clock.now = NOW + timedelta(days=1, minutes=1)
    retried = world.run()

    # THEN the new card was charged once, by a new attempt under a key of its own
    creation_key = payment_intent_key(str(donation_id), PERIOD)
    (charge,) = world.payments.charges
    assert (charge.payment_method, charge.idempotency_key) == (NEW_CARD, attempt_key(creation_key, 2))
    assert [(request.key, request.answer) for request in world.payments.keyed_requests] == [
        (creation_key, "insufficient_funds"),
        (attempt_key(creation_key, 2), "succeeded"),
    ]
    assert retried.succeeded == 1
    intent = world.the_intent(donation_id)
    assert (intent["status"], intent["paymentIntentId"]) == ("succeeded", charge.payment_intent_id)
    # and the schedule goes on from the period just paid
    schedule = world.store.schedule(donation_id)
    assert next_run(schedule) == DUE.replace(month=4)
    assert "openPeriod" not in schedule
    assert len(world.donor_events.of_type(donor_events.RETRY_SCHEDULED)) == 1


def test_a_lost_answer_is_resent_with_the_same_key_and_parameters_next_run_and_recorded_once(
    world: World,
) -> None:
    # GIVEN Stripe charges the first request and the connection drops before its answer, no retry in run
    world.payments.lose_next_answers(1)
    donation_id = world.given_due()
    first = world.run(STRIPE_RETRY_ATTEMPTS="0")
    assert len(world.payments.charges) == 1
    assert first.failed == 1
    intent = world.the_intent(donation_id)
    assert intent["status"] == "pending"
    assert [entry["outcome"] for entry in intent["attemptLog"]] == [None]

    # WHEN the job runs an hour later
    world.clock.advance(hours=1)
    second = world.run(STRIPE_RETRY_ATTEMPTS="0")

    # THEN the same request went out again (same key, same parameters), Stripe replayed its answer,
    # and that one charge is recorded once
    (charge,) = world.payments.charges
    original, resent = world.payments.keyed_requests
    assert (resent.key, resent.params) == (original.key, original.params)
    assert (original.replayed, resent.replayed) == (False, True)
    assert second.succeeded == 1
    intent = world.the_intent(donation_id)
    assert (intent["status"], intent["paymentIntentId"]) == ("succeeded", charge.payment_intent_id)
    assert next_run(world.store.schedule(donation_id)) == DUE.replace(month=4)
    assert len(world.donor_events.of_type(donor_events.CHARGE_SUCCEEDED)) == 1


@pytest.mark.parametrize(
    ("hours_later", "stripe_forgot_the_key"),
    [(1, False), (25, True)],
    ids=["answer_replayed_by_key", "payment_intent_found_by_metadata"],
)
def test_the_host_moving_next_run_at_earlier_after_a_lost_answer_does_not_charge_the_cycle_again(
    hours_later: int, stripe_forgot_the_key: bool, world: World
) -> None:
    # GIVEN a charge whose answer was lost
    world.payments.lose_next_answers(1)
    donation_id = world.given_due()
    world.run(STRIPE_RETRY_ATTEMPTS="0")
    assert len(world.payments.charges) == 1
    # and the host then moves the charge date one day earlier
    moved = DUE - timedelta(days=1)
    world.store.host_edit(donation_id, nextRunAt=moved.replace(tzinfo=None))

    # WHEN the job runs later, and again the next day
    world.clock.advance(hours=hours_later)
    if stripe_forgot_the_key:
        world.payments.forget_idempotency_keys()
    recovered = world.run()
    world.clock.advance(days=1)
    world.run()

    # THEN the cycle was charged once, that charge recorded, and the next charge is on the host's new day
    (charge,) = world.payments.charges
    assert recovered.succeeded == 1
    intent = world.the_intent(donation_id)
    assert (intent["status"], intent["paymentIntentId"]) == ("succeeded", charge.payment_intent_id)
    assert next_run(world.store.schedule(donation_id)) == moved.replace(month=3)

    # WHEN that day comes
    world.clock.now = moved.replace(month=3) + timedelta(hours=1)
    world.run()

    # THEN the following cycle is charged once, four weeks after the first
    assert periods_charged(world.payments) == [PERIOD, "2026-03-28"]


def test_the_host_moving_next_run_at_back_onto_a_paid_period_charges_nothing_and_the_schedule_moves_on_again(
    world: World,
) -> None:
    # GIVEN a donation charged for March, whose schedule moved on to April
    donation_id = world.given_due()
    world.run()
    # and the host then puts nextRunAt back on the March date already paid
    world.store.host_edit(donation_id, nextRunAt=DUE.replace(tzinfo=None))

    # WHEN the job runs an hour later
    world.clock.advance(hours=1)
    world.run()

    # THEN March is not charged again, and the schedule is back on April with no claim left behind
    assert periods_charged(world.payments) == [PERIOD]
    schedule = world.store.schedule(donation_id)
    assert next_run(schedule) == DUE.replace(month=4)
    assert "claimedBy" not in schedule

    # WHEN April comes
    world.clock.now = DUE.replace(month=4) + timedelta(hours=1)
    world.run()

    # THEN April is charged once
    assert periods_charged(world.payments) == [PERIOD, "2026-04-01"]


def test_a_hard_decline_stops_the_schedule_and_tells_an_operator_and_the_donor_once(world: World) -> None:
    # GIVEN a donation whose card is reported stolen
    world.payments.decline("pm_card_stolen", "stolen_card")
    donation_id = world.given_due(payment_method="pm_card_stolen")

    # WHEN the job runs, and again the next day
    first = world.run()
    world.clock.advance(days=1)
    second = world.run()

    # THEN one request reached Stripe and nothing was charged
    assert world.payments.charges == []
    assert [request.answer for request in world.payments.keyed_requests] == ["stolen_card"]
    assert (first.failed, first.dead_lettered, second.due) == (1, 1, 0)
    # and the period and the schedule are stopped, with one dead letter and one donor event
    intent = world.the_intent(donation_id)
    assert (intent["status"], intent["stopReason"]) == ("failed", "hard_decline:stolen_card")
    assert "pendingDeadLetter" not in intent  # delivered
    schedule = world.store.schedule(donation_id)
    assert (schedule["status"], schedule["stopReason"]) == ("payment_failed", "hard_decline:stolen_card")
    assert [letter["reason"] for letter in world.dead_letters.letters] == ["hard_decline"]
    assert len(world.donor_events.of_type(donor_events.PAYMENT_METHOD_UPDATE_REQUIRED)) == 1


def test_a_cancelled_donations_in_flight_charge_is_still_recorded(world: World) -> None:
    # GIVEN a charge whose answer was lost
    world.payments.lose_next_answers(1)
    donation_id = world.given_due()
    world.run(STRIPE_RETRY_ATTEMPTS="0")
    # and the host then cancels the donation
    world.store.host_edit(donation_id, status="cancelled")

    # WHEN the job runs an hour later, and again two months on
    world.clock.advance(hours=1)
    recovered = world.run()
    world.clock.advance(days=60)
    later = world.run()

    # THEN the money taken is recorded, nothing more was charged, and the host's status stands
    (charge,) = world.payments.charges
    assert (recovered.succeeded, later.due) == (1, 0)
    intent = world.the_intent(donation_id)
    assert (intent["status"], intent["paymentIntentId"]) == ("succeeded", charge.payment_intent_id)
    assert "openFor" not in intent
    schedule = world.store.schedule(donation_id)
    assert schedule["status"] == "cancelled"
    assert not {"claimedBy", "openPeriod", "nextAttemptAt"} & schedule.keys()


def test_a_stale_run_that_loses_its_lease_counts_nothing(world: World) -> None:
    # GIVEN a due donation, and a run that stalls on its way to Stripe until every lease it held expired,
    # while a newer run takes the lock, leases the same intent and charges it
    donation_id = world.given_due()
    newer: list[RunSummary] = []

    def newer_run_takes_over() -> None:
        world.clock.advance(seconds=PAST_EVERY_LEASE.total_seconds())
        newer.append(world.run())

    world.payments.before_next("create", newer_run_takes_over)

    # WHEN the stale run's request finally reaches Stripe
    stale = world.run()

    # THEN Stripe charged once (the stale request replayed the newer one's answer), the newer run counted
    # and announced it, and the stale run counted nothing
    (charge,) = world.payments.charges
    assert [request.replayed for request in world.payments.keyed_requests] == [False, True]
    assert (newer[0].succeeded, stale.succeeded) == (1, 0)
    assert (stale.failed, stale.amount_by_currency) == (0, {})
    intent = world.the_intent(donation_id)
    assert (intent["status"], intent["paymentIntentId"]) == ("succeeded", charge.payment_intent_id)
    assert intent["runId"] == newer[0].run_id
    assert next_run(world.store.schedule(donation_id)) == DUE.replace(month=4)
    assert len(world.donor_events.of_type(donor_events.CHARGE_SUCCEEDED)) == 1


def test_twin_ids_are_both_refused(world: World) -> None:
    # GIVEN two due donations whose ids read the same: an ObjectId and its hex string
    same = ObjectId()
    world.given_due(donation_id=same)
    world.given_due(donation_id=str(same))

    # WHEN the job runs
    summary = world.run()

    # THEN neither was charged (they would share one key), both are invalid, each with its dead letter
    assert world.payments.charges == []
    assert world.payments.keyed_requests == []
    assert summary.invalid == 2
    for donation_id in (same, str(same)):
        schedule = world.store.schedule(donation_id)
        assert schedule["status"] == "invalid"
        assert "pendingDeadLetter" not in schedule  # delivered, so no longer parked
    assert [letter["reason"] for letter in world.dead_letters.letters] == ["invalid_document"] * 2
    assert world.store.intents_of(str(same)) == []


def test_a_run_with_nothing_due_completes(world: World) -> None:
    # GIVEN a donation due tomorrow and a cancelled one that is past its date
    tomorrow = world.given_due(nextRunAt=(NOW + timedelta(days=1)).replace(tzinfo=None))
    cancelled = world.given_due(status="cancelled")
    before = {donation_id: world.store.schedule(donation_id) for donation_id in (tomorrow, cancelled)}

    # WHEN the job runs
    summary = world.run()

    # THEN it completed without a request to Stripe or a write to any schedule
    assert (summary.status, summary.due, summary.succeeded, summary.failed) == ("completed", 0, 0, 0)
    assert world.payments.charges == []
    assert world.payments.keyed_requests == []
    assert {donation_id: world.store.schedule(donation_id) for donation_id in before} == before
    assert world.store.donations == {}
    assert (world.lock.last_run or {}).get("status") == "completed"


def test_a_run_stopping_before_it_starts_a_paid_period_leaves_no_mark_that_would_strand_the_schedule(
    world: World,
) -> None:
    # GIVEN a donation charged for March, put back on the paid March date by the host
    donation_id = world.given_due()
    world.run()
    world.store.host_edit(donation_id, nextRunAt=DUE.replace(tzinfo=None))
    world.clock.advance(hours=1)
    # and a run whose time budget runs out right after it claimed that schedule
    remaining = iter([900_000])
    stopping = world.engine().run(RunRequest(source="schedule"), lambda: next(remaining, 10_000))
    assert (stopping.status, stopping.skipped) == ("partial", 1)

    # WHEN the next run comes
    world.clock.advance(hours=1)
    world.run()

    # THEN the schedule was not left waiting for an open period that does not exist: it is back on April
    schedule = world.store.schedule(donation_id)
    assert "openPeriod" not in schedule
    assert next_run(schedule) == DUE.replace(month=4)
    assert periods_charged(world.payments) == [PERIOD]


# -- a schedule behind by whole periods (MISSED_PERIODS) ----------------------------------------------------

SIX_BEHIND = datetime(2025, 10, 1, 9, 0, tzinfo=UTC)  # October to March: six monthly periods due by NOW
SIX_PERIODS = ["2025-10-01", "2025-11-01", "2025-12-01", "2026-01-01", "2026-02-01", "2026-03-01"]


def _entry_statuses(world: World, donation_id: Any) -> dict[str, str]:
    return {entry["period"]: entry["status"] for entry in world.store.intents_of(donation_id)}


def test_under_latest_six_periods_behind_are_one_charge_for_the_latest_and_five_missed_entries(
    world: World,
) -> None:
    # GIVEN a monthly donation six periods behind
    donation_id = world.given_due(nextRunAt=SIX_BEHIND.replace(tzinfo=None))

    # WHEN the job runs hourly six times (MISSED_PERIODS defaults to latest)
    summaries = []
    for _ in range(6):
        summaries.append(world.run())
        world.clock.advance(hours=1)

    # THEN only the latest period was charged, once, and each earlier one is a closed `missed` entry
    assert periods_charged(world.payments) == SIX_PERIODS[-1:]
    assert _entry_statuses(world, donation_id) == {
        **dict.fromkeys(SIX_PERIODS[:-1], "missed"),
        SIX_PERIODS[-1]: "succeeded",
    }
    assert all("openFor" not in entry for entry in world.store.intents_of(donation_id))
    # AND the schedule goes on one period after the latest; the first run counted the five, no later one did
    assert next_run(world.store.schedule(donation_id)) == datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
    assert [(summary.succeeded, summary.missed) for summary in summaries] == [(1, 5)] + [(0, 0)] * 5
    # AND the donor heard of the five in one event, named after the latest period
    (event,) = world.donor_events.of_type(donor_events.PERIODS_MISSED)
    assert event["missedPeriods"] == SIX_PERIODS[:-1]
    assert (event["eventId"], event["period"]) == (f"{donation_id}:{SIX_PERIODS[-1]}:missed", SIX_PERIODS[-1])


def test_missed_entries_written_by_a_run_that_stopped_are_not_counted_again_by_the_next(world: World) -> None:
    # GIVEN a donation six periods behind, and a run whose time budget runs out right after it claimed it
    donation_id = world.given_due(nextRunAt=SIX_BEHIND.replace(tzinfo=None))
    remaining = iter([900_000])
    stopping = world.engine().run(RunRequest(source="schedule"), lambda: next(remaining, 10_000))

    # WHEN the next run comes, after the leases expired
    world.clock.advance(minutes=16)
    following = world.run()

    # THEN the stopping run counted and announced the five it wrote, charged nothing; the next one charged
    # the latest period without counting them again
    assert (stopping.missed, stopping.succeeded, following.missed, following.succeeded) == (5, 0, 0, 1)
    assert len(world.donor_events.of_type(donor_events.PERIODS_MISSED)) == 1
    assert periods_charged(world.payments) == SIX_PERIODS[-1:]
    assert list(_entry_statuses(world, donation_id).values()).count("missed") == 5


def test_a_schedule_the_host_points_at_a_missed_period_moves_on_without_a_charge(world: World) -> None:
    # GIVEN a donation caught up under latest, then made yearly from the missed December period by the host
    donation_id = world.given_due(nextRunAt=SIX_BEHIND.replace(tzinfo=None))
    world.run()
    world.store.host_edit(donation_id, frequency="yearly", nextRunAt=datetime(2025, 12, 1, 9, 0))

    # WHEN the job runs an hour later
    world.clock.advance(hours=1)
    summary = world.run()

    # THEN December is not charged; the schedule goes to the host's next yearly date, with no claim left
    assert periods_charged(world.payments) == SIX_PERIODS[-1:]
    assert (summary.due, summary.skipped, summary.succeeded) == (1, 1, 0)
    schedule = world.store.schedule(donation_id)
    assert next_run(schedule) == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert "claimedBy" not in schedule


def test_under_all_each_missed_period_is_charged_oldest_first_one_a_day_the_last_one_included(
    world: World,
) -> None:
    # GIVEN a monthly donation six periods behind
    donation_id = world.given_due(nextRunAt=SIX_BEHIND.replace(tzinfo=None))

    # WHEN the job runs hourly for six days under MISSED_PERIODS=all
    charged_at = []
    for hour in range(6 * 24):
        if world.run(MISSED_PERIODS="all").succeeded:
            charged_at.append(hour)
        world.clock.advance(hours=1)

    # THEN every period was charged once, oldest first, 24 hours apart (the last, due once by then, too)
    assert periods_charged(world.payments) == SIX_PERIODS
    assert charged_at == [0, 24, 48, 72, 96, 120]
    assert set(_entry_statuses(world, donation_id).values()) == {"succeeded"}
    assert world.donor_events.of_type(donor_events.PERIODS_MISSED) == []
    assert next_run(world.store.schedule(donation_id)) == datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def test_under_all_a_shorter_interval_charges_the_next_missed_period_sooner(world: World) -> None:
    # GIVEN a monthly donation three periods behind
    world.given_due(nextRunAt=datetime(2026, 1, 1, 9, 0))

    # WHEN the job runs hourly for a day with a 6-hour catch-up interval
    charged_at = []
    for hour in range(24):
        if world.run(MISSED_PERIODS="all", CATCH_UP_MIN_INTERVAL_HOURS="6").succeeded:
            charged_at.append(hour)
        world.clock.advance(hours=1)

    # THEN the three were charged six hours apart, oldest first
    assert periods_charged(world.payments) == SIX_PERIODS[-3:]
    assert charged_at == [0, 6, 12]
