"""`donations redrive` against moto, mongomock and the local Stripe server, with the real engine around it.

The tests read the ledger (`donations`) directly to check what the CLI and the engine wrote; the CLI itself
goes through MongoDonationStore.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from donation_processor.adapters.donation_store import MongoDonationStore
from donation_processor.adapters.ledger_documents import entry_from
from donation_processor.charge_outcome import HARD_DECLINE_CODES
from donation_processor.engine import DonationEngine
from donation_processor.schedule import period_key
from donations_cli.commands.redrive import Facts, Letter, decide
from harness.local.seed import (
    AUTHENTICATION_REQUIRED,
    INSUFFICIENT_FUNDS,
    LOST_CARD,
    STOLEN_CARD,
    SUCCEEDS,
    scheduled_donation,
)
from harness.local.services import LocalServices
from tests.support.cli import donations, insert_donation, peek_letters, point_cli_at, run_engine, send_raw

if TYPE_CHECKING:
    from tests.support.clock import TestClock

MakeEngine = Callable[..., DonationEngine]


def _catch_up(clock: TestClock) -> None:
    """Redrive makes the period due at the real now; the test clock may be behind it."""
    clock.now = max(clock.now, datetime.now(UTC)) + timedelta(seconds=1)


def _intent(services: LocalServices, donation_id: Any, period: str) -> dict[str, Any]:
    found = services.database["donations"].find_one(
        {"scheduledDonationId": str(donation_id), "period": period}
    )
    assert found is not None
    return dict(found)


def _sent_keys(intent: dict[str, Any]) -> list[str]:
    return [attempt["key"] for attempt in intent["attemptLog"]]


def _charges_of(services: LocalServices, donation_id: Any) -> list[Any]:
    return [
        charge
        for charge in services.stripe.state.charges()
        if charge.metadata.get("scheduled_donation_id") == str(donation_id)
    ]


def _stopped_by_a_stolen_card(
    services: LocalServices, make_engine: MakeEngine, card: str = STOLEN_CARD
) -> tuple[Any, dict[str, Any]]:
    """A donation hard-declined, stopped and dead-lettered by the real engine; its id and its letter."""
    donation_id = insert_donation(services, payment_method_id=card)
    first = run_engine(make_engine())
    assert (first.failed, first.dead_lettered) == (1, 1)
    (letter,) = [item for item in peek_letters(services) if item["scheduledDonationId"] == str(donation_id)]
    assert letter["reason"] == "hard_decline"
    assert letter["paymentIntentId"]
    return donation_id, letter


def _fix_card(services: LocalServices, donation_id: Any) -> None:
    services.database["scheduled_donations"].update_one(
        {"_id": donation_id}, {"$set": {"stripePaymentMethodId": SUCCEEDS}}
    )


def test_redrive_charges_a_fixed_card_once_under_a_key_never_sent_for_the_period(
    services: LocalServices,
    make_engine: MakeEngine,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a hard-declined donation, stopped and dead-lettered by the real engine, whose donor then fixed
    # the card (the period's PaymentIntent stays the one the decline left)
    point_cli_at(services, monkeypatch)
    donation_id, letter = _stopped_by_a_stolen_card(services, make_engine)
    period = letter["period"]
    _fix_card(services, donation_id)
    scheduled = services.database["scheduled_donations"]
    before = scheduled.find_one({"_id": donation_id})
    stopped = _intent(services, donation_id, period)
    sent_before = _sent_keys(stopped)
    assert (stopped["status"], "openFor" in stopped) == ("failed", False)
    assert sent_before == [letter["idempotencyKey"]]

    # WHEN the operator looks first (dry run, with a progress bar)
    dry = donations(capsys, "redrive", "--progress")

    # THEN the plan is shown and nothing changed: same document, same intent, letter still on the queue
    assert dry.code == 0, dry.err
    new_key = f"{letter['idempotencyKey']}:attempt-2"
    assert f"would reset for another attempt: period {period} reopened (failed)" in dry.out
    assert f"PaymentIntent {letter['paymentIntentId']} kept, confirmed under the new key {new_key}" in dry.out
    assert f"payment method {SUCCEEDS}" in dry.out
    assert "amount 25.00 USD as first written" in dry.out
    assert "redrive [" in dry.err
    assert "1/1" in dry.err
    assert scheduled.find_one({"_id": donation_id}) == before
    assert _intent(services, donation_id, period) == stopped
    assert [item["deadLetterId"] for item in peek_letters(services)] == [letter["deadLetterId"]]

    # WHEN the operator acts
    acted = donations(capsys, "redrive", "--yes")

    # THEN the period's intent is open again with a fresh dunning budget and its attempts kept, the
    # donation is active and held for that period, and the message is gone
    assert acted.code == 0, acted.err
    assert "reset for another attempt" in acted.out
    assert "message deleted" in acted.out
    reopened = _intent(services, donation_id, period)
    assert (reopened["status"], reopened["openFor"], reopened["attempts"]) == ("pending", str(donation_id), 0)
    assert _sent_keys(reopened) == sent_before
    assert reopened["paymentIntentId"] == letter["paymentIntentId"]
    assert "pendingDeadLetter" not in reopened
    reset = scheduled.find_one({"_id": donation_id})
    assert reset is not None
    assert (reset["status"], reset["openPeriod"], reset["redriveCount"]) == ("active", period, 1)
    assert reset["nextRunAt"] == before["nextRunAt"]  # the host's date is left as it is
    for cleared in ("stopReason", "stoppedAt", "stoppedPeriod", "claimedBy"):
        assert cleared not in reset
    assert peek_letters(services) == []

    # WHEN the next runs come
    _catch_up(clock)
    second = run_engine(make_engine())
    third = run_engine(make_engine())

    # THEN the period was charged exactly once, on the dead letter's PaymentIntent, under a new key
    assert second.succeeded == 1, second.to_dict()
    assert (third.due, third.succeeded) == (0, 0)
    (charge,) = _charges_of(services, donation_id)
    assert charge.payment_intent_id == letter["paymentIntentId"]
    assert charge.metadata["period"] == period
    assert charge.payment_method == SUCCEEDS
    assert charge.idempotency_key == new_key
    assert charge.idempotency_key not in sent_before
    charged = _intent(services, donation_id, period)
    assert charged["status"] == "succeeded"
    assert "openFor" not in charged
    moved = scheduled.find_one({"_id": donation_id})
    assert moved is not None
    assert moved["nextRunAt"] > before["nextRunAt"]
    assert "openPeriod" not in moved

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
    record = services.database["donations"].find_one({"scheduledDonationId": str(donation_id)})
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

    # THEN the message is deleted, the donation and its ledger entry untouched, and Stripe saw nothing
    assert result.code == 0, result.err
    assert f"nothing to do: period already charged ({record['paymentIntentId']})" in result.out
    assert "message deleted" in result.out
    assert services.database["scheduled_donations"].find_one({"_id": donation_id}) == before
    assert services.database["donations"].find_one({"_id": record["_id"]}) == record
    assert peek_letters(services) == []
    assert services.stripe.state.request_count == requests_before
    assert len(services.stripe.state.charges()) == 1


def test_a_letter_for_a_deleted_donation_is_left_on_the_queue(
    services: LocalServices,
    make_engine: MakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a stopped donation that the host platform then deleted
    point_cli_at(services, monkeypatch)
    donation_id, letter = _stopped_by_a_stolen_card(services, make_engine)
    services.database["scheduled_donations"].delete_one({"_id": donation_id})
    stopped = _intent(services, donation_id, letter["period"])

    # WHEN the operator redrives it
    result = donations(capsys, "redrive", "--yes")

    # THEN it is skipped with the reason, the letter stays, and the period is not reopened
    assert result.code == 0, result.err
    assert "skip: scheduled donation not found; left on the queue" in result.out
    assert "1 left on the queue" in result.out
    assert [item["deadLetterId"] for item in peek_letters(services)] == [letter["deadLetterId"]]
    assert _intent(services, donation_id, letter["period"]) == stopped


_SUMMARY = re.compile(
    r"(\d+) messages: (\d+) (?:would be )?reset for another attempt, (\d+) deleted as done, (\d+) left"
)


def test_a_dry_run_and_the_run_with_yes_agree_on_the_counts(
    services: LocalServices,
    make_engine: MakeEngine,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN four letters: a fixed card to redrive, a period already charged, a deleted donation, and junk
    point_cli_at(services, monkeypatch)
    fixed_id, _ = _stopped_by_a_stolen_card(services, make_engine)
    _fix_card(services, fixed_id)
    gone_id, _ = _stopped_by_a_stolen_card(services, make_engine)
    services.database["scheduled_donations"].delete_one({"_id": gone_id})
    paid_id = insert_donation(services)
    assert run_engine(make_engine()).succeeded == 1
    paid = services.database["donations"].find_one({"scheduledDonationId": str(paid_id)})
    assert paid is not None
    send_raw(
        services,
        json.dumps({"reason": "hard_decline", "scheduledDonationId": str(paid_id), "period": paid["period"]}),
    )
    send_raw(services, "not a letter")

    # WHEN the operator looks, then acts
    dry = donations(capsys, "redrive")
    acted = donations(capsys, "redrive", "--yes")

    # THEN both name the same counts; the run with --yes did what the dry run said
    assert (dry.code, acted.code) == (0, 0), dry.err + acted.err
    planned = _SUMMARY.search(dry.out)
    done = _SUMMARY.search(acted.out)
    assert planned is not None
    assert done is not None
    assert planned.groups() == done.groups() == ("4", "1", "1", "2")
    assert "nothing changed. Run with --yes to act." in dry.out
    assert "0 errors (2 messages deleted)" in acted.out
    depth = donations(capsys, "status", "--json")
    assert json.loads(depth.out)["deadLetterQueue"]["messages"] == 2
    _catch_up(clock)
    assert run_engine(make_engine()).succeeded == 1
    assert len(_charges_of(services, fixed_id)) == 1


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
    reset = scheduled.find_one({"_id": donation_id})
    _catch_up(clock)
    summary = run_engine(make_engine())

    # THEN it is active again with the stop fields gone, and charged once, for the period it was due
    # (three days ago), not for today
    assert fixed.code == 0
    assert f"period {due.date().isoformat()} opened by the job (due now)" in fixed.out
    assert "message deleted" in fixed.out
    assert reset is not None
    assert reset["status"] == "active"
    for cleared in ("invalidReason", "stopReason", "stoppedAt", "pendingDeadLetter", "openPeriod"):
        assert cleared not in reset
    assert peek_letters(services) == []
    assert summary.succeeded == 1
    (charge,) = services.stripe.state.charges()
    assert charge.metadata["period"] == due.date().isoformat()
    assert charge.amount == 1500


def test_redrive_after_exhausted_dunning_gives_the_budget_back_and_uses_a_fresh_key(
    services: LocalServices,
    make_engine: MakeEngine,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a soft-declined donation that used up MAX_ATTEMPTS=2 (the creation key, then attempt-2)
    point_cli_at(services, monkeypatch)
    donation_id = insert_donation(services, payment_method_id=INSUFFICIENT_FUNDS)
    assert run_engine(make_engine(MAX_ATTEMPTS="2")).failed == 1
    clock.advance(days=1, minutes=1)
    assert run_engine(make_engine(MAX_ATTEMPTS="2")).dead_lettered == 1
    (letter,) = peek_letters(services)
    assert letter["reason"] == "attempts_exhausted"
    creation_key = letter["idempotencyKey"].rsplit(":", 1)[0]
    sent_before = _sent_keys(_intent(services, donation_id, letter["period"]))
    assert sent_before == [creation_key, f"{creation_key}:attempt-2"]
    # ... and a donor who then changed the card
    _fix_card(services, donation_id)

    # WHEN the operator redrives it and the next run comes
    result = donations(capsys, "redrive", "--yes")
    reopened = _intent(services, donation_id, letter["period"])
    _catch_up(clock)
    summary = run_engine(make_engine(MAX_ATTEMPTS="2"))

    # THEN the dunning budget is back, and the run charged it once, on the same PaymentIntent, under a key
    # not sent before for this period (attempt-2 again, with another card, is an idempotency error)
    assert result.code == 0, result.err
    assert f"new key {creation_key}:attempt-3" in result.out
    assert (reopened["status"], reopened["attempts"]) == ("pending", 0)
    assert summary.succeeded == 1, summary.to_dict()
    (charge,) = services.stripe.state.charges()
    assert charge.payment_intent_id == letter["paymentIntentId"]
    assert charge.idempotency_key == f"{creation_key}:attempt-3"
    assert charge.idempotency_key not in sent_before


def test_a_period_stopped_by_an_earlier_version_is_adopted_by_the_job_with_a_fresh_budget(
    services: LocalServices,
    make_engine: MakeEngine,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a period an earlier version of the job (before the charge intent) stopped after two declines:
    # the period in flight on the document itself and a `donations` record keyed by the raw id
    point_cli_at(services, monkeypatch)
    donation_id = insert_donation(services, payment_method_id=INSUFFICIENT_FUNDS)
    assert run_engine(make_engine(MAX_ATTEMPTS="2")).failed == 1
    clock.advance(days=1, minutes=1)
    assert run_engine(make_engine(MAX_ATTEMPTS="2")).dead_lettered == 1
    (letter,) = peek_letters(services)
    period = letter["period"]
    intent = _intent(services, donation_id, period)
    sent_before = _sent_keys(intent)
    services.database["donations"].replace_one(
        {"_id": intent["_id"]},
        {
            "scheduledDonationId": donation_id,
            "period": period,
            "status": "failed",
            "amount": intent["amount"],
            "currency": intent["currency"],
            "paymentIntentId": intent["paymentIntentId"],
            "createdAt": intent["createdAt"],
            "updatedAt": intent["updatedAt"],
        },
    )
    scheduled = services.database["scheduled_donations"]
    scheduled.update_one(
        {"_id": donation_id},
        {
            "$set": {
                "periodStart": intent["dueAt"],
                "paymentIntentId": intent["paymentIntentId"],
                "periodAttempts": 2,
                "attempts": 2,
                "stripePaymentMethodId": SUCCEEDS,
            },
            "$unset": {"stoppedPeriod": ""},
        },
    )

    # WHEN the operator redrives it and the next run comes
    result = donations(capsys, "redrive", "--yes")
    reset = scheduled.find_one({"_id": donation_id})
    _catch_up(clock)
    summary = run_engine(make_engine(MAX_ATTEMPTS="2"))

    # THEN the document is active with its dunning budget back and its key count kept, and the job adopted
    # the period and charged it once, on its PaymentIntent, under a key never sent before
    assert result.code == 0, result.err
    assert (
        f"left in flight by an earlier version, adopted by the job: PaymentIntent {intent['paymentIntentId']}"
        in (result.out)
    )
    assert "message deleted" in result.out
    assert reset is not None
    assert (reset["status"], reset["attempts"], reset["periodAttempts"]) == ("active", 0, 2)
    assert "openPeriod" not in reset
    assert summary.succeeded == 1, summary.to_dict()
    (charge,) = services.stripe.state.charges()
    assert charge.payment_intent_id == intent["paymentIntentId"]
    assert charge.metadata["period"] == period
    assert charge.idempotency_key is not None
    assert charge.idempotency_key.startswith(f"{sent_before[0]}:attempt-")
    assert charge.idempotency_key not in sent_before
    adopted = _intent(services, donation_id, period)
    assert adopted["status"] == "succeeded"


def test_if_the_donation_changes_between_the_two_writes_the_reopened_period_is_given_up_uncharged(
    services: LocalServices,
    make_engine: MakeEngine,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a stopped donation with a fixed card, which the host cancels while the redrive is between the
    # intent's write and the donation's
    point_cli_at(services, monkeypatch)
    donation_id, letter = _stopped_by_a_stolen_card(services, make_engine)
    _fix_card(services, donation_id)
    scheduled = services.database["scheduled_donations"]
    write_schedule = MongoDonationStore.redrive_schedule

    def host_cancels_first(store: MongoDonationStore, *args: Any, **kwargs: Any) -> bool:
        scheduled.update_one({"_id": donation_id}, {"$set": {"status": "canceled"}})
        return write_schedule(store, *args, **kwargs)

    monkeypatch.setattr(MongoDonationStore, "redrive_schedule", host_cancels_first)

    # WHEN the operator redrives it and the next run comes
    result = donations(capsys, "redrive", "--yes")
    _catch_up(clock)
    summary = run_engine(make_engine())

    # THEN the letter stays, the donation stays cancelled, and the run gave the reopened period up
    # without a Stripe request
    assert result.code == 0, result.err
    assert "the donation changed while redriving; the next run gives the reopened period up" in result.out
    assert len(peek_letters(services)) == 1
    assert summary.succeeded == 0
    assert _charges_of(services, donation_id) == []
    given_up = _intent(services, donation_id, letter["period"])
    assert given_up["status"] == "canceled"
    assert len(given_up["attemptLog"]) == 1
    document = scheduled.find_one({"_id": donation_id})
    assert document is not None
    assert document["status"] == "canceled"
    assert "openPeriod" not in document


def test_a_run_between_the_two_writes_does_not_leave_the_donation_stuck(
    services: LocalServices,
    make_engine: MakeEngine,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a stopped donation with a fixed card, and a run that takes the reopened intent while the
    # donation is still stopped (between the redrive's two writes): it gives the period up
    point_cli_at(services, monkeypatch)
    donation_id, letter = _stopped_by_a_stolen_card(services, make_engine)
    _fix_card(services, donation_id)
    write_schedule = MongoDonationStore.redrive_schedule
    between: list[Any] = []

    def run_first(store: MongoDonationStore, *args: Any, **kwargs: Any) -> bool:
        _catch_up(clock)
        between.append(run_engine(make_engine()))
        return write_schedule(store, *args, **kwargs)

    monkeypatch.setattr(MongoDonationStore, "redrive_schedule", run_first)

    # WHEN the redrive finishes, and the next run comes
    result = donations(capsys, "redrive", "--yes")
    monkeypatch.undo()
    point_cli_at(services, monkeypatch)
    after = services.database["scheduled_donations"].find_one({"_id": donation_id})
    _catch_up(clock)
    summary = run_engine(make_engine())

    # THEN the run in between charged nothing; the donation was not left held for a closed intent, and the
    # next run reopened the period and charged it once
    assert result.code == 0, result.err
    assert "a run gave the period up meanwhile" in result.out
    assert [run.succeeded for run in between] == [0]
    assert after is not None
    assert after["status"] == "active"
    assert "openPeriod" not in after
    assert summary.succeeded == 1, summary.to_dict()
    (charge,) = _charges_of(services, donation_id)
    assert charge.payment_intent_id == letter["paymentIntentId"]
    assert _intent(services, donation_id, letter["period"])["status"] == "succeeded"


def test_a_period_whose_payment_intent_stripe_canceled_is_not_reopened(
    services: LocalServices,
    make_engine: MakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a period stopped because its PaymentIntent is canceled in Stripe (the engine leaves the intent
    # `canceled` and the donation `invalid`; here the stop is rewritten into that shape)
    point_cli_at(services, monkeypatch)
    donation_id, letter = _stopped_by_a_stolen_card(services, make_engine)
    _fix_card(services, donation_id)
    reason = "stripe_rejected_request:payment_intent_canceled"
    services.database["donations"].update_one(
        {"scheduledDonationId": str(donation_id), "period": letter["period"]},
        {"$set": {"status": "canceled", "stopReason": reason}},
    )
    services.database["scheduled_donations"].update_one(
        {"_id": donation_id}, {"$set": {"status": "invalid", "stopReason": reason}}
    )
    before = _intent(services, donation_id, letter["period"])

    # WHEN the operator redrives it
    result = donations(capsys, "redrive", "--yes")

    # THEN it is left with the reason: another attempt on that PaymentIntent could only be rejected
    assert result.code == 0, result.err
    assert f"skip: the period's PaymentIntent {letter['paymentIntentId']} cannot be confirmed" in result.out
    assert _intent(services, donation_id, letter["period"]) == before
    assert len(peek_letters(services)) == 1


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


# -- a redrive that respects card networks (issue 10, item 7) -------------------------------------------

_COUNTS = re.compile(
    r"(\d+) messages: (\d+) (?:would be )?reset for another attempt, (\d+) deleted as done, "
    r"(\d+) left on the queue(?: \((\d+) not selected\))?"
)


def _document(services: LocalServices, donation_id: Any) -> dict[str, Any]:
    found = services.database["scheduled_donations"].find_one({"_id": donation_id})
    assert found is not None
    return dict(found)


def _stopped_with_fixed_cards(services: LocalServices, make_engine: MakeEngine, count: int) -> list[Any]:
    ids = []
    for _ in range(count):
        donation_id, _ = _stopped_by_a_stolen_card(services, make_engine)
        _fix_card(services, donation_id)
        ids.append(donation_id)
    return ids


@pytest.mark.parametrize("card", [STOLEN_CARD, LOST_CARD, AUTHENTICATION_REQUIRED])
def test_a_hard_decline_on_an_unchanged_card_stays_on_the_queue_and_is_not_retried(
    card: str,
    services: LocalServices,
    make_engine: MakeEngine,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a donation hard-declined, stopped and dead-lettered, whose card the donor has not changed
    point_cli_at(services, monkeypatch)
    donation_id, letter = _stopped_by_a_stolen_card(services, make_engine, card)
    document = _document(services, donation_id)
    stopped = _intent(services, donation_id, letter["period"])

    # WHEN the operator redrives with --yes, and the next run comes
    result = donations(capsys, "redrive", "--yes")
    requests = services.stripe.state.request_count
    _catch_up(clock)
    run_engine(make_engine())

    # THEN the letter stays on the queue with the reason, nothing was reopened, and the card was not retried
    assert result.code == 0, result.err
    code = letter["declineCode"] or letter["code"]
    assert (
        f"skip: hard decline ({code}) on the same payment method {card}; update the card first, "
        "or --force --force-reason TEXT; left on the queue"
    ) in result.out
    assert [item["deadLetterId"] for item in peek_letters(services)] == [letter["deadLetterId"]]
    assert _document(services, donation_id) == document
    assert _intent(services, donation_id, letter["period"]) == stopped
    assert services.stripe.state.request_count == requests


def test_every_hard_decline_code_on_an_unchanged_card_stays_on_the_queue(
    services: LocalServices,
    make_engine: MakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a donation stopped by a stolen card it still has, and a letter for that period with each hard
    # decline code the engine knows
    point_cli_at(services, monkeypatch)
    donation_id, letter = _stopped_by_a_stolen_card(services, make_engine)
    for code in sorted(HARD_DECLINE_CODES - {letter["declineCode"]}):
        send_raw(services, json.dumps({**letter, "declineCode": code}))
    stopped = _intent(services, donation_id, letter["period"])

    # WHEN the operator redrives with --yes
    result = donations(capsys, "redrive", "--yes")

    # THEN every letter stays on the queue, each with its code, and the period was not reopened
    assert result.code == 0, result.err
    for code in HARD_DECLINE_CODES:
        assert f"skip: hard decline ({code}) on the same payment method {STOLEN_CARD};" in result.out
    total = len(HARD_DECLINE_CODES)
    counts = _COUNTS.search(result.out)
    assert counts is not None
    assert counts.groups() == (str(total), "0", "0", str(total), None)
    assert _intent(services, donation_id, letter["period"]) == stopped


def test_a_soft_declined_donation_is_still_redriven_on_the_same_card(
    services: LocalServices,
    make_engine: MakeEngine,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a soft-declined donation that used up its dunning budget, with the card unchanged
    point_cli_at(services, monkeypatch)
    donation_id = insert_donation(services, payment_method_id=INSUFFICIENT_FUNDS)
    assert run_engine(make_engine(MAX_ATTEMPTS="1")).dead_lettered == 1
    (letter,) = peek_letters(services)
    assert letter["reason"] == "attempts_exhausted"

    # WHEN the operator redrives it
    result = donations(capsys, "redrive", "--yes")

    # THEN it is reset as before: a soft decline may be retried on the same card
    assert result.code == 0, result.err
    assert "reset for another attempt" in result.out
    assert _intent(services, donation_id, letter["period"])["status"] == "pending"
    assert peek_letters(services) == []


def test_a_forced_redrive_of_a_hard_decline_is_logged_and_recorded_on_the_intent(
    services: LocalServices,
    make_engine: MakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    log_stream: io.StringIO,
) -> None:
    # GIVEN a donation stopped by a stolen card that the donor says was found again (the card is unchanged)
    point_cli_at(services, monkeypatch)
    donation_id, letter = _stopped_by_a_stolen_card(services, make_engine)
    document = _document(services, donation_id)
    justification = "donor confirmed by phone the card was recovered, ticket 4711"
    force = ["--id", str(donation_id), "--force", "--force-reason", justification]

    # WHEN the operator looks, then forces the redrive of that donation
    dry = donations(capsys, "redrive", *force)
    logged_by_the_dry_run = log_stream.getvalue()
    acted = donations(capsys, "redrive", "--yes", *force)

    # THEN both say it is forced and why; the period is reopened and the forcing is recorded on its intent
    assert (dry.code, acted.code) == (0, 0), dry.err + acted.err
    forced = f"forced: hard decline (stolen_card) on the same payment method {STOLEN_CARD}"
    assert forced in dry.out
    assert forced in acted.out
    assert "message deleted" in acted.out
    assert "hard decline redriven by force" not in logged_by_the_dry_run
    reopened = _intent(services, donation_id, letter["period"])
    assert reopened["status"] == "pending"
    assert reopened["forcedRedrive"]["reason"] == justification
    assert isinstance(reopened["forcedRedrive"]["at"], datetime)
    assert peek_letters(services) == []
    # ... and one structured log line names the operator's reason, the donation and the letter, nothing else
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines() if line.startswith("{")]
    (logged,) = [line for line in lines if line.get("message") == "hard decline redriven by force"]
    assert logged["level"] == "WARNING"
    assert logged["operator_reason"] == justification
    assert logged["donation_id"] == str(donation_id)
    assert logged["dead_letter_id"] == letter["deadLetterId"]
    text = json.dumps(logged)
    for personal in (document["stripeCustomerId"], document["donorId"], STOLEN_CARD):
        assert personal not in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--force"], "--force needs --force-reason TEXT"),
        (["--force", "--force-reason", "  "], "--force needs --force-reason TEXT"),
        (["--force-reason", "the donor called"], "--force-reason goes with --force"),
        (["--only-reason", "expired_card"], "--only-reason must be among"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--id", " , "], "--id needs a scheduled donation id"),
    ],
)
def test_redrive_refuses_an_unclear_selection_or_an_unjustified_force(
    argv: list[str],
    message: str,
    services: LocalServices,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a letter on the queue
    point_cli_at(services, monkeypatch)
    send_raw(
        services, json.dumps({"reason": "hard_decline", "scheduledDonationId": "x", "period": "2026-01-01"})
    )

    # WHEN the operator gives options that do not say what to do
    result = donations(capsys, "redrive", "--yes", *argv)

    # THEN it is a usage error, and the letter was not touched
    assert result.code == 2
    assert message in result.err
    assert len(peek_letters(services)) == 1


def test_redrive_help_names_the_filters_and_the_forced_redrive_apart(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # WHEN the operator asks for help
    result = donations(capsys, "redrive", "--help")

    # THEN the filters and the forcing options are there, and no bare --reason is left to confuse them
    assert result.code == 0
    for option in ("--id ID", "--only-reason REASON", "--limit N", "--force ", "--force-reason TEXT"):
        assert option in result.out
    assert re.search(r"(?<![-\w])--reason\b", result.out) is None


def test_redrive_acts_only_on_the_donations_named_by_id(
    services: LocalServices,
    make_engine: MakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN three stopped donations whose donors all fixed their cards
    point_cli_at(services, monkeypatch)
    first, second, third = _stopped_with_fixed_cards(services, make_engine, 3)

    # WHEN the operator redrives the first and the third only (two --id options)
    result = donations(capsys, "redrive", "--yes", "--id", str(first), "--id", str(third))

    # THEN those two are reset; the second's letter stays, visible, and its donation is untouched
    assert result.code == 0, result.err
    counts = _COUNTS.search(result.out)
    assert counts is not None
    assert counts.groups() == ("3", "2", "0", "1", "1")
    assert "skip: not selected (--id); left on the queue" in result.out
    assert [item["scheduledDonationId"] for item in peek_letters(services)] == [str(second)]
    assert _document(services, second)["status"] == "payment_failed"
    assert (_document(services, first)["status"], _document(services, third)["status"]) == (
        "active",
        "active",
    )


def test_redrive_with_a_limit_acts_on_at_most_that_many_letters(
    services: LocalServices,
    make_engine: MakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN three stopped donations whose donors all fixed their cards
    point_cli_at(services, monkeypatch)
    ids = _stopped_with_fixed_cards(services, make_engine, 3)

    # WHEN the operator redrives at most two
    result = donations(capsys, "redrive", "--yes", "--limit", "2")

    # THEN two are reset; the third letter stays, visible at once, and its donation is untouched
    assert result.code == 0, result.err
    counts = _COUNTS.search(result.out)
    assert counts is not None
    assert counts.groups() == ("3", "2", "0", "1", "1")
    assert "skip: not selected (beyond --limit 2); left on the queue" in result.out
    (left,) = peek_letters(services)
    statuses = {str(donation_id): _document(services, donation_id)["status"] for donation_id in ids}
    assert statuses.pop(left["scheduledDonationId"]) == "payment_failed"
    assert set(statuses.values()) == {"active"}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], ("6", "2", "2", "2", None)),
        (["--only-reason", "hard_decline"], ("6", "1", "2", "3", "2")),
        (["--id", "{fixed},{invalid}"], ("6", "2", "1", "3", "3")),
        (["--force", "--force-reason", "the donor's bank lifted the block"], ("6", "3", "2", "1", None)),
        (["--limit", "1"], None),
        (["--only-reason", "invalid_document,attempts_exhausted", "--limit", "5"], ("6", "1", "0", "5", "5")),
    ],
    ids=["everything", "only-reason", "id", "force", "limit", "only-reason-and-limit"],
)
def test_a_dry_run_and_the_run_with_yes_agree_on_every_count_of_the_same_queue(
    options: list[str],
    expected: tuple[str, ...] | None,
    services: LocalServices,
    make_engine: MakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN on the queue: a fixed card's letter, sent twice (SQS delivers at least once), a stolen card still
    # on its donation, an invalid document since fixed, a period already charged, and junk
    point_cli_at(services, monkeypatch)
    fixed = insert_donation(services, payment_method_id=STOLEN_CARD)
    unchanged = insert_donation(services, payment_method_id=STOLEN_CARD)
    invalid = insert_donation(services, amount=-500)
    paid = insert_donation(services)
    assert run_engine(make_engine()).succeeded == 1
    letters = {letter["scheduledDonationId"]: letter for letter in peek_letters(services)}
    assert set(letters) == {str(fixed), str(unchanged), str(invalid)}
    _fix_card(services, fixed)
    services.database["scheduled_donations"].update_one({"_id": invalid}, {"$set": {"amount": 1500}})
    send_raw(services, json.dumps(letters[str(fixed)]))
    paid_entry = services.database["donations"].find_one({"scheduledDonationId": str(paid)})
    assert paid_entry is not None
    send_raw(
        services,
        json.dumps(
            {"reason": "hard_decline", "scheduledDonationId": str(paid), "period": paid_entry["period"]}
        ),
    )
    send_raw(services, "not a letter")
    argv = [option.format(fixed=fixed, invalid=invalid) for option in options]

    # WHEN the operator looks, then acts with the same options
    dry = donations(capsys, "redrive", *argv)
    acted = donations(capsys, "redrive", "--yes", *argv)

    # THEN every count agrees, and the letters said to be left are the ones on the queue, visible
    assert (dry.code, acted.code) == (0, 0), dry.err + acted.err
    planned = _COUNTS.search(dry.out)
    done = _COUNTS.search(acted.out)
    assert planned is not None
    assert done is not None
    assert planned.groups() == done.groups()
    if expected is not None:
        assert done.groups() == expected
    else:
        assert int(done.group(2)) + int(done.group(3)) == 1
    assert "0 errors" in acted.out
    depth = donations(capsys, "status", "--json")
    assert json.loads(depth.out)["deadLetterQueue"]["messages"] == int(done.group(4))


def test_a_hard_decline_on_a_card_the_period_does_not_record_is_redriven_only_by_force() -> None:
    # GIVEN a hard-decline letter for a period an earlier version stopped: its record keeps no attempt log,
    # so nothing says which card was declined (the donation may still have it)
    now = datetime.now(UTC)
    document = scheduled_donation(
        customer_id="cus_test", next_run_at=now - timedelta(hours=1), status="payment_failed"
    )
    period = period_key(document["nextRunAt"])
    record = {
        "_id": "legacy",
        "scheduledDonationId": str(document["_id"]),
        "period": period,
        "status": "failed",
    }
    facts = Facts(entry=entry_from(record), document=document)
    letter = Letter("letter-1", str(document["_id"]), period, "hard_decline", decline_code="stolen_card")

    # WHEN redrive decides, without and with --force
    plain = decide(letter, facts, now)
    forced = decide(letter, facts, now, force="the donor confirmed a new card number")

    # THEN it is left without force; with force it is reset, the forcing recorded on that period's record
    assert plain.action == "leave"
    assert plain.reason == (
        "hard decline (stolen_card); the ledger does not record which payment method was declined; "
        "check the card with the donor, then --force --force-reason TEXT"
    )
    assert forced.action == "reset"
    assert forced.forced is not None
    assert forced.forced.entry == facts.entry
    assert forced.forced.justification == "the donor confirmed a new card number"
