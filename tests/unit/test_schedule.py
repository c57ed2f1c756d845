"""Calendar arithmetic of donation schedules: month ends, leap years, UTC everywhere."""

from __future__ import annotations

import calendar
import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from donation_processor.schedule import (
    Frequency,
    as_utc,
    due_periods,
    effective_anchor,
    following_run,
    next_run_at,
    period_key,
)

PLUS_TWO = timezone(timedelta(hours=2))
MINUS_FIVE = timezone(timedelta(hours=-5))


def _chain(start: datetime, frequency: Frequency, anchor_day: int, steps: int) -> list[datetime]:
    """Feed next_run_at its own output, as the engine does period after period."""
    moments = [start]
    for _ in range(steps):
        moments.append(next_run_at(moments[-1], frequency, anchor_day))
    return moments[1:]


def test_monthly_anchor_31_lands_on_the_last_day_of_short_months_and_returns_to_the_31st() -> None:
    # GIVEN a monthly schedule that began on January 31st 2027
    start = datetime(2027, 1, 31, 9, 30, tzinfo=UTC)

    # WHEN it is advanced twice with its anchor day
    february, march = _chain(start, Frequency.MONTHLY, 31, 2)

    # THEN February (not a leap year) ends on the 28th and March returns to the 31st
    assert february == datetime(2027, 2, 28, 9, 30, tzinfo=UTC)
    assert march == datetime(2027, 3, 31, 9, 30, tzinfo=UTC)


def test_monthly_anchor_31_lands_on_february_29_in_a_leap_year() -> None:
    # GIVEN a monthly schedule that began on January 31st 2028 (a leap year)
    start = datetime(2028, 1, 31, tzinfo=UTC)

    # WHEN it is advanced twice with its anchor day
    february, march = _chain(start, Frequency.MONTHLY, 31, 2)

    # THEN it runs on February 29th, then on March 31st
    assert february == datetime(2028, 2, 29, tzinfo=UTC)
    assert march == datetime(2028, 3, 31, tzinfo=UTC)


def test_monthly_anchor_31_keeps_its_anchor_over_a_whole_year() -> None:
    # GIVEN a monthly schedule anchored on the 31st
    start = datetime(2027, 1, 31, tzinfo=UTC)

    # WHEN it is advanced twelve times
    runs = _chain(start, Frequency.MONTHLY, 31, 12)

    # THEN every run is on the month's last day, and the year wraps to January 31st 2028
    assert [run.day for run in runs] == [calendar.monthrange(run.year, run.month)[1] for run in runs]
    assert runs[-1] == datetime(2028, 1, 31, tzinfo=UTC)


def test_quarterly_from_november_30_goes_to_february_28_then_may_30() -> None:
    # GIVEN a quarterly schedule that began on November 30th 2026
    start = datetime(2026, 11, 30, tzinfo=UTC)

    # WHEN it is advanced twice with anchor day 30
    february, may = _chain(start, Frequency.QUARTERLY, 30, 2)

    # THEN it crosses the year to February 28th 2027, then returns to the 30th in May
    assert february == datetime(2027, 2, 28, tzinfo=UTC)
    assert may == datetime(2027, 5, 30, tzinfo=UTC)


def test_yearly_from_february_29_goes_to_february_28_of_the_next_year_not_the_next_leap_year() -> None:
    # GIVEN a yearly schedule that began on February 29th 2028
    start = datetime(2028, 2, 29, tzinfo=UTC)

    # WHEN it is advanced twice with anchor day 29
    first, second = _chain(start, Frequency.YEARLY, 29, 2)

    # THEN each step is exactly one year: Feb 28 2029, then Feb 28 2030 (Feb 29 2032 is never one step)
    assert first == datetime(2029, 2, 28, tzinfo=UTC)
    assert second == datetime(2030, 2, 28, tzinfo=UTC)
    assert first != datetime(2032, 2, 29, tzinfo=UTC)


def test_yearly_anchor_29_returns_to_february_29_in_the_next_leap_year() -> None:
    # GIVEN the yearly schedule of a February 29th donor, chained to 2032
    start = datetime(2028, 2, 29, tzinfo=UTC)

    # WHEN it is advanced four times
    runs = _chain(start, Frequency.YEARLY, 29, 4)

    # THEN the leap year 2032 gets its 29th back
    assert runs[-1] == datetime(2032, 2, 29, tzinfo=UTC)


