"""One token bucket shared by every thread that calls Stripe, adapting to the limit Stripe really applies."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Blocking token bucket: at most `rate` acquisitions per second, with a burst of `burst`.

    Threads reserve a slot under the lock and sleep outside it, so waiting never blocks the others.

    The rate adapts to the limit Stripe applies (which may be lower than configured: test mode allows
    25 requests/s, and other traffic on the same account shares the live limit):

    - a 429 cuts the rate by `decrease_factor`, once per round trip: every cut starts a new epoch, and only
      a 429 on a request granted in the current epoch cuts again. The 429s already in flight when the rate
      was cut count once, yet a rate that is still too high is cut again one round trip later;
    - after `quiet_seconds` without a 429 the rate grows with time: by `recovery_per_second` (x1.5 a
      second) up to 90 % of the rate that drew the last 429, then by `probe_per_second` of the configured
      rate (1 % a second) beyond it, never above the configured rate.
    """

    KNEE = 0.9

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        *,
        decrease_factor: float = 0.5,
        recovery_per_second: float = 0.5,
        probe_per_second: float = 0.01,
        quiet_seconds: float = 2.0,
        minimum_rate: float | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if not 0 < decrease_factor < 1:
            raise ValueError("decrease_factor must be between 0 and 1")
        self._ceiling = rate
        self._rate = rate
        self._burst = max(1.0, burst if burst is not None else min(rate, 10.0))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self._burst
        self._updated = clock()
        self._decrease_factor = decrease_factor
        self._recovery = 1.0 + recovery_per_second
        self._probe = rate * probe_per_second
        self._quiet = quiet_seconds
        self._minimum = minimum_rate if minimum_rate is not None else min(rate, 1.0)
        self._knee = rate
        self._epoch = 0
        self._last_throttle: float | None = None
        self._grown_at = self._updated
        self._local = threading.local()
        self.throttled_count = 0

    @property
    def rate(self) -> float:
        """The rate in force now (the configured one unless Stripe pushed back)."""
        with self._lock:
            return self._rate

    @property
    def configured_rate(self) -> float:
        return self._ceiling

    def waited_by_current_thread(self) -> float:
        """Seconds this thread has slept in acquire() so far: lets a caller time its own work without it."""
        return float(getattr(self._local, "waited", 0.0))

    def acquire(self) -> float:
        """Take one slot, sleeping as long as needed; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self._rate
            self._local.epoch = self._epoch
        self._local.waited = self.waited_by_current_thread() + wait
        if wait > 0:
            self._sleep(wait)
        return wait

    def on_throttled(self) -> None:
        """Stripe answered 429 rate_limit: cut the rate (once a round trip) and spend no saved burst."""
        with self._lock:
            self.throttled_count += 1
            now = self._clock()
            self._last_throttle = now
            self._grown_at = now
            if getattr(self._local, "epoch", 0) != self._epoch:
                return  # granted before the last cut: that cut already answered this 429
            self._epoch += 1
            self._knee = self._rate * self.KNEE
            self._rate = max(self._minimum, self._rate * self._decrease_factor)
            self._tokens = min(self._tokens, 0.0)

    def on_success(self) -> None:
        """A request went through: once Stripe has been quiet for a while, grow back toward the ceiling."""
        with self._lock:
            now = self._clock()
            quiet_since = self._grown_at
            if self._last_throttle is not None:
                quiet_since = max(quiet_since, self._last_throttle + self._quiet)
            self._grown_at = max(self._grown_at, now)
            if self._rate >= self._ceiling or now <= quiet_since:
                return
            elapsed = now - quiet_since
            if self._rate < self._knee:
                self._rate = min(self._knee, self._rate * self._recovery**elapsed)
            else:
                self._rate += self._probe * elapsed
            self._rate = min(self._ceiling, self._rate)
