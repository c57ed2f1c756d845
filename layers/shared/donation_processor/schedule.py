"""Calendar arithmetic for donation schedules: every date is UTC and month ends are respected."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from enum import StrEnum


class Frequency(StrEnum):
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"


_MONTHS = {Frequency.MONTHLY: 1, Frequency.QUARTERLY: 3, Frequency.YEARLY: 12}


def as_utc(moment: datetime) -> datetime:
    """MongoDB returns naive datetimes that are UTC; make them aware so arithmetic never mixes zones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def add_months(moment: datetime, months: int, anchor_day: int) -> datetime:
    """Move by whole months, landing on anchor_day or the month's last day when it is shorter."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(anchor_day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def next_run_at(period_start: datetime, frequency: Frequency, anchor_day: int) -> datetime:
    """The start of the period after the one that began at period_start.

    anchor_day keeps a monthly schedule that began on the 31st on the 31st whenever the month allows:
    Jan 31 -> Feb 28 (or 29) -> Mar 31.
    """
    start = as_utc(period_start)
    if frequency is Frequency.WEEKLY:
        return start + timedelta(weeks=1)
    return add_months(start, _MONTHS[frequency], anchor_day)


def period_key(period_start: datetime) -> str:
    """A period is named by the UTC date its charge fell due: weekly is the shortest, so dates are unique."""
    return as_utc(period_start).date().isoformat()
