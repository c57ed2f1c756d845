"""The real handler, fed documents full of personal data, writes none of it (nor any secret) anywhere.

Every place a run leaves text is scanned: the Powertools log lines, everything written to stdout/stderr (EMF
metrics included), records of other loggers, the SQS dead letters, the `donations` records, the fields the
run wrote back into the scheduled donations, and the summary the handler returns.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import app
from donation_processor.config import load_settings
from donation_processor.exceptions import PaymentsUnavailableError
from donation_processor.observability import logger
from harness.local.lambda_context import LocalLambdaContext
from harness.local.seed import (
    AUTHENTICATION_REQUIRED,
    GENERIC_DECLINE,
    INSUFFICIENT_FUNDS,
    LOST_CARD,
    STOLEN_CARD,
    SUCCEEDS,
    scheduled_donation,
)
from harness.local.services import LOCAL_STRIPE_KEY, LocalServices
from harness.local.stripe_server import Fault
from tests.support.dead_letters import read_dead_letters

ROOT = Path(__file__).resolve().parents[2]
SCHEDULED_EVENT = json.loads((ROOT / "events" / "scheduled.json").read_text(encoding="utf-8"))

# Personal data planted in fields the engine has no reason to read or copy.
DONOR_NAME = "Ada Lovelace"
DONOR_EMAIL = "ada.lovelace@example.org"
DONOR_PHONE = "+44 20 7946 0958"
DONOR_STREET = "12 Analytical Engine Lane"
DONOR_POSTCODE = "NW1 6XE"
CARD_NUMBERS = ("4242 4242 4242 4242", "4000-0566-5566-5556", "378282246310005")
PLANTED = (DONOR_NAME, "Lovelace", DONOR_EMAIL, DONOR_PHONE, DONOR_STREET, DONOR_POSTCODE, *CARD_NUMBERS)
REJECTED_STRIPE_KEY = "sk_live_" + "51HxRejectedKeyNeverLogged0042"

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
STRIPE_KEY = re.compile(r"(?<![A-Za-z0-9])[sr]k_(?:test|live)_[A-Za-z0-9_]{4,}")
MONGODB_URI = re.compile(r"mongo(?:db(?:\+srv)?|mock)://", re.IGNORECASE)
# 13-19 digits, optionally grouped by single spaces or dashes, not part of a longer word or id.
CARD_LIKE = re.compile(r"(?<![0-9A-Za-z])\d(?:[ -]?\d){12,18}(?![0-9A-Za-z])")
ONE_DAY_MS = 86_400_000


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def find_leaks(text: str, *, secrets: tuple[str, ...] = ()) -> list[str]:
    """Everything in text that looks like a secret or personal data; empty when the text is clean."""
    leaks: list[str] = []
    lowered = text.lower()
    digits_only = re.sub(r"\D", "", text)
    for value in (*secrets, *PLANTED):
        if value.lower() in lowered:
            leaks.append(f"planted value {value!r}")
    for value in (DONOR_PHONE, *CARD_NUMBERS):
        if len(re.sub(r"\D", "", value)) >= 12 and re.sub(r"\D", "", value) in digits_only:
            leaks.append(f"digits of {value!r}")
    leaks += [f"e-mail address {match!r}" for match in EMAIL.findall(text)]
    leaks += [f"Stripe key {match!r}" for match in STRIPE_KEY.findall(text)]
    leaks += [f"MongoDB URI scheme {match!r}" for match in MONGODB_URI.findall(text)]
    now_ms = time.time() * 1000
    for match in CARD_LIKE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if len(digits) == 13 and abs(int(digits) - now_ms) < ONE_DAY_MS:
            continue  # an epoch-millisecond timestamp (EMF "Timestamp"), not a card number
        if luhn_valid(digits):
            leaks.append(f"card-number-like run {match.group()!r}")
    return leaks


def as_text(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def personal_data(index: int) -> dict[str, Any]:
    """What a CRM would keep beside a donation: never to be copied into logs, letters or records."""
    return {
        "email": DONOR_EMAIL,
        "name": DONOR_NAME,
        "metadata": {
            "email": DONOR_EMAIL.replace("@", f"+{index}@"),
            "name": DONOR_NAME,
            "phone": DONOR_PHONE,
            "address": {"street": DONOR_STREET, "city": "London", "postcode": DONOR_POSTCODE},
            "note": f"donor asked us to keep card {CARD_NUMBERS[index % len(CARD_NUMBERS)]} on file",
        },
    }


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The job's logger at DEBUG (the most it could ever write) and every other logger captured from INFO."""
    previous = logger.log_level
    logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.INFO)
    yield caplog
    logger.setLevel(previous)


