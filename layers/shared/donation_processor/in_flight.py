"""How many donations to charge at once: enough to keep Stripe's rate limit busy at the latency we see.

Little's law: in flight = rate x time per donation. A fixed thread count is right for one latency only;
this follows the observed time per donation (an exponential moving average), so 800 ms answers get about
three times the concurrency of 250 ms answers, up to MAX_CONCURRENCY.
"""

from __future__ import annotations

import math
import threading


class InFlightGovernor:
    def __init__(
        self,
        rate_per_second: float,
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
        self._lock = threading.Lock()

    @property
    def seconds_per_donation(self) -> float:
        with self._lock:
            return self._seconds

    def record(self, seconds: float) -> None:
        with self._lock:
            self._seconds += self._smoothing * (seconds - self._seconds)

    def target(self) -> int:
        with self._lock:
            wanted = math.ceil(self._rate * self._seconds * self._headroom) + 1
        return max(1, min(self._ceiling, wanted))
