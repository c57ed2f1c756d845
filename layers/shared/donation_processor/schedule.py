"""Calendar arithmetic for donation schedules: every date is UTC and month ends are respected."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
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


def effective_anchor(next_run: datetime, stored_anchor: int | None) -> int:
    """The anchor day to step from: the stored one only while nextRunAt still lands on it.

    The engine keeps `anchorDay` so that Jan 31 -> Feb 28 -> Mar 31. When the host moves nextRunAt to
    another day (the donor picked the 28th), the stored day no longer fits and the new day is the anchor.
    """
    if stored_anchor is not None and 1 <= stored_anchor <= 31:
        last_day = calendar.monthrange(next_run.year, next_run.month)[1]
        if next_run.day == min(stored_anchor, last_day):
            return stored_anchor
    return next_run.day


def following_run(
    charged_due_at: datetime,
    seen_next_run_at: datetime,
    current_next_run_at: datetime,
    frequency: Frequency,
    stored_anchor: int | None,
) -> tuple[datetime, int]:
    """Where a schedule goes once the period that fell due at charged_due_at is charged: (nextRunAt, anchor).

    seen_next_run_at is the nextRunAt the engine saw when it opened the period. Unchanged since: the next
    period after the charged one. Edited by the host meanwhile: the host's dates win (its nextRunAt,
    stepped by whole periods on its own day), from the first one more than half a period after the charged
    due date. So a moved charge day never puts a second charge into the cycle just paid, and never skips one.
    """
    due = as_utc(charged_due_at)
    current = as_utc(current_next_run_at)
    if current == as_utc(seen_next_run_at):
        # A charged period whole periods after nextRunAt (the latest of several missed ones) goes on with
        # the anchor those steps used: nextRunAt Jan 31, Feb 28 charged -> Mar 31.
        stepped_from = effective_anchor(current, stored_anchor) if due > current else stored_anchor
        anchor = effective_anchor(due, stepped_from)
        return next_run_at(due, frequency, anchor), anchor
    anchor = effective_anchor(current, stored_anchor)
    half_period = (next_run_at(due, frequency, due.day) - due) / 2
    candidate = current
    while candidate <= due + half_period:
        candidate = next_run_at(candidate, frequency, anchor)
    return candidate, anchor


@dataclass(frozen=True)
class DuePeriods:
    """The periods of a schedule that have fallen due: the latest, and the missed ones before it."""

    latest: datetime
    missed: tuple[datetime, ...] = ()  # oldest first; the first is nextRunAt itself


def due_periods(
    next_run: datetime, frequency: Frequency, stored_anchor: int | None, now: datetime
) -> DuePeriods:
    """Step nextRunAt by whole periods (on its effective anchor) while the next step is due by now.

    A schedule that is not behind (the period after nextRunAt is not due yet) has no missed period.
    """
    anchor = effective_anchor(as_utc(next_run), stored_anchor)
    moment = as_utc(now)
    due = [as_utc(next_run)]
    following = next_run_at(due[-1], frequency, anchor)
    while following <= moment:
        due.append(following)
        following = next_run_at(following, frequency, anchor)
    return DuePeriods(latest=due[-1], missed=tuple(due[:-1]))
