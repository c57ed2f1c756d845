"""Blast radius: a fault that is not any one donor's must not stop every schedule, and a short Stripe
outage must not end the run.

The real engine on the local services; the Stripe server answers what Stripe answers in each case.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from donation_processor.engine import DonationEngine
from harness.local.event_sink import EventSink, create_event_sink
from harness.local.services import LocalServices
from harness.local.stripe_server import Fault
from tests.support.clock import TestClock
from tests.support.dead_letters import read_dead_letters
from tests.support.fault_injection import (
    check_invariants,
    record_scenario,
    seed_due,
    write_reliability_results,  # noqa: F401 - an autouse fixture that writes the scenario ledger
)
from tests.support.fault_runs import LEASES_EXPIRED, engine_for_fixture, invoke  # noqa: F401 - the engine_for fixture

pytestmark = pytest.mark.faults

SCHEDULED = "scheduled_donations"
DONATIONS = 8


@pytest.fixture
def donor_event_bus(services: LocalServices) -> EventSink:
    return create_event_sink(services.moto.endpoint_url, f"donor-{uuid.uuid4().hex[:8]}")


def _statuses(services: LocalServices) -> list[str]:
    return sorted(document["status"] for document in services.database[SCHEDULED].find())


def test_the_same_rejection_for_every_donation_halts_the_run_and_stops_no_schedule(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    donor_event_bus: EventSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN due donations, and a Stripe that answers every create 400 parameter_unknown (an API-version or
    # account-configuration mismatch: the same error for everyone, none of it the donors' doing)
    seeded = seed_due(services, clock.now, DONATIONS)
    services.stripe.state.set_fault_rate("http_400_parameter_unknown", 1.0)
    events = {"DONOR_EVENT_BUS_NAME": donor_event_bus.bus_name}

    # WHEN the job runs
    halted = invoke(engine_for(STRIPE_RETRY_ATTEMPTS="0", **events), monkeypatch)

    # THEN the run stops as systemic after K in a row, and nothing is stopped, dead-lettered or announced
    assert halted["status"] == "systemic_halt"
    assert halted["systemicCode"] == "parameter_unknown"
    assert _statuses(services) == ["active"] * DONATIONS
    assert read_dead_letters(services) == []
    assert donor_event_bus.drain() == []
    assert services.database["donations"].count_documents({"status": {"$ne": "pending"}}) == 0

    # WHEN Stripe accepts the requests again and the job runs once the leases expired
    services.stripe.state.clear_faults()
    clock.advance(**LEASES_EXPIRED)
    recovered = invoke(engine_for(**events), monkeypatch)

    # THEN every donation is charged once, without an operator redriving anything
    assert (recovered["status"], recovered["succeeded"]) == ("completed", DONATIONS)
    invariants = check_invariants(services, seeded)
    invariants.assert_exactly_once()
    assert invariants.successful_charges == DONATIONS
    record_scenario(
        "systemic_400_parameter_unknown",
        "every create answered 400 parameter_unknown, then Stripe fixed",
        invariants,
        f"run 1 systemic_halt, 0 stopped, 0 letters; run 2 charged {DONATIONS}",
    )


def test_one_donors_rejected_request_still_stops_that_schedule_for_an_operator_only(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    donor_event_bus: EventSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN due donations, one of them with a customer Stripe does not know
    seed_due(services, clock.now, 3)
    (bad,) = seed_due(services, clock.now, 1)
    services.database[SCHEDULED].update_one({"_id": bad}, {"$set": {"stripeCustomerId": "cus_unknown1"}})

    # WHEN the job runs
    summary = invoke(engine_for(DONOR_EVENT_BUS_NAME=donor_event_bus.bus_name), monkeypatch)

    # THEN that schedule alone is stopped and dead-lettered for an operator; the donor is told nothing
    assert (summary["status"], summary["succeeded"]) == ("completed", 3)
    stopped = services.database[SCHEDULED].find_one({"_id": bad})
    assert stopped is not None
    assert stopped["status"] == "invalid"
    [letter] = read_dead_letters(services)
    assert letter["reason"] == "stripe_rejected_request"
    told = [event["detail"]["scheduledDonationId"] for event in donor_event_bus.drain()]
    assert str(bad) not in told


def test_a_burst_of_lost_answers_opens_the_breaker_which_recovers_and_the_run_completes(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN due donations, and Stripe charging the first six requests but losing every answer
    seeded = seed_due(services, clock.now, DONATIONS)
    services.stripe.state.inject_faults(*[Fault("drop_after") for _ in range(6)])

    # WHEN the job runs with a breaker that opens after 5 availability failures in a row
    summary = invoke(
        engine_for(CIRCUIT_BREAKER_THRESHOLD="5", CIRCUIT_COOL_DOWN_SECONDS="0.2", MAX_CONCURRENCY="2"),
        monkeypatch,
    )

    # THEN the breaker cooled down, a probe went through, and the run charged everyone once
    assert (summary["status"], summary["succeeded"]) == ("completed", DONATIONS)
    invariants = check_invariants(services, seeded)
    invariants.assert_exactly_once()
    record_scenario(
        "breaker_recovers_in_run",
        "six answers lost in a row (breaker threshold 5), Stripe fine afterwards",
        invariants,
        "breaker opened, probed after the cool-down, closed; run completed",
    )


def test_a_quarter_of_requests_failing_for_ten_seconds_does_not_end_the_run(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN 60 due donations at 150 ms a request, and Stripe failing a quarter of requests (503) for 10 s
    seeded = seed_due(services, clock.now, 60)
    state = services.stripe.state
    state.set_latency(150)
    state.set_fault_rate("http_503", 0.25, seed=7)
    healed = threading.Timer(10.0, lambda: state.set_fault_rate("http_503", 0.0))
    healed.start()

    # WHEN the job runs (about 15 s at two charges in flight)
    try:
        summary = invoke(engine_for(MAX_CONCURRENCY="2", CIRCUIT_BREAKER_THRESHOLD="3"), monkeypatch)
    finally:
        healed.cancel()

    # THEN it completed and charged every donation once
    assert (summary["status"], summary["succeeded"]) == ("completed", 60)
    invariants = check_invariants(services, seeded)
    invariants.assert_exactly_once()
    record_scenario(
        "quarter_of_requests_failing_10s",
        "25 % of requests answered 503 for the first 10 s of the run",
        invariants,
        f"completed; {summary['retried']} donations retried",
    )


def test_stripe_down_for_the_whole_run_stops_after_the_outage_window_and_leaves_everything_due(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN due donations and a Stripe answering 503 to everything
    seeded = seed_due(services, clock.now, DONATIONS)
    services.stripe.state.set_fault_rate("http_503", 1.0)

    # WHEN the job runs with a 3-second outage window
    summary = invoke(
        engine_for(CIRCUIT_COOL_DOWN_SECONDS="0.2", CIRCUIT_OUTAGE_WINDOW_SECONDS="3"), monkeypatch
    )

    # THEN it stopped as circuit_open, nothing was charged or failed, and every donation is still due
    assert summary["status"] == "circuit_open"
    assert (summary["succeeded"], summary["deadLettered"]) == (0, 0)
    assert services.stripe.state.charges() == []
    assert _statuses(services) == ["active"] * DONATIONS
    pending: Any = services.database["donations"].count_documents({"status": "pending"})
    assert pending == services.database["donations"].count_documents({})
    record_scenario(
        "stripe_down_whole_run",
        "every request answered 503 for the whole run (outage window 3 s)",
        check_invariants(services, seeded),
        "circuit_open after the window; everything still due",
    )