def _seed_mix(services: LocalServices, max_attempts: int) -> dict[Any, dict[str, Any]]:
    due = datetime.now(UTC) - timedelta(hours=1)
    specs: list[dict[str, Any]] = [
        {"payment_method_id": SUCCEEDS},
        {"payment_method_id": SUCCEEDS},
        {"payment_method_id": SUCCEEDS},
        {"payment_method_id": INSUFFICIENT_FUNDS},  # soft decline: retried on the dunning schedule
        {"payment_method_id": GENERIC_DECLINE},  # soft decline
        # soft decline on the last attempt (a period an earlier version left in dunning): dead-lettered
        {
            "payment_method_id": INSUFFICIENT_FUNDS,
            "attempts": max_attempts - 1,
            "periodAttempts": max_attempts - 1,
            "periodStart": due.replace(tzinfo=None),
        },
        {"payment_method_id": STOLEN_CARD},  # hard decline: stopped and dead-lettered
        {"payment_method_id": LOST_CARD},  # hard decline
        {"payment_method_id": AUTHENTICATION_REQUIRED},  # needs the donor: stopped and dead-lettered
        {"stripePaymentMethodId": None},  # malformed documents: invalid and dead-lettered
        {"amount": -500},
        {"amount": 12.5},
        {"currency": "xxx"},
        {"frequency": "daily"},
    ]
    documents = [
        scheduled_donation(
            customer_id=services.stripe.state.create_customer(),
            next_run_at=due,
            **spec,
            **personal_data(index),
        )
        for index, spec in enumerate(specs)
    ]
    services.database["scheduled_donations"].insert_many(documents)
    return {document["_id"]: document for document in documents}


def _fields_the_run_wrote(services: LocalServices, seeded: dict[Any, dict[str, Any]]) -> list[Any]:
    written: list[Any] = []
    for document in services.database["scheduled_donations"].find():
        before = seeded[document["_id"]]
        written += [value for key, value in document.items() if before.get(key) != value]
    return written


