"""The real handler against moto's server, mongomock and the Stripe-compatible server."""

from __future__ import annotations

import io
import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import app
from donation_processor.config import load_settings
from donation_processor.engine import DonationEngine
from donation_processor.exceptions import InvalidEventError, LockUnavailableError
from donation_processor.ports import LockLease
from donation_processor.wiring import build_engine
from harness.local.aws_local import load_template
from harness.local.emf import emitted_metrics, namespaces
from harness.local.lambda_context import LocalLambdaContext
from harness.local.seed import (
    AUTHENTICATION_REQUIRED,
    INSUFFICIENT_FUNDS,
    STOLEN_CARD,
    naive_utc,
    scheduled_donation,
)
from harness.local.services import LOCAL_STRIPE_KEY, LocalServices
from tests.support.clock import TestClock
from tests.support.dead_letters import read_dead_letters

SCHEDULED_EVENT = json.loads(Path("events/scheduled.json").read_text())


def _seed(services: LocalServices, count: int = 1, **fields: Any) -> list[Any]:
    documents = [
        scheduled_donation(
            customer_id=services.stripe.state.create_customer(),
            next_run_at=datetime.now(UTC) - timedelta(hours=1),
            **fields,
        )
        for _ in range(count)
    ]
    services.database["scheduled_donations"].insert_many(documents)
    return [document["_id"] for document in documents]


def _charges_per_period(services: LocalServices) -> dict[tuple[str, ...], int]:
    return services.stripe.state.charge_counts_by(metadata_keys=("scheduled_donation_id", "period"))


def _emitted_metrics(output: str) -> dict[str, float]:
    assert namespaces(output) <= {"ScheduledDonations"}
    return emitted_metrics(output)


class LiveHolder:
    """Another run that holds the job lock and is alive, renewing its lease between the handler's polls.

    The handler's lock, finding the item held, reads it every 5 s for a lease (on its monotonic clock) and
    skips if the record version changed. Here its nap is a step of the test clock (`nap`), no real wait, so
    no LeaseKeeper on real time could renew within the watch, and a holder that never renews is dead and
    taken over. So `nap` renews the holder first, as a live holder renews every third of a lease: the
    watcher must see the new record version and skip."""

    def __init__(self, clock: TestClock) -> None:
        self._clock = clock
        self.lease: LockLease | None = None

    def take(self, engine: DonationEngine, owner: str = "run-other") -> None:
        self._lock = engine._deps.lock
        self.lease = self._lock.acquire(owner)

    def renew(self) -> None:
        """LockLostError unless it still holds the lock."""
        if self.lease is not None:
            self.lease = self._lock.renew(self.lease)

    def nap(self, seconds: float) -> None:
        self.renew()
        self._clock.sleep(seconds)


@pytest.fixture
def live_holder(handler_env: LocalServices, clock: TestClock, monkeypatch: pytest.MonkeyPatch) -> LiveHolder:
    """A holder (not yet holding), and the warm container's engine as app.get_engine builds it, except that
    its lock watches a held item on the test clock, napping through `LiveHolder.nap`."""
    holder = LiveHolder(clock)
    engine = build_engine(load_settings(os.environ), lock_monotonic=clock.monotonic, lock_sleep=holder.nap)
    monkeypatch.setattr(app, "_engine", engine)
    return holder


def test_scheduled_run_charges_each_due_donation_once_and_moves_the_schedule_on(
    handler_env: LocalServices, lambda_context: LocalLambdaContext
) -> None:
    # GIVEN three monthly donations due an hour ago
    ids = _seed(handler_env, 3)
    before = {d["_id"]: d["nextRunAt"] for d in handler_env.database["scheduled_donations"].find()}

    # WHEN the schedule invokes the handler twice
    first = app.lambda_handler(SCHEDULED_EVENT, lambda_context)
    second = app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN each period was charged exactly once, recorded once, and the schedule moved one month on
    assert first["status"] == "completed"
    assert (first["due"], first["succeeded"], first["failed"]) == (3, 3, 0)
    assert second["due"] == 0
    assert sorted(_charges_per_period(handler_env).values()) == [1, 1, 1]
    records = list(handler_env.database["donations"].find({"status": "succeeded"}))
    assert len(records) == 3
    for document in handler_env.database["scheduled_donations"].find({"_id": {"$in": ids}}):
        old = before[document["_id"]]
        assert document["nextRunAt"].month == (old.month % 12) + 1
        assert "claimedBy" not in document
        assert document["status"] == "active"


