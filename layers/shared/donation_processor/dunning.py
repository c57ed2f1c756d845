"""When to try a soft-declined donation again, and when to give up."""

from __future__ import annotations

from datetime import datetime, timedelta


def next_attempt_at(now: datetime, attempts_made: int, schedule_days: tuple[int, ...]) -> datetime:
    """After attempt n failed, wait schedule_days[n-1] days (the last entry repeats)."""
    index = min(max(attempts_made, 1), len(schedule_days)) - 1
    return now + timedelta(days=schedule_days[index])


def attempts_exhausted(attempts_made: int, max_attempts: int) -> bool:
    return attempts_made >= max_attempts
