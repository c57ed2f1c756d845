"""Known problems when the host platform edits scheduled donations around a charge, written as the
behaviour that must hold. They drive the real handler on the real adapters (moto, mongomock, the
Stripe-compatible server) and judge by Stripe's own ledger first.

A host edit is a plain pymongo update on `scheduled_donations`, as the host platform's own app makes it.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from donation_processor.engine import DonationEngine
from donation_processor.invocation import RunRequest
from harness.local.event_sink import EventSink, create_event_sink
from harness.local.seed import INSUFFICIENT_FUNDS, SUCCEEDS, scheduled_donation
from harness.local.services import LocalServices
from harness.local.stripe_server import Fault, parse_form
from tests.support.clock import TestClock
from tests.support.dead_letters import read_dead_letters
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
from tests.support.fault_runs import (
    LEASES_EXPIRED,
    engine_for_fixture,  # noqa: F401 - the engine_for fixture
    invoke,
)

pytestmark = pytest.mark.faults

SCHEDULED = "scheduled_donations"


# -- reading what Stripe saw -----------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyedRequest:
    """One POST the Stripe server received with an Idempotency-Key, and how it answered."""

    path: str
    key: str
    params: str  # the form parameters as canonical JSON: equal strings, equal parameters
    status: int  # 0 when the connection was dropped without an answer
    replayed: bool  # answered from the stored result of an earlier request with this key
    error_type: str | None


@pytest.fixture
def keyed_requests(services: LocalServices, monkeypatch: pytest.MonkeyPatch) -> list[KeyedRequest]:
    """Every keyed POST the Stripe server handles during the test. The server's own requests_log has no
    keys, parameters or replay flag, so the server's request processing is tapped for this test only."""
    state = services.stripe.state
    original = state.process
    seen: list[KeyedRequest] = []

    def tapped(request: Any) -> Any:
        response = original(request)
        if request.method == "POST" and request.idempotency_key:
            error = json.loads(response.body).get("error", {}) if response.body else {}
            seen.append(
                KeyedRequest(
                    path=request.path,
                    key=request.idempotency_key,
                    params=json.dumps(parse_form(request.body.decode()), sort_keys=True),
                    status=response.status,
                    replayed=any(name == "Idempotent-Replayed" for name, _ in response.headers),
                    error_type=error.get("type"),
                )
            )
        return response

    monkeypatch.setattr(state, "process", tapped)
    return seen


def keys_sent_with_other_parameters(requests: list[KeyedRequest]) -> list[str]:
    """Idempotency keys that reached Stripe with more than one set of parameters."""
    parameters: dict[str, set[str]] = {}
    for request in requests:
        parameters.setdefault(request.key, set()).add(request.params)
    return sorted(key for key, sets in parameters.items() if len(sets) > 1)


def replayed_declines(requests: list[KeyedRequest]) -> list[str]:
    """Keys whose request was answered with an earlier stored decline: no new attempt reached the card."""
    return [request.key for request in requests if request.replayed and request.status == 402]


# -- helpers ---------------------------------------------------------------------------------------------


def the_document(services: LocalServices) -> dict[str, Any]:
    documents = list(services.database[SCHEDULED].find())
    assert len(documents) == 1
    return documents[0]


def next_run(document: dict[str, Any]) -> datetime:
    moment: datetime = document["nextRunAt"]
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def advance_to_next_run(services: LocalServices, clock: TestClock) -> None:
    """Move the clock just past the donation's next charge: the dunning retry the engine announced on the
    document (`nextAttemptAt`) while a period is open, else its nextRunAt."""
    document = the_document(services)
    retry_at = document.get("nextAttemptAt")
    due = next_run({"nextRunAt": retry_at}) if retry_at is not None else next_run(document)
    if due > clock.now:
        clock.now = due + timedelta(minutes=1)


def host_edit(services: LocalServices, donation_id: Any, **fields: Any) -> None:
    """The host platform's app changes the document with a plain update."""
    result = services.database[SCHEDULED].update_one({"_id": donation_id}, {"$set": fields})
    assert result.matched_count == 1


