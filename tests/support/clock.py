"""A clock the tests move by hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass
class TestClock:
    """A clock the test moves forward, to expire leases and reach dunning dates without waiting."""

    __test__ = False  # a helper, not a test class for pytest to collect

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def monotonic(self) -> float:
        """The run lock's monotonic clock: it follows this clock."""
        return self.now.timestamp()

    def sleep(self, seconds: float) -> None:
        """The run lock's sleep: it moves this clock on at once, so watching a dead holder for a whole
        lease costs no real time (and moves the run's wall clock on by the same amount, as it would)."""
        self.advance(seconds=seconds)
