"""One token bucket shared by every thread that calls Stripe, adapting to the limit Stripe really applies."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Blocking token bucket: at most `rate` acquisitions per second, with a burst of `burst`.

    Threads reserve a slot under the lock and sleep outside it, so waiting never blocks the others.

    The rate adapts (AIMD): a 429 from Stripe cuts it by `decrease_factor` (once per second, however many
    threads saw the 429), and once the 429s stop for `quiet_seconds` every success probes upward again by
    `increase_step` of the configured rate, never above it. So a test-mode account (25 requests/s) behind a
    job configured for 100/s settles near 25/s instead of failing donations.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        *,
        decrease_factor: float = 0.7,
        increase_step: float = 0.001,
        quiet_seconds: float = 2.0,
        minimum_rate: float | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._ceiling = rate
        self._rate = rate
        self._burst = max(1.0, burst if burst is not None else min(rate, 10.0))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self._burst
        self._updated = clock()
        self._decrease_factor = decrease_factor
        self._increase = rate * increase_step
        self._quiet = quiet_seconds
        self._minimum = minimum_rate if minimum_rate is not None else min(rate, 1.0)
        self._last_throttle: float | None = None
        self.throttled_count = 0

    @property
    def rate(self) -> float:
        """The rate in force now (the configured one unless Stripe pushed back)."""
        with self._lock:
            return self._rate

    @property
    def configured_rate(self) -> float:
        return self._ceiling

    def acquire(self) -> float:
        """Take one slot, sleeping as long as needed; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self._rate
        if wait > 0:
            self._sleep(wait)
        return wait

    def on_throttled(self) -> None:
        """Stripe answered 429 rate_limit: slow down (at most once a second) and spend no saved burst."""
        with self._lock:
            now = self._clock()
            self.throttled_count += 1
            if self._last_throttle is not None and now - self._last_throttle < 1.0:
                return
            self._last_throttle = now
            self._rate = max(self._minimum, self._rate * self._decrease_factor)
            self._tokens = min(self._tokens, 0.0)

    def on_success(self) -> None:
        """A request went through: once Stripe has been quiet for a while, probe back toward the ceiling."""
        with self._lock:
            if self._rate >= self._ceiling:
                return
            if self._last_throttle is not None and self._clock() - self._last_throttle < self._quiet:
                return
            self._rate = min(self._ceiling, self._rate + self._increase)
