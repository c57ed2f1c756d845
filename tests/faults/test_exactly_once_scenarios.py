"""Exactly once under crashes: one scenario per step of a charge, each followed by more runs.

Every scenario drives the real handler (app.lambda_handler) whose engine has its real adapters (moto's
DynamoDB and SQS, MongoDB, the Stripe-compatible server) wrapped so that the process 'dies' at one step.
Then the job runs again, and again after the leases expire, and the ledgers are compared: Stripe's own
list of charges against MongoDB's records and schedules.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from donation_processor.engine import DonationEngine
from harness.local.services import LocalServices
from harness.local.stripe_server import Fault
from tests.support.clock import TestClock
from tests.support.fault_injection import (
    CrashSwitch,
    Invariants,
    SimulatedCrash,
    StallingPayments,
    check_invariants,
    record_scenario,
    seed_due,
    write_reliability_results,  # noqa: F401 - an autouse fixture that writes the scenario ledger
)
from tests.support.fault_runs import (
    LEASES_EXPIRED,
    engine_for_fixture,  # noqa: F401 - the engine_for fixture
    invoke,
)

pytestmark = pytest.mark.faults

DONATIONS = 5


@pytest.fixture
def seeded(services: LocalServices, clock: TestClock) -> dict[Any, datetime]:
    """Five monthly donations due an hour ago; returns their original nextRunAt by id."""
    return seed_due(services, clock.now, DONATIONS)


def crash_then_recover(
    step: str,
    engine_for: Callable[..., DonationEngine],
    services: LocalServices,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run 1 dies at `step`; run 2 starts at once; run 3 starts after every lease has expired.

    Run 2 finds the dead run's lock held: it watches the lock's record version for one lock lease (on the
    test clock, which the watch moves on), sees it unchanged, and takes the lock over. It must charge
    nothing the dead run still holds under its claim and intent leases: those documents stay exactly as
    the dead run left them, and Stripe records no new charge."""
    switch = CrashSwitch(step=step)
    with pytest.raises(SimulatedCrash):
        invoke(engine_for(switch=switch), monkeypatch)
    assert switch.fired
    healthy = engine_for()
    held = _held_by_the_dead_run(services)
    as_left = _documents_of(services, held)
    charged_before, started = len(services.stripe.state.charges()), clock.now
    second = invoke(healthy, monkeypatch)
    assert clock.now - started >= timedelta(seconds=healthy._settings.lock_lease_seconds)
    assert _documents_of(services, held) == as_left
    assert len(services.stripe.state.charges()) == charged_before
    clock.advance(**LEASES_EXPIRED)
    third = invoke(healthy, monkeypatch)
    return second, third


CRASH_STEPS = [
    ("after_claim", "process dies right after claiming a batch, before any Stripe call"),
    ("after_payments.create_payment_intent", "Stripe charged; the process dies before reading the answer"),
    ("before_record", "Stripe answered success; the process dies before the donations record"),
    ("before_advance", "the record is written; the process dies before the schedule moves on"),
    ("before_lock_release", "everything is done; the process dies before releasing the lock"),
]


