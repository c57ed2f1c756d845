"""`donations status` against moto and mongomock: counts, queue depth, pause switch, last run."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from donation_processor.engine import DonationEngine
from harness.local.aws_local import client_kwargs
from harness.local.seed import INSUFFICIENT_FUNDS, STOLEN_CARD, naive_utc
from harness.local.services import LocalServices
from tests.support.cli import donations, insert_donation, point_cli_at, run_engine, send_raw


def _pause_parameter(services: LocalServices, value: str | None) -> str:
    name = f"/scheduled-donations-cli-test/{uuid.uuid4().hex[:8]}/charging"
    if value is not None:
        boto3.client("ssm", **client_kwargs(services.moto.endpoint_url)).put_parameter(
            Name=name, Value=value, Type="String"
        )
    return name


def _period(moment: datetime) -> str:
    return moment.date().isoformat()


def _intent(
    services: LocalServices,
    donation_id: Any,
    due: datetime,
    *,
    status: str = "pending",
    attempts: int = 0,
    next_attempt_at: datetime | None = None,
    **extra: Any,
) -> None:
    """A charge intent as the engine writes it (only the fields the counts read matter here)."""
    document: dict[str, Any] = {
        "schema": 2,
        "scheduledDonationId": str(donation_id),
        "period": _period(due),
        "status": status,
        "attempts": attempts,
        "dueAt": naive_utc(due),
        **extra,
    }
    if status == "pending":
        document["openFor"] = str(donation_id)
        document["nextAttemptAt"] = naive_utc(next_attempt_at or due)
    services.database["donations"].insert_one(document)


def _status(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    result = donations(capsys, "status", "--json")
    assert result.code == 0, result.err
    report: dict[str, Any] = json.loads(result.out)
    return report


def test_status_counts_each_category(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN one database with a known number of donations in each state, two letters on the queue and
    # a pause switch that says running
    point_cli_at(services, monkeypatch, PAUSE_PARAMETER_NAME=_pause_parameter(services, "running"))
    now = datetime.now(UTC)
    for _ in range(2):
        insert_donation(services, next_run_at=now - timedelta(hours=1))  # due
    insert_donation(services, next_run_at=now - timedelta(hours=30))  # due and overdue
    insert_donation(services, next_run_at=now + timedelta(days=1))  # active, not due
    in_dunning = insert_donation(  # due long ago, but its period is open: the intent is what is due
        services, next_run_at=now - timedelta(days=3), openPeriod=_period(now - timedelta(days=3))
    )
    _intent(
        services, in_dunning, now - timedelta(days=3), attempts=1, next_attempt_at=now + timedelta(days=2)
    )
    _intent(services, "recheck-due", now, attempts=0, next_attempt_at=now - timedelta(minutes=1))
    _intent(  # stopped, its dead letter parked in the ledger (SQS was down)
        services, "stopped", now, status="failed", pendingDeadLetter={"deadLetterId": "stopped:x:y"}
    )
    for _ in range(2):
        insert_donation(services, status="invalid", invalidReason="amount")
    insert_donation(services, status="payment_failed", pendingDeadLetter={"deadLetterId": "x:2026-01-01:y"})
    insert_donation(  # due, and claimed by a run right now
        services, next_run_at=now - timedelta(hours=2), claimExpiresAt=now + timedelta(minutes=10)
    )
    send_raw(services, "{}")
    send_raw(services, "{}")

    # WHEN the operator asks for the status
    report = _status(capsys)
    table = donations(capsys, "status")

    # THEN each category has its count, and the queue depth and the switch are shown
    assert report["donations"] == {
        "dueNow": 4,
        "openChargesDue": 1,
        "overdue": 1,
        "openCharges": 2,
        "pastDue": 1,
        "invalid": 2,
        "stopped": 1,
        "claimedNow": 1,
        "parkedDeadLetters": 2,
        "active": 6,
    }
    assert report["deadLetterQueue"]["messages"] == 2
    assert report["pauseSwitch"]["state"] == "running"
    assert report["lastRun"]["summary"] is None
    assert table.code == 0
    assert f"  {'due now (no open charge)':<44} {4:>10}\n" in table.out
    assert f"  {'open charges (dunning, recheck, in flight)':<44} {2:>10}\n" in table.out
    assert f"  {'dead letters parked in MongoDB':<44} {2:>10}\n" in table.out
    assert f"  {'overdue (> 24 h)':<44} {1:>10}\n" in table.out
    assert f"  {'messages waiting':<44} {2:>10}\n" in table.out
    assert "no run has finished yet" in table.out


def test_status_lists_the_documents_the_due_query_cannot_see_with_their_ids(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a good due donation, an active one whose nextRunAt is text, and one whose status is a typo
    point_cli_at(services, monkeypatch, PAUSE_PARAMETER_NAME=_pause_parameter(services, "running"))
    now = datetime.now(UTC)
    insert_donation(services, next_run_at=now - timedelta(hours=1))
    text_date = insert_donation(services, next_run_at=now - timedelta(hours=1), nextRunAt="2026-01-01")
    typo = insert_donation(services, next_run_at=now - timedelta(hours=1), status="actve")

    # WHEN the operator asks for the status
    report = _status(capsys)
    table = donations(capsys, "status")

    # THEN both are counted by kind and named with their ids and why, in JSON and in the table
    assert report["unseenDocuments"] == {
        "noUsableNextRunAt": 1,
        "unknownStatus": 1,
        "first": [
            {"id": str(text_date), "why": "nextRunAt missing or not a date"},
            {"id": str(typo), "why": "unknown status 'actve'"},
        ],
    }
    assert f"    {typo}: unknown status 'actve'\n" in table.out
    assert f"  {'status the job does not know':<44} {1:>10}\n" in table.out


def test_status_shows_the_last_run_and_the_dead_letter_it_left(
    services: LocalServices,
    make_engine: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a real run that charged two donations, dead-lettered a stolen card and left a soft decline in
    # dunning (its schedule still has the past nextRunAt; its open intent waits for the retry)
    point_cli_at(services, monkeypatch)
    insert_donation(services)
    insert_donation(services)
    insert_donation(services, payment_method_id=STOLEN_CARD)
    insert_donation(services, payment_method_id=INSUFFICIENT_FUNDS)
    summary = run_engine(make_engine())
    assert (summary.succeeded, summary.dead_lettered, summary.failed) == (2, 1, 2)

    # WHEN the operator asks for the status
    report = _status(capsys)
    table = donations(capsys, "status")

    # THEN the last run's summary (from the lock item) and the queue depth are there; the lock is free
    last = report["lastRun"]
    assert last["summary"]["runId"] == summary.run_id
    assert (last["summary"]["succeeded"], last["summary"]["deadLettered"]) == (2, 1)
    assert isinstance(last["fence"], int)
    assert last["fence"] > 0
    assert last["leaseLive"] is False
    assert report["deadLetterQueue"]["messages"] == 1
    counts = report["donations"]
    assert (counts["stopped"], counts["dueNow"], counts["openChargesDue"]) == (1, 0, 0)
    assert (counts["openCharges"], counts["pastDue"], counts["parkedDeadLetters"]) == (1, 1, 0)
    assert report["pauseSwitch"]["state"] == "not configured"
    assert summary.run_id in table.out
    assert "free" in table.out
    # amounts: minor units in JSON, major units with the currency on screen
    assert last["summary"]["amountByCurrency"] == {"usd": 5000}
    assert f"  {'amountByCurrency':<44} 50.00 USD\n" in table.out


def test_a_missing_pause_parameter_is_reported_as_failing_closed(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a switch name that SSM does not have
    point_cli_at(services, monkeypatch, PAUSE_PARAMETER_NAME=_pause_parameter(services, None))

    # WHEN / THEN status says so
    assert _status(capsys)["pauseSwitch"]["state"].startswith("missing (the function fails closed")


def test_a_missing_variable_is_a_usage_error_that_names_it(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no lock table configured
    point_cli_at(services, monkeypatch)
    monkeypatch.delenv("LOCK_TABLE_NAME")

    # WHEN the operator asks for the status
    result = donations(capsys, "status")

    # THEN the other sections are still shown, and the exit code is 2 naming the variable
    assert result.code == 2
    assert "LOCK_TABLE_NAME is required" in result.err
    assert "due now" in result.out


def test_an_unreachable_service_is_an_operational_failure(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a queue URL that does not exist
    point_cli_at(services, monkeypatch)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", f"{services.moto.endpoint_url}/123456789012/no-such-queue")

    # WHEN the operator asks for the status
    result = donations(capsys, "status", "--json")

    # THEN the queue section carries the SQS error and the exit code is 1
    assert result.code == 1
    assert "dead-letter queue attributes failed" in json.loads(result.out)["deadLetterQueue"]["error"]


def test_stack_outputs_fill_in_what_the_environment_leaves_unset(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a deployed stack whose outputs name the lock table, the queue and the switch
    point_cli_at(services, monkeypatch)
    parameter = _pause_parameter(services, "paused")
    stack_name = f"donations-{uuid.uuid4().hex[:8]}"
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {
            "LockTableName": {"Value": services.lock_table_name},
            "DeadLetterQueueUrl": {"Value": services.queue_url},
            "PauseParameterName": {"Value": parameter},
        },
    }
    boto3.client("cloudformation", **client_kwargs(services.moto.endpoint_url)).create_stack(
        StackName=stack_name, TemplateBody=json.dumps(template)
    )
    for variable in ("LOCK_TABLE_NAME", "DEAD_LETTER_QUEUE_URL"):
        monkeypatch.delenv(variable)
    send_raw(services, "{}")

    # WHEN the operator names the stack
    result = donations(capsys, "--stack", stack_name, "status", "--json")
    missing = donations(capsys, "status", "--stack", f"{stack_name}-gone")

    # THEN the stack's resources were read; an unknown stack is reported
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["deadLetterQueue"]["messages"] == 1
    assert report["pauseSwitch"] == {"parameter": parameter, "state": "paused"}
    assert report["lastRun"]["lockId"] == "scheduled-donations"
    assert missing.code == 1
    assert "describing stack" in missing.err
