"""Keep the job lock's lease alive while a run works, and say so when it is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from donation_processor.exceptions import LockLostError, LockUnavailableError
from donation_processor.observability import logger
from donation_processor.ports import LockLease, RunLockPort


class LeaseKeeper:
    """Renews the lease every interval; `lost` is set when the lease can no longer be kept.

    Each renewal writes a new record version number, conditional on the last one: a lock taken over,
    released or deleted refuses it (LockLostError), and the engine stops claiming.
    """

    def __init__(
        self,
        lock: RunLockPort,
        lease: LockLease,
        interval_seconds: float,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._lock = lock
        self.lease = lease
        self._interval = interval_seconds
        self._clock_ms = clock_ms
        self._stop = threading.Event()
        self.lost = threading.Event()
        # Renewing and raising the fence both write conditional on the lease's RVN: one at a time.
        self._turn = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def raise_fence(self, floor: int) -> None:
        """Lift the lease's fence above floor (the highest fence already written); `lost` if it cannot be."""
        with self._turn:
            try:
                self.lease = self._lock.raise_fence(self.lease, floor)
            except LockLostError:
                logger.error("lock lost before its fence was raised; stopping claims", fence=self.lease.fence)
                self.lost.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                with self._turn:
                    self.lease = self._lock.renew(self.lease)
            except LockLostError:
                logger.error(
                    "lock lost (taken over, released or deleted); stopping claims", fence=self.lease.fence
                )
                self.lost.set()
                return
            except LockUnavailableError as error:
                # Keep trying while the lease still holds; stop claiming before it could lapse.
                if self._clock_ms() >= self.lease.expires_at_ms - self._interval * 1000:
                    logger.error("lock lease could not be renewed; stopping claims", error=str(error))
                    self.lost.set()
                    return
                logger.warning("lock renewal failed; will retry", error=str(error))