def test_weekly_adds_exactly_seven_days() -> None:
    # GIVEN a weekly schedule on a Friday at the end of a month
    start = datetime(2026, 1, 30, 23, 59, 59, tzinfo=UTC)

    # WHEN it is advanced
    following = next_run_at(start, Frequency.WEEKLY, 30)

    # THEN it is exactly seven days later (the anchor day does not apply)
    assert following == datetime(2026, 2, 6, 23, 59, 59, tzinfo=UTC)
    assert following - start == timedelta(days=7)


@pytest.mark.parametrize("frequency", list(Frequency))
def test_time_of_day_is_preserved(frequency: Frequency) -> None:
    # GIVEN a period that started at 17:45:12.345678 UTC
    start = datetime(2026, 3, 15, 17, 45, 12, 345678, tzinfo=UTC)

    # WHEN it is advanced
    following = next_run_at(start, frequency, 15)

    # THEN the time of day is unchanged
    assert following.timetz() == start.timetz()


def test_a_naive_datetime_is_treated_as_utc_and_the_result_is_aware_utc() -> None:
    # GIVEN a naive datetime as MongoDB returns it
    start = datetime(2026, 5, 31, 8, 0)

    # WHEN it is advanced a month
    following = next_run_at(start, Frequency.MONTHLY, 31)

    # THEN the result is the same wall time, now explicitly UTC
    assert following == datetime(2026, 6, 30, 8, 0, tzinfo=UTC)
    assert following.tzinfo is UTC


def test_a_non_utc_aware_datetime_is_converted_to_utc_before_the_arithmetic() -> None:
    # GIVEN an aware datetime at 01:00 on March 1st in UTC+2, i.e. 23:00 on February 28th UTC
    start = datetime(2027, 3, 1, 1, 0, tzinfo=PLUS_TWO)

    # WHEN it is advanced a month with anchor 28
    following = next_run_at(start, Frequency.MONTHLY, 28)

    # THEN the month is computed from the UTC date (February -> March), and the result is UTC
    assert following == datetime(2027, 3, 28, 23, 0, tzinfo=UTC)
    assert following.utcoffset() == timedelta(0)


def test_as_utc_keeps_the_instant_of_an_aware_datetime() -> None:
    # GIVEN an aware datetime in UTC-5
    moment = datetime(2026, 12, 31, 22, 0, tzinfo=MINUS_FIVE)

    # WHEN it is converted
    converted = as_utc(moment)

    # THEN it is the same instant expressed in UTC
    assert converted == moment
    assert converted == datetime(2027, 1, 1, 3, 0, tzinfo=UTC)
    assert converted.tzinfo is UTC


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 1, 31, 23, 59), "2026-01-31"),
        (datetime(2026, 1, 31, 0, 0, tzinfo=UTC), "2026-01-31"),
        (datetime(2026, 1, 1, 1, 0, tzinfo=PLUS_TWO), "2025-12-31"),
        (datetime(2026, 1, 31, 20, 0, tzinfo=MINUS_FIVE), "2026-02-01"),
    ],
)
def test_period_key_is_the_utc_date(moment: datetime, expected: str) -> None:
    # GIVEN a period start (naive = UTC, or aware in any zone)
    # WHEN it is named
    key = period_key(moment)

    # THEN the name is the ISO date of that instant in UTC
    assert key == expected


@settings(max_examples=300, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 31, 23, 59, 59)),
    frequency=st.sampled_from(list(Frequency)),
    aware=st.booleans(),
)
def test_property_next_run_is_strictly_later_and_monthly_respects_the_anchor(
    start: datetime, frequency: Frequency, aware: bool
) -> None:
    # GIVEN any start between 2000 and 2100 (naive or aware UTC), its own day as the anchor
    moment = start.replace(tzinfo=UTC) if aware else start
    anchor = start.day

    # WHEN it is advanced
    following = next_run_at(moment, frequency, anchor)

    # THEN the next run is later, aware UTC, and a monthly run lands on min(anchor, month length)
    assert following > as_utc(moment)
    assert following.utcoffset() == timedelta(0)
    if frequency is Frequency.MONTHLY:
        assert following.day == min(anchor, calendar.monthrange(following.year, following.month)[1])
        months_apart = (following.year - start.year) * 12 + following.month - start.month
        assert months_apart == 1


