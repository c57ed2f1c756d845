"""Deploying the charge intent over documents the previous version left in flight.

The previous version kept the period being charged on the schedule document itself (`periodStart`,
`periodFirstAttemptAt`, `periodAttempts`, `paymentIntentId`, a claim) and wrote its `donations` records
keyed by the raw `_id`. These tests build exactly those states (the PaymentIntents through the real SDK
with the previous version's keys), deploy this version, and judge by Stripe's own ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from donation_processor.charge_outcome import PaymentFailed
from donation_processor.engine import DonationEngine
from donation_processor.idempotency import payment_intent_key
from harness.local.seed import INSUFFICIENT_FUNDS, SUCCEEDS, naive_utc, scheduled_donation
from harness.local.services import LocalServices
from tests.support.clock import TestClock
from tests.support.fault_injection import charges_per_cycle_violations, unrecorded_charges
from tests.support.fault_runs import LEASES_EXPIRED, engine_for_fixture, invoke  # noqa: F401 - the engine_for fixture

pytestmark = pytest.mark.faults

SCHEDULED = "scheduled_donations"


def _previous_version_create(engine: DonationEngine, document: dict[str, Any], period: str) -> Any:
    """The create request the previous version sent for the period (same key, same parameters)."""
    params = {
        "amount": document["amount"],
        "currency": document["currency"],
        "customer": document["stripeCustomerId"],
        "payment_method": document["stripePaymentMethodId"],
        "confirm": True,
        "off_session": True,
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        "metadata": {"scheduled_donation_id": str(document["_id"]), "period": period},
    }
    return engine._deps.payments.create_payment_intent(
        params, payment_intent_key(str(document["_id"]), period)
    )


def _in_flight_document(services: LocalServices, clock: TestClock, **fields: Any) -> dict[str, Any]:
    due = clock.now - timedelta(hours=2)
    return scheduled_donation(
        customer_id=services.stripe.state.create_customer(),
        next_run_at=due,
        periodFirstAttemptAt=naive_utc(due + timedelta(hours=1)),
        claimedBy="run-previous-version",
        claimFence=1,
        claimExpiresAt=naive_utc(clock.now - timedelta(minutes=1)),
        **fields,
    )


def test_a_period_the_previous_version_charged_but_never_recorded_is_recorded_once(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a document the previous version claimed and charged, dying before its record
    document = _in_flight_document(services, clock)
    period = document["nextRunAt"].date().isoformat()
    services.database[SCHEDULED].insert_one(document)
    engine = engine_for()
    charged = _previous_version_create(engine, document, period)
    assert charged.status == "succeeded"

    # WHEN this version runs
    summary = invoke(engine, monkeypatch)

    # THEN the charge is found under the previous version's key, recorded once, and the schedule moved on
    assert summary["succeeded"] == 1
    assert len(services.stripe.state.charges()) == 1
    assert unrecorded_charges(services) == []
    after = services.database[SCHEDULED].find_one({"_id": document["_id"]})
    assert after is not None
    assert after["lastChargedPeriod"] == period
    assert "periodFirstAttemptAt" not in after
    assert "claimedBy" not in after


def test_a_period_in_the_previous_versions_dunning_is_retried_on_its_payment_intent_with_a_new_key(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a period the previous version declined once: its PaymentIntent, periodAttempts 1, a retry due now,
    # and its `failed` record keyed by the raw ObjectId
    document = _in_flight_document(services, clock, payment_method_id=INSUFFICIENT_FUNDS)
    period = document["nextRunAt"].date().isoformat()
    engine = engine_for()
    with pytest.raises(PaymentFailed) as declined:
        _previous_version_create(engine, document, period)
    intent_id = declined.value.failure.payment_intent_id
    assert intent_id is not None
    document.update(
        periodStart=document["nextRunAt"],
        nextRunAt=naive_utc(clock.now - timedelta(minutes=5)),
        paymentIntentId=intent_id,
        attempts=1,
        periodAttempts=1,
        stripePaymentMethodId=SUCCEEDS,  # and the donor has since added a card that works
    )
    document.pop("claimedBy")
    services.database[SCHEDULED].insert_one(document)
    services.database["donations"].insert_one(
        {
            "scheduledDonationId": document["_id"],
            "period": period,
            "status": "failed",
            "paymentIntentId": intent_id,
        }
    )

    # WHEN this version runs
    summary = invoke(engine, monkeypatch)

    # THEN the same PaymentIntent is charged once, under a key the previous version never sent, and the
    # previous version's record became this period's ledger entry (one entry, not two)
    assert summary["succeeded"] == 1
    [charge] = services.stripe.state.charges()
    assert charge.payment_intent_id == intent_id
    assert charge.idempotency_key == f"{payment_intent_key(str(document['_id']), period)}:attempt-3"
    entries = list(services.database["donations"].find({"period": period}))
    assert [(entry["scheduledDonationId"], entry["status"]) for entry in entries] == [
        (str(document["_id"]), "succeeded")
    ]
    assert charges_per_cycle_violations(services) == []


def test_a_period_the_previous_version_recorded_but_did_not_move_on_is_moved_on_without_a_charge(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a period the previous version charged and recorded, dying before it moved the schedule on
    document = _in_flight_document(services, clock)
    period = document["nextRunAt"].date().isoformat()
    services.database[SCHEDULED].insert_one(document)
    engine = engine_for()
    charged = _previous_version_create(engine, document, period)
    services.database["donations"].insert_one(
        {
            "scheduledDonationId": document["_id"],
            "period": period,
            "status": "succeeded",
            "paymentIntentId": charged.payment_intent_id,
            "amount": 2500,
            "currency": "usd",
        }
    )

    # WHEN this version runs, and again once Stripe has forgotten the key
    first = invoke(engine, monkeypatch)
    clock.advance(hours=25, **LEASES_EXPIRED)
    services.stripe.state.forget_idempotency_keys()
    invoke(engine_for(), monkeypatch)

    # THEN nothing more is charged or counted, the one ledger entry stands, and the schedule is a month on
    assert (first["succeeded"], len(services.stripe.state.charges())) == (0, 1)
    assert services.database["donations"].count_documents({"period": period}) == 1
    after = services.database[SCHEDULED].find_one({"_id": document["_id"]})
    assert after is not None
    assert after["lastChargedPeriod"] == period
    assert after["nextRunAt"] > document["nextRunAt"] + timedelta(days=27)