@pytest.mark.parametrize(("step", "fault"), CRASH_STEPS, ids=[step for step, _ in CRASH_STEPS])
def test_a_crash_at_any_step_leads_to_exactly_one_charge_per_period(
    step: str,
    fault: str,
    seeded: dict[Any, datetime],
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN five due donations and a process that dies at one step of the first run
    # WHEN the job runs again at once, and again once the leases have expired
    second, third = crash_then_recover(step, engine_for, services, clock, monkeypatch)

    # THEN the run after the crash takes the dead run's lock over after watching it for a lease, and
    # completes without a charge: the dead run's claim and intent leases still hold everything it touched
    # (crash_then_recover checks they are untouched); the later run, after those leases expired, finishes
    # the work, and Stripe's ledger and MongoDB agree: one charge, one record, one schedule step per period
    assert (second["status"], second["due"], second["succeeded"]) == ("completed", 0, 0)
    assert third["status"] == "completed"
    invariants = check_invariants(services, seeded)
    invariants.assert_exactly_once()
    assert invariants.successful_charges == DONATIONS
    record_scenario(
        step,
        fault,
        invariants,
        "run 2 took the dead run's lock over after one lease, charged nothing (all still claimed); "
        f"run 3 completed; {_totals(invariants)}",
    )


@pytest.mark.parametrize(
    ("fault_name", "faults", "env"),
    [
        ("drop_after", [Fault("drop_after")], {}),
        ("slow_beyond_client_timeout", [Fault("delay", delay_ms=1500)], {"STRIPE_TIMEOUT_SECONDS": "0.5"}),
    ],
)
def test_a_charge_whose_answer_never_arrives_is_recorded_later_without_a_second_charge(
    fault_name: str,
    faults: list[Fault],
    env: dict[str, str],
    seeded: dict[Any, datetime],
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN five due donations, no in-run retries, and one Stripe answer that is lost after the charge
    services.stripe.state.inject_faults(*faults)
    engine = engine_for(STRIPE_RETRY_ATTEMPTS="0", **env)

    # WHEN the job runs, then runs again once Stripe has finished the lost request
    first = invoke(engine, monkeypatch)
    time.sleep(1.6 if fault_name.startswith("slow") else 0)
    clock.advance(hours=1)
    second = invoke(engine, monkeypatch)

    # THEN the first run counted one transient failure and left it due; the second replayed the same key
    assert (first["succeeded"], first["failed"]) == (DONATIONS - 1, 1)
    assert (second["succeeded"], second["failed"]) == (1, 0)
    invariants = check_invariants(services, seeded)
    invariants.assert_exactly_once()
    assert invariants.successful_charges == DONATIONS
    description = {
        "drop_after": "Stripe charges, then the connection drops before the answer",
        "slow_beyond_client_timeout": "Stripe answers after the client's timeout",
    }[fault_name]
    record_scenario(
        f"stripe_in_flight:{fault_name}",
        description,
        invariants,
        f"run 1 left it due; run 2 replayed; {_totals(invariants)}",
    )


def test_a_stalled_run_whose_lease_expired_cannot_overwrite_the_newer_runs_work(
    seeded: dict[Any, datetime],
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN run A stalls inside its first Stripe call while holding the lock and its claims
    stalling: list[StallingPayments] = []

    def wrap(payments: Any) -> StallingPayments:
        stalling.append(StallingPayments(payments))
        return stalling[0]

    stale_engine = engine_for(payments_wrapper=wrap, MAX_CONCURRENCY="1")
    results: dict[str, Any] = {}
    run_a = threading.Thread(target=lambda: results.update(a=stale_engine.run(_scheduled(), lambda: 900_000)))
    run_a.start()
    assert stalling[0].stalled.wait(timeout=30)

    # WHEN its leases expire, run B takes over and charges everything, and then A wakes up
    clock.advance(**LEASES_EXPIRED)
    second = invoke(engine_for(), monkeypatch)
    stalling[0].resume.set()
    run_a.join(timeout=60)

    # THEN B did the work; A's late writes were refused by the fence; each period was charged once
    assert second["status"] == "completed"
    assert second["succeeded"] == DONATIONS
    invariants = check_invariants(services, seeded)
    invariants.assert_exactly_once()
    assert invariants.successful_charges == DONATIONS
    record_scenario(
        "lease_expired_while_stalled",
        "run A stalls mid-charge past its lock and claim leases; run B takes over; A wakes",
        invariants,
        f"B completed; A's stale writes refused; {_totals(invariants)}",
    )


def test_a_claim_older_than_stripes_idempotency_window_is_reconciled_not_charged_again(
    seeded: dict[Any, datetime],
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a run charged at Stripe and died before recording, and nothing ran for 25 hours
    switch = CrashSwitch(step="before_record")
    with pytest.raises(SimulatedCrash):
        invoke(engine_for(switch=switch), monkeypatch)
    clock.advance(hours=25)
    # and Stripe has forgotten the idempotency keys (its window is at least 24 hours)
    services.stripe.state.forget_idempotency_keys()

    # WHEN the job runs again
    summary = invoke(engine_for(), monkeypatch)

    # THEN the charged periods were found by their metadata and recorded, not charged again
    assert summary["succeeded"] == DONATIONS
    invariants = check_invariants(services, seeded)
    invariants.assert_exactly_once()
    assert invariants.successful_charges == DONATIONS
    record_scenario(
        "beyond_idempotency_window",
        "crash before the record, 25 h pass, Stripe forgets the keys",
        invariants,
        f"reconciled by metadata search; {_totals(invariants)}",
    )


def test_a_donor_change_after_an_unanswered_charge_does_not_charge_twice(
    seeded: dict[Any, datetime],
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a run charged at Stripe and died before recording, and then every donor raised the amount
    switch = CrashSwitch(step="before_record")
    with pytest.raises(SimulatedCrash):
        invoke(engine_for(switch=switch), monkeypatch)
    services.database["scheduled_donations"].update_many({}, {"$set": {"amount": 9900}})
    clock.advance(**LEASES_EXPIRED)

    # WHEN the job runs again (the period's key now comes with other parameters)
    summary = invoke(engine_for(), monkeypatch)

    # THEN Stripe's idempotency_error led to the existing PaymentIntent; records hold what was charged
    assert summary["succeeded"] == DONATIONS
    invariants = check_invariants(services, seeded)
    invariants.assert_exactly_once()
    charged = {charge.payment_intent_id: charge.amount for charge in services.stripe.state.charges()}
    for record in services.database["donations"].find({"status": "succeeded"}):
        assert record["amount"] == charged[record["paymentIntentId"]]
    record_scenario(
        "amount_changed_after_unanswered_charge",
        "crash before the record, then the donor changes the amount",
        invariants,
        f"idempotency_error reconciled by search; {_totals(invariants)}",
    )


def _scheduled() -> Any:
    from donation_processor.invocation import RunRequest

    return RunRequest(source="schedule")


def _held_by_the_dead_run(services: LocalServices) -> set[str]:
    """Donations under a claim or an intent lease (only the dead run has taken any)."""
    database = services.database
    held = {
        str(document["_id"])
        for document in database["scheduled_donations"].find({"claimedBy": {"$exists": True}})
    }
    held |= {
        str(document["scheduledDonationId"])
        for document in database["donations"].find({"lease.runId": {"$exists": True}})
    }
    return held


def _documents_of(services: LocalServices, donation_ids: set[str]) -> list[dict[str, Any]]:
    """The schedule and intent documents of these donations, as they stand."""
    database = services.database
    documents = [d for d in database["scheduled_donations"].find() if str(d["_id"]) in donation_ids]
    documents += [d for d in database["donations"].find() if str(d["scheduledDonationId"]) in donation_ids]
    return sorted(documents, key=lambda document: str(document["_id"]))


def _totals(invariants: Invariants) -> str:
    return f"{invariants.successful_charges} charges for {DONATIONS} periods"
