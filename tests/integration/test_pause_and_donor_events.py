"""The operator's pause switch (SSM) and the donor-facing events (EventBridge), through the real handler."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters import clear_caches

import app
from donation_processor.donor_event_types import DETAIL_TYPES
from donation_processor.exceptions import PauseSwitchUnavailableError
from harness.local.aws_local import client_kwargs
from harness.local.event_sink import create_event_sink
from harness.local.lambda_context import LocalLambdaContext
from harness.local.seed import scheduled_donation
from harness.local.services import LocalServices
from harness.reports.donor_event_samples import file_name, seed_one_of_each

SCHEDULED_EVENT = json.loads(Path("events/scheduled.json").read_text())
SAMPLES = Path("events/donor")


@pytest.fixture
def pause_parameter(handler_env: LocalServices, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SSM parameter set to "running", named in the function's environment."""
    name = f"/scheduled-donations-test/{uuid.uuid4().hex[:8]}/charging"
    boto3.client("ssm", **client_kwargs(handler_env.moto.endpoint_url)).put_parameter(
        Name=name, Value="running", Type="String"
    )
    monkeypatch.setenv("PAUSE_PARAMETER_NAME", name)
    clear_caches()
    return name


def _set(services: LocalServices, name: str, value: str) -> None:
    boto3.client("ssm", **client_kwargs(services.moto.endpoint_url)).put_parameter(
        Name=name, Value=value, Type="String", Overwrite=True
    )
    clear_caches()  # what the 30-second Powertools cache would do on its own


def _seed(services: LocalServices, count: int = 2) -> None:
    services.database["scheduled_donations"].insert_many(
        [
            scheduled_donation(
                customer_id=services.stripe.state.create_customer(),
                next_run_at=datetime.now(UTC) - timedelta(hours=1),
            )
            for _ in range(count)
        ]
    )


def test_a_paused_job_charges_nothing_and_says_so_then_resumes(
    handler_env: LocalServices, lambda_context: LocalLambdaContext, pause_parameter: str
) -> None:
    # GIVEN two due donations and an operator who paused charging
    _seed(handler_env)
    _set(handler_env, pause_parameter, "paused")

    # WHEN the schedule fires, and fires again after the operator resumed
    paused = app.lambda_handler(SCHEDULED_EVENT, lambda_context)
    requests_while_paused = handler_env.stripe.state.request_count
    _set(handler_env, pause_parameter, "running")
    resumed = app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN the paused run reported it and touched nothing; the resumed run charged both
    assert (paused["status"], paused["due"]) == ("paused", 0)
    assert requests_while_paused == 0
    assert resumed["succeeded"] == 2


def test_an_unreadable_pause_switch_stops_the_job_rather_than_charging(
    handler_env: LocalServices, lambda_context: LocalLambdaContext, pause_parameter: str
) -> None:
    # GIVEN a switch holding a value that is neither running nor paused
    _seed(handler_env)
    _set(handler_env, pause_parameter, "maybe")

    # WHEN the schedule fires
    # THEN the run fails closed, naming the switch, and nothing reached Stripe
    with pytest.raises(PauseSwitchUnavailableError, match="running' or 'paused"):
        app.lambda_handler(SCHEDULED_EVENT, lambda_context)
    assert handler_env.stripe.state.request_count == 0


def test_a_missing_pause_parameter_fails_closed(
    handler_env: LocalServices, lambda_context: LocalLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a switch name that does not exist in SSM
    _seed(handler_env)
    monkeypatch.setenv("PAUSE_PARAMETER_NAME", f"/missing/{uuid.uuid4().hex}")
    clear_caches()

    # WHEN the schedule fires
    # THEN nothing is charged
    with pytest.raises(PauseSwitchUnavailableError):
        app.lambda_handler(SCHEDULED_EVENT, lambda_context)
    assert handler_env.stripe.state.request_count == 0


def _shape(value: Any) -> Any:
    """Keys and JSON types, not values: what a consumer of the event relies on."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value[:1]]
    return type(value).__name__


def test_each_outcome_publishes_a_donor_event_shaped_like_its_sample(
    handler_env: LocalServices, lambda_context: LocalLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a bus whose events land on a queue, and one donation for each donor-facing outcome
    sink = create_event_sink(handler_env.moto.endpoint_url, f"donor-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("DONOR_EVENT_BUS_NAME", sink.bus_name)
    seed_one_of_each(handler_env)

    # WHEN the job runs
    summary = app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN one event per outcome arrived, each with the documented shape, and none carries personal data
    events = sink.drain()
    assert summary["donorEventsFailed"] == 0
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["detail-type"], []).append(event)
    assert set(by_type) == set(DETAIL_TYPES)
    assert len(by_type["Donation Charge Succeeded"]) == summary["succeeded"]
    for detail_type, published in by_type.items():
        sample = json.loads((SAMPLES / file_name(detail_type)).read_text())
        for event in published:
            assert _shape(event["detail"]) == _shape(sample["detail"]), detail_type
            assert event["source"] == "scheduled-donations"
    body = json.dumps(events)
    assert "@" not in body
    assert "pm_card" not in body


def test_the_same_outcome_keeps_the_same_event_id_so_consumers_can_deduplicate(
    handler_env: LocalServices, lambda_context: LocalLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a bus and one due donation
    sink = create_event_sink(handler_env.moto.endpoint_url, f"donor-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("DONOR_EVENT_BUS_NAME", sink.bus_name)
    _seed(handler_env, 1)

    # WHEN it is charged
    app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN its event id names the donation, the period and the outcome
    [event] = sink.drain()
    detail = event["detail"]
    assert detail["eventId"] == f"{detail['scheduledDonationId']}:{detail['period']}:succeeded"
