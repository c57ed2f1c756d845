"""The lease keeper: renewals and the fence raise take turns on one lease, and a refusal means lost."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from donation_processor.exceptions import LockLostError
from donation_processor.lease_keeper import LeaseKeeper
from donation_processor.ports import LockLease


class SlowRenewals:
    """A lock whose renewals take a while; each renewal and raise returns a new lease from the one given."""

    def __init__(self) -> None:
        self.renewing = threading.Event()
        self.finish_renewal = threading.Event()
        self.renewals = 0
        self.refuse_raise = False

    def acquire(self, owner: str) -> LockLease:
        return LockLease(owner, fence=1, expires_at_ms=0)

    def renew(self, lease: LockLease) -> LockLease:
        self.renewing.set()
        self.finish_renewal.wait(timeout=5)
        self.renewals += 1
        return replace(lease, expires_at_ms=lease.expires_at_ms + 1)

    def release(self, lease: LockLease, last_run: Mapping[str, Any] | None = None) -> None:
        return None

    def raise_fence(self, lease: LockLease, floor: int) -> LockLease:
        if self.refuse_raise:
            raise LockLostError("gone")
        return replace(lease, fence=max(lease.fence, floor + 1))


def test_a_fence_raised_during_a_renewal_waits_for_it_and_both_stay_on_the_lease() -> None:
    # GIVEN a keeper whose first renewal is under way
    lock = SlowRenewals()
    with LeaseKeeper(lock, lock.acquire("run-a"), interval_seconds=0.01) as keeper:
        assert lock.renewing.wait(timeout=5)

        # WHEN the engine raises the fence meanwhile, and the renewal then completes
        raising = threading.Thread(target=keeper.raise_fence, args=(41,))
        raising.start()
        lock.finish_renewal.set()
        raising.join(timeout=5)

        # THEN the lease carries the raised fence and the renewal: neither overwrote the other
        assert keeper.lease.fence == 42
        assert keeper.lease.expires_at_ms >= 1
        assert not keeper.lost.is_set()


def test_a_refused_fence_raise_marks_the_lease_lost() -> None:
    # GIVEN a lock that no longer belongs to this run
    lock = SlowRenewals()
    lock.refuse_raise = True
    keeper = LeaseKeeper(lock, lock.acquire("run-a"), interval_seconds=60)

    # WHEN the engine raises the fence
    keeper.raise_fence(41)

    # THEN the keeper reports the lock lost and the lease keeps its fence
    assert keeper.lost.is_set()
    assert keeper.lease.fence == 1