# -- after a charge: the host may have moved nextRunAt meanwhile ------------------------------------------


def _utc(year: int, month: int, day: int, hour: int = 9) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@pytest.mark.parametrize(
    ("case", "due", "seen", "current", "stored_anchor", "expected"),
    [
        (
            "unchanged: the next period",
            _utc(2026, 12, 1),
            _utc(2026, 12, 1),
            _utc(2026, 12, 1),
            1,
            (_utc(2027, 1, 1), 1),
        ),
        (
            "unchanged: a 31st anchor survives a short month",
            _utc(2027, 2, 28),
            _utc(2027, 2, 28),
            _utc(2027, 2, 28),
            31,
            (_utc(2027, 3, 31), 31),
        ),
        (
            "moved a day earlier after the charge: the next cycle on the new day, not this one again",
            _utc(2026, 12, 1),
            _utc(2026, 12, 1),
            _utc(2026, 11, 30),
            1,
            (_utc(2026, 12, 30), 30),
        ),
        (
            "moved later in the same cycle: the host's date stands",
            _utc(2026, 12, 1),
            _utc(2026, 12, 1),
            _utc(2026, 12, 28),
            1,
            (_utc(2026, 12, 28), 28),
        ),
        (
            "moved months ahead (a pause): the host's date stands",
            _utc(2026, 12, 1),
            _utc(2026, 12, 1),
            _utc(2027, 3, 15),
            1,
            (_utc(2027, 3, 15), 15),
        ),
        (
            "an earlier version's dunning moved nextRunAt itself: the period's own next date",
            _utc(2026, 12, 1),
            _utc(2026, 12, 4),
            _utc(2026, 12, 4),
            1,
            (_utc(2027, 1, 1), 1),
        ),
    ],
)
def test_following_run_after_a_charge(
    case: str,
    due: datetime,
    seen: datetime,
    current: datetime,
    stored_anchor: int,
    expected: tuple[datetime, int],
) -> None:
    # GIVEN a charged period's due date, the nextRunAt seen when it opened, and nextRunAt now
    # WHEN the schedule moves on
    # THEN it lands on the expected date and anchor
    assert following_run(due, seen, current, Frequency.MONTHLY, stored_anchor) == expected


def test_a_stored_anchor_that_no_longer_fits_next_run_gives_way_to_the_new_day() -> None:
    # GIVEN anchorDay 1 kept by the engine, and a nextRunAt the host moved to the 28th
    # WHEN the anchor to step from is chosen
    # THEN the 28th is the anchor: the stored day would pull the schedule back (charged Dec 28, then Jan 1)
    assert effective_anchor(_utc(2026, 12, 28), 1) == 28
    assert effective_anchor(_utc(2027, 2, 28), 31) == 31
    assert effective_anchor(_utc(2027, 2, 28), None) == 28


@settings(max_examples=300, deadline=None)
@given(
    due=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2190, 1, 1)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
    shift_days=st.integers(min_value=-40, max_value=120),
    frequency=st.sampled_from(list(Frequency)),
)
def test_property_after_a_charge_the_next_run_is_more_than_half_a_period_away(
    due: datetime, shift_days: int, frequency: Frequency
) -> None:
    # GIVEN a charged period and any host edit of nextRunAt
    current = due + timedelta(days=shift_days)

    # WHEN the schedule moves on
    following, anchor = following_run(due, due, current, frequency, None)

    # THEN the next charge is more than half a period after the one just made: never twice in a cycle
    half_period = (next_run_at(due, frequency, due.day) - due) / 2
    assert following > due + half_period
    assert 1 <= anchor <= 31


# -- a schedule behind by whole periods: which periods are missed, which is the latest ------------------


