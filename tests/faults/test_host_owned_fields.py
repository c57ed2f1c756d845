"""One test per row of docs/DATA_MODEL.md's table of host-owned fields: what the engine does when the host app
edits a field while a period is in dunning (its first attempt declined, a retry scheduled).

The table itself is checked against `HOST_OWNED_FIELDS` in tests/docs; these tests pin the behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from donation_processor.engine import DonationEngine
from harness.local.seed import INSUFFICIENT_FUNDS, SUCCEEDS
from harness.local.services import LocalServices
from tests.support.clock import TestClock
from tests.support.dead_letters import read_dead_letters
from tests.support.fault_injection import charges_per_cycle_violations, seed_due, unrecorded_charges
from tests.support.fault_runs import engine_for_fixture, invoke  # noqa: F401 - the engine_for fixture

pytestmark = pytest.mark.faults

SCHEDULED = "scheduled_donations"


@pytest.fixture
def in_dunning(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """A monthly donation of 25.00 USD whose first attempt was soft-declined: a retry is due in a day."""
    (donation_id,) = seed_due(services, clock.now, 1, payment_method_id=INSUFFICIENT_FUNDS)
    first = invoke(engine_for(), monkeypatch)
    assert first["failed"] == 1
    return donation_id


def _edit(services: LocalServices, donation_id: Any, **fields: Any) -> None:
    assert services.database[SCHEDULED].update_one({"_id": donation_id}, {"$set": fields}).matched_count == 1


def _retry(
    clock: TestClock, engine_for: Callable[..., DonationEngine], monkeypatch: pytest.MonkeyPatch
) -> Any:
    clock.advance(days=1, minutes=1)
    return invoke(engine_for(), monkeypatch)


def _document(services: LocalServices, donation_id: Any) -> dict[str, Any]:
    document = services.database[SCHEDULED].find_one({"_id": donation_id})
    assert document is not None
    return document


def _next_period(
    services: LocalServices,
    donation_id: Any,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock.now = _document(services, donation_id)["nextRunAt"].replace(tzinfo=clock.now.tzinfo) + timedelta(
        minutes=1
    )
    invoke(engine_for(), monkeypatch)


@pytest.mark.parametrize(("field", "new_value"), [("amount", 9900), ("currency", "eur")])
def test_an_amount_or_currency_edit_applies_from_the_next_period_not_to_the_open_one(
    field: str,
    new_value: Any,
    in_dunning: Any,
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a period in dunning, and the host changes the amount (or currency) and gives a working card
    _edit(services, in_dunning, **{field: new_value}, stripePaymentMethodId=SUCCEEDS)

    # WHEN the retry falls due, and then the next period
    _retry(clock, engine_for, monkeypatch)
    _next_period(services, in_dunning, clock, engine_for, monkeypatch)

    # THEN the open period was charged as it was written down (its PaymentIntent), the next one as edited
    charges = services.stripe.state.charges()
    assert [(charge.amount, charge.currency) for charge in charges] == [
        (2500, "usd"),
        (new_value, "usd") if field == "amount" else (2500, new_value),
    ]
    assert unrecorded_charges(services) == []


def test_a_new_payment_method_is_used_by_the_next_attempt_under_a_new_key(
    in_dunning: Any,
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a period in dunning, and the donor adds a card that works
    _edit(services, in_dunning, stripePaymentMethodId=SUCCEEDS)

    # WHEN the retry falls due
    _retry(clock, engine_for, monkeypatch)

    # THEN the period's PaymentIntent is confirmed with the new card under the key of attempt 2
    [charge] = services.stripe.state.charges()
    assert charge.payment_method == SUCCEEDS
    assert charge.idempotency_key is not None
    assert charge.idempotency_key.endswith(":attempt-2")


def test_a_frequency_edit_sets_the_step_after_the_open_period(
    in_dunning: Any,
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a monthly period in dunning, and the host switches the donation to weekly with a working card
    due = _document(services, in_dunning)["nextRunAt"]
    _edit(services, in_dunning, frequency="weekly", stripePaymentMethodId=SUCCEEDS)

    # WHEN the retry falls due and succeeds
    _retry(clock, engine_for, monkeypatch)

    # THEN the next period is a week after the charged period's due date
    assert _document(services, in_dunning)["nextRunAt"] == due + timedelta(weeks=1)


def test_a_next_run_edit_during_dunning_is_where_the_schedule_goes_after_the_open_period(
    in_dunning: Any,
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a period in dunning, and the host moves the charge date 10 days later (and fixes the card)
    due = _document(services, in_dunning)["nextRunAt"]
    moved = due + timedelta(days=10)
    _edit(services, in_dunning, nextRunAt=moved, stripePaymentMethodId=SUCCEEDS)

    # WHEN the retry falls due and succeeds
    _retry(clock, engine_for, monkeypatch)

    # THEN the open period (not a new one) was charged, and the schedule continues on the host's day, in
    # the next cycle: 10 days is within half a period of the charge, so a month after the host's date
    [charge] = services.stripe.state.charges()
    assert charge.metadata["period"] == due.date().isoformat()
    after = _document(services, in_dunning)
    assert after["nextRunAt"].day == moved.day
    assert timedelta(days=27) < after["nextRunAt"] - moved <= timedelta(days=31)
    assert charges_per_cycle_violations(services) == []


@pytest.mark.parametrize("removal", ["cancelled", "deleted"])
def test_a_cancelled_or_deleted_donation_gets_no_new_attempt_and_no_dead_letter(
    removal: str,
    in_dunning: Any,
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a period in dunning, and the host cancels (or deletes) the donation
    if removal == "cancelled":
        _edit(services, in_dunning, status="cancelled")
    else:
        services.database[SCHEDULED].delete_one({"_id": in_dunning})

    # WHEN the retry falls due
    summary = _retry(clock, engine_for, monkeypatch)

    # THEN nothing is charged, the period is closed as canceled in the ledger, nobody is paged or told
    assert services.stripe.state.charges() == []
    [entry] = services.database["donations"].find({"scheduledDonationId": str(in_dunning)})
    assert (entry["status"], entry["stopReason"]) == ("canceled", "schedule_inactive:none")
    assert "openFor" not in entry
    assert (summary["deadLettered"], read_dead_letters(services)) == (0, [])
    if removal == "cancelled":
        after = _document(services, in_dunning)
        assert after["status"] == "cancelled"
        assert "openPeriod" not in after


def test_metadata_is_never_read_and_never_written(
    in_dunning: Any,
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a period in dunning, and the host rewrites the metadata (with a working card)
    metadata = {"campaign": "winter", "note": "anything the host keeps"}
    _edit(services, in_dunning, metadata=metadata, stripePaymentMethodId=SUCCEEDS)

    # WHEN the retry falls due
    _retry(clock, engine_for, monkeypatch)

    # THEN the charge is unaffected and the metadata is as the host left it
    assert len(services.stripe.state.charges()) == 1
    assert _document(services, in_dunning)["metadata"] == metadata
