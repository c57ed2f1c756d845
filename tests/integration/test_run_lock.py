"""The DynamoDB run lock through boto3 against moto's server."""

from __future__ import annotations

import threading
import time

import boto3
import pytest
from botocore.config import Config

from donation_processor.adapters.run_lock import DynamoDbRunLock
from donation_processor.exceptions import LockContendedError, LockLostError, LockUnavailableError
from donation_processor.lease_keeper import LeaseKeeper
from harness.aws_local import dynamodb_client
from harness.local_services import LocalServices


class ManualClock:
    def __init__(self, start_ms: int) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now


def _lock(
    services: LocalServices, clock: ManualClock | None = None, lease_seconds: int = 60
) -> DynamoDbRunLock:
    return DynamoDbRunLock(
        services.lock_table_name,
        "scheduled-donations",
        lease_seconds,
        client=dynamodb_client(services.moto.endpoint_url),
        clock_ms=clock or (lambda: int(time.time() * 1000)),
    )


def test_a_held_lock_is_contended_and_a_released_one_is_taken_with_a_larger_fence(
    services: LocalServices,
) -> None:
    # GIVEN run A holds the lock
    lock = _lock(services)
    first = lock.acquire("run-a")

    # WHEN run B tries while A holds it, and again after A released it
    with pytest.raises(LockContendedError):
        lock.acquire("run-b")
    lock.release(first)
    second = lock.acquire("run-b")

    # THEN B got it only the second time, with a larger fence
    assert second.owner == "run-b"
    assert second.fence > first.fence


def test_an_expired_lease_is_taken_over_and_the_old_owner_learns_it_lost(services: LocalServices) -> None:
    # GIVEN run A's lease of 60 s
    clock = ManualClock(1_800_000_000_000)
    lock = _lock(services, clock)
    stale = lock.acquire("run-a")

    # WHEN 61 s pass without renewal and run B acquires
    clock.now += 61_000
    fresh = lock.acquire("run-b")

    # THEN A can neither renew nor release B's lock
    with pytest.raises(LockLostError):
        lock.renew(stale)
    lock.release(stale)
    with pytest.raises(LockContendedError):
        lock.acquire("run-c")
    assert fresh.fence > stale.fence


def test_renewal_extends_the_lease(services: LocalServices) -> None:
    # GIVEN a 60 s lease
    clock = ManualClock(1_800_000_000_000)
    lock = _lock(services, clock)
    lease = lock.acquire("run-a")

    # WHEN it is renewed after 50 s and another run tries 20 s later
    clock.now += 50_000
    renewed = lock.renew(lease)
    clock.now += 20_000

    # THEN the lock is still held
    assert renewed.expires_at_ms == clock.now - 20_000 + 60_000
    with pytest.raises(LockContendedError):
        lock.acquire("run-b")


def test_the_fence_keeps_growing_even_if_the_lock_item_is_lost(services: LocalServices) -> None:
    # GIVEN a run took the lock, and then the item disappeared (table re-created, manual delete)
    lock = _lock(services)
    before = lock.acquire("run-a")
    lock.release(before)
    dynamodb_client(services.moto.endpoint_url).delete_item(
        TableName=services.lock_table_name, Key={"lockId": {"S": "scheduled-donations"}}
    )

    # WHEN the next run acquires
    after = lock.acquire("run-b")

    # THEN its fence still outranks every claim stamped before
    assert after.fence > before.fence


def test_only_one_of_many_simultaneous_acquirers_wins(services: LocalServices) -> None:
    # GIVEN eight runs starting at the same moment
    lock = _lock(services)
    barrier = threading.Barrier(8)
    winners: list[str] = []
    losers: list[str] = []

    def contend(owner: str) -> None:
        barrier.wait()
        try:
            lock.acquire(owner)
            winners.append(owner)
        except LockContendedError:
            losers.append(owner)

    # WHEN they all try to take the lock
    threads = [threading.Thread(target=contend, args=(f"run-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # THEN exactly one holds it
    assert len(winners) == 1
    assert len(losers) == 7


def test_an_unreachable_lock_table_refuses_instead_of_running_unlocked() -> None:
    # GIVEN a DynamoDB endpoint where nothing listens
    client = boto3.client(
        "dynamodb",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}),
    )
    lock = DynamoDbRunLock("any", "scheduled-donations", 60, client=client)

    # WHEN a run tries to take the lock
    # THEN it is told the lock is unavailable
    with pytest.raises(LockUnavailableError, match="unreachable"):
        lock.acquire("run-a")


def test_the_lease_keeper_notices_a_lost_lock(services: LocalServices) -> None:
    # GIVEN run A's lease lapsed and run B, a minute later by its own clock, took the lock over
    lock_a = _lock(services, ManualClock(1_800_000_000_000))
    lease = lock_a.acquire("run-a")
    _lock(services, ManualClock(1_800_000_061_000)).acquire("run-b")

    # WHEN A's lease keeper tries to renew
    with LeaseKeeper(lock_a, lease, interval_seconds=0.1) as keeper:
        # THEN it reports the lock lost
        assert keeper.lost.wait(timeout=5)