@pytest.mark.parametrize(
    ("case", "frequency", "next_run", "stored_anchor", "now", "latest", "missed"),
    [
        (
            "monthly, six periods due: the sixth is the latest",
            Frequency.MONTHLY,
            _utc(2026, 2, 15),
            15,
            _utc(2026, 7, 15, 10),
            _utc(2026, 7, 15),
            [_utc(2026, month, 15) for month in range(2, 7)],
        ),
        (
            "weekly, five weeks due",
            Frequency.WEEKLY,
            _utc(2027, 1, 4),
            None,
            _utc(2027, 2, 3),
            _utc(2027, 2, 1),
            [_utc(2027, 1, 4), _utc(2027, 1, 11), _utc(2027, 1, 18), _utc(2027, 1, 25)],
        ),
        (
            "quarterly from November 30th, over the end of February",
            Frequency.QUARTERLY,
            _utc(2026, 11, 30),
            30,
            _utc(2027, 9, 1),
            _utc(2027, 8, 30),
            [_utc(2026, 11, 30), _utc(2027, 2, 28), _utc(2027, 5, 30)],
        ),
        (
            "monthly from January 31st without a stored anchor: the 31st is kept as the anchor",
            Frequency.MONTHLY,
            _utc(2027, 1, 31),
            None,
            _utc(2027, 3, 31, 8),
            _utc(2027, 2, 28),
            [_utc(2027, 1, 31)],
        ),
        (
            "the next period falls due exactly now: it is the latest",
            Frequency.MONTHLY,
            _utc(2026, 2, 15),
            15,
            _utc(2026, 3, 15),
            _utc(2026, 3, 15),
            [_utc(2026, 2, 15)],
        ),
        (
            "due once, the next period a second away: nothing missed",
            Frequency.MONTHLY,
            _utc(2026, 2, 15),
            15,
            _utc(2026, 3, 15) - timedelta(seconds=1),
            _utc(2026, 2, 15),
            [],
        ),
        (
            "yearly, due once",
            Frequency.YEARLY,
            _utc(2026, 2, 15),
            None,
            _utc(2026, 12, 31),
            _utc(2026, 2, 15),
            [],
        ),
    ],
)
def test_due_periods_names_the_latest_due_period_and_the_missed_ones_before_it(
    case: str,
    frequency: Frequency,
    next_run: datetime,
    stored_anchor: int | None,
    now: datetime,
    latest: datetime,
    missed: list[datetime],
) -> None:
    # GIVEN a schedule's nextRunAt, its stored anchor, and the time of the run
    # WHEN its due periods are counted
    periods = due_periods(next_run, frequency, stored_anchor, now)

    # THEN the latest is the last step due by now, and every earlier step is missed, oldest first
    assert (periods.latest, list(periods.missed)) == (latest, missed)


def test_after_the_latest_of_several_missed_periods_the_schedule_keeps_the_anchor_of_the_steps() -> None:
    # GIVEN nextRunAt on January 31st (no stored anchor) and February 28th charged as the latest period
    seen = _utc(2027, 1, 31)
    latest = due_periods(seen, Frequency.MONTHLY, None, _utc(2027, 3, 5)).latest

    # WHEN the schedule moves on after the charge
    following = following_run(latest, seen, seen, Frequency.MONTHLY, None)

    # THEN it goes to March 31st, as it would have period by period, not to March 28th
    assert (latest, following) == (_utc(2027, 2, 28), (_utc(2027, 3, 31), 31))


@settings(max_examples=300, deadline=None)
@given(
    next_run=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2100, 1, 1)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
    behind=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=800)),
    frequency=st.sampled_from(list(Frequency)),
    stored_anchor=st.one_of(st.none(), st.integers(min_value=1, max_value=31)),
)
def test_property_the_due_periods_are_one_chain_of_steps_ending_at_the_last_due_one(
    next_run: datetime, behind: timedelta, frequency: Frequency, stored_anchor: int | None
) -> None:
    # GIVEN any schedule due, behind by up to 800 days
    now = next_run + behind

    # WHEN its due periods are counted
    periods = due_periods(next_run, frequency, stored_anchor, now)

    # THEN they start at nextRunAt, step period by period, end at the latest due one, and the next is not due
    anchor = effective_anchor(next_run, stored_anchor)
    chain = [*periods.missed, periods.latest]
    assert chain[0] == next_run
    assert all(next_run_at(a, frequency, anchor) == b for a, b in itertools.pairwise(chain))
    assert periods.latest <= now < next_run_at(periods.latest, frequency, anchor)
    # AND after the latest is charged the schedule goes exactly one step on, to the first period not yet due
    assert following_run(periods.latest, next_run, next_run, frequency, stored_anchor)[0] == next_run_at(
        periods.latest, frequency, anchor
    )
