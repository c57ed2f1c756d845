"""`donations preview`: what a run would charge now, and why one donation is or is not due; writes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from donation_processor.engine import DonationEngine
from harness.local.seed import INSUFFICIENT_FUNDS, STOLEN_CARD
from harness.local.services import LocalServices
from tests.support.cli import donations, insert_donation, point_cli_at, run_engine


def _snapshot(services: LocalServices) -> list[list[dict[str, Any]]]:
    return [list(services.database[name].find()) for name in ("scheduled_donations", "donations")]


def test_preview_lists_what_a_run_would_charge_with_totals_per_currency_and_writes_nothing(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two due donations in usd, one in jpy, one not yet due and one cancelled
    point_cli_at(services, monkeypatch)
    first = insert_donation(services, amount=100000)
    insert_donation(services, amount=17500)
    insert_donation(services, amount=1200, currency="jpy")
    insert_donation(services, next_run_at=datetime.now(UTC) + timedelta(days=3))
    insert_donation(services, status="cancelled")
    before = _snapshot(services)

    # WHEN the operator previews, on screen and as JSON
    table = donations(capsys, "preview")
    report = json.loads(donations(capsys, "preview", "--json").out)
    limited = json.loads(donations(capsys, "preview", "--json", "--limit", "1").out)

    # THEN the three due ones are listed with totals per currency, and nothing was written or charged
    assert table.code == 0, table.err
    assert "1,175.00 USD" in table.out
    assert "1,200 JPY" in table.out
    assert str(first) in table.out
    assert report["totals"] == {"jpy": 1200, "usd": 117500}
    assert {charge["id"] for charge in report["charges"]} >= {str(first)}
    assert len(report["charges"]) == 3
    assert all(charge["kind"] == "new period" for charge in report["charges"])
    assert len(limited["charges"]) == 1
    assert limited["limitReached"] is True
    assert _snapshot(services) == before
    assert services.stripe.state.request_count == 0


def test_preview_shows_an_invalid_due_document_as_not_charged_naming_the_field(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_cli_at(services, monkeypatch)
    bad = insert_donation(services, currency="xxx")
    report = json.loads(donations(capsys, "preview", "--json").out)
    assert report["charges"] == []
    assert report["notCharged"] == [
        {
            "id": str(bad),
            "why": "invalid document: currency must be a lower-case ISO 4217 code that Stripe supports",
        }
    ]


def test_preview_id_says_why_a_donation_is_or_is_not_due(
    services: LocalServices,
    make_engine: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN donations in each state a run treats differently
    point_cli_at(services, monkeypatch)
    later = datetime.now(UTC) + timedelta(days=3)
    stolen = insert_donation(services, payment_method_id=STOLEN_CARD)
    dunning = insert_donation(services, payment_method_id=INSUFFICIENT_FUNDS)
    run_engine(make_engine())
    due = insert_donation(services, amount=1200, currency="jpy")
    future = insert_donation(services, next_run_at=later)
    cancelled = insert_donation(services, status="cancelled")
    invalid = insert_donation(services, amount=-1)

    def why(donation_id: object) -> dict[str, Any]:
        result = donations(capsys, "preview", "--id", str(donation_id), "--json")
        assert result.code == 0, result.err
        parsed: dict[str, Any] = json.loads(result.out)
        return parsed

    # WHEN the operator asks about each
    # THEN each answer says whether it is due and why
    assert why(due)["due"] is True
    assert why(due)["charge"]["amount"] == {"amount": 1200, "currency": "jpy"}
    assert why(future) == {
        **why(future),
        "due": False,
        "why": f"not yet due: nextRunAt is {later.isoformat(timespec='seconds')}",
    }
    assert why(cancelled)["why"] == "status is 'cancelled': only active schedules are charged"
    assert why(invalid)["why"].startswith("invalid document: amount must be a positive integer")
    assert why(stolen)["why"].startswith("stopped (payment_failed) after hard_decline:stolen_card")
    dunning_why = why(dunning)
    assert dunning_why["due"] is False
    assert dunning_why["why"].startswith("not yet due: the open charge of period ")
    assert "next attempt" in dunning_why["why"]

    table = donations(capsys, "preview", "--id", str(future))
    assert table.code == 0
    assert "not due" in table.out


def test_preview_id_of_an_unknown_donation_exits_1(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_cli_at(services, monkeypatch)
    result = donations(capsys, "preview", "--id", "missing-7")
    assert result.code == 1
    assert "no scheduled donation with id 'missing-7'" in result.err


def test_preview_under_the_pause_switch_says_nothing_is_charged_now(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_cli_at(services, monkeypatch, PAUSE_PARAMETER_NAME="/cli-preview/paused/charging")
    due = insert_donation(services)
    assert donations(capsys, "pause").code == 0
    listed = json.loads(donations(capsys, "preview", "--json").out)
    single = json.loads(donations(capsys, "preview", "--id", str(due), "--json").out)
    assert listed["paused"] is True
    assert len(listed["charges"]) == 1  # what a run would charge once resumed
    assert single["due"] is False
    assert single["why"].startswith(
        "the pause switch /cli-preview/paused/charging is paused: a run now charges nothing"
    )
