"""Stop a run when Stripe itself is unavailable, instead of burning every donation's retries."""

from __future__ import annotations

import threading


class CircuitBreaker:
    """Opens after `threshold` consecutive availability failures; any success closes the count again."""

    def __init__(self, threshold: int) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self._threshold = threshold
        self._consecutive = 0
        self._open = False
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._open

    def record_success(self) -> None:
        with self._lock:
            self._consecutive = 0

    def record_availability_failure(self) -> bool:
        """Count one failure; returns True when this failure opened the circuit."""
        with self._lock:
            self._consecutive += 1
            if not self._open and self._consecutive >= self._threshold:
                self._open = True
                return True
            return False
