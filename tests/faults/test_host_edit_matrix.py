"""Every host edit crossed with every crash point: the host platform edits a donation while its charge is
in flight, the job dies (or stalls) at one step, and the job runs again after the leases expired and again
25 hours later, when Stripe has forgotten the idempotency keys.

Judged from the Stripe server's own ledger: at most one successful charge per donation per billing cycle,
and every successful charge recorded in the `donations` ledger. Each cell is a row of docs/RELIABILITY.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from donation_processor.engine import DonationEngine
from donation_processor.invocation import RunRequest
from harness.local.seed import SUCCEEDS
from harness.local.services import LocalServices
from tests.support.clock import TestClock
from tests.support.fault_injection import (
    CrashSwitch,
    SimulatedCrash,
    StallingPayments,
    charges_per_cycle_violations,
    check_invariants,
    record_scenario,
    seed_due,
    unrecorded_charges,
    write_reliability_results,  # noqa: F401 - an autouse fixture that writes the scenario ledger
)
from tests.support.fault_runs import LEASES_EXPIRED, engine_for_fixture, invoke  # noqa: F401 - the engine_for fixture

pytestmark = pytest.mark.faults

SCHEDULED = "scheduled_donations"
DONATIONS = 2


def _moved(days: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda document: {"$set": {"nextRunAt": document["nextRunAt"] + timedelta(days=days)}}


HOST_EDITS: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any] | None]]] = {
    "date_earlier": ("nextRunAt moved 1 day earlier", _moved(-1)),
    "date_later": ("nextRunAt moved 3 days later", _moved(3)),
    "amount_changed": ("amount raised to 9,900", lambda _document: {"$set": {"amount": 9900}}),
    "new_card": ("payment method replaced", lambda _document: {"$set": {"stripePaymentMethodId": SUCCEEDS}}),
    "cancelled": ("status set to cancelled", lambda _document: {"$set": {"status": "cancelled"}}),
    "deleted": ("document deleted", lambda _document: None),
}

CRASH_POINTS = {
    "after_claim": "dies right after claiming, before any Stripe call",
    "after_payments.create_payment_intent": "Stripe charged; dies before reading the answer",
    "before_record": "Stripe said succeeded; dies before the ledger entry",
    "before_advance": "ledger entry written; dies before the schedule moved",
    "stalled_past_leases": "stalls inside Stripe past its leases; a newer run takes over; it wakes",
}


def _host_edits(services: LocalServices, edit: str) -> None:
    """The host platform's app changes every seeded document with plain pymongo updates."""
    collection = services.database[SCHEDULED]
    for document in list(collection.find()):
        update = HOST_EDITS[edit][1](document)
        if update is None:
            collection.delete_one({"_id": document["_id"]})
        else:
            collection.update_one({"_id": document["_id"]}, update)


def _first_run_dies(
    crash: str,
    edit: str,
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run 1 dies at `crash` (or stalls); the host edits while the job is down; the leases expire."""
    if crash != "stalled_past_leases":
        with pytest.raises(SimulatedCrash):
            invoke(engine_for(switch=CrashSwitch(step=crash)), monkeypatch)
        _host_edits(services, edit)
        clock.advance(**LEASES_EXPIRED)
        return
    stalling: list[StallingPayments] = []

    def wrap(payments: Any) -> StallingPayments:
        stalling.append(StallingPayments(payments))
        return stalling[0]

    stale = engine_for(payments_wrapper=wrap, MAX_CONCURRENCY="1")
    run_a = threading.Thread(target=lambda: stale.run(RunRequest(source="schedule"), lambda: 900_000))
    run_a.start()
    assert stalling[0].stalled.wait(timeout=30)
    _host_edits(services, edit)
    clock.advance(**LEASES_EXPIRED)
    invoke(engine_for(), monkeypatch)  # the newer run takes over
    stalling[0].resume.set()
    run_a.join(timeout=60)
    assert not run_a.is_alive()


@pytest.mark.parametrize("edit", list(HOST_EDITS))
@pytest.mark.parametrize("crash", list(CRASH_POINTS))
def test_a_host_edit_during_a_crashed_charge_never_charges_a_cycle_twice_or_loses_a_charge(
    crash: str,
    edit: str,
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN due donations whose first run dies at one step while the host edits them
    seeded = seed_due(services, clock.now, DONATIONS)
    _first_run_dies(crash, edit, services, clock, engine_for, monkeypatch)

    # WHEN the job runs once the leases expired, and again 25 hours later with Stripe's keys forgotten
    invoke(engine_for(), monkeypatch)
    clock.advance(hours=25)
    services.stripe.state.forget_idempotency_keys()
    invoke(engine_for(), monkeypatch)

    # THEN no billing cycle was charged twice, every charge Stripe made is in the ledger, and nothing is
    # held by a claim or left resolved but not applied
    assert charges_per_cycle_violations(services) == []
    assert unrecorded_charges(services) == []
    charges = services.stripe.state.charges()
    assert len(charges) <= DONATIONS
    if crash != "after_claim":
        assert len(charges) == DONATIONS  # Stripe charged in run 1: each charge is found and kept
    # (a dead run's expired claim may stay on a document that is no longer due: it holds nothing)
    live_claims = services.database[SCHEDULED].count_documents(
        {"claimExpiresAt": {"$gt": clock.now.replace(tzinfo=None)}}
    )
    assert live_claims == 0
    assert (
        services.database["donations"].count_documents(
            {"openFor": {"$exists": True}, "status": {"$ne": "pending"}}
        )
        == 0
    )
    invariants = check_invariants(services, seeded) if edit in ("amount_changed", "new_card") else None
    if invariants is not None:
        invariants.assert_exactly_once()
    ledger = check_invariants(services, {}) if invariants is None else invariants
    record_scenario(
        f"host_edit:{edit}:{crash}",
        f"{HOST_EDITS[edit][0]}; run {CRASH_POINTS[crash]}",
        ledger,
        f"{len(charges)} charges for {DONATIONS} donations; 0 in one cycle twice; all recorded; re-run +25 h",
    )
