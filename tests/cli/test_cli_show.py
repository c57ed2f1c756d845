"""`donations show ID`: one donation's schedule, its charge intents and attempts, and its parked letters."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from donation_processor.engine import DonationEngine
from harness.local.seed import INSUFFICIENT_FUNDS, STOLEN_CARD
from harness.local.services import LocalServices
from tests.support.cli import donations, insert_donation, point_cli_at, run_engine


def test_show_gives_the_schedule_and_the_declined_attempt_of_a_period_in_dunning(
    services: LocalServices,
    make_engine: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a donation (an ObjectId) whose card was declined for insufficient funds in a real run
    point_cli_at(services, monkeypatch)
    donation_id = str(insert_donation(services, payment_method_id=INSUFFICIENT_FUNDS, amount=117500))
    run_engine(make_engine())

    # WHEN the operator shows it, on screen and as JSON
    table = donations(capsys, "show", donation_id)
    report = json.loads(donations(capsys, "show", donation_id, "--json").out)

    # THEN the schedule, the open intent and its declined attempt are there
    assert table.code == 0, table.err
    assert f"scheduled donation {donation_id} (ObjectId)" in table.out
    assert "1,175.00 USD" in table.out
    assert "pending" in table.out
    assert "declined (insufficient_funds)" in table.out
    assert report["id"] == donation_id
    assert report["schedule"]["status"] == "active"
    assert report["schedule"]["amount"] == {"amount": 117500, "currency": "usd"}
    [intent] = report["intents"]
    assert (intent["status"], intent["open"], intent["dunningAttempts"]) == ("pending", True, 1)
    assert intent["amount"] == {"amount": 117500, "currency": "usd"}
    assert intent["paymentIntentId"].startswith("pi_")
    assert (intent["errorCode"], intent["declineCode"]) == ("card_declined", "insufficient_funds")
    [attempt] = intent["attempts"]
    assert (attempt["number"], attempt["outcome"], attempt["reason"]) == (1, "declined", "insufficient_funds")
    assert attempt["paymentMethodId"] == INSUFFICIENT_FUNDS
    assert attempt["key"] == intent["idempotencyKey"]
    assert report["parkedLetters"] == []
    assert report["queue"]["read"] is False


def test_show_lists_a_letter_the_job_could_not_send_and_keeps_in_mongodb(
    services: LocalServices,
    make_engine: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a stolen card, charged by a run whose dead-letter queue does not exist (the letter is parked)
    point_cli_at(services, monkeypatch)
    donation_id = insert_donation(services, payment_method_id=STOLEN_CARD, donation_id="host-id-7")
    missing_queue = services.queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    summary = run_engine(make_engine(DEAD_LETTER_QUEUE_URL=missing_queue))
    assert summary.dead_letters_deferred == 1

    # WHEN the operator shows it
    table = donations(capsys, "show", donation_id)
    report = json.loads(donations(capsys, "show", donation_id, "--json").out)

    # THEN the stop and the parked letter are shown, with where it is kept
    assert report["schedule"]["status"] == "payment_failed"
    assert report["engine"]["stopReason"].startswith("hard_decline")
    [letter] = report["parkedLetters"]
    assert letter["reason"] == "hard_decline"
    assert letter["keptOn"] == "ledger entry of period " + report["intents"][0]["period"]
    assert letter["deadLetterId"] in table.out
    assert "parked in MongoDB" in table.out


def test_an_unknown_id_exits_1_and_a_malformed_one_exits_2(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_cli_at(services, monkeypatch)

    unknown = donations(capsys, "show", "no-such-donation")
    malformed = donations(capsys, "show", "not an id!")

    assert unknown.code == 1
    assert "no scheduled donation with id 'no-such-donation'" in unknown.err
    assert malformed.code == 2
    assert "'not an id!' is not a scheduled donation id" in malformed.err
