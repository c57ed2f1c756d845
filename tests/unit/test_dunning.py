"""Dunning: when a soft-declined donation is tried again, and when it gives up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from donation_processor.dunning import attempts_exhausted, next_attempt_at

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SCHEDULE = (1, 3, 7)


@pytest.mark.parametrize(
    ("attempts_made", "days"),
    [(1, 1), (2, 3), (3, 7), (4, 7), (10, 7)],
)
def test_next_attempt_waits_the_schedule_entry_of_the_attempt_and_the_last_entry_repeats(
    attempts_made: int, days: int
) -> None:
    # GIVEN a dunning schedule of 1, 3, 7 days and a failed attempt number
    # WHEN the next attempt is scheduled
    following = next_attempt_at(NOW, attempts_made, SCHEDULE)

    # THEN it waits schedule_days[attempts - 1] days, the last entry for every later attempt
    assert following == NOW + timedelta(days=days)


def test_next_attempt_with_zero_attempts_uses_the_first_entry() -> None:
    # GIVEN no recorded attempt (defensive lower bound)
    # WHEN the next attempt is scheduled
    following = next_attempt_at(NOW, 0, SCHEDULE)

    # THEN the first entry applies rather than wrapping to the last one
    assert following == NOW + timedelta(days=1)


def test_a_single_entry_schedule_repeats_that_entry() -> None:
    # GIVEN a schedule with a single entry
    # WHEN attempts 1 and 5 are scheduled
    # THEN both wait that entry
    assert next_attempt_at(NOW, 1, (2,)) == NOW + timedelta(days=2)
    assert next_attempt_at(NOW, 5, (2,)) == NOW + timedelta(days=2)


@pytest.mark.parametrize(
    ("attempts_made", "max_attempts", "exhausted"),
    [(0, 4, False), (3, 4, False), (4, 4, True), (5, 4, True), (1, 1, True), (0, 1, False)],
)
def test_attempts_are_exhausted_from_max_attempts_on(
    attempts_made: int, max_attempts: int, exhausted: bool
) -> None:
    # GIVEN a number of attempts made and a maximum
    # WHEN exhaustion is checked
    # THEN it is exhausted exactly when attempts_made >= max_attempts
    assert attempts_exhausted(attempts_made, max_attempts) is exhausted
