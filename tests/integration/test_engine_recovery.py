"""The engine with its real adapters, driven through crashes, faults, time limits and outages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from donation_processor.adapters.donation_store import MongoDonationStore
from donation_processor.engine import DonationEngine, EngineDependencies
from donation_processor.invocation import RunRequest
from donation_processor.ports import Claim
from harness.local.seed import GENERIC_DECLINE, INSUFFICIENT_FUNDS, scheduled_donation
from harness.local.services import LocalServices
from harness.local.stripe_server import Fault
from tests.support.clock import TestClock
from tests.support.dead_letters import read_dead_letters

SCHEDULED = RunRequest(source="schedule")
PLENTY_OF_TIME: Callable[[], int] = lambda: 900_000  # noqa: E731


def _seed(services: LocalServices, clock: TestClock, count: int = 1, **fields: Any) -> list[Any]:
    documents = [
        scheduled_donation(
            customer_id=services.stripe.state.create_customer(),
            next_run_at=clock.now - timedelta(hours=1),
            **fields,
        )
        for _ in range(count)
    ]
    services.database["scheduled_donations"].insert_many(documents)
    return [document["_id"] for document in documents]


def _charges(services: LocalServices) -> list[int]:
    return sorted(
        services.stripe.state.charge_counts_by(metadata_keys=("scheduled_donation_id", "period")).values()
    )


class CrashBeforeRecord(MongoDonationStore):
    """The real store, except that the process 'dies' right after Stripe said yes."""

    def record_success(self, *args: Any) -> bool:
        raise RuntimeError("simulated crash between Stripe and MongoDB")


def test_a_crash_after_stripe_succeeded_is_finished_by_the_next_run_without_a_second_charge(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN a due donation and an engine that crashes between Stripe's success and the MongoDB record
    [donation_id] = _seed(services, clock)
    healthy = make_engine()
    crashing = DonationEngine(
        healthy._settings,
        EngineDependencies(
            lock=healthy._deps.lock,
            store=CrashBeforeRecord(services.database),
            payments=healthy._deps.payments,
            dead_letters=healthy._deps.dead_letters,
        ),
        clock=clock,
        sleep=lambda _s: None,
    )

    # WHEN the crashing run dies, a run inside the claim lease finds nothing to do,
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.run(SCHEDULED, PLENTY_OF_TIME)
    inside_lease = healthy.run(SCHEDULED, PLENTY_OF_TIME)
    # and a run after the lease expired takes the donation over
    clock.advance(minutes=16)
    after_lease = healthy.run(SCHEDULED, PLENTY_OF_TIME)

    # THEN Stripe charged once (the retry replayed the same key) and the success is recorded once
    assert inside_lease.due == 0
    assert after_lease.succeeded == 1
    assert _charges(services) == [1]
    records = list(services.database["donations"].find({"scheduledDonationId": str(donation_id)}))
    assert [record["status"] for record in records] == ["succeeded"]
    document = services.database["scheduled_donations"].find_one({"_id": donation_id})
    assert document is not None
    assert "claimedBy" not in document


def test_a_dropped_answer_after_the_charge_is_retried_with_the_same_key_and_charged_once(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN a due donation and a Stripe that charges but whose answer never arrives, once
    _seed(services, clock)
    services.stripe.state.inject_faults(Fault("drop_after"))
    engine = make_engine()

    # WHEN the job runs
    summary = engine.run(SCHEDULED, PLENTY_OF_TIME)

    # THEN it retried, Stripe replayed the first answer, and there is exactly one charge
    assert (summary.succeeded, summary.retried, summary.failed) == (1, 1, 0)
    assert _charges(services) == [1]
    assert services.database["donations"].count_documents({"status": "succeeded"}) == 1


def test_rate_limited_and_5xx_answers_are_retried_and_succeed(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN a due donation and Stripe answering 429, then lock_timeout, then 500 before it succeeds
    _seed(services, clock)
    services.stripe.state.inject_faults(Fault("lock_timeout"), Fault("http_500"))
    engine = make_engine(STRIPE_RETRY_ATTEMPTS="3", CIRCUIT_BREAKER_THRESHOLD="5")

    # WHEN the job runs
    summary = engine.run(SCHEDULED, PLENTY_OF_TIME)

    # THEN the donation was charged once after being retried
    assert (summary.succeeded, summary.retried) == (1, 1)
    assert _charges(services) == [1]


def test_the_time_budget_stops_claiming_and_leaves_the_rest_due(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN 12 due donations, batches of 5, and a Lambda whose time runs out after the first batch
    _seed(services, clock, 12)
    engine = make_engine(BATCH_SIZE="5", MAX_CONCURRENCY="2", TIME_MARGIN_SECONDS="60")
    checks = iter([300_000, 300_000])

    # WHEN the job runs
    summary = engine.run(SCHEDULED, lambda: next(checks, 10_000))

    # THEN it charged the claimed batch only, returned partial, and left the rest due and unclaimed
    assert summary.status == "partial"
    assert 0 < summary.succeeded < 12
    assert _charges(services) == [1] * summary.succeeded
    collection = services.database["scheduled_donations"]
    assert collection.count_documents({"claimedBy": {"$exists": True}}) == 0
    still_due = collection.count_documents({"nextRunAt": {"$lte": clock.now.replace(tzinfo=None)}})
    assert still_due == 12 - summary.succeeded


def test_the_circuit_opens_on_a_stripe_outage_and_leaves_donations_due_without_failing_them(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN 6 due donations, a Stripe answering 503 to everything, and an outage window of 1 s
    _seed(services, clock, 6)
    services.stripe.state.set_fault_rate("http_503", 1.0)
    engine = make_engine(
        CIRCUIT_BREAKER_THRESHOLD="3",
        STRIPE_RETRY_ATTEMPTS="4",
        MAX_CONCURRENCY="1",
        CIRCUIT_COOL_DOWN_SECONDS="0.1",
        CIRCUIT_OUTAGE_WINDOW_SECONDS="1",
    )

    # WHEN the job runs
    summary = engine.run(SCHEDULED, PLENTY_OF_TIME)

    # THEN the run stopped with circuit_open, no donor failure was counted, and everything is still due
    assert summary.status == "circuit_open"
    assert (summary.failed, summary.succeeded, summary.dead_lettered) == (0, 0, 0)
    assert summary.skipped == summary.due
    assert services.stripe.state.charges() == []
    collection = services.database["scheduled_donations"]
    assert collection.count_documents({"status": "active", "claimedBy": {"$exists": False}}) == 6
    # each period's intent stays pending, to be resolved by the next run; none was resolved either way
    assert services.database["donations"].count_documents({"status": {"$ne": "pending"}}) == 0


def test_a_few_5xx_do_not_open_the_circuit(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN 4 due donations and two 500s in a row, under a threshold of 3
    _seed(services, clock, 4)
    services.stripe.state.inject_faults(Fault("http_500"), Fault("http_500"))
    engine = make_engine(CIRCUIT_BREAKER_THRESHOLD="3", MAX_CONCURRENCY="1")

    # WHEN the job runs
    summary = engine.run(SCHEDULED, PLENTY_OF_TIME)

    # THEN it completed and charged all four once
    assert summary.status == "completed"
    assert _charges(services) == [1, 1, 1, 1]


def test_dead_letters_are_parked_while_sqs_is_down_and_delivered_by_the_next_run(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN two malformed donations and a dead-letter queue URL that does not exist
    _seed(services, clock, 2, amount=0)
    missing_queue = services.queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    broken = make_engine(DEAD_LETTER_QUEUE_URL=missing_queue)

    # WHEN a run cannot reach the queue, then a later run can
    first = broken.run(SCHEDULED, PLENTY_OF_TIME)
    parked = services.database["scheduled_donations"].count_documents(
        {"pendingDeadLetter": {"$exists": True}}
    )
    second = make_engine().run(SCHEDULED, PLENTY_OF_TIME)

    # THEN nothing was lost: both letters were parked in MongoDB and then delivered
    assert (first.invalid, first.dead_lettered, first.dead_letters_deferred) == (2, 0, 2)
    assert parked == 2
    assert (second.dead_lettered, second.dead_letters_deferred) == (2, 0)
    letters = read_dead_letters(services)
    assert len(letters) == 2
    assert (
        services.database["scheduled_donations"].count_documents({"pendingDeadLetter": {"$exists": True}})
        == 0
    )


def test_a_soft_declined_period_is_retried_on_its_own_payment_intent_and_charged_once(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN a donation on a card that declines with a generic soft decline
    [donation_id] = _seed(services, clock, 1, payment_method_id=GENERIC_DECLINE)
    engine = make_engine()
    first = engine.run(SCHEDULED, PLENTY_OF_TIME)
    intent = services.database["donations"].find_one({"scheduledDonationId": str(donation_id)})
    assert intent is not None
    intent_id = intent["paymentIntentId"]

    # WHEN the donor's card works again and the dunning date arrives
    services.stripe.state.set_payment_method_behaviour(GENERIC_DECLINE, "succeeded")
    clock.advance(days=1, minutes=1)
    second = engine.run(SCHEDULED, PLENTY_OF_TIME)

    # THEN the same PaymentIntent was confirmed, charged once, and the period recorded as succeeded
    assert (first.failed, second.succeeded) == (1, 1)
    [charge] = services.stripe.state.charges()
    assert charge.payment_intent_id == intent_id
    [record] = services.database["donations"].find({"scheduledDonationId": str(donation_id)})
    assert record["status"] == "succeeded"
    assert [attempt["outcome"] for attempt in record["attemptLog"]] == ["declined", "succeeded"]
    assert record["attempts"] == 1  # declines counted against MAX_ATTEMPTS
    advanced = services.database["scheduled_donations"].find_one({"_id": donation_id})
    assert advanced is not None
    assert "openPeriod" not in advanced
    assert advanced["lastChargedPeriod"] == record["period"]


def test_soft_declines_stop_after_max_attempts_and_are_dead_lettered(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN a card that keeps declining for insufficient funds and two attempts allowed
    [donation_id] = _seed(services, clock, 1, payment_method_id=INSUFFICIENT_FUNDS)
    engine = make_engine(MAX_ATTEMPTS="2", DUNNING_SCHEDULE_DAYS="2")

    # WHEN the job runs now and again after the dunning delay
    engine.run(SCHEDULED, PLENTY_OF_TIME)
    clock.advance(days=2, minutes=1)
    last = engine.run(SCHEDULED, PLENTY_OF_TIME)

    # THEN the schedule stopped with attempts exhausted, and one dead letter says so
    assert (last.failed, last.dead_lettered) == (1, 1)
    document = services.database["scheduled_donations"].find_one({"_id": donation_id})
    assert document is not None
    assert document["status"] == "payment_failed"
    assert document["stopReason"].startswith("attempts_exhausted")
    [letter] = read_dead_letters(services)
    assert (letter["reason"], letter["attempts"], letter["declineCode"]) == (
        "attempts_exhausted",
        2,
        "insufficient_funds",
    )
    assert services.stripe.state.charges() == []


def test_a_stale_run_cannot_overwrite_a_newer_runs_claim(services: LocalServices, clock: TestClock) -> None:
    # GIVEN a donation claimed by an old run (fence 1), expired, then claimed by a newer run (fence 2)
    [donation_id] = _seed(services, clock)
    store = MongoDonationStore(services.database)
    old, new = Claim("run-old", 1), Claim("run-new", 2)
    assert store.claim([donation_id], old, clock.now, clock.now + timedelta(minutes=15))
    clock.advance(minutes=16)
    assert store.claim([donation_id], new, clock.now, clock.now + timedelta(minutes=15))

    # WHEN the old run wakes up and tries to let it go
    moved = store.release(donation_id, old, None)

    # THEN its write is refused and the newer run's claim stands
    assert moved is False
    document = services.database["scheduled_donations"].find_one({"_id": donation_id})
    assert document is not None
    assert (document["claimedBy"], document["claimFence"]) == ("run-new", 2)


def test_a_redriven_period_confirms_its_payment_intent_under_a_key_never_used_before(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN a period whose two attempts were declined, so the schedule stopped (key attempt-2 was used)
    [donation_id] = _seed(services, clock, 1, payment_method_id=GENERIC_DECLINE)
    engine = make_engine(MAX_ATTEMPTS="2", DUNNING_SCHEDULE_DAYS="1")
    engine.run(SCHEDULED, PLENTY_OF_TIME)
    clock.advance(days=1, minutes=1)
    engine.run(SCHEDULED, PLENTY_OF_TIME)
    stopped = services.database["scheduled_donations"].find_one({"_id": donation_id})
    assert stopped is not None
    assert stopped["status"] == "payment_failed"
    intent = services.database["donations"].find_one({"scheduledDonationId": str(donation_id)})
    assert intent is not None
    assert (intent["status"], len(intent["attemptLog"])) == ("failed", 2)

    # WHEN the donor's card works again and the host makes the schedule active again (same period)
    services.stripe.state.set_payment_method_behaviour(GENERIC_DECLINE, "succeeded")
    services.database["scheduled_donations"].update_one({"_id": donation_id}, {"$set": {"status": "active"}})
    summary = engine.run(SCHEDULED, PLENTY_OF_TIME)

    # THEN the same PaymentIntent is charged once: the confirm key was a fresh one (attempt-3), not the
    # attempt-2 key under which Stripe stored the earlier decline
    assert summary.succeeded == 1
    [charge] = services.stripe.state.charges()
    assert charge.payment_intent_id == intent["paymentIntentId"]
    assert charge.idempotency_key is not None
    assert charge.idempotency_key.endswith(":attempt-3")
