"""What becomes of a schedule behind by whole periods (MISSED_PERIODS): decided here, pure; the calendar
arithmetic is schedule.py's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from donation_processor.schedule import Frequency, as_utc, due_periods


class MissedPeriods(StrEnum):
    LATEST = "latest"  # charge the latest due period once; each earlier one is recorded as missed
    ALL = "all"  # charge each, oldest first, at most one every CATCH_UP_MIN_INTERVAL_HOURS per donation


@dataclass(frozen=True)
class CatchUpPolicy:
    missed_periods: MissedPeriods = MissedPeriods.LATEST
    min_interval: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class ChargePeriod:
    """Open the intent of the period due at `due_at`; record `missed` (oldest first) as missed before it."""

    due_at: datetime
    missed: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class WaitForInterval:
    """Catching up under `all`, and the last charge is too recent: let the schedule go for this run."""

    until: datetime


def catch_up(
    policy: CatchUpPolicy,
    next_run: datetime,
    frequency: Frequency,
    stored_anchor: int | None,
    last_charged_at: datetime | None,
    now: datetime,
) -> ChargePeriod | WaitForInterval:
    """The period a claimed schedule is charged for in this run, or a wait.

    A schedule is catching up while the period after nextRunAt is due, and also while its nextRunAt was
    already due when it was last charged (the last of its missed periods): under `all`, those charges are
    spaced by the minimum interval, so a donor is never charged for two periods within it.
    """
    periods = due_periods(next_run, frequency, stored_anchor, now)
    if policy.missed_periods is MissedPeriods.LATEST:
        return ChargePeriod(periods.latest, periods.missed)
    if last_charged_at is not None:
        last = as_utc(last_charged_at)
        catching_up = bool(periods.missed) or as_utc(next_run) <= last
        if catching_up and as_utc(now) < last + policy.min_interval:
            return WaitForInterval(last + policy.min_interval)
    return ChargePeriod(as_utc(next_run))