def test_logs_dead_letters_and_records_hold_no_secret_and_no_personal_data(
    handler_env: LocalServices,
    lambda_context: LocalLambdaContext,
    log_stream: io.StringIO,
    capfd: pytest.CaptureFixture[str],
    debug_logging: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a realistic mix of due donations (successes, soft and hard declines, an exhausted dunning
    # schedule, authentication required, malformed documents), each document full of personal data
    max_attempts = load_settings(os.environ).max_attempts
    seeded = _seed_mix(handler_env, max_attempts)
    # And a Stripe that fails once with a 500 and drops one answer, so retry and reconcile paths log too
    handler_env.stripe.state.inject_faults(Fault("http_500"), Fault("drop_after"))

    # WHEN an operator dry-runs the job and then the schedule invokes it
    dry_run = app.lambda_handler({"dryRun": True}, lambda_context)
    summary = app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN every path ran: charges succeeded, failed, were dead-lettered and rejected as invalid
    assert dry_run["invalid"] == 5
    assert (summary["succeeded"], summary["invalid"]) == (3, 5)
    assert summary["failed"] >= 6
    letters = read_dead_letters(handler_env)
    assert len(letters) == summary["deadLettered"] == 9
    records = list(handler_env.database["donations"].find())
    assert len(records) == 9  # 3 succeeded, 6 failed; invalid documents are never charged
    # And the planted data is still where the engine read the documents from
    stored = handler_env.database["scheduled_donations"].find_one({"metadata.phone": DONOR_PHONE})
    assert stored is not None
    assert find_leaks(as_text(stored))

    # And no output of the run holds a secret or a piece of personal data
    captured = capfd.readouterr()
    log_lines = log_stream.getvalue().splitlines()
    assert len(log_lines) >= 10, "the job's logs were not captured"
    assert '"_aws"' in captured.out, "the EMF metrics were not captured"
    outputs: dict[str, list[str]] = {
        "log line": log_lines,
        "stdout line": captured.out.splitlines(),
        "stderr line": captured.err.splitlines(),
        "other logger": [record.getMessage() for record in debug_logging.records],
        "dead letter": [as_text(letter) for letter in letters],
        "donations record": [as_text(record) for record in records],
        "field written to a scheduled donation": [
            as_text(value) for value in _fields_the_run_wrote(handler_env, seeded)
        ],
        "handler result": [as_text(dry_run), as_text(summary)],
    }
    secrets = (LOCAL_STRIPE_KEY, handler_env.mongodb_uri)
    leaks = [
        f"{source}: {leak} in {text[:300]}"
        for source, texts in outputs.items()
        for text in texts
        for leak in find_leaks(text, secrets=secrets)
    ]
    assert leaks == []


def test_a_rejected_stripe_key_is_not_echoed_into_logs_or_records(
    handler_env: LocalServices,
    lambda_context: LocalLambdaContext,
    log_stream: io.StringIO,
    capfd: pytest.CaptureFixture[str],
    debug_logging: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a due donation and a Stripe key that Stripe refuses
    seeded = _seed_mix(handler_env, max_attempts=4)
    monkeypatch.setenv("STRIPE_SECRET_KEY", REJECTED_STRIPE_KEY)

    # WHEN the schedule invokes the handler
    with pytest.raises(PaymentsUnavailableError):
        app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN the run stopped on the refused key and said so
    logs = log_stream.getvalue()
    assert "Stripe refused our credentials" in logs
    # And neither the key nor any personal data appears anywhere
    captured = capfd.readouterr()
    outputs = [
        *logs.splitlines(),
        *captured.out.splitlines(),
        *captured.err.splitlines(),
        *(record.getMessage() for record in debug_logging.records),
        *(as_text(letter) for letter in read_dead_letters(handler_env)),
        *(as_text(record) for record in handler_env.database["donations"].find()),
        *(as_text(value) for value in _fields_the_run_wrote(handler_env, seeded)),
    ]
    secrets = (REJECTED_STRIPE_KEY, REJECTED_STRIPE_KEY[-12:], handler_env.mongodb_uri)
    leaks = [f"{leak} in {text[:300]}" for text in outputs for leak in find_leaks(text, secrets=secrets)]
    assert leaks == []


@pytest.mark.parametrize(
    "text",
    [
        f'{{"message": "charging", "to": "{DONOR_EMAIL}"}}',
        '{"contact": "someone.else+tag@mail.example.co.uk"}',
        '{"note": "4111 1111 1111 1111"}',
        '{"pan": "6011000990139424"}',
        f'{{"key": "{LOCAL_STRIPE_KEY}"}}',
        '{"key": "rk_live_abcdEFGH1234"}',
        '{"uri": "mongodb+srv://user:pass@cluster0.example.net/donations"}',
        f'{{"who": "{DONOR_NAME}"}}',
        '{"phone": "442079460958"}',
    ],
)
def test_the_scanner_finds_each_kind_of_leak(text: str) -> None:
    # GIVEN a line holding one secret or piece of personal data
    # WHEN it is scanned THEN the leak is reported
    assert find_leaks(text)


def test_the_scanner_passes_what_the_job_legitimately_writes() -> None:
    # GIVEN ids, dates, amounts, a masked key and an EMF timestamp
    now_ms = int(time.time() * 1000)
    line = as_text(
        {
            "scheduledDonationId": "6929f1a8c0ffee0123456789",
            "paymentIntentId": "pi_0123456789abcdef01234567",
            "period": "2026-11-29",
            "failedAt": "2026-11-29T01:02:03.123456+00:00",
            "amount": 2500,
            "message": "Invalid API Key provided: sk_live_********0042",
            "_aws": {"Timestamp": now_ms},
        }
    )
    # WHEN it is scanned THEN nothing is reported
    assert find_leaks(line) == []
