"""catch_up: which period a claimed schedule is charged for under each MISSED_PERIODS policy, or a wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from donation_processor.catch_up import (
    CatchUpPolicy,
    ChargePeriod,
    MissedPeriods,
    WaitForInterval,
    catch_up,
)
from donation_processor.schedule import Frequency

LATEST = CatchUpPolicy(MissedPeriods.LATEST)
ALL = CatchUpPolicy(MissedPeriods.ALL, timedelta(hours=24))
NOW = datetime(2026, 7, 15, 10, tzinfo=UTC)
SIX_BEHIND = datetime(2026, 2, 15, 9, tzinfo=UTC)
DUE_ONCE = datetime(2026, 7, 15, 9, tzinfo=UTC)


def _month(month: int) -> datetime:
    return datetime(2026, month, 15, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("case", "policy", "next_run", "last_charged_at", "expected"),
    [
        (
            "latest: six behind, the sixth is charged and five are missed",
            LATEST,
            SIX_BEHIND,
            None,
            ChargePeriod(_month(7), tuple(_month(month) for month in range(2, 7))),
        ),
        ("latest: due once, as before", LATEST, DUE_ONCE, _month(6), ChargePeriod(DUE_ONCE)),
        (
            "latest: a recent charge does not matter",
            LATEST,
            SIX_BEHIND,
            NOW - timedelta(hours=1),
            ChargePeriod(_month(7), tuple(_month(month) for month in range(2, 7))),
        ),
        ("all: six behind, never charged: the oldest now", ALL, SIX_BEHIND, None, ChargePeriod(SIX_BEHIND)),
        (
            "all: behind, charged 23 hours ago: wait until a day has passed",
            ALL,
            _month(3),
            NOW - timedelta(hours=23),
            WaitForInterval(NOW + timedelta(hours=1)),
        ),
        (
            "all: behind, charged exactly a day ago: the next oldest now",
            ALL,
            _month(3),
            NOW - timedelta(hours=24),
            ChargePeriod(_month(3)),
        ),
        (
            "all: the last missed period, due once now but already due at the last charge: it waits too",
            ALL,
            DUE_ONCE,
            DUE_ONCE + timedelta(hours=2),
            WaitForInterval(DUE_ONCE + timedelta(hours=26)),
        ),
        (
            "all: due once and charged on time last period: as before",
            ALL,
            DUE_ONCE,
            _month(6) + timedelta(minutes=5),
            ChargePeriod(DUE_ONCE),
        ),
    ],
)
def test_catch_up_decides_the_period_or_the_wait(
    case: str,
    policy: CatchUpPolicy,
    next_run: datetime,
    last_charged_at: datetime | None,
    expected: ChargePeriod | WaitForInterval,
) -> None:
    # GIVEN a claimed monthly schedule, when it was last charged, and the policy
    # WHEN the period to charge is decided
    decided = catch_up(policy, next_run, Frequency.MONTHLY, 15, last_charged_at, NOW)

    # THEN it is the expected period (and missed periods) or a wait
    assert decided == expected


def test_a_weekly_schedule_behind_under_all_is_charged_daily_not_hourly() -> None:
    # GIVEN a weekly schedule three weeks behind, charged two hours ago for the oldest missed week
    next_run = NOW - timedelta(weeks=2)

    # WHEN the next run decides, and again once a day has passed since that charge
    soon = catch_up(ALL, next_run, Frequency.WEEKLY, None, NOW - timedelta(hours=2), NOW)
    later = catch_up(
        ALL, next_run, Frequency.WEEKLY, None, NOW - timedelta(hours=2), NOW + timedelta(hours=22)
    )

    # THEN it waits first, then charges the next oldest week
    assert soon == WaitForInterval(NOW + timedelta(hours=22))
    assert later == ChargePeriod(next_run)
