"""`donations redrive` against moto, mongomock and the local Stripe server, with the real engine around it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from cli_support import donations, insert_donation, peek_letters, point_cli_at, run_engine, send_raw

from donation_processor.engine import DonationEngine
from harness.local_services import LocalServices
from harness.seed import INSUFFICIENT_FUNDS, STOLEN_CARD, SUCCEEDS

if TYPE_CHECKING:
    from conftest import TestClock

MakeEngine = Callable[..., DonationEngine]


def _catch_up(clock: TestClock) -> None:
    """Redrive makes the donation due at the real now; the test clock may be behind it."""
    clock.now = max(clock.now, datetime.now(UTC)) + timedelta(seconds=1)


def test_redrive_retries_a_fixed_card_once_on_the_same_payment_intent(
    services: LocalServices,
    make_engine: MakeEngine,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a hard-declined donation, stopped and dead-lettered by the real engine
    point_cli_at(services, monkeypatch)
    donation_id = insert_donation(services, payment_method_id=STOLEN_CARD)
    first = run_engine(make_engine())
    assert (first.failed, first.dead_lettered) == (1, 1)
    (letter,) = peek_letters(services)
    assert letter["reason"] == "hard_decline"
    assert letter["paymentIntentId"]
    # ... and a donor who then fixed the card (the period's PaymentIntent stays the same)
    scheduled = services.database["scheduled_donations"]
    scheduled.update_one({"_id": donation_id}, {"$set": {"stripePaymentMethodId": SUCCEEDS}})
    before = scheduled.find_one({"_id": donation_id})

    # WHEN the operator looks first (dry run, with a progress bar)
    dry = donations(capsys, "redrive", "--progress")

    # THEN the plan is shown and nothing changed: same document, letter still on the queue
    assert dry.code == 0, dry.err
    assert "would reset for another attempt" in dry.out
    assert f"PaymentIntent {letter['paymentIntentId']} kept" in dry.out
    assert "redrive [" in dry.err
    assert "1/1" in dry.err
    assert scheduled.find_one({"_id": donation_id}) == before
    assert [item["deadLetterId"] for item in peek_letters(services)] == [letter["deadLetterId"]]

    # WHEN the operator acts
    acted = donations(capsys, "redrive", "--yes")

    # THEN the donation is due again for the same period and PaymentIntent, and the message is gone
    assert acted.code == 0, acted.err
    assert "reset for another attempt" in acted.out
    assert "message deleted" in acted.out
    reset = scheduled.find_one({"_id": donation_id})
    assert reset is not None
    assert reset["status"] == "active"
    assert reset["periodStart"].date().isoformat() == letter["period"]
    assert reset["paymentIntentId"] == letter["paymentIntentId"]
    assert (reset["attempts"], reset["periodAttempts"]) == (0, 1)  # a fresh dunning budget, keys go on
    assert "stopReason" not in reset
    assert "pendingDeadLetter" not in reset
    assert peek_letters(services) == []

    # WHEN the next runs come
    _catch_up(clock)
    second = run_engine(make_engine())
    third = run_engine(make_engine())

    # THEN the period was charged exactly once, on the dead letter's PaymentIntent
    assert second.succeeded == 1
    assert third.due == 0
    charges = [
        charge
        for charge in services.stripe.state.charges()
        if charge.metadata.get("scheduled_donation_id") == str(donation_id)
    ]
    assert len(charges) == 1
    assert charges[0].payment_intent_id == letter["paymentIntentId"]
    assert charges[0].metadata["period"] == letter["period"]
    assert charges[0].idempotency_key == f"{letter['idempotencyKey']}:attempt-2"
    record = services.database["donations"].find_one({"scheduledDonationId": donation_id})
    assert record is not None
    assert record["status"] == "succeeded"

    # WHEN the operator redrives again
    again = donations(capsys, "redrive", "--yes")

    # THEN there is nothing left to do
    assert (again.code, again.out) == (0, "no dead letters on the queue\n")


def test_redrive_of_an_already_charged_period_only_deletes_the_message(
    services: LocalServices,
    make_engine: MakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a donation whose period the engine charged, and a (duplicate) dead letter for that period
    point_cli_at(services, monkeypatch)
    donation_id = insert_donation(services)
    assert run_engine(make_engine()).succeeded == 1
    record = services.database["donations"].find_one({"scheduledDonationId": donation_id})
    assert record is not None
    send_raw(
        services,
        json.dumps(
            {
                "deadLetterId": f"{donation_id}:{record['period']}:hard_decline",
                "reason": "hard_decline",
                "scheduledDonationId": str(donation_id),
                "period": record["period"],
            }
        ),
    )
    before = services.database["scheduled_donations"].find_one({"_id": donation_id})
    requests_before = services.stripe.state.request_count

    # WHEN the operator redrives it
    result = donations(capsys, "redrive", "--yes")

    # THEN the message is deleted, the donation untouched, and Stripe saw nothing
    assert result.code == 0, result.err
    assert "nothing to do: period already charged" in result.out
    assert "message deleted" in result.out
    assert services.database["scheduled_donations"].find_one({"_id": donation_id}) == before
    assert peek_letters(services) == []
    assert services.stripe.state.request_count == requests_before
    assert len(services.stripe.state.charges()) == 1


def test_a_still_invalid_donation_stays_on_the_queue_and_is_redriven_once_fixed(
    services: LocalServices,
    make_engine: MakeEngine,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a malformed donation, due three days ago, that the engine marked invalid and dead-lettered
    point_cli_at(services, monkeypatch)
    due = datetime.now(UTC) - timedelta(days=3)
    donation_id = insert_donation(services, amount=-500, next_run_at=due)
    assert run_engine(make_engine()).invalid == 1
    scheduled = services.database["scheduled_donations"]

    # WHEN the operator redrives before the document is fixed
    early = donations(capsys, "redrive", "--yes")

    # THEN it is skipped with the reason and stays on the queue, the document unchanged
    assert early.code == 0, early.err
    assert "skip: still invalid: amount must be a positive integer" in early.out
    assert len(peek_letters(services)) == 1
    document = scheduled.find_one({"_id": donation_id})
    assert document is not None
    assert document["status"] == "invalid"

    # WHEN the host application fixes the amount and the operator redrives again
    scheduled.update_one({"_id": donation_id}, {"$set": {"amount": 1500}})
    fixed = donations(capsys, "redrive", "--yes")
    _catch_up(clock)
    summary = run_engine(make_engine())

    # THEN it is charged once, for the period it was due (three days ago), not for today
    assert fixed.code == 0
    assert "message deleted" in fixed.out
    assert peek_letters(services) == []
    assert summary.succeeded == 1
    (charge,) = services.stripe.state.charges()
    assert charge.metadata["period"] == due.date().isoformat()
    assert charge.amount == 1500


@pytest.mark.parametrize("stopped_by_older_engine", [False, True], ids=["periodAttempts", "legacy"])
def test_redrive_after_exhausted_dunning_uses_a_fresh_attempt_key(
    services: LocalServices,
    make_engine: MakeEngine,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stopped_by_older_engine: bool,
) -> None:
    # GIVEN a soft-declined donation that used up MAX_ATTEMPTS=2 (creation, then confirm key attempt-2)
    point_cli_at(services, monkeypatch)
    donation_id = insert_donation(services, payment_method_id=INSUFFICIENT_FUNDS)
    assert run_engine(make_engine(MAX_ATTEMPTS="2")).failed == 1
    clock.advance(days=1, minutes=1)
    stopped = run_engine(make_engine(MAX_ATTEMPTS="2"))
    assert stopped.dead_lettered == 1
    (letter,) = peek_letters(services)
    assert letter["reason"] == "attempts_exhausted"
    creation_key = letter["idempotencyKey"].rsplit(":", 1)[0]
    scheduled = services.database["scheduled_donations"]
    if stopped_by_older_engine:  # stopped before the engine kept periodAttempts: only attempts=2 tells
        scheduled.update_one({"_id": donation_id}, {"$unset": {"periodAttempts": ""}})
    # ... and a donor who then changed the card
    scheduled.update_one({"_id": donation_id}, {"$set": {"stripePaymentMethodId": SUCCEEDS}})

    # WHEN the operator redrives it and the next run comes
    result = donations(capsys, "redrive", "--yes")
    reset = scheduled.find_one({"_id": donation_id})
    _catch_up(clock)
    summary = run_engine(make_engine(MAX_ATTEMPTS="2"))

    # THEN the dunning budget is back, and the run charged it once, on the same PaymentIntent, under a key
    # not sent before this period (attempt-2 again, with another card, is an idempotency error at Stripe)
    assert result.code == 0, result.err
    assert f"next confirm key {creation_key}:attempt-3" in result.out
    assert reset is not None
    assert (reset["attempts"], reset["periodAttempts"]) == (0, 2)
    assert summary.succeeded == 1, summary.to_dict()
    (charge,) = services.stripe.state.charges()
    assert charge.payment_intent_id == letter["paymentIntentId"]
    assert charge.idempotency_key == f"{creation_key}:attempt-3"


def test_a_malformed_message_is_reported_and_left(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a message that is not a dead letter
    point_cli_at(services, monkeypatch)
    send_raw(services, "this is not json")

    # WHEN the operator redrives with --yes
    result = donations(capsys, "redrive", "--yes")

    # THEN it is reported and stays on the queue
    assert result.code == 0, result.err
    assert "malformed dead letter: the message body is not JSON; left on the queue" in result.out
    assert "1 left on the queue" in result.out
    depth = donations(capsys, "status", "--json")
    assert json.loads(depth.out)["deadLetterQueue"]["messages"] == 1
