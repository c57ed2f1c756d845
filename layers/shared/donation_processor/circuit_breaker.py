"""Pause the run while Stripe itself is unavailable, probe, and carry on; give up only on a long outage.

Closed: requests go. `threshold` availability failures in a row (no answer, 5xx) open it. Open: no request
goes until the cool-down has passed; then one request goes as a probe (half-open). The probe's success
closes it; its failure opens it again for twice the cool-down (at most `max_cool_down`). The outage is
over the `outage_window` when the circuit has not closed for that long since it first opened: only then
does the run end as `circuit_open`, every donation not yet charged still due.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        threshold: int,
        cool_down_seconds: float = 1.0,
        outage_window_seconds: float = 120.0,
        max_cool_down_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self._threshold = threshold
        self._base_cool_down = cool_down_seconds
        self._max_cool_down = max(max_cool_down_seconds, cool_down_seconds)
        self._window = outage_window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._cool_down = cool_down_seconds
        self._open_until = 0.0
        self._outage_since: float | None = None
        self.times_opened = 0

    @property
    def state(self) -> CircuitState:
        with self._lock:
            return self._state

    @property
    def is_open(self) -> bool:
        """Open or probing: Stripe has not answered since the circuit opened."""
        return self.state is not CircuitState.CLOSED

    @property
    def outage_exceeded(self) -> bool:
        """The circuit has stayed open (or probing) for the whole outage window."""
        with self._lock:
            return self._outage_since is not None and self._clock() - self._outage_since >= self._window

    def try_acquire(self) -> tuple[bool, float]:
        """(True, 0) when a request may go now (half-open: the one probe); else (False, seconds to wait)."""
        with self._lock:
            if self._state is CircuitState.CLOSED:
                return True, 0.0
            if self._state is CircuitState.HALF_OPEN:
                return False, min(self._cool_down, 0.5)  # the probe is out; wait for its answer
            remaining = self._open_until - self._clock()
            if remaining > 0:
                return False, remaining
            self._state = CircuitState.HALF_OPEN
            return True, 0.0

    def wait_for_permission(self, stop: threading.Event) -> bool:
        """Block until a request may go; False when the outage outlasted the window or the run is stopping."""
        while True:
            allowed, wait = self.try_acquire()
            if allowed:
                return True
            if self.outage_exceeded or stop.wait(min(wait, 1.0)):
                return False

    def record_success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._state = CircuitState.CLOSED
            self._cool_down = self._base_cool_down
            self._outage_since = None

    def record_availability_failure(self) -> bool:
        """Count one failure; True when this failure opened the circuit (from closed or after a probe)."""
        with self._lock:
            now = self._clock()
            if self._state is CircuitState.HALF_OPEN:
                self._cool_down = min(self._cool_down * 2, self._max_cool_down)
                self._open(now)
                return True
            self._consecutive += 1
            if self._state is CircuitState.CLOSED and self._consecutive >= self._threshold:
                self._open(now)
                return True
            return False

    def _open(self, now: float) -> None:
        self._state = CircuitState.OPEN
        self._open_until = now + self._cool_down
        if self._outage_since is None:
            self._outage_since = now
        self.times_opened += 1
