"""`--json` on every command: one JSON object on stdout, errors on stderr with the exit code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from donation_processor.adapters.pause_switch import CACHE_SECONDS
from harness.local.services import LocalServices
from tests.support.cli import donations, point_cli_at, send_raw, subcommands


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    result = donations(capsys, *argv, "--json")
    assert result.code == 0, result.err
    parsed = json.loads(result.out)  # the whole of stdout is one object
    assert isinstance(parsed, dict)
    return parsed


def test_every_subcommand_takes_json() -> None:
    # GIVEN the parser's subcommands
    parsers = subcommands()

    # THEN each accepts --json
    assert parsers
    for name, sub in parsers.items():
        options = {option for action in sub._actions for option in action.option_strings}
        assert "--json" in options, name


def test_seed_json_reports_the_batch_and_how_to_remove_it(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the local services
    point_cli_at(services, monkeypatch)

    # WHEN the operator seeds 3 with --json
    report = _json(capsys, "seed", "3", "--amount", "1500", "--currency", "jpy")

    # THEN the object names the batch, its size, the amount in minor units and the clean-up command
    batch = report["seedBatch"]
    assert report["seeded"] == 3
    assert report["amount"] == {"amount": 1500, "currency": "jpy"}
    assert report["cleanup"] == f'db.scheduled_donations.deleteMany({{seedBatch: "{batch}"}})'
    assert services.database["scheduled_donations"].count_documents({"seedBatch": batch}) == 3


def test_pause_and_resume_json_say_when_functions_see_the_switch(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a switch name
    point_cli_at(services, monkeypatch, PAUSE_PARAMETER_NAME="/cli-json/pause/charging")

    # WHEN the operator pauses and resumes with --json
    paused = _json(capsys, "pause")
    resumed = _json(capsys, "resume")

    # THEN both give the switch, before and after, and the functions' cache time from the one constant
    assert paused == {
        "parameter": "/cli-json/pause/charging",
        "before": None,
        "after": "paused",
        "visibleWithinSeconds": CACHE_SECONDS,
    }
    assert (resumed["before"], resumed["after"]) == ("paused", "running")
    assert resumed["visibleWithinSeconds"] == CACHE_SECONDS


def test_status_json_is_one_object(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_cli_at(services, monkeypatch)
    report = _json(capsys, "status")
    assert report["donations"]["dueNow"] == 0


def test_redrive_json_lists_each_letter_in_the_dry_run_and_when_acting(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a dead letter for a donation that no longer exists
    point_cli_at(services, monkeypatch)
    letter = {"scheduledDonationId": "gone-1", "period": "2026-01-01", "reason": "hard_decline"}
    send_raw(services, json.dumps(letter))

    # WHEN the operator redrives, first dry, then with --yes
    dry = _json(capsys, "redrive", "--wait-seconds", "0")
    acted = _json(capsys, "redrive", "--yes", "--wait-seconds", "0")

    # THEN both list the letter with what was (or would be) done, and the same counts
    for report, dry_run in ((dry, True), (acted, False)):
        assert report["dryRun"] is dry_run
        assert report["messages"] == 1
        assert report["counts"]["left"] == 1
        [entry] = report["letters"]
        assert (entry["donationId"], entry["period"], entry["action"]) == ("gone-1", "2026-01-01", "leave")
        assert entry["reason"] == "hard_decline"


def test_a_json_error_goes_to_stderr_with_its_exit_code(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_cli_at(services, monkeypatch)
    monkeypatch.delenv("PAUSE_PARAMETER_NAME", raising=False)
    result = donations(capsys, "pause", "--json")
    assert (result.code, result.out) == (2, "")
    assert "PAUSE_PARAMETER_NAME is required" in result.err