def test_the_summary_has_every_documented_field(
    handler_env: LocalServices, lambda_context: LocalLambdaContext
) -> None:
    # GIVEN one due donation
    _seed(handler_env)

    # WHEN the handler runs
    summary = app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN the summary names every documented field with numbers
    for key in (
        "runId",
        "status",
        "due",
        "succeeded",
        "failed",
        "retried",
        "deadLettered",
        "skipped",
        "durationMs",
    ):
        assert key in summary
    assert summary["runId"].startswith("run-")
    assert summary["amountByCurrency"] == {"usd": 2500}


def test_concurrent_invocations_charge_each_period_once_and_losers_skip(
    handler_env: LocalServices, lambda_context: LocalLambdaContext
) -> None:
    # GIVEN twenty due donations and a Stripe that answers slowly enough for the runs to overlap
    _seed(handler_env, 20)
    handler_env.stripe.state.set_latency(30)
    results: list[dict[str, Any]] = []
    app.get_engine()  # one warm container shared by the threads, as concurrent Lambda invokes would not be

    def invoke() -> None:
        results.append(app.lambda_handler(SCHEDULED_EVENT, lambda_context))

    # WHEN four invocations start at once
    threads = [threading.Thread(target=invoke) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # THEN every period was charged once, and the runs that lost the lock charged nothing
    handler_env.stripe.state.set_latency(0)
    assert sorted(_charges_per_period(handler_env).values()) == [1] * 20
    # One takes the lock; the others find it held and skip (the local DynamoDB applies conditional writes
    # atomically, as DynamoDB does).
    statuses = sorted(result["status"] for result in results)
    assert statuses == ["completed", "skipped_locked", "skipped_locked", "skipped_locked"], statuses
    assert sum(result["succeeded"] for result in results) == 20
    assert all(result["succeeded"] == 0 for result in results if result["status"] != "completed")


def test_a_malformed_event_is_rejected_by_field_and_nothing_is_charged(
    handler_env: LocalServices, lambda_context: LocalLambdaContext
) -> None:
    # GIVEN a due donation
    _seed(handler_env)

    # WHEN a manual invoke sends a limit that is not a number
    with pytest.raises(InvalidEventError, match="limit"):
        app.lambda_handler({"limit": "ten"}, lambda_context)

    # THEN Stripe saw no request at all
    assert handler_env.stripe.state.request_count == 0
    assert handler_env.stripe.state.charges() == []


def test_manual_event_charges_only_the_named_donations(
    handler_env: LocalServices, lambda_context: LocalLambdaContext
) -> None:
    # GIVEN three due donations
    ids = _seed(handler_env, 3)

    # WHEN a manual invoke names one of them
    summary = app.lambda_handler({"donationIds": [str(ids[1])]}, lambda_context)

    # THEN only that one was charged
    assert summary["succeeded"] == 1
    assert list(_charges_per_period(handler_env)) == [
        (str(ids[1]), naive_utc(datetime.now(UTC) - timedelta(hours=1)).date().isoformat())
    ]


def test_dry_run_reports_without_charging_claiming_or_locking(
    handler_env: LocalServices, lambda_context: LocalLambdaContext
) -> None:
    # GIVEN two valid due donations and one malformed
    _seed(handler_env, 2)
    _seed(handler_env, 1, amount=-5)

    # WHEN a dry run is invoked
    summary = app.lambda_handler({"dryRun": True}, lambda_context)

    # THEN it reports what would happen and changes nothing anywhere
    assert summary["status"] == "dry_run"
    assert (summary["due"], summary["invalid"]) == (3, 1)
    assert summary["amountByCurrency"] == {"usd": 5000}
    assert handler_env.stripe.state.request_count == 0
    assert handler_env.database["scheduled_donations"].count_documents({"claimedBy": {"$exists": True}}) == 0
    assert handler_env.database["scheduled_donations"].count_documents({"status": "active"}) == 3


def test_malformed_documents_are_not_charged_marked_invalid_and_dead_lettered(
    handler_env: LocalServices, lambda_context: LocalLambdaContext
) -> None:
    # GIVEN one good donation and four broken ones
    good = _seed(handler_env)[0]
    broken = [
        _seed(handler_env, 1, stripePaymentMethodId=None)[0],
        _seed(handler_env, 1, amount=12.5)[0],
        _seed(handler_env, 1, currency="xxx")[0],
        _seed(handler_env, 1, frequency="daily")[0],
    ]

    # WHEN the job runs
    summary = app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN only the good one was charged; the others are invalid with a reason and dead-lettered
    assert (summary["succeeded"], summary["invalid"], summary["deadLettered"]) == (1, 4, 4)
    assert [key[0] for key in _charges_per_period(handler_env)] == [str(good)]
    collection = handler_env.database["scheduled_donations"]
    reasons = {d["_id"]: d["invalidReason"] for d in collection.find({"status": "invalid"})}
    assert set(reasons) == set(broken)
    assert "stripePaymentMethodId" in reasons[broken[0]]
    assert "amount" in reasons[broken[1]]
    assert "currency" in reasons[broken[2]]
    assert "frequency" in reasons[broken[3]]
    letters = read_dead_letters(handler_env)
    assert {letter["scheduledDonationId"] for letter in letters} == {str(i) for i in broken}
    assert {letter["reason"] for letter in letters} == {"invalid_document"}


def test_dead_letters_carry_what_an_operator_needs_and_no_personal_data(
    handler_env: LocalServices, lambda_context: LocalLambdaContext
) -> None:
    # GIVEN a donation on a stolen card whose document also holds personal data
    donation_id = _seed(
        handler_env, 1, payment_method_id=STOLEN_CARD, metadata={"email": "donor@example.org", "name": "Ada"}
    )[0]

    # WHEN the job runs
    summary = app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN the schedule stopped, and its dead letter holds ids and error details only
    assert (summary["failed"], summary["deadLettered"]) == (1, 1)
    [letter] = read_dead_letters(handler_env)
    assert letter["scheduledDonationId"] == str(donation_id)
    assert letter["reason"] == "hard_decline"
    assert (letter["amount"], letter["currency"]) == (2500, "usd")
    assert letter["declineCode"] == "stolen_card"
    assert letter["code"] == "card_declined"
    assert letter["idempotencyKey"] == f"scheduled-donation:{donation_id}:{letter['period']}"
    assert letter["paymentIntentId"].startswith("pi_")
    assert letter["runId"] == summary["runId"]
    for field in ("attempts", "failedAt", "message", "errorType"):
        assert field in letter
    body = json.dumps(letter)
    assert "donor@example.org" not in body
    assert "Ada" not in body
    assert "pm_" not in body
    stopped = handler_env.database["scheduled_donations"].find_one({"_id": donation_id})
    assert stopped is not None
    assert stopped["status"] == "payment_failed"
    assert "pendingDeadLetter" not in stopped


def test_authentication_required_stops_the_schedule_and_dead_letters_it(
    handler_env: LocalServices, lambda_context: LocalLambdaContext
) -> None:
    # GIVEN a donation whose card needs the donor to authenticate
    donation_id = _seed(handler_env, 1, payment_method_id=AUTHENTICATION_REQUIRED)[0]

    # WHEN the job runs twice
    app.lambda_handler(SCHEDULED_EVENT, lambda_context)
    second = app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN it was tried once, stopped, dead-lettered, and never tried again
    document = handler_env.database["scheduled_donations"].find_one({"_id": donation_id})
    assert document is not None
    assert document["status"] == "payment_failed"
    assert "authentication_required" in document["stopReason"]
    assert second["due"] == 0
    [letter] = read_dead_letters(handler_env)
    assert letter["code"] == "authentication_required"


def test_a_soft_decline_is_not_retried_in_the_run_and_waits_for_the_dunning_schedule(
    handler_env: LocalServices, lambda_context: LocalLambdaContext
) -> None:
    # GIVEN a donation whose card has insufficient funds
    donation_id = _seed(handler_env, 1, payment_method_id=INSUFFICIENT_FUNDS)[0]

    # WHEN the job runs
    summary = app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN it was attempted once, stays active, and its next attempt is a day away
    assert (summary["failed"], summary["retried"], summary["deadLettered"]) == (1, 0, 0)
    confirm_or_create = [
        r for r in handler_env.stripe.state.requests_log if r.path.startswith("/v1/payment_intents")
    ]
    assert len(confirm_or_create) == 1
    document = handler_env.database["scheduled_donations"].find_one({"_id": donation_id})
    assert document is not None
    assert document["status"] == "active"
    delay = document["nextAttemptAt"] - naive_utc(datetime.now(UTC))
    assert timedelta(hours=23) < delay <= timedelta(days=1)
    intent = handler_env.database["donations"].find_one({"scheduledDonationId": str(donation_id)})
    assert intent is not None
    assert (intent["status"], intent["attempts"]) == ("pending", 1)
    assert intent["paymentIntentId"].startswith("pi_")
    assert intent["nextAttemptAt"] == document["nextAttemptAt"]
    assert intent["error"]["declineCode"] == "insufficient_funds"


def test_lock_held_by_a_live_run_skips_and_reports_contention(
    handler_env: LocalServices,
    lambda_context: LocalLambdaContext,
    live_holder: LiveHolder,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a due donation and a lock held by another live run, which renews while the handler watches it
    _seed(handler_env)
    live_holder.take(app.get_engine())

    # WHEN the schedule invokes the handler
    summary = app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN nothing was charged, the other run still holds the lock, and LockContended was emitted
    assert summary["status"] == "skipped_locked"
    assert handler_env.stripe.state.request_count == 0
    live_holder.renew()
    emitted = _emitted_metrics(capfd.readouterr().out)
    assert emitted["LockContended"] == 1
    assert emitted["RunCompleted"] == 0


def test_unreachable_lock_table_refuses_to_run(
    handler_env: LocalServices,
    lambda_context: LocalLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a due donation and a lock table that does not exist
    _seed(handler_env)
    monkeypatch.setenv("LOCK_TABLE_NAME", "no-such-table")

    # WHEN the schedule invokes the handler
    with pytest.raises(LockUnavailableError):
        app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN nothing was charged, and the failed invocation emitted RunFailed and no partial count
    assert handler_env.stripe.state.request_count == 0
    assert _emitted_metrics(capfd.readouterr().out) == {"RunFailed": 1.0}


def test_every_required_metric_is_emitted_in_emf(
    handler_env: LocalServices, lambda_context: LocalLambdaContext, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN one good and one declined donation
    _seed(handler_env)
    _seed(handler_env, 1, payment_method_id=STOLEN_CARD)

    # WHEN the job runs
    app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN the EMF blob holds every metric the alarms and dashboards rely on, with the right values
    emitted = _emitted_metrics(capfd.readouterr().out)
    assert emitted["DonationsDue"] == 2
    assert emitted["DonationsSucceeded"] == 1
    assert emitted["DonationsFailed"] == 1
    assert emitted["DonationsDeadLettered"] == 1
    assert emitted["RunCompleted"] == 1
    for name in (
        "DonationsRetried",
        "LockContended",
        "RunDurationMs",
        "CircuitOpened",
        "DeadLettersDeferred",
    ):
        assert name in emitted


def test_logs_carry_the_run_id_and_donation_id_and_no_secrets(
    handler_env: LocalServices, lambda_context: LocalLambdaContext, log_stream: io.StringIO
) -> None:
    # GIVEN a good and a declined donation
    _seed(handler_env)
    _seed(handler_env, 1, payment_method_id=INSUFFICIENT_FUNDS)

    # WHEN the job runs
    summary = app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN every log line is JSON with the run id; per-donation lines name the donation; no key leaks
    output = log_stream.getvalue()
    lines = [
        json.loads(line) for line in output.splitlines() if line.startswith("{") and '"_aws"' not in line
    ]
    assert lines
    assert all(line.get("run_id") == summary["runId"] for line in lines)
    charged = [
        line for line in lines if line["message"] in ("donation charged", "soft decline; retry scheduled")
    ]
    assert len(charged) == 2
    assert all("donation_id" in line for line in charged)
    assert LOCAL_STRIPE_KEY not in output
    assert "mongomock://" not in output


def test_every_custom_metric_alarm_watches_a_metric_the_handler_really_emits(
    handler_env: LocalServices,
    lambda_context: LocalLambdaContext,
    live_holder: LiveHolder,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the alarms of template.yaml that watch the job's own namespace
    template = load_template("template.yaml")
    watched: set[str] = set()
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        properties = resource["Properties"]
        # A plain alarm names one metric; a metric-math alarm lists its inputs under Metrics.
        stats = [properties] + [
            query["MetricStat"]["Metric"] for query in properties.get("Metrics", []) if "MetricStat" in query
        ]
        for metric in stats:
            if metric.get("Namespace") == {"Ref": "MetricsNamespace"}:
                watched.add(metric["MetricName"])
    _seed(handler_env)

    # WHEN the handler runs once, and once more while another live run holds the lock
    app.lambda_handler(SCHEDULED_EVENT, lambda_context)
    live_holder.take(app.get_engine())
    assert app.lambda_handler(SCHEDULED_EVENT, lambda_context)["status"] == "skipped_locked"

    # THEN every watched metric appears in the EMF output the handler printed
    assert len(watched) >= 6
    emitted = _emitted_metrics(capfd.readouterr().out)
    assert watched <= set(emitted), watched - set(emitted)
