"""How many donations to charge at once: enough to keep Stripe's rate limit busy at the latency we see.

Little's law: in flight = rate x time per donation. A fixed thread count is right for one latency only;
this follows the observed time per donation (a moving average whose first samples weigh fully, so the
first answers replace the initial guess at once), so 800 ms answers get about three times the concurrency
of 250 ms answers, up to MAX_CONCURRENCY. The rate is read live: when Stripe pushes the limiter below the
configured rate, fewer donations are claimed into threads that would only wait for it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable


class InFlightGovernor:
    def __init__(
        self,
        rate_per_second: Callable[[], float],
        ceiling: int,
        initial_seconds: float = 0.25,
        headroom: float = 1.25,
        smoothing: float = 0.1,
    ) -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        self._rate = rate_per_second
        self._ceiling = ceiling
        self._headroom = headroom
        self._smoothing = smoothing
        self._seconds = initial_seconds
        self._samples = 0
        self._lock = threading.Lock()

    @property
    def seconds_per_donation(self) -> float:
        with self._lock:
            return self._seconds

    def record(self, seconds: float) -> None:
        """One donation's own time (what it spent waiting for the rate limiter left out)."""
        with self._lock:
            self._samples += 1
            weight = max(self._smoothing, 1.0 / self._samples)
            self._seconds += weight * (max(0.0, seconds) - self._seconds)

    def target(self) -> int:
        rate = self._rate()
        with self._lock:
            wanted = math.ceil(rate * self._seconds * self._headroom) + 1
        return max(1, min(self._ceiling, wanted))
