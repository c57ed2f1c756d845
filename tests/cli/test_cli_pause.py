"""`donations pause` / `resume` against moto's SSM, with the real Lambda handler reading the switch."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aws_lambda_powertools.utilities.parameters import clear_caches

import app
from harness.local.services import LocalServices
from tests.support.cli import donations, insert_donation

if TYPE_CHECKING:
    from harness.local.lambda_context import LocalLambdaContext

SCHEDULED_EVENT = json.loads((Path(__file__).parents[2] / "events" / "scheduled.json").read_text())


def test_pause_stops_charging_and_resume_starts_it_again(
    handler_env: LocalServices,
    lambda_context: LocalLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN two due donations and a function configured with a switch that does not exist yet
    name = f"/scheduled-donations-cli-test/{uuid.uuid4().hex[:8]}/charging"
    monkeypatch.setenv("PAUSE_PARAMETER_NAME", name)
    clear_caches()
    insert_donation(handler_env)
    insert_donation(handler_env)

    # WHEN the operator pauses and the schedule fires
    paused = donations(capsys, "pause")
    shown = json.loads(donations(capsys, "status", "--json").out)["pauseSwitch"]
    while_paused = app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN the run said "paused" and Stripe saw no request
    assert paused.code == 0, paused.err
    assert f"pause switch {name}: (missing) -> paused" in paused.out
    assert "within 30 s" in paused.out
    assert shown == {"parameter": name, "state": "paused"}
    assert (while_paused["status"], while_paused["due"]) == ("paused", 0)
    assert handler_env.stripe.state.request_count == 0

    # WHEN the operator resumes and the schedule fires once the function's 30-second cache expired
    resumed = donations(capsys, "resume")
    clear_caches()
    after = app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN both donations are charged
    assert resumed.code == 0
    assert f"{name}: paused -> running" in resumed.out
    assert (after["status"], after["succeeded"]) == ("completed", 2)


def test_pause_without_a_switch_name_is_a_usage_error(
    handler_env: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PAUSE_PARAMETER_NAME", raising=False)
    result = donations(capsys, "pause")
    assert result.code == 2
    assert "PAUSE_PARAMETER_NAME is required" in result.err
