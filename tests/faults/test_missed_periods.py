"""A schedule behind by whole periods (the job was paused, or a document came in with an old nextRunAt),
run hourly by the real handler on the local services, under each MISSED_PERIODS policy.

`latest` (the default) charges the latest due period once and records each earlier one as `missed`; `all`
charges every missed period, oldest first, at most one every CATCH_UP_MIN_INTERVAL_HOURS per donation.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from donation_processor.engine import DonationEngine
from harness.local.event_sink import create_event_sink
from harness.local.seed import naive_utc, scheduled_donation
from harness.local.services import LocalServices
from tests.support.clock import TestClock
from tests.support.fault_injection import CrashSwitch, SimulatedCrash, unrecorded_charges
from tests.support.fault_runs import LEASES_EXPIRED, engine_for_fixture, invoke  # noqa: F401 - the engine_for fixture

pytestmark = pytest.mark.faults

NOW = datetime(2026, 7, 15, 10, 0, tzinfo=UTC)
# Six monthly periods have fallen due by NOW: February 15th to July 15th.
DUE = [datetime(2026, month, 15, 9, 0, tzinfo=UTC) for month in range(2, 8)]
PERIODS = [f"{due:%Y-%m-%d}" for due in DUE]


def _behind(services: LocalServices, first_due: datetime = DUE[0], **fields: Any) -> Any:
    document = scheduled_donation(
        customer_id=services.stripe.state.create_customer(), next_run_at=first_due, **fields
    )
    services.database["scheduled_donations"].insert_one(document)
    return document["_id"]


def _run_hourly(
    runs: int,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
    **env: str,
) -> list[dict[str, Any]]:
    summaries = []
    for _ in range(runs):
        summaries.append(invoke(engine_for(**env), monkeypatch))
        clock.advance(hours=1)
    return summaries


def _charged_periods(services: LocalServices) -> list[str]:
    return [charge.metadata["period"] for charge in services.stripe.state.charges()]


def _entries(services: LocalServices, donation_id: Any) -> dict[str, dict[str, Any]]:
    found = services.database["donations"].find({"scheduledDonationId": str(donation_id)})
    return {entry["period"]: entry for entry in found}


def _schedule(services: LocalServices, donation_id: Any) -> dict[str, Any]:
    document = services.database["scheduled_donations"].find_one({"_id": donation_id})
    assert document is not None
    return document


def test_a_schedule_six_periods_behind_is_charged_once_for_the_latest_period_and_the_rest_are_missed(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a monthly donation six periods behind, and a donor event bus
    clock.now = NOW
    donation_id = _behind(services)
    sink = create_event_sink(services.moto.endpoint_url, f"donor-{uuid.uuid4().hex[:8]}")

    # WHEN the job runs hourly six times with the default policy
    summaries = _run_hourly(6, clock, engine_for, monkeypatch, DONOR_EVENT_BUS_NAME=sink.bus_name)

    # THEN Stripe charged the latest period once, and nothing else
    assert _charged_periods(services) == [PERIODS[-1]]
    assert unrecorded_charges(services) == []
    # AND the ledger holds that charge and one closed `missed` entry for each earlier period
    entries = _entries(services, donation_id)
    assert {period: entry["status"] for period, entry in entries.items()} == {
        **dict.fromkeys(PERIODS[:-1], "missed"),
        PERIODS[-1]: "succeeded",
    }
    assert not any("openFor" in entry or "nextAttemptAt" in entry for entry in entries.values())
    # AND the schedule continues one period after the latest, and is no longer overdue
    assert _schedule(services, donation_id)["nextRunAt"] == naive_utc(datetime(2026, 8, 15, 9, 0, tzinfo=UTC))
    assert [summary["missed"] for summary in summaries] == [5, 0, 0, 0, 0, 0]
    assert [summary["succeeded"] for summary in summaries] == [1, 0, 0, 0, 0, 0]
    assert summaries[0]["overdue"] == 0
    # AND the donor was told once, in one event listing the five missed periods
    missed_events = [event for event in sink.drain() if event["detail-type"] == "Donation Periods Missed"]
    assert [event["detail"]["missedPeriods"] for event in missed_events] == [PERIODS[:-1]]
    detail = missed_events[0]["detail"]
    assert detail["eventId"] == f"{donation_id}:{PERIODS[-1]}:missed"
    assert (detail["period"], detail["amount"], detail["currency"]) == (PERIODS[-1], 2500, "usd")


@pytest.mark.parametrize("policy", ["latest", "all"])
def test_a_schedule_due_once_is_charged_as_before_under_either_policy(
    policy: str,
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a monthly donation charged last month and due once now (the next period is a month away)
    clock.now = NOW
    donation_id = _behind(
        services, first_due=DUE[-1], lastChargedAt=naive_utc(DUE[-2] + timedelta(minutes=5))
    )

    # WHEN the job runs
    summary = invoke(engine_for(MISSED_PERIODS=policy), monkeypatch)

    # THEN its one period was charged at once and nothing was recorded missed
    assert (summary["succeeded"], summary["missed"], summary["skipped"]) == (1, 0, 0)
    assert _charged_periods(services) == [PERIODS[-1]]
    assert [entry["status"] for entry in _entries(services, donation_id).values()] == ["succeeded"]
    assert _schedule(services, donation_id)["nextRunAt"] == naive_utc(datetime(2026, 8, 15, 9, 0, tzinfo=UTC))


def test_under_all_every_missed_period_is_charged_oldest_first_at_most_once_a_day(
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a monthly donation six periods behind
    clock.now = NOW
    donation_id = _behind(services)

    # WHEN the job runs hourly for two days and an hour under MISSED_PERIODS=all
    summaries = _run_hourly(49, clock, engine_for, monkeypatch, MISSED_PERIODS="all")

    # THEN one period was charged per 24 hours of runs, oldest first, and nothing was recorded missed
    assert _charged_periods(services) == PERIODS[:3]
    charged_at = [hour for hour, summary in enumerate(summaries) if summary["succeeded"]]
    assert charged_at == [0, 24, 48]
    assert sum(summary["missed"] for summary in summaries) == 0
    # AND between charges the claimed schedule was let go untouched
    assert all(summary["skipped"] == 1 for summary in summaries if not summary["succeeded"])
    assert _schedule(services, donation_id)["nextRunAt"] == naive_utc(DUE[3])
    assert unrecorded_charges(services) == []


@pytest.mark.parametrize(
    "step",
    [
        "store.record_missed_periods",  # before anything is written
        "store.open_intents",  # the missed entries written, not the intent
        "before_record",  # charged at Stripe, the answer lost
        "before_advance",  # the charge recorded, the schedule not moved
    ],
)
def test_a_crash_at_any_step_of_catching_up_leaves_one_charge_and_each_missed_period_once(
    step: str,
    services: LocalServices,
    clock: TestClock,
    engine_for: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a monthly donation six periods behind, and a run that dies at the step
    clock.now = NOW
    donation_id = _behind(services)
    switch = CrashSwitch(step=step)
    with pytest.raises(SimulatedCrash):
        invoke(engine_for(switch=switch), monkeypatch)
    assert switch.fired

    # WHEN the next runs come, once the dead run's leases expired
    clock.advance(**LEASES_EXPIRED)
    summaries = _run_hourly(2, clock, engine_for, monkeypatch)

    # THEN the latest period was charged once, each earlier one is missed once, and the schedule moved on
    assert _charged_periods(services) == [PERIODS[-1]]
    assert unrecorded_charges(services) == []
    assert sorted(_entries(services, donation_id).items(), key=lambda item: item[0])[-1][1]["status"] == (
        "succeeded"
    )
    assert [entry["status"] for entry in _entries(services, donation_id).values()].count("missed") == 5
    assert services.database["donations"].count_documents({"scheduledDonationId": str(donation_id)}) == 6
    assert _schedule(services, donation_id)["nextRunAt"] == naive_utc(datetime(2026, 8, 15, 9, 0, tzinfo=UTC))
    # AND the five were counted by exactly one run: the dead one if it wrote them, else the next
    counted_later = sum(summary["missed"] for summary in summaries)
    assert counted_later == (5 if step == "store.record_missed_periods" else 0)
