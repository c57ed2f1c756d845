"""A month of the real engine against template.yaml's alarms: a healthy month pages nobody; a broken one does.

The month (tests/support/alarm_month.py): 10k monthly donors spread over 30 days, one run per tick of the
template's schedule (hourly), 3 % hard declines, 1 % authentication_required, 5 % soft declines that mostly
succeed on a dunning retry. The alarms (tests/support/alarm_evaluator.py) are read from the template with
every parameter at its default and evaluated on what the runs emitted and what AWS would report.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness.local.aws_local import load_template
from tests.support.alarm_evaluator import (
    Alarm,
    Evaluation,
    MetricId,
    Query,
    alarms_from_template,
    dimensions,
    evaluate,
)
from tests.support.alarm_month import START, Faults, Month, between, replay
from tests.support.fakes import sockets_disabled

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
SEVERITIES = {"PageTopic": "page", "TicketTopic": "ticket"}
FAULT_STARTS = START + timedelta(days=1, hours=10)
SCENARIO_DAYS = 3


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def healthy_month(template: dict[str, Any]) -> Iterator[Month]:
    with sockets_disabled():
        yield replay(template)


def evaluated(template: dict[str, Any], month: Month) -> Evaluation:
    return evaluate(alarms_from_template(template, SEVERITIES), month.metrics, month.start, month.end)


def described(evaluation: Evaluation, severity: str) -> list[str]:
    return [f"{t.alarm} at {t.at:%d %H:%M}" for t in evaluation.raised(severity)]


def broken_days(template: dict[str, Any], faults: Faults) -> tuple[Month, Evaluation]:
    """Three days of the same month (same donors, same volume per run) with a fault on the second."""
    with sockets_disabled():
        month = replay(template, days=SCENARIO_DAYS, faults=faults)
    return month, evaluated(template, month)


def test_a_healthy_month_of_declines_and_expired_cards_pages_nobody_and_raises_no_ticket(
    template: dict[str, Any], healthy_month: Month
) -> None:
    # GIVEN a month of hourly runs over 10k donors, a few percent of whose cards are declined
    figures = healthy_month.figures
    assert (figures.invocations, figures.statuses["completed"]) == (720, 720)
    assert figures.due > 10_000
    assert figures.charges > 9_500
    assert figures.dead_letters_by_reason["hard_decline"] > 300  # expired, stolen, authentication_required
    assert figures.dead_letters_by_reason["attempts_exhausted"] > 0
    assert set(figures.dead_letters_by_reason) == {"hard_decline", "attempts_exhausted"}

    # WHEN every alarm of the template is evaluated over it
    evaluation = evaluated(template, healthy_month)

    # THEN nothing pages, and nothing asks for a look either: the donors' declines are the donors' to fix
    assert described(evaluation, "page") == []
    assert described(evaluation, "ticket") == []


def test_the_healthy_month_would_page_all_month_on_an_alarm_for_every_dead_letter(
    healthy_month: Month,
) -> None:
    # GIVEN the alarm this issue retires: any dead letter within 5 minutes pages
    every_letter = Alarm(
        name="DonationsDeadLetteredAlarm",
        severity="page",
        queries=(
            Query(
                "m",
                300,
                metric=MetricId(
                    "ScheduledDonations", "DonationsDeadLettered", dimensions(service="scheduled-donations")
                ),
                stat="Sum",
            ),
        ),
        evaluation_periods=1,
        datapoints_to_alarm=1,
        threshold=1,
        comparison="GreaterThanOrEqualToThreshold",
        treat_missing_data="notBreaching",
    )

    # WHEN it is evaluated over the same healthy month
    evaluation = evaluate([every_letter], healthy_month.metrics, healthy_month.start, healthy_month.end)

    # THEN it pages hundreds of times: the month is a real test of the new alarms, not a quiet one
    assert len(evaluation.raised("page")) > 200


def test_a_stripe_outage_of_hours_pages_the_circuit_and_the_missing_runs(template: dict[str, Any]) -> None:
    # GIVEN Stripe answering nothing (503) for 4 hours on the second day
    faults = Faults(stripe_down=between(FAULT_STARTS, FAULT_STARTS + timedelta(hours=4)))

    # WHEN the days are run and the alarms evaluated
    month, evaluation = broken_days(template, faults)

    # THEN the open circuit and the runs that never completed page, and nothing paged before the outage
    assert month.figures.statuses["circuit_open"] == 4
    assert {"CircuitOpenedAlarm", "RunMissingAlarm"} <= evaluation.alarms_raised("page")
    assert min(t.at for t in evaluation.raised("page")) > FAULT_STARTS


def test_stripe_rejecting_every_request_pages_the_systemic_halt_at_the_first_run(
    template: dict[str, Any],
) -> None:
    # GIVEN a Stripe that rejects every request with 400 parameter_unknown (an API version mismatch), 2 hours
    faults = Faults(stripe_rejects=between(FAULT_STARTS, FAULT_STARTS + timedelta(hours=2)))

    # WHEN the days are run and the alarms evaluated
    month, evaluation = broken_days(template, faults)

    # THEN the halt pages within the first run's period, and no schedule was stopped for it
    assert month.figures.statuses["systemic_halt"] == 2
    [first, *_] = evaluation.raised("page")
    assert first.alarm == "SystemicHaltAlarm"
    assert first.at - FAULT_STARTS <= timedelta(hours=1)
    assert "stripe_rejected_request" not in month.figures.dead_letters_by_reason


def test_a_job_that_is_not_invoked_for_hours_pages_the_heartbeat(template: dict[str, Any]) -> None:
    # GIVEN no invocation at all for 5 hours (a disabled rule, a deleted target)
    faults = Faults(no_invocation=between(FAULT_STARTS, FAULT_STARTS + timedelta(hours=5)))

    # WHEN the days are run and the alarms evaluated
    month, evaluation = broken_days(template, faults)

    # THEN the heartbeat pages, about 3 hours after the last run, and only it
    assert month.figures.invocations == SCENARIO_DAYS * 24 - 5
    assert evaluation.alarms_raised("page") == {"RunMissingAlarm"}
    [page] = evaluation.raised("page")
    assert timedelta(hours=2) < page.at - FAULT_STARTS <= timedelta(hours=3)


def test_dead_letters_stuck_unsent_for_hours_page(template: dict[str, Any]) -> None:
    # GIVEN SQS unreachable from the function for 12 hours, while donors' cards keep being declined
    faults = Faults(queue_unreachable=between(FAULT_STARTS, FAULT_STARTS + timedelta(hours=12)))

    # WHEN the days are run and the alarms evaluated
    month, evaluation = broken_days(template, faults)

    # THEN the letters parked run after run page, and they all reached the queue once SQS was back
    assert month.figures.dead_letters_deferred >= 2
    assert evaluation.alarms_raised("page") == {"DeadLettersDeferredAlarm"}
    assert min(t.at for t in evaluation.raised("page")) > FAULT_STARTS


def test_sqs_failing_one_run_at_a_time_pages_nobody_as_the_next_run_sends_the_parked_letters(
    template: dict[str, Any],
) -> None:
    # GIVEN SQS unreachable during one run in every four, all day long
    def blips(at: datetime) -> bool:
        hours = (at - FAULT_STARTS) // timedelta(hours=1)
        return 0 <= hours < 24 and hours % 4 == 0

    # WHEN the days are run and the alarms evaluated
    month, evaluation = broken_days(template, Faults(queue_unreachable=blips))

    # THEN letters were parked, each run after a blip sent them, and nobody was paged for it
    assert month.figures.dead_letters_deferred >= 1
    assert described(evaluation, "page") == []