def charged_periods(services: LocalServices) -> list[str]:
    return sorted(charge.metadata["period"] for charge in services.stripe.state.charges())


def record(problem: str, fault: str, services: LocalServices) -> None:
    """A row of docs/RELIABILITY.md: what Stripe's ledger and MongoDB hold after the scenario."""
    ledger = check_invariants(services, {})
    cycles = len(charges_per_cycle_violations(services))
    unrecorded = len(unrecorded_charges(services))
    record_scenario(
        f"issue9:{problem}",
        fault,
        ledger,
        f"{ledger.successful_charges} charges; {cycles} cycles charged twice; {unrecorded} unrecorded",
    )


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


# -- 1. double charge after a date move ------------------------------------------------------------------


@pytest.mark.parametrize("lost_by", ["answer_dropped", "crash_before_record"])
def test_a_charge_whose_answer_was_lost_is_not_charged_again_after_the_host_moves_the_date_earlier(
    lost_by: str,
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN one due monthly donation charged at Stripe, the job never learning it (answer lost or crash)
    (donation_id,) = seed_due(services, clock.now, 1)
    if lost_by == "answer_dropped":
        services.stripe.state.inject_faults(Fault("drop_after"))
        invoke(engine_for(STRIPE_RETRY_ATTEMPTS="0"), monkeypatch)
    else:
        with pytest.raises(SimulatedCrash):
            invoke(engine_for(switch=CrashSwitch(step="before_record")), monkeypatch)
    assert len(services.stripe.state.charges()) == 1
    # and the host then moves the charge date one day earlier
    moved = the_document(services)["nextRunAt"] - timedelta(days=1)
    host_edit(services, donation_id, nextRunAt=moved)

    # WHEN the job runs once the leases have expired, and again 25 hours later (Stripe forgot the keys)
    clock.advance(**LEASES_EXPIRED)
    invoke(engine_for(), monkeypatch)
    clock.advance(hours=25)
    services.stripe.state.forget_idempotency_keys()
    invoke(engine_for(), monkeypatch)

    # THEN the billing cycle was charged once, and that charge is recorded
    assert charges_per_cycle_violations(services) == []
    assert unrecorded_charges(services) == []
    assert len(services.stripe.state.charges()) == 1
    record(
        f"1-date-moved-earlier:{lost_by}",
        "answer lost, then nextRunAt moved a day earlier; +16 min, +25 h",
        services,
    )


# -- 2. charge never recorded after cancel ---------------------------------------------------------------


def test_a_charge_made_before_the_host_cancelled_is_still_recorded_and_the_claim_cleared(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a donation charged at Stripe by a run that died before recording it
    (donation_id,) = seed_due(services, clock.now, 1)
    with pytest.raises(SimulatedCrash):
        invoke(engine_for(switch=CrashSwitch(step="before_record")), monkeypatch)
    assert len(services.stripe.state.charges()) == 1
    # and the host then cancelled the schedule
    host_edit(services, donation_id, status="cancelled")

    # WHEN the job runs once the leases have expired
    clock.advance(**LEASES_EXPIRED)
    invoke(engine_for(), monkeypatch)

    # THEN the money taken is recorded, nothing more was charged, and no dead run's claim is left behind
    assert unrecorded_charges(services) == []
    assert len(services.stripe.state.charges()) == 1
    document = the_document(services)
    assert "claimedBy" not in document
    assert document["status"] == "cancelled"
    record("2-cancelled-after-crash", "charged, crash before the record, then the donor cancels", services)


# -- 3. dunning key sent twice ---------------------------------------------------------------------------


@pytest.mark.parametrize("declines_before_new_card", [0, 1], ids=["new_card_at_once", "after_one_more"])
def test_each_dunning_attempt_after_a_reconciliation_is_a_new_attempt_and_a_new_card_is_charged(
    declines_before_new_card: int,
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    keyed_requests: list[KeyedRequest],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a donation whose card declined in a run that died before recording the decline
    (donation_id,) = seed_due(services, clock.now, 1, payment_method_id=INSUFFICIENT_FUNDS)
    with pytest.raises(SimulatedCrash):
        invoke(engine_for(switch=CrashSwitch(step="before_failure_record")), monkeypatch)
    # and 25 hours passed, so Stripe forgot the keys and the job must look the period up by its metadata
    clock.advance(hours=25)
    services.stripe.state.forget_idempotency_keys()
    reconciling = invoke(engine_for(), monkeypatch)
    assert reconciling["succeeded"] == 0
    # and dunning goes on with the same card for `declines_before_new_card` more retries
    for _ in range(declines_before_new_card):
        advance_to_next_run(services, clock)
        invoke(engine_for(), monkeypatch)
    assert the_document(services)["status"] == "active"

    # WHEN the host switches the card to one that works, and the next retry falls due
    host_edit(services, donation_id, stripePaymentMethodId=SUCCEEDS)
    advance_to_next_run(services, clock)
    invoke(engine_for(), monkeypatch)

    # THEN no key reached Stripe with other parameters, every retry was a new attempt (no stored decline
    # replayed), and the new card was charged once for the period, the schedule going on
    assert keys_sent_with_other_parameters(keyed_requests) == []
    assert replayed_declines(keyed_requests) == []
    charges = services.stripe.state.charges()
    assert [charge.payment_method for charge in charges] == [SUCCEEDS]
    assert the_document(services)["status"] == "active"
    assert charges_per_cycle_violations(services) == []
    assert unrecorded_charges(services) == []
    record(
        f"3-dunning-keys:{declines_before_new_card}",
        "decline, crash, 25 h, reconciled; dunning; new card",
        services,
    )


# -- 4. lost confirm answer then a new card --------------------------------------------------------------


def test_a_lost_retry_answer_followed_by_a_new_card_charges_the_new_card_instead_of_stopping(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a donation in dunning: its first attempt was declined
    (donation_id,) = seed_due(services, clock.now, 1, payment_method_id=INSUFFICIENT_FUNDS)
    first = invoke(engine_for(STRIPE_RETRY_ATTEMPTS="0"), monkeypatch)
    assert first["failed"] == 1
    assert the_document(services)["status"] == "active"
    # and the retry's answer is lost (Stripe declined the old card again; the job never heard)
    advance_to_next_run(services, clock)
    services.stripe.state.inject_faults(Fault("drop_after", path_prefix="/v1/payment_intents/pi_"))
    invoke(engine_for(STRIPE_RETRY_ATTEMPTS="0"), monkeypatch)
    assert services.stripe.state.pending_faults == ()
    # and the host then changes the card to one that works
    host_edit(services, donation_id, stripePaymentMethodId=SUCCEEDS)

    # WHEN the job runs on (a few runs, each when the donation is next due)
    clock.advance(hours=1)
    for _ in range(3):
        invoke(engine_for(STRIPE_RETRY_ATTEMPTS="0"), monkeypatch)
        if services.stripe.state.charges() or the_document(services)["status"] != "active":
            break
        advance_to_next_run(services, clock)

    # THEN the schedule was not stopped as invalid, and the period was charged exactly once, on the new card
    document = the_document(services)
    assert document["status"] == "active", document.get("stopReason")
    charges = services.stripe.state.charges()
    assert [charge.payment_method for charge in charges] == [SUCCEEDS]
    assert unrecorded_charges(services) == []
    record("4-lost-confirm-new-card", "a retry's answer lost, then the donor changes the card", services)


# -- 5. anchor drift -------------------------------------------------------------------------------------


def test_a_charge_day_moved_by_the_host_becomes_the_new_monthly_anchor(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a monthly donation due on Dec 1 at 09:00 UTC, charged by the run at 10:00
    clock.now = utc(2026, 12, 1, 10)
    document = scheduled_donation(
        customer_id=services.stripe.state.create_customer(), next_run_at=utc(2026, 12, 1, 9)
    )
    services.database[SCHEDULED].insert_one(document)
    invoke(engine_for(), monkeypatch)
    assert charged_periods(services) == ["2026-12-01"]
    # and the host then moves the charge day to the 28th
    host_edit(services, document["_id"], nextRunAt=datetime(2026, 12, 28, 9))

    # WHEN the job runs on Dec 28, Jan 1 and Jan 28
    for moment in (utc(2026, 12, 28, 10), utc(2027, 1, 1, 10), utc(2027, 1, 28, 10)):
        clock.now = moment
        invoke(engine_for(), monkeypatch)

    # THEN the charges fell on Dec 1, Dec 28 and Jan 28, never on Jan 1, and the next is due Feb 28
    assert charges_per_cycle_violations(services) == []
    assert charged_periods(services) == ["2026-12-01", "2026-12-28", "2027-01-28"]
    assert next_run(the_document(services)) == utc(2027, 2, 28, 9)
    assert unrecorded_charges(services) == []
    record("5-anchor-drift", "charge day moved from the 1st to the 28th after a charge", services)


# -- 6. counted twice ------------------------------------------------------------------------------------


@pytest.fixture
def donor_event_bus(services: LocalServices) -> EventSink:
    """An EventBridge bus whose events land on a queue, so the test can read what donors were told."""
    return create_event_sink(services.moto.endpoint_url, f"donor-{uuid.uuid4().hex[:8]}")


def test_a_stalled_run_that_wakes_after_the_newer_run_does_not_count_or_announce_a_charge_again(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    donor_event_bus: EventSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN five due donations and run A stalled inside its first Stripe call, holding lock and claims
    donations = seed_due(services, clock.now, 5)
    stalling: list[StallingPayments] = []

    def wrap(payments: Any) -> StallingPayments:
        stalling.append(StallingPayments(payments))
        return stalling[0]

    events = {"DONOR_EVENT_BUS_NAME": donor_event_bus.bus_name}
    stale_engine = engine_for(payments_wrapper=wrap, MAX_CONCURRENCY="1", **events)
    results: dict[str, Any] = {}
    run_a = threading.Thread(
        target=lambda: results.update(a=stale_engine.run(RunRequest(source="schedule"), lambda: 900_000))
    )
    run_a.start()
    assert stalling[0].stalled.wait(timeout=30)

    # WHEN its leases expire, run B takes over and charges everything, and then A wakes up
    clock.advance(**LEASES_EXPIRED)
    second = invoke(engine_for(**events), monkeypatch)
    stalling[0].resume.set()
    run_a.join(timeout=60)
    assert not run_a.is_alive()

    # THEN each donation was charged once, counted once across both runs' summaries, and announced once
    assert len(services.stripe.state.charges()) == len(donations)
    assert results["a"].succeeded + second["succeeded"] == len(donations)
    announced: dict[str, int] = {}
    for event in donor_event_bus.drain():
        if event["detail-type"] == "Donation Charge Succeeded":
            donation_id = event["detail"]["scheduledDonationId"]
            announced[donation_id] = announced.get(donation_id, 0) + 1
    assert announced == {str(donation_id): 1 for donation_id in donations}
    record("6-stale-run-counted-twice", "run A stalls past its leases, run B charges, A wakes", services)


# -- 7. two ids, one key ---------------------------------------------------------------------------------


def test_two_documents_whose_ids_read_the_same_are_both_stopped_as_invalid_and_neither_is_charged(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN two due donations whose ids are the same 24 hex digits, one an ObjectId and one a string
    same = ObjectId()
    customer = services.stripe.state.create_customer()
    services.database[SCHEDULED].insert_many(
        [
            scheduled_donation(
                customer_id=customer, next_run_at=clock.now - timedelta(hours=1), donation_id=donation_id
            )
            for donation_id in (same, str(same))
        ]
    )

    # WHEN the job runs
    invoke(engine_for(), monkeypatch)

    # THEN neither was charged (they would share one idempotency key), both are stopped as invalid,
    # and an operator gets a dead letter for each
    assert services.stripe.state.charges() == []
    statuses = sorted(document["status"] for document in services.database[SCHEDULED].find())
    assert statuses == ["invalid", "invalid"]
    assert len(read_dead_letters(services)) == 2
    record("7-twin-ids", "an ObjectId and its hex string as two due documents", services)
